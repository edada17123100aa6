-- `loom run` with application files, the --logfile/--pidfile flags, and
-- the finger tutorial's application step, each as a real subprocess.
local sub = dofile("spec/support/subprocess.lua")
local testing = require "loom.testing"

local function tmpfile(contents)
  local path = os.tmpname()
  sub.writeFile(path, contents)
  return path
end

-- An application with two services: a listener on port 0 and a service
-- whose stopService takes STOP seconds; both log their start and stop.
local SLOW_APP = [[
local application = require "loom.application"
local strports = require "loom.strports"
local protocol = require "loom.protocol"
local task = require "loom.task"
local reactor = require "loom.reactor"
local stop = tonumber(arg[1]) or 0
local app = application.Application("slow")
local Slow = application.Service:extend({ __name = "Slow" })
function Slow:startService()
  application.Service.startService(self)
  io.stdout:write("slow started\n")
end
function Slow:stopService()
  application.Service.stopService(self)
  io.stdout:write("slow stopping\n")
  return task.deferLater(reactor, stop, function()
    io.stdout:write("slow stopped\n")
  end)
end
Slow:new("slow"):setServiceParent(app)
local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(d) self.transport:write(d) end
local port = strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(Echo))
port:setName("port")
port:setServiceParent(app)
local stopPort = port.stopService
function port:stopService()
  io.stdout:write("port stopping\n")
  return stopPort(self)
end
return app
]]

describe("loom run with an application file", function()
  it("starts the tree, serves, and on SIGTERM stops it in reverse, waiting"
    .. " for a slow stopService, then exits 0", function()
      local app = tmpfile(SLOW_APP)
      local server = sub.start("run " .. app .. " 0.5")
      assert.equal("slow started", server.lines[1])
      local c = sub.connect(server.port)
      c.transport:write("hi")
      c:waitFor("hi", true)
      c.transport:loseConnection()
      testing.runUntil(c.lost, 5)
      local t0 = os.time()
      local status, rest, err = sub.stop(server, "TERM")
      os.remove(app)
      assert.equal(0, status)
      assert.equal("port stopping\nslow stopping\nslow stopped\n", rest)
      assert.matches("received SIGTERM", err)
      assert.is_true(os.time() - t0 <= 3)
    end)

  it("works with a global `application` instead of a return value",
    function()
      -- (_G: SLOW_APP has a local named application.)
      local app = tmpfile((SLOW_APP:gsub("return app\n$",
        "_G.application = app\n")))
      local server = sub.start("run " .. app)
      local status = sub.stop(server, "INT")
      os.remove(app)
      assert.equal(0, status)
    end)

  it("gives up on a service that never stops after the timeout, naming it",
    function()
      local app = tmpfile(SLOW_APP:gsub("return app\n$", [[
require("loom.cli").stopTimeout = 0.3
return app
]]))
      local server = sub.start("run " .. app .. " 100")
      local status, _, err = sub.stop(server)
      os.remove(app)
      assert.equal(0, status)
      assert.matches("services did not stop within 0.3s: slow/slow", err, 1,
        true)
    end)

  it("a port in use is one line and exit 1", function()
    local server = sub.start("echo --port tcp:0:interface=127.0.0.1")
    local app = tmpfile(string.format([[
local application = require "loom.application"
local strports = require "loom.strports"
local protocol = require "loom.protocol"
local app = application.Application("x")
strports.service("tcp:%d:interface=127.0.0.1",
  protocol.Factory.forProtocol(protocol.Protocol)):setServiceParent(app)
return app
]], server.port))
    local out, err, status = sub.loom("run " .. app)
    os.remove(app)
    sub.stop(server)
    assert.equal(1, status)
    assert.equal("", out)
    assert.matches("^loom: CannotListenError: listenTCP: 127%.0%.0%.1:%d+:"
      .. " EADDRINUSE[^\n]*\n$", err)
  end)

  it("a startService that raises is one line and exit 1", function()
    local app = tmpfile([[
local application = require "loom.application"
local app = application.Application("x")
local s = application.Service:new("bad")
function s.startService() error("no database", 0) end
s:setServiceParent(app)
return app
]])
    local _, err, status = sub.loom("run " .. app)
    os.remove(app)
    assert.equal(1, status)
    assert.equal("loom: no database\n", err)
  end)

  it("an `application` that is not a service is one line and exit 1",
    function()
      local app = tmpfile("application = 42\n")
      local _, err, status = sub.loom("run " .. app)
      os.remove(app)
      assert.equal(1, status)
      assert.equal("loom: " .. app .. ": `application` must be a service (an"
        .. " Application), got number\n", err)
    end)
end)

