-- loom.reactor.base: what the reactor's parts share (Twisted's
-- internet/base.py): the clock (seconds, callLater), safeCall, the
-- factory check, and the hooks every connection goes through (lost,
-- accept, connected). loom.reactor re-exports the public names.

local core = require "loom.core"
local defer = require "loom.defer"
local delayedcall = require "loom.delayedcall"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure
local DelayedCall = delayedcall.DelayedCall
local fire = delayedcall.fire
local newCall = DelayedCall.new
local walltime, newTimer = core.walltime, core.timer
local getmetatable, type, pack = getmetatable, type, table.pack

local M = {}

-- Calls obj[name](obj, ...) when present; errors are logged, never raised.
function M.safeCall(obj, name, ...)
  local f = obj and obj[name]
  if f == nil then
    return true
  end
  local ok, e = xpcall(f, failure.handler, obj, ...)
  if not ok then
    log.prefixed(log.prefixOf(obj)).err(e, "error in " .. name)
  end
  return ok, e
end

-- A Deferred that fires when owner (a port) has closed: M.closeWaiter(owner)
-- adds one; M.fireCloseWaiters(owner), from the close callback, fires them
-- all (stopListening called several times while it closes).
function M.closeWaiter(owner)
  local d = defer.Deferred()
  owner._waiters = owner._waiters or {}
  table.insert(owner._waiters, d)
  return d
end

function M.fireCloseWaiters(owner)
  local waiters = owner._waiters or {}
  owner._waiters = nil
  for _, d in ipairs(waiters) do
    d:callback(nil)
  end
end

function M.checkFactory(fn, factory)
  if type(factory) ~= "table" or type(factory.buildProtocol) ~= "function" then
    error(fn .. ": factory must be a Factory (with buildProtocol)", 3)
  end
end

-- Time ------------------------------------------------------------------------

function M.seconds()
  return walltime()
end

-- The reactor's DelayedCall scheduler: each call is a one-shot C timer
-- (call.handle), which libuv keeps in its heap.
local timers = {}

function timers.seconds()
  return walltime()
end

function timers._cancelCall(_, call)
  call.handle:close()
  call.handle = nil
end

function timers._resetCall(_, call, secs)
  call.handle:start(secs > 0 and secs or 0)
end

-- The timer's callback (C passes the call): a one-shot timer is done.
local function onTimer(call)
  call.handle:close()
  call.handle = nil
  return fire(call)
end

M.DelayedCall = DelayedCall

function M.callLater(secs, func, ...)
  if type(secs) ~= "number" or secs ~= secs then
    error("callLater: delay must be a number of seconds", 2)
  end
  if type(func) ~= "function" and not (getmetatable(func) or {}).__call then
    error("callLater: second argument must be callable", 2)
  end
  if secs < 0 then
    secs = 0
  end
  local call = newCall(DelayedCall, timers, walltime() + secs, func,
    pack(...), false)
  local timer = newTimer(onTimer, call)
  call.handle = timer
  timer:start(secs)
  return call
end

-- Hooks every connection goes through ------------------------------------------

-- One ConnectionDone value shared by every clean close, as Twisted's
-- main.CONNECTION_DONE: each close still gets a Failure of its own, and
-- making the error value anew cost as much as the rest of the close.
local CONNECTION_DONE = err.ConnectionDone("Connection was closed cleanly.")

function hooks.lost(transport, proto, owner, kind, message, reason, connected)
  if not connected then
    if owner and owner._connectFailed then
      owner:_connectFailed(transport, kind, message)
    end
    return
  end
  if reason == nil then
    -- No traceback: nothing raised, and capturing one per close is costly.
    if kind == "done" then
      reason = Failure(CONNECTION_DONE, "")
    elseif kind == "aborted" then
      reason = Failure(err.ConnectionAborted(
        "Connection was aborted locally."), "")
    elseif kind == "ETLS" then -- the TLS layer failed (host/tls.c)
      reason = Failure(err.TLSError(message, { errno = kind,
        reason = "protocolError" }), "")
    elseif kind == "writeBufferFull" then
      reason = Failure(err.WriteBufferFull(message), "")
      log.prefixed(proto and log.prefixOf(proto)).warn("%s: connection"
        .. " aborted", message)
    else
      reason = Failure(err.ConnectionLost(message or ("Connection lost ("
        .. kind .. ")"), { errno = kind }), "")
    end
  end
  if proto then
    proto.connected = false
    M.safeCall(proto, "connectionLost", reason)
  end
  if owner and owner._connectionLost then
    owner:_connectionLost(transport, proto, reason)
  end
end

function hooks.accept(port, transport)
  port:_accept(transport)
end

function hooks.connected(transport, connector, errname, message)
  connector:_connected(transport, errname, message)
end

return M
