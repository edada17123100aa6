local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local task = require "loom.task"

local Deferred, inline, await = defer.Deferred, defer.inlineCallbacks,
  defer.await

local function outcome(d)
  local o = {}
  d:addCallbacks(function(v) o.ok, o.value = true, v end,
    function(f) o.ok, o.value = false, f end)
  return o
end

describe("inlineCallbacks", function()
  it("returns a function that returns a Deferred", function()
    local f = inline(function() return 1 end)
    assert.is_true(defer.isDeferred(f()))
  end)

  it("fires the Deferred with the returned value", function()
    local f = inline(function(a, b) return a + b end)
    assert.same({ ok = true, value = 5 }, outcome(f(2, 3)))
  end)

  it("fires with false, nil or nothing when the body returns them", function()
    assert.same({ ok = true, value = false },
      outcome(inline(function() return false end)()))
    local o = outcome(inline(function() return nil end)())
    assert.is_true(o.ok)
    assert.is_nil(o.value)
    o = outcome(inline(function() end)())
    assert.is_true(o.ok)
    assert.is_nil(o.value)
    o = outcome(inline(function() await(defer.succeed(1)) end)())
    assert.is_true(o.ok)
  end)

  it("gives each call its own coroutine and state", function()
    local pending = { Deferred(), Deferred() }
    local f = inline(function(k) return k * await(pending[k]) end)
    local a, b = outcome(f(1)), outcome(f(2))
    pending[2]:callback(10)
    pending[1]:callback(5)
    assert.same({ ok = true, value = 5 }, a)
    assert.same({ ok = true, value = 20 }, b)
  end)

  it("keeps nothing of a finished call alive", function()
    local weak = setmetatable({}, { __mode = "k" })
    local f = inline(function(arg)
      local result = {}
      weak[result] = "result"
      return result, arg
    end)
    do
      local arg = {}
      weak[arg] = "argument"
      f(arg)
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  -- Fields a Deferred itself may hold; the rest would be inlineCallbacks'.
  local deferredFields = { called = true, result = true, _running = true,
    _i = true, paused = true, _chainedTo = true, _debugInfo = true }

  local function otherFields(d)
    local names = {}
    for k in pairs(d) do
      if type(k) ~= "number" and not deferredFields[k] then
        names[#names + 1] = k
      end
    end
    table.sort(names)
    return names
  end

  it("keeps a call's state in one table, off the Deferred it returns",
    function()
      local w1, w2 = Deferred(), Deferred()
      local d = inline(function()
        local a = await(w1)
        return a + coroutine.yield(w2)
      end)()
      assert.same({ "_call" }, otherFields(d))
      w1:callback(1)
      assert.same({ "_call" }, otherFields(d))
      w2:callback(2)
      assert.same({}, otherFields(d))
      assert.same({ ok = true, value = 3 }, outcome(d))
    end)

  it("gives a call made from a finished call's callbacks its own state",
    function()
      -- The first call's state is pooled before its Deferred fires, so the
      -- second call, made from that Deferred's callback, reuses it.
      local pending = { Deferred(), Deferred() }
      local f = inline(function(k) return k * await(pending[k]) end)
      local d1, o2 = f(1), nil
      d1:addCallback(function(v)
        o2 = outcome(f(2))
        return v
      end)
      pending[1]:callback(5)
      assert.same({ ok = true, value = 5 }, outcome(d1))
      d1:cancel() -- fired: leaves the second call's wait alone
      assert.is_false(pending[2].called)
      assert.is_nil(o2.ok)
      pending[2]:callback(10)
      assert.same({ ok = true, value = 20 }, o2)
    end)

  it("keeps no finished call's Deferred alive after it waited", function()
    local weak = setmetatable({}, { __mode = "k" })
    local f = inline(function(w) return await(w) end)
    do
      local w = Deferred()
      local d = f(w)
      weak[d] = "deferred"
      w:callback(1)
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("runs the next call on a fresh coroutine after a body raised",
    function()
      local seen = {}
      local f = inline(function(fail)
        seen[#seen + 1] = coroutine.running()
        if fail then
          error("boom")
        end
      end)
      f(false)
      f(false)
      assert.equals(seen[1], seen[2]) -- a finished coroutine is reused
      outcome(f(true))
      f(false)
      assert.are_not.equal(seen[3], seen[4])
    end)

  it("runs the body synchronously until the first wait", function()
    local steps = {}
    local d = Deferred()
    local f = inline(function()
      steps[#steps + 1] = "before"
      await(d)
      steps[#steps + 1] = "after"
    end)
    f()
    assert.same({ "before" }, steps)
    d:callback(nil)
    assert.same({ "before", "after" }, steps)
  end)

  it("returns the result of an awaited Deferred when it fires", function()
    local d = Deferred()
    local f = inline(function() return await(d) * 2 end)
    local o = outcome(f())
    assert.is_nil(o.ok)
    d:callback(21)
    assert.same({ ok = true, value = 42 }, o)
  end)

  it("awaits two Deferreds in turn", function()
    local clock = task.Clock()
    local f = inline(function()
      local a = await(task.deferLater(clock, 1, function() return 1 end))
      local b = await(task.deferLater(clock, 1, function() return 2 end))
      return a + b
    end)
    local o = outcome(f())
    clock:advance(1)
    assert.is_nil(o.ok)
    clock:advance(1)
    assert.same({ ok = true, value = 3 }, o)
  end)

  it("does not yield when awaiting an already fired Deferred", function()
    local co
    local f = inline(function()
      co = coroutine.running()
      local v = await(defer.succeed("now"))
      return v, coroutine.status(co)
    end)
    local o = outcome(f())
    assert.same({ ok = true, value = "now" }, o)
  end)

  it("raises the Failure itself from await", function()
    local f = inline(function()
      local ok, e = pcall(await, defer.fail(err.ConnectionLost("x")))
      return { ok, e }
    end)
    local o = outcome(f())
    assert.is_false(o.value[1])
    assert.is_true(failure.isFailure(o.value[2]))
    assert.equals(err.ConnectionLost, o.value[2].type)
  end)

  it("raises a later failure from await as well", function()
    local d = Deferred()
    local f = inline(function()
      local ok, e = pcall(await, d)
      return ok == false and e.value
    end)
    local o = outcome(f())
    d:errback("later")
    assert.same({ ok = true, value = "later" }, o)
  end)

  it("errbacks with an uncaught awaited Failure unchanged", function()
    local fl = failure.Failure("inner")
    local f = inline(function() await(defer.fail(fl)) end)
    assert.equals(fl, outcome(f()).value)
  end)

  it("errbacks when the body raises, with the user's line", function()
    local line
    local f = inline(function()
      line = debug.getinfo(1, "l").currentline; error("body failed")
    end)
    local o = outcome(f())
    assert.is_false(o.ok)
    assert.matches("body failed", o.value.value, 1, true)
    assert.matches("inline_spec.lua:" .. line .. ":", o.value.traceback, 1,
      true)
  end)

  it("shows the user's line after a wait in the traceback", function()
    local d, line = Deferred(), nil
    local f = inline(function()
      await(d)
      line = debug.getinfo(1, "l").currentline; error(err.TimeoutError("t"))
    end)
    local o = outcome(f())
    d:callback(nil)
    assert.equals(err.TimeoutError, o.value.type)
    assert.matches("inline_spec.lua:" .. line .. ":", o.value.traceback, 1,
      true)
  end)

  it("consumes the awaited Deferred's result", function()
    local d = Deferred()
    local f = inline(function() return await(d) end)
    f()
    d:callback("v")
    assert.is_nil(d.result)
  end)

  it("handles the awaited Deferred's failure (nothing unhandled)", function()
    local d = Deferred()
    local f = inline(function() pcall(await, d) end)
    f()
    d:errback("x")
    assert.is_nil(d.result)
  end)

  it("returns non-Deferred values given to await", function()
    local f = inline(function() return await(7) end)
    assert.equals(7, outcome(f()).value)
  end)

  it("raises a clear error for await outside inlineCallbacks", function()
    assert.has_error(function() await(defer.succeed(1)) end,
      "defer.await: called outside an inlineCallbacks function")
  end)

  it("raises for await in a plain coroutine inside one", function()
    local f = inline(function()
      local co = coroutine.create(function() return await(defer.succeed(1)) end)
      local ok, e = coroutine.resume(co)
      return { ok, e }
    end)
    local o = outcome(f())
    assert.is_false(o.value[1])
    assert.matches("outside an inlineCallbacks function", o.value[2], 1, true)
  end)

  it("refuses to wait from a callback run inside the coroutine", function()
    local f = inline(function()
      local d, pending = Deferred(), Deferred()
      local o = outcome(d:addCallback(function() return await(pending) end))
      d:callback(1)
      return { o.value }
    end)
    local o = outcome(f())
    assert.is_true(o.ok)
    assert.matches("cannot wait inside a Deferred callback",
      o.value[1].value, 1, true)
  end)

  it("chains a returned Deferred into the result", function()
    local inner = Deferred()
    local f = inline(function() return inner end)
    local o = outcome(f())
    inner:callback("via inner")
    assert.same({ ok = true, value = "via inner" }, o)
  end)

  it("hands plain coroutine.yield values straight back", function()
    local f = inline(function() return coroutine.yield("echo") end)
    assert.equals("echo", outcome(f()).value)
  end)

  it("cancels the awaited Deferred when its Deferred is cancelled", function()
    local waited = Deferred()
    local f = inline(function() return await(waited) end)
    local d = f()
    local o = outcome(d)
    d:cancel()
    assert.is_true(waited.called)
    assert.equals(err.CancelledError, o.value.type)
  end)

  it("lets the body catch the cancellation, go on, and fire with its result",
    function()
      local waited = Deferred()
      local after = Deferred()
      local caught
      local f = inline(function()
        local ok, e = pcall(await, waited)
        caught = not ok and e.type
        return await(after)
      end)
      local d = f()
      local o = outcome(d)
      d:cancel()
      assert.equals(err.CancelledError, caught)
      assert.is_nil(o.ok)
      after:callback("the body's result")
      assert.same({ ok = true, value = "the body's result" }, o)
    end)

  it("cancels what the body waits on now when cancelled again", function()
    local first, second = Deferred(), Deferred()
    local f = inline(function()
      pcall(await, first)
      return await(second)
    end)
    local d = f()
    local o = outcome(d)
    d:cancel()
    assert.is_nil(o.ok)
    d:cancel()
    assert.is_true(second.called)
    assert.is_false(o.ok)
    assert.equals(err.CancelledError, o.value.type)
  end)

  it("cancels the Deferred the body returned when cancelled", function()
    local inner = Deferred()
    local d = inline(function() return inner end)()
    local o = outcome(d)
    d:cancel()
    assert.is_true(inner.called)
    assert.is_false(o.ok)
    assert.equals(err.CancelledError, o.value.type)
  end)

  it("cancels through nested inlineCallbacks calls", function()
    local leaf = Deferred()
    local innerCaught
    local inner = inline(function()
      local ok, e = pcall(await, leaf)
      innerCaught = not ok and e.type
      return "inner recovered"
    end)
    local outer = inline(function() return await(inner()) .. ", outer too" end)
    local d = outer()
    local o = outcome(d)
    d:cancel()
    assert.equals(err.CancelledError, innerCaught)
    assert.same({ ok = true, value = "inner recovered, outer too" }, o)
  end)

  it("runs 10,000 nested levels that complete synchronously", function()
    local f
    f = inline(function(n)
      if n == 0 then return 0 end
      return await(f(n - 1)) + 1
    end)
    assert.same({ ok = true, value = 10000 }, outcome(f(10000)))
  end)

  it("runs 10,000 nested levels waiting on one pending Deferred", function()
    local leaf = Deferred()
    local f
    f = inline(function(n)
      if n == 0 then return await(leaf) end
      return await(f(n - 1)) + 1
    end)
    local o = outcome(f(10000))
    assert.is_nil(o.ok)
    leaf:callback(5)
    assert.same({ ok = true, value = 10005 }, o)
  end)

  it("propagates a failure through 10,000 nested levels", function()
    local leaf = Deferred()
    local f
    f = inline(function(n)
      if n == 0 then return await(leaf) end
      return await(f(n - 1))
    end)
    local o = outcome(f(10000))
    leaf:errback(err.ConnectionLost("deep"))
    assert.is_false(o.ok)
    assert.equals(err.ConnectionLost, o.value.type)
  end)

  it("runs many sequential awaits in one body", function()
    local f = inline(function()
      local total = 0
      for i = 1, 100000 do
        total = total + await(defer.succeed(1))
      end
      return total
    end)
    assert.equals(100000, outcome(f()).value)
  end)
end)

-- Twisted's CancellationTests (twisted/internet/test/test_inlinecb.py). Let
-- G be an inlineCallbacks function, D the Deferred a call of G returns and
-- C the Deferred G waits on.
for _, way in ipairs({ { "await", await }, { "coroutine.yield", coroutine.yield } }) do
local waitName, wait = way[1], way[2]
describe("inlineCallbacks cancellation, waiting with " .. waitName, function()
  local UntranslatedError = err.new("UntranslatedError")
  local TranslatedError = err.new("TranslatedError")
  local DontFail = err.new("DontFail")

  local outstanding

  before_each(function()
    outstanding = {}
  end)

  local function getDeferred()
    local d = Deferred()
    outstanding[#outstanding + 1] = d
    return d
  end

  -- G: waits on C; turns an UntranslatedError into a TranslatedError and a
  -- DontFail into a value; returns C's result + 1.
  local sampleInlineCB = inline(function(getChildDeferred)
    local ok, x = pcall(wait, (getChildDeferred or getDeferred)())
    if not ok then
      if x:check(UntranslatedError) then
        error(TranslatedError())
      elseif x:check(DontFail) then
        x = x.value.actualValue - 2
      else
        error(x, 0)
      end
    end
    return x + 1
  end)

  it("cancels C at once when D is cancelled", function()
    local childResult = "FAILURE"
    local function getChildDeferred()
      local d = Deferred()
      d:addErrback(function(f)
        childResult = f:check(err.CancelledError)
        return f
      end)
      return d
    end
    local d = sampleInlineCB(getChildDeferred)
    d:addErrback(function() end)
    d:cancel()
    assert.equals(err.CancelledError, childResult)
  end)

  it("errbacks D with C's CancelledError", function()
    local d = sampleInlineCB()
    local o = outcome(d)
    d:cancel()
    assert.is_false(o.ok)
    assert.equals(err.CancelledError, o.value.type)
  end)

  it("lets G translate the error C fails with into another error", function()
    local a = Deferred(function(it) it:errback(UntranslatedError()) end)
    local d = sampleInlineCB(function() return a end)
    local o = outcome(d)
    d:cancel()
    assert.is_false(o.ok)
    assert.equals(TranslatedError, o.value.type)
  end)

  it("lets G translate the error C fails with into a result", function()
    local a = Deferred(function(it)
      it:errback(DontFail(nil, { actualValue = 4321 }))
    end)
    local d = sampleInlineCB(function() return a end)
    local o = outcome(d)
    d:cancel()
    assert.same({ ok = true, value = 4320 }, o)
  end)

  it("keeps D waiting until C's chain reaches G's wait", function()
    local moreDeferred = Deferred()
    local function deferMe()
      local d = Deferred()
      d:addErrback(function(f)
        f:trap(err.CancelledError)
        return moreDeferred
      end)
      return d
    end
    local d = sampleInlineCB(deferMe)
    local o = outcome(d)
    d:cancel()
    assert.is_nil(o.ok)
    moreDeferred:callback(6543)
    assert.same({ ok = true, value = 6544 }, o)
  end)
end)
end

-- Twisted's `result = yield d`: coroutine.yield(d) in the body is await(d).
describe("coroutine.yield inside inlineCallbacks", function()
  local yield = coroutine.yield

  it("waits for a pending Deferred and returns its result", function()
    local d = Deferred()
    local o = outcome(inline(function() return yield(d) * 2 end)())
    assert.is_nil(o.ok)
    d:callback(21)
    assert.same({ ok = true, value = 42 }, o)
  end)

  it("returns a fired Deferred's result at once and consumes it", function()
    local fired = defer.succeed("now")
    local steps = {}
    inline(function()
      steps[#steps + 1] = yield(fired)
    end)()
    assert.same({ "now" }, steps)
    assert.is_nil(fired.result)
  end)

  it("returns any other value at once", function()
    local f = inline(function()
      return { yield(5), yield(nil), yield("s") }
    end)
    assert.same({ ok = true, value = { 5, nil, "s" } }, outcome(f()))
  end)

  it("raises a fired Deferred's Failure itself at the yield", function()
    local fl = failure.Failure(err.ConnectionLost("x"))
    local f = inline(function()
      local ok, e = pcall(yield, defer.fail(fl))
      return { ok, e }
    end)
    local o = outcome(f())
    assert.is_false(o.value[1])
    assert.equals(fl, o.value[2])
  end)

  it("raises a later Failure at the yield, inside the body's pcall",
    function()
      local d = Deferred()
      local f = inline(function()
        local ok, e = pcall(function() return yield(d) end)
        return ok == false and e.value
      end)
      local o = outcome(f())
      d:errback("later")
      assert.same({ ok = true, value = "later" }, o)
    end)

  it("gives the Failure to an xpcall handler at the yield", function()
    local d = Deferred()
    local f = inline(function()
      local handled
      xpcall(yield, function(e)
        handled = e
        return e
      end, d)
      return handled
    end)
    local o = outcome(f())
    local fl = failure.Failure("handled")
    d:errback(fl)
    assert.equals(fl, o.value)
  end)

  it("errbacks with an uncaught Failure unchanged, and marks it handled",
    function()
      local d = Deferred()
      local o = outcome(inline(function() yield(d) end)())
      local fl = failure.Failure(err.TimeoutError("t"))
      d:errback(fl)
      assert.equals(fl, o.value)
      assert.is_nil(d.result)
    end)

  it("goes on after a caught Failure and waits again", function()
    local first, second = Deferred(), Deferred()
    local f = inline(function()
      local ok = pcall(yield, first)
      return { ok, yield(second) }
    end)
    local o = outcome(f())
    first:errback("no")
    assert.is_nil(o.ok)
    second:callback("yes")
    assert.same({ ok = true, value = { false, "yes" } }, o)
  end)

  it("nests: a body yields the Deferred of another inlineCallbacks call",
    function()
      local leaf = Deferred()
      local inner = inline(function() return yield(leaf) + 1 end)
      local outer = inline(function() return yield(inner()) * 10 end)
      local o = outcome(outer())
      leaf:callback(4)
      assert.same({ ok = true, value = 50 }, o)
    end)

  it("mixes with await in one body", function()
    local a, b = Deferred(), Deferred()
    local f = inline(function() return await(a) .. yield(b) end)
    local o = outcome(f())
    a:callback("a")
    b:callback("b")
    assert.same({ ok = true, value = "ab" }, o)
  end)

  it("runs 10,000 nested levels, and a failure through them", function()
    local leaf = Deferred()
    local f
    f = inline(function(n)
      if n == 0 then return yield(leaf) end
      return yield(f(n - 1)) + 1
    end)
    local o = outcome(f(10000))
    leaf:callback(5)
    assert.same({ ok = true, value = 10005 }, o)
    leaf = Deferred()
    o = outcome(f(10000))
    leaf:errback(err.ConnectionLost("deep"))
    assert.is_false(o.ok)
    assert.equals(err.ConnectionLost, o.value.type)
  end)

  it("reuses the coroutine after a body that waited and caught a Failure",
    function()
      local seen = {}
      local f = inline(function(d)
        seen[#seen + 1] = coroutine.running()
        pcall(yield, d)
      end)
      local d = Deferred()
      f(d)
      d:errback("caught")
      f(defer.succeed(1))
      assert.equals(seen[1], seen[2])
      assert.is_nil(debug.gethook(seen[1]))
    end)

  it("puts back a debug hook set on the body's coroutine", function()
    local d = Deferred()
    local calls = 0
    local function hook() calls = calls + 1 end
    local f = inline(function()
      debug.sethook(hook, "c")
      pcall(yield, d)
      local before = calls
      tostring(1) -- a call the hook must still see
      local kept = debug.gethook() == hook and calls > before
      debug.sethook()
      return kept
    end)
    local o = outcome(f())
    d:errback("x")
    assert.same({ ok = true, value = true }, o)
  end)

  it("leaves a yield in the body's own coroutines to them", function()
    local d = Deferred()
    local f = inline(function()
      local co = coroutine.create(function() return yield(d) end)
      local ok, got = coroutine.resume(co)
      return { ok, got == d, coroutine.status(co) }
    end)
    assert.same({ ok = true, value = { true, true, "suspended" } },
      outcome(f()))
    assert.is_false(d.called)
  end)
end)
