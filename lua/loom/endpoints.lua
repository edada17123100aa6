-- loom.endpoints: stream endpoints and their string descriptions, as
-- twisted.internet.endpoints.
--
--   local ep = endpoints.serverFromString(reactor, "tcp:8000:interface=127.0.0.1")
--   ep:listen(factory):addCallback(function(port) ... end)
--   endpoints.clientFromString(reactor, "tcp:host=127.0.0.1:port=8000")
--     :connect(factory):addCallback(function(proto) ... end)
--
-- A description is `type:arg:arg:key=value...`, split by Twisted's rules
-- (_tokenize/_parse): `:` separates parameters, the first `=` of a
-- parameter makes it `key=value`, and `\` escapes the next character (so
-- `\:` is a colon inside a value). Positional arguments fill the type's
-- parameters in order. A bad description raises one line naming the bad
-- part: "tcp: port 'abc' is not a number".
--
-- Each type ("tcp", "tcp6", "unix", "ssl", and "tls" for clients) is a parser in a registry, as
-- Twisted's IStreamServerEndpointStringParser plugins are: another module
-- (TLS, a web or redis client) adds its own with registerServer or
-- registerClient, and the parameter helpers in endpoints.param.

local class = require "loom.class"
local defer = require "loom.defer"
local err = require "loom.error"
local protocol = require "loom.protocol"

local M = {}

-- The description grammar -----------------------------------------------------

-- Twisted's _tokenize: a list of {"string", s} and {"op", ":"|"="}. After a
-- "=" only ":" is an operator, so "a=b=c" is key a, value "b=c".
function M.tokenize(desc)
  local tokens, cur = {}, {}
  local ops = { [":"] = true, ["="] = true }
  local i, n = 1, #desc
  while i <= n do
    local c = desc:sub(i, i)
    if ops[c] then
      tokens[#tokens + 1] = { "string", table.concat(cur) }
      tokens[#tokens + 1] = { "op", c }
      cur = {}
      ops = c == ":" and { [":"] = true, ["="] = true } or { [":"] = true }
    elseif c == "\\" then
      i = i + 1
      if i > n then
        error(string.format("endpoint description %q ends with a lone"
          .. " backslash", desc), 0)
      end
      cur[#cur + 1] = desc:sub(i, i)
    else
      cur[#cur + 1] = c
    end
    i = i + 1
  end
  tokens[#tokens + 1] = { "string", table.concat(cur) }
  return tokens
end

-- Twisted's _parse: positional args (a list) and key=value pairs (a table;
-- kwOrder keeps the keys in the order given, for error messages).
function M.parse(desc)
  local args, kw, order = {}, {}, {}
  local sofar = {}
  local function add()
    if #sofar == 1 then
      args[#args + 1] = sofar[1]
    else
      if kw[sofar[1]] == nil then
        order[#order + 1] = sofar[1]
      end
      kw[sofar[1]] = sofar[2]
    end
    sofar = {}
  end
  for _, tok in ipairs(M.tokenize(desc)) do
    if tok[1] == "string" then
      sofar[#sofar + 1] = tok[2]
    elseif tok[2] == ":" then
      add()
    end
  end
  add()
  return args, kw, order
end

-- Parameters -------------------------------------------------------------------

-- The helpers a parser checks its parameters with; each raises one line
-- naming the type and the bad parameter.
local param = {}
M.param = param

-- param.fail(fmt, ...): raises the formatted message, with no position.
local function bad(fmt, ...)
  error(string.format(fmt, ...), 0)
end
param.fail = bad

-- Binds positional args (after the type) and keywords to the named
-- parameters of `kind`, as a Python call to Twisted's parser would.
-- loom's own parameters (maxWriteBuffer) are keyword-only.
local KEYWORD_ONLY = { "maxWriteBuffer" }

local function bind(kind, params, args, kw, order)
  local known, values = {}, {}
  local names = table.move(params, 1, #params, 1, {})
  for _, p in ipairs(KEYWORD_ONLY) do
    names[#names + 1] = p
  end
  for _, p in ipairs(names) do
    known[p] = true
  end
  if #args - 1 > #params then
    bad("%s: too many positional arguments (%d; %s takes %s)", kind,
      #args - 1, kind, table.concat(params, ", "))
  end
  for i = 2, #args do
    values[params[i - 1]] = args[i]
  end
  for _, k in ipairs(order) do
    local name = known[k] and k
    if not name then
      bad("unknown parameter '%s' for %s (known: %s)", k, kind,
        table.concat(names, ", "))
    end
    if values[name] ~= nil then
      bad("%s: %s given twice", kind, name)
    end
    values[name] = kw[k]
  end
  return values
end
param.bind = bind

local function integer(kind, what, s, lo, hi)
  local n = math.tointeger(tonumber(s, 10))
  local digits = s:match("^%s*%-?0*(%d+)%s*$")
  if n == nil or not digits then
    bad("%s: %s '%s' is not a number", kind, what, s)
  elseif #digits > 18 then -- (tonumber(s, 10) wraps past 2^63)
    bad("%s: %s %s is out of range %d-%d", kind, what, s, lo or 0, hi or 0)
  end
  if (lo and n < lo) or (hi and n > hi) then
    bad("%s: %s %d is out of range %d-%d", kind, what, n, lo, hi)
  end
  return n
end
param.integer = integer

local function required(kind, values, name)
  if values[name] == nil or values[name] == "" then
    bad("%s: missing %s", kind, name)
  end
  return values[name]
end
param.required = required

-- maxWriteBuffer=BYTES (0: no limit), as Factory.maxWriteBuffer.
local function writeLimit(kind, opts, s)
  if s then
    opts.maxWriteBuffer = integer(kind, "maxWriteBuffer", s, 0, 1 << 50)
  end
end
param.writeLimit = writeLimit

local function boolean(kind, what, s)
  local n = math.tointeger(tonumber(s, 10))
  if n == nil then
    bad("%s: %s '%s' is not 0 or 1", kind, what, s)
  end
  return n ~= 0
end
param.boolean = boolean

-- The registry of endpoint types ---------------------------------------------------

-- A parser is a table of two functions:
--   parse(args, kw, order) -> kind, ...: checks a description's parameters
--     (args[1] is the type as written; args[2..] the positional ones, kw
--     the key=value ones, order their keys as given) and returns what
--     endpoint needs; a bad parameter raises one line (endpoints.param).
--   endpoint(reactor, ...) -> an endpoint, given the values parse returned
--     after its kind.
-- Types are case-insensitive; registering one again replaces it
-- and returns the parser it replaced;
-- registering nil removes it.
local function newRegistry(what)
  return { what = what, parsers = {}, order = {} }
end

local servers = newRegistry("registerServer")
local clients = newRegistry("registerClient")

local function register(registry, prefix, parser)
  if type(prefix) ~= "string" or not prefix:match("^[%w_.+-]+$") then
    error(string.format("%s: type must be a name of letters, digits and"
      .. " _.+-, got %s", registry.what, tostring(prefix)), 3)
  end
  if parser ~= nil and (type(parser) ~= "table"
      or type(parser.parse) ~= "function"
      or type(parser.endpoint) ~= "function") then
    error(registry.what .. ": parser must be a table with parse and"
      .. " endpoint functions", 3)
  end
  local key = prefix:lower()
  local old = registry.parsers[key]
  if parser == nil then
    for i, k in ipairs(registry.order) do
      if k == key then
        table.remove(registry.order, i)
        break
      end
    end
  elseif old == nil then
    registry.order[#registry.order + 1] = key
  end
  registry.parsers[key] = parser
  return old
end

-- endpoints.registerServer(type, parser): serverFromString(reactor,
-- "type:...") then builds parser.endpoint(reactor, ...).
function M.registerServer(prefix, parser)
  return register(servers, prefix, parser)
end

-- endpoints.registerClient(type, parser): the same for clientFromString.
function M.registerClient(prefix, parser)
  return register(clients, prefix, parser)
end

-- The registered types, in the order they were first registered.
function M.serverTypes()
  return table.move(servers.order, 1, #servers.order, 1, {})
end

function M.clientTypes()
  return table.move(clients.order, 1, #clients.order, 1, {})
end

-- The parser for desc's type, and desc parsed: parser, args, kw, order.
local function lookup(registry, desc)
  if type(desc) ~= "string" then
    bad("endpoint description must be a string, got %s", type(desc))
  end
  local args, kw, order = M.parse(desc)
  local kind = args[1]
  local parser = registry.parsers[kind:lower()]
  if parser == nil then
    bad("unknown endpoint type '%s' (known: %s)", kind,
      table.concat(registry.order, ", "))
  end
  return parser, args, kw, order
end

-- The old strports form, a bare port number ("8000"), means tcp:8000.
local function serverDescription(desc)
  if type(desc) == "string" and desc:match("^%d+$") then
    return "tcp:" .. desc
  end
  return desc
end

-- Parses a server description: kind, then what its parser returns (for
-- the built-in types: port-or-path, opts).
function M.parseServer(desc)
  local parser, args, kw, order = lookup(servers, serverDescription(desc))
  return parser.parse(args, kw, order)
end

-- Parses a client description; for the built-in types "tcp", host, port,
-- opts or "unix", path, opts.
function M.parseClient(desc)
  local parser, args, kw, order = lookup(clients, desc)
  return parser.parse(args, kw, order)
end

-- The built-in parsers -----------------------------------------------------------

-- tcp and tcp6 differ in their positional order and default interface,
-- as Twisted's _parseTCP and TCP6ServerEndpoint do.
local function tcpServerParser(kind, positional, defaultInterface)
  return function(args, kw, order)
    local v = bind(kind, positional, args, kw, order)
    local port = integer(kind, "port", required(kind, v, "port"), 0, 65535)
    local opts = { interface = defaultInterface }
    if v.interface and v.interface ~= "" then
      opts.interface = v.interface
    end
    if v.backlog then
      opts.backlog = integer(kind, "backlog", v.backlog, 0, 1 << 30)
    end
    writeLimit(kind, opts, v.maxWriteBuffer)
    return kind, port, opts
  end
end

local parseTCPServer = tcpServerParser("tcp", { "port", "interface",
  "backlog" })
local parseTCP6Server = tcpServerParser("tcp6", { "port", "backlog",
  "interface" }, "::")

local function parseUNIXServer(args, kw, order)
  -- Twisted calls the path "address"; "path" is accepted too.
  if kw.path ~= nil and kw.address == nil then
    kw.address = kw.path
    for i, k in ipairs(order) do
      if k == "path" then
        order[i] = "address"
      end
    end
  end
  local v = bind("unix", { "address", "mode", "backlog", "lockfile" }, args,
    kw, order)
  local path = required("unix", v, "address")
  local opts = { mode = tonumber("666", 8), wantPID = true, backlog = 50 }
  if v.mode then
    opts.mode = v.mode:match("^[0-7]+$") and tonumber(v.mode, 8)
    if not opts.mode then
      bad("unix: mode '%s' is not an octal number", v.mode)
    end
  end
  if v.backlog then
    opts.backlog = integer("unix", "backlog", v.backlog, 0, 1 << 30)
  end
  if v.lockfile then
    opts.wantPID = boolean("unix", "lockfile", v.lockfile)
  end
  writeLimit("unix", opts, v.maxWriteBuffer)
  return "unix", path, opts
end

-- Twisted's _parseSSL: ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem
-- [:extraCertChain=CHAIN.pem][:interface=][:backlog=]; certKey defaults
-- to privateKey (one PEM holding both). Files are read when it listens.
local function parseSSLServer(args, kw, order)
  local v = bind("ssl", { "port", "privateKey", "certKey", "sslmethod",
    "interface", "backlog", "extraCertChain", "caCerts" }, args, kw, order)
  local port = integer("ssl", "port", required("ssl", v, "port"), 0, 65535)
  local key = required("ssl", v, "privateKey")
  local opts = { interface = "0.0.0.0" }
  if v.interface and v.interface ~= "" then
    opts.interface = v.interface
  end
  if v.backlog then
    opts.backlog = integer("ssl", "backlog", v.backlog, 0, 1 << 30)
  end
  writeLimit("ssl", opts, v.maxWriteBuffer)
  local tlsOptions = { privateKey = key, certificate = v.certKey or key,
    extraCertChain = v.extraCertChain }
  if v.sslmethod then
    local versions = { TLSv1_2_METHOD = "TLSv1.2", TLSv1_3_METHOD = "TLSv1.3" }
    local min = versions[v.sslmethod]
    if not min then
      bad("ssl: sslmethod '%s' is not TLSv1_2_METHOD or TLSv1_3_METHOD",
        v.sslmethod)
    end
    tlsOptions.minimumVersion = min
  end
  if v.caCerts then -- clients must then present a certificate from these
    tlsOptions.caCerts, tlsOptions.verify = v.caCerts, true
  end
  return "ssl", port, tlsOptions, opts
end

-- tls:host=HOST:port=PORT[:caCerts=CA.pem][:certificate=:privateKey=]
-- [:timeout=][:bindAddress=] (Twisted's TLS client endpoint string; the
-- server's certificate is verified against caCerts, else the system
-- store, and HOST). "ssl" takes the same for clients.
local function tlsClientParser(kind)
  return function(args, kw, order)
    local v = bind(kind, { "host", "port", "timeout", "bindAddress",
      "caCerts", "certificate", "privateKey", "hostname" }, args, kw, order)
    local host = required(kind, v, "host")
    local port = integer(kind, "port", required(kind, v, "port"), 1, 65535)
    local opts = {}
    if v.timeout then
      opts.timeout = integer(kind, "timeout", v.timeout, 0, 1 << 30)
    end
    if v.bindAddress then
      opts.bindAddress = { v.bindAddress, 0 }
    end
    writeLimit(kind, opts, v.maxWriteBuffer)
    if (v.certificate == nil) ~= (v.privateKey == nil) then
      bad("%s: certificate and privateKey go together", kind)
    end
    return kind, host, port, { caCerts = v.caCerts,
      certificate = v.certificate, privateKey = v.privateKey,
      hostname = v.hostname }, opts
  end
end

local function parseTCPClient(args, kw, order)
  -- Twisted's _parseClientTCP: two positionals are host and port; one is
  -- the host, or the port when host= is given.
  local params = { "host", "port" }
  if #args == 2 and kw.host ~= nil then
    params = { "port" }
  end
  local v = bind("tcp", params, args, kw, {})
  for _, k in ipairs(order) do
    local ok = k == "host" or k == "port" or k == "timeout"
      or k == "bindAddress" or k == "maxWriteBuffer"
    if not ok then
      bad("unknown parameter '%s' for tcp (known: host, port, timeout,"
        .. " bindAddress, maxWriteBuffer)", k)
    end
    if v[k] ~= nil and v[k] ~= kw[k] then
      bad("tcp: %s given twice", k)
    end
    v[k] = kw[k]
  end
  local host = required("tcp", v, "host")
  local port = integer("tcp", "port", required("tcp", v, "port"), 1, 65535)
  local opts = {}
  if v.timeout then
    opts.timeout = integer("tcp", "timeout", v.timeout, 0, 1 << 30)
  end
  if v.bindAddress then
    opts.bindAddress = { v.bindAddress, 0 }
  end
  writeLimit("tcp", opts, v.maxWriteBuffer)
  return "tcp", host, port, opts
end

local function parseUNIXClient(args, kw, order)
  local v = bind("unix", { "path", "timeout", "lockfile" }, args, kw, order)
  local path = required("unix", v, "path")
  local opts = {}
  if v.timeout then
    opts.timeout = integer("unix", "timeout", v.timeout, 0, 1 << 30)
  end
  if v.lockfile then
    opts.checkPID = boolean("unix", "lockfile", v.lockfile)
  end
  writeLimit("unix", opts, v.maxWriteBuffer)
  return "unix", path, opts
end

-- Server endpoints ----------------------------------------------------------------

local function needReactor(reactor, method)
  if type(reactor) ~= "table" or reactor[method] == nil then
    error(string.format("this reactor has no %s", method), 3)
  end
end

local TCP4ServerEndpoint = class.Object:extend({
  __name = "TCP4ServerEndpoint" })
M.TCP4ServerEndpoint = TCP4ServerEndpoint

function TCP4ServerEndpoint:init(reactor, port, opts)
  opts = opts or {}
  self.reactor = reactor
  self.port = port
  self.interface = opts.interface or self.defaultInterface
  self.backlog = opts.backlog or 50
  self.maxWriteBuffer = opts.maxWriteBuffer
end
TCP4ServerEndpoint.defaultInterface = "0.0.0.0"

-- → Deferred(Port); errbacks with the listen error (e.g. EADDRINUSE).
function TCP4ServerEndpoint:listen(factory)
  return defer.execute(self.reactor.listenTCP, self.port, factory,
    { interface = self.interface, backlog = self.backlog,
      maxWriteBuffer = self.maxWriteBuffer })
end

function TCP4ServerEndpoint:__tostring()
  return string.format("<%s %s:%d>", rawget(getmetatable(self), "__name"),
    self.interface, self.port)
end

M.TCP6ServerEndpoint = TCP4ServerEndpoint:extend({
  __name = "TCP6ServerEndpoint", defaultInterface = "::" })

local UNIXServerEndpoint = class.Object:extend({
  __name = "UNIXServerEndpoint" })
M.UNIXServerEndpoint = UNIXServerEndpoint

function UNIXServerEndpoint:init(reactor, path, opts)
  opts = opts or {}
  self.reactor = reactor
  self.path = path
  self.mode = opts.mode or tonumber("666", 8)
  self.backlog = opts.backlog or 50
  self.wantPID = opts.wantPID
  if self.wantPID == nil then
    self.wantPID = false
  end
  self.maxWriteBuffer = opts.maxWriteBuffer
end

function UNIXServerEndpoint:listen(factory)
  return defer.execute(function()
    needReactor(self.reactor, "listenUNIX")
    return self.reactor.listenUNIX(self.path, factory, { mode = self.mode,
      backlog = self.backlog, wantPID = self.wantPID,
      maxWriteBuffer = self.maxWriteBuffer })
  end)
end

function UNIXServerEndpoint:__tostring()
  return string.format("<UNIXServerEndpoint %s>", self.path)
end

-- listenSSL's endpoint (Twisted's SSL4ServerEndpoint).
local SSL4ServerEndpoint = TCP4ServerEndpoint:extend({
  __name = "SSL4ServerEndpoint" })
M.SSL4ServerEndpoint = SSL4ServerEndpoint

function SSL4ServerEndpoint:init(reactor, port, tlsOptions, opts)
  TCP4ServerEndpoint.init(self, reactor, port, opts)
  self.tlsOptions = tlsOptions
end

function SSL4ServerEndpoint:listen(factory)
  return defer.execute(function()
    needReactor(self.reactor, "listenSSL")
    return self.reactor.listenSSL(self.port, factory, self.tlsOptions,
      { interface = self.interface, backlog = self.backlog,
        maxWriteBuffer = self.maxWriteBuffer })
  end)
end

-- Client endpoints ------------------------------------------------------------------

-- Twisted's _WrappingFactory: builds the caller's protocol and fires the
-- connect Deferred with it once connected, or errbacks with the failure.
local WrappingFactory = protocol.ClientFactory:extend({
  __name = "WrappingFactory" })
M.WrappingFactory = WrappingFactory

-- The protocol the connector first sees: it hands the transport over to
-- the real protocol, so the transport calls the real hooks from then on.
local Handover = {}
Handover.__index = Handover

function Handover:makeConnection(transport)
  local wf, real = self.wrappingFactory, self.real
  if transport.setProtocol then
    transport:setProtocol(real)
  end
  real:makeConnection(transport)
  if not wf.deferred.called then
    wf.deferred:callback(real)
  end
end

function WrappingFactory:init(wrapped)
  self.wrapped = wrapped
  -- The connection's write limit is the caller's factory's.
  self.maxWriteBuffer = wrapped.maxWriteBuffer
  self.deferred = defer.Deferred(function()
    if self.connector then
      pcall(self.connector.stopConnecting, self.connector)
    end
  end)
end

function WrappingFactory:startFactory()
  self.wrapped:doStart()
end

function WrappingFactory:stopFactory()
  self.wrapped:doStop()
end

function WrappingFactory:startedConnecting(connector)
  self.connector = connector
end

function WrappingFactory:buildProtocol(addr)
  local ok, proto = pcall(self.wrapped.buildProtocol, self.wrapped, addr)
  if not ok or proto == nil then
    if not self.deferred.called then
      self.deferred:errback(ok and err.ConnectError(
        "the factory refused the connection (buildProtocol returned nil)")
        or proto)
    end
    return nil
  end
  return setmetatable({ wrappingFactory = self, real = proto }, Handover)
end

function WrappingFactory:clientConnectionFailed(connector, reason) -- luacheck: ignore
  if not self.deferred.called then
    self.deferred:errback(reason)
  end
end

local TCP4ClientEndpoint = class.Object:extend({
  __name = "TCP4ClientEndpoint" })
M.TCP4ClientEndpoint = TCP4ClientEndpoint
M.TCP6ClientEndpoint = TCP4ClientEndpoint:extend({
  __name = "TCP6ClientEndpoint" })

function TCP4ClientEndpoint:init(reactor, host, port, opts)
  opts = opts or {}
  self.reactor = reactor
  self.host = host
  self.port = port
  self.timeout = opts.timeout or 30
  self.bindAddress = opts.bindAddress
  self.maxWriteBuffer = opts.maxWriteBuffer
end

-- → Deferred(protocol) once connected; errbacks with the connect failure
-- (ConnectionRefusedError, TimeoutError, ...). Cancelling it stops the
-- attempt.
function TCP4ClientEndpoint:connect(factory)
  local wf = WrappingFactory:new(factory)
  local ok, e = pcall(self.reactor.connectTCP, self.host, self.port, wf,
    { timeout = self.timeout, bindAddress = self.bindAddress,
      maxWriteBuffer = self.maxWriteBuffer })
  if not ok then
    return defer.fail(e)
  end
  return wf.deferred
end

function TCP4ClientEndpoint:__tostring()
  return string.format("<%s %s:%d>", rawget(getmetatable(self), "__name"),
    self.host, self.port)
end

-- connectSSL's endpoint (Twisted's SSL4ClientEndpoint): connect fires
-- once the handshake succeeded; a failed verification errbacks with
-- error.TLSError.
local SSL4ClientEndpoint = TCP4ClientEndpoint:extend({
  __name = "SSL4ClientEndpoint" })
M.SSL4ClientEndpoint = SSL4ClientEndpoint

function SSL4ClientEndpoint:init(reactor, host, port, tlsOptions, opts)
  TCP4ClientEndpoint.init(self, reactor, host, port, opts)
  self.tlsOptions = tlsOptions or {}
end

function SSL4ClientEndpoint:connect(factory)
  local wf = WrappingFactory:new(factory)
  local ok, e = pcall(function()
    needReactor(self.reactor, "connectSSL")
    return self.reactor.connectSSL(self.host, self.port, wf,
      self.tlsOptions, { timeout = self.timeout,
        bindAddress = self.bindAddress,
        maxWriteBuffer = self.maxWriteBuffer })
  end)
  if not ok then
    return defer.fail(e)
  end
  return wf.deferred
end

local UNIXClientEndpoint = class.Object:extend({
  __name = "UNIXClientEndpoint" })
M.UNIXClientEndpoint = UNIXClientEndpoint

function UNIXClientEndpoint:init(reactor, path, opts)
  opts = opts or {}
  self.reactor = reactor
  self.path = path
  self.timeout = opts.timeout or 30
  self.checkPID = opts.checkPID or false
  self.maxWriteBuffer = opts.maxWriteBuffer
end

function UNIXClientEndpoint:connect(factory)
  local wf = WrappingFactory:new(factory)
  local ok, e = pcall(function()
    needReactor(self.reactor, "connectUNIX")
    return self.reactor.connectUNIX(self.path, wf, { timeout = self.timeout,
      checkPID = self.checkPID, maxWriteBuffer = self.maxWriteBuffer })
  end)
  if not ok then
    return defer.fail(e)
  end
  return wf.deferred
end

function UNIXClientEndpoint:__tostring()
  return string.format("<UNIXClientEndpoint %s>", self.path)
end

-- From strings ------------------------------------------------------------------------

function M.serverFromString(reactor, desc)
  local parser, args, kw, order = lookup(servers, serverDescription(desc))
  return parser.endpoint(reactor, select(2, parser.parse(args, kw, order)))
end

function M.clientFromString(reactor, desc)
  local parser, args, kw, order = lookup(clients, desc)
  return parser.endpoint(reactor, select(2, parser.parse(args, kw, order)))
end

-- The built-in types, in the order the "unknown endpoint type" error
-- lists them.
M.registerServer("tcp", { parse = parseTCPServer,
  endpoint = function(reactor, port, opts)
    return TCP4ServerEndpoint:new(reactor, port, opts)
  end })
M.registerServer("tcp6", { parse = parseTCP6Server,
  endpoint = function(reactor, port, opts)
    return M.TCP6ServerEndpoint:new(reactor, port, opts)
  end })
M.registerServer("unix", { parse = parseUNIXServer,
  endpoint = function(reactor, path, opts)
    return UNIXServerEndpoint:new(reactor, path, opts)
  end })
M.registerServer("ssl", { parse = parseSSLServer,
  endpoint = function(reactor, port, tlsOptions, opts)
    return SSL4ServerEndpoint:new(reactor, port, tlsOptions, opts)
  end })

-- An IPv6 address literal as host gives a TCP6 endpoint.
M.registerClient("tcp", { parse = parseTCPClient,
  endpoint = function(reactor, host, port, opts)
    local cls = host:find(":", 1, true) and M.TCP6ClientEndpoint
      or TCP4ClientEndpoint
    return cls:new(reactor, host, port, opts)
  end })
M.registerClient("unix", { parse = parseUNIXClient,
  endpoint = function(reactor, path, opts)
    return UNIXClientEndpoint:new(reactor, path, opts)
  end })
local function sslClientEndpoint(reactor, host, port, tlsOptions, opts)
  return SSL4ClientEndpoint:new(reactor, host, port, tlsOptions, opts)
end
M.registerClient("ssl", { parse = tlsClientParser("ssl"),
  endpoint = sslClientEndpoint })
M.registerClient("tls", { parse = tlsClientParser("tls"),
  endpoint = sslClientEndpoint })

-- connectProtocol(endpoint, proto) → Deferred(proto): connects an
-- already-built protocol instance.
function M.connectProtocol(endpoint, proto)
  local f = protocol.ClientFactory:new()
  function f.buildProtocol()
    return proto
  end
  return endpoint:connect(f)
end

return M
