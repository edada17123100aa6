-- Finger tutorial, step 5 (Twisted's finger05.py, "Read username, output
-- error, drop connections"): changed from step 4: every user gets
-- "No such user" before the connection closes.
--   loom run examples/finger/finger05.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"

local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol" })

function FingerProtocol:lineReceived(user)
  self.transport:write("No such user\r\n")
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
