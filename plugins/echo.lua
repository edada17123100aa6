-- loom echo: the echo service (RFC 862), every byte sent back. A client
-- that sends and does not read is not read from either while the echoes
-- queued for it pass the high-water mark (policies.applyBackpressure).
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local Echo = protocol.Protocol:extend({ __name = "Echo" })

function Echo:connectionMade()
  policies.applyBackpressure(self)
end

function Echo:dataReceived(data)
  self.transport:write(data)
end

return {
  name = "echo",
  description = "echo server (RFC 862): sends back every byte it receives",
  options = {
    { "port", "p", "tcp:8000:interface=127.0.0.1", "where to listen" },
  },
  Echo = Echo,
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Echo))
  end,
}
