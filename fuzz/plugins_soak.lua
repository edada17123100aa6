-- The demo `make run` starts (examples/demo_app.lua: the built-in plugins
-- echo, chat with its web page and WebSocket, and finger), attacked for
-- `make soak` (under the ASan and UBSan build), in this process: for
-- SECONDS, 50 connections at a time send them noise, mutated commands and
-- nicknames, control bytes, lines past their limits, floods, WebSocket
-- frames of every size, and some never read what they are sent or go
-- silent.
--   loom run fuzz/plugins_soak.lua [SECONDS [SEED]]  (default 30 s, seed 1)
-- Passes (exit 0) when nothing was logged as an error and afterwards each
-- service still does its job: echo echoes, a chat line reaches another
-- member, finger answers for a user, the chat page is served. The
-- sanitizers abort on any invalid access.
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local web = require "loom.web"

local SECONDS = tonumber(arg[1]) or 30
local CONCURRENCY = 50
local S = dofile("fuzz/soak.lua").new(tonumber(arg[2]) or 1)
local R, bytes, mutate = S.R, S.bytes, S.mutate

-- Errors logged: any is loom's (refusals and drops are info or warn) ----

local unexpected = S.watchErrors(nil, "error")

-- The demo itself (examples/demo_app.lua, what `make run` starts), on ports
-- the system picks and without its console ------------------------------------

local app
do
  local soakArg = arg
  arg = { [0] = "examples/demo_app.lua", "0", "0", "0", "-", "0" } -- luacheck: ignore
  app = dofile("examples/demo_app.lua")
  arg = soakArg -- luacheck: ignore
end
app:startService()

local function portOf(name)
  return app:getServiceNamed(name):getHost().port
end
local chat = app:getServiceNamed("chat")
local PORTS = { echo = portOf("echo"), finger = portOf("finger"),
  chat = chat:getServiceNamed("lines"):getHost().port,
  web = chat:getServiceNamed("web"):getHost().port }

-- What attackers send ----------------------------------------------------------

local CHAT_LINES = { "alice", "bob", "a b c", "", "   ", "\27[2J", "/who",
  "/nick carol", "/nick ", "/nick " .. ("n"):rep(100), "/quit", "/bogus x",
  "hello everyone", "\0\1\2", ("x"):rep(20000), "/nick \255\254", "/who extra" }
local FINGER_LINES = { "ann", "", "/W ann", "ann@127.0.0.1", "@", "nobody",
  ("u"):rep(5000), "../../etc/passwd", "ann\0" }

