-- loom.basic.netstring: NetstringReceiver, as in twisted.protocols.basic.

local protocol = require "loom.protocol"
local log = require "loom.log"
local errors = require "loom.error"
local failure = require "loom.failure"
local receiver = require "loom.basic.receiver"

local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat
local tostring, tonumber = tostring, tonumber

local busyGuard, abstract = receiver.busyGuard, receiver.abstract

local M = {}

-- NetstringReceiver ----------------------------------------------------------

local PARSING_LENGTH, PARSING_PAYLOAD = 0, 1

local NetstringReceiver = protocol.Protocol:extend({
  __name = "NetstringReceiver",
  MAX_LENGTH = 99999,
  brokenPeer = false,
  _state = PARSING_LENGTH,
  _remaining = "",
  _expected = 0,
  _have = 0,
  _busyReceiving = false,
})
M.NetstringReceiver = NetstringReceiver

NetstringReceiver._MISSING_LENGTH =
  "The received netstring does not start with a length specification."
NetstringReceiver._TOO_LONG = "The received netstring is longer than the "
  .. "maximum %s specified by self.MAX_LENGTH"
NetstringReceiver._MISSING_COMMA =
  "The received netstring is not terminated by a comma."

local function formatNetstring(s)
  return #s .. ":" .. s .. ","
end
M.formatNetstring = formatNetstring

local function resetNetstring(self)
  self._state, self._remaining = PARSING_LENGTH, ""
  self._expected, self._have, self._payload = 0, 0, nil
end

function NetstringReceiver:makeConnection(transport)
  resetNetstring(self)
  self.brokenPeer = false
  return protocol.Protocol.makeConnection(self, transport)
end

function NetstringReceiver:sendString(s)
  return self.transport:write(formatNetstring(s))
end

NetstringReceiver.stringReceived =
  abstract("NetstringReceiver", "stringReceived")

-- The number of digits a length may have: Twisted's _maxLengthSize.
function NetstringReceiver:_maxLengthSize()
  return math.ceil(math.log(self.MAX_LENGTH, 10)) + 1
end

-- Log the error, drop the connection and every later byte.
function NetstringReceiver:_handleParseError(message)
  local e = errors.NetstringParseError(message)
  log.prefixed(log.prefixOf(self)).err(failure.Failure(e),
    "invalid netstring from peer; closing the connection")
  resetNetstring(self)
  self.brokenPeer = true
  local t = self.transport
  if t then
    t:loseConnection()
  end
end

-- Check the digits in buf[pos..last]; returns the length or nil, message.
local function checkLength(self, buf, pos, last)
  local ndigits = last - pos + 1
  if ndigits > 1 and byte(buf, pos) == 48 then
    return nil, self._MISSING_LENGTH
  end
  if ndigits > self:_maxLengthSize() then
    return nil, self._TOO_LONG:format(self.MAX_LENGTH)
  end
  local n = tonumber(sub(buf, pos, last)) or 0
  if n > self.MAX_LENGTH then
    return nil, self._TOO_LONG:format(self.MAX_LENGTH)
  end
  return n
end

-- Consume the length part at buf[pos..]; returns the next position, or nil
-- when more input is needed, or false, message on a parse error.
local function consumeLength(self, buf, pos)
  local e = find(buf, "[^0-9]", pos)
  local last = (e or #buf + 1) - 1
  local n, why = checkLength(self, buf, pos, last)
  if not n then
    return false, why
  end
  if not e then
    self._remaining = sub(buf, pos)
    return nil
  end
  if last < pos or byte(buf, e) ~= 58 then
    return false, self._MISSING_LENGTH
  end
  self._state, self._expected, self._have = PARSING_PAYLOAD, n + 1, 0
  return e + 1
end

-- Consume payload at buf[pos..]; returns the next position and the complete
-- string (nil when more input is needed), or false, message.
local function consumePayload(self, buf, pos)
  local need = self._expected - self._have
  local avail = #buf - pos + 1
  local parts = self._payload
  if avail < need then
    local piece = pos == 1 and buf or sub(buf, pos)
    if parts then
      parts[#parts + 1] = piece
    else
      self._payload = { piece }
    end
    self._have = self._have + avail
    return #buf + 1
  end
  local last = pos + need - 1
  if byte(buf, last) ~= 44 then
    return false, self._MISSING_COMMA
  end
  local s = sub(buf, pos, last - 1)
  if parts then
    parts[#parts + 1] = s
    s = concat(parts)
  end
  self._state, self._have, self._payload = PARSING_LENGTH, 0, nil
  return last + 1, s
end

local function receiveNetstrings(self, buf)
  local pos, n = 1, #buf
  while pos <= n and not self.brokenPeer do
    local nextPos, result
    if self._state == PARSING_LENGTH then
      nextPos, result = consumeLength(self, buf, pos)
      if nextPos == nil then
        return
      end
    else
      nextPos, result = consumePayload(self, buf, pos)
    end
    if nextPos == false then
      return self:_handleParseError(result)
    end
    pos = nextPos
    if result and self._state == PARSING_LENGTH then
      self:stringReceived(result)
    end
  end
end

-- Parse netstrings; a malformed one closes the connection (brokenPeer).
function NetstringReceiver:dataReceived(data)
  if self.brokenPeer then
    return
  end
  if self._busyReceiving then
    local q = rawget(self, "_queued") or {}
    q[#q + 1] = data
    self._queued = q
    return
  end
  self._busyReceiving = true
  local _ <close> = busyGuard(self)
  repeat
    local rest = self._remaining
    self._remaining = ""
    receiveNetstrings(self, rest == "" and data or rest .. data)
    local q = rawget(self, "_queued")
    self._queued = nil
    if q then
      data = concat(q)
    end
  until not q or self.brokenPeer
end

return M
