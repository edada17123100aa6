-- Benchmark: loom.basic.LineReceiver splitting 10-byte lines (8 bytes +
-- CRLF) arriving in 10 KB chunks, with an empty lineReceived. The same input
-- as bench/lines_bench.py (Twisted).
--
--   LUA_PATH="lua/?.lua;;" lua5.4 bench/lines_bench.lua [total_lines] [class]
--
-- class is LineReceiver (default) or LineOnlyReceiver. Prints one line:
--   lines impl=loom lines_per_s=N
--
-- N is the best of at least 5 rounds run for at least 2 s of CPU time (as
-- bench/lines_bench.py does), so that a short run falling in a burst of
-- noise on a shared machine does not decide the result. BENCH_MIN_SECONDS=0
-- runs exactly 5 rounds (for instruction counts under valgrind).

local basic = require "loom.basic"
local testing = require "loom.testing"

local CHUNK_SIZE = 10 * 1024
local LINE = "abcdefgh\r\n"

local function makeChunks(totalLines)
  local data = LINE:rep(totalLines)
  local chunks = {}
  for i = 1, #data, CHUNK_SIZE do
    chunks[#chunks + 1] = data:sub(i, i + CHUNK_SIZE - 1)
  end
  return chunks
end

local function run(cls, chunks, totalLines)
  local Sink = cls:extend()
  function Sink:lineReceived(line) end -- luacheck: ignore
  local proto = Sink()
  proto:makeConnection(testing.StringTransport())
  collectgarbage()
  local start = os.clock()
  for i = 1, #chunks do
    proto:dataReceived(chunks[i])
  end
  local elapsed = os.clock() - start
  return totalLines / elapsed
end

local MIN_ROUNDS = 5
local MIN_SECONDS = tonumber(os.getenv("BENCH_MIN_SECONDS")) or 2

local function main(...)
  local totalLines = tonumber((...)) or 2000000
  local className = select(2, ...) or "LineReceiver"
  local cls = assert(basic[className], "unknown class " .. className)
  local chunks = makeChunks(totalLines)
  local best, rounds, start = 0, 0, os.clock()
  repeat
    best = math.max(best, run(cls, chunks, totalLines))
    rounds = rounds + 1
  until rounds >= MIN_ROUNDS and os.clock() - start >= MIN_SECONDS
  local impl = className == "LineReceiver" and "loom" or "loom-" .. className
  print(string.format("lines impl=%s lines_per_s=%d", impl, math.floor(best)))
end

main(...)
