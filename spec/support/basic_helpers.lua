-- Shared by the loom.basic specs (basic_line_spec, basic_netstring_spec,
-- basic_int_spec): feeding helpers in every chunking, a Collector class,
-- Twisted's LineTester, a minimal clock and the linearity instruments.

local basic = require "loom.basic"
local testing = require "loom.testing"
local log = require "loom.log"

local StringTransport = testing.StringTransport
local CHUNKINGS = { 1, 2, 3, 7, 4096 }

-- Feed data to proto in size-byte chunks.
local function feed(proto, data, size)
  for i = 1, #data, size do
    proto:dataReceived(data:sub(i, i + size - 1))
  end
end

-- Twisted's loop: len // size + 1 chunks, the last one possibly empty.
local function feedTwisted(proto, data, size)
  for i = 0, #data // size do
    proto:dataReceived(data:sub(i * size + 1, (i + 1) * size))
  end
end

local function connect(cls, transport)
  local p = cls()
  transport = transport or StringTransport()
  p:makeConnection(transport)
  return p, transport
end

-- Collect log events while f runs.
local function logged(f)
  local events = {}
  local function observer(ev)
    events[#events + 1] = ev
  end
  log.addObserver(observer)
  log.toFile("/dev/null") -- keep expected errors out of the spec output
  local ok, e = pcall(f)
  log.toFile(nil)
  log.removeObserver(observer)
  assert(ok, e)
  return events
end

-- A fresh copy of loom.basic whose string.find / string.sub / table.concat
-- count the bytes they scan and copy, to catch quadratic parsing without
-- timing anything.
local function instrumentedBasic()
  local realFind, realSub, realConcat = string.find, string.sub, table.concat
  local stats = { scanned = 0, copied = 0, finds = 0 }
  string.find = function(s, p, init, plain) -- luacheck: ignore
    local a, b = realFind(s, p, init, plain)
    init = init or 1
    if init < 0 then
      init = #s + init + 1
    end
    stats.finds = stats.finds + 1
    stats.scanned = stats.scanned + (b or #s) - init + 1
    return a, b
  end
  string.sub = function(s, i, j) -- luacheck: ignore
    local r = realSub(s, i, j)
    stats.copied = stats.copied + #r
    return r
  end
  table.concat = function(t, ...) -- luacheck: ignore
    local r = realConcat(t, ...)
    stats.copied = stats.copied + #r
    return r
  end
  local saved = package.loaded["loom.basic"]
  package.loaded["loom.basic"] = nil
  local ok, mod = pcall(require, "loom.basic")
  string.find, string.sub, table.concat = realFind, realSub, realConcat -- luacheck: ignore
  package.loaded["loom.basic"] = saved
  assert(ok, mod)
  return mod, stats
end

-- Run feedStep(i) for i = 1..n with the collector stopped, failing as soon
-- as more than budget bytes have been allocated (so a quadratic regression
-- fails fast instead of hanging). Returns the bytes allocated.
local function allocatedWithin(budget, n, feedStep)
  collectgarbage()
  collectgarbage("stop")
  local base = collectgarbage("count") * 1024
  local ok, e = pcall(function()
    for i = 1, n do
      feedStep(i)
      if i % 4096 == 0 and collectgarbage("count") * 1024 - base > budget then
        error(string.format("allocated more than %d bytes after %d steps",
          budget, i))
      end
    end
  end)
  local used = collectgarbage("count") * 1024 - base
  collectgarbage("restart")
  collectgarbage()
  assert(ok, e)
  assert(used <= budget, string.format("allocated %d bytes (budget %d)",
    used, budget))
  return used
end

-- Test protocols ------------------------------------------------------------

local function Collector(cls, fields)
  local C = cls:extend(fields or {})
  function C:connectionMade()
    self.received = {}
  end
  function C:lineReceived(line)
    self.received[#self.received + 1] = line
  end
  function C:stringReceived(s)
    self.received[#self.received + 1] = s
  end
  return C
end

-- Twisted's LineTester: acts on tokens in the lines it receives.
local LineTester = basic.LineReceiver:extend({ delimiter = "\n",
  MAX_LENGTH = 64 })

function LineTester:init(clock)
  self.clock = clock
end

function LineTester:connectionMade()
  self.received = {}
end

function LineTester:lineReceived(line)
  local r = self.received
  r[#r + 1] = line
  if line == "" then
    self:setRawMode()
  elseif line == "pause" then
    self:pauseProducing()
    self.clock:callLater(0, function() self:resumeProducing() end)
  elseif line == "rawpause" then
    self:pauseProducing()
    self:setRawMode()
    r[#r + 1] = ""
    self.clock:callLater(0, function() self:resumeProducing() end)
  elseif line == "stop" then
    self:stopProducing()
  elseif line:sub(1, 4) == "len " then
    self.length = tonumber(line:sub(5))
  elseif line:sub(1, 7) == "produce" then
    self.transport:registerProducer(self, false)
  elseif line:sub(1, 9) == "unproduce" then
    self.transport:unregisterProducer()
  end
end

function LineTester:rawDataReceived(data)
  local rest = data:sub(self.length + 1)
  data = data:sub(1, self.length)
  self.length = self.length - #data
  local r = self.received
  r[#r] = r[#r] .. data
  if self.length == 0 then
    self:setLineMode(rest)
  end
end

function LineTester:lineLengthExceeded(line)
  if #line > self.MAX_LENGTH + 1 then
    self:setLineMode(line:sub(self.MAX_LENGTH + 2))
  end
end

-- A minimal Clock (callLater(0, f) + advance) so these specs do not depend
-- on loom.task.
local function FakeClock()
  local calls = {}
  return {
    callLater = function(_, _, f)
      calls[#calls + 1] = f
    end,
    advance = function()
      local now = calls
      calls = {}
      for _, f in ipairs(now) do
        f()
      end
    end,
  }
end

-- One chunk of numbered lines and an unfinished one. With the loom core, a
-- chunk of up to three lines is delivered line by line and a longer one in
-- batches of every size (16, 64, 256 and 1024 lines); a hook acting on line
-- n must see exactly what the plain Lua loop gives, wherever n falls.
local function numbered(count, tail)
  local lines = {}
  for i = 1, count do
    lines[i] = "line " .. i
  end
  local input = table.concat(lines, "\r\n") .. "\r\n" .. tail
  return {
    count = count,
    input = input,
    -- The first n lines, then `extra`.
    lines = function(n, extra)
      local t = { table.unpack(lines, 1, n) }
      for _, line in ipairs(extra or {}) do
        t[#t + 1] = line
      end
      return t
    end,
    -- The input after line n and its delimiter.
    restAfter = function(n)
      local at = 1
      for i = 1, n do
        at = at + #lines[i] + 2
      end
      return input:sub(at)
    end,
  }
end

-- The chunks the "hook acting on line n" specs feed: 1 to 5 lines and an
-- unfinished one, each line acted on; 2,000 lines, acted on at every batch
-- boundary.
local function numberedChunks()
  local CHUNKS = {}
  for count = 1, 5 do
    local c = numbered(count, "unfinished")
    c.actOn = {}
    for n = 1, count do
      c.actOn[n] = n
    end
    CHUNKS[#CHUNKS + 1] = c
  end
  do
    local c = numbered(2000, "")
    c.actOn = { 1, 2, 3, 4, 5, 16, 17, 19, 20, 21, 80, 81, 84, 85, 100, 337,
      500, 1364, 1365, 1999, 2000 }
    CHUNKS[#CHUNKS + 1] = c
  end
  return CHUNKS
end

return {
  numberedChunks = numberedChunks,
  basic = basic,
  testing = testing,
  log = log,
  StringTransport = StringTransport,
  CHUNKINGS = CHUNKINGS,
  feed = feed,
  feedTwisted = feedTwisted,
  connect = connect,
  logged = logged,
  instrumentedBasic = instrumentedBasic,
  allocatedWithin = allocatedWithin,
  Collector = Collector,
  LineTester = LineTester,
  FakeClock = FakeClock,
}
