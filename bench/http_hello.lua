-- HTTP hello world for `make bench` (bench/run.sh): a web.Site whose root
-- is a leaf resource answering every GET with the 13-byte body
-- "Hello, World!" (Content-Length from the string, keep-alive), as the
-- shared bench's HTTP peers do: 127.0.0.1, backlog 511, TCP_NODELAY (the
-- Site's default), no access log.
--   loom run bench/http_hello.lua [PORT]
-- PORT defaults to 8080 (0 picks one). make bench runs it twice: as loom
-- comes (Lua's generational collector) and as loom-inc, with
-- LOOM_GC=incremental.
local reactor = require "loom.reactor"
local web = require "loom.web"

local Hello = web.Resource:extend({ __name = "Hello", isLeaf = true })

function Hello:render_GET(request)
  request:setHeader("Content-Type", "text/plain")
  return "Hello, World!"
end

local site = web.Site(Hello(), { accessLog = false })
local port = reactor.listenTCP(tonumber(arg[1]) or 8080, site,
  { interface = "127.0.0.1", backlog = 511 })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
