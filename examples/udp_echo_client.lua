-- UDP echo client: sends each argument as a datagram over a connected UDP
-- port, prints each reply, and stops when all came back (or after 5 s).
--   loom run examples/udp_echo_client.lua PORT [HOST] MESSAGE...
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local port = tonumber(arg[1])
local host = arg[2] or "127.0.0.1"
local messages = { table.unpack(arg, 3) }
if not port or #messages == 0 then
  io.stderr:write("usage: udp_echo_client.lua PORT HOST MESSAGE...\n")
  os.exit(1)
end

local Client = protocol.DatagramProtocol:extend({ __name = "UDPEchoClient" })

function Client:startProtocol()
  self.waiting = #messages
  self.transport:connect(host, port)
  for _, m in ipairs(messages) do
    self.transport:write(m)
  end
end

function Client:datagramReceived(data)
  print(data)
  self.waiting = self.waiting - 1
  if self.waiting == 0 then
    reactor.stop()
  end
end

function Client:connectionRefused()
  io.stderr:write("no server at " .. host .. ":" .. port .. "\n")
  reactor.stop()
end

reactor.listenUDP(0, Client:new(), { interface = host:find(":") and "::1"
  or "127.0.0.1" })
reactor.callLater(5, function()
  io.stderr:write("timed out\n")
  reactor.stop()
end)
reactor.run()
