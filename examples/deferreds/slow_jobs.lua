-- Ten simulated slow jobs gathered by a DeferredList (after the classic
-- Twisted "deferred list" tutorial). Each job finishes after a different
-- delay; when all are done the results are printed and the reactor stops.
--   loom run examples/deferreds/slow_jobs.lua
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local task = require "loom.task"

local function slowJob(n)
  -- Job 7 fails, to show how a DeferredList reports failures.
  if n == 7 then
    error("job 7 ran out of luck")
  end
  return string.format("job %d squared is %d", n, n * n)
end

local jobs = {}
for n = 1, 10 do
  -- Delays between 0.05 and 0.5 s, finishing in reverse order.
  local secs = (11 - n) * 0.05
  jobs[n] = task.deferLater(reactor, secs, slowJob, n)
end

defer.DeferredList(jobs, { consumeErrors = true }):addCallback(function(results)
  for n, pair in ipairs(results) do
    local ok, value = pair[1], pair[2]
    if ok then
      print(string.format("%2d ok     %s", n, value))
    else
      print(string.format("%2d failed %s", n, value:getErrorMessage()))
    end
  end
end):addBoth(function()
  reactor.stop()
end)

reactor.run()
