-- loom: the root module. Each part loads on first use:
--   local loom = require "loom"; loom.reactor.callLater(1, f)
-- is the same as require "loom.reactor".

local loom = { version = require("loom.core").version }

return setmetatable(loom, {
  __index = function(t, k)
    local ok, mod = pcall(require, "loom." .. k)
    if not ok then
      error(string.format("loom.%s: %s", k, tostring(mod)), 2)
    end
    rawset(t, k, mod)
    return mod
  end,
})