local function lines(list, eol)
  local out = {}
  for i = 1, R(20) do
    local l = list[R(#list)]
    out[i] = (R(3) == 1 and mutate(l) or l) .. (R(5) == 1 and "\r\n" or eol)
  end
  return table.concat(out)
end

-- A text frame as a browser sends it (masked).
local function wsFrame(text)
  return S.wsFrame(true, 0, 1, true, text)
end

local function webAttack()
  if R(3) == 1 then -- the page and its files, or paths around them
    local paths = { "/", "/chat.js", "/chat.css", "/favicon.svg",
      "/../chat.lua", "/%2e%2e/chat.lua", "/nope", "/ws" }
    return "GET " .. paths[R(#paths)] .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
  end
  local hs = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" .. PORTS.web
    .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    .. "Sec-WebSocket-Version: 13\r\n"
    .. (R(4) == 1 and "Origin: http://evil.example\r\n" or "") .. "\r\n"
  local frames = {}
  for i = 1, R(10) do
    local pick = R(6)
    frames[i] = wsFrame(pick == 1 and ("x"):rep(20000)
      or pick == 2 and "\255 not utf-8"
      or CHAT_LINES[R(#CHAT_LINES)]:sub(1, 200))
  end
  local s = hs .. table.concat(frames)
  return R(5) == 1 and mutate(s) or s
end

local ATTACKS = {
  { "echo", function() return bytes(R(3) == 1 and 300000 or R(2000)) end },
  { "chat", function() return lines(CHAT_LINES, "\n") end },
  { "chat", function() return lines(CHAT_LINES, "\n") end },
  { "finger", function() return lines(FINGER_LINES, "\r\n") end },
  { "web", webAttack },
}

-- Attackers -----------------------------------------------------------------------

local stats = { connections = 0 }
local inflight, deadline = 0, reactor.seconds() + SECONDS
local spawn

local Attacker = protocol.Protocol:extend({ __name = "SoakAttacker" })
function Attacker:connectionMade()
  local t = self.transport
  -- One in five never reads: what it is sent piles up on the server.
  if R(5) == 1 then
    t:pauseProducing()
  end
  S.writeInPieces(t, self.text)
  -- Most go after a moment, one in eight after 2 s, unless the server ends
  -- them first (finger's answer, the limits).
  local stay = R(8) == 1 and 2 or 0.05 + 0.01 * R(20)
  reactor.callLater(stay, function()
    if t.connected then
      if R(3) == 1 then
        t:abortConnection()
      else
        t:loseConnection()
      end
    end
  end)
end

local function lost()
  inflight = inflight - 1
  spawn()
end

local function failed(_, _, reason)
  log.error("soak: a connection failed: %s", tostring(reason))
  lost()
end

function spawn()
  while inflight < CONCURRENCY and reactor.seconds() < deadline do
    inflight = inflight + 1
    stats.connections = stats.connections + 1
    local a = ATTACKS[R(#ATTACKS)]
    local p = Attacker()
    p.text = a[2]()
    local f = protocol.ClientFactory()
    f.buildProtocol = function() return p end
    f.clientConnectionLost, f.clientConnectionFailed = lost, failed
    reactor.connectTCP("127.0.0.1", PORTS[a[1]], f, { timeout = 5 })
  end
end

-- Afterwards: each service does its job --------------------------------------------

-- A client that sends lines and collects what comes back; done fires once
-- `until(text)` holds (or with what came, after 5 s).
local function talk(port, send, untilFn)
  local done = defer.Deferred()
  local P = protocol.Protocol:extend({})
  function P:connectionMade()
    self.got = ""
    for _, l in ipairs(send) do
      self.transport:write(l)
    end
  end
  function P:dataReceived(data)
    self.got = self.got .. data
    if not done.called and untilFn(self.got) then
      done:callback(self.got)
      self.transport:loseConnection()
    end
  end
  function P:connectionLost()
    if not done.called then
      done:callback(self.got)
    end
  end
  local f = protocol.ClientFactory.forProtocol(P)
  function f.clientConnectionFailed(_, _, reason)
    done:callback("(failed: " .. tostring(reason) .. ")")
  end
  reactor.connectTCP("127.0.0.1", port, f, { timeout = 5 })
  return S.within(done, 5)
end

local function checks()
  local results = {}
  local function has(name, pattern)
    return function(text)
      results[#results + 1] = { name, text:find(pattern, 1, true) ~= nil,
        text }
    end
  end
  -- A second member speaks once the first is in the room.
  local speaking = false
  local listener = talk(PORTS.chat, { "zed\n" }, function(t)
    if not speaking and t:find("* hello zed", 1, true) then
      speaking = true
      talk(PORTS.chat, { "yan\n", "still here\n" }, function()
        return false
      end)
    end
    return t:find("<yan> still here", 1, true) ~= nil
  end)
  listener:addCallback(has("chat", "<yan> still here"))
  local ds = { listener,
    talk(PORTS.echo, { "ping" }, function(t) return t == "ping" end)
      :addCallback(has("echo", "ping")),
    talk(PORTS.finger, { "ann\r\n" }, function() return false end)
      :addCallback(has("finger", "Out to lunch, back at two")),
    web.getPage("http://127.0.0.1:" .. PORTS.web .. "/", { timeout = 5 })
      :addCallbacks(has("web", "<html"), function(f)
        results[#results + 1] = { "web", false, tostring(f) }
      end),
  }
  return defer.DeferredList(ds):addCallback(function() return results end)
end

local status = 1
local function finish(results)
  local failed = {}
  for _, r in ipairs(results) do
    if not r[2] then
      failed[#failed + 1] = r[1] .. " got " .. string.format("%q",
        r[3]:sub(1, 200))
    end
  end
  status = S.verdict(unexpected, string.format("%d hostile connections;"
    .. " then echo, chat, finger and the chat page all work",
    stats.connections),
    (#failed > 0 or #results < 4) and "a service no longer works: "
      .. table.concat(failed, "; "))
  app:stopService()
  reactor.callLater(0.2, reactor.stop)
end

local function last()
  S.whenSettled(function() return inflight > 0 end, deadline, function()
    checks():addCallback(finish)
  end)
end

print(string.format("soak: %d s against echo :%d, chat :%d (web :%d),"
  .. " finger :%d (seed %s)", SECONDS, PORTS.echo, PORTS.chat, PORTS.web,
  PORTS.finger, arg[2] or "1"))
spawn()
reactor.callLater(SECONDS, last)
reactor.run()
os.exit(status)
