-- loom.web's server (Site, Resource, Request) against clients nobody here
-- wrote (curl, Python's http.client and urllib) and raw sockets.
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local log = require "loom.log"
local testing = require "loom.testing"
local web = require "loom.web"

local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil
local waitFor = W.net.waitFor

local function serve(root, opts)
  return W.serve(root, opts, finally)
end

-- Records the log events of one spec.
local function captureLog()
  local events = {}
  local obs = log.addObserver(function(ev) events[#events + 1] = ev end)
  W.atEnd(function() log.removeObserver(obs) end, finally)
  return events
end

local function logText(events)
  local t = {}
  for _, ev in ipairs(events) do t[#t + 1] = ev.text end
  return table.concat(t, "\n")
end

describe("web.Site with curl", function()
  it("serves a resource tree: putChild, isLeaf, prepath/postpath", function()
    local seen
    local root = web.Resource()
    local api = web.Resource()
    root:putChild("api", api)
    api:putChild("items", W.leaf({
      render_GET = function(_, request)
        seen = { prepath = request.prepath, postpath = request.postpath,
          path = request.path, uri = request.uri, method = request.method }
        return "items!"
      end,
    }))
    local server = serve(root, { accessLog = false })
    local out, _, code = W.curl("-i", server.url("/api/items/a%20b/c?x=1"))
    assert.equals(0, code)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\nContent%-Length: 6\r\n", out)
    assert.matches("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", out)
    assert.matches("\r\nServer: loom/", out)
    assert.matches("\r\n\r\nitems!$", out)
    assert.same({ "api", "items" }, seen.prepath)
    assert.same({ "a b", "c" }, seen.postpath)
    assert.equals("/api/items/a%20b/c", seen.path)
    assert.equals("/api/items/a%20b/c?x=1", seen.uri)
    assert.equals("GET", seen.method)
  end)

  it("answers a missing child with NoResource's 404", function()
    local root = web.Resource()
    root:putChild("here", W.leaf({ render_GET = function() return "x" end }))
    local server = serve(root, { accessLog = false })
    local out = W.curl("-i", server.url("/nothere"))
    assert.matches("^HTTP/1.1 404 Not Found\r\n", out)
    assert.matches("No Such Resource", out)
    -- "/" is the child "" of the root, as in Twisted.
    out = W.curl("-i", server.url("/"))
    assert.matches("^HTTP/1.1 404", out)
  end)

  it("makes requests with Site.requestFactory", function()
    local MyRequest = web.Request:extend({ __name = "MyRequest" })
    function MyRequest:shout() return self.path:upper() end
    local server = serve(W.leaf({
      render_GET = function(_, request) return request:shout() end,
    }), { accessLog = false, requestFactory = MyRequest })
    assert.equals("/QUIET", (W.curl(server.url("/quiet"))))
  end)

  it("uses getChild for dynamic children", function()
    local Dyn = web.Resource:extend({})
    function Dyn:getChild(name)
      return W.leaf({ render_GET = function() return "child " .. name end })
    end
    local server = serve(Dyn(), { accessLog = false })
    assert.equals("child zebra", (W.curl(server.url("/zebra"))))
  end)

  it("gives args from the query and a urlencoded POST, as lists", function()
    local args, content
    local server = serve(W.leaf({
      render_POST = function(_, request)
        args, content = request.args, request.content
        return "ok"
      end,
    }), { accessLog = false })
    local out = W.curl("--data", "b=2&a=3&e=%C3%A9+x", server.url("/p?a=1&c=&a=2&d&f=1;g=2"))
    assert.equals("ok", out)
    assert.same({ "1", "2", "3" }, args.a)
    assert.same({ "2" }, args.b)
    assert.same({ "" }, args.c)
    assert.same({ "" }, args.d)
    assert.same({ "é x" }, args.e)
    assert.same({ "1;g=2" }, args.f) -- ";" separates nothing, as in Python 3.10+
    assert.is_nil(args.g)
    assert.equals("b=2&a=3&e=%C3%A9+x", content)
  end)

  it("parses query strings as Twisted's parse_qs(qs, 1), on random ones", function()
    -- The reference: parse_qs's rules in Lua patterns (pairs between &s,
    -- split at the first =, + as a space and then %XX decoded).
    local function unquote(s)
      s = s:gsub("+", " ")
      return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    local function reference(qs)
      local args = {}
      for part in qs:gmatch("[^&]+") do
        local k, v = part:match("^([^=]*)=(.*)$")
        if k == nil then k, v = part, "" end
        k = unquote(k)
        args[k] = args[k] or {}
        table.insert(args[k], unquote(v))
      end
      return args
    end
    local parseQuery = require("loom.web.server_request").parseQuery
    local unquote = require("loom.web.server_request").unquote
    local alphabet = { "a", "b", "=", "=", "&", "&", "%", "%", "+", "2", "B",
      "f", "G", ";", " ", "\0", "\xc3", "\xa9" }
    math.randomseed(7)
    for _ = 1, 3000 do
      local parts = {}
      for i = 1, math.random(14) - 1 do parts[i] = alphabet[math.random(#alphabet)] end
      local qs = table.concat(parts)
      assert.same(reference(qs), parseQuery(qs, {}), string.format("%q", qs))
      -- a path segment's decoding: %XX only, + kept
      assert.equals((qs:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)),
        unquote(qs), string.format("%q", qs))
    end
    -- adds to the lists already there (a POST body after the query)
    local args = parseQuery("a=1&b=%41", {})
    assert.equals(args, parseQuery("a=2+3&c", args))
    assert.same({ a = { "1", "2 3" }, b = { "A" }, c = { "" } }, args)
    assert.same({ ["+"] = { "+ " } }, parseQuery("%2B=%2B+", {}))
    assert.has_error(function() parseQuery(nil, {}) end)
  end)

  it("405 with Allow for a method with no render_, HEAD included", function()
    local server = serve(W.leaf({
      render_GET = function() return "g" end,
      render_POST = function() return "p" end,
    }), { accessLog = false })
    local out = W.curl("-i", "-X", "DELETE", server.url("/"))
    assert.matches("^HTTP/1.1 405 Method Not Allowed\r\n", out)
    assert.matches("\r\nAllow: GET, HEAD, POST\r\n", out)
  end)

  it("a render that raises gives 500 without the error text, logged", function()
    local events = captureLog()
    local server = serve(W.leaf({
      render_GET = function() error("the secret password is 42") end,
    }), { accessLog = false })
    local out = W.curl("-i", server.url("/boom"))
    assert.matches("^HTTP/1.1 500 Internal Server Error\r\n", out)
    assert.is_nil(out:find("secret", 1, true))
    local text = logText(events)
    assert.matches("Error rendering GET /boom", text)
    assert.matches("the secret password is 42", text)
    assert.matches("stack traceback", text)
  end)

  it("a body returned after finish() is dropped with a warning", function()
    local events = captureLog()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:write("early")
        request:finish()
        return "late"
      end,
    }), { accessLog = false })
    local out = W.curl(server.url("/x"))
    assert.equals("early", out)
    assert.matches("GET /x: the render returned 4 bytes after finish%(%); dropped",
      logText(events))
  end)

  it("a render that returns something else is a 500 too", function()
    captureLog()
    local server = serve(W.leaf({ render_GET = function() return 42 end }),
      { accessLog = false })
    assert.matches("^HTTP/1.1 500", (W.curl("-i", server.url("/"))))
  end)

  it("a body longer than the Content-Length it set is a 500", function()
    captureLog()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:setHeader("Content-Length", 2)
        if request.args.later then
          local d = defer.Deferred()
          reactor.callLater(0.01, function() d:callback("too long") end)
          return d
        end
        return "too long"
      end,
    }), { accessLog = false })
    local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /?later=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2)
    assert.equals(500, list[1].status)
    assert.equals(500, list[2].status)
  end)

  it("a render may return a Deferred of the body, or of a failure", function()
    captureLog()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        local d = defer.Deferred()
        reactor.callLater(0.01, function()
          if request.args.fail then
            d:errback("deferred went wrong")
          else
            d:callback("later " .. request.path)
          end
        end)
        return d
      end,
    }), { accessLog = false })
    assert.equals("later /x", (W.curl(server.url("/x"))))
    local out = W.curl("-i", server.url("/x?fail=1"))
    assert.matches("^HTTP/1.1 500", out)
    assert.is_nil(out:find("went wrong", 1, true))
  end)

  it("setResponseCode, setHeader, cookies both ways", function()
    local cookie
    local server = serve(W.leaf({
      render_GET = function(_, request)
        cookie = request:getCookie("session")
        request:setResponseCode(299, "Fine Indeed")
        request:setHeader("X-Custom", "yes")
        request:setHeader("Content-Type", "text/plain")
        request:addCookie("k", "v", { path = "/", httpOnly = true, max_age = 60 })
        return "c"
      end,
    }), { accessLog = false })
    local out = W.curl("-i", "-b", "other=1; session=abc", server.url("/"))
    assert.matches("^HTTP/1.1 299 Fine Indeed\r\n", out)
    assert.equals("abc", cookie)
    -- spaces anywhere (a long run used to cost seconds to trim)
    W.curl("-H", "Cookie: a" .. (" "):rep(8000) .. "b=1;  session  =  x y  ",
      server.url("/"))
    assert.equals("x y", cookie)
    assert.matches("\r\nX%-Custom: yes\r\n", out)
    assert.matches("\r\nContent%-Type: text/plain\r\n", out)
    assert.matches("\r\nSet%-Cookie: k=v; Path=/; Max%-Age=60; HttpOnly\r\n", out)
    -- Headers go out in the order they were first set.
    assert.matches("\r\nX%-Custom: yes\r\nContent%-Type: text/plain\r\n", out)
  end)

  it("refuses header injection in setHeader and addCookie", function()
    local errors = {}
    local server = serve(W.leaf({
      render_GET = function(_, request)
        for _, f in ipairs({
          function() request:setHeader("X", "a\r\nSet-Cookie: evil=1") end,
          function() request:setHeader("Bad Name", "v") end,
          function() request:addCookie("k", "v\r\nX: y") end,
          function() request:addCookie("k", "v", { path = "/; Domain=evil" }) end,
          function() request:setResponseCode(99) end,
        }) do
          local ok, e = pcall(f)
          errors[#errors + 1] = not ok and e or "no error"
        end
        return "done"
      end,
    }), { accessLog = false })
    local out = W.curl("-i", server.url("/"))
    assert.matches("done$", out)
    assert.is_nil(out:find("evil", 1, true))
    assert.matches("must not contain CR", errors[1])
    assert.matches("invalid header name", errors[2])
    assert.matches("must not contain CR", errors[3])
    assert.matches("addCookie: path must not contain ;", errors[4])
    assert.matches("setResponseCode", errors[5])
  end)

  it("curl sends Expect: 100-continue for a large body and gets it", function()
    local got
    local server = serve(W.leaf({
      render_PUT = function(_, request)
        got = request:getContent()
        return "stored " .. #got
      end,
    }), { accessLog = false })
    local file = os.tmpname()
    W.atEnd(function() os.remove(file) end, finally)
    local f = assert(io.open(file, "wb"))
    f:write(("0123456789"):rep(200000))
    f:close()
    local out, err = W.curl("-v", "-H", "Expect: 100-continue", "--expect100-timeout",
      "5", "-T", file, server.url("/up"))
    assert.equals("stored 2000000", out)
    assert.matches("HTTP/1.1 100 Continue", err)
    assert.equals(("0123456789"):rep(200000), got)
  end)

  it("keeps a large body in a temporary file (content is a file then)",
    function()
      local kind, size, first
      local server = serve(W.leaf({
        render_POST = function(_, request)
          kind = io.type(request.content) or type(request.content)
          first = request.content:read(5)
          size = #request:getContent()
          return "ok"
        end,
        render_PUT = function(_, request)
          kind = type(request.content)
          return "ok"
        end,
      }), { accessLog = false, contentInMemory = 1000 })
      W.curl("--data-binary", "hello" .. ("x"):rep(5000), server.url("/"))
      assert.equals("file", kind)
      assert.equals("hello", first)
      assert.equals(5005, size)
      W.curl("-X", "PUT", "--data-binary", ("x"):rep(999), server.url("/"))
      assert.equals("string", kind)
    end)

  it("writes the combined log format to logPath", function()
    local path = os.tmpname()
    W.atEnd(function() os.remove(path) end, finally)
    local server = serve(W.leaf({ render_GET = function() return "12345" end }),
      { logPath = path })
    W.curl("-A", 'agent "quoted"', "-e", "http://ref/", server.url("/l?q=1"))
    local f = assert(io.open(path))
    local line = f:read("a")
    f:close()
    assert.matches('^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] '
      .. '"GET /l%?q=1 HTTP/1%.1" 200 5 "http://ref/" "agent \\x22quoted\\x22"\n$', line)
  end)

  it("logs to the loom log by default", function()
    local events = captureLog()
    local server = serve(W.leaf({ render_GET = function() return "" end }))
    W.curl(server.url("/default"))
    assert.matches('"GET /default HTTP/1.1" 200 %- "%-" "curl/', logText(events))
  end)
end)

