-- loom.log: levelled, timestamped log events sent to observers.
--
-- An event is a table {level=, time=, prefix=, text=}. The default observer
-- writes one line per event to stderr (or to the file set with log.toFile):
--   2026-11-23T12:00:00.123Z [Echo,127.0.0.1:5000] error: message
-- Observers added with log.addObserver see every event; specs use them to
-- assert that something was logged.

local log = {}

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }
log.LEVELS = LEVELS
log.level = "info"

local observers = {}
local out = io.stderr

local function timestamp(t)
  local whole = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole)
    .. string.format(".%03dZ", math.floor((t - whole) * 1000))
end

local function now()
  local ok, core = pcall(require, "loom.core")
  if ok and core.walltime then
    return core.walltime()
  end
  return os.time()
end

function log.format(ev)
  local prefix = ev.prefix and ("[" .. ev.prefix .. "] ") or ""
  return string.format("%s %s%s: %s", timestamp(ev.time), prefix, ev.level,
    ev.text)
end

-- Where the default observer's lines go instead of the output, when set:
-- sink(level, line) (log.setSink; an embedder's C log function, loom.h).
local sink = nil

local function default_observer(ev)
  if LEVELS[ev.level] < LEVELS[log.level] then
    return
  end
  if sink ~= nil then
    sink(ev.level, log.format(ev))
    return
  end
  out:write(log.format(ev), "\n")
  out:flush()
end

function log.emit(level, prefix, text)
  local ev = { level = level, time = now(), prefix = prefix, text = text }
  default_observer(ev)
  for i = 1, #observers do
    -- An observer that raises must not stop the others or the caller.
    local ok, err = pcall(observers[i], ev)
    if not ok then
      out:write("loom.log: observer failed: ", tostring(err), "\n")
    end
  end
  return ev
end

-- tostring that cannot raise: a value whose __tostring fails is described
-- by its type, so reporting it never breaks the reporter.
local function safeString(value)
  local ok, text = pcall(tostring, value)
  if ok then
    return text
  end
  return "(a " .. type(value) .. " value that tostring cannot show)"
end
log.safeString = safeString

local function formatted(fmt, ...)
  if select("#", ...) == 0 then
    return tostring(fmt)
  end
  return string.format(fmt, ...)
end

-- A logger bound to a prefix; log.info and friends use no prefix.
local function logger(prefix)
  local l = {}
  for name in pairs(LEVELS) do
    l[name] = function(fmt, ...)
      return log.emit(name, prefix, formatted(fmt, ...))
    end
  end
  -- log.err(failure, why): an error with its traceback (Twisted's log.err).
  -- Any value is logged, even one whose __tostring raises.
  l.err = function(failure, why)
    local text
    if type(failure) == "table" and failure.getTraceback then
      local ok, tb = pcall(failure.getTraceback, failure)
      text = ok and safeString(tb) or safeString(failure)
    else
      text = safeString(failure)
    end
    if why then
      text = safeString(why) .. "\n" .. text
    end
    return log.emit("error", prefix, text)
  end
  return l
end

local root = logger(nil)
for k, v in pairs(root) do
  log[k] = v
end

-- log.prefixed("Echo,127.0.0.1:5000").info(...)
function log.prefixed(prefix)
  return logger(prefix)
end

-- The prefix of an object: its logPrefix() when it has one, else its class
-- name (Twisted's logPrefix default).
function log.prefixOf(obj)
  if type(obj) == "table" then
    local lp = obj.logPrefix
    if type(lp) == "function" then
      local ok, p = pcall(lp, obj)
      if ok and p ~= nil then
        return tostring(p)
      end
    end
    local mt = getmetatable(obj)
    if type(mt) == "table" and rawget(mt, "__name") then
      return rawget(mt, "__name")
    end
  end
  return nil
end

function log.addObserver(f)
  observers[#observers + 1] = f
  return f
end

function log.removeObserver(f)
  for i = #observers, 1, -1 do
    if observers[i] == f then
      table.remove(observers, i)
    end
  end
end

-- Replace where the default observer writes: sink(level, line) gets each
-- line it would have written (without the newline; a traceback is one line
-- with newlines in it) at or above log.level. nil: back to the output.
function log.setSink(f)
  sink = f
end

-- Send the default output to a file (nil: back to stderr). Used by --logfile.
function log.toFile(path)
  if out ~= io.stderr then
    out:close()
  end
  if path == nil then
    out = io.stderr
    return true
  end
  local f, err = io.open(path, "a")
  if not f then
    out = io.stderr
    return nil, err
  end
  out = f
  return true
end

return log
