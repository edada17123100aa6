-- Addresses: what getPeer/getHost/buildProtocol hand out, their Twisted-like
-- tostring, their life past the socket (connectionLost), transport.client,
-- and the peer of a client that resets at once.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local address = require "loom.address"
local defer = require "loom.defer"
local log = require "loom.log"
local testing = require "loom.testing"

local Protocol, Factory, ClientFactory =
  protocol.Protocol, protocol.Factory, protocol.ClientFactory
local runUntil = testing.runUntil

local net = dofile("spec/support/net.lua")
local Echo, Recorder = net.Echo, net.Recorder
local waitFor = net.waitFor
local listen, connect = net.listen, net.connect

describe("address tables", function()
  it("print like Twisted's IPv4Address, IPv6Address and UNIXAddress",
    function()
      assert.equal("IPv4Address(type='TCP', host='127.0.0.1', port=8000)",
        tostring(address.TCP("127.0.0.1", 8000)))
      assert.equal("IPv6Address(type='UDP', host='::1', port=53)",
        tostring(address.UDP("::1", 53)))
      assert.equal("UNIXAddress('/tmp/a.sock')",
        tostring(address.UNIX("/tmp/a.sock")))
      assert.equal("UNIXAddress(nil)", tostring(address.UNIX(nil)))
    end)

  it("compare equal by value", function()
    assert.is_true(address.TCP("127.0.0.1", 1) == address.TCP("127.0.0.1", 1))
    assert.is_false(address.TCP("127.0.0.1", 1) == address.UDP("127.0.0.1", 1))
    assert.is_false(address.TCP("127.0.0.1", 1) == address.TCP("127.0.0.1", 2))
  end)

  it("are what ports, transports and buildProtocol hand out", function()
    local f = net.recordingFactory(Echo)
    local addrs = {}
    local build = f.buildProtocol
    function f:buildProtocol(addr)
      addrs[#addrs + 1] = addr
      return build(self, addr)
    end
    local port = listen(f)
    local n = port:getHost().port
    assert.equal(string.format(
      "IPv4Address(type='TCP', host='127.0.0.1', port=%d)", n),
      tostring(port:getHost()))
    local nextServer = f.next
    local c = connect(port)
    runUntil(c.made)
    local s = runUntil(nextServer)
    local peer = c.transport:getHost()
    assert.equal(tostring(peer), tostring(addrs[1]))
    assert.equal(tostring(peer), tostring(s.transport:getPeer()))
    assert.is_true(peer == s.transport:getPeer())
    assert.equal(tostring(port:getHost()), tostring(c.transport:getPeer()))
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("print IPv6Address over ::1", function()
    local port = listen(Factory.forProtocol(Echo), "::1")
    assert.equal(string.format(
      "IPv6Address(type='TCP', host='::1', port=%d)", port:getHost().port),
      tostring(port:getHost()))
    local c = connect(port, nil, "::1")
    runUntil(c.made)
    assert.matches("^IPv6Address%(type='TCP', host='::1', port=%d+%)$",
      tostring(c.transport:getHost()))
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("print UNIXAddress for Unix sockets", function()
    local h = assert(io.popen("mktemp -d"))
    local dir = h:read("l")
    h:close()
    local path = dir .. "/a.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    assert.equal("UNIXAddress('" .. path .. "')", tostring(port:getHost()))
    local c = Recorder:new()
    local cf = ClientFactory:new()
    function cf:buildProtocol() return c end
    local connector = reactor.connectUNIX(path, cf)
    assert.equal("UNIXAddress('" .. path .. "')",
      tostring(connector:getDestination()))
    runUntil(c.made)
    assert.equal("UNIXAddress('" .. path .. "')",
      tostring(c.transport:getPeer()))
    assert.equal("UNIXAddress(nil)", tostring(c.transport:getHost()))
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
    os.remove(dir)
  end)

  it("print with type='UDP' for UDP ports and datagrams", function()
    local got = defer.Deferred()
    local server = reactor.listenUDP(0, {
      datagramReceived = function(_, _, addr) got:callback(addr) end,
    }, { interface = "127.0.0.1" })
    local client = reactor.listenUDP(0, protocol.DatagramProtocol:new(),
      { interface = "127.0.0.1" })
    assert.equal(string.format(
      "IPv4Address(type='UDP', host='127.0.0.1', port=%d)",
      server:getHost().port), tostring(server:getHost()))
    client:write("x", { host = "127.0.0.1", port = server:getHost().port })
    local from = runUntil(got)
    assert.equal(tostring(client:getHost()), tostring(from))
    client:connect("127.0.0.1", server:getHost().port)
    assert.equal(tostring(server:getHost()), tostring(client:getPeer()))
    runUntil(client:stopListening())
    runUntil(server:stopListening())
  end)

  it("are given by testing.StringTransport too", function()
    local t = testing.StringTransport()
    assert.equal("IPv4Address(type='TCP', host='192.168.1.1', port=54321)",
      tostring(t:getPeer()))
  end)

  it("and the reactor print as themselves, not as table: 0x…", function()
    assert.equal("<loom.reactor (libuv)>", tostring(reactor))
  end)
end)

-- Logs as the docs' SimpleLogger does; records getPeer/getHost on the way.
local SimpleLogger = Protocol:extend({ __name = "SimpleLogger" })
function SimpleLogger:init()
  self.lost = defer.Deferred()
end
function SimpleLogger:connectionLost(reason)
  self.lostPeer = { self.transport:getPeer() }
  self.lostHost = { self.transport:getHost() }
  log.prefixed(log.prefixOf(self)).info("lost %s", tostring(
    self.transport:getPeer()))
  self.reason = reason
  self.lost:callback(self) -- a Failure would take the errback path
end

describe("inside connectionLost", function()
  it("getPeer and getHost still answer, on the server and the client",
    function()
      local f = net.recordingFactory(SimpleLogger)
      local port = listen(f)
      local nextServer = f.next
      local c = connect(port, SimpleLogger)
      local s = runUntil(nextServer)
      waitFor(function() return c.transport ~= nil end)
      local cPeer, cHost = c.transport:getPeer(), c.transport:getHost()
      local events = {}
      local obs = log.addObserver(function(ev)
        events[#events + 1] = ev
      end)
      c.transport:loseConnection()
      runUntil(c.lost)
      runUntil(s.lost)
      log.removeObserver(obs)
      assert.is_true(cPeer == c.lostPeer[1])
      assert.is_true(cHost == c.lostHost[1])
      assert.is_true(cHost == s.lostPeer[1])
      assert.is_true(cPeer == s.lostHost[1])
      -- The log prefix keeps the peer (docs/README.md's format).
      local prefix = "SimpleLogger,127.0.0.1:" .. cHost.port
      local found = false
      for _, ev in ipairs(events) do
        found = found or ev.prefix == prefix
      end
      assert.is_true(found, "no event with prefix " .. prefix)
      runUntil(port:stopListening())
    end)

  it("a stale transport reports it is closed", function()
    local port = listen(Factory.forProtocol(Echo))
    local c = connect(port)
    runUntil(c.made)
    local t = c.transport
    t:loseConnection()
    runUntil(c.lost)
    assert.has_error(function() t:getPeer() end, "transport is closed")
    runUntil(port:stopListening())
  end)
end)

describe("transport.client", function()
  it("is the peer as {host, port} on a server transport, nil on a client",
    function()
      local f = net.recordingFactory(Echo)
      local port = listen(f)
      local nextServer = f.next
      local c = connect(port)
      runUntil(c.made)
      local s = runUntil(nextServer)
      assert.same({ "127.0.0.1", c.transport:getHost().port },
        s.transport.client)
      assert.is_nil(c.transport.client)
      c.transport:loseConnection()
      runUntil(c.lost)
      runUntil(port:stopListening())
    end)
end)

-- A client that connects and resets at once (SO_LINGER 0), 20 times,
-- before the reactor gets to accept: python3 does it, as a raw socket can
-- be told to reset from no Lua API.
local function hasPython()
  return os.execute("command -v python3 >/dev/null 2>&1") == true
end

describe("a client that connects and resets at once", function()
  local it_ = hasPython() and it or pending
  it_("still has its address in buildProtocol and getPeer", function()
    local addrs, peers, built = {}, {}, 0
    local f = Factory:new()
    function f:buildProtocol(addr)
      built = built + 1
      addrs[built] = addr or false
      local p = Protocol:new()
      local i = built
      function p:connectionMade()
        peers[i] = self.transport:getPeer() or false
      end
      return p
    end
    local port = listen(f)
    local ok = os.execute(string.format([[timeout 10 python3 -c "
import socket, struct
for i in range(20):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.connect(('127.0.0.1', %d))
    s.close()
"]], port:getHost().port))
    assert.is_true(ok)
    waitFor(function() return built == 20 end)
    for i = 1, 20 do
      assert.is_truthy(addrs[i], "no address in buildProtocol")
      assert.equal("127.0.0.1", addrs[i].host)
      assert.is_truthy(peers[i], "no getPeer in connectionMade")
      assert.equal(addrs[i].port, peers[i].port)
    end
    runUntil(port:stopListening())
  end)
end)
