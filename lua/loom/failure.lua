-- loom.failure: an error value together with the traceback where it arose.
--
--   local Failure = require("loom.failure").Failure
--   local f = Failure(err.ConnectionLost("peer went away"))
--   f.value, f.type, f.traceback
--   f:check(err.ConnectionLost, err.ConnectionDone)  --> the class that matched
--   f:trap(err.ConnectionDone)       -- re-raises f unless the value matches
--   f:raise()                        -- error(f, 0)
--
-- Lua has no "current exception", so Failure() needs a value. Capture errors
-- with xpcall and failure.handler, which wraps the error where it happened:
--
--   local ok, f = xpcall(fn, failure.handler, ...)   -- f is a Failure

local class = require "loom.class"
local err = require "loom.error"
local log = require "loom.log"

local failure = {}

-- The C core's traceback when loaded: debug.traceback's format, cut at the
-- reactor boundary, and cheap on a deep stack (a Failure made inside a
-- runaway recursion must not take a second to build).
local makeTraceback = debug.traceback
do
  local ok, core = pcall(require, "loom.core")
  if ok and type(core) == "table" and core.traceback then
    makeTraceback = core.traceback
  end
end

local Failure = class.Object:extend({ __name = "Failure" })
failure.Failure = Failure

local isinstance = class.isinstance
local isError = err.isError

-- The text used for the nil error value (as lua.c prints it).
failure.NIL_ERROR = "(error object is a nil value)"

local function isFailure(x)
  local mt = getmetatable(x)
  if mt == Failure then
    return true
  end
  return mt ~= nil and type(x) == "table" and isinstance(x, Failure)
end
failure.isFailure = isFailure

-- tostring that cannot raise (log's: reporting never breaks the reporter).
local safeString = log.safeString
failure.safeString = safeString

-- failure.fromError(value, traceback): a Failure for any caught error
-- value, nil included (as lua.c, it becomes NIL_ERROR); never raises. What
-- reports a hook's error uses it.
function failure.fromError(value, traceback)
  if value == nil then
    value = failure.NIL_ERROR
  end
  return failure.Failure(value, traceback)
end

local function typeOf(value)
  if isError(value) then
    return getmetatable(value)
  end
  return type(value)
end

-- Failure(value, traceback?): a Failure wrapping value; a Failure given as
-- value is returned unchanged. traceback is a string; by default the stack
-- where the Failure is made.
function Failure:new(value, traceback)
  if value == nil then
    error("Failure: a value is required (Lua has no current exception)", 2)
  end
  if isFailure(value) then
    return value
  end
  if traceback == nil then
    traceback = makeTraceback(nil, 2)
  end
  return setmetatable({ value = value, type = typeOf(value),
    traceback = traceback }, self)
end

-- An xpcall message handler: the error as a Failure with the traceback of
-- the place that raised it. A Failure raised again keeps its own traceback.
function failure.handler(e)
  if isFailure(e) then
    return e
  end
  if e == nil then
    e = failure.NIL_ERROR
  end
  return Failure(e, makeTraceback(nil, 2))
end

-- The name of an error class, or nil for anything else.
local function className(cls)
  return type(cls) == "table" and rawget(cls, "__name") or nil
end

-- Does one check argument match this failure's value?
local function matches(self, what)
  local value = self.value
  if type(what) == "string" then
    if what == type(value) then
      return true
    end
    -- A string also names an error class or one of its bases.
    local c = isError(value) and getmetatable(value) or nil
    while c do
      if className(c) == what then
        return true
      end
      c = rawget(c, "super")
    end
    return false
  end
  return type(what) == "table" and isinstance(value, what)
end

-- f:check(cls, ...): the first argument matching the value, else nil. An
-- argument is an error class (its subclasses match too), a Lua type name
-- such as "string", or an error class name such as "ConnectionLost".
function Failure:check(...)
  for i = 1, select("#", ...) do
    local what = select(i, ...)
    if matches(self, what) then
      return what
    end
  end
  return nil
end

-- f:trap(cls, ...): like check, but raises the Failure itself (error(f, 0))
-- when nothing matches, so an errback passes the failure on unchanged.
function Failure:trap(...)
  local what = self:check(...)
  if what == nil then
    error(self, 0)
  end
  return what
end

-- The error message alone: an error value's message, or tostring(value).
function Failure:getErrorMessage()
  local value = self.value
  if isError(value) then
    local message = rawget(value, "message")
    if message ~= nil then
      return safeString(message)
    end
  end
  return safeString(value)
end

-- The message line followed by the traceback.
function Failure:getTraceback()
  return safeString(self.value) .. "\n" .. safeString(self.traceback)
end

function Failure:raise()
  error(self, 0)
end

-- Twisted's cleanFailure: nothing to release here, kept for familiarity.
function Failure:cleanFailure()
end

function Failure:__tostring()
  local t = self.type
  local tname = className(t) or safeString(t)
  if isError(self.value) then
    return "[Failure " .. safeString(self.value) .. "]"
  end
  return "[Failure " .. tname .. ": " .. safeString(self.value) .. "]"
end

return failure
