-- Specs for loom.testing: StringTransport (as Twisted's proto_helpers),
-- connectedPair, Clock and runUntil.

local testing = require "loom.testing"
local basic = require "loom.basic"
local protocol = require "loom.protocol"

local StringTransport = testing.StringTransport

describe("loom.testing.StringTransport", function()
  it("records writes and returns them from value()", function()
    local t = StringTransport()
    t:write("hello ")
    t:write("")
    t:write("world")
    assert.equals("hello world", t:value())
    assert.equals("hello world", t:value())
  end)

  it("records writeSequence as the concatenation of its items", function()
    local t = StringTransport()
    t:writeSequence({ "a", "b", "c" })
    t:write("d")
    assert.equals("abcd", t:value())
  end)

  it("starts empty and forgets everything on clear()", function()
    local t = StringTransport()
    assert.equals("", t:value())
    t:write("x")
    t:clear()
    assert.equals("", t:value())
    t:write("y")
    assert.equals("y", t:value())
  end)

  it("raises a clear error when write gets a non-string", function()
    local t = StringTransport()
    assert.has_error(function() t:write(42) end,
      "StringTransport.write: data must be a string, got number")
    assert.has_error(function() t:write(nil) end,
      "StringTransport.write: data must be a string, got nil")
  end)

  it("raises a clear error when writeSequence holds a non-string", function()
    local t = StringTransport()
    assert.has_error(function() t:writeSequence({ "a", {} }) end,
      "StringTransport.writeSequence: data must be a string (item 2), got "
        .. "table")
    assert.equals("", t:value())
  end)

  it("raises when writeSequence gets something other than a list", function()
    local t = StringTransport()
    assert.has_error(function() t:writeSequence("abc") end,
      "StringTransport.writeSequence: expected a list of strings, got string")
  end)

  it("marks itself disconnecting on loseConnection", function()
    local t = StringTransport()
    assert.is_false(t.disconnecting)
    t:loseConnection()
    assert.is_true(t.disconnecting)
    assert.is_false(t.disconnected)
  end)

  it("marks itself disconnected and disconnecting on abortConnection",
    function()
      local t = StringTransport()
      t:abortConnection()
      assert.is_true(t.disconnected)
      assert.is_true(t.disconnecting)
    end)

  it("records loseWriteConnection", function()
    local t = StringTransport()
    assert.is_false(t.writeDisconnected)
    t:loseWriteConnection()
    assert.is_true(t.writeDisconnected)
    assert.is_false(t.disconnecting)
  end)

  it("returns fake peer and host addresses", function()
    local t = StringTransport()
    assert.same({ type = "TCP", host = "192.168.1.1", port = 54321 },
      t:getPeer())
    assert.same({ type = "TCP", host = "10.0.0.1", port = 12345 },
      t:getHost())
  end)

  it("returns fresh address tables, so a caller cannot corrupt them",
    function()
      local t = StringTransport()
      t:getPeer().port = 1
      assert.equals(54321, t:getPeer().port)
    end)

  it("returns the addresses given in opts", function()
    local peer = { type = "UNIX", host = "/tmp/sock" }
    local host = { type = "TCP", host = "::1", port = 80 }
    local t = StringTransport({ peerAddress = peer, hostAddress = host })
    assert.equals(peer, t:getPeer())
    assert.equals(host, t:getHost())
  end)

  it("records setTcpNoDelay and setTcpKeepAlive", function()
    local t = StringTransport()
    assert.is_false(t:getTcpNoDelay())
    t:setTcpNoDelay(true)
    t:setTcpKeepAlive(true)
    assert.is_true(t.tcpNoDelay)
    assert.is_true(t:getTcpKeepAlive())
    t:setTcpNoDelay(false)
    assert.is_false(t.tcpNoDelay)
  end)

  it("registers one producer and records whether it streams", function()
    local t = StringTransport()
    local producer = {}
    t:registerProducer(producer, true)
    assert.equals(producer, t.producer)
    assert.is_true(t.streaming)
    t:unregisterProducer()
    assert.is_nil(t.producer)
    assert.is_nil(t.streaming)
    t:registerProducer(producer, false)
    assert.is_false(t.streaming)
  end)

  it("refuses a second producer", function()
    local t = StringTransport()
    t:registerProducer({}, true)
    assert.has_error(function() t:registerProducer({}, true) end,
      "StringTransport.registerProducer: cannot register two producers")
  end)

  it("refuses to unregister when no producer is registered", function()
    local t = StringTransport()
    assert.has_error(function() t:unregisterProducer() end,
      "StringTransport.unregisterProducer: no producer is registered")
  end)

  it("tracks producerState through pause, resume and stop", function()
    local t = StringTransport()
    assert.equals("producing", t.producerState)
    t:pauseProducing()
    assert.equals("paused", t.producerState)
    t:resumeProducing()
    assert.equals("producing", t.producerState)
    t:stopProducing()
    assert.equals("stopped", t.producerState)
  end)

  it("refuses to resume a stopped producer", function()
    local t = StringTransport()
    t:stopProducing()
    assert.has_error(function() t:resumeProducing() end,
      "StringTransport.resumeProducing: cannot resume a stopped producer")
  end)

  it("refuses to resume after loseConnection unless lenient", function()
    local t = StringTransport()
    t:loseConnection()
    assert.has_error(function() t:resumeProducing() end,
      "StringTransport.resumeProducing: cannot resume producing after "
        .. "loseConnection")
    local lenient = StringTransport({ lenient = true })
    lenient:loseConnection()
    lenient:resumeProducing()
    assert.equals("producing", lenient.producerState)
  end)

  it("keeps separate state per instance", function()
    local a, b = StringTransport(), StringTransport()
    a:write("a")
    a:loseConnection()
    assert.equals("", b:value())
    assert.is_false(b.disconnecting)
  end)

  it("serves as a protocol's transport", function()
    local Echo = basic.LineReceiver:extend()
    function Echo:lineReceived(line)
      self:sendLine(line)
    end
    local p = Echo()
    local t = StringTransport()
    p:makeConnection(t)
    p:dataReceived("ping\r\npong\r\n")
    assert.equals("ping\r\npong\r\n", t:value())
    assert.equals(t, p.transport)
  end)
end)

describe("loom.testing.StringTransportWithDisconnection", function()
  it("calls the protocol's connectionLost once on loseConnection", function()
    local lost = {}
    local t = testing.StringTransportWithDisconnection()
    t.protocol = { connectionLost = function(_, reason)
      lost[#lost + 1] = reason
    end }
    t:loseConnection()
    t:loseConnection()
    assert.equals(1, #lost)
    assert.is_true(lost[1].value:isa(require("loom.error").ConnectionDone))
    assert.is_true(t.disconnecting)
    assert.is_false(t.connected)
  end)
end)

describe("loom.testing.connectedPair", function()
  local function Recorder()
    local P = protocol.Protocol:extend()
    function P:connectionMade()
      self.data, self.lost = {}, {}
    end
    function P:dataReceived(d)
      self.data[#self.data + 1] = d
    end
    function P:connectionLost(reason)
      self.lost[#self.lost + 1] = reason
    end
    return P()
  end

  it("connects both protocols to StringTransports with matching addresses",
    function()
      local s, c = Recorder(), Recorder()
      local pair = testing.connectedPair(s, c)
      assert.equals(pair.serverTransport, s.transport)
      assert.equals(pair.clientTransport, c.transport)
      assert.same(s.transport:getHost(), c.transport:getPeer())
      assert.same(c.transport:getHost(), s.transport:getPeer())
    end)

  it("delivers each side's writes to the other on pump()", function()
    local s, c = Recorder(), Recorder()
    local pair = testing.connectedPair(s, c)
    c.transport:write("hello")
    s.transport:write("welcome")
    assert.same({}, s.data)
    assert.is_true(pair:pump())
    assert.same({ "hello" }, s.data)
    assert.same({ "welcome" }, c.data)
    assert.is_false(pair:pump())
  end)

  it("keeps pumping while the protocols answer each other", function()
    local Ping = basic.LineReceiver:extend()
    function Ping:connectionMade()
      self.seen = {}
    end
    function Ping:lineReceived(line)
      self.seen[#self.seen + 1] = line
      local n = tonumber(line)
      if n < 5 then
        self:sendLine(tostring(n + 1))
      end
    end
    local s, c = Ping(), Ping()
    local pair = testing.connectedPair(s, c)
    c:sendLine("0")
    pair:pump()
    assert.same({ "0", "2", "4" }, s.seen)
    assert.same({ "1", "3", "5" }, c.seen)
  end)

  it("holds data for a side whose transport is paused", function()
    local s, c = Recorder(), Recorder()
    local pair = testing.connectedPair(s, c)
    s.transport:pauseProducing()
    c.transport:write("held")
    pair:pump()
    assert.same({}, s.data)
    s.transport:resumeProducing()
    pair:pump()
    assert.same({ "held" }, s.data)
  end)

  it("delivers pending data, then connectionLost to both sides, after "
    .. "loseConnection", function()
    local s, c = Recorder(), Recorder()
    local pair = testing.connectedPair(s, c)
    s.transport:write("bye")
    s.transport:loseConnection()
    pair:pump()
    assert.same({ "bye" }, c.data)
    assert.equals(1, #s.lost)
    assert.equals(1, #c.lost)
    local err = require "loom.error"
    assert.is_true(c.lost[1].value:isa(err.ConnectionDone))
    pair:pump()
    assert.equals(1, #c.lost)
  end)

  it("reports ConnectionLost after abortConnection", function()
    local s, c = Recorder(), Recorder()
    local pair = testing.connectedPair(s, c)
    c.transport:abortConnection()
    pair:pump()
    local err = require "loom.error"
    assert.is_true(s.lost[1].value:isa(err.ConnectionLost))
  end)
end)

describe("loom.testing.Clock", function()
  it("is loom.task.Clock", function()
    assert.equals(require("loom.task").Clock, testing.Clock)
  end)

  it("makes clocks that run delayed calls on advance", function()
    local clock = testing.Clock()
    local fired = false
    clock:callLater(2, function() fired = true end)
    clock:advance(1)
    assert.is_false(fired)
    clock:advance(1)
    assert.is_true(fired)
  end)
end)

-- runUntil against a fake reactor driven by a task.Clock: run() advances
-- the clock one step at a time until stop() is called.
local function fakeReactor()
  local clock = testing.Clock()
  local r = { running = false, runs = 0 }
  function r.callLater(secs, f, ...)
    return clock:callLater(secs, f, ...)
  end
  function r.stop()
    assert(r.running, "stop() while not running")
    r.running = false
  end
  function r.run()
    assert(not r.running, "run() while running")
    r.runs = r.runs + 1
    r.running = true
    for _ = 1, 100000 do
      if not r.running then
        return
      end
      clock:advance(0.01)
    end
    error("fake reactor never stopped")
  end
  r.clock = clock
  return r
end

describe("loom.testing.runUntil (fake reactor)", function()
  local defer = require "loom.defer"
  local err = require "loom.error"
  local saved, reactor

  before_each(function()
    saved = testing._getReactor
    reactor = fakeReactor()
    testing._getReactor = function() return reactor end
  end)

  after_each(function()
    testing._getReactor = saved
  end)

  it("returns the result of an already fired Deferred without running",
    function()
      assert.equals(42, testing.runUntil(defer.succeed(42)))
      assert.equals(0, reactor.runs)
    end)

  it("raises the Failure of an already failed Deferred", function()
    local ok, f = pcall(testing.runUntil, defer.fail(err.ConnectionLost("x")))
    assert.is_false(ok)
    assert.is_true(f.value:isa(err.ConnectionLost))
    assert.equals(0, reactor.runs)
  end)

  it("runs the reactor until the Deferred fires", function()
    local d = defer.Deferred()
    reactor.callLater(1, function() d:callback("done") end)
    assert.equals("done", testing.runUntil(d))
    assert.equals(1, reactor.runs)
    assert.is_false(reactor.running)
  end)

  it("raises the Failure the Deferred fails with", function()
    local d = defer.Deferred()
    reactor.callLater(1, function() d:errback(err.ConnectionRefusedError("no")) end)
    local ok, f = pcall(testing.runUntil, d)
    assert.is_false(ok)
    assert.is_true(f.value:isa(err.ConnectionRefusedError))
    assert.is_false(reactor.running)
  end)

  it("raises TimeoutError after the timeout and leaves nothing scheduled",
    function()
      local d = defer.Deferred()
      local ok, e = pcall(testing.runUntil, d, 2)
      assert.is_false(ok)
      assert.is_true(e:isa(err.TimeoutError))
      assert.is_false(reactor.running)
      assert.same({}, reactor.clock:getDelayedCalls())
      -- Firing later does not stop a later run.
      d:callback("late")
      local d2 = defer.Deferred()
      reactor.callLater(1, function() d2:callback("next") end)
      assert.equals("next", testing.runUntil(d2))
    end)

  it("cancels its timeout once the Deferred fires", function()
    local d = defer.Deferred()
    reactor.callLater(0.5, function() d:callback(1) end)
    testing.runUntil(d, 10)
    assert.same({}, reactor.clock:getDelayedCalls())
  end)

  it("refuses to nest inside a running reactor", function()
    reactor.running = true
    assert.has_error(function() testing.runUntil(defer.Deferred()) end,
      "runUntil: the reactor is already running")
  end)
end)

local hasReactor = pcall(require, "loom.reactor")
local describeReal = hasReactor and describe or pending

describeReal("loom.testing.runUntil (real reactor)", function()
  local reactor = require "loom.reactor"
  local defer = require "loom.defer"
  local err = require "loom.error"

  it("spins the reactor until a Deferred fires and returns its result",
    function()
      local d = defer.Deferred()
      reactor.callLater(0.01, function() d:callback("ok") end)
      assert.equals("ok", testing.runUntil(d, 2))
      assert.is_false(reactor.running)
    end)

  it("raises the Failure a Deferred fails with", function()
    local d = defer.Deferred()
    reactor.callLater(0.01, function() d:errback(err.ConnectionLost("gone")) end)
    local ok, f = pcall(testing.runUntil, d, 2)
    assert.is_false(ok)
    assert.is_true(f.value:isa(err.ConnectionLost))
    assert.is_false(reactor.running)
  end)

  it("raises TimeoutError and leaves the reactor reusable", function()
    local ok, e = pcall(testing.runUntil, defer.Deferred(), 0.05)
    assert.is_false(ok)
    assert.is_true(e:isa(err.TimeoutError))
    assert.is_false(reactor.running)
    local d = defer.Deferred()
    reactor.callLater(0.01, function() d:callback("again") end)
    assert.equals("again", testing.runUntil(d, 2))
  end)

  it("returns at once for a Deferred that already fired", function()
    assert.equals(7, testing.runUntil(defer.succeed(7)))
    assert.is_false(reactor.running)
  end)
end)
