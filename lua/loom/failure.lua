-- loom.failure: an error value together with the traceback where it arose.
--
--   local Failure = require("loom.failure").Failure
--   local f = Failure(err.ConnectionLost("peer went away"))
--   f.value, f.type, f.traceback
--   f:check(err.ConnectionLost, err.ConnectionDone)  --> the class that matched
--   f:trap(err.ConnectionDone)       -- re-raises f unless the value matches
--   f:raise()                        -- error(f, 0)
--
-- Lua has no "current exception", so Failure() needs a value. Capture errors
-- with xpcall and failure.handler, which wraps the error where it happened:
--
--   local ok, f = xpcall(fn, failure.handler, ...)   -- f is a Failure
--
-- A Failure raised out of inlineCallbacks bodies also carries, in
-- f.asyncFrames, the frames of each body it went through, from the await
-- where it arrived (loom.defer adds them): f:getTraceback() shows the whole
-- async chain, outermost caller last, with paths cleaned of "x/.." and
-- loom's own frames folded into one line (all of them with LOOM_DEBUG=1).

local class = require "loom.class"
local err = require "loom.error"
local log = require "loom.log"

local failure = {}

-- The C core's traceback when loaded: debug.traceback's format, cut at the
-- reactor boundary, and cheap on a deep stack (a Failure made inside a
-- runaway recursion must not take a second to build).
local makeTraceback = debug.traceback
do
  local ok, core = pcall(require, "loom.core")
  if ok and type(core) == "table" and core.traceback then
    makeTraceback = core.traceback
  end
end

local Failure = class.Object:extend({ __name = "Failure" })
failure.Failure = Failure

local getinfo, running = debug.getinfo, coroutine.running
local concat, format = table.concat, string.format

local isinstance = class.isinstance
local isError = err.isError

-- The text used for the nil error value (as lua.c prints it).
failure.NIL_ERROR = "(error object is a nil value)"

local function isFailure(x)
  local mt = getmetatable(x)
  if mt == Failure then
    return true
  end
  return mt ~= nil and type(x) == "table" and isinstance(x, Failure)
end
failure.isFailure = isFailure

