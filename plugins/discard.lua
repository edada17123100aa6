-- loom discard: the discard service (RFC 863), everything read and dropped.
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local Discard = protocol.Protocol:extend({ __name = "Discard" })

function Discard:dataReceived(data) end -- luacheck: ignore

return {
  name = "discard",
  description = "discard server (RFC 863): reads and drops everything",
  options = {
    { "port", "p", "tcp:8009", "where to listen (an endpoint description)" },
  },
  Discard = Discard,
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Discard))
  end,
}
