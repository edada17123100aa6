-- TLS between loom and loom over loopback: listenSSL/connectSSL, TLS 1.2
-- and 1.3, certificates, SNI, ALPN, verification failures, endpoints.
-- Certificates are made when the spec loads (spec/support/mkcerts.sh).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local endpoints = require "loom.endpoints"
local err = require "loom.error"
local testing = require "loom.testing"

local tls = dofile("spec/support/tls.lua")
local net = tls.net
local runUntil, waitFor = testing.runUntil, net.waitFor

teardown(function()
  tls.closePorts()
  tls.cleanup()
end)

-- Connects, exchanges "ping", returns the client protocol (connected).
local function ping(port, clientOptions)
  local c, made = tls.connect(port, clientOptions)
  runUntil(made, 5)
  c.transport:write("ping")
  c:waitFor("ping", true)
  return c
end

local function close(c)
  c.transport:loseConnection()
  runUntil(c.lost, 5)
end

describe("listenSSL and connectSSL", function()
  it("echo over TLS 1.3, with the peer's certificate", function()
    local port = tls.echoPort()
    local c = ping(port)
    local t = c.transport
    assert.equal("TLSv1.3", t:getTLSVersion())
    local cert = t:getPeerCertificate()
    assert.equal("CN=localhost", cert.subject)
    assert.equal("CN=Loom Test CA", cert.issuer)
    assert.equal("localhost", cert.commonName)
    assert.same({ "DNS:localhost", "IP:127.0.0.1" }, cert.subjectAltNames)
    assert.is_true(cert.notAfter > os.time() and cert.notBefore <= os.time())
    assert.matches("^%x+$", cert.serial)
    assert.matches("^%x%x:", cert.sha256)
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n", cert.pem)
    assert.is_nil(t:negotiatedProtocol())
    close(c)
    assert.is_true(c.reason.value:isa(err.ConnectionDone))
  end)

  it("speaks TLS 1.2 when that is the most one side allows", function()
    local port = tls.echoPort(tls.serverOptions(nil,
      { maximumVersion = "TLSv1.2" }))
    local c = ping(port)
    assert.equal("TLSv1.2", c.transport:getTLSVersion())
    close(c)
  end)

  it("connectionMade comes after the handshake; handshakeCompleted too",
    function()
      local P = net.Recorder:extend({})
      local seen = {}
      function P:connectionMade()
        seen[#seen + 1] = "made:" .. tostring(self.transport:getTLSVersion())
        net.Recorder.connectionMade(self)
      end
      function P:handshakeCompleted()
        seen[#seen + 1] = "handshake"
      end
      local port = tls.echoPort()
      local c, made = tls.connect(port, nil, P)
      runUntil(made)
      assert.same({ "made:TLSv1.3", "handshake" }, seen)
      close(c)
    end)

  it("a server presents its client's certificate when it asks for one",
    function()
      local server
      local S = protocol.Protocol:extend({})
      function S:connectionMade()
        server = self
      end
      local port = tls.listen(protocol.Factory.forProtocol(S),
        tls.serverOptions(nil, { verify = true, caCerts = tls.cert("ca") }))
      local c, made = tls.connect(port, tls.clientOptions({
        certificate = tls.cert("client"), privateKey = tls.key("client") }))
      runUntil(made)
      waitFor(function() return server ~= nil end)
      assert.equal("CN=loom client", server.transport:getPeerCertificate()
        .subject)
      close(c)
      -- Without a certificate, TLS 1.2's handshake fails...
      local _, d = tls.connect(port, tls.clientOptions({
        maximumVersion = "TLSv1.2" }))
      local f = tls.failureOf(d)
      assert.is_true(f.value:isa(err.TLSError))
      assert.matches("handshake failure", f.value.message)
      -- ...while a TLS 1.3 client has finished its part when the server
      -- refuses: it connects, then loses the connection with the alert.
      local c3, made3 = tls.connect(port)
      runUntil(made3)
      runUntil(c3.lost)
      assert.is_true(c3.reason.value:isa(err.TLSError))
      assert.matches("certificate required", c3.reason.value.message)
    end)

  it("sends the chain of extraCertChain", function()
    local port = tls.echoPort(tls.serverOptions("leaf",
      { extraCertChain = tls.cert("inter") }))
    local c = ping(port)
    assert.equal("CN=Loom Intermediate", c.transport:getPeerCertificate()
      .issuer)
    close(c)
    -- Without it, the client cannot build the chain to its CA.
    local port2 = tls.echoPort(tls.serverOptions("leaf"))
    local _, d = tls.connect(port2)
    local f = tls.failureOf(d)
    assert.equal("unknownCA", f.value.reason)
  end)

  it("chooses the certificate by SNI (several on one port)", function()
    local port = tls.echoPort(tls.serverOptions(nil, {
      sni = { { certificate = tls.cert("other"),
        privateKey = tls.key("other") } } }))
    local c = ping(port, tls.clientOptions({ hostname = "other.test" }))
    assert.equal("CN=other.test", c.transport:getPeerCertificate().subject)
    close(c)
    local c2 = ping(port)
    assert.equal("CN=localhost", c2.transport:getPeerCertificate().subject)
    close(c2)
  end)

  it("negotiates ALPN (acceptableProtocols, negotiatedProtocol)", function()
    local server
    local S = net.Echo:extend({})
    function S:connectionMade()
      server = self
    end
    local port = tls.listen(protocol.Factory.forProtocol(S),
      tls.serverOptions(nil, { acceptableProtocols = { "h2", "http/1.1" } }))
    local c = ping(port, tls.clientOptions({
      acceptableProtocols = { "http/1.1", "spdy/1" } }))
    assert.equal("http/1.1", c.transport:negotiatedProtocol())
    assert.equal("http/1.1", server.transport:negotiatedProtocol())
    close(c)
    -- Nothing in common: the connection goes on without a protocol.
    local c2 = ping(port, tls.clientOptions({
      acceptableProtocols = { "imap" } }))
    assert.is_nil(c2.transport:negotiatedProtocol())
    close(c2)
  end)

  it("refuses bad options and files with one line", function()
    local f = protocol.Factory.forProtocol(net.Echo)
    local ok, e = pcall(reactor.listenSSL, 0, f,
      { certificate = tls.dir .. "/nope.pem", privateKey = tls.key("server") })
    assert.is_false(ok)
    assert.is_true(e:isa(err.TLSError))
    assert.matches("listenSSL: certificate .*nope%.pem: No such file",
      e.message)
    ok, e = pcall(reactor.listenSSL, 0, f, { certificate = tls.cert("server"),
      privateKey = tls.key("other") })
    assert.matches("does not match certificate", tostring(e))
    -- a passphrase-protected key: one line, never OpenSSL's prompt on the
    -- terminal (stdin is a pipe here; a terminal would hold the reactor)
    local enc = tls.dir .. "/enc.key"
    assert(os.execute("openssl pkey -in " .. tls.key("server") .. " -aes256"
      .. " -passout pass:secret -out " .. enc .. " </dev/null 2>/dev/null"))
    ok, e = pcall(reactor.listenSSL, 0, f, { certificate = tls.cert("server"),
      privateKey = enc })
    assert.is_false(ok)
    assert.matches("privateKey .*enc%.key is protected by a passphrase, which"
      .. " loom does not support", tostring(e))
    -- OpenSSL says only "PEM lib": what it means, and a directory
    local garbage = tls.dir .. "/garbage.key"
    local g = assert(io.open(garbage, "w"))
    g:write("not a key\n")
    g:close()
    ok, e = pcall(reactor.listenSSL, 0, f, { certificate = tls.cert("server"),
      privateKey = garbage })
    assert.matches("garbage%.key: no PEM private key in it", tostring(e))
    ok, e = pcall(reactor.listenSSL, 0, f, { certificate = tls.key("server"),
      privateKey = tls.key("server") })
    assert.matches("certificate .*server%.key: no PEM certificate in it", tostring(e))
    ok, e = pcall(reactor.listenSSL, 0, f, { certificate = tls.cert("server"),
      privateKey = tls.dir })
    assert.matches("privateKey .*: not a regular file", tostring(e))
    -- a NUL would cut a name short: "localhost\0.bank.example" passes a
    -- suffix check and is verified (and looked up) as localhost
    ok, e = pcall(reactor.connectSSL, "127.0.0.1", 1, f, { hostname = "localhost\0evil" })
    assert.matches("connectSSL: TLS option hostname holds a NUL byte", tostring(e))
    ok, e = pcall(reactor.connectSSL, "localhost\0.bank.example", 1, f, {})
    assert.matches("connectSSL: host holds a NUL byte", tostring(e))
    ok, e = pcall(reactor.connectTCP, "localhost\0.bank.example", 1, f)
    assert.matches("connectTCP: host holds a NUL byte", tostring(e))
    ok, e = pcall(reactor.listenSSL, 0, f, { certficate = "x" })
    assert.matches("unknown TLS option 'certficate'", tostring(e))
    ok, e = pcall(reactor.connectSSL, "127.0.0.1", 1, f,
      { minimumVersion = "TLSv1.0" })
    assert.matches("minimumVersion 'TLSv1.0' is not TLSv1.2 or TLSv1.3",
      tostring(e))
    ok, e = pcall(reactor.listenSSL, 0, f, {})
    assert.matches("a TLS server needs a certificate", tostring(e))
  end)
end)

describe("verification (on by default)", function()
  local function refused(serverName, clientOptions)
    local port = tls.echoPort(tls.serverOptions(serverName))
    local _, d = tls.connect(port, clientOptions)
    local f = tls.failureOf(d)
    assert.is_true(f.value:isa(err.TLSError), tostring(f))
    return f.value
  end

  it("refuses a host name mismatch", function()
    local e = refused("server", tls.clientOptions({ hostname = "wrong.test" }))
    assert.equal("hostnameMismatch", e.reason)
    assert.matches("certificate verify failed: hostname mismatch",
      e.message)
  end)

  it("checks the IP address connected to when no hostname is given",
    function()
      -- other.pem names only other.test: 127.0.0.1 is not in it.
      local e = refused("other", tls.clientOptions())
      assert.equal("hostnameMismatch", e.reason)
      assert.matches("IP address mismatch", e.message)
    end)

  it("refuses a self-signed certificate", function()
    local e = refused("self", tls.clientOptions())
    assert.equal("unknownCA", e.reason)
    assert.matches("self%-signed certificate", e.message)
  end)

  it("refuses an expired certificate", function()
    local e = refused("expired", tls.clientOptions())
    assert.equal("expired", e.reason)
    assert.matches("certificate has expired", e.message)
  end)

  it("uses the system CA store without caCerts (our CA is not in it)",
    function()
      local e = refused("server", {})
      assert.equal("unknownCA", e.reason)
    end)

  it("connects with verify = false, and warns once", function()
    local port = tls.echoPort(tls.serverOptions("self"))
    local c
    local lines = tls.captureLog(function()
      c = ping(port, { verify = false, minimumVersion = "TLSv1.3" })
      close(c)
      -- Equal options (a new table): the same context, no second warning.
      c = ping(port, { minimumVersion = "TLSv1.3", verify = false })
      close(c)
    end)
    local n = 0
    for _, ev in ipairs(lines) do
      if tostring(ev.text):find("verify = false", 1, true) then
        n = n + 1
        assert.equal("warn", ev.level)
      end
    end
    assert.equal(1, n)
  end)

  it("the server logs a failed handshake in one line", function()
    local port = tls.echoPort(tls.serverOptions("self"))
    local lines = tls.captureLog(function()
      local _, d = tls.connect(port)
      tls.failureOf(d)
      net.sleep(0.05)
    end)
    local ev = tls.findLine(lines, "^TLS handshake from 127%.0%.0%.1:%d+"
      .. " failed: handshake failure: tlsv1 alert unknown ca$")
    assert.is_truthy(ev, "no log line")
  end)
end)

describe("ssl: and tls: endpoints", function()
  it("serve and connect from strings", function()
    local desc = string.format("ssl:0:privateKey=%s:certKey=%s"
      .. ":interface=127.0.0.1", tls.key("leaf"), tls.cert("leaf"))
      .. ":extraCertChain=" .. tls.cert("inter")
    local ep = endpoints.serverFromString(reactor, desc)
    local port = runUntil(ep:listen(protocol.Factory.forProtocol(net.Echo)))
    local n = port:getHost().port
    local cep = endpoints.clientFromString(reactor, string.format(
      "tls:host=127.0.0.1:port=%d:caCerts=%s", n, tls.cert("ca")))
    local c = runUntil(cep:connect(protocol.Factory.forProtocol(
      net.Recorder)))
    c.transport:write("over tls")
    c:waitFor("over tls", true)
    close(c)
    -- A failed verification errbacks the connect Deferred.
    cep = endpoints.clientFromString(reactor, string.format(
      "tls:host=127.0.0.1:port=%d", n))
    local f = tls.failureOf(cep:connect(protocol.Factory.forProtocol(
      net.Recorder)))
    assert.is_true(f.value:isa(err.TLSError))
    assert.equal("unknownCA", f.value.reason)
    runUntil(port:stopListening())
  end)

  it("name the bad part of a description", function()
    local function msg(f, desc)
      local ok, e = pcall(f, reactor, desc)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.equal("ssl: missing privateKey",
      msg(endpoints.serverFromString, "ssl:443"))
    assert.equal("ssl: port 'x' is not a number",
      msg(endpoints.serverFromString, "ssl:x:privateKey=k.pem"))
    assert.equal("tls: missing port",
      msg(endpoints.clientFromString, "tls:host=a"))
    assert.matches("unknown parameter 'cacerts' for tls",
      msg(endpoints.clientFromString, "tls:host=a:port=1:cacerts=x"))
  end)
end)
