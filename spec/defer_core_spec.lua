-- The C half of loom.defer (bindings/deferred.c): the chain kept in the
-- Deferred's own sequence, one protected call per callback, bad arguments.
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"

local Deferred = defer.Deferred

local function nested(n)
  local ds = {}
  for i = 1, n do
    ds[i] = Deferred()
  end
  for i = 1, n - 1 do
    ds[i]:addCallback(function(v)
      ds[i + 1]:callback(v + 1)
      return v
    end)
  end
  return ds
end

describe("Deferred core", function()
  it("fires Deferreds nested 150 deep from each other's callbacks", function()
    local ds = nested(150)
    local got
    ds[150]:addCallback(function(v) got = v end)
    ds[1]:callback(1)
    assert.equals(150, got)
  end)

  it("turns running out of C stack into a Failure, not a crash", function()
    local ds = nested(400)
    local outer
    ds[1]:addBoth(function(r) outer = r end)
    ds[1]:callback(1)
    assert.equals(1, outer)
    -- The deepest level Lua allows holds the error; nothing below fired.
    local deepest = 1
    while ds[deepest + 1].called do
      deepest = deepest + 1
    end
    assert.is_true(deepest > 150 and deepest < 400)
    local f = ds[deepest].result
    assert.is_true(failure.isFailure(f))
    assert.matches("stack overflow", f:getErrorMessage(), 1, true)
    ds[deepest].result = nil -- handled here: not reported when collected
    ds[deepest]._debugInfo.failResult = nil
  end)

  it("runs chains longer than the room made up front, in order", function()
    local d, seen = Deferred(), {}
    for i = 1, 40 do
      if i % 3 == 0 then
        d:addErrback(function() seen[#seen + 1] = -i end)
      elseif i % 3 == 1 then
        d:addCallback(function(v, k) seen[#seen + 1] = k; return v end, i)
      else
        d:addBoth(function(v) seen[#seen + 1] = i; return v end)
      end
    end
    d:callback("x")
    local want = {}
    for i = 1, 40 do
      if i % 3 ~= 0 then
        want[#want + 1] = i
      end
    end
    assert.same(want, seen)
    assert.equals("x", d.result)
  end)

  it("lets go of callbacks once they have run", function()
    local d = Deferred()
    local weak = setmetatable({}, { __mode = "k" })
    do
      local f = function(v) return v end
      weak[f] = true
      d:addCallback(f)
    end
    d:callback(1)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("runs callbacks added by a callback after the others", function()
    local d, order = Deferred(), {}
    d:addCallback(function(v)
      order[#order + 1] = "a"
      d:addCallback(function(w) order[#order + 1] = "c"; return w end)
      return v
    end)
    d:addCallback(function(v) order[#order + 1] = "b"; return v end)
    d:callback(0)
    assert.same({ "a", "b", "c" }, order)
  end)

  it("passes nil extra arguments and many of them", function()
    local d = Deferred()
    local got
    d:addCallback(function(...) got = table.pack(...) end, nil, 2, nil)
    d:callback("r")
    assert.equals(4, got.n)
    assert.same({ "r", nil, 2, nil, n = 4 }, got)
    local args = {}
    for i = 1, 300 do
      args[i] = i
    end
    local count
    defer.succeed(0):addCallback(function(_, ...)
      count = select("#", ...)
    end, table.unpack(args))
    assert.equals(300, count)
  end)

  it("treats a false callback in addCallbacks as passthru", function()
    local d = defer.succeed(5)
    local got
    d:addCallbacks(false, false)
    d:addCallback(function(v) got = v end)
    assert.equals(5, got)
  end)

  it("refuses a nil callback with a clear error", function()
    local d = Deferred()
    assert.has_error(function() d:addCallback(nil) end,
      "addCallback: f must be a function")
    assert.has_error(function() d:addErrback() end,
      "addErrback: f must be a function")
    assert.has_error(function() d:addBoth(nil, 1) end,
      "addBoth: f must be a function")
  end)

  it("refuses to run on something that is not a Deferred", function()
    assert.has_error(function() Deferred.addCallback(42, print) end)
    assert.has_error(function() Deferred.callback("x", 1) end)
    assert.has_error(function() Deferred.addCallbacks(nil) end)
    assert.has_error(function()
      Deferred():addCallbacks(print, print, "not a list")
    end, "callback arguments must be a table (a list)")
  end)

  it("fails the callback, not the caller, on an impossible argument list",
    function()
      local d, f = Deferred(), nil
      d:addCallbacks(print, nil, { n = 1e9 })
      d:addErrback(function(e) f = e end)
      d:callback(1)
      assert.is_true(failure.isFailure(f))
      assert.matches("too many callback arguments", f:getErrorMessage(), 1,
        true)
      local later
      d:addCallback(function() later = true end)
      assert.is_true(later) -- the Deferred still works
    end)

  it("survives its internal fields set from Lua", function()
    local d, got = Deferred(), {}
    d._i = -5
    d.paused = -3
    d:addCallback(function(v) got[#got + 1] = v; return v end)
    d:callback("x")
    assert.same({ "x" }, got)
    d._i = "nonsense"
    d:addCallback(function(v) got[#got + 1] = v end)
    assert.same({ "x", "x" }, got)
  end)

  it("passes on a result whose class chain loops", function()
    local Loop = {}
    Loop.__index, Loop.super = Loop, Loop
    local got
    defer.succeed(1)
      :addCallback(function() return setmetatable({}, Loop) end)
      :addCallback(function(v) got = v end)
    assert.equals(Loop, getmetatable(got))
    assert.is_false(defer.isDeferred(got))
    assert.is_false(failure.isFailure(got))
  end)

  it("makes a callback that is not callable a Failure", function()
    local d = Deferred()
    d:addCallback(42)
    local f
    d:addErrback(function(e) f = e end)
    d:callback(1)
    assert.is_true(failure.isFailure(f))
    assert.matches("attempt to call", f:getErrorMessage(), 1, true)
  end)

  it("runs a subclass's init with the canceller and the rest", function()
    local Sub = Deferred:extend({ __name = "Sub" })
    local seen
    function Sub:init(canceller, a, b)
      seen = { canceller, a, b }
    end
    local cancel = function() end
    local d = Sub(cancel, 1, 2)
    assert.same({ cancel, 1, 2 }, seen)
    assert.is_true(defer.isDeferred(d))
    d:addCallback(function(v) seen = v end)
    d:callback("sub")
    assert.equals("sub", seen)
  end)

  it("keeps the unhandled-error report for a Failure given to succeed",
    function()
      local f = failure.Failure(err.TimeoutError("late"))
      local d = defer.succeed(f)
      assert.equals(f, d._debugInfo.failResult)
      d:addErrback(function() end)
      assert.is_nil(d._debugInfo.failResult)
    end)

  -- From Twisted's test_defer.py: the chain's bookkeeping.
  describe("as Twisted's test_defer", function()
    it("continues the outer chain through a fired Deferred that waits " ..
      "(test_nestedAsynchronousChainedDeferredsWithExtraCallbacks)",
      function()
        local results, failures = {}, {}
        local inner = Deferred()
        local function cb(result)
          results[#results + 1] = { "start-of-cb", result }
          local d = defer.succeed("inner")
          d:addCallback(function(r)
            results[#results + 1] = { "firstCallback", r }
            return inner:addCallback(function(v) return { v } end)
          end)
          d:addCallback(function(r)
            results[#results + 1] = { "secondCallback", r }
            return { r[1], r[1] }
          end)
          d:addErrback(function(f) failures[#failures + 1] = f end)
          return d
        end
        local outer = defer.succeed("outer")
        outer:addCallback(cb)
        outer:addCallback(function(r) results[#results + 1] = r end)
        assert.same({ { "start-of-cb", "outer" }, { "firstCallback", "inner" } },
          results)
        inner:callback("withers")
        outer:addErrback(function(f) failures[#failures + 1] = f end)
        inner:addErrback(function(f) failures[#failures + 1] = f end)
        assert.same({}, failures)
        assert.same({ { "start-of-cb", "outer" }, { "firstCallback", "inner" },
          { "secondCallback", { "withers" } }, { "withers", "withers" } },
          results)
      end)

    it("records an explicit chain (test_chainDeferredRecordsExplicitChain)",
      function()
        local a, b = Deferred(), Deferred()
        b:chainDeferred(a)
        assert.equals(b, a._chainedTo)
      end)

    it("clears it once resolved (test_explicitChainClearedWhenResolved)",
      function()
        local a, b = Deferred(), Deferred()
        b:chainDeferred(a)
        b:callback(nil)
        assert.is_nil(a._chainedTo)
      end)

    it("records an implicit chain (test_chainDeferredRecordsImplicitChain)",
      function()
        local a, b = Deferred(), Deferred()
        a:addCallback(function() return b end)
        a:callback(nil)
        assert.equals(b, a._chainedTo)
        b:callback("done")
        assert.is_nil(a._chainedTo)
        assert.equals("done", a.result)
      end)

    it("fails a callback that returns its own Deferred " ..
      "(test_circularChainException)", function()
        local d = Deferred()
        d:addCallback(function() return d end)
        d:callback("foo")
        local f = d.result
        assert.is_true(failure.isFailure(f))
        assert.matches("Callback returned the Deferred it was attached to",
          f:getErrorMessage(), 1, true)
        d:addErrback(function() end)
      end)
  end)
end)
