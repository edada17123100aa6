-- Timestamp client: sends lines to examples/timestamp_server.lua and prints
-- the server's replies (Twisted's interactive line client).
--   loom run examples/timestamp_client.lua [PORT [HOST]]
--   (defaults: port 8001, host 127.0.0.1)
--
-- This client reads all of stdin first (io.lines, up to end of file: type
-- the lines, then Ctrl-D on a terminal; or pipe them in: `echo hi | loom run
-- examples/timestamp_client.lua 8001`); examples/stdio_client.lua instead
-- reads the keyboard as you type, with loom.stdio, without blocking.
-- It then connects, sends the lines one by one, waiting for each reply and
-- printing it, and stops the reactor once every reply came back (exit 0).
-- If the connection fails or closes early it says so on stderr (exit 1).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"

local port = tonumber(arg[1]) or 8001
local host = arg[2] or "127.0.0.1"

local lines = {}
for line in io.lines() do
  lines[#lines + 1] = line
end

local failure = nil

local function finish(why)
  failure = why
  if reactor.running then
    reactor.stop()
  end
end

local Client = basic.LineReceiver:extend({
  __name = "TimestampClient",
  delimiter = "\n",
})

function Client:connectionMade()
  self.next = 1
  self:sendNext()
end

function Client:sendNext()
  local line = lines[self.next]
  if line == nil then
    self.done = true
    self.transport:loseConnection()
    return finish(nil)
  end
  self:sendLine(line)
end

function Client:lineReceived(reply)
  print(reply)
  io.stdout:flush()
  self.next = self.next + 1
  self:sendNext()
end

function Client:connectionLost(reason)
  if not self.done then
    finish("connection lost: " .. reason:getErrorMessage())
  end
end

local Factory = protocol.ClientFactory:extend({ __name = "TimestampFactory" })

function Factory:clientConnectionFailed(connector, reason) -- luacheck: ignore
  finish("cannot connect: " .. reason:getErrorMessage())
end

if #lines > 0 then
  reactor.connectTCP(host, port, Factory:forProtocol(Client), { timeout = 5 })
  reactor.run()
end
if failure then
  io.stderr:write("timestamp_client: ", failure, "\n")
  os.exit(1)
end
