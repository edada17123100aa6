-- loom.defer: Deferreds, their composition, and inlineCallbacks.
--
--   local defer = require "loom.defer"
--   local d = defer.Deferred()
--   d:addCallback(function(v, extra) return v + extra end, 1)
--   d:addErrback(function(f) f:trap(err.TimeoutError); return 0 end)
--   d:callback(41)                        -- the chain runs now: 42
--
--   local fetch = defer.inlineCallbacks(function(a, b)
--     local x = defer.await(getA(a))      -- waits; raises the Failure on error
--     return x + coroutine.yield(getB(b)) -- the same as await (Twisted's
--   end)                                  -- `result = yield d`)
--
-- Semantics follow twisted.internet.defer. The hot half of a Deferred --
-- making one, adding to its callback chain and running the chain with
-- Twisted's iterative loop (long chains of Deferreds waiting on Deferreds run
-- in constant C stack) -- is C (bindings/deferred.c, loom.defer.core); the
-- chain is kept flat in the Deferred's own array part. This file holds the
-- rest and hands the C side what it needs through core.bind.

local class = require "loom.class"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"

local Failure = failure.Failure
local handler = failure.handler
local isinstance = class.isinstance
local getmetatable, setmetatable, type = getmetatable, setmetatable, type
local xpcall, error = xpcall, error
local pack, unpack = table.pack, table.unpack
local cocreate, coresume, coyield = coroutine.create, coroutine.resume,
  coroutine.yield
local corunning = coroutine.running

local defer = {}

local Deferred = class.Object:extend({ __name = "Deferred" })
defer.Deferred = Deferred

