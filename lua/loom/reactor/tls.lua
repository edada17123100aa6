-- loom.reactor.tls: TLS over TCP (reactor.listenSSL, connectSSL and
-- transport:startTLS), over host/tls.c through bindings/tls.c. Part of
-- loom.reactor, which re-exports what this module returns.
--
-- A TLS connection is a TCP transport whose io is the TLS layer: the same
-- transport object, write queue, backpressure and close. The protocol is
-- attached once the handshake has succeeded (Twisted attaches it before;
-- loom does not, so a failed verification reaches clientConnectionFailed
-- as error.TLSError, and a peer that never completes a handshake never
-- reaches the protocol). After transport:startTLS the protocol stays
-- attached; a failed handshake ends it with a TLSError.

local core = require "loom.core"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local base = require "loom.reactor.base"
local tcp = require "loom.reactor.tcp"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure
local callLater = base.callLater

local M = {}

-- Options -------------------------------------------------------------------------

local VERSIONS = {
  ["TLSv1.2"] = 0x0303, ["1.2"] = 0x0303,
  ["TLSv1.3"] = 0x0304, ["1.3"] = 0x0304,
}

local KNOWN = {
  certificate = "string", privateKey = "string", extraCertChain = "string",
  caCerts = "string", verify = "boolean", hostname = "string",
  acceptableProtocols = "table", minimumVersion = "string",
  maximumVersion = "string", sni = "table", handshakeTimeout = "number",
}

local function bad(fn, fmt, ...)
  error(fn .. ": " .. string.format(fmt, ...), 0)
end