-- tostring that cannot raise (log's: reporting never breaks the reporter).
local safeString = log.safeString
failure.safeString = safeString

-- failure.fromError(value, traceback): a Failure for any caught error
-- value, nil included (as lua.c, it becomes NIL_ERROR); never raises. What
-- reports a hook's error uses it.
function failure.fromError(value, traceback)
  if value == nil then
    value = failure.NIL_ERROR
  end
  return failure.Failure(value, traceback)
end

local function typeOf(value)
  if isError(value) then
    return getmetatable(value)
  end
  return type(value)
end

-- The coroutine (or main thread) whose stack a Failure's traceback shows,
-- when it was taken there: a Failure raised out of that coroutine's body
-- adds no frames (noteAwait). Weak both ways: a Failure kept for long keeps
-- no dead coroutine's stack alive with it.
local madeIn = setmetatable({}, { __mode = "kv" })

-- Failure(value, traceback?): a Failure wrapping value; a Failure given as
-- value is returned unchanged. traceback is a string; by default the stack
-- where the Failure is made.
function Failure:new(value, traceback)
  if value == nil then
    error("Failure: a value is required (Lua has no current exception)", 2)
  end
  if isFailure(value) then
    return value
  end
  local f = setmetatable({ value = value, type = typeOf(value),
    traceback = traceback }, self)
  if traceback == nil then
    f.traceback = makeTraceback(nil, 2)
    madeIn[f] = running()
  end
  return f
end

-- An xpcall message handler: the error as a Failure with the traceback of
-- the place that raised it. A Failure raised again keeps its own traceback.
function failure.handler(e)
  if isFailure(e) then
    return e
  end
  if e == nil then
    e = failure.NIL_ERROR
  end
  local f = Failure(e, makeTraceback(nil, 2))
  madeIn[f] = running()
  return f
end

-- failure.setMadeIn(f, co): f's traceback shows the stack of coroutine co
-- (for a Failure made with a traceback string taken from co).
function failure.setMadeIn(f, co)
  madeIn[f] = co
end

-- The name of an error class, or nil for anything else.
local function className(cls)
  return type(cls) == "table" and rawget(cls, "__name") or nil
end

-- Does one check argument match this failure's value?
local function matches(self, what)
  local value = self.value
  if type(what) == "string" then
    if what == type(value) then
      return true
    end
    -- A string also names an error class or one of its bases.
    local c = isError(value) and getmetatable(value) or nil
    while c do
      if className(c) == what then
        return true
      end
      c = rawget(c, "super")
    end
    return false
  end
  return type(what) == "table" and isinstance(value, what)
end

-- f:check(cls, ...): the first argument matching the value, else nil. An
-- argument is an error class (its subclasses match too), a Lua type name
-- such as "string", or an error class name such as "ConnectionLost".
function Failure:check(...)
  for i = 1, select("#", ...) do
    local what = select(i, ...)
    if matches(self, what) then
      return what
    end
  end
  return nil
end

-- f:trap(cls, ...): like check, but raises the Failure itself (error(f, 0))
-- when nothing matches, so an errback passes the failure on unchanged.
function Failure:trap(...)
  local what = self:check(...)
  if what == nil then
    error(self, 0)
  end
  return what
end

-- The error message alone: an error value's message, or tostring(value).
function Failure:getErrorMessage()
  local value = self.value
  if isError(value) then
    local message = rawget(value, "message")
    if message ~= nil then
      return safeString(message)
    end
  end
  return safeString(value)
end

-- Paths ----------------------------------------------------------------------

-- A path without "." segments nor "dir/.." pairs (lexically, as the
-- chunk name is all there is): /src/build/../lua/x.lua is /src/lua/x.lua.
-- A leading "./" or "../" stays, as the user gave it. A short_src that Lua
-- cut ("...tail") is cleaned after its "...".
local function normalisePath(path)
  if not path:find("/.", 1, true) then
    return path -- (the usual case: nothing to clean)
  end
  local cut = path:sub(1, 3) == "..."
  local absolute = not cut and path:sub(1, 1) == "/"
  local out, k = {}, 0
  for seg in ((cut and path:sub(4) or path) .. "/"):gmatch("(.-)/") do
    k = k + 1
    local top = out[#out]
    if seg == "." and k > 1 then
      -- a "." segment says nothing
    elseif seg == ".." and top ~= nil and top ~= ".." and top ~= "."
        and top ~= "" then
      out[#out] = nil -- dir/.. is nothing
    elseif not (seg == ".." and absolute and #out == 1) then
      out[#out + 1] = seg -- (and /.. is /)
    end
  end
  local clean = concat(out, "/")
  if absolute and clean == "" then
    clean = "/"
  end
  return cut and "..." .. clean or clean
end
failure.normalisePath = normalisePath

-- The directory of loom's own Lua files (this file's), cleaned: a frame in
-- a file under it is loom's.
local LOOM_DIR
do
  local source = getinfo(1, "S").source
  if source:sub(1, 1) == "@" then
    LOOM_DIR = normalisePath(source:sub(2)):match("^(.*/)")
  end
end

-- Is the (cleaned) source path one of loom's own files? A short_src cut by
-- Lua ("...m/lua/loom/defer.lua") is loom's if it is the tail of one.
local function isLoomSource(src)
  if LOOM_DIR == nil then
    return false
  end
  if src:sub(1, #LOOM_DIR) == LOOM_DIR then
    return true
  end
  if src:sub(1, 3) == "..." then
    local tail = src:sub(4)
    local at = tail:find("lua/loom/", 1, true)
    if at then
      local full = LOOM_DIR .. tail:sub(at + #"lua/loom/")
      return full:sub(-#tail) == tail
    end
  end
  return false
end
failure.isLoomSource = isLoomSource

-- Are loom's own frames wanted in tracebacks? (LOOM_DEBUG=1, read each time
-- a traceback is written, so a test or a manhole can change it.)
local function debugging()
  local v = os.getenv("LOOM_DEBUG")
  return v ~= nil and v ~= "" and v ~= "0"
end

-- Async frames -----------------------------------------------------------
--
-- When a Failure leaves an inlineCallbacks body (its coroutine dead, its
-- stack kept as it was at the raise), defer.lua calls noteAwait: the
-- body's frames, from the await where the Failure arrived down to the
-- body's own function, are appended to f.asyncFrames, one record a frame:
--   { source = "app.lua", line = 16, name = "function <app.lua:15>",
--     awaited = true }          (awaited: the frame that awaited)
--   { skipped = n }             (the middle of a deep stack, left out)
--   { tailcalls = true }        (the frame above was reached by tail calls)
-- Nothing is recorded while nothing fails: the success path pays nothing.

local FIRST_LEVELS, LAST_LEVELS = 10, 11 -- a deep stack: as luaL_traceback
local MAX_ASYNC_FRAMES = 200 -- a Failure reused for ever stops growing here

-- The deepest level of co's stack (lauxlib's lastlevel, by bisection).
local function lastLevel(co)
  local li, le = 1, 1
  while getinfo(co, le, "l") do
    li, le = le, le * 2
  end
  while li < le do
    local m = (li + le) // 2
    if getinfo(co, m, "l") then
      li = m + 1
    else
      le = m
    end
  end
  return le - 1
end

-- A frame's source as the user gave it (the whole path, cleaned).
local function sourceOf(info)
  local source = info.source
  if source:sub(1, 1) == "@" then
    return normalisePath(source:sub(2))
  end
  return info.short_src
end

-- What a traceback says a frame is in (lauxlib's wording).
local function describe(info, source)
  local name, namewhat = info.name, info.namewhat
  if name ~= nil and namewhat == "global" then
    return format("function '%s'", name)
  elseif name ~= nil and namewhat ~= "" then
    return format("%s '%s'", namewhat, name)
  elseif info.what == "main" then
    return "main chunk"
  elseif info.what == "C" then
    return "?"
  end
  return format("function <%s:%d>", source, info.linedefined)
end

-- Adds the record of co's frame at level to frames (and a tail-call
-- marker after a frame that a tail call replaced, as Lua's tracebacks do).
local function addFrame(frames, co, level)
  local info = getinfo(co, level, "Slnt")
  local source = sourceOf(info)
  frames[#frames + 1] = { source = source, line = info.currentline,
    name = describe(info, source) }
  if info.istailcall then
    frames[#frames + 1] = { tailcalls = true }
  end
end

-- failure.noteAwait(f, co, base, awaits): f was raised out of the
-- coroutine co, whose bottom `base` levels are loom's (the coroutine's
-- driver); awaits is the set of functions that raise what they waited for
-- (defer.await, coroutine.yield). Adds co's frames to f.asyncFrames unless
-- f was made in co (its own traceback shows them already).
function failure.noteAwait(f, co, base, awaits)
  if madeIn[f] == co then
    return
  end
  local frames = rawget(f, "asyncFrames") or {}
  local last, level, awaited = lastLevel(co) - base, 0, false
  -- The C functions the Failure was raised from (await, yield, error).
  while level <= last do
    local info = getinfo(co, level, "Sf")
    if info.what ~= "C" then
      break
    end
    awaited = awaited or awaits[info.func] == true
    level = level + 1
  end
  local count = last - level + 1
  if count <= 0 or #frames + 2 * math.min(count, FIRST_LEVELS + LAST_LEVELS)
      + 1 > MAX_ASYNC_FRAMES then
    return
  end
  local first, top = #frames + 1, level
  while level <= last do
    if count > FIRST_LEVELS + LAST_LEVELS and level == top + FIRST_LEVELS then
      local skip = count - FIRST_LEVELS - LAST_LEVELS
      frames[#frames + 1] = { skipped = skip }
      level = level + skip
    end
    addFrame(frames, co, level)
    level = level + 1
  end
  frames[first].awaited = awaited or nil
  f.asyncFrames = frames
end

-- One traceback line for an async frame record.
local function frameLine(fr)
  if fr.skipped then
    return format("\t...\t(skipping %d levels)", fr.skipped)
  elseif fr.tailcalls then
    return "\t(...tail calls...)"
  end
  local where = fr.source
  if type(fr.line) == "number" and fr.line > 0 then
    where = where .. ":" .. fr.line
  end
  return "\t" .. where .. ": " .. (fr.awaited and "awaited in " or "in ")
    .. safeString(fr.name)
end

-- Writing tracebacks ----------------------------------------------------------

-- A traceback line with its paths cleaned, and whether the frame is loom's
-- ("loom"), a C function's ("C"), a tail-call marker ("tail") or anything
-- else (nil: the user's frame, the header, a note).
local function cleanLine(line)
  if line == "\t(...tail calls...)" then
    return line, "tail"
  end
  local src, rest = line:match("^\t([^\t]-)(:%d+: .*)$")
  if not src then
    src, rest = line:match("^\t([^\t]-)(: .*)$")
  end
  if not src then
    return line, nil
  end
  if src == "[C]" then
    return line, "C"
  end
  src = normalisePath(src)
  rest = rest:gsub("<([^<>]-):(%d+)>$", function(p, n)
    return "<" .. normalisePath(p) .. ":" .. n .. ">"
  end)
  return "\t" .. src .. rest, isLoomSource(src) and "loom" or nil
end

-- Appends lines to out, folding each run of loom's frames (with the C and
-- tail-call lines among them) into one line unless all is wanted.
local function addLines(out, lines, all)
  local run, frames, loom = {}, 0, false
  local function flush()
    if loom and not all then
      out[#out + 1] = format("\t[%d loom frame%s]", frames,
        frames == 1 and "" or "s")
    else
      table.move(run, 1, #run, #out + 1, out)
    end
    run, frames, loom = {}, 0, false
  end
  for i = 1, #lines do
    local line, kind = cleanLine(lines[i])
    if kind ~= nil then
      run[#run + 1] = line
      if kind ~= "tail" then
        frames = frames + 1
      end
      loom = loom or kind == "loom"
    else
      flush()
      out[#out + 1] = line
    end
  end
  flush()
end

-- failure.formatTraceback(text, asyncFrames?, all?): a traceback string
-- (debug.traceback's format) followed by the async frames, its paths
-- cleaned and loom's frames folded (all: keep them; by default, LOOM_DEBUG).
function failure.formatTraceback(text, asyncFrames, all)
  if all == nil then
    all = debugging()
  end
  local lines = {}
  for line in (safeString(text) .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = line
  end
  if type(asyncFrames) == "table" then
    for i = 1, #asyncFrames do
      lines[#lines + 1] = frameLine(asyncFrames[i])
    end
  end
  local out = {}
  addLines(out, lines, all)
  return concat(out, "\n")
end

-- The error message with a leading "path:line:" cleaned.
local function messageOf(value)
  local text = safeString(value)
  local path, rest = text:match("^([^\n:]-)(:%d+: .*)$")
  if path == nil then
    path, rest = text:match("^([^\n:]-)(:%d+:.*)$")
  end
  if path ~= nil and path:find("/", 1, true) then
    return normalisePath(path) .. rest
  end
  return text
end

-- The message line followed by the traceback: the frames where the error
-- arose, then each inlineCallbacks caller it went through, outermost last.
function Failure:getTraceback()
  return messageOf(self.value) .. "\n"
    .. failure.formatTraceback(self.traceback, rawget(self, "asyncFrames"))
end

-- f:printTraceback(file?): getTraceback() written to file (default stderr).
function Failure:printTraceback(file)
  file = file or io.stderr
  file:write(self:getTraceback(), "\n")
end

function Failure:raise()
  error(self, 0)
end

-- Twisted's cleanFailure: nothing to release here, kept for familiarity.
function Failure:cleanFailure()
end

function Failure:__tostring()
  local t = self.type
  local tname = className(t) or safeString(t)
  if isError(self.value) then
    return "[Failure " .. safeString(self.value) .. "]"
  end
  return "[Failure " .. tname .. ": " .. safeString(self.value) .. "]"
end

return failure
