-- Hostile WebSocket peers, for `make soak` (under the ASan and UBSan
-- build), SECONDS for each side:
--   server: 50 connections at a time to a WebSocketResource echo send a
--     handshake (sometimes mutated), then frames of every kind: text (UTF-8
--     or not), binary, fragments, pings and pongs, closes with good and bad
--     codes, reserved bits and opcodes, unmasked frames, lengths that lie
--     or pass maxMessageSize; the bytes sometimes mutated, written in
--     pieces, the connection closed, aborted or left open;
--   client: connectWebSocket, 50 at a time, to a server that answers the
--     handshake (rightly, wrongly or not at all) and then sends such
--     frames, while the client sends messages and pings.
--   loom run fuzz/websocket_soak.lua [SECONDS [SEED]]  (default 30 s, seed 1)
-- Passes (exit 0) when nothing was logged as an error, every client
-- connection settled (handshake failed, or connectionLost once), and a
-- clean echo works at the end; the sanitizers abort on any invalid access.
local core = require "loom.core"
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local web = require "loom.web"

local SECONDS = tonumber(arg[1]) or 30
local CONCURRENCY = 50
local LIMITS = { maxMessageSize = 65536, closeTimeout = 1, idleTimeout = 2 }
local S = dofile("fuzz/soak.lua").new(tonumber(arg[2]) or 1)
local R, bytes, mutate = S.R, S.bytes, S.mutate

-- Frames ----------------------------------------------------------------------

local frame = S.wsFrame

local TEXTS = { "hello", "héllo wörld", "\xe2\x82", "\xff\xfe", "",
  ("x"):rep(200), "\xf0\x9f\x98\x80 ok" }

