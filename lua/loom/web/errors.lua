-- loom.web.errors: the HTTP client's error classes, as twisted.web.error
-- and twisted.web._newclient name them (re-exported by loom.web).
--
-- Connection failures are loom.error's own (DNSLookupError,
-- ConnectionRefusedError, TimeoutError); what goes wrong in an exchange is
-- a ResponseFailed (or one of its kinds) whose `reasons` lists the
-- Failures behind it, and a status the caller did not want is an Error.

local err = require "loom.error"
local log = require "loom.log"

local new = err.new
local M = {}

-- An HTTP status the caller treats as a failure (getPage: >= 400):
-- fields status (number), phrase, body; the message is "404 Not Found".
M.Error = new("web.Error")
-- A redirect RedirectAgent will not follow: a 301/302/307/308 to a
-- method other than GET or HEAD (field location: the URL requested).
M.PageRedirect = new("PageRedirect", M.Error)
-- More redirects than RedirectAgent's redirectLimit (a loop).
M.InfiniteRedirection = new("InfiniteRedirection", M.Error)
-- A redirect status without a Location header.
M.RedirectWithNoLocation = new("RedirectWithNoLocation", M.Error)

-- A URL the client cannot use (malformed, an unsupported scheme).
M.InvalidURL = new("InvalidURL")
M.SchemeNotSupported = new("SchemeNotSupported", M.InvalidURL)

-- The connection ended, or the server's answer was bad, before the whole
-- response arrived. `reasons` is a list of Failures; `response` the
-- response when its head had arrived.
M.ResponseFailed = new("ResponseFailed")
-- ... and not one byte of a response had arrived (a pooled connection the
-- server had closed: an idempotent request is retried once).
M.ResponseNeverReceived = new("ResponseNeverReceived", M.ResponseFailed)
-- A body larger than what the reader accepts (readBody's maxSize).
M.BodyTooLarge = new("BodyTooLarge", M.ResponseFailed)
-- The request could not be written (connection lost while sending it).
M.RequestTransmissionFailed = new("RequestTransmissionFailed")
-- The request body's producer failed, or produced the wrong length.
M.RequestGenerationFailed = new("RequestGenerationFailed")
-- A request given to a connection that is busy or closed.
M.RequestNotSent = new("RequestNotSent")

-- Reasons given to a body protocol's connectionLost (as Twisted's).
-- ResponseDone: the whole body arrived.
M.ResponseDone = new("ResponseDone")
-- The body was delimited by the server closing the connection (HTTP/1.0
-- style, no length): complete as far as anyone can tell.
M.PotentialDataLoss = new("PotentialDataLoss")

-- The wrappers name what is inside them, so a logged ResponseFailed says
-- why: "ResponseFailed: connection lost (ConnectionLost: ...)".
local function describeWrapper(self)
  local name = rawget(getmetatable(self), "__name")
  local parts = {}
  for i, r in ipairs(rawget(self, "reasons") or {}) do
    parts[i] = log.safeString(type(r) == "table" and r.value or r)
  end
  local message = rawget(self, "message")
  local text = message and (name .. ": " .. log.safeString(message)) or name
  if #parts > 0 then
    text = text .. " [" .. table.concat(parts, "; ") .. "]"
  end
  return text
end
for _, cls in ipairs({ M.ResponseFailed, M.ResponseNeverReceived,
    M.BodyTooLarge, M.RequestTransmissionFailed,
    M.RequestGenerationFailed }) do
  cls.__tostring = describeWrapper
end

-- web.Error(status, phrase, body): the value getPage errbacks with.
function M.statusError(status, phrase, body, cls)
  return (cls or M.Error)(string.format("%d %s", status, phrase or ""), {
    status = status, phrase = phrase, body = body })
end

return M
