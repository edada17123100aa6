local defer = require "loom.defer"
local err = require "loom.error"
local task = require "loom.task"

local Deferred = defer.Deferred

local function outcome(d)
  local o = {}
  d:addCallbacks(function(v) o.ok, o.value = true, v end,
    function(f) o.ok, o.value = false, f end)
  return o
end

local function capture(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return e
end

describe("Clock", function()
  it("starts at zero and advances", function()
    local c = task.Clock()
    assert.equals(0, c:seconds())
    c:advance(1.5)
    assert.equals(1.5, c:seconds())
  end)

  it("runs a call when its time comes, with arguments", function()
    local c, got = task.Clock(), nil
    c:callLater(2, function(a, b) got = { a, b } end, "x", "y")
    c:advance(1)
    assert.is_nil(got)
    c:advance(1)
    assert.same({ "x", "y" }, got)
  end)

  it("runs due calls in time order, ties in scheduling order", function()
    local c, order = task.Clock(), {}
    c:callLater(2, function() order[#order + 1] = "b" end)
    c:callLater(1, function() order[#order + 1] = "a" end)
    c:callLater(2, function() order[#order + 1] = "c" end)
    c:advance(5)
    assert.same({ "a", "b", "c" }, order)
  end)

  it("runs calls scheduled by a call once they are due", function()
    local c, n = task.Clock(), 0
    c:callLater(1, function()
      n = n + 1
      c:callLater(0, function() n = n + 1 end)
    end)
    c:advance(1)
    assert.equals(2, n)
  end)

  it("works with dot calls like the reactor module", function()
    local c, ran = task.Clock(), false
    local call = c.callLater(1, function() ran = true end)
    c.advance(1)
    assert.is_true(ran)
    assert.equals(1, c.seconds())
    assert.is_false(call:active())
  end)

  it("a bound method sees its class patched later", function()
    local MyClock = task.Clock:extend()
    local c = MyClock()
    function MyClock:seconds() return 42 end -- luacheck: ignore
    assert.equal(42, c.seconds())
    assert.equal(42, c:seconds())
  end)

  it("pumps a list of advances", function()
    local c, times = task.Clock(), {}
    for i = 1, 3 do c:callLater(i, function() times[#times + 1] = c:seconds() end) end
    c:pump({ 1, 1, 1 })
    assert.same({ 1, 2, 3 }, times)
  end)

  it("lists pending calls", function()
    local c = task.Clock()
    local a = c:callLater(2, print)
    local b = c:callLater(1, print)
    assert.same({ b, a }, c:getDelayedCalls())
  end)
end)

describe("DelayedCall", function()
  it("is active until called and reports its time", function()
    local c = task.Clock()
    local call = c:callLater(3, function() end)
    assert.is_true(call:active())
    assert.equals(3, call:getTime())
    c:advance(3)
    assert.is_false(call:active())
  end)

  it("does not run once cancelled", function()
    local c, ran = task.Clock(), false
    local call = c:callLater(1, function() ran = true end)
    call:cancel()
    c:advance(2)
    assert.is_false(ran)
    assert.is_false(call:active())
    assert.equals(0, #c:getDelayedCalls())
  end)

  it("raises AlreadyCalled on cancel, reset or delay after running", function()
    local c = task.Clock()
    local call = c:callLater(1, function() end)
    c:advance(1)
    assert.is_true(capture(call.cancel, call):isa(err.AlreadyCalled))
    assert.is_true(capture(call.reset, call, 1):isa(err.AlreadyCalled))
    assert.is_true(capture(call.delay, call, 1):isa(err.AlreadyCalled))
  end)

  it("raises AlreadyCancelled on cancel, reset or delay after cancel",
    function()
      local c = task.Clock()
      local call = c:callLater(1, function() end)
      call:cancel()
      assert.is_true(capture(call.cancel, call):isa(err.AlreadyCancelled))
      assert.is_true(capture(call.reset, call, 1):isa(err.AlreadyCancelled))
      assert.is_true(capture(call.delay, call, 1):isa(err.AlreadyCancelled))
    end)

  it("reschedules from now with reset", function()
    local c, ran = task.Clock(), false
    local call = c:callLater(5, function() ran = true end)
    c:advance(1)
    call:reset(1)
    assert.equals(2, call:getTime())
    c:advance(1)
    assert.is_true(ran)
  end)

  it("postpones with delay", function()
    local c, ran = task.Clock(), false
    local call = c:callLater(1, function() ran = true end)
    call:delay(2)
    c:advance(2)
    assert.is_false(ran)
    c:advance(1)
    assert.is_true(ran)
  end)
end)

describe("DelayedCall (one class for Clock and reactor)", function()
  local delayedcall = require "loom.delayedcall"
  local reactor = require "loom.reactor"

  it("a Clock's calls and the reactor's are the same class", function()
    local c = task.Clock()
    local call = c:callLater(1, print)
    local dc = reactor.callLater(10, print)
    assert.equal(delayedcall.DelayedCall, getmetatable(call))
    assert.equal(delayedcall.DelayedCall, getmetatable(dc))
    assert.equal(task.DelayedCall, reactor.DelayedCall)
    dc:cancel()
  end)

  it("prints like Twisted's, with the time left and where f is", function()
    local c = task.Clock()
    local function f() end
    local call = c:callLater(2.5, f)
    local line = debug.getinfo(f, "S").linedefined
    assert.equal(string.format("<DelayedCall %p [2.5s] called=0 cancelled=0"
      .. " spec/task_spec.lua:%d>", call, line), tostring(call))
    c:advance(3)
    assert.equal(string.format("<DelayedCall %p [-0.5s] called=1"
      .. " cancelled=0>", call), tostring(call))
  end)

  it("a call that ran or was cancelled holds no reference to f or its"
    .. " arguments", function()
      local c = task.Clock()
      local held = setmetatable({}, { __mode = "k" })
      local arg1, f = {}, function() end
      held[arg1], held[f] = true, true
      local call = c:callLater(1, f, arg1)
      call:cancel()
      arg1, f = nil, nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_nil(next(held))
      assert.is_false(call:active())
    end)

  it("reset and delay refuse a delay that is not a number", function()
    local call = task.Clock():callLater(1, print)
    assert.matches("reset: seconds must be a number",
      tostring(capture(call.reset, call, "soon")))
    assert.matches("delay: seconds must be a number",
      tostring(capture(call.delay, call, 0 / 0)))
    assert.is_true(call:active())
  end)

  it("delay by a negative amount runs the call earlier", function()
    local c, order = task.Clock(), {}
    c:callLater(2, function() order[#order + 1] = "a" end)
    local b = c:callLater(3, function() order[#order + 1] = "b" end)
    b:delay(-2)
    assert.equal(1, b:getTime())
    c:advance(2)
    assert.same({ "b", "a" }, order)
  end)

  it("keeps equal times in scheduling order after a reset", function()
    local c, order = task.Clock(), {}
    local a = c:callLater(0.5, function() order[#order + 1] = "a" end)
    c:callLater(1, function() order[#order + 1] = "b" end)
    c:callLater(1, function() order[#order + 1] = "c" end)
    a:reset(1)
    c:advance(1)
    assert.same({ "a", "b", "c" }, order)
  end)
end)

describe("deferLater", function()
  it("fires with f's result after the delay", function()
    local c = task.Clock()
    local o = outcome(task.deferLater(c, 2, function(a) return a * 2 end, 21))
    c:advance(1)
    assert.is_nil(o.ok)
    c:advance(1)
    assert.same({ ok = true, value = 42 }, o)
  end)

  it("fires with nil without f", function()
    local c = task.Clock()
    local o = outcome(task.deferLater(c, 1))
    c:advance(1)
    assert.same({ ok = true }, o)
  end)

  it("errbacks when f raises", function()
    local c = task.Clock()
    local o = outcome(task.deferLater(c, 1, function() error("late") end))
    c:advance(1)
    assert.is_false(o.ok)
  end)

  it("cancels the scheduled call when cancelled", function()
    local c, ran = task.Clock(), false
    local d = task.deferLater(c, 1, function() ran = true end)
    local o = outcome(d)
    d:cancel()
    assert.equals(err.CancelledError, o.value.type)
    assert.equals(0, #c:getDelayedCalls())
    c:advance(1)
    assert.is_false(ran)
  end)
end)

describe("LoopingCall", function()
  local function looping(f, ...)
    local lc = task.LoopingCall(f, ...)
    lc.clock = task.Clock()
    return lc, lc.clock
  end

  it("calls f at once and every interval", function()
    local times = {}
    local lc, c
    lc, c = looping(function() times[#times + 1] = c:seconds() end)
    lc:start(1)
    c:pump({ 1, 1, 1 })
    assert.same({ 0, 1, 2, 3 }, times)
  end)

  it("waits one interval first with now=false", function()
    local n = 0
    local lc, c = looping(function() n = n + 1 end)
    lc:start(1, false)
    assert.equals(0, n)
    c:advance(1)
    assert.equals(1, n)
  end)

  it("passes its extra arguments to f", function()
    local got
    local lc = looping(function(a, b) got = { a, b } end, "a", "b")
    lc:start(1)
    assert.same({ "a", "b" }, got)
  end)

  it("fires start's Deferred with itself on stop", function()
    local lc, c = looping(function() end)
    local o = outcome(lc:start(1))
    assert.is_true(lc.running)
    c:advance(1)
    lc:stop()
    assert.is_false(lc.running)
    assert.same({ ok = true, value = lc }, o)
    assert.equals(0, #c:getDelayedCalls())
  end)

  it("errbacks start's Deferred when f raises and stops", function()
    local n = 0
    local lc, c = looping(function()
      n = n + 1
      if n == 2 then error("second call fails") end
    end)
    local o = outcome(lc:start(1))
    c:advance(1)
    assert.is_false(o.ok)
    assert.is_false(lc.running)
    c:advance(5)
    assert.equals(2, n)
  end)

  it("waits for a Deferred returned by f before the next call", function()
    local pending, calls = nil, 0
    local lc, c = looping(function()
      calls = calls + 1
      pending = Deferred()
      return pending
    end)
    lc:start(1)
    c:advance(3)
    assert.equals(1, calls)
    pending:callback(nil)
    c:advance(1)
    assert.equals(2, calls)
  end)

  it("fires on stop requested while f's Deferred is pending", function()
    local pending = Deferred()
    local lc = looping(function() return pending end)
    local o = outcome(lc:start(1))
    lc:stop()
    assert.is_nil(o.ok)
    pending:callback(nil)
    assert.equals(lc, o.value)
  end)

  it("refuses to start twice or stop when stopped", function()
    local lc = looping(function() end)
    lc:start(1)
    assert.has_error(function() lc:start(1) end)
    lc:stop()
    assert.has_error(function() lc:stop() end)
  end)

  it("refuses a negative interval", function()
    local lc = looping(function() end)
    assert.has_error(function() lc:start(-1) end)
  end)

  it("counts skipped intervals with withCount", function()
    local counts = {}
    local lc = task.LoopingCall.withCount(function(n) counts[#counts + 1] = n end)
    local c = task.Clock()
    lc.clock = c
    lc:start(1)
    c:advance(1)
    c:advance(3)
    c:advance(1)
    assert.same({ 1, 1, 3, 1 }, counts)
  end)

  it("counts one per call with a zero interval", function()
    -- Twisted's test_withCountIntervalZero: a zero interval runs again
    -- within the same advance until stopped.
    local counts, lc = {}, nil
    lc = task.LoopingCall.withCount(function(n)
      counts[#counts + 1] = n
      if #counts > 4 then lc:stop() end
    end)
    local c = task.Clock()
    lc.clock = c
    local o = outcome(lc:start(0, false))
    c:advance(0)
    assert.equals(lc, o.value)
    assert.same({ 1, 1, 1, 1, 1 }, counts)
  end)

  it("restarts the interval from now with reset", function()
    local times = {}
    local lc, c
    lc, c = looping(function() times[#times + 1] = c:seconds() end)
    lc:start(2)
    c:advance(1)
    lc:reset()
    c:advance(1)
    assert.same({ 0 }, times)
    c:advance(1)
    assert.same({ 0, 3 }, times)
  end)
end)

describe("cooperate", function()
  local function coop()
    local c = task.Clock()
    return task.Cooperator({ clock = c, stepsPerTick = 1 }), c
  end

  it("runs a function iterator a step per tick until it returns nil",
    function()
      local co, c = coop()
      local i = 0
      local it = function()
        i = i + 1
        if i <= 3 then return i end
      end
      local t = co:cooperate(it)
      local o = outcome(t:whenDone())
      c:advance(1)
      assert.equals(1, i)
      c:pump({ 1, 1, 1 })
      assert.equals(4, i)
      assert.same({ ok = true, value = it }, o)
    end)

  it("runs a coroutine until it ends", function()
    local co, c = coop()
    local steps = {}
    local thread = coroutine.create(function()
      for k = 1, 3 do steps[#steps + 1] = k; coroutine.yield() end
    end)
    local o = outcome(co:coiterate(thread))
    for _ = 1, 5 do c:advance(1) end
    assert.same({ 1, 2, 3 }, steps)
    assert.equals(thread, o.value)
  end)

  it("interleaves two tasks", function()
    local co, c = coop()
    local order = {}
    local function counter(name)
      local k = 0
      return function()
        k = k + 1
        if k > 2 then return nil end
        order[#order + 1] = name .. k
        return true
      end
    end
    co:cooperate(counter("a"))
    co:cooperate(counter("b"))
    for _ = 1, 6 do c:advance(1) end
    assert.same({ "a1", "b1", "a2", "b2" }, order)
  end)

  it("waits for a Deferred produced by a step", function()
    local co, c = coop()
    local d, n = Deferred(), 0
    co:cooperate(function()
      n = n + 1
      if n == 1 then return d end
      if n < 3 then return true end
    end)
    for _ = 1, 3 do c:advance(1) end
    assert.equals(1, n)
    d:callback(nil)
    for _ = 1, 3 do c:advance(1) end
    assert.equals(3, n)
  end)

  it("fails whenDone when a step raises", function()
    local co, c = coop()
    local o = outcome(co:coiterate(function() error("step broke") end))
    c:advance(1)
    assert.is_false(o.ok)
    assert.matches("step broke", o.value.value, 1, true)
  end)

  it("fails whenDone when a step's Deferred fails", function()
    local co, c = coop()
    local o = outcome(co:coiterate(function() return defer.fail("async broke") end))
    c:advance(1)
    assert.equals("async broke", o.value.value)
  end)

  it("pauses and resumes a task", function()
    local co, c = coop()
    local n = 0
    local t = co:cooperate(function() n = n + 1; return true end)
    c:advance(1)
    t:pause()
    c:pump({ 1, 1 })
    assert.equals(1, n)
    t:resume()
    c:advance(1)
    assert.equals(2, n)
  end)

  it("raises NotPaused when resuming a running task", function()
    local co = coop()
    local t = co:cooperate(function() return true end)
    assert.is_true(capture(t.resume, t):isa(err.NotPaused))
  end)

  it("fails whenDone with TaskStopped when stopped", function()
    local co, c = coop()
    local n = 0
    local t = co:cooperate(function() n = n + 1; return true end)
    local o = outcome(t:whenDone())
    t:stop()
    c:advance(1)
    assert.equals(0, n)
    assert.equals(err.TaskStopped, o.value.type)
    assert.is_true(capture(t.pause, t):isa(err.TaskStopped))
  end)

  it("answers whenDone after completion at once", function()
    local co, c = coop()
    local it = function() return nil end
    local t = co:cooperate(it)
    c:advance(1)
    assert.equals(it, outcome(t:whenDone()).value)
  end)

  it("fails every task with SchedulerStopped when stopped", function()
    local co = coop()
    local o = outcome(co:coiterate(function() return true end))
    co:stop()
    assert.equals(err.SchedulerStopped, o.value.type)
  end)

  it("runs several steps per tick within the time slice", function()
    local c = task.Clock()
    local co = task.Cooperator({ clock = c })
    local n = 0
    co:cooperate(function() n = n + 1; if n < 5 then return true end end)
    c:advance(1)
    assert.equals(5, n)
  end)
end)
