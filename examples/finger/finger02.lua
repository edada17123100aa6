-- Finger tutorial, step 2 (Twisted's finger02.py, "Do nothing"):
-- changed from step 1: we now listen, with a protocol that does nothing.
-- Connections are accepted and held open until the client closes them.
--   loom run examples/finger/finger02.lua [PORT]
-- The finger port is 79, which needs root: loom's default is 8079, and 0
-- picks a free port.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"

local FingerProtocol = protocol.Protocol:extend({ __name = "FingerProtocol" })

local FingerFactory = protocol.ServerFactory:extend({
  __name = "FingerFactory", protocol = FingerProtocol })

local port = reactor.listenTCP(tonumber(arg[1]) or 8079, FingerFactory(),
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
