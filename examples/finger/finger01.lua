-- Finger tutorial, step 1 (Twisted's finger01.py, "Refuse connections"):
-- a reactor that runs and does nothing else. No port is opened yet, so a
-- finger client would be refused.
--   loom run examples/finger/finger01.lua [SECONDS]
-- Ctrl-C (or SIGTERM) stops it; with SECONDS it also stops by itself.
local reactor = require "loom.reactor"

local seconds = tonumber(arg[1])
if seconds then
  reactor.callLater(seconds, reactor.stop)
end
reactor.callWhenRunning(function()
  print("reactor running; press Ctrl-C to stop")
  io.stdout:flush()
end)
reactor.run()
print("reactor stopped")
