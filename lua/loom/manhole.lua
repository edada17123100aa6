-- loom.manhole: a Lua console into the live server (Twisted's
-- conch.manhole), line-based, over a Unix socket (mode 0600) or loopback
-- TCP with a password.
--
--   loom run --manhole unix:build/app.manhole app.lua
--   loom console build/app.manhole
--   >>> connections()
--   >>> d = fetch("x")
--   >>> await(d)
--
-- Each line is compiled as an expression (`return <line>`) first, else as
-- statements; an incomplete chunk waits for more lines behind a "... "
-- prompt. The values are printed with loom.pretty and the first is kept
-- in `_`. An error prints one line and its traceback; it never ends the
-- session. Each session has its own environment (its __index is _G), so a
-- name assigned at the prompt, or declared `local` at the start of an
-- input, stays for the next lines of that session only.
--
-- The evaluation runs in the reactor's thread: `await(d)` suspends only
-- this session (its input waits) while the reactor goes on, and an
-- evaluation that runs longer than maxRunTime seconds without waiting is
-- interrupted. See docs/manhole.md.

local basic = require "loom.basic"
local class = require "loom.class"
local core = require "loom.core"
local defer = require "loom.defer"
local endpoints = require "loom.endpoints"
local failure = require "loom.failure"
local internet = require "loom.internet"
local log = require "loom.log"
local pretty = require "loom.pretty"
local protocol = require "loom.protocol"

local M = {}

-- The bounds of a session, each a factory field (ManholeFactory(opts)).
M.defaults = {
  maxLineLength = 64 * 1024,    -- bytes of one input line
  maxChunk = 256 * 1024,        -- bytes of a pending multi-line chunk
  maxOutput = 1024 * 1024,      -- bytes one evaluation may print
  maxRunTime = 10,              -- seconds an evaluation may run unsuspended
  failDelay = 1,                -- seconds before a wrong password is answered
  authTimeout = 30,             -- seconds to give the password in
  maxPendingLogins = 5,         -- connections not logged in yet, at once
}

M.PROMPT, M.MORE, M.PASSWORD = ">>> ", "... ", "password: "

local BANNER = "loom manhole (%s): help() lists the helpers"

local HELP = [[
Each line is a Lua expression or statements; an unfinished one continues
on the next line ("..."). The last value is in _. Names you assign (and a
`local` that starts an input) last for this session; _G is the server's.
  connections()   every open connection: peer, protocol, bytes buffered
  services()      the application's service tree
  application     its root service (nil when the server runs a script)
  await(d)        wait for Deferred d without blocking the server, then
                  give its result (or raise its Failure)
  reload()        reload the changed Lua modules now (as SIGHUP does)
  print(...)      print here, on the console
  help()          this text
Ctrl-D (end of input) closes the session.]]

-- Output --------------------------------------------------------------------

-- An evaluation's output, cut at maxOutput bytes with one notice.
local function newOutput(write, max)
  local out = { left = max }
  function out.write(s)
    if out.left <= 0 then
      return
    end
    if #s > out.left then
      s = s:sub(1, out.left) .. string.format("\n... output cut (more than"
        .. " %d bytes; maxOutput)\n", max)
    end
    out.left = out.left - #s
    write(s)
  end
  return out
end

local function firstLine(s)
  return (tostring(s):gsub("\n.*", ""))
end

