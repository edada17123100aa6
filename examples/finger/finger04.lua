-- Finger tutorial, step 4 (Twisted's finger04.py, "Read username, drop
-- connections"): changed from step 3: the protocol is a LineReceiver that
-- waits for one line (the user name), then closes without answering.
--   loom run examples/finger/finger04.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"

local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol" })

function FingerProtocol:lineReceived(user)
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