-- Class defaults: an instance only stores what differs from these (the C
-- core reads a missing field as its default).
Deferred.called = false
Deferred.paused = 0
Deferred._i = 1       -- next entry of the chain (d[1..#d]) to run
Deferred._running = false

-- The identity errback/callback; skipped by the loop without a call.
local function passthru(x)
  return x
end
defer.passthru = passthru

local function isFailure(x)
  local mt = getmetatable(x)
  if mt == Failure then
    return true
  end
  return mt ~= nil and type(x) == "table" and isinstance(x, Failure)
end

local DeferredList -- forward: common subclasses, checked without a walk

local InlineDeferred -- likewise

local function isDeferred(x)
  local mt = getmetatable(x)
  if mt == Deferred or (mt ~= nil and (mt == InlineDeferred
    or mt == DeferredList)) then
    return true
  end
  return mt ~= nil and type(x) == "table" and isinstance(x, Deferred)
end
defer.isDeferred = isDeferred

-- Unhandled errors ----------------------------------------------------------

-- Twisted's DebugInfo: a small finalizer object hung on a Deferred only while
-- its chain ends in a Failure. When the Deferred is collected with the
-- failure still there, the finalizer logs it once.
-- With defer.setDebugging(true), it also holds where the Deferred was made
-- and first fired (creator, invoker), and the report names both.
local DebugInfo = {}
DebugInfo.__index = DebugInfo

local function debugText(info)
  local ok, text = pcall(require("loom.defer.debug").describe, info)
  return ok and text and "\n" .. text or ""
end

DebugInfo.__gc = function(self)
  local f = self.failResult
  if f ~= nil then
    self.failResult = nil
    local why = "Unhandled error in Deferred:"
    if self.creator or self.invoker then
      why = why .. debugText(self)
    end
    pcall(log.err, f, why)
  end
end

-- The C core ----------------------------------------------------------------

local okCore, core = pcall(require, "loom.defer.core")
if not okCore then
  error("loom.defer needs loom's C module (build/loom.so): run make, and set "
    .. "LUA_CPATH as 'make print-lua-paths' prints", 0)
end

local function alreadyCalled(self)
  if self._suppressAlreadyCalled then
    -- Cancelled without a canceller: the late result is dropped quietly.
    self._suppressAlreadyCalled = false
    return
  end
  local info = rawget(self, "_debugInfo")
  error(err.AlreadyCalledError("Deferred has already been called"
    .. (info and (info.creator or info.invoker) and debugText(info) or "")))
end

-- What inlineCallbacks shares with the C await: inline[1] is the coroutine
-- being run, if any; AWAIT is what await yields to ask for a result.
local inline, AWAIT = {}, setmetatable({}, { __name = "AWAIT" })

local chain = core.bind({ Deferred = Deferred, Failure = Failure,
  DebugInfo = DebugInfo, passthru = passthru, handler = handler,
  alreadyCalled = alreadyCalled, inline = inline, AWAIT = AWAIT })

-- Deferred(canceller?): canceller(d) runs on d:cancel() before d fires.
local newDeferred = chain.new
Deferred.new = newDeferred
getmetatable(Deferred).__call = newDeferred

-- d:addCallback(f, ...), d:addErrback(f, ...), d:addBoth(f, ...): extra
-- arguments are passed after the result. d:addCallbacks(cb, eb, cbArgs?,
-- ebArgs?): the argument lists are tables (with an optional n).
Deferred.addCallback = chain.addCallback
Deferred.addErrback = chain.addErrback
Deferred.addBoth = chain.addBoth
Deferred.addCallbacks = chain.addCallbacks
-- d:callback(result): the result cannot be a Deferred.
Deferred.callback = chain.callback
Deferred._runCallbacks = chain.runCallbacks

local function fireCallback(result, d)
  d:callback(result)
end

local function fireErrback(result, d)
  d:errback(result)
end

-- d:chainDeferred(d2): d's result fires d2 (d's own result becomes nil).
-- As in Twisted this recurses; prefer returning d2 from a callback.
function Deferred:chainDeferred(d2)
  d2._chainedTo = self
  local args = { d2, n = 1 }
  return self:addCallbacks(fireCallback, fireErrback, args, args)
end

-- Firing --------------------------------------------------------------------

-- d:errback(e): e is a Failure or any error value (wrapped in a Failure).
function Deferred:errback(e)
  if self.called then
    return alreadyCalled(self)
  end
  if not isFailure(e) then
    if e == nil then
      e = failure.NIL_ERROR
    end
    e = Failure(e, debug.traceback(nil, 2))
    failure.setMadeIn(e, corunning())
  end
  self.called = true
  self.result = e
  self:_runCallbacks()
end

function Deferred:pause()
  self.paused = self.paused + 1
end

function Deferred:unpause()
  self.paused = self.paused - 1
  if self.paused > 0 then
    return
  end
  if self.called then
    self:_runCallbacks()
  end
end

-- Cancellation and timeouts ---------------------------------------------------

-- d:cancel(): run the canceller (if any); errback with CancelledError unless
-- the canceller fired d. A fired d waiting on another Deferred cancels that.
function Deferred:cancel()
  if not self.called then
    local canceller = self._canceller
    if canceller then
      canceller(self)
    else
      -- Eat the result that will eventually arrive.
      self._suppressAlreadyCalled = true
    end
    if not self.called then
      self:errback(Failure(err.CancelledError()))
    end
  elseif isDeferred(self.result) then
    self.result:cancel()
  end
end

-- Call clock.callLater whether clock is a module holding the function
-- itself (reactor.callLater(...)) or an object whose class provides the
-- method (obj:callLater(...)). A task.Clock binds its methods, so both
-- forms work with it.
local function clockCall(clock, name, ...)
  if type(clock) ~= "table" or rawget(clock, name) ~= nil then
    return clock[name](...)
  end
  return clock[name](clock, ...)
end
defer._clockCall = clockCall

-- d:addTimeout(secs, clock?): cancel d after secs; a cancellation caused by
-- the timeout reaches later callbacks as error.TimeoutError.
function Deferred:addTimeout(secs, clock)
  if clock == nil then
    clock = require "loom.reactor"
  end
  local timedOut = false
  local call = clockCall(clock, "callLater", secs, function()
    timedOut = true
    self:cancel()
  end)
  self:addBoth(function(result)
    if timedOut and isFailure(result) then
      result:trap(err.CancelledError)
      error(err.TimeoutError(string.format(
        "Deferred timed out after %s seconds", tostring(secs)),
        { timeout = secs }), 0)
    end
    return result
  end)
  self:addBoth(function(result)
    if call:active() then
      call:cancel()
    end
    return result
  end)
  return self
end

function Deferred:__tostring()
  local extra = ""
  if self._chainedTo then
    extra = string.format(" waiting on Deferred at %p", self._chainedTo)
  elseif self.called then
    extra = " current result: " .. tostring(self.result)
  end
  return string.format("<%s at %p%s>", rawget(getmetatable(self), "__name")
    or "Deferred", self, extra)
end

-- defer.serial(d): d's number (1, 2, ...), given the first time it is
-- asked for and the same ever after, so that a console or a log can tell
-- Deferreds apart (the manhole prints `<Deferred #12 waiting>`). Kept in a
-- weak table, so making a Deferred costs nothing more.
local serials, lastSerial = setmetatable({}, { __mode = "k" }), 0

function defer.serial(d)
  local n = serials[d]
  if n == nil then
    lastSerial = lastSerial + 1
    n = lastSerial
    serials[d] = n
  end
  return n
end

-- Helpers -------------------------------------------------------------------

-- succeed(v): a Deferred already fired with v.
defer.succeed = chain.succeed

function defer.fail(e)
  local d = Deferred()
  if not isFailure(e) then
    e = Failure(e == nil and failure.NIL_ERROR or e, debug.traceback(nil, 2))
    failure.setMadeIn(e, corunning())
  end
  d:errback(e)
  return d
end

-- maybeDeferred(f, ...): f's result as a Deferred (a Deferred returned by f
-- is returned as is; an error raised or a Failure returned errbacks).
function defer.maybeDeferred(f, ...)
  local ok, r = xpcall(f, handler, ...)
  if not ok then
    return defer.fail(r)
  end
  if isDeferred(r) then
    return r
  end
  if isFailure(r) then
    return defer.fail(r)
  end
  return defer.succeed(r)
