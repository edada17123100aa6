-- loom.application: the service tree, as twisted.application.service.
--
--   local app = application.Application("demo")
--   strports.service("tcp:8000", factory):setServiceParent(app)
--
-- A Service is started (privilegedStartService, then startService) and
-- stopped (stopService, which may return a Deferred). A MultiService holds
-- children: it starts them in order and stops them in reverse, and its
-- stopService waits for every child's Deferred. `loom run app.lua` and
-- plugins start a tree this way and stop it on SIGINT/SIGTERM.
--
-- application.strports and application.internet are loom.strports and
-- loom.internet, loaded on first use.

local class = require "loom.class"
local defer = require "loom.defer"
local log = require "loom.log"

local M = {}

-- Service ---------------------------------------------------------------------

local Service = class.Object:extend({ __name = "Service" })
M.Service = Service
Service.running = false

function Service:init(name)
  self.name = name
end

function Service:setName(name)
  if self.parent ~= nil then
    error("setName: cannot change the name of a service that has a parent"
      .. " (call disownServiceParent first)", 2)
  end
  self.name = name
end

function Service:setServiceParent(parent)
  if self.parent ~= nil then
    self:disownServiceParent()
  end
  if type(parent) ~= "table" or type(parent.addService) ~= "function" then
    error("setServiceParent: the parent must be a MultiService", 2)
  end
  parent:addService(self)
  self.parent = parent
end