describe("loom --pidfile", function()
  it("writes the pid while running and removes the file on exit",
    function()
      local pidfile = os.tmpname()
      os.remove(pidfile)
      local server = sub.start("--pidfile " .. pidfile
        .. " echo --port tcp:0:interface=127.0.0.1")
      local pid = tonumber(sub.readFile(pidfile))
      assert.is_truthy(pid)
      assert.truthy(io.open("/proc/" .. pid .. "/stat"))
      assert.equal(0, (sub.stop(server)))
      assert.is_nil(io.open(pidfile))
    end)

  it("refuses to start when a live process holds it", function()
    local pidfile = tmpfile("1\n") -- init is always alive
    local out, err, status = sub.loom("--pidfile " .. pidfile
      .. " echo --port tcp:0:interface=127.0.0.1")
    local still = sub.readFile(pidfile)
    os.remove(pidfile)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: pidfile " .. pidfile .. " is held by running process"
      .. " 1\n", err)
    assert.equal("1\n", still)
  end)

  it("replaces a stale pidfile", function()
    local pidfile = tmpfile("999999999\n")
    local server = sub.start("run --pidfile " .. pidfile .. " "
      .. "examples/echo.lua 0")
    local pid = tonumber(sub.readFile(pidfile))
    assert.is_truthy(pid)
    assert.is_not.equal(999999999, pid)
    sub.stop(server)
    assert.is_nil(io.open(pidfile))
  end)

  it("refuses a symlink and leaves its target untouched", function()
    local dir = sub.tmpdir()
    local target, link = dir .. "/precious", dir .. "/loom.pid"
    sub.writeFile(target, "precious\n")
    for _, to in ipairs({ target, dir .. "/missing" }) do
      os.execute(string.format("ln -sfn %s %s", to, link))
      local out, err, status = sub.loom("--pidfile " .. link
        .. " echo --port tcp:0:interface=127.0.0.1")
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal("loom: pidfile " .. link .. " is a symbolic link (not"
        .. " followed)\n", err)
    end
    assert.equal("precious\n", sub.readFile(target))
    assert.is_nil(io.open(dir .. "/missing"))
    os.execute("rm -rf " .. dir)
  end)

  it("lets exactly one of two hosts started together run", function()
    local dir = sub.tmpdir()
    local pidfile, stopfile = dir .. "/loom.pid", dir .. "/stop"
    -- Prints "ran", then holds the pidfile until the spec says stop.
    sub.writeFile(dir .. "/hold.lua", [[
print("ran")
io.stdout:flush()
for _ = 1, 200 do
  if io.open(arg[1]) then break end
  os.execute("sleep 0.05")
end
]])
    local one = string.format("timeout %d %s --pidfile %s run %s/hold.lua %s",
      sub.LIMIT, sub.LOOM, pidfile, dir, stopfile)
    local errfile = dir .. "/err"
    for try = 1, 20 do
      local h = assert(io.popen(string.format("(%s & %s & wait) 2>%s", one,
        one, errfile)))
      assert.equal("ran", h:read("l"), "try " .. try)
      -- The other one refuses at once (or, wrongly, runs too).
      sub.waitUntil(function() return sub.readFile(errfile) ~= "" end, 5)
      sub.writeFile(stopfile, "")
      local rest = h:read("a")
      h:close()
      os.remove(stopfile)
      assert.equal("", rest, "try " .. try)
      assert.matches("^loom: pidfile " .. pidfile:gsub("%p", "%%%0")
        .. " is held by running process %d+\n$", sub.readFile(errfile))
      assert.is_nil(io.open(pidfile))
    end
    os.execute("rm -rf " .. dir)
  end)

  it("on exit, leaves a pidfile that is no longer its own", function()
    local pidfile = os.tmpname()
    os.remove(pidfile)
    local server = sub.start("--pidfile " .. pidfile
      .. " echo --port tcp:0:interface=127.0.0.1")
    os.remove(pidfile)
    sub.writeFile(pidfile, "1\n")
    assert.equal(0, (sub.stop(server)))
    assert.equal("1\n", sub.readFile(pidfile))
    os.remove(pidfile)
  end)
