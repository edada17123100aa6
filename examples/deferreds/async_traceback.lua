-- Tracebacks across await: a failure deep inside inlineCallbacks functions
-- is printed with every awaiting caller, outermost last.
--   loom run examples/deferreds/async_traceback.lua
--   LOOM_DEBUG=1 loom run examples/deferreds/async_traceback.lua  (loom's
--   own frames too)
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local task = require "loom.task"

local USERS = { alice = { id = 1 } }

local fetchUser = defer.inlineCallbacks(function(name)
  defer.await(task.deferLater(reactor, 0.05)) -- a slow lookup
  local user = USERS[name]
  if not user then
    error("no such user: " .. name)
  end
  return user
end)

local loadProfile = defer.inlineCallbacks(function(name)
  local user = defer.await(fetchUser(name))
  return { id = user.id, name = name }
end)

local handleRequest = defer.inlineCallbacks(function(path)
  local profile = defer.await(loadProfile(path:match("^/users/(%w+)$")))
  return "hello, " .. profile.name
end)

handleRequest("/users/bob"):addCallback(print):addErrback(function(f)
  f:printTraceback(io.stdout)
end):addBoth(function()
  reactor.stop()
end)

reactor.run()
