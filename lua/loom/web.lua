-- loom.web: HTTP/1.1 (twisted.web's names). A thin index: the server is
-- loom.web.server (Site, HTTPChannel), loom.web.server_request (Request),
-- loom.web.resource (Resource, NoResource, ErrorPage, NOT_DONE_YET) and
-- loom.web.static (File); the client is loom.web.client (Agent,
-- HTTPConnectionPool, RedirectAgent, readBody, getPage) with its errors in
-- loom.web.errors; docs/web.md.
--
--   local web = require "loom.web"
--   local Hello = web.Resource:extend({ isLeaf = true })
--   function Hello:render_GET(request) return "hello\n" end
--   reactor.listenTCP(8080, web.Site(Hello()), { interface = "127.0.0.1" })

local resource = require "loom.web.resource"
local server = require "loom.web.server"
local request = require "loom.web.server_request"
local static = require "loom.web.static"

local web = {}

-- Server.
web.Resource = resource.Resource
web.NoResource = resource.NoResource
web.ForbiddenResource = resource.ForbiddenResource
web.ErrorPage = resource.ErrorPage
web.NOT_DONE_YET = resource.NOT_DONE_YET
web.escapeHTML = resource.escapeHTML
web.Site = server.Site
web.HTTPChannel = server.HTTPChannel
web.Request = request.Request
web.RESPONSES = request.PHRASES
web.File = static.File

-- WebSocket (loom.web.websocket, loom.web.websocket_client).
local websocket = require "loom.web.websocket"
web.WebSocketResource = websocket.WebSocketResource
web.WebSocketConnection = websocket.WebSocketConnection
web.WebSocketHandshakeError = websocket.HandshakeError
web.connectWebSocket = require("loom.web.websocket_client").connectWebSocket

-- Client.
local client = require "loom.web.client"
local errors = require "loom.web.errors"
for _, name in ipairs({ "Agent", "HTTPConnectionPool", "RedirectAgent",
    "readBody", "getPage", "MAX_BODY_SIZE" }) do
  web[name] = client[name]
end
-- Error, ResponseFailed, ResponseDone, InvalidURL, ... (loom.web.errors).
for name, cls in pairs(errors) do
  if type(cls) == "table" then
    web[name] = cls
  end
end

return web
