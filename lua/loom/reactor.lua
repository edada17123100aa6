-- loom.reactor: Twisted's reactor API over the C host (loom.core).
--
-- The C side owns the sockets and calls protocol hooks directly on the hot
-- path (dataReceived); this module makes ports, connectors, delayed calls
-- and system events, and receives the rarer events through core.setHooks.

local core = require "loom.core"
local class = require "loom.class"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"

local Failure = failure.Failure

-- tostring(reactor) names it (Twisted prints its reactor's class).
local reactor = setmetatable({ running = false }, {
  __tostring = function() return "<loom.reactor (libuv)>" end })
-- Registered now: the transport modules loaded below require it back.
package.loaded["loom.reactor"] = reactor

-- Lazily loaded: loom.defer needs the reactor for its default clock.
local function defer()
  return require "loom.defer"
end

-- Calls obj[name](obj, ...) when present; errors are logged, never raised.
local function safeCall(obj, name, ...)
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

function reactor.seconds()
  return core.walltime()
end

-- DelayedCall ----------------------------------------------------------------

local DelayedCall = class.Object:extend({ __name = "DelayedCall" })
reactor.DelayedCall = DelayedCall

local function fireDelayed(dc)
  dc.called = true
  dc.timer:close()
  dc.timer = nil
  dc.func(table.unpack(dc.args, 1, dc.args.n))
end

function DelayedCall:init(secs, func, args)
  self.func = func
  self.args = args
  self.time = reactor.seconds() + secs
  self.called = false
  self.cancelled = false
  self.timer = core.timer(fireDelayed, self)
  self.timer:start(secs)
end

function DelayedCall:getTime()
  return self.time
end

function DelayedCall:active()
  return not (self.called or self.cancelled)
end

local function checkActive(self, what)
  if self.cancelled then
    error(err.AlreadyCancelled(what .. ": the call was cancelled"), 3)
  elseif self.called then
    error(err.AlreadyCalled(what .. ": the call already ran"), 3)
  end
end

function DelayedCall:cancel()
  checkActive(self, "cancel")
  self.cancelled = true
  self.timer:close()
  self.timer = nil
end

function DelayedCall:reset(secs)
  checkActive(self, "reset")
  self.time = reactor.seconds() + secs
  self.timer:start(secs)
end

function DelayedCall:delay(secs)
  checkActive(self, "delay")
  self.time = self.time + secs
  self.timer:start(math.max(0, self.time - reactor.seconds()))
end

function DelayedCall:__tostring()
  return string.format("<DelayedCall %s at %.3f>",
    self.called and "called" or self.cancelled and "cancelled" or "pending",
    self.time)
end

function reactor.callLater(secs, func, ...)
  if type(secs) ~= "number" or secs ~= secs then
    error("callLater: delay must be a number of seconds", 2)
  end
  if type(func) ~= "function" and not (getmetatable(func) or {}).__call then
    error("callLater: second argument must be callable", 2)
  end
  return DelayedCall:new(math.max(secs, 0), func, table.pack(...))
end

-- System events -----------------------------------------------------------

local triggers = { startup = {}, shutdown = {} }
local PHASES = { before = true, during = true, after = true }

local function eventTable(phase, event)
  if not PHASES[phase] then
    error(string.format("addSystemEventTrigger: unknown phase %q "
      .. "(before, during, after)", tostring(phase)), 3)
  end
  local ev = triggers[event]
  if not ev then
    ev = {}
    triggers[event] = ev
  end
  ev[phase] = ev[phase] or {}
  return ev[phase]
end

-- Returns an id for removeSystemEventTrigger.
function reactor.addSystemEventTrigger(phase, event, f, ...)
  local list = eventTable(phase, event)
  local id = { phase = phase, event = event, f = f, args = table.pack(...) }
  list[#list + 1] = id
  return id
end

function reactor.removeSystemEventTrigger(id)
  local list = eventTable(id.phase, id.event)
  for i = #list, 1, -1 do
    if list[i] == id then
      table.remove(list, i)
      return
    end
  end
  error("removeSystemEventTrigger: no such trigger", 2)
end

-- Each trigger runs once, as in Twisted: it is taken off its list before it
-- runs (so one added meanwhile to the phase being fired runs too).
local function runPhase(event, phase)
  local list = (triggers[event] or {})[phase] or {}
  local results = {}
  while #list > 0 do
    local t = table.remove(list, 1)
    local ok, r = xpcall(t.f, debug.traceback, table.unpack(t.args, 1,
      t.args.n))
    if not ok then
      log.error("error in %s %s trigger: %s", phase, event, tostring(r))
    elseif type(r) == "table" and r.addBoth then
      results[#results + 1] = r
    end
  end
  return results
end

-- What the reactor itself does at the start of an event's "during" phase,
-- before the triggers of that phase (Twisted registers these first).
local duringFirst = {}

-- Fires before, during and after; "before" Deferreds delay the rest.
function reactor.fireSystemEvent(event, done)
  local pending = runPhase(event, "before")
  local function rest()
    if duringFirst[event] then
      duringFirst[event]()
    end
    runPhase(event, "during")
    runPhase(event, "after")
    if done then
      done()
    end
  end
  if #pending == 0 then
    return rest()
  end
  defer().DeferredList(pending, { consumeErrors = true })
    :addCallback(function() rest() end)
end

function reactor.callWhenRunning(f, ...)
  if reactor.running then
    return f(...)
  end
  return reactor.addSystemEventTrigger("after", "startup", f, ...)
end

-- Run and stop --------------------------------------------------------------

local signals = nil

-- Set once a signal asked for shutdown: the process is on its way out,
-- so the watchers stay (a second SIGTERM, e.g. from timeout(1) to the whole
-- process group, must not kill it between run() returning and exit).
local signalled = false

local function installSignals()
  if signals then
    return
  end
  local function onStop(name)
    if signalled and not reactor._started then
      return
    end
    signalled = true
    log.info("received SIG%s, shutting down", name)
    if reactor._started and not reactor._stopping then
      reactor.stop()
    end
  end
  signals = { core.onSignal("INT", onStop), core.onSignal("TERM", onStop) }
end

local function uninstallSignals()
  if signals and not signalled then
    for _, s in ipairs(signals) do
      s:close()
    end
    signals = nil
  end
end

-- reactor._started: from run() until crash() or the end of shutdown;
-- reactor.running: from "during startup" until then (Twisted's two flags).

-- Twisted's _reallyStartRunning, unless a startup trigger crashed it.
function duringFirst.startup()
  reactor.running = reactor._started
end

function reactor.run(opts)
  if reactor._started then
    error("reactor is already running", 2)
  end
  reactor._started = true
  if not (opts and opts.installSignalHandlers == false) then
    installSignals()
  end
  -- Startup fires inside run(), before the loop: "before" triggers see
  -- running false, "during" and "after" ones (callWhenRunning) true.
  reactor.fireSystemEvent("startup")
  local ok, e = true, nil
  if reactor._started then -- a startup trigger may have crashed it
    ok, e = pcall(core.run)
  end
  reactor.running = false
  reactor._started = false
  uninstallSignals()
  if not ok then
    error(e, 0)
  end
end

-- Stops the loop at once: no shutdown triggers (Twisted's crash); used by
-- testing.runUntil so a spec's connections survive between its steps.
-- The next run() fires startup again (with the triggers added since).
function reactor.crash()
  reactor.running = false
  reactor._started = false
  core.stop()
end

-- Waits (bounded) until every connection has delivered connectionLost.
local function drainThenStop(deadline)
  if core.streamCount() == 0 or reactor.seconds() > deadline then
    reactor._stopping = false
    reactor._started = false
    core.stop()
    return
  end
  reactor.callLater(0.01, drainThenStop, deadline)
end

-- Twisted's "during shutdown" begins with crash and disconnectAll: from
-- here running is false, and every connection and port is closed (each
-- connection's connectionLost runs before run() returns).
function duringFirst.shutdown()
  reactor.running = false
  core.closeAll()
end

-- Like Twisted's, stop() returns at once; shutdown begins on the next
-- turn of the loop ("before" triggers, which may return Deferreds, then
-- "during" and "after"), and run() returns once connections are closed.
function reactor.stop()
  if not reactor._started then
    error(err.ReactorNotRunning("can't stop a reactor that isn't running"), 2)
  end
  if reactor._stopping then
    return
  end
  reactor._stopping = true
  reactor.callLater(0, reactor.fireSystemEvent, "shutdown", function()
    drainThenStop(reactor.seconds() + (reactor.shutdownTimeout or 5))
  end)
end

-- Hooks from C ----------------------------------------------------------------

local hooks = {}

-- A Lua error in a hook: log it with its traceback and context, and give
-- C the Failure that connectionLost will receive.
-- Any error value is reported, nil and one whose __tostring raises included.
function hooks.error(where, value, tb, transport)
  local f = failure.fromError(value, tb)
  local proto = transport and transport.protocol
  local mt = proto and getmetatable(proto)
  local name = type(mt) == "table" and rawget(mt, "__name") or nil
  local prefix = proto and log.prefixOf(proto) or nil
  local what = name and (name .. "." .. where) or where
  log.prefixed(prefix).err(f, "error in " .. what)
  return f
end

local CONNECTION_DONE = "Connection was closed cleanly."

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
      reason = Failure(err.ConnectionDone(CONNECTION_DONE), "")
    elseif kind == "aborted" then
      reason = Failure(err.ConnectionAborted(
        "Connection was aborted locally."), "")
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
    safeCall(proto, "connectionLost", reason)
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

core.setHooks(hooks)

local function checkFactory(fn, factory)
  if type(factory) ~= "table" or type(factory.buildProtocol) ~= "function" then
    error(fn .. ": factory must be a Factory (with buildProtocol)", 3)
  end
end

-- What the transport modules (loom.reactor.tcp, …) share with this one.
local internal = require "loom.reactor.internal"
internal.hooks = hooks
internal.safeCall = safeCall
internal.defer = defer
internal.checkFactory = checkFactory

require "loom.reactor.tcp"
require "loom.reactor.unix"
require "loom.reactor.udp"
require "loom.reactor.process"

-- Threads (loom.threads) ------------------------------------------------------------

local function threads()
  return require "loom.threads"
end

function hooks.threadDone(id, ok, values, tb)
  threads()._done(id, ok, values, tb)
end

function hooks.callFromThread()
  threads()._drain()
end

function reactor.callInThread(f, ...)
  return threads().callInThread(f, ...)
end

function reactor.callFromThread(f, ...)
  return threads().callFromThread(f, ...)
end

function reactor.suggestThreadPoolSize(n)
  return threads().setPoolSize(n)
end

return reactor

