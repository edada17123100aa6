-- loom.basic.prefixed: Int32StringReceiver, Int16StringReceiver and
-- Int8StringReceiver (big-endian length prefixes), as in
-- twisted.protocols.basic.

local protocol = require "loom.protocol"
local receiver = require "loom.basic.receiver"

local sub = string.sub
local spack, sunpack, packsize = string.pack, string.unpack, string.packsize
local concat = table.concat

local busyGuard, abstract = receiver.busyGuard, receiver.abstract

local M = {}

-- Int32/16/8StringReceiver ---------------------------------------------------

local IntNStringReceiver = protocol.Protocol:extend({
  __name = "IntNStringReceiver",
  MAX_LENGTH = 99999,
  paused = false,
  _unprocessed = "",
  _have = 0,
  _need = 1,
  _busyReceiving = false,
})
M.IntNStringReceiver = IntNStringReceiver

IntNStringReceiver.pauseProducing, IntNStringReceiver.resumeProducing,
  IntNStringReceiver.stopProducing = receiver.pausing()

IntNStringReceiver.stringReceived =
  abstract("IntNStringReceiver", "stringReceived")

-- A length prefix above MAX_LENGTH; the default drops the connection.
function IntNStringReceiver:lengthLimitExceeded(length) -- luacheck: ignore
  return self.transport:loseConnection()
end

function IntNStringReceiver:sendString(s)
  local plen = self.prefixLength
  if #s >= 2 ^ (8 * plen) then
    error(string.format(
      "sendString: string of %d bytes is too long for an %d-bit length prefix",
      #s, 8 * plen), 2)
  end
  return self.transport:write(spack(self.structFormat, #s) .. s)
end

-- Keep input, joining chunks only once enough has arrived to make progress.
local function appendPrefixed(self, data)
  local n = #data
  if n == 0 then
    return
  end
  local parts = rawget(self, "_parts")
  if parts then
    parts[#parts + 1] = data
  elseif self._unprocessed == "" then
    self._unprocessed = data
  else
    self._parts = { self._unprocessed, data }
  end
  self._have = self._have + n
end

local function parsePrefixed(self, alldata)
  local offset, total = 1, #alldata
  local plen, fmt = self.prefixLength, self.structFormat
  while total - offset + 1 >= plen and not self.paused do
    local length, start = sunpack(fmt, alldata, offset)
    if length > self.MAX_LENGTH then
      -- Keep only the offending prefix: later data re-reports it, as in
      -- Twisted, without being buffered without bound.
      self._unprocessed = sub(alldata, offset, start - 1)
      self._have, self._need = plen, plen
      self:lengthLimitExceeded(length)
      return true
    end
    local finish = start + length - 1
    if finish > total then
      self._need = plen + length
      break
    end
    offset = finish + 1
    self._need = plen
    self:stringReceived(sub(alldata, start, finish))
  end
  if offset > total then
    self._unprocessed = ""
  elseif offset == 1 then
    self._unprocessed = alldata
  else
    self._unprocessed = sub(alldata, offset)
  end
  self._have = total - offset + 1
  if self._have < plen then
    self._need = plen
  end
  return false
end

-- Split prefixed strings out of the input, holding them while paused.
-- Data given from inside stringReceived is parsed after the current input.
function IntNStringReceiver:dataReceived(data)
  if self._busyReceiving then
    local q = rawget(self, "_queued") or {}
    q[#q + 1] = data
    self._queued = q
    return
  end
  appendPrefixed(self, data)
  if self.paused or self._have < self._need then
    return
  end
  self._busyReceiving = true
  local _ <close> = busyGuard(self)
  repeat
    local parts = rawget(self, "_parts")
    local alldata = self._unprocessed
    if parts then
      alldata = concat(parts)
      self._parts = nil
    end
    self._unprocessed = ""
    local stop = parsePrefixed(self, alldata)
    local q = rawget(self, "_queued")
    self._queued = nil
    if q and not stop then
      appendPrefixed(self, concat(q))
    end
  until stop or self.paused or self._have < self._need
end

local function intReceiver(name, fmt)
  return IntNStringReceiver:extend({
    __name = name,
    structFormat = fmt,
    prefixLength = packsize(fmt),
    _need = packsize(fmt),
  })
end

M.Int32StringReceiver = intReceiver("Int32StringReceiver", ">I4")
M.Int16StringReceiver = intReceiver("Int16StringReceiver", ">I2")
M.Int8StringReceiver = intReceiver("Int8StringReceiver", ">B")

return M
