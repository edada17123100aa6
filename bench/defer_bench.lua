-- Deferred micro-benchmarks; compare with bench/defer_bench.py (Twisted).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" lua5.4 bench/defer_bench.lua [rounds]
--   ... bench/defer_bench.lua count N a|b   (N runs of (a) or (b), untimed:
--                                            for instruction counts)
--
-- (a) create_10cb_fire_us: make a Deferred, add 10 callbacks, fire it.
-- (b) inline_10_fired_us: an inlineCallbacks function awaiting 10 Deferreds
--     that have already fired (each made with succeed()).
-- Each figure is the best of several rounds, in microseconds per operation.

local defer = require "loom.defer"

local rounds = tonumber(arg and arg[1]) or 5
local counting = arg and arg[1] == "count"
local clock = os.clock

local function inc(x)
  return x + 1
end

local function createFire()
  local d = defer.Deferred()
  for _ = 1, 10 do
    d:addCallback(inc)
  end
  d:callback(0)
  return d.result
end

local succeed = defer.succeed
local inline = defer.inlineCallbacks(function()
  local await, total = defer.await, 0
  for i = 1, 10 do
    total = total + await(succeed(i))
  end
  return total
end)

local function inlineOnce()
  return inline().result
end

-- Best time per call, in microseconds, of `n` calls of f over `rounds`.
local function measure(f, n, expect)
  assert(f() == expect, "benchmark body returned a wrong result")
  local best = math.huge
  for _ = 1, rounds do
    collectgarbage()
    local t0 = clock()
    for _ = 1, n do
      f()
    end
    local dt = (clock() - t0) / n * 1e6
    if dt < best then
      best = dt
    end
  end
  return best
end

if counting then
  local f = arg[3] == "b" and inlineOnce or createFire
  for _ = 1, tonumber(arg[2]) do
    f()
  end
  return
end

local a = measure(createFire, 200000, 10)
local b = measure(inlineOnce, 100000, 55)
print(string.format("defer impl=loom create_10cb_fire_us=%.3f "
  .. "inline_10_fired_us=%.3f", a, b))
