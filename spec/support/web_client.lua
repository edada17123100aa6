-- Shared by the web client specs (web_client_spec.lua,
-- web_client_hostile_spec.lua): servers nobody here wrote (Python's
-- http.server and Twisted's twisted.web, small scripts started on port 0
-- that print their port), hostile servers written with loom's own TCP,
-- and the agents and ports a spec made, closed after each.
--   local C = dofile("spec/support/web_client.lua")
--   after_each(C.cleanup)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"
local web = require "loom.web"

local runUntil = testing.runUntil
local net = dofile("spec/support/net.lua")
local sub = dofile("spec/support/subprocess.lua")

local C = { net = net, sub = sub }

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
  if good then
    error("expected a failure, got " .. tostring(f), 2)
  end
  return f
end

local function get(agent, u, headers, method, body)
  local response = runUntil(agent:request(method or "GET", u, headers, body))
  local text = runUntil(web.readBody(response))
  return response, text
end

-- Closes what the spec left: every agent's connections and every tracked
-- port.
function C.cleanup()
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
end

C.PY_SERVER, C.TWISTED_SERVER = PY_SERVER, TWISTED_SERVER
C.startPython, C.stopPython = startPython, stopPython
C.rawServer, C.respondingServer, C.ok = rawServer, respondingServer, ok
C.newAgent, C.track, C.failureOf, C.get = newAgent, track, failureOf, get

return C
