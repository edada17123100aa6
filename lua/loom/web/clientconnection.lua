-- loom.web.clientconnection: one HTTP/1.1 client connection
-- (twisted.web._newclient.HTTP11ClientProtocol): sends one request at a
-- time, parses the response with the C parser (core.httpParser, the one
-- place that knows libhttp-parser) and gives the Agent a Response.
--
-- States: QUIESCENT (idle, may take a request; the pool keeps these),
-- TRANSMITTING (writing the request), WAITING (request written),
-- DONE (the response ended and the connection will not be reused),
-- CONNECTION_LOST.
--
-- request(req) -> Deferred of a Response, fired once the head has arrived;
-- req = {method=, target=, headers={{name, value}, ...}, body=string or
-- producer or nil, persistent=bool, url=, responseTimeout=}.
-- A producer is Twisted's IBodyProducer: `length` (nil: unknown, sent
-- chunked), startProducing(consumer) -> Deferred fired when all is
-- written, pauseProducing, resumeProducing, stopProducing.

local core = require "loom.core"
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local protocol = require "loom.protocol"
local errors = require "loom.web.errors"
local clientresponse = require "loom.web.clientresponse"

local Failure = failure.Failure
local Response = clientresponse.Response

local M = {}

-- Interim (1xx) responses taken before a request's real one; one more
-- fails the request (Go's client allows 5; 100 Continue and a few 103
-- Early Hints are what servers send).
M.MAX_INTERIM_RESPONSES = 10

local Connection = protocol.Protocol:extend({
  __name = "HTTP11ClientProtocol" })
M.HTTP11ClientProtocol = Connection

