-- inlineCallbacks: wait for two slow results in turn and print their sum
-- (after Twisted's inlineCallbacks tutorial).
--   loom run examples/deferreds/inline_sum.lua
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local task = require "loom.task"

-- A value that takes a while to arrive.
local function slowValue(v, secs)
  return task.deferLater(reactor, secs, function() return v end)
end

local sum = defer.inlineCallbacks(function()
  local a = defer.await(slowValue(20, 0.2))
  print("first value:", a)
  local b = defer.await(slowValue(22, 0.2))
  print("second value:", b)
  return a + b
end)

sum():addCallback(function(total)
  print("sum:", total)
end):addErrback(function(f)
  print("failed: " .. f:getTraceback())
end):addBoth(function()
  reactor.stop()
end)

reactor.run()
