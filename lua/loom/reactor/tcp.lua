-- loom.reactor.tcp: TCP ports and connectors, and name resolution
-- (reactor.listenTCP, connectTCP, resolve). Part of loom.reactor, which
-- re-exports what this module returns.

local core = require "loom.core"
local address = require "loom.address"
local class = require "loom.class"
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local protocol = require "loom.protocol"
local base = require "loom.reactor.base"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure
local safeCall = base.safeCall
local checkFactory = base.checkFactory
local callLater = base.callLater

local M = {}

-- The write-buffer limit of a new connection: the port's or connector's
-- (an endpoint's maxWriteBuffer=), else the factory's, else the default.
local function limitWrites(owner, transport)
  local limit = owner.maxWriteBuffer or owner.factory.maxWriteBuffer
    or protocol.Factory.maxWriteBuffer
  transport:setMaxWriteBuffer(limit)
end

-- Protocols ---------------------------------------------------------------------

-- What buildProtocol returned, for the error that rejects it.
local function describe(v)
  if type(v) == "string" then
    return string.format("%q (a string)", v)
  end
  return failure.safeString(v) .. " (a " .. type(v) .. ")"
end

-- Gives transport the protocol factory:buildProtocol(addr) made: an
-- instance of protocol.Protocol or a plain table of hooks, on which the
-- missing ones are no-ops (Twisted's makeConnection is done here for it).
-- Returns false when buildProtocol returned nil (refused: the caller closes).
local function attachProtocol(factory, transport, addr)
  local proto = factory:buildProtocol(addr)
  if proto == nil then
    return false
  end
  if type(proto) ~= "table" then
    error(string.format("%s.buildProtocol returned %s, not a protocol",
      log.prefixOf(factory) or "factory", describe(proto)), 0)
  end
  transport:setProtocol(proto)
  local make = proto.makeConnection
  if make ~= nil then
    make(proto, transport)
    return true
  end
  proto.transport = transport
  proto.connected = true
  local made = proto.connectionMade
  if made ~= nil then
    made(proto)
  end
  return true
end

-- TCP ports -------------------------------------------------------------------

local Port = class.Object:extend({ __name = "Port" })
M.Port = Port

function Port:init(port, factory, opts)
  self.port = port
  self.factory = factory
  self.interface = opts.interface or "0.0.0.0"
  self.backlog = opts.backlog or 50
  self.maxWriteBuffer = opts.maxWriteBuffer
  self.connected = false
end

function Port:startListening()
  local listener, errname, msg = core.listenTCP(self.interface, self.port,
    self.backlog, self)
  if not listener then
    error(err.CannotListenError("listenTCP: " .. msg, { errno = errname }), 3)
  end
  self.listener = listener
  self.connected = true
  self.factory:doStart()
end

function Port:_accept(transport)
  limitWrites(self, transport)
  if not attachProtocol(self.factory, transport, transport:getPeer()) then
    transport:loseConnection()
  end
end

-- accept(2) failing is logged at most once per ACCEPT_LOG_INTERVAL seconds
-- per port: the first failure of a burst at once, the rest of the burst in
-- one summary line when the interval ends.
local ACCEPT_LOG_INTERVAL = 1

local function acceptSummary(self)
  self._acceptLogCall = nil
  local n, dropped = self._acceptFailures, self._acceptDropped
  self._acceptFailures, self._acceptDropped = 0, 0
  if n > 0 then
    log.prefixed(tostring(self)).error("%s: %d more time(s) in the last "
      .. "%gs, closing %d waiting connection(s); still accepting",
      self._acceptError, n, ACCEPT_LOG_INTERVAL, dropped)
  end
end

-- Out of file descriptors (EMFILE/ENFILE) or another accept error: the
-- waiting connections were closed (dropped of them); the port keeps
-- listening and serves again once descriptors are free.
function Port:_acceptFailed(errname, message, dropped)
  self._acceptError = errname .. ": " .. message
  if self._acceptLogCall then
    self._acceptFailures = self._acceptFailures + 1
    self._acceptDropped = self._acceptDropped + dropped
    return
  end
  local hint = (errname == "EMFILE" or errname == "ENFILE")
    and " (out of file descriptors: raise `ulimit -n` or serve fewer "
      .. "connections)" or ""
  log.prefixed(tostring(self)).error("accept: %s: %s%s; closed %d waiting "
    .. "connection(s); still accepting", errname, message, hint, dropped)
  self._acceptFailures, self._acceptDropped = 0, 0
  self._acceptLogCall = callLater(ACCEPT_LOG_INTERVAL, acceptSummary,
    self)
end

function hooks.acceptFailed(port, errname, message, dropped)
  port:_acceptFailed(errname, message, dropped)
end

-- Stop and restart accepting (load shedding): while paused, new
-- connections wait in the kernel's backlog; past it, their connects stall.
function Port:pauseProducing()
  if self.listener then
    self.listener:pauseAccepting()
  end
end

function Port:resumeProducing()
  if self.listener then
    self.listener:resumeAccepting()
  end
end

function Port:getHost()
  if not self.listener then
    error("getHost: port is not listening", 2)
  end
  return self.listener:getHost()
end

-- Returns a Deferred that fires once the socket is closed.
function Port:stopListening()
  if not self.connected then
    return defer.succeed(nil)
  end
  self.connected = false
  self.listener:close()
  self.listener = nil
  -- The close callback runs in this loop iteration; the factory stops now.
  self.factory:doStop()
  return defer.succeed(nil)
end
Port.loseConnection = Port.stopListening

function Port:__tostring()
  local port = self.port
  if port == 0 and self.listener then -- the port the system picked
    local ok, addr = pcall(self.listener.getHost, self.listener)
    port = ok and addr.port or port
  end
  return string.format("<Port %s:%s>", self.interface, tostring(port))
end

function M.listenTCP(port, factory, opts)
  opts = opts or {}
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error("listenTCP: port must be an integer 0-65535, got "
      .. tostring(port), 2)
  end
  checkFactory("listenTCP", factory)
  local p = Port:new(port, factory, opts)
  p:startListening()
  return p
end

-- TCP connectors ----------------------------------------------------------------

local Connector = class.Object:extend({ __name = "Connector" })
M.Connector = Connector

function Connector:init(host, port, factory, opts)
  self.host = host
  self.port = port
  self.factory = factory
  self.timeout = opts.timeout or 30
  self.bindAddress = opts.bindAddress
  self.maxWriteBuffer = opts.maxWriteBuffer
  self.state = "disconnected"
  self.factoryStarted = false
end

function Connector:getDestination()
  return address.TCP(self.host, self.port)
end

local function connectFailed(self, reason)
  self.state = "disconnected"
  self.transport = nil
  if self.timeoutCall and self.timeoutCall:active() then
    self.timeoutCall:cancel()
  end
  self.timeoutCall = nil
  safeCall(self.factory, "clientConnectionFailed", self, reason)
  if self.state == "disconnected" then
    self:_stopFactory()
  end
end

function Connector:_stopFactory()
  if self.factoryStarted then
    self.factoryStarted = false
    self.factory:doStop()
  end
end

function Connector:connect()
  if self.state ~= "disconnected" then
    error("connect: can't connect in state " .. self.state, 2)
  end
  self.state = "connecting"
  if not self.factoryStarted then
    self.factoryStarted = true
    self.factory:doStart()
  end
  local attempt = (self._attemptNo or 0) + 1
  self._attemptNo = attempt
  safeCall(self.factory, "startedConnecting", self)
  if self.state ~= "connecting" or self._attemptNo ~= attempt then
    return -- startedConnecting stopped this attempt (and maybe began anew)
  end
  self:_attempt()
end

local function isIPLiteral(host)
  return host:find(":", 1, true) ~= nil
    or host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

-- Arms the timeout (it covers resolving and every address), then connects
-- to an IP literal at once, or resolves a host name and tries each of its
-- addresses in turn until one connects.
function Connector:_attempt()
  if self.timeout and self.timeout > 0 then
    self.timeoutCall = callLater(self.timeout, function()
      self.timeoutCall = nil
      local reason = Failure(err.TimeoutError(string.format(
        "connection to %s:%s timed out after %gs", self.host, self.port,
        self.timeout)))
      self._addrs = nil
      if self.transport then
        self._failReason = reason
        self.transport:abortConnection()
      else
        self._resolving = nil
        connectFailed(self, reason)
      end
    end)
  end
  if isIPLiteral(self.host) then
    self._addrs = nil
    return self:_connectTo(self.host)
  end
  local token = {}
  self._resolving = token
  M.resolveAll(self.host):addCallbacks(function(addrs)
    if self._resolving == token and self.state == "connecting" then
      self._resolving = nil
      self._addrs, self._addrIndex = addrs, 1
      self:_connectTo(addrs[1])
    end
  end, function(f)
    if self._resolving == token and self.state == "connecting" then
      self._resolving = nil
      connectFailed(self, f)
    end
  end)
end

-- An attempt failed: the next resolved address, or report the failure.
function Connector:_failed(reason)
  local addrs = self._addrs
  if addrs and self._addrIndex < #addrs and self.state == "connecting"
      and reason.value.isa and reason.value:isa(err.ConnectError) then
    self._addrIndex = self._addrIndex + 1
    return self:_connectTo(addrs[self._addrIndex])
  end
  self._addrs = nil
  connectFailed(self, reason)
end

function Connector:_connectTo(addr)
  local bind = self.bindAddress
  local t, errname, msg = core.connectTCP(addr, self.port,
    bind and bind[1] or bind and bind.host, bind and (bind[2] or bind.port),
    self)
  if not t then
    -- Known at once (no socket left, an address family the host lacks…);
    -- reported like any failed attempt, on the next loop turn.
    self:_failSoon(Failure(err.fromErrno(errname, msg, err.ConnectError), ""))
    return
  end
  self.transport = t
end

-- An attempt that failed before it began is reported on the next loop
-- turn, unless stopConnecting reports it first.
function Connector:_failSoon(reason)
  self._pendingFail = callLater(0, function()
    self._pendingFail = nil
    self:_failed(reason)
  end)
end

function Connector:_connected(transport, errname, message)
  if self.timeoutCall and self.timeoutCall:active() then
    self.timeoutCall:cancel()
  end
  self.timeoutCall = nil
  if errname then
    self._failReason = Failure(err.fromErrno(errname, string.format(
      "%s:%s: %s", self.host, self.port, message), err.ConnectError))
    return -- C closes the transport; _connectFailed reports it.
  end
  self.state = "connected"
  limitWrites(self, transport)
  if not attachProtocol(self.factory, transport, transport:getPeer()) then
    transport:loseConnection()
  end
end

-- The transport closed before it ever connected (one stopConnecting
-- abandoned was reported already).
function Connector:_connectFailed(transport)
  if transport ~= self.transport then
    return
  end
  local reason = self._failReason or Failure(
    err.UserError("connection attempt was stopped"), "")
  self._failReason = nil
  self.transport = nil
  self:_failed(reason)
end

function Connector:_connectionLost(transport, proto, reason) -- luacheck: ignore
  self.state = "disconnected"
  self.transport = nil
  safeCall(self.factory, "clientConnectionLost", self, reason)
  if self.state == "disconnected" then
    self:_stopFactory()
  end
end

-- Twisted's: the attempt fails now with UserError through
-- clientConnectionFailed, and the factory stops unless that reconnected
-- (so connect() may follow at once); also inside startedConnecting.
function Connector:stopConnecting()
  if self.state ~= "connecting" then
    error(err.NotConnectingError("we're not trying to connect"), 2)
  end
  self._addrs = nil
  local t = self.transport
  if t then
    self.transport = nil -- abandoned: its close reports nothing more
    self._failReason = nil
    t:abortConnection()
  end
  self._resolving = nil
  if self._pendingFail then
    self._pendingFail:cancel()
    self._pendingFail = nil
  end
  self._attemptNo = (self._attemptNo or 0) + 1
  connectFailed(self, Failure(err.UserError("connection attempt was stopped"),
    ""))
end

function Connector:disconnect()
  if self.state == "connecting" then
    self:stopConnecting()
  elseif self.state == "connected" and self.transport then
    self.transport:loseConnection()
  end
end

function M.connectTCP(host, port, factory, opts)
  opts = opts or {}
  if type(host) ~= "string" then
    error("connectTCP: host must be a string", 2)
  elseif host:find("%z") then -- ("localhost\0.bank.example": C reads localhost)
    error("connectTCP: host holds a NUL byte", 2)
  end
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    error("connectTCP: port must be an integer 1-65535, got "
      .. tostring(port), 2)
  end
  checkFactory("connectTCP", factory)
  local c = Connector:new(host, port, factory, opts)
  c:connect()
  return c
end

-- Names -------------------------------------------------------------------------

local lookups, lastLookup = {}, 0

function hooks.resolved(id, addrs, errname, message)
  local l = lookups[id]
  lookups[id] = nil
  if not l then
    return
  end
  if addrs and #addrs > 0 then
    l.d:callback(addrs)
  else
    l.d:errback(Failure(err.DNSLookupError(string.format(
      "address %q not found: %s: %s", l.name, errname or "EAI_NONAME",
      message or "no address"), { errno = errname }), ""))
  end
end

-- Every address of name (IPv6 and IPv4, in getaddrinfo's order), looked
-- up off the loop: a Deferred of a list of strings.
function M.resolveAll(name)
  if type(name) ~= "string" or name == "" then
    error("resolve: name must be a non-empty string", 2)
  elseif name:find("%z") then
    error("resolve: name holds a NUL byte", 2)
  end
  lastLookup = lastLookup + 1
  local d = defer.Deferred()
  local ok, errname, message = core.resolve(name, lastLookup)
  if not ok then
    d:errback(Failure(err.DNSLookupError(string.format("%s: %s: %s", name,
      errname, message), { errno = errname }), ""))
  else
    lookups[lastLookup] = { d = d, name = name }
  end
  return d
end

-- Twisted's reactor.resolve: a Deferred of one address string (IPv4 when
-- there is one, as gethostbyname), or a DNSLookupError Failure.
function M.resolve(name)
  return M.resolveAll(name):addCallback(function(addrs)
    for _, a in ipairs(addrs) do
      if not a:find(":", 1, true) then
        return a
      end
    end
    return addrs[1]
  end)
end

return M
