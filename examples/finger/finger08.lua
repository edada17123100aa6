-- Finger tutorial, step 8 (the idea of Twisted's finger08.py, "Run 'finger'
-- locally": an asynchronous user lookup). Changed from step 7: getUser
-- answers after a delay, via task.deferLater, standing in for a slow
-- database or a subprocess. The protocol is unchanged: it only ever saw a
-- Deferred, so clients are served concurrently while lookups are pending.
--   loom run examples/finger/finger08.lua [PORT]   (default 8079; 0 picks one)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local task = require "loom.task"
local log = require "loom.log"

local LOOKUP_SECONDS = 0.05

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
  return task.deferLater(reactor, LOOKUP_SECONDS, function()
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
