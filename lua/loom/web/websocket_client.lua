-- loom.web.websocket_client: web.connectWebSocket(url, factory, opts), the
-- client half of loom.web.websocket. It connects, sends the opening
-- handshake, checks the server's answer (101, Upgrade, Connection and the
-- Sec-WebSocket-Accept of our key) and then hands the connection to a
-- WebSocketConnection whose frames are masked:
--
--   web.connectWebSocket("ws://127.0.0.1:8080/echo",
--     protocol.Factory.forProtocol(MyProtocol)):addCallback(function(p)
--       p.transport:sendMessage("hello")
--     end)
--
-- wss:// is the same over TLS (reactor.connectSSL through
-- endpoints.SSL4ClientEndpoint; opts.tls are its TLS options, docs/tls.md):
-- the framing runs over whichever transport the endpoint gives.

local core = require "loom.core"
local defer = require "loom.defer"
local failure = require "loom.failure"
local protocol = require "loom.protocol"
local endpoints = require "loom.endpoints"
local log = require "loom.log"
local url = require "loom.web.url"
local errors = require "loom.web.errors"
local websocket = require "loom.web.websocket"

local M = {}

local Failure = failure.Failure
local HandshakeError = websocket.HandshakeError

-- The longest handshake answer read before giving up.
local MAX_RESPONSE_HEAD = 16 * 1024

local CLIENT_OPTIONS = { origin = "string", protocols = "table",
  headers = "table", timeout = "number", reactor = "table", tls = "table" }

-- The handshake's own fields: opts.headers may not give them (a second
-- Host or key would make the request mean two things).
local BY_HANDSHAKE = "set by the handshake"
local RESERVED = { host = BY_HANDSHAKE, upgrade = BY_HANDSHAKE,
  connection = BY_HANDSHAKE, ["sec-websocket-key"] = BY_HANDSHAKE,
  ["sec-websocket-version"] = BY_HANDSHAKE,
  ["sec-websocket-extensions"] = BY_HANDSHAKE,
  ["sec-websocket-protocol"] = "opts.protocols",
  origin = "opts.origin", ["content-length"] = BY_HANDSHAKE,
  ["transfer-encoding"] = BY_HANDSHAKE }

-- RFC 6455 4.1: a subprotocol is a token.
local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- Raises (at the caller of connectWebSocket) for what could break the
-- handshake request apart; returns opts.headers as a list.
local function checkRequestFields(opts)
  local list = require("loom.web.client").headerList(opts.headers,
    "connectWebSocket", RESERVED)
  if opts.origin and opts.origin:find("[%z\r\n]") then
    error("connectWebSocket: CR, LF or NUL in opts.origin", 3)
  end
  for i, p in ipairs(opts.protocols or {}) do
    if type(p) ~= "string" or not p:match(TOKEN) then
      error(string.format("connectWebSocket: opts.protocols[%d] must be a "
        .. "token such as \"chat.v1\", got %q", i, tostring(p)), 3)
    end
  end
  return list
end

-- The handshake's protocol: one request, one response head; then the
-- WebSocketConnection takes the transport.
local Handshake = protocol.Protocol:extend({ __name = "WebSocketHandshake" })
M.Handshake = Handshake

