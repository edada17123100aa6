-- loom.protocol: Protocol and Factory classes, as in twisted.internet.protocol.
--
-- Transports (C) call the hooks of whatever table they were given, so a
-- protocol may be an instance of these classes or a plain table of hooks;
-- a hook that is missing is simply not called.

local class = require "loom.class"
local log = require "loom.log"

local M = {}

local Protocol = class.Object:extend({ __name = "Protocol" })
M.Protocol = Protocol
Protocol.connected = false

function Protocol:makeConnection(transport)
  self.connected = true
  self.transport = transport
  self:connectionMade()
end

function Protocol:connectionMade() end

function Protocol:dataReceived(data) end -- luacheck: ignore

function Protocol:connectionLost(reason) end -- luacheck: ignore

function Protocol:logPrefix()
  local name = rawget(getmetatable(self) or {}, "__name") or "Protocol"
  local t = self.transport
  if t and t.getPeer then
    local ok, peer = pcall(t.getPeer, t)
    if ok and type(peer) == "table" and peer.host then
      return string.format("%s,%s:%s", name, peer.host, tostring(peer.port))
    end
  end
  return name
end

-- Factory -----------------------------------------------------------------

local Factory = class.Object:extend({ __name = "Factory" })
M.Factory = Factory
Factory.numPorts = 0
-- Bytes a connection may queue for a peer that does not read before it is
-- aborted with error.WriteBufferFull (0: no limit). A listenTCP/connectTCP
-- option or an endpoint's maxWriteBuffer= overrides it.
Factory.maxWriteBuffer = 16 * 1024 * 1024

