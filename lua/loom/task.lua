-- loom.task: time-driven helpers (twisted.internet.task).
--
--   local task = require "loom.task"
--   local lc = task.LoopingCall(poll, conn)     -- poll(conn) every 5 s
--   lc:start(5)                                  -- Deferred: fires on stop()
--   task.deferLater(reactor, 2, f, "x")          -- Deferred of f("x") in 2 s
--   local clock = task.Clock()                   -- deterministic time
--   clock:callLater(1, f); clock:advance(1)      -- f runs now
--   task.cooperate(iterator):whenDone()          -- run an iterator in steps
--
-- A "clock" is anything with callLater and seconds: the reactor module
-- (called with a dot) or an object such as Clock. Clock binds its methods,
-- so `clock.callLater(1, f)` and `clock:callLater(1, f)` both work.

local class = require "loom.class"
local defer = require "loom.defer"
local delayedcall = require "loom.delayedcall"
local err = require "loom.error"
local failure = require "loom.failure"
local reactor = require "loom.reactor"

local Deferred = defer.Deferred
local Failure = failure.Failure
local clockCall = defer._clockCall
local pack, unpack = table.pack, table.unpack

local task = {}

-- Clock --------------------------------------------------------------------------

-- The Clock's calls are the reactor's class (loom.delayedcall).
local DelayedCall = delayedcall.DelayedCall
task.DelayedCall = DelayedCall

local Clock = class.Object:extend({ __name = "Clock" })
task.Clock = Clock

local BOUND = { "seconds", "callLater", "advance", "pump", "getDelayedCalls" }

function Clock:init()
  self.rightNow = 0.0
  self.calls = {}
  self._seq = 0
  -- Bound methods: a Clock stands in for the reactor module, which is used
  -- with a dot (reactor.callLater(...)); the colon form works as well. The
  -- method is looked up in the class at each call, so a class patched
  -- later (hot reload) is seen.
  local cls = getmetatable(self)
  for _, name in ipairs(BOUND) do
    self[name] = function(first, ...)
      if first == self then
        return cls[name](self, ...)
      end
      return cls[name](self, first, ...)
    end
  end
end

function Clock:seconds()
  return self.rightNow
end

-- The calls are kept sorted by time, then by when they were made (handle:
-- a sequence number), as Twisted's stable sort keeps them.
local function earlier(a, b)
  if a.time ~= b.time then
    return a.time < b.time
  end
  return a.handle < b.handle
end

local function insert(calls, call)
  local lo, hi = 1, #calls
  while lo <= hi do
    local mid = (lo + hi) // 2
    if earlier(call, calls[mid]) then
      hi = mid - 1
    else
      lo = mid + 1
    end
  end
  table.insert(calls, lo, call)
end

local function remove(calls, call)
  for i = 1, #calls do
    if calls[i] == call then
      table.remove(calls, i)
      return
    end
  end
end

-- The DelayedCall scheduler interface (loom.delayedcall).
function Clock:_cancelCall(call)
  remove(self.calls, call)
end

function Clock:_resetCall(call)
  remove(self.calls, call)
  insert(self.calls, call)
end

-- clock:callLater(secs, f, ...) -> DelayedCall running f(...) at now + secs.
function Clock:callLater(secs, f, ...)
  if type(secs) ~= "number" or secs ~= secs then
    error("callLater: delay must be a number of seconds", 2)
  end
  if f == nil then
    error("callLater: second argument must be callable", 2)
  end
  self._seq = self._seq + 1
  local call = DelayedCall(self, self.rightNow + secs, f, pack(...),
    self._seq)
  insert(self.calls, call)
  return call
end

