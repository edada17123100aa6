-- loom.web's HTTP client (Agent, pool, readBody, RedirectAgent, getPage)
-- and web.url against servers nobody here wrote: Python's http.server and
-- Twisted's twisted.web (spec/support/web_client.lua starts them). Hostile
-- servers and connection failures: web_client_hostile_spec.lua. Every
-- wait is bounded (runUntil's timeout; the scripts run under timeout(1)).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"
local web = require "loom.web"
local url = require "loom.web.url"

local C = dofile("spec/support/web_client.lua")
local runUntil = testing.runUntil
local net = C.net
local PY_SERVER, TWISTED_SERVER = C.PY_SERVER, C.TWISTED_SERVER
local startPython, stopPython = C.startPython, C.stopPython
local respondingServer = C.respondingServer
local newAgent, track, failureOf, get = C.newAgent, C.track, C.failureOf, C.get

after_each(C.cleanup)

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

  it("getPage follows redirects by default; with followRedirect=false "
    .. "errbacks with PageRedirect, as Twisted's", function()
    assert.equal("hello world", runUntil(web.getPage(base .. "/chain/2")))
    local f = failureOf(web.getPage(base .. "/chain/2", { followRedirect = false }))
    assert.is_truthy(f:check(web.PageRedirect))
    assert.is_truthy(f:check(web.Error))
    assert.same({ 302, "moved" }, { f.value.status, f.value.body })
    assert.matches("/chain/1$", f.value.location)
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
