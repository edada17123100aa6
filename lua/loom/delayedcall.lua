-- loom.delayedcall: the one DelayedCall class (Twisted's
-- twisted.internet.base.DelayedCall), made by reactor.callLater and by
-- task.Clock's callLater.
--
--   local dc = reactor.callLater(5, f, "x")   -- f("x") in 5 s
--   dc:delay(1); dc:reset(2); dc:cancel()     -- or dc:active(), dc:getTime()
--
-- A call belongs to a scheduler, which keeps it and runs it on time:
--   scheduler:seconds()              -> its current time
--   scheduler:_cancelCall(call)      forget call (it was cancelled)
--   scheduler:_resetCall(call, secs) call.time moved; it is now secs from now
-- and runs it with delayedcall.fire(call). The reactor's scheduler backs
-- each call with a C timer (call.handle); a Clock keeps a sorted list.

local class = require "loom.class"
local err = require "loom.error"

local setmetatable, type, unpack = setmetatable, type, table.unpack

local M = {}

local DelayedCall = class.Object:extend({ __name = "DelayedCall" })
M.DelayedCall = DelayedCall

-- Class defaults: a pending call stores only what differs.
DelayedCall.called = false
DelayedCall.cancelled = false

-- DelayedCall(scheduler, time, func, args): args is a table.pack; handle
-- is the scheduler's own (the reactor's timer). One table constructor, no
-- init call: reactor.callLater makes one per call.
function DelayedCall.new(cls, scheduler, time, func, args, handle)
  return setmetatable({ scheduler = scheduler, time = time, func = func,
    args = args, handle = handle }, cls)
end

-- The scheduler runs a due call: marked called first (as Twisted), then
-- func(args...) with the references dropped, so a call that ran holds
-- nothing. Errors propagate to the scheduler.
function M.fire(call)
  call.called = true
  local f, args = call.func, call.args
  call.func, call.args = nil, nil
  return f(unpack(args, 1, args.n))
end

function DelayedCall:getTime()
  return self.time
end

function DelayedCall:active()
  return not (self.called or self.cancelled)
end

local function checkPending(self, what)
  if self.cancelled then
    error(err.AlreadyCancelled(what .. ": the call was already cancelled"), 3)
  elseif self.called then
    error(err.AlreadyCalled(what .. ": the call already ran"), 3)
  end
end

local function checkSeconds(what, secs)
  if type(secs) ~= "number" or secs ~= secs then
    error(what .. ": seconds must be a number, got " .. tostring(secs), 3)
  end
end

-- Unschedule the call; AlreadyCalled/AlreadyCancelled when not pending.
function DelayedCall:cancel()
  checkPending(self, "cancel")
  self.scheduler:_cancelCall(self)
  self.cancelled = true
  self.func, self.args = nil, nil
end

-- Run secs from now instead.
function DelayedCall:reset(secs)
  checkPending(self, "reset")
  checkSeconds("reset", secs)
  local scheduler = self.scheduler
  self.time = scheduler:seconds() + secs
  scheduler:_resetCall(self, secs)
end

-- Run secs later than planned.
function DelayedCall:delay(secs)
  checkPending(self, "delay")
  checkSeconds("delay", secs)
  local scheduler = self.scheduler
  self.time = self.time + secs
  scheduler:_resetCall(self, self.time - scheduler:seconds())
end

-- Where a Lua function was defined ("file.lua:12"), else tostring(f).
local function describe(f)
  if type(f) == "function" then
    local info = debug.getinfo(f, "S")
    if info.what == "Lua" then
      return info.short_src .. ":" .. info.linedefined
    end
  end
  return tostring(f)
end

-- As Twisted's repr: <DelayedCall 0x... [2.5s] called=0 cancelled=0 f.lua:3>
-- (seconds from now; the function while the call is pending).
function DelayedCall:__tostring()
  local s = string.format("<DelayedCall %p [%gs] called=%d cancelled=%d",
    self, self.time - self.scheduler:seconds(), self.called and 1 or 0,
    self.cancelled and 1 or 0)
  if self.func ~= nil then
    s = s .. " " .. describe(self.func)
  end
  return s .. ">"
end

return M
