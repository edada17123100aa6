-- loom.basic.line: LineReceiver and LineOnlyReceiver, as in
-- twisted.protocols.basic. Lines are cut in C (bindings/lines.c) when the
-- loom core is loaded, by string.find otherwise; delivering them and
-- everything stateful (modes, pausing, the pending input) is here.

local protocol = require "loom.protocol"
local input = require "loom.basic.input"
local receiver = require "loom.basic.receiver"

local find, sub = string.find, string.sub
local type = type

local clearInput, appendInput, mergeInput = input.clear, input.append,
  input.merge
local mustMerge, takeInput = input.mustMerge, input.take
local busyGuard, abstract = receiver.busyGuard, receiver.abstract
local NO_TRANSPORT = receiver.NO_TRANSPORT

local M = {}

-- Input arriving a few lines at a time with nothing pending (the usual case
-- on a live connection) goes straight to the Lua line loop, up to this many
-- bytes: for a handful of lines a nextLine call per line costs less than a
-- batch from the C splitter, and the general path's bookkeeping is skipped.
local SMALL_READ = 128

-- Line batches -------------------------------------------------------------
--
-- With the loom core, a LineReceiver delivery of more than a few lines cuts
-- them in C a batch at a time and delivers them from one table per batch,
-- laid out as below, with a loop that keeps its position in locals. While
-- it runs, `_batch` tells which line is being delivered, so that endBatch
-- can bring `_pos` up to date when something needs it (a hook reading or
-- changing the input, the mode or the pause state; a hook error) and stop
-- the loop after the current line by clearing the next slot. For a small
-- batch `_batch` is the table itself, whose MARK slot the loop sets per
-- line; for a large one it is a function returning the table and the loop's
-- index (an upvalue): a closure per batch, and nothing written per line.

local MARK <const> = 1 -- in a small batch, the line being delivered
local BASE <const> = 2 -- where the batch's first line starts
local DLEN <const> = 3 -- the delimiter's length
local CODE <const> = 4 -- splitLines' results: why it stopped,
local AT <const> = 5 -- where the unconsumed input starts,
local HIT <const> = 6 -- where a too-long line's delimiter starts
local FIRST <const> = 7 -- the lines

-- Where the input starts after line `upto` of the batch.
local function batchPos(out, upto)
  local pos, dlen = out[BASE], out[DLEN]
  for k = FIRST, upto do
    pos = pos + #out[k] + dlen
  end
  return pos
end

-- Sets _pos from the running batch and ends it after the current line.
local function endBatch(self)
  local batch = self._batch
  local out, i
  if type(batch) == "function" then
    out, i = batch()
  else
    out, i = batch, batch[MARK]
  end
  self._batch = false
  self._pos = batchPos(out, i)
  out[i + 1] = nil
end

-- The receiver's input, mode or pause state is about to change: a running
-- line loop stops after the current line, with _pos up to date.
local function changed(self)
  if self._batch then
    endBatch(self)
  end
  self._dirty = true
end

-- LineReceiver's busy guard (see busyGuard): a dataReceived left by an
-- error also ends its batch after the failed line. Made on the first
-- dataReceived, which also puts on the instance the state fields every
-- delivery reads: a class default costs a walk up the class chain per read.
local function newGuard(self)
  local g = setmetatable({}, {
    __close = function()
      if self._batch then
        endBatch(self)
      end
      self._busyReceiving = false
    end,
  })
  self._guard = g
  self.paused, self.line_mode = self.paused, self.line_mode
  self._batch, self._dirty, self._parts = false, false, self._parts
  return g
end

local pauseProducing, resumeProducing, stopProducing = receiver.pausing(changed)

-- LineReceiver -------------------------------------------------------------