-- The traceback of an error at the prompt, from the raiser down to the
-- console's chunk: the frames beneath it are this module's and defer's.
local function userTraceback(tb)
  local lines = {}
  for line in tostring(tb or ""):gmatch("[^\n]+") do
    if line:find("loom/manhole.lua", 1, true) then
      break
    end
    lines[#lines + 1] = line
  end
  while #lines > 0 and lines[#lines]:find("^%s*%[C%]: in .*'xpcall'$") do
    lines[#lines] = nil
  end
  return table.concat(lines, "\n")
end

-- The error report: "error: <one line>", then the traceback.
local function formatError(f)
  local text = "error: " .. firstLine(f:getErrorMessage()) .. "\n"
  local tb = userTraceback(f.traceback)
  if tb ~= "" then
    text = text .. tb .. "\n"
  end
  return text
end

-- Helpers at the prompt ---------------------------------------------------------

local function peerOf(transport)
  local ok, peer = pcall(transport.getPeer, transport)
  if not ok or type(peer) ~= "table" then
    return "?"
  elseif peer.type == "UNIX" then
    return "unix:" .. (peer.name or "(unnamed peer)")
  elseif type(peer.host) == "string" and peer.host:find(":", 1, true) then
    return string.format("[%s]:%s", peer.host, tostring(peer.port))
  end
  return string.format("%s:%s", tostring(peer.host), tostring(peer.port))
end

local function protocolName(proto)
  local mt = type(proto) == "table" and getmetatable(proto)
  return type(mt) == "table" and rawget(mt, "__name") or type(proto)
end

-- One line per open connection (self: the console's own transport).
function M.describeConnections(self)
  local list = core.transports()
  local rows = { { "peer", "protocol", "buffered" } }
  for _, t in ipairs(list) do
    local proto = t.protocol
    rows[#rows + 1] = { peerOf(t), protocolName(proto) .. (t == self
      and " (this console)" or ""), tostring(t:bufferedBytes()) }
  end
  local widths = { 0, 0 }
  for _, r in ipairs(rows) do
    widths[1] = math.max(widths[1], #r[1])
    widths[2] = math.max(widths[2], #r[2])
  end
  local lines = { string.format("%d connection%s", #list,
    #list == 1 and "" or "s") }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("  %-" .. widths[1] .. "s  %-"
      .. widths[2] .. "s  %s", r[1], r[2], r[3])
  end
  return table.concat(lines, "\n")
end

local function describeHost(svc)
  local ok, host = pcall(function()
    return type(svc.getHost) == "function" and svc:getHost()
  end)
  if not ok or type(host) ~= "table" then
    return ""
  elseif host.port then
    return string.format(" listening on %s:%d", host.host, host.port)
  elseif host.name then
    return " listening on " .. host.name
  end
  return ""
end

-- The service tree under root, one service a line, indented by depth.
function M.describeServices(root)
  if root == nil then
    return "no service tree (the server runs a plain script)"
  end
  local lines = {}
  local function walk(svc, depth)
    if depth > 20 then
      lines[#lines + 1] = string.rep("  ", depth) .. "..."
      return
    end
    local desc = rawget(svc, "description")
    lines[#lines + 1] = string.format("%s%s%s%s%s", string.rep("  ", depth),
      pretty.format(svc), desc and (" " .. tostring(desc)) or "",
      svc.running and " (running)" or " (stopped)", describeHost(svc))
    if type(svc.iter) == "function" then
      for child in svc:iter() do
        walk(child, depth + 1)
      end
    end
  end
  walk(root, 0)
  return table.concat(lines, "\n")
end

-- reload(): loom.reload's reloadNow, when this build has hot reload.
local function reloadNow()
  local ok, reload = pcall(require, "loom.reload")
  if not ok then
    if tostring(reload):find("module 'loom.reload' not found", 1, true) then
      return nil, "reload: hot reload is not available in this build (no"
        .. " loom.reload module)"
    end
    error(reload, 0)
  end
  local result = reload.reloadNow()
  if defer.isDeferred(result) then
    result = defer.await(result)
  end
  return result
end

-- Session --------------------------------------------------------------------

local Session = class.Object:extend({ __name = "ManholeSession" })
M.Session = Session

-- Session(opts): write(s) sends text to the console; root (a service, or
-- a function returning one), transport (the console's own), namespace
-- (names to add), and the bounds of M.defaults.
function Session:init(opts)
  self.write = opts.write
  self.transport = opts.transport
  for k, v in pairs(M.defaults) do
    self[k] = opts[k] or v
  end
  local root = opts.root
  if type(root) == "function" then
    root = root()
  end
  self.env = setmetatable({}, { __index = _G })
  self:installHelpers(root)
  for k, v in pairs(opts.namespace or {}) do
    self.env[k] = v
  end
end

function Session:say(text)
  if self.output then
    self.output.write(text .. "\n")
  else
    self.write(text .. "\n")
  end
end

function Session:installHelpers(root)
  local env = self.env
  env.application = root
  env.await = defer.await
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      parts[i] = type(v) == "string" and v or pretty.format(v)
    end
    self:say(table.concat(parts, "\t"))
  end
  env.connections = function()
    self:say(M.describeConnections(self.transport))
  end
  env.services = function()
    self:say(M.describeServices(root))
  end
  env.help = function()
    self:say(HELP)
  end
  env.reload = function()
    local result, missing = reloadNow()
    if missing then
      self:say(missing)
      return
    end
    return result
  end
end

function Session:prompt()
  return self.buffer and M.MORE or M.PROMPT
end

-- `local a, b = ...` or `local function f` at the start of an input becomes
-- an assignment to the session's environment, so the name lasts.
local function keepLocals(source)
  local rest = source:match("^%s*local%s+function%s+(.*)$")
  if rest then
    return "function " .. rest
  end
  local names, tail = source:match("^%s*local%s+([%a_][%w_%s,]*)(=.*)$")
  if names and not names:find("<", 1, true) then
    return names .. tail
  end
  return source
end

-- The chunk of source and whether it is an expression list, or nil and
-- the syntax error (ending in "<eof>" when the chunk is only unfinished).
-- An expression list is compiled as an argument list of table.pack (given
-- as the chunk's argument), so a call in it is no tail call and keeps its
-- line in a traceback.
function Session:compile(source)
  -- The ")" on the same line keeps the last line's number right; after a
  -- comment it must go on a line of its own.
  local close = source:find("--", 1, true) and "\n)" or " )"
  local chunk = load("local pack = ... return pack(" .. source .. close,
    "=console", "t", self.env)
  if chunk then
    return chunk, true
  end
  local e
  chunk, e = load(keepLocals(source), "=console", "t", self.env)
  return chunk, e
end

-- An interrupt for code that runs too long without waiting: a count hook
-- on the evaluation's coroutine. A gap between two calls (the coroutine
-- waited, or C code ran) starts the measure again.
local HOOK_EVERY = 1000000

local function runGuard(limit, evaluation)
  local start, last = os.clock(), os.clock()
  return function()
    if coroutine.running() ~= evaluation then
      -- A coroutine made by the evaluation inherits the hook (Lua copies
      -- it to a new thread): it is the server's code, leave it alone.
      debug.sethook()
      return
    end
    local now = os.clock()
    if now - last > 0.25 then
      start = now
    end
    last = now
    if now - start > limit then
      error(string.format("evaluation interrupted: it ran for more than %g"
        .. " s without waiting (maxRunTime)", limit), 2)
    end
  end
end

-- Runs chunk in a coroutine (so it may await); fires with the values it
-- gives (a table.pack).
local evaluate = defer.inlineCallbacks(function(chunk, isExpression, limit)
  debug.sethook(runGuard(limit, coroutine.running()), "", HOOK_EVERY)
  local results = table.pack(xpcall(chunk, failure.handler, table.pack))
  debug.sethook()
  if not results[1] then
    error(results[2], 0)
  elseif isExpression then
    return results[2]
  end
  return table.pack(table.unpack(results, 2, results.n))
end)

function Session:showResults(values)
  if values.n == 0 then
    return
  end
  self.env._ = values[1]
  local parts = {}
  for i = 1, values.n do
    parts[i] = pretty.format(values[i])
  end
  self.output.write(table.concat(parts, ", ") .. "\n")
end

-- Takes one input line. Returns nil once it is dealt with, or a Deferred
-- that fires when its evaluation ends (it awaits): the caller holds the
-- next lines until then.
function Session:push(line)
  local source = self.buffer and (self.buffer .. "\n" .. line) or line
  if #source > self.maxChunk then
    self.buffer = nil
    self.write(string.format("error: input longer than %d bytes"
      .. " (maxChunk); discarded\n", self.maxChunk))
    return nil
  end
  if self.buffer == nil and source:match("^%s*$") then
    return nil
  end
  local chunk, isExpression = self:compile(source)
  if not chunk then
    local e = isExpression
    if e:sub(-5) == "<eof>" then
      self.buffer = source
    else
      self.buffer = nil
      self.write("error: " .. firstLine(e) .. "\n")
    end
    return nil
  end
  self.buffer = nil
  return self:run(chunk, isExpression)
end

function Session:run(chunk, isExpression)
  local output = newOutput(self.write, self.maxOutput)
  self.output = output
  local d = evaluate(chunk, isExpression, self.maxRunTime)
  local done = false
  d:addCallbacks(function(results)
    self:showResults(results)
  end, function(f)
    output.write(formatError(f))
  end)
  d:addBoth(function()
    done = true
    if self.output == output then
      self.output = nil
    end
  end)
  if done then
    return nil
  end
  return d
end

-- The protocol ---------------------------------------------------------------

-- Same length and bytes, in a time that depends on the secret's length
-- only (not on where a guess first differs).
local function sameSecret(guess, secret)
  local diff = #guess ~ #secret
  for i = 1, #secret do
    diff = diff | ((guess:byte(i) or 0) ~ secret:byte(i))
  end
  return diff == 0
end
M.sameSecret = sameSecret

local Manhole = basic.LineReceiver:extend({ __name = "Manhole",
  delimiter = "\n" })
M.Manhole = Manhole

function Manhole:connectionMade()
  local f = self.factory
  self.MAX_LENGTH = f.maxLineLength
  self.state = "password"
  if f.password == nil then
    return self:startSession()
  end
  -- Guesses are bounded by connections, each answered after failDelay:
  -- at most maxPendingLogins / failDelay a second, however many a client
  -- opens.
  if f._pendingLogins >= f.maxPendingLogins then
    self.state = "closed"
    local now = f.reactor.seconds()
    if now - (f._refusedLogAt or -math.huge) >= 1 then -- (a line a second)
      f._refusedLogAt = now
      log.warn("manhole: %d connections already waiting to log in"
        .. " (maxPendingLogins); refusing %s and any more this second",
        f._pendingLogins, peerOf(self.transport))
    end
    self:say("too many logins in progress; closing")
    return self.transport:loseConnection()
  end
  f._pendingLogins = f._pendingLogins + 1
  self.pending = true
  self.authTimer = f.reactor.callLater(f.authTimeout, function()
    self.authTimer = nil
    self:say("no password within " .. f.authTimeout .. " s; closing")
    self.transport:loseConnection()
  end)
  self.transport:write(M.PASSWORD)
end

function Manhole:say(text)
  self.transport:write(text .. "\n")
end

function Manhole:startSession()
  local f = self.factory
  self.state = "session"
  self.session = Session:new({
    write = function(s)
      self.transport:write(s)
    end,
    root = f.root, transport = self.transport, namespace = f.namespace,
    maxChunk = f.maxChunk, maxOutput = f.maxOutput,
    maxRunTime = f.maxRunTime,
  })
  self:say(string.format(BANNER, _VERSION))
  self.transport:write(M.PROMPT)
end

function Manhole:checkPassword(guess)
  local f = self.factory
  if self.authTimer then
    self.authTimer:cancel()
    self.authTimer = nil
  end
  if sameSecret(guess, f.password) then
    self:_loginDone()
    return self:startSession()
  end
  self.state = "refused"
  log.warn("manhole: wrong password from %s", peerOf(self.transport))
  self:pauseProducing()
  -- The answer itself waits: a client closing at once learns nothing.
  self.closeTimer = f.reactor.callLater(f.failDelay, function()
    self.closeTimer = nil
    self:say("wrong password; closing")
    self.transport:loseConnection()
  end)
end

function Manhole:_loginDone()
  if self.pending then
    self.pending = false
    self.factory._pendingLogins = self.factory._pendingLogins - 1
  end
end

function Manhole:lineReceived(line)
  if line:sub(-1) == "\r" then
    line = line:sub(1, -2)
  end
  if self.state == "password" then
    return self:checkPassword(line)
  elseif self.state ~= "session" then
    return
  end
  local d = self.session:push(line)
  if d == nil then
    self.transport:write(self.session:prompt())
    return
  end
  -- The evaluation awaits: hold the next lines until it ends.
  self:pauseProducing()
  d:addBoth(function()
    if self.connected ~= false and not self.transport.disconnecting then
      self.transport:write(self.session:prompt())
      self:resumeProducing()
    end
  end)
end

function Manhole:lineLengthExceeded()
  self:say(string.format("error: line longer than %d bytes (maxLineLength);"
    .. " closing", self.MAX_LENGTH))
  self.transport:loseConnection()
end

function Manhole:connectionLost()
  self.state = "closed"
  self:_loginDone()
  for _, name in ipairs({ "authTimer", "closeTimer" }) do
    if self[name] then
      self[name]:cancel()
      self[name] = nil
    end
  end
end

-- ManholeFactory(opts): opts.password (nil: none asked), root (a service or
-- a function returning it), namespace, reactor, and the bounds of
-- M.defaults.
local ManholeFactory = protocol.Factory:extend({ __name = "ManholeFactory" })
M.ManholeFactory = ManholeFactory

function ManholeFactory:init(opts)
  opts = opts or {}
  self.protocol = Manhole
  self.password = opts.password
  self.root = opts.root
  self.namespace = opts.namespace
  self.reactor = opts.reactor or require "loom.reactor"
  for k, v in pairs(M.defaults) do
    self[k] = opts[k] or v
  end
  self._pendingLogins = 0
end

-- Access -------------------------------------------------------------------------

local function fail(fmt, ...)
  error("manhole: " .. string.format(fmt, ...), 0)
end

local function dirname(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then
    return "."
  end
  return dir == "" and "/" or dir
end

-- A socket in a directory others can write to could be replaced by theirs
-- (or its directory entry moved): refuse, as ssh refuses loose key files.
local function checkSocketDirectory(path)
  local dir = dirname(path)
  local st, _, msg = core.lstat(dir)
  if st == nil then
    fail("cannot use unix:%s: %s", path, msg)
  elseif st.type ~= "directory" then
    fail("cannot use unix:%s: %s is not a directory", path, dir)
  elseif st.mode & 18 ~= 0 then -- 0022: group or others may write
    fail("refusing unix:%s: its directory %s is writable by its group or"
      .. " others (mode %03o); use a directory only you can write to", path,
      dir, st.mode)
  end
end

-- The password: the first line of file, which others must not read.
function M.readPassword(file)
  if file == nil then
    fail("a tcp manhole needs --manhole-passwd FILE (its first line is the"
      .. " password)")
  end
  local st, _, msg = core.lstat(file)
  if st == nil then
    fail("--manhole-passwd %s", msg)
  elseif st.type ~= "file" then
    fail("--manhole-passwd %s is not a regular file", file)
  elseif st.mode & 4 ~= 0 then
    fail("--manhole-passwd %s is readable by everyone (mode %03o): chmod"
      .. " 600 it", file, st.mode)
  end
  local f, e = io.open(file, "r")
  if f == nil then
    fail("--manhole-passwd %s", e)
  end
  local line = f:read("l")
  f:close()
  line = line and line:gsub("\r$", "")
  if line == nil or line == "" then
    fail("--manhole-passwd %s: the first line (the password) is empty",
      file)
  end
  return line
end

local function isLoopback(host)
  return host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- The endpoint of a --manhole description, checked; and whether it needs
-- a password (TCP).
function M.endpointFor(description, reactor)
  local ok, kind, where, opts = pcall(endpoints.parseServer, description)
  if not ok then
    fail("%s", firstLine(kind))
  end
  if kind == "unix" then
    checkSocketDirectory(where)
    return endpoints.UNIXServerEndpoint:new(reactor, where, { mode = 384,
      wantPID = true, backlog = opts.backlog }), false -- mode 0600
  elseif kind == "tcp" or kind == "tcp6" then
    -- Without interface= a manhole stays on loopback (tcp6's parser
    -- fills in "::", every interface).
    local host = description:find("interface=", 1, true) and opts.interface
      or (kind == "tcp" and "127.0.0.1" or "::1")
    if not isLoopback(host) then
      fail("refusing %s: a tcp manhole listens on loopback only"
        .. " (interface=127.0.0.1 or ::1), not %s", description, host)
    end
    local cls = kind == "tcp" and endpoints.TCP4ServerEndpoint
      or endpoints.TCP6ServerEndpoint
    return cls:new(reactor, where, { interface = host,
      backlog = opts.backlog }), true
  end
  fail("%s: a manhole listens on unix:PATH or tcp:PORT:interface=127.0.0.1",
    description)
end

-- service(description, opts) -> a service that listens for consoles.
-- opts: passwdFile (required for TCP), root, namespace, reactor, and the
-- bounds of M.defaults. Raises a one-line "manhole: ..." message for a bad
-- description, a loose directory or password file.
function M.service(description, opts)
  opts = opts or {}
  local reactor = opts.reactor or require "loom.reactor"
  local ep, needsPassword = M.endpointFor(description, reactor)
  local factoryOpts = {}
  for k, v in pairs(opts) do
    factoryOpts[k] = v
  end
  factoryOpts.reactor = reactor
  if needsPassword then
    factoryOpts.password = M.readPassword(opts.passwdFile)
  end
  local svc = internet.StreamServerEndpointService:new(ep,
    ManholeFactory:new(factoryOpts))
  svc._raiseSynchronously = true
  svc.description = description
  svc:setName("manhole")
  return svc
end

-- The `loom` command's --manhole: opens the manhole before the server's
-- own services start (a bad one stops the start-up with its one line) and
-- closes it at shutdown. root() gives the service tree once there is one.
-- Returns the service; raises a one-line message.
function M.startFromFlags(flags, root)
  local svc = M.service(flags.manhole, { passwdFile = flags.manholePasswd,
    root = root })
  svc:privilegedStartService()
  svc:startService()
  local reactor = require "loom.reactor"
  reactor.addSystemEventTrigger("before", "shutdown", function()
    if svc.running then
      return svc:stopService()
    end
  end)
  local host = svc:getHost()
  print("manhole listening on " .. (host.port and (host.host .. ":"
    .. host.port) or tostring(host.name)))
  io.stdout:flush()
  return svc
end

return M