function Handshake:connectionMade()
  local u, opts = self.url, self.opts
  self.key = core.websocketKey()
  local lines = {
    "GET " .. url.target(u) .. " HTTP/1.1",
    "Host: " .. url.hostHeader(u),
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. self.key,
    "Sec-WebSocket-Version: 13",
  }
  if opts.origin then
    lines[#lines + 1] = "Origin: " .. opts.origin
  end
  if opts.protocols and #opts.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(opts.protocols, ", ")
  end
  for _, h in ipairs(self.headerList) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
  end
  lines[#lines + 1] = "\r\n"
  self.parser = core.httpParser("response", self,
    { maxHeaderSize = MAX_RESPONSE_HEAD })
  self.transport:write(table.concat(lines, "\r\n"))
end

-- Parser handler: the answer's head.
function Handshake:onHeaders(info)
  self.info = info
  self.parser:pause()
  return true -- a refusal's body is not read
end

function Handshake:onBody() end
function Handshake:onMessageComplete() end

-- Why the answer is not an accepted handshake, or nil.
function Handshake:check(info)
  local h = {}
  for _, pair in ipairs(info.headers) do
    local name = pair[1]:lower()
    if h[name] and name:find("^sec%-websocket%-") then
      return "the answer has " .. pair[1] .. " twice" -- (RFC 6455 4.1)
    end
    h[name] = pair[2]
  end
  if info.status ~= 101 then
    return string.format("the server answered %d, not 101", info.status)
  elseif not websocket.hasToken(h.upgrade, "websocket") then
    return "the answer has no Upgrade: websocket"
  elseif not websocket.hasToken(h.connection, "upgrade") then
    return "the answer has no Connection: Upgrade"
  elseif h["sec-websocket-accept"] ~= core.websocketAccept(self.key) then
    return "wrong Sec-WebSocket-Accept"
  elseif h["sec-websocket-extensions"] then
    return "the server chose an extension we did not offer"
  end
  local chosen = h["sec-websocket-protocol"]
  if chosen then
    local offered = false
    for _, p in ipairs(self.opts.protocols or {}) do
      offered = offered or p == chosen
    end
    if not offered then
      return "the server chose a subprotocol we did not offer: " .. chosen
    end
  end
  self.subprotocol = chosen
  return nil, info.status
end

function Handshake:_fail(why)
  if self.done then
    return
  end
  self.done = true
  self:_cancelTimeout()
  self.transport:abortConnection()
  self.deferred:errback(Failure(HandshakeError(why, { url = self.urlText }), ""))
end

function Handshake:_cancelTimeout()
  local call = self.timeoutCall
  self.timeoutCall = nil
  if call and call:active() then
    call:cancel()
  end
end

function Handshake:dataReceived(data)
  if self.done then
    return
  end
  local n, errname, msg = self.parser:execute(data)
  if n == nil then
    self:_fail(string.format("bad handshake answer (%s): %s", errname, msg))
    return
  end
  local info = self.info
  if info == nil then
    return -- the head is not complete yet
  end
  local why = self:check(info)
  if why then
    self:_fail(why)
    return
  end
  self:_upgrade(data:sub(n + 1))
end

-- The answer was right: the WebSocketConnection takes the transport, with
-- any frames that came in the same read.
function Handshake:_upgrade(rest)
  self.done = true
  self:_cancelTimeout()
  local t = self.transport
  -- The factory's and the protocol's code may raise: the Deferred then
  -- errbacks with the error (logged with its traceback) instead of never
  -- firing, and the connection closes.
  local ok, proto = xpcall(self.factory.buildProtocol, debug.traceback,
    self.factory, t:getPeer())
  if not ok or proto == nil then
    if not ok then
      log.error("connectWebSocket %s: buildProtocol raised: %s", self.urlText,
        tostring(proto))
    end
    t:abortConnection()
    self.deferred:errback(Failure(HandshakeError(ok
      and "the factory built no protocol" or "the factory raised",
      { url = self.urlText }), ""))
    return
  end
  proto.factory = proto.factory or self.factory
  local conn = websocket.WebSocketConnection(proto, false, self.connectionOptions)
  conn.subprotocol = self.subprotocol
  t:setProtocol(conn)
  local made, why = xpcall(conn.makeConnection, debug.traceback, conn, t)
  if not made then
    log.error("connectWebSocket %s: connectionMade raised: %s", self.urlText,
      tostring(why))
    t:abortConnection()
    self.deferred:errback(Failure(HandshakeError("connectionMade raised",
      { url = self.urlText }), ""))
    return
  end
  self.deferred:callback(proto)
  if #rest > 0 and t.connected then
    conn:dataReceived(rest)
  end
end

function Handshake:connectionLost(reason)
  if not self.done then
    self.done = true
    self:_cancelTimeout()
    self.deferred:errback(Failure(HandshakeError(
      "the connection closed during the handshake: " .. reason:getErrorMessage(),
      { url = self.urlText }), ""))
  end
end

-- The endpoint for a ws:// or wss:// URL: TCP, or TLS verifying the
-- server (the system's CAs and the URL's host unless opts.tls says).
local function endpointFor(reactor, u, opts)
  if u.wsScheme == "wss" then
    return endpoints.SSL4ClientEndpoint(reactor, u.host, u.port,
      opts.tls or {}, { timeout = opts.timeout })
  end
  return endpoints.TCP4ClientEndpoint(reactor, u.host, u.port,
    { timeout = opts.timeout })
end

-- A ws:// or wss:// URL, parsed as http:// or https:// would be.
local function parseURL(text)
  if type(text) ~= "string" then
    return nil, "invalid URL: expected a string, got " .. type(text)
  end
  local scheme, rest = text:match("^([%a][%w+.-]*)(://.*)$")
  local as = scheme and ({ ws = "http", wss = "https" })[scheme:lower()]
  if not as then
    return nil, string.format("invalid URL %q: the scheme must be ws or wss",
      text:sub(1, 80))
  end
  local u, why = url.parse(as .. rest)
  if not u then
    return nil, why
  end
  -- u.scheme stays http/https, whose default ports ws/wss share (the
  -- Host header leaves them out).
  u.wsScheme = scheme:lower()
  return u
end

-- connectWebSocket(url, factory, opts) -> Deferred of the protocol the
-- factory built, once the handshake is done. opts: origin (the Origin
-- header to send), protocols (subprotocols to offer), headers (more
-- header fields), timeout (s for the connect and the handshake: 30),
-- tls (wss://: connectSSL's TLS options, e.g. { caCerts = "ca.pem" }),
-- maxMessageSize, idleTimeout, closeTimeout, clock, reactor.
function M.connectWebSocket(urlText, factory, opts)
  opts = opts or {}
  if type(factory) ~= "table" or type(factory.buildProtocol) ~= "function" then
    error("connectWebSocket: the factory must have buildProtocol"
      .. " (protocol.Factory.forProtocol(P))", 2)
  end
  websocket.checkOptions("connectWebSocket", opts, CLIENT_OPTIONS)
  local headerList = checkRequestFields(opts)
  local u, why = parseURL(urlText)
  if not u then
    return defer.fail(Failure(errors.InvalidURL(why, { url = urlText }), ""))
  end
  if opts.tls and u.wsScheme ~= "wss" then
    error("connectWebSocket: tls options given for a ws:// URL (wss:// is TLS)", 2)
  end
  local reactor = opts.reactor or require("loom.reactor")
  local endpoint = endpointFor(reactor, u, opts)
  local d = defer.Deferred()
  local hsFactory = protocol.Factory:new()
  function hsFactory.buildProtocol()
    local hs = Handshake()
    hs.url, hs.urlText, hs.opts, hs.factory, hs.deferred = u, urlText, opts,
      factory, d
    hs.headerList = headerList
    hs.connectionOptions = { maxMessageSize = opts.maxMessageSize,
      idleTimeout = opts.idleTimeout, closeTimeout = opts.closeTimeout,
      clock = opts.clock }
    local timeout = opts.timeout or 30
    local clock = opts.clock or reactor
    hs.timeoutCall = clock.callLater(timeout, function()
      hs.timeoutCall = nil
      hs:_fail(string.format("no handshake answer in %gs", timeout))
    end)
    return hs
  end
  endpoint:connect(hsFactory):addErrback(function(f)
    if not d.called then
      d:errback(f)
    end
  end)
  return d
end

return M