-- Removes the service from its parent; returns what removeService returns
-- (the child's stopService result when the parent is running).
function Service:disownServiceParent()
  local parent = self.parent
  if parent == nil then
    return nil
  end
  local d = parent:removeService(self)
  self.parent = nil
  return d
end

function Service:privilegedStartService() end

function Service:startService()
  self.running = true
end

function Service:stopService()
  self.running = false
end

function Service:__tostring()
  return string.format("<%s %s>", rawget(getmetatable(self), "__name")
    or "Service", self.name and string.format("%q", self.name) or "(unnamed)")
end

-- MultiService ----------------------------------------------------------------

local MultiService = Service:extend({ __name = "MultiService" })
M.MultiService = MultiService

function MultiService:init(name)
  Service.init(self, name)
  self.services = {}
  self.namedServices = {}
end

function MultiService:__len()
  return #self.services
end

-- for child in ms:iter() do ... end, in start order.
function MultiService:iter()
  local i = 0
  local list = { table.unpack(self.services) }
  return function()
    i = i + 1
    return list[i]
  end
end

function MultiService:addService(service)
  if type(service) ~= "table" or type(service.startService) ~= "function" then
    error("addService: not a service: " .. tostring(service), 2)
  end
  local name = service.name
  if name ~= nil then
    if self.namedServices[name] ~= nil then
      error(string.format("addService: cannot have two services named %q"
        .. " in %s", tostring(name), tostring(self)), 2)
    end
    self.namedServices[name] = service
  end
  self.services[#self.services + 1] = service
  if service.parent == nil then
    service.parent = self
  end
  if self.running then
    service:privilegedStartService()
    service:startService()
  end
end

function MultiService:removeService(service)
  local found
  for i, s in ipairs(self.services) do
    if s == service then
      found = i
      break
    end
  end
  if found == nil then
    error("removeService: " .. tostring(service) .. " is not a child of "
      .. tostring(self), 2)
  end
  table.remove(self.services, found)
  if service.name ~= nil then
    self.namedServices[service.name] = nil
  end
  if self.running then
    return service:stopService()
  end
  return nil
end

function MultiService:getServiceNamed(name)
  local s = self.namedServices[name]
  if s == nil then
    error(string.format("getServiceNamed: no service named %q in %s",
      tostring(name), tostring(self)), 2)
  end
  return s
end

function MultiService:privilegedStartService()
  Service.privilegedStartService(self)
  for child in self:iter() do
    child:privilegedStartService()
  end
end

function MultiService:startService()
  Service.startService(self)
  for child in self:iter() do
    child:startService()
  end
end

-- Stops the children in reverse order; returns a Deferred that fires once
-- all their stopService Deferreds have fired (failures are logged).
function MultiService:stopService()
  Service.stopService(self)
  local pending = {}
  self._stopping = pending
  local list = {}
  for i = #self.services, 1, -1 do
    local child = self.services[i]
    local d = defer.maybeDeferred(child.stopService, child)
    if not d.called then
      pending[child] = true
      d:addBoth(function(r)
        pending[child] = nil
        return r
      end)
    end
    d:addErrback(function(f)
      log.err(f, "error stopping " .. tostring(child))
    end)
    list[#list + 1] = d
  end
  return defer.DeferredList(list, { consumeErrors = true })
end

-- Application -------------------------------------------------------------------

-- The root of a tree: a MultiService with a name (Twisted's Application is
-- a componentized MultiService; here it is the MultiService itself).
-- Application(name, {uid=, gid=}): `loom` switches to that user and group
-- (names or numbers) after privilegedStartService, as twistd does.
local Application = MultiService:extend({ __name = "Application" })
M.Application = Application

-- How many Applications were made: `loom run` notices a file that made
-- one but handed none over (the `local application` pitfall).
M._applicationsMade = 0

local function checkIdentity(opts, key)
  local v = opts[key]
  if v ~= nil and math.type(v) ~= "integer"
    and (type(v) ~= "string" or v == "") then
    error(string.format("Application: %s must be a name or a number, got %s",
      key, type(v) == "string" and "an empty string" or type(v)), 4)
  end
  return v
end

function Application:init(name, opts)
  MultiService.init(self, name or "application")
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("Application: options must be a table ({uid=, gid=}), got "
        .. type(opts), 3)
    end
    for key in pairs(opts) do
      if key ~= "uid" and key ~= "gid" then
        error(string.format("Application: unknown option %q (uid, gid)",
          tostring(key)), 3)
      end
    end
    self.uid = checkIdentity(opts, "uid")
    self.gid = checkIdentity(opts, "gid")
  end
  M._applicationsMade = M._applicationsMade + 1
end

-- Running a tree -----------------------------------------------------------------

-- Names of the services under `svc` whose stopService has not finished,
-- deepest first, as paths like "app/web/port".
local function stuck(svc, path, out)
  local pending = rawget(svc, "_stopping")
  local found = false
  if pending then
    for child in svc:iter() do
      if pending[child] then
        found = true
        local p = path .. "/" .. tostring(child.name or "(unnamed)")
        if not stuck(child, p, out) then
          out[#out + 1] = p
        end
      end
    end
  end
  return found
end
M._stuck = stuck

-- Stops `svc` and returns a Deferred that fires when it stopped or after
-- `timeout` seconds (on `clock`), whichever is first; a timeout logs which
-- services did not stop. Used by the "before shutdown" trigger of `loom`.
function M.stopWithTimeout(svc, timeout, clock)
  clock = clock or require "loom.reactor"
  local done = defer.Deferred()
  local d = defer.maybeDeferred(svc.stopService, svc)
  local timer
  d:addCallbacks(function() end, function(f)
    log.err(f, "error stopping " .. tostring(svc))
  end)
  d:addBoth(function()
    if timer and timer:active() then
      timer:cancel()
    end
    if not done.called then
      done:callback(nil)
    end
  end)
  if not done.called then
    timer = clock.callLater(timeout, function()
      local names = {}
      if not stuck(svc, tostring(svc.name or "(unnamed)"), names) then
        names[1] = tostring(svc.name or svc)
      end
      log.warn("services did not stop within %gs: %s", timeout,
        table.concat(names, ", "))
      done:callback(nil)
    end)
  end
  return done
end

return setmetatable(M, {
  __index = function(_, key)
    if key == "strports" or key == "internet" then
      return require("loom." .. key)
    end
    return nil
  end,
})
