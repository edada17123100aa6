-- UDP echo server: sends every datagram back to its sender (Twisted's
-- udpecho example).
--   loom run examples/udp_echo_server.lua [PORT]   (default 8000; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local Echo = protocol.DatagramProtocol:extend({ __name = "UDPEcho" })

function Echo:datagramReceived(data, addr)
  self.transport:write(data, addr)
end

local port = reactor.listenUDP(tonumber(arg[1]) or 8000, Echo:new(),
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
