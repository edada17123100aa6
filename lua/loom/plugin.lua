-- loom.plugin: plugins as `loom` subcommands (Twisted's twistd plugins).
--
-- A plugin is a Lua file NAME.lua in the plugin path returning
--   { name = "echo", description = "...",
--     options = { {"port", "p", "tcp:8000:interface=127.0.0.1",
--                  "where to listen"}, ... },
--     makeService = function(opts) return service end }
-- `loom echo --port tcp:9000` loads it, parses the options and runs the
-- service makeService returns like an application file.
--
-- The path: every directory of LOOM_PLUGIN_PATH (colon-separated), then the
-- host's own plugins/ (loom.hostinfo.plugins); the first NAME.lua wins.
--
-- Options are typed from their default: a number default takes a number,
-- a boolean default makes a flag (--verbose / --no-verbose), anything else
-- (a string or nil) takes a string. `--port X`, `--port=X` and `-p X` work.

local core = require "loom.core"

local M = {}

function M.path()
  local dirs = {}
  local env = os.getenv("LOOM_PLUGIN_PATH")
  if env then
    for dir in env:gmatch("[^:]+") do
      dirs[#dirs + 1] = dir
    end
  end
  local info = package.loaded["loom.hostinfo"]
  if info and info.plugins then
    dirs[#dirs + 1] = info.plugins
  end
  return dirs
end

local function exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end

-- The file of plugin `name`, or nil.
function M.find(name)
  if not name:match("^[%w_][%w_%-]*$") then
    return nil
  end
  for _, dir in ipairs(M.path()) do
    local file = dir .. "/" .. name .. ".lua"
    if exists(file) then
      return file
    end
  end
  return nil
end

-- Every plugin name in the path, sorted, each once: { {name=, file=} }.
function M.list()
  local seen, out = {}, {}
  for _, dir in ipairs(M.path()) do
    for _, entry in ipairs(core.listDir(dir) or {}) do
      local name = entry:match("^([%w_][%w_%-]*)%.lua$")
      if name and not seen[name] then
        seen[name] = true
        out[#out + 1] = { name = name, file = dir .. "/" .. entry }
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local function validate(p, file)
  if type(p) ~= "table" then
    return nil, file .. ": a plugin must return a table, got " .. type(p)
  end
  if type(p.makeService) ~= "function" then
    return nil, file .. ": the plugin has no makeService function"
  end
  p.options = p.options or {}
  for i, o in ipairs(p.options) do
    if type(o) ~= "table" or type(o[1]) ~= "string" then
      return nil, string.format("%s: option %d must be {long, short,"
        .. " default, help}", file, i)
    end
  end
  return p
end

-- Loads a plugin file in its own environment; returns the plugin table or
-- nil and a one-line message ("file:line: ..." for a syntax error).
function M.load(file, name)
  local env = setmetatable({}, { __index = _G })
  local chunk, msg = loadfile(file, "t", env)
  if not chunk then
    return nil, (msg:gsub("\n.*", ""))
  end
  local ok, p = pcall(chunk)
  if not ok then
    return nil, (tostring(p):gsub("\n.*", ""))
  end
  local plugin, e = validate(p, file)
  if plugin then
    plugin.name = plugin.name or name
    plugin.file = file
  end
  return plugin, e
end

-- Options --------------------------------------------------------------------

local function kindOf(o)
  local t = type(o[3])
  if t == "number" or t == "boolean" then
    return t
  end
  return "string"
end

-- Parses argv[first..] against the plugin's options. Returns the options
-- table (every option set, defaults filled in), or nil and a one-line
-- message, or "help" for --help/-h. `extra(flag, value?)` may claim flags
-- the plugin does not define (the `loom` common flags): it returns the
-- number of arguments it used (1 or 2), or nil.
function M.parseOptions(p, argv, first, extra)
  local byLong, byShort, opts = {}, {}, {}
  for _, o in ipairs(p.options) do
    byLong[o[1]] = o
    if o[2] and o[2] ~= "" then
      byShort[o[2]] = o
    end
    opts[o[1]] = o[3]
  end
  local i = first
  local function need(flag, o, inline)
    if inline ~= nil then
      return inline
    end
    i = i + 1
    local v = argv[i]
    if v == nil then
      error(string.format("option %s needs a value (%s)", flag,
        o[4] or o[1]), 0)
    end
    return v
  end
  local function set(flag, o, inline)
    local kind = kindOf(o)
    if kind == "boolean" then
      if inline ~= nil then
        error(string.format("option %s is a flag and takes no value", flag), 0)
      end
      opts[o[1]] = true
      return
    end
    local v = need(flag, o, inline)
    if kind == "number" then
      local n = tonumber(v)
      if n == nil then
        error(string.format("option %s expects a number, got '%s'", flag, v),
          0)
      end
      v = n
    end
    opts[o[1]] = v
  end
  local ok, e = pcall(function()
    while i <= #argv do
      local a = argv[i]
      if a == "--help" or a == "-h" then
        return "help"
      end
      local long, inline = a:match("^%-%-([^=]+)=(.*)$")
      long = long or a:match("^%-%-(.+)$")
      local o
      if long then
        o = byLong[long]
        local negated = not o and long:match("^no%-(.+)$")
        if negated and byLong[negated] and kindOf(byLong[negated])
          == "boolean" and inline == nil then
          opts[negated] = false
        elseif o then
          set("--" .. long, o, inline)
        else
          local used = extra and extra("--" .. long, inline, argv[i + 1])
          if not used then
            error(string.format("unknown option '--%s' for %s (see loom %s"
              .. " --help)", long, p.name, p.name), 0)
          end
          i = i + used - 1
        end
      elseif a:match("^%-%w$") then
        o = byShort[a:sub(2)]
        if not o then
          error(string.format("unknown option '%s' for %s (see loom %s"
            .. " --help)", a, p.name, p.name), 0)
        end
        set(a, o)
      else
        error(string.format("unexpected argument '%s' for %s (see loom %s"
          .. " --help)", a, p.name, p.name), 0)
      end
      i = i + 1
    end
  end)
  if not ok then
    return nil, tostring(e)
  end
  if e == "help" then
    return "help"
  end
  return opts
end

-- The text of `loom NAME --help`.
function M.usage(p)
  local lines = { string.format("Usage: loom %s [options]", p.name) }
  if p.description then
    lines[#lines + 1] = ""
    lines[#lines + 1] = p.description
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options:"
  local rows = {}
  local width = 0
  for _, o in ipairs(p.options) do
    local kind = kindOf(o)
    local left
    if kind == "boolean" then
      left = string.format("--[no-]%s", o[1])
    else
      left = string.format("--%s %s", o[1], kind == "number" and "N"
        or o[1]:upper())
    end
    if o[2] and o[2] ~= "" then
      left = "-" .. o[2] .. ", " .. left
    else
      left = "    " .. left
    end
    local help = o[4] or ""
    if o[3] ~= nil then
      help = help .. string.format(" (default: %s)", tostring(o[3]))
    end
    rows[#rows + 1] = { left, help }
    width = math.max(width, #left)
  end
  rows[#rows + 1] = { "-h, --help", "show this help" }
  width = math.max(width, 10)
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s  %s", r[1], r[2])
  end
  return table.concat(lines, "\n")
end

return M
