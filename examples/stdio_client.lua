-- An interactive line client: what you type goes to a TCP server, its
-- replies come back to your terminal, and the reactor never blocks on the
-- keyboard (loom.stdio.StandardIO, as Twisted's stdio).
--   loom run examples/stdio_client.lua [PORT [HOST]]
--   (defaults: port 8000, host 127.0.0.1; try it with `loom echo`)
--
-- Each line of stdin is sent as it is typed; each line the server sends is
-- printed. At the end of stdin (Ctrl-D on a terminal, or the end of a file
-- or pipe) the client half-closes the connection and prints the replies
-- still coming until the server closes; then it exits 0. If it cannot
-- connect, or the server goes away while you type, it says so on stderr and
-- exits 1. A line longer than basic.LineReceiver.MAX_LENGTH (16 KiB) from
-- either side drops the connection, so neither side can make it hold more.
-- Backpressure both ways: a slow terminal pauses reading from the server,
-- a slow server pauses reading the keyboard.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local stdio = require "loom.stdio"
local err = require "loom.error"

local port = tonumber(arg[1]) or 8000
local host = arg[2] or "127.0.0.1"

local failure = nil

local function finish(why)
  failure = failure or why
  if reactor.running then
    reactor.stop()
  end
end

-- The keyboard side: lines typed go to the server connection.
local Keyboard = basic.LineReceiver:extend({
  __name = "Keyboard",
  delimiter = "\n",
})

function Keyboard:init(server)
  self.server = server
end

function Keyboard:lineReceived(line)
  self.server:sendLine(line)
end

-- End of stdin: tell the server we are done, but keep printing replies.
function Keyboard:readConnectionLost()
  self.server.transport:loseWriteConnection()
end

function Keyboard:connectionLost()
  finish(nil)
end

function Keyboard:lineLengthExceeded()
  finish("a typed line is longer than " .. self.MAX_LENGTH .. " bytes")
end

-- The server side: replies are printed through the stdio transport.
local Server = basic.LineReceiver:extend({
  __name = "StdioClient",
  delimiter = "\n",
})

function Server:connectionMade()
  self.keyboard = Keyboard:new(self)
  self.console = stdio.StandardIO(self.keyboard)
  -- Backpressure: each side pauses the other when its output backs up.
  self.console:registerProducer(self.transport, true)
  self.transport:registerProducer(self.console, true)
end

function Server:lineReceived(line)
  self.console:write(line .. "\n")
end

function Server:lineLengthExceeded()
  finish("the server sent a line longer than " .. self.MAX_LENGTH .. " bytes")
end

-- The server closed: the console flushes what is left to print, and its
-- end (Keyboard:connectionLost) stops the reactor.
function Server:connectionLost(reason)
  if not reason:check(err.ConnectionDone) then
    failure = failure or ("connection lost: " .. reason:getErrorMessage())
  end
  self.console:loseConnection()
end

local Factory = protocol.ClientFactory:extend({ __name = "StdioClientFactory" })

function Factory:clientConnectionFailed(connector, reason) -- luacheck: ignore
  finish("cannot connect: " .. reason:getErrorMessage())
end

reactor.connectTCP(host, port, Factory:forProtocol(Server), { timeout = 5 })
reactor.run()
if failure then
  io.stderr:write("stdio_client: ", failure, "\n")
  os.exit(1)
end