-- Pending calls, earliest first (a copy).
function Clock:getDelayedCalls()
  return table.move(self.calls, 1, #self.calls, 1, {})
end

-- Move time forward by secs and run every call that became due, in order.
-- An error raised by a call propagates (as with Twisted's Clock).
function Clock:advance(secs)
  self.rightNow = self.rightNow + (secs or 0)
  local calls = self.calls
  while calls[1] and calls[1].time <= self.rightNow do
    delayedcall.fire(table.remove(calls, 1))
  end
end

-- Advance by each amount in turn.
function Clock:pump(amounts)
  for _, secs in ipairs(amounts) do
    self:advance(secs)
  end
end

-- deferLater ------------------------------------------------------------------

-- deferLater(clock, secs, f?, ...): a Deferred firing with f(...) after secs
-- (nil without f). Cancelling it cancels the scheduled call.
function task.deferLater(clock, secs, f, ...)
  local args = pack(...)
  local call
  local d = Deferred(function()
    call:cancel()
  end)
  d:addCallback(function()
    if f == nil then
      return nil
    end
    return f(unpack(args, 1, args.n))
  end)
  call = clockCall(clock, "callLater", secs, function()
    d:callback(nil)
  end)
  return d
end

-- LoopingCall -----------------------------------------------------------------

local LoopingCall = class.Object:extend({ __name = "LoopingCall" })
task.LoopingCall = LoopingCall

function LoopingCall:init(f, ...)
  assert(f ~= nil, "LoopingCall: f is required")
  self.f = f
  self.args = pack(...)
  self.running = false
  self.call = nil
  self.interval = nil
  self.starttime = nil
  -- Set it (e.g. to a task.Clock) before start(); the reactor by default.
  self.clock = reactor
end

-- LoopingCall.withCount(f): f(count) is called with the number of intervals
-- that elapsed since its last call (more than 1 when the clock ran late).
function LoopingCall.withCount(cls, f)
  if f == nil then
    cls, f = LoopingCall, cls
  end
  local self
  self = cls(function()
    local now = clockCall(self.clock, "seconds")
    if self.interval == 0 then
      self._realLastTime = now
      return f(1)
    end
    local last = self._realLastTime
    if last == nil then
      last = self.starttime
      if self._runAtStart then
        last = last - self.interval
      end
    end
    local count = self:_intervalOf(now) - self:_intervalOf(last)
    if count > 0 then
      self._realLastTime = now
      return f(count)
    end
    return nil
  end)
  return self
end

function LoopingCall:_intervalOf(t)
  return math.floor((t - self.starttime) / self.interval)
end

-- lc:start(interval, now=true) → Deferred firing with lc on stop(), or
-- errbacking when f raises (or its Deferred fails); running is false then.
function LoopingCall:start(interval, now)
  if self.running then
    error("Tried to start an already running LoopingCall.", 2)
  end
  if type(interval) ~= "number" or interval < 0 then
    error("LoopingCall:start: interval must be a number >= 0", 2)
  end
  if self.clock == nil then
    self.clock = reactor
  end
  if now == nil then
    now = true
  end
  self.running = true
  local d = Deferred()
  self._deferred = d
  self.starttime = clockCall(self.clock, "seconds")
  self.interval = interval
  self._runAtStart = now
  if now then
    self:_run()
  else
    self:_scheduleFrom(self.starttime)
  end
  return d
end

function LoopingCall:stop()
  if not self.running then
    error("Tried to stop a LoopingCall that was not running.", 2)
  end
  self.running = false
  if self.call ~= nil then
    self.call:cancel()
    self.call = nil
    local d = self._deferred
    self._deferred = nil
    d:callback(self)
  end
end

-- Skip the next iteration and restart the interval from now.
function LoopingCall:reset()
  if not self.running then
    error("Tried to reset a LoopingCall that was not running.", 2)
  end
  if self.call ~= nil then
    self.call:cancel()
    self.call = nil
    self.starttime = clockCall(self.clock, "seconds")
    self:_scheduleFrom(self.starttime)
  end
end

local function onResult(_, self)
  if self.running then
    self:_scheduleFrom(clockCall(self.clock, "seconds"))
  else
    local d = self._deferred
    self._deferred = nil
    d:callback(self)
  end
end

local function onFailure(f, self)
  self.running = false
  local d = self._deferred
  self._deferred = nil
  d:errback(f)
end

function LoopingCall:_run()
  self.call = nil
  local args = self.args
  defer.maybeDeferred(self.f, unpack(args, 1, args.n))
    :addCallbacks(onResult, onFailure, { self, n = 1 }, { self, n = 1 })
end

local function runLoopingCall(self)
  self:_run()
end

-- Schedule the next call at the next interval boundary after `when`.
function LoopingCall:_scheduleFrom(when)
  local delay = 0
  if self.interval ~= 0 then
    local runningFor = when - self.starttime
    local untilNext = self.interval - (runningFor % self.interval)
    if when == when + untilNext then
      untilNext = self.interval
    end
    delay = untilNext
  end
  self.call = clockCall(self.clock, "callLater", delay, runLoopingCall, self)
end

function LoopingCall:__tostring()
  return string.format("<LoopingCall at %p every %s s%s>", self,
    tostring(self.interval), self.running and "" or " (stopped)")
end

-- Cooperator ------------------------------------------------------------------

local CooperativeTask = class.Object:extend({ __name = "CooperativeTask" })
task.CooperativeTask = CooperativeTask

-- An iterator is a function called once per step (nil when exhausted) or a
-- coroutine resumed once per step (done when it ends). A step that produces
-- a Deferred pauses the task until that Deferred fires.
local function toStep(iterator)
  if type(iterator) == "thread" then
    return function()
      local ok, v = coroutine.resume(iterator)
      if not ok then
        error(v, 0)
      end
      if coroutine.status(iterator) == "dead" then
        return nil
      end
      -- A bare coroutine.yield() is a step with no value, not the end.
      return v == nil and true or v
    end
  end
  assert(type(iterator) == "function" or (getmetatable(iterator)
    and getmetatable(iterator).__call),
    "cooperate: iterator must be a function or a coroutine")
  return iterator
end

function CooperativeTask:init(iterator, cooperator)
  self._iterator = iterator
  self._step = toStep(iterator)
  self._cooperator = cooperator
  self._deferreds = {}
  self._pauseCount = 0
  self._completionState = nil
  self._completionResult = nil
  cooperator:_addTask(self)
end

-- A Deferred firing with the iterator when the task is done, or failing
-- with its error, TaskStopped or SchedulerStopped.
function CooperativeTask:whenDone()
  local d = Deferred()
  if self._completionState == nil then
    self._deferreds[#self._deferreds + 1] = d
  else
    d:callback(self._completionResult)
  end
  return d
end

local function checkFinish(self)
  local state = self._completionState
  if state ~= nil then
    error(state, 3)
  end
end

function CooperativeTask:pause()
  checkFinish(self)
  self._pauseCount = self._pauseCount + 1
  if self._pauseCount == 1 then
    self._cooperator:_removeTask(self)
  end
end

function CooperativeTask:resume()
  if self._pauseCount == 0 then
    error(err.NotPaused("the task is not paused"), 2)
  end
  self._pauseCount = self._pauseCount - 1
  if self._pauseCount == 0 and self._completionState == nil then
    self._cooperator:_addTask(self)
  end
end

function CooperativeTask:_completeWith(state, result)
  self._completionState = state
  self._completionResult = result
  if self._pauseCount == 0 then
    self._cooperator:_removeTask(self)
  end
  local ds = self._deferreds
  self._deferreds = {}
  for _, d in ipairs(ds) do
    d:callback(result)
  end
end

-- Stop the task: whenDone Deferreds fail with TaskStopped.
function CooperativeTask:stop()
  checkFinish(self)
  self:_completeWith(err.TaskStopped("the task was stopped"),
    Failure(err.TaskStopped("the task was stopped")))
end

function CooperativeTask:_oneWorkUnit()
  local ok, result = xpcall(self._step, failure.handler)
  if not ok then
    self:_completeWith(err.TaskFailed("the task failed"), result)
  elseif result == nil then
    self:_completeWith(err.TaskDone("the task is done"), self._iterator)
  elseif defer.isDeferred(result) then
    self:pause()
    result:addCallbacks(function()
      self:resume()
    end, function(f)
      self:_completeWith(err.TaskFailed("the task failed"), f)
    end)
  end
end

local Cooperator = class.Object:extend({ __name = "Cooperator" })
task.Cooperator = Cooperator

-- Cooperator({clock=, timeSlice=0.01, stepsPerTick=, tickDelay=1e-8}): runs
-- tasks in ticks scheduled with clock.callLater(tickDelay, ...) (the reactor
-- by default; the tiny delay is Twisted's _EPSILON, so a Clock runs one tick
-- per advance). A tick gives each task one step in turn until timeSlice
-- seconds of CPU time pass or, when set, stepsPerTick steps ran
-- (deterministic, for specs).
function Cooperator:init(opts)
  opts = opts or {}
  self.clock = opts.clock
  self.tickDelay = opts.tickDelay or 1e-8
  self.timeSlice = opts.timeSlice or 0.01
  self.stepsPerTick = opts.stepsPerTick
  self._tasks = {}
  self._next = 1
  self._delayedCall = nil
  self._stopped = false
end

function Cooperator:cooperate(iterator)
  return CooperativeTask(iterator, self)
end

-- coiterate(iterator) → Deferred firing with the iterator when it is done.
function Cooperator:coiterate(iterator)
  return self:cooperate(iterator):whenDone()
end

function Cooperator:_addTask(t)
  local tasks = self._tasks
  tasks[#tasks + 1] = t
  if self._stopped then
    t:_completeWith(err.SchedulerStopped("the cooperator is stopped"),
      Failure(err.SchedulerStopped("the cooperator is stopped")))
  else
    self:_reschedule()
  end
end

function Cooperator:_removeTask(t)
  local tasks = self._tasks
  for i = 1, #tasks do
    if tasks[i] == t then
      table.remove(tasks, i)
      if i < self._next then
        self._next = self._next - 1
      end
      break
    end
  end
  if #tasks == 0 and self._delayedCall then
    self._delayedCall:cancel()
    self._delayedCall = nil
  end
end

local function tick(self)
  self._delayedCall = nil
  local started, steps = os.clock(), 0
  local tasks = self._tasks
  while #tasks > 0 do
    if self._next > #tasks then
      self._next = 1
    end
    local t = tasks[self._next]
    self._next = self._next + 1
    t:_oneWorkUnit()
    steps = steps + 1
    if self.stepsPerTick then
      if steps >= self.stepsPerTick then
        break
      end
    elseif os.clock() - started >= self.timeSlice then
      break
    end
  end
  self:_reschedule()
end

function Cooperator:_reschedule()
  if self._delayedCall == nil and #self._tasks > 0 and not self._stopped then
    if self.clock == nil then
      self.clock = reactor
    end
    self._delayedCall = clockCall(self.clock, "callLater", self.tickDelay,
      tick, self)
  end
end

-- Stop every task (their whenDone fail with SchedulerStopped).
function Cooperator:stop()
  self._stopped = true
  local tasks = self._tasks
  self._tasks = {}
  for _, t in ipairs(tasks) do
    t:_completeWith(err.SchedulerStopped("the cooperator is stopped"),
      Failure(err.SchedulerStopped("the cooperator is stopped")))
  end
  if self._delayedCall then
    self._delayedCall:cancel()
    self._delayedCall = nil
  end
end

function Cooperator:start()
  self._stopped = false
  self:_reschedule()
end

local theCooperator

-- The shared Cooperator used by task.cooperate/coiterate (on the reactor).
function task.getCooperator()
  theCooperator = theCooperator or Cooperator()
  return theCooperator
end

-- cooperate(iterator) → CooperativeTask, run by the shared Cooperator.
function task.cooperate(iterator)
  return task.getCooperator():cooperate(iterator)
end

function task.coiterate(iterator)
  return task.getCooperator():coiterate(iterator)
end

return task