describe("web.Site with Python's http.client and urllib", function()
  it("keeps the connection alive across requests, HEAD has no body", function()
    local peers = {}
    local server = serve(W.leaf({
      render_GET = function(_, request)
        peers[#peers + 1] = request:getClientAddress().port
        return "body of " .. request.uri
      end,
    }), { accessLog = false })
    local out, err = W.python([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for path in ("/a", "/b"):
    c.request("GET", path)
    r = c.getresponse()
    print(r.status, r.getheader("Content-Length"), r.read().decode())
c.request("HEAD", "/c")
r = c.getresponse()
print(r.status, r.getheader("Content-Length"), repr(r.read()))
c.request("GET", "/d")
r = c.getresponse()
print(r.status, r.read().decode())
]], tostring(server.portNumber))
    assert.equals("200 10 body of /a\n200 10 body of /b\n200 10 b''\n"
      .. "200 body of /d\n", out, err)
    assert.equals(4, #peers)
    assert.equals(1, #server.channels)
    for i = 2, 4 do assert.equals(peers[1], peers[i]) end
  end)

  it("streams a NOT_DONE_YET response chunked; urllib reads it", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:setHeader("Content-Type", "text/plain")
        request:write("one,")
        reactor.callLater(0.01, function()
          request:write("two,")
          request:write("")
          reactor.callLater(0.01, function()
            request:write("three")
            request:finish()
          end)
        end)
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local out, err = W.python([[
import urllib.request, sys
r = urllib.request.urlopen(sys.argv[1], timeout=10)
print(r.status, r.getheader("Transfer-Encoding"), r.read().decode())
]], server.url("/s"))
    assert.equals("200 chunked one,two,three\n", out, err)
  end)

  it("posts a form with urllib", function()
    local server = serve(W.leaf({
      render_POST = function(_, request)
        return table.concat(request.args.name, "+") .. "/" .. request:getHeader("CONTENT-TYPE")
      end,
    }), { accessLog = false })
    local out, err = W.python([[
import urllib.request, urllib.parse, sys
data = urllib.parse.urlencode([("name", "a b"), ("name", "c&d")]).encode()
print(urllib.request.urlopen(sys.argv[1], data, timeout=10).read().decode())
]], server.url("/f"))
    assert.equals("a b+c&d/application/x-www-form-urlencoded\n", out, err)
  end)
end)

describe("web.Site with Twisted's Agent", function()
  -- python3-twisted is not among make test's packages: skipped without it.
  local _, _, hasTwisted = W.python("import twisted.web.client")
  local test = hasTwisted == 0 and it or pending

  test("Agent GETs, POSTs a body and reads the answers with readBody", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:setHeader("Content-Type", "text/plain")
        return "agent got " .. request.path
      end,
      render_POST = function(_, request)
        request:setResponseCode(201)
        return "posted " .. request:getContent()
      end,
    }), { accessLog = false })
    local out, err = W.python([[
import sys
from twisted.internet import task, defer
from twisted.web.client import Agent, readBody, HTTPConnectionPool
from twisted.web.client import FileBodyProducer
from io import BytesIO

@defer.inlineCallbacks
def main(reactor, base):
    pool = HTTPConnectionPool(reactor, persistent=True)
    agent = Agent(reactor, pool=pool)
    for path in (b"/one", b"/two"):
        r = yield agent.request(b"GET", base + path)
        body = yield readBody(r)
        print(r.code, r.headers.getRawHeaders(b"content-type")[0].decode(), body.decode())
    r = yield agent.request(b"POST", base + b"/p", None, FileBodyProducer(BytesIO(b"x" * 1000)))
    body = yield readBody(r)
    print(r.code, len(body))
    yield pool.closeCachedConnections()

task.react(main, [sys.argv[1].encode()])
]], server.url(""))
    assert.equals("200 text/plain agent got /one\n200 text/plain agent got /two\n"
      .. "201 1007\n", out, err)
    assert.equals(1, #server.channels) -- the pool kept the connection
  end)
end)

