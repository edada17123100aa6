-- UDP ports over real loopback sockets (127.0.0.1 and ::1, port 0).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"

local DatagramProtocol = protocol.DatagramProtocol
local runUntil = testing.runUntil

local Echo = DatagramProtocol:extend({ __name = "UDPEcho" })
function Echo:datagramReceived(data, addr)
  if data == "boom" then
    error("kaboom in datagramReceived")
  end
  self.transport:write(data, addr)
end

-- Records datagrams; `next` fires with {data, addr} for each one.
local Recorder = DatagramProtocol:extend({ __name = "UDPRecorder" })
function Recorder:init()
  self.got = {}
  self.next = defer.Deferred()
  self.refused = defer.Deferred()
end
function Recorder:datagramReceived(data, addr)
  self.got[#self.got + 1] = { data, addr }
  local d = self.next
  self.next = defer.Deferred()
  d:callback({ data, addr })
end
function Recorder:connectionRefused()
  if not self.refused.called then
    self.refused:callback(true)
  end
end

local function listen(proto, iface)
  return reactor.listenUDP(0, proto, { interface = iface or "127.0.0.1" })
end

describe("listenUDP", function()
  it("binds port 0 and reports the chosen port in getHost", function()
    local port = listen(Echo:new())
    local host = port:getHost()
    assert.equal("UDP", host.type)
    assert.equal("127.0.0.1", host.host)
    assert.is_true(host.port > 0)
    runUntil(port:stopListening())
  end)

  it("delivers datagrams with the sender's address and echoes them",
    function()
      local server = listen(Echo:new())
      local rec = Recorder:new()
      local client = listen(rec)
      local got = rec.next
      client:write("hello",
        { host = "127.0.0.1", port = server:getHost().port })
      local r = runUntil(got)
      assert.equal("hello", r[1])
      assert.same({ type = "UDP", host = "127.0.0.1",
        port = server:getHost().port }, r[2])
      runUntil(client:stopListening())
      runUntil(server:stopListening())
    end)

  it("works over IPv6 ::1 and accepts {host, port} addresses", function()
    local server = listen(Echo:new(), "::1")
    local rec = Recorder:new()
    local client = listen(rec, "::1")
    local got = rec.next
    client:write("six", { "::1", server:getHost().port })
    local r = runUntil(got)
    assert.equal("six", r[1])
    assert.equal("::1", r[2].host)
    runUntil(client:stopListening())
    runUntil(server:stopListening())
  end)

  it("calls startProtocol on listen and stopProtocol before stopListening "
    .. "fires", function()
    local calls = {}
    local P = DatagramProtocol:extend({})
    function P:startProtocol() calls[#calls + 1] = "start" end
    function P:stopProtocol() calls[#calls + 1] = "stop" end
    local p = P:new()
    local port = listen(p)
    assert.same({ "start" }, calls)
    assert.equal(port, p.transport)
    runUntil(port:stopListening())
    assert.same({ "start", "stop" }, calls)
    assert.is_nil(p.transport)
  end)

  it("logs a datagramReceived error and keeps serving", function()
    local logged = {}
    local obs = log.addObserver(function(ev) logged[#logged + 1] = ev.text end)
    local server = listen(Echo:new())
    local rec = Recorder:new()
    local client = listen(rec)
    local addr = { host = "127.0.0.1", port = server:getHost().port }
    local got = rec.next
    client:write("boom", addr)
    client:write("still there", addr)
    assert.equal("still there", runUntil(got)[1])
    log.removeObserver(obs)
    assert.matches("kaboom in datagramReceived", table.concat(logged, "\n"))
    runUntil(client:stopListening())
    runUntil(server:stopListening())
  end)

  it("raises a clear error for a datagram that is too large", function()
    local port = listen(Recorder:new())
    local ok, e = pcall(port.write, port, string.rep("x", 70000),
      { host = "127.0.0.1", port = 9 })
    assert.is_false(ok)
    assert.matches("write: datagram of 70000 bytes is too large %(max 65507%)",
      tostring(e))
    runUntil(port:stopListening())
  end)

  it("raises a one-line error when the port is taken", function()
    local port = listen(Recorder:new())
    local n = port:getHost().port
    local ok, e = pcall(reactor.listenUDP, n, Recorder:new(),
      { interface = "127.0.0.1" })
    assert.is_false(ok)
    assert.is_true(e:isa(err.CannotListenError))
    assert.matches("listenUDP: 127.0.0.1:" .. n .. ": EADDRINUSE", tostring(e))
    assert.is_nil(tostring(e):find("\n"))
    runUntil(port:stopListening())
  end)

  it("rejects a bad interface, port and protocol", function()
    local ok, e = pcall(reactor.listenUDP, 0, Recorder:new(),
      { interface = "nowhere" })
    assert.is_false(ok)
    assert.matches("nowhere: not an IP address", tostring(e))
    assert.has_error(function() reactor.listenUDP(-1, Recorder:new()) end)
    assert.has_error(function() reactor.listenUDP(0, nil) end)
  end)
end)

describe("connected UDP", function()
  it("writes without an address to the connected peer", function()
    local rec = Recorder:new()
    local server = listen(rec)
    local client = listen(DatagramProtocol:new())
    client:connect("127.0.0.1", server:getHost().port)
    assert.same({ type = "UDP", host = "127.0.0.1",
      port = server:getHost().port }, client:getPeer())
    local got = rec.next
    client:write("direct")
    assert.equal("direct", runUntil(got)[1])
    runUntil(client:stopListening())
    runUntil(server:stopListening())
  end)

  it("calls connectionRefused when the peer's port is closed", function()
    local closed = listen(Recorder:new())
    local n = closed:getHost().port
    runUntil(closed:stopListening())
    local rec = Recorder:new()
    local client = listen(rec)
    client:connect("127.0.0.1", n)
    client:write("anyone?")
    reactor.callLater(0.05, function()
      if not rec.refused.called then
        client:write("anyone at all?")
      end
    end)
    assert.is_true(runUntil(rec.refused, 5))
    runUntil(client:stopListening())
  end)

  it("refuses host names, reconnecting and another address on write",
    function()
      local port = listen(Recorder:new())
      assert.has_error(function() port:connect("localhost", 9) end)
      port:connect("127.0.0.1", 9)
      assert.has_error(function() port:connect("127.0.0.1", 10) end)
      assert.has_error(function()
        port:write("x", { host = "127.0.0.1", port = 10 })
      end)
      assert.has_error(function()
        port:write("x", { host = "127.0.0.2", port = 9 })
      end)
      runUntil(port:stopListening())
    end)

  -- Twisted's write asserts addr in (None, connectedAddr): the connected
  -- address itself is accepted, in either address form.
  it("accepts the connected address itself on write", function()
    local rec = Recorder:new()
    local server = listen(rec)
    local n = server:getHost().port
    local client = listen(DatagramProtocol:new())
    client:connect("127.0.0.1", n)
    local got = rec.next
    client:write("named", { host = "127.0.0.1", port = n })
    assert.equal("named", runUntil(got)[1])
    got = rec.next
    client:write("tuple", { "127.0.0.1", n })
    assert.equal("tuple", runUntil(got)[1])
    runUntil(client:stopListening())
    runUntil(server:stopListening())
  end)
end)

describe("UDP multicast options", function()
  it("sets TTL and loopback mode and joins and leaves a group", function()
    local port = listen(Recorder:new(), "0.0.0.0")
    port:setTTL(2)
    assert.equal(2, port:getTTL())
    port:setLoopbackMode(false)
    assert.is_false(port:getLoopbackMode())
    assert.is_true(runUntil(port:joinGroup("239.255.42.1", "127.0.0.1")))
    assert.is_true(runUntil(port:leaveGroup("239.255.42.1", "127.0.0.1")))
    local ok, f = pcall(runUntil, port:joinGroup("10.0.0.1", "127.0.0.1"))
    assert.is_false(ok)
    assert.is_truthy(f:check(err.MulticastJoinError))
    runUntil(port:stopListening())
  end)
end)