-- Factory.forProtocol(P, ...) / MyFactory:forProtocol(P, ...): an instance of
-- the receiving factory class whose protocol is P. Twisted users write the
-- dot form for every class (ClientFactory.forProtocol(P)), so each factory
-- class gets its own forProtocol that knows the class it belongs to; with
-- a colon the receiving class (or an instance's class) wins.
local function isFactoryClass(c)
  if type(c) ~= "table" or rawget(c, "__index") ~= c then
    return false -- an instance, a protocol or a plain table of hooks
  end
  while type(c) == "table" do
    if c == Factory then
      return true
    end
    c = rawget(c, "super")
  end
  return false
end

local function build(cls, protocol, ...)
  local f = cls:new(...)
  f.protocol = protocol
  return f
end

local function forProtocolOf(owner)
  return function(first, ...)
    if isFactoryClass(first) then
      return build(first, ...) -- MyFactory:forProtocol(P, ...)
    elseif isFactoryClass(getmetatable(first)) then
      return build(getmetatable(first), ...) -- aFactory:forProtocol(P, ...)
    elseif first == nil then
      error("forProtocol: a protocol class is required", 2)
    end
    return build(owner, first, ...) -- Owner.forProtocol(P, ...)
  end
end

Factory.forProtocol = forProtocolOf(Factory)

-- Subclasses made with :extend get their own forProtocol (see above).
function Factory.extend(base, fields)
  local cls = class.Object.extend(base, fields)
  if rawget(cls, "forProtocol") == nil then
    cls.forProtocol = forProtocolOf(cls)
  end
  return cls
end

function Factory:buildProtocol(addr) -- luacheck: ignore addr
  local P = self.protocol
  if P == nil then
    error("factory has no protocol to build", 2)
  end
  local p
  if type(P) == "table" and P.new then
    p = P:new()
  elseif type(P) == "function" then
    p = P()
  else
    -- A plain table of hooks: a fresh table sharing them.
    p = setmetatable({}, { __index = P })
  end
  p.factory = self
  return p
end

-- doStart/doStop count the ports using this factory (Twisted's numPorts), so
-- startFactory runs once for the first and stopFactory once for the last.
function Factory:doStart()
  self.numPorts = self.numPorts + 1
  if self.numPorts == 1 then
    self:startFactory()
  end
end

function Factory:doStop()
  if self.numPorts == 0 then
    return
  end
  self.numPorts = self.numPorts - 1
  if self.numPorts == 0 then
    self:stopFactory()
  end
end

function Factory:startFactory() end

function Factory:stopFactory() end

M.ServerFactory = Factory:extend({ __name = "ServerFactory" })

local ClientFactory = Factory:extend({ __name = "ClientFactory" })
M.ClientFactory = ClientFactory

function ClientFactory:startedConnecting(connector) end -- luacheck: ignore

function ClientFactory:clientConnectionFailed(connector, reason) end -- luacheck: ignore

function ClientFactory:clientConnectionLost(connector, reason) end -- luacheck: ignore

-- ReconnectingClientFactory ---------------------------------------------------
--
-- A ClientFactory that reconnects with exponential backoff after a failed
-- or lost connection (Twisted's). Call resetDelay() once connected (e.g. in
-- buildProtocol or connectionMade); stopTrying() ends it. `clock` (default:
-- the reactor) may be set to a task.Clock in specs.

local RCF = ClientFactory:extend({ __name = "ReconnectingClientFactory" })
M.ReconnectingClientFactory = RCF
RCF.maxDelay = 3600
RCF.initialDelay = 1.0
RCF.factor = 2.7182818284590451 -- e
RCF.jitter = 0.11962656472
RCF.delay = RCF.initialDelay
RCF.retries = 0
RCF.maxRetries = nil
RCF.continueTrying = true
RCF.noisy = false

-- A normally distributed number (Box-Muller), as random.normalvariate.
local function normal(mu, sigma)
  local u1 = 1 - math.random()
  local u2 = math.random()
  return mu + sigma * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
end

function RCF:clientConnectionFailed(connector, reason) -- luacheck: ignore
  if self.continueTrying then
    self.connector = connector
    self:retry()
  end
end

function RCF:clientConnectionLost(connector, reason) -- luacheck: ignore
  if self.continueTrying then
    self.connector = connector
    self:retry()
  end
end

-- Has the connector connect again after the next delay.
function RCF:retry(connector)
  if not self.continueTrying then
    return
  end
  connector = connector or self.connector
  if connector == nil then
    error("retry: no connector to retry", 2)
  end
  self.retries = self.retries + 1
  if self.maxRetries ~= nil and self.retries > self.maxRetries then
    if self.noisy then
      log.info("abandoning %s after %d retries",
        tostring(connector), self.retries)
    end
    return
  end
  self.delay = math.min(self.delay * self.factor, self.maxDelay)
  if self.jitter and self.jitter ~= 0 then
    self.delay = normal(self.delay, self.delay * self.jitter)
  end
  -- The reactor is required when first needed, as Twisted imports it: it
  -- is built on this module (its Ports default to Factory's write limit).
  local clock = self.clock or require("loom.reactor")
  self.clock = clock
  self._callID = clock.callLater(math.max(self.delay, 0), function()
    self._callID = nil
    connector:connect()
  end)
end

function RCF:stopTrying()
  if self._callID then
    self._callID:cancel()
    self._callID = nil
  end
  self.continueTrying = false
  local c = self.connector
  if c and c.stopConnecting then
    pcall(c.stopConnecting, c) -- not connecting: nothing to stop
  end
end

function RCF:resetDelay()
  self.delay = self.initialDelay
  self.retries = 0
  self._callID = nil
  self.continueTrying = true
end

-- DatagramProtocol (twisted.internet.protocol.DatagramProtocol): the
-- transport is the UDP port itself, so self.transport:write(data, addr).
local DatagramProtocol = class.Object:extend({ __name = "DatagramProtocol" })
M.DatagramProtocol = DatagramProtocol
DatagramProtocol.numPorts = 0

function DatagramProtocol:makeConnection(transport)
  self.transport = transport
  self:doStart()
end

function DatagramProtocol:doStart()
  if self.numPorts == 0 then
    self:startProtocol()
  end
  self.numPorts = self.numPorts + 1
end

function DatagramProtocol:doStop()
  if self.numPorts == 0 then
    return
  end
  self.numPorts = self.numPorts - 1
  self.transport = nil
  if self.numPorts == 0 then
    self:stopProtocol()
  end
end

function DatagramProtocol:startProtocol() end

function DatagramProtocol:stopProtocol() end

function DatagramProtocol:datagramReceived(data, addr) end -- luacheck: ignore

-- On a connected port: the peer's host answered with ICMP unreachable.
function DatagramProtocol:connectionRefused() end

function DatagramProtocol:logPrefix()
  return rawget(getmetatable(self) or {}, "__name") or "DatagramProtocol"
end

-- ProcessProtocol (twisted.internet.protocol.ProcessProtocol). Output on
-- any child fd arrives at childDataReceived(fd, data), which hands fd 1 to
-- outReceived and fd 2 to errReceived; likewise childConnectionLost(fd).
local ProcessProtocol = class.Object:extend({ __name = "ProcessProtocol" })
M.ProcessProtocol = ProcessProtocol

function ProcessProtocol:makeConnection(transport)
  self.transport = transport
  self:connectionMade()
end

function ProcessProtocol:connectionMade() end

function ProcessProtocol:childDataReceived(fd, data)
  if fd == 1 then
    self:outReceived(data)
  elseif fd == 2 then
    self:errReceived(data)
  end
end

function ProcessProtocol:outReceived(data) end -- luacheck: ignore

function ProcessProtocol:errReceived(data) end -- luacheck: ignore

function ProcessProtocol:childConnectionLost(fd)
  if fd == 0 then
    self:inConnectionLost()
  elseif fd == 1 then
    self:outConnectionLost()
  elseif fd == 2 then
    self:errConnectionLost()
  end
end

function ProcessProtocol:inConnectionLost() end

function ProcessProtocol:outConnectionLost() end

function ProcessProtocol:errConnectionLost() end

function ProcessProtocol:processExited(reason) end -- luacheck: ignore

function ProcessProtocol:processEnded(reason) end -- luacheck: ignore

function ProcessProtocol:logPrefix()
  return rawget(getmetatable(self) or {}, "__name") or "ProcessProtocol"
end

return M
