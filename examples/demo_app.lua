-- The demo behind `make run`: one application running three of loom's
-- built-in plugins on fixed loopback ports, with instructions.
--   echo    127.0.0.1:8000   every byte comes back
--   chat    127.0.0.1:8001   a chat room (nickname, /who, /nick, /quit)
--           http://127.0.0.1:8080/   the same room in a browser
--   finger  127.0.0.1:8079   users from examples/finger/users.json
--   manhole build/demo.manhole   a live Lua console: build/loom console PATH
-- Ctrl-C stops every service in reverse order and exits 0.
--   loom run examples/demo_app.lua [ECHO CHAT FINGER [MANHOLE [WEB]]]
-- (ports; MANHOLE: the console's socket path, "-" for none; WEB: the chat
-- page's port.)
local application = require "loom.application"
local core = require "loom.core"
local manhole = require "loom.manhole"
local plugin = require "loom.plugin"
local reactor = require "loom.reactor"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."

-- A plugin's service, made as `loom NAME --port ...` would make it.
local function fromPlugin(name, opts)
  local p = assert(plugin.load(assert(plugin.find(name),
    "no plugin " .. name), name))
  local defaults = assert(plugin.parseOptions(p, {}, 1))
  for k, v in pairs(opts) do
    defaults[k] = v
  end
  local svc = p.makeService(defaults)
  svc:setName(name)
  return svc
end

local echoPort = tonumber(arg and arg[1]) or 8000
local chatPort = tonumber(arg and arg[2]) or 8001
local fingerPort = tonumber(arg and arg[3]) or 8079
local webPort = tonumber(arg and arg[5]) or 8080
local function on(port)
  return "tcp:" .. port .. ":interface=127.0.0.1"
end

local app = application.Application("demo")
local echo = fromPlugin("echo", { port = on(echoPort) })
echo:setServiceParent(app)
local chat = fromPlugin("chat", { port = on(chatPort), web = on(webPort) })
chat:setServiceParent(app)
local finger = fromPlugin("finger", { port = on(fingerPort),
  users = here .. "/finger/users.json" })
finger:setServiceParent(app)

-- The manhole: a Unix socket (mode 0600) in the build directory, when
-- there is one (a source tree after make).
local top = here == "examples" and "" or (here .. "/../")
local manholePath = arg and arg[4] or (top .. "build/demo.manhole")
if manholePath == "-" or not core.stat(manholePath:match("^(.*)/")
  or ".") then
  manholePath = nil
end
-- A directory others may write to is refused (docs/manhole.md): the demo
-- then runs without one and says why.
local manholeRefused
if manholePath then
  local ok, svc = pcall(manhole.service, "unix:" .. manholePath,
    { root = app })
  if ok then
    svc:setServiceParent(app)
  else
    manholePath, manholeRefused = nil, svc
  end
end

-- The port a started service listens on (the one asked for, or the one
-- the system picked for 0).
local function portOf(svc, asked)
  local host = svc.getHost and svc:getHost()
  return host and host.port or asked
end

-- After loom's own "listening on" lines (printed once the reactor runs).
reactor.callWhenRunning(reactor.callLater, 0, function()
  print((([[
loom demo running (Ctrl-C to stop):
  echo    nc 127.0.0.1 ECHO   every byte you type comes back
  chat    nc 127.0.0.1 CHAT   open two terminals; /who, /nick NAME, /quit
          or open http://127.0.0.1:WEBPORT/ in a browser: the same room
  finger  echo ann | nc 127.0.0.1 FINGER   (users: examples/finger/users.json)
No nc? loom's own clients:
  echo hello | build/loom run examples/timestamp_client.lua ECHO
  build/loom run examples/finger/client.lua ann FINGER
The same services run alone as plugins: build/loom echo --port tcp:9000
(build/loom --help lists them).]]):gsub("%u%u%u%u+", {
    ECHO = portOf(echo, echoPort),
    CHAT = portOf(chat:getServiceNamed("lines"), chatPort),
    WEBPORT = portOf(chat:getServiceNamed("web"), webPort),
    FINGER = portOf(finger, fingerPort) })))
  if manholePath then
    print("A Lua console into this server: build/loom console "
      .. manholePath .. "\n  then connections(), services(), help()")
  elseif manholeRefused then
    print("(no Lua console: " .. manholeRefused .. ")")
  end
  io.stdout:flush()
end)

return app
