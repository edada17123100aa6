-- loom.web.client: the HTTP/1.1 client, as twisted.web.client: Agent (with
-- a keep-alive HTTPConnectionPool), readBody, RedirectAgent and the short
-- form getPage, over TCP for http:// and TLS (connectSSL's endpoint,
-- verifying the server by default) for https://. loom.web re-exports
-- all of it.
--
--   local agent = web.Agent(reactor)
--   agent:request("GET", "http://127.0.0.1:8080/", { Accept = "text/plain" })
--     :addCallback(function(response)
--       print(response.code, response.phrase, response.headers["content-type"])
--       return web.readBody(response)
--     end)
--     :addCallback(print)
--
--   web.getPage("http://127.0.0.1:8080/"):addCallbacks(print, print)

local class = require "loom.class"
local defer = require "loom.defer"
local endpoints = require "loom.endpoints"
local failure = require "loom.failure"
local protocol = require "loom.protocol"
local url = require "loom.web.url"
local errors = require "loom.web.errors"
local clientconnection = require "loom.web.clientconnection"

local Failure = failure.Failure
local Connection = clientconnection.HTTP11ClientProtocol

local M = {}

-- The pool -------------------------------------------------------------------

-- HTTPConnectionPool(reactor, {persistent=true}): idle keep-alive
-- connections per scheme://host:port, at most maxPersistentPerHost each
-- (the oldest is closed for a newer one), each closed after
-- cachedConnectionTimeout idle seconds. A request that fails on a reused
-- connection before any response came back is retried once on a new one
-- when its method is idempotent (the server may have closed the idle
-- connection just then); retryAutomatically = false turns that off.
local Pool = class.Object:extend({ __name = "HTTPConnectionPool" })
M.HTTPConnectionPool = Pool
Pool.maxPersistentPerHost = 2
Pool.cachedConnectionTimeout = 240
Pool.retryAutomatically = true

function Pool:init(reactor, opts)
  opts = opts or {}
  if type(reactor) ~= "table" or type(reactor.callLater) ~= "function" then
    error("HTTPConnectionPool: the first argument must be the reactor", 3)
  end
  self.reactor = reactor
  self.persistent = opts.persistent ~= false
  self.maxPersistentPerHost = opts.maxPersistentPerHost
  self.cachedConnectionTimeout = opts.cachedConnectionTimeout
  self._connections = {} -- key -> list of idle connections, oldest first
  self._timeouts = {}    -- connection -> its idle DelayedCall
  self._open = {}        -- every connection made and not yet closed
end

-- A Deferred of a connection for one request: an idle one from the pool,
-- else a new one made by connect(). conn.served > 0 tells a reused one.
function Pool:getConnection(key, connect)
  local list = self._connections[key]
  while list and #list > 0 do
    local conn = table.remove(list, 1)
    self:_cancelTimeout(conn)
    if conn.state == "QUIESCENT" then
      return defer.succeed(conn)
    end
  end
  return self:_newConnection(key, connect)
end