end

-- execute(f, ...): f's result (or error) in an already fired Deferred.
function defer.execute(f, ...)
  local ok, r = xpcall(f, handler, ...)
  if not ok then
    return defer.fail(r)
  end
  return defer.succeed(r)
end

-- DeferredList and gatherResults ---------------------------------------------

DeferredList = Deferred:extend({ __name = "DeferredList" })
defer.DeferredList = DeferredList
-- The generic constructor: DeferredList's arguments are not a canceller.
DeferredList.new = class.Object.new

local function cbDeferred(result, self, index, succeeded)
  self.resultList[index] = { succeeded, result }
  self.finishedCount = self.finishedCount + 1
  if not self.called then
    if succeeded and self.fireOnOneCallback then
      self:callback({ result, index })
    elseif not succeeded and self.fireOnOneErrback then
      local first = Failure(err.FirstError(nil,
        { subFailure = result, index = index }), result.traceback)
      -- It goes on where the subFailure was: its async frames so far.
      local frames = rawget(result, "asyncFrames")
      if frames then
        first.asyncFrames = table.move(frames, 1, #frames, 1, {})
      end
      self:errback(first)
    elseif self.finishedCount == self.count then
      self:callback(self.resultList)
    end
  end
  if not succeeded and self.consumeErrors then
    return nil
  end
  return result
end

-- DeferredList(list, {fireOnOneCallback=, fireOnOneErrback=, consumeErrors=})
function DeferredList:init(list, opts)
  opts = opts or {}
  -- A copy, as in Twisted: Deferreds the caller adds to its table later are
  -- not ours to wait for or cancel.
  local own = table.move(list, 1, #list, 1, {})
  self._deferredList = own
  self.count = #own
  self.resultList = {}
  self.finishedCount = 0
  self.fireOnOneCallback = opts.fireOnOneCallback or false
  self.fireOnOneErrback = opts.fireOnOneErrback or false
  self.consumeErrors = opts.consumeErrors or false
  if self.count == 0 and not self.fireOnOneCallback then
    self:callback({})
  end
  for i = 1, self.count do
    own[i]:addCallbacks(cbDeferred, cbDeferred, { self, i, true, n = 3 },
      { self, i, false, n = 3 })
  end
end

-- Cancelling an unfired DeferredList cancels every Deferred in it.
function DeferredList:cancel()
  if self.called then
    return
  end
  for _, d in ipairs(self._deferredList) do
    local ok, e = xpcall(d.cancel, handler, d)
    if not ok then
      log.err(e, "Exception raised from user supplied canceller")
    end
  end
end

local function parseResults(resultList)
  local values = { n = #resultList }
  for i = 1, #resultList do
    values[i] = resultList[i][2]
  end
  return values
end

-- gatherResults(list, consumeErrors?): the list of values, or a FirstError.
function defer.gatherResults(list, consumeErrors)
  local d = DeferredList(list, { fireOnOneErrback = true,
    consumeErrors = consumeErrors })
  return d:addCallback(parseResults)
end

-- inlineCallbacks -------------------------------------------------------------
--
-- Each call of an inlineCallbacks function runs its body in a coroutine.
-- Resuming a coroutine from inside another (a nested call, or a result that
-- arrives inside a callback chain) nests C calls, and Lua allows only ~200
-- of them. So past MAX_NEST nested resumes the resume is queued instead,
-- and the outermost driver runs the queue before it returns: shallow code
-- keeps Twisted's synchronous behaviour, deep code runs in bounded C stack.

local MAX_NEST = 16
local DONE = {}
local resolve, raiseOnResume = chain.resolve, chain.raiseOnResume
local newInline = newDeferred -- (these two: recording ones while debugging)
local nest, draining = 0, false
local queue, qhead, qtail = {}, 1, 0 -- Deferreds of calls to resume

-- The state of one call lives in one table of its own (a "call"), not on
-- the Deferred d the call returns, which belongs to the user; d._call
-- names it until the body is done, and is the Deferred's only extra field.
--   co          the coroutine that runs the body
--   args        { d, n = 1 }: gotResult's argument list while it waits
--   waitingOn   the Deferred the body waits on (d:cancel() cancels it)
--   yielded     it waits in a plain coroutine.yield, not in await
--   adding      waitFor is adding gotResult to the awaited Deferred; a
--               result that arrives meanwhile waits in syncOk/syncValue
--   qok, qval   a result queued for it (deep nesting); start: a queued
--               start, f and its arguments packed
-- A call whose body returned goes back to a pool with its coroutine and its
-- args table, for a later call (making a coroutine costs more than the rest
-- of a short call); returned is the value the last body returned, handed
-- over outside the coroutine's stack.
local POOL_MAX = 32
local pool, pooled, returned = {}, 0, nil

local drive

-- What a pooled coroutine runs: one body after another. The tail calls
-- leave nothing of a finished call (its function, arguments or result) on
-- the stack of the coroutine waiting in the pool.
local worker

local function park()
  return worker(coyield(DONE))
end

local function finished(r)
  returned = r
  return park()
end

-- The body is called through bodyOf so that a traceback names it by where
-- it is defined ("in function <app.lua:10>"), as Lua names a function it
-- has no name for, and not "in local 'f'" after this file's variable.
local function bodyOf(f)
  return f
end

worker = function(f, ...)
  return finished(bodyOf(f)(...))
end

-- A call's table, sized once for every field it may hold.
local function newCall()
  return { co = cocreate(worker), args = nil, waitingOn = nil,
    yielded = false, adding = false, syncOk = nil, syncValue = nil,
    qok = nil, qval = nil, start = nil }
end

local function enqueue(d)
  qtail = qtail + 1
  queue[qtail] = d
end

local function drain()
  draining = true
  while qhead <= qtail do
    local d = queue[qhead]
    queue[qhead] = nil
    qhead = qhead + 1
    local call = d._call
    local start = call.start
    if start then
      call.start = nil
      drive(d, unpack(start, 1, start.n))
    else
      local ok, v = call.qok, call.qval
      call.qval = nil
      drive(d, ok, v)
    end
  end
  qhead, qtail = 1, 0
  draining = false
end

-- A result for the body of the call that returned d: resume it now, or
-- queue it when deep.
local function gotResult(result, d)
  local call = d._call
  call.waitingOn = nil
  call.args[1] = false -- (a pooled call must not keep d alive)
  local ok = not isFailure(result)
  if call.adding then
    -- Arrived while waitFor was still adding this callback: it loops.
    call.adding = false
    call.syncOk, call.syncValue = ok, result
  elseif nest >= MAX_NEST then
    call.qok, call.qval = ok, result
    enqueue(d)
  else
    drive(d, ok, result)
  end
  return nil
end

-- The functions that raise, in a body, the Failure of what it waited for;
-- a Failure raised out of a body notes the body's frames from there (its
-- async traceback: failure.noteAwait). The bottom level of a body's
-- coroutine is worker's.
local AWAITS = { [chain.await] = true, [coyield] = true }
local noteAwait = failure.noteAwait

-- The Failure a body ended with (co: its coroutine, dead, its stack kept
-- as it was when the error was raised).
local function bodyFailure(co, value)
  if isFailure(value) then
    noteAwait(value, co, 1, AWAITS)
    return value
  end
  local f = Failure(value == nil and failure.NIL_ERROR or value,
    debug.traceback(co))
  failure.setMadeIn(f, co)
  return f
end

-- The body of the call that returned d has ended (co: its coroutine),
-- with a value (ok) or an error.
local function finish(d, co, ok, value)
  if not ok then
    if not d.called then -- (else fired by hand meanwhile: dropped)
      d:errback(bodyFailure(co, value))
    end
  elseif not resolve(d, value) then
    value:chainDeferred(d)
  end
end

-- Resume co from outside (outer: the coroutine being run there) with a, b.
local function resumeIn(co, outer, a, b)
  inline[1] = co
  local ok, x, y = coresume(co, a, b)
  inline[1] = outer
  return ok, x, y
end

-- Resume co, which waits in a plain coroutine.yield(d), with d's outcome:
-- the yield returns the result, or raises the Failure (as await does).
local function resumeYield(co, outer, ok, v)
  if not ok then
    raiseOnResume(co, v)
    v = nil
  end
  return resumeIn(co, outer, v)
end

-- Wait for the Deferred w (yielded plainly when plain): returns nil when
-- the result will come later, else whether it succeeded and the result.
local function waitFor(d, call, w, plain)
  call.waitingOn = w
  call.adding = true
  local args = call.args
  if not args then
    args = { d, n = 1 }
    call.args = args
  else
    args[1] = d -- (a pooled call's list, from an earlier call)
  end
  w:addCallbacks(gotResult, gotResult, args, args)
  if call.adding then
    call.adding = false
    if plain then
      call.yielded = true
    end
    return nil
  end
  local sv = call.syncValue
  call.syncValue = nil
  return call.syncOk, sv
end

-- Resume the body of the call that returned d with ... and follow it until
-- it waits or ends; inline[1] names the coroutine being run. It waits when
-- it yields a Deferred, through await (AWAIT, d) or a plain
-- coroutine.yield(d).
drive = function(d, ...)
  nest = nest + 1
  local call, outer = d._call, inline[1]
  local co = call.co
  local ok, a, b
  if call.yielded then
    call.yielded = false
    ok, a, b = resumeYield(co, outer, ...)
  else
    inline[1] = co
    ok, a, b = coresume(co, ...)
    inline[1] = outer
  end
  while true do
    if not ok then
      d._call = nil
      finish(d, co, false, a)
      break
    elseif a == DONE then
      local r = returned
      returned, d._call = nil, nil
      -- Pooled before d fires: d's callbacks may make calls that reuse it.
      if pooled < POOL_MAX then
        pooled = pooled + 1
        pool[pooled] = call
      end
      finish(d, co, true, r)
      break
    elseif a == AWAIT then
      local sok, sv = waitFor(d, call, b, false)
      if sok == nil then
        break
      end
      ok, a, b = resumeIn(co, outer, sok, sv)
    elseif isDeferred(a) then
      -- coroutine.yield(d): Twisted's `result = yield d`.
      local sok, sv = waitFor(d, call, a, true)
      if sok == nil then
        break
      end
      ok, a, b = resumeYield(co, outer, sok, sv)
    else
      -- A plain coroutine.yield of anything else: hand it straight back.
      ok, a, b = resumeIn(co, outer, a, b)
    end
  end
  nest = nest - 1
  if nest == 0 and not draining and qhead <= qtail then
    drain()
  end
end

-- The Deferred a call of an inlineCallbacks function returns. Cancelling it
-- cancels what the body waits on (an awaited Deferred, or the Deferred it
-- returned) and then, as in Twisted, waits for the body: the body sees the
-- CancelledError where it waits, and may catch it and go on; the Deferred
-- fires with whatever the body then does.
InlineDeferred = Deferred:extend({ __name = "Deferred" })

function InlineDeferred:cancel()
  if self.called then
    return Deferred.cancel(self)
  end
  local call = self._call
  local awaited = call and call.waitingOn or self._chainedTo
  if awaited then
    awaited:cancel()
  end
end

-- inlineCallbacks(f): a function that runs f(...) in a coroutine and returns
-- a Deferred of f's return value (or of the error it raises). In f,
-- coroutine.yield(d) waits for d as await(d) does; yielding anything else
-- returns it at once.
function defer.inlineCallbacks(f)
  assert(type(f) == "function", "inlineCallbacks: f must be a function")
  return function(...)
    local d = newInline(InlineDeferred)
    local call = pool[pooled]
    if call then
      pool[pooled] = nil
      pooled = pooled - 1
    else
      call = newCall()
    end
    d._call = call
    if nest >= MAX_NEST then
      call.start = pack(f, ...)
      enqueue(d)
    else
      drive(d, f, ...)
    end
    return d
  end
end

-- await(d): inside an inlineCallbacks function, wait for d and return its
-- result, or raise its Failure (error(failure, 0)). A value that is not a
-- Deferred is returned as is; a fired Deferred returns without waiting.
defer.await = chain.await

-- defer.setDebugging(on), defer.getDebugging(): Twisted's names. While on,
-- each Deferred records where it was made and first fired, for the
-- unhandled-error report and AlreadyCalledError (loom.defer.debug, which
-- swaps these C methods, and inlineCallbacks' newInline and resolve, for
-- recording wrappers and back: off, no test runs anywhere).
local original = { DebugInfo = DebugInfo, new = newDeferred,
  callback = chain.callback, errback = Deferred.errback,
  succeed = chain.succeed }
local debugging = false

function defer.setDebugging(on)
  local dbg = require "loom.defer.debug"
  if on then
    dbg.enable(defer, original)
    debugging = true
    newInline = function(cls)
      return dbg.made(newDeferred(cls))
    end
    resolve = function(d, value)
      dbg.fired(d)
      return chain.resolve(d, value)
    end
  else
    dbg.disable(defer, original)
    debugging = false
    newInline, resolve = newDeferred, chain.resolve
  end
end

function defer.getDebugging()
  return debugging
end

-- DeferredLock, DeferredSemaphore and DeferredQueue live in loom.defer.sync,
-- which is built on this module: it is loaded on their first use, so the
-- two never require each other while loading.
local SYNC = { DeferredLock = true, DeferredSemaphore = true,
  DeferredQueue = true }
setmetatable(defer, { __index = function(t, k)
  if SYNC[k] then
    local sync = require "loom.defer.sync"
    for name in pairs(SYNC) do
      rawset(t, name, sync[name])
    end
    return sync[k]
  end
end })

return defer
