-- loom.web.websocket: WebSocket (RFC 6455) on loom.web's server and
-- client. WebSocketResource upgrades requests on a Site path; each upgraded
-- connection is a WebSocketConnection, which is both the protocol of the
-- TCP (or TLS) transport and the transport the user's protocol sees:
--
--   local Echo = protocol.Protocol:extend()
--   function Echo:messageReceived(msg, isBinary)
--     self.transport:sendMessage(msg, isBinary)
--   end
--   root:putChild("echo", web.WebSocketResource(protocol.Factory.forProtocol(Echo)))
--
-- The framing is C (bindings/websocket.c over libwslay): the connection's
-- dataReceived and sendMessage are C functions, so a read costs one call
-- into C and a message one Lua call, messageReceived. docs/web.md
-- ("WebSocket") lists the options, limits and close codes.

local core = require "loom.core"
local protocol = require "loom.protocol"
local failure = require "loom.failure"
local log = require "loom.log"
local err = require "loom.error"
local base = require "loom.reactor.base"
local resource = require "loom.web.resource"
local trim = require("loom.strings").trim

local M = {}

-- Defaults of the options WebSocketResource and connectWebSocket take.
M.MAX_MESSAGE_SIZE = 1024 * 1024 -- bytes of one message (close 1009 past it)
M.IDLE_TIMEOUT = 60              -- s of silence: a ping at half, a close at the end
M.CLOSE_TIMEOUT = 5              -- s the close handshake may take before an abort

-- The errors of the handshake (client side) and of bad options.
M.HandshakeError = err.new("WebSocketHandshakeError")

