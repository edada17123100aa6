-- examples/reload/server.lua: a chat room to edit while it runs.
--
--   build/loom run examples/reload/server.lua --reload [PORT]   (8002)
--   nc 127.0.0.1 8002
--
-- Then edit examples/reload/room.lua (the greeting, a command) and save:
-- the room reloads it, and everyone connected keeps their nickname. Without
-- --reload, `kill -HUP PID` (or `loom reload PIDFILE` with --pidfile)
-- reloads by hand. An application file: loom starts the service tree it
-- returns; on a reload this file runs again, but only to define things
-- (the tree it makes then is not started).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
if not package.path:find(here .. "/?.lua;", 1, true) then
  package.path = here .. "/?.lua;" .. package.path
end

local application = require "loom.application"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local room = require "room"

local port = tonumber(arg and arg[1]) or 8002
local app = application.Application("live-room")
strports.service(string.format("tcp:%d:interface=127.0.0.1", port),
  protocol.Factory.forProtocol(room.Member)):setServiceParent(app)
return app
