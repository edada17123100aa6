-- Benchmark: LineReceiver fed one 10-byte line per dataReceived (a live
-- connection's usual read), with an empty lineReceived. The same work as
-- bench/reads_bench.py (Twisted).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" lua5.4 bench/reads_bench.lua \
--     [reads] [lines_per_read] [class]
--
-- Prints one line: reads impl=loom reads_per_s=N (the best of 5 rounds).
-- lines_per_read (default 1) gives each read that many 10-byte lines: the
-- shapes between one line per read and bench/lines_bench.lua's 10 KB
-- chunks, for comparing LineReceiver's delivery paths. class is
-- LineReceiver (default) or LineOnlyReceiver.

local basic = require "loom.basic"
local testing = require "loom.testing"

local reads = tonumber(arg and arg[1]) or 1000000
local perRead = tonumber(arg and arg[2]) or 1
local data = ("abcdefgh\r\n"):rep(perRead)
local className = arg and arg[3] or "LineReceiver"
local Sink = assert(basic[className], "unknown class " .. className):extend()
function Sink:lineReceived(line) end -- luacheck: ignore

local proto = Sink()
proto:makeConnection(testing.StringTransport())
local best = 0
for _ = 1, 5 do
  collectgarbage()
  local start = os.clock()
  for _ = 1, reads do
    proto:dataReceived(data)
  end
  local rate = reads / (os.clock() - start)
  if rate > best then
    best = rate
  end
end
print(string.format("reads impl=loom reads_per_s=%d", math.floor(best)))
