-- loom.web.websocket's server against raw frames written here (the
-- Autobahn cases that matter: handshake, fragmentation, control frames
-- between fragments, UTF-8, sizes, masking, close codes and the close
-- handshake, timeouts, a client that vanishes) and loom's own client.
local core = require "loom.core"
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local policies = require "loom.policies"
local testing = require "loom.testing"
local web = require "loom.web"

local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil
local waitFor = W.net.waitFor

-- Frames ------------------------------------------------------------------

local MASK = "\55\250\33\61"

local function masked(payload, key)
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(payload:byte(i) ~ key:byte((i - 1) % 4 + 1))
  end
  return table.concat(out)
end

-- frame(opcode, payload, {fin=, mask=, rsv=}) -> bytes; masked (as a
-- client must) unless mask == false.
local function frame(opcode, payload, o)
  o = o or {}
  payload = payload or ""
  local fin = o.fin == false and 0 or 0x80
  local b1 = fin | (o.rsv or 0) << 4 | opcode
  local len, ext = #payload, ""
  local m = o.mask == false and 0 or 0x80
  local b2
  if len < 126 then
    b2 = m | len
  elseif len < 65536 then
    b2, ext = m | 126, string.pack(">I2", len)
  else
    b2, ext = m | 127, string.pack(">I8", len)
  end
  if m == 0 then
    return string.char(b1, b2) .. ext .. payload
  end
  return string.char(b1, b2) .. ext .. MASK .. masked(payload, MASK)
end

local TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10

local function closeFrame(code, reason, o)
  return frame(CLOSE, string.pack(">I2", code) .. (reason or ""), o)
end

-- The frames in s (after the handshake's head): a list of {fin=, opcode=,
-- payload=, masked=}, and the bytes of an incomplete last frame.
local function parseFrames(s)
  local list, pos = {}, 1
  while #s - pos + 1 >= 2 do
    local b1, b2 = s:byte(pos, pos + 1)
    local len, at = b2 & 0x7f, pos + 2
    if len == 126 then
      if #s < at + 1 then break end
      len, at = string.unpack(">I2", s, at), at + 2
    elseif len == 127 then
      if #s < at + 7 then break end
      len, at = string.unpack(">I8", s, at), at + 8
    end
    local key
    if b2 & 0x80 ~= 0 then
      key, at = s:sub(at, at + 3), at + 4
    end
    if #s < at + len - 1 then break end
    local payload = s:sub(at, at + len - 1)
    if key then payload = masked(payload, key) end
    list[#list + 1] = { fin = b1 & 0x80 ~= 0, opcode = b1 & 0x0f,
      payload = payload, masked = key ~= nil }
    pos = at + len
  end
  return list, s:sub(pos)
end

local function closeCodeOf(f)
  if #f.payload < 2 then return nil end
  return (string.unpack(">I2", f.payload)), f.payload:sub(3)
end

-- Servers and raw clients -------------------------------------------------

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

local function handshake(path, extra)
  return "GET " .. (path or "/ws") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\n"
    .. (extra or "") .. "\r\n"
end

-- A protocol that records its events; echo = true echoes each message.
local Rec = protocol.Protocol:extend({ __name = "WSRec" })
function Rec:init()
  self.messages = {}
  self.made = defer.Deferred()
  self.lost = defer.Deferred()
