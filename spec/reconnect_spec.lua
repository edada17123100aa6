-- loom.protocol.ReconnectingClientFactory, after Twisted's
-- test_factories.py: backoff arithmetic on a task.Clock, stopTrying,
-- resetDelay, maxRetries, and a real reconnect over loopback.
local protocol = require "loom.protocol"
local task = require "loom.task"
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local testing = require "loom.testing"

local RCF = protocol.ReconnectingClientFactory

-- A connector that counts connect() calls.
local function fakeConnector()
  local c = { connects = 0, stops = 0 }
  function c:connect() self.connects = self.connects + 1 end
  function c:stopConnecting() self.stops = self.stops + 1 end
  return c
end

describe("ReconnectingClientFactory", function()
  it("is a ClientFactory with Twisted's defaults", function()
    local f = RCF:new()
    assert.is_true(require("loom.class").isinstance(f, protocol.ClientFactory))
    assert.equal(3600, f.maxDelay)
    assert.equal(1.0, f.initialDelay)
    assert.equal(2.7182818284590451, f.factor)
    assert.equal(0.11962656472, f.jitter)
    assert.is_nil(f.maxRetries)
    assert.equal(0, f.retries)
    assert.equal(1.0, f.delay)
    assert.is_true(f.continueTrying)
  end)

  it("retries after a failure with delays growing by factor", function()
    local clock = task.Clock()
    local f = RCF:new()
    f.clock, f.jitter = clock, 0
    local c = fakeConnector()
    f:clientConnectionFailed(c, nil)
    assert.equal(1, f.retries)
    assert.near(math.exp(1), f.delay, 1e-9)
    clock:advance(f.delay - 0.01)
    assert.equal(0, c.connects)
    clock:advance(0.01)
    assert.equal(1, c.connects)
    f:clientConnectionLost(c, nil)
    assert.equal(2, f.retries)
    assert.near(math.exp(2), f.delay, 1e-9)
  end)

  it("never waits longer than maxDelay", function()
    local f = RCF:new()
    f.clock, f.jitter, f.maxDelay = task.Clock(), 0, 10
    local c = fakeConnector()
    for _ = 1, 6 do
      f:retry(c)
    end
    assert.equal(10, f.delay)
  end)

  it("applies jitter around the delay", function()
    math.randomseed(42)
    local f = RCF:new()
    f.clock = task.Clock()
    local seen = {}
    for _ = 1, 20 do
      f.delay = 1
      f:retry(fakeConnector())
      seen[#seen + 1] = f.delay
      assert.is_true(f.delay > 0 and f.delay < 2 * math.exp(1))
    end
    table.sort(seen)
    assert.is_true(seen[1] < seen[#seen])
  end)

  it("gives up after maxRetries", function()
    local clock = task.Clock()
    local f = RCF:new()
    f.clock, f.maxRetries = clock, 2
    local c = fakeConnector()
    f:clientConnectionFailed(c, nil)
    f:clientConnectionFailed(c, nil)
    f:clientConnectionFailed(c, nil)
    assert.equal(2, #clock:getDelayedCalls())
    assert.equal(3, f.retries)
  end)

  it("stopTrying cancels the pending retry and stops connecting", function()
    local clock = task.Clock()
    local f = RCF:new()
    f.clock = clock
    local c = fakeConnector()
    f:clientConnectionFailed(c, nil)
    f:stopTrying()
    assert.equal(0, #clock:getDelayedCalls())
    assert.equal(1, c.stops)
    assert.is_false(f.continueTrying)
    f:clientConnectionLost(c, nil)
    clock:advance(100)
    assert.equal(0, c.connects)
  end)

  it("resetDelay restores the initial delay and retry count", function()
    local f = RCF:new()
    f.clock = task.Clock()
    f:retry(fakeConnector())
    f:retry(fakeConnector())
    f:resetDelay()
    assert.equal(f.initialDelay, f.delay)
    assert.equal(0, f.retries)
    assert.is_true(f.continueTrying)
  end)

  it("retry without any connector raises", function()
    assert.has_error(function() RCF:new():retry() end,
      "retry: no connector to retry")
  end)
end)

describe("ReconnectingClientFactory over loopback", function()
  it("keeps trying until a server appears, then connects", function()
    -- A port that was free a moment ago.
    local probe = reactor.listenTCP(0, protocol.Factory:new(),
      { interface = "127.0.0.1" })
    local n = probe:getHost().port
    testing.runUntil(probe:stopListening(), 5)

    local connected = defer.Deferred()
    local Client = protocol.Protocol:extend({ __name = "Client" })
    function Client:connectionMade()
      self.factory:resetDelay()
      connected:callback(self)
    end
    local f = RCF.forProtocol(Client) -- the dot form, as Twisted users write it
    f.initialDelay, f.delay, f.factor, f.jitter = 0.05, 0.05, 1, 0
    local failures = 0
    local failed = RCF.clientConnectionFailed
    function f:clientConnectionFailed(c, reason)
      failures = failures + 1
      failed(self, c, reason)
    end
    local connector = reactor.connectTCP("127.0.0.1", n, f, { timeout = 5 })
    -- Let it fail a few times, then listen.
    testing.runUntil(task.deferLater(reactor, 0.2, function() end), 5)
    assert.is_true(failures >= 1)
    local server = reactor.listenTCP(n,
      protocol.Factory.forProtocol(protocol.Protocol),
      { interface = "127.0.0.1" })
    local proto = testing.runUntil(connected, 5)
    assert.equal(0, f.retries)
    f:stopTrying()
    proto.transport:loseConnection()
    connector:disconnect()
    testing.runUntil(server:stopListening(), 5)
    testing.runUntil(task.deferLater(reactor, 0.05, function() end), 5)
  end)
end)
