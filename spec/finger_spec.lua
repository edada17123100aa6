-- examples/finger/: the Twisted finger tutorial, steps 1-8. Each step runs
-- as a real `loom run` subprocess on port 0 (under `timeout`), is talked to
-- over loopback, and is killed in a `finally` even when an assertion fails.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local task = require "loom.task"
local err = require "loom.error"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local LOOM = os.getenv("LOOM_BIN") or "build/loom"
local LIMIT = 15 -- seconds any one subprocess may live

local sub = dofile("spec/support/subprocess.lua")
local readFile = sub.readFile

local function shell(cmd)
  local h = assert(io.popen(cmd .. "; echo \"status=$?\"", "r"))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return out:gsub("status=%d+\n$", ""), status
end

-- Sends SIGTERM, waits for the exit; returns the exit code, the rest of
-- stdout and all of stderr. Safe to call twice.
local function stop(server)
  if server.stopped then
    return server.status, server.rest, server.err
  end
  server.stopped = true
  os.execute("kill " .. server.pid .. " 2>/dev/null")
  server.rest = server.handle:read("a")
  local _, how, code = server.handle:close()
  server.status = how == "exit" and code or -1
  server.err = readFile(server.errfile)
  os.remove(server.errfile)
  return server.status, server.rest, server.err
end

-- Starts examples/finger/NAME.lua with one argument; returns the server
-- {pid=, handle=, errfile=, line=} once it printed its first line, and
-- registers its stop with the running spec's `finally`.
local function start(name, argument)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "sh -c 'echo $$; exec timeout %d %s run examples/finger/%s.lua %s' 2>%s",
    LIMIT, LOOM, name, argument, errfile), "r"))
  local server = { pid = assert(tonumber(h:read("l")), "no pid from sh"),
    handle = h, errfile = errfile }
  finally(function() stop(server) end)
  server.line = h:read("l")
  if server.line == nil then
    local _, _, msg = stop(server)
    error(name .. " did not start: " .. msg)
  end
  return server
end

-- Starts a step on port 0 and returns it with its real port.
local function listen(name)
  local server = start(name, "0")
  local port = tonumber(server.line:match("^listening on 127%.0%.0%.1:(%d+)$"))
  assert(port and port > 0, "unexpected first line: " .. server.line)
  server.port = port
  return server
end

-- A client protocol recording what it receives and how it was closed.
local Recorder = sub.Recorder

-- Connects a Recorder to the port (not waiting for connectionMade).
local function open(port)
  local proto = Recorder()
  local cf = protocol.ClientFactory()
  function cf:buildProtocol()
    return proto
  end
  reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
  return proto
end

local function connect(port)
  local proto = open(port)
  runUntil(proto.made, 5)
  return proto
end

-- Sends one line and returns what the server said before closing.
local function finger(port, user)
  local c = connect(port)
  c.transport:write(user .. "\r\n")
  runUntil(c.lost, 5)
  assert.truthy(c.reason:check(err.ConnectionDone))
  return c:text()
end

local function sleep(secs)
  runUntil(task.deferLater(reactor, secs), secs + 5)
end

describe("examples/finger/finger01.lua (a bare reactor)", function()
  it("runs, and stops by itself after the given seconds with exit 0",
    function()
      local out, status = shell(string.format(
        "timeout %d %s run examples/finger/finger01.lua 0.1", LIMIT, LOOM))
      assert.equal(0, status)
      assert.equal("reactor running; press Ctrl-C to stop\n"
        .. "reactor stopped\n", out)
    end)

  it("runs until SIGTERM, then exits 0", function()
    local server = start("finger01", "")
    assert.equal("reactor running; press Ctrl-C to stop", server.line)
    local status, rest = stop(server)
    assert.equal(0, status)
    assert.equal("reactor stopped\n", rest)
  end)
end)

