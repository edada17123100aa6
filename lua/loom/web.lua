-- loom.web: HTTP, as twisted.web. The parts live in lua/loom/web/; this
-- module gathers their public names.

local web = {}

-- The client (loom.web.client, errors in loom.web.errors).
local client = require "loom.web.client"
local errors = require "loom.web.errors"
for _, name in ipairs({ "Agent", "HTTPConnectionPool", "RedirectAgent",
    "readBody", "getPage", "MAX_BODY_SIZE" }) do
  web[name] = client[name]
end
for name, cls in pairs(errors) do
  if type(cls) == "table" then
    web[name] = cls
  end
end

return web
