-- https: loom's Agent/getPage against a Site on listenSSL, curl and
-- Python's ssl against loom's https Site, loom's client against Python's
-- https server, verification failures, and `loom web --port ssl:`.
-- Certificates from spec/support/mkcerts.sh (a temporary directory).
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local testing = require "loom.testing"
local web = require "loom.web"

local tls = dofile("spec/support/tls.lua")
local W = dofile("spec/support/web_server.lua")
local sub = dofile("spec/support/subprocess.lua")
local runUntil = testing.runUntil

teardown(function()
  tls.closePorts()
  tls.cleanup()
end)

-- A Site on TLS (certificate `cert`, default "server": localhost and
-- 127.0.0.1 from the test CA) with /hello and /echo-host; every
-- connection the Site made is recorded (built) and closed at the end.
local function httpsServer(finally, cert)
  local root = web.Resource()
  root:putChild("hello", W.leaf({ render_GET = function()
    return "hello over https"
  end }))
  root:putChild("secure", W.leaf({ render_GET = function(_, request)
    return tostring(request:isSecure())
  end }))
  root:putChild("big", W.leaf({ render_GET = function()
    return string.rep("0123456789abcdef", 64 * 1024) -- 1 MiB
  end }))
  local site = web.Site(root, { accessLog = false })
  local built = {}
  local build = site.buildProtocol
  function site:buildProtocol(addr)
    local p = build(self, addr)
    built[#built + 1] = p
    return p
  end
  local port = tls.listen(site, tls.serverOptions(cert))
  local n = port:getHost().port
  W.atEnd(function()
    for _, ch in ipairs(built) do
      if ch.transport and ch.transport.connected then
        ch.transport:abortConnection()
      end
    end
    runUntil(port:stopListening())
  end, finally)
  return { port = port, built = built, portNumber = n,
    url = function(path)
      return string.format("https://127.0.0.1:%d%s", n, path or "/")
    end }
end

-- Silences the log for the rest of the spec; returns a function that
-- waits (5 s at most) until n lines matching pattern were logged.
local function quietLog(finally)
  local lines = {}
  local function observer(ev)
    lines[#lines + 1] = tostring(ev.text)
  end
  log.setSink(function() end)
  log.addObserver(observer)
  W.atEnd(function()
    log.removeObserver(observer)
    log.setSink(nil)
  end, finally)
  return function(pattern, n)
    tls.net.waitFor(function()
      local seen = 0
      for _, text in ipairs(lines) do
        if text:find(pattern) then
          seen = seen + 1
        end
      end
      return seen >= n
    end, 5)
  end
end

-- A Deferred's failure (it must fail) within 5 s.
local failureOf = tls.failureOf

describe("loom's client against loom's https Site", function()
  it("getPage and Agent verify the server and read the body", function()
    local server = httpsServer(finally)
    assert.equals("hello over https", runUntil(web.getPage(
      server.url("/hello"), { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
    -- By host name too (the certificate names localhost).
    assert.equals("hello over https", runUntil(web.getPage(string.format(
      "https://localhost:%d/hello", server.portNumber),
      { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
    assert.equals("true", runUntil(web.getPage(server.url("/secure"),
      { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
    local agent = web.Agent(reactor, { tlsOptions = tls.clientOptions(),
      connectTimeout = 5, responseTimeout = 5 })
    local response = runUntil(agent:request("GET", server.url("/big")), 5)
    assert.equals(200, response.code)
    local body = runUntil(web.readBody(response), 5)
    assert.equals(1024 * 1024, #body)
    assert.equals(string.rep("0123456789abcdef", 64 * 1024), body)
    runUntil(agent.pool:closeCachedConnections(), 5)
  end)

  it("keeps an https connection alive and reuses it", function()
    local server = httpsServer(finally)
    local agent = web.Agent(reactor, { tlsOptions = tls.clientOptions(),
      connectTimeout = 5, responseTimeout = 5 })
    for _ = 1, 3 do
      local response = runUntil(agent:request("GET", server.url("/hello")), 5)
      assert.equals("hello over https", runUntil(web.readBody(response), 5))
    end
    assert.equals(1, #server.built)
    assert.equals(1, agent.pool:idleCount())
    runUntil(agent.pool:closeCachedConnections(), 5)
  end)

  it("keys a shared pool by the TLS options: no reuse across them",
    function()
      quietLog(finally)
      local server = httpsServer(finally)
      local pool = web.HTTPConnectionPool(reactor)
      local good = web.Agent(reactor, { pool = pool,
        tlsOptions = tls.clientOptions(), connectTimeout = 5 })
      local response = runUntil(good:request("GET", server.url("/hello")), 5)
      runUntil(web.readBody(response), 5)
      assert.equals(1, pool:idleCount())
      -- Another agent on the same pool, trusting another CA, must not get
      -- the verified idle connection: it connects and fails.
      local other = web.Agent(reactor, { pool = pool,
        tlsOptions = { caCerts = tls.cert("self") }, connectTimeout = 5 })
      local f = failureOf(other:request("GET", server.url("/hello")))
      assert.is_true(f.value:isa(err.TLSError))
      assert.equals("unknownCA", f.value.reason)
      -- An equal options table is the same key: the idle one is reused.
      local same = web.Agent(reactor, { pool = pool,
        tlsOptions = tls.clientOptions(), connectTimeout = 5 })
      response = runUntil(same:request("GET", server.url("/hello")), 5)
      assert.equals("hello over https", runUntil(web.readBody(response), 5))
      -- One connection served both (the failed one never reached the Site).
      assert.equals(1, #server.built)
      runUntil(pool:closeCachedConnections(), 5)
    end)

  it("follows a redirect from http:// to https://", function()
    local server = httpsServer(finally)
    local plain = W.serve(W.leaf({ render_GET = function(_, request)
      assert(request:isSecure() == false, "isSecure over plain http")
      request:setResponseCode(302)
      request:setHeader("location", server.url("/hello"))
      return "moved"
    end }), { accessLog = false }, finally)
    assert.equals("hello over https", runUntil(web.getPage(plain.url("/"),
      { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
  end)
end)

describe("verification failures", function()
  it("a host name the certificate does not name: TLSError", function()
    quietLog(finally)
    local server = httpsServer(finally, "other") -- for other.test only
    local f = failureOf(web.getPage(server.url("/hello"),
      { tlsOptions = tls.clientOptions(), timeout = 5 }))
    assert.is_true(f.value:isa(err.TLSError))
    assert.equals("hostnameMismatch", f.value.reason)
    assert.matches("TLS handshake with 127%.0%.0%.1", tostring(f.value))
    assert.equals(0, #server.built)
  end)

  it("a self-signed certificate: TLSError, also with the system CAs",
    function()
      local waitLog = quietLog(finally)
      local server = httpsServer(finally, "self")
      local f = failureOf(web.getPage(server.url("/hello"),
        { tlsOptions = tls.clientOptions(), timeout = 5 }))
      assert.is_true(f.value:isa(err.TLSError))
      assert.equals("unknownCA", f.value.reason)
      assert.matches("self%-signed", tostring(f.value))
      -- No tlsOptions: the system's CAs, which do not know it either.
      local agent = web.Agent(reactor, { connectTimeout = 5 })
      f = failureOf(agent:request("GET", server.url("/hello")))
      assert.is_true(f.value:isa(err.TLSError))
      assert.equals(0, #server.built)
      -- The server logged both refusals, one line each.
      waitLog("TLS handshake from 127%.0%.0%.1:%d+ failed: .*unknown ca", 2)
    end)

  it("bad tlsOptions are a clear error", function()
    assert.has_error(function()
      web.Agent(reactor, { tlsOptions = "ca.pem" })
    end, "Agent: tlsOptions must be a table (connectSSL's options), got string")
    assert.has_error(function()
      web.getPage("https://127.0.0.1/", { tlsOptions = {},
        agent = web.Agent(reactor) })
    end, "getPage: give tlsOptions to the agent, not beside it")
    local f = failureOf(web.getPage("https://127.0.0.1:1/",
      { tlsOptions = { caCerts = "/no/such/ca.pem" }, timeout = 5 }))
    assert.matches("connectSSL: caCerts /no/such/ca.pem", tostring(f.value))
  end)
end)

describe("other clients against loom's https Site", function()
  it("curl --cacert verifies and fetches", function()
    local server = httpsServer(finally)
    local out, stderr, code = W.curl("--cacert", tls.cert("ca"),
      server.url("/hello"))
    assert.equals(0, code, stderr)
    assert.equals("hello over https", out)
    out, stderr, code = W.curl("--cacert", tls.cert("ca"), string.format(
      "https://localhost:%d/hello", server.portNumber))
    assert.equals(0, code, stderr)
    assert.equals("hello over https", out)
  end)

  it("curl refuses a self-signed loom server", function()
    quietLog(finally)
    local server = httpsServer(finally, "self")
    local _, stderr, code = W.curl("--cacert", tls.cert("ca"),
      server.url("/hello"))
    assert.equals(60, code, stderr) -- CURLE_PEER_FAILED_VERIFICATION
  end)

  it("Python's urllib with an ssl context loading the test CA", function()
    local server = httpsServer(finally)
    local out, stderr, code = W.python([[
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5) as r:
    sys.stdout.write("%d %s|%s" % (r.status, r.reason, r.read().decode()))
]], server.url("/hello"), tls.cert("ca"))
    assert.equals(0, code, stderr)
    assert.equals("200 OK|hello over https", out)
  end)
end)

-- Python's http.server over ssl: prints its port, answers `n` requests
-- (GET /x -> "python https /x"), then exits.
local PY_SERVER = [[
import http.server, ssl, sys
cert, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("python https " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.timeout = 10
print(srv.server_address[1], flush=True)
for _ in range(n):
    srv.handle_request()
]]

local PyServer = protocol.ProcessProtocol:extend({ __name = "PyHTTPS" })
function PyServer:init()
  self.out, self.err = {}, {}
  self.ready, self.ended = defer.Deferred(), defer.Deferred()
end
function PyServer:outReceived(d)
  self.out[#self.out + 1] = d
  local port = table.concat(self.out):match("^(%d+)\n")
  if port and not self.ready.called then
    self.ready:callback(tonumber(port))
  end
end
function PyServer:errReceived(d) self.err[#self.err + 1] = d end
function PyServer:processEnded(reason)
  self.code = reason.value and reason.value.exitCode
  self.ended:callback(self)
  if not self.ready.called then
    self.ready:errback(reason)
  end
end

local function pythonServer(cert, n, finally)
  local p = PyServer:new()
  local t = reactor.spawnProcess(p, "/usr/bin/timeout", { "timeout", "15",
    "/usr/bin/python3", "-c", PY_SERVER, tls.cert(cert), tls.key(cert),
    tostring(n) })
  W.atEnd(function()
    if not p.ended.called then
      pcall(t.signalProcess, t, "KILL")
      runUntil(p.ended, 5)
    end
  end, finally)
  return p, runUntil(p.ready, 10)
end

describe("loom's client against Python's https server", function()
  it("verifies it and reads the body", function()
    local py, port = pythonServer("server", 1, finally)
    assert.equals("python https /from-loom", runUntil(web.getPage(
      string.format("https://localhost:%d/from-loom", port),
      { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
    runUntil(py.ended, 10)
    assert.equals(0, py.code, table.concat(py.err))
  end)

  it("refuses its certificate for another name", function()
    quietLog(finally)
    local _, port = pythonServer("other", 1, finally)
    local f = failureOf(web.getPage(string.format("https://127.0.0.1:%d/",
      port), { tlsOptions = tls.clientOptions(), timeout = 5 }))
    assert.is_true(f.value:isa(err.TLSError))
    assert.equals("hostnameMismatch", f.value.reason)
  end)
end)

describe("loom web --port ssl:", function()
  it("serves a file over https to curl", function()
    local dir = sub.tmpdir()
    sub.writeFile(dir .. "/page.txt", "served over ssl\n")
    local server = sub.start(string.format("web --path %s --port "
      .. "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s", dir,
      tls.key("server"), tls.cert("server")))
    W.atEnd(function()
      sub.stop(server)
      os.execute("rm -rf '" .. dir .. "'")
    end, finally)
    local url = string.format("https://127.0.0.1:%d/page.txt", server.port)
    local out, stderr, code = W.curl("--cacert", tls.cert("ca"), url)
    assert.equals(0, code, stderr)
    assert.equals("served over ssl\n", out)
    -- Plain http to the TLS port gets no page.
    out = W.curl(string.format("http://127.0.0.1:%d/page.txt", server.port))
    assert.is_not.equals("served over ssl\n", out)
    -- And loom's own client, verified.
    assert.equals("served over ssl\n", runUntil(web.getPage(url,
      { tlsOptions = tls.clientOptions(), timeout = 5 }), 5))
  end)
end)

describe("examples/web/https_static.lua", function()
  it("serves its directory over https; a missing key is one line", function()
    local server = sub.start(string.format(
      "run examples/web/https_static.lua %s %s 0", tls.key("server"),
      tls.cert("server")))
    W.atEnd(function() sub.stop(server) end, finally)
    local out, stderr, code = W.curl("--cacert", tls.cert("ca"),
      string.format("https://localhost:%d/https_static.lua", server.port))
    assert.equals(0, code, stderr)
    assert.equals(sub.readFile("examples/web/https_static.lua"), out)
    local _, errout, status = sub.loom(
      "run examples/web/https_static.lua /no/such/key.pem " .. tls.cert("server")
      .. " 0")
    assert.equals(1, status)
    assert.equals("https_static: listenSSL: privateKey /no/such/key.pem: "
      .. "No such file or directory\n", errout)
  end)
end)
