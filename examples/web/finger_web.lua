-- The finger service with a web front, as the step of Twisted's finger
-- tutorial that adds one ("Add Web Frontend": UserStatusTree and
-- UserStatus over the same service). One FingerService answers both the
-- finger protocol and the web: its lookups return Deferreds, which the
-- web resources return from render_GET as they are.
--   loom run examples/web/finger_web.lua [FINGERPORT] [WEBPORT]
--     (defaults 8079 and 8080; 0 picks one)
--   printf 'moshez\r\n' | nc 127.0.0.1 8079
--   curl http://127.0.0.1:8080/          the users, linked
--   curl http://127.0.0.1:8080/moshez    one user's status
local reactor = require "loom.reactor"
local basic = require "loom.basic"
local class = require "loom.class"
local log = require "loom.log"
local protocol = require "loom.protocol"
local task = require "loom.task"
local web = require "loom.web"

local LOOKUP_SECONDS = 0.01 -- a slow database, as in the tutorial

local FingerService = class.Object:extend({ __name = "FingerService" })
function FingerService:init(users)
  self.users = users
end
function FingerService:getUser(user)
  return task.deferLater(reactor, LOOKUP_SECONDS, function()
    return self.users[user] or "No such user"
  end)
end
function FingerService:getUsers()
  return task.deferLater(reactor, LOOKUP_SECONDS, function()
    local names = {}
    for name in pairs(self.users) do names[#names + 1] = name end
    table.sort(names)
    return names
  end)
end

-- The finger protocol: one line, one answer.
local FingerProtocol = basic.LineReceiver:extend({ __name = "FingerProtocol",
  MAX_LENGTH = 256 })
function FingerProtocol:lineReceived(user)
  self.factory.service:getUser(user):addErrback(function(f)
    log.err(f, "looking up " .. user)
    return "Internal error in server"
  end):addCallback(function(message)
    self.transport:write(message .. "\r\n")
    self.transport:loseConnection()
  end)
end

-- The web front: / lists the users, /NAME shows one.
local UserStatus = web.Resource:extend({ __name = "UserStatus", isLeaf = true })
function UserStatus:init(service, user)
  web.Resource.init(self)
  self.service, self.user = service, user
end
function UserStatus:render_GET()
  return self.service:getUser(self.user):addCallback(function(status)
    return string.format("<h1>%s</h1><p>%s</p>\n", web.escapeHTML(self.user),
      web.escapeHTML(status))
  end)
end

local UserStatusTree = web.Resource:extend({ __name = "UserStatusTree" })
function UserStatusTree:init(service)
  web.Resource.init(self)
  self.service = service
end
function UserStatusTree:getChild(name)
  if name == "" then
    return self
  end
  return UserStatus(self.service, name)
end
function UserStatusTree:render_GET()
  return self.service:getUsers():addCallback(function(names)
    local items = {}
    for _, name in ipairs(names) do
      local e = web.escapeHTML(name)
      items[#items + 1] = string.format('<li><a href="%s">%s</a></li>', e, e)
    end
    return "<h1>Users</h1><ul>" .. table.concat(items) .. "</ul>\n"
  end)
end

local service = FingerService({ moshez = "Happy and well",
  glyph = "Busy writing Twisted", ann = "Out to lunch, back at two" })
local fingerFactory = protocol.ServerFactory.forProtocol(FingerProtocol)
fingerFactory.service = service
local fingerPort = reactor.listenTCP(tonumber(arg[1]) or 8079, fingerFactory,
  { interface = "127.0.0.1" })
local webPort = reactor.listenTCP(tonumber(arg[2]) or 8080,
  web.Site(UserStatusTree(service)), { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. fingerPort:getHost().port)
  print("listening on 127.0.0.1:" .. webPort:getHost().port)
  io.stdout:flush()
end)
reactor.run()
