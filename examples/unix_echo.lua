-- Echo over a Unix socket. As a server it removes a stale socket file left
-- by a dead server (wantPID lock) and its own file when it stops.
--   loom run examples/unix_echo.lua server PATH
--   loom run examples/unix_echo.lua client PATH MESSAGE
local policies = require "loom.policies"
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local mode, path, message = arg[1], arg[2], arg[3]
if (mode ~= "server" and mode ~= "client") or not path then
  io.stderr:write("usage: unix_echo.lua server PATH | client PATH MESSAGE\n")
  os.exit(1)
end

if mode == "server" then
  local Echo = protocol.Protocol:extend({ __name = "UnixEcho" })
  -- Not read from while a client leaves our echoes unread (backpressure).
  function Echo:connectionMade()
    policies.applyBackpressure(self)
  end
  function Echo:dataReceived(data)
    self.transport:write(data)
  end
  reactor.listenUNIX(path, protocol.Factory.forProtocol(Echo),
    { mode = tonumber("600", 8), wantPID = true })
  reactor.callWhenRunning(function()
    print("listening on " .. path)
    io.stdout:flush()
  end)
else
  local Client = protocol.Protocol:extend({ __name = "UnixEchoClient" })
  function Client:connectionMade()
    self.got = ""
    self.transport:write(message or "hello")
  end
  function Client:dataReceived(data)
    self.got = self.got .. data
    if #self.got >= #(message or "hello") then
      print(self.got)
      self.transport:loseConnection()
    end
  end
  local cf = protocol.ClientFactory:forProtocol(Client)
  function cf:clientConnectionFailed(_, reason)
    io.stderr:write(reason:getErrorMessage() .. "\n")
    reactor.stop()
  end
  function cf:clientConnectionLost()
    reactor.stop()
  end
  reactor.connectUNIX(path, cf, { timeout = 5 })
end
reactor.run()
