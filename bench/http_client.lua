-- Client requests/s for `make bench` (bench/run.sh): loom's web.Agent,
-- keep-alive, against the hello-world server of bench/http_hello.lua (run
-- separately, so client and server each have their own process), for
-- DUR seconds one request at a time and then with CONC requests in
-- flight (each on its own kept-alive connection).
--   loom run bench/http_client.lua PORT [DUR=3] [CONC=50]
-- Prints one line per mode: `client mode=seq conns=1 requests=… req_per_s=…`.
local reactor = require "loom.reactor"
local web = require "loom.web"

local port = tonumber(arg[1]) or error("usage: http_client.lua PORT [DUR] [CONC]")
local dur = tonumber(arg[2]) or 3
local conc = tonumber(arg[3]) or 50
local url = string.format("http://127.0.0.1:%d/", port)

-- Runs n loops of request -> readBody -> next for dur seconds; calls
-- done(requests, errors, seconds).
local function run(n, done)
  local pool = web.HTTPConnectionPool(reactor, { maxPersistentPerHost = n })
  local agent = web.Agent(reactor, { pool = pool })
  local count, errors, running = 0, 0, n
  local t0 = reactor.seconds()
  local stopAt = t0 + dur
  local function loop()
    if reactor.seconds() >= stopAt then
      running = running - 1
      if running == 0 then
        pool:closeCachedConnections()
        done(count, errors, reactor.seconds() - t0)
      end
      return
    end
    agent:request("GET", url):addCallback(web.readBody):addCallbacks(function(body)
      if body == "Hello, World!" then count = count + 1 else errors = errors + 1 end
      loop()
    end, function()
      errors = errors + 1
      loop()
    end)
  end
  for _ = 1, n do loop() end
end

local function report(mode, n)
  return function(count, errors, secs)
    print(string.format("client mode=%s conns=%d requests=%d errors=%d secs=%.2f req_per_s=%.0f",
      mode, n, count, errors, secs, count / secs))
    io.stdout:flush()
  end
end

reactor.callWhenRunning(function()
  run(1, function(...)
    report("seq", 1)(...)
    run(conc, function(...)
      report("concurrent", conc)(...)
      reactor.stop()
    end)
  end)
end)
reactor.run()
