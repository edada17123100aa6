-- loom.reactor: Twisted's reactor API over the C host (loom.core).
--
-- The C side owns the sockets and calls protocol hooks directly on the hot
-- path (dataReceived), the rarer events through the hook table listed in
-- loom.reactor.hooks. This module assembles the reactor from its parts
-- (loom.reactor.base, tcp, unix, udp, process; none requires it back) and
-- holds run, stop and the system events.

local core = require "loom.core"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local threads = require "loom.threads"
local base = require "loom.reactor.base"
local process = require "loom.reactor.process"
local tcp = require "loom.reactor.tcp"
local udp = require "loom.reactor.udp"
local unix = require "loom.reactor.unix"
local tls = require "loom.reactor.tls"

-- tostring(reactor) names it (Twisted prints its reactor's class).
local reactor = setmetatable({ running = false }, {
  __tostring = function() return "<loom.reactor (libuv)>" end })

-- The parts' public names: seconds, callLater, DelayedCall (base);
-- listenTCP, connectTCP, resolve, resolveAll, Port, Connector (tcp);
-- listenUNIX, connectUNIX, UNIXPort, UNIXConnector (unix); listenUDP,
-- UDPPort (udp); spawnProcess (process); listenSSL, connectSSL, TLSPort,
-- TLSConnector (tls).
reactor.seconds = base.seconds
reactor.callLater = base.callLater
reactor.DelayedCall = base.DelayedCall
for _, part in ipairs({ tcp, unix, udp, process, tls }) do
  for name, value in pairs(part) do
    reactor[name] = value
  end
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
  defer.DeferredList(pending, { consumeErrors = true })
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

-- Twisted's startRunning: what run() does before its loop (startup
-- triggers, signal handlers unless opts.installSignalHandlers is false),
-- for a program that drives the loop itself with iterate(); reactor.stop()
-- then works as under run().
local function startRunning(opts)
  reactor._started = true
  if not (opts and opts.installSignalHandlers == false) then
    installSignals()
  end
  -- Startup fires inside run(), before the loop: "before" triggers see
  -- running false, "during" and "after" ones (callWhenRunning) true.
  reactor.fireSystemEvent("startup")
end

function reactor.startRunning(opts)
  if reactor._started then
    error("reactor is already running", 2)
  end
  startRunning(opts)
end

-- Twisted's mainLoop: runs the loop until the reactor stops (run() is
-- startRunning then mainLoop).
function reactor.mainLoop()
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

function reactor.run(opts)
  if reactor._started then
    error("reactor is already running", 2)
  end
  startRunning(opts)
  reactor.mainLoop()
end

-- Twisted's iterate: one turn of the loop, doing what is due and waiting
-- at most delay seconds (default 0: no wait) for I/O or a timer, for a
-- program whose own frame loop drives the reactor instead of run(). It
-- works whether or not the reactor was started (startRunning); it raises
-- when called from inside the loop (a callback, or while run() runs).
function reactor.iterate(delay)
  core.iterate(delay)
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
    -- Driven by iterate() there is no mainLoop to do it.
    uninstallSignals()
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

-- Threads (loom.threads) ------------------------------------------------------

function reactor.callInThread(f, ...)
  return threads.callInThread(f, ...)
end

function reactor.callFromThread(f, ...)
  return threads.callFromThread(f, ...)
end

function reactor.suggestThreadPoolSize(n)
  return threads.setPoolSize(n)
end

return reactor
