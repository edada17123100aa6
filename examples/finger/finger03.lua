-- Finger tutorial, step 3 (Twisted's finger03.py, "Drop connections"):
-- changed from step 2: the protocol closes each connection as soon as it
-- is made.
--   loom run examples/finger/finger03.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local FingerProtocol = protocol.Protocol:extend({ __name = "FingerProtocol" })

function FingerProtocol:connectionMade()
  self.transport:loseConnection()
end

local FingerFactory = protocol.ServerFactory:extend({
  __name = "FingerFactory", protocol = FingerProtocol })

local port = reactor.listenTCP(tonumber(arg[1]) or 8079, FingerFactory(),
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
