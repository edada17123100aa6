local failure = require "loom.failure"
local err = require "loom.error"
local Failure = failure.Failure

local function raiser()
  error(err.ConnectionLost("lost it"))
end

describe("loom.failure", function()
  it("wraps an error value", function()
    local e = err.ConnectionDone("done")
    local f = Failure(e)
    assert.equals(e, f.value)
    assert.equals(err.ConnectionDone, f.type)
  end)

  it("uses the Lua type name as type for other values", function()
    assert.equals("string", Failure("boom").type)
    assert.equals("table", Failure({}).type)
    assert.equals("number", Failure(3).type)
  end)

  it("returns a Failure given to it unchanged", function()
    local f = Failure("x")
    assert.equals(f, Failure(f))
  end)

  it("requires a value", function()
    assert.has_error(function() Failure() end,
      "Failure: a value is required (Lua has no current exception)")
  end)

  it("keeps a traceback string given to it", function()
    local f = Failure("x", "my traceback")
    assert.equals("my traceback", f.traceback)
  end)

  it("captures the creating stack as its traceback by default", function()
    local function makeIt() return Failure("x") end
    local f = makeIt()
    assert.is_string(f.traceback)
    assert.matches("stack traceback:", f.traceback, 1, true)
    assert.matches("failure_spec.lua", f.traceback, 1, true)
  end)

  it("captures the raising line through failure.handler", function()
    local ok, f = xpcall(raiser, failure.handler)
    assert.is_false(ok)
    assert.is_true(failure.isFailure(f))
    assert.equals(err.ConnectionLost, f.type)
    assert.matches("failure_spec.lua:6", f.traceback, 1, true)
  end)

  it("keeps a re-raised Failure's own traceback in handler", function()
    local f = Failure("x", "orig")
    local ok, g = xpcall(function() f:raise() end, failure.handler)
    assert.is_false(ok)
    assert.equals(f, g)
    assert.equals("orig", g.traceback)
  end)

  it("turns a nil error into a descriptive value", function()
    local _, f = xpcall(function() error(nil) end, failure.handler)
    assert.equals(failure.NIL_ERROR, f.value)
  end)

  it("checks an error class and answers the class", function()
    local f = Failure(err.ConnectionDone("d"))
    assert.equals(err.ConnectionDone,
      f:check(err.ConnectionLost, err.ConnectionDone))
  end)

  it("checks a base class against a subclass value", function()
    local f = Failure(err.ConnectionRefusedError("r"))
    assert.equals(err.ConnectError, f:check(err.ConnectError))
  end)

  it("answers nil when no class matches", function()
    local f = Failure(err.ConnectionDone("d"))
    assert.is_nil(f:check(err.ConnectionLost, err.TimeoutError))
  end)

  it("checks a Lua type name", function()
    assert.equals("string", Failure("boom"):check("table", "string"))
    assert.is_nil(Failure("boom"):check("number"))
  end)

  it("checks an error class name, including base names", function()
    local f = Failure(err.ConnectionAborted("a"))
    assert.equals("ConnectionLost", f:check("ConnectionLost"))
    assert.is_nil(f:check("ConnectionDone"))
  end)

  it("traps a matching class and returns it", function()
    local f = Failure(err.TimeoutError("t"))
    assert.equals(err.TimeoutError, f:trap(err.TimeoutError))
  end)

  it("re-raises the Failure itself when trap finds no match", function()
    local f = Failure(err.TimeoutError("t"))
    local ok, got = pcall(f.trap, f, err.ConnectionLost)
    assert.is_false(ok)
    assert.equals(f, got)
  end)

  it("raises itself with raise()", function()
    local f = Failure("x")
    local ok, got = pcall(f.raise, f)
    assert.is_false(ok)
    assert.equals(f, got)
  end)

  it("gives the message of an error value from getErrorMessage", function()
    assert.equals("lost it",
      Failure(err.ConnectionLost("lost it")):getErrorMessage())
  end)

  it("gives tostring of other values from getErrorMessage", function()
    assert.equals("boom", Failure("boom"):getErrorMessage())
    assert.equals("CancelledError",
      Failure(err.CancelledError()):getErrorMessage())
  end)

  it("puts the message before the traceback in getTraceback", function()
    local f = Failure(err.ConnectionLost("lost it"), "stack traceback:\n\tx")
    assert.equals("ConnectionLost: lost it\nstack traceback:\n\tx",
      f:getTraceback())
  end)

  it("describes itself with tostring", function()
    assert.equals("[Failure ConnectionLost: lost it]",
      tostring(Failure(err.ConnectionLost("lost it"))))
    assert.equals("[Failure string: boom]", tostring(Failure("boom")))
  end)

  it("recognises Failures with isFailure", function()
    assert.is_true(failure.isFailure(Failure("x")))
    assert.is_false(failure.isFailure("x"))
    assert.is_false(failure.isFailure({ value = 1 }))
    assert.is_false(failure.isFailure(nil))
  end)

  it("recognises instances of a Failure subclass", function()
    local MyFailure = Failure:extend({})
    local f = MyFailure("x")
    assert.is_true(failure.isFailure(f))
    assert.equals("[Failure string: x]", tostring(f))
  end)
end)
