-- Finger tutorial, step 7 (Twisted's finger07.py, "Use Deferreds"):
-- changed from step 6: getUser returns a Deferred. The protocol adds an
-- errback turning any failure into "Internal error in server", then a
-- callback writing the answer and closing. To show the errback path, the
-- user "crash" makes the lookup raise (defer.execute turns that into a
-- failed Deferred).
--   loom run examples/finger/finger07.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local defer = require "loom.defer"
local log = require "loom.log"

local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol" })

function FingerProtocol:lineReceived(user)
  local d = self.factory:getUser(user)
  d:addErrback(function(failure)
    log.err(failure, "looking up " .. user)
    return "Internal error in server"
  end)
  d:addCallback(function(message)
    self.transport:write(message .. "\r\n")
    self.transport:loseConnection()
  end)
end

local FingerFactory = protocol.ServerFactory:extend({
  __name = "FingerFactory", protocol = FingerProtocol })

function FingerFactory:init(users)
  self.users = users
end

function FingerFactory:getUser(user)
  return defer.execute(function()
    if user == "crash" then
      error("the user database crashed")
    end
    return self.users[user] or "No such user"
  end)
end

local factory = FingerFactory({ moshez = "Happy and well" })
local port = reactor.listenTCP(tonumber(arg[1]) or 8079, factory,
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
