-- loom.web.server: Site, the Factory of an HTTP/1.1 server, and
-- HTTPChannel, its protocol, as twisted.web.server.Site and
-- twisted.web.http.HTTPChannel. Parsing is core.httpParser's
-- (bindings/http.c); the Request is loom.web.server_request's.
--
--   local site = web.Site(root, { maxBodySize = 1024 * 1024 })
--   reactor.listenTCP(8080, site, { interface = "127.0.0.1" })
--
-- One request at a time per connection: the parser pauses after each
-- message, so pipelined requests wait (at most maxPipelineBuffer bytes of
-- them, then reading stops) and are answered in order. docs/web.md lists
-- every limit and its default.

local core = require "loom.core"
local protocol = require "loom.protocol"
local log = require "loom.log"
local failure = require "loom.failure"
local base = require "loom.reactor.base"
local requestModule = require "loom.web.server_request"
local resource = require "loom.web.resource"

local Request = requestModule.Request
local PHRASES = requestModule.PHRASES

local M = {}

-- Limits a Site takes as options (and class fields), with their checks.
local LIMITS = { "maxHeaderSize", "maxHeaders", "maxUrl", "maxBodySize",
  "contentInMemory", "headerTimeout", "idleTimeout", "maxPipelineBuffer",
  "closeTimeout" }

-- Every option Site takes: a misspelt one is an error, not a silent default.
local OPTIONS = { logPath = true, accessLog = true, serverName = true,
  defaultContentType = true, clock = true, requestFactory = true,
  tcpNoDelay = true }
for _, name in ipairs(LIMITS) do OPTIONS[name] = true end