-- Close codes an endpoint may send (RFC 6455 7.4.1; 3000-4999 are the
-- application's).
local function sendableCode(code)
  return code == 1000 or code == 1001 or code == 1002 or code == 1003
    or (code >= 1007 and code <= 1011) or (code >= 3000 and code <= 4999)
end

-- Options shared by server and client, checked once.
local CONNECTION_OPTIONS = { maxMessageSize = "integer",
  idleTimeout = "number", closeTimeout = "number", clock = "table" }

local function checkOptions(who, opts, extra)
  for k, v in pairs(opts) do
    local want = CONNECTION_OPTIONS[k] or extra[k]
    if want == nil then
      error(string.format("%s: unknown option %s", who, tostring(k)), 3)
    end
    if want == "integer" and (math.type(v) ~= "integer" or v < 1) then
      error(string.format("%s: %s must be a positive integer", who, k), 3)
    elseif want == "number" and (type(v) ~= "number" or v ~= v or v <= 0) then
      error(string.format("%s: %s must be a positive number (math.huge: none)",
        who, k), 3)
    elseif want ~= "integer" and want ~= "number" and want ~= "any"
        and type(v) ~= want then
      error(string.format("%s: %s must be a %s", who, k, want), 3)
    end
  end
end
M.checkOptions = checkOptions

-- WebSocketConnection -----------------------------------------------------

local Connection = protocol.Protocol:extend({ __name = "WebSocketConnection" })
M.WebSocketConnection = Connection

-- dataReceived (the frames in), sendMessage, _sendPing, _sendClose and
-- _takeHeard are bindings/websocket.c's.
for name, f in pairs(core.websocketMethods) do
  Connection[name] = f
end

-- Connection(wrappedProtocol, isServer, opts): opts as checkOptions.
function Connection:init(wrapped, isServer, opts)
  self.wrappedProtocol = wrapped
  self.isServer = isServer
  self.maxMessageSize = opts.maxMessageSize or M.MAX_MESSAGE_SIZE
  self.idleTimeout = opts.idleTimeout or M.IDLE_TIMEOUT
  self.closeTimeout = opts.closeTimeout or M.CLOSE_TIMEOUT
  self.clock = opts.clock
  self._frames = core.websocketFrames(isServer, self.maxMessageSize)
end

function Connection:_callLater(secs, f)
  return (self.clock or base).callLater(secs, f)
end

function Connection:logPrefix()
  local w = self.wrappedProtocol
  if w and w.logPrefix then
    return w:logPrefix()
  end
  return "WebSocket"
end

-- The transport's side: the upgraded connection is ours.
function Connection:makeConnection(transport)
  self.transport = transport
  self.connected = true
  self:_armIdle()
  self.wrappedProtocol:makeConnection(self)
end

-- Every idleTimeout/2: a peer that sent nothing since the last check gets
-- a ping, one still silent at the next a close (1001). The C side notes
-- that bytes arrived (_takeHeard), so a read costs no timer reset.
function Connection:_armIdle()
  if self.idleTimeout == math.huge then
    return
  end
  self._idleCall = self:_callLater(self.idleTimeout / 2, function()
    self._idleCall = nil
    self:_idleTick()
  end)
end

function Connection:_idleTick()
  if not self.connected or self._closeSent then
    return
  end
  if self:_takeHeard() then
    self._pinged = false
  elseif self._pinged then
    log.prefixed(self:logPrefix()).info("WebSocket idle for %gs: closing",
      self.idleTimeout)
    self:loseConnection(1001, "idle timeout")
    return
  else
    self._pinged = true
    self:_sendPing("")
  end
  self:_armIdle()
end

-- ping(data?): a ping (at most 125 bytes); the pong goes to the
-- protocol's pongReceived(data), when it has one. false once closing.
function Connection:ping(data)
  if data ~= nil and type(data) ~= "string" then
    error("ping: data must be a string", 2)
  end
  return self:_sendPing(data or "")
end

function Connection:_pongReceived(data)
  local w = self.wrappedProtocol
  if w.pongReceived then
    w:pongReceived(data)
  end
end

-- Arms the abort that ends a close handshake the peer does not finish.
function Connection:_armAbort()
  if self._abortCall or self.closeTimeout == math.huge then
    return
  end
  local t = self.transport
  self._abortCall = self:_callLater(self.closeTimeout, function()
    self._abortCall = nil
    if t.connected then
      t:abortConnection()
    end
  end)
end

-- loseConnection(code?, reason?): starts the close handshake (code
-- 1000 by default; 1000-1003, 1007-1011 or 3000-4999; reason at most 123
-- bytes of UTF-8). The server closes the TCP connection when the peer's
-- close arrives, a client waits for the server to; either aborts after
-- closeTimeout.
function Connection:loseConnection(code, reason)
  code = code or 1000
  if math.type(code) ~= "integer" or not sendableCode(code) then
    error(string.format("loseConnection: %s is not a close code an endpoint"
      .. " may send (1000-1003, 1007-1011, 3000-4999)", tostring(code)), 2)
  end
  if reason ~= nil and type(reason) ~= "string" then
    error("loseConnection: reason must be a string", 2)
  end
  if not self.connected or self._closeSent then
    return
  end
  self:_sendClose(code, reason or "") -- raises on a bad reason
  self._closeSent = code
  self:_armAbort()
end

-- abortConnection(): drops the TCP connection at once (no close frame).
function Connection:abortConnection()
  if self.connected then
    self.transport:abortConnection()
  end
end

-- From C: the peer's close (code: 0 for none), after our answer was
-- written. The server ends the TCP connection now (RFC 6455 7.1.1).
function Connection:_closeReceived(code, reason)
  self._closeCode = code ~= 0 and code or 1005
  self._closeReason = reason
  self._closeSent = self._closeSent or code ~= 0 and code or 1000
  self._cleanClose = true
  if self.isServer then
    self.transport:loseConnection()
  end
  self:_armAbort()
end

-- From C: the peer broke the protocol (1002), sent bad UTF-8 (1007), too
-- big a message (1009) or too many at once (1008); our close was written.
function Connection:_failed(code)
  self._failedCode = code
  self._closeSent = code
  log.prefixed(self:logPrefix()).info("WebSocket failed with close code %d",
    code)
  self.transport:loseConnection()
  self:_armAbort()
end

function Connection:getPeer()
  return self.transport:getPeer()
end

function Connection:getHost()
  return self.transport:getHost()
end

-- Backpressure as on TCP: a producer registered here is the TCP
-- transport's, paused while its write queue is above the high-water mark;
-- pauseProducing stops reading (no messageReceived until resumed).
function Connection:registerProducer(producer, streaming)
  self.transport:registerProducer(producer, streaming)
end

function Connection:unregisterProducer()
  self.transport:unregisterProducer()
end

function Connection:pauseProducing()
  self.transport:pauseProducing()
end

function Connection:resumeProducing()
  self.transport:resumeProducing()
end

-- As a producer (applyBackpressure registers the connection itself): the
-- TCP transport calls this as it closes, when there is nothing to say.
function Connection:stopProducing()
  if self.connected and self.transport.connected then
    self:loseConnection(1001, "going away")
  end
end

-- Bytes written but not yet taken by the kernel.
function Connection:bufferedBytes()
  return self.transport:bufferedBytes()
end

-- The reason the protocol's connectionLost gets: a Failure of
-- ConnectionDone after a complete close handshake, else ConnectionLost,
-- with fields code (the peer's close code; 1005: none given; 1006: no
-- close frame at all), reason (its text) and wasClean.
function Connection:_lostReason()
  local code, why = self._closeCode, self._closeReason or ""
  local clean = self._cleanClose == true
  if code == nil then
    code = self._failedCode or 1006
  end
  local cls = clean and err.ConnectionDone or err.ConnectionLost
  local text = string.format("WebSocket closed: %d%s%s", code,
    why ~= "" and " " or "", why)
  if not clean then
    text = text .. " (the close handshake did not complete)"
  end
  return failure.Failure(cls(text, { code = code, reason = why,
    wasClean = clean }), "")
end

function Connection:connectionLost(reason) -- luacheck: ignore reason
  self.connected = false
  for _, name in ipairs({ "_idleCall", "_abortCall" }) do
    local call = self[name]
    self[name] = nil
    if call and call:active() then
      call:cancel()
    end
  end
  self._frames:free()
  local w = self.wrappedProtocol
  w.connected = false
  w:connectionLost(self:_lostReason())
end

-- The handshake ----------------------------------------------------------

-- Is token among the comma-separated, case-insensitive tokens of a header?
local function hasToken(header, token)
  if header == nil then
    return false
  end
  for item in header:gmatch("[^,]+") do
    if trim(item):lower() == token then
      return true
    end
  end
  return false
end
M.hasToken = hasToken

-- The comma-separated items of a header, trimmed.
local function items(header)
  local list = {}
  for item in (header or ""):gmatch("[^,]+") do
    item = trim(item)
    if item ~= "" then
      list[#list + 1] = item
    end
  end
  return list
end
M.items = items

-- A Sec-WebSocket-Key is 16 bytes in base64: 22 characters and "==".
local function validKey(key)
  return key ~= nil and #key == 24 and key:match("^[%w+/]+==$") ~= nil
end

-- WebSocketResource --------------------------------------------------------

local RESOURCE_OPTIONS = { allowedOrigins = "any", protocols = "table" }

local WebSocketResource = resource.Resource:extend({
  __name = "WebSocketResource" })
M.WebSocketResource = WebSocketResource
WebSocketResource.isLeaf = true

-- WebSocketResource(factory, opts): factory:buildProtocol(peer) makes
-- each connection's protocol. opts: allowedOrigins (a list of origins such
-- as "https://example.org", or "*"; default: a browser's Origin must name
-- the request's Host), protocols (the subprotocols offered, in order of
-- preference), maxMessageSize, idleTimeout, closeTimeout, clock.
function WebSocketResource:init(factory, opts)
  resource.Resource.init(self)
  if type(factory) ~= "table" or type(factory.buildProtocol) ~= "function" then
    error("WebSocketResource: the factory must have buildProtocol"
      .. " (protocol.Factory.forProtocol(P))", 3)
  end
  opts = opts or {}
  checkOptions("WebSocketResource", opts, RESOURCE_OPTIONS)
  local origins = opts.allowedOrigins
  if origins ~= nil and origins ~= "*" and type(origins) ~= "table" then
    error("WebSocketResource: allowedOrigins must be a list of origins or \"*\"", 3)
  end
  if type(origins) == "table" then
    local set = {}
    for _, o in ipairs(origins) do
      set[o:lower()] = true
    end
    self.allowedOrigins = set
  else
    self.allowedOrigins = origins
  end
  self.protocols = opts.protocols
  self.factory = factory
  self.connectionOptions = { maxMessageSize = opts.maxMessageSize,
    idleTimeout = opts.idleTimeout, closeTimeout = opts.closeTimeout,
    clock = opts.clock }
end

-- Does the request's Origin pass? No Origin (not a browser) passes; the
-- default lets only a page of the same host and port in.
-- Whether the name of a Host ("name:port", "[v6]:port") is this machine's.
local function loopbackName(hostport)
  local name = (hostport:match("^%[(.-)%]") or hostport:match("^[^:]*")):lower()
  return name == "localhost" or name:find("%.localhost%.?$") ~= nil
    or name:find("^127%.%d+%.%d+%.%d+$") ~= nil or name == "::1"
end

local function onLoopback(request)
  local ok, addr = pcall(request.getHost, request)
  local host = ok and type(addr) == "table" and addr.host or ""
  return host:find("^127%.") ~= nil or host == "::1"
end

function WebSocketResource:originAllowed(request)
  local origin = request.headers.origin
  if origin == nil then
    return true
  end
  local allowed = self.allowedOrigins
  if allowed == "*" then
    return true
  elseif allowed then
    return allowed[origin:lower()] == true
  end
  local host = origin:match("^%a[%w+.-]*://([^/]+)$")
  local requested = request.headers.host
  if host == nil or requested == nil or host:lower() ~= requested:lower() then
    return false
  end
  -- A page whose name an attacker points at 127.0.0.1 (DNS rebinding)
  -- sends an Origin and a Host of that name, which match: a server on a
  -- loopback address takes loopback names only.
  return not onLoopback(request) or loopbackName(requested)
end

-- The first of our subprotocols the client offered, or nil.
function WebSocketResource:chooseProtocol(request)
  local offered = items(request.headers["sec-websocket-protocol"])
  if not self.protocols or #offered == 0 then
    return nil
  end
  for _, mine in ipairs(self.protocols) do
    for _, theirs in ipairs(offered) do
      if mine == theirs then
        return mine
      end
    end
  end
  return nil
end

local function refuse(request, code, why, headers)
  request:setResponseCode(code)
  for k, v in pairs(headers or {}) do
    request:setHeader(k, v)
  end
  request:setHeader("Content-Type", "text/plain; charset=utf-8")
  log.prefixed(request.channel:logPrefix()).info("WebSocket refused (%d): %s",
    code, why)
  return why .. "\n"
end

-- Why a request cannot be upgraded: code, message, headers; or nil.
function WebSocketResource:check(request)
  local h = request.headers
  if request.method ~= "GET" then
    return 405, "a WebSocket handshake is a GET", { Allow = "GET" }
  end
  if not hasToken(h.upgrade, "websocket") or not hasToken(h.connection, "upgrade") then
    return 426, "this resource speaks WebSocket only (Upgrade: websocket)",
      { Upgrade = "websocket", Connection = "Upgrade" }
  end
  if request.clientproto ~= "HTTP/1.1" then
    return 400, "a WebSocket handshake needs HTTP/1.1"
  end
  if h["sec-websocket-version"] ~= "13" then
    return 426, "unsupported Sec-WebSocket-Version (13 only)",
      { ["Sec-WebSocket-Version"] = "13" }
  end
  if not validKey(h["sec-websocket-key"]) then
    return 400, "missing or malformed Sec-WebSocket-Key"
  end
  if not self:originAllowed(request) then
    return 403, "origin not allowed: " .. log.safeString(h.origin)
  end
  return nil
end

function WebSocketResource:render(request)
  local code, why, headers = self:check(request)
  if code then
    return refuse(request, code, why, headers)
  end
  local peer = request:getClientAddress()
  local proto = self.factory:buildProtocol(peer)
  if proto == nil then
    return refuse(request, 403, "the factory refused the connection")
  end
  proto.factory = proto.factory or self.factory
  local conn = Connection(proto, true, self.connectionOptions)
  conn.request = request
  conn.subprotocol = self:chooseProtocol(request)
  request:setResponseCode(101)
  request:setHeader("Upgrade", "websocket")
  request:setHeader("Connection", "Upgrade")
  request:setHeader("Sec-WebSocket-Accept",
    core.websocketAccept(request.headers["sec-websocket-key"]))
  if conn.subprotocol then
    request:setHeader("Sec-WebSocket-Protocol", conn.subprotocol)
  end
  request.channel:switchProtocol(conn)
  request:finish()
  return resource.NOT_DONE_YET
end

return M
