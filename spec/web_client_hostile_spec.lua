-- loom.web's HTTP client (Agent) when things go wrong: connection
-- failures, bad arguments, requests written whole, IPv6, hostile servers
-- written with loom's own TCP; and examples/web/getpage.lua. Python's and
-- Twisted's servers: web_client_spec.lua. Every wait is bounded.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"
local web = require "loom.web"
local url = require "loom.web.url"

local C = dofile("spec/support/web_client.lua")
local runUntil = testing.runUntil
local net, sub = C.net, C.sub
local rawServer, respondingServer, ok = C.rawServer, C.respondingServer, C.ok
local newAgent, track, failureOf, get = C.newAgent, C.track, C.failureOf, C.get

after_each(C.cleanup)

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
      agent:request("GET", "http://h/", { Host = "a", host = "b" })
    end) -- one field given twice would go out as two Host lines
    local ok, e = pcall(agent.request, agent, "GET", "http://h/",
      { ["X-A"] = "1", ["x-a"] = "2" })
    assert.is_false(ok)
    assert.matches("request: header x%-a given twice, as ", e)
    assert.has_error(function()
      agent:request("GET", "http://h/", { ["X-N"] = 0 / 0 })
    end) -- a NaN would be sent as "-nan"
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

  it("takes up to MAX_INTERIM_RESPONSES 1xx answers, then fails", function()
    local n = require("loom.web.clientconnection").MAX_INTERIM_RESPONSES
    local interims = n
    local server = track(respondingServer(function(self)
      self.transport:write(("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        :rep(interims) .. ok("after"))
    end))
    local response, body = get(newAgent(), server.url .. "/")
    assert.same({ 200, "after" }, { response.code, body })
    interims = n + 1 -- (a server sending them without end: past responseTimeout)
    local f = failureOf(newAgent():request("GET", server.url .. "/"))
    assert.is_truthy(f:check(web.ResponseFailed))
    assert.matches("more than " .. n .. " interim %(1xx%) responses", tostring(f.value))
  end)

  it("gives a body of one-byte chunks to deliverBody a read at a time",
    function()
      local chunks = {}
      for i = 1, 4000 do
        chunks[i] = "1\r\n" .. string.char(97 + i % 26) .. "\r\n"
      end
      local server = track(respondingServer(function(self)
        self.transport:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
          .. "\r\n\r\n" .. table.concat(chunks) .. "0\r\n\r\n")
      end))
      local response = runUntil(newAgent():request("GET", server.url .. "/"))
      local proto = { calls = 0, parts = {} }
      function proto.dataReceived(p, data)
        p.calls = p.calls + 1
        p.parts[#p.parts + 1] = data
      end
      local done = defer.Deferred()
      function proto.connectionLost() done:callback(nil) end
      response:deliverBody(proto)
      runUntil(done)
      local body = table.concat(proto.parts)
      assert.equals(4000, #body)
      assert.equals(table.concat(chunks):gsub("1\r\n(.)\r\n", "%1"), body)
      -- 24,000 bytes come in a few reads: one call each, not 4,000
      assert.is_true(proto.calls <= 10, proto.calls .. " calls")
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
