-- loom.defer.debug: what defer.setDebugging(true) turns on (Twisted's
-- Deferred.debug and DebugInfo.creator/invoker). Seen through loom.defer:
--
--   defer.setDebugging(true)
--   defer.getDebugging()          --> true
--
-- While on, every Deferred records a short stack where it was made and
-- where it was first fired, in its DebugInfo (d._debugInfo); the
-- "Unhandled error in Deferred" report and AlreadyCalledError name both.
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

local getinfo = debug.getinfo
local rawget, rawset, setmetatable = rawget, rawset, setmetatable
local concat = table.concat

local M = {}

-- How many lines a recorded stack keeps (LOOM_DEBUG=1: every frame, up to
-- FULL_FRAMES), and how far up a stack is walked at most.
M.MAX_FRAMES = 8
local FULL_FRAMES = 40
local MAX_LEVELS = 60

-- "build/../lua/x.lua" as "lua/x.lua": the path as a user would write it.
local function cleanPath(path)
  if not path:find("%.%.?/") then
    return path
  end
  local out = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." and #out > 0 and out[#out] ~= ".." then
      out[#out] = nil
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  return (path:sub(1, 1) == "/" and "/" or "") .. concat(out, "/")
end

-- A chunk's file, as cleanPath shows it (nil for a chunk from a string).
local function fileOf(source)
  return source:sub(1, 1) == "@" and cleanPath(source:sub(2)) or nil
end

-- loom's own Lua directory (".../loom/", cleaned: the host and LUA_PATH
-- may reach it by different paths), from where this file is: frames in it
-- are loom's, and those of defer.lua and defer/ are the machinery that
-- makes and fires Deferreds (never what a user wants to see).
local loomDir = (fileOf(getinfo(1, "S").source) or "")
  :match("^(.*[/\\])defer[/\\]debug%.lua$")

-- What is under loomDir of the file of source, or nil.
local function inLoom(source)
  local file = loomDir and fileOf(source)
  if file and file:sub(1, #loomDir) == loomDir then
    return file:sub(#loomDir + 1)
  end
  return nil
end

local function isMachinery(source)
  local rest = inLoom(source)
  return rest == "defer.lua" or (rest and rest:match("^defer[/\\]")) ~= nil
end

-- One frame as debug.traceback shows it.
local function frameLine(ar)
  local where
  if ar.what == "C" then
    return ar.name and "[C]: in function '" .. ar.name .. "'" or "[C]: in ?"
  elseif ar.namewhat ~= "" and ar.name then
    where = "function '" .. ar.name .. "'"
  elseif ar.what == "main" then
    where = "main chunk"
  else
    where = string.format("function <%s:%d>",
      cleanPath(ar.short_src), ar.linedefined)
  end
  local src = fileOf(ar.source) or ar.short_src
  if ar.currentline > 0 then
    return string.format("%s:%d: in %s", src, ar.currentline, where)
  end
  return string.format("%s: in %s", src, where)
end

local function fullDebug()
  local v = os.getenv("LOOM_DEBUG")
  return v ~= nil and v ~= "" and v ~= "0"
end

-- The stack of the caller, as text. The machinery's frames (and C frames)
-- above the first other frame are dropped; that frame is always shown (the
-- call that made or fired the Deferred: a user's, or loom's API such as
-- connectTCP); after it, each run of loom's frames and C frames between
-- two shown frames is folded into one line, and those below the last shown
-- one (the reactor's, the host's) are left out. LOOM_DEBUG=1 shows every
-- frame.
local full = false -- LOOM_DEBUG=1 when debugging was turned on

local function capture()
  local lines, n, folded = {}, 0, 0
  local limit = full and FULL_FRAMES or M.MAX_FRAMES
  local function flushFolded()
    if folded > 0 then
      n = n + 1
      lines[n] = string.format("(%d frame%s of loom or C; LOOM_DEBUG=1"
        .. " shows them)", folded, folded == 1 and "" or "s")
      folded = 0
    end
  end
  local function add(line)
    flushFolded()
    n = n + 1
    lines[n] = line
  end
  for level = 2, MAX_LEVELS do
    local ar = getinfo(level, "Sln")
    if ar == nil then
      break
    end
    local isC = ar.what == "C"
    if full or not (isC or inLoom(ar.source)) then
      add(frameLine(ar))
    elseif n == 0 then
      if not (isC or isMachinery(ar.source)) then
        add(frameLine(ar))
      end
    else
      folded = folded + 1
    end
    if n >= limit then
      folded = 0
      add("...")
      break
    end
  end
  if n == 0 then
    return "(no Lua frames)"
  end
  return concat(lines, "\n")
end
M.capture = capture

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
  infoOf(d).creator = capture()
  return d
end

-- d is about to fire: record where, the first time.
function M.fired(d)
  if d.called then
    return
  end
  local info = infoOf(d)
  if info.invoker == nil then
    info.invoker = capture()
  end
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
      .. prefixed(info.creator, " C:  ")
  end
  if info.invoker then
    parts[#parts + 1] = " I: First Invoker was:\n"
      .. prefixed(info.invoker, " I:  ")
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
  full = fullDebug()
  local Deferred, DeferredList = defer.Deferred, defer.DeferredList
  local isDeferred, isFailure = defer.isDeferred, failure.isFailure
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
  Deferred.errback = function(d, e)
    if not d.called then
      M.fired(d)
      if not isFailure(e) then
        e = failure.Failure(e == nil and failure.NIL_ERROR or e,
          debug.traceback(nil, 2))
      end
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
