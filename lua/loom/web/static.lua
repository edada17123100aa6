-- loom.web.static: File, a resource serving a directory (or one file), as
-- twisted.web.static.File, and safe by default: no path leaves the
-- directory (`..`, `%2e%2e`, encoded slashes and backslashes, NUL, and
-- links that resolve outside it are all 404), no listing unless asked.
--
--   root:putChild("static", web.File("/srv/www", { listing = false }))
--
-- GET and HEAD only; Content-Type by the requested name's extension,
-- Last-Modified and If-Modified-Since (304), a single byte Range (206,
-- 416) and If-Range, files sent in chunks under the connection's
-- backpressure, a few at a time so other connections get their turn.
-- Names starting with "." (.git, .env) are not served unless dotfiles.

local core = require "loom.core"
local log = require "loom.log"
local base = require "loom.reactor.base"
local resource = require "loom.web.resource"
local requestModule = require "loom.web.server_request"
local trim = require("loom.strings").trim

local M = {}

local httpDate = requestModule.httpDate
local escapeHTML = resource.escapeHTML

M.CONTENT_TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css", js = "text/javascript", mjs = "text/javascript",
  json = "application/json", txt = "text/plain; charset=utf-8",
  md = "text/markdown; charset=utf-8", csv = "text/csv", xml = "application/xml",
  svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg",
  jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
  ico = "image/x-icon", pdf = "application/pdf", wasm = "application/wasm",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf",
  mp3 = "audio/mpeg", mp4 = "video/mp4", webm = "video/webm",
  zip = "application/zip", gz = "application/gzip", tar = "application/x-tar",
  lua = "text/plain; charset=utf-8",
}

local CHUNK = 64 * 1024
-- Chunks written before the reactor gets its turn: a reader as fast as
-- the kernel (loopback, a proxy) never fills the write queue, so the
-- producer is never paused and one download would hold every other
-- connection and timer until it ends.
local CHUNKS_A_TURN = 4

local File = resource.Resource:extend({ __name = "File", isLeaf = true })
M.File = File

-- File(path, {listing=, dotfiles=, indexNames=, contentTypes=,
-- defaultType=}): path must be a directory or a file; it is resolved once
-- (links included) and is the boundary.
function File:init(path, opts)
  resource.Resource.init(self)
  opts = opts or {}
  if type(path) ~= "string" then
    error("File: path must be a string", 3)
  end
  local real, _, msg = core.realpath(path)
  if not real then
    error("File: " .. msg, 3)
  end
  local st = core.stat(real)
  if not st or (st.type ~= "directory" and st.type ~= "file") then
    error(string.format("File: %s is not a directory or a regular file", path), 3)
  end
  self.path = real
  self.name = path:match("([^/]+)/*$") or real -- (its type, when it is a file)
  self.listing = opts.listing == true
  self.dotfiles = opts.dotfiles == true
  self.indexNames = opts.indexNames or { "index.html" }
  self.defaultType = opts.defaultType or "application/octet-stream"
  local types = {}
  for k, v in pairs(M.CONTENT_TYPES) do types[k] = v end
  for k, v in pairs(opts.contentTypes or {}) do types[k:lower()] = v end
  self.contentTypes = types
end

