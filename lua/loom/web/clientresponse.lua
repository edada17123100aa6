-- loom.web.clientresponse: the response the HTTP client's Agent gives
-- (twisted.web._newclient.Response): status, headers, and a body that is
-- delivered to a protocol with response:deliverBody(protocol).
--
-- Until a protocol is given, the connection stops reading (so a response
-- nobody reads holds at most one read's worth of body); then the protocol
-- gets makeConnection(transport), dataReceived(bytes) for each piece, and
-- connectionLost(reason) with a Failure of web.ResponseDone (the whole body),
-- web.PotentialDataLoss (a body that ended when the server closed, as
-- HTTP/1.0 allows) or what went wrong (web.ResponseFailed, TimeoutError).

local class = require "loom.class"
local errors = require "loom.web.errors"
local failure = require "loom.failure"
local log = require "loom.log"

local Failure = failure.Failure

local M = {}

-- What a body protocol's transport can do: pause and resume the reading,
-- or stop it (the connection is closed). Once the body is over it does
-- nothing, so a protocol keeping it cannot close a connection the pool
-- has handed to another request.
local BodyTransport = class.Object:extend({ __name = "BodyTransport" })
M.BodyTransport = BodyTransport

function BodyTransport:init(connection)
  self._connection = connection
end

function BodyTransport:pauseProducing()
  local c = self._connection
  if c then c:_setUserPaused(true) end
end

function BodyTransport:resumeProducing()
  local c = self._connection
  if c then c:_setUserPaused(false) end
end

-- Stopping the body closes the connection (its rest cannot be skipped).
function BodyTransport:stopProducing()
  local c = self._connection
  if c then c:abort() end
end
BodyTransport.abortConnection = BodyTransport.stopProducing
BodyTransport.loseConnection = BodyTransport.stopProducing

function BodyTransport:getPeer()
  local c = self._connection
  return c and c.transport and c.transport:getPeer()
end

function BodyTransport:getHost()
  local c = self._connection
  return c and c.transport and c.transport:getHost()
end

function BodyTransport:_detach()
  self._connection = nil
end

local Response = class.Object:extend({ __name = "Response" })
M.Response = Response

-- info: the parser's head (status, version, headers); request: {method=,
-- url=, headers=}; connection: the HTTP11ClientProtocol it arrives on.
function Response:init(info, phrase, request, connection)
  self.code = info.status
  self.phrase = phrase
  self.version = string.format("HTTP/%d.%d", info.versionMajor,
    info.versionMinor)
  self.rawHeaders = info.headers
  self.headers = M.combineHeaders(info.headers)
  self.request = request
  self.length = info.contentLength -- nil: not known in advance
  self._transport = BodyTransport:new(connection)
  self._state = "INITIAL"
  self._buffer = {}
end

-- name -> value with lower-case names; a header sent several times is
-- joined with ", " as RFC 9110 5.3 allows (getRawHeaders keeps each).
function M.combineHeaders(list)
  local t = {}
  for _, h in ipairs(list) do
    local name = h[1]:lower()
    local old = t[name]
    t[name] = old and (old .. ", " .. h[2]) or h[2]
  end
  return t
end

-- The value of a header (any case), or nil.
function Response:getHeader(name)
  return self.headers[name:lower()]
end

-- Every value of a header in arrival order (a list, maybe empty), as
-- Twisted's Headers.getRawHeaders: Set-Cookie cannot be joined.
function Response:getRawHeaders(name)
  local want, out = name:lower(), {}
  for _, h in ipairs(self.rawHeaders) do
    if h[1]:lower() == want then
      out[#out + 1] = h[2]
    end
  end
  return out
end

function Response:setPreviousResponse(previous)
  self.previousResponse = previous
end

function Response:__tostring()
  return string.format("<Response %d %s>", self.code, self.phrase)
end

-- A body protocol's hook, protected: an error in it is logged with its
-- traceback and ends this response only (the connection is closed).
local function call(self, proto, hook, ...)
  local f = proto[hook]
  if f == nil then
    return true
  end
  local ok, e = xpcall(f, failure.handler, proto, ...)
  if not ok then
    log.prefixed(log.prefixOf(proto) or "Response")
      .err(e, "error in the body protocol's " .. hook)
    self._hookFailure = e
    local c = self._transport._connection
    if c then c:abort(e) end
  end
  return ok
end

-- The protocol starts receiving the body: what arrived is delivered now,
-- the rest as it comes. A response has one body, so one protocol.
function Response:deliverBody(proto)
  local state = self._state
  if state == "CONNECTED" or state == "FINISHED" then
    error("deliverBody: this response's body was already delivered", 2)
  end
  self._protocol = proto
  if proto.makeConnection then
    call(self, proto, "makeConnection", self._transport)
  else
    proto.transport = self._transport
    call(self, proto, "connectionMade")
  end
  local buffered = self._buffer
  self._buffer = nil
  for i = 1, #buffered do
    call(self, proto, "dataReceived", buffered[i])
  end
  if state == "DEFERRED_CLOSE" then
    self:_finish(self._reason)
    return
  end
  self._state = "CONNECTED"
  local c = self._transport._connection
  if c then c:_bodyProtocolReady() end
end

-- From the connection: a piece of the body.
function Response:_bodyDataReceived(data)
  if self._hookFailure then
    return -- the connection is being closed for it
  elseif self._state == "CONNECTED" then
    call(self, self._protocol, "dataReceived", data)
  elseif self._state == "INITIAL" then
    local b = self._buffer
    b[#b + 1] = data
  end
end

-- From the connection: the body is over; reason is a Failure (default:
-- ResponseDone).
function Response:_bodyDataFinished(reason)
  reason = reason
    or Failure(errors.ResponseDone("Response body fully received"), "")
  if self._state == "INITIAL" then
    self._state = "DEFERRED_CLOSE"
    self._reason = reason
    self._transport:_detach()
  elseif self._state == "CONNECTED" then
    self:_finish(reason)
  end
end

function Response:_finish(reason)
  self._state = "FINISHED"
  self._transport:_detach()
  local proto = self._protocol
  self._protocol = nil
  call(self, proto, "connectionLost", self._hookFailure and Failure(
    errors.ResponseFailed("the body protocol failed",
      { reasons = { self._hookFailure }, response = self }), "") or reason)
end

return M