describe("examples/finger/finger02.lua (a protocol doing nothing)", function()
  it("accepts a connection and holds it open", function()
    local server = listen("finger02")
    local c = connect(server.port)
    c.transport:write("moshez\r\n")
    sleep(0.2)
    assert.is_false(c.lost.called)
    assert.equal("", c:text())
    c.transport:loseConnection()
    runUntil(c.lost, 5)
  end)

  it("closes held connections cleanly when stopped (exit 0)", function()
    local server = listen("finger02")
    local c = connect(server.port)
    assert.equal(0, (stop(server)))
    runUntil(c.lost, 5)
    assert.truthy(c.reason:check(err.ConnectionDone))
  end)
end)

describe("examples/finger/finger03.lua (dropping connections)", function()
  it("closes each connection at once, with nothing sent", function()
    local server = listen("finger03")
    local c = open(server.port)
    runUntil(c.lost, 5)
    assert.truthy(c.reason:check(err.ConnectionDone))
    assert.equal("", c:text())
  end)
end)

describe("examples/finger/finger04.lua (reading the user name)", function()
  it("waits for a line, then closes without answering", function()
    local server = listen("finger04")
    local c = connect(server.port)
    c.transport:write("mosh")
    sleep(0.1)
    assert.is_false(c.lost.called)
    c.transport:write("ez\r\n")
    runUntil(c.lost, 5)
    assert.truthy(c.reason:check(err.ConnectionDone))
    assert.equal("", c:text())
  end)
end)

describe("examples/finger/finger05.lua (always No such user)", function()
  it("answers No such user to every user, then closes", function()
    local server = listen("finger05")
    assert.equal("No such user\r\n", finger(server.port, "moshez"))
    assert.equal("No such user\r\n", finger(server.port, "nobody"))
  end)
end)

describe("examples/finger/finger06.lua (a factory with users)", function()
  it("answers a known user's status", function()
    local server = listen("finger06")
    assert.equal("Happy and well\r\n", finger(server.port, "moshez"))
  end)

  it("answers No such user to an unknown user", function()
    local server = listen("finger06")
    assert.equal("No such user\r\n", finger(server.port, "nobody"))
  end)

  it("is what examples/finger/client.lua prints", function()
    local server = listen("finger06")
    local out, status = shell(string.format(
      "timeout %d %s run examples/finger/client.lua moshez %d",
      LIMIT, LOOM, server.port))
    assert.equal(0, status)
    assert.equal("Happy and well\r\n", out)
  end)
end)

describe("examples/finger/finger07.lua (Deferreds)", function()
  it("answers known and unknown users through the callback", function()
    local server = listen("finger07")
    assert.equal("Happy and well\r\n", finger(server.port, "moshez"))
    assert.equal("No such user\r\n", finger(server.port, "nobody"))
  end)

  it("answers Internal error in server through the errback, and logs it",
    function()
      local server = listen("finger07")
      assert.equal("Internal error in server\r\n", finger(server.port, "crash"))
      -- The server goes on serving after the failure.
      assert.equal("Happy and well\r\n", finger(server.port, "moshez"))
      local status, _, stderr = stop(server)
      assert.equal(0, status)
      assert.matches("error: looking up crash\n", stderr, 1, true)
      assert.matches("the user database crashed", stderr, 1, true)
    end)
end)

describe("examples/finger/finger08.lua (asynchronous lookups)", function()
  it("answers two concurrent clients", function()
    local server = listen("finger08")
    local a, b = connect(server.port), connect(server.port)
    a.transport:write("moshez\r\n")
    b.transport:write("nobody\r\n")
    runUntil(defer.gatherResults({ a.lost, b.lost }), 5)
    assert.equal("Happy and well\r\n", a:text())
    assert.equal("No such user\r\n", b:text())
  end)

  it("overlaps the lookups: 8 clients take less than 8 lookups' time",
    function()
      local server = listen("finger08")
      local clients, lost = {}, {}
      for i = 1, 8 do
        clients[i] = connect(server.port)
        lost[i] = clients[i].lost
      end
      local t0 = reactor.seconds()
      for i = 1, 8 do
        clients[i].transport:write("moshez\r\n")
      end
      runUntil(defer.gatherResults(lost), 5)
      -- One after another they would take at least 8 * 0.05 s.
      assert.is_true(reactor.seconds() - t0 < 0.35)
      for i = 1, 8 do
        assert.equal("Happy and well\r\n", clients[i]:text())
      end
    end)
end)
