-- loom.reactor: Twisted's reactor API over the C host (loom.core).
--
-- The C side owns the sockets and calls protocol hooks directly on the hot
-- path (dataReceived); this module makes ports, connectors, delayed calls
-- and system events, and receives the rarer events through core.setHooks.

local core = require "loom.core"
local class = require "loom.class"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"

local Failure = failure.Failure

local reactor = { running = false }

-- Lazily loaded: loom.defer needs the reactor for its default clock.
local function defer()
  return require "loom.defer"
end

-- Calls obj[name](obj, ...) when present; errors are logged, never raised.
local function safeCall(obj, name, ...)
  local f = obj and obj[name]
  if f == nil then
    return true
  end
  local ok, e = xpcall(f, debug.traceback, obj, ...)
  if not ok then
    log.prefixed(log.prefixOf(obj)).error("error in %s: %s", name,
      tostring(e))
  end
  return ok, e
end

function reactor.seconds()
  return core.walltime()
end

-- DelayedCall ----------------------------------------------------------------

local DelayedCall = class.Object:extend({ __name = "DelayedCall" })
reactor.DelayedCall = DelayedCall

local function fireDelayed(dc)
  dc.called = true
  dc.timer:close()
  dc.timer = nil
  dc.func(table.unpack(dc.args, 1, dc.args.n))
end

function DelayedCall:init(secs, func, args)
  self.func = func
  self.args = args
  self.time = reactor.seconds() + secs
  self.called = false
  self.cancelled = false
  self.timer = core.timer(fireDelayed, self)
  self.timer:start(secs)
end

function DelayedCall:getTime()
  return self.time
end

function DelayedCall:active()
  return not (self.called or self.cancelled)
end

local function checkActive(self, what)
  if self.cancelled then
    error(err.AlreadyCancelled(what .. ": the call was cancelled"), 3)
  elseif self.called then
    error(err.AlreadyCalled(what .. ": the call already ran"), 3)
  end
end

function DelayedCall:cancel()
  checkActive(self, "cancel")
  self.cancelled = true
  self.timer:close()
  self.timer = nil
end

function DelayedCall:reset(secs)
  checkActive(self, "reset")
  self.time = reactor.seconds() + secs
  self.timer:start(secs)
end

function DelayedCall:delay(secs)
  checkActive(self, "delay")
  self.time = self.time + secs
  self.timer:start(math.max(0, self.time - reactor.seconds()))
end

function DelayedCall:__tostring()
  return string.format("<DelayedCall %s at %.3f>",
    self.called and "called" or self.cancelled and "cancelled" or "pending",
    self.time)
end

function reactor.callLater(secs, func, ...)
  if type(secs) ~= "number" or secs ~= secs then
    error("callLater: delay must be a number of seconds", 2)
  end
  if type(func) ~= "function" and not (getmetatable(func) or {}).__call then
    error("callLater: second argument must be callable", 2)
  end
  return DelayedCall:new(math.max(secs, 0), func, table.pack(...))
end

-- System events -----------------------------------------------------------

local triggers = { startup = {}, shutdown = {} }
local PHASES = { before = true, during = true, after = true }

local function eventTable(phase, event)
  if not PHASES[phase] then
    error(string.format("addSystemEventTrigger: unknown phase %q "
      .. "(before, during, after)", tostring(phase)), 3)
  end
  local ev = triggers[event]
  if not ev then
    ev = {}
    triggers[event] = ev
  end
  ev[phase] = ev[phase] or {}
  return ev[phase]
end

