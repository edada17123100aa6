-- loom portforward: a TCP proxy. Each connection to --port is forwarded to
-- --dest. Backpressure both ways: each side's transport is registered as
-- the producer of the other, so a slow receiver pauses reading from the
-- fast sender instead of buffering without bound.
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

return {
  name = "portforward",
  description = "TCP port forwarder: relays each connection to --dest",
  options = {
    { "port", "p", "tcp:8080", "where to listen (an endpoint description)" },
    { "dest", "d", nil, "where to connect, e.g. tcp:host=10.0.0.1:port=80" },
  },
  ProxyFactory = ProxyFactory,
  makeService = function(opts)
    if opts.dest == nil then
      error("--dest is required (e.g. --dest tcp:host=127.0.0.1:port=80)", 0)
    end
    local dest = endpoints.clientFromString(reactor, opts.dest)
    return strports.service(opts.port, ProxyFactory:new(dest))
  end,
}
