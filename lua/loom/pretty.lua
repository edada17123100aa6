-- loom.pretty: a Lua value as a person reads it, for the manhole
-- (Python's repr and pprint in one). Bounded whatever the value holds:
-- tables nest to `depth` levels, show `items` entries each and strings
-- `string` bytes; a table met again on its own path prints as <cycle>.
--
--   pretty.format({1, "two", x = {y = true}})  --> {1, "two", x = {y = true}}
--   pretty.format(d)                           --> <Deferred #3 waiting>
--
-- A table too wide for `width` columns is broken over lines, one entry a
-- line. A Deferred shows its number (defer.serial) and state, a Failure
-- its message, a class instance its class name and fields, anything with
-- a __tostring what that returns (guarded: a raising one is shown as such).

local class = require "loom.class"
local defer = require "loom.defer"
local failure = require "loom.failure"

local M = {}

-- The bounds used when format's options leave one out.
M.defaults = { depth = 4, items = 50, string = 1000, width = 78 }

-- Past this many entries a table's keys are shown in pairs order, not
-- sorted: sorting a huge table at the prompt would stall the reactor.
local SORT_LIMIT = 10000

local IDENTIFIER = "^[%a_][%w_]*$"
local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

-- A string as Lua source, cut to max bytes.
local function quote(s, max)
  local cut = ""
  if #s > max then
    cut = string.format("...(%d bytes)", #s)
    s = s:sub(1, max)
  end
  return (string.format("%q", s):gsub("\\\n", "\\n")) .. cut
end

local function safeTostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then
    return s
  end
  return string.format("<%s: __tostring raised>", type(v))
end

local function describeFunction(f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    return "<function builtin>"
  end
  return string.format("<function %s:%d>", info.short_src, info.linedefined)
end

-- Is t a loom class (class.Object:extend), or an instance of one?
local function isClass(t)
  return rawget(t, "__index") == t and rawget(t, "super") ~= nil
end

local function instanceClass(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and (isClass(mt) or mt == class.Object) then
    return mt
  end
  return nil
end

-- Entries of t in a stable order: 1..n first, then the other keys sorted
-- by type then value. Returns the keys and the count of all entries.
local function orderedKeys(t)
  local keys, n = {}, 0
  local seq = 0
  while rawget(t, seq + 1) ~= nil do
    seq = seq + 1
  end
  for k in next, t do
    n = n + 1
    if not (math.type(k) == "integer" and k >= 1 and k <= seq) then
      keys[#keys + 1] = k
    end
  end
  if n <= SORT_LIMIT then
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then
        return ta < tb
      elseif ta == "number" or ta == "string" then
        return a < b
      end
      return safeTostring(a) < safeTostring(b)
    end)
  end
  local all = {}
  for i = 1, seq do
    all[i] = i
  end
  for _, k in ipairs(keys) do
    all[#all + 1] = k
  end
  return all, n, seq
end

local render -- forward

local function renderKey(k, seq, ctx, indent, depth, path)
  if math.type(k) == "integer" and k >= 1 and k <= seq then
    return ""
  elseif type(k) == "string" and k:match(IDENTIFIER) and not KEYWORDS[k] then
    return k .. " = "
  end
  return "[" .. render(k, ctx, indent, depth, path) .. "] = "
end

-- Joins parts on one line when they fit; else the first npos (the
-- sequence's values) fill lines as text does, and the rest go one a line.
local function layout(open, parts, close, ctx, indent, npos)
  local flat = open .. table.concat(parts, ", ") .. close
  if #flat + indent <= ctx.width and not flat:find("\n", 1, true) then
    return flat
  end
  local pad = string.rep(" ", indent + 2)
  local lines, line = {}, nil
  for i, part in ipairs(parts) do
    local packable = i <= npos and not part:find("\n", 1, true)
    if line and packable and #pad + #line + #part + 2 <= ctx.width then
      line = line .. ", " .. part
    else
      lines[#lines + 1] = line
      line = part
      if not packable then
        lines[#lines + 1] = line
        line = nil
      end
    end
  end
  lines[#lines + 1] = line
  return open:gsub(" $", "") .. "\n" .. pad .. table.concat(lines, ",\n" .. pad)
    .. ",\n" .. string.rep(" ", indent) .. close:gsub("^ ", "")
end

local function renderTable(t, ctx, indent, depth, path, open)
  if path[t] then
    return "<cycle>"
  end
  local keys, n, seq = orderedKeys(t)
  if n == 0 then
    return open .. "}"
  elseif depth >= ctx.depth then
    return open .. "...}"
  end
  path[t] = true
  local parts = {}
  for i = 1, math.min(#keys, ctx.items) do
    local k = keys[i]
    parts[i] = renderKey(k, seq, ctx, indent + 2, depth + 1, path)
      .. render(rawget(t, k), ctx, indent + 2, depth + 1, path)
  end
  if n > ctx.items then
    parts[#parts + 1] = string.format("...(%d more)", n - ctx.items)
  end
  path[t] = nil
  return layout(open, parts, "}", ctx, indent, math.min(seq, ctx.items))
end

local function renderDeferred(d, ctx, indent, depth, path)
  local n = defer.serial(d)
  local waitingOn = rawget(d, "_chainedTo")
  if waitingOn then
    return string.format("<Deferred #%d waiting on Deferred #%d>", n,
      defer.serial(waitingOn))
  elseif not d.called then
    return string.format("<Deferred #%d waiting>", n)
  end
  return string.format("<Deferred #%d fired: %s>", n,
    render(d.result, ctx, indent, depth + 1, path))
end

local function renderObject(t, ctx, indent, depth, path)
  local mt = getmetatable(t)
  if defer.isDeferred(t) then
    return renderDeferred(t, ctx, indent, depth, path)
  elseif class.isinstance(t, failure.Failure) then
    return "<Failure " .. failure.safeString(t:getErrorMessage()):gsub("\n.*",
      "") .. ">"
  elseif isClass(t) then
    return "<class " .. tostring(rawget(t, "__name") or "?") .. ">"
  end
  local cls = instanceClass(t)
  local name = cls and rawget(cls, "__name")
  if cls and rawget(cls, "__tostring") == nil then
    return renderTable(t, ctx, indent, depth, path,
      "<" .. tostring(name or "object") .. " {") .. ">"
  elseif type(mt) == "table" and rawget(mt, "__tostring") then
    return safeTostring(t)
  end
  return renderTable(t, ctx, indent, depth, path, "{")
end

function render(v, ctx, indent, depth, path)
  local tv = type(v)
  if tv == "string" then
    return quote(v, ctx.string)
  elseif tv == "table" then
    if getmetatable(v) ~= nil then
      return renderObject(v, ctx, indent, depth, path)
    end
    return renderTable(v, ctx, indent, depth, path, "{")
  elseif tv == "function" then
    return describeFunction(v)
  elseif tv == "number" and math.type(v) == "float" and v == math.floor(v)
    and v > -1e15 and v < 1e15 then
    return string.format("%.1f", v)
  end
  return safeTostring(v)
end

-- format(value, opts?) -> string. opts: depth, items, string, width
-- (see M.defaults).
function M.format(value, opts)
  local ctx = {}
  for k, v in pairs(M.defaults) do
    ctx[k] = opts and opts[k] or v
  end
  return render(value, ctx, 0, 0, {})
end

return M
