-- Hostile HTTP against loom.web's server, for `make soak` (under the ASan
-- and UBSan build): for SECONDS, 50 connections at a time send requests
-- taken from a corpus (both of the server's lanes: plain GETs, queries,
-- bodies, chunked, Expect, HEAD, cookies, absolute targets, bad versions,
-- web.File paths that try to leave its directory) with bytes flipped,
-- dropped, doubled and repeated thousands of times, several pipelined,
-- written in random pieces, some connections cut off mid-request or
-- mid-response. Resources answer with strings, large bodies,
-- NOT_DONE_YET, Deferreds, errors, odd codes, cookies and files.
--   loom run fuzz/web_soak.lua [SECONDS [SEED]]     (default 30 s, seed 1)
-- Passes (exit 0) when nothing but the one resource that raises logged an
-- error, no answer held the secret file next to web.File's directory
-- (through a link or an escaping path), and a plain GET is answered
-- afterwards; the sanitizers abort on any invalid access. A connection the
-- server keeps open is closed by the client 50 ms after its last write,
-- so every connection ends.
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local web = require "loom.web"

local SECONDS = tonumber(arg[1]) or 30
local CONCURRENCY = 50
local S = dofile("fuzz/soak.lua").new(tonumber(arg[2]) or 1)
local R, mutate = S.R, S.mutate

-- Resources -----------------------------------------------------------------

local Leaf = web.Resource:extend({ __name = "SoakLeaf", isLeaf = true })
local function leaf(render)
  local r = Leaf()
  r.render_GET, r.render_POST, r.render_HEAD, r.render_PUT =
    render, render, render, render
  return r
end

local root = web.Resource()
root:putChild("", leaf(function(_, request)
  request:setHeader("Content-Type", "text/plain")
  return "hello"
end))
root:putChild("q", leaf(function(_, request)
  local n = 0
  for k, values in pairs(request.args) do
    n = n + #k
    for _, v in ipairs(values) do
      n = n + #v
    end
  end
  return n .. request.path .. (request:getHeader("x-a") or "")
    .. #request:getContent()
end))
root:putChild("big", leaf(function()
  return ("b"):rep(R(200000))
end))
root:putChild("later", leaf(function(_, request)
  local gone = false
  request:notifyFinish():addErrback(function() gone = true end)
  reactor.callLater(0.001 * R(5), function()
    if not gone then
      request:write("x")
      request:finish()
    end
  end)
  return web.NOT_DONE_YET
end))
root:putChild("def", leaf(function()
  local d = defer.Deferred()
  reactor.callLater(0, d.callback, d, "deferred")
  return d
end))
root:putChild("err", leaf(function()
  error("the soak's raising resource")
end))
root:putChild("code", leaf(function(_, request)
  request:setResponseCode(100 + R(500))
  request:setHeader("X-" .. R(9), "v")
  return "c"
end))
root:putChild("cookie", leaf(function(_, request)
  request:addCookie("a", "b")
  return request:getCookie("z") or "none"
end))
root:putChild("len", leaf(function(_, request)
  request:setHeader("Content-Length", "3")
  return "abc"
end))
local nested = web.Resource()
root:putChild("n", nested)
nested:putChild("x", leaf(function(_, request)
  return table.concat(request.prepath, "/")
end))

-- web.File over a directory next to a secret (the marker must never come
-- back): links inside and outside it, a listing.
local MARKER = string.format("SECRET-%d-OUTSIDE", os.time())
local dir = assert(io.popen("mktemp -d")):read("l")
assert(os.execute(table.concat({
  "mkdir -p '" .. dir .. "/www/sub'",
  "printf '" .. MARKER .. "' > '" .. dir .. "/secret.txt'",
  "printf 'index' > '" .. dir .. "/www/index.html'",
  "printf 'aaaaaaaaaa' > '" .. dir .. "/www/a.txt'",
  "printf 'b' > '" .. dir .. "/www/sub/b.txt'",
  "ln -s sub/b.txt '" .. dir .. "/www/inlink'",
  "ln -s ../secret.txt '" .. dir .. "/www/outlink'",
  "ln -s .. '" .. dir .. "/www/outdir'",
}, " && ")), "web_soak: cannot make the static directory")
root:putChild("static", web.File(dir .. "/www", { listing = true }))

local site = web.Site(root, { accessLog = false })
local port = reactor.listenTCP(0, site, { interface = "127.0.0.1" })
  :getHost().port

