-- A static file server over https: web.File on an `ssl:` endpoint (the
-- same string `loom web --port` takes), on loopback.
--   loom run examples/web/https_static.lua KEY CERT [PORT] [DIR]
--
-- A certificate for trying it (self-signed, for localhost and 127.0.0.1,
-- valid 30 days; it is its own CA, so clients trust it with --cacert):
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
--     -addext subjectAltName=DNS:localhost,IP:127.0.0.1
--   loom run examples/web/https_static.lua key.pem cert.pem 8443
--   curl --cacert cert.pem https://localhost:8443/https_static.lua
-- and from Lua, verified against that certificate:
--   web.getPage("https://localhost:8443/", { tlsOptions = { caCerts = "cert.pem" } })
-- (`loom web --path DIR --port ssl:8443:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem`
-- is the same as a plugin.) For a real site use a certificate from a CA
-- (e.g. Let's Encrypt) and pass its chain as extraCertChain=chain.pem.
local reactor = require "loom.reactor"
local strports = require "loom.strports"
local web = require "loom.web"

local key, cert = arg[1], arg[2]
if not key or not cert then
  io.stderr:write("usage: loom run examples/web/https_static.lua KEY CERT"
    .. " [PORT] [DIR]\n")
  os.exit(2)
end
local port = tonumber(arg[3]) or 8443
local dir = arg[4] or (arg[0]:match("^(.*)/[^/]*$") or ".")

-- ':' and '\' in a strports value are escaped with '\'.
local function escape(value)
  return (value:gsub("[:\\]", "\\%0"))
end

local description = string.format(
  "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s", port, escape(key),
  escape(cert))
local site = web.Site(web.File(dir))
local failed
strports.listen(description, site):addCallbacks(function(p)
  print("listening on 127.0.0.1:" .. p:getHost().port)
  io.stdout:flush()
end, function(f)
  failed = f
end)
if failed then
  -- A missing or bad key or certificate: one line, exit status 1.
  io.stderr:write("https_static: " .. failed:getErrorMessage() .. "\n")
  os.exit(1)
end
reactor.run()
