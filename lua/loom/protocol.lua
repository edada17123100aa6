-- loom.protocol: Protocol and Factory classes, as in twisted.internet.protocol.
--
-- Transports (C) call the hooks of whatever table they were given, so a
-- protocol may be an instance of these classes or a plain table of hooks;
-- a hook that is missing is simply not called.

local class = require "loom.class"

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

-- Factory.forProtocol(P, ...) / MyFactory:forProtocol(P, ...): an instance of
-- the receiving factory class whose protocol is P.
local function isFactoryClass(c)
  while type(c) == "table" do
    if c == Factory then
      return true
    end
    c = rawget(c, "super")
  end
  return false
end

function Factory.forProtocol(cls, protocol, ...)
  if not isFactoryClass(cls) then
    -- Called with a dot: Factory.forProtocol(P, ...).
    return Factory.forProtocol(Factory, cls, protocol, ...)
  end
  local f = cls:new(...)
  f.protocol = protocol
  return f
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

return M
