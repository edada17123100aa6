-- The HTTP server's two lanes give the same answers: the fast lane in C
-- (bindings/http_server.c: requests without a body, plain string results)
-- and the Lua path (lua/loom/web/server.lua and server_request.lua), which
-- a Site whose requestFactory has an init of its own always takes. The
-- same requests go to two Sites over raw sockets, pipelined and one by
-- one; the answers must be the same bytes (but for the Date line), and
-- what the resources saw of each request the same fields.
local defer = require "loom.defer"
local web = require "loom.web"
local server = require "loom.web.server"

local W = dofile("spec/support/web_server.lua")

-- A value as text, tables with their keys sorted (what the resource saw).
local function dump(v, seen)
  if type(v) ~= "table" then
    return type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  seen = seen or {}
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = tostring(k) .. "=" .. dump(v[k], seen)
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ",") .. "}"
end

-- What a resource may look at: every field the Request documents.
local function requestFields(request)
  return dump({
    method = request.method, uri = request.uri, path = request.path,
    clientproto = request.clientproto, args = request.args,
    headers = request.headers, rawHeaders = request.rawHeaders,
    prepath = request.prepath, postpath = request.postpath,
    content = request:getContent(), code = request.code,
    startedWriting = request.startedWriting, finished = request.finished,
    sentLength = request.sentLength, secure = request:isSecure(),
    host = request:getHeader("Host"),
  })
end

