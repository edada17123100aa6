-- loom web: serve a directory over HTTP (web.File under a web.Site).
--   loom web --path ./public --port tcp:8080
-- Listens on loopback unless told otherwise; no directory listing unless
-- --listing; no dotfile (.git, .env) unless --dotfiles; nothing outside
-- --path is reachable (docs/web.md).
local strports = require "loom.strports"
local web = require "loom.web"

return {
  name = "web",
  description = "static web server: serves the files of a directory over HTTP",
  options = {
    { "port", "p", "tcp:8080:interface=127.0.0.1", "where to listen" },
    { "path", "d", nil, "the directory to serve (required)" },
    { "listing", "l", false, "list directories that have no index.html" },
    { "dotfiles", nil, false, "serve names starting with . (.git, .env): off by default" },
    { "access-log", "a", nil, "append the access log (combined format) to this"
      .. " file instead of the loom log" },
  },
  makeService = function(opts)
    if opts.path == nil or opts.path == "" then
      error("--path is required: the directory to serve", 0)
    end
    local ok, root = pcall(web.File, opts.path, { listing = opts.listing,
      dotfiles = opts.dotfiles })
    if not ok then
      error("--path: " .. tostring(root):gsub("^File: ", ""), 0)
    end
    local site
    ok, site = pcall(web.Site, root, { logPath = opts["access-log"] })
    if not ok then -- (one line, without the Lua position)
      error("--access-log: " .. tostring(site):gsub("^.-Site: ", ""), 0)
    end
    return strports.service(opts.port, site)
  end,
}
