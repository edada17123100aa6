-- A hostile HTTP server against loom.web's client, for `make soak` (under
-- the ASan and UBSan build): for SECONDS, 50 requests at a time go through
-- one keep-alive web.Agent (readBody, or deliverBody to a protocol that
-- pauses, resumes and stops), a RedirectAgent and getPage, to a server that
-- answers each request head with a response taken from a corpus (lengths,
-- chunked, HTTP/1.0 bodies to the close, 100-continue, 204/304, HEAD,
-- redirects, long and many headers) with bytes flipped, dropped, doubled
-- and repeated thousands of times, written in pieces, sometimes cut off,
-- aborted, or never sent.
--   loom run fuzz/web_client_soak.lua [SECONDS [SEED]]  (default 30 s, seed 1)
-- Passes (exit 0) when every request's Deferred fired (a response or a
-- Failure), nothing was logged as an error, and a plain request to a
-- well-behaved server is answered at the end; the sanitizers abort on any
-- invalid access. Only 127.0.0.1 is reached: a redirect's Location is never
-- mutated, and nothing but RedirectAgent follows one.
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local web = require "loom.web"

local SECONDS = tonumber(arg[1]) or 30
local CONCURRENCY = 50
local HEAD_LIMIT = 65536 -- what the hostile server reads of a request head
local S = dofile("fuzz/soak.lua").new(tonumber(arg[2]) or 1)
local R, mutate = S.R, S.mutate

-- The hostile server --------------------------------------------------------

local port -- the hostile server's, once listening

local CORPUS = {
  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
  "HTTP/1.0 200 OK\r\n\r\nto the close",
  "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the close",
  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2"
    .. "\r\n\r\nok",
  "HTTP/1.1 204 No Content\r\n\r\n",
  "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
  "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
  "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
  "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length:"
    .. " 1\r\n\r\nx",
  "HTTP/1.1 200 OK\r\n" .. ("X-Many: v\r\n"):rep(120)
    .. "Content-Length: 1\r\n\r\nx",
  "HTTP/1.1 200 OK\r\nX-Long: " .. ("v"):rep(20000)
    .. "\r\nContent-Length: 1\r\n\r\nx",
  "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" .. ("b"):rep(100000),
  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
    .. "\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff"
    .. "\r\nabc",
  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    .. "Content-Length: 2\r\n\r\nno", -- an answer nobody asked for
  "HTTP/2 200\r\n\r\n",
  "SSH-2.0-OpenSSH_9.2\r\n",
  "\r\n\r\n\r\n",
}

-- The clean answers: /ok, and /redirect's (to /ok, never mutated).
local function clean(path)
  if path == "/redirect" then
    return "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:" .. port
      .. "/ok\r\nContent-Length: 0\r\n\r\n"
  elseif path == "/relative" then
    return "HTTP/1.1 301 Moved\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n"
  elseif path == "/ok" then
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  end
end

local Hostile = protocol.Protocol:extend({ __name = "HostileServer" })

function Hostile:connectionMade()
  self.buffer = ""
end

function Hostile:dataReceived(data)
  self.buffer = self.buffer .. data
  while true do
    local head_end = self.buffer:find("\r\n\r\n", 1, true)
    if head_end == nil then
      if #self.buffer > HEAD_LIMIT then
        self.transport:loseConnection()
      end
      return
    end
    local head = self.buffer:sub(1, head_end - 1)
    self.buffer = self.buffer:sub(head_end + 4)
    -- (a request body is read as garbage before the next head: fine here)
    local path = head:match("^%u+ (%S+) HTTP/1%.1") or "/"
    local text = clean(path)
    if text then
      S.writeInPieces(self.transport, text)
    elseif R(12) == 1 then
      -- never answered: the client's responseTimeout must end it
      return
    else
      local answer = CORPUS[R(#CORPUS)]
      if R(3) > 1 then
        answer = mutate(answer)
      end
      local fates = { "close", "abort", "cut" } -- or (4, 5) kept open
      S.writeInPieces(self.transport, answer, fates[R(5)])
    end
  end
end

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Hostile),
  { interface = "127.0.0.1" }):getHost().port

