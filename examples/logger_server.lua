-- Logger server: logs (loom.log, to stderr) every peer that connects or
-- disconnects and every piece of data it sends; sends nothing back.
--   loom run examples/logger_server.lua [PORT]  (default 8002; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local log = require "loom.log"

local Logger = protocol.Protocol:extend({ __name = "Logger" })

local function peerOf(transport)
  local peer = transport:getPeer()
  return string.format("%s:%d", peer.host, peer.port)
end

function Logger:connectionMade()
  self.peer = peerOf(self.transport)
  log.info("%s connected", self.peer)
end

-- %q, but with "\n" instead of a backslash and a real newline: one log line.
local function quoted(data)
  return (string.format("%q", data):gsub("\\\n", "\\n"))
end

function Logger:dataReceived(data)
  log.info("%s sent %s", self.peer, quoted(data))
end

function Logger:connectionLost(reason)
  log.info("%s disconnected (%s)", self.peer, reason:getErrorMessage())
end

local port = reactor.listenTCP(tonumber(arg[1]) or 8002,
  protocol.Factory.forProtocol(Logger), { interface = "127.0.0.1" })
-- Said once running: SIGINT/SIGTERM then stop it cleanly (exit 0).
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
