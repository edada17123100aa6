-- The demo behind `make run`: an echo server and a timestamp server on fixed
-- loopback ports, with instructions. Ctrl-C stops it cleanly.
--   loom run examples/demo.lua [ECHO_PORT] [TIME_PORT]   (8000 and 8001)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local log = require "loom.log"
local policies = require "loom.policies"

local echoPort = tonumber(arg[1]) or 8000
local timePort = tonumber(arg[2]) or 8001

local Echo = protocol.Protocol:extend({ __name = "Echo" })
-- Both servers answer what they read: policies.applyBackpressure stops
-- reading from a client that does not read the answers (see docs/README.md).
function Echo:connectionMade()
  log.info("echo: %s connected", self.transport:getPeer().host)
  policies.applyBackpressure(self)
end
function Echo:dataReceived(data)
  self.transport:write(data)
end

-- Answers each line with the time and the line (Twisted tutorial style).
local Stamp = basic.LineReceiver:extend({ __name = "Stamp", delimiter = "\n" })
function Stamp:connectionMade()
  policies.applyBackpressure(self)
end
function Stamp:lineReceived(line)
  if line == "quit" then
    self:sendLine("bye")
    self.transport:loseConnection()
  else
    self:sendLine(os.date("!%Y-%m-%dT%H:%M:%SZ") .. " " .. line)
  end
end

local ok, e = pcall(function()
  reactor.listenTCP(echoPort, protocol.Factory.forProtocol(Echo),
    { interface = "127.0.0.1" })
  reactor.listenTCP(timePort, protocol.Factory.forProtocol(Stamp),
    { interface = "127.0.0.1" })
end)
if not ok then
  io.stderr:write("demo: ", tostring(e),
    " (is another demo running? pass other ports: loom run examples/demo.lua 9000 9001)\n")
  os.exit(1)
end

reactor.callWhenRunning(function()
  print(string.format([[
loom demo running (Ctrl-C to stop):
  echo server       nc 127.0.0.1 %d     (every byte comes back)
  timestamp server  nc 127.0.0.1 %d     (each line answered with the time)
No nc? Use loom's own client:
  echo hello | build/loom run examples/timestamp_client.lua %d]],
    echoPort, timePort, timePort))
  io.stdout:flush()
end)
reactor.run()
