-- loom.reactor.unix: Unix stream sockets (reactor.listenUNIX,
-- connectUNIX), TCP's Port and Connector over a socket path. Part of
-- loom.reactor, which re-exports what this module returns.

local core = require "loom.core"
local address = require "loom.address"
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local base = require "loom.reactor.base"
local hooks = require("loom.reactor.hooks").hooks
local tcp = require "loom.reactor.tcp"

local Failure = failure.Failure
local checkFactory = base.checkFactory
local safeCall = base.safeCall
local Port, Connector = tcp.Port, tcp.Connector

local M = {}

-- Unix sockets ------------------------------------------------------------------

local UNIXPort = Port:extend({ __name = "UNIXPort" })
M.UNIXPort = UNIXPort

function UNIXPort:init(path, factory, opts)
  self.path = path
  self.factory = factory
  self.mode = opts.mode
  self.backlog = opts.backlog or 50
  self.wantPID = opts.wantPID and true or false
  self.maxWriteBuffer = opts.maxWriteBuffer
  self.connected = false
end

function UNIXPort:startListening()
  local listener, errname, msg = core.listenUNIX(self.path, self.backlog,
    self.mode, self.wantPID, self)
  if not listener then
    error(err.CannotListenError("listenUNIX: " .. msg, { errno = errname }),
      3)
  end
  self.listener = listener
  self.connected = true
  self.factory:doStart()
end

-- A Deferred firing once the socket is closed, its file removed and the
-- wantPID lock released (Twisted's connectionLost), so the path can be
-- listened on again as soon as it fires. The factory stops just before.
function UNIXPort:stopListening()
  if not self.connected and not self._closing then
    return defer.succeed(nil)
  end
  local d = base.closeWaiter(self)
  if self.connected then
    self.connected = false
    self._closing = true
    self.listener:close()
    self.listener = nil
  end
  return d
end
UNIXPort.loseConnection = UNIXPort.stopListening

-- From C once the listener closed (stopListening or shutdown).
function UNIXPort:_closed()
  local stopping = self.connected or self._closing
  self.connected, self._closing, self.listener = false, nil, nil
  if stopping then
    safeCall(self.factory, "doStop")
  end
  base.fireCloseWaiters(self)
end

function hooks.unixListenerClosed(port)
  port:_closed()
end

function UNIXPort:__tostring()
  return string.format("<UNIXPort %s>", self.path)
end

function M.listenUNIX(path, factory, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    error("listenUNIX: path must be a non-empty string", 2)
  end
  if opts.mode ~= nil and math.type(opts.mode) ~= "integer" then
    error("listenUNIX: mode must be an integer (e.g. tonumber('660', 8))", 2)
  end
  checkFactory("listenUNIX", factory)
  local p = UNIXPort:new(path, factory, opts)
  p:startListening()
  return p
end

local UNIXConnector = Connector:extend({ __name = "UNIXConnector" })
M.UNIXConnector = UNIXConnector

function UNIXConnector:init(path, factory, opts)
  Connector.init(self, path, nil, factory, opts)
  self.path = path
  self.checkPID = opts.checkPID and true or false
end

function UNIXConnector:getDestination()
  return address.UNIX(self.path)
end

function UNIXConnector:_attempt()
  if self.checkPID and not core.unixLockHeld(self.path) then
    -- Twisted's checkPID: no live server holds the lock file.
    self:_failSoon(Failure(err.ConnectError(
      self.path .. ": no live server holds " .. self.path .. ".lock",
      { errno = "ENOENT" }), ""))
    return
  end
  local t, errname, msg = core.connectUNIX(self.path, self)
  if not t then
    self:_failSoon(Failure(err.fromErrno(errname, msg, err.ConnectError), ""))
    return
  end
  self.transport = t
  if self.timeout and self.timeout > 0 then
    self.timeoutCall = base.callLater(self.timeout, function()
      self.timeoutCall = nil
      self._failReason = Failure(err.TimeoutError(string.format(
        "connection to %s timed out after %gs", self.path, self.timeout)))
      t:abortConnection()
    end)
  end
end

function UNIXConnector:_connected(transport, errname, message)
  if errname then
    self.port = nil
    if self.timeoutCall and self.timeoutCall:active() then
      self.timeoutCall:cancel()
    end
    self.timeoutCall = nil
    self._failReason = Failure(err.fromErrno(errname, string.format(
      "%s: %s: %s", self.path, errname, message), err.ConnectError))
    return
  end
  return Connector._connected(self, transport)
end

function M.connectUNIX(path, factory, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    error("connectUNIX: path must be a non-empty string", 2)
  end
  checkFactory("connectUNIX", factory)
  local c = UNIXConnector:new(path, factory, opts)
  c:connect()
  return c
end

return M
