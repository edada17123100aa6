-- loom.policies: bounding what a peer can make a connection hold, as
-- twisted.protocols.policies.
--
--   local policies = require "loom.policies"
--   local Echo = protocol.Protocol:extend({ __name = "Echo", timeOut = 300 })
--   policies.mixin(Echo, policies.TimeoutMixin)
--   function Echo:connectionMade()
--     policies.applyBackpressure(self) -- stop reading while writes pile up
--     self:setTimeout(self.timeOut)    -- close after 300 s without input
--   end
--   function Echo:dataReceived(data)
--     self:resetTimeout()
--     self.transport:write(data)
--   end
--   function Echo:connectionLost() self:setTimeout(nil) end

local M = {}

-- policies.mixin(cls, mixin, ...): copies each mixin's members into cls,
-- except those cls defines itself (Python's `class C(Base, Mixin)` order
-- for the class's own methods). Returns cls.
function M.mixin(cls, ...)
  for i = 1, select("#", ...) do
    for k, v in pairs((select(i, ...))) do
      if rawget(cls, k) == nil then
        cls[k] = v
      end
    end
  end
  return cls
end

-- Backpressure --------------------------------------------------------------

-- policies.applyBackpressure(protocol): while the protocol's transport
-- holds more unsent bytes than its high-water mark (64 KiB), stop reading
-- from the peer; read again once the queue drains to half. Call it from
-- connectionMade of any protocol that writes in answer to what it reads,
-- so a peer that sends and never reads cannot make it buffer without
-- bound (it is then held back by TCP flow control instead).
--
-- A protocol that can pause itself (a LineReceiver, or anything with
-- pauseProducing and resumeProducing) is registered as its transport's
-- streaming producer, so it also stops delivering the lines of a chunk
-- already read; any other protocol registers its transport as its own
-- producer (Twisted's `transport.registerProducer(transport, True)`).
-- The transport has one producer slot: unregisterProducer() first to
-- register another producer (a file being sent, say).
function M.applyBackpressure(proto)
  local t = proto.transport
  if t == nil then
    error("applyBackpressure: the protocol has no transport yet (call it"
      .. " from connectionMade)", 2)
  end
  local producer = t
  if type(proto.pauseProducing) == "function"
      and type(proto.resumeProducing) == "function" then
    producer = proto
  end
  t:registerProducer(producer, true)
end

-- TimeoutMixin ----------------------------------------------------------------

-- Twisted's TimeoutMixin: one timeout per protocol. setTimeout(secs) arms
-- it, resetTimeout() restarts the count (call it when meaningful input
-- arrives), setTimeout(nil) disarms it, and the abort the default
-- timeoutConnection may have scheduled (do so in connectionLost); when it
-- expires, timeoutConnection() runs.
--
-- Mix it in with policies.mixin(MyProtocol, policies.TimeoutMixin).
-- `callLater` is the clock: a method (the reactor's by default), or, as in
-- Twisted's tests, an instance field holding a plain function such as a
-- task.Clock's `p.callLater = clock.callLater`.
local TimeoutMixin = {
  -- Seconds of silence before timeoutConnection; nil: no timeout.
  timeOut = nil,
  -- loom: seconds the default timeoutConnection waits for loseConnection
  -- to flush before it aborts (Twisted's HTTPChannel.abortTimeout); a peer
  -- that does not read would otherwise hold the connection forever.
  abortTimeout = 15,
}
M.TimeoutMixin = TimeoutMixin

function TimeoutMixin:callLater(secs, f)
  return require("loom.reactor").callLater(secs, f)
end

-- An instance field is a plain function (Python's bound method); a class
-- method takes self.
local function schedule(self, secs, f)
  local own = rawget(self, "callLater")
  if own ~= nil then
    return own(secs, f)
  end
  return self:callLater(secs, f)
end

local function timedOut(self)
  self._timeoutCall = nil
  self:timeoutConnection()
end

-- Restarts the count from now; nothing once timed out or disarmed.
function TimeoutMixin:resetTimeout()
  local call = self._timeoutCall
  if call ~= nil and self.timeOut ~= nil then
    call:reset(self.timeOut)
  end
end

-- Sets the timeout to `period` seconds (nil disarms it), counted from now;
-- returns the previous timeOut.
function TimeoutMixin:setTimeout(period)
  if period ~= nil and (type(period) ~= "number" or period < 0) then
    error("setTimeout: period must be a number of seconds >= 0 or nil, got "
      .. tostring(period), 2)
  end
  local prev = self.timeOut
  self.timeOut = period
  local call = self._timeoutCall
  if period == nil and self._abortCall ~= nil then
    pcall(self._abortCall.cancel, self._abortCall)
    self._abortCall = nil
  end
  if call ~= nil then
    if period == nil then
      -- A call already run or cancelled has nothing left to cancel.
      pcall(call.cancel, call)
      self._timeoutCall = nil
    else
      call:reset(period)
    end
  elseif period ~= nil then
    self._timeoutCall = schedule(self, period, function()
      timedOut(self)
    end)
  end
  return prev
end

-- The timeout expired: by default close the connection, flushing what is
-- queued, and abort it if that has not finished after abortTimeout.
function TimeoutMixin:timeoutConnection()
  local t = self.transport
  if t == nil then
    return
  end
  t:loseConnection()
  local grace = self.abortTimeout
  if grace ~= nil and t.connected then
    self._abortCall = schedule(self, grace, function()
      self._abortCall = nil
      if t.connected then
        local log = require "loom.log"
        log.prefixed(log.prefixOf(self)).warn("timed out, and still not"
          .. " closed %s s later (abortTimeout): aborting", tostring(grace))
        t:abortConnection()
      end
    end)
  end
end

return M
