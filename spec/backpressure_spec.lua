-- Hostile peers that send and never read, over real loopback: the echo
-- plugin, a LineReceiver answering every line and examples/echo.lua stop
-- reading instead of buffering (policies.applyBackpressure); a protocol
-- without backpressure is aborted at maxWriteBuffer; the chat plugin drops
-- a member who does not read, and the others go on chatting.
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local basic = require "loom.basic"
local endpoints = require "loom.endpoints"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")
local echoPlugin = dofile("plugins/echo.lua")
local chatPlugin = dofile("plugins/chat.lua")

local HIGH_WATER = 65536
local READ_SIZE = 65536

-- A client that reads nothing until told, counting what arrives.
local Hostile = protocol.Protocol:extend({ __name = "Hostile" })
function Hostile:init()
  self.got = 0
  self.made = defer.Deferred()
  self.lost = defer.Deferred()
end
function Hostile:connectionMade()
  self.transport:pauseProducing()
  self.made:callback(self)
end
function Hostile:dataReceived(data)
  self.got = self.got + #data
end
function Hostile:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end

local function listen(factory)
  return reactor.listenTCP(0, factory, { interface = "127.0.0.1" })
end

-- Connects proto; its own queue is unlimited, so it can push a lot.
local function connect(port, proto)
  local cf = protocol.ClientFactory:new()
  cf.maxWriteBuffer = 0
  function cf.buildProtocol() return proto end
  reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
  testing.runUntil(proto.made, 5)
  return proto
end

-- Spins until progress() has not changed for 0.4 s: the server stopped
-- reading, and TCP flow control holds the rest back.
local function untilStalled(progress)
  local last, since = nil, reactor.seconds()
  net.waitFor(function()
    local n = progress()
    if n ~= last then
      last, since = n, reactor.seconds()
    end
    return reactor.seconds() - since > 0.4
  end, 15)
end

