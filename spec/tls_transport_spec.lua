-- The TLS transport: STARTTLS, batching of small writes into one batch of
-- records, 10 MiB both ways, backpressure and maxWriteBuffer through TLS,
-- close_notify, a peer that closes without it, and hostile peers (garbage,
-- a reset mid-handshake, no handshake at all).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local policies = require "loom.policies"
local err = require "loom.error"
local testing = require "loom.testing"

local tls = dofile("spec/support/tls.lua")
local net = tls.net
local runUntil, waitFor = testing.runUntil, net.waitFor

teardown(function()
  tls.closePorts()
  tls.cleanup()
end)

local function close(c)
  c.transport:loseConnection()
  runUntil(c.lost, 5)
end

describe("startTLS", function()
  local BLOB = string.rep("clear text before TLS\n", 200000) -- 4.4 MB

  -- A line protocol: "STARTTLS" makes it write BLOB and "GO" in clear,
  -- then switch to TLS at once (BLOB is still queued then); every other
  -- line is echoed as "echo:<line>".
  local Server = protocol.Protocol:extend({})
  function Server:init()
    self.buf, self.clear = "", {}
  end
  function Server:dataReceived(data)
    self.buf = self.buf .. data
    while true do
      local line, rest = self.buf:match("^(.-)\n(.*)$")
      if not line then
        return
      end
      self.buf = rest
      if not self.secure then
        self.clear[#self.clear + 1] = line
      end
      if line == "STARTTLS" then
        self.transport:write(BLOB)
        self.transport:write("GO\n")
        self.queued = self.transport:bufferedBytes()
        self.transport:startTLS(tls.serverOptions())
        self.secure = true
      else
        self.transport:write("echo:" .. line .. "\n")
      end
    end
  end
  function Server:handshakeCompleted()
    self.handshaken = true
  end

  it("goes on under TLS; what was written before goes out in clear",
    function()
      local server
      local f = protocol.Factory.forProtocol(Server)
      local build = f.buildProtocol
      function f:buildProtocol(addr)
        server = build(self, addr)
        return server
      end
      local port = net.listen(f)
      local c = net.connect(port)
      runUntil(c.made)
      c.transport:write("hello\nSTARTTLS\n")
      c.transport:pauseProducing() -- the blob stays queued at the server
      waitFor(function() return server and server.secure end)
      assert.is_true(server.queued > 0)
      c.transport:resumeProducing()
      local clear = "echo:hello\n" .. BLOB .. "GO\n"
      runUntil(c:expect(#clear), 20)
      assert.is_true(c:text() == clear, "the clear part differs")
      assert.is_nil(c.transport:getTLSVersion())
      c.transport:startTLS(tls.clientOptions())
      c.transport:write("secret\n") -- queued until the handshake is done
      c:waitFor("echo:secret\n", true)
      assert.equal(clear .. "echo:secret\n", c:text())
      assert.same({ "hello", "STARTTLS" }, server.clear)
      assert.equal("TLSv1.3", c.transport:getTLSVersion())
      assert.equal("CN=localhost", c.transport:getPeerCertificate().subject)
      assert.is_true(server.handshaken)
      close(c)
      assert.is_true(c.reason.value:isa(err.ConnectionDone))
      runUntil(port:stopListening())
    end)

  it("a failed verification ends the connection with a TLSError",
    function()
      local port = net.listen(protocol.Factory.forProtocol(Server))
      local c = net.connect(port)
      runUntil(c.made)
      c.transport:write("STARTTLS\n")
      c:waitFor("GO\n", true, 30) -- after BLOB: slow under valgrind
      c.transport:startTLS(tls.clientOptions({ hostname = "wrong.test" }))
      runUntil(c.lost)
      assert.is_true(c.reason.value:isa(err.TLSError))
      assert.equal("hostnameMismatch", c.reason.value.reason)
      local ok, e = pcall(c.transport.startTLS, c.transport, {})
      assert.is_false(ok)
      assert.matches("transport is closed", tostring(e))
      runUntil(port:stopListening())
    end)

  -- CVE-2011-0411's kind: "STARTTLS\r\nMAIL FROM:<evil>" in one packet,
  -- the second line a man in the middle's, must not be read as if it
  -- came over TLS.
  it("drops what a LineReceiver read in clear after the command", function()
    local basic = require "loom.basic"
    local S = basic.LineReceiver:extend({ delimiter = "\n" })
    local lines = {}
    function S:lineReceived(line)
      lines[#lines + 1] = { line, self.secure or false }
      if line == "STARTTLS" then
        self:sendLine("GO")
        self.transport:startTLS(tls.serverOptions())
        self.secure = true
      else
        self:sendLine("echo:" .. line)
      end
    end
    local port = net.listen(protocol.Factory.forProtocol(S))
    local c = net.connect(port)
    runUntil(c.made)
    local logged = tls.captureLog(function()
      c.transport:write("hello\nSTARTTLS\nMAIL FROM:<evil>\nmore\n")
      c:waitFor("GO\n", true)
      c.transport:startTLS(tls.clientOptions())
      c.transport:write("after\n")
      c:waitFor("echo:after\n", true)
    end)
    assert.same({ { "hello", false }, { "STARTTLS", false }, { "after", true } },
      lines)
    assert.is_nil(c:text():find("evil", 1, true))
    assert.truthy(tls.findLine(logged, "dropped 22 bytes received in clear"))
    close(c)
    runUntil(port:stopListening())
  end)

  it("closes a startTLS whose handshake never comes (handshakeTimeout)",
    function()
      local S = protocol.Protocol:extend({})
      function S:dataReceived()
        self.transport:startTLS(tls.serverOptions(nil, { handshakeTimeout = 0.2 }))
      end
      local port = net.listen(protocol.Factory.forProtocol(S))
      local c = net.connect(port)
      runUntil(c.made)
      local logged = tls.captureLog(function()
        c.transport:write("STARTTLS\n") -- and then nothing
        runUntil(c.lost, 5)
      end)
      assert.truthy(tls.findLine(logged, "no handshake after 0.2s; closing"))
      -- a client that goes away mid-handshake leaves no timer behind
      local c2 = net.connect(port)
      runUntil(c2.made)
      c2.transport:write("STARTTLS\n")
      net.sleep(0.05)
      close(c2)
      runUntil(port:stopListening())
    end)

  it("refuses a second startTLS", function()
    local port = tls.echoPort()
    local c, made = tls.connect(port)
    runUntil(made)
    local ok, e = pcall(c.transport.startTLS, c.transport, tls.clientOptions())
    assert.is_false(ok)
    assert.matches("already under TLS", tostring(e))
    close(c)
  end)
end)

-- Counts the TLS records a client sends, through a TCP relay in front of
-- the TLS port: each record is a 5-byte header (type, version, length).
local function recordCounter(target)
  local counter = { records = 0, appData = 0 }
  local Relay = protocol.Protocol:extend({})
  function Relay:connectionMade()
    self.transport:pauseProducing()
    self.buf = ""
    local me = self
    local Back = protocol.Protocol:extend({})
    function Back:connectionMade()
      me.back = self
      me.transport:resumeProducing()
    end
    function Back:dataReceived(data)
      me.transport:write(data)
    end
    function Back:connectionLost()
      me.transport:loseConnection()
    end
    local cf = protocol.ClientFactory.forProtocol(Back)
    reactor.connectTCP("127.0.0.1", target:getHost().port, cf)
  end
  function Relay:dataReceived(data)
    self.back.transport:write(data)
    self.buf = self.buf .. data
    while #self.buf >= 5 do
      local kind, len = string.unpack(">I1xxI2", self.buf)
      if #self.buf < 5 + len then
        break
      end
      counter.records = counter.records + 1
      if kind == 23 then
        counter.appData = counter.appData + 1
      end
      self.buf = self.buf:sub(6 + len)
    end
  end
  function Relay:connectionLost()
    if self.back then
      self.back.transport:loseConnection()
    end
  end
  counter.port = net.listen(protocol.Factory.forProtocol(Relay))
  return counter
end

describe("writes through TLS", function()
  it("many small writes in one turn become one batch of records",
    function()
      local target = tls.echoPort()
      local counter = recordCounter(target)
      local c, made = tls.connect(counter.port)
      runUntil(made)
      waitFor(function() return counter.records >= 2 end)
      local before = counter.appData
      for i = 1, 1000 do
        c.transport:write(string.format("%04d", i))
      end
      c:expect(4000)
      runUntil(c:expect(4000))
      assert.equal(4000, #c:text())
      assert.equal("0001", c:text():sub(1, 4))
      assert.equal("1000", c:text():sub(-4))
      -- 1000 writes: at most a few records (not one per write).
      assert.is_true(counter.appData - before <= 3,
        (counter.appData - before) .. " records")
      close(c)
      runUntil(counter.port:stopListening())
    end)

  it("carries 10 MiB both ways intact", function()
    local port = tls.listen(protocol.Factory.forProtocol(
      protocol.Protocol:extend({
        connectionMade = function(self)
          policies.applyBackpressure(self)
        end,
        dataReceived = function(self, data)
          self.transport:write(data)
        end,
      })))
    local c, made = tls.connect(port)
    runUntil(made)
    local block = {}
    for i = 0, 255 do
      block[#block + 1] = string.char(i)
    end
    block = string.rep(table.concat(block), 256) -- 64 KiB
    local total = 10 * 1024 * 1024
    for _ = 1, total // #block do
      c.transport:write(block)
    end
    runUntil(c:expect(total), 60)
    local text = c:text()
    assert.equal(total, #text)
    assert.is_true(text == string.rep(block, total // #block),
      "the data came back changed")
    close(c)
  end)

  it("pauses and resumes a producer as over TCP", function()
    local producer = { paused = 0, resumed = 0 }
    function producer.pauseProducing()
      producer.paused = producer.paused + 1
    end
    function producer.resumeProducing()
      producer.resumed = producer.resumed + 1
    end
    function producer.stopProducing() end
    local server
    local S = protocol.Protocol:extend({
      connectionMade = function(self)
        server = self
        self.transport:registerProducer(producer, true)
      end,
    })
    local port = tls.listen(protocol.Factory.forProtocol(S))
    local c, made = tls.connect(port)
    runUntil(made)
    waitFor(function() return server ~= nil end)
    c.transport:pauseProducing() -- the client stops reading
    local chunk = string.rep("x", 64 * 1024)
    for _ = 1, 64 do -- 4 MiB: past what the sockets hold
      server.transport:write(chunk)
    end
    assert.is_true(producer.paused >= 1)
    assert.is_true(server.transport:bufferedBytes() > 65536)
    c.transport:resumeProducing()
    runUntil(c:expect(64 * 64 * 1024), 30)
    waitFor(function() return producer.resumed >= 1 end)
    close(c)
  end)

  it("aborts a peer that does not read past maxWriteBuffer", function()
    local server
    local S = protocol.Protocol:extend({
      connectionMade = function(self)
        server = self
      end,
      connectionLost = function(self, reason)
        self.reason = reason
      end,
    })
    local f = protocol.Factory.forProtocol(S)
    f.maxWriteBuffer = 1024 * 1024
    local port = tls.listen(f)
    local c, made = tls.connect(port)
    runUntil(made)
    waitFor(function() return server ~= nil end)
    c.transport:pauseProducing()
    local chunk = string.rep("y", 64 * 1024)
    for _ = 1, 128 do
      server.transport:write(chunk)
    end
    waitFor(function() return server.reason ~= nil end)
    assert.is_true(server.reason.value:isa(err.WriteBufferFull))
    c.transport:resumeProducing()
    runUntil(c.lost)
  end)
end)

describe("closing under TLS", function()
  it("loseConnection sends close_notify: the peer sees a clean close",
    function()
      local server
      local S = protocol.Protocol:extend({
        connectionMade = function(self)
          server = self
        end,
        dataReceived = function(self, data)
          self.transport:write("bye:" .. data)
          self.transport:loseConnection()
        end,
      })
      local port = tls.listen(protocol.Factory.forProtocol(S))
      local c, made = tls.connect(port)
      runUntil(made)
      c.transport:write("x")
      runUntil(c.lost)
      assert.equal("bye:x", c:text())
      assert.is_true(c.reason.value:isa(err.ConnectionDone))
    end)

  it("a peer that closes without close_notify is reported as such",
    function()
      local server
      local S = net.Recorder:extend({})
      local f = protocol.Factory.forProtocol(S)
      function f:buildProtocol()
        server = S:new()
        return server
      end
      local port = tls.listen(f)
      local c, made = tls.connect(port)
      runUntil(made)
      waitFor(function() return server ~= nil end)
      c.transport:abortConnection() -- the TCP closes, no close_notify
      runUntil(server.lost)
      local e = server.reason.value
      assert.is_true(e:isa(err.ConnectionLost))
      assert.is_false(e:isa(err.TLSError))
      assert.equal("ETLSTRUNCATED", e.errno)
      assert.matches("without a TLS close_notify", e.message)
    end)

  it("loseWriteConnection sends close_notify and half-closes", function()
    local server
    local S = protocol.Protocol:extend({
      connectionMade = function(self)
        server = self
        self.got = ""
      end,
      dataReceived = function(self, data)
        self.got = self.got .. data
      end,
      readConnectionLost = function(self)
        self.transport:write("after:" .. self.got)
        self.transport:loseConnection()
      end,
    })
    local port = tls.listen(protocol.Factory.forProtocol(S))
    local c, made = tls.connect(port)
    runUntil(made)
    c.transport:write("half")
    c.transport:loseWriteConnection()
    runUntil(c.lost)
    assert.equal("after:half", c:text())
  end)
end)

describe("hostile peers", function()
  local function rawConnect(port)
    return net.connect(port)
  end

  local function quietPort(options)
    local built = 0
    local f = protocol.Factory.forProtocol(net.Echo)
    local build = f.buildProtocol
    function f:buildProtocol(addr)
      built = built + 1
      return build(self, addr)
    end
    local port = tls.listen(f, options)
    return port, function() return built end
  end

  it("garbage instead of a ClientHello: one log line, closed", function()
    local port, built = quietPort()
    local c
    local lines = tls.captureLog(function()
      c = rawConnect(port)
      runUntil(c.made)
      c.transport:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      runUntil(c.lost)
    end)
    assert.equal(0, built())
    local ev = tls.findLine(lines, "^TLS handshake from 127%.0%.0%.1:%d+"
      .. " failed: handshake failure: ")
    assert.is_truthy(ev, "no log line")
    assert.is_nil(tostring(ev.text):find("\n"))
  end)

  it("a peer that resets mid-handshake: one log line, closed", function()
    local port, built = quietPort()
    local lines = tls.captureLog(function()
      local c = rawConnect(port)
      runUntil(c.made)
      -- The start of a ClientHello (a record header promising 512 bytes).
      c.transport:write("\22\3\1\2\0\1\0\1\252\3\3" .. string.rep("r", 32))
      net.sleep(0.05)
      c.transport:abortConnection()
      runUntil(c.lost)
      net.sleep(0.1)
    end)
    assert.equal(0, built())
    assert.is_truthy(tls.findLine(lines, "^TLS handshake from .* failed:"
      .. " handshake failure: the peer closed the connection$")
      or tls.findLine(lines, "failed: handshake failure: .*reset"))
  end)

  it("a peer that never sends a handshake is closed after"
    .. " handshakeTimeout", function()
    local port = quietPort(tls.serverOptions(nil, { handshakeTimeout = 0.2 }))
    local lines = tls.captureLog(function()
      local c = rawConnect(port)
      runUntil(c.made)
      runUntil(c.lost)
    end)
    assert.is_truthy(tls.findLine(lines, "no handshake after 0%.2s; closing"))
  end)

  it("a plain TCP client and a TLS server do not mix: the client fails",
    function()
      local port = net.listen(protocol.Factory.forProtocol(
        protocol.Protocol:extend({
          connectionMade = function(self)
            self.transport:write("220 not tls\r\n")
          end,
        })))
      local _, d = tls.connect(port)
      local f = tls.failureOf(d)
      assert.is_true(f.value:isa(err.TLSError))
      assert.equal("handshakeFailure", f.value.reason)
      runUntil(port:stopListening())
    end)
end)

describe("the failure log", function()
  it("logs 10 failed handshakes a second per port, then sums up", function()
    local port = tls.echoPort()
    local lines = tls.captureLog(function()
      local clients = {}
      for i = 1, 15 do
        clients[i] = net.connect(port)
      end
      for _, c in ipairs(clients) do
        runUntil(c.made)
        c.transport:write("not a ClientHello\r\n\r\n")
      end
      for _, c in ipairs(clients) do
        runUntil(c.lost)
      end
      runUntil(port:stopListening())
    end)
    local each, summary = 0, nil
    for _, ev in ipairs(lines) do
      local text = tostring(ev.text)
      if text:find("^TLS handshake from .* failed:") then
        each = each + 1
      elseif text:find("more TLS handshake%(s%) failed") then
        summary = text
      end
    end
    assert.equal(10, each)
    assert.matches("^5 more TLS handshake%(s%) failed in the last 1s %(the"
      .. " last: TLS handshake from 127%.0%.0%.1:%d+ failed: handshake"
      .. " failure: .*%)$", summary)
  end)
end)
