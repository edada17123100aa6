-- `loom` start-up: one-line errors naming the user's file:line (the
-- traceback only with LOOM_DEBUG=1), text chunks only unless
-- --allow-binary, the `local application` pitfall, strports' options
-- table, and SIGHUP (reopens the log, never kills the host). Each runs
-- build/loom as a real subprocess.
local sub = dofile("spec/support/subprocess.lua")
local testing = require "loom.testing"

local function tmpfile(contents)
  local path = os.tmpname()
  sub.writeFile(path, contents)
  return path
end

local function lineCount(s)
  local _, n = s:gsub("\n", "")
  return n
end

local function quote(s)
  return (s:gsub("%p", "%%%0"))
end

-- The loom process under `sh -c 'exec timeout ... loom'` (sub.start).
local function loomPid(server)
  return tonumber(sub.readFile(string.format("/proc/%d/task/%d/children",
    server.pid, server.pid)):match("%d+"))
end

local function assertEchoes(port)
  local c = sub.connect(port)
  c.transport:write("still here")
  c:waitFor("still here", true)
  c.transport:loseConnection()
  testing.runUntil(c.lost, 5)
end

local FINGER = "run examples/finger/finger_app.lua examples/finger/users.json"

describe("loom start-up errors are one line", function()
  it("a bad endpoint argument names the app file's line, no traceback",
    function()
      local out, err, status = sub.loom(FINGER .. " tcp:79x")
      assert.equal(1, status)
      assert.equal("", out)
      assert.matches("^loom: examples/finger/finger_app%.lua:%d+: tcp: port"
        .. " '79x' is not a number\n$", err)
    end)

  it("LOOM_GC picks the collector's mode: generational unless incremental",
    function()
      -- collectgarbage(mode) returns the mode it replaces
      local script = tmpfile('print(collectgarbage("incremental"))')
      local out, err, status = sub.loom("run " .. script)
      assert.equal(0, status, err)
      assert.equal("generational\n", out)
      out = sub.loom("run " .. script, "LOOM_GC=incremental")
      assert.equal("incremental\n", out)
      out = sub.loom("run " .. script, "LOOM_GC=generational")
      assert.equal("generational\n", out)
      out, err, status = sub.loom("run " .. script, "LOOM_GC=fast")
      os.remove(script)
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal("loom: LOOM_GC must be generational or incremental, not"
        .. " 'fast'\n", err)
    end)

  it("LOOM_DEBUG=1 adds the traceback", function()
    local _, err, status = sub.loom(FINGER .. " tcp:79x", "LOOM_DEBUG=1")
    assert.equal(1, status)
    assert.matches("^loom: examples/finger/finger_app%.lua:%d+: tcp: port"
      .. " '79x' is not a number\nstack traceback:\n", err)
    assert.is_true(lineCount(err) > 3)
  end)

  it("a plugin's bad --port is one line", function()
    local out, err, status = sub.loom("echo --port tcp:79x")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: echo: tcp: port '79x' is not a number\n", err)
  end)

  it("an error loom raises without a position names the calling line",
    function()
      local path = tmpfile("local endpoints = require 'loom.endpoints'\n"
        .. "endpoints.serverFromString(require 'loom.reactor', 'tcp:x')\n")
      local _, err, status = sub.loom("run " .. path)
      os.remove(path)
      assert.equal(1, status)
      assert.equal("loom: " .. path .. ":2: tcp: port 'x' is not a number\n",
        err)
    end)

  it("an error the script raises at level 0 stays as it is", function()
    local path = tmpfile("local x = 1\nerror('no config', 0)\n")
    local _, err, status = sub.loom("run " .. path)
    os.remove(path)
    assert.equal(1, status)
    assert.equal("loom: no config\n", err)
  end)

  it("a runtime error in a script is its own one line", function()
    local path = tmpfile("local t\nprint(t.x)\n")
    local _, err, status = sub.loom("run " .. path)
    os.remove(path)
    assert.equal(1, status)
    assert.matches("^loom: " .. quote(path) .. ":2: attempt to index a nil"
      .. " value %(local 't'%)\n$", err)
  end)

  for _, case in ipairs({
    { "--uid", "loom: --uid needs a USER\n" },
    { "--allow-binary=yes run x.lua", "loom: --allow-binary takes no value\n" },
    { "run --gid=", "loom: --gid needs a GROUP\n" },
  }) do
    it("a bad flag (" .. case[1] .. ") is one line", function()
      local out, err, status = sub.loom(case[1])
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal(case[2], err)
    end)
  end
end)

