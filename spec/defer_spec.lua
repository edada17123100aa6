local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local task = require "loom.task"

local Deferred, Failure = defer.Deferred, failure.Failure

-- Record a Deferred's outcome without leaving a Failure unhandled.
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

describe("Deferred callbacks", function()
  it("passes the result to a callback added before firing", function()
    local d, got = Deferred(), nil
    d:addCallback(function(v) got = v end)
    d:callback("x")
    assert.equals("x", got)
  end)

  it("runs a callback added after firing at once", function()
    local d, got = defer.succeed(5), nil
    d:addCallback(function(v) got = v end)
    assert.equals(5, got)
  end)

  it("passes extra arguments after the result", function()
    local d, got = Deferred(), nil
    d:addCallback(function(...) got = { ... } end, "a", nil, "c")
    d:callback(1)
    assert.same({ 1, "a", nil, "c" }, got)
    assert.equals(4, select("#", table.unpack(got, 1, 4)))
  end)

  it("feeds each callback's return value to the next", function()
    local d = Deferred()
    d:addCallback(function(v) return v * 2 end)
    d:addCallback(function(v) return v + 1 end)
    local o = outcome(d)
    d:callback(10)
    assert.same({ ok = true, value = 21 }, o)
  end)

  it("sets called once fired", function()
    local d = Deferred()
    assert.is_false(d.called)
    d:callback(nil)
    assert.is_true(d.called)
  end)

  it("switches to the errback path when a callback raises", function()
    local d = Deferred()
    local skipped = true
    d:addCallback(function() error("boom") end)
    d:addCallback(function() skipped = false end)
    local o = outcome(d)
    d:callback(1)
    assert.is_true(skipped)
    assert.is_false(o.ok)
    assert.is_true(failure.isFailure(o.value))
    assert.matches("boom", o.value:getErrorMessage())
  end)

  it("records the raising line in the Failure's traceback", function()
    local d, line = Deferred(), nil
    d:addCallback(function()
      line = debug.getinfo(1, "l").currentline; error(err.ConnectionLost("x"))
    end)
    local o = outcome(d)
    d:callback(1)
    assert.matches("defer_spec.lua:" .. line .. ":", o.value.traceback, 1, true)
  end)

  it("switches to the errback path when a callback returns a Failure",
    function()
      local d = Deferred()
      d:addCallback(function() return Failure("returned") end)
      local o = outcome(d)
      d:callback(1)
      assert.is_false(o.ok)
      assert.equals("returned", o.value.value)
    end)

  it("recovers when an errback returns a plain value", function()
    local d = Deferred()
    d:addErrback(function(f) return "recovered " .. f.value end)
    local o = outcome(d)
    d:errback("oops")
    assert.same({ ok = true, value = "recovered oops" }, o)
  end)

  it("stays on the errback path when an errback raises", function()
    local d = Deferred()
    d:addErrback(function() error(err.TimeoutError("second")) end)
    local o = outcome(d)
    d:errback("first")
    assert.is_false(o.ok)
    assert.equals(err.TimeoutError, o.value.type)
  end)

  it("skips errbacks on success and callbacks on failure", function()
    local d1, d2, calls = Deferred(), Deferred(), {}
    d1:addErrback(function() calls[#calls + 1] = "eb1" end)
    d2:addCallback(function() calls[#calls + 1] = "cb2" end)
    d1:callback(1)
    d2:addErrback(function() end)
    d2:errback("e")
    assert.same({}, calls)
  end)

  it("wraps a non-Failure errback value in a Failure", function()
    local d = Deferred()
    local o = outcome(d)
    d:errback(err.ConnectionDone("done"))
    assert.is_true(failure.isFailure(o.value))
    assert.equals(err.ConnectionDone, o.value.type)
  end)

  it("keeps a Failure given to errback as is", function()
    local d, f = Deferred(), Failure("x")
    local o = outcome(d)
    d:errback(f)
    assert.equals(f, o.value)
  end)

  it("treats callback(failure) as an errback", function()
    local d = Deferred()
    local o = outcome(d)
    d:callback(Failure("x"))
    assert.is_false(o.ok)
  end)

  it("runs addBoth on success and failure with extra args", function()
    local seen = {}
    local function both(r, tag) seen[#seen + 1] = tag; return r end
    defer.succeed(1):addBoth(both, "s")
    defer.fail("e"):addBoth(both, "f"):addErrback(function() end)
    assert.same({ "s", "f" }, seen)
  end)

  it("runs addCallbacks with separate argument lists", function()
    local got = {}
    local d = Deferred()
    d:addCallbacks(function(v, a) got.cb = { v, a } end,
      function(_, b) got.eb = b end, { "ca" }, { "ea" })
    d:callback(1)
    assert.same({ cb = { 1, "ca" } }, got)
    local d2 = Deferred()
    d2:addCallbacks(function() end, function(f, b) got.eb = { f.value, b } end,
      nil, { "ea" })
    d2:errback("x")
    assert.same({ "x", "ea" }, got.eb)
  end)

  it("passes errback extra arguments after the failure", function()
    local got
    defer.fail("e"):addErrback(function(f, a, b) got = { f.value, a, b } end,
      1, 2)
    assert.same({ "e", 1, 2 }, got)
  end)

  it("does not run callbacks re-entrantly", function()
    local d, order = Deferred(), {}
    d:addCallback(function(v)
      d:addCallback(function(w) order[#order + 1] = "inner" return w end)
      order[#order + 1] = "outer"
      return v
    end)
    d:callback(1)
    assert.same({ "outer", "inner" }, order)
  end)

  it("describes itself with tostring", function()
    local d = Deferred()
    assert.matches("^<Deferred at ", tostring(d))
    d:callback(3)
    assert.matches("current result: 3>$", tostring(d))
  end)
end)

describe("Deferred firing twice", function()
  it("raises AlreadyCalledError on callback after callback", function()
    local d = defer.succeed(1)
    local e = capture(d.callback, d, 2)
    assert.is_true(err.isError(e) and e:isa(err.AlreadyCalledError))
  end)

  it("raises AlreadyCalledError on errback after callback", function()
    local d = defer.succeed(1)
    assert.is_true(capture(d.errback, d, "x"):isa(err.AlreadyCalledError))
  end)

  it("raises AlreadyCalledError on callback after errback", function()
    local d = defer.fail("x")
    d:addErrback(function() end)
    assert.is_true(capture(d.callback, d, 1):isa(err.AlreadyCalledError))
  end)

  it("raises AlreadyCalledError on errback after errback", function()
    local d = defer.fail("x")
    d:addErrback(function() end)
    assert.is_true(capture(d.errback, d, "y"):isa(err.AlreadyCalledError))
  end)

  it("refuses a Deferred as a callback result", function()
    local d = Deferred()
    assert.has_error(function() d:callback(Deferred()) end)
    assert.is_false(d.called)
  end)
end)

describe("Deferred chaining", function()
  it("pauses the chain while a returned Deferred is pending", function()
    local outer, inner = Deferred(), Deferred()
    outer:addCallback(function() return inner end)
    local o = outcome(outer)
    outer:callback(1)
    assert.is_nil(o.ok)
    inner:callback("inner result")
    assert.same({ ok = true, value = "inner result" }, o)
  end)

  it("takes the result of an already fired returned Deferred", function()
    local d = Deferred()
    d:addCallback(function() return defer.succeed("now") end)
    local o = outcome(d)
    d:callback(1)
    assert.same({ ok = true, value = "now" }, o)
  end)

  it("moves a returned Deferred's failure to the outer chain", function()
    local outer, inner = Deferred(), Deferred()
    outer:addCallback(function() return inner end)
    local o = outcome(outer)
    outer:callback(1)
    inner:errback("inner failed")
    assert.is_false(o.ok)
    assert.equals("inner failed", o.value.value)
  end)

  it("leaves the inner Deferred with a nil result after chaining", function()
    local outer, inner = Deferred(), Deferred()
    outer:addCallback(function() return inner end)
    outer:callback(1)
    inner:callback(2)
    assert.is_nil(inner.result)
  end)

  it("preserves callback order with nested chained Deferreds", function()
    -- Twisted's test_nestedAsynchronousChainedDeferreds.
    local calls = {}
    local first, second = Deferred(), Deferred()
    first:addCallback(function(r)
      calls[#calls + 1] = { "first", r }
      local inner = Deferred()
      inner:addCallback(function(v) calls[#calls + 1] = { "inner", v }; return v end)
      second:addCallback(function(v)
        calls[#calls + 1] = { "second", v }
        inner:callback(v)
        return v
      end)
      return inner
    end)
    first:addCallback(function(v) calls[#calls + 1] = { "after", v }; return v end)
    first:callback("f")
    second:callback("s")
    assert.same({ { "first", "f" }, { "second", "s" }, { "inner", "s" },
      { "after", "s" } }, calls)
  end)

  it("fires a chained Deferred with chainDeferred", function()
    local d1, d2 = Deferred(), Deferred()
    d1:chainDeferred(d2)
    local o = outcome(d2)
    d1:callback("v")
    assert.same({ ok = true, value = "v" }, o)
    assert.is_nil(d1.result)
  end)

  it("passes failures through chainDeferred", function()
    local d1, d2 = Deferred(), Deferred()
    d1:chainDeferred(d2)
    local o = outcome(d2)
    d1:errback("bad")
    assert.is_false(o.ok)
  end)

  it("runs 100,000 Deferreds chained by returned Deferreds", function()
    local n = 100000
    local ds = {}
    for i = 1, n do ds[i] = Deferred() end
    for i = 1, n - 1 do
      ds[i]:addCallback(function() return ds[i + 1] end)
    end
    for i = 1, n - 1 do ds[i]:callback(nil) end
    ds[n]:callback("bottom")
    local o = outcome(ds[1])
    assert.same({ ok = true, value = "bottom" }, o)
  end)

  it("runs a long synchronous chain of returned fired Deferreds", function()
    local d = Deferred()
    for i = 1, 100000 do
      d:addCallback(function(v) return defer.succeed(v + 1) end)
    end
    local o = outcome(d)
    d:callback(0)
    assert.same({ ok = true, value = 100000 }, o)
  end)

  it("supports pause and unpause", function()
    local d, got = Deferred(), nil
    d:addCallback(function(v) got = v end)
    d:pause()
    d:callback(1)
    assert.is_nil(got)
    d:unpause()
    assert.equals(1, got)
  end)
end)

describe("Deferred cancellation", function()
  it("errbacks with CancelledError without a canceller", function()
    local d = Deferred()
    local o = outcome(d)
    d:cancel()
    assert.is_false(o.ok)
    assert.equals(err.CancelledError, o.value.type)
  end)

  it("ignores a later callback after cancel without a canceller", function()
    local d = Deferred()
    outcome(d)
    d:cancel()
    d:callback("late")
    assert.has_error(function() d:callback("again") end)
  end)

  it("ignores a later errback after cancel without a canceller", function()
    local d = Deferred()
    outcome(d)
    d:cancel()
    d:errback("late")
  end)

  it("calls the canceller with the Deferred", function()
    local seen
    local d = Deferred(function(x) seen = x end)
    outcome(d)
    d:cancel()
    assert.equals(d, seen)
  end)

  it("errbacks with CancelledError when the canceller does not fire",
    function()
      local d = Deferred(function() end)
      local o = outcome(d)
      d:cancel()
      assert.equals(err.CancelledError, o.value.type)
    end)

  it("raises on a late callback after a canceller", function()
    local d = Deferred(function() end)
    outcome(d)
    d:cancel()
    assert.is_true(capture(d.callback, d, 1):isa(err.AlreadyCalledError))
  end)

  it("keeps the result the canceller fired with", function()
    local d = Deferred(function(x) x:callback("cancelled nicely") end)
    local o = outcome(d)
    d:cancel()
    assert.same({ ok = true, value = "cancelled nicely" }, o)
  end)

  it("keeps the failure the canceller errbacked with", function()
    local d = Deferred(function(x) x:errback(err.TimeoutError("t")) end)
    local o = outcome(d)
    d:cancel()
    assert.equals(err.TimeoutError, o.value.type)
  end)

  it("does nothing when cancelled after firing", function()
    local called = false
    local d = Deferred(function() called = true end)
    d:callback(1)
    d:cancel()
    assert.is_false(called)
    assert.equals(1, d.result)
  end)

  it("cancels the Deferred a fired Deferred waits on", function()
    local inner = Deferred()
    local outer = Deferred()
    outer:addCallback(function() return inner end)
    local o = outcome(outer)
    outer:callback(1)
    outer:cancel()
    assert.is_true(inner.called)
    assert.equals(err.CancelledError, o.value.type)
  end)
end)

describe("Deferred.addTimeout", function()
  it("errbacks with TimeoutError when the time runs out", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(10, clock)
    local o = outcome(d)
    clock:advance(9)
    assert.is_nil(o.ok)
    clock:advance(1)
    assert.is_false(o.ok)
    assert.equals(err.TimeoutError, o.value.type)
  end)

  it("passes a result before the timeout and cancels the timer", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(10, clock)
    local o = outcome(d)
    d:callback("in time")
    assert.same({ ok = true, value = "in time" }, o)
    assert.equals(0, #clock:getDelayedCalls())
  end)

  it("passes a failure before the timeout unchanged", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(10, clock)
    local o = outcome(d)
    d:errback(err.ConnectionLost("x"))
    assert.equals(err.ConnectionLost, o.value.type)
  end)

  it("leaves a plain cancel as CancelledError", function()
    local clock = task.Clock()
    local d = Deferred():addTimeout(10, clock)
    local o = outcome(d)
    d:cancel()
    assert.equals(err.CancelledError, o.value.type)
    assert.equals(0, #clock:getDelayedCalls())
  end)

  it("keeps the canceller's own result on timeout", function()
    local clock = task.Clock()
    local d = Deferred(function(x) x:callback("fallback") end)
    d:addTimeout(1, clock)
    local o = outcome(d)
    clock:advance(1)
    assert.same({ ok = true, value = "fallback" }, o)
  end)

  it("lets an errback added before addTimeout see CancelledError", function()
    local clock = task.Clock()
    local d, seen = Deferred(), nil
    d:addErrback(function(f) seen = f.type; return f end)
    d:addTimeout(1, clock)
    local o = outcome(d)
    clock:advance(1)
    assert.equals(err.CancelledError, seen)
    assert.equals(err.TimeoutError, o.value.type)
  end)
end)

describe("defer helpers", function()
  it("succeed gives a fired Deferred", function()
    assert.same({ ok = true, value = 3 }, outcome(defer.succeed(3)))
  end)

  it("fail gives a failed Deferred with a Failure", function()
    local o = outcome(defer.fail(err.ConnectionLost("x")))
    assert.equals(err.ConnectionLost, o.value.type)
  end)

  it("maybeDeferred wraps a plain result", function()
    local o = outcome(defer.maybeDeferred(function(a, b) return a + b end, 1, 2))
    assert.same({ ok = true, value = 3 }, o)
  end)

  it("maybeDeferred turns a raised error into a failure", function()
    local o = outcome(defer.maybeDeferred(function() error("bad") end))
    assert.is_false(o.ok)
    assert.matches("bad", o.value.value)
  end)

  it("maybeDeferred turns a returned Failure into a failure", function()
    local o = outcome(defer.maybeDeferred(function() return Failure("f") end))
    assert.is_false(o.ok)
  end)

  it("maybeDeferred returns a returned Deferred itself", function()
    local d = Deferred()
    assert.equals(d, defer.maybeDeferred(function() return d end))
  end)

  it("execute runs f and wraps its result or error", function()
    assert.same({ ok = true, value = 4 },
      outcome(defer.execute(function(x) return x * 2 end, 2)))
    assert.is_false(outcome(defer.execute(function() error("e") end)).ok)
  end)
end)

describe("unhandled errors", function()
  local events, observer
  before_each(function()
    events = {}
    observer = log.addObserver(function(ev) events[#events + 1] = ev end)
    collectgarbage(); collectgarbage()
    events = {}
  end)
  after_each(function() log.removeObserver(observer) end)

  local function unhandled()
    local n = 0
    for _, ev in ipairs(events) do
      if ev.text:find("Unhandled error in Deferred:", 1, true) then
        n = n + 1
      end
    end
    return n
  end

  it("logs a garbage Deferred's unhandled Failure once, with traceback",
    function()
      do
        local d = Deferred()
        d:callback(1)
        d:addCallback(function() error("lost in the void") end)
      end
      collectgarbage(); collectgarbage()
      collectgarbage(); collectgarbage()
      assert.equals(1, unhandled())
      local text = events[1].text
      assert.matches("lost in the void", text, 1, true)
      assert.matches("defer_spec.lua", text, 1, true)
      assert.equals("error", events[1].level)
    end)

  it("does not log a failure that an errback handled", function()
    do
      local d = defer.fail("handled")
      d:addErrback(function() end)
    end
    collectgarbage(); collectgarbage()
    assert.equals(0, unhandled())
  end)

  it("does not log a failure passed on to a chained Deferred", function()
    do
      local outer, inner = Deferred(), Deferred()
      outer:addCallback(function() return inner end)
      outer:addErrback(function() end)
      outer:callback(1)
      inner:errback("moved")
    end
    collectgarbage(); collectgarbage()
    assert.equals(0, unhandled())
  end)

  it("does not log successful Deferreds", function()
    do local _ = defer.succeed(1) end
    collectgarbage(); collectgarbage()
    assert.equals(0, unhandled())
  end)
end)

describe("DeferredList", function()
  it("fires with ok/value pairs in list order", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.DeferredList({ d1, d2 }))
    d2:callback("two")
    assert.is_nil(o.ok)
    d1:callback("one")
    assert.same({ { true, "one" }, { true, "two" } }, o.value)
  end)

  it("reports failures as false pairs", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.DeferredList({ d1, d2 }, { consumeErrors = true }))
    d1:errback("bad")
    d2:callback(2)
    assert.is_false(o.value[1][1])
    assert.equals("bad", o.value[1][2].value)
    assert.same({ true, 2 }, o.value[2])
  end)

  it("fires at once for an empty list", function()
    assert.same({ ok = true, value = {} }, outcome(defer.DeferredList({})))
  end)

  it("handles Deferreds that already fired", function()
    local o = outcome(defer.DeferredList({ defer.succeed(1), defer.succeed(2) }))
    assert.same({ { true, 1 }, { true, 2 } }, o.value)
  end)

  it("fires with value and index on the first success", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.DeferredList({ d1, d2 },
      { fireOnOneCallback = true }))
    d2:callback("second")
    assert.same({ ok = true, value = { "second", 2 } }, o)
    d1:callback("first")
  end)

  it("errbacks with FirstError on the first failure", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.DeferredList({ d1, d2 },
      { fireOnOneErrback = true, consumeErrors = true }))
    d2:errback(err.ConnectionLost("x"))
    assert.is_false(o.ok)
    assert.equals(err.FirstError, o.value.type)
    assert.equals(2, o.value.value.index)
    assert.equals(err.ConnectionLost, o.value.value.subFailure.type)
  end)

  it("leaves the failure in the Deferred without consumeErrors", function()
    local d1 = Deferred()
    local _ = defer.DeferredList({ d1 })
    d1:errback("kept")
    local o = outcome(d1)
    assert.is_false(o.ok)
  end)

  it("replaces the failure with nil with consumeErrors", function()
    local d1 = Deferred()
    local _ = defer.DeferredList({ d1 }, { consumeErrors = true })
    d1:errback("eaten")
    assert.same({ ok = true }, outcome(d1))
  end)

  it("cancels every Deferred when cancelled", function()
    local d1, d2 = Deferred(), Deferred()
    local dl = defer.DeferredList({ d1, d2 }, { consumeErrors = true })
    local o = outcome(dl)
    dl:cancel()
    assert.is_true(d1.called and d2.called)
    assert.is_false(o.value[1][1])
    assert.equals(err.CancelledError, o.value[1][2].type)
  end)

  it("does not cancel its Deferreds once fired", function()
    local d1, d2 = Deferred(), Deferred()
    local dl = defer.DeferredList({ d1, d2 }, { fireOnOneCallback = true })
    d1:callback(1)
    dl:cancel()
    assert.is_false(d2.called)
  end)

  -- Twisted's test_cancelDeferredListWithOriginalDeferreds.
  it("cancels only the Deferreds it was given, not ones added to the table later",
    function()
      local d1, d2, d3 = Deferred(), Deferred(), Deferred()
      local list = { d1, d2 }
      local dl = defer.DeferredList(list)
      outcome(dl)
      list[#list + 1] = d3
      dl:cancel()
      assert.equals(err.CancelledError, outcome(d1).value.type)
      assert.equals(err.CancelledError, outcome(d2).value.type)
      assert.is_false(d3.called)
    end)
end)

describe("gatherResults", function()
  it("fires with the list of values", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.gatherResults({ d1, d2 }))
    d1:callback(1)
    d2:callback(2)
    assert.equals(1, o.value[1])
    assert.equals(2, o.value[2])
  end)

  it("errbacks with FirstError when one fails", function()
    local d1, d2 = Deferred(), Deferred()
    local o = outcome(defer.gatherResults({ d1, d2 }, true))
    d1:errback("bad")
    assert.equals(err.FirstError, o.value.type)
    assert.equals(1, o.value.value.index)
    d2:callback(2)
  end)

  it("consumes the errors with consumeErrors", function()
    local d1 = Deferred()
    outcome(defer.gatherResults({ d1 }, true))
    d1:errback("bad")
    assert.same({ ok = true }, outcome(d1))
  end)
end)

describe("DeferredLock", function()
  it("acquires at once when free and queues otherwise", function()
    local lock = defer.DeferredLock()
    local first = outcome(lock:acquire())
    assert.equals(lock, first.value)
    assert.is_true(lock.locked)
    local second = outcome(lock:acquire())
    assert.is_nil(second.ok)
    lock:release()
    assert.equals(lock, second.value)
    assert.is_true(lock.locked)
    lock:release()
    assert.is_false(lock.locked)
  end)

  it("refuses to release an unlocked lock", function()
    assert.has_error(function() defer.DeferredLock():release() end)
  end)

  it("runs f under the lock and releases after its Deferred", function()
    local lock = defer.DeferredLock()
    local inner = Deferred()
    local o = outcome(lock:run(function(a) assert.equals("arg", a) return inner end,
      "arg"))
    assert.is_true(lock.locked)
    inner:callback("done")
    assert.same({ ok = true, value = "done" }, o)
    assert.is_false(lock.locked)
  end)

  it("releases the lock when f raises", function()
    local lock = defer.DeferredLock()
    local o = outcome(lock:run(function() error("x") end))
    assert.is_false(o.ok)
    assert.is_false(lock.locked)
  end)

  it("removes a cancelled waiter from the queue", function()
    local lock = defer.DeferredLock()
    lock:acquire()
    local waiter = lock:acquire()
    local o = outcome(waiter)
    waiter:cancel()
    assert.equals(err.CancelledError, o.value.type)
    lock:release()
    assert.is_false(lock.locked)
  end)
end)

describe("DeferredSemaphore", function()
  it("hands out tokens up to the limit and queues the rest", function()
    local sem = defer.DeferredSemaphore(2)
    assert.equals(2, sem.limit)
    outcome(sem:acquire())
    outcome(sem:acquire())
    assert.equals(0, sem.tokens)
    local third = outcome(sem:acquire())
    assert.is_nil(third.ok)
    sem:release()
    assert.equals(sem, third.value)
    assert.equals(0, sem.tokens)
  end)

  it("refuses fewer than one token", function()
    assert.has_error(function() defer.DeferredSemaphore(0) end)
  end)

  it("refuses too many releases", function()
    assert.has_error(function() defer.DeferredSemaphore(1):release() end)
  end)

  it("runs f with a token", function()
    local sem = defer.DeferredSemaphore(1)
    local o = outcome(sem:run(function(x) return x + 1 end, 1))
    assert.same({ ok = true, value = 2 }, o)
    assert.equals(1, sem.tokens)
  end)

  it("removes a cancelled waiter", function()
    local sem = defer.DeferredSemaphore(1)
    sem:acquire()
    local w = sem:acquire()
    outcome(w)
    w:cancel()
    sem:release()
    assert.equals(1, sem.tokens)
  end)
end)

describe("DeferredQueue", function()
  it("hands a put value to a waiting get", function()
    local q = defer.DeferredQueue()
    local o = outcome(q:get())
    q:put("v")
    assert.same({ ok = true, value = "v" }, o)
  end)

  it("gives pending values in order", function()
    local q = defer.DeferredQueue()
    q:put(1)
    q:put(2)
    assert.equals(1, outcome(q:get()).value)
    assert.equals(2, outcome(q:get()).value)
  end)

  it("raises QueueOverflow past size", function()
    local q = defer.DeferredQueue(1)
    q:put(1)
    assert.is_true(capture(q.put, q, 2):isa(err.QueueOverflow))
  end)

  it("raises QueueUnderflow past backlog", function()
    local q = defer.DeferredQueue(nil, 1)
    q:get()
    assert.is_true(capture(q.get, q):isa(err.QueueUnderflow))
  end)

  -- Twisted's testQueue.
  it("queues puts and gets against size and backlog", function()
    local q = defer.DeferredQueue(2, 2)
    local gotten = {}
    local function got(v) gotten[#gotten + 1] = v end
    q:get():addCallback(got)
    q:get():addCallback(got)
    assert.is_true(capture(q.get, q):isa(err.QueueUnderflow))
    q:put(0)
    assert.same({ 0 }, gotten)
    q:put(1)
    assert.same({ 0, 1 }, gotten)
    q:put(2)
    q:put(3)
    assert.same({ 0, 1 }, gotten)
    assert.is_true(capture(q.put, q, nil):isa(err.QueueOverflow))
    gotten = {}
    q:get():addCallback(got)
    q:get():addCallback(got)
    assert.same({ 2, 3 }, gotten)
    assert.is_true(capture(defer.DeferredQueue(0).put, defer.DeferredQueue(0),
      nil):isa(err.QueueOverflow))
    local noBacklog = defer.DeferredQueue(nil, 0)
    assert.is_true(capture(noBacklog.get, noBacklog):isa(err.QueueUnderflow))
  end)

  -- Twisted's test_cancelQueueAfterGet: put(None) then get() gives None.
  it("keeps a nil put while nobody waits, and gives it to the next get",
    function()
      local q = defer.DeferredQueue()
      local d = q:get()
      d:cancel()
      assert.equals(err.CancelledError, outcome(d).value.type)
      q:put(nil)
      assert.same({ ok = true }, outcome(q:get()))
    end)

  it("keeps nils among pending values, in order, and counts them for size",
    function()
      local q = defer.DeferredQueue(3)
      q:put(nil)
      q:put("b")
      q:put(nil)
      assert.equals(3, q.pending.n)
      assert.is_true(capture(q.put, q, "d"):isa(err.QueueOverflow))
      local o1, o2, o3 = outcome(q:get()), outcome(q:get()), outcome(q:get())
      assert.same({ { ok = true }, { ok = true, value = "b" }, { ok = true } },
        { o1, o2, o3 })
      assert.equals(0, q.pending.n)
      assert.is_nil(outcome(q:get()).ok)
    end)

  it("drops a cancelled get from the waiters", function()
    local q = defer.DeferredQueue()
    local g = q:get()
    outcome(g)
    g:cancel()
    q:put("kept")
    assert.equals("kept", outcome(q:get()).value)
  end)
end)
