-- loom manhole: a server whose service is a manhole (a live Lua console,
-- loom.manhole), alone or beside an application file's services:
--
--   loom manhole --port unix:build/dev.manhole
--   loom manhole --port unix:build/app.manhole --app app.lua
--   loom console build/dev.manhole
--
-- Alone it is a scratch loom to try the framework in; with --app it serves
-- that application (as `loom run --manhole ... app.lua` does) and the
-- console's services() shows the application's tree.
local application = require "loom.application"
local manhole = require "loom.manhole"

-- The service tree an application file hands over (returned, or the global
-- `application`); raises a one-line message.
local function loadApplication(file)
  local chunk, e = loadfile(file, "t")
  if not chunk then
    error((e:gsub("\n.*", "")), 0)
  end
  local app = chunk(file)
  if app == nil then
    app = rawget(_G, "application")
  end
  if type(app) ~= "table" or type(app.startService) ~= "function" then
    error(file .. ": an application file must return (or set the global)"
      .. " `application`, a service", 0)
  end
  return app
end

return {
  name = "manhole",
  description = "a live Lua console (loom console PATH), alone or beside"
    .. " an application file's services",
  options = {
    { "port", "p", "unix:loom.manhole", "where to listen: unix:PATH (mode"
      .. " 0600) or tcp:PORT:interface=127.0.0.1 (with --passwd)" },
    { "passwd", nil, nil, "file whose first line is the tcp password" },
    { "app", nil, nil, "an application file to serve beside the manhole" },
  },
  makeService = function(opts)
    local root = application.MultiService:new()
    local app = opts.app and loadApplication(opts.app) or nil
    local tree = app or root
    local ok, svc = pcall(manhole.service, opts.port, {
      passwdFile = opts.passwd, root = function() return tree end })
    if not ok then
      error((tostring(svc):gsub("^manhole: ", "")), 0) -- loom adds the name
    end
    svc:setServiceParent(root)
    if app then
      app:setServiceParent(root)
    end
    return root
  end,
}
