-- loom's TLS against other implementations: `openssl s_client` and
-- Python's ssl module against a loom server, a loom client against
-- `openssl s_server`. Each child runs under timeout(1).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local testing = require "loom.testing"

local tls = dofile("spec/support/tls.lua")
local net = tls.net
local runUntil = testing.runUntil

teardown(function()
  tls.closePorts()
  tls.cleanup()
end)

local Child = protocol.ProcessProtocol:extend({ __name = "Child" })
function Child:init()
  self.out, self.err = {}, {}
  self.ended = defer.Deferred()
end
function Child:outReceived(d)
  self.out[#self.out + 1] = d
  if self.onOut then
    self:onOut(table.concat(self.out))
  end
end
function Child:errReceived(d) self.err[#self.err + 1] = d end
function Child:processEnded(reason)
  self.reason = reason
  self.ended:callback(self)
end
function Child:stdout() return table.concat(self.out) end
function Child:stderr() return table.concat(self.err) end

-- Runs argv (under `timeout 15`); returns the Child.
local function spawn(argv, child)
  child = child or Child:new()
  local args = { "timeout", "15" }
  table.move(argv, 1, #argv, #args + 1, args)
  reactor.spawnProcess(child, "/usr/bin/timeout", args,
    { env = { PATH = os.getenv("PATH") or "/usr/bin:/bin",
      HOME = os.getenv("HOME") or "/tmp" } })
  return child
end

local function exitCode(child)
  return child.reason and child.reason.value.exitCode
end

-- A server protocol that answers one message and closes.
local Once = protocol.Protocol:extend({})
function Once:dataReceived(data)
  self.transport:write("loom:" .. data)
  self.transport:loseConnection()
end

describe("openssl s_client against loom", function()
  for _, v in ipairs({ "-tls1_3", "-tls1_2" }) do
    it("connects, verifies and talks (" .. v .. ")", function()
      local port = tls.listen(protocol.Factory.forProtocol(Once))
      local c = spawn({ "openssl", "s_client", v, "-connect",
        "127.0.0.1:" .. port:getHost().port, "-CAfile", tls.cert("ca"),
        "-verify_return_error", "-verify_hostname", "localhost",
        "-servername", "localhost", "-quiet" })
      c.transport:write("hello from s_client\n")
      runUntil(c.ended, 15)
      assert.matches("loom:hello from s_client", c:stdout(), 1, true)
      assert.equal(0, exitCode(c), c:stderr())
    end)
  end

  it("refuses loom's self-signed certificate", function()
    local port = tls.listen(protocol.Factory.forProtocol(Once),
      tls.serverOptions("self"))
    local c = spawn({ "openssl", "s_client", "-connect",
      "127.0.0.1:" .. port:getHost().port, "-CAfile", tls.cert("ca"),
      "-verify_return_error", "-quiet" })
    c.transport:write("x\n")
    runUntil(c.ended, 15)
    assert.is_not.equal(0, exitCode(c))
    assert.matches("self%-signed certificate", c:stderr())
  end)
end)

describe("loom against openssl s_server", function()
  it("verifies s_server's certificate and talks to it", function()
    local server = spawn({ "openssl", "s_server", "-accept", "127.0.0.1:0",
      "-cert", tls.cert("server"), "-key", tls.key("server"), "-rev",
      "-naccept", "1" })
    local ready = defer.Deferred()
    function server:onOut(text)
      local p = text:match("ACCEPT 127%.0%.0%.1:(%d+)")
      if p and not ready.called then
        ready:callback(tonumber(p))
      end
    end
    local portNumber = runUntil(ready, 10)
    local c, made = tls.connect(portNumber)
    runUntil(made, 10)
    assert.equal("CN=localhost", c.transport:getPeerCertificate().subject)
    c.transport:write("hello s_server\n")
    c:waitFor("revres_s olleh", true, 10)
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(server.ended, 15)
  end)

  it("refuses s_server's certificate for the wrong name", function()
    local server = spawn({ "openssl", "s_server", "-accept", "127.0.0.1:0",
      "-cert", tls.cert("other"), "-key", tls.key("other"), "-naccept", "1" })
    local ready = defer.Deferred()
    function server:onOut(text)
      local p = text:match("ACCEPT 127%.0%.0%.1:(%d+)")
      if p and not ready.called then
        ready:callback(tonumber(p))
      end
    end
    local _, d = tls.connect(runUntil(ready, 10))
    local f = tls.failureOf(d)
    assert.is_true(f.value:isa(err.TLSError))
    assert.equal("hostnameMismatch", f.value.reason)
    runUntil(server.ended, 15)
  end)
end)

local PY = [[
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
data = bytes(range(256)) * 4096  # 1 MiB
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        print(s.version(), s.selected_alpn_protocol(), got == data)
        s.unwrap()
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname="wrong.test")
    print("mismatch accepted")
except ssl.SSLCertVerificationError as e:
    print("mismatch refused:", e.verify_message)
]]

describe("Python's ssl module against loom", function()
  it("echoes 1 MiB over TLS 1.3 with ALPN; a wrong name is refused",
    function()
      local lost = {}
      local E = net.Echo:extend({})
      function E:connectionLost(reason)
        lost[#lost + 1] = reason
      end
      local port = tls.listen(protocol.Factory.forProtocol(E),
        tls.serverOptions(nil, { acceptableProtocols = { "http/1.1" } }))
      local c = spawn({ "python3", "-c", PY, tostring(port:getHost().port),
        tls.cert("ca") })
      runUntil(c.ended, 20)
      assert.equal("TLSv1.3 http/1.1 True\n"
        .. "mismatch refused: Hostname mismatch, certificate is not valid for"
        .. " 'wrong.test'.\n", c:stdout(), c:stderr())
      assert.equal(0, exitCode(c), c:stderr())
      -- unwrap() sent close_notify: a clean close.
      net.waitFor(function() return #lost >= 1 end)
      assert.is_true(lost[1].value:isa(err.ConnectionDone), tostring(lost[1]))
    end)
end)

local sub = dofile("spec/support/subprocess.lua")

describe("loom's own commands over TLS", function()
  it("`loom echo --port ssl:...` serves TLS", function()
    local server = sub.start(string.format(
      "echo --port ssl:0:privateKey=%s:certKey=%s:interface=127.0.0.1",
      tls.key("server"), tls.cert("server")))
    local c, made = tls.connect(server.port)
    runUntil(made, 10)
    c.transport:write("plugin over tls")
    c:waitFor("plugin over tls", true, 10)
    c.transport:loseConnection()
    runUntil(c.lost)
    assert.equal(0, (sub.stop(server)))
  end)

  it("examples/tls_echo.lua: its server, and its client verifying it",
    function()
      local server = sub.start(string.format(
        "run examples/tls_echo.lua server 0 %s %s", tls.cert("server"),
        tls.key("server")))
      local out, _, status = sub.loom(string.format(
        "run examples/tls_echo.lua client %d %s", server.port, tls.cert("ca")))
      assert.equal(0, status)
      assert.equal("connected with TLSv1.3 to CN=localhost (issued by"
        .. " CN=Loom Test CA)\nechoed: hello over TLS\nclosed: ConnectionDone:"
        .. " Connection was closed cleanly.\n", out)
      -- Trusting another CA: the client reports the failed verification.
      out = sub.loom(string.format("run examples/tls_echo.lua client %d %s",
        server.port, tls.cert("self")))
      assert.matches("^failed: TLSError: TLS handshake with 127%.0%.0%.1:%d+:"
        .. " certificate verify failed: unable to get local issuer"
        .. " certificate\n$", out)
      assert.equal(0, (sub.stop(server)))
    end)
end)

describe("a peer that resets (RST) mid-handshake", function()
  it("is one log line; the factory never sees it", function()
    local built = 0
    local f = protocol.Factory.forProtocol(net.Echo)
    local build = f.buildProtocol
    function f:buildProtocol(addr)
      built = built + 1
      return build(self, addr)
    end
    local port = tls.listen(f)
    local lines = tls.captureLog(function()
      local c = spawn({ "python3", "-c", [[
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"r" * 32)
time.sleep(0.1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
]], tostring(port:getHost().port) })
      runUntil(c.ended, 15)
      net.sleep(0.1)
    end)
    assert.equal(0, built)
    assert.is_truthy(tls.findLine(lines, "^TLS handshake from 127%.0%.0%.1:%d+"
      .. " failed: handshake failure: connection reset by peer$"))
  end)
end)