local LineReceiver = protocol.Protocol:extend({
  __name = "LineReceiver",
  delimiter = "\r\n",
  MAX_LENGTH = 16384,
  line_mode = true,
  paused = false,
  _buffer = "", _pos = 1, _searchFrom = 1, _parts = false, _partsLen = 0,
  _busyReceiving = false, _dirty = false, _batch = false, _guard = false,
})
M.LineReceiver = LineReceiver

LineReceiver.pauseProducing = pauseProducing
LineReceiver.resumeProducing = resumeProducing
LineReceiver.stopProducing = stopProducing

local DONE <const> = 1
local AGAIN <const> = 2

-- The line loop in C when the loom core is loaded (the host, or a lua5.4
-- with build/loom.so on its path); the same loop in Lua otherwise.
local okCore, core = pcall(require, "loom.core")
local cSplitLines = okCore and core.splitLines or nil
local C_NOTFOUND <const> = 1
local C_TOOLONG <const> = 2

-- No complete line left from pos: check the length limit, remember where
-- to resume searching.
local function noLine(self, buf, pos, delim, dlen, maxLen)
  self._pos = pos
  if #buf - pos + 1 >= maxLen + dlen then
    return DONE, self:lineLengthExceeded(takeInput(self))
  end
  local from = #buf - dlen + 2
  self._searchFrom = from > pos and from or pos
  self._searchDelim = delim
  return DONE
end

-- Lines per splitLines call: the first batch of a delivery is small, so a
-- hook that switches modes on an early line wastes little of it; later
-- batches grow. Batches up to BATCH_MARKED lines are marked per line,
-- larger ones tracked by a closure (see Line batches).
local BATCH_FIRST <const> = 16
local BATCH_MARKED <const> = 64
local BATCH_MAX <const> = 1024

-- A hook returned `why` or the transport is disconnecting: end the batch
-- and stop, unless a hook also changed the receiver (AGAIN: its new state
-- decides what comes next, as when a batch ends there).
local function stopLines(self, batch, why)
  if self._batch == batch then
    endBatch(self)
  end
  if why then
    return DONE, why
  elseif self._dirty then
    return AGAIN
  end
  clearInput(self) -- no line will be delivered again: keep nothing
  return DONE
end

-- Delivers a large batch (see Line batches), writing nothing per line.
-- Returns nil when every line was delivered, else DONE or AGAIN and `why`.
local function deliverTracked(self, t, lineReceived, out)
  local i = FIRST
  local function current()
    return out, i
  end
  self._batch = current
  local line = out[FIRST]
  repeat
    local why = lineReceived(self, line)
    if why or t.disconnecting then
      return stopLines(self, current, why)
    end
    i = i + 1
    line = out[i]
  until not line
  if self._batch ~= current then
    return AGAIN -- a hook changed the receiver and ended the batch
  end
  self._batch = false
end

-- Lines split in C in batches, starting with `out`, and delivered by a
-- Lua loop: one Lua-to-Lua call per line. Small batches are delivered here,
-- setting out[MARK] to the line being delivered. A hook that changes
-- anything ends the batch (AGAIN); the rest is split again from self._pos.
local function deliverBatches(self, t, lineReceived, buf, delim, maxLen, out)
  local dlen = out[DLEN]
  local size = BATCH_FIRST
  while true do
    local line = out[FIRST]
    if line and size > BATCH_MARKED then
      local state, why = deliverTracked(self, t, lineReceived, out)
      if state then
        return state, why
      end
    elseif line then
      self._batch = out
      local i = FIRST
      repeat
        out[MARK] = i
        local why = lineReceived(self, line)
        if why or t.disconnecting then
          return stopLines(self, out, why)
        end
        i = i + 1
        line = out[i]
      until not line
      if self._batch ~= out then
        return AGAIN -- a hook changed the receiver and ended the batch
      end
      self._batch = false
    end
    local pos = out[AT]
    self._pos = pos
    local code = out[CODE]
    if code == C_NOTFOUND then
      return noLine(self, buf, pos, delim, dlen, maxLen)
    elseif code == C_TOOLONG then
      return DONE, self:lineLengthExceeded(takeInput(self))
    end
    if size < BATCH_MAX then
      size = size * 4
    end
    out = { FIRST, pos, dlen, cSplitLines(buf, pos, pos, delim, maxLen, size) }
  end
