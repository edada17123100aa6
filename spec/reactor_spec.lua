-- The reactor: run/stop, callLater and DelayedCall, system events.
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local function after(secs)
  local d = defer.Deferred()
  reactor.callLater(secs, function() d:callback(true) end)
  return d
end

describe("callLater", function()
  it("runs calls in time order with their arguments", function()
    local order = {}
    local done = defer.Deferred()
    reactor.callLater(0.03, function(a, b) order[#order + 1] = a .. b end,
      "c", "!")
    reactor.callLater(0.01, function(x) order[#order + 1] = x end, "a")
    reactor.callLater(0.02, function(x) order[#order + 1] = x end, "b")
    reactor.callLater(0.04, function() done:callback() end)
    runUntil(done)
    assert.same({ "a", "b", "c!" }, order)
  end)

  it("passes nil arguments through", function()
    local got = defer.Deferred()
    reactor.callLater(0, function(a, b, c) got:callback({ a, b, c, n = 3 }) end,
      1, nil, 3)
    local r = runUntil(got)
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
  end)

  -- libuv 1.44 runs a timer due now within the same pass of its timers, so
  -- a callLater(0) chain would run before any I/O, forever (host/timer.c).
  it("callLater(0) from a call runs on the next turn, after waiting I/O",
    function()
      local net = dofile("spec/support/net.lua")
      local server = net.recordingFactory(net.Recorder)
      local port = net.listen(server)
      local nextServer = server.next
      local client = net.connect(port)
      local sproto = runUntil(nextServer, 5)
      local order = {}
      local done = defer.Deferred()
      local seen = sproto.dataReceived
      function sproto.dataReceived(p, data)
        order[#order + 1] = "read"
        seen(p, data)
      end
      reactor.callLater(0, function()
        client.transport:write("x") -- in the server's socket at once
        local n = 0
        local function again()
          n = n + 1
          order[#order + 1] = "call"
          if n < 3 then
            reactor.callLater(0, again)
          else
            done:callback()
          end
        end
        reactor.callLater(0, again)
      end)
      runUntil(done, 5)
      assert.equals("read", order[1], table.concat(order, " "))
      assert.same({ "read", "call", "call", "call" }, order)
      client.transport:loseConnection()
      sproto.transport:loseConnection()
      runUntil(port:stopListening())
    end)

  it("reports active, getTime and called state", function()
    local t0 = reactor.seconds()
    local dc = reactor.callLater(10, function() end)
    assert.is_true(dc:active())
    assert.is_true(math.abs(dc:getTime() - (t0 + 10)) < 0.5)
    dc:cancel()
    assert.is_false(dc:active())
    local fired = reactor.callLater(0, function() end)
    runUntil(after(0.01))
    assert.is_false(fired:active())
  end)

  it("does not run a cancelled call", function()
    local ran = false
    local dc = reactor.callLater(0.01, function() ran = true end)
    dc:cancel()
    runUntil(after(0.03))
    assert.is_false(ran)
  end)

  it("reset moves the call to a new delay from now", function()
    local ran = false
    local dc = reactor.callLater(0.01, function() ran = true end)
    dc:reset(0.08)
    runUntil(after(0.03))
    assert.is_false(ran)
    runUntil(after(0.1))
    assert.is_true(ran)
  end)

  it("delay pushes the call back by the given amount", function()
    local ran = false
    local dc = reactor.callLater(0.02, function() ran = true end)
    local t = dc:getTime()
    dc:delay(0.08)
    assert.is_true(math.abs(dc:getTime() - (t + 0.08)) < 1e-6)
    runUntil(after(0.04))
    assert.is_false(ran)
    runUntil(after(0.1))
    assert.is_true(ran)
  end)

  it("raises AlreadyCalled for cancel/reset/delay of a call that ran",
    function()
      local dc = reactor.callLater(0, function() end)
      runUntil(after(0.01))
      for _, m in ipairs({ "cancel", "reset", "delay" }) do
        local ok, e = pcall(dc[m], dc, 1)
        assert.is_false(ok)
        assert.is_true(e:isa(err.AlreadyCalled))
      end
    end)

  it("raises AlreadyCancelled for cancel/reset/delay of a cancelled call",
    function()
      local dc = reactor.callLater(1, function() end)
      dc:cancel()
      for _, m in ipairs({ "cancel", "reset", "delay" }) do
        local ok, e = pcall(dc[m], dc, 1)
        assert.is_false(ok)
        assert.is_true(e:isa(err.AlreadyCancelled))
      end
    end)

  it("logs an error raised by a delayed call and keeps running", function()
    local seen = {}
    local obs = log.addObserver(function(ev) seen[#seen + 1] = ev.text end)
    reactor.callLater(0, function() error("late failure") end)
    local ok = false
    reactor.callLater(0.01, function() ok = true end)
    runUntil(after(0.02))
    log.removeObserver(obs)
    assert.is_true(ok)
    assert.matches("late failure", table.concat(seen, "\n"))
  end)

  it("prints the time left and whether it ran", function()
    local dc = reactor.callLater(10, function() end)
    assert.matches("^<DelayedCall 0x%x+ %[9%.%d+s%] called=0 cancelled=0"
      .. " spec/reactor_spec%.lua:%d+>$", tostring(dc))
    dc:cancel()
    assert.matches("called=0 cancelled=1>$", tostring(dc))
  end)

  it("delay by a negative amount brings the call forward", function()
    local ran = false
    local dc = reactor.callLater(5, function() ran = true end)
    dc:delay(-4.99)
    runUntil(after(0.05))
    assert.is_true(ran)
  end)

  it("reset and delay refuse a delay that is not a number", function()
    local dc = reactor.callLater(1, function() end)
    assert.has_error(function() dc:reset("x") end,
      "reset: seconds must be a number, got x")
    assert.has_error(function() dc:delay(nil) end,
      "delay: seconds must be a number, got nil")
    dc:cancel()
  end)

  it("rejects a non-number delay and a non-callable", function()
    assert.has_error(function() reactor.callLater("x", print) end)
    assert.has_error(function() reactor.callLater(1, 42) end)
  end)
end)

describe("reactor.run", function()
  it("is not re-entrant", function()
    local d = defer.Deferred()
    reactor.callLater(0, function()
      local ok, e = pcall(reactor.run)
      d:callback({ ok, tostring(e) })
    end)
    local r = runUntil(d)
    assert.is_false(r[1])
    assert.matches("already running", r[2])
  end)

  it("sets running while it runs", function()
    assert.is_false(reactor.running)
    local d = defer.Deferred()
    reactor.callLater(0, function() d:callback(reactor.running) end)
    assert.is_true(runUntil(d))
    assert.is_false(reactor.running)
  end)

  it("callWhenRunning calls at once when already running", function()
    local d = defer.Deferred()
    reactor.callLater(0, function()
      local called = false
      reactor.callWhenRunning(function() called = true end)
      d:callback(called)
    end)
    assert.is_true(runUntil(d))
  end)

  it("seconds follows the wall clock", function()
    assert.is_true(math.abs(reactor.seconds() - os.time()) < 2)
  end)

  it("refuses to stop when not running", function()
    assert.has_error(function() reactor.stop() end)
  end)
end)

describe("system event triggers", function()
  it("runs startup triggers once the reactor starts, then shutdown "
    .. "triggers in phase order on stop", function()
    local events = {}
    reactor.addSystemEventTrigger("after", "shutdown",
      function() events[#events + 1] = "after" end)
    reactor.addSystemEventTrigger("during", "shutdown",
      function() events[#events + 1] = "during" end)
    reactor.addSystemEventTrigger("before", "shutdown",
      function(x) events[#events + 1] = "before" .. x end, "!")
    reactor.callLater(0, reactor.stop)
    reactor.run()
    assert.same({ "before!", "during", "after" }, events)
    -- Fired triggers are used up (Twisted's): a second run and stop
    -- fires none of them again, and they can no longer be removed.
    reactor.callLater(0, reactor.stop)
    reactor.run()
    assert.same({ "before!", "during", "after" }, events)
  end)

  it("waits for a Deferred returned by a before-shutdown trigger", function()
    local events = {}
    reactor.addSystemEventTrigger("before", "shutdown", function()
      local d = defer.Deferred()
      reactor.callLater(0.05, function()
        events[#events + 1] = "slow trigger done"
        d:callback()
      end)
      return d
    end)
    reactor.addSystemEventTrigger("during", "shutdown",
      function() events[#events + 1] = "during" end)
    reactor.callLater(0, reactor.stop)
    reactor.run()
    assert.same({ "slow trigger done", "during" }, events)
  end)

  it("fires startup triggers and callWhenRunning after run starts", function()
    local events = {}
    local id = reactor.addSystemEventTrigger("after", "startup",
      function() events[#events + 1] = "startup" end)
    reactor.callWhenRunning(function() events[#events + 1] = "running" end)
    assert.same({}, events)
    reactor.callLater(0.01, reactor.stop)
    reactor.run()
    assert.same({ "startup", "running" }, events)
    assert.has_error(function() reactor.removeSystemEventTrigger(id) end,
      "removeSystemEventTrigger: no such trigger")
  end)

  it("rejects an unknown phase", function()
    assert.has_error(function()
      reactor.addSystemEventTrigger("sometime", "shutdown", print)
    end)
  end)
end)
