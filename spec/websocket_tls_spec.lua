-- WebSocket over TLS (wss://): loom's client and Python's websockets
-- against a Site on listenSSL, certificates from spec/support/mkcerts.sh.
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local testing = require "loom.testing"
local web = require "loom.web"

local tls = dofile("spec/support/tls.lua")
local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil

teardown(function()
  tls.closePorts()
  tls.cleanup()
end)

local Rec = protocol.Protocol:extend({ __name = "WSSRec" })
function Rec:init()
  self.messages = {}
  self.lost = defer.Deferred()
end
function Rec:messageReceived(msg, isBinary)
  self.messages[#self.messages + 1] = { msg, isBinary }
  if self.factory.echo then
    self.transport:sendMessage(msg, isBinary)
  end
end
function Rec:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end

-- A Site on TLS with a WebSocketResource at /ws (echoing).
local function wssServer()
  local f = W.net.recordingFactory(Rec)
  f.echo = true
  local root = web.Resource()
  root:putChild("ws", web.WebSocketResource(f))
  local port = tls.listen(web.Site(root, { accessLog = false }))
  return { factory = f, port = port,
    url = "wss://127.0.0.1:" .. port:getHost().port .. "/ws" }
end

describe("websocket over TLS (wss://)", function()
  it("loom's client and server: echo and a clean close, verified", function()
    local server = wssServer()
    local serverNext = server.factory.next
    local cf = W.net.recordingFactory(Rec)
    local client = runUntil(web.connectWebSocket(server.url, cf,
      { tls = tls.clientOptions() }), 5)
    local sproto = runUntil(serverNext, 5)
    client.transport:sendMessage("over TLS")
    client.transport:sendMessage(string.rep("\7", 100000), true)
    W.net.waitFor(function() return #client.messages == 2 end)
    assert.same({ "over TLS", false }, client.messages[1])
    assert.equals(100000, #client.messages[2][1])
    client.transport:loseConnection(1000, "bye")
    runUntil(client.lost, 5)
    runUntil(sproto.lost, 5)
    assert.is_true(client.reason.value.wasClean)
    assert.same({ 1000, "bye", true }, { sproto.reason.value.code,
      sproto.reason.value.reason, sproto.reason.value.wasClean })
  end)

  it("a server the client cannot verify: the Deferred fails with TLSError", function()
    log.setSink(function() end)
    W.atEnd(function() log.setSink(nil) end, finally)
    local server = wssServer()
    local f = tls.failureOf(web.connectWebSocket(server.url,
      protocol.Factory.forProtocol(Rec), { tls = { caCerts = tls.cert("self") } }))
    assert.matches("TLSError", tostring(f.value))
    -- The default is the system's CAs, which do not know the test CA.
    f = tls.failureOf(web.connectWebSocket(server.url,
      protocol.Factory.forProtocol(Rec)))
    assert.matches("TLSError", tostring(f.value))
    assert.equals(0, #server.factory.built)
  end)

  it("tls options for a ws:// URL are a mistake", function()
    assert.has_error(function()
      web.connectWebSocket("ws://127.0.0.1:1/", protocol.Factory.forProtocol(Rec),
        { tls = {} })
    end, "connectWebSocket: tls options given for a ws:// URL (wss:// is TLS)")
  end)

  it("Python's websockets over wss:// against loom", function()
    local server = wssServer()
    local out, err, code = W.python([[
import asyncio, ssl, sys
import websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(sys.argv[1], ssl=ctx) as ws:
        await ws.send("secure héllo")
        print(await ws.recv())
        await ws.close(4002, "tls done")
asyncio.run(asyncio.wait_for(main(), 10))
]], server.url, tls.cert("ca"))
    assert.equals(0, code, err)
    assert.equals("secure héllo\n", out)
    local proto = server.factory.built[1]
    runUntil(proto.lost, 5)
    assert.same({ 4002, "tls done" }, { proto.reason.value.code, proto.reason.value.reason })
  end)
end)
