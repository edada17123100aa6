-- loom.web's server on the wire: a response is one write, and TCP_NODELAY
-- is on, so kept-alive requests one at a time do not wait for the
-- client's delayed ACK (40 ms each before: 44 requests/s).
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local task = require "loom.task"
local testing = require "loom.testing"
local web = require "loom.web"

local W = dofile("spec/support/web_server.lua")
local runUntil = testing.runUntil

-- A channel on a StringTransport whose writes are recorded one by one.
-- (The channel's timeout runs on a task.Clock: nothing is left on the
-- reactor when the spec ends.)
local function connect(root, opts)
  opts = opts or {}
  opts.accessLog, opts.clock = false, task.Clock()
  local site = web.Site(root, opts)
  local channel = site:buildProtocol(nil)
  local t = testing.StringTransport()
  local writes = {}
  function t:write(data) writes[#writes + 1] = data end
  function t:writeSequence(list)
    for i = 1, #list do writes[#writes + 1] = list[i] end
  end
  channel:makeConnection(t)
  return channel, t, writes
end

local GET = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

describe("web.Site's writes", function()
  it("sends a string render's head and body as one write", function()
    local channel, _, writes = connect(W.leaf({
      render_GET = function() return "Hello, World!" end,
    }))
    channel:dataReceived(GET)
    assert.equals(1, #writes)
    assert.matches("^HTTP/1.1 200 OK\r\n.*Content%-Length: 13\r\n.*\r\n\r\nHello, World!$",
      writes[1])
    channel:dataReceived(GET .. GET) -- pipelined: one write each, in order
    assert.equals(3, #writes)
    assert.matches("\r\n\r\nHello, World!$", writes[3])
  end)

  it("sends a NOT_DONE_YET response finished in its render as one write", function()
    local channel, _, writes = connect(W.leaf({
      render_GET = function(_, request)
        request:write("Hello, ")
        request:write("World!")
        request:finish()
        return web.NOT_DONE_YET
      end,
    }))
    channel:dataReceived(GET)
    assert.equals(1, #writes)
    assert.matches("Transfer%-Encoding: chunked\r\n", writes[1])
    assert.matches("\r\n\r\n7\r\nHello, \r\n6\r\nWorld!\r\n0\r\n\r\n$", writes[1])
  end)

  it("holds what a later write sends until finish or the end of the turn", function()
    local pending
    local channel, _, writes = connect(W.leaf({
      render_GET = function(_, request)
        pending = request
        return web.NOT_DONE_YET
      end,
    }))
    channel:dataReceived(GET)
    assert.equals(0, #writes)
    pending:write("part")
    pending:write("s")
    pending:finish()
    assert.equals(1, #writes)
    assert.matches("\r\n\r\n4\r\npart\r\n1\r\ns\r\n0\r\n\r\n$", writes[1])
    -- Without finish, what was written goes out at the end of the turn.
    channel:dataReceived(GET)
    pending:write("streamed")
    assert.equals(1, #writes)
    local d = defer.Deferred()
    reactor.callLater(0.01, function() d:callback(nil) end)
    runUntil(d, 5)
    assert.equals(2, #writes)
    assert.matches("\r\n\r\n8\r\nstreamed\r\n$", writes[2])
    pending:finish()
    assert.equals(3, #writes)
    assert.equals("0\r\n\r\n", writes[3])
  end)

  it("writes a large body without holding it", function()
    local big = string.rep("x", 200000)
    local channel, _, writes = connect(W.leaf({
      render_GET = function() return big end,
    }))
    channel:dataReceived(GET)
    assert.equals(2, #writes)
    assert.matches("Content%-Length: 200000\r\n", writes[1])
    assert.equals(big, writes[2])
  end)

  it("sets TCP_NODELAY on its connections unless told not to", function()
    local leaf = W.leaf({ render_GET = function() return "" end })
    local _, t = connect(leaf)
    assert.is_true(t.tcpNoDelay)
    local _, t2 = connect(leaf, { tcpNoDelay = false })
    assert.is_false(t2.tcpNoDelay)
  end)
end)

describe("web.Site and a client one request at a time", function()
  it("answers 50 kept-alive requests from http.client well under a second", function()
    local server = W.serve(W.leaf({
      render_GET = function(_, request)
        request:setHeader("Content-Type", "text/plain")
        return "Hello, World!"
      end,
    }), { accessLog = false }, finally)
    local out, err = W.python([[
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/")
c.getresponse().read()
t = time.monotonic()
for i in range(50):
    c.request("GET", "/")
    r = c.getresponse()
    assert r.read() == b"Hello, World!"
print("%.3f" % (time.monotonic() - t))
]], tostring(server.portNumber))
    local secs = tonumber(out)
    assert(secs, tostring(out) .. tostring(err))
    -- 50 delayed ACKs would be 2 s; a loaded machine takes ~0.1 s.
    assert.is_true(secs < 0.7, "50 requests took " .. tostring(secs) .. " s")
    assert.equals(1, #server.channels)
  end)
end)
