-- Finger tutorial, step 6 (Twisted's finger06.py, "Output from non-empty
-- factory"): changed from step 5: the factory holds a table of users, given
-- to it when it is made, and the protocol answers with the user's status.
--   loom run examples/finger/finger06.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"

local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol" })

function FingerProtocol:lineReceived(user)
  self.transport:write(self.factory:getUser(user) .. "\r\n")
  self.transport:loseConnection()
end

local FingerFactory = protocol.ServerFactory:extend({
  __name = "FingerFactory", protocol = FingerProtocol })

function FingerFactory:init(users)
  self.users = users
end

function FingerFactory:getUser(user)
  return self.users[user] or "No such user"
end

local factory = FingerFactory({ moshez = "Happy and well" })
local port = reactor.listenTCP(tonumber(arg[1]) or 8079, factory,
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
