-- loom.reactor.udp: UDP ports and multicast (reactor.listenUDP). Part of
-- loom.reactor, which re-exports what this module returns.

local core = require "loom.core"
local address = require "loom.address"
local class = require "loom.class"
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local base = require "loom.reactor.base"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure
local safeCall = base.safeCall

local M = {}

-- UDP ---------------------------------------------------------------------------

local MulticastJoinError = err.MulticastJoinError

local UDPPort = class.Object:extend({ __name = "UDPPort" })
M.UDPPort = UDPPort

function UDPPort:init(port, proto, opts)
  self.port = port
  self.protocol = proto
  self.interface = opts.interface or "0.0.0.0"
  self.connected = false
  self.ttl = 1
  self.loopback = true
end

function UDPPort:startListening()
  local sock, errname, msg = core.listenUDP(self.interface, self.port, self,
    self.protocol)
  if not sock then
    error(err.CannotListenError("listenUDP: " .. msg, { errno = errname }), 3)
  end
  self.socket = sock
  self.connected = true
  local proto = self.protocol
  if proto.makeConnection ~= nil then
    proto:makeConnection(self)
  else -- A plain table of hooks: DatagramProtocol's makeConnection for it.
    proto.transport = self
    safeCall(proto, "startProtocol")
  end
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

-- write(data, addr) sends one datagram; on a connected port write(data)
-- (or write(data, addr) with addr the connected address, as Twisted).
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
    local host, port = hostPort(addr, "write")
    local peer = self._peer
    if peer and (host ~= peer.host or port ~= peer.port) then
      error(string.format("write: the port is connected to %s:%s, not "
        .. "%s:%s", peer.host, peer.port, tostring(host), tostring(port)), 2)
    elseif peer then
      -- Twisted accepts the connected address itself.
      ok, errname, msg = sock:write(data)
    else
      ok, errname, msg = sock:write(data, host, port)
    end
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
  self._peer = address.UDP(host, port)
end

function UDPPort:getPeer()
  return self._peer
end

-- Multicast (IReactorMulticast's port methods); joinGroup and leaveGroup
-- return Deferreds, as in Twisted.
local function membership(self, addr, iface, join)
  local sock = checkOpen(self, join and "joinGroup" or "leaveGroup")
  local ok, errname, msg = sock:membership(addr, iface, join)
  if ok then
    return defer.succeed(true)
  end
  return defer.fail(Failure(MulticastJoinError((join and "joinGroup: "
    or "leaveGroup: ") .. msg, { errno = errname }), ""))
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
  if not self.socket then
    return defer.succeed(nil)
  end
  local d = base.closeWaiter(self)
  self.socket:close()
  return d
end
UDPPort.loseConnection = UDPPort.stopListening

function UDPPort:_closed()
  self.socket = nil
  self.connected = false
  local proto = self.protocol
  if proto.doStop ~= nil then
    safeCall(proto, "doStop")
  else -- A plain table of hooks, as DatagramProtocol's doStop.
    proto.transport = nil
    safeCall(proto, "stopProtocol")
  end
  base.fireCloseWaiters(self)
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

function M.listenUDP(port, proto, opts)
  opts = opts or {}
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error("listenUDP: port must be an integer 0-65535, got "
      .. tostring(port), 2)
  end
  if type(proto) ~= "table" then
    error("listenUDP: protocol must be a DatagramProtocol or a table of "
      .. "hooks, got " .. type(proto), 2)
  end
  local p = UDPPort:new(port, proto, opts)
  p:startListening()
  return p
end

return M
