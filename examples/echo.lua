-- Echo server: sends back every byte it receives (Twisted's echoserv.py).
--   loom run examples/echo.lua [PORT]      (default port 8000; 0 picks one)
local policies = require "loom.policies"
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local Echo = protocol.Protocol:extend({ __name = "Echo" })

-- No Nagle delay: each echo goes out at once (as every bench peer does).
-- Backpressure: a client that sends without reading is not read from while
-- more than 64 KiB of echoes wait for it, so it cannot make us buffer.
function Echo:connectionMade()
  self.transport:setTcpNoDelay(true)
  policies.applyBackpressure(self)
end

function Echo:dataReceived(data)
  self.transport:write(data)
end

local port = reactor.listenTCP(tonumber(arg[1]) or 8000,
  protocol.Factory.forProtocol(Echo), { interface = "127.0.0.1", backlog = 511 })
-- Said once running: SIGINT/SIGTERM then stop it cleanly (exit 0).
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