-- Requests ------------------------------------------------------------------

local CORPUS = {
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /q?a=1&b=%20x&c&d=%zz HTTP/1.1\r\nHost: a\r\nX-A: y\r\nX-A: z\r\n\r\n",
  "GET /big HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /later HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /def HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /err HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /code HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /cookie HTTP/1.1\r\nHost: a\r\nCookie: z=1; y=2\r\nCookie: q=3\r\n\r\n",
  "GET /len HTTP/1.1\r\nHost: a\r\n\r\n",
  "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /n/x/%2e%2e/y HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.0\r\n\r\n",
  "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "POST /q HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-"
    .. "urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2",
  "POST /q HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "3\r\na=1\r\n0\r\n\r\n",
  "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2"
    .. "\r\n\r\nhi",
  "GET http://a/q?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /" .. ("a"):rep(300) .. " HTTP/1.1\r\nHost: a\r\n"
    .. ("X-L: " .. ("v"):rep(100) .. "\r\n"):rep(20) .. "\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  "GET / HTTP/1.1\r\n\r\n",
  "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade"
    .. "\r\n\r\n",
  "GET /static/ HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/sub/ HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-5\r\n\r\n",
  "GET /static/a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov"
    .. " 2094 08:49:37 GMT\r\n\r\n",
  "HEAD /static/sub/b.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/inlink HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/outlink HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/outdir/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/../secret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/%2e%2e/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/sub/..%2f..%2fsecret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/sub%5c..%5c..%5csecret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static/.%2e/.%2E/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /static//secret.txt%00.txt HTTP/1.1\r\nHost: a\r\n\r\n",
}

-- Clients -------------------------------------------------------------------

local stats = { connections = 0, bytes = 0 }
local inflight, deadline = 0, reactor.seconds() + SECONDS
local spawn

local Client = protocol.Protocol:extend({ __name = "SoakClient" })

function Client:connectionMade()
  stats.connections = stats.connections + 1
  local parts = {}
  for i = 1, R(6) do
    local s = CORPUS[R(#CORPUS)]
    parts[i] = R(3) > 1 and mutate(s) or s
  end
  local t = self.transport
  S.writeInPieces(t, table.concat(parts), R(4) == 1 and "close" or function()
    reactor.callLater(0.05, function() t:loseConnection() end)
  end)
  if R(10) == 1 then
    reactor.callLater(0.002, function() t:abortConnection() end)
  end
end

function Client:dataReceived(data)
  stats.bytes = stats.bytes + #data
  local seen = (self.tail or "") .. data
  if seen:find(MARKER, 1, true) then
    log.error("soak: a file outside web.File's directory was served")
  end
  self.tail = seen:sub(-#MARKER)
end

function Client:connectionLost()
  inflight = inflight - 1
  spawn()
end

local factory = protocol.ClientFactory.forProtocol(Client)
function factory:clientConnectionFailed(_, reason)
  inflight = inflight - 1
  log.error("soak: a connection failed: %s", tostring(reason))
  reactor.callLater(0.1, spawn)
end

function spawn()
  while inflight < CONCURRENCY and reactor.seconds() < deadline do
    inflight = inflight + 1
    reactor.connectTCP("127.0.0.1", port, factory, { timeout = 5 })
  end
end

-- Errors: the raising resource's are expected (and not shown), any other
-- is loom's. Each 400 is an info line: warnings and errors only.
local unexpected = S.watchErrors("the soak's raising resource")

local status = 1
local function finish(body)
  status = S.verdict(unexpected, string.format("%d connections, %d bytes"
    .. " answered, then a plain GET answered", stats.connections,
    stats.bytes),
    body ~= "hello" and "the last GET got " .. string.format("%q", body))
  reactor.stop()
end

-- After the clients' last connections end (bounded), one plain GET.
local function last()
  S.whenSettled(function() return inflight > 0 end, deadline, function()
    web.getPage("http://127.0.0.1:" .. port .. "/", { timeout = 5 })
      :addCallbacks(finish, function(f) finish(tostring(f)) end)
  end)
end

print(string.format("soak: %d s against 127.0.0.1:%d (seed %s)", SECONDS,
  port, arg[2] or "1"))
spawn()
reactor.callLater(SECONDS, last)
reactor.run()
os.execute("rm -rf '" .. dir .. "'")
os.exit(status)
