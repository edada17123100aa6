-- A line server that counts primes on a worker thread while it keeps
-- echoing: "primes N" answers "primes below N: COUNT" when the thread is
-- done; any other line is echoed at once, even while a count runs.
--   loom run examples/thread_prime.lua [PORT]   (default 8000; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local threads = require "loom.threads"

-- Runs on a worker with its own Lua state: no upvalues, only arguments.
local function countPrimes(n)
  local count = 0
  for i = 2, n - 1 do
    local prime = true
    for j = 2, math.floor(math.sqrt(i)) do
      if i % j == 0 then
        prime = false
        break
      end
    end
    if prime then
      count = count + 1
    end
  end
  return count
end

local Server = basic.LineReceiver:extend({ __name = "PrimeServer",
  delimiter = "\n" })

function Server:lineReceived(line)
  line = line:gsub("\r$", "")
  local n = tonumber(line:match("^primes (%d+)$"))
  if not n then
    self:sendLine(line)
    return
  end
  threads.deferToThread(countPrimes, n):addCallbacks(function(count)
    self:sendLine(string.format("primes below %d: %d", n, count))
  end, function(f)
    self:sendLine("error: " .. f:getErrorMessage())
  end)
end

local port = reactor.listenTCP(tonumber(arg[1]) or 8000,
  protocol.Factory.forProtocol(Server), { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
