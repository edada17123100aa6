-- TCP transports over real loopback sockets (127.0.0.1 and ::1, port 0).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"

local Protocol, Factory, ClientFactory =
  protocol.Protocol, protocol.Factory, protocol.ClientFactory
local runUntil = testing.runUntil

local net = dofile("spec/support/net.lua")
local Echo, Recorder = net.Echo, net.Recorder
local recordingFactory = net.recordingFactory

local waitFor = net.waitFor
local listen, connect = net.listen, net.connect

describe("listenTCP", function()
  it("picks a free port with port 0 and reports it in getHost", function()
    local port = listen(Factory.forProtocol(Echo))
    local host = port:getHost()
    assert.equal("TCP", host.type)
    assert.equal("127.0.0.1", host.host)
    assert.is_true(host.port > 0)
    runUntil(port:stopListening())
  end)

  it("listens on IPv6 ::1", function()
    local port = listen(Factory.forProtocol(Echo), "::1")
    assert.equal("::1", port:getHost().host)
    local c = connect(port, nil, "::1")
    runUntil(c.made)
    c.transport:write("six")
    waitFor(function() return c:text() == "six" end)
    assert.equal("::1", c.transport:getPeer().host)
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("raises a one-line error naming the address when the port is taken",
    function()
      local port = listen(Factory.forProtocol(Echo))
      local n = port:getHost().port
      local ok, e = pcall(reactor.listenTCP, n, Factory.forProtocol(Echo),
        { interface = "127.0.0.1" })
      assert.is_false(ok)
      assert.is_true(err.CannotListenError == nil or
        (type(e) == "table" and e:isa(err.CannotListenError)))
      assert.matches("127.0.0.1:" .. n .. ": EADDRINUSE", tostring(e))
      assert.is_nil(tostring(e):find("\n"))
      runUntil(port:stopListening())
    end)

  it("rejects an interface that is not an IP address", function()
    local ok, e = pcall(reactor.listenTCP, 0, Factory.forProtocol(Echo),
      { interface = "not-an-ip" })
    assert.is_false(ok)
    assert.matches("not%-an%-ip: not an IP address", tostring(e))
  end)

  it("rejects a bad port number and a missing factory", function()
    assert.has_error(function()
      reactor.listenTCP(70000, Factory.forProtocol(Echo))
    end)
    assert.has_error(function() reactor.listenTCP(0, nil) end)
  end)

  it("calls startFactory on listen and stopFactory on stopListening",
    function()
      local f = Factory.forProtocol(Echo)
      local calls = {}
      function f:startFactory() calls[#calls + 1] = "start" end
      function f:stopFactory() calls[#calls + 1] = "stop" end
      local port = listen(f)
      assert.same({ "start" }, calls)
      local d = port:stopListening()
      assert.is_true(defer.isDeferred == nil or defer.isDeferred(d)
        or d.addCallback ~= nil)
      runUntil(d)
      assert.same({ "start", "stop" }, calls)
    end)

  it("refuses connections after stopListening", function()
    local port = listen(Factory.forProtocol(Echo))
    local n = port:getHost().port
    runUntil(port:stopListening())
    local failed = defer.Deferred()
    local cf = ClientFactory:new()
    function cf:clientConnectionFailed(_, reason) failed:callback({ reason }) end
    reactor.connectTCP("127.0.0.1", n, cf)
    local reason = runUntil(failed)[1]
    assert.is_truthy(reason:check(err.ConnectionRefusedError))
  end)
end)

describe("TCP transport", function()
  local port, factory
  before_each(function()
    factory = recordingFactory(Echo)
    port = listen(factory)
  end)
  after_each(function()
    runUntil(port:stopListening())
  end)

  it("echoes data between client and server on 127.0.0.1", function()
    local c = connect(port)
    runUntil(c.made)
    c.transport:write("hello")
    waitFor(function() return c:text() == "hello" end)
    assert.equal("hello", c:text())
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("gives connectionLost a ConnectionDone on a clean close, both sides",
    function()
      local server = recordingFactory(Recorder)
      local p2 = listen(server)
      local c = connect(p2)
      local s = runUntil(server.next)
      runUntil(c.made)
      c.transport:loseConnection()
      local creason = runUntil(c.lost).reason
      local sreason = runUntil(s.lost).reason
      assert.is_truthy(creason:check(err.ConnectionDone))
      assert.is_truthy(sreason:check(err.ConnectionDone))
      assert.is_false(c.connected)
      runUntil(p2:stopListening())
    end)

  it("gives connectionLost a ConnectionLost after abortConnection", function()
    local c = connect(port)
    runUntil(c.made)
    c.transport:write("pending")
    c.transport:abortConnection()
    local reason = runUntil(c.lost).reason
    assert.is_truthy(reason:check(err.ConnectionLost))
    assert.is_nil(reason:check(err.ConnectionDone))
  end)

  it("sets connected, transport and reports peer and host addresses",
    function()
      local c = connect(port)
      runUntil(c.made)
      assert.is_true(c.connected)
      assert.is_true(c.transport.connected)
      assert.is_false(c.transport.disconnecting)
      local peer, host = c.transport:getPeer(), c.transport:getHost()
      assert.same({ type = "TCP", host = "127.0.0.1",
        port = port:getHost().port }, peer)
      assert.equal("127.0.0.1", host.host)
      assert.is_true(host.port > 0)
      c.transport:setTcpNoDelay(true)
      c.transport:setTcpKeepAlive(true)
      c.transport:loseConnection()
      assert.is_true(c.transport.disconnecting)
      runUntil(c.lost)
      assert.is_false(c.transport.connected)
    end)

  it("writes a sequence in order", function()
    local c = connect(port)
    runUntil(c.made)
    c.transport:writeSequence({ "a", "bc", "", "def" })
    waitFor(function() return c:text() == "abcdef" end)
    assert.has_error(function() c.transport:writeSequence({ "a", {} }) end)
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("raises a clear error when writing a non-string", function()
    local c = connect(port)
    runUntil(c.made)
    local ok, e = pcall(c.transport.write, c.transport, {})
    assert.is_false(ok)
    assert.matches("string expected", e)
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("ignores writes after the connection closed", function()
    local c = connect(port)
    runUntil(c.made)
    c.transport:loseConnection()
    runUntil(c.lost)
    c.transport:write("late")
    assert.matches("closed", tostring(c.transport))
  end)

  it("delivers 1 MiB written just before loseConnection complete", function()
    local big = string.rep("0123456789abcdef", 65536)
    local Sender = Protocol:extend()
    function Sender:connectionMade()
      self.transport:write(big)
      self.transport:loseConnection()
    end
    local p2 = listen(Factory.forProtocol(Sender))
    local c = connect(p2)
    local reason = runUntil(c.lost, 10).reason
    assert.is_truthy(reason:check(err.ConnectionDone))
    assert.equal(#big, #c:text())
    assert.is_true(c:text() == big)
    runUntil(p2:stopListening())
  end)

  it("half-closes with loseWriteConnection and keeps reading", function()
    local HalfServer = Protocol:extend()
    function HalfServer:dataReceived(d) self.buf = (self.buf or "") .. d end
    function HalfServer:readConnectionLost()
      self.transport:write("got:" .. (self.buf or ""))
      self.transport:loseConnection()
    end
    local p2 = listen(Factory.forProtocol(HalfServer))
    local c = connect(p2)
    runUntil(c.made)
    c.transport:write("ping")
    c.transport:loseWriteConnection()
    runUntil(c.lost)
    assert.equal("got:ping", c:text())
    runUntil(p2:stopListening())
  end)

  it("holds incoming data while reading is paused", function()
    local server = recordingFactory(Recorder)
    local p2 = listen(server)
    local c = connect(p2)
    local s = runUntil(server.next)
    runUntil(c.made)
    s.transport:pauseProducing()
    c.transport:write("held")
    local tick = defer.Deferred()
    reactor.callLater(0.05, function() tick:callback() end)
    runUntil(tick)
    assert.equal("", s:text())
    s.transport:resumeProducing()
    waitFor(function() return s:text() == "held" end)
    c.transport:loseConnection()
    runUntil(s.lost)
    runUntil(p2:stopListening())
  end)

  it("bounds a slow reader's buffer with the high-water mark", function()
    local chunk = string.rep("x", 16384)
    -- More than the kernel's buffers take: Linux grows a loopback send
    -- buffer to tcp_wmem's maximum (4 MiB) at once, and the peer's
    -- receive queue takes more.
    local TOTAL = 16 * 1024 * 1024
    local Producer = Protocol:extend()
    function Producer:connectionMade()
      self.pauses, self.resumes, self.maxBuffered = 0, 0, 0
      self.sent = 0
      self.transport:registerProducer(self, true)
      self:resumeProducing()
    end
    function Producer:pauseProducing()
      self.paused = true
      self.pauses = self.pauses + 1
    end
    function Producer:resumeProducing()
      self.paused = false
      self.resumes = self.resumes + 1
      -- Writes until the transport pauses us (or TOTAL in all).
      while not self.paused and self.sent < TOTAL do
        self.transport:write(chunk)
        self.sent = self.sent + #chunk
        local b = self.transport:bufferedBytes()
        if b > self.maxBuffered then self.maxBuffered = b end
      end
      if self.sent >= TOTAL then
        self.transport:unregisterProducer()
        self.transport:loseConnection()
      end
    end
    local server = recordingFactory(Producer)
    local p2 = listen(server)
    local built = server.next
    local c = connect(p2)
    runUntil(c.made)
    c.transport:pauseProducing() -- The slow reader stops reading.
    local s = runUntil(built)
    waitFor(function() return s.paused end)
    local tick = defer.Deferred()
    reactor.callLater(0.1, function() tick:callback() end)
    runUntil(tick)
    -- Paused: the host holds at most the high-water mark plus one write.
    assert.is_true(s.paused)
    assert.is_true(s.transport:bufferedBytes() <= 65536 + #chunk)
    assert.is_true(s.maxBuffered <= 65536 + #chunk)
    assert.is_true(s.sent < TOTAL)
    c.transport:resumeProducing()
    runUntil(c.lost, 10)
    assert.equal(TOTAL, #c:text())
    assert.is_true(s.resumes >= 2)
    runUntil(p2:stopListening())
  end)

  it("asks a pull producer for more each time the buffer empties", function()
    local Pull = Protocol:extend()
    function Pull:connectionMade()
      self.n = 0
      self.transport:registerProducer(self, false)
    end
    function Pull:resumeProducing()
      self.n = self.n + 1
      if self.n > 5 then
        self.transport:unregisterProducer()
        self.transport:loseConnection()
      else
        self.transport:write("chunk" .. self.n .. ";")
      end
    end
    local p2 = listen(Factory.forProtocol(Pull))
    local c = connect(p2)
    runUntil(c.lost)
    assert.equal("chunk1;chunk2;chunk3;chunk4;chunk5;", c:text())
    runUntil(p2:stopListening())
  end)

  it("refuses a second producer", function()
    local c = connect(port)
    runUntil(c.made)
    local p = { pauseProducing = function() end,
      resumeProducing = function() end, stopProducing = function() end }
    c.transport:registerProducer(p, true)
    assert.has_error(function() c.transport:registerProducer(p, true) end)
    c.transport:unregisterProducer()
    c.transport:registerProducer(p, true)
    c.transport:loseConnection()
    runUntil(c.lost)
  end)
end)

describe("fault isolation", function()
  local records, observer
  before_each(function()
    records = {}
    observer = log.addObserver(function(ev) records[#records + 1] = ev end)
  end)
  after_each(function()
    log.removeObserver(observer)
  end)

  local function logged(pattern)
    for _, ev in ipairs(records) do
      if ev.text:find(pattern) then
        return ev
      end
    end
  end

  it("logs a dataReceived error with its traceback, aborts only that "
    .. "connection and keeps serving another", function()
    local Fragile = Protocol:extend({ __name = "Fragile" })
    function Fragile:dataReceived(data)
      if data == "boom" then
        error("kaboom in the hook")
      end
      self.transport:write(data)
    end
    local port = listen(Factory.forProtocol(Fragile))
    local bad, good = connect(port), connect(port)
    runUntil(bad.made)
    runUntil(good.made)
    bad.transport:write("boom")
    local reason = runUntil(bad.lost).reason
    assert.is_truthy(reason)
    local ev = logged("kaboom in the hook")
    assert.is_truthy(ev)
    assert.equal("error", ev.level)
    assert.matches("Fragile%.dataReceived", ev.text)
    assert.matches("stack traceback", ev.text)
    assert.matches("tcp_spec%.lua", ev.text)
    assert.matches("Fragile,127%.0%.0%.1", ev.prefix)
    good.transport:write("still here")
    waitFor(function() return good:text() == "still here" end)
    good.transport:loseConnection()
    runUntil(good.lost)
    runUntil(port:stopListening())
  end)

  it("passes the hook's error to the server's connectionLost", function()
    local Fragile = Recorder:extend({ __name = "Fragile2" })
    function Fragile:dataReceived()
      error({ code = 42 })
    end
    local server = recordingFactory(Fragile)
    local port = listen(server)
    local c = connect(port)
    local s = runUntil(server.next)
    runUntil(c.made)
    c.transport:write("x")
    local reason = runUntil(s.lost).reason
    assert.same({ code = 42 }, reason.value)
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("aborts a connection whose connectionMade raises", function()
    local Bad = Protocol:extend({ __name = "Bad" })
    function Bad:connectionMade() error("no greeting") end
    local port = listen(Factory.forProtocol(Bad))
    local c = connect(port)
    runUntil(c.lost)
    assert.is_truthy(logged("no greeting"))
    runUntil(port:stopListening())
  end)

  it("logs an error in connectionLost and goes on", function()
    local Bad = Recorder:extend()
    function Bad:connectionLost(reason)
      Recorder.connectionLost(self, reason)
      error("lost badly")
    end
    local port = listen(Factory.forProtocol(Echo))
    local c = connect(port, Bad)
    runUntil(c.made)
    c.transport:loseConnection()
    runUntil(c.lost)
    local tick = defer.Deferred()
    reactor.callLater(0.01, function() tick:callback() end)
    runUntil(tick)
    assert.is_truthy(logged("lost badly"))
    runUntil(port:stopListening())
  end)
end)

describe("connectTCP", function()
  it("returns a Connector reporting its destination", function()
    local port = listen(Factory.forProtocol(Echo))
    local c, connector = connect(port)
    assert.same({ type = "TCP", host = "127.0.0.1",
      port = port:getHost().port }, connector:getDestination())
    runUntil(c.made)
    connector:disconnect()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("calls startedConnecting, then clientConnectionLost on close",
    function()
      local port = listen(Factory.forProtocol(Echo))
      local events = {}
      local lost = defer.Deferred()
      local cf = ClientFactory.forProtocol(Recorder)
      function cf:startedConnecting() events[#events + 1] = "started" end
      function cf:clientConnectionLost(_, reason)
        events[#events + 1] = "lost"
        lost:callback({ reason })
      end
      local connector = reactor.connectTCP("127.0.0.1",
        port:getHost().port, cf)
      assert.same({ "started" }, events)
      local tick = defer.Deferred()
      reactor.callLater(0.05, function() tick:callback() end)
      runUntil(tick)
      connector:disconnect()
      local reason = runUntil(lost)[1]
      assert.is_truthy(reason:check(err.ConnectionDone))
      assert.same({ "started", "lost" }, events)
      runUntil(port:stopListening())
    end)

  it("reports ConnectionRefusedError to clientConnectionFailed", function()
    local port = listen(Factory.forProtocol(Echo))
    local n = port:getHost().port
    runUntil(port:stopListening())
    local failed = defer.Deferred()
    local cf = ClientFactory.forProtocol(Recorder)
    function cf:clientConnectionFailed(connector, reason)
      failed:callback({ connector, reason })
    end
    local connector = reactor.connectTCP("127.0.0.1", n, cf)
    local r = runUntil(failed)
    assert.equal(connector, r[1])
    assert.is_truthy(r[2]:check(err.ConnectionRefusedError))
    assert.matches("refused", r[2]:getErrorMessage())
  end)

  it("reports TimeoutError when the connection does not complete in time",
    function()
      -- A port that stops accepting fills its backlog; further SYNs stall.
      local port = reactor.listenTCP(0, Factory.forProtocol(Echo),
        { interface = "127.0.0.1", backlog = 1 })
      port:pauseProducing()
      local n = port:getHost().port
      local fillers = {}
      for i = 1, 4 do
        fillers[i] = reactor.connectTCP("127.0.0.1", n,
          ClientFactory.forProtocol(Recorder), { timeout = 2 })
      end
      local failed = defer.Deferred()
      local cf = ClientFactory.forProtocol(Recorder)
      function cf:clientConnectionFailed(_, reason)
        if not failed.called then failed:callback({ reason }) end
      end
      -- Whichever attempt stalls first must time out.
      local cfs = {}
      for i = 1, 4 do
        cfs[i] = reactor.connectTCP("127.0.0.1", n, cf, { timeout = 0.3 })
      end
      local reason = runUntil(failed, 5)[1]
      assert.is_truthy(reason:check(err.TimeoutError))
      for _, c in ipairs(fillers) do c:disconnect() end
      for _, c in ipairs(cfs) do c:disconnect() end
      port:resumeProducing()
      runUntil(port:stopListening())
    end)

  it("reports a cancelled attempt after stopConnecting", function()
    local port = reactor.listenTCP(0, Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local failed = defer.Deferred()
    local cf = ClientFactory.forProtocol(Recorder)
    function cf:clientConnectionFailed(_, reason) failed:callback({ reason }) end
    local connector = reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    connector:stopConnecting()
    local reason = runUntil(failed)[1]
    assert.is_truthy(reason)
    assert.has_error(function() connector:stopConnecting() end)
    runUntil(port:stopListening())
  end)

  it("rejects a bad port and a missing factory at once", function()
    assert.has_error(function()
      reactor.connectTCP("127.0.0.1", 0, ClientFactory.forProtocol(Recorder))
    end)
    assert.has_error(function() reactor.connectTCP("127.0.0.1", 80, {}) end)
  end)

  it("can reconnect with connector:connect() after a loss", function()
    local port = listen(Factory.forProtocol(Echo))
    local made = 0
    local d = defer.Deferred()
    local cf = ClientFactory.forProtocol(Recorder)
    local P = Recorder:extend()
    function P:connectionMade()
      made = made + 1
      self.transport:loseConnection()
    end
    cf.protocol = P
    function cf:clientConnectionLost(connector)
      if made < 2 then connector:connect() else d:callback(made) end
    end
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    assert.equal(2, runUntil(d))
    runUntil(port:stopListening())
  end)
end)

describe("connectTCP to a host that is not an IP literal", function()
  it("reports DNSLookupError to clientConnectionFailed", function()
    local failed = defer.Deferred()
    local cf = ClientFactory:new()
    function cf:clientConnectionFailed(_, reason) failed:callback({ reason }) end
    reactor.connectTCP("no-such-host.invalid", 80, cf)
    local reason = runUntil(failed)[1]
    assert.is_truthy(reason:check(err.DNSLookupError))
    assert.matches("no%-such%-host%.invalid", reason:getErrorMessage())
  end)

  it("picks the class by error name for a malformed IP literal", function()
    local failed = defer.Deferred()
    local cf = ClientFactory:new()
    function cf:clientConnectionFailed(_, reason) failed:callback({ reason }) end
    reactor.connectTCP("300.1.2.3", 80, cf) -- looks like IPv4, is not
    local reason = runUntil(failed)[1]
    assert.is_truthy(reason:check(err.DNSLookupError))
    assert.equal("EAI_NONAME", reason.value.errno)
    assert.matches("300%.1%.2%.3: not an IP address", reason:getErrorMessage())
  end)
end)

describe("error.fromErrno", function()
  it("maps error names to classes in one table, with a default", function()
    local e = err.fromErrno("ECONNREFUSED", "refused", err.ConnectError)
    assert.is_true(e:isa(err.ConnectionRefusedError))
    assert.equal("ECONNREFUSED", e.errno)
    assert.equal("refused", e.message)
    assert.is_true(err.fromErrno("EAI_NONAME", "x", err.ConnectError)
      :isa(err.DNSLookupError))
    local other = err.fromErrno("EMFILE", "too many", err.ConnectError)
    assert.equal(err.ConnectError, other:class())
  end)

  it("is what every failed listen's errno comes from", function()
    local a = reactor.listenTCP(0, Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local ok, e = pcall(reactor.listenTCP, a:getHost().port,
      Factory.forProtocol(Echo), { interface = "127.0.0.1" })
    assert.is_false(ok)
    assert.is_true(e:isa(err.CannotListenError))
    assert.equal("EADDRINUSE", e.errno)
    runUntil(a:stopListening())
  end)
end)

describe("writing to a peer that has gone", function()
  it("loses that connection with ConnectionLost instead of a SIGPIPE death",
    function()
      local Flood = Recorder:extend()
      local chunk = string.rep("z", 65536)
      function Flood:connectionMade()
        Recorder.connectionMade(self)
        local function more()
          if self.transport.connected then
            self.transport:write(chunk)
            reactor.callLater(0.001, more)
          end
        end
        more()
      end
      local server = recordingFactory(Flood)
      local port = listen(server)
      local built = server.next
      local c = connect(port)
      runUntil(c.made)
      local s = runUntil(built)
      c.transport:abortConnection()
      local reason = runUntil(s.lost).reason
      assert.is_truthy(reason:check(err.ConnectionLost) or
        reason:check(err.ConnectionDone))
      runUntil(port:stopListening())
    end)
end)

describe("a streaming producer whose connection goes away", function()
  it("is paused by writes that can no longer go out, then stopped",
    function()
      local Looper = Recorder:extend()
      local chunk = string.rep("y", 4096)
      function Looper:connectionMade()
        Recorder.connectionMade(self)
        self.calls = {}
        self.transport:registerProducer(self, true)
      end
      function Looper:pauseProducing()
        self.calls[#self.calls + 1] = "pause"
        self.paused = true
      end
      function Looper:stopProducing()
        self.calls[#self.calls + 1] = "stop"
      end
      function Looper:resumeProducing()
        self.paused = false
        -- The classic producer loop: only a pause ends it.
        while not self.paused do
          self.transport:write(chunk)
        end
      end
      local server = recordingFactory(Looper)
      local port = listen(server)
      local built = server.next
      local c = connect(port)
      runUntil(c.made)
      local s = runUntil(built)
      s.transport:abortConnection()
      s:resumeProducing() -- Must return: the closing transport pauses it.
      runUntil(s.lost)
      assert.same({ "pause", "stop" }, s.calls)
      runUntil(c.lost)
      runUntil(port:stopListening())
    end)
end)

describe("registry refs", function()
  -- Userdata pinned in the registry: one per live transport, port, timer.
  local function pinned()
    local n = 0
    for k, v in pairs(debug.getregistry()) do
      if math.type(k) == "integer" and type(v) == "userdata" then
        n = n + 1
      end
    end
    return n
  end

  it("are all released once connections, ports and timers are closed",
    function()
      local base = pinned()
      local port = listen(Factory.forProtocol(Echo))
      local clients = {}
      for i = 1, 20 do
        clients[i] = connect(port)
      end
      for i = 1, 20 do
        runUntil(clients[i].made)
      end
      reactor.callLater(100, function() end):cancel()
      assert.is_true(pinned() >= base + 21)
      for i = 1, 20 do
        clients[i].transport:loseConnection()
        runUntil(clients[i].lost)
      end
      runUntil(port:stopListening())
      local tick = defer.Deferred()
      reactor.callLater(0.05, function() tick:callback() end)
      runUntil(tick)
      -- Not more than before (earlier specs' leftovers may close meanwhile).
      assert.is_true(pinned() <= base, pinned() .. " > " .. base)
    end)
end)

describe("half-close on both sides", function()
  it("closes a half-close-aware protocol once the peer's EOF arrives after "
    .. "its own loseWriteConnection", function()
      local Half = net.Recorder:extend()
      function Half:connectionMade()
        net.Recorder.connectionMade(self)
        self.transport:loseWriteConnection()
      end
      function Half:readConnectionLost()
        self.readLost = true
      end
      local server = recordingFactory(Half)
      local port = listen(server)
      local built = server.next
      local c = connect(port)
      runUntil(c.made)
      local s = runUntil(built)
      -- The server's FIN makes the client close, whose FIN ends the server.
      local reason = runUntil(s.lost).reason
      assert.is_true(s.readLost)
      assert.is_truthy(reason:check(err.ConnectionDone))
      runUntil(c.lost)
      runUntil(port:stopListening())
    end)
end)