end

-- Delivers one of a delivery's first few lines, with _pos already past it
-- as in the Lua loop. Returns DONE or AGAIN, and `why`, to stop.
local function deliverOne(self, t, lineReceived, line)
  local why = lineReceived(self, line)
  if why then
    return DONE, why
  elseif self._dirty then
    return AGAIN
  elseif t.disconnecting then
    clearInput(self)
    return DONE
  end
end

-- The results of a delivery's first splitLines call (up to BATCH_FIRST
-- lines). Up to three lines, the usual case for input arriving a line or a
-- few at a time, need no batch table: they are delivered one by one, with
-- _pos set before each call as in the Lua loop. More go to deliverBatches.
local function deliverFirst(self, t, buf, pos, delim, maxLen, code, at, hit,
                            l1, l2, l3, l4, ...)
  local lineReceived = self.lineReceived
  local dlen = #delim
  if l4 then
    return deliverBatches(self, t, lineReceived, buf, delim, maxLen,
      { FIRST, pos, dlen, code, at, hit, l1, l2, l3, l4, ... })
  elseif l1 then
    pos = pos + #l1 + dlen
    self._pos = pos
    local state, why = deliverOne(self, t, lineReceived, l1)
    if not state and l2 then
      pos = pos + #l2 + dlen
      self._pos = pos
      state, why = deliverOne(self, t, lineReceived, l2)
      if not state and l3 then
        self._pos = pos + #l3 + dlen
        state, why = deliverOne(self, t, lineReceived, l3)
      end
    end
    if state then
      return state, why
    end
  end
  -- Every line was cut: splitLines stopped for want of a delimiter or at a
  -- line too long.
  if code == C_NOTFOUND then
    return noLine(self, buf, at, delim, dlen, maxLen)
  end
  self._pos = at
  return DONE, self:lineLengthExceeded(takeInput(self))
end

-- Lines split in C (see deliverFirst and deliverBatches).
local function deliverLinesSplit(self, t, buf, pos, search, delim, maxLen)
  if t.disconnecting then
    clearInput(self)
    return DONE
  end
  return deliverFirst(self, t, buf, pos, delim, maxLen,
    cSplitLines(buf, pos, search, delim, maxLen, BATCH_FIRST))
end

-- Deliver the complete lines of _buffer. Returns DONE (no further progress
-- without more input), or AGAIN when a hook changed the receiver's state
-- (mode, pause, buffer), plus a truthy `why` from a hook, which stops all.
-- The line of buf from pos to the first delimiter at or after search, and
-- where the next line starts; nothing when no delimiter follows.
local nextLine = okCore and core.nextLine or function(buf, pos, search, delim)
  local s, e = find(buf, delim, search, true)
  if s then
    return sub(buf, pos, s - 1), e + 1
  end
end

