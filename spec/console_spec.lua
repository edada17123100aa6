-- `loom console` against a real server started with --manhole (and the
-- manhole plugin), driven through a pipe; the --manhole start-up checks.
local testing = require "loom.testing"
local sub = dofile("spec/support/subprocess.lua")

-- An application file: an echo service on a free loopback port, and a
-- global the console can await.
local APP = [[
local application = require "loom.application"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local task = require "loom.task"
local reactor = require "loom.reactor"
local Echo = protocol.Protocol:extend({ __name = "Echo" })
function Echo:dataReceived(data) self.transport:write(data) end
function slowAnswer()
  return task.deferLater(reactor, 0.1, function() return "answer" end)
end
local app = application.Application("consoled")
local echo = strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(Echo))
echo:setName("echo")
echo:setServiceParent(app)
return app
]]

-- Runs `loom console ARGS` with input on its standard input (a file, so
-- no terminal); returns stdout, stderr, exit status.
local function console(args, input, wrap)
  local dir = sub.tmpdir()
  sub.writeFile(dir .. "/in", input)
  local cmd = string.format("%s console %s", sub.LOOM, args)
  if wrap then
    cmd = wrap(cmd)
  end
  local h = assert(io.popen(string.format("timeout %d %s <%s/in 2>%s/err;"
    .. " echo \"status=$?\"", sub.LIMIT, cmd, dir, dir)))
  local out = h:read("a")
  h:close()
  local err = sub.readFile(dir .. "/err")
  os.execute("rm -rf " .. dir)
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), err, status
end

