-- loom.basic.line: LineReceiver and LineOnlyReceiver, as in
-- twisted.protocols.basic. Lines are cut in C (parsers/lines.c, through
-- bindings/lines.c) when the loom core is loaded, by string.find
-- otherwise; delivering them and everything stateful (modes, pausing, the
-- pending input) is here.

local protocol = require "loom.protocol"
local input = require "loom.basic.input"
local receiver = require "loom.basic.receiver"

local find, sub = string.find, string.sub

local clearInput, appendInput, mergeInput = input.clear, input.append,
  input.merge
local mustMerge, takeInput = input.mustMerge, input.take
local busyGuard, abstract = receiver.busyGuard, receiver.abstract
local NO_TRANSPORT = receiver.NO_TRANSPORT

local M = {}

-- Two delivery paths (deliverLines chooses):
--
-- * One line at a time (deliverEach): a Lua loop cutting each line with one
--   call (core.nextLine, or string.find without the loom core) and setting
--   _pos before each lineReceived, so a hook sees the input as it stands.
--   The only path without the loom core.
-- * Batches (deliverBatches): core.splitLines returns up to 1,024 lines as
--   results, collected by one table constructor, and a Lua loop delivers
--   them writing nothing per line (see Line batches).
--
-- What each gains (callgrind instructions, GC stopped, medians of three;
-- bench/lines_bench.lua and bench/reads_bench.lua): 10 KB reads of
-- 10-byte lines take 827 per line as batches against 1,616 one at a time;
-- a 40-byte read of 4 lines takes 9,841 one at a time against 13,968 as a
-- batch, whose table, closure and longer entry cost more than they save on
-- a few lines. Up to SMALL_READ pending bytes go one at a time.
local SMALL_READ = 128

-- Line batches -------------------------------------------------------------
--
-- A batch is a table laid out as below. While the loop delivering it runs,
-- `_batch` is a function returning the table and the loop's index (an
-- upvalue that stays in the loop's register), so that endBatch can bring
-- `_pos` up to date when something needs it (a hook reading or changing
-- the input, the mode or the pause state; a hook error) and stop the loop
-- after the current line by clearing the next slot. Nothing is written per
-- line: one closure per batch is the whole cost.

local BASE <const> = 1 -- where the batch's first line starts
local DLEN <const> = 2 -- the delimiter's length
local CODE <const> = 3 -- splitLines' results: why it stopped,
local AT <const> = 4 -- where the unconsumed input starts,
local HIT <const> = 5 -- where a too-long line's delimiter starts
local FIRST <const> = 6 -- the lines

-- Sets _pos from the running batch and ends it after the current line.
local function endBatch(self)
  local out, i = self._batch()
  local pos, dlen = out[BASE], out[DLEN]
  for k = FIRST, i do
    pos = pos + #out[k] + dlen
  end
  self._batch = false
  self._pos = pos
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
  self._searchDelim = self._searchDelim or false
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

-- The cutter: core.splitLines (bindings/lines.c over parsers/lines.c) when
-- the loom core is loaded (the host, or a lua5.4 with build/loom.so on its
-- path). splitLines(buf, pos, search, delim, maxLen, max) returns why it
-- stopped (NOTFOUND, TOOLONG or FULL), where the unconsumed input starts,
-- where a too-long line's delimiter starts, then up to max lines.
local okCore, core = pcall(require, "loom.core")
local splitLines = okCore and core.splitLines or nil
local NOTFOUND <const> = 1
local TOOLONG <const> = 2

-- The line-at-a-time loop's cutter: core.nextLine(buf, pos, search,
-- delim) returns the line from pos to the first delimiter at or after
-- search and where the next line starts, or nothing; string.find does it
-- without the core.
local nextLine = okCore and core.nextLine or function(buf, pos, search, delim)
  local s, e = find(buf, delim, search, true)
  if s then
    return sub(buf, pos, s - 1), e + 1
  end
end

-- No complete line left from pos: check the length limit, remember where
-- to resume searching.
local function noLine(self, buf, pos, delim, maxLen)
  local dlen = #delim
  self._pos = pos
  if #buf - pos + 1 >= maxLen + dlen then
    return DONE, self:lineLengthExceeded(takeInput(self))
  end
  local from = #buf - dlen + 2
  self._searchFrom = from > pos and from or pos
  self._searchDelim = delim
  return DONE
end

-- Deliver the complete lines of buf from pos, no delimiter starting before
-- search. Returns DONE (no further progress without more input), or AGAIN
-- when a hook changed the receiver's state (mode, pause, buffer), plus a
-- truthy `why` from a hook, which stops all.