local function checkTypes(fn, options)
  if type(options) ~= "table" then
    bad(fn, "tlsOptions must be a table, got %s", type(options))
  end
  for k, v in pairs(options) do
    local want = KNOWN[k]
    if want == nil then
      local names = {}
      for name in pairs(KNOWN) do
        names[#names + 1] = name
      end
      table.sort(names)
      bad(fn, "unknown TLS option '%s' (known: %s)", tostring(k),
        table.concat(names, ", "))
    end
    if type(v) ~= want then
      bad(fn, "TLS option %s must be a %s, got %s", k, want, type(v))
    elseif want == "string" and v:find("%z") then -- (C would read less)
      bad(fn, "TLS option %s holds a NUL byte", k)
    end
  end
end

-- acceptableProtocols {"h2", "http/1.1"} in ALPN's wire format.
local function alpnWire(fn, list)
  local parts = {}
  for i, p in ipairs(list) do
    if type(p) ~= "string" or #p == 0 or #p > 255 then
      bad(fn, "acceptableProtocols[%d] must be a string of 1-255 bytes", i)
    end
    parts[#parts + 1] = string.char(#p) .. p
  end
  if #parts == 0 then
    return nil
  end
  return table.concat(parts)
end

local function version(fn, name, v)
  if v == nil then
    return nil
  end
  local n = VERSIONS[v]
  if n == nil then
    bad(fn, "%s '%s' is not TLSv1.2 or TLSv1.3", name, v)
  end
  return n
end

-- What core.tlsContext takes, from checked tlsOptions.
local function config(fn, options, server)
  local cfg = {
    server = server,
    certificate = options.certificate,
    privateKey = options.privateKey or (options.certificate and server
      and options.certificate) or nil,
    extraCertChain = options.extraCertChain,
    caCerts = options.caCerts,
    minimumVersion = version(fn, "minimumVersion", options.minimumVersion),
    maximumVersion = version(fn, "maximumVersion", options.maximumVersion),
    alpn = options.acceptableProtocols
      and alpnWire(fn, options.acceptableProtocols),
  }
  if server then
    -- A server asks for client certificates only when told to.
    cfg.verify = options.verify == true
    if cfg.verify and not options.caCerts then
      bad(fn, "verify = true on a server needs caCerts (the CAs its"
        .. " clients' certificates must come from)")
    end
    cfg.sni = {}
    for i, alt in ipairs(options.sni or {}) do
      if type(alt) ~= "table" or type(alt.certificate) ~= "string" then
        bad(fn, "sni[%d] must be a table with certificate and privateKey", i)
      end
      cfg.sni[i] = { certificate = alt.certificate,
        privateKey = alt.privateKey or alt.certificate,
        extraCertChain = alt.extraCertChain }
    end
  else
    cfg.verify = options.verify ~= false
  end
  return cfg
end

-- Contexts are made once per set of options: every connection made with
-- the same options (the same table, or an equal one) shares one, which
-- lives while a table or connection holds it (weak values).
local contexts = setmetatable({}, { __mode = "v" })
local byTable = setmetatable({}, { __mode = "k" })

-- A string naming cfg's content (and so its context).
local function contextKey(cfg)
  local parts = {}
  local function add(v)
    parts[#parts + 1] = v == nil and "" or tostring(v)
  end
  for _, k in ipairs({ "server", "certificate", "privateKey",
      "extraCertChain", "caCerts", "verify", "minimumVersion",
      "maximumVersion", "alpn" }) do
    add(cfg[k])
  end
  for _, alt in ipairs(cfg.sni or {}) do
    add(alt.certificate)
    add(alt.privateKey)
    add(alt.extraCertChain)
  end
  return table.concat(parts, "\0")
end

-- contextFor(fn, options, server) -> a loom.TLSContext; a bad option or
-- file raises a TLSError of one line naming it ("listenSSL: certificate
-- x.pem: No such file or directory").
local function contextFor(fn, options, server)
  server = server and true or false
  local known = byTable[options]
  if known and known[server] then
    return known[server]
  end
  checkTypes(fn, options)
  local cfg = config(fn, options, server)
  local key = contextKey(cfg)
  local made = contexts[key]
  if not made then
    local _, msg
    made, _, msg = core.tlsContext(cfg)
    if not made then
      error(err.TLSError(fn .. ": " .. msg, { reason = "configuration" }), 0)
    end
    if not server and not cfg.verify then
      log.warn("%s: verify = false: the server's certificate is not"
        .. " checked; anyone on the path can read and change this"
        .. " connection", fn)
    end
    contexts[key] = made
  end
  byTable[options] = byTable[options] or {}
  byTable[options][server] = made
  return made
end

-- A TLSError Failure for a failed handshake (code: unknownCA, expired,
-- hostnameMismatch, handshakeFailure, ...).
local function handshakeFailure(where, code, message)
  return Failure(err.TLSError(where .. ": " .. message, { reason = code }),
    "")
end

local function peerString(transport)
  local ok, peer = pcall(transport.getPeer, transport)
  if ok and type(peer) == "table" and peer.host then
    return peer.host .. ":" .. tostring(peer.port)
  end
  return "?"
end

-- transport -> the DelayedCall bounding its handshake, a TLS port's or a
-- startTLS's: a peer cannot hold a connection by never finishing one.
local handshakeTimers = setmetatable({}, { __mode = "k" })

-- Aborts transport after secs (0: never) unless its handshake ends first;
-- onTimeout says why before.
local function boundHandshake(transport, secs, onTimeout)
  if secs > 0 then
    handshakeTimers[transport] = callLater(secs, function()
      handshakeTimers[transport] = nil
      onTimeout()
      transport:abortConnection()
    end)
  end
end

local function handshakeEnded(transport)
  local timer = handshakeTimers[transport]
  if timer then
    handshakeTimers[transport] = nil
    if timer:active() then
      timer:cancel()
    end
  end
end

local function handshakeCompleted(transport)
  local proto = transport.protocol
  if type(proto) == "table" and proto.handshakeCompleted then
    proto:handshakeCompleted()
  end
end

-- TLS ports -------------------------------------------------------------------------

local TLSPort = tcp.Port:extend({ __name = "TLSPort" })
M.TLSPort = TLSPort

-- A server's handshake must finish within this many seconds (a client's
-- is bounded by its connect timeout): a peer cannot hold a connection
-- open by never finishing one. tlsOptions.handshakeTimeout overrides it.
TLSPort.handshakeTimeout = 30

function TLSPort:init(port, factory, opts, tlsOptions)
  tcp.Port.init(self, port, factory, opts)
  self.context = contextFor("listenSSL", tlsOptions, true)
  self.handshakeTimeout = tlsOptions.handshakeTimeout
    or TLSPort.handshakeTimeout
end

-- Accepted: the handshake first; the protocol comes once it succeeded.
function TLSPort:_accept(transport)
  local ok, _, msg = transport:_tlsStart(self.context)
  if not ok then
    log.prefixed(tostring(self)).error("TLS from %s: %s", peerString(transport),
      msg)
    transport:abortConnection()
    return
  end
  boundHandshake(transport, self.handshakeTimeout, function()
    self:_logFailure(string.format("TLS handshake from %s: no handshake"
      .. " after %gs; closing", peerString(transport), self.handshakeTimeout))
  end)
end

-- Failed handshakes are logged one line each, at most FAILURE_LOG_BURST
-- per FAILURE_LOG_INTERVAL seconds per port; the rest of a burst (a
-- scanner, a flood) in one summary line when the interval ends.
local FAILURE_LOG_BURST, FAILURE_LOG_INTERVAL = 10, 1

local function failureSummary(self)
  self._failureLogCall = nil
  local n = self._failuresUnlogged
  self._failuresLogged, self._failuresUnlogged = 0, 0
  if n > 0 then
    log.prefixed(tostring(self)).warn("%d more TLS handshake(s) failed in"
      .. " the last %gs (the last: %s)", n, FAILURE_LOG_INTERVAL,
      self._lastFailure)
  end
end

function TLSPort:_logFailure(text)
  if not self.connected then -- stopped listening: no summary to come
    log.prefixed(tostring(self)).warn("%s", text)
    return
  end
  if not self._failureLogCall then
    self._failuresLogged, self._failuresUnlogged = 0, 0
    self._failureLogCall = callLater(FAILURE_LOG_INTERVAL, failureSummary,
      self)
  end
  if self._failuresLogged < FAILURE_LOG_BURST then
    self._failuresLogged = self._failuresLogged + 1
    log.prefixed(tostring(self)).warn("%s", text)
  else
    self._failuresUnlogged = self._failuresUnlogged + 1
    self._lastFailure = text
  end
end

function TLSPort:_tlsHandshake(transport, code, message)
  if code then
    local where = "TLS handshake from " .. peerString(transport)
    self:_logFailure(where .. " failed: " .. message)
    return handshakeFailure(where, code, message)
  end
  tcp.Port._accept(self, transport)
  if transport.connected then
    handshakeCompleted(transport)
  end
end

-- The summary of failures not logged yet is logged now.
function TLSPort:stopListening()
  if self._failureLogCall then
    self._failureLogCall:cancel()
    failureSummary(self)
  end
  return tcp.Port.stopListening(self)
end
TLSPort.loseConnection = TLSPort.stopListening

-- A connection closed before or after its handshake.
function TLSPort:_connectionLost(transport)
  handshakeEnded(transport)
end

function TLSPort:__tostring()
  return (tcp.Port.__tostring(self):gsub("^<Port", "<TLSPort"))
end

function M.listenSSL(port, factory, tlsOptions, opts)
  opts = opts or {}
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error("listenSSL: port must be an integer 0-65535, got "
      .. tostring(port), 2)
  end
  base.checkFactory("listenSSL", factory)
  if type(tlsOptions) ~= "table" then
    error("listenSSL: tlsOptions must be a table with certificate and"
      .. " privateKey", 2)
  end
  local p = TLSPort:new(port, factory, opts, tlsOptions)
  p:startListening()
  return p
end

-- TLS connectors --------------------------------------------------------------------

local TLSConnector = tcp.Connector:extend({ __name = "TLSConnector" })
M.TLSConnector = TLSConnector

function TLSConnector:init(host, port, factory, opts, tlsOptions)
  tcp.Connector.init(self, host, port, factory, opts)
  self.context = contextFor("connectSSL", tlsOptions, false)
  -- The name checked against the certificate: hostname, else the host
  -- connected to (an IP address literal is checked as an address).
  self.hostname = tlsOptions.hostname or host
end

-- TCP is up: the handshake next; the connect timeout keeps running.
function TLSConnector:_connected(transport, errname, message)
  if errname then
    return tcp.Connector._connected(self, transport, errname, message)
  end
  local ok, _, msg = transport:_tlsStart(self.context, self.hostname)
  if not ok then
    self._failReason = handshakeFailure(string.format("%s:%s", self.host,
      self.port), "handshakeFailure", msg)
    transport:abortConnection()
  end
end

function TLSConnector:_tlsHandshake(transport, code, message)
  if code then
    local reason = handshakeFailure(string.format("TLS handshake with %s:%s",
      self.host, self.port), code, message)
    self._failReason = reason
    return reason
  end
  tcp.Connector._connected(self, transport)
  if transport.connected then
    handshakeCompleted(transport)
  end
end

-- Before its handshake succeeded, a connection that closes is a failed
-- attempt (clientConnectionFailed); after, a lost connection.
function TLSConnector:_connectionLost(transport, proto, reason)
  if self.state == "connecting" then
    if transport == self.transport then
      local why = self._failReason or reason
      self._failReason = nil
      self.transport = nil
      self._addrs = nil
      self:_failed(why)
    end
    return
  end
  return tcp.Connector._connectionLost(self, transport, proto, reason)
end

function M.connectSSL(host, port, factory, tlsOptions, opts)
  opts = opts or {}
  if type(host) ~= "string" then
    error("connectSSL: host must be a string", 2)
  elseif host:find("%z") then
    error("connectSSL: host holds a NUL byte", 2)
  end
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    error("connectSSL: port must be an integer 1-65535, got "
      .. tostring(port), 2)
  end
  base.checkFactory("connectSSL", factory)
  tlsOptions = tlsOptions or {}
  local c = TLSConnector:new(host, port, factory, opts, tlsOptions)
  c:connect()
  return c
end

-- STARTTLS ---------------------------------------------------------------------------

-- transport:startTLS(tlsOptions, normal): the connection goes on under
-- TLS; what was written before goes out first, in clear. The side that
-- connected is the TLS client (normal = false turns that around, as in
-- Twisted). A client verifies tlsOptions.hostname, else the peer's IP.
local function startTLS(transport, options, normal)
  options = options or {}
  local server = transport.client ~= nil
  if normal == false then
    server = not server
  end
  local ctx = contextFor("startTLS", options, server)
  local name
  if not server then
    name = options.hostname
    if not name then
      local peer = transport:getPeer()
      name = peer and peer.host
    end
  end
  local ok, _, msg = transport:_tlsStart(ctx, name)
  if not ok then
    error(err.TLSError("startTLS: " .. msg), 2)
  end
  local timeout = options.handshakeTimeout or TLSPort.handshakeTimeout
  boundHandshake(transport, timeout, function() -- (either side)
    log.warn("startTLS with %s: no handshake after %gs; closing",
      peerString(transport), timeout)
  end)
  -- What a line protocol holds unread came in clear before the
  -- handshake, after the STARTTLS command: a man in the middle's lines
  -- (CVE-2011-0411's kind) must not be read as if they came over TLS.
  local proto = transport.protocol
  if proto and type(proto.clearLineBuffer) == "function" then
    local rest = proto:clearLineBuffer()
    if type(rest) == "string" and #rest > 0 then
      log.warn("startTLS with %s: dropped %d bytes received in clear after"
        .. " the command", peerString(transport), #rest)
    end
  end
end
core.tlsBind(startTLS)

-- The end of a handshake: the owner's (a TLS port or connector), else a
-- connection that called startTLS.
function hooks.tlsHandshake(transport, owner, code, message)
  handshakeEnded(transport)
  if owner and owner._tlsHandshake then
    return owner:_tlsHandshake(transport, code, message)
  end
  if code then
    return handshakeFailure("TLS handshake with " .. peerString(transport),
      code, message)
  end
  handshakeCompleted(transport)
end

return M
