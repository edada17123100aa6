-- The floor under bench/http_hello.lua, for `make bench` (loom-floor in the
-- HTTP matrix): each read is answered with the same 13-byte hello response,
-- with no parsing and no Request: one Lua call and one write per request,
-- the least any loom server does. What http_hello costs beyond it is the
-- web layer's (docs/PERFORMANCE.md). It is for wrk's one-request-at-a-time
-- connections only: a read holding two requests still gets one answer.
--   loom run bench/http_floor.lua [PORT]     (default 8080; 0 picks one)
local policies = require "loom.policies"
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local HELLO = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
  .. "Content-Type: text/plain\r\n\r\nHello, World!"

local Floor = protocol.Protocol:extend({ __name = "Floor" })

-- As the bench peers: no Nagle delay; and as examples/echo.lua, a client
-- that sends without reading stops being read from (64 KiB waiting).
function Floor:connectionMade()
  self.transport:setTcpNoDelay(true)
  policies.applyBackpressure(self)
end

function Floor:dataReceived()
  self.transport:write(HELLO)
end

local port = reactor.listenTCP(tonumber(arg[1]) or 8080,
  protocol.Factory.forProtocol(Floor),
  { interface = "127.0.0.1", backlog = 511 })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