-- The clients ---------------------------------------------------------------

local agent = web.Agent(reactor, { responseTimeout = 1, connectTimeout = 2,
  maxHeaderSize = 16384 })
local redirecting = web.RedirectAgent(agent, { redirectLimit = 3 })
local stats = { requests = 0, responses = 0, failures = 0 }
local outstanding, inflight = {}, 0
local deadline = reactor.seconds() + SECONDS
local spawn

-- A body protocol that pauses, resumes and sometimes stops its transport.
local Reader = protocol.Protocol:extend({ __name = "SoakBodyReader" })
function Reader:dataReceived()
  local t = self.transport
  local pick = R(20)
  if pick == 1 then
    t:stopProducing()
  elseif pick == 2 then
    t:pauseProducing()
    reactor.callLater(0.002, function() t:resumeProducing() end)
  end
end
function Reader:connectionLost()
  self.done()
end

local function settle(id, ok)
  if outstanding[id] == nil then
    log.error("soak: request %d settled twice", id)
    return
  end
  outstanding[id] = nil
  inflight = inflight - 1
  if ok then
    stats.responses = stats.responses + 1
  else
    stats.failures = stats.failures + 1
  end
  spawn()
end

local PATHS = { "/", "/a?b=c", "/redirect", "/relative", "/ok", "/x" }
local METHODS = { "GET", "GET", "GET", "HEAD", "POST", "DELETE" }

local function one(id)
  local url = "http://127.0.0.1:" .. port .. PATHS[R(#PATHS)]
  local method = METHODS[R(#METHODS)]
  local body = method == "POST" and ("p"):rep(R(3000)) or nil
  local kind = R(4)
  local d
  if kind == 1 then
    d = web.getPage(url, { method = method, body = body, timeout = 2,
      followRedirect = false })
  else
    local through = kind == 2 and redirecting or agent
    d = through:request(method, url, { ["X-Soak"] = tostring(id) }, body)
    if R(2) == 1 then
      d:addCallback(web.readBody)
    else
      d:addCallback(function(response)
        local reader = Reader()
        local finished = require("loom.defer").Deferred()
        reader.done = function() finished:callback(response) end
        response:deliverBody(reader)
        return finished
      end)
    end
  end
  d:addCallbacks(function() settle(id, true) end,
    function() settle(id, false) end)
end

function spawn()
  while inflight < CONCURRENCY and reactor.seconds() < deadline do
    inflight = inflight + 1
    stats.requests = stats.requests + 1
    local id = stats.requests
    outstanding[id] = reactor.seconds()
    one(id)
  end
end

-- Anything logged as an error is loom's (every Deferred has an errback).
local unexpected = S.watchErrors()

local good = web.Site(web.Resource:extend({ isLeaf = true,
  render_GET = function() return "fine" end })(), { accessLog = false })
local goodPort = reactor.listenTCP(0, good, { interface = "127.0.0.1" })
  :getHost().port

local status = 1
local function finish(body)
  local left = S.count(outstanding)
  status = S.verdict(unexpected, string.format("%d requests (%d answered,"
    .. " %d failed), then a plain one answered", stats.requests,
    stats.responses, stats.failures),
    left > 0 and left .. " requests never settled",
    body ~= "fine" and "the last request got " .. tostring(body))
  reactor.stop()
end

-- After the last requests settle (each has a timeout; bounded), one more.
local function last()
  S.whenSettled(function() return inflight > 0 end, deadline, function()
    web.getPage("http://127.0.0.1:" .. goodPort .. "/", { timeout = 5 })
      :addCallbacks(finish, function(f) finish(tostring(f)) end)
  end)
end

print(string.format("soak: %d s, a hostile server on 127.0.0.1:%d (seed %s)",
  SECONDS, port, arg[2] or "1"))
spawn()
reactor.callLater(SECONDS, last)
reactor.run()
os.exit(status)
