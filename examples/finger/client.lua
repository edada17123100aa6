-- A tiny finger client for trying the steps when nc is missing: sends
-- "USER\r\n", prints everything the server answers, exits when it closes.
--   loom run examples/finger/client.lua USER [PORT [HOST]]
--   (defaults: port 8079, host 127.0.0.1)
-- Exit status 1, with one line on stderr, if it cannot connect.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local user = arg[1] or ""
local port = tonumber(arg[2]) or 8079
local host = arg[3] or "127.0.0.1"
local failed = nil

local FingerClient = protocol.Protocol:extend({ __name = "FingerClient" })

function FingerClient:connectionMade()
  self.transport:write(user .. "\r\n")
end

function FingerClient:dataReceived(data)
  io.stdout:write(data)
  io.stdout:flush()
end

function FingerClient:connectionLost()
  reactor.stop()
end

local Factory = protocol.ClientFactory:extend({ __name = "FingerClientFactory" })

function Factory:clientConnectionFailed(connector, reason) -- luacheck: ignore
  failed = reason:getErrorMessage()
  reactor.stop()
end

reactor.connectTCP(host, port, Factory:forProtocol(FingerClient),
  { timeout = 5 })
reactor.run()
if failed then
  io.stderr:write("finger client: cannot connect: ", failed, "\n")
  os.exit(1)
end