-- A random frame (or fragmented message) as a peer sending `masked` would
-- send it, or not.
local function randomFrames(masked)
  local pick = R(14)
  local m = masked
  if R(15) == 1 then
    m = not masked -- the wrong masking: 1002
  end
  if pick <= 3 then
    return frame(true, 0, 1, m, TEXTS[R(#TEXTS)])
  elseif pick == 4 then
    return frame(true, 0, 2, m, bytes(R(300)))
  elseif pick == 5 then -- a fragmented text, a ping among its fragments
    local s = TEXTS[R(#TEXTS)] .. TEXTS[R(#TEXTS)]
    local cut = R(#s + 1) - 1
    return frame(false, 0, 1, m, s:sub(1, cut))
      .. (R(2) == 1 and frame(true, 0, 9, m, "p") or "")
      .. frame(true, 0, 0, m, s:sub(cut + 1))
  elseif pick == 6 then
    return frame(true, 0, 9, m, bytes(R(2) == 1 and R(125) or 126 + R(50)))
  elseif pick == 7 then
    return frame(true, 0, 10, m, bytes(R(20)))
  elseif pick == 8 then -- a close: good, bad or odd codes and reasons
    local codes = { 1000, 1001, 1002, 1005, 1006, 999, 1016, 3000, 4999,
      5000, 1011 }
    local payload = R(5) == 1 and bytes(1)
      or string.pack(">I2", codes[R(#codes)]) .. TEXTS[R(#TEXTS)]
    return frame(true, 0, 8, m, R(6) == 1 and "" or payload)
  elseif pick == 9 then -- reserved bits or opcodes
    return frame(true, R(7), R(2) == 1 and 1 or 3 + R(4), m, "r")
  elseif pick == 10 then -- a continuation with nothing to continue
    return frame(true, 0, 0, m, "c")
  elseif pick == 11 then -- a length that lies
    return frame(true, 0, 2, m, bytes(R(50)), R(2) == 1 and R(100) or 2 ^ 40)
  elseif pick == 12 then -- past maxMessageSize, in one frame or fragments
    if R(2) == 1 then
      return frame(true, 0, 2, m, bytes(70000))
    end
    return frame(false, 0, 2, m, bytes(40000))
      .. frame(true, 0, 0, m, bytes(40000))
  elseif pick == 13 then -- a new message inside a fragmented one
    return frame(false, 0, 1, m, "a") .. frame(true, 0, 1, m, "b")
  end
  return bytes(R(40)) -- noise
end

-- Writes text in random pieces; then closes, aborts or leaves it open.
local function sendInPieces(t, text)
  S.writeInPieces(t, text, ({ "close", "abort" })[R(4)])
end

local function streamOf(masked)
  local parts = {}
  for i = 1, R(8) do
    parts[i] = randomFrames(masked)
  end
  local s = table.concat(parts)
  return R(4) == 1 and mutate(s) or s
end

-- Errors logged: any is loom's --------------------------------------------------

local unexpected = S.watchErrors()

-- The server side: hostile clients against an echo ------------------------------

local Echo = protocol.Protocol:extend({ __name = "SoakEcho" })
function Echo:messageReceived(message, isBinary)
  -- false once closing: nothing more is sent, nothing to do
  self.transport:sendMessage(message, isBinary)
end

local root = web.Resource()
root:putChild("ws", web.WebSocketResource(protocol.Factory.forProtocol(Echo),
  LIMITS))
local sitePort = reactor.listenTCP(0, web.Site(root, { accessLog = false }),
  { interface = "127.0.0.1" }):getHost().port

local HANDSHAKE = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" .. sitePort
  .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
  .. "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

local HostileClient = protocol.Protocol:extend({ __name = "HostileWSClient" })
function HostileClient:connectionMade()
  local hs = R(8) == 1 and mutate(HANDSHAKE) or HANDSHAKE
  sendInPieces(self.transport, hs .. streamOf(true))
  local t = self.transport
  reactor.callLater(0.05 + 0.01 * R(10), function()
    if t.connected then
      t:loseConnection()
    end
  end)
end

-- The client side: connectWebSocket against a hostile server --------------------

local HostileServer = protocol.Protocol:extend({ __name = "HostileWSServer" })
function HostileServer:connectionMade()
  self.buffer = ""
end
function HostileServer:dataReceived(data)
  if self.answered then
    return
  end
  self.buffer = self.buffer .. data
  local key = self.buffer:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]*)")
  if not self.buffer:find("\r\n\r\n", 1, true) then
    if #self.buffer > 65536 then
      self.transport:loseConnection()
    end
    return
  end
  self.answered = true
  local pick = R(10)
  if pick == 1 then
    return -- no answer: the client's timeout ends it
  end
  local accept = key and core.websocketAccept(key) or "nope"
  if pick == 2 then
    accept = "d3Jvbmcgd3Jvbmcgd3Jvbmc="
  end
  local answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. accept .. "\r\n"
    .. (pick == 3 and "Sec-WebSocket-Extensions: permessage-deflate\r\n" or "")
    .. "\r\n"
  if pick == 4 then
    answer = mutate(answer)
  end
  sendInPieces(self.transport, answer .. streamOf(false))
end
local hostilePort = reactor.listenTCP(0,
  protocol.Factory.forProtocol(HostileServer), { interface = "127.0.0.1" })
  :getHost().port

-- A client protocol that sends, pings and closes, and says when it is lost.
local Talker = protocol.Protocol:extend({ __name = "SoakTalker" })
function Talker:connectionMade()
  local t = self.transport
  for _ = 1, R(4) do
    local pick = R(4)
    if pick == 1 then
      t:sendMessage(R(2) == 1 and TEXTS[1] or TEXTS[2])
    elseif pick == 2 then
      t:sendMessage(bytes(R(100)), true)
    elseif pick == 3 then
      t:ping("soak")
    else
      t:loseConnection(1000, "bye")
    end
  end
end
function Talker:connectionLost()
  if self.lostOnce then
    log.error("soak: connectionLost twice")
  end
  self.lostOnce = true
  self.done()
end

-- Phases ----------------------------------------------------------------------

local stats = { server = 0, client = 0, refused = 0, lost = 0 }
local outstanding, inflight = {}, 0
local phase, deadline = "server", reactor.seconds() + SECONDS
local spawn

local function ended()
  inflight = inflight - 1
  spawn()
end

local hostileClients = protocol.ClientFactory.forProtocol(HostileClient)
function hostileClients:clientConnectionLost()
  ended()
end
function hostileClients:clientConnectionFailed(_, reason)
  log.error("soak: a connection failed: %s", tostring(reason))
  ended()
end

local function connectClient(id)
  local settledOnce = false
  local function settle(lost)
    if settledOnce then
      log.error("soak: client %d settled twice", id)
      return
    end
    settledOnce = true
    outstanding[id] = nil
    stats[lost and "lost" or "refused"] = stats[lost and "lost" or "refused"]
      + 1
    ended()
  end
  local factory = protocol.Factory()
  function factory.buildProtocol()
    local p = Talker()
    p.done = function() settle(true) end
    return p
  end
  local opts = { timeout = 1 }
  for k, v in pairs(LIMITS) do
    opts[k] = v
  end
  web.connectWebSocket("ws://127.0.0.1:" .. hostilePort .. "/x", factory, opts)
    :addErrback(function() settle(false) end)
end

function spawn()
  while inflight < CONCURRENCY and reactor.seconds() < deadline do
    inflight = inflight + 1
    if phase == "server" then
      stats.server = stats.server + 1
      reactor.connectTCP("127.0.0.1", sitePort, hostileClients,
        { timeout = 5 })
    else
      stats.client = stats.client + 1
      outstanding[stats.client] = true
      connectClient(stats.client)
    end
  end
end

local status = 1
local function finish(echoed)
  local left = S.count(outstanding)
  status = S.verdict(unexpected, string.format("%d hostile clients served;"
    .. " %d client connections (%d refused at the handshake, %d lost after"
    .. " it); then a clean echo", stats.server, stats.client, stats.refused,
    stats.lost),
    left > 0 and left .. " client connections never settled",
    echoed ~= "final" and "the last echo got " .. tostring(echoed))
  reactor.stop()
end

-- A clean echo through the server, once the soak is over.
local function cleanEcho()
  local got = defer.Deferred()
  local Final = protocol.Protocol:extend({})
  function Final:connectionMade()
    self.transport:sendMessage("final")
  end
  function Final:messageReceived(message)
    got:callback(message)
    self.transport:loseConnection()
  end
  local factory = protocol.Factory.forProtocol(Final)
  web.connectWebSocket("ws://127.0.0.1:" .. sitePort .. "/ws", factory,
    { timeout = 5 }):addErrback(function(f) got:errback(f) end)
  S.within(got, 5):addCallbacks(finish, function(f) finish(tostring(f)) end)
end

-- After each phase's last connections end (bounded), the next.
local next_phase
local function phaseOver()
  if phase == "server" then
    phase, deadline = "client", reactor.seconds() + SECONDS
    spawn()
    return reactor.callLater(SECONDS, next_phase)
  end
  cleanEcho()
end
function next_phase()
  S.whenSettled(function() return inflight > 0 end, deadline, phaseOver)
end

print(string.format("soak: %d s each side, the echo on 127.0.0.1:%d, the"
  .. " hostile server on 127.0.0.1:%d (seed %s)", SECONDS, sitePort,
  hostilePort, arg[2] or "1"))
spawn()
reactor.callLater(SECONDS, next_phase)
reactor.run()
os.exit(status)