-- Log lines (text) while f runs.
local function logged(f)
  local lines = {}
  local obs = log.addObserver(function(ev) lines[#lines + 1] = ev.text end)
  local ok, e = pcall(f)
  log.removeObserver(obs)
  if not ok then
    error(e, 0)
  end
  return lines
end

describe("a peer that sends and never reads", function()
  it("cannot make the echo plugin buffer: it stops reading, stays"
    .. " responsive, and echoes everything once the peer reads", function()
      local factory = net.recordingFactory(echoPlugin.Echo)
      local port = listen(factory)
      local nextServer = factory.next
      local c = connect(port, Hostile:new())
      local server = testing.runUntil(nextServer, 5)
      -- More than the kernel's buffers of both directions take on
      -- loopback (tcp_wmem's 4 MiB each way, and the receive queues).
      local total = 32 * 1024 * 1024
      c.transport:write(("e"):rep(total))
      untilStalled(function()
        return c.transport:bufferedBytes() .. "/"
          .. server.transport:bufferedBytes()
      end)
      assert.is_true(c.transport:bufferedBytes() > 0,
        "the server read everything")
      assert.is_true(server.transport.connected)
      assert.is_true(server.transport:bufferedBytes() <= HIGH_WATER + READ_SIZE,
        "server holds " .. server.transport:bufferedBytes() .. " bytes")
      -- Another client is served meanwhile.
      local other = net.Recorder:new()
      local cf = protocol.ClientFactory:new()
      function cf.buildProtocol() return other end
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      testing.runUntil(other.made, 5)
      other.transport:write("still there?")
      other:waitFor("still there?", true, 5)
      other.transport:loseConnection()
      testing.runUntil(other.lost, 5)
      -- Once the peer reads, everything comes back.
      c.transport:resumeProducing()
      net.waitFor(function() return c.got >= total end, 20)
      assert.equal(total, c.got)
      assert.is_true(server.transport.connected)
      c.transport:loseConnection()
      testing.runUntil(c.lost, 5)
      testing.runUntil(port:stopListening(), 5)
    end)

  it("cannot make a LineReceiver answering every line buffer: it stops"
    .. " between two lines, and answers every line once the peer reads",
    function()
      local Pong = basic.LineReceiver:extend({ __name = "Pong",
        delimiter = "\n" })
      function Pong:connectionMade()
        self.answered = 0
        policies.applyBackpressure(self)
      end
      local ANSWER = ("p"):rep(198) .. "\r\n"
      function Pong:lineReceived()
        self.answered = self.answered + 1
        self.transport:write(ANSWER)
      end
      local factory = net.recordingFactory(Pong)
      local port = listen(factory)
      local nextServer = factory.next
      local c = connect(port, Hostile:new())
      local server = testing.runUntil(nextServer, 5)
      local line = ("q"):rep(49) .. "\n"
      local lines = 3 * 1024 * 1024 // #line
      c.transport:write(line:rep(lines))
      untilStalled(function() return server.answered end)
      assert.is_true(server.answered < lines, "every line was answered")
      -- Paused between two lines: at most one answer past the mark.
      assert.is_true(server.transport:bufferedBytes() <= HIGH_WATER
        + #ANSWER, "server holds "
        .. server.transport:bufferedBytes() .. " bytes")
      assert.is_true(server.paused)
      c.transport:resumeProducing()
      net.waitFor(function() return c.got >= lines * #ANSWER end, 20)
      assert.equal(lines, server.answered)
      assert.equal(lines * #ANSWER, c.got)
      c.transport:loseConnection()
      testing.runUntil(c.lost, 5)
      testing.runUntil(port:stopListening(), 5)
    end)
end)

-- Writes `size` bytes on every read, and never looks at its queue.
local Flood = protocol.Protocol:extend({ __name = "Flood", size = 65536 })
function Flood:dataReceived()
  self.transport:write(("f"):rep(self.size))
end
function Flood:connectionLost(reason)
  self.reason = reason
end

-- A Flood server and a Hostile client asking it to write until aborted.
local function flooded(factory, listenWith)
  local port = listenWith and listenWith(factory) or listen(factory)
  local nextServer = factory.next
  local c = connect(port, Hostile:new())
  local server = testing.runUntil(nextServer, 5)
  local lines = logged(function()
    net.waitFor(function()
      if server.reason then
        return true
      end
      c.transport:write("more")
      return false
    end, 20)
  end)
  c.transport:abortConnection()
  testing.runUntil(c.lost, 5)
  testing.runUntil(port:stopListening(), 5)
  return server, lines
end

describe("maxWriteBuffer", function()
  it("aborts a connection whose queue would pass it, with"
    .. " error.WriteBufferFull, logged once", function()
      local factory = net.recordingFactory(Flood)
      factory.maxWriteBuffer = 256 * 1024
      local server, lines = flooded(factory)
      local f = server.reason
      assert.is_truthy(f:check(err.WriteBufferFull))
      assert.is_truthy(f:check(err.ConnectionLost))
      assert.equal("write buffer limit exceeded: the peer left more than"
        .. " 262144 bytes unread (maxWriteBuffer)", f:getErrorMessage())
      local warned = 0
      for _, line in ipairs(lines) do
        if line:find("write buffer limit exceeded", 1, true) then
          warned = warned + 1
          assert.matches("262144 bytes unread %(maxWriteBuffer%): connection"
            .. " aborted", line)
        end
      end
      assert.equal(1, warned)
    end)

  it("is 16 MiB by default on every factory", function()
    assert.equal(16 * 1024 * 1024, protocol.Factory.maxWriteBuffer)
    local factory = net.recordingFactory(Flood)
    Flood.size = 1024 * 1024
    local server = flooded(factory)
    Flood.size = 65536
    assert.is_truthy(server.reason:check(err.WriteBufferFull))
    assert.matches("more than 16777216 bytes",
      server.reason:getErrorMessage(), 1, true)
  end)

  it("is set by an endpoint's maxWriteBuffer=, over the factory's",
    function()
      local factory = net.recordingFactory(Flood)
      local server = flooded(factory, function(f)
        return testing.runUntil(endpoints.serverFromString(reactor,
          "tcp:0:interface=127.0.0.1:maxWriteBuffer=100000"):listen(f), 5)
      end)
      assert.matches("more than 100000 bytes",
        server.reason:getErrorMessage(), 1, true)
    end)

  it("is checked on the client side too (connectTCP's maxWriteBuffer)",
    function()
      local port = listen(protocol.Factory.forProtocol(Hostile))
      local c = net.Recorder:new()
      local cf = protocol.ClientFactory:new()
      function cf.buildProtocol() return c end
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf,
        { maxWriteBuffer = 1000 })
      testing.runUntil(c.made, 5)
      logged(function()
        local chunk = ("c"):rep(65536)
        net.waitFor(function()
          c.transport:write(chunk)
          return c.reason ~= nil
        end, 20)
      end)
      assert.is_truthy(c.reason:check(err.WriteBufferFull))
      testing.runUntil(port:stopListening(), 5)
    end)

  it("0 turns it off", function()
    local factory = net.recordingFactory(Flood)
    factory.maxWriteBuffer = 0
    local port = listen(factory)
    local nextServer = factory.next
    local c = connect(port, Hostile:new())
    local server = testing.runUntil(nextServer, 5)
    for _ = 1, 3 do
      c.transport:write("x")
      net.sleep(0.05)
    end
    local chunk = ("z"):rep(8 * 1024 * 1024)
    server.transport:write(chunk)
    server.transport:write(chunk)
    server.transport:write(chunk)
    assert.is_true(server.transport:bufferedBytes() > 16 * 1024 * 1024)
    assert.is_nil(server.reason)
    c.transport:abortConnection()
    testing.runUntil(c.lost, 5)
    testing.runUntil(port:stopListening(), 5)
  end)

  it("refuses a negative limit in one line", function()
    local port = listen(protocol.Factory.forProtocol(net.Echo))
    local c = connect(port, Hostile:new())
    assert.has_error(function() c.transport:setMaxWriteBuffer(-1) end,
      "bad argument #1 to 'setMaxWriteBuffer' (maxWriteBuffer must be 0 (no"
      .. " limit) or a positive number of bytes)")
    c.transport:abortConnection()
    testing.runUntil(c.lost, 5)
    testing.runUntil(port:stopListening(), 5)
  end)
end)

describe("the chat plugin with a member who never reads", function()
  it("disconnects that member past --max-queue, logs it by name, and the"
    .. " others keep chatting", function()
      local room = chatPlugin.ChatFactory:new({ maxQueue = 256 * 1024,
        rate = 0 }) -- ann floods on purpose (no --rate)
      local port = listen(room)
      local function member(nick, P)
        local m = (P or net.Recorder):new()
        connect(port, m)
        m.transport:write(nick .. "\n")
        return m
      end
      local ann = member("ann")
      ann:waitFor("You are alone here", true)
      local bob = member("bob", Hostile)
      net.waitFor(function() return room.users.bob ~= nil end, 5)
      local cat = member("cat")
      cat:waitFor("Here: ann, bob", true)
      -- ann talks (1 KB lines) until bob is dropped; cat reads it all.
      local line = ("a"):rep(1000) .. "\n"
      local batch = line:rep(64)
      local sent = 0
      local lines = logged(function()
        net.waitFor(function()
          if room.users.bob == nil then
            return true
          end
          if ann.transport:bufferedBytes() == 0 and sent < 64 * 1024 * 1024
              then
            ann.transport:write(batch)
            sent = sent + #batch
          end
          return false
        end, 30)
      end)
      assert.is_nil(room.users.bob)
      local found
      for _, l in ipairs(lines) do
        if l:find("chat: disconnecting bob: more than 262144 bytes of chat"
            .. " left unread (--max-queue)", 1, true) then
          found = true
        end
      end
      assert.is_true(found, "no log line names bob")
      cat:waitFor("* bob has left", true, 10)
      ann.transport:write("still here\n")
      cat:waitFor("<ann> still here\r\n", true, 10)
      assert.is_true(room.users.ann.transport.connected)
      for _, m in ipairs({ ann, cat }) do
        m.transport:loseConnection()
        testing.runUntil(m.lost, 5)
      end
      testing.runUntil(port:stopListening(), 5)
    end)
end)

-- The examples that answer input, run as `loom run` subprocesses: the
-- server's memory does not grow with what a non-reading client sends.
describe("an example that answers input, with a client that never reads",
  function()
    local sub = dofile("spec/support/subprocess.lua")

    local function loomPid(server)
      local s = sub.readFile(string.format("/proc/%d/task/%d/children",
        server.pid, server.pid))
      return tonumber(s:match("%d+"))
    end

    local cases = {
      { "echo.lua", ("e"):rep(32 * 1024 * 1024), 32 * 1024 * 1024 },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. " stops reading instead of buffering", function()
        local server = sub.start("run examples/" .. case[1] .. " 0")
        local pid = loomPid(server)
        local c = Hostile:new()
        local cf = protocol.ClientFactory:new()
        cf.maxWriteBuffer = 0
        function cf.buildProtocol() return c end
        reactor.connectTCP("127.0.0.1", server.port, cf)
        testing.runUntil(c.made, 5)
        local before = sub.rss(pid)
        c.transport:write(case[2])
        untilStalled(function()
          return c.transport:bufferedBytes() .. "/" .. sub.rss(pid)
        end)
        local after = sub.rss(pid)
        assert.is_true(c.transport:bufferedBytes() > 0,
          "the server read everything")
        if not os.getenv("LOOM_SANITIZE") then
          assert.is_true(after - before < 3072, string.format(
            "RSS grew from %d kB to %d kB", before, after))
        end
        c.transport:resumeProducing()
        net.waitFor(function() return c.got >= case[3] end, 20)
        assert.equal(case[3], c.got)
        c.transport:loseConnection()
        testing.runUntil(c.lost, 5)
        assert.equal(0, (sub.stop(server)))
      end)
    end
  end)
