-- Cases ported from Twisted's own tests where loom follows Twisted:
-- twisted/internet/test/test_core.py (run, stop, crash, system events),
-- test_tcp.py (test_userFail) and the reactor's disconnectAll at shutdown.
-- Each spec runs the real reactor; a guard crashes it after a few seconds so
-- a regression fails instead of hanging.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"

-- reactor.run() bounded in time; returns true when it ended by itself.
local function runReactor(secs)
  local timedOut = false
  local guard = reactor.callLater(secs or 5, function()
    timedOut = true
    reactor.crash()
  end)
  reactor.run({ installSignalHandlers = false })
  if guard:active() then
    guard:cancel()
  end
  return not timedOut
end

describe("reactor run and stop (test_core.py)", function()
  it("stop raises when the reactor was never started", function()
    assert.has_error(function() reactor.stop() end)
  end)

  it("stop raises after the reactor stopped", function()
    reactor.callWhenRunning(reactor.stop)
    assert.is_true(runReactor())
    local ok, e = pcall(reactor.stop)
    assert.is_false(ok)
    assert.is_truthy(e:isa(err.ReactorNotRunning))
  end)

  it("runs callWhenRunning functions in the order they were added",
    function()
      local events = {}
      reactor.callWhenRunning(table.insert, events, "first")
      reactor.callWhenRunning(table.insert, events, "second")
      reactor.callWhenRunning(reactor.stop)
      assert.is_true(runReactor())
      assert.same({ "first", "second" }, events)
    end)

  it("is not running in before-startup triggers, running in during and "
    .. "after", function()
    local state = {}
    reactor.addSystemEventTrigger("before", "startup",
      function() state.before = reactor.running end)
    reactor.addSystemEventTrigger("during", "startup",
      function() state.during = reactor.running end)
    reactor.addSystemEventTrigger("after", "startup",
      function() state.after = reactor.running end)
    reactor.callWhenRunning(reactor.stop)
    assert.same({}, state)
    assert.is_true(runReactor())
    assert.same({ before = false, during = true, after = true }, state)
  end)

  it("stop fires the three shutdown phases before run returns", function()
    local events = {}
    for _, phase in ipairs({ "before", "during", "after" }) do
      reactor.addSystemEventTrigger(phase, "shutdown",
        function() events[#events + 1] = phase end)
    end
    reactor.callWhenRunning(reactor.stop)
    assert.is_true(runReactor())
    assert.same({ "before", "during", "after" }, events)
  end)

  it("does not run before-shutdown triggers synchronously from stop",
    function()
      local events = {}
      reactor.addSystemEventTrigger("before", "shutdown", table.insert,
        events, "before shutdown")
      reactor.callWhenRunning(function()
        reactor.stop()
        events[#events + 1] = "stopped"
      end)
      assert.same({}, events)
      assert.is_true(runReactor())
      assert.same({ "stopped", "before shutdown" }, events)
    end)

  it("refuses a re-entrant run", function()
    local events = {}
    reactor.callWhenRunning(function()
      local ok, e = pcall(reactor.run)
      assert.is_false(ok)
      assert.matches("already running", tostring(e))
      events[#events + 1] = "tested"
    end)
    reactor.callWhenRunning(reactor.stop)
    assert.is_true(runReactor())
    assert.same({ "tested" }, events)
  end)

  it("runs until stop when a before-startup trigger returns an unfired "
    .. "Deferred", function()
    local events = {}
    reactor.addSystemEventTrigger("before", "startup", function()
      events[#events + 1] = "trigger"
      local d = defer.Deferred()
      d:addCallback(function()
        events[#events + 1] = "callback"
        reactor.stop()
      end)
      reactor.callLater(0, function() d:callback(nil) end)
      return d
    end)
    assert.is_true(runReactor())
    assert.same({ "trigger", "callback" }, events)
  end)

  it("crash stops the reactor without firing shutdown triggers", function()
    local events = {}
    local id = reactor.addSystemEventTrigger("before", "shutdown",
      function() events[#events + 1] = "before shutdown" end)
    reactor.callWhenRunning(reactor.callLater, 0, reactor.crash)
    assert.is_true(runReactor())
    assert.is_false(reactor.running)
    assert.same({}, events)
    reactor.removeSystemEventTrigger(id)
  end)

  it("runs again after crash, calling what callWhenRunning added meanwhile",
    function()
      local events = {}
      reactor.callWhenRunning(function()
        events[#events + 1] = "crash"
        reactor.crash()
      end)
      assert.is_true(runReactor())
      reactor.callWhenRunning(function()
        events[#events + 1] = { "stop", reactor.running }
        reactor.stop()
      end)
      assert.is_true(runReactor())
      assert.same({ "crash", { "stop", true } }, events)
    end)
end)

describe("reactor shutdown disconnects every connection", function()
  -- Twisted's "during shutdown" runs disconnectAll: every connection gets
  -- connectionLost before run() returns, even one whose connectionMade
  -- stopped the reactor.
  for _, who in ipairs({ "client", "server" }) do
    it("delivers connectionLost on both sides when the " .. who
      .. "'s connectionMade stops the reactor", function()
        local lost = {}
        local function side(name)
          local P = protocol.Protocol:extend({ __name = "Stop" .. name })
          function P:connectionMade()
            if name == who then
              reactor.stop()
            end
          end
          function P:connectionLost(reason)
            lost[name] = reason
          end
          return P
        end
        local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
          side("server")), { interface = "127.0.0.1" })
        reactor.callWhenRunning(function()
          reactor.connectTCP("127.0.0.1", port:getHost().port,
            protocol.ClientFactory.forProtocol(side("client")))
        end)
        assert.is_true(runReactor())
        assert.is_truthy(lost.client, "client got no connectionLost")
        assert.is_truthy(lost.server, "server got no connectionLost")
        for _, reason in pairs(lost) do
          assert.is_truthy(reason:check(err.ConnectionLost,
            err.ConnectionDone))
        end
      end)
  end

  it("a connectionLost that raises does not keep others from theirs",
    function()
      local lost = {}
      local Server = protocol.Protocol:extend({ __name = "RaisingServer" })
      function Server:connectionLost()
        lost.server = true
        error("simulated connectionLost error")
      end
      local Client = protocol.Protocol:extend({ __name = "QuietClient" })
      function Client:connectionMade()
        reactor.callLater(0.01, reactor.stop)
      end
      function Client:connectionLost()
        lost.client = true
      end
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server),
        { interface = "127.0.0.1" })
      local logged = {}
      local observer = log.addObserver(function(ev)
        logged[#logged + 1] = log.format(ev)
      end)
      reactor.callWhenRunning(function()
        reactor.connectTCP("127.0.0.1", port:getHost().port,
          protocol.ClientFactory.forProtocol(Client))
      end)
      local ok = runReactor()
      log.removeObserver(observer)
      assert.is_true(ok)
      assert.same({ server = true, client = true }, lost)
      assert.matches("simulated connectionLost error", table.concat(logged,
        "\n"))
    end)
end)

describe("connectors (test_tcp.py)", function()
  -- test_userFail: stopConnecting inside startedConnecting fails the attempt
  -- with UserError through clientConnectionFailed, then stops the factory.
  it("stopConnecting in startedConnecting reports UserError and stops the "
    .. "factory", function()
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
        protocol.Protocol), { interface = "127.0.0.1" })
      local cf = protocol.ClientFactory.forProtocol(protocol.Protocol)
      local seen = { failed = 0, stopped = 0, made = 0 }
      function cf:startedConnecting(connector)
        local ok, e = pcall(connector.stopConnecting, connector)
        seen.stopOk, seen.stopErr = ok, e
      end
      function cf:clientConnectionFailed(_, reason)
        seen.failed = seen.failed + 1
        seen.reason = reason
      end
      function cf:stopFactory()
        seen.stopped = seen.stopped + 1
        reactor.stop()
      end
      function cf:buildProtocol()
        seen.made = seen.made + 1
      end
      local connector
      reactor.callWhenRunning(function()
        connector = reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      end)
      assert.is_true(runReactor())
      assert.is_true(seen.stopOk, tostring(seen.stopErr))
      assert.equal(1, seen.failed)
      assert.is_truthy(seen.reason:check(err.UserError))
      assert.equal(1, seen.stopped)
      assert.equal(0, seen.made)
      assert.equal("disconnected", connector.state)
    end)

  -- As Twisted's failIfNotConnected: reported before stopConnecting
  -- returns, so connect() may follow at once; the abandoned socket's close
  -- reports nothing more.
  it("stopConnecting while connecting reports UserError at once", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
      protocol.Protocol), { interface = "127.0.0.1" })
    local cf = protocol.ClientFactory.forProtocol(protocol.Protocol)
    local reasons, made = {}, 0
    function cf:clientConnectionFailed(_, r)
      reasons[#reasons + 1] = r
    end
    local P = protocol.Protocol:extend({ __name = "Reconnected" })
    function P:connectionMade()
      made = made + 1
      reactor.callLater(0.05, reactor.stop)
    end
    cf.protocol = P
    local state
    reactor.callWhenRunning(function()
      local c = reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
      c:stopConnecting()
      state = c.state
      c:connect()
    end)
    assert.is_true(runReactor())
    assert.equal("disconnected", state)
    assert.equal(1, #reasons)
    assert.is_truthy(reasons[1]:check(err.UserError))
    assert.equal(1, made)
  end)
end)
