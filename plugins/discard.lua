-- loom discard: the discard service (RFC 863), everything read and dropped.
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local Discard = protocol.Protocol:extend({ __name = "Discard" })

function Discard:dataReceived(data) end -- luacheck: ignore

return {
  name = "discard",
  description = "discard server (RFC 863): reads and drops everything",
  options = {
    { "port", "p", "tcp:8009:interface=127.0.0.1", "where to listen" },
  },
  Discard = Discard,
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Discard))
  end,
}