-- The segments below the root, or nil when one of them could name
-- something outside it or is not a plain name (or, unless dotfiles, a
-- hidden one).
local function safeSegments(postpath, dotfiles)
  local rel = {}
  for i, seg in ipairs(postpath) do
    if seg == "" then
      if i ~= #postpath then
        return nil -- a//b
      end
    elseif seg == "." or seg == ".." or seg:find("[/\\%z]")
        or (not dotfiles and seg:byte(1) == 46) then
      return nil
    else
      rel[#rel + 1] = seg
    end
  end
  return rel
end
M.safeSegments = safeSegments

local function inside(real, root)
  return root == "/" or real == root or real:sub(1, #root + 1) == root .. "/"
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function daysFromCivil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7,
  Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

local MONTH_DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- An HTTP date as epoch seconds, or nil: the three forms RFC 9110 5.6.7
-- says a recipient takes, IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
-- RFC 850's ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime's ("Sun Nov
-- 6 08:49:37 1994"); what follows a ";" (old browsers' "; length=") is
-- left out, as Twisted does. Fields out of range are no date.
local function parseHttpDate(s)
  s = trim(s:match("^[^;]*"))
  local d, mon, y, hh, mm, ss = s:match(
    "^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, hh, mm, ss = s:match(
      "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then -- RFC 9110: a two-digit year more than 50 years on is past
      y = tonumber(y) + 2000
      if y > tonumber(os.date("!%Y")) + 50 then
        y = y - 100
      end
    end
  end
  if not d then
    mon, d, hh, mm, ss, y = s:match(
      "^%a%a%a (%a%a%a) ([%d ]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = MONTHS[mon or ""]
  if not m then
    return nil
  end
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm),
    tonumber(ss)
  if d < 1 or d > MONTH_DAYS[m] or hh > 23 or mm > 59 or ss > 60
      or (m == 2 and d == 29 and (y % 4 ~= 0 or (y % 100 == 0 and y % 400 ~= 0))) then
    return nil
  end
  return daysFromCivil(y, m, d) * 86400 + hh * 3600 + mm * 60 + math.min(ss, 59)
end
M.parseHttpDate = parseHttpDate

-- The one range of a Range header, as first, last (0-based, inclusive);
-- nil to send the whole file (no header, several ranges, not bytes), or
-- false when unsatisfiable.
local function parseRange(header, size)
  if header == nil then
    return nil
  end
  local a, b = header:match("^%s*bytes%s*=%s*(%d*)%s*%-%s*(%d*)%s*$")
  if a == nil or (a == "" and b == "") then
    return nil
  end
  local first, last
  if a == "" then -- the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then
      return false
    end
    first, last = math.max(size - n, 0), size - 1
  else
    first = tonumber(a)
    last = b == "" and size - 1 or math.min(tonumber(b), size - 1)
    if first >= size or (b ~= "" and tonumber(b) < first) then
      return false
    end
  end
  return first, last
end
M.parseRange = parseRange

function File:contentTypeOf(name)
  local ext = name:match("%.([^./]+)$")
  return ext and self.contentTypes[ext:lower()] or self.defaultType
end

-- Sends [first, last] of an open file in chunks, as a streaming producer:
-- paused while the connection's write queue is full, and CHUNKS_A_TURN
-- chunks at a time, the rest on the reactor's next turn.
local Sender = {}
Sender.__index = Sender

function Sender:resumeProducing()
  self.paused = false
  for _ = 1, CHUNKS_A_TURN do
    if self.paused or self.done then
      return
    end
    local n = math.min(CHUNK, self.remaining)
    local data = n > 0 and self.file:read(n) or nil
    if data == nil or #data == 0 then
      self:_finish()
      return
    end
    self.remaining = self.remaining - #data
    self.request:write(data)
    if self.remaining <= 0 then
      self:_finish()
    end
  end
  self:_later()
end

-- The next chunks on the reactor's next turn (once, however often resumed).
function Sender:_later()
  if self.paused or self.done or self.scheduled then
    return
  end
  self.scheduled = true
  base.callLater(0, function()
    self.scheduled = false
    if not self.done and not self.paused then
      self:resumeProducing()
    end
  end)
end

function Sender:pauseProducing()
  self.paused = true
end

function Sender:stopProducing()
  self.done = true
  self.file:close()
end

function Sender:_finish()
  if self.done then
    return
  end
  self.done = true
  self.file:close()
  self.request:unregisterProducer()
  self.request:finish()
end

local function sendFile(request, f, first, last)
  local s = setmetatable({ request = request, file = f,
    remaining = last - first + 1, paused = false, done = false }, Sender)
  f:seek("set", first)
  request:registerProducer(s, true)
  s:_later()
  return resource.NOT_DONE_YET
end

local function notFound(request)
  return resource.NoResource():render(request)
end

-- Why a file that stat found could not be opened: 403 for permissions,
-- 404 when it went away meanwhile, else (out of descriptors, an I/O
-- error) a logged 500, as Twisted re-raises all but EACCES.
local function openFailed(request, path, msg, errno)
  if errno == 13 or errno == 1 then -- EACCES, EPERM
    return resource.ForbiddenResource():render(request)
  elseif errno == 2 or errno == 20 then -- ENOENT, ENOTDIR
    return notFound(request)
  end
  log.error("File: cannot open %s: %s", path, tostring(msg))
  request:setResponseCode(500)
  request:setHeader("Content-Type", "text/html; charset=utf-8")
  return resource.errorPage(500, "Internal Server Error",
    "The file could not be opened.")
end

-- Whether a Range may be honoured: no If-Range, or one naming the file's
-- Last-Modified exactly (RFC 9110 13.1.5). An entity tag never matches
-- (File sends none), so the whole file goes, not a piece of another one.
local function ifRangeHolds(request, mtime)
  local v = request:getHeader("if-range")
  return v == nil or parseHttpDate(v) == mtime
end

-- name: the requested name (its extension says the type, as Twisted's
-- does, whatever a link resolves to).
function File:renderFile(request, path, st, name)
  local f, msg, errno = io.open(path, "rb")
  if not f then
    return openFailed(request, path, msg, errno)
  end
  local mtime = math.floor(st.mtime) -- HTTP dates have whole seconds
  request:setHeader("Last-Modified", httpDate(mtime))
  request:setHeader("Accept-Ranges", "bytes")
  request:setHeader("X-Content-Type-Options", "nosniff")
  request:setHeader("Content-Type", self:contentTypeOf(name or path))
  local ims = request:getHeader("if-modified-since")
  local since = ims and parseHttpDate(ims)
  if since and mtime <= since then
    f:close()
    request:setResponseCode(304)
    return ""
  end
  local size = st.size
  local first, last
  if ifRangeHolds(request, mtime) then
    first, last = parseRange(request:getHeader("range"), size)
  end
  if first == false then
    f:close()
    request:setResponseCode(416)
    request:setHeader("Content-Range", "bytes */" .. size)
    request:setHeader("Content-Type", "text/plain; charset=utf-8")
    return "range not satisfiable\n"
  elseif first then
    request:setResponseCode(206)
    request:setHeader("Content-Range", string.format("bytes %d-%d/%d", first, last, size))
  else
    first, last = 0, size - 1
  end
  request:setHeader("Content-Length", tostring(last - first + 1))
  if request.method == "HEAD" or last < first then
    f:close()
    request:finish()
    return resource.NOT_DONE_YET
  end
  return sendFile(request, f, first, last)
end

local function quoteSegment(name)
  return (name:gsub("[^%w%-._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

function File:renderListing(request, path)
  local names, msg = core.listDir(path)
  if names == nil then -- (not an empty listing: it is not one)
    log.warn("File: cannot list %s: %s", path, tostring(msg))
    return resource.ForbiddenResource("The directory cannot be read."):render(request)
  end
  local title = "Directory listing for " .. core.httpUnquote(request.path)
  local out = { "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>",
    escapeHTML(title), "</title></head><body><h1>", escapeHTML(title), "</h1><ul>" }
  for _, name in ipairs(names) do
    if self.dotfiles or name:byte(1) ~= 46 then
      local st = core.stat(path .. "/" .. name)
      local suffix = st and st.type == "directory" and "/" or ""
      out[#out + 1] = string.format('<li><a href="%s%s">%s%s</a></li>',
        quoteSegment(name), suffix, escapeHTML(name), suffix)
    end
  end
  out[#out + 1] = "</ul></body></html>\n"
  request:setHeader("Content-Type", "text/html; charset=utf-8")
  return table.concat(out)
end

function File:render(request)
  if request.method ~= "GET" and request.method ~= "HEAD" then
    request:setResponseCode(405)
    request:setHeader("Allow", "GET, HEAD")
    request:setHeader("Content-Type", "text/html; charset=utf-8")
    return resource.errorPage(405, "Method Not Allowed",
      "Only GET and HEAD are allowed here.")
  end
  local rel = safeSegments(request.postpath, self.dotfiles)
  if rel == nil then
    return notFound(request)
  end
  local target = self.path
  if #rel > 0 then
    target = (self.path == "/" and "" or self.path) .. "/" .. table.concat(rel, "/")
  end
  local real = core.realpath(target)
  local st = real and core.stat(real)
  if not st or not inside(real, self.path) then
    return notFound(request)
  end
  if st.type == "directory" then
    if request.path:sub(-1) ~= "/" then -- (the query kept, as Twisted's)
      request:setResponseCode(301)
      request:setHeader("Location", request.path .. "/"
        .. (request.uri:match("%?.*$") or ""))
      return ""
    end
    for _, index in ipairs(self.indexNames) do
      local ireal = core.realpath(real .. "/" .. index)
      local ist = ireal and inside(ireal, self.path) and core.stat(ireal)
      if ist and ist.type == "file" then
        return self:renderFile(request, ireal, ist, index)
      end
    end
    if self.listing then
      return self:renderListing(request, real)
    end
    return resource.ForbiddenResource("Directory listing is off."):render(request)
  elseif st.type ~= "file" or (#rel > 0 and request.postpath[#request.postpath] == "") then
    return notFound(request) -- (a file is not a directory: "/a.txt/" is 404)
  end
  return self:renderFile(request, real, st, rel[#rel] or self.name)
end

return M
