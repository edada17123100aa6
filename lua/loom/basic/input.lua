-- loom.basic.input: the pending input of a line receiver, linear in the
-- input however it is chunked. The receiver keeps one pending string plus a
-- start offset and never re-scans bytes already known to hold no
-- delimiter. A long unfinished tail is not copied for every small chunk
-- that extends it: those chunks are kept in a list (probed for the
-- delimiter across the seam) and joined once, when a line is complete or
-- when the list has grown as long as the tail (doubling).
--
-- Unconsumed input is sub(_buffer, _pos) followed by the strings in _parts
-- (false when empty; _partsLen bytes). No delimiter starts in
-- [_pos, _searchFrom). While _parts exists, _edge holds the last
-- (#delimiter - 1) bytes seen and _partsHit records whether a delimiter
-- (_partsDelim) was seen in the parts or across a seam.

local find, sub = string.find, string.sub
local concat, insert = table.concat, table.insert

local I = {}

-- A tail at most this much longer than the incoming chunk is simply joined
-- with it; longer tails get the chunk list described above.
local SMALL_TAIL = 256

local function clearInput(self)
  self._buffer, self._pos, self._searchFrom = "", 1, 1
  self._parts, self._partsLen, self._edge = false, 0, nil
end

local function probe(self, data)
  if self._partsHit then
    return
  end
  local delim = self._partsDelim
  local d = #delim
  if d == 1 then
    self._partsHit = find(data, delim, 1, true) ~= nil
    return
  end
  local seam = self._edge .. data
  if find(seam, delim, 1, true) then
    self._partsHit = true
  end
  self._edge = sub(seam, 1 - d)
end

local function appendInput(self, data)
  local n = #data
  if n == 0 then
    return
  end
  local parts = self._parts
  if parts then
    parts[#parts + 1] = data
    self._partsLen = self._partsLen + n
    probe(self, data)
    return
  end
  local buf, pos = self._buffer, self._pos
  local tail = #buf - pos + 1
  if tail <= 0 then
    self._buffer, self._pos, self._searchFrom = data, 1, 1
  elseif tail <= n + SMALL_TAIL then
    local sf = self._searchFrom
    if sf < pos then
      sf = pos
    end
    self._buffer = (pos == 1 and buf or sub(buf, pos)) .. data
    self._searchFrom, self._pos = sf - pos + 1, 1
  else
    local delim = self.delimiter
    self._parts, self._partsLen = { data }, n
    self._partsDelim, self._partsHit = delim, false
    local from = #buf - #delim + 2
    self._edge = sub(buf, from > pos and from or pos)
    probe(self, data)
  end
end

-- Join _parts onto the tail of _buffer.
local function mergeInput(self)
  local parts = self._parts
  if not parts then
    return
  end
  local buf, pos = self._buffer, self._pos
  if pos <= #buf then
    insert(parts, 1, pos == 1 and buf or sub(buf, pos))
  end
  local merged = concat(parts)
  local sf = self._searchFrom - pos + 1
  local delim = self.delimiter
  if not self._partsHit and self._partsDelim == delim then
    -- Nothing in the parts: resume searching near the end.
    local near = #merged - #delim + 2
    if near > sf then
      sf = near
    end
  end
  self._buffer, self._pos, self._searchFrom = merged, 1, sf > 1 and sf or 1
  self._parts, self._partsLen, self._edge = false, 0, nil
end

-- Whether the pending parts must be joined now: the tail is not fully
-- scanned (input held while paused), a delimiter may have arrived, the input
-- has reached `limit` bytes, or the parts are as long as the tail.
local function mustMerge(self, limit)
  local delim = self.delimiter
  if self._partsHit or self._partsDelim ~= delim then
    return true
  end
  local buf = self._buffer
  if self._searchFrom < #buf - #delim + 2 then
    return true
  end
  local tail = #buf - self._pos + 1
  local partsLen = self._partsLen
  return partsLen >= tail or tail + partsLen >= limit
end

-- Unconsumed input as one string; the input is emptied.
local function takeInput(self)
  mergeInput(self)
  local buf, pos = self._buffer, self._pos
  clearInput(self)
  if pos == 1 then
    return buf
  end
  return sub(buf, pos)
end

I.clear, I.append, I.merge = clearInput, appendInput, mergeInput
I.mustMerge, I.take = mustMerge, takeInput

return I
