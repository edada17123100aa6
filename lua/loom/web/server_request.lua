-- loom.web.server_request: the Request of loom.web's server, as
-- twisted.web.server.Request: what the client asked (method, uri, path,
-- args, headers, content, prepath/postpath, cookies) and the response
-- being made (setResponseCode, setHeader, write, finish). The channel
-- (loom.web.server) makes one per request and hands it to the resource.

local base = require "loom.reactor.base"
local class = require "loom.class"
local core = require "loom.core"
local defer = require "loom.defer"
local failure = require "loom.failure"
local log = require "loom.log"
local resource = require "loom.web.resource"
local strings = require "loom.strings"

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

-- unquote(s): s with %XX decoded (a path segment); parseQuery(qs, args):
-- adds the pairs of a query string or urlencoded body to args (name ->
-- list of values), keeping blank values as Twisted's parse_qs(…, 1);
-- pairs are split at & (not ";": Python 3.10+ parse_qs) and at their
-- first =, + read as a space. Both in C (bindings/query.c), which the fast
-- lane calls too.
local unquote = core.httpUnquote
M.unquote = unquote
local parseQuery = core.httpParseQuery
M.parseQuery = parseQuery

-- One Date header value per second (a response's head is on the hot path),
-- as Twisted's Site caches it.
local dateSecond, dateText, dateLine = -1, nil, nil
local function httpDate(t)
  t = t and math.floor(t) or os.time()
  if t ~= dateSecond then
    dateSecond, dateText = t, os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
    dateLine = "Date: " .. dateText .. "\r\n"
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
Request.sentLength = 0
Request.content = ""

local PROTOCOLS = { [0] = "HTTP/1.0", [1] = "HTTP/1.1" }
local COOKIE = "cookie"

-- Header names in lower case, as met (bounded: clients choose them).
local lowerNames, nLower = {}, 0
local function lowerHeaderName(name)
  local l = lowerNames[name]
  if l == nil then
    l = name:lower()
    if nLower < 1024 then
      lowerNames[name], nLower = l, nLower + 1
    end
  end
  return l
end

-- The fields of the request for channel and info (the parser's head), as
-- one table made in one go: a table grown field by field is rehashed on
-- the way, and this runs once per request.
local function requestFields(channel, info)
  local target = info.url
  local major, minor = info.versionMajor, info.versionMinor
  local raw = info.headers
  local headers = {}
  for i = 1, #raw do
    local h = raw[i]
    local k = lowerNames[h[1]] or lowerHeaderName(h[1])
    local old = headers[k]
    headers[k] = old and (old .. (k == COOKIE and "; " or ", ") .. h[2]) or h[2]
  end
  local path, args, postpath = target, {}, nil
  if target == "/" then
    postpath = { "" }
  else
    if target:byte(1) ~= 47 then -- not "/...": an absolute-form target (a
      -- proxy's) is read for its path
      target = target:match("^%a[%w+.%-]*://[^/?]*(.*)$") or target
      path = target
    end
    local q = target:find("?", 1, true)
    if q then
      path = target:sub(1, q - 1)
      parseQuery(target:sub(q + 1), args)
    end
    if path == "" then
      path = "/"
    end
    if path == "/" then
      postpath = { "" }
    else
      postpath = {}
      local escaped = path:find("%", 1, true) ~= nil
      for seg in (path:sub(2) .. "/"):gmatch("([^/]*)/") do
        postpath[#postpath + 1] = escaped and unquote(seg) or seg
      end
    end
  end
  return {
    channel = channel, site = channel.site, transport = channel.transport,
    method = info.method, uri = info.url,
    clientproto = major == 1 and PROTOCOLS[minor]
      or string.format("HTTP/%d.%d", major, minor),
    rawHeaders = raw, headers = headers, path = path, args = args,
    prepath = { nil, nil, nil, nil }, -- (room for a traversal 4 deep)
    postpath = postpath,
    -- the response's fields in the order first set, three slots each
    -- (name, value, lower-case name) from 1, and lower-case name -> the
    -- field's number (a removed field keeps its slots, not its number);
    -- made with room for two fields (6 slots, 2 names), as the fast lane
    -- makes it: growing it by rehashing cost more than the rest of a
    -- second setHeader
    responseHeaders = { nil, nil, nil, nil, nil, nil, a = nil, b = nil },
    startedWriting = false, finished = false, sentLength = 0,
  } -- 16 fields: a 16-slot table (the response's declared length is the
    -- channel's _declared, one response being made at a time)
end

-- Request:new(channel, info), also for a requestFactory subclass: one
-- with an init of its own (which may call Request.init as its super) gets
-- it called as usual.
function Request.new(cls, channel, info)
  local init = cls.init
  if init == Request.init then
    return setmetatable(requestFields(channel, info), cls)
  end
  local self = setmetatable({}, cls)
  if init then
    init(self, channel, info)
  end
  return self
end

-- channel: the connection's protocol; info: the parser's head.
function Request:init(channel, info)
  for k, v in next, requestFields(channel, info) do
    self[k] = v
  end
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
    local k, v = strings.splitFirst(pair, "=")
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
      val = checkHeaderText("cookie " .. a[1], val)
      if val:find(";", 1, true) then -- (it would add an attribute of its own)
        error("addCookie: " .. a[1] .. " must not contain ;: "
          .. string.format("%q", val), 2)
      end
      parts[#parts + 1] = a[2] .. "=" .. val
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

-- Header names already checked, and their lower case (bounded: names
-- usually come from code, but a resource may echo a client's).
local checkedNames, nChecked = {}, 0
local MAX_CHECKED = 512

local function lowerName(name)
  local lname = checkedNames[name]
  if lname then
    return lname
  end
  name = checkHeaderText("header name", name)
  if not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error("setHeader: invalid header name " .. string.format("%q", name), 3)
  end
  lname = name:lower()
  if nChecked < MAX_CHECKED then
    checkedNames[name], nChecked = lname, nChecked + 1
  end
  return lname
end

-- Header values already checked (bounded as the names).
local checkedValues, nValues = {}, 0

function Request:setHeader(name, value)
  local lname = checkedNames[name] or lowerName(name)
  if not checkedValues[value] then
    if type(value) ~= "string" then
      value = tostring(value)
    end
    if value:find("[\r\n%z]") then
      error("header value must not contain CR, LF or NUL: " .. string.format("%q", value), 2)
    end
    if nValues < MAX_CHECKED and #value <= 256 then
      checkedValues[value], nValues = true, nValues + 1
    end
  end
  if lname == "content-length" and not value:match("^%d+$") then
    error("setHeader: Content-Length must be a number of bytes, got "
      .. string.format("%q", value), 2)
  end
  local rh = self.responseHeaders
  local i = rh[lname]
  if i then
    rh[3 * i - 2], rh[3 * i - 1] = name, value -- keeps its place
  else
    local n = #rh
    rh[n + 1], rh[n + 2], rh[n + 3] = name, value, lname
    rh[lname] = n // 3 + 1
  end
end

function Request:getResponseHeader(name)
  local rh = self.responseHeaders
  local i = rh[name:lower()]
  return i and rh[3 * i - 1]
end

-- The Content-Length the resource set (a string), or nil.
local function declaredLength(self)
  local rh = self.responseHeaders
  local i = rh["content-length"]
  return i and rh[3 * i - 1]
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
  if not list then
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

M.fireNotify = fireNotify

-- Codes whose response never has a body (codes are 100 to 999).
local function bodyless(code)
  return code == 204 or code == 304 or code < 200
end

local concat = table.concat

-- Lines of a head made once and reused (bounded: a resource may choose
-- codes, lengths and names freely).
local MAX_CACHED = 1024
local lineCache, nLines = {}, 0
local function cachedLine(prefix, value)
  local byValue = lineCache[prefix]
  local line = byValue[value]
  if line == nil then
    line = prefix .. value .. "\r\n"
    if nLines < MAX_CACHED then
      byValue[value], nLines = line, nLines + 1
    end
  end
  return line
end
for _, prefix in ipairs({ "HTTP/1.1 ", "HTTP/1.0 ", "Content-Length: ",
  "Content-Type: ", "Server: " }) do
  lineCache[prefix] = {}
end
local status11, lengthLines = lineCache["HTTP/1.1 "], lineCache["Content-Length: "]
local serverLines = lineCache["Server: "]

local function statusLine(self, code, http10)
  local version = http10 and "HTTP/1.0 " or "HTTP/1.1 "
  local phrase = self.phrase
  if phrase then
    return version .. code .. " " .. phrase .. "\r\n"
  end
  local line = lineCache[version][code]
  if line == nil then
    line = cachedLine(version, code .. " " .. (PHRASES[code] or "Unknown"))
    if nLines < MAX_CACHED then
      lineCache[version][code] = line
    end
  end
  return line
end

-- The status line and headers, with body (when given) after them in the
-- same string; decides how the body is delimited: Content-Length when set
-- (or length, the size of a body the server knows whole), else chunked
-- (HTTP/1.1) or the close (HTTP/1.0). One concatenation of a few strings,
-- most of them cached lines: this runs once per response.
local function headOf(self, length, body)
  self.startedWriting = true
  local ch = self.channel
  local site = self.site
  local code = self.code
  local rh = self.responseHeaders
  local noBody = code == 204 or code == 304 or code < 200
  local http10 = self.clientproto == "HTTP/1.0"
  local head = self.method == "HEAD"
  if rh["transfer-encoding"] then
    rh["transfer-encoding"] = nil -- the framing is the server's to choose
  end
  local framing = ""
  local declared = declaredLength(self)
  if noBody then
    rh["content-length"] = nil
    declared = nil
  elseif declared then
    declared = tonumber(declared)
  elseif length then -- (a HEAD's too: the length of the body it would get)
    declared = length
    framing = lengthLines[length] or cachedLine("Content-Length: ", length)
  elseif not head then
    if http10 then
      ch.persistent = false
    else
      self.chunked = true
      framing = "Transfer-Encoding: chunked\r\n"
    end
  end
  local fields = ""
  for j = 3, #rh, 3 do
    if rh[rh[j]] == j // 3 then -- not removed since
      fields = fields .. rh[j - 2] .. ": " .. rh[j - 1] .. "\r\n"
    end
  end
  local ctype = ""
  if not noBody and rh["content-type"] == nil then
    ctype = cachedLine("Content-Type: ", site.defaultContentType)
  end
  local date = ""
  if rh["date"] == nil then
    -- The clock of the read being answered, if it is still going on.
    local now = ch._feeding and ch._wallClock and ch._now or os.time()
    if now - dateSecond >= 1 or now < dateSecond then
      httpDate(now)
    end
    date = dateLine
  end
  local server = site.serverName
  if server and rh["server"] == nil then
    server = serverLines[server] or cachedLine("Server: ", server)
  else
    server = ""
  end
  local conn = ""
  if rh["connection"] == nil then
    if not ch.persistent then
      conn = "Connection: close\r\n"
    elseif http10 then
      conn = "Connection: keep-alive\r\n"
    end
  end
  local cookies = self.cookies
  if cookies then
    local list = {}
    for i = 1, #cookies do
      list[i] = "Set-Cookie: " .. cookies[i] .. "\r\n"
    end
    cookies = concat(list)
  else
    cookies = ""
  end
  if noBody or head then
    self._noBody = true
    ch._declared = false
  else
    ch._declared = declared or false
  end
  local status = not self.phrase and not http10 and status11[code]
    or statusLine(self, code, http10)
  return status .. framing .. fields .. ctype .. date
    .. server .. conn .. cookies .. "\r\n" .. (body or "")
end

-- Output is held until the end of the render (or of the current turn of
-- the reactor, or finish), so that a response goes out as one write: a
-- head, a short body and a chunked body's end never cross the network as
-- separate segments. Past FLUSH_AT bytes held it is written at once.
local FLUSH_AT = 64 * 1024

-- What is held belongs to the channel (one response at a time is
-- being made on it): ch._out is a string or a list, ch._outSize its size.
local function flush(ch)
  local p = ch._out
  if p then
    ch._out = false
    if type(p) == "table" then
      p = concat(p)
    end
    if not ch.dead then
      ch.transport:write(p)
    end
  end
end
M.flush = flush

local function flushLater(ch)
  ch._flushCall = false
  flush(ch)
end

local function scheduleFlush(ch)
  if not ch._flushCall then
    ch._flushCall = true
    base.callLater(0, flushLater, ch)
  end
end

local function hold(self, s)
  local ch = self.channel
  local p = ch._out
  if not p then
    if #s >= FLUSH_AT then
      ch:writeOut(s)
      return
    end
    ch._out, ch._outSize = s, #s
    if not ch._direct then
      scheduleFlush(ch)
    end
    return
  end
  if #s >= FLUSH_AT then -- not copied: what is held goes first, then s
    flush(ch)
    ch:writeOut(s)
    return
  end
  if type(p) == "string" then
    p = { p }
    ch._out = p
  end
  p[#p + 1] = s
  local size = ch._outSize + #s
  ch._outSize = size
  if size >= FLUSH_AT then
    flush(ch)
  end
end

local function checkLength(self, more)
  local declared = self.channel._declared
  if declared and self.sentLength + more > declared then
    -- More would be read by the client as the start of another response.
    error(string.format("write: %d bytes would pass the Content-Length of %d",
      self.sentLength + more, declared), 3)
  end
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
  local len = #data
  if not self.startedWriting then
    -- Checked before the head is made, so the request can still fail cleanly.
    local cl = declaredLength(self)
    if cl and len > tonumber(cl) and self.method ~= "HEAD"
        and not bodyless(self.code) then
      error(string.format("write: %d bytes would pass the Content-Length of %s",
        len, cl), 2)
    end
    local head = headOf(self)
    if len == 0 or self._noBody then
      hold(self, head)
      return
    end
    self.sentLength = len
    if len >= FLUSH_AT then
      hold(self, self.chunked and head .. string.format("%x\r\n", len) or head)
      hold(self, data)
      if self.chunked then
        hold(self, "\r\n")
      end
    elseif self.chunked then
      hold(self, head .. string.format("%x\r\n", len) .. data .. "\r\n")
    else
      hold(self, head .. data)
    end
    return
  end
  if len == 0 or self._noBody then
    return
  end
  checkLength(self, len)
  self.sentLength = self.sentLength + len
  if self.chunked then
    hold(self, string.format("%x\r\n", len))
    hold(self, data)
    hold(self, "\r\n")
  else
    hold(self, data)
  end
end

-- The response is complete: what is held goes out (with a chunked body's
-- end) as one write, the request is logged and the channel told.
local function finished(self)
  if self.chunked then
    hold(self, "0\r\n\r\n")
  elseif self.channel._declared and self.sentLength < self.channel._declared then
    -- A body cut short: only the close tells the client.
    log.prefixed(self.channel:logPrefix()).warn("%s %s: finished after %d of"
      .. " its %d bytes (Content-Length); closing the connection",
      self.method, log.safeString(self.uri), self.sentLength, self.channel._declared)
    self.channel.persistent = false
  end
  flush(self.channel)
  self.finished = true
  local content = self.content
  if content ~= "" and io.type(content) == "file" then
    self:_closeContent()
  end
  self.site:log(self)
  if self._notify then
    fireNotify(self, nil)
  end
  self.channel:requestDone(self)
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
    hold(self, headOf(self, self.method ~= "HEAD" and 0 or nil))
  end
  finished(self)
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
    self.channel._out = false
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
-- Deferred of a string. A string is the whole response: head and body
-- are one write.
function Request:_rendered(body)
  if self.finished and not self._lostReason and type(body) == "string"
      and #body > 0 then -- (Twisted's write after finish raises)
    log.prefixed(self.channel:logPrefix()).warn(
      "%s %s: the render returned %d bytes after finish(); dropped",
      self.method, self.uri, #body)
  end
  if self.finished or self._lostReason then
    return
  end
  if type(body) == "string" then
    if not self.startedWriting then
      local len = #body
      local cl = declaredLength(self)
      if cl and len > tonumber(cl) and self.method ~= "HEAD"
          and not bodyless(self.code) then
        error(string.format("write: %d bytes would pass the Content-Length of %s",
          len, cl), 2)
      end
      local code = self.code
      if len == 0 or self.method == "HEAD" or code < 200 or code == 204
          or code == 304 then
        hold(self, headOf(self, len))
      elseif len >= FLUSH_AT then
        hold(self, headOf(self, len))
        self.sentLength = len
        hold(self, body)
      else
        self.sentLength = len
        local ch = self.channel
        local out = headOf(self, len, body)
        if ch._out then
          hold(self, out)
        elseif not ch.dead then -- the whole response: nothing to hold it for
          ch.transport:write(out)
        end
      end
    else
      self:write(body)
    end
    finished(self)
  elseif body ~= NOT_DONE_YET then
    self:processingFailed(failure.Failure(string.format(
      "render returned a %s; expected a string, web.NOT_DONE_YET or a Deferred"
      .. " of a string", type(body))))
  end
end

-- Finds the resource and renders it (Twisted's Request.process/render).
local function findAndRender(self)
  local body = self.site:getResourceFor(self):render(self)
  return body -- (not a tail call: a traceback shows this frame as loom's)
end
M.findAndRender = findAndRender

-- Sends a Deferred render's result.
local function deliver(self, body)
  local ok, f = xpcall(self._rendered, failure.handler, self, body)
  if not ok then
    self:processingFailed(f)
  end
end

-- The rest of process once the resource has rendered (ok and result as
-- xpcall gives them): a result there at once is sent; what raises on the
-- way (a write past the Content-Length the resource set) fails the request
-- as a render would; a Deferred is waited for. The HTTP channel's fast
-- lane (bindings/http_server.c) comes here with a result it does not send
-- itself.
function Request:_processRendered(ok, body)
  local ch = self.channel
  local d
  if ok then
    if type(body) ~= "string" and defer.isDeferred(body) then
      d = body
    else
      ok, body = xpcall(self._rendered, failure.handler, self, body)
    end
  end
  ch._direct = false
  if not ok then
    self:processingFailed(body)
  elseif d then
    d:addCallbacks(function(result)
      deliver(self, result)
    end, function(f)
      self:processingFailed(f)
    end)
  end
  if ch._out then
    scheduleFlush(ch) -- NOT_DONE_YET wrote: it goes out this turn
  end
end

function Request:process()
  self.channel._direct = true -- output waits for the end of the render
  self:_processRendered(xpcall(findAndRender, failure.handler, self))
end

return M
