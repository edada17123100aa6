-- loom.web's HTTP client (Agent, pool, readBody, RedirectAgent, getPage)
-- against servers nobody here wrote: Python's http.server and Twisted's
-- twisted.web, each a small script started on port 0 that prints its port;
-- and against hostile servers written with loom's own TCP. Every wait is
-- bounded (runUntil's timeout; the scripts run under timeout(1)).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"
local web = require "loom.web"
local url = require "loom.web.url"

local runUntil = testing.runUntil
local net = dofile("spec/support/net.lua")
local sub = dofile("spec/support/subprocess.lua")

-- Subprocess servers ----------------------------------------------------------

-- Python's http.server, HTTP/1.1 with keep-alive; each path is one case.
local PY_SERVER = [=[
import http.server, sys

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, body, headers=()):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def redirect(self, code, location):
        self.answer(code, b"moved", [("Location", location)] if location else [])

    def do_GET(self):
        p = self.path
        if p == "/hello":
            self.answer(200, b"hello world", [("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        elif p == "/port":
            self.answer(200, str(self.client_address[1]).encode())
        elif p == "/headers":
            text = "".join("%s: %s\n" % (k.lower(), v) for k, v in self.headers.items())
            self.answer(200, ("%s %s\n" % (self.command, self.path) + text).encode())
        elif p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif p == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the server closes")
            self.close_connection = True
        elif p == "/204":
            self.send_response(204)
            self.end_headers()
        elif p == "/304":
            self.send_response(304)
            self.send_header("ETag", '"x"')
            self.end_headers()
        elif p == "/big":
            self.answer(200, b"x" * 300000)
        elif p == "/missing":
            self.answer(404, b"no such page")
        elif p == "/boom":
            self.answer(500, b"it broke")
        elif p.startswith("/chain/"):
            n = int(p[len("/chain/"):])
            self.redirect(302, "/chain/%d" % (n - 1) if n > 0 else "/hello")
        elif p == "/loop":
            self.redirect(301, "/loop")
        elif p == "/nolocation":
            self.redirect(302, None)
        elif p == "/relative/a/b":
            self.redirect(307, "../hello-rel")
        elif p == "/relative/hello-rel":
            self.redirect(308, "/hello")
        else:
            self.answer(404, b"unknown " + p.encode())

    do_HEAD = do_GET

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out, "chunked"
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n), "length %d" % n

    def do_POST(self):
        if self.path.startswith("/see-other"):
            self.body()
            self.redirect(303, "/headers")
        elif self.path.startswith("/found"):
            self.body()
            self.redirect(302, "/headers")
        else:
            data, how = self.body()
            self.answer(200, b"%s %s %s: " % (self.command.encode(),
                self.path.encode(), how.encode()) + data)

    do_PUT = do_POST

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
]=]

-- Twisted's own web server: chunked responses (a body of unknown length
-- on HTTP/1.1), keep-alive, and chunked request bodies.
local TWISTED_SERVER = [=[
from twisted.internet import reactor
from twisted.web import resource, server

class Chunked(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        parts = [b"alpha;", b"beta;", b"gamma;", b"delta"]
        def more():
            if request.finished or request._disconnected:
                return
            if parts:
                request.write(parts.pop(0))
                reactor.callLater(0.02, more)
            else:
                request.finish()
        more()
        return server.NOT_DONE_YET

class Echo(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        body = request.content.read()
        te = request.getHeader(b"transfer-encoding") or b"-"
        return b"%s %d %s" % (te, len(body), body)
    render_PUT = render_POST

class Port(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        return str(request.getClientAddress().port).encode()

root = resource.Resource()
root.putChild(b"chunked", Chunked())
root.putChild(b"echo", Echo())
root.putChild(b"port", Port())
port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
]=]

-- Starts Debian's python3 (the one python3-twisted is for) on script,
-- under timeout; returns {pid=, port=, handle=}.
local function startPython(script)
  local path = os.tmpname()
  sub.writeFile(path, script)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "sh -c 'echo $$; exec timeout 120 /usr/bin/python3 -u %s' 2>%s",
    path, errfile)))
  local pid = assert(tonumber(h:read("l")), "no pid from sh")
  local port = tonumber(h:read("l"))
  if not port then
    h:close()
    error("python server did not start: " .. sub.readFile(errfile))
  end
  return { pid = pid, port = port, handle = h, script = path,
    errfile = errfile }
end

local function stopPython(server)
  os.execute(string.format("kill %d 2>/dev/null", server.pid))
  server.handle:close()
  os.remove(server.script)
  os.remove(server.errfile)
end

-- Hostile servers written with loom's TCP -------------------------------------

-- A server whose connections run onData(proto, data) for each read and
-- onMade(proto) when made; `connections` counts the connections it got,
-- `requests` keeps what each connection received.
local function rawServer(hooks)
  local server = { connections = 0, requests = {}, lost = 0 }
  local P = protocol.Protocol:extend({ __name = "RawHTTPServer" })
  function P:connectionMade()
    server.connections = server.connections + 1
    self.index = server.connections
    server.requests[self.index] = ""
    if hooks.onMade then hooks.onMade(self, server) end
  end
  function P:dataReceived(data)
    server.requests[self.index] = server.requests[self.index] .. data
    if hooks.onData then hooks.onData(self, data, server) end
  end
  function P:connectionLost()
    server.lost = server.lost + 1
    if self.stopTimer then self.stopTimer() end
  end
  server.port = net.listen(protocol.Factory.forProtocol(P))
  server.url = "http://127.0.0.1:" .. server.port:getHost().port
  return server
end

-- Answers each complete request head (it ignores request bodies) with
-- respond(proto, n, head) (n counts requests per connection).
local function respondingServer(respond)
  return rawServer({
    onData = function(self, _, server)
      local text = server.requests[self.index]
      self.seen = self.seen or 0
      local count = 0
      for _ in text:gmatch("\r\n\r\n") do count = count + 1 end
      while self.seen < count do
        self.seen = self.seen + 1
        respond(self, self.seen, text)
      end
    end,
  })
end

local function ok(body, extra)
  return "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n"
    .. (extra or "") .. "\r\n" .. body
end

-- Helpers ---------------------------------------------------------------------

local agents = {}
local function newAgent(opts)
  local a = web.Agent(reactor, opts)
  agents[#agents + 1] = a
  return a
end

local ports = {}
local function track(server)
  ports[#ports + 1] = server.port
  return server
end

-- The Failure a Deferred errbacks with (runUntil raises it).
local function failureOf(d, timeout)
  local good, f = pcall(runUntil, d, timeout or 5)
  assert.is_false(good, "expected a failure, got " .. tostring(f))
  return f
end

local function get(agent, u, headers, method, body)
  local response = runUntil(agent:request(method or "GET", u, headers, body))
  local text = runUntil(web.readBody(response))
  return response, text
end

after_each(function()
  -- Idle or not (a redirect's body may still be arriving): closed.
  for _, a in ipairs(agents) do
    local waits = {}
    for conn in pairs(a.pool._open) do
      waits[#waits + 1] = conn:abort()
    end
    runUntil(defer.gatherResults(waits))
    runUntil(a.pool:closeCachedConnections())
  end
  agents = {}
  for _, p in ipairs(ports) do
    runUntil(p:stopListening())
  end
  ports = {}
  net.sleep(0.02) -- closes started by the specs complete
end)

-- URLs ------------------------------------------------------------------------

describe("web.url", function()
  it("parses scheme, host, port, path, query and drops the fragment in "
    .. "the target", function()
    local u = assert(url.parse("HTTP://Example.ORG:8080/a/b?x=1&y=2#top"))
    assert.same({ "http", "example.org", 8080, "/a/b", "x=1&y=2", "top" },
      { u.scheme, u.host, u.port, u.path, u.query, u.fragment })
    assert.equal("/a/b?x=1&y=2", url.target(u))
    assert.equal("example.org:8080", url.hostHeader(u))
    local v6 = assert(url.parse("http://[::1]/"))
    assert.same({ "::1", 80, "[::1]" }, { v6.host, v6.port,
      url.hostHeader(v6) })
    assert.equal("/", url.target(assert(url.parse("http://h"))))
  end)

  it("refuses bad URLs with a one-line reason", function()
    for bad, why in pairs({
      ["/relative"] = "not an absolute URL",
      ["ftp://h/"] = "unsupported scheme \"ftp\"",
      ["http://h:0/"] = "port must be 1%-65535",
      ["http://h:70000/"] = "port must be 1%-65535",
      ["http://h:x/"] = "port must be a number",
      ["http://h/a b"] = "space or a control character",
      ["http://h/a\r\nX-Injected: 1"] = "space or a control character",
      ["http:///path"] = "bad host",
      ["http://[::1/"] = "bad host",
      ["http://user:pw@h/"] = "credentials",
    }) do
      local u, reason = url.parse(bad)
      assert.is_nil(u, bad)
      assert.matches(why, reason)
      assert.is_nil(reason:find("\n"))
    end
    assert.matches("longer than", select(2, url.parse("http://h/"
      .. ("a"):rep(9000))))
  end)

  it("resolves references as RFC 3986 5.4's examples", function()
    local base = "http://a/b/c/d;p?q"
    for ref, want in pairs({
      g = "http://a/b/c/g", ["./g"] = "http://a/b/c/g",
      ["g/"] = "http://a/b/c/g/", ["/g"] = "http://a/g", ["//g"] = "http://g",
      ["?y"] = "http://a/b/c/d;p?y", ["g?y"] = "http://a/b/c/g?y",
      ["#s"] = "http://a/b/c/d;p?q#s", [""] = "http://a/b/c/d;p?q",
      [".."] = "http://a/b/", ["../g"] = "http://a/b/g",
      ["../../../g"] = "http://a/g", ["/./g"] = "http://a/g",
      ["g;x=1/../y"] = "http://a/b/c/y", ["http://x/y"] = "http://x/y",
    }) do
      assert.equal(want, url.join(base, ref), ref)
    end
  end)
end)

-- Against Python's http.server ------------------------------------------------

describe("Agent against Python's http.server", function()
  local py, base
  setup(function()
    py = startPython(PY_SERVER)
    base = "http://127.0.0.1:" .. py.port
  end)
  teardown(function()
    stopPython(py)
  end)

  it("gets a response with code, phrase, headers and a Content-Length body",
    function()
      local response, body = get(newAgent(), base .. "/hello")
      assert.equal(200, response.code)
      assert.equal("OK", response.phrase)
      assert.equal("HTTP/1.1", response.version)
      assert.equal("text/plain", response.headers["content-type"])
      assert.equal("text/plain", response:getHeader("Content-Type"))
      assert.same({ "a=1", "b=2" }, response:getRawHeaders("set-cookie"))
      assert.equal(11, response.length)
      assert.equal("hello world", body)
      assert.equal("hello world", response.body)
    end)

  it("sends Host and the caller's headers", function()
    local _, body = get(newAgent(), base .. "/headers",
      { ["X-Thing"] = "one", Accept = { "text/plain", "text/html" } })
    assert.matches("^GET /headers\n", body)
    assert.matches("\nhost: 127.0.0.1:" .. py.port .. "\n", body)
    assert.matches("\nx%-thing: one\n", body)
    assert.matches("\naccept: text/plain\naccept: text/html\n", body)
  end)

  it("decodes a chunked body", function()
    local _, body = get(newAgent(), base .. "/chunked")
    assert.equal("one,two,three", body)
  end)

  it("reads a body delimited by the server closing the connection",
    function()
      local response, body = get(newAgent(), base .. "/close")
      assert.is_nil(response.length)
      assert.equal("until the server closes", body)
    end)

  it("gives HEAD, 204 and 304 responses no body and keeps the connection",
    function()
      local agent = newAgent()
      local head, text = get(agent, base .. "/hello", nil, "HEAD")
      assert.equal(200, head.code)
      assert.equal("11", head.headers["content-length"])
      assert.equal("", text)
      local r204, t204 = get(agent, base .. "/204")
      assert.same({ 204, "" }, { r204.code, t204 })
      local r304, t304 = get(agent, base .. "/304")
      assert.same({ 304, "" }, { r304.code, t304 })
      assert.equal(1, agent.pool:idleCount())
    end)

  it("sends a string body with Content-Length", function()
    local response, body = get(newAgent(), base .. "/echo", nil, "POST",
      "some data")
    assert.equal(200, response.code)
    assert.equal("POST /echo length 9: some data", body)
  end)

  it("sends Content-Length: 0 for a POST without a body", function()
    local _, body = get(newAgent(), base .. "/echo", nil, "POST")
    assert.equal("POST /echo length 0: ", body)
  end)

  it("reuses a kept-alive connection (the server sees one client port)",
    function()
      local agent = newAgent()
      local _, first = get(agent, base .. "/port")
      local _, second = get(agent, base .. "/port")
      local _, third = get(agent, base .. "/port")
      assert.equal(first, second)
      assert.equal(first, third)
      assert.equal(1, agent.pool:idleCount())
    end)

  it("opens a new connection for each request when not persistent",
    function()
      local agent = newAgent({ persistent = false })
      local _, first = get(agent, base .. "/port")
      local _, second = get(agent, base .. "/port")
      assert.are_not.equal(first, second)
      assert.equal(0, agent.pool:idleCount())
    end)

  it("closes an idle pooled connection after cachedConnectionTimeout",
    function()
      local pool = web.HTTPConnectionPool(reactor,
        { cachedConnectionTimeout = 0.1 })
      local agent = newAgent({ pool = pool })
      local _, first = get(agent, base .. "/port")
      assert.equal(1, pool:idleCount())
      net.waitFor(function() return pool:idleCount() == 0 end, 3)
      local _, second = get(agent, base .. "/port")
      assert.are_not.equal(first, second)
    end)

  it("keeps at most maxPersistentPerHost idle connections per host",
    function()
      local pool = web.HTTPConnectionPool(reactor,
        { maxPersistentPerHost = 2 })
      local agent = newAgent({ pool = pool })
      local list = {}
      for i = 1, 4 do
        list[i] = agent:request("GET", base .. "/port")
          :addCallback(web.readBody)
      end
      local results = runUntil(defer.gatherResults(list))
      local distinct = {}
      for _, p in ipairs(results) do distinct[p] = true end
      local n = 0
      for _ in pairs(distinct) do n = n + 1 end
      assert.equal(4, n) -- concurrent requests each had a connection
      assert.equal(2, pool:idleCount())
    end)

  it("streams a body to a protocol with deliverBody", function()
    local response = runUntil(newAgent():request("GET", base .. "/big"))
    local got = { size = 0, pieces = 0 }
    local done = defer.Deferred()
    response:deliverBody({
      connectionMade = function(self) got.transport = self.transport end,
      dataReceived = function(_, data)
        got.size, got.pieces = got.size + #data, got.pieces + 1
      end,
      connectionLost = function(_, reason) done:callback({ reason }) end,
    })
    local reason = runUntil(done)[1]
    assert.is_truthy(reason:check(web.ResponseDone))
    assert.equal(300000, got.size)
    assert.is_true(got.pieces >= 1)
    assert.is_truthy(got.transport)
    assert.has_error(function() response:deliverBody({}) end,
      "deliverBody: this response's body was already delivered")
  end)

  it("fails readBody with BodyTooLarge past maxSize, and closes", function()
    local response = runUntil(newAgent():request("GET", base .. "/big"))
    local f = failureOf(web.readBody(response, { maxSize = 1000 }))
    assert.is_truthy(f:check(web.BodyTooLarge))
    assert.matches("larger than 1000 bytes", tostring(f.value))
  end)

  it("getPage returns the body", function()
    assert.equal("hello world", runUntil(web.getPage(base .. "/hello")))
  end)

  it("getPage errbacks with web.Error (status, phrase, body) for >= 400",
    function()
      local f = failureOf(web.getPage(base .. "/missing"))
      assert.is_truthy(f:check(web.Error))
      assert.same({ 404, "Not Found", "no such page" },
        { f.value.status, f.value.phrase, f.value.body })
      assert.equal("web.Error: 404 Not Found", tostring(f.value))
      local g = failureOf(web.getPage(base .. "/boom"))
      assert.equal(500, g.value.status)
    end)

  it("getPage sends method, headers and body", function()
    local body = runUntil(web.getPage(base .. "/echo", { method = "PUT",
      body = "payload", headers = { ["X-A"] = "b" } }))
    assert.equal("PUT /echo length 7: payload", body)
  end)
end)

describe("RedirectAgent against Python's http.server", function()
  local py, base
  setup(function()
    py = startPython(PY_SERVER)
    base = "http://127.0.0.1:" .. py.port
  end)
  teardown(function()
    stopPython(py)
  end)

  it("follows a chain of 302s and links the previous responses", function()
    local agent = web.RedirectAgent(newAgent())
    local response = runUntil(agent:request("GET", base .. "/chain/3"))
    assert.equal(200, response.code)
    assert.equal("hello world", runUntil(web.readBody(response)))
    local codes, r = {}, response.previousResponse
    while r do
      codes[#codes + 1] = r.code
      r = r.previousResponse
    end
    assert.same({ 302, 302, 302, 302 }, codes)
  end)

  it("resolves relative Locations (307 then 308)", function()
    local agent = web.RedirectAgent(newAgent())
    local response = runUntil(agent:request("GET", base .. "/relative/a/b"))
    assert.equal(200, response.code)
    assert.equal(base .. "/hello", response.request.url)
  end)

  it("fails a loop with InfiniteRedirection after redirectLimit",
    function()
      local agent = web.RedirectAgent(newAgent(), { maxRedirects = 5 })
      local f = failureOf(agent:request("GET", base .. "/loop"))
      assert.is_truthy(f:check(web.ResponseFailed))
      assert.is_truthy(f.value.reasons[1]:check(web.InfiniteRedirection))
      assert.equal(301, f.value.response.code)
      local n, r = 0, f.value.response.previousResponse
      while r do n, r = n + 1, r.previousResponse end
      assert.equal(5, n)
    end)

  it("stops a chain longer than redirectLimit", function()
    local agent = web.RedirectAgent(newAgent(), { redirectLimit = 2 })
    local f = failureOf(agent:request("GET", base .. "/chain/3"))
    assert.is_truthy(f.value.reasons[1]:check(web.InfiniteRedirection))
  end)

  it("fails a redirect without Location with RedirectWithNoLocation",
    function()
      local agent = web.RedirectAgent(newAgent())
      local f = failureOf(agent:request("GET", base .. "/nolocation"))
      assert.is_truthy(f.value.reasons[1]:check(web.RedirectWithNoLocation))
    end)

  it("follows 303 after a POST with a GET", function()
    local agent = web.RedirectAgent(newAgent())
    local response = runUntil(agent:request("POST", base .. "/see-other",
      nil, "form=1"))
    assert.equal(200, response.code)
    assert.matches("^GET /headers\n", runUntil(web.readBody(response)))
  end)

  it("does not follow a 302 after a POST (PageRedirect)", function()
    local agent = web.RedirectAgent(newAgent())
    local f = failureOf(agent:request("POST", base .. "/found", nil, "x"))
    assert.is_truthy(f.value.reasons[1]:check(web.PageRedirect))
    assert.equal(302, f.value.response.code)
  end)

  it("getPage follows redirects by default, and not with "
    .. "followRedirect=false", function()
    assert.equal("hello world", runUntil(web.getPage(base .. "/chain/2")))
    assert.equal("moved", runUntil(web.getPage(base .. "/chain/2",
      { followRedirect = false })))
  end)

  it("drops Authorization and Cookie when redirected to another origin, "
    .. "keeps them within one", function()
    local other = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 302 Found\r\nLocation: " .. base
        .. "/headers\r\nContent-Length: 0\r\n\r\n")
    end))
    local agent = web.RedirectAgent(newAgent())
    local secret = { Authorization = "Basic c2VjcmV0", Cookie = "s=1",
      ["X-Kept"] = "yes" }
    local response = runUntil(agent:request("GET", other.url .. "/go",
      secret))
    local text = runUntil(web.readBody(response))
    assert.is_nil(text:find("authorization"))
    assert.is_nil(text:find("cookie"))
    assert.matches("x%-kept: yes", text)
    assert.matches("authorization: basic", other.requests[1]:lower())
    -- A 303 to /headers on the same origin keeps them.
    local direct = web.RedirectAgent(newAgent())
    local r = runUntil(direct:request("POST", base .. "/see-other", secret,
      "x"))
    assert.matches("authorization: Basic", runUntil(web.readBody(r)))
  end)
end)

-- Against Twisted's web server ------------------------------------------------

describe("Agent against Twisted's twisted.web", function()
  local tw, base
  setup(function()
    tw = startPython(TWISTED_SERVER)
    base = "http://127.0.0.1:" .. tw.port
  end)
  teardown(function()
    stopPython(tw)
  end)

  it("reads a chunked body written in pieces over time", function()
    local response = runUntil(newAgent():request("GET", base .. "/chunked"))
    assert.equal("chunked", response.headers["transfer-encoding"])
    assert.is_nil(response.length)
    local pieces, done = {}, defer.Deferred()
    response:deliverBody({
      dataReceived = function(_, data) pieces[#pieces + 1] = data end,
      connectionLost = function(_, reason) done:callback({ reason }) end,
    })
    assert.is_truthy(runUntil(done)[1]:check(web.ResponseDone))
    assert.equal("alpha;beta;gamma;delta", table.concat(pieces))
    assert.is_true(#pieces >= 2)
  end)

  it("keeps the connection alive across requests", function()
    local agent = newAgent()
    local _, a = get(agent, base .. "/port")
    local _, b = get(agent, base .. "/chunked")
    local _, c = get(agent, base .. "/port")
    assert.equal("alpha;beta;gamma;delta", b)
    assert.equal(a, c)
  end)

  it("sends a producer's body chunked when its length is unknown, and "
    .. "with Content-Length when known", function()
    local function producer(parts, length)
      return {
        length = length,
        startProducing = function(_, consumer)
          local d = defer.Deferred()
          local i = 0
          local function step()
            i = i + 1
            if parts[i] then
              consumer:write(parts[i])
              reactor.callLater(0.01, step)
            else
              d:callback(nil)
            end
          end
          step()
          return d
        end,
        pauseProducing = function() end,
        resumeProducing = function() end,
        stopProducing = function() end,
      }
    end
    local agent = newAgent()
    local _, chunked = get(agent, base .. "/echo", nil, "POST",
      producer({ "ab", "", "cde", "f" }))
    assert.equal("chunked 6 abcdef", chunked)
    local _, sized = get(agent, base .. "/echo", nil, "PUT",
      producer({ "12", "345" }, 5))
    assert.equal("- 5 12345", sized)
  end)

  it("fails a producer that writes more than its length", function()
    local liar = { length = 2, startProducing = function(_, consumer)
      consumer:write("too long")
      return defer.succeed(nil)
    end }
    local f = failureOf(newAgent():request("POST", base .. "/echo", nil,
      liar))
    assert.is_truthy(f:check(web.RequestGenerationFailed))
  end)
end)

-- Connection failures ---------------------------------------------------------

describe("Agent connection failures", function()
  it("errbacks with ConnectionRefusedError for a closed port", function()
    local server = rawServer({})
    local n = server.port:getHost().port
    runUntil(server.port:stopListening())
    local f = failureOf(newAgent():request("GET",
      "http://127.0.0.1:" .. n .. "/"))
    assert.is_truthy(f:check(err.ConnectionRefusedError))
    local g = failureOf(web.getPage("http://127.0.0.1:" .. n .. "/"))
    assert.is_truthy(g:check(err.ConnectionRefusedError))
  end)

  it("errbacks with DNSLookupError for a name that does not resolve",
    function()
      local f = failureOf(web.getPage("http://no-such-host.invalid/"), 10)
      assert.is_truthy(f:check(err.DNSLookupError))
    end)

  it("errbacks with InvalidURL, naming the scheme it does not know",
    function()
      local f = failureOf(newAgent():request("GET", "http://bad host/"))
      assert.is_truthy(f:check(web.InvalidURL))
      assert.matches("invalid URL", tostring(f.value))
      local g = failureOf(web.getPage("ftp://127.0.0.1/"))
      assert.is_truthy(g:check(web.InvalidURL))
      assert.matches("unsupported scheme \"ftp\"", tostring(g.value))
    end)

  it("connects with connectTimeout and bindAddress", function()
    local seen
    local fake = { callLater = reactor.callLater, seconds = reactor.seconds,
      connectTCP = function(host, port, _, opts)
        seen = { host, port, opts.timeout, opts.bindAddress }
        error("recorded")
      end }
    local bind = { "127.0.0.1", 0 }
    local agent = web.Agent(fake, { connectTimeout = 7, bindAddress = bind })
    local f = failureOf(agent:request("GET", "http://example.test:8081/"))
    assert.matches("recorded", tostring(f.value))
    assert.same({ "example.test", 8081, 7, bind }, seen)
  end)

  it("leaves the caller's headers table as it was", function()
    local server = track(respondingServer(function(self)
      self.transport:write(ok("fine"))
    end))
    local headers = { ["X-One"] = "1", Accept = { "a", "b" } }
    get(newAgent(), server.url .. "/", headers)
    assert.same({ ["X-One"] = "1", Accept = { "a", "b" } }, headers)
    assert.matches("\r\nHost: 127%.0%.0%.1:%d+\r\n", server.requests[1])
  end)

  it("raises for a bad method, header or body", function()
    local agent = newAgent()
    assert.has_error(function() agent:request("GE T", "http://h/") end,
      "request: method must be a token such as \"GET\", got \"GE T\"")
    assert.has_error(function()
      agent:request("GET", "http://h/", { ["X-A"] = "1\r\nX-B: 2" })
    end, "request: header X-A: CR, LF or NUL in its value")
    assert.has_error(function()
      agent:request("GET", "http://h/", { ["Bad Name"] = "1" })
    end, "request: bad header name \"Bad Name\"")
    assert.has_error(function() agent:request("GET", "http://h/", nil, 42) end)
    assert.has_error(function()
      agent:request("POST", "http://h/", { ["Content-Length"] = "0" }, "x")
    end, "request: Content-Length is set from the body, not by a header")
    assert.has_error(function()
      agent:request("POST", "http://h/", nil,
        { length = 1.5, startProducing = function() end })
    end, "request: the body producer's length must be a non-negative "
      .. "integer or nil, got 1.5")
  end)
end)

describe("Agent writing requests", function()
  it("sends a request whole: no Nagle stall on a kept-alive POST",
    function()
      -- With the head and body in two segments and Nagle on, each request
      -- waits for the server's delayed ACK (40 ms): 25 would take 1 s.
      local server = track(rawServer({
        onData = function(self, _, srv)
          if srv.requests[self.index]:sub(-5) == "body!" then
            srv.requests[self.index] = ""
            self.transport:write(ok("fine"))
          end
        end,
      }))
      local agent = newAgent()
      get(agent, server.url .. "/", nil, "POST", "body!")
      local started = reactor.seconds()
      for _ = 1, 25 do
        get(agent, server.url .. "/", nil, "POST", "body!")
      end
      assert.is_true(reactor.seconds() - started < 0.8)
      assert.equal(1, server.connections)
    end)
end)

describe("Agent over IPv6", function()
  it("connects to a bracketed IPv6 literal and sends Host with brackets",
    function()
      local P = protocol.Protocol:extend()
      local seen = {}
      function P:dataReceived(data)
        seen[#seen + 1] = data
        self.transport:write(ok("six"))
      end
      local port = net.listen(protocol.Factory.forProtocol(P), "::1")
      track({ port = port })
      local _, body = get(newAgent(), "http://[::1]:" .. port:getHost().port
        .. "/v6")
      assert.equal("six", body)
      assert.matches("\r\nHost: %[::1%]:%d+\r\n", table.concat(seen))
    end)
end)

-- Hostile servers -------------------------------------------------------------

describe("Agent against hostile servers", function()
  it("fails a garbage status line with ResponseFailed", function()
    local server = track(respondingServer(function(self)
      self.transport:write("SMTP READY\r\n\r\n")
    end))
    local f = failureOf(newAgent():request("GET", server.url .. "/"))
    assert.is_truthy(f:check(web.ResponseFailed))
    assert.equal("invalid", f.value.errname)
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("stops endless headers at maxHeaderSize and closes", function()
    local server = track(rawServer({
      onData = function(self)
        if self.started then return end
        self.started = true
        self.transport:write("HTTP/1.1 200 OK\r\n")
        local line = "X-Filler: " .. ("a"):rep(100) .. "\r\n"
        local timer
        local function more()
          self.transport:write(line:rep(50))
          timer = reactor.callLater(0.001, more)
        end
        self.stopTimer = function() timer:cancel() end
        more()
      end,
    }))
    local f = failureOf(newAgent({ maxHeaderSize = 8192 }):request("GET",
      server.url .. "/"))
    assert.equal("headerTooLarge", f.value.errname)
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("refuses more than maxHeaders headers", function()
    local server = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 200 OK\r\n"
        .. ("X-A: 1\r\n"):rep(150) .. "Content-Length: 0\r\n\r\n")
    end))
    local f = failureOf(newAgent():request("GET", server.url .. "/"))
    assert.equal("tooManyHeaders", f.value.errname)
  end)

  it("bounds a huge chunked body in readBody and closes", function()
    local server = track(rawServer({
      onData = function(self)
        if self.started then return end
        self.started = true
        self.transport:write("HTTP/1.1 200 OK\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n")
        local chunk = "4000\r\n" .. ("z"):rep(0x4000) .. "\r\n"
        local timer
        local function more()
          self.transport:write(chunk:rep(8))
          timer = reactor.callLater(0.001, more)
        end
        self.stopTimer = function() timer:cancel() end
        more()
      end,
    }))
    local f = failureOf(web.getPage(server.url .. "/",
      { maxSize = 1024 * 1024 }))
    assert.is_truthy(f:check(web.BodyTooLarge))
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("reads no more than one buffer of a body before deliverBody, and "
    .. "does not time out while it waits", function()
    local size = 4 * 1024 * 1024
    local answer = "HTTP/1.1 200 OK\r\nContent-Length: " .. size
      .. "\r\n\r\n" .. ("b"):rep(size)
    local server = track(respondingServer(function(self)
      self.transport:write(answer)
    end))
    local agent = newAgent({ responseTimeout = 0.2 })
    local response = runUntil(agent:request("GET", server.url .. "/"))
    net.sleep(0.5)
    local held = 0
    for _, piece in ipairs(response._buffer) do held = held + #piece end
    assert.is_true(held <= 64 * 1024, "held " .. held)
    local body = runUntil(web.readBody(response))
    assert.equal(size, #body)
  end)

  it("fails at once a Content-Length larger than maxSize", function()
    local server = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 200 OK\r\n"
        .. "Content-Length: 99999999999\r\n\r\nxyz")
    end))
    local response = runUntil(newAgent():request("GET", server.url .. "/"))
    assert.equal(99999999999, response.length)
    local f = failureOf(web.readBody(response, { maxSize = 100 }))
    assert.is_truthy(f:check(web.BodyTooLarge))
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("fails a body cut by the server closing mid-way", function()
    local server = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        .. "only ten b")
      self.transport:loseConnection()
    end))
    local response = runUntil(newAgent():request("GET", server.url .. "/"))
    local f = failureOf(web.readBody(response))
    assert.is_truthy(f:check(web.ResponseFailed))
    assert.matches("in the middle of the body", tostring(f.value))
  end)

  it("fails with ResponseNeverReceived when the server closes without "
    .. "answering", function()
    local server = track(respondingServer(function(self)
      self.transport:loseConnection()
    end))
    local f = failureOf(newAgent():request("POST", server.url .. "/", nil,
      "x"))
    assert.is_truthy(f:check(web.ResponseNeverReceived))
  end)

  it("times out a server that never answers (responseTimeout)", function()
    local server = track(rawServer({}))
    local started = reactor.seconds()
    local f = failureOf(newAgent({ responseTimeout = 0.2 }):request("GET",
      server.url .. "/"))
    assert.is_truthy(f:check(err.TimeoutError))
    assert.matches("no response for 0.2s", tostring(f.value))
    assert.is_true(reactor.seconds() - started < 2)
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("times out a body that stalls", function()
    local server = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    end))
    local agent = newAgent({ responseTimeout = 0.2 })
    local response = runUntil(agent:request("GET", server.url .. "/"))
    local f = failureOf(web.readBody(response))
    assert.is_truthy(f:check(err.TimeoutError))
  end)

  it("getPage's timeout covers the whole exchange", function()
    local server = track(rawServer({}))
    local f = failureOf(web.getPage(server.url .. "/", { timeout = 0.2 }))
    assert.is_truthy(f:check(err.TimeoutError))
    net.waitFor(function() return server.lost == 1 end)
  end)

  it("skips a 100 Continue before the response", function()
    local server = track(respondingServer(function(self)
      self.transport:write("HTTP/1.1 100 Continue\r\n\r\n" .. ok("after"))
    end))
    local response, body = get(newAgent(), server.url .. "/")
    assert.same({ 200, "after" }, { response.code, body })
  end)

  it("retries an idempotent request once when a reused connection was "
    .. "closed by the server", function()
    local server = track(respondingServer(function(self, n)
      if n == 1 then
        self.transport:write(ok("first"))
      else
        self.transport:abortConnection() -- a stale keep-alive connection
      end
    end))
    local agent = newAgent()
    local _, a = get(agent, server.url .. "/")
    local _, b = get(agent, server.url .. "/")
    assert.same({ "first", "first" }, { a, b })
    assert.equal(2, server.connections)
  end)

  it("does not retry a POST on a reused connection", function()
    local server = track(respondingServer(function(self, n)
      if n == 1 then
        self.transport:write(ok("first"))
      else
        self.transport:abortConnection()
      end
    end))
    local agent = newAgent()
    get(agent, server.url .. "/")
    local f = failureOf(agent:request("POST", server.url .. "/", nil, "x"))
    assert.is_truthy(f:check(web.ResponseNeverReceived))
    assert.equal(1, server.connections)
  end)

  it("does not reuse a connection that sent bytes after the response",
    function()
      local server = track(respondingServer(function(self)
        self.transport:write(ok("one") .. "HTTP/1.1 200 OK\r\n")
      end))
      local agent = newAgent()
      get(agent, server.url .. "/")
      net.waitFor(function() return server.lost == 1 end)
      assert.equal(0, agent.pool:idleCount())
      local _, body = get(agent, server.url .. "/")
      assert.equal("one", body)
      assert.equal(2, server.connections)
    end)

  it("drops a pooled connection on which the server talks out of turn",
    function()
      local server = track(respondingServer(function(self)
        self.transport:write(ok("one"))
        reactor.callLater(0.02, function()
          self.transport:write("unsolicited")
        end)
      end))
      local agent = newAgent()
      get(agent, server.url .. "/")
      assert.equal(1, agent.pool:idleCount())
      net.waitFor(function() return agent.pool:idleCount() == 0 end)
      net.waitFor(function() return server.lost == 1 end)
    end)

  it("logs an error raised by a body protocol and fails only that body",
    function()
      local server = track(respondingServer(function(self)
        self.transport:write(ok("boom"))
      end))
      local logged = {}
      local function observer(ev) logged[#logged + 1] = ev.text end
      log.addObserver(observer)
      local agent = newAgent()
      local response = runUntil(agent:request("GET", server.url .. "/"))
      local done = defer.Deferred()
      response:deliverBody({
        dataReceived = function() error("bad protocol") end,
        connectionLost = function(_, reason) done:callback({ reason }) end,
      })
      local reason = runUntil(done)[1]
      log.removeObserver(observer)
      assert.is_truthy(reason:check(web.ResponseFailed))
      assert.matches("bad protocol", table.concat(logged, "\n"))
      local _, body = get(agent, server.url .. "/")
      assert.equal("boom", body)
    end)

  it("answers random bytes with a Failure, never a raise or a hang",
    function()
      math.randomseed(20261201)
      local prefixes = { "", "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" }
      local answers = {}
      for i = 1, 40 do
        local bytes = {}
        for j = 1, math.random(1, 300) do
          bytes[j] = string.char(math.random(0, 255))
        end
        answers[i] = prefixes[i % #prefixes + 1] .. table.concat(bytes)
      end
      local served = 0
      local server = track(respondingServer(function(self)
        served = served + 1
        self.transport:write(answers[served])
        self.transport:loseConnection()
      end))
      local agent = newAgent({ responseTimeout = 2 })
      for _ = 1, #answers do
        local d = agent:request("GET", server.url .. "/")
          :addCallback(web.readBody)
        local good, result = pcall(runUntil, d, 5)
        if not good then
          assert.is_truthy(result.check and result:check(web.ResponseFailed,
            err.TimeoutError), tostring(result))
        else
          assert.equal("string", type(result))
        end
      end
      assert.equal(#answers, served)
    end)

  it("cancelling a request closes its connection", function()
    local server = track(rawServer({}))
    local d = newAgent():request("GET", server.url .. "/")
    net.waitFor(function() return server.connections == 1 end)
    d:cancel()
    local f = failureOf(d)
    assert.is_truthy(f:check(err.CancelledError))
    net.waitFor(function() return server.lost == 1 end)
  end)
end)

-- The example -----------------------------------------------------------------

describe("examples/web/getpage.lua", function()
  it("fetches several pages at once from a loom Site and stops when all "
    .. "are done", function()
    local out, errout, status = sub.loom("run examples/web/getpage.lua")
    assert.equal(0, status, errout)
    assert.matches('/slow%s+"the slow page"\n', out)
    assert.matches('/fast%s+"the fast page"\n', out)
    assert.matches('/moved%s+"the fast page"\n', out)
    assert.matches("/missing%s+failed: web.Error: 404 Not Found\n", out)
    assert.matches("failed: ConnectionRefusedError: ", out)
    assert.matches("5 pages in [%d.]+s", out)
    -- At once: the server finished /fast (asked after /slow) before /slow.
    local fast = errout:find('"GET /fast HTTP/1.1" 200', 1, true)
    local slow = errout:find('"GET /slow HTTP/1.1" 200', 1, true)
    assert.is_truthy(fast and slow, errout)
    assert.is_true(fast < slow)
  end)
end)
