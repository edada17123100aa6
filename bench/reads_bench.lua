-- Benchmark: LineReceiver fed one 10-byte line per dataReceived (a live
-- connection's usual read), with an empty lineReceived. The same work as
-- bench/reads_bench.py (Twisted).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" lua5.4 bench/reads_bench.lua [reads]
--
-- Prints one line: reads impl=loom reads_per_s=N (the best of 5 rounds).

local basic = require "loom.basic"
local testing = require "loom.testing"

local reads = tonumber(arg and arg[1]) or 1000000
local Sink = basic.LineReceiver:extend()
function Sink:lineReceived(line) end -- luacheck: ignore

local proto = Sink()
proto:makeConnection(testing.StringTransport())
local best = 0
for _ = 1, 5 do
  collectgarbage()
  local start = os.clock()
  for _ = 1, reads do
    proto:dataReceived("abcdefgh\r\n")
  end
  local rate = reads / (os.clock() - start)
  if rate > best then
    best = rate
  end
end
print(string.format("reads impl=loom reads_per_s=%d", math.floor(best)))
