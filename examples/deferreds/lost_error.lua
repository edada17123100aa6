-- A Deferred whose error nobody handles, tracked down with Twisted's
-- Deferred debugging (docs/defer.md, "Debugging Deferreds"):
--   build/loom run examples/deferreds/lost_error.lua
-- The "Unhandled error in Deferred" report names the line that made the
-- Deferred (in lookup, called by show) and the one that fired it (the
-- timer in lookup). Without defer.setDebugging(true) it has the error and
-- its traceback only.
local defer = require "loom.defer"
local reactor = require "loom.reactor"

defer.setDebugging(true)

-- A lookup that answers a little later, and fails for names it lacks.
local function lookup(name)
  local d = defer.Deferred()
  reactor.callLater(0.01, function()
    if name == "loom" then
      d:callback("a Twisted-style network host")
    else
      d:errback("no such name: " .. name)
    end
  end)
  return d
end

local function show(name)
  -- The bug: a callback, but no errback, so a failure goes unnoticed.
  lookup(name):addCallback(function(what)
    print(name .. " is " .. what)
  end)
end

show("loom")
show("lume")
reactor.callLater(0.1, function()
  -- The report comes when the garbage collector takes the lost Deferred.
  collectgarbage()
  collectgarbage()
  reactor.stop()
end)
reactor.run()