-- One line at a time.
local function deliverEach(self, t, buf, pos, search, delim, maxLen)
  local lineReceived = self.lineReceived
  local n = #buf
  while true do
    if t.disconnecting then
      clearInput(self) -- no line will be delivered again: keep nothing
      return DONE
    end
    local line, at = nextLine(buf, pos, search, delim)
    if not line then
      return noLine(self, buf, pos, delim, maxLen)
    elseif #line > maxLen then
      self._pos = pos
      return DONE, self:lineLengthExceeded(takeInput(self))
    end
    self._pos = at
    local why = lineReceived(self, line)
    if why then
      return DONE, why
    elseif self._dirty then
      return AGAIN
    elseif at > n then
      return DONE -- the input ended with a delimiter: nothing pending
    end
    pos, search = at, at
  end
end

-- Lines per splitLines call: the first batch is small, so a hook that
-- switches modes on an early line wastes little of it; later ones grow.
local BATCH_FIRST <const> = 16
local BATCH_MAX <const> = 1024

-- A hook returned `why` or the transport is disconnecting: end the batch
-- and stop, unless a hook also changed the receiver (AGAIN: its new state
-- decides what comes next, as when a batch ends there).
local function stopBatch(self, current, why)
  if self._batch == current then
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

-- Lines cut in C in batches (see Line batches): one Lua-to-Lua call per
-- line. A hook that changes anything ends the batch (AGAIN); the rest is
-- cut again from self._pos.
local function deliverBatches(self, t, buf, pos, search, delim, maxLen)
  if t.disconnecting then
    clearInput(self) -- no line will be delivered again: keep nothing
    return DONE
  end
  local lineReceived = self.lineReceived
  local size = BATCH_FIRST
  while true do
    local out = { pos, #delim,
      splitLines(buf, pos, search, delim, maxLen, size) }
    local line = out[FIRST]
    if line then
      local i = FIRST
      local function current()
        return out, i
      end
      self._batch = current
      repeat
        local why = lineReceived(self, line)
        if why or t.disconnecting then
          return stopBatch(self, current, why)
        end
        i = i + 1
        line = out[i]
      until not line
      if self._batch ~= current then
        return AGAIN -- a hook changed the receiver and ended the batch
      end
      self._batch = false
    end
    pos = out[AT]
    local code = out[CODE]
    if code == NOTFOUND then
      return noLine(self, buf, pos, delim, maxLen)
    elseif code == TOOLONG then
      self._pos = pos
      return DONE, self:lineLengthExceeded(takeInput(self))
    end
    self._pos, search = pos, pos
    if size < BATCH_MAX then
      size = size * 4
    end
  end
end

-- Deliver the complete lines of the pending input (_buffer from _pos).
local function deliverLines(self, t)
  local delim = self.delimiter
  local buf, pos = self._buffer, self._pos
  local search = self._searchFrom
  if search < pos or self._searchDelim ~= delim then
    search = pos
  end
  self._dirty = false
  if #delim == 0 then
    error("LineReceiver.delimiter is empty", 0) -- Twisted loops forever
  elseif splitLines and #buf - pos >= SMALL_READ then
    return deliverBatches(self, t, buf, pos, search, delim, self.MAX_LENGTH)
  end
  return deliverEach(self, t, buf, pos, search, delim, self.MAX_LENGTH)
end

local function receive(self)
  local t = self.transport or NO_TRANSPORT
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
      local state, why = deliverLines(self, t)
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
    -- Nothing pending and a small read, the usual case on a live
    -- connection: straight to the line-at-a-time loop on data, skipping
    -- what appendInput, receive and deliverLines read and check: a
    -- one-line read takes 5,100 instructions this way, 6,800 through
    -- receive.
    local delim = self.delimiter
    if #delim > 0 then
      self._buffer, self._pos, self._searchFrom = data, 1, 1
      self._dirty = false
      local state, why = deliverEach(self, self.transport or NO_TRANSPORT,
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
-- none is tracked). Nothing is written to self until the end, as in the Lua
-- loop below. Returns true when parsing must stop for good, else the
-- position after the last line.
local function deliverOnlySplit(self, t, lineReceived, buf, pos, search,
                                delim, maxLen)
  -- The first line alone: input arriving a line at a time needs no table.
  local code, at, hit, line = splitLines(buf, pos, search, delim, maxLen, 1)
  local size = BATCH_FIRST
  while true do
    if line then
      lineReceived(self, line)
      if t.disconnecting then
        clearInput(self)
        return true
      end
    end
    if code == TOOLONG then
      line = sub(buf, at, hit - 1)
      clearInput(self)
      self:lineLengthExceeded(line)
      return true
    elseif code == NOTFOUND then
      return at
    end
    local out = { at, #delim, splitLines(buf, at, at, delim, maxLen, size) }
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
  if dlen == 0 then
    error("LineOnlyReceiver.delimiter is empty", 0) -- Twisted loops forever
  elseif splitLines then
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
