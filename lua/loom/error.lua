-- loom.error: error classes and error values.
--
--   local err = require "loom.error"
--   local MyError = err.new("MyError")               -- a class
--   local Sub = err.new("SubError", MyError)         -- a subclass
--   local e = Sub("it broke", { code = 7 })          -- a value
--   e:isa(MyError)    --> true
--   tostring(e)       --> "SubError: it broke"
--   error(e)          -- raise it like any Lua error value
--
-- An error value is a plain table holding `message` and the fields given,
-- whose metatable is its class. Classes are built with loom.class, so a class
-- is also `Cls:new(message, fields)` and `Cls:extend{...}` works as usual.

local class = require "loom.class"

local error_ = {}

local function describe(self)
  local name = rawget(getmetatable(self), "__name") or "Error"
  local message = rawget(self, "message")
  if message == nil then
    return name
  end
  return name .. ": " .. tostring(message)
end

-- The root of every loom error class.
local Error = class.Object:extend({ __name = "Error", __tostring = describe })
error_.Error = Error

function Error:init(message, fields)
  if fields then
    for k, v in pairs(fields) do
      self[k] = v
    end
  end
  if message ~= nil then
    self.message = message
  end
end

-- err:isa(Cls): true when err's class is Cls or inherits from it.
function Error:isa(cls)
  return class.isinstance(self, cls)
end

-- The class of an error value (its metatable).
function Error:class()
  return getmetatable(self)
end

-- error.new(name, base?): a new error class deriving from base (or Error).
function error_.new(name, base)
  assert(type(name) == "string", "error.new: name must be a string")
  base = base or Error
  if not error_.isErrorClass(base) then
    error("error.new: base must be an error class", 2)
  end
  return base:extend({ __name = name })
end

-- error.isError(v): true when v is an error value made by an error class.
function error_.isError(v)
  return class.isinstance(v, Error)
end

-- error.isErrorClass(c): true when c is Error or one of its subclasses.
function error_.isErrorClass(c)
  if type(c) ~= "table" then
    return false
  end
  while c do
    if c == Error then
      return true
    end
    c = rawget(c, "super")
  end
  return false
end

local new = error_.new

-- Connections (twisted.internet.error).
error_.ConnectionDone = new("ConnectionDone")
error_.ConnectionLost = new("ConnectionLost")
error_.ConnectionAborted = new("ConnectionAborted", error_.ConnectionLost)
-- A write would have queued more than the connection's maxWriteBuffer (a
-- peer that does not read): the connection was aborted.
error_.WriteBufferFull = new("WriteBufferFull", error_.ConnectionAborted)
error_.ConnectError = new("ConnectError")
error_.ConnectionRefusedError = new("ConnectionRefusedError",
  error_.ConnectError)
error_.NotConnectingError = new("NotConnectingError")
-- A connection attempt stopped by the program (stopConnecting).
error_.UserError = new("UserError", error_.ConnectError)
error_.ReactorNotRunning = new("ReactorNotRunning")
error_.MulticastJoinError = new("MulticastJoinError")
error_.AlreadyListened = new("AlreadyListened")
error_.CannotListenError = new("CannotListenError")
error_.DNSLookupError = new("DNSLookupError")
error_.UnknownHostError = new("UnknownHostError", error_.DNSLookupError)
-- Standalone, as in Twisted where TimeoutError is not a ConnectError.
error_.TimeoutError = new("TimeoutError")

-- The class of a failure by its error name (libuv's: "ECONNREFUSED",
-- "EAI_NONAME", ...), the one place that maps names to classes: C calls
-- that fail return nil, errname, message (bindings/call.c's
-- loom__push_error) and Lua never reads the message to pick a class.
error_.byErrno = {
  ECONNREFUSED = error_.ConnectionRefusedError,
  -- A name that is no address: not an IP literal, or getaddrinfo's answer.
  EAI_NONAME = error_.DNSLookupError,
  EAI_AGAIN = error_.DNSLookupError,
  EAI_FAIL = error_.DNSLookupError,
  EAI_NODATA = error_.DNSLookupError,
}

-- error.fromErrno(errname, message, default): an error value of
-- byErrno[errname] or else default (Error), with errno = errname.
function error_.fromErrno(errname, message, default)
  local cls = error_.byErrno[errname] or default or Error
  return cls(message, { errno = errname })
end

-- Deferreds and delayed calls.
error_.CancelledError = new("CancelledError")
error_.AlreadyCalledError = new("AlreadyCalledError")
error_.AlreadyCalled = new("AlreadyCalled")
error_.AlreadyCancelled = new("AlreadyCancelled")
error_.FirstError = new("FirstError")
error_.QueueOverflow = new("QueueOverflow")
error_.QueueUnderflow = new("QueueUnderflow")

-- FirstError's message names the index and the wrapped failure.
error_.FirstError.__tostring = function(self)
  if rawget(self, "message") ~= nil or self.subFailure == nil then
    return describe(self)
  end
  return string.format("FirstError[#%s, %s]", tostring(self.index),
    tostring(self.subFailure))
end

-- Cooperative tasks (loom.task.cooperate), as twisted.internet.task.
error_.SchedulerError = new("SchedulerError")
error_.SchedulerStopped = new("SchedulerStopped", error_.SchedulerError)
error_.TaskFinished = new("TaskFinished", error_.SchedulerError)
error_.TaskDone = new("TaskDone", error_.TaskFinished)
error_.TaskStopped = new("TaskStopped", error_.TaskFinished)
error_.TaskFailed = new("TaskFailed", error_.TaskFinished)
error_.NotPaused = new("NotPaused", error_.SchedulerError)

-- Processes.
-- As Twisted: a process ending is its connection ending.
error_.ProcessDone = new("ProcessDone", error_.ConnectionDone)
error_.ProcessTerminated = new("ProcessTerminated", error_.ConnectionLost)
error_.ProcessExitedAlready = new("ProcessExitedAlready")

-- TLS (loom.reactor.tls): a handshake that failed (`reason` names why:
-- unknownCA, expired, notYetValid, hostnameMismatch, verifyFailed,
-- handshakeFailure), or a TLS error that ended a connection.
error_.TLSError = new("TLSError", error_.ConnectionLost)

-- Protocol parsers.
error_.LineTooLong = new("LineTooLong")
error_.NetstringParseError = new("NetstringParseError")

return error_
