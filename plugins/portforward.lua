-- loom portforward: a TCP proxy. Each connection to --port is forwarded to
-- --dest. Backpressure both ways: each side's transport is registered as
-- the producer of the other, so a slow receiver pauses reading from the
-- fast sender instead of buffering without bound. Half-closes are passed
-- on: a client that sends, then shuts its write side (`nc -N`,
-- shutdown(SHUT_WR)) still gets the whole reply.
-- It listens on loopback by default; listening anywhere else makes --dest
-- reachable by whoever reaches this host, so loom logs a warning.
local endpoints = require "loom.endpoints"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local strports = require "loom.strports"

-- Both ends: forward what arrives to the peer; close the peer on loss.
local Proxy = protocol.Protocol:extend({ __name = "Proxy" })

function Proxy:dataReceived(data)
  if self.peer then
    self.peer.transport:write(data)
  end
end

-- The sender is done (it half-closed): pass its FIN on once what it sent
-- is written, and keep the other direction open for the reply. When both
-- directions are done, both sides close once flushed.
function Proxy:readConnectionLost()
  if self.readDone then
    return -- A resumed read can report the same EOF again.
  end
  self.readDone = true
  local peer = self.peer
  if peer == nil then
    self.transport:loseConnection()
  elseif peer.readDone then
    self.transport:loseConnection()
    peer.transport:loseConnection()
  else
    peer.transport:loseWriteConnection()
  end
end

function Proxy:connectionLost()
  local peer = self.peer
  self.peer = nil
  if peer then
    peer.peer = nil
    peer.transport:unregisterProducer()
    peer.transport:loseConnection()
  end
end

local ProxyClient = Proxy:extend({ __name = "ProxyClient" })

function ProxyClient:connectionMade()
  local server = self.server
  if not server.connected then
    self.transport:loseConnection()
    return
  end
  self.peer, server.peer = server, self
  self.transport:registerProducer(server.transport, true)
  server.transport:registerProducer(self.transport, true)
  server.transport:resumeProducing()
end

local ProxyServer = Proxy:extend({ __name = "ProxyServer" })

function ProxyServer:connectionMade()
  -- Read nothing until the other side is there.
  self.transport:pauseProducing()
  local client = ProxyClient:new()
  client.server = self
  local ep = self.factory.dest
  endpoints.connectProtocol(ep, client):addErrback(function(f)
    log.warn("portforward: cannot reach %s: %s", tostring(ep),
      f:getErrorMessage())
    self.transport:loseConnection()
  end)
end

local ProxyFactory = protocol.ServerFactory:extend({ __name = "ProxyFactory",
  protocol = ProxyServer })

function ProxyFactory:init(dest)
  self.dest = dest
end

local function isLoopback(host)
  return host == "::1" or host:match("^127%.") ~= nil
    or host:match("^::ffff:127%.") ~= nil
end

-- Only TCP endpoints have an interface; a Unix socket stays on this host.
local function warnIfExposed(description)
  local ep = endpoints.serverFromString(reactor, description)
  if ep.interface and not isLoopback(ep.interface) then
    log.warn("portforward: listening on %s, not loopback only: whoever can"
      .. " reach this host can reach --dest through it", ep.interface)
  end
end

return {
  name = "portforward",
  description = "TCP port forwarder: relays each connection to --dest",
  options = {
    { "port", "p", "tcp:8080:interface=127.0.0.1", "where to listen" },
    { "dest", "d", nil, "where to connect, e.g. tcp:host=10.0.0.1:port=80" },
  },
  -- Every class under a key of its own: a hot reload matches each with
  -- its new version by key (docs/reload.md).
  Proxy = Proxy,
  ProxyServer = ProxyServer,
  ProxyClient = ProxyClient,
  ProxyFactory = ProxyFactory,
  makeService = function(opts)
    if opts.dest == nil then
      error("--dest is required (e.g. --dest tcp:host=127.0.0.1:port=80)", 0)
    end
    local dest = endpoints.clientFromString(reactor, opts.dest)
    local svc = strports.service(opts.port, ProxyFactory:new(dest))
    warnIfExposed(opts.port)
    return svc
  end,
}
