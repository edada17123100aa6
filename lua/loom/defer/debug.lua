-- loom.defer.debug: what defer.setDebugging(true) turns on (Twisted's
-- Deferred.debug and DebugInfo.creator/invoker). Seen through loom.defer:
--
--   defer.setDebugging(true)
--   defer.getDebugging()          --> true
--
-- While on, every Deferred records the stack where it was made and where
-- it was first fired, in its DebugInfo (d._debugInfo.creator, .invoker);
-- the "Unhandled error in Deferred" report and AlreadyCalledError name
-- both, shortened to the user's frames.
--
-- Why swapping: making and firing a Deferred is C (bindings/deferred.c),
-- and a test of a flag there would cost every Deferred something. Instead
-- enable() puts Lua wrappers in place of the methods (Deferred.new, the
-- class's __call, callback, errback, defer.succeed, DeferredList.new) and
-- disable() puts the very same C functions back: off, nothing runs that
-- would not run without this module. inlineCallbacks makes and fires its
-- Deferreds through two locals of defer.lua, which setDebugging points at
-- wrappers that call made/fired here, and back.

local failure = require "loom.failure"

local rawget, rawset, setmetatable = rawget, rawset, setmetatable
local concat, format = table.concat, string.format

local M = {}

-- How many lines a report shows of each recorded stack (LOOM_DEBUG=1: all).
M.MAX_FRAMES = 8

-- Recording -------------------------------------------------------------------
--
-- A recorded stack is the traceback text as a Failure's (the C core's
-- traceback: one C call, cut at the reactor boundary and short on a deep
-- stack), kept as it is; it is shortened only when a report shows it.

local traceback = debug.traceback
do
  local ok, core = pcall(require, "loom.core")
  if ok and type(core) == "table" and core.traceback then
    traceback = core.traceback
  end
end

-- The DebugInfo of d, made when it has none.
local DebugInfo

local function infoOf(d)
  local info = rawget(d, "_debugInfo")
  if info == nil then
    info = setmetatable({}, DebugInfo)
    rawset(d, "_debugInfo", info)
  end
  return info
end

-- d was just made: record where.
function M.made(d)
  infoOf(d).creator = traceback(nil, 2)
  return d
end

-- d is about to fire: record where, the first time.
function M.fired(d)
  if d.called then
    return
  end
  local info = infoOf(d)
  if info.invoker == nil then
    info.invoker = traceback(nil, 2)
  end
end

-- Shortening ----------------------------------------------------------------

-- Paths and loom's own files as Failure tracebacks see them (loom.failure:
-- "build/../lua/x.lua" shown as "lua/x.lua"; a frame under loom's Lua
-- directory is loom's).
local normalisePath, isLoomSource = failure.normalisePath,
  failure.isLoomSource

-- loom's files that make and fire Deferreds (defer.lua, defer/*.lua):
-- never what a user wants to see.
local function isMachinery(src)
  return isLoomSource(src) and (src:match("/defer%.lua$")
    or src:match("/defer/[^/]*%.lua$")) ~= nil
end

-- One traceback line, its paths cleaned, and what it is: "user", "loom"
-- (one of loom's frames), "machinery" (also loom's), "C", or "note" (a
-- tail-call marker, a skipped-levels line).
local function parseLine(line)
  local src, rest = line:match("^\t([^\t]-)(:%d+: .*)$")
  if not src then
    src, rest = line:match("^\t([^\t]-)(: .*)$")
  end
  if not src then
    return line:gsub("^\t", ""), "note"
  elseif src == "[C]" then
    return "[C]" .. rest, "C"
  end
  src = normalisePath(src)
  rest = rest:gsub("<([^<>]-):(%d+)>$", function(path, n)
    return "<" .. normalisePath(path) .. ":" .. n .. ">"
  end)
  local kind = isMachinery(src) and "machinery"
    or isLoomSource(src) and "loom" or "user"
  return src .. rest, kind
end

local function fullDebug()
  local v = os.getenv("LOOM_DEBUG")
  return v ~= nil and v ~= "" and v ~= "0"
end