-- A chunk's bytecode, as luac would write it.
local function bytecode(source)
  return string.dump(assert(load(source)))
end

describe("loom loads text chunks only", function()
  it("refuses a precompiled file in one line, exit 1", function()
    local path = tmpfile(bytecode("print('ran')"))
    local out, err, status = sub.loom("run " .. path)
    os.remove(path)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: " .. path .. ": a precompiled (binary) chunk: loom"
      .. " loads Lua source only (--allow-binary loads it; a corrupted one can"
      .. " crash the host)\n", err)
  end)

  it("runs it with --allow-binary", function()
    local path = tmpfile(bytecode("print('ran', ...)"))
    local out, err, status = sub.loom("--allow-binary run " .. path .. " a")
    os.remove(path)
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal("ran\ta\n", out)
  end)

  it("require of a precompiled module from a script is an error",
    function()
      local dir = sub.tmpdir()
      sub.writeFile(dir .. "/precompiled.lua", bytecode("return 1"))
      local path = tmpfile(string.format(
        "package.path = %q .. '/?.lua;' .. package.path\n"
        .. "require 'precompiled'\n", dir))
      local _, err, status = sub.loom("run " .. path)
      local _, err2, status2 = sub.loom("run --allow-binary " .. path)
      os.remove(dir .. "/precompiled.lua")
      os.remove(dir)
      os.remove(path)
      assert.equal(1, status)
      assert.equal(1, lineCount(err))
      assert.matches("^loom: " .. quote(path) .. ":2: error loading module"
        .. " 'precompiled' from file '.*precompiled%.lua'", err)
      assert.equal(0, status2)
      assert.equal("", err2)
    end)

  it("dofile and loadfile in a script load text only too", function()
    local mod = tmpfile(bytecode("return 1"))
    local path = tmpfile(string.format(
      "print(loadfile(%q))\nprint(loadfile(%q, 'bt') ~= nil)\ndofile(%q)\n",
      mod, mod, mod))
    local out, err, status = sub.loom("run " .. path)
    os.remove(mod)
    os.remove(path)
    assert.equal(1, status)
    assert.equal("nil\tattempt to load a binary chunk (mode is 't')\ntrue\n",
      out)
    assert.matches("^loom: " .. quote(path) .. ":3: attempt to load a binary"
      .. " chunk %(mode is 't'%)\n$", err)
  end)

  it("loom test refuses a precompiled spec file unless --allow-binary",
    function()
      local dir = sub.tmpdir()
      sub.writeFile(dir .. "/bin_spec.lua", bytecode(
        'describe("b", function() it("runs", function() end) end)'))
      local out, _, status = sub.loom("test " .. dir)
      local out2, _, status2 = sub.loom("--allow-binary test " .. dir)
      os.execute("rm -rf " .. dir)
      assert.is_true(status ~= 0)
      assert.matches("attempt to load a binary chunk", out)
      assert.equal(0, status2)
      assert.matches("1 success", out2)
    end)

  it("hostile: 60 corrupted .luac files each end in one line and exit 1,"
    .. " never a crash", function()
      local good = bytecode([[
local t = {}
for i = 1, 10 do t[i] = string.rep("x", i) .. tostring(i * 3.5) end
return function(a, b) return #t + a * b end]])
      local seed = 12345
      local function random(n) -- a fixed LCG: the same files every run
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n + 1
      end
      local path = os.tmpname()
      for _ = 1, 60 do
        local bytes = { good:byte(1, -1) }
        for _ = 1, 4 do
          bytes[random(#bytes)] = random(256) - 1
        end
        sub.writeFile(path, string.char(table.unpack(bytes)))
        local out, err, status = sub.loom("run " .. path)
        assert.equal(1, status)
        assert.equal("", out)
        assert.equal(1, lineCount(err))
        assert.matches("^loom: ", err)
      end
      os.remove(path)
    end)
end)

describe("an application file that keeps its Application in a local",
  function()
    it("is refused in one line saying what to write, exit 1", function()
      local path = tmpfile([[
local application = require "loom.application"
local strports = require "loom.strports"
local protocol = require "loom.protocol"
application = application.Application("lost")
strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(protocol.Protocol))
  :setServiceParent(application)
]])
      local out, err, status = sub.loom("run " .. path)
      os.remove(path)
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal("loom: " .. path .. " made an Application but did not"
        .. " return it or set the global `application` (a `local application`"
        .. " hides the global: end the file with `return application`)\n", err)
    end)

    it("but a script that starts its own Application and runs the reactor"
      .. " is a plain script", function()
        local path = tmpfile([[
local application = require "loom.application"
local reactor = require "loom.reactor"
local app = application.Application("mine")
app:startService()
reactor.callLater(0, reactor.stop)
reactor.run()
print("done", app.running)
]])
        local out, err, status = sub.loom("run " .. path)
        os.remove(path)
        assert.equal("", err)
        assert.equal(0, status)
        assert.equal("done\ttrue\n", out)
      end)
  end)

describe("strports.service in an application file", function()
  local APP = [[
local application = require "loom.application"
local strports = require "loom.strports"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(d) self.transport:write(d) end
local app = application.Application("x")
local s = strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(Echo), OPTIONS)
s:setServiceParent(app)
return app
]]

  it("takes {reactor = reactor} and serves", function()
    local path = tmpfile((APP:gsub("OPTIONS", "{ reactor = reactor }")))
    local server = sub.start("run " .. path)
    assertEchoes(server.port)
    local status = sub.stop(server)
    os.remove(path)
    assert.equal(0, status)
  end)

  it("a reactor where the options go is one line naming file:line",
    function()
      local path = tmpfile((APP:gsub("OPTIONS", "reactor")))
      local out, err, status = sub.loom("run " .. path)
      os.remove(path)
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal("loom: " .. path .. ":8: strports.service: the third"
        .. " argument is an options table: pass {reactor = r}, not the"
        .. " reactor\n", err)
    end)
end)

describe("loom and SIGHUP", function()
  it("with --logfile and --pidfile: reopens the log, keeps serving, and"
    .. " still stops cleanly on SIGTERM", function()
      local log = os.tmpname()
      local pidfile = os.tmpname()
      os.remove(pidfile)
      local server = sub.start("--logfile " .. log .. " --pidfile " .. pidfile
        .. " echo --port tcp:0:interface=127.0.0.1")
      local pid = tonumber(sub.readFile(pidfile))
      os.rename(log, log .. ".1")
      os.execute("kill -HUP " .. pid)
      sub.waitUntil(function() return io.open(log) ~= nil end, 5)
      assertEchoes(server.port)
      local status, _, err = sub.stop(server)
      local new = sub.readFile(log)
      os.remove(log)
      os.remove(log .. ".1")
      assert.equal(0, status)
      assert.equal("", err)
      assert.matches("info: received SIGHUP, reopened the log file "
        .. quote(log) .. "\n.*info: received SIGTERM, shutting down\n$", new)
      assert.is_nil(io.open(pidfile))
    end)

  it("without --logfile: says so and keeps serving", function()
    local server = sub.start("echo --port tcp:0:interface=127.0.0.1")
    os.execute("kill -HUP " .. loomPid(server))
    assertEchoes(server.port)
    local status, _, err = sub.stop(server)
    assert.equal(0, status)
    assert.matches("info: received SIGHUP, no log file to reopen\n"
      .. ".*received SIGTERM", err)
  end)
end)
