-- loom.web.websocket's server against a client nobody here wrote: Python's
-- `websockets` (Debian's python3-websockets), run as a child process.
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local testing = require "loom.testing"
local web = require "loom.web"

local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil

local Rec = protocol.Protocol:extend({ __name = "PeerRec" })
function Rec:init()
  self.messages = {}
  self.lost = defer.Deferred()
end
function Rec:messageReceived(msg, isBinary)
  self.messages[#self.messages + 1] = { msg, isBinary }
  self.transport:sendMessage(msg, isBinary)
end
function Rec:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end

local function wsServer(opts)
  local f = W.net.recordingFactory(Rec)
  local root = web.Resource()
  root:putChild("ws", web.WebSocketResource(f, opts))
  local server = W.serve(root, { accessLog = false }, finally)
  server.factory = f
  server.wsURL = string.format("ws://127.0.0.1:%d/ws", server.portNumber)
  return server
end

-- Runs a Python websockets client; its stdout lines are returned.
local function python(script, url)
  local out, err, code = W.python([[
import asyncio, sys
import websockets
from websockets.exceptions import ConnectionClosed
URL = sys.argv[1]
]] .. script .. [[

asyncio.run(asyncio.wait_for(main(), 10))
]], url)
  assert.equals(0, code, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

describe("websocket: Python's websockets against loom's server", function()
  it("echoes text, binary and a fragmented message; ping; closes 4000", function()
    local server = wsServer({ protocols = { "echo.v1" } })
    local nextProto = server.factory.next
    local lines = python([[
async def main():
    async with websockets.connect(URL, subprotocols=["echo.v1"],
                                  origin="http://" + URL.split("/")[2]) as ws:
        print("sub", ws.subprotocol)
        await ws.send("héllo wörld")
        print("text", await ws.recv())
        await ws.send(bytes(range(256)) * 1000)
        r = await ws.recv()
        print("binary", type(r).__name__, len(r), r == bytes(range(256)) * 1000)
        await ws.send(["frag", "ment", "ed"])
        print("fragmented", await ws.recv())
        pong = await ws.ping(b"pp")
        await asyncio.wait_for(pong, 5)
        print("pong ok")
        await ws.close(4000, "python done")
        print("closed", ws.close_code, ws.close_reason)
]], server.wsURL)
    assert.same({ "sub echo.v1", "text héllo wörld", "binary bytes 256000 True",
      "fragmented fragmented", "pong ok", "closed 4000 python done" }, lines)
    local proto = runUntil(nextProto, 5)
    runUntil(proto.lost, 5)
    assert.same({ 4000, "python done", true }, { proto.reason.value.code,
      proto.reason.value.reason, proto.reason.value.wasClean })
    assert.equals(3, #proto.messages)
    assert.equals("fragmented", proto.messages[3][1])
  end)

  it("closes an oversized message with 1009, seen by Python", function()
    log.setSink(function() end)
    W.atEnd(function() log.setSink(nil) end, finally)
    local server = wsServer({ maxMessageSize = 4096 })
    local lines = python([[
async def main():
    async with websockets.connect(URL) as ws:
        await ws.send("x" * 4097)
        try:
            await ws.recv()
        except ConnectionClosed as e:
            print("closed", e.rcvd.code if e.rcvd else None)
]], server.wsURL)
    assert.same({ "closed 1009" }, lines)
  end)

  it("the server's close reaches Python with its code and reason", function()
    local server = wsServer()
    local nextProto = server.factory.next
    local f = server.factory
    function f.onBuilt() end
    local d = nextProto:addCallback(function(p)
      -- Closes once connected (the protocol's connectionMade ran by then).
      require("loom.reactor").callLater(0.05, function()
        p.transport:loseConnection(1001, "server going away")
      end)
      return p
    end)
    local lines = python([[
async def main():
    async with websockets.connect(URL) as ws:
        try:
            await ws.recv()
        except ConnectionClosed as e:
            print("closed", e.rcvd.code, e.rcvd.reason)
]], server.wsURL)
    assert.same({ "closed 1001 server going away" }, lines)
    local proto = runUntil(d, 5)
    runUntil(proto.lost, 5)
    assert.is_true(proto.reason.value.wasClean)
  end)

  it("examples/web/websocket_echo.lua: the page and the echo", function()
    local sub = dofile("spec/support/subprocess.lua")
    local server = sub.start("run examples/web/websocket_echo.lua 0", 1)
    W.atEnd(function()
      if not server.stopped then sub.stop(server) end
    end, finally)
    local base = "127.0.0.1:" .. server.port
    local page = W.curl("http://" .. base .. "/")
    assert.matches("new WebSocket%(`ws://%${location.host}/echo`%)", page)
    local lines = python([[
async def main():
    async with websockets.connect(URL) as ws:
        await ws.send("one")
        print(await ws.recv())
        await ws.send(b"\x00two")
        print(repr(await ws.recv()))
        await ws.send("x" * (64 * 1024 + 1))
        try:
            await ws.recv()
        except ConnectionClosed as e:
            print("closed", e.rcvd.code)
]], "ws://" .. base .. "/echo")
    assert.same({ "one", "b'\\x00two'", "closed 1009" }, lines)
  end)

end)

describe("websocket: loom's client against Python's websockets server", function()
  it("echoes, offers a subprotocol, closes cleanly", function()
    local reactor = require "loom.reactor"
    -- The server prints its port, echoes, and exits after one connection.
    local Proc = protocol.ProcessProtocol:extend({ __name = "PyServer" })
    local proc = Proc:new()
    proc.out, proc.port, proc.ended = "", defer.Deferred(), defer.Deferred()
    function proc:outReceived(d)
      self.out = self.out .. d
      local port = self.out:match("port (%d+)\n")
      if port and not self.port.called then self.port:callback(tonumber(port)) end
    end
    function proc:processEnded() self.ended:callback(self) end
    local t = reactor.spawnProcess(proc, "/usr/bin/python3", { "/usr/bin/python3", "-c", [[
import asyncio, sys
import websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
    print("closed", ws.close_code, ws.close_reason, flush=True)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, subprotocols=["v1"]) as s:
        print("port", s.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(8)
asyncio.run(main())
]] })
    W.atEnd(function()
      if not proc.ended.called then
        pcall(t.signalProcess, t, "KILL")
        runUntil(proc.ended, 5)
      end
    end, finally)
    local port = runUntil(proc.port, 10)
    local C = protocol.Protocol:extend({ __name = "PyClient" })
    function C:init() self.got, self.lost = {}, defer.Deferred() end
    function C:messageReceived(m, b)
      self.got[#self.got + 1] = { m, b }
      if #self.got == 2 then self.transport:loseConnection(1000, "thanks") end
    end
    function C:connectionLost(r) self.reason = r; self.lost:callback(self) end
    local client = runUntil(web.connectWebSocket("ws://127.0.0.1:" .. port .. "/x",
      protocol.Factory.forProtocol(C), { protocols = { "v0", "v1" } }), 5)
    assert.equals("v1", client.transport.subprotocol)
    client.transport:sendMessage("ünïcode")
    client.transport:sendMessage(string.rep("\1\2", 40000), true)
    runUntil(client.lost, 5)
    assert.same({ "ünïcode", false }, client.got[1])
    assert.same({ string.rep("\1\2", 40000), true }, client.got[2])
    assert.same({ 1000, "thanks", true }, { client.reason.value.code,
      client.reason.value.reason, client.reason.value.wasClean })
    W.net.waitFor(function() return proc.out:find("closed 1000 thanks", 1, true) end)
  end)
end)

describe("websocket: make bench's Node peer (bench/websocket_echo_node.js)", function()
  it("speaks WebSocket to loom's client: echo, ping, close", function()
    local reactor = require "loom.reactor"
    local f = io.open("/usr/bin/node")
    if not f then
      pending("node is not installed (make bench-deps installs it)")
      return
    end
    f:close()
    local Proc = protocol.ProcessProtocol:extend({ __name = "NodePeer" })
    local proc = Proc:new()
    proc.out, proc.port, proc.ended = "", defer.Deferred(), defer.Deferred()
    function proc:outReceived(d)
      self.out = self.out .. d
      local port = self.out:match("listening on 127%.0%.0%.1:(%d+)")
      if port and not self.port.called then self.port:callback(tonumber(port)) end
    end
    function proc:processEnded() self.ended:callback(self) end
    local t = reactor.spawnProcess(proc, "/usr/bin/node",
      { "node", "bench/websocket_echo_node.js", "0" })
    W.atEnd(function()
      if not proc.ended.called then
        pcall(t.signalProcess, t, "KILL")
        runUntil(proc.ended, 5)
      end
    end, finally)
    local port = runUntil(proc.port, 10)
    local C = protocol.Protocol:extend({ __name = "NodeClient" })
    function C:init() self.got, self.pongs, self.lost = {}, {}, defer.Deferred() end
    function C:messageReceived(m, b) self.got[#self.got + 1] = { m, b } end
    function C:pongReceived(d) self.pongs[#self.pongs + 1] = d end
    function C:connectionLost(r) self.reason = r; self.lost:callback(self) end
    local client = runUntil(web.connectWebSocket("ws://127.0.0.1:" .. port .. "/echo",
      protocol.Factory.forProtocol(C)), 5)
    client.transport:sendMessage("abc")
    client.transport:sendMessage(string.rep("z", 70000), true)
    client.transport:ping("hi")
    W.net.waitFor(function() return #client.got == 2 and #client.pongs == 1 end)
    assert.same({ "abc", false }, client.got[1])
    assert.same({ string.rep("z", 70000), true }, client.got[2])
    assert.equals("hi", client.pongs[1])
    client.transport:loseConnection(1000)
    runUntil(client.lost, 5)
    assert.is_true(client.reason.value.wasClean)
  end)
end)
