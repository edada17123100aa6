-- The examples/ scripts, each run as a real `build/loom run` subprocess on
-- port 0 and talked to over loopback. Every subprocess runs under
-- `timeout`, so a hung example fails its spec instead of hanging the suite.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local defer = require "loom.defer"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local sub = dofile("spec/support/subprocess.lua")
local LOOM, LIMIT = sub.LOOM, sub.LIMIT
local readFile = sub.readFile

-- `loom run examples/NAME.lua 0` (under timeout), once it is listening:
-- {pid=, port=, handle=, errfile=}.
local function startExample(name)
  return sub.start("run examples/" .. name .. ".lua 0")
end

-- Sends SIGTERM, waits for the exit; returns the exit code, stdout rest and
-- everything the server wrote to stderr.
local function stopExample(server)
  return sub.stop(server)
end

local Recorder, connect, waitFor = sub.Recorder, sub.connect, sub.waitUntil

local function shell(cmd)
  local h = assert(io.popen(cmd .. "; echo \"status=$?\"", "r"))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return out:gsub("status=%d+\n$", ""), status
end

local ISO = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"

describe("examples/echo.lua", function()
  local server
  before_each(function() server = startExample("echo") end)
  after_each(function() if server then stopExample(server) end end)

  it("prints the real port for port 0 and echoes what it gets", function()
    local c = connect(server.port, Recorder:new())
    local d = c:expect(#"hello, loom")
    c.transport:write("hello, loom")
    assert.equal("hello, loom", runUntil(d, 5))
    c.transport:loseConnection()
    runUntil(c.lost, 5)
  end)

  it("serves two clients at once, each getting only its own data", function()
    local a = connect(server.port, Recorder:new())
    local b = connect(server.port, Recorder:new())
    local da, db = a:expect(3), b:expect(3)
    a.transport:write("aaa")
    b.transport:write("bbb")
    assert.equal("aaa", runUntil(da, 5))
    assert.equal("bbb", runUntil(db, 5))
    a.transport:loseConnection()
    b.transport:loseConnection()
    runUntil(defer.gatherResults({ a.lost, b.lost }), 5)
  end)

  it("exits 0 on SIGTERM", function()
    local status = stopExample(server)
    server = nil
    assert.equal(0, status)
  end)
end)

describe("examples/timestamp_server.lua", function()
  local server
  before_each(function() server = startExample("timestamp_server") end)
  after_each(function() if server then stopExample(server) end end)

  it("answers each line with an ISO timestamp and the line", function()
    local Lines = basic.LineReceiver:extend({ delimiter = "\n" })
    function Lines:init()
      self.lines = {}
      self.made = defer.Deferred()
      self.two = defer.Deferred()
    end
    function Lines:connectionMade()
      self.made:callback(self)
    end
    function Lines:lineReceived(line)
      self.lines[#self.lines + 1] = line
      if #self.lines == 2 then
        self.two:callback(self.lines)
      end
    end
    local c = connect(server.port, Lines:new())
    c.transport:write("first\nsecond one\r\n")
    local lines = runUntil(c.two, 5)
    assert.matches("^" .. ISO .. " first$", lines[1])
    assert.matches("^" .. ISO .. " second one$", lines[2])
    c.transport:loseConnection()
  end)

  it("works with examples/timestamp_client.lua reading stdin", function()
    local out, status = shell(string.format(
      "printf 'hi\\nthere you\\n' | timeout %d %s run "
      .. "examples/timestamp_client.lua %d 127.0.0.1", LIMIT, LOOM,
      server.port))
    assert.equal(0, status)
    local replies = {}
    for l in out:gmatch("[^\n]+") do
      replies[#replies + 1] = l
    end
    assert.equal(2, #replies)
    assert.matches("^" .. ISO .. " hi$", replies[1])
    assert.matches("^" .. ISO .. " there you$", replies[2])
  end)
end)

describe("examples/timestamp_client.lua", function()
  it("exits 1 with one line on stderr when it cannot connect", function()
    -- A port that was just free: listen on 0, read it, close it.
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Recorder),
      { interface = "127.0.0.1" })
    local n = port:getHost().port
    runUntil(port:stopListening(), 5)
    local out, status = shell(string.format(
      "echo hi | timeout %d %s run examples/timestamp_client.lua %d 2>&1",
      LIMIT, LOOM, n))
    assert.equal(1, status)
    assert.matches("^timestamp_client: cannot connect: [^\n]*refused\n$", out)
  end)

  it("exits 0 at once with empty stdin", function()
    local out, status = shell(string.format(
      "timeout %d %s run examples/timestamp_client.lua 1 </dev/null",
      LIMIT, LOOM))
    assert.equal(0, status)
    assert.equal("", out)
  end)
end)

describe("examples/logger_server.lua", function()
  it("logs connects, data and disconnects with the peer's address",
    function()
      local server = startExample("logger_server")
      finally(function()
        if server then stopExample(server) end
      end)
      local c = connect(server.port, Recorder:new())
      local peer = "127.0.0.1:" .. c.transport:getHost().port
      c.transport:write("hello logger\n")
      c.transport:loseConnection()
      runUntil(c.lost, 5)
      -- The server logs at its own pace: wait before stopping it, else
      -- shutdown may close the connection before it read the data.
      waitFor(function()
        return readFile(server.errfile):find(peer .. " disconnected", 1, true)
      end, 5)
      local status, _, err = stopExample(server)
      server = nil
      assert.equal(0, status)
      assert.matches(" info: " .. peer .. " connected\n", err, 1, true)
      assert.matches(" info: " .. peer .. ' sent "hello logger\\n"\n', err,
        1, true)
      assert.matches(" info: " .. peer .. " disconnected", err, 1, true)
      assert.equal("", c:text())
    end)
end)