describe("web.Site on raw sockets", function()
  it("answers pipelined requests in order, a slow one first", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        if request.path == "/slow" then
          local d = defer.Deferred()
          reactor.callLater(0.05, function() d:callback("slow") end)
          return d
        end
        return "fast" .. request.path
      end,
      render_POST = function(_, request) return "posted " .. request.content end,
    }), { accessLog = false })
    local c = W.raw(server, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      .. "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 4)
    assert.equals("slow", list[1].body)
    assert.equals("fast/1", list[2].body)
    assert.equals("posted abc", list[3].body)
    assert.equals("fast/3", list[4].body)
    assert.is_true(c.transport.connected)
  end)

  it("answers many pipelined requests in one read without deep recursion",
    function()
      local server = serve(W.leaf({ render_GET = function(_, r) return r.path end }),
        { accessLog = false })
      local req = {}
      for i = 1, 500 do req[i] = "GET /" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n" end
      local c = W.raw(server, table.concat(req))
      local list = W.waitResponses(c, 500)
      for i = 1, 500 do assert.equals("/" .. i, list[i].body) end
    end)

  it("reads the path of an absolute-form target", function()
    local server = serve(W.leaf({
      render_GET = function(_, r) return r.path .. " " .. r.args.q[1] end,
    }), { accessLog = false })
    local c = W.raw(server, "GET http://example.com:80/a/b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2)
    assert.equals("/a/b 1", list[1].body)
    assert.equals(500, list[2].status) -- no q: the render raised
  end)

  it("HTTP/1.0: no chunking, the body ends at the close", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:write("a")
        request:write("b")
        request:finish()
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local text, list = W.exchangeUntilClosed(server, "GET / HTTP/1.0\r\n\r\n")
    assert.matches("^HTTP/1.0 200 OK\r\n", text)
    assert.is_nil(list[1].headers["transfer-encoding"])
    assert.equals("close", list[1].headers.connection)
    assert.equals("ab", list[1].body)
  end)

  it("HTTP/1.0 with keep-alive and a length stays open", function()
    local server = serve(W.leaf({ render_GET = function() return "ka" end }),
      { accessLog = false })
    local c = W.raw(server, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    local list = W.waitResponses(c, 1)
    assert.equals("keep-alive", list[1].headers.connection)
    c.transport:write("GET / HTTP/1.0\r\n\r\n")
    runUntil(c.lost)
    assert.equals(2, #W.responses(c:text(), nil, true))
  end)

  it("Connection: close closes after the response", function()
    local server = serve(W.leaf({ render_GET = function() return "bye" end }),
      { accessLog = false })
    local _, list = W.exchangeUntilClosed(server,
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert.equals(1, #list)
    assert.equals("bye", list[1].body)
  end)

  it("HEAD of a NOT_DONE_YET resource sends no body", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:write("never seen")
        request:finish()
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local c = W.raw(server, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2, { true })
    assert.equals("", list[1].body)
    assert.equals("never seen", list[2].body)
    assert.equals(1, select(2, c:text():gsub("never seen", "")))
  end)

  it("holds a response to its Content-Length", function()
    local events = captureLog()
    local errors = {}
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:setHeader("Content-Length", 5)
        request:setHeader("Transfer-Encoding", "gzip") -- not the resource's
        request:write("abc")
        errors[#errors + 1] = select(2, pcall(request.write, request, "def"))
        if request.path == "/short" then
          request:finish() -- 3 of 5 bytes: the connection must close
        else
          request:write("de")
          request:finish()
        end
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local c = W.raw(server, "GET /full HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 1)
    assert.equals("abcde", list[1].body)
    assert.is_nil(list[1].headers["transfer-encoding"])
    assert.matches("6 bytes would pass the Content%-Length of 5", errors[1])
    c = W.raw(server, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
    runUntil(c.lost)
    assert.matches("\r\n\r\nabc$", c:text())
    assert.matches("finished after 3 of its 5 bytes", logText(events))
    local ok, e = pcall(function()
      web.Request.setHeader({ responseHeaders = {} }, "Content-Length", "12x")
    end)
    assert.is_false(ok)
    assert.matches("Content%-Length must be a number", e)
  end)

  it("204 and 304 have no body and no length", function()
    local server = serve(W.leaf({
      render_GET = function(_, request)
        request:setResponseCode(request.path == "/a" and 204 or 304)
        return ""
      end,
    }), { accessLog = false })
    local c = W.raw(server, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2)
    assert.equals(204, list[1].status)
    assert.equals(304, list[2].status)
    assert.is_nil(list[1].headers["content-length"])
    assert.is_nil(list[1].headers["transfer-encoding"])
  end)

  it("100-continue comes before the body is sent", function()
    local server = serve(W.leaf({
      render_POST = function(_, r) return "got " .. r.content end,
    }), { accessLog = false })
    local c = W.raw(server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
      .. "Expect: 100-continue\r\n\r\n")
    c:waitFor("HTTP/1.1 100 Continue\r\n\r\n", true)
    c.transport:write("body")
    local list = W.waitResponses(c, 1)
    assert.equals("got body", list[1].body)
  end)

  it("notifyFinish errbacks when the client goes away mid-response", function()
    local finished = defer.Deferred()
    local request
    local server = serve(W.leaf({
      render_GET = function(_, r)
        request = r
        r:write("partial")
        r:notifyFinish():addCallbacks(function() finished:callback("finished") end,
          function(f) finished:callback({ f }) end)
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c:waitFor("partial", true)
    c.transport:abortConnection()
    local f = runUntil(finished)[1]
    assert.is_table(f)
    assert.truthy(f:check("ConnectionLost", "ConnectionDone"))
    -- Writing and finishing afterwards are ignored.
    request:write("more")
    request:finish()
    local ok = runUntil(request:notifyFinish():addErrback(function() return "err" end))
    assert.equals("err", ok)
  end)

  it("notifyFinish fires when the response is finished", function()
    local d
    local server = serve(W.leaf({
      render_GET = function(_, r)
        d = r:notifyFinish()
        return "done"
      end,
    }), { accessLog = false })
    W.curl(server.url("/"))
    assert.is_nil(runUntil(d))
  end)

  it("asks a pull producer for more until it is done", function()
    local calls = 0
    local server = serve(W.leaf({
      render_GET = function(_, r)
        local producer = {}
        function producer.resumeProducing()
          calls = calls + 1
          if calls <= 3 then
            r:write("piece" .. calls .. ";")
          else
            r:unregisterProducer()
            r:finish()
          end
        end
        function producer.stopProducing() end
        r:registerProducer(producer, false)
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equals("piece1;piece2;piece3;", W.waitResponses(c, 1)[1].body)
    assert.equals(4, calls)
  end)

  it("does not spin on a pull producer that writes nothing", function()
    local calls = 0
    local server = serve(W.leaf({
      render_GET = function(_, r)
        r:registerProducer({ resumeProducing = function() calls = calls + 1 end,
          stopProducing = function() end }, false)
        return web.NOT_DONE_YET
      end,
    }), { accessLog = false })
    W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    waitFor(function() return calls > 0 end)
    W.net.sleep(0.2)
    assert.equals(1, calls)
  end)

  it("registers a streaming producer and pauses it for a slow reader",
    function()
      -- More than the kernel's loopback buffers take (tcp_spec says why).
      local TOTAL = 16 * 1024 * 1024
      local producer = { paused = 0, resumed = 0, sent = 0 }
      local server = serve(W.leaf({
        render_GET = function(_, r)
          producer.request = r
          function producer:pauseProducing() self.paused = self.paused + 1; self.isPaused = true end
          function producer:resumeProducing()
            self.resumed = self.resumed + 1
            self.isPaused = false
            self:pump()
          end
          function producer:stopProducing() self.stopped = true end
          function producer:pump()
            while not self.isPaused and self.sent < TOTAL do
              self.sent = self.sent + 65536
              r:write(("p"):rep(65536))
            end
            if self.sent >= TOTAL and not self.done then
              self.done = true
              r:unregisterProducer()
              r:finish()
            end
          end
          r:registerProducer(producer, true)
          reactor.callLater(0, function() producer:pump() end)
          return web.NOT_DONE_YET
        end,
      }), { accessLog = false })
      local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      c.transport:pauseProducing() -- the client does not read
      waitFor(function() return producer.paused > 0 end)
      W.net.sleep(0.1)
      local queued = server.channels[1].transport:bufferedBytes()
      assert.is_true(queued < 1024 * 1024, "queued " .. queued)
      assert.is_true(producer.sent < TOTAL)
      c.transport:resumeProducing()
      waitFor(function() return #c:text() > TOTAL end, 10)
      assert.is_true(producer.resumed > 0)
      assert.equals(TOTAL, #W.waitResponses(c, 1)[1].body)
    end)
end)