end)

describe("loom --logfile", function()
  it("logs to the file and reopens it on SIGUSR1 (log rotation)",
    function()
      local log = os.tmpname()
      local server = sub.start("--logfile=" .. log
        .. " echo --port tcp:0:interface=127.0.0.1")
      local loomPid = tonumber(sub.readFile(string.format(
        "/proc/%d/task/%d/children", server.pid, server.pid)):match("%d+"))
      os.rename(log, log .. ".1")
      os.execute("kill -USR1 " .. loomPid)
      sub.waitUntil(function() return io.open(log) ~= nil end, 5)
      local status, _, err = sub.stop(server)
      local new = sub.readFile(log)
      os.remove(log)
      os.remove(log .. ".1")
      assert.equal(0, status)
      assert.equal("", err)
      assert.matches("info: received SIGTERM, shutting down", new)
    end)

  it("--logfile in a missing directory is one line and exit 1", function()
    local _, err, status = sub.loom("--logfile /nonexistent/dir/x.log echo")
    assert.equal(1, status)
    assert.matches("^loom: %-%-logfile: /nonexistent/dir/x%.log: No such"
      .. " file or directory\n$", err)
  end)

  it("a flag without its value is one line and exit 1", function()
    local _, err, status = sub.loom("--pidfile")
    assert.equal(1, status)
    assert.equal("loom: --pidfile needs a PATH\n", err)
  end)

  it("an unknown flag after run is one line and exit 1", function()
    local _, err, status = sub.loom("run --frob x.lua")
    assert.equal(1, status)
    assert.equal("loom: run: unknown flag '--frob' (see loom --help)\n", err)
  end)
end)

describe("examples/finger/finger_app.lua", function()
  it("serves the users of a JSON file through its FingerService", function()
    local users = tmpfile('{"ann": "Out to lunch", "bob": "Learning loom"}')
    local server = sub.start("run examples/finger/finger_app.lua " .. users
      .. " tcp:0:interface=127.0.0.1")
    local function ask(q)
      local c = sub.connect(server.port)
      c.transport:write(q .. "\r\n")
      testing.runUntil(c.lost, 5)
      return c:text()
    end
    assert.equal("Out to lunch\r\n", ask("ann"))
    assert.equal("No such user\r\n", ask("nobody"))
    os.remove(users)
    assert.equal(0, (sub.stop(server)))
  end)

  it("ships the tutorial's users in examples/finger/users.json", function()
    local server = sub.start("run examples/finger/finger_app.lua"
      .. " examples/finger/users.json tcp:0:interface=127.0.0.1")
    local c = sub.connect(server.port)
    c.transport:write("moshez\r\n")
    testing.runUntil(c.lost, 5)
    assert.equal("Happy and well\r\n", c:text())
    assert.equal(0, (sub.stop(server)))
  end)

  it("a missing users file is one line and exit 1", function()
    local _, err, status = sub.loom("run examples/finger/finger_app.lua"
      .. " /nonexistent.json tcp:0:interface=127.0.0.1")
    assert.equal(1, status)
    assert.equal("loom: finger: /nonexistent.json: No such file or"
      .. " directory\n", err)
  end)
end)
