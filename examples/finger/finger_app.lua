-- The finger tutorial's application step (Twisted's "The Evolution of
-- Finger", finger11): the users live in a FingerService, which reads them
-- from a JSON file when it starts; a factory built from the service answers
-- queries; both hang off an Application that loom starts and stops.
--
--   loom run examples/finger/finger_app.lua [USERS.json] [ENDPOINT]
--   echo ann | nc 127.0.0.1 8079
--
-- USERS.json defaults to users.json next to this file; ENDPOINT to
-- tcp:8079:interface=127.0.0.1 (finger's real port, 79, needs root).
local application = require "loom.application"
local basic = require "loom.basic"
local defer = require "loom.defer"
local json = require "loom.json"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local usersFile = arg and arg[1] or (here .. "/users.json")
local where = arg and arg[2] or "tcp:8079:interface=127.0.0.1"

local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol",
  delimiter = "\n" })
-- A client gets 30 s to ask and read the answer (loom.policies.TimeoutMixin);
-- one that never finishes its line is not held forever.
policies.mixin(FingerProtocol, policies.TimeoutMixin)

function FingerProtocol:connectionMade()
  self:setTimeout(30)
end

function FingerProtocol:connectionLost()
  self:setTimeout(nil)
end

function FingerProtocol:lineReceived(user)
  user = user:gsub("\r$", "")
  self.factory:getUser(user):addCallback(function(value)
    self.transport:write(value .. "\r\n")
    self.transport:loseConnection()
  end)
end

local FingerService = application.Service:extend({ __name = "FingerService" })

function FingerService:init(filename)
  application.Service.init(self, "finger")
  self.filename = filename
  self.users = {}
end

function FingerService:_read()
  local f, e = io.open(self.filename, "r")
  if not f then
    error("finger: " .. tostring(e), 0)
  end
  local users, msg = json.decode(f:read("a"))
  f:close()
  if type(users) ~= "table" then
    error("finger: " .. self.filename .. ": " .. tostring(msg), 0)
  end
  self.users = users
end

function FingerService:startService()
  self:_read()
  application.Service.startService(self)
end

function FingerService:getUser(user)
  return defer.succeed(self.users[user] or "No such user")
end

function FingerService:getFingerFactory()
  local f = protocol.ServerFactory:new()
  f.protocol = FingerProtocol
  f.getUser = function(_, user) return self:getUser(user) end
  return f
end

local app = application.Application("finger")
local f = FingerService:new(usersFile)
f:setServiceParent(app)
local port = strports.service(where, f:getFingerFactory())
port:setName("finger-port")
port:setServiceParent(app)

return app