-- Returns an id for removeSystemEventTrigger.
function reactor.addSystemEventTrigger(phase, event, f, ...)
  local list = eventTable(phase, event)
  local id = { phase = phase, event = event, f = f, args = table.pack(...) }
  list[#list + 1] = id
  return id
end

function reactor.removeSystemEventTrigger(id)
  local list = eventTable(id.phase, id.event)
  for i = #list, 1, -1 do
    if list[i] == id then
      table.remove(list, i)
      return
    end
  end
  error("removeSystemEventTrigger: no such trigger", 2)
end

local function runPhase(event, phase)
  local list = (triggers[event] or {})[phase] or {}
  local results = {}
  for _, t in ipairs({ table.unpack(list) }) do
    local ok, r = xpcall(t.f, debug.traceback, table.unpack(t.args, 1,
      t.args.n))
    if not ok then
      log.error("error in %s %s trigger: %s", phase, event, tostring(r))
    elseif type(r) == "table" and r.addBoth then
      results[#results + 1] = r
    end
  end
  return results
end

-- Fires before, during and after; "before" Deferreds delay the rest.
function reactor.fireSystemEvent(event, done)
  local pending = runPhase(event, "before")
  local function rest()
    runPhase(event, "during")
    runPhase(event, "after")
    if done then
      done()
    end
  end
  if #pending == 0 then
    return rest()
  end
  defer().DeferredList(pending, { consumeErrors = true })
    :addCallback(function() rest() end)
end

function reactor.callWhenRunning(f, ...)
  if reactor.running and reactor._started then
    return f(...)
  end
  return reactor.addSystemEventTrigger("after", "startup", f, ...)
end

-- Run and stop --------------------------------------------------------------

local signals = nil

-- Set once a signal asked for shutdown: the process is on its way out,
-- so the watchers stay (a second SIGTERM, e.g. from timeout(1) to the whole
-- process group, must not kill it between run() returning and exit).
local signalled = false

local function installSignals()
  if signals then
    return
  end
  local function onStop(name)
    if signalled and not reactor.running then
      return
    end
    signalled = true
    log.info("received SIG%s, shutting down", name)
    if reactor.running and not reactor._stopping then
      reactor.stop()
    end
  end
  signals = { core.onSignal("INT", onStop), core.onSignal("TERM", onStop) }
end

local function uninstallSignals()
  if signals and not signalled then
    for _, s in ipairs(signals) do
      s:close()
    end
    signals = nil
  end
end

function reactor.run(opts)
  if reactor.running then
    error("reactor is already running", 2)
  end
  reactor.running = true
  if not (opts and opts.installSignalHandlers == false) then
    installSignals()
  end
  if not reactor._started then
    reactor._started = true
    reactor.callLater(0, reactor.fireSystemEvent, "startup")
  end
  local ok, e = pcall(core.run)
  reactor.running = false
  uninstallSignals()
  if not ok then
    error(e, 0)
  end
end

-- Stops the loop at once: no shutdown triggers (Twisted's crash); used by
-- testing.runUntil so a spec's connections survive between its steps.
function reactor.crash()
  core.stop()
end

-- Waits (bounded) until every connection has delivered connectionLost.
local function drainThenStop(deadline)
  if core.streamCount() == 0 or reactor.seconds() > deadline then
    reactor._stopping = false
    reactor._started = false
    core.stop()
    return
  end
  reactor.callLater(0.01, drainThenStop, deadline)
end

function reactor.stop()
  if not reactor.running then
    error(err.ReactorNotRunning("can't stop a reactor that isn't running"), 2)
  end
  if reactor._stopping then
    return
  end
  reactor._stopping = true
  reactor.fireSystemEvent("shutdown", function()
    core.closeAll()
    drainThenStop(reactor.seconds() + (reactor.shutdownTimeout or 5))
  end)
end

-- Hooks from C ----------------------------------------------------------------

local hooks = {}

-- A Lua error in a hook: log it with its traceback and context, and give
-- C the Failure that connectionLost will receive.
function hooks.error(where, value, tb, transport)
  local f = Failure(value, tb)
  local proto = transport and transport.protocol
  local name = proto and rawget(getmetatable(proto) or {}, "__name")
  local prefix = proto and log.prefixOf(proto) or nil
  local what = name and (name .. "." .. where) or where
  log.prefixed(prefix).err(f, "error in " .. what)
  return f
end

local CONNECTION_DONE = "Connection was closed cleanly."

function hooks.lost(transport, proto, owner, kind, message, reason, connected)
  if not connected then
    if owner and owner._connectFailed then
      owner:_connectFailed(transport, kind, message)
    end
    return
  end
  if reason == nil then
    -- No traceback: nothing raised, and capturing one per close is costly.
    if kind == "done" then
      reason = Failure(err.ConnectionDone(CONNECTION_DONE), "")
    elseif kind == "aborted" then
      reason = Failure(err.ConnectionAborted(
        "Connection was aborted locally."), "")
    else
      reason = Failure(err.ConnectionLost(message or ("Connection lost ("
        .. kind .. ")"), { errno = kind }), "")
    end
  end
  if proto then
    proto.connected = false
    safeCall(proto, "connectionLost", reason)
  end
  if owner and owner._connectionLost then
    owner:_connectionLost(transport, proto, reason)
  end
end

function hooks.accept(port, transport)
  port:_accept(transport)
end

function hooks.connected(transport, connector, errname, message)
  connector:_connected(transport, errname, message)
end

core.setHooks(hooks)

-- TCP ports -------------------------------------------------------------------

local Port = class.Object:extend({ __name = "Port" })
reactor.Port = Port

function Port:init(port, factory, opts)
  self.port = port
  self.factory = factory
  self.interface = opts.interface or "0.0.0.0"
  self.backlog = opts.backlog or 50
  self.connected = false
end

function Port:startListening()
  local listener, msg = core.listenTCP(self.interface, self.port,
    self.backlog, self)
  if not listener then
    error(err.CannotListenError("listenTCP: " .. msg), 3)
  end
  self.listener = listener
  self.connected = true
  self.factory:doStart()
end

function Port:_accept(transport)
  local addr = transport:getPeer()
  local proto = self.factory:buildProtocol(addr)
  if proto == nil then
    transport:loseConnection()
    return
  end
  transport:setProtocol(proto)
  proto:makeConnection(transport)
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
  local d = defer()
  if not self.connected then
    return d.succeed(nil)
  end
  self.connected = false
  self.listener:close()
  self.listener = nil
  -- The close callback runs in this loop iteration; the factory stops now.
  self.factory:doStop()
  return d.succeed(nil)
end
Port.loseConnection = Port.stopListening

function Port:__tostring()
  return string.format("<Port %s:%s>", self.interface, tostring(self.port))
end

local function checkFactory(fn, factory)
  if type(factory) ~= "table" or type(factory.buildProtocol) ~= "function" then
    error(fn .. ": factory must be a Factory (with buildProtocol)", 3)
  end
end

function reactor.listenTCP(port, factory, opts)
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
reactor.Connector = Connector

function Connector:init(host, port, factory, opts)
  self.host = host
  self.port = port
  self.factory = factory
  self.timeout = opts.timeout or 30
  self.bindAddress = opts.bindAddress
  self.state = "disconnected"
  self.factoryStarted = false
end

function Connector:getDestination()
  return { type = "TCP", host = self.host, port = self.port }
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
  safeCall(self.factory, "startedConnecting", self)
  if self.state ~= "connecting" then
    return -- startedConnecting called stopConnecting
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
    self.timeoutCall = reactor.callLater(self.timeout, function()
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
  reactor.resolveAll(self.host):addCallbacks(function(addrs)
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
    local cls = msg:find("not an IP address", 1, true) and err.DNSLookupError
      or err.ConnectError
    reactor.callLater(0, self._failed, self, Failure(cls(msg, { errno =
      errname }), ""))
    return
  end
  self.transport = t
end

function Connector:_connected(transport, errname, message)
  if self.timeoutCall and self.timeoutCall:active() then
    self.timeoutCall:cancel()
  end
  self.timeoutCall = nil
  if errname then
    local cls = errname == "ECONNREFUSED" and err.ConnectionRefusedError
      or err.ConnectError
    self._failReason = Failure(cls(string.format("%s:%s: %s", self.host,
      self.port, message), { errno = errname }))
    return -- C closes the transport; _connectFailed reports it.
  end
  self.state = "connected"
  local proto = self.factory:buildProtocol(transport:getPeer())
  if proto == nil then
    transport:loseConnection()
    return
  end
  transport:setProtocol(proto)
  proto:makeConnection(transport)
end

-- The transport closed before it ever connected.
function Connector:_connectFailed()
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

function Connector:stopConnecting()
  if self.state ~= "connecting" then
    error(err.NotConnectingError("we're not trying to connect"), 2)
  end
  self._addrs = nil
  if self.transport then
    self.transport:abortConnection()
  elseif self._resolving then
    self._resolving = nil
    connectFailed(self, Failure(err.ConnectionLost(
      "connection attempt was stopped"), ""))
  else
    self.state = "disconnected"
  end
end

function Connector:disconnect()
  if self.state == "connecting" then
    self:stopConnecting()
  elseif self.state == "connected" and self.transport then
    self.transport:loseConnection()
  end
end

function reactor.connectTCP(host, port, factory, opts)
  opts = opts or {}
  if type(host) ~= "string" then
    error("connectTCP: host must be a string", 2)
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
function reactor.resolveAll(name)
  if type(name) ~= "string" or name == "" then
    error("resolve: name must be a non-empty string", 2)
  end
  lastLookup = lastLookup + 1
  local d = defer().Deferred()
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
function reactor.resolve(name)
  return reactor.resolveAll(name):addCallback(function(addrs)
    for _, a in ipairs(addrs) do
      if not a:find(":", 1, true) then
        return a
      end
    end
    return addrs[1]
  end)
end

-- Unix sockets ------------------------------------------------------------------

local UNIXPort = Port:extend({ __name = "UNIXPort" })
reactor.UNIXPort = UNIXPort

function UNIXPort:init(path, factory, opts)
  self.path = path
  self.factory = factory
  self.mode = opts.mode
  self.backlog = opts.backlog or 50
  self.wantPID = opts.wantPID and true or false
  self.connected = false
end

function UNIXPort:startListening()
  local listener, msg = core.listenUNIX(self.path, self.backlog, self.mode,
    self.wantPID, self)
  if not listener then
    error(err.CannotListenError("listenUNIX: " .. msg), 3)
  end
  self.listener = listener
  self.connected = true
  self.factory:doStart()
end

function UNIXPort:__tostring()
  return string.format("<UNIXPort %s>", self.path)
end

function reactor.listenUNIX(path, factory, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    error("listenUNIX: path must be a non-empty string", 2)
  end
  if opts.mode ~= nil and math.type(opts.mode) ~= "integer" then
    error("listenUNIX: mode must be an integer (e.g. tonumber('660', 8))", 2)
  end
  checkFactory("listenUNIX", factory)
  local p = UNIXPort:new(path, factory, opts)
  p:startListening()
  return p
end

local UNIXConnector = Connector:extend({ __name = "UNIXConnector" })
reactor.UNIXConnector = UNIXConnector

function UNIXConnector:init(path, factory, opts)
  Connector.init(self, path, nil, factory, opts)
  self.path = path
  self.checkPID = opts.checkPID and true or false
end

function UNIXConnector:getDestination()
  return { type = "UNIX", name = self.path }
end

function UNIXConnector:_attempt()
  if self.checkPID and not core.unixLockHeld(self.path) then
    -- Twisted's checkPID: no live server holds the lock file.
    reactor.callLater(0, self._failed, self, Failure(err.ConnectError(
      self.path .. ": no live server holds " .. self.path .. ".lock",
      { errno = "ENOENT" }), ""))
    return
  end
  local t, errname, msg = core.connectUNIX(self.path, self)
  if not t then
    reactor.callLater(0, self._failed, self, Failure(err.ConnectError(msg,
      { errno = errname }), ""))
    return
  end
  self.transport = t
  if self.timeout and self.timeout > 0 then
    self.timeoutCall = reactor.callLater(self.timeout, function()
      self.timeoutCall = nil
      self._failReason = Failure(err.TimeoutError(string.format(
        "connection to %s timed out after %gs", self.path, self.timeout)))
      t:abortConnection()
    end)
  end
end

function UNIXConnector:_connected(transport, errname, message)
  if errname then
    self.port = nil
    local cls = errname == "ECONNREFUSED" and err.ConnectionRefusedError
      or err.ConnectError
    if self.timeoutCall and self.timeoutCall:active() then
      self.timeoutCall:cancel()
    end
    self.timeoutCall = nil
    self._failReason = Failure(cls(string.format("%s: %s: %s", self.path,
      errname, message), { errno = errname }))
    return
  end
  return Connector._connected(self, transport)
end

function reactor.connectUNIX(path, factory, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    error("connectUNIX: path must be a non-empty string", 2)
  end
  checkFactory("connectUNIX", factory)
  local c = UNIXConnector:new(path, factory, opts)
  c:connect()
  return c
end

-- UDP ---------------------------------------------------------------------------

local MulticastJoinError = err.MulticastJoinError

local UDPPort = class.Object:extend({ __name = "UDPPort" })
reactor.UDPPort = UDPPort

function UDPPort:init(port, proto, opts)
  self.port = port
  self.protocol = proto
  self.interface = opts.interface or "0.0.0.0"
  self.connected = false
  self.ttl = 1
  self.loopback = true
end

function UDPPort:startListening()
  local sock, msg = core.listenUDP(self.interface, self.port, self,
    self.protocol)
  if not sock then
    error(err.CannotListenError("listenUDP: " .. msg), 3)
  end
  self.socket = sock
  self.connected = true
  self.protocol:makeConnection(self)
end

local function checkOpen(self, what)
  if not self.socket then
    error(what .. ": the port is not listening", 3)
  end
  return self.socket
end

function UDPPort:getHost()
  return checkOpen(self, "getHost"):getHost()
end

local function hostPort(addr, what)
  if type(addr) ~= "table" then
    error(what .. ": address must be {host=, port=} or {host, port}", 3)
  end
  return addr.host or addr[1], addr.port or addr[2]
end

-- write(data, addr) sends one datagram; on a connected port write(data).
-- Errors the kernel reports at once are raised, except a refused earlier
-- datagram (connectionRefused) and a full buffer (dropped, as Twisted).
function UDPPort:write(data, addr)
  local sock = checkOpen(self, "write")
  local ok, errname, msg
  if addr == nil then
    if not self._peer then
      error("write: no address given and the port is not connected", 2)
    end
    ok, errname, msg = sock:write(data)
  else
    if self._peer then
      error("write: the port is connected; call write(data) without an "
        .. "address", 2)
    end
    local host, port = hostPort(addr, "write")
    ok, errname, msg = sock:write(data, host, port)
  end
  if ok or errname == "EAGAIN" or errname == "ENOBUFS" then
    return
  end
  if errname == "ECONNREFUSED" and self._peer then
    safeCall(self.protocol, "connectionRefused")
    return
  end
  error(string.format("write: %s: %s", errname, msg), 2)
end

function UDPPort:writeSequence(list, addr)
  self:write(table.concat(list), addr)
end

-- Twisted's connect: IP literals only, once.
function UDPPort:connect(host, port)
  local sock = checkOpen(self, "connect")
  if self._peer then
    error("connect: already connected, reconnecting is not supported", 2)
  end
  if type(host) ~= "string" or not (host:find(":", 1, true)
      or host:match("^%d+%.%d+%.%d+%.%d+$")) then
    error("connect: please pass only IP addresses, not host names ("
      .. tostring(host) .. ")", 2)
  end
  sock:connect(host, port)
  self._peer = { type = "UDP", host = host, port = port }
end

function UDPPort:getPeer()
  return self._peer
end

-- Multicast (IReactorMulticast's port methods); joinGroup and leaveGroup
-- return Deferreds, as in Twisted.
local function membership(self, addr, iface, join)
  local sock = checkOpen(self, join and "joinGroup" or "leaveGroup")
  local ok, msg = sock:membership(addr, iface, join)
  if ok then
    return defer().succeed(true)
  end
  return defer().fail(Failure(MulticastJoinError((join and "joinGroup: "
    or "leaveGroup: ") .. msg), ""))
end

function UDPPort:joinGroup(addr, iface)
  return membership(self, addr, iface, true)
end

function UDPPort:leaveGroup(addr, iface)
  return membership(self, addr, iface, false)
end

function UDPPort:setTTL(ttl)
  checkOpen(self, "setTTL"):setTTL(ttl)
  self.ttl = ttl
end

function UDPPort:getTTL()
  return self.ttl
end

function UDPPort:setLoopbackMode(mode)
  checkOpen(self, "setLoopbackMode"):setLoopbackMode(mode and true or false)
  self.loopback = mode and true or false
end

function UDPPort:getLoopbackMode()
  return self.loopback
end

function UDPPort:setBroadcastAllowed(enabled)
  checkOpen(self, "setBroadcastAllowed"):setBroadcastAllowed(enabled)
  self.broadcast = enabled and true or false
end

function UDPPort:getBroadcastAllowed()
  return self.broadcast or false
end

-- A Deferred firing once the socket closed and stopProtocol ran.
function UDPPort:stopListening()
  local d = defer().Deferred()
  if not self.socket then
    d:callback(nil)
    return d
  end
  self._waiters = self._waiters or {}
  table.insert(self._waiters, d)
  self.socket:close()
  return d
end
UDPPort.loseConnection = UDPPort.stopListening

function UDPPort:_closed()
  self.socket = nil
  self.connected = false
  local ok, e = xpcall(self.protocol.doStop, debug.traceback, self.protocol)
  if not ok then
    log.error("error in stopProtocol: %s", tostring(e))
  end
  local waiters = self._waiters or {}
  self._waiters = nil
  for _, d in ipairs(waiters) do
    d:callback(nil)
  end
end

function UDPPort:logPrefix()
  return log.prefixOf(self.protocol)
end

function UDPPort:__tostring()
  return string.format("<UDPPort %s:%s>", self.interface, tostring(self.port))
end

function hooks.udpClosed(port)
  port:_closed()
end

function reactor.listenUDP(port, proto, opts)
  opts = opts or {}
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error("listenUDP: port must be an integer 0-65535, got "
      .. tostring(port), 2)
  end
  if type(proto) ~= "table" or type(proto.makeConnection) ~= "function" then
    error("listenUDP: protocol must be a DatagramProtocol", 2)
  end
  local p = UDPPort:new(port, proto, opts)
  p:startListening()
  return p
end

-- Processes -----------------------------------------------------------------------

local ProcessExitedAlready = err.ProcessExitedAlready
hooks.ProcessExitedAlready = ProcessExitedAlready

-- Twisted's reasons: ProcessDone for exit code 0, else ProcessTerminated
-- with exitCode (nil when a signal killed it) and signal.
local function processReason(code, signal)
  if signal == 0 and code == 0 then
    return Failure(err.ProcessDone("process finished with exit code 0",
      { exitCode = 0, status = 0 }), "")
  end
  local msg, fields
  if signal ~= 0 then
    msg = "process ended by signal " .. signal .. "."
    fields = { signal = signal, status = 128 + signal }
  else
    msg = "process ended with exit code " .. code .. "."
    fields = { exitCode = code, status = code }
  end
  return Failure(err.ProcessTerminated(
    "A process has ended with a probable error condition: " .. msg, fields),
    "")
end

local FD_HOOKS = { [0] = "inConnectionLost", "outConnectionLost",
  "errConnectionLost" }

function hooks.processEvent(transport, proto, what, a, b)
  if what == "fd" then
    if proto.childConnectionLost then
      safeCall(proto, "childConnectionLost", a)
    elseif FD_HOOKS[a] then
      safeCall(proto, FD_HOOKS[a])
    end
  elseif what == "exited" then
    safeCall(proto, "processExited", processReason(a, b))
  elseif what == "ended" then
    safeCall(proto, "processEnded", processReason(a, b))
  end
  return transport
end

local function checkStrings(what, t)
  if type(t) ~= "table" then
    error("spawnProcess: " .. what .. " must be a table", 3)
  end
end

local function envList(env)
  if env == nil then
    return {} -- Twisted's POSIX default: an empty environment.
  elseif env == true then
    return nil -- Inherit the host's environment (Twisted's env=None).
  end
  checkStrings("env", env)
  local list = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("spawnProcess: env keys and values must be strings", 3)
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

local function fdPlans(childFDs)
  childFDs = childFDs or { [0] = "w", "r", "r" }
  checkStrings("childFDs", childFDs)
  local plans, n = {}, 0
  for fd in pairs(childFDs) do
    if math.type(fd) ~= "integer" or fd < 0 then
      error("spawnProcess: childFDs keys must be fd numbers >= 0", 3)
    end
    n = math.max(n, fd + 1)
  end
  for fd = 0, n - 1 do
    plans[fd + 1] = childFDs[fd] or false
  end
  return plans
end

-- spawnProcess(pp, executable, args, {env=, path=, uid=, gid=, childFDs=})
-- args[1] is argv[0]. A spawn failure (no such executable, EACCES…)
-- raises one line: "spawnProcess: /no/such: ENOENT: no such file or
-- directory" (Twisted reports it later, as exit code 1).
function reactor.spawnProcess(proto, executable, args, opts)
  opts = opts or {}
  if type(proto) ~= "table" then
    error("spawnProcess: processProtocol must be a ProcessProtocol", 2)
  end
  if type(executable) ~= "string" or executable == "" then
    error("spawnProcess: executable must be a non-empty string", 2)
  end
  args = args or { executable }
  checkStrings("args", args)
  if opts.usePTY then
    error("spawnProcess: usePTY is not supported", 2)
  end
  local t, msg = core.spawnProcess(proto, executable, args, envList(opts.env),
    opts.path, opts.uid, opts.gid, fdPlans(opts.childFDs))
  if not t then
    error("spawnProcess: " .. msg, 2)
  end
  if proto.makeConnection then
    safeCall(proto, "makeConnection", t)
  else
    proto.transport = t
    safeCall(proto, "connectionMade")
  end
  return t
end

-- Threads (loom.threads) ------------------------------------------------------------

local function threads()
  return require "loom.threads"
end

function hooks.threadDone(id, ok, values, tb)
  threads()._done(id, ok, values, tb)
end

function hooks.callFromThread()
  threads()._drain()
end

function reactor.callInThread(f, ...)
  return threads().callInThread(f, ...)
end

function reactor.callFromThread(f, ...)
  return threads().callFromThread(f, ...)
end

function reactor.suggestThreadPoolSize(n)
  return threads().setPoolSize(n)
end

return reactor
