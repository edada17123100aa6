-- loom.embed: the Lua half of loom.h's C API (bindings/api.c), for what
-- is simpler said in Lua. Not a public Lua API.

local application = require "loom.application"
local plugin = require "loom.plugin"
local reactor = require "loom.reactor"

local M = {}

-- How long a plugin's service may take to stop at shutdown (as the loom
-- executable's cli.stopTimeout).
M.stopTimeout = 10

local function isService(v)
  return type(v) == "table" and type(v.startService) == "function"
    and type(v.stopService) == "function"
end

-- loom_load_plugin: as `loom NAME args...`: finds the plugin, parses args
-- (a list), makes its service and starts it; the reactor's shutdown stops
-- it. Returns the service, or nil, a loom.h code name ("ENOENT", "EINVAL",
-- "ELUA") and a one-line message. Errors from makeService or startService
-- raise (the caller's pcall makes them LOOM_ELUA).
function M.startPlugin(name, args)
  local file = plugin.find(name)
  if not file then
    return nil, "ENOENT", string.format("no plugin named '%s' (looked in: %s)",
      name, table.concat(plugin.path(), ", "))
  end
  local p, msg = plugin.load(file, name)
  if not p then
    return nil, "ELUA", "plugin " .. msg
  end
  local opts, e = plugin.parseOptions(p, args, 1)
  if opts == "help" then
    return nil, "EINVAL", (plugin.usage(p):gsub("\n.*", ""))
  elseif opts == nil then
    return nil, "EINVAL", e
  end
  local svc = p.makeService(opts)
  if not isService(svc) then
    return nil, "ELUA", string.format("%s: makeService returned %s, not a"
      .. " service", p.name, type(svc))
  end
  if type(svc.privilegedStartService) == "function" then
    svc:privilegedStartService()
  end
  svc:startService()
  reactor.addSystemEventTrigger("before", "shutdown", function()
    return application.stopWithTimeout(svc, M.stopTimeout)
  end)
  return svc
end

return M