local function tree(seen)
  local function leaf(render)
    return W.leaf({ render_GET = render, render_HEAD = render,
      render_POST = render, render_DELETE = render })
  end
  local root = web.Resource()
  local dumpLeaf = leaf(function(_, request)
    local text = requestFields(request)
    seen[#seen + 1] = text
    return text
  end)
  root:putChild("", dumpLeaf)
  root:putChild("dump", dumpLeaf)
  local nested = web.Resource()
  root:putChild("nested", nested)
  nested:putChild("deeper", dumpLeaf)
  root:putChild("headers", leaf(function(_, request)
    request:setHeader("X-One", "1")
    request:setHeader("X-Two", "2")
    request:setHeader("x-one", "uno") -- same field: keeps its place
    request:setHeader("X-Gone", "3")
    request:removeResponseHeader("X-Gone")
    request:setHeader("Content-Type", "application/json")
    return dump({ one = request:getResponseHeader("X-ONE"),
      two = request:getResponseHeader("x-two"),
      gone = request:getResponseHeader("X-Gone") or "nil" })
  end))
  root:putChild("created", leaf(function(_, request)
    request:setResponseCode(201)
    return "made"
  end))
  root:putChild("phrase", leaf(function(_, request)
    request:setResponseCode(202, "Fine Then")
    return "ok"
  end))
  root:putChild("nocontent", leaf(function(_, request)
    request:setResponseCode(204)
    return ""
  end))
  root:putChild("cookie", leaf(function(_, request)
    request:addCookie("k", "v", { path = "/", httpOnly = true })
    return "c"
  end))
  root:putChild("length", leaf(function(_, request)
    request:setHeader("Content-Length", "5")
    return "fived"
  end))
  root:putChild("redirect", leaf(function(_, request)
    request:redirect("/dump")
    return ""
  end))
  root:putChild("empty", leaf(function() return "" end))
  root:putChild("notdone", leaf(function(_, request)
    request:write("part one, ")
    request:write("part two")
    request:finish()
    return web.NOT_DONE_YET
  end))
  root:putChild("deferred", leaf(function()
    return defer.succeed("from a deferred")
  end))
  root:putChild("raises", leaf(function()
    error("this render fails")
  end))
  root:putChild("big", leaf(function()
    return string.rep("0123456789", 7000) -- past the 64 KiB held at once
  end))
  return root
end

local HOST = "Host: 127.0.0.1\r\n"
local REQUESTS = {
  "GET / HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /dump?a=1&b=%41+x&a=2&flag HTTP/1.1\r\n" .. HOST
    .. "X-Dup: 1\r\nx-dup: 2  \r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
  "GET /nested/deeper/seg%2Fment/x%20y/ HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /dump?only=query HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /dump HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "HEAD /dump HTTP/1.1\r\n" .. HOST .. "\r\n",
  "DELETE /dump HTTP/1.1\r\n" .. HOST .. "Content-Length: 0\r\n\r\n",
  "POST /dump HTTP/1.1\r\n" .. HOST .. "Content-Length: 7\r\n\r\nx=1&y=2",
  "GET /missing/child HTTP/1.1\r\n" .. HOST .. "\r\n",
  "PUT /dump HTTP/1.1\r\n" .. HOST .. "Content-Length: 0\r\n\r\n",
  "GET /headers HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /created HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /phrase HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /nocontent HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /cookie HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /length HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /redirect HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /empty HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /notdone HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /deferred HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /raises HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /big HTTP/1.1\r\n" .. HOST .. "\r\n",
  "GET /dump HTTP/1.1\r\n" .. HOST .. "Expect: 100-continue\r\n\r\n",
  "GET http://127.0.0.1/dump?abs=1 HTTP/1.1\r\n" .. HOST .. "\r\n",
  -- a name longer than the fast lane's stack buffer, many fields
  "GET /dump HTTP/1.1\r\n" .. HOST .. ("X-" .. ("Long"):rep(60)) .. ": v\r\n\r\n",
  "GET /dump HTTP/1.1\r\n" .. HOST .. (function()
    local t = {}
    for i = 1, 60 do t[i] = "X-Field-" .. i .. ": value " .. i .. "\r\n" end
    return table.concat(t)
  end)() .. "\r\n",
}
-- (a batch ends with requests that close the connection)
local LAST_CLOSES = "GET /dump HTTP/1.1\r\n" .. HOST .. "Connection: close\r\n\r\n"
local LAST_CLOSES_10 = "GET /dump HTTP/1.0\r\n\r\n"
local HEADS = {}
for i, req in ipairs(REQUESTS) do
  HEADS[i] = req:find("^HEAD ") ~= nil
end

local function withoutDates(text)
  return (text:gsub("\r\nDate: [^\r]*", "\r\nDate: -"))
end

-- A Site whose requests take the Lua path: its factory's init is its own.
local LuaRequest = web.Request:extend({ __name = "LuaLaneRequest" })
function LuaRequest:init(channel, info)
  web.Request.init(self, channel, info)
end

local function serveBoth()
  local seenFast, seenLua = {}, {}
  local fast = W.serve(tree(seenFast), { accessLog = false }, finally)
  local slow = W.serve(tree(seenLua), { accessLog = false,
    requestFactory = LuaRequest }, finally)
  return fast, slow, seenFast, seenLua
end

-- Counts the reads the Lua path parsed during f: the calls of the parser's
-- execute (Channel:_feed's; the fast lane, in C, does not call it, and a
-- patched Channel method would make the fast lane step aside).
local function countingFeeds(f)
  local core = require "loom.core"
  local methods = getmetatable(core.httpParser("request", {})).__index
  local execute, n = methods.execute, 0
  methods.execute = function(p, data, pos)
    -- (a request parser's first execute of a read; the spec's own
    -- response parsers read "HTTP/1.1 ...")
    if (pos == nil or pos == 1) and data:find("^%u+ %S+ HTTP/%d") then
      n = n + 1
    end
    return execute(p, data, pos)
  end
  local ok, e = pcall(f)
  methods.execute = execute
  assert(ok, e)
  return n
end

describe("web.Site's fast lane and Lua path", function()
  it("answer pipelined requests with the same bytes", function()
    local fast, slow, seenFast, seenLua = serveBoth()
    for _, last in ipairs({ LAST_CLOSES, LAST_CLOSES_10 }) do
      local batch = table.concat(REQUESTS) .. last
      local a, listA = W.exchangeUntilClosed(fast, batch, 10, HEADS)
      local b = W.exchangeUntilClosed(slow, batch, 10, HEADS)
      assert.equals(#REQUESTS + 1, #listA)
      assert.equals(withoutDates(b), withoutDates(a))
    end
    assert.same(seenLua, seenFast)
    assert.is_true(#seenFast >= 9)
  end)

  it("answer requests sent one at a time with the same bytes", function()
    local fast, slow, seenFast, seenLua = serveBoth()
    local function oneByOne(srv)
      local c = W.raw(srv)
      for i, req in ipairs(REQUESTS) do
        c.transport:write(req)
        W.waitResponses(c, i, HEADS, 5)
      end
      return c:text()
    end
    local a, b
    local fastReads = countingFeeds(function() a = oneByOne(fast) end)
    local luaReads = countingFeeds(function() b = oneByOne(slow) end)
    assert.equals(withoutDates(b), withoutDates(a))
    assert.same(seenLua, seenFast)
    -- The Lua path parsed every read of the second Site, and of the first
    -- only those the fast lane hands over (a POST or a PUT, which it does
    -- not parse since they nearly always have a body, Expect, an
    -- absolute-form target); a DELETE with an empty body stays its own.
    assert.equals(#REQUESTS, luaReads)
    assert.equals(4, fastReads)
  end)

  it("keep the response's headers in order: set, replaced, removed", function()
    local fast = serveBoth()
    local _, list = W.exchangeUntilClosed(fast, "GET /headers HTTP/1.1\r\n"
      .. HOST .. "Connection: close\r\n\r\n", 5)
    local r = list[1]
    assert.equals('{gone="nil",one="uno",two="2"}', r.body)
    local names = {}
    for _, kv in ipairs(r.rawHeaders) do names[#names + 1] = kv[1] end
    assert.same({ "Content-Length", "x-one", "X-Two", "Content-Type", "Date",
      "Server", "Connection" }, names)
    assert.equals("uno", r.headers["x-one"])
    assert.is_nil(r.headers["x-gone"])
  end)

  it("refuse what onHeaders refuses with the same answer", function()
    local fast, slow = serveBoth()
    for _, bad in ipairs({
      "GET /dump HTTP/1.1\r\n" .. HOST .. HOST .. "\r\n",
      "GET /dump HTTP/1.1\r\nHost: a, b\r\n\r\n",
      "GET /dump HTTP/1.1\r\n\r\n",
      "GET /dump HTTP/1.1\r\n" .. HOST .. "Expect: something\r\n\r\n",
      "GET /dump HTTP/2.0\r\n" .. HOST .. "\r\n",
      "GET /dump HTTP/1.1\r\n" .. HOST .. "Bad Name: x\r\n\r\n",
    }) do
      local a, listA = W.exchangeUntilClosed(fast, bad, 5)
      local b = W.exchangeUntilClosed(slow, bad, 5)
      assert.equals(1, #listA)
      assert.is_true(listA[1].status >= 400, bad)
      assert.equals(withoutDates(b), withoutDates(a))
    end
  end)

  it("survive mutated requests, each lane answering what the other does",
    function()
      local fast, slow = serveBoth()
      -- Bytes flipped, dropped and doubled in valid requests (a fixed seed:
      -- the same cases every run), pipelined in batches on one connection
      -- per lane; each lane must answer the batch as the other does.
      local rand = 12345
      local function nextRand(n)
        rand = (rand * 1103515245 + 12345) % 2147483648
        return rand % n + 1
      end
      local seeds = { REQUESTS[1], REQUESTS[2], REQUESTS[3], REQUESTS[8],
        REQUESTS[9] }
      for _ = 1, 30 do
        local batch = {}
        for b = 1, 4 do
          local req = seeds[nextRand(#seeds)]
          for _ = 1, nextRand(3) do
            local at, op = nextRand(#req), nextRand(3)
            if op == 1 then
              req = req:sub(1, at - 1) .. string.char(nextRand(256) - 1) .. req:sub(at + 1)
            elseif op == 2 then
              req = req:sub(1, at - 1) .. req:sub(at + 1)
            else
              req = req:sub(1, at) .. req:sub(at)
            end
          end
          batch[b] = req
        end
        local text = table.concat(batch) .. LAST_CLOSES
        local a = W.exchangeUntilClosed(fast, text, 5)
        local b = W.exchangeUntilClosed(slow, text, 5)
        assert.equals(withoutDates(b), withoutDates(a))
      end
      -- and both still serve
      local _, list = W.exchangeUntilClosed(fast, LAST_CLOSES, 5)
      assert.equals(200, list[1].status)
    end)

  it("answers over a Unix socket as over TCP", function()
    local reactor = require "loom.reactor"
    local protocol = require "loom.protocol"
    local testing = require "loom.testing"
    local h = assert(io.popen("mktemp -d"))
    local dir = h:read("l")
    h:close()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local seen = {}
    local site = web.Site(tree(seen), { accessLog = false })
    local port = reactor.listenUNIX(dir .. "/web.sock", site)
    local c = W.net.Recorder:new()
    local cf = protocol.ClientFactory:new()
    function cf.buildProtocol() return c end
    reactor.connectUNIX(dir .. "/web.sock", cf)
    testing.runUntil(c.made, 5)
    c.transport:write(REQUESTS[2] .. "GET /headers HTTP/1.1\r\n" .. HOST
      .. "\r\n" .. LAST_CLOSES)
    testing.runUntil(c.lost, 5)
    local list = W.responses(c:text(), nil, true)
    assert.equals(3, #list)
    assert.matches('a={1="1",2="2"}', list[1].body, 1, true)
    assert.equals("uno", list[2].headers["x-one"])
    testing.runUntil(port:stopListening())
  end)

  it("steps aside for a channel or request class with methods of its own",
    function()
      local fast = serveBoth()
      local Channel = server.HTTPChannel
      local calls = { onHeaders = 0, process = 0 }
      -- A patched channel method (as a reload or a monkeypatch makes it).
      local onHeaders = Channel.onHeaders
      Channel.onHeaders = function(self, info)
        calls.onHeaders = calls.onHeaders + 1
        return onHeaders(self, info)
      end
      local ok, e = pcall(function()
        local _, list = W.exchangeUntilClosed(fast, "GET /dump HTTP/1.1\r\n"
          .. HOST .. "\r\n" .. LAST_CLOSES, 5)
        assert.equals(2, #list)
      end)
      Channel.onHeaders = onHeaders
      assert(ok, e)
      assert.equals(2, calls.onHeaders)
      -- A request class whose process is its own (Twisted's Request.process
      -- is a method a subclass may override).
      local Counting = web.Request:extend({ __name = "CountingRequest" })
      function Counting:process()
        calls.process = calls.process + 1
        return web.Request.process(self)
      end
      local seen = {}
      local counted = W.serve(tree(seen), { accessLog = false,
        requestFactory = Counting }, finally)
      local _, list = W.exchangeUntilClosed(counted, "GET /dump HTTP/1.1\r\n"
        .. HOST .. "\r\n" .. LAST_CLOSES, 5)
      assert.equals(2, #list)
      assert.equals(2, calls.process)
      -- and without them, the fast lane again: onHeaders is not called
      calls.onHeaders = 0
      Channel.onHeaders = function(self, info)
        calls.onHeaders = calls.onHeaders + 1
        return onHeaders(self, info)
      end
      Channel.onHeaders = onHeaders
      W.exchangeUntilClosed(fast, LAST_CLOSES, 5)
      assert.equals(0, calls.onHeaders)
    end)

  it("takes plain GETs without entering the Lua parser", function()
    local fast = serveBoth()
    local c = W.raw(fast)
    local reads = countingFeeds(function()
      for i = 1, 5 do
        c.transport:write("GET /dump?i=" .. i .. " HTTP/1.1\r\n" .. HOST .. "\r\n")
        W.waitResponses(c, i, nil, 5)
      end
    end)
    assert.equals(0, reads)
    local list = W.responses(c:text())
    assert.equals(5, #list)
    assert.matches('i={1="5"}', list[5].body, 1, true)
  end)

  it("hands a request split across reads to the Lua path whole", function()
    local fast = serveBoth()
    local c = W.raw(fast)
    c.transport:write("GET /dump?split=1 HTTP/1.1\r\nHo")
    W.net.waitFor(function() return fast.channels[1] ~= nil end, 5)
    c.transport:write("st: 127.0.0.1\r\n\r\nGET /dump?after=1 HTTP/1.1\r\n" .. HOST .. "\r\n")
    local list = W.waitResponses(c, 2, nil, 5)
    assert.equals(200, list[1].status)
    assert.matches('split={1="1"}', list[1].body, 1, true)
    assert.matches('after={1="1"}', list[2].body, 1, true)
  end)
end)