describe("loom console", function()
  local dir
  before_each(function()
    dir = sub.tmpdir()
    sub.writeFile(dir .. "/app.lua", APP)
  end)
  after_each(function()
    os.execute("rm -rf " .. dir)
  end)

  it("evaluates, lists connections and services, and awaits in a server"
    .. " run with --manhole unix:PATH", function()
    local sock = dir .. "/m.sock"
    local server = sub.start(string.format("run --manhole unix:%s %s/app.lua",
      sock, dir), 1)
    local ok, e = pcall(function()
      assert.equal("manhole listening on " .. sock, server.lines[1])
      assert.is_true(os.execute("test -S " .. sock))
      local client = sub.connect(server.port)
      local out, err, status = console(sock, table.concat({
        "1 + 1",
        "function twice(n)",
        "  return 2 * n",
        "end",
        "twice(21)",
        "connections()",
        "services()",
        "await(slowAnswer())",
        "error('oops')",
        "'still here'",
      }, "\n") .. "\n")
      assert.equal("", err)
      assert.equal(0, status)
      assert.not_matches(">>>", out, nil, true) -- no prompts through a pipe
      assert.matches("^loom manhole %(Lua 5%.4%)[^\n]*\n2\n42\n", out)
      assert.matches("\n2 connections\n", out)
      assert.matches("\n  127%.0%.0%.1:" .. client.transport:getHost().port
        .. "%s+Echo%s+0\n", out)
      assert.matches('\n<Application "consoled"> %(running%)\n  '
        .. '<StreamServerEndpointService "echo"> tcp:0:interface=127%.0%.0%.1'
        .. ' %(running%) listening on 127%.0%.0%.1:' .. server.port .. "\n",
        out)
      assert.matches('\n"answer"\nerror: console:1: oops\n.*\n"still'
        .. ' here"\n$', out)
      client.transport:loseConnection()
      testing.runUntil(client.lost, 5)
    end)
    local status = sub.stop(server)
    assert(ok, e)
    assert.equal(0, status)
    assert.is_not_true(os.execute("test -e " .. sock), "socket removed")
  end)

  it("asks for the tcp manhole's password, and refuses a wrong one",
    function()
    sub.writeFile(dir .. "/passwd", "open sesame\n")
    os.execute("chmod 600 " .. dir .. "/passwd")
    local server = sub.start(string.format("run --manhole tcp:0 "
      .. "--manhole-passwd %s/passwd %s/app.lua", dir, dir), 1)
    local ok, e = pcall(function()
      local mport = tonumber(server.lines[1]:match(
        "^manhole listening on 127%.0%.0%.1:(%d+)$"))
      assert.is_not_nil(mport, server.lines[1])
      local out, _, status = console("tcp:127.0.0.1:" .. mport,
        "open sesame\n6 * 7\n")
      assert.equal(0, status)
      assert.matches("\n42\n$", out)
      out, _, status = console("tcp:127.0.0.1:" .. mport,
        "open sesame!\n6 * 7\n")
      assert.equal(1, status)
      assert.equal("wrong password; closing\n", out)
    end)
    local status, _, err = sub.stop(server)
    assert(ok, e)
    assert.equal(0, status)
    assert.matches("manhole: wrong password from 127%.0%.0%.1:%d+", err)
  end)

  it("refuses to start on a loose directory, a non-loopback interface or"
    .. " without a password file", function()
    os.execute("mkdir -m 777 " .. dir .. "/open")
    local cases = {
      { "--manhole unix:" .. dir .. "/open/m.sock",
        "^loom: manhole: refusing unix:.* is writable by its group or others"
        .. " %(mode 777%)" },
      { "--manhole tcp:0:interface=0.0.0.0",
        "^loom: manhole: refusing .*loopback only" },
      { "--manhole tcp:0", "^loom: manhole: a tcp manhole needs"
        .. " %-%-manhole%-passwd FILE" },
    }
    for _, case in ipairs(cases) do
      local out, err, status = sub.loom(string.format("run %s %s/app.lua",
        case[1], dir))
      assert.equal(1, status, case[1])
      assert.equal("", out)
      assert.matches(case[2], err)
      assert.equal(1, select(2, err:gsub("\n", "")), "one line: " .. err)
    end
    assert.is_not_true(os.execute("test -e " .. dir .. "/open/m.sock"))
  end)

  it("says so when it cannot connect", function()
    local out, err, status = console(dir .. "/none.sock", "1\n")
    assert.equal(1, status)
    assert.equal("", out)
    assert.matches("^loom: console: cannot connect to .*none%.sock: ", err)
    _, err, status = console("tcp:nowhere", "")
    assert.equal(1, status)
    assert.matches("is not tcp:HOST:PORT", err)
  end)

  it("serves the manhole plugin beside an application file", function()
    local sock = dir .. "/p.sock"
    local server = sub.start(string.format("manhole --port unix:%s --app"
      .. " %s/app.lua", sock, dir), 1)
    local ok, e = pcall(function()
      local out, _, status = console("unix:" .. sock, "services()\n")
      assert.equal(0, status)
      assert.matches('\n<Application "consoled"> %(running%)\n  '
        .. '<StreamServerEndpointService "echo">', out)
    end)
    local status = sub.stop(server)
    assert(ok, e)
    assert.equal(0, status)
  end)

  it("edits lines with prompts and history on a terminal", function()
    if not os.execute("command -v script >/dev/null 2>&1") then
      pending("script(1) is not installed")
      return
    end
    local sock = dir .. "/m.sock"
    local server = sub.start(string.format("run --manhole unix:%s %s/app.lua",
      sock, dir), 1)
    local ok, e = pcall(function()
      local out, _, status = console(sock, "6 * 7\n", function(cmd)
        return string.format("env HOME=%s script -qec '%s' /dev/null", dir,
          cmd)
      end)
      assert.equal(0, status)
      -- The terminal echoes the line typed after the prompt.
      assert.matches(">>> 6 %* 7\r?\n42\r?\n>>> ", out)
      -- libedit's history file (spaces written as \040).
      assert.matches("\n6\\040%*\\0407\n", sub.readFile(dir
        .. "/.loom_history"))
    end)
    sub.stop(server)
    assert(ok, e)
  end)
end)