-- A recorded stack as a report shows it, one frame a line. The lines above
-- the first frame that is neither the machinery's nor C are dropped; that
-- frame is always shown (what made or fired the Deferred: the user's code,
-- or loom's API such as connectTCP). After it, as in a Failure's
-- traceback, each run of loom's frames (with the C frames and notes among
-- them) is folded into one "[N loom frames]" line. At most MAX_FRAMES
-- lines; LOOM_DEBUG=1 shows every line, paths cleaned.
function M.shorten(text)
  local full = fullDebug()
  local lines, n = {}, 0
  local run, runFrames, runLoom = {}, 0, false -- lines not the user's
  local function add(line)
    n = n + 1
    lines[n] = line
  end
  local function flushRun()
    if runLoom then
      add(format("[%d loom frame%s]", runFrames,
        runFrames == 1 and "" or "s"))
    else
      for i = 1, #run do
        add(run[i])
      end
    end
    run, runFrames, runLoom = {}, 0, false
  end
  for raw in text:gmatch("[^\n]+") do
    if raw ~= "stack traceback:" then
      local line, kind = parseLine(raw)
      if full or kind == "user"
          or (n == 0 and kind == "loom") then
        flushRun()
        add(line)
      elseif n > 0 then
        run[#run + 1] = line
        if kind ~= "note" then
          runFrames = runFrames + 1
        end
        runLoom = runLoom or kind == "loom" or kind == "machinery"
      end
    end
  end
  if runFrames > 0 then -- (a trailing note alone says nothing)
    flushRun()
  end
  if n == 0 then
    return "(no Lua frames)"
  elseif not full and n > M.MAX_FRAMES then
    n = M.MAX_FRAMES + 1
    lines[n] = "..."
  end
  return concat(lines, "\n", 1, n)
end

local function prefixed(text, prefix)
  return prefix .. text:gsub("\n", "\n" .. prefix)
end

-- The debug part of a report (Twisted's _getDebugTracebacks), or nil when
-- info recorded nothing.
function M.describe(info)
  local parts = {}
  if info.creator then
    parts[#parts + 1] = " C: Deferred was created:\n"
      .. prefixed(M.shorten(info.creator), " C:  ")
  end
  if info.invoker then
    parts[#parts + 1] = " I: First Invoker was:\n"
      .. prefixed(M.shorten(info.invoker), " I:  ")
  end
  if #parts == 0 then
    return nil
  end
  return "(debug:\n" .. concat(parts, "\n") .. ")"
end

-- Switching -------------------------------------------------------------------

local CALLBACK_DEFERRED = "Deferred:callback: the result cannot be a "
  .. "Deferred (return it from a callback instead)"

local enabled = false
local saved -- the methods enable() replaced, put back by disable()

-- orig: defer.lua's own functions { DebugInfo=, new=, callback=, errback=,
-- succeed= }; the wrappers call these, so they never wrap each other.
function M.enable(defer, orig)
  if enabled then
    return
  end
  DebugInfo = orig.DebugInfo
  local Deferred, DeferredList = defer.Deferred, defer.DeferredList
  local isDeferred = defer.isDeferred
  local new, callback, errback = orig.new, orig.callback, orig.errback
  local succeed, listNew = orig.succeed, rawget(DeferredList, "new")
  saved = { listNew = listNew }
  local function debugNew(cls, ...)
    return M.made(new(cls, ...))
  end
  Deferred.new = debugNew
  getmetatable(Deferred).__call = debugNew
  DeferredList.new = function(cls, ...)
    return M.made(listNew(cls, ...))
  end
  -- The checks the C functions make are made here too, so that an error
  -- still points at the caller, not at this file.
  Deferred.callback = function(d, result)
    if type(d) == "table" and not d.called then
      if isDeferred(result) then
        error(CALLBACK_DEFERRED, 2)
      end
      M.fired(d)
    end
    return callback(d, result)
  end
  -- (A tail call: errback's traceback of a plain error value, and the
  -- coroutine it notes, are still the caller's.)
  Deferred.errback = function(d, e)
    if type(d) == "table" and not d.called then
      M.fired(d)
    end
    return errback(d, e)
  end
  defer.succeed = function(v)
    if isDeferred(v) then
      error(CALLBACK_DEFERRED, 2)
    end
    local d = M.made(succeed(v))
    d._debugInfo.invoker = d._debugInfo.creator
    return d
  end
  enabled = true
end

function M.disable(defer, orig)
  if not enabled then
    return
  end
  local Deferred = defer.Deferred
  Deferred.new = orig.new
  getmetatable(Deferred).__call = orig.new
  Deferred.callback = orig.callback
  Deferred.errback = orig.errback
  defer.succeed = orig.succeed
  defer.DeferredList.new = saved.listNew
  saved = nil
  enabled = false
end

return M
