-- core.httpParser (bindings/http.c over libhttp-parser): the interface of
-- docs/web.md's "The HTTP parser" that loom.web's server and client use.
-- Skipped without the core (the pure-Lua run of spec/run.sh).

local okCore, core = pcall(require, "loom.core")
if not okCore then return end

-- A handler that records what the parser reports, in order.
local function recorder(skipBody)
  local r = { messages = {}, events = {} }
  function r:onHeaders(info)
    self.current = { info = info, body = {} }
    self.events[#self.events + 1] = "headers"
    return skipBody
  end
  function r:onBody(chunk)
    self.current.body[#self.current.body + 1] = chunk
    self.events[#self.events + 1] = "body"
  end
  function r:onMessageComplete()
    self.current.body = table.concat(self.current.body)
    self.messages[#self.messages + 1] = self.current
    self.events[#self.events + 1] = "complete"
  end
  return r
end

local function parse(kind, data, limits)
  local r = recorder()
  local p = core.httpParser(kind, r, limits)
  local n, errname, msg = p:execute(data)
  return r, n, errname, msg, p
end

-- Feeds data one byte per execute, as the slowest peer would.
local function trickle(p, data)
  for i = 1, #data do
    local n, errname, msg = p:execute(data:sub(i, i))
    if not n then return nil, errname, msg end
  end
  return #data
end

describe("core.httpParser requests", function()
  it("reports method, url, version, headers in order, body", function()
    local req = "POST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-Two: a\r\n" ..
      "x-two: b\r\nContent-Length: 5\r\n\r\nhello"
    local r, n = parse("request", req)
    assert.equals(#req, n)
    local m = r.messages[1]
    assert.equals("POST", m.info.method)
    assert.equals("/a/b?x=1&y=%20", m.info.url)
    assert.equals(1, m.info.versionMajor)
    assert.equals(1, m.info.versionMinor)
    assert.is_true(m.info.keepAlive)
    assert.is_false(m.info.upgrade)
    assert.is_false(m.info.chunked)
    assert.equals(5, m.info.contentLength)
    assert.same({ { "Host", "h" }, { "X-Two", "a" }, { "x-two", "b" },
      { "Content-Length", "5" } }, m.info.headers)
    assert.equals("hello", m.body)
    assert.is_nil(m.info.status)
  end)

  it("gives the same result one byte at a time", function()
    local req = "GET /long/path/here?q=1 HTTP/1.1\r\nHost: example\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    local r = recorder()
    local p = core.httpParser("request", r)
    assert.equals(#req, trickle(p, req))
    local m = r.messages[1]
    assert.equals("/long/path/here?q=1", m.info.url)
    assert.same({ { "Host", "example" }, { "Transfer-Encoding", "chunked" } },
      m.info.headers)
    assert.is_true(m.info.chunked)
    assert.is_nil(m.info.contentLength)
    assert.equals("abcde", m.body)
  end)

  it("knows HTTP/1.0 and Connection headers for keepAlive", function()
    local r = parse("request", "GET / HTTP/1.0\r\n\r\n")
    assert.is_false(r.messages[1].info.keepAlive)
    assert.equals(0, r.messages[1].info.versionMinor)
    r = parse("request", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert.is_true(r.messages[1].info.keepAlive)
    r = parse("request", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert.is_false(r.messages[1].info.keepAlive)
  end)

  it("keeps an empty value; drops a value's surrounding whitespace",
    function()
      local r = parse("request",
        "GET / HTTP/1.1\r\nX-Empty:\r\nA:  b c \t \r\n\r\n")
      assert.same({ { "X-Empty", "" }, { "A", "b c" } },
        r.messages[1].info.headers)
  end)

  it("parses pipelined messages in one execute", function()
    local one = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
    local two = "POST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
    local r, n = parse("request", one .. two .. one)
    assert.equals(#one * 2 + #two, n)
    assert.equals(3, #r.messages)
    assert.equals("/1", r.messages[1].info.url)
    assert.equals("/2", r.messages[2].info.url)
    assert.equals("ok", r.messages[2].body)
    assert.equals("", r.messages[3].body)
  end)

  it("pause stops after the current message; resume continues", function()
    local one = "GET /1 HTTP/1.1\r\n\r\n"
    local two = "GET /2 HTTP/1.1\r\n\r\n"
    local r = recorder()
    local p = core.httpParser("request", r)
    function r:onHeaders(info) p:pause(); self.current = { info = info, body = {} } end
    local n = p:execute(one .. two)
    assert.equals(#one, n)
    assert.equals(1, #r.messages)
    -- Paused: nothing more is taken until resume.
    assert.equals(0, p:execute(two))
    p:resume()
    r.onHeaders = recorder().onHeaders
    assert.equals(#two, p:execute(two))
    assert.equals("/2", r.messages[2].info.url)
  end)

  it("executes from a position, so the caller need not copy the rest",
    function()
      local one = "GET /1 HTTP/1.1\r\n\r\n"
      local data = one .. one .. one
      local r = recorder()
      local p = core.httpParser("request", r)
      function r:onHeaders(info) p:pause(); self.current = { info = info, body = {} } end
      local pos = 1
      for i = 1, 3 do
        local n = p:execute(data, pos)
        assert.equals(#one, n)
        pos = pos + n
        assert.equals(i, #r.messages)
        p:resume()
      end
      assert.equals(0, p:execute(data, #data + 1))
      assert.has_error(function() p:execute(data, 0) end)
      assert.has_error(function() p:execute(data, #data + 2) end)
    end)

  it("reset readies the parser for a new message", function()
    local r = recorder()
    local p = core.httpParser("request", r)
    assert.equals(5, p:execute("GET /"))
    p:reset()
    local req = "PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    assert.equals(#req, p:execute(req))
    assert.equals("PUT", r.messages[1].info.method)
    assert.equals("/x", r.messages[1].info.url)
  end)

  it("reports an upgrade and stops after its head", function()
    local req = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n" ..
      "Connection: Upgrade\r\n\r\n"
    local r, n = parse("request", req .. "\1\2\3")
    assert.equals(#req, n)
    assert.is_true(r.messages[1].info.upgrade)
  end)

  it("finish before a complete message is 'incomplete'", function()
    local r = recorder()
    local p = core.httpParser("request", r)
    p:execute("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    local ok, errname, msg = p:finish()
    assert.is_nil(ok)
    assert.equals("incomplete", errname)
    assert.matches("stream ended", msg)
    assert.is_true(core.httpParser("request", recorder()):finish())
  end)

  it("calls nothing absent from the handler", function()
    local p = core.httpParser("request", {})
    local req = "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
    assert.equals(#req, p:execute(req))
  end)

  it("rejects a bad kind, handler or limit", function()
    assert.has_error(function() core.httpParser("both", {}) end)
    assert.has_error(function() core.httpParser("request") end)
    assert.has_error(function()
      core.httpParser("request", {}, { maxHeaders = -1 })
    end, "limits.maxHeaders must be a positive integer")
    assert.has_error(function()
      core.httpParser("request", {}, { maxUrl = "big" })
    end, "limits.maxUrl must be a positive integer")
  end)
end)

describe("core.httpParser hostile requests", function()
  local function rejects(data, errname, limits)
    local r, n, e, msg, p = parse("request", data, limits)
    assert.is_nil(n)
    assert.equals(errname, e)
    assert.is_string(msg)
    assert.is_nil(msg:find("\n"))
    -- After an error the parser refuses further input.
    local n2, e2 = p:execute("GET / HTTP/1.1\r\n\r\n")
    assert.is_nil(n2)
    assert.equals(errname, e2)
    assert.is_nil(p:finish())
    return r, msg
  end

  it("rejects a bad method and garbage", function()
    rejects("BREW /pot HTTP/1.1\r\n\r\n", "invalid")
    rejects("\0\1\2\3garbage\r\n\r\n", "invalid")
    rejects("GET / HTTP/9.9x\r\n\r\n", "invalid")
    rejects("GET /a b c HTTP/1.1\r\n\r\n", "invalid")
    rejects("GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n", "invalid")
    rejects("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", "invalid")
    rejects("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "invalid")
    rejects("GET / HTTP/1.1\r\n: novalue\r\n\r\n", "invalid")
  end)

  it("bounds the header section", function()
    local big = "GET / HTTP/1.1\r\nX: " .. ("a"):rep(20000) .. "\r\n\r\n"
    local _, msg = rejects(big, "headerTooLarge")
    assert.matches("16384", msg)
    rejects("GET / HTTP/1.1\r\nX: " .. ("a"):rep(600) .. "\r\n\r\n",
      "headerTooLarge", { maxHeaderSize = 512 })
    -- Many small fields count too, not just the kept bytes.
    local many = { "GET / HTTP/1.1\r\n" }
    for i = 1, 90 do many[#many + 1] = "a" .. i .. ":\r\n" end
    rejects(table.concat(many) .. "\r\n", "headerTooLarge",
      { maxHeaderSize = 512 })
    -- A head just under the limit passes.
    local r = parse("request", "GET / HTTP/1.1\r\nX: " .. ("a"):rep(400) ..
      "\r\n\r\n", { maxHeaderSize = 512 })
    assert.equals(1, #r.messages)
  end)

  it("bounds the header section one byte at a time (slowloris)", function()
    local p = core.httpParser("request", recorder(), { maxHeaderSize = 1024 })
    local n, errname = trickle(p, "GET / HTTP/1.1\r\nX-Slow: " ..
      ("z"):rep(2000))
    assert.is_nil(n)
    assert.equals("headerTooLarge", errname)
  end)

  it("bounds the library's own count of whitespace and padding", function()
    -- Bytes that no callback keeps (padding before a value) still end at
    -- libhttp-parser's own 80 KiB limit.
    rejects("GET / HTTP/1.1\r\nX:" .. (" "):rep(100 * 1024) .. "v\r\n\r\n",
      "headerTooLarge")
  end)

  it("bounds the number of header fields", function()
    local many = { "GET / HTTP/1.1\r\n" }
    for i = 1, 101 do many[#many + 1] = "h" .. i .. ": v\r\n" end
    local _, msg = rejects(table.concat(many) .. "\r\n", "tooManyHeaders")
    assert.matches("100", msg)
    many = { "GET / HTTP/1.1\r\n" }
    for i = 1, 11 do many[#many + 1] = "h" .. i .. ": v\r\n" end
    rejects(table.concat(many) .. "\r\n", "tooManyHeaders",
      { maxHeaders = 10 })
    local r = parse("request", table.concat(many, "", 1, 11) .. "\r\n",
      { maxHeaders = 10 })
    assert.equals(10, #r.messages[1].info.headers)
  end)

  it("bounds the URI", function()
    rejects("GET /" .. ("u"):rep(9000) .. " HTTP/1.1\r\n\r\n", "uriTooLong")
    rejects("GET /" .. ("u"):rep(100) .. " HTTP/1.1\r\n\r\n", "uriTooLong",
      { maxUrl = 64 })
    local p = core.httpParser("request", recorder(), { maxUrl = 64 })
    local n, errname = trickle(p, "GET /" .. ("u"):rep(100))
    assert.is_nil(n)
    assert.equals("uriTooLong", errname)
  end)

  it("rejects a tab or another control byte in the target", function()
    for _, c in ipairs({ "\t", "\f", "\1", "\127" }) do
      local _, msg = rejects("GET /a" .. c .. "b HTTP/1.1\r\nHost: h\r\n\r\n", "invalid")
      if c == "\t" or c == "\f" then -- (the others the library refuses first)
        assert.equals("a control byte in the request target", msg)
      end
    end
  end)

  it("rejects bad chunk sizes", function()
    local head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    rejects(head .. "zz\r\nabc\r\n0\r\n\r\n", "invalid")
    rejects(head .. "-1\r\nabc\r\n0\r\n\r\n", "invalid")
    rejects(head .. "ffffffffffffffffff\r\n", "invalid")
    rejects(head .. "3\r\nabcXX\r\n", "invalid")
    local _, msg = rejects(head .. "ffffffffffffffffff\r\n", "invalid")
    assert.matches("^chunk size too large", msg)
  end)

  -- libhttp-parser alone takes any two bytes for the CRLF after a chunk's
  -- data: "helloXX" would be a chunk, and a proxy in front could read the
  -- bytes as another message (Twisted: "Chunk did not end with CRLF").
  it("requires the CRLF after a chunk's data, however the bytes arrive",
    function()
      local head = "POST / HTTP/1.1\r\nHost: h\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n"
      for _, bad in ipairs({ "5\r\nhelloXX0\r\n\r\n", "5\r\nhello\nX0\r\n\r\n",
        "5\r\nhello\r0\r\n\r\n", "2\r\nab\n\n0\r\n\r\n" }) do
        local _, msg = rejects(head .. bad, "invalid")
        assert.equals("chunk data not followed by CRLF", msg)
        -- split at every byte: the CRLF may come in the next read
        for cut = #head + 1, #head + #bad - 1 do
          local whole = head .. bad
          local p = core.httpParser("request", recorder())
          local n1 = p:execute(whole:sub(1, cut))
          local n2 = p:execute(whole:sub(cut + 1))
          assert.is_true(n1 == nil or n2 == nil, "cut at " .. cut)
        end
        local p = core.httpParser("request", recorder())
        local n, e = trickle(p, head .. bad)
        assert.is_nil(n)
        assert.equals("invalid", e)
      end
      local _, n, e = parse("response", "HTTP/1.1 200 OK\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n")
      assert.is_nil(n)
      assert.equals("invalid", e)
      -- and a good body split at every byte still parses
      local good = head .. "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"
      for cut = 1, #good - 1 do
        local r = recorder()
        local p = core.httpParser("request", r)
        assert.is_number(p:execute(good:sub(1, cut)))
        assert.is_number(p:execute(good:sub(cut + 1)))
        assert.equals("hello!", r.messages[1].body)
      end
    end)

  -- The rest of the chunked framing libhttp-parser is lax about: what
  -- follows a size, control bytes in an extension, the LF of a size line,
  -- trailer lines (the "funky chunks" kinds of smuggling).
  it("checks a chunked body's framing: sizes, extensions, trailers", function()
    local head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    local cases = {
      { "5 garbage\r\nhello\r\n0\r\n\r\n", "a chunk size followed by other than ; or CRLF" },
      { "5;a\nb\r\nhello\r\n0\r\n\r\n", "a control byte (bare LF, NUL) in a chunk extension" },
      { "5;\0\r\nhello\r\n0\r\n\r\n", "a control byte (bare LF, NUL) in a chunk extension" },
      { "5\rXhello\r\n0\r\n\r\n", "a chunk size line not ended by CRLF" },
      { "5\r\nhello\r\n0\r\nT: v\nX: y\r\n\r\n", "a bare LF in a chunked body's trailer" },
      { "5\r\nhello\r\n0\r\n\rX", "a trailer line not ended by CRLF" },
    }
    for _, case in ipairs(cases) do
      local _, msg = rejects(head .. case[1], "invalid")
      assert.equals(case[2], msg, case[1])
      local p = core.httpParser("request", recorder()) -- a byte at a time
      local n, e, m = trickle(p, head .. case[1])
      assert.is_nil(n, case[1])
      assert.equals("invalid", e)
      assert.is_string(m)
    end
    -- what RFC 9112 allows: extensions (quoted too), white space before
    -- ";", hex in either case, trailers; then a second chunked message
    local good = head .. "5 ;name=value;q=\"a b\"\r\nhello\r\nA\r\n0123456789\r\n"
      .. "0;last\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n"
    local two = good .. head .. "a\r\nabcdefghij\r\n0\r\n\r\n"
    local r, n = parse("request", two)
    assert.equals(#two, n)
    assert.equals("hello0123456789", r.messages[1].body)
    assert.equals("abcdefghij", r.messages[2].body)
    for cut = 1, #two - 1 do
      local rr = recorder()
      local p = core.httpParser("request", rr)
      assert.is_number(p:execute(two:sub(1, cut)), cut)
      assert.is_number(p:execute(two:sub(cut + 1)), cut)
      assert.equals(2, #rr.messages, cut)
      assert.equals("abcdefghij", rr.messages[2].body)
    end
  end)

  -- One onBody a read, not one a chunk: a body of one-byte chunks would
  -- otherwise be a Lua call and a string a byte.
  it("gives a read's chunks to onBody joined", function()
    local head = "POST / HTTP/1.1\r\nHost: h\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n"
    local chunks = {}
    for i = 1, 3000 do
      chunks[i] = "1\r\n" .. string.char(97 + i % 26) .. "\r\n"
    end
    local body = table.concat(chunks):gsub("1\r\n(.)\r\n", "%1")
    local data = head .. table.concat(chunks)
    local r = recorder()
    local p = core.httpParser("request", r)
    assert.equals(#data, p:execute(data))
    assert.same({ "headers", "body" }, r.events)
    assert.equals(body, r.current.body[1])
    -- the next read's chunks, and the end: one more onBody, then complete
    assert.is_number(p:execute(table.concat(chunks, "", 1, 500) .. "0\r\n\r\n"))
    assert.same({ "headers", "body", "body", "complete" }, r.events)
    assert.equals(body .. body:sub(1, 500), r.messages[1].body)
  end)

  it("stops at a raising onBody, with its error", function()
    local r = recorder()
    function r.onBody() error("no body wanted") end
    local p = core.httpParser("request", r)
    local n, e, msg = p:execute("POST / HTTP/1.1\r\nHost: h\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n")
    assert.is_nil(n)
    assert.equals("handler", e)
    assert.matches("no body wanted", msg)
    assert.is_nil(p:execute("0\r\n\r\n"))
  end)

  it("rejects a bad or overflowing Content-Length", function()
    rejects("POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", "invalid")
    rejects("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "invalid")
    rejects("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "invalid")
  end)

  it("rejects request smuggling: CL with TE, two CLs, TE not chunked",
    function()
      rejects("POST / HTTP/1.1\r\nContent-Length: 4\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "invalid")
      rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" ..
        "Content-Length: 4\r\n\r\n0\r\n\r\n", "invalid")
      rejects("POST / HTTP/1.1\r\nContent-Length: 4\r\n" ..
        "Content-Length: 5\r\n\r\nabcde", "invalid")
      rejects("POST / HTTP/1.1\r\nContent-Length: 4\r\n" ..
        "Content-Length: 4\r\n\r\nabcd", "invalid")
      rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n" ..
        "\r\n0\r\n\r\n", "invalid")
      -- A name with a space is not a token: libhttp-parser alone would
      -- take "Content-Length : 4" as the length.
      local _, msg = rejects("POST / HTTP/1.1\r\nContent-Length : 4\r\n" ..
        "\r\nabcd", "invalid")
      assert.equals("invalid character in the name of header field 1", msg)
      rejects("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n" ..
        "Content-Length: 4\r\n\r\nabcd", "invalid")
    end)

  -- libhttp-parser alone de-chunks "gzip, chunked" (handing up gzip bytes)
  -- and takes two chunked fields as one; twisted.web answers 400 to both.
  it("takes Transfer-Encoding: chunked alone, once", function()
    local body = "\r\n\r\n1\r\na\r\n0\r\n\r\n"
    for _, te in ipairs({ "gzip, chunked", "identity, chunked", "chunked, chunked",
      "x-custom" }) do
      local _, msg = rejects("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
        .. te .. body, "invalid")
      if te ~= "chunked, chunked" then -- (the library's own refusal)
        assert.equals("Transfer-Encoding other than chunked (unsupported)", msg)
      end
    end
    local _, msg = rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" ..
      "transfer-encoding: chunked" .. body, "invalid")
    assert.equals("more than one Transfer-Encoding field", msg)
    local r, n = parse("request", "POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked "
      .. body)
    assert.is_number(n)
    assert.equals("a", r.messages[1].body)
    local _, n2, e2 = parse("response", "HTTP/1.1 200 OK\r\n" ..
      "Transfer-Encoding: gzip, chunked" .. body)
    assert.is_nil(n2)
    assert.equals("invalid", e2)
  end)

  it("takes a header name of RFC 9110's token characters only", function()
    local tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
      .. "abcdefghijklmnopqrstuvwxyz"
    local r, n = parse("request", "GET / HTTP/1.1\r\nX" .. tchar .. ": v\r\n\r\n")
    assert.is_number(n)
    assert.equals("X" .. tchar, r.messages[1].info.headers[1][1])
    -- every other byte but the ones the library itself refuses
    for c = 1, 255 do
      local ch = string.char(c)
      if not tchar:find(ch, 1, true) and ch ~= ":" and ch ~= "\r" and ch ~= "\n" then
        local _, n2, e = parse("request", "GET / HTTP/1.1\r\nA" .. ch .. "B: v\r\n\r\n")
        assert.is_nil(n2, string.format("byte %d", c))
        assert.equals("invalid", e)
      end
    end
  end)

  it("reports a raising handler as 'handler' with its traceback", function()
    local p = core.httpParser("request", {
      onHeaders = function() error("boom in handler") end,
    })
    local n, errname, msg = p:execute("GET / HTTP/1.1\r\n\r\n")
    assert.is_nil(n)
    assert.equals("handler", errname)
    assert.matches("onHeaders: .*boom in handler", msg)
    assert.matches("stack traceback", msg)
    assert.is_nil(p:execute("GET / HTTP/1.1\r\n\r\n"))
  end)

  it("refuses execute from inside its own handler", function()
    local p
    p = core.httpParser("request", {
      onHeaders = function() p:execute("x") end,
    })
    local n, errname, msg = p:execute("GET / HTTP/1.1\r\n\r\n")
    assert.is_nil(n)
    assert.equals("handler", errname)
    assert.matches("in use", msg)
  end)

  it("survives mutations of valid messages, fed in random pieces", function()
    math.randomseed(4321)
    local seeds = {
      "POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
      "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\nabc",
      "HTTP/1.0 404 Nope\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    }
    for round = 1, 2000 do
      local seed = seeds[round % #seeds + 1]
      local bytes = { seed:byte(1, -1) }
      for _ = 1, math.random(1, 4) do
        local i = math.random(1, #bytes)
        local op = math.random(3)
        if op == 1 then bytes[i] = math.random(0, 255)
        elseif op == 2 then table.remove(bytes, i)
        else table.insert(bytes, i, math.random(0, 255)) end
      end
      local data = string.char(table.unpack(bytes))
      local p = core.httpParser(seed:sub(1, 4) == "HTTP" and "response" or "request",
        recorder(), { maxHeaderSize = 128, maxHeaders = 3, maxUrl = 16 })
      local pos = 1
      while pos <= #data do
        local piece = math.random(1, 20)
        local n = p:execute(data:sub(pos, pos + piece - 1))
        if n == nil then break end
        assert.is_true(n >= 0 and n <= piece)
        pos = pos + piece
      end
      p:finish()
    end
  end)

  it("survives random input without raising", function()
    math.randomseed(1234)
    for _ = 1, 300 do
      local bytes = {}
      for i = 1, math.random(1, 200) do bytes[i] = string.char(math.random(0, 255)) end
      local p = core.httpParser(math.random() < 0.5 and "request" or "response",
        recorder(), { maxHeaderSize = 256, maxHeaders = 4, maxUrl = 32 })
      local data = table.concat(bytes)
      local n = p:execute(data)
      assert.is_true(n == nil or (n >= 0 and n <= #data))
      p:finish()
    end
  end)
end)

describe("core.httpParser responses", function()
  it("reports status, phrase, headers, body", function()
    local resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n" ..
      "Content-Type: text/plain\r\n\r\nnah"
    local r, n = parse("response", resp)
    assert.equals(#resp, n)
    local m = r.messages[1]
    assert.equals(404, m.info.status)
    assert.equals("Not Found", m.info.phrase)
    assert.is_nil(m.info.method)
    assert.is_nil(m.info.url)
    assert.equals(3, m.info.contentLength)
    assert.equals("nah", m.body)
  end)

  it("completes a body delimited by close on finish", function()
    local r = recorder()
    local p = core.httpParser("response", r)
    p:execute("HTTP/1.0 200 OK\r\n\r\nsome ")
    p:execute("body")
    assert.equals(0, #r.messages)
    assert.is_true(p:finish())
    assert.equals("some body", r.messages[1].body)
    assert.is_false(r.messages[1].info.keepAlive)
  end)

  it("skips the body when onHeaders says so (a HEAD's response)", function()
    local r = recorder(true)
    local p = core.httpParser("response", r)
    local resp = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    local nextResp = "HTTP/1.1 204 No Content\r\n\r\n"
    assert.equals(#resp + #nextResp, p:execute(resp .. nextResp))
    assert.equals(2, #r.messages)
    assert.equals("", r.messages[1].body)
    assert.equals(1000, r.messages[1].info.contentLength)
    assert.equals(204, r.messages[2].info.status)
  end)

  it("de-chunks a chunked response, with trailers", function()
    local resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    local r, n = parse("response", resp)
    assert.equals(#resp, n)
    assert.equals("Wikipedia", r.messages[1].body)
    assert.is_true(r.messages[1].info.chunked)
  end)

  it("rejects a bad status line and a bad chunk", function()
    local _, n, errname = parse("response", "HTTP/1.1 2x0 OK\r\n\r\n")
    assert.is_nil(n)
    assert.equals("invalid", errname)
    _, n, errname = parse("response", "HTTP/1.1 200 OK\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\nq\r\n")
    assert.is_nil(n)
    assert.equals("invalid", errname)
  end)

  -- The reason phrase is part of the head (maxHeaderSize), not a URI.
  it("bounds a long reason phrase as the head", function()
    local _, n, errname, msg = parse("response", "HTTP/1.1 200 " ..
      ("y"):rep(3000) .. "\r\n\r\n", { maxHeaderSize = 1024, maxUrl = 8192 })
    assert.is_nil(n)
    assert.equals("headerTooLarge", errname)
    assert.matches("limit 1024", msg)
    local r
    r, n = parse("response", "HTTP/1.1 200 " .. ("y"):rep(3000) ..
      "\r\nContent-Length: 0\r\n\r\n", { maxUrl = 64 })
    assert.is_number(n)
    assert.equals(("y"):rep(3000), r.messages[1].info.phrase)
  end)

  it("bounds a response's header section too", function()
    local _, n, errname = parse("response", "HTTP/1.1 200 OK\r\nX: " ..
      ("y"):rep(2000) .. "\r\n\r\n", { maxHeaderSize = 1024 })
    assert.is_nil(n)
    assert.equals("headerTooLarge", errname)
  end)
end)
