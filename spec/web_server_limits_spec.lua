-- loom.web's server against hostile clients: every limit of Site (docs/web.md)
-- answered with its status and a closed connection, timeouts for slow and
-- idle clients, and a client that does not read.
local log = require "loom.log"
local testing = require "loom.testing"
local web = require "loom.web"

local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil
local waitFor, sleep = W.net.waitFor, W.net.sleep

local function serve(root, opts)
  opts = opts or {}
  if opts.accessLog == nil then opts.accessLog = false end
  return W.serve(root, opts, finally)
end

-- Quietens and records the log of one spec.
local function captureLog()
  local events = {}
  local obs = log.addObserver(function(ev) events[#events + 1] = ev.text end)
  W.atEnd(function() log.removeObserver(obs) end, finally)
  return events
end

local rendered
local function echoRoot()
  rendered = 0
  return W.leaf({
    render_GET = function() rendered = rendered + 1; return "ok" end,
    render_POST = function(_, r) rendered = rendered + 1; return "len " .. #r:getContent() end,
  })
end

-- Sends data, waits for the server to close; returns the one response.
local function refused(server, data)
  local text, list = W.exchangeUntilClosed(server, data)
  assert.equals(1, #list, text)
  return list[1], text
end

describe("web.Site limits", function()
  it("answers garbage with 400 and closes", function()
    local events = captureLog()
    local server = serve(echoRoot())
    local r = refused(server, "\0\1\2garbage\r\n\r\n")
    assert.equals(400, r.status)
    assert.equals("close", r.headers.connection)
    r = refused(server, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    assert.equals(400, r.status)
    r = refused(server, "GET /\1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equals(400, r.status)
    assert.equals(0, rendered)
    assert.matches("bad request %(400%): invalid", table.concat(events, "\n"))
  end)

  it("answers an HTTP/1.1 request without exactly one Host with 400", function()
    local server = serve(echoRoot())
    assert.equals(400, refused(server, "GET / HTTP/1.1\r\n\r\n").status)
    assert.equals(400, refused(server,
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status)
    assert.equals(0, rendered)
  end)

  it("bounds the header section: 431", function()
    captureLog()
    local server = serve(echoRoot(), { maxHeaderSize = 1024, maxHeaders = 10 })
    local r = refused(server, "GET / HTTP/1.1\r\nHost: x\r\nX: "
      .. ("a"):rep(2000) .. "\r\n\r\n")
    assert.equals(431, r.status)
    local many = { "GET / HTTP/1.1\r\nHost: x\r\n" }
    for i = 1, 11 do many[#many + 1] = "H" .. i .. ": v\r\n" end
    r = refused(server, table.concat(many) .. "\r\n")
    assert.equals(431, r.status)
    -- Under both limits: served.
    local c = W.raw(server, table.concat(many, "", 1, 10) .. "\r\n")
    assert.equals("ok", W.waitResponses(c, 1)[1].body)
  end)

  it("bounds the URI: 414", function()
    captureLog()
    local server = serve(echoRoot(), { maxUrl = 100 })
    local r = refused(server, "GET /" .. ("u"):rep(200) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equals(414, r.status)
    assert.equals(0, rendered)
  end)

  it("bounds the body by Content-Length before reading it: 413", function()
    captureLog()
    local server = serve(echoRoot(), { maxBodySize = 1000 })
    -- The body is never sent: the answer comes on the head alone.
    local r = refused(server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
      .. "Expect: 100-continue\r\n\r\n")
    assert.equals(413, r.status)
    local _, text = refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
      .. "Content-Length: 99999999999999\r\n\r\n")
    assert.is_nil(text:find("100 Continue", 1, true))
    assert.equals(0, rendered)
  end)

  it("bounds a chunked body as it arrives: 413", function()
    captureLog()
    local server = serve(echoRoot(), { maxBodySize = 1000 })
    local c = W.raw(server, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ = 1, 3 do
      c.transport:write("190\r\n" .. ("b"):rep(400) .. "\r\n")
    end
    runUntil(c.lost)
    local list = W.responses(c:text(), nil, true)
    assert.equals(413, list[1].status)
    assert.equals(0, rendered)
    -- At the limit: served.
    c = W.raw(server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
      .. ("b"):rep(1000))
    assert.equals("len 1000", W.waitResponses(c, 1)[1].body)
  end)

  it("refuses smuggling: Content-Length with Transfer-Encoding, two lengths",
    function()
      captureLog()
      local server = serve(echoRoot())
      assert.equals(400, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n").status)
      assert.equals(400, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef").status)
      assert.equals(400, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Length : 5\r\n\r\nabcde").status)
      assert.equals(0, rendered)
    end)

  -- A front end that ends a chunk's data at a bare LF reads "1\r\nA\n30"
  -- as a chunk of 0x30 bytes holding the GET; libhttp-parser alone took
  -- any two bytes for the CRLF and served the GET as a second request.
  it("refuses smuggling through chunked framing: the CRLF after a chunk, "
    .. "codings other than chunked", function()
      captureLog()
      local server = serve(echoRoot())
      local head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      assert.equals(400, refused(server, head .. "1\r\nA\n30\r\n\r\n"
        .. "GET /smuggled HTTP/1.1\r\nHost: a\r\nX: pppppp\r\n\r\n\r\n0\r\n\r\n").status)
      assert.equals(400, refused(server, head .. "5\r\nhelloXY0\r\n\r\n").status)
      assert.equals(400, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Transfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n").status)
      assert.equals(400, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "1\r\na\r\n0\r\n\r\n").status)
      assert.equals(0, rendered)
    end)

  it("answers a target that is not a path, a URL or OPTIONS's * with 400", function()
    captureLog()
    local server = serve(echoRoot())
    for _, target in ipairs({ "*hello.txt", "*", "hello", "%2F" }) do
      assert.equals(400, refused(server, "GET " .. target .. " HTTP/1.1\r\nHost: x\r\n\r\n").status)
    end
    assert.equals(0, rendered)
    local c = W.raw(server, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2)
    assert.not_equals(400, list[1].status)
    assert.equals(200, list[2].status)
  end)

  it("answers an unknown Expect with 417 and an HTTP/2 preface with 400",
    function()
      captureLog()
      local server = serve(echoRoot())
      assert.equals(417, refused(server, "POST / HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Length: 1\r\nExpect: teapot\r\n\r\n").status)
      assert.equals(400, refused(server, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status)
    end)

  it("closes a slowloris head after headerTimeout with 408", function()
    local events = captureLog()
    local server = serve(echoRoot(), { headerTimeout = 0.3 })
    local c = W.raw(server, "GET / HTTP/1.1\r\n")
    local t0 = os.clock()
    local dripping = true
    local function drip()
      if dripping and c.transport.connected then
        c.transport:write("X-A: b\r\n")
        require("loom.reactor").callLater(0.05, drip)
      end
    end
    drip()
    runUntil(c.lost, 5)
    dripping = false
    assert.is_true(os.clock() - t0 < 3)
    local list = W.responses(c:text(), nil, true)
    assert.equals(408, list[1].status)
    assert.matches("headerTimeout", table.concat(events, "\n"))
  end)

  it("closes a connection idle between requests after idleTimeout", function()
    local server = serve(echoRoot(), { idleTimeout = 0.2 })
    local c = W.raw(server)
    runUntil(c.lost, 3)
    assert.equals("", c:text())
    c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    runUntil(c.lost, 3)
    assert.equals(1, #W.responses(c:text(), nil, true))
  end)

  it("closes a stalled body after idleTimeout with 408", function()
    captureLog()
    local server = serve(echoRoot(), { idleTimeout = 0.2 })
    local c = W.raw(server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    runUntil(c.lost, 3)
    assert.equals(408, W.responses(c:text(), nil, true)[1].status)
  end)

  it("does not time out a body that keeps arriving slowly", function()
    local server = serve(echoRoot(), { idleTimeout = 0.3 })
    local c = W.raw(server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
    for _ = 1, 8 do
      sleep(0.1)
      c.transport:write("b")
    end
    assert.equals("len 8", W.waitResponses(c, 1)[1].body)
  end)

  it("holds at most about maxPipelineBuffer of pipelined requests", function()
    local server = serve(W.leaf({
      render_GET = function() return require("loom.web").NOT_DONE_YET end,
    }), { maxPipelineBuffer = 4096 })
    local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local chunk = ("GET / HTTP/1.1\r\nHost: x\r\n\r\n"):rep(200)
    for _ = 1, 200 do c.transport:write(chunk) end -- about 5 MB
    sleep(0.3)
    local ch = server.channels[1]
    assert.is_false(ch.reading)
    assert.is_true(#ch.buffer < 4096 + 256 * 1024, "buffered " .. #ch.buffer)
  end)

  it("stops answering a client that does not read (backpressure)", function()
    local big = ("z"):rep(128 * 1024)
    local served = 0
    local server = serve(W.leaf({
      render_GET = function() served = served + 1; return big end,
    }))
    local c = W.raw(server)
    c.transport:pauseProducing()
    local reqs = ("GET / HTTP/1.1\r\nHost: x\r\n\r\n"):rep(200)
    c.transport:write(reqs)
    waitFor(function() return served > 0 end)
    sleep(0.3)
    local ch = server.channels[1]
    local queued = ch.transport:bufferedBytes()
    assert.is_true(queued < 2 * 1024 * 1024, "queued " .. queued)
    -- What the kernel's socket buffers took was answered; the rest waits.
    assert.is_true(served < 200, "served " .. served)
    assert.is_false(ch.reading)
    assert.is_true(ch.transport.connected)
    -- Reading again, the client gets every answer.
    c.transport:resumeProducing()
    waitFor(function() return served == 200 end, 20)
    waitFor(function()
      c.received = { c:text() } -- joined once per poll, not per check
      return #c.received[1] >= 200 * #big
    end, 20)
    assert.equals(200, #W.responses(c:text()))
  end)

  it("survives random garbage without a crash", function()
    captureLog()
    local server = serve(echoRoot())
    math.randomseed(42)
    for _ = 1, 20 do
      local bytes = {}
      for i = 1, math.random(1, 400) do bytes[i] = string.char(math.random(0, 255)) end
      local c = W.raw(server, table.concat(bytes))
      runUntil(c.lost, 5)
    end
    local c = W.raw(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equals("ok", W.waitResponses(c, 1)[1].body)
  end)

  it("refuses bad limit options with a clear error", function()
    assert.has_error(function() web.Site(echoRoot(), { maxBodySize = -1 }) end,
      "Site: maxBodySize must be a positive number, got -1")
    assert.has_error(function() web.Site(echoRoot(), { maxHeaders = 1.5 }) end,
      "Site: maxHeaders must be an integer, got 1.5")
    assert.has_error(function() web.Site({}) end, "Site: the root must be a Resource")
    assert.has_error(function() web.Site(echoRoot(), { maxBody = 1 }) end,
      "Site: unknown option maxBody")
  end)
end)
