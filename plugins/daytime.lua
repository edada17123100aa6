-- loom daytime: the daytime service (RFC 867), the date as one line in
-- asctime form (UTC, as Twisted's Daytime), then close.
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local Daytime = protocol.Protocol:extend({ __name = "Daytime" })

function Daytime:connectionMade()
  self.transport:write(os.date("!%a %b %e %H:%M:%S %Y", os.time()) .. "\r\n")
  self.transport:loseConnection()
end

return {
  name = "daytime",
  description = "daytime server (RFC 867): the date and time, then close",
  options = {
    { "port", "p", "tcp:8013:interface=127.0.0.1", "where to listen" },
  },
  Daytime = Daytime,
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Daytime))
  end,
}