end
function Rec:connectionMade() self.made:callback(self) end
function Rec:messageReceived(msg, isBinary)
  self.messages[#self.messages + 1] = { msg, isBinary }
  if self.factory.echo then
    self.transport:sendMessage(msg, isBinary)
  end
  if self.factory.onMessage then
    self.factory.onMessage(self, msg, isBinary)
  end
end
function Rec:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end

-- A Site with a WebSocketResource at /ws; server.factory.next fires with
-- each protocol built (the server side of each connection).
local function wsServer(opts, factoryFields, P)
  local f = W.net.recordingFactory(P or Rec)
  f.echo = true
  for k, v in pairs(factoryFields or {}) do f[k] = v end
  local root = web.Resource()
  root:putChild("ws", web.WebSocketResource(f, opts))
  local server = W.serve(root, { accessLog = false }, finally)
  server.factory = f
  return server
end

-- A raw client past the handshake: c.frames() parses what arrived after
-- the 101's head; returns c and the server's protocol.
local function rawWS(server, extra)
  local nextProto = server.factory.next
  local c = W.raw(server, handshake("/ws", extra))
  c:waitFor("\r\n\r\n", true)
  assert.matches("^HTTP/1.1 101 Switching Protocols\r\n", c:text())
  local proto = runUntil(nextProto, 5)
  runUntil(proto.made, 5)
  function c.frames()
    local text = c:text()
    return (parseFrames(text:sub(text:find("\r\n\r\n", 1, true) + 4)))
  end
  function c.waitFrames(n, timeout)
    waitFor(function() return #c.frames() >= n end, timeout)
    return c.frames()
  end
  return c, proto
end

-- Sends bad input, expects a close frame with code and the TCP close.
local function expectFailure(server, bytes, code, opts)
  local c, proto = rawWS(server)
  c.transport:write(bytes)
  runUntil(c.lost, 5)
  local frames = c.frames()
  local last = frames[#frames]
  assert.equals(CLOSE, last.opcode)
  assert.is_false(last.masked)
  assert.equals(code, (closeCodeOf(last)))
  runUntil(proto.lost, 5)
  assert.equals(code, proto.reason.value.code)
  assert.is_false(proto.reason.value.wasClean)
  return frames, proto, opts
end

-- Keeps the expected log lines (refusals, failures) out of the output.
local function quiet()
  log.setSink(function() end)
  W.atEnd(function() log.setSink(nil) end, finally)
end

describe("websocket: the handshake", function()
  it("computes RFC 6455's Sec-WebSocket-Accept and fresh keys", function()
    assert.equals("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", core.websocketAccept(KEY))
    local k1, k2 = core.websocketKey(), core.websocketKey()
    assert.equals(24, #k1)
    assert.matches("^[%w+/]+==$", k1)
    assert.not_equals(k1, k2)
  end)

  it("reads a header's comma-separated tokens, with spaces anywhere", function()
    local websocket = require "loom.web.websocket"
    local wide = "keep-alive," .. (" "):rep(16000) .. "x y ,  Upgrade "
    assert.is_true(websocket.hasToken(wide, "upgrade"))
    assert.is_false(websocket.hasToken("a" .. (" "):rep(16000) .. "b", "upgrade"))
    assert.same({ "keep-alive", "x y", "Upgrade" }, websocket.items(wide))
    assert.same({}, websocket.items(" , ,"))
  end)

  it("answers 101 with the accept key and hands the connection over", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local head = c:text()
    assert.matches("\r\nUpgrade: websocket\r\n", head)
    assert.matches("\r\nConnection: Upgrade\r\n", head)
    assert.matches("\r\nSec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", head)
    assert.not_matches("Content%-Length", head)
    assert.equals(proto.transport.request.path, "/ws")
    assert.equals("127.0.0.1", proto.transport:getPeer().host)
    assert.equals(server.portNumber, proto.transport:getHost().port)
  end)

  it("takes frames sent in the same read as the handshake", function()
    local server = wsServer()
    local nextProto = server.factory.next
    local c = W.raw(server, handshake("/ws") .. frame(TEXT, "early"))
    local proto = runUntil(nextProto, 5)
    waitFor(function() return #proto.messages == 1 end)
    assert.same({ "early", false }, proto.messages[1])
    c:waitFor("early", true)
  end)

  local function refused(server, request)
    local _, responses = W.exchangeUntilClosed(server, request)
    return responses[1]
  end

  it("refuses bad upgrades: 405, 426, 400, and a wrong version", function()
    quiet()
    local server = wsServer()
    local r = refused(server, "POST /ws HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
      .. "Connection: close\r\n\r\n")
    assert.equals(405, r.status)
    assert.equals("GET", r.headers.allow)
    r = refused(server, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert.equals(426, r.status)
    assert.equals("websocket", r.headers.upgrade)
    r = refused(server, (handshake("/ws"):gsub("Version: 13", "Version: 8")))
    assert.equals(426, r.status)
    assert.equals("13", r.headers["sec-websocket-version"])
    r = refused(server, (handshake("/ws"):gsub(KEY, "short==")))
    assert.equals(400, r.status)
    r = refused(server, (handshake("/ws"):gsub("Sec%-WebSocket%-Key: [^\r]*\r\n", "")))
    assert.equals(400, r.status)
    assert.equals(0, #server.factory.built)
  end)

  it("checks the Origin: same host by default, a list, or any", function()
    quiet()
    local server = wsServer()
    local r = refused(server, handshake("/ws", "Origin: http://evil.example\r\n"))
    assert.equals(403, r.status)
    local c = W.raw(server, handshake("/ws", "Origin: http://127.0.0.1\r\n"))
    c:waitFor("\r\n\r\n", true)
    assert.matches("^HTTP/1.1 101", c:text())
    -- No Origin (not a browser): allowed.
    c = W.raw(server, handshake("/ws"))
    c:waitFor("\r\n\r\n", true)
    assert.matches("^HTTP/1.1 101", c:text())
    -- DNS rebinding: an attacker's name pointed at 127.0.0.1 sends a
    -- matching Origin and Host; on loopback only loopback names pass
    local function withHost(host, origin)
      return (handshake("/ws", "Origin: " .. origin .. "\r\n")
        :gsub("Host: 127%.0%.0%.1", "Host: " .. host))
    end
    r = refused(server, withHost("evil.example:8080", "http://evil.example:8080"))
    assert.equals(403, r.status)
    for _, host in ipairs({ "localhost:8080", "app.localhost", "127.0.0.2:1" }) do
      c = W.raw(server, withHost(host, "http://" .. host))
      c:waitFor("\r\n\r\n", true)
      assert.matches("^HTTP/1.1 101", c:text(), host)
    end

    local listed = wsServer({ allowedOrigins = { "https://App.example" } })
    r = refused(listed, handshake("/ws", "Origin: http://127.0.0.1\r\n"))
    assert.equals(403, r.status)
    c = W.raw(listed, handshake("/ws", "Origin: https://app.example\r\n"))
    c:waitFor("\r\n\r\n", true)
    assert.matches("^HTTP/1.1 101", c:text())

    local any = wsServer({ allowedOrigins = "*" })
    c = W.raw(any, handshake("/ws", "Origin: http://evil.example\r\n"))
    c:waitFor("\r\n\r\n", true)
    assert.matches("^HTTP/1.1 101", c:text())
  end)

  it("picks the first of its subprotocols the client offers", function()
    local server = wsServer({ protocols = { "v2", "v1" } })
    local c, proto = rawWS(server, "Sec-WebSocket-Protocol: v1, v2\r\n")
    assert.matches("\r\nSec%-WebSocket%-Protocol: v2\r\n", c:text())
    assert.equals("v2", proto.transport.subprotocol)
    c, proto = rawWS(server, "Sec-WebSocket-Protocol: other\r\n")
    assert.not_matches("Sec%-WebSocket%-Protocol", c:text())
    assert.is_nil(proto.transport.subprotocol)
  end)

  it("rejects bad options with one clear line", function()
    local f = protocol.Factory.forProtocol(Rec)
    assert.has_error(function() web.WebSocketResource({}) end,
      "WebSocketResource: the factory must have buildProtocol (protocol.Factory.forProtocol(P))")
    assert.has_error(function() web.WebSocketResource(f, { maxMessage = 1 }) end,
      "WebSocketResource: unknown option maxMessage")
    assert.has_error(function() web.WebSocketResource(f, { maxMessageSize = 0 }) end,
      "WebSocketResource: maxMessageSize must be a positive integer")
  end)
end)

describe("websocket: messages", function()
  it("echoes text and binary messages, each a Lua call with isBinary", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(TEXT, "héllo") .. frame(BINARY, "\0\1\2\255"))
    local frames = c.waitFrames(2)
    assert.same({ { "héllo", false }, { "\0\1\2\255", true } }, proto.messages)
    assert.equals(TEXT, frames[1].opcode)
    assert.equals("héllo", frames[1].payload)
    assert.is_false(frames[1].masked) -- a server never masks
    assert.equals(BINARY, frames[2].opcode)
  end)

  it("sizes: empty, 125, 126, 65535, 65536 and 1 MiB - 1 bytes", function()
    -- No idle pings in between (valgrind makes this spec take a while).
    local server = wsServer({ idleTimeout = math.huge })
    local c, proto = rawWS(server)
    local sizes = { 0, 125, 126, 65535, 65536, 1024 * 1024 - 1 }
    for _, n in ipairs(sizes) do
      c.transport:write(frame(BINARY, string.rep("z", n)))
    end
    local frames = c.waitFrames(#sizes, 10)
    for i, n in ipairs(sizes) do
      assert.equals(n, #proto.messages[i][1])
      assert.equals(n, #frames[i].payload)
    end
  end)

  it("delivers many messages of one read in order", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local parts = {}
    for i = 1, 500 do parts[i] = frame(TEXT, tostring(i)) end
    c.transport:write(table.concat(parts))
    waitFor(function() return #proto.messages == 500 end)
    for i = 1, 500 do assert.equals(tostring(i), proto.messages[i][1]) end
  end)

  it("reassembles fragments, a byte at a time too", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local bytes = frame(TEXT, "Hel", { fin = false }) .. frame(CONT, "lo, ", { fin = false })
      .. frame(CONT, "world")
    for i = 1, #bytes do
      c.transport:write(bytes:sub(i, i))
    end
    c.waitFrames(1)
    assert.same({ { "Hello, world", false } }, proto.messages)
  end)

  it("answers pings between fragments and still reassembles", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(BINARY, "ab", { fin = false }) .. frame(PING, "p1")
      .. frame(CONT, "cd", { fin = false }) .. frame(PONG, "unsolicited")
      .. frame(CONT, "ef"))
    local frames = c.waitFrames(2)
    local byOp = {}
    for _, f in ipairs(frames) do byOp[f.opcode] = f.payload end
    assert.equals("p1", byOp[PONG])
    assert.equals("abcdef", byOp[BINARY])
    assert.same({ { "abcdef", true } }, proto.messages)
  end)

  it("takes a UTF-8 character split across fragments", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local s = "€uro" -- \226\130\172
    c.transport:write(frame(TEXT, s:sub(1, 2), { fin = false }) .. frame(CONT, s:sub(3)))
    c.waitFrames(1)
    assert.same({ { s, false } }, proto.messages)
  end)

  it("ping(data) gets a pong, delivered to pongReceived", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local pongs = {}
    function proto:pongReceived(data) pongs[#pongs + 1] = data end
    assert.is_true(proto.transport:ping("are you there"))
    local frames = c.waitFrames(1)
    assert.equals(PING, frames[1].opcode)
    assert.equals("are you there", frames[1].payload)
    c.transport:write(frame(PONG, frames[1].payload))
    waitFor(function() return #pongs == 1 end)
    assert.equals("are you there", pongs[1])
    assert.has_error(function() proto.transport:ping(string.rep("x", 126)) end)
  end)

  it("refuses to send a text message that is not UTF-8", function()
    local server = wsServer()
    local _, proto = rawWS(server)
    assert.has_error(function() proto.transport:sendMessage("\255") end,
      "sendMessage: a text message must be UTF-8 (send bytes with isBinary = true)")
    assert.is_true(proto.transport:sendMessage("\255", true))
  end)

  it("a raising messageReceived is logged and drops only its connection", function()
    local events = {}
    quiet()
    local obs = log.addObserver(function(ev) events[#events + 1] = ev end)
    W.atEnd(function() log.removeObserver(obs) end, finally)
    local server = wsServer(nil, { onMessage = function(_, msg)
      if msg == "boom" then error("kaboom") end
    end })
    local c1 = rawWS(server)
    local c2, p2 = rawWS(server)
    c1.transport:write(frame(TEXT, "boom"))
    runUntil(c1.lost, 5)
    c2.transport:write(frame(TEXT, "still here"))
    c2.waitFrames(1)
    assert.equals("still here", p2.messages[1][1])
    local text = {}
    for _, ev in ipairs(events) do text[#text + 1] = ev.text end
    assert.matches("kaboom", table.concat(text, "\n"))
  end)
end)

describe("websocket: a protocol without messageReceived", function()
  it("drops the messages (as Protocol drops data without dataReceived) and"
    .. " goes on", function()
    local Deaf = protocol.Protocol:extend({ __name = "WSDeaf",
      init = Rec.init, connectionMade = Rec.connectionMade,
      connectionLost = Rec.connectionLost })
    local errors = {}
    local obs = log.addObserver(function(ev)
      if ev.level == "error" then errors[#errors + 1] = ev.text end
    end)
    W.atEnd(function() log.removeObserver(obs) end, finally)
    local server = wsServer(nil, nil, Deaf)
    local c, proto = rawWS(server)
    c.transport:write(frame(TEXT, "nobody listens") .. frame(BINARY, "\0\1")
      .. frame(PING, "still?"))
    local frames = c.waitFrames(1)
    assert.equals(PONG, frames[1].opcode)
    assert.equals("still?", frames[1].payload)
    c.transport:write(closeFrame(1000, "done"))
    runUntil(c.lost, 5)
    runUntil(proto.lost, 5)
    assert.equals(1000, proto.reason.value.code)
    assert.is_true(proto.reason.value.wasClean)
    assert.same({}, errors)
  end)
end)

describe("websocket: protocol errors fail the connection", function()
  it("an unmasked client frame: 1002", function()
    quiet()
    expectFailure(wsServer(), frame(TEXT, "hi", { mask = false }), 1002)
  end)

  it("invalid UTF-8 in a text message: 1007", function()
    quiet()
    expectFailure(wsServer(), frame(TEXT, "ok\192\128"), 1007)
  end)

  it("invalid UTF-8 split across fragments: 1007", function()
    quiet()
    -- \237\160\128 is a surrogate (U+D800): each fragment alone looks fine.
    local frames, proto = expectFailure(wsServer(),
      frame(TEXT, "a\237", { fin = false }) .. frame(CONT, "\160\128z"), 1007)
    assert.same({}, proto.messages)
    assert.equals(1, #frames)
  end)

  it("a message over maxMessageSize: 1009, in one frame or in fragments", function()
    quiet()
    local server = wsServer({ maxMessageSize = 1000 })
    expectFailure(server, frame(BINARY, string.rep("x", 1001)), 1009)
    expectFailure(server, frame(BINARY, string.rep("x", 600), { fin = false })
      .. frame(CONT, string.rep("x", 600)), 1009)
    -- 1000 bytes exactly pass.
    local c, proto = rawWS(server)
    c.transport:write(frame(BINARY, string.rep("x", 1000)))
    c.waitFrames(1)
    assert.equals(1000, #proto.messages[1][1])
  end)

  it("a frame announcing 2^62 bytes: 1009 at its first bytes", function()
    quiet()
    local bytes = string.char(0x82, 0xff) .. string.pack(">I8", 1 << 62) .. MASK
      .. "xyz"
    expectFailure(wsServer(), bytes, 1009)
  end)

  it("control frames over 125 bytes or fragmented: 1002", function()
    quiet()
    expectFailure(wsServer(), frame(PING, string.rep("p", 126)), 1002)
    expectFailure(wsServer(), frame(PING, "p", { fin = false }), 1002)
  end)

  it("reserved opcodes and bits, stray continuations: 1002", function()
    quiet()
    local server = wsServer()
    expectFailure(server, frame(3, "x"), 1002)
    expectFailure(server, frame(11, "x"), 1002)
    expectFailure(server, frame(TEXT, "x", { rsv = 4 }), 1002)
    expectFailure(server, frame(CONT, "x"), 1002)
    expectFailure(server, frame(TEXT, "a", { fin = false }) .. frame(TEXT, "b"), 1002)
  end)

  it("invalid close codes and payloads: 1002 (1007 for a bad reason)", function()
    quiet()
    local server = wsServer()
    for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1016, 2000, 2999, 5000 }) do
      expectFailure(server, closeFrame(code), 1002)
    end
    expectFailure(server, frame(CLOSE, "\3"), 1002) -- a 1-byte payload
    expectFailure(server, closeFrame(1000, "\255"), 1007)
  end)
end)

describe("websocket: closing", function()
  it("answers a close, echoing its code, then closes TCP first", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(closeFrame(1000, "bye"))
    runUntil(c.lost, 5)
    local frames = c.frames()
    assert.equals(1, #frames)
    assert.equals(CLOSE, frames[1].opcode)
    assert.equals(1000, (closeCodeOf(frames[1])))
    runUntil(proto.lost, 5)
    local v = proto.reason.value
    assert.is_true(v:isa(require("loom.error").ConnectionDone))
    assert.same({ 1000, "bye", true }, { v.code, v.reason, v.wasClean })
  end)

  it("a close without a code is 1005 to the protocol; valid app codes pass", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(CLOSE, ""))
    runUntil(c.lost, 5)
    runUntil(proto.lost, 5)
    assert.equals(1005, proto.reason.value.code)
    c, proto = rawWS(server)
    c.transport:write(closeFrame(4999, "app"))
    runUntil(proto.lost, 5)
    assert.same({ 4999, "app" }, { proto.reason.value.code, proto.reason.value.reason })
  end)

  it("delivers the messages before a close, and sends nothing after it", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(TEXT, "last") .. closeFrame(1001) .. frame(TEXT, "ignored"))
    runUntil(c.lost, 5)
    local frames = c.frames()
    assert.same({ { "last", false } }, proto.messages)
    assert.equals(2, #frames)
    assert.equals("last", frames[1].payload) -- the echo goes before the close
    assert.equals(CLOSE, frames[2].opcode)
    assert.is_false(proto.transport:sendMessage("late"))
  end)

  it("a close between the fragments of a message ends it undelivered", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(TEXT, "never ", { fin = false }) .. frame(PING, string.rep("p", 125))
      .. closeFrame(1000, "mid-message"))
    runUntil(c.lost, 5)
    -- The pong may be left out: the close came before it could go (RFC
    -- 6455 5.5.2), and wslay sends nothing but the close then.
    local frames = c.frames()
    assert.equals(1, #frames)
    assert.equals(CLOSE, frames[1].opcode)
    runUntil(proto.lost, 5)
    assert.same({}, proto.messages)
    assert.same({ 1000, "mid-message", true }, { proto.reason.value.code,
      proto.reason.value.reason, proto.reason.value.wasClean })
  end)

  it("loseConnection(code, reason) starts the handshake; the server closes", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    proto.transport:loseConnection(4001, "done here")
    local frames = c.waitFrames(1)
    assert.equals(CLOSE, frames[1].opcode)
    assert.same({ 4001, "done here" }, { closeCodeOf(frames[1]) })
    assert.is_false(proto.transport:sendMessage("too late"))
    c.transport:write(closeFrame(4001))
    runUntil(c.lost, 5)
    runUntil(proto.lost, 5)
    assert.is_true(proto.reason.value.wasClean)
    assert.equals(4001, proto.reason.value.code)
  end)

  it("loseConnection checks its code and reason", function()
    local server = wsServer()
    local _, proto = rawWS(server)
    local t = proto.transport
    assert.has_error(function() t:loseConnection(1005) end)
    assert.has_error(function() t:loseConnection(2000) end)
    assert.has_error(function() t:loseConnection(1000, string.rep("r", 124)) end)
    assert.has_error(function() t:loseConnection(1000, "\255") end)
  end)

  it("aborts after closeTimeout when the peer never answers the close", function()
    local server = wsServer({ closeTimeout = 0.2 })
    local c, proto = rawWS(server)
    proto.transport:loseConnection()
    c.waitFrames(1)
    runUntil(c.lost, 5)
    runUntil(proto.lost, 5)
    assert.is_false(proto.reason.value.wasClean)
    assert.equals(1006, proto.reason.value.code)
  end)

  it("a client that vanishes: connectionLost with 1006, not clean", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    c.transport:write(frame(TEXT, "half", { fin = false }))
    c.transport:abortConnection()
    runUntil(proto.lost, 5)
    assert.is_true(proto.reason.value:isa(require("loom.error").ConnectionLost))
    assert.equals(1006, proto.reason.value.code)
    assert.is_false(proto.reason.value.wasClean)
  end)

  it("pings a silent peer at idleTimeout/2 and closes 1001 at idleTimeout", function()
    quiet()
    local server = wsServer({ idleTimeout = 0.4, closeTimeout = 0.3 })
    local c, proto = rawWS(server)
    local frames = c.waitFrames(1, 3)
    assert.equals(PING, frames[1].opcode)
    frames = c.waitFrames(2, 3)
    assert.equals(CLOSE, frames[2].opcode)
    assert.equals(1001, (closeCodeOf(frames[2])))
    runUntil(proto.lost, 5)
  end)

  it("keeps a peer that answers pings", function()
    local server = wsServer({ idleTimeout = 0.3 })
    local c, proto = rawWS(server)
    local answered = 0
    function c:onData()
      for i = answered + 1, #c.frames() do
        local f = c.frames()[i]
        if f.opcode == PING then
          c.transport:write(frame(PONG, f.payload))
        end
        answered = i
      end
    end
    W.net.sleep(1)
    assert.is_true(proto.transport.connected)
    assert.is_true(#c.frames() >= 2)
  end)
end)

describe("websocket: backpressure", function()
  it("pauses a registered producer while the peer does not read", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    local paused, resumed = 0, 0
    local producer = {
      pauseProducing = function() paused = paused + 1 end,
      resumeProducing = function() resumed = resumed + 1 end,
      stopProducing = function() end,
    }
    proto.transport:registerProducer(producer, true)
    c.transport:pauseProducing()
    local chunk = string.rep("b", 64 * 1024)
    for _ = 1, 200 do
      if paused > 0 then break end
      proto.transport:sendMessage(chunk, true)
      W.net.sleep(0.01)
    end
    assert.equals(1, paused)
    c.transport:resumeProducing()
    waitFor(function() return resumed == 1 end, 10)
  end)

  it("pauseProducing stops messageReceived until resumeProducing", function()
    local server = wsServer()
    local c, proto = rawWS(server)
    proto.transport:pauseProducing()
    c.transport:write(frame(TEXT, "wait"))
    W.net.sleep(0.1)
    assert.same({}, proto.messages)
    proto.transport:resumeProducing()
    waitFor(function() return #proto.messages == 1 end)
    assert.is_nil(policies.applyBackpressure(proto))
  end)
end)

describe("websocket: loom's client against loom's server", function()
  local function wsURL(server, path)
    return string.format("ws://127.0.0.1:%d%s", server.portNumber, path or "/ws")
  end

  local function connect(server, opts, path)
    local f = W.net.recordingFactory(Rec)
    local d = web.connectWebSocket(wsURL(server, path), f, opts)
    return d, f
  end

  it("echoes, with masked frames, and closes cleanly on both sides", function()
    local server = wsServer({ protocols = { "chat" } })
    local serverNext = server.factory.next
    local d = connect(server, { protocols = { "x", "chat" } })
    local client = runUntil(d, 5)
    local sproto = runUntil(serverNext, 5)
    assert.equals("chat", client.transport.subprotocol)
    client.transport:sendMessage("hi")
    client.transport:sendMessage(string.rep("\0", 70000), true)
    waitFor(function() return #client.messages == 2 end)
    assert.same({ "hi", false }, client.messages[1])
    assert.equals(70000, #client.messages[2][1])
    assert.is_true(client.messages[2][2])
    client.transport:loseConnection(4000, "bye")
    runUntil(client.lost, 5)
    runUntil(sproto.lost, 5)
    assert.same({ 4000, "bye", true }, { client.reason.value.code,
      client.reason.value.reason, client.reason.value.wasClean })
    assert.same({ 4000, "bye", true }, { sproto.reason.value.code,
      sproto.reason.value.reason, sproto.reason.value.wasClean })
  end)

  it("the server closing: the client answers and sees a clean close", function()
    local server = wsServer()
    local serverNext = server.factory.next
    local client = runUntil((connect(server)), 5)
    local sproto = runUntil(serverNext, 5)
    sproto.transport:loseConnection(1001, "restart")
    runUntil(client.lost, 5)
    assert.same({ 1001, "restart", true }, { client.reason.value.code,
      client.reason.value.reason, client.reason.value.wasClean })
  end)

  it("a refused handshake errbacks with WebSocketHandshakeError", function()
    quiet()
    local server = wsServer()
    local d = connect(server, nil, "/nothere")
    local ok, f = pcall(runUntil, d, 5)
    assert.is_false(ok)
    assert.is_true(f.value:isa(web.WebSocketHandshakeError))
    assert.matches("answered 404", f.value.message)
  end)

  it("checks the server's accept key", function()
    -- A server that answers 101 with a wrong key.
    local Liar = protocol.Protocol:extend({ __name = "Liar" })
    function Liar:dataReceived()
      self.transport:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")
    end
    local port = W.net.listen(protocol.Factory.forProtocol(Liar))
    W.atEnd(function() runUntil(port:stopListening()) end, finally)
    local d = web.connectWebSocket("ws://127.0.0.1:" .. port:getHost().port .. "/",
      protocol.Factory.forProtocol(Rec))
    local ok, f = pcall(runUntil, d, 5)
    assert.is_false(ok)
    assert.matches("wrong Sec%-WebSocket%-Accept", f.value.message)
  end)

  it("refuses an answer with Sec-WebSocket-Accept twice", function()
    local Twice = protocol.Protocol:extend({ __name = "Twice" })
    function Twice:dataReceived(data)
      local key = data:match("Sec%-WebSocket%-Key: ([^\r]+)")
      self.transport:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Accept: garbage\r\n"
        .. "Sec-WebSocket-Accept: " .. core.websocketAccept(key) .. "\r\n\r\n")
    end
    local port = W.net.listen(protocol.Factory.forProtocol(Twice))
    W.atEnd(function() runUntil(port:stopListening()) end, finally)
    local d = web.connectWebSocket("ws://127.0.0.1:" .. port:getHost().port .. "/",
      protocol.Factory.forProtocol(Rec))
    local ok, f = pcall(runUntil, d, 5)
    assert.is_false(ok)
    assert.matches("Sec%-WebSocket%-Accept twice", f.value.message)
  end)

  it("refuses CR, LF or NUL and the handshake's own fields in opts", function()
    local f = protocol.Factory.forProtocol(Rec)
    local url = "ws://127.0.0.1:1/"
    for _, case in ipairs({
      { { headers = { ["X-A"] = "a\r\nX-Injected: 1" } }, "X%-A: CR, LF or NUL" },
      { { headers = { ["X\r\nY"] = "1" } }, "bad header name" },
      { { headers = { Host = "other" } }, "Host is set by the handshake" },
      { { headers = { ["Sec-WebSocket-Key"] = "k" } }, "set by the handshake" },
      { { headers = { Origin = "o" } }, "Origin is opts.origin" },
      { { headers = { ["X-A"] = "1", ["x-a"] = "2" } }, "given twice" },
      { { origin = "http://o\r\nX-Injected: 1" }, "CR, LF or NUL in opts.origin" },
      { { protocols = { "p\r\nX: 1" } }, "opts.protocols%[1%] must be a token" },
    }) do
      local ok, e = pcall(web.connectWebSocket, url, f, case[1])
      assert.is_false(ok)
      if case[2] then assert.matches(case[2], e) end
    end
    -- a value given as a list is one line each, as Agent's
    local ok, e = pcall(web.connectWebSocket, url, f, { headers = { ["X-A"] = { true } } })
    assert.is_false(ok)
    assert.matches("value must be a string", e)
  end)

  it("errbacks (and logs) when the factory or connectionMade raises", function()
    quiet()
    local server = wsServer()
    for _, broken in ipairs({ "factory", "protocol" }) do
      local Boom = protocol.Protocol:extend({ __name = "Boom" })
      function Boom:connectionMade() error("connectionMade boom") end
      local factory = protocol.Factory.forProtocol(Boom)
      if broken == "factory" then
        function factory.buildProtocol() error("factory boom") end
      end
      local d = web.connectWebSocket(wsURL(server), factory, { timeout = 5 })
      local ok, f = pcall(runUntil, d, 3)
      assert.is_false(ok)
      assert.is_true(f.value:isa(web.WebSocketHandshakeError))
      assert.matches(broken == "factory" and "the factory raised"
        or "connectionMade raised", f.value.message)
    end
  end)

  it("fails on masked frames from a server (1002)", function()
    quiet()
    local Masker = protocol.Protocol:extend({ __name = "Masker" })
    function Masker:dataReceived(data)
      local key = data:match("Sec%-WebSocket%-Key: ([^\r]+)")
      if key then
        self.transport:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. core.websocketAccept(key)
          .. "\r\n\r\n" .. frame(TEXT, "masked!"))
      end
    end
    local port = W.net.listen(protocol.Factory.forProtocol(Masker))
    W.atEnd(function() runUntil(port:stopListening()) end, finally)
    local f = W.net.recordingFactory(Rec)
    local client = runUntil(web.connectWebSocket("ws://127.0.0.1:" .. port:getHost().port
      .. "/", f, { closeTimeout = 0.5 }), 5)
    runUntil(client.lost, 5)
    assert.same({}, client.messages)
    assert.equals(1002, client.reason.value.code)
  end)

  it("bad URLs fail with one clear line", function()
    local f = protocol.Factory.forProtocol(Rec)
    local ok, e = pcall(runUntil, web.connectWebSocket("http://x/", f), 1)
    assert.is_false(ok)
    assert.is_true(e.value:isa(web.InvalidURL))
    assert.matches("the scheme must be ws or wss", e.value.message)
    ok, e = pcall(runUntil, web.connectWebSocket("ws://a b/", f), 1)
    assert.is_false(ok)
    assert.is_true(e.value:isa(web.InvalidURL))
    assert.has_error(function() web.connectWebSocket("ws://x/", f, { bogus = 1 }) end,
      "connectWebSocket: unknown option bogus")
  end)

  it("a refused connect errbacks with the connect's error", function()
    local port = W.net.listen(protocol.Factory.forProtocol(Rec))
    local n = port:getHost().port
    runUntil(port:stopListening())
    local d = web.connectWebSocket("ws://127.0.0.1:" .. n .. "/",
      protocol.Factory.forProtocol(Rec))
    local ok, f = pcall(runUntil, d, 5)
    assert.is_false(ok)
    assert.matches("ConnectionRefused", tostring(f.value))
  end)

  it("a handshake that never comes errbacks after timeout", function()
    local Mute = protocol.Protocol:extend({ __name = "Mute" })
    local port = W.net.listen(protocol.Factory.forProtocol(Mute))
    W.atEnd(function() runUntil(port:stopListening()) end, finally)
    local d = web.connectWebSocket("ws://127.0.0.1:" .. port:getHost().port .. "/",
      protocol.Factory.forProtocol(Rec), { timeout = 0.2 })
    local ok, f = pcall(runUntil, d, 5)
    assert.is_false(ok)
    assert.matches("no handshake answer in 0.2s", f.value.message)
  end)
end)