-- The line loop in Lua: for input arriving a few lines at a time, and
-- without the loom core. Sets _pos before each lineReceived, so that hooks
-- see the input as it stands.
local function deliverLinesLua(self, t, buf, pos, search, delim, maxLen)
  local lineReceived = self.lineReceived
  local n = #buf
  while true do
    if t.disconnecting then
      -- No line will be delivered again: keep nothing.
      clearInput(self)
      return DONE
    end
    local line, nextPos = nextLine(buf, pos, search, delim)
    if not line then
      return noLine(self, buf, pos, delim, #delim, maxLen)
    end
    if #line > maxLen then
      -- Twisted passes the long line, its delimiter and all that follows.
      self._pos = pos
      return DONE, self:lineLengthExceeded(takeInput(self))
    end
    pos = nextPos
    search = pos
    self._pos = pos
    local why = lineReceived(self, line)
    if why then
      return DONE, why
    end
    if self._dirty then
      return AGAIN
    end
    if pos > n then
      return DONE -- the input ended with a delimiter: nothing pending
    end
  end
end

local function deliverLines(self)
  local t = self.transport or NO_TRANSPORT
  local delim = self.delimiter
  local maxLen = self.MAX_LENGTH
  local buf, pos = self._buffer, self._pos
  local search = self._searchFrom
  if search < pos or self._searchDelim ~= delim then
    search = pos
  end
  self._dirty = false
  if cSplitLines and #delim > 0 then
    return deliverLinesSplit(self, t, buf, pos, search, delim, maxLen)
  end
  return deliverLinesLua(self, t, buf, pos, search, delim, maxLen)
end

local function receive(self)
  while not self.paused do
    if self._parts then
      if self.line_mode
          and not mustMerge(self, self.MAX_LENGTH + #self.delimiter) then
        return nil
      end
      mergeInput(self)
    end
    if self._pos > #self._buffer then
      return nil
    end
    if self.line_mode then
      local state, why = deliverLines(self)
      if state == DONE then
        return why
      end
    else
      self._dirty = false
      local why = self:rawDataReceived(takeInput(self))
      if why then
        return why
      end
    end
  end
  return nil
end

-- Split data into lines (or hand it to rawDataReceived in raw mode). A call
-- made from inside a hook only queues its data for the running call.
function LineReceiver:dataReceived(data)
  if self._busyReceiving then
    changed(self)
    appendInput(self, data)
    return nil
  end
  self._busyReceiving = true
  local _ <close> = self._guard or newGuard(self)
  if #data <= SMALL_READ and self._pos > #self._buffer and not self._parts
      and self.line_mode and not self.paused then
    -- Nothing pending and a few lines at most: the Lua loop on data.
    local delim = self.delimiter
    if #delim > 0 then
      self._buffer, self._pos, self._searchFrom = data, 1, 1
      self._dirty = false
      local state, why = deliverLinesLua(self, self.transport or NO_TRANSPORT,
        data, 1, 1, delim, self.MAX_LENGTH)
      if state == DONE then
        return why
      end
      return receive(self)
    end
  end
  appendInput(self, data)
  return receive(self)
end

-- Unparsed data, removed from the buffer (callable from lineReceived).
function LineReceiver:clearLineBuffer()
  changed(self)
  return takeInput(self)
end

-- Line mode; extra data (e.g. what rawDataReceived did not use) is parsed
-- for lines at once.
function LineReceiver:setLineMode(extra)
  changed(self)
  self.line_mode = true
  if extra and extra ~= "" then
    return self:dataReceived(extra)
  end
end

-- Raw mode: the rest of the current chunk and later data go to
-- rawDataReceived.
function LineReceiver:setRawMode()
  changed(self)
  self.line_mode = false
end

LineReceiver.lineReceived = abstract("LineReceiver", "lineReceived")
LineReceiver.rawDataReceived = abstract("LineReceiver", "rawDataReceived")

function LineReceiver:sendLine(line)
  return self.transport:write(line .. self.delimiter)
end

-- A line longer than MAX_LENGTH; `line` holds at least its beginning and
-- possibly more. The default drops the connection.
function LineReceiver:lineLengthExceeded(line) -- luacheck: ignore line
  return self.transport:loseConnection()
end

-- LineOnlyReceiver ---------------------------------------------------------

local LineOnlyReceiver = protocol.Protocol:extend({
  __name = "LineOnlyReceiver",
  delimiter = "\r\n",
  MAX_LENGTH = 16384,
  _buffer = "", _pos = 1, _searchFrom = 1, _parts = false, _partsLen = 0,
  _busyReceiving = false,
})
M.LineOnlyReceiver = LineOnlyReceiver

-- The lines of buf from pos cut in C, in growing batches laid out as
-- LineReceiver's (see Line batches; no hook can change the receiver, so
-- none is marked). Nothing is written to self until the end, as in the Lua
-- loop below. Returns true when parsing must stop for good, else the
-- position after the last line.
local function deliverOnlySplit(self, t, lineReceived, buf, pos, search,
                                delim, maxLen)
  -- The first line alone: input arriving a line at a time needs no table.
  local code, at, hit, line = cSplitLines(buf, pos, search, delim, maxLen, 1)
  local size = BATCH_FIRST
  while true do
    if line then
      lineReceived(self, line)
      if t.disconnecting then
        clearInput(self)
        return true
      end
    end
    if code == C_TOOLONG then
      line = sub(buf, at, hit - 1)
      clearInput(self)
      self:lineLengthExceeded(line)
      return true
    elseif code == C_NOTFOUND then
      return at
    end
    local out = { FIRST, at, #delim,
      cSplitLines(buf, at, at, delim, maxLen, size) }
    local i = FIRST
    line = out[FIRST]
    while line do
      lineReceived(self, line)
      if t.disconnecting then
        clearInput(self)
        return true
      end
      i = i + 1
      line = out[i]
    end
    code, at, hit = out[CODE], out[AT], out[HIT]
    if size < BATCH_MAX then
      size = size * 4
    end
  end
end

-- One pass over _buffer; returns true when parsing must stop for good.
local function deliverOnlyLines(self)
  local t = self.transport or NO_TRANSPORT
  local delim = self.delimiter
  local dlen = #delim
  local maxLen = self.MAX_LENGTH
  local lineReceived = self.lineReceived
  local buf, pos = self._buffer, self._pos
  local search = self._searchFrom
  if search < pos or self._searchDelim ~= delim then
    search = pos
  end
  if t.disconnecting then
    clearInput(self)
    return true
  end
  if cSplitLines and dlen > 0 then
    pos = deliverOnlySplit(self, t, lineReceived, buf, pos, search, delim,
      maxLen)
    if pos == true then
      return true
    end
  else
    while true do
      local s, e = find(buf, delim, search, true)
      if not s then
        break
      end
      if s - pos > maxLen then
        local line = sub(buf, pos, s - 1)
        clearInput(self)
        self:lineLengthExceeded(line)
        return true
      end
      local line = sub(buf, pos, s - 1)
      pos = e + 1
      search = pos
      lineReceived(self, line)
      if t.disconnecting then
        clearInput(self)
        return true
      end
    end
  end
  self._pos = pos
  if #buf - pos + 1 > maxLen then
    self:lineLengthExceeded(takeInput(self))
    return true
  end
  local from = #buf - dlen + 2
  self._searchFrom = from > pos and from or pos
  self._searchDelim = delim
  return false
end

-- Split data into lines. Data given from inside lineReceived is parsed
-- after the lines already received.
function LineOnlyReceiver:dataReceived(data)
  if self._busyReceiving then
    local q = rawget(self, "_queued")
    if not q then
      q = {}
      self._queued = q
    end
    q[#q + 1] = data
    return
  end
  appendInput(self, data)
  self._busyReceiving = true
  local _ <close> = busyGuard(self)
  repeat
    if self._parts then
      if mustMerge(self, self.MAX_LENGTH + 1) then
        mergeInput(self)
      end
    end
    if not self._parts and deliverOnlyLines(self) then
      self._queued = nil
      return
    end
    local q = rawget(self, "_queued")
    self._queued = nil
    if q then
      for i = 1, #q do
        appendInput(self, q[i])
      end
    end
  until not q
end

LineOnlyReceiver.lineReceived = abstract("LineOnlyReceiver", "lineReceived")

function LineOnlyReceiver:sendLine(line)
  return self.transport:writeSequence({ line, self.delimiter })
end

function LineOnlyReceiver:lineLengthExceeded(line) -- luacheck: ignore line
  return self.transport:loseConnection()
end

return M
