local err = require "loom.error"

describe("loom.error", function()
  it("makes an error class whose values carry a message", function()
    local Boom = err.new("Boom")
    local e = Boom("it broke")
    assert.equals("it broke", e.message)
    assert.equals(Boom, getmetatable(e))
  end)

  it("copies the given fields into the error value", function()
    local Boom = err.new("Boom")
    local e = Boom("x", { code = 7, host = "h" })
    assert.equals(7, e.code)
    assert.equals("h", e.host)
  end)

  it("makes the same value with Cls:new(message, fields)", function()
    local e = err.ConnectionLost:new("gone", { reason = 1 })
    assert.equals("gone", e.message)
    assert.equals(1, e.reason)
    assert.is_true(e:isa(err.ConnectionLost))
  end)

  it("formats tostring as 'Name: message'", function()
    assert.equals("ConnectionDone: Connection was closed cleanly.",
      tostring(err.ConnectionDone("Connection was closed cleanly.")))
  end)

  it("formats tostring as the bare name without a message", function()
    assert.equals("CancelledError", tostring(err.CancelledError()))
  end)

  it("answers isa for the class and its bases only", function()
    local Base = err.new("Base")
    local Sub = err.new("Sub", Base)
    local Other = err.new("Other")
    local e = Sub("x")
    assert.is_true(e:isa(Sub))
    assert.is_true(e:isa(Base))
    assert.is_true(e:isa(err.Error))
    assert.is_false(e:isa(Other))
    assert.is_false(Base("y"):isa(Sub))
  end)

  it("tells error values from other values with isError", function()
    assert.is_true(err.isError(err.TimeoutError("t")))
    assert.is_false(err.isError("a string"))
    assert.is_false(err.isError({ message = "plain table" }))
    assert.is_false(err.isError(nil))
    assert.is_false(err.isError(err.TimeoutError))
  end)

  it("rejects a base that is not an error class", function()
    assert.has_error(function() err.new("X", {}) end,
      "error.new: base must be an error class")
  end)

  it("can be raised and caught as the value itself", function()
    local e = err.LineTooLong("too long")
    local ok, got = pcall(error, e)
    assert.is_false(ok)
    assert.equals(e, got)
  end)

  it("derives ConnectionRefusedError from ConnectError", function()
    assert.is_true(err.ConnectionRefusedError("r"):isa(err.ConnectError))
  end)

  it("derives ConnectionAborted from ConnectionLost", function()
    assert.is_true(err.ConnectionAborted("a"):isa(err.ConnectionLost))
  end)

  it("derives UnknownHostError from DNSLookupError", function()
    assert.is_true(err.UnknownHostError("u"):isa(err.DNSLookupError))
  end)

  it("keeps TimeoutError apart from ConnectError", function()
    assert.is_false(err.TimeoutError("t"):isa(err.ConnectError))
  end)

  it("provides every built-in class of the contract", function()
    local names = { "ConnectionDone", "ConnectionLost",
      "ConnectionRefusedError", "TimeoutError", "DNSLookupError",
      "CancelledError", "AlreadyCalledError", "AlreadyCalled",
      "AlreadyCancelled", "FirstError", "ProcessDone", "ProcessTerminated",
      "LineTooLong", "NetstringParseError", "QueueOverflow", "QueueUnderflow",
      "ConnectError", "ConnectionAborted", "NotConnectingError",
      "AlreadyListened", "CannotListenError", "UnknownHostError" }
    for _, name in ipairs(names) do
      assert.is_true(err.isErrorClass(err[name]), name)
      assert.equals(name, tostring(err[name]()))
    end
  end)

  it("lets a subclass made with extend keep the class behaviour", function()
    local Mine = err.ConnectionLost:extend({ __name = "Mine" })
    local e = Mine("m")
    assert.is_true(e:isa(err.ConnectionLost))
    assert.equals("Mine: m", tostring(e))
  end)
end)

describe("error classes used by the reactor", function()
  local err = require "loom.error"
  it("makes process endings connection endings, as Twisted", function()
    assert.is_true(err.ProcessDone("x"):isa(err.ConnectionDone))
    assert.is_true(err.ProcessTerminated("x"):isa(err.ConnectionLost))
  end)

  it("has UserError under ConnectError, and the reactor's own errors",
    function()
      assert.is_true(err.UserError("x"):isa(err.ConnectError))
      for _, name in ipairs({ "ReactorNotRunning", "MulticastJoinError",
        "ProcessExitedAlready" }) do
        assert.is_true(err.isErrorClass(err[name]), name)
      end
    end)
end)