-- opts: limits (the parser's: maxHeaderSize, maxHeaders), reactor,
-- onQuiescent(conn) (idle again: the pool takes it back), onLost(conn).
function Connection:init(opts)
  self.state = "QUIESCENT"
  self.served = 0 -- responses completed on this connection
  self._limits = opts.limits or {}
  self._reactor = opts.reactor
  self._onQuiescent = opts.onQuiescent
  self._onLost = opts.onLost
  self._closeWaiters = {}
end

function Connection:connectionMade()
  -- A request is written whole (or a chunk at a time), so Nagle's
  -- algorithm only delays it: a head and body in two segments would wait
  -- for the server's delayed ACK (40 ms a request). curl and Node's
  -- client turn it off too.
  self.transport:setTcpNoDelay(true)
  self._parser = core.httpParser("response", self, self._limits)
end

-- Writing the request -----------------------------------------------------

local function head(req, framing)
  local out = { req.method, " ", req.target, " HTTP/1.1\r\n" }
  for _, h in ipairs(req.headers) do
    out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n"
  end
  if framing then
    out[#out + 1] = framing
  end
  if not req.persistent then
    out[#out + 1] = "Connection: close\r\n"
  end
  out[#out + 1] = "\r\n"
  return table.concat(out)
end

-- The Content-Length (or chunked) line for the body, as Twisted: a body
-- of known length is sent with Content-Length, an unknown one chunked,
-- and a POST or PUT without a body says Content-Length: 0.
local function framing(req)
  local body = req.body
  if type(body) == "string" then
    return "Content-Length: " .. #body .. "\r\n"
  elseif body ~= nil then
    if body.length ~= nil then
      return "Content-Length: " .. body.length .. "\r\n"
    end
    return "Transfer-Encoding: chunked\r\n"
  elseif req.method == "POST" or req.method == "PUT" then
    return "Content-Length: 0\r\n"
  end
  return nil
end

-- A string body up to this size is sent in one write with the head (one
-- copy); a larger one in a second write.
local SMALL_BODY = 64 * 1024

function Connection:request(req)
  if self.state ~= "QUIESCENT" then
    return defer.fail(Failure(errors.RequestNotSent(
      "the connection is " .. self.state:lower() .. ", not idle"), ""))
  end
  self.state = "TRANSMITTING"
  self._req = req
  self._received = false
  self._complete, self._interim, self._interims = false, false, 0
  self._failReason, self._response = nil, nil
  self._parser:reset()
  local d = defer.Deferred(function() self:abort() end)
  self._responseDeferred = d
  self:_startTimer(req.responseTimeout)
  local body = req.body
  if type(body) == "string" and #body <= SMALL_BODY then
    self.transport:write(head(req, framing(req)) .. body) -- one segment
    self:_requestWritten()
  elseif type(body) == "string" then
    self.transport:writeSequence({ head(req, framing(req)), body })
    self:_requestWritten()
  elseif body == nil then
    self.transport:write(head(req, framing(req)))
    self:_requestWritten()
  else
    self.transport:write(head(req, framing(req)))
    self:_produceBody(body)
  end
  return d
end

-- The whole request is out: now only the response is awaited (or, when
-- it already came while the body was being sent, the connection closes).
function Connection:_requestWritten()
  if self.state == "TRANSMITTING" then
    self.state = "WAITING"
  end
end

-- The consumer a body producer writes to: chunked framing or a length
-- check, as Twisted's ChunkedEncoder and LengthEnforcingConsumer.
local Consumer = {}
Consumer.__index = Consumer

function Consumer:write(data)
  local c = self.connection
  if self.done or c.state ~= "TRANSMITTING" or #data == 0 then
    return -- a chunk of 0 bytes would end a chunked body
  end
  self.written = self.written + #data
  if self.length then
    if self.written > self.length then
      self.done = true
      c:_bodyFailed(Failure(errors.RequestGenerationFailed(string.format(
        "the body producer wrote more than its length (%d bytes)",
        self.length)), ""))
      return
    end
    c.transport:write(data)
  else
    -- One write per chunk, framing included: one segment, not three.
    c.transport:write(string.format("%x\r\n", #data) .. data .. "\r\n")
  end
end

-- The connection registered the body producer with its transport before
-- startProducing (as Twisted's encoder does), so these have nothing to do.
function Consumer.registerProducer() end

function Consumer.unregisterProducer() end

function Connection:_produceBody(producer)
  local consumer = setmetatable({ connection = self, written = 0,
    length = producer.length }, Consumer)
  self._producer, self._consumer = producer, consumer
  if producer.pauseProducing and producer.resumeProducing then
    self.transport:registerProducer(producer, true)
  end
  local ok, d = pcall(producer.startProducing, producer, consumer)
  if not ok then
    d = defer.fail(d)
  elseif not defer.isDeferred(d) then
    d = defer.fail(errors.RequestGenerationFailed(
      "the body producer's startProducing did not return a Deferred"))
  end
  d:addCallbacks(function()
    self:_bodyProduced(consumer)
  end, function(f)
    if not consumer.done then
      consumer.done = true
      self:_bodyFailed(Failure(errors.RequestGenerationFailed(
        "the body producer failed", { reasons = { f } }), ""))
    end
  end)
end

function Connection:_stopProducer()
  local producer = self._producer
  if producer == nil then
    return
  end
  self._producer = nil
  self._consumer.done = true
  if self.transport and self.transport.unregisterProducer then
    pcall(self.transport.unregisterProducer, self.transport)
  end
  if producer.stopProducing then
    pcall(producer.stopProducing, producer)
  end
end

function Connection:_bodyProduced(consumer)
  if consumer.done or self._consumer ~= consumer then
    return
  end
  consumer.done = true
  self._producer = nil
  pcall(self.transport.unregisterProducer, self.transport)
  if consumer.length and consumer.written ~= consumer.length then
    self:_bodyFailed(Failure(errors.RequestGenerationFailed(string.format(
      "the body producer wrote %d bytes, not its length %d",
      consumer.written, consumer.length)), ""))
    return
  end
  if not consumer.length then
    self.transport:write("0\r\n\r\n")
  end
  if self.state == "TRANSMITTING" then
    self:_requestWritten()
  end
end

function Connection:_bodyFailed(reason)
  self:_stopProducer()
  self:abort(reason)
end

-- Timing out ------------------------------------------------------------------

-- The response must make progress: no byte for `secs` while it is awaited
-- (or read) aborts the connection with error.TimeoutError. A body nobody
-- is reading yet (paused) is not the server's fault and does not count.
function Connection:_startTimer(secs)
  self:_stopTimer()
  if not secs or secs <= 0 then
    return
  end
  self._timeoutSecs, self._graced = secs, false
  self._lastActivity = self._reactor.seconds()
  self._timer = self._reactor.callLater(secs, self._checkTimeout, self)
end

function Connection:_stopTimer()
  local t = self._timer
  self._timer = nil
  if t and t:active() then
    t:cancel()
  end
end

-- A check that finds the deadline passed looks once more a moment later:
-- when the loop was busy (a long callback), the bytes that would have
-- reset it may be waiting to be read, and I/O runs only after timers.
local GRACE = 0.01

function Connection:_checkTimeout()
  self._timer = nil
  local now, secs = self._reactor.seconds(), self._timeoutSecs
  local waited = now - self._lastActivity
  if self._readPaused or self._userPaused then
    self._lastActivity, waited = now, 0
  end
  if waited < secs or not self._graced then
    self._graced = waited >= secs
    self._timer = self._reactor.callLater(
      self._graced and GRACE or secs - waited, self._checkTimeout, self)
    return
  end
  local req = self._req
  self:abort(Failure(err.TimeoutError(string.format(
    "%s %s: no response for %gs", req.method, req.url, secs),
    { timeout = secs }), ""))
end

-- Reading the response --------------------------------------------------------

function Connection:dataReceived(data)
  local state = self.state
  if state == "QUIESCENT" then
    -- Nothing was asked: a server talking out of turn is not reused.
    self.transport:abortConnection()
    return
  elseif state ~= "TRANSMITTING" and state ~= "WAITING"
      or self._failReason then
    return -- done with, or being closed
  end
  self._received = true
  self._lastActivity = self._reactor.seconds()
  local n, errname, msg = self._parser:execute(data)
  if not n then
    self._newResponse = nil -- it comes with its body's failure (connectionLost)
    return self:_parseFailed(errname, msg)
  elseif self._interims > M.MAX_INTERIM_RESPONSES then
    return self:_parseFailed("tooManyInterims", string.format(
      "more than %d interim (1xx) responses", M.MAX_INTERIM_RESPONSES))
  end
  local response = self._newResponse
  self._newResponse = nil
  if self._complete then
    self:_finishResponse(n < #data)
  end
  if response then
    local d = self._responseDeferred
    self._responseDeferred = nil
    if d and not d.called then
      d:callback(response)
    end
  end
end

function Connection:_parseFailed(errname, msg)
  self:abort(Failure(errors.ResponseFailed(string.format(
    "invalid response from the server (%s): %s", errname, msg),
    { errname = errname, response = self._response }), ""))
end

-- The parser's handler: the head of a response.
function Connection:onHeaders(info)
  local code = info.status
  if info.upgrade then
    error("the server switched protocols (101 Upgrade), which this client "
      .. "never asks for", 0)
  end
  if code >= 100 and code < 200 then
    -- 100 Continue and such: the real head follows. A server sending
    -- them without end would hold the request past responseTimeout.
    self._interims = self._interims + 1
    if self._interims > M.MAX_INTERIM_RESPONSES then
      self._parser:pause() -- dataReceived fails the request
    end
    self._interim = true
    return true
  end
  local req = self._req
  local skip = req.method == "HEAD" or code == 204 or code == 304
  local response = Response:new(info, info.phrase or "",
    { method = req.method, url = req.url, headers = req.headers }, self)
  if skip then
    response.length = 0
  end
  self._response, self._newResponse = response, response
  self._keepAlive = info.keepAlive
  if not skip and info.contentLength ~= 0 then
    -- Read no further than a buffer's worth until deliverBody.
    self:_setReadPaused(true)
  end
  return skip
end

function Connection:onBody(chunk)
  self._response:_bodyDataReceived(chunk)
end

function Connection:onMessageComplete()
  if self._interim then
    self._interim = false
    return
  end
  self._complete = true
  -- Bytes after this response belong to nothing asked: stop there.
  self._parser:pause()
end

-- The whole response arrived: the body ends, and the connection becomes
-- idle for the pool when both sides agree to keep it (and nothing extra
-- came), else it closes.
function Connection:_finishResponse(extra)
  local response, req = self._response, self._req
  self:_stopTimer()
  self.served = self.served + 1
  local reusable = req.persistent and self._keepAlive and not extra
    and self.state == "WAITING"
  self._response, self._req = nil, nil
  self:_setReadPaused(false)
  self._userPaused = false
  if self.state == "TRANSMITTING" then
    self:_stopProducer() -- the server answered before the body was out
  end
  if reusable then
    self.state = "QUIESCENT"
  else
    self.state = "DONE"
    self.transport:loseConnection()
  end
  response:_bodyDataFinished()
  if reusable and self.state == "QUIESCENT" and self._onQuiescent then
    self._onQuiescent(self)
  end
end

-- Flow control: the connection reads while a body protocol is attached
-- and has not paused it.
function Connection:_setReadPaused(paused)
  self._readPaused = paused
  self:_applyPause()
end

function Connection:_setUserPaused(paused)
  self._userPaused = paused
  self:_applyPause()
end

function Connection:_applyPause()
  local t = self.transport
  if not t or self.state == "CONNECTION_LOST" then
    return
  end
  local paused = self._readPaused or self._userPaused or false
  if paused ~= (self._transportPaused or false) then
    self._transportPaused = paused
    if paused then t:pauseProducing() else t:resumeProducing() end
  end
end

function Connection:_bodyProtocolReady()
  self:_setReadPaused(false)
end

-- Ending ----------------------------------------------------------------------

-- abort(reason?): close now; what is in flight fails with reason (a
-- Failure), or with what connectionLost finds when reason is nil.
-- Returns a Deferred that fires once the connection is closed.
function Connection:abort(reason)
  local d = defer.Deferred()
  if self.state == "CONNECTION_LOST" then
    d:callback(nil)
    return d
  end
  self._closeWaiters[#self._closeWaiters + 1] = d
  if reason and not self._failReason then
    self._failReason = reason
  end
  self.transport:abortConnection()
  return d
end

-- What a request in flight fails with when the connection ends: our own
-- reason when we closed it (timeout, bad response), else a ResponseFailed
-- (or ResponseNeverReceived when not one byte came back, or
-- RequestTransmissionFailed while the request was still being written).
function Connection:_headFailure(reason, state)
  if self._failReason then
    return self._failReason
  end
  if state == "TRANSMITTING" then
    return Failure(errors.RequestTransmissionFailed(
      "the connection ended while the request was being sent",
      { reasons = { reason } }), "")
  end
  local cls = self._received and errors.ResponseFailed
    or errors.ResponseNeverReceived
  return Failure(cls("the connection ended before the response",
    { reasons = { reason } }), "")
end

-- A body that ends with the connection: complete when it was delimited by
-- the close (PotentialDataLoss, as Twisted), else failed.
function Connection:_bodyEnded(response, reason)
  if self._failReason then
    response:_bodyDataFinished(self._failReason)
    return
  end
  local ok, errname, msg = self._parser:finish()
  if ok and self._complete then
    response:_bodyDataFinished(Failure(errors.PotentialDataLoss(
      "the body ended when the server closed the connection"), ""))
    return
  end
  response:_bodyDataFinished(Failure(errors.ResponseFailed(
    "the connection ended in the middle of the body" .. (errname
      and (" (" .. errname .. ": " .. tostring(msg) .. ")") or ""),
    { reasons = { reason }, response = response }), ""))
end

function Connection:connectionLost(reason)
  local state = self.state
  self.state = "CONNECTION_LOST"
  self:_stopTimer()
  self:_stopProducer()
  local response, d = self._response, self._responseDeferred
  self._response, self._responseDeferred, self._req = nil, nil, nil
  if response and state ~= "DONE" and state ~= "QUIESCENT" then
    self:_bodyEnded(response, reason)
  end
  if d and not d.called then
    if response then
      -- The head arrived with this very read: it comes with its body's end.
      d:callback(response)
    else
      d:errback(self:_headFailure(reason, state))
    end
  end
  if self._onLost then
    self._onLost(self)
  end
  local waiters = self._closeWaiters
  self._closeWaiters = {}
  for _, w in ipairs(waiters) do
    w:callback(nil)
  end
end

return M
