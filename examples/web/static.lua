-- A static file server: web.File serves a directory (this one by
-- default) with content types, Range and If-Modified-Since; nothing
-- outside it is reachable, and listing is off unless asked.
--   loom run examples/web/static.lua [PORT] [DIR] [listing]
--   curl http://127.0.0.1:8080/static.lua
-- (`loom web --path DIR` is the same as a plugin.)
local reactor = require "loom.reactor"
local web = require "loom.web"

local dir = arg[2] or (arg[0]:match("^(.*)/[^/]*$") or ".")
local root = web.File(dir, { listing = arg[3] == "listing" })
local port = reactor.listenTCP(tonumber(arg[1]) or 8080, web.Site(root),
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
