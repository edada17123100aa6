-- loom.policies: TimeoutMixin (with task.Clock, then over real loopback),
-- mixin and applyBackpressure. The hostile-peer specs of backpressure and
-- maxWriteBuffer are in backpressure_spec.lua.
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local reactor = require "loom.reactor"
local task = require "loom.task"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")

-- A protocol timing out after 10 s of silence, on a task.Clock.
local Timed = protocol.Protocol:extend({ __name = "Timed" })
policies.mixin(Timed, policies.TimeoutMixin)
function Timed:connectionMade()
  self:setTimeout(10)
end
function Timed:dataReceived()
  self:resetTimeout()
end

local function timed(clock)
  local p = Timed:new()
  p.callLater = clock.callLater
  local t = testing.StringTransport()
  p:makeConnection(t)
  return p, t
end

describe("policies.mixin", function()
  it("copies the mixin's members the class does not define itself",
    function()
      local C = protocol.Protocol:extend({ setTimeout = "own" })
      assert.equal(C, policies.mixin(C, policies.TimeoutMixin))
      assert.equal("own", C.setTimeout)
      assert.equal(policies.TimeoutMixin.resetTimeout, C.resetTimeout)
      assert.equal(15, C.abortTimeout)
    end)
end)

describe("policies.TimeoutMixin", function()
  local clock
  before_each(function()
    clock = task.Clock()
  end)

  it("closes the connection after timeOut seconds of silence", function()
    local _, t = timed(clock)
    clock:advance(9.9)
    assert.is_false(t.disconnecting)
    clock:advance(0.1)
    assert.is_true(t.disconnecting)
  end)

  it("resetTimeout restarts the count", function()
    local p, t = timed(clock)
    for _ = 1, 5 do
      clock:advance(8)
      p:dataReceived("x")
    end
    assert.is_false(t.disconnecting)
    clock:advance(10)
    assert.is_true(t.disconnecting)
  end)

  it("setTimeout returns the previous value and re-arms from now",
    function()
      local p, t = timed(clock)
      clock:advance(5)
      assert.equal(10, p:setTimeout(20))
      clock:advance(19)
      assert.is_false(t.disconnecting)
      clock:advance(1)
      assert.is_true(t.disconnecting)
    end)

  it("setTimeout(nil) disarms it, and resetTimeout then does nothing",
    function()
      local p, t = timed(clock)
      assert.equal(10, p:setTimeout(nil))
      p:resetTimeout()
      clock:advance(100)
      assert.is_false(t.disconnecting)
      assert.equal(0, #clock:getDelayedCalls())
    end)

  it("calls a subclass's timeoutConnection instead", function()
    local Quiet = Timed:extend({})
    function Quiet:timeoutConnection() self.fired = (self.fired or 0) + 1 end
    local p = Quiet:new()
    p.callLater = clock.callLater
    local t = testing.StringTransport()
    p:makeConnection(t)
    clock:advance(10)
    p:resetTimeout() -- after it fired: nothing to reset
    clock:advance(100)
    assert.equal(1, p.fired)
    assert.is_false(t.disconnecting)
  end)

  it("aborts abortTimeout seconds after a loseConnection that has not"
    .. " finished", function()
      local p, t = timed(clock)
      clock:advance(10)
      assert.is_true(t.disconnecting)
      clock:advance(p.abortTimeout - 0.5)
      assert.is_false(t.disconnected)
      clock:advance(0.5)
      assert.is_true(t.disconnected)
    end)

  it("setTimeout(nil) also cancels that pending abort (connectionLost)",
    function()
      local p, t = timed(clock)
      clock:advance(10)
      assert.equal(1, #clock:getDelayedCalls())
      p:setTimeout(nil)
      assert.equal(0, #clock:getDelayedCalls())
      clock:advance(100)
      assert.is_false(t.disconnected)
    end)

  it("uses a callLater method of the class (the reactor by default)",
    function()
      local C = Timed:extend({})
      function C:callLater(secs, f)
        self.asked = secs
        return clock.callLater(secs, f)
      end
      local p = C:new()
      p:makeConnection(testing.StringTransport())
      assert.equal(10, p.asked)
      assert.equal(1, #clock:getDelayedCalls())
    end)

  it("refuses a period that is not a number of seconds", function()
    local p = timed(clock)
    assert.has_error(function() p:setTimeout("soon") end,
      "setTimeout: period must be a number of seconds >= 0 or nil, got soon")
  end)

  it("closes an idle connection over real loopback, and none that talks",
    function()
      local Server = net.Echo:extend({ __name = "TimedEcho" })
      policies.mixin(Server, policies.TimeoutMixin)
      function Server:connectionMade()
        self:setTimeout(0.3)
      end
      function Server:dataReceived(data)
        self:resetTimeout()
        self.transport:write(data)
      end
      function Server:connectionLost()
        self:setTimeout(nil)
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server),
        { interface = "127.0.0.1" })
      local function connect()
        local c = net.Recorder:new()
        local cf = protocol.ClientFactory:new()
        function cf.buildProtocol() return c end
        reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
        return c
      end
      local idle, talker = connect(), connect()
      testing.runUntil(talker.made, 5)
      local start = reactor.seconds()
      local tick
      tick = function()
        if talker.transport.connected then
          talker.transport:write(".")
          reactor.callLater(0.1, tick)
        end
      end
      tick()
      testing.runUntil(idle.lost, 5)
      assert.is_true(idle.reason:check(require("loom.error").ConnectionDone)
        ~= nil)
      assert.is_true(reactor.seconds() - start >= 0.25)
      assert.is_true(talker.transport.connected)
      talker.transport:loseConnection()
      testing.runUntil(talker.lost, 5)
      testing.runUntil(port:stopListening(), 5)
    end)
end)

describe("policies.TimeoutMixin with a peer that never reads", function()
  it("aborts the connection abortTimeout after the timeout when"
    .. " loseConnection cannot flush", function()
      local Stuck = protocol.Protocol:extend({ __name = "Stuck",
        abortTimeout = 0.3 })
      policies.mixin(Stuck, policies.TimeoutMixin)
      local server
      function Stuck:connectionMade()
        server = self
        self:setTimeout(0.2)
        -- More than the kernel's buffers take: the close cannot flush.
        self.transport:write(("s"):rep(16 * 1024 * 1024))
      end
      function Stuck:connectionLost(reason)
        self.reason = reason
        self:setTimeout(nil)
      end
      local factory = protocol.Factory.forProtocol(Stuck)
      factory.maxWriteBuffer = 0
      local port = reactor.listenTCP(0, factory, { interface = "127.0.0.1" })
      local c = net.Recorder:new()
      function c:connectionMade()
        self.transport:pauseProducing() -- never reads
        self.made:callback(self)
      end
      local cf = protocol.ClientFactory:new()
      function cf.buildProtocol() return c end
      local start = reactor.seconds()
      reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      testing.runUntil(c.made, 5)
      net.waitFor(function() return server and server.reason ~= nil end, 5)
      -- The timeout (0.2 s), then the grace for the close (0.3 s).
      assert.is_true(reactor.seconds() - start >= 0.45)
      assert.is_truthy(server.reason:check(require("loom.error")
        .ConnectionAborted))
      c.transport:abortConnection()
      testing.runUntil(c.lost, 5)
      testing.runUntil(port:stopListening(), 5)
    end)
end)

describe("policies.applyBackpressure", function()
  it("registers a pausable protocol (a LineReceiver) as its transport's"
    .. " streaming producer", function()
      local p = basic.LineReceiver:new()
      local t = testing.StringTransport()
      p:makeConnection(t)
      policies.applyBackpressure(p)
      assert.equal(p, t.producer)
      assert.is_true(t.streaming)
    end)

  it("registers the transport itself for any other protocol", function()
    local p = protocol.Protocol:new()
    local t = testing.StringTransport()
    p:makeConnection(t)
    policies.applyBackpressure(p)
    assert.equal(t, t.producer)
    assert.is_true(t.streaming)
  end)

  it("says to call it from connectionMade when there is no transport",
    function()
      assert.has_error(function()
        policies.applyBackpressure(protocol.Protocol:new())
      end, "applyBackpressure: the protocol has no transport yet (call it"
        .. " from connectionMade)")
    end)
end)
