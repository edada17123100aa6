-- loom.web.server_request: the Request of loom.web's server, as
-- twisted.web.server.Request: what the client asked (method, uri, path,
-- args, headers, content, prepath/postpath, cookies) and the response
-- being made (setResponseCode, setHeader, write, finish). The channel
-- (loom.web.server) makes one per request and hands it to the resource.

local class = require "loom.class"
local defer = require "loom.defer"
local failure = require "loom.failure"
local log = require "loom.log"
local resource = require "loom.web.resource"

local M = {}

local NOT_DONE_YET = resource.NOT_DONE_YET

-- Reason phrases of the codes a server sends (RFC 9110).
local PHRASES = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK",
  [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [422] = "Unprocessable Content",
  [426] = "Upgrade Required", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}
M.PHRASES = PHRASES

-- %XX decoding; plus = true also turns + into a space (form encoding).
local function unquote(s, plus)
  if plus then
    s = s:gsub("+", " ")
  end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
M.unquote = unquote

-- Adds the pairs of a query string or urlencoded body to args (name ->
-- list of values), keeping blank values as Twisted's parse_qs(…, 1).
local function parseQuery(qs, args)
  for part in qs:gmatch("[^&]+") do -- not ";": Python 3.10+ parse_qs
    local k, v = part:match("^([^=]*)=(.*)$")
    if k == nil then
      k, v = part, ""
    end
    k = unquote(k, true)
    local list = args[k]
    if list == nil then
      list = {}
      args[k] = list
    end
    list[#list + 1] = unquote(v, true)
  end
  return args
end
M.parseQuery = parseQuery

-- One Date header value per second (a response's head is on the hot path).
local dateSecond, dateText
local function httpDate(t)
  t = math.floor(t or os.time())
  if t ~= dateSecond then
    dateSecond, dateText = t, os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
  end
  return dateText
end
M.httpDate = httpDate

local function checkHeaderText(what, s)
  if type(s) ~= "string" then
    s = tostring(s)
  end
  if s:find("[\r\n%z]") then
    error(what .. " must not contain CR, LF or NUL: " .. string.format("%q", s), 3)
  end
  return s
end

local Request = class.Object:extend({ __name = "Request" })
M.Request = Request
Request.code = 200
Request.finished = false
Request.startedWriting = false

-- channel: the connection's protocol; info: the parser's head.
function Request:init(channel, info)
  self.channel = channel
  self.site = channel.site
  self.transport = channel.transport
  self.method = info.method
  self.uri = info.url
  local major, minor = info.versionMajor, info.versionMinor
  self.clientproto = major == 1 and (minor == 1 and "HTTP/1.1"
    or minor == 0 and "HTTP/1.0") or string.format("HTTP/%d.%d", major, minor)
  self.rawHeaders = info.headers
  local headers = {}
  for i = 1, #info.headers do
    local h = info.headers[i]
    local k = h[1]:lower()
    local old = headers[k]
    headers[k] = old and (old .. (k == "cookie" and "; " or ", ") .. h[2]) or h[2]
  end
  self.headers = headers
  local target = self.uri
  if target:byte(1) ~= 47 then -- not "/...": an absolute-form target (a
    -- proxy's) is read for its path
    target = target:match("^%a[%w+.%-]*://[^/?]*(.*)$") or target
  end
  local path, args = target, {}
  local q = target:find("?", 1, true)
  if q then
    path = target:sub(1, q - 1)
    parseQuery(target:sub(q + 1), args)
  end
  if path == "" then
    path = "/"
  end
  self.path = path
  self.args = args
  self.prepath = {}
  local postpath
  if path == "/" then
    postpath = { "" }
  else
    postpath = {}
    local escaped = path:find("%", 1, true) ~= nil
    for seg in (path:sub(2) .. "/"):gmatch("([^/]*)/") do
      postpath[#postpath + 1] = escaped and unquote(seg) or seg
    end
  end
  self.postpath = postpath
  self.responseHeaders = {} -- lower-case name -> { name, value }
  self.cookies = nil -- Set-Cookie values, made by addCookie
  self.sentLength = 0
  self.content = ""
  self._notify = nil -- notifyFinish's Deferreds, made on first use
end

-- The request header name (any case), or nil.
function Request:getHeader(name)
  return self.headers[name:lower()]
end

function Request:getAllHeaders()
  return self.headers
end

function Request:getClientAddress()
  return self.transport:getPeer()
end

function Request:getHost()
  return self.transport:getHost()
end

-- True when the request came over TLS (a Site on listenSSL or ssl:, or
-- after startTLS), as Twisted's.
function Request:isSecure()
  local t = self.transport
  local version = t and t.getTLSVersion
  return version ~= nil and version(t) ~= nil
end

-- The request body as a string, whether it is held in memory or in a
-- temporary file (then read whole: mind its size).
function Request:getContent()
  local c = self.content
  if type(c) == "string" then
    return c
  end
  c:seek("set", 0)
  local s = c:read("a")
  c:seek("set", 0)
  return s
end

function Request:getCookie(name)
  local header = self.headers.cookie
  if header == nil then
    return nil
  end
  for pair in header:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then
      return v
    end
  end
  return nil
end

local COOKIE_ATTRS = { { "expires", "Expires" }, { "domain", "Domain" },
  { "path", "Path" }, { "max_age", "Max-Age" }, { "maxAge", "Max-Age" },
  { "comment", "Comment" }, { "sameSite", "SameSite" } }

-- addCookie(k, v, {expires=, domain=, path=, max_age=, comment=, secure=,
-- httpOnly=, sameSite=}): one Set-Cookie header of the response.
function Request:addCookie(k, v, opts)
  opts = opts or {}
  local parts = { checkHeaderText("cookie name", k) .. "="
    .. checkHeaderText("cookie value", v) }
  if k:find("[=;%s]") or tostring(v):find("[;]") then
    error("addCookie: the name must not contain =, ; or spaces, nor the value ;", 2)
  end
  for _, a in ipairs(COOKIE_ATTRS) do
    local val = opts[a[1]]
    if val ~= nil then
      parts[#parts + 1] = a[2] .. "=" .. checkHeaderText("cookie " .. a[1], val)
    end
  end
  if opts.sameSite ~= nil and not ({ lax = true, strict = true, none = true })[
      tostring(opts.sameSite):lower()] then
    error("addCookie: sameSite must be Lax, Strict or None", 2)
  end
  if opts.secure then parts[#parts + 1] = "Secure" end
  if opts.httpOnly then parts[#parts + 1] = "HttpOnly" end
  local cookies = self.cookies or {}
  self.cookies = cookies
  cookies[#cookies + 1] = table.concat(parts, "; ")
end

-- setResponseCode(code, phrase?): phrase defaults to the standard one.
function Request:setResponseCode(code, phrase)
  if math.type(code) ~= "integer" or code < 100 or code > 999 then
    error("setResponseCode: code must be an integer from 100 to 999, got "
      .. tostring(code), 2)
  end
  if self.startedWriting then
    error("setResponseCode: the response has already started", 2)
  end
  self.code = code
  self.phrase = phrase and checkHeaderText("phrase", phrase) or nil
end

function Request:setHeader(name, value)
  name = checkHeaderText("header name", name)
  if not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error("setHeader: invalid header name " .. string.format("%q", name), 2)
  end
  value = checkHeaderText("header value", value)
  local lname = name:lower()
  if lname == "content-length" and not value:match("^%d+$") then
    error("setHeader: Content-Length must be a number of bytes, got "
      .. string.format("%q", value), 2)
  end
  local old = self.responseHeaders[lname]
  if old then
    old[1], old[2] = name, value -- keeps its place
  else
    local seq = (self._headerSeq or 0) + 1
    self._headerSeq = seq
    self.responseHeaders[lname] = { name, value, seq }
  end
end

function Request:getResponseHeader(name)
  local h = self.responseHeaders[name:lower()]
  return h and h[2]
end

function Request:removeResponseHeader(name)
  self.responseHeaders[name:lower()] = nil
end

function Request:redirect(url)
  self:setResponseCode(302)
  self:setHeader("Location", url)
end

-- A Deferred that fires (nil) when the response is finished, or errbacks
-- with the reason when the connection is lost first.
function Request:notifyFinish()
  local d = defer.Deferred()
  if self.finished then
    d:callback(nil)
  elseif self._lostReason then
    d:errback(self._lostReason)
  else
    local list = self._notify or {}
    self._notify = list
    list[#list + 1] = d
  end
  return d
end

local function fireNotify(self, reason)
  local list = self._notify
  if list == nil then
    return
  end
  self._notify = nil
  for i = 1, #list do
    if reason then
      list[i]:errback(reason)
    else
      list[i]:callback(nil)
    end
  end
end

-- Codes whose response never has a body.
local function bodyless(code)
  return code == 204 or code == 304 or (code >= 100 and code < 200)
end

-- The status line and headers; decides how the body is delimited:
-- Content-Length when set, else chunked (HTTP/1.1) or the close (1.0).
-- Defaults go straight into the text (no table per header: this runs once
-- per response).
local function headOf(self)
  self.startedWriting = true
  local ch = self.channel
  local site = self.site
  local code = self.code
  local rh = self.responseHeaders
  local noBody = bodyless(code)
  local http10 = self.clientproto == "HTTP/1.0"
  local out = { http10 and "HTTP/1.0 " or "HTTP/1.1 ", tostring(code), " ",
    self.phrase or PHRASES[code] or "Unknown", "\r\n" }
  local n = 5
  rh["transfer-encoding"] = nil -- the framing is the server's to choose
  if noBody then
    rh["content-length"] = nil
    rh["transfer-encoding"] = nil
  elseif rh["content-length"] == nil and self.method ~= "HEAD" then
    if http10 then
      ch.persistent = false
    else
      self.chunked = true
      rh["transfer-encoding"] = nil
      out[n + 1] = "Transfer-Encoding: chunked\r\n"
      n = n + 1
    end
  end
  -- In the order they were first set (an insertion sort: a few entries).
  local list, m = {}, 0
  for _, h in pairs(rh) do
    local seq = h[3] or math.huge
    local j = m
    while j > 0 and (list[j][3] or math.huge) > seq do
      list[j + 1] = list[j]
      j = j - 1
    end
    list[j + 1] = h
    m = m + 1
  end
  for i = 1, m do
    local h = list[i]
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = h[1], ": ", h[2], "\r\n"
    n = n + 4
  end
  if rh["content-type"] == nil and not noBody then
    out[n + 1], out[n + 2] = "Content-Type: ", site.defaultContentType
    out[n + 3] = "\r\n"
    n = n + 3
  end
  if rh["date"] == nil then
    out[n + 1], out[n + 2], out[n + 3] = "Date: ", httpDate(), "\r\n"
    n = n + 3
  end
  if rh["server"] == nil and site.serverName then
    out[n + 1], out[n + 2], out[n + 3] = "Server: ", site.serverName, "\r\n"
    n = n + 3
  end
  if rh["connection"] == nil then
    if not ch.persistent then
      out[n + 1] = "Connection: close\r\n"
      n = n + 1
    elseif http10 then
      out[n + 1] = "Connection: keep-alive\r\n"
      n = n + 1
    end
  end
  local cookies = self.cookies
  if cookies then
    for i = 1, #cookies do
      out[n + 1], out[n + 2], out[n + 3] = "Set-Cookie: ", cookies[i], "\r\n"
      n = n + 3
    end
  end
  out[n + 1] = "\r\n"
  self._noBody = noBody or self.method == "HEAD"
  local declared = rh["content-length"]
  if declared and not self._noBody then
    self._declared = tonumber(declared[2])
  end
  return table.concat(out)
end

-- write(data): a piece of the body; the head goes first, in the same
-- write.
function Request:write(data)
  if self.finished then
    error("write: the request is already finished", 2)
  end
  if type(data) ~= "string" then
    error("write: data must be a string, got " .. type(data), 2)
  end
  if self._lostReason then
    return -- the client went away: ignored, as Twisted's transport does
  end
  if not self.startedWriting then
    -- Checked before the head is made, so the request can still fail cleanly.
    local cl = self.responseHeaders["content-length"]
    if cl and #data > tonumber(cl[2]) and self.method ~= "HEAD"
        and not bodyless(self.code) then
      error(string.format("write: %d bytes would pass the Content-Length of %s",
        #data, cl[2]), 2)
    end
  end
  local head = not self.startedWriting and headOf(self) or nil
  local ch = self.channel
  if #data == 0 or self._noBody then
    if head then
      ch:writeOut(head)
    end
    return
  end
  local declared = self._declared
  if declared and self.sentLength + #data > declared then
    -- More would be read by the client as the start of another response.
    error(string.format("write: %d bytes would pass the Content-Length of %d",
      self.sentLength + #data, declared), 2)
  end
  self.sentLength = self.sentLength + #data
  if self.chunked then
    local size = string.format("%x\r\n", #data)
    if head then
      ch:writeSequence({ head, size, data, "\r\n" })
    else
      ch:writeSequence({ size, data, "\r\n" })
    end
  elseif head then
    ch:writeSequence({ head, data })
  else
    ch:writeOut(data)
  end
end

-- finish(): the response is complete. Ignored once the client has gone
-- (notifyFinish says so); a second finish is a programming error.
function Request:finish()
  if self.finished then
    error("finish: the request is already finished", 2)
  end
  if self._lostReason then
    return
  end
  if not self.startedWriting then
    if self.responseHeaders["content-length"] == nil
        and not bodyless(self.code) and self.method ~= "HEAD" then
      self.responseHeaders["content-length"] = { "Content-Length", "0" }
    end
    self.channel:writeOut(headOf(self))
  end
  if self.chunked then
    self.channel:writeOut("0\r\n\r\n")
  elseif self._declared and self.sentLength < self._declared then
    -- A body cut short: only the close tells the client.
    log.prefixed(self.channel:logPrefix()).warn("%s %s: finished after %d of"
      .. " its %d bytes (Content-Length); closing the connection",
      self.method, log.safeString(self.uri), self.sentLength, self._declared)
    self.channel.persistent = false
  end
  self.finished = true
  self:_closeContent()
  self.site:log(self)
  fireNotify(self, nil)
  self.channel:requestDone(self)
end

-- registerProducer(p, streaming): a producer of the body (a file being
-- sent), paused and resumed with the connection's write queue.
function Request:registerProducer(producer, streaming)
  self.channel:registerRequestProducer(self, producer, streaming)
end

function Request:unregisterProducer()
  self.channel:unregisterRequestProducer(self)
end

function Request:_closeContent()
  if io.type(self.content) == "file" then
    self.content:close()
    self.content = ""
  end
end

-- The connection was lost before finish.
function Request:_connectionLost(reason)
  self._lostReason = reason
  self:_closeContent()
  fireNotify(self, reason)
end

-- A 500 for a render that raised or failed; the error is logged, never
-- sent. If the response has started, the connection is dropped instead.
function Request:processingFailed(f)
  log.prefixed(self.channel:logPrefix()).err(f, string.format(
    "Error rendering %s %s", self.method, log.safeString(self.uri)))
  if self.finished or self._lostReason then
    return
  end
  if self.startedWriting then
    self.channel:abort()
    return
  end
  self.responseHeaders = {}
  self.cookies = nil
  self.code, self.phrase = 500, nil
  self:setHeader("Content-Type", "text/html; charset=utf-8")
  local body = resource.errorPage(500, "Internal Server Error",
    "An error occurred rendering the requested page.")
  self:setHeader("Content-Length", #body)
  self:write(body)
  self:finish()
end

-- The resource's result: a string (the body), NOT_DONE_YET, or a
-- Deferred of a string.
function Request:_rendered(body)
  if self.finished or self._lostReason then
    return
  end
  if type(body) == "string" then
    if not self.startedWriting and self.responseHeaders["content-length"] == nil
        and not bodyless(self.code) then
      self.responseHeaders["content-length"] = { "Content-Length", tostring(#body) }
    end
    self:write(body)
    self:finish()
  elseif body ~= NOT_DONE_YET then
    self:processingFailed(failure.Failure(string.format(
      "render returned a %s; expected a string, web.NOT_DONE_YET or a Deferred"
      .. " of a string", type(body))))
  end
end

-- Finds the resource and renders it (Twisted's Request.process/render).
local function render(self)
  return self.site:getResourceFor(self):render(self)
end

-- Sends a render's result; what raises on the way (a write past the
-- Content-Length the resource set) fails the request like a render would.
local function deliver(self, body)
  local ok, f = xpcall(self._rendered, failure.handler, self, body)
  if not ok then
    self:processingFailed(f)
  end
end

function Request:process()
  local ok, body = xpcall(render, failure.handler, self)
  if not ok then
    self:processingFailed(body)
  elseif defer.isDeferred(body) then
    body:addCallbacks(function(result)
      deliver(self, result)
    end, function(f)
      self:processingFailed(f)
    end)
  else
    deliver(self, body)
  end
end

return M