-- connect(factory) -> Deferred of the connected protocol (an endpoint's).
function Pool:_newConnection(key, connect)
  local pool = self
  local factory = protocol.Factory:new()
  function factory.buildProtocol()
    local conn = Connection:new({
      reactor = pool.reactor,
      limits = pool.limits,
      onQuiescent = function(conn) pool:_putConnection(key, conn) end,
      onLost = function(conn)
        pool._open[conn] = nil
        pool:_removeConnection(key, conn)
      end,
    })
    pool._open[conn] = true
    return conn
  end
  return connect(factory)
end

function Pool:_cancelTimeout(conn)
  local t = self._timeouts[conn]
  self._timeouts[conn] = nil
  if t and t:active() then
    t:cancel()
  end
end

-- A connection that became idle: kept, or closed when the pool is not
-- persistent.
function Pool:_putConnection(key, conn)
  if not self.persistent then
    conn.transport:loseConnection()
    return
  end
  local list = self._connections[key]
  if not list then
    list = {}
    self._connections[key] = list
  end
  if #list >= self.maxPersistentPerHost then
    local dropped = table.remove(list, 1)
    self:_cancelTimeout(dropped)
    dropped.transport:loseConnection()
  end
  list[#list + 1] = conn
  self._timeouts[conn] = self.reactor.callLater(self.cachedConnectionTimeout,
    function()
      self._timeouts[conn] = nil
      self:_removeConnection(key, conn)
      conn.transport:loseConnection()
    end)
end

-- A connection that closed (or timed out idle) leaves the pool.
function Pool:_removeConnection(key, conn)
  self:_cancelTimeout(conn)
  local list = self._connections[key]
  if not list then
    return
  end
  for i = #list, 1, -1 do
    if list[i] == conn then
      table.remove(list, i)
    end
  end
  if #list == 0 then
    self._connections[key] = nil
  end
end

-- The number of idle connections kept for key (nil: all keys).
function Pool:idleCount(key)
  local n = 0
  for k, list in pairs(self._connections) do
    if key == nil or k == key then
      n = n + #list
    end
  end
  return n
end

-- Closes every idle connection; a Deferred that fires once all are closed.
function Pool:closeCachedConnections()
  local waits = {}
  for _, list in pairs(self._connections) do
    for _, conn in ipairs(list) do
      self:_cancelTimeout(conn)
      waits[#waits + 1] = conn:abort()
    end
  end
  self._connections = {}
  return defer.gatherResults(waits):addCallback(function() return nil end)
end

-- The Agent ------------------------------------------------------------------

-- RFC 9110 5.6.2: a method and a header name are tokens.
local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"
-- Never CR, LF or NUL in a header value (no header injection).
local BAD_VALUE = "[%z\r\n]"

-- Headers that frame the message: the agent sets them from the body, so
-- a second, different one cannot make the request mean two things.
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true }

local Agent = class.Object:extend({ __name = "Agent" })
M.Agent = Agent

-- Agent(reactor, opts): opts.pool (an HTTPConnectionPool; default a new
-- persistent one), persistent (false: Connection: close on every request),
-- connectTimeout (30 s), responseTimeout (60 s of silence while a response
-- is awaited or read; 0: none), maxHeaderSize and maxHeaders (the
-- parser's limits for a response head), bindAddress, tlsOptions (for
-- https:// URLs: connectSSL's options, docs/tls.md; default: verify the
-- server against the system's CAs and the URL's host).
function Agent:init(reactor, opts)
  opts = opts or {}
  if type(reactor) ~= "table" or type(reactor.connectTCP) ~= "function" then
    error("Agent: the first argument must be the reactor", 3)
  end
  if opts.tlsOptions ~= nil and type(opts.tlsOptions) ~= "table" then
    error("Agent: tlsOptions must be a table (connectSSL's options), got "
      .. type(opts.tlsOptions), 3)
  end
  self.reactor = reactor
  self.pool = opts.pool or Pool:new(reactor,
    { persistent = opts.persistent })
  self.pool.limits = self.pool.limits or {
    maxHeaderSize = opts.maxHeaderSize, maxHeaders = opts.maxHeaders }
  self.connectTimeout = opts.connectTimeout or 30
  self.responseTimeout = opts.responseTimeout or 60
  self.bindAddress = opts.bindAddress
  self.tlsOptions = opts.tlsOptions
end

-- Headers as a list of {name, value}: a name -> value table (a value may be
-- a list: one line each), sorted for a stable order; checked for what
-- could break the request apart. who names the caller in errors, which
-- are raised at the caller's caller; reserved (lower-case names) are the
-- ones the caller sets itself.
local function headerList(headers, who, reserved)
  local list, seen = {}, {}
  who, reserved = who or "request", reserved or FRAMING
  for name, value in pairs(headers or {}) do
    if type(name) ~= "string" or not name:match(TOKEN) then
      error(string.format("%s: bad header name %q", who,
        tostring(name)), 3)
    end
    local lower = name:lower()
    if reserved[lower] then
      error(string.format("%s: %s is %s, not by a header", who, name,
        reserved[lower] == true and "set from the body" or reserved[lower]), 3)
    end
    if seen[lower] then -- (one field would go out as two)
      error(string.format("%s: header %s given twice, as %s and %s", who,
        lower, seen[lower], name), 3)
    end
    seen[lower] = name
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
        error(string.format("%s: header %s: value must be a finite number, "
          .. "got %s", who, name, tostring(v)), 3)
      elseif type(v) ~= "string" and type(v) ~= "number" then
        error(string.format("%s: header %s: value must be a string, "
          .. "got %s", who, name, type(v)), 3)
      end
      v = tostring(v)
      if v:find(BAD_VALUE) then
        error(string.format("%s: header %s: CR, LF or NUL in its value",
          who, name), 3)
      end
      list[#list + 1] = { name, v, #list }
    end
  end
  -- Sorted by name for a stable order; one name's values keep theirs.
  table.sort(list, function(a, b)
    local x, y = a[1]:lower(), b[1]:lower()
    if x ~= y then
      return x < y
    end
    return a[3] < b[3]
  end)
  for _, h in ipairs(list) do
    h[3] = nil
  end
  return list
end

M.headerList = headerList -- (connectWebSocket checks its headers alike)

local function hasHeader(list, name)
  for _, h in ipairs(list) do
    if h[1]:lower() == name then
      return true
    end
  end
  return false
end

local function checkArguments(method, uri, body)
  if type(method) ~= "string" or not method:match(TOKEN) then
    error("request: method must be a token such as \"GET\", got "
      .. string.format("%q", tostring(method)), 3)
  end
  if type(uri) ~= "string" then
    error("request: url must be a string, got " .. type(uri), 3)
  end
  if body ~= nil and type(body) ~= "string" and (type(body) ~= "table"
      or type(body.startProducing) ~= "function") then
    error("request: body must be a string or a producer (with "
      .. "startProducing), got " .. type(body), 3)
  end
  local length = type(body) == "table" and body.length
  if length and (math.type(length) ~= "integer" or length < 0) then
    error("request: the body producer's length must be a non-negative "
      .. "integer or nil, got " .. tostring(length), 3)
  end
end

-- Idempotent requests whose body can be sent again may be retried once
-- on a new connection (Twisted's _shouldRetry; a string body is
-- replayable, a producer is not).
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, DELETE = true,
  TRACE = true }

local function shouldRetry(req, f)
  return IDEMPOTENT[req.method] and type(req.body) ~= "table"
    and f:check(errors.RequestNotSent, errors.RequestTransmissionFailed,
      errors.ResponseNeverReceived) ~= nil
end

-- The options of an https connection when the agent has none: verify
-- against the system's CAs and the URL's host (one table, so one TLS
-- context for all of them).
local DEFAULT_TLS = {}

-- A string naming a tlsOptions table's content, for the pool's key: a
-- connection is reused only for the same options (an equal table counts
-- as the same).
local function optionsKey(v)
  if type(v) ~= "table" then
    return type(v) .. ":" .. tostring(v)
  end
  local parts = {}
  for k, value in pairs(v) do
    parts[#parts + 1] = string.format("%q=%s", tostring(k), optionsKey(value))
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The pool's key: scheme, host and port, and for https the TLS options.
function Agent:_poolKey(u)
  local key = u.scheme .. "://" .. url.hostHeader(u)
  if u.scheme == "https" and self.tlsOptions then
    self._tlsKey = self._tlsKey or optionsKey(self.tlsOptions)
    key = key .. " " .. self._tlsKey
  end
  return key
end

-- http:// over TCP; https:// over TLS (connectSSL, through its endpoint),
-- whose connect fails with error.TLSError when the server's certificate
-- does not verify.
function Agent:_connector(u)
  local reactor, opts = self.reactor, { timeout = self.connectTimeout,
    bindAddress = self.bindAddress }
  if u.scheme == "https" then
    local tlsOptions = self.tlsOptions or DEFAULT_TLS
    return function(factory)
      return endpoints.SSL4ClientEndpoint(reactor, u.host, u.port,
        tlsOptions, opts):connect(factory)
    end
  end
  return function(factory)
    return endpoints.TCP4ClientEndpoint(reactor, u.host, u.port, opts)
      :connect(factory)
  end
end

-- agent:request(method, url, headers?, body?) -> Deferred of a Response.
-- Bad arguments raise; a URL the agent cannot use errbacks with
-- web.InvalidURL; an https server that does not verify, with
-- error.TLSError.
function Agent:request(method, uri, headers, body)
  checkArguments(method, uri, body)
  local list = headerList(headers)
  local u, why = url.parse(uri)
  if not u then
    return defer.fail(Failure(errors.InvalidURL(why, { url = uri }), ""))
  end
  if not hasHeader(list, "host") then
    table.insert(list, 1, { "Host", url.hostHeader(u) })
  end
  local req = { method = method, target = url.target(u), headers = list,
    body = body, url = uri, persistent = self.pool.persistent,
    responseTimeout = self.responseTimeout }
  local key = self:_poolKey(u)
  local connect, pool = self:_connector(u), self.pool
  return pool:getConnection(key, connect):addCallback(function(conn)
    local reused = conn.served > 0
    return conn:request(req):addErrback(function(f)
      if reused and pool.retryAutomatically and shouldRetry(req, f) then
        return pool:_newConnection(key, connect):addCallback(function(c)
          return c:request(req)
        end)
      end
      return f
    end)
  end)
end

-- Reading a body --------------------------------------------------------------

-- The largest body readBody (and getPage) collects by default: 16 MiB.
M.MAX_BODY_SIZE = 16 * 1024 * 1024

local function tooLarge(response, maxSize)
  return Failure(errors.BodyTooLarge(string.format(
    "the response body is larger than %d bytes (maxSize)", maxSize),
    { response = response, maxSize = maxSize }), "")
end

-- web.readBody(response, {maxSize=}) -> Deferred of the whole body (a
-- string; also stored as response.body). Past maxSize (default
-- MAX_BODY_SIZE) the connection is closed and it errbacks with
-- web.BodyTooLarge. Cancelling it closes the connection.
function M.readBody(response, opts)
  local maxSize = opts and opts.maxSize or M.MAX_BODY_SIZE
  local proto = { parts = {}, size = 0 }
  local d = defer.Deferred(function()
    if proto.transport then proto.transport:abortConnection() end
  end)
  function proto.dataReceived(self, data)
    if d.called then
      return
    end
    self.size = self.size + #data
    if self.size > maxSize then
      self.parts = nil
      d:errback(tooLarge(response, maxSize))
      self.transport:abortConnection()
      return
    end
    self.parts[#self.parts + 1] = data
  end
  function proto.connectionLost(self, reason)
    if d.called then
      return
    end
    if reason:check(errors.ResponseDone, errors.PotentialDataLoss) then
      local body = table.concat(self.parts)
      response.body = body
      d:callback(body)
    else
      d:errback(reason)
    end
  end
  if response.length and response.length > maxSize then
    -- Known too large from its head: not one byte is kept.
    d:errback(tooLarge(response, maxSize))
    local drop = {}
    response:deliverBody(drop)
    drop.transport:abortConnection()
    return d
  end
  response:deliverBody(proto)
  return d
end

-- Reads and drops what is left of a body, up to `limit` bytes (past that
-- the connection closes), so the connection can go back to the pool.
local function discardBody(response, limit)
  local seen = 0
  response:deliverBody({
    dataReceived = function(self, data)
      seen = seen + #data
      if seen > limit then
        self.transport:abortConnection()
      end
    end,
  })
end

-- Redirects -------------------------------------------------------------------

-- Headers that never follow a redirect to another origin (Twisted's
-- _defaultSensitiveHeaders).
local SENSITIVE = { authorization = true, cookie = true, cookie2 = true,
  ["proxy-authorization"] = true, ["www-authenticate"] = true }

-- The bytes of a redirect's own body read (and dropped) to keep its
-- connection; a longer one closes it.
local REDIRECT_BODY_LIMIT = 64 * 1024

local RedirectAgent = class.Object:extend({ __name = "RedirectAgent" })
M.RedirectAgent = RedirectAgent

-- RedirectAgent(agent, {redirectLimit=20}) (maxRedirects= is the same):
-- 301, 302, 307 and 308 are followed for GET and HEAD (another method
-- fails with web.PageRedirect); 303 is followed with GET. More than
-- redirectLimit redirects fail with web.InfiniteRedirection, a redirect
-- without Location with web.RedirectWithNoLocation, each inside a
-- web.ResponseFailed (as Twisted). The final response's
-- previousResponse is the redirect before it.
function RedirectAgent:init(agent, opts)
  opts = opts or {}
  if type(agent) ~= "table" or type(agent.request) ~= "function" then
    error("RedirectAgent: the first argument must be an agent", 3)
  end
  self.agent = agent
  self.redirectLimit = opts.redirectLimit or opts.maxRedirects or 20
end

RedirectAgent.redirectResponses = { [301] = true, [302] = true,
  [307] = true, [308] = true }
RedirectAgent.seeOtherResponses = { [303] = true }

local function redirectFailure(response, cls, message, location)
  local e = cls(string.format("%d %s", response.code, message),
    { status = response.code, phrase = response.phrase, location = location })
  return Failure(errors.ResponseFailed(message, { response = response,
    reasons = { Failure(e, "") } }), "")
end

function RedirectAgent:request(method, uri, headers, body)
  return self.agent:request(method, uri, headers, body)
    :addCallback(self._handleResponse, self, method, uri, headers, 0)
end

function RedirectAgent:_follow(response, method, uri, headers, count)
  if count >= self.redirectLimit then
    discardBody(response, 0)
    return redirectFailure(response, errors.InfiniteRedirection,
      "Infinite redirection detected", uri)
  end
  local location = response:getRawHeaders("location")[1]
  if not location then
    discardBody(response, 0)
    return redirectFailure(response, errors.RedirectWithNoLocation,
      "No location header field", uri)
  end
  discardBody(response, REDIRECT_BODY_LIMIT)
  location = url.join(uri, location)
  local from, to = url.parse(uri), url.parse(location)
  if headers and from and to and not url.sameOrigin(from, to) then
    local kept = {}
    for name, value in pairs(headers) do
      if not SENSITIVE[name:lower()] then
        kept[name] = value
      end
    end
    headers = kept
  end
  return self.agent:request(method, location, headers)
    :addCallback(function(newResponse)
      newResponse:setPreviousResponse(response)
      return newResponse
    end)
    :addCallback(self._handleResponse, self, method, location, headers,
      count + 1)
end

-- Called as a callback with the response first, then the extra arguments.
function RedirectAgent._handleResponse(response, self, method, uri, headers,
    count)
  if self.redirectResponses[response.code] then
    if method ~= "GET" and method ~= "HEAD" then
      discardBody(response, 0)
      return redirectFailure(response, errors.PageRedirect,
        "redirect of a " .. method .. " request", uri)
    end
    return self:_follow(response, method, uri, headers, count)
  elseif self.seeOtherResponses[response.code] then
    return self:_follow(response, "GET", uri, headers, count)
  end
  return response
end

-- getPage ---------------------------------------------------------------------

-- The statuses getPage with followRedirect = false errbacks on.
local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true,
  [308] = true }

-- web.getPage(url, opts) -> Deferred of the body, as old Twisted's getPage:
-- opts.method ("GET"), headers, body (a string), timeout (seconds for the
-- whole exchange: error.TimeoutError), followRedirect (true),
-- redirectLimit (20), maxSize (MAX_BODY_SIZE), tlsOptions (for https://:
-- connectSSL's options; default: verify against the system's CAs and the
-- URL's host), agent (an Agent to use, e.g. one with a pool; default a
-- new one that does not keep the connection), reactor. A status >= 400
-- errbacks with web.Error (status, phrase, body).
function M.getPage(uri, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("getPage: opts must be a table", 2)
  end
  if opts.agent and opts.tlsOptions then
    error("getPage: give tlsOptions to the agent, not beside it", 2)
  end
  if opts.tlsOptions ~= nil and type(opts.tlsOptions) ~= "table" then
    error("getPage: tlsOptions must be a table (connectSSL's options), got "
      .. type(opts.tlsOptions), 2)
  end
  local reactor = opts.reactor or require "loom.reactor"
  local agent = opts.agent or Agent:new(reactor, { persistent = false,
    connectTimeout = opts.timeout, responseTimeout = opts.timeout,
    tlsOptions = opts.tlsOptions })
  if opts.followRedirect ~= false then
    agent = RedirectAgent:new(agent, { redirectLimit = opts.redirectLimit })
  end
  local ok, d = pcall(agent.request, agent, opts.method or "GET", uri,
    opts.headers, opts.body)
  if not ok then
    error(d, 2)
  end
  d:addCallback(function(response)
    return M.readBody(response, { maxSize = opts.maxSize })
      :addCallback(function(body)
        if response.code >= 400 then
          error(errors.statusError(response.code, response.phrase, body), 0)
        elseif opts.followRedirect == false and REDIRECTS[response.code] then
          -- as Twisted's getPage: not followed, not a page either
          local e = errors.statusError(response.code, response.phrase, body,
            errors.PageRedirect)
          e.location = response:getRawHeaders("location")[1]
          error(e, 0)
        end
        return body
      end)
  end)
  if opts.timeout then
    d:addTimeout(opts.timeout, reactor)
  end
  return d
end

return M