local Site = protocol.Factory:extend({ __name = "Site" })
M.Site = Site
Site.maxHeaderSize = 16 * 1024      -- request line and header fields
Site.maxHeaders = 100               -- header fields
Site.maxUrl = 8 * 1024              -- request target (414 past it)
Site.maxBodySize = 10 * 1024 * 1024 -- request body (413 past it)
Site.contentInMemory = 100000       -- larger bodies go to a temporary file
Site.headerTimeout = 30             -- s from a request's first byte to its blank line
Site.idleTimeout = 60               -- s of silence between requests or in a body
Site.maxPipelineBuffer = 64 * 1024  -- bytes of later requests held unread
Site.closeTimeout = 5               -- s a closing connection may take to flush
Site.defaultContentType = "text/html"
Site.serverName = "loom/" .. tostring(core.version)
Site.accessLog = true
Site.requestFactory = Request -- Twisted's: a subclass of Request may go here
-- TCP_NODELAY on every connection: a response goes out as one write, and
-- without Nagle's algorithm it is sent at once instead of waiting for the
-- ACK of the previous one (up to the client's 40 ms delayed ACK).
Site.tcpNoDelay = true

local function checkLimit(name, v)
  if type(v) ~= "number" or v ~= v or v <= 0 then
    error(string.format("Site: %s must be a positive number, got %s", name,
      tostring(v)), 4)
  end
  if name:match("^max") or name == "contentInMemory" then
    if math.type(v) ~= "integer" and v ~= math.huge then
      error(string.format("Site: %s must be an integer, got %s", name,
        tostring(v)), 4)
    end
  end
  return v
end

-- Site(root, opts): opts sets any limit above, and logPath (the access
-- log's file, appended to; default: the loom log), accessLog (false: none),
-- serverName (false: no Server header), defaultContentType, clock (an
-- object with callLater, e.g. a task.Clock; default: the reactor).
function Site:init(root, opts)
  if type(root) ~= "table" or type(root.render) ~= "function" then
    error("Site: the root must be a Resource", 3)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error(string.format("Site: unknown option %s", tostring(k)), 3)
    end
  end
  self.resource = root
  self.protocol = M.HTTPChannel
  for _, name in ipairs(LIMITS) do
    if opts[name] ~= nil then
      self[name] = checkLimit(name, opts[name])
    end
  end
  for _, name in ipairs({ "serverName", "defaultContentType", "accessLog",
    "clock", "requestFactory", "tcpNoDelay" }) do
    if opts[name] ~= nil then
      self[name] = opts[name]
    end
  end
  if opts.logPath then
    local f, e = io.open(opts.logPath, "a")
    if not f then
      error("Site: cannot open the access log: " .. tostring(e), 3)
    end
    f:setvbuf("line")
    self.logFile = f
  end
end

-- Closes the access log file (stopFactory: the last port stopped).
function Site:stopFactory()
  if self.logFile then
    self.logFile:close()
    self.logFile = nil
  end
end

function Site:buildProtocol(addr) -- luacheck: ignore addr
  local p = M.HTTPChannel:new()
  p.factory = self
  p.site = self
  return p
end

-- The clock (a task.Clock in specs) or the reactor's.
function Site:seconds()
  return (self.clock or base).seconds()
end

function Site:callLater(secs, f)
  return (self.clock or base).callLater(secs, f)
end

-- Walks the tree from the root along postpath (Twisted's
-- getChildForRequest): each step moves one segment to prepath.
function Site:getResourceFor(request)
  local res = self.resource
  local postpath, prepath = request.postpath, request.prepath
  while #postpath > 0 and not res.isLeaf do
    local name = table.remove(postpath, 1)
    prepath[#prepath + 1] = name
    res = res:getChildWithDefault(name, request)
    if res == nil then
      return resource.NoResource()
    end
  end
  return res
end

-- A field of the combined log format: quoted, with " \ and control bytes
-- escaped so that a client cannot forge a line.
local function logField(s)
  if s == nil then
    return "-"
  end
  return (s:gsub('[%c"\\\128-\255]', function(c)
    return string.format("\\x%02x", c:byte())
  end))
end

-- The combined log format line of a finished request.
function Site:logLine(request)
  local peer = request:getClientAddress()
  return string.format('%s - - [%s] "%s %s %s" %d %s "%s" "%s"',
    peer and peer.host or "-", os.date("!%d/%b/%Y:%H:%M:%S +0000"),
    logField(request.method), logField(request.uri),
    logField(request.clientproto), request.code,
    request.sentLength > 0 and tostring(request.sentLength) or "-",
    logField(request.headers.referer), logField(request.headers["user-agent"]))
end

function Site:log(request)
  if not self.accessLog then
    return
  end
  local line = self:logLine(request)
  if self.logFile then
    self.logFile:write(line, "\n")
  else
    log.emit("info", "access", line)
  end
end

-- HTTPChannel -------------------------------------------------------------

local Channel = protocol.Protocol:extend({ __name = "HTTPChannel" })
M.HTTPChannel = Channel

-- What a handler raises to stop the parser with a response code.
local REJECT = setmetatable({}, { __tostring = function() return "rejected" end })

-- Parse errors and the codes they are answered with.
local PARSE_CODES = { invalid = 400, incomplete = 400, headerTooLarge = 431,
  tooManyHeaders = 431, uriTooLong = 414 }

function Channel:connectionMade()
  local site = self.site or self.factory
  self.site = site
  self.parser = core.httpParser("request", self, {
    maxHeaderSize = site.maxHeaderSize, maxHeaders = site.maxHeaders,
    maxUrl = site.maxUrl })
  self.buffer = ""
  self.state = "idle"
  self.persistent = true
  self.reading = true
  -- The response being made: what is held of it to go out as one write
  -- (loom.web.server_request), and whether its render is running.
  self._out, self._outSize, self._direct, self._flushCall = false, 0, false, false
  self._declared = false -- the Content-Length of the response being made
  -- Fields a request sets and clears, there from the start as false: a
  -- field set to nil and set again takes the slow path of a table store
  -- (and a rehash now and then), once per request.
  self.request, self.ready, self._producer, self._deadline = false, false, false, false
  self._bodyLen, self._bodyParts, self._bodyFile = 0, false, false
  self.processing, self._feeding, self._writePaused = false, false, false
  local t = self.transport
  if site.tcpNoDelay and t.setTcpNoDelay then -- TCP only (not a Unix socket)
    t:setTcpNoDelay(true)
  end
  t:registerProducer(self, true)
  self._onTimerFn = function() self:_onTimer() end
  self._clock = site.clock and site.clock.seconds or base.seconds
  self._wallClock = not site.clock -- (then _now also dates responses)
  self._now = 0 -- the clock when the current read began
  self:_arm(site.idleTimeout)
end

function Channel:logPrefix()
  return protocol.Protocol.logPrefix(self)
end

-- The one timeout of the connection (which one depends on the state) is
-- a deadline: arming it writes the deadline, and the timer, set at most
-- headerTimeout ahead, looks at it when it fires and waits for the rest.
-- So a request costs no timer of its own, only a clock read per state.
function Channel:_arm(secs, now)
  if secs == nil or secs == math.huge then
    self._deadline = false
    return
  end
  local site = self.site
  local deadline = (now or self._clock()) + secs
  self._deadline = deadline
  local at = self._timerAt
  if at == nil or deadline < at then
    local first = math.min(secs, site.headerTimeout)
    local call = self._timeoutCall
    if call and call:active() then
      call:reset(first)
    else
      self._timeoutCall = site:callLater(first, self._onTimerFn)
    end
    self._timerAt = deadline - secs + first
  end
end

function Channel:_onTimer()
  self._timeoutCall, self._timerAt = nil, nil
  local deadline = self._deadline
  if not deadline or self.dead then
    return
  end
  local left = deadline - self.site:seconds()
  if left > 0 then
    self._timeoutCall = self.site:callLater(left, self._onTimerFn)
    self._timerAt = deadline
    return
  end
  self._deadline = false
  self:_timedOut()
end

function Channel:_cancelTimer()
  self._deadline, self._timerAt = false, nil
  local call = self._timeoutCall
  self._timeoutCall = nil
  if call and call:active() then
    call:cancel()
  end
end

function Channel:_timedOut()
  if self.dead then
    return
  end
  if self.state == "idle" then
    self:_close() -- an idle keep-alive connection: nothing to say
  elseif self.state == "head" or self.state == "body" then
    log.prefixed(self:logPrefix()).info("request timed out (%s)",
      self.state == "head" and "headerTimeout" or "idleTimeout")
    self:_respondError(408)
  end
end

-- Writes are the transport's; kept in one place for the request.
function Channel:writeOut(data)
  self.transport:write(data)
end

function Channel:writeSequence(list)
  self.transport:writeSequence(list)
end

-- Stops reading while the peer does not read our answers or while later
-- pipelined requests pile up; reads again when neither holds.
function Channel:_checkReading()
  if self.dead then
    return
  end
  local want = not self._writePaused and #self.buffer < self.site.maxPipelineBuffer
  if want ~= self.reading then
    self.reading = want
    if want then
      self.transport:resumeProducing()
    else
      self.transport:pauseProducing()
    end
  end
end

-- The transport's producer: its write queue passed the high-water mark.
function Channel:pauseProducing()
  self._writePaused = true
  local p = self._producer
  if p and self._producerStreaming then
    p:pauseProducing()
  end
  self:_checkReading()
end

function Channel:resumeProducing()
  self._writePaused = false
  local p = self._producer
  if p then
    p:resumeProducing()
    if not self._producerStreaming then
      self:_pullMore()
    end
  end
  if not self.processing and not self._feeding and #self.buffer > 0 then
    self:_feed("")
  end
  self:_checkReading()
end

function Channel:stopProducing()
  local p = self._producer
  self._producer = false
  if p and p.stopProducing then
    p:stopProducing()
  end
end

-- A pull producer is asked for more while the queue stays short, as long
-- as it writes something each time (one that writes nothing is asked
-- again only when the queue drains, as in Twisted: no busy loop).
function Channel:_pullMore()
  if self._pullScheduled then
    return
  end
  self._pullScheduled = true
  base.callLater(0, function()
    self._pullScheduled = false
    local p, req = self._producer, self.request
    if p and req and not self._producerStreaming and not self._writePaused
        and not self.dead then
      local before = req.sentLength
      p:resumeProducing()
      if req.sentLength > before then
        self:_pullMore()
      end
    end
  end)
end

function Channel:registerRequestProducer(req, producer, streaming)
  if req ~= self.request or self.dead then
    return
  end
  if self._producer then
    error("registerProducer: a producer is already registered", 3)
  end
  self._producer, self._producerStreaming = producer, streaming
  if self._writePaused and streaming then
    producer:pauseProducing()
  elseif not streaming then
    self:_pullMore()
  end
end

function Channel:unregisterRequestProducer(req)
  if req == self.request then
    self._producer = false
  end
end

-- Channel.dataReceived is C: see the end of this file.

-- Runs the parser over what is buffered and data, one request at a time:
-- the loop (not recursion) takes the next pipelined request when a render
-- finishes at once.
function Channel:_feed(data)
  if self._feeding or self.processing then
    self.buffer = self.buffer .. data
    self:_checkReading()
    return
  end
  self._feeding = true
  local buffered = self.buffer
  local buf = buffered ~= "" and buffered .. data or data
  local pos, len = 1, #buf -- buf[pos..] is not parsed yet
  self.buffer = ""
  local now = self._clock() -- one clock read for the requests of a read
  self._now = now
  -- A peer that does not read its answers gets no more of them.
  while pos <= len and not self.processing and not self.dead
      and not self._writePaused do
    if self.state == "idle" then
      self.state = "head"
      self:_arm(self.site.headerTimeout, now)
    end
    local n, errname, msg = self.parser:execute(buf, pos)
    if n == nil then
      self:_parseError(errname, msg)
      pos = len + 1
      break
    end
    pos = pos + n
    local ready = self.ready
    if ready then
      self.ready = false
      ready:process()
    elseif n == 0 then
      break -- the parser takes nothing more (after an Upgrade)
    end
  end
  if not self.dead and pos <= len then
    self.buffer = pos == 1 and buf or buf:sub(pos)
  end
  self._feeding = false
  if self.dead and self._switchTo then
    self:_handOver(pos <= len and buf:sub(pos) or "")
    return
  end
  if self.buffer ~= "" or self._writePaused or not self.reading then
    self:_checkReading()
  end
end

-- switchProtocol(proto): once the current request is finished (its 101
-- response written), the connection belongs to proto (a WebSocket): it
-- gets the transport through makeConnection and the bytes read past the
-- request's head; the channel lets go of the transport and its timers.
function Channel:switchProtocol(proto)
  self._switchTo = proto
end

function Channel:_handOver(rest)
  local proto = self._switchTo
  self._switchTo = nil
  local t = self.transport
  t:unregisterProducer()
  if not self.reading then
    t:resumeProducing()
  end
  t:setProtocol(proto)
  proto:makeConnection(t)
  if #rest > 0 and t.connected then
    proto:dataReceived(rest)
  end
end

-- The rest of the request is refused with code: the handler raises to
-- stop the parser, and _feed answers.
function Channel:_reject(code, why)
  self._rejectCode, self._rejectWhy = code, why
  error(REJECT, 0)
end

-- Parser handler: a request's head is complete.
function Channel:onHeaders(info)
  local site = self.site
  self.parser:pause() -- one request at a time (pipelining)
  if info.versionMajor ~= 1 then
    self:_reject(505, "HTTP version " .. info.versionMajor)
  end
  -- RFC 9112 3.2: origin-form ("/..."), absolute-form (a proxy's),
  -- authority-form for CONNECT, "*" for OPTIONS; nothing else
  -- ("*hello.txt" would be read as /hello.txt).
  local target = info.url
  if target:byte(1) ~= 47 and info.method ~= "CONNECT"
      and not (target == "*" and info.method == "OPTIONS")
      and not target:find("^%a[%w+.%-]*://") then
    self:_reject(400, "bad request target")
  end
  local req = site.requestFactory:new(self, info)
  self.request = req
  self.persistent = info.keepAlive and not info.upgrade
  self.state = "body"
  if info.chunked or (info.contentLength or 0) > 0 then
    self:_arm(site.idleTimeout, self._now) -- (without a body, processing comes next)
  end
  self._bodyLen, self._bodyParts, self._bodyFile = 0, false, false
  -- Two Host fields arrive joined with ", ", which no host name holds.
  local host = req.headers.host
  if info.versionMinor >= 1 and (host == nil or host:find(",", 1, true)) then
    self:_reject(400, "an HTTP/1.1 request needs exactly one Host header")
  end
  if info.contentLength and info.contentLength > site.maxBodySize then
    self:_reject(413, string.format("Content-Length %s over maxBodySize %d",
      tostring(info.contentLength), site.maxBodySize))
  end
  local expect = req.headers.expect
  if expect then
    if expect:lower() ~= "100-continue" then
      self:_reject(417, "unknown Expect " .. string.format("%q", expect))
    elseif info.versionMinor >= 1 and (info.chunked or (info.contentLength or 0) > 0) then
      self:writeOut("HTTP/1.1 100 Continue\r\n\r\n")
    end
  end
end

-- Parser handler: a piece of the body. Past contentInMemory bytes the
-- body moves to a temporary file (as twisted.web), past maxBodySize the
-- request is refused.
function Channel:onBody(chunk)
  local site = self.site
  local len = self._bodyLen + #chunk
  self._bodyLen = len
  if len > site.maxBodySize then
    self:_reject(413, "body over maxBodySize " .. site.maxBodySize)
  end
  self._deadline = site:seconds() + site.idleTimeout -- the body still arrives
  local f = self._bodyFile
  if f then
    f:write(chunk)
    return
  end
  local parts = self._bodyParts
  if not parts then
    parts = {}
    self._bodyParts = parts
  end
  parts[#parts + 1] = chunk
  if len > site.contentInMemory then
    local tmp, e = io.tmpfile()
    if not tmp then
      log.prefixed(self:logPrefix()).error("no temporary file for a body: %s", tostring(e))
      self:_reject(500, "no temporary file")
    end
    tmp:write(table.concat(parts))
    self._bodyParts = {}
    self._bodyFile = tmp
  end
end

-- Parser handler: the request is complete; _feed processes it once the
-- parser has returned.
function Channel:onMessageComplete()
  local req = self.request
  if self._bodyFile then
    self._bodyFile:seek("set", 0)
    req.content = self._bodyFile
    self._bodyFile = false
  elseif self._bodyParts then
    req.content = table.concat(self._bodyParts)
    local ctype = req.headers["content-type"]
    if ctype and ctype:match("^%s*([^;%s]*)"):lower()
        == "application/x-www-form-urlencoded" then
      requestModule.parseQuery(req.content, req.args)
    end
  end
  self._bodyParts = false
  self.state = "processing"
  self.processing = true
  self._deadline = false -- no timeout while the resource works
  self.ready = req
end

-- The request's response is finished.
function Channel:requestDone(req)
  if req ~= self.request then
    return
  end
  self.request = false
  self._producer = false
  self.processing = false
  if self.dead then
    return
  end
  if self._switchTo then
    self.dead = true
    self:_cancelTimer()
    if not self._feeding then
      local rest = self.buffer
      self.buffer = ""
      self:_handOver(rest)
    end
    return
  end
  if not self.persistent then
    self:_close()
    return
  end
  self.state = "idle"
  -- Finished within the read that brought it: that read's clock will do.
  self:_arm(self.site.idleTimeout, self._feeding and self._now or nil)
  self.parser:resume()
  if not self._feeding and #self.buffer > 0 then
    self:_feed("")
  end
end

-- Closes after what is queued is written, or aborts after closeTimeout.
function Channel:_close()
  if self.dead then
    return
  end
  self.dead = true
  self.buffer = ""
  self:_cancelTimer()
  self.transport:loseConnection()
  local t = self.transport
  self._abortCall = self.site:callLater(self.site.closeTimeout, function()
    self._abortCall = nil
    if t.connected then
      t:abortConnection()
    end
  end)
end

function Channel:abort()
  self.dead = true
  self:_cancelTimer()
  self.transport:abortConnection()
end

-- A response for a request that never reached a resource; then close.
function Channel:_respondError(code, why)
  if self.dead then
    return
  end
  if self.request and self.request.startedWriting then
    self:abort()
    return
  end
  local brief = PHRASES[code] or "Error"
  local body = resource.errorPage(code, brief, why or brief)
  self:writeOut(string.format("HTTP/1.1 %d %s\r\nContent-Type: text/html; "
    .. "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
    code, brief, #body, body))
  self:_discardRequest()
  self:_close()
end

function Channel:_discardRequest()
  if self._bodyFile then
    self._bodyFile:close()
    self._bodyFile = false
  end
  self._bodyParts = false
  self.request = false
end

function Channel:_parseError(errname, msg)
  local code = PARSE_CODES[errname]
  if errname == "handler" and self._rejectCode then
    code, msg = self._rejectCode, self._rejectWhy
  elseif code == nil then
    log.prefixed(self:logPrefix()).error("HTTP parser handler failed: %s", msg)
    self:_discardRequest()
    self:abort()
    return
  end
  log.prefixed(self:logPrefix()).info("bad request (%d): %s", code, msg)
  self:_respondError(code)
end

function Channel:connectionLost(reason)
  self.dead = true
  self:_cancelTimer()
  if self._abortCall and self._abortCall:active() then
    self._abortCall:cancel()
  end
  self._abortCall = nil
  local p = self._producer
  self._producer = false
  if p and p.stopProducing then
    local ok, e = pcall(p.stopProducing, p)
    if not ok then
      log.prefixed(self:logPrefix()).err(e, "stopProducing failed")
    end
  end
  local req = self.request
  self.request = false
  if self._bodyFile then
    self._bodyFile:close()
    self._bodyFile = false
  end
  if req and not req.finished then
    req:_connectionLost(reason)
  end
end

-- dataReceived(data) is C (bindings/http_server.c): the fast lane parses,
-- makes and renders a request without a body with one Lua call, and
-- answers a plain string result itself; anything else comes to _feed. It
-- stands in for the methods below, so a channel whose class has other
-- ones (a subclass, a patch, a reload), or a request whose class has
-- another init, process or _rendered, takes the Lua path.
Channel.dataReceived = core.httpChannelReader(Request,
  requestModule.findAndRender, failure.handler, PHRASES,
  requestModule.fireNotify,
  { Channel._feed, Channel.onHeaders, Channel.onMessageComplete,
    Channel.requestDone, Channel._arm },
  { Request.init, Request.process, Request._rendered })

return M
