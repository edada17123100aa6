-- loom.reload: hot reload (docs/reload.md). Changing a live server's code
-- without dropping a connection.
--
--   reload.install()       track every Lua module `require` loads from a file
--   reload.reloadNow()     reload the changed files as one batch; returns a
--                          one-line summary (also logged) and the details
--   reload.watch(opts)     reload on save (libuv fs events, debounced)
--
-- loom.cli installs the tracking and registers the application or plugin
-- file; `--reload` starts the watcher, SIGHUP and `loom reload PIDFILE`
-- call reloadNow, and so does the manhole's reload().
--
-- A reload, in three steps:
--  1. Load. Every tracked file whose stamp (size, mtime, inode) changed and
--     whose content hash differs is loaded and run in a fresh environment
--     (its globals land in a staging table), a module's `migrate(old)`
--     included. If any of them fails (syntax or runtime error) nothing is
--     swapped: each error is logged with file:line and the old code keeps
--     running.
--  2. Match. The new tables take the place of the old ones: the module
--     table to the old module table, each class the file made to the old
--     class of the same key in the module (or else of the same __name among
--     the classes the file made last time). The new code's references to a
--     new table (upvalues, fields, metatables) are pointed at the old one.
--  3. Patch in place. Old classes get the new class's fields (methods
--     added, replaced and removed; subclasses see it through the class's
--     lookups), old module tables the new functions (see mergeModule for
--     what state survives), _G the new globals; the new code's _ENV becomes
--     the real one. Live instances of a patched class with an `upgrade`
--     method run it once, before their next event (scheduleUpgrades).

local class = require "loom.class"
local core = require "loom.core"
local log = require "loom.log"
local upgrade = require "loom.reload.upgrade"
local watcher = require "loom.reload.watch"

local M = {}

-- Seconds of quiet after a change before the watcher reloads: an editor's
-- save can be several writes, or a write to a temporary file then a rename.
M.delay = 0.1

-- How far nested plain tables of a module are merged key by key.
local MAX_MERGE_DEPTH = 8
-- How many tables and functions one reload may visit to re-point the new
-- code's references (a bound, should new code reach a huge data set).
local MAX_VISITS = 200000

local type, next, rawget, rawset, pairs, ipairs = type, next, rawget, rawset,
  pairs, ipairs
local getmetatable, setmetatable = getmetatable, setmetatable

-- The tracked files: path -> record { path=, kind= "module" | "app" |
-- "plugin", name= (a module's), value= (a plugin's or app's), args=,
-- classes= (the classes the file made), stamp=, hash= }, and their order.
local files, order = {}, {}
-- Which file made each class (weak: a class nobody holds goes).
local ownerOf = setmetatable({}, { __mode = "k" })

local reloading = false

-- Files ---------------------------------------------------------------------

local function readFile(path)
  local f, e = io.open(path, "rb")
  if not f then
    return nil, e
  end
  local s = f:read("a")
  f:close()
  return s
end

-- FNV-1a over 8-byte words (64 bits, wrapping): tells an edited file from
-- a touched one.
local function hash(s)
  local h = -3750763034362895579
  local n = #s
  local i = 1
  local unpack, byte = string.unpack, string.byte
  while i + 7 <= n do
    h = (h ~ unpack("<i8", s, i)) * 1099511628211
    i = i + 8
  end
  for j = i, n do
    h = (h ~ byte(s, j)) * 1099511628211
  end
  return h
end

-- A stamp equal to the one taken at load proves nothing when the file was
-- written within this many seconds of that load: file times are as coarse
-- as the kernel's clock tick, so a write of the same size in the same
-- tick leaves them equal. Such a file is read and hashed regardless.
local STAMP_TRUST = 2

local function stampOf(path)
  local st = core.stat(path)
  return st and { size = st.size, mtime = st.mtime, ino = st.ino,
    taken = core.walltime() }
end

-- Whether the stamp b (taken at load) still vouches that the file is as
-- it was loaded: the same size, time and inode, and a time old enough.
local function sameStamp(a, b)
  return a ~= nil and b ~= nil and a.size == b.size and a.mtime == b.mtime
    and a.ino == b.ino and b.taken - b.mtime > STAMP_TRUST
end

local function isFramework(name)
  return name == "loom" or (name ~= nil and name:sub(1, 5) == "loom.")
end

-- Classes -------------------------------------------------------------------

local function isClass(t)
  return type(t) == "table" and rawget(t, "__index") == t
end

local function isPlainTable(t)
  return type(t) == "table" and getmetatable(t) == nil and not isClass(t)
end

-- Every class under class.Object, as a set.
local function allClasses()
  local seen = {}
  local function walk(c)
    for _, sub in ipairs(class.subclasses(c)) do
      if not seen[sub] then
        seen[sub] = true
        walk(sub)
      end
    end
  end
  walk(class.Object)
  return seen
end

-- Runs fn(...) and returns the list of classes it made that no nested
-- tracked load claimed, then fn's results (packed).
local function recordClasses(fn, ...)
  local before = allClasses()
  local results = table.pack(fn(...))
  local made = {}
  for c in pairs(allClasses()) do
    if not before[c] and ownerOf[c] == nil then
      made[#made + 1] = c
    end
  end
  return made, results
end

local function claim(path, classes)
  for _, c in ipairs(classes) do
    ownerOf[c] = path
  end
end

-- Tracking ------------------------------------------------------------------

-- Loom's own modules are tracked (a reload may need them) but not watched.
local function watchFile(rec)
  watcher.file(rec.path, rec.kind ~= "module" or not isFramework(rec.name))
end

-- Registers a loaded file. kind: "module" (info.name), "app" or "plugin"
-- (info.value: the table it returned; info.args: what the app got).
function M.track(path, kind, info)
  info = info or {}
  local rec = files[path]
  if rec == nil then
    rec = { path = path }
    files[path] = rec
    order[#order + 1] = path
  end
  rec.kind, rec.name, rec.value, rec.args = kind, info.name, info.value,
    info.args
  rec.classes = info.classes or rec.classes or {}
  claim(path, rec.classes)
  rec.stamp = stampOf(path)
  local src = readFile(path)
  rec.hash = src and hash(src)
  watchFile(rec)
  return rec
end

-- Runs fn(...) (which loads path) recording the classes it makes, and
-- tracks path if fn returned a value. Returns fn's results.
function M.loadTracked(path, kind, fn, ...)
  local made, r = recordClasses(fn, ...)
  if r[1] ~= nil then
    M.track(path, kind, { value = r[1], args = table.pack(...),
      classes = made })
  end
  return table.unpack(r, 1, r.n)
end

-- Runs fn(...), then returns the classes it made, then fn's results: for a
-- caller that decides after the run whether to track (loom.cli, which
-- tracks an application file but not a plain script).
function M.recordClasses(fn, ...)
  local made, r = recordClasses(fn, ...)
  return made, table.unpack(r, 1, r.n)
end

function M.forget(path)
  if files[path] then
    files[path] = nil
    for i, p in ipairs(order) do
      if p == path then
        table.remove(order, i)
        break
      end
    end
  end
end

-- The tracked files, in load order: { {path=, kind=, name=} }.
function M.files()
  local list = {}
  for _, path in ipairs(order) do
    local rec = files[path]
    list[#list + 1] = { path = path, kind = rec.kind, name = rec.name }
  end
  return list
end

-- The searcher wrapper: a Lua module found in a file is loaded as before,
-- recording the classes it makes and its path.
local function trackingSearcher(inner)
  return function(name, ...)
    -- Called through pcall, so that an error the searcher raises at level
    -- 2 is placed as before (no position of ours), and raised again as is.
    local ok, loader, path = pcall(inner, name, ...)
    if not ok then
      error(loader, 0)
    end
    if type(loader) ~= "function" or type(path) ~= "string" then
      return loader, path
    end
    return function(...)
      local made, r = recordClasses(loader, ...)
      claim(path, made)
      if not isFramework(name) then
        M.track(path, "module", { name = name, classes = made })
      end
      return table.unpack(r, 1, r.n)
    end, path
  end
end

local installed = setmetatable({}, { __mode = "k" })

-- Tracks every module `require` loads from a file from now on (idempotent;
-- wraps the searcher in place at the time of the call). loom's own
-- modules (loom.*) are recorded but never reloaded: they hold the host's
-- bindings (the hook table C calls, the Deferred class its core builds).
function M.install()
  local current = package.searchers[2]
  if current == nil or installed[current] then
    return
  end
  local wrapped = trackingSearcher(current)
  installed[wrapped] = true
  package.searchers[2] = wrapped
end

-- Step 1: load ------------------------------------------------------------------

-- "file:line: message" of an error raised while loading path: its own
-- position when it has one, else the innermost line of path on the stack.
local function loadErrorHandler(path)
  return function(e)
    local msg = tostring(e)
    if type(e) == "table" and type(e.getErrorMessage) == "function" then
      msg = e:getErrorMessage()
    end
    if not msg:match("^[^\n]-:%d+: ") then
      for level = 2, 200 do
        local info = debug.getinfo(level, "Sl")
        if info == nil then
          break
        end
        if info.source == "@" .. path and info.currentline > 0 then
          msg = string.format("%s:%d: %s", path, info.currentline, msg)
          break
        end
      end
      if not msg:match("^[^\n]-:%d+: ") then
        msg = path .. ": " .. msg
      end
    end
    return debug.traceback(msg, 2)
  end
end

-- Seconds of CPU a file's load (or its migrate) may take: past them the
-- load fails, where an endless loop at a file's top level would hold the
-- reactor, and every connection, for good.
M.loadTimeLimit = 5

-- Runs fn(...) under xpcall(handler) in a coroutine of its own, bounded by
-- loadTimeLimit (a count hook on that coroutine only); a yield out of it is
-- a load error too (it would leave the reload unfinished). Returns what
-- recordClasses returns.
local function runBounded(handler, fn, ...)
  local limit = M.loadTimeLimit
  local deadline = os.clock() + limit
  local co = coroutine.create(function(...)
    return recordClasses(xpcall, fn, handler, ...)
  end)
  debug.sethook(co, function()
    if os.clock() > deadline then
      debug.sethook() -- (not again in the handler)
      error(string.format("still running after %gs of loading (an endless"
        .. " loop?); loom.reload.loadTimeLimit bounds it", limit), 0)
    end
  end, "", 10000)
  local ok, made, r = coroutine.resume(co, ...)
  if not ok then -- (recordClasses's own error)
    return {}, { false, tostring(made), n = 2 }
  elseif coroutine.status(co) ~= "dead" then
    coroutine.close(co)
    return {}, { false, handler("yielded while loading (a coroutine.yield"
      .. " outside any function of the file)"), n = 2 }
  end
  return made, r
end

local function currentValue(rec)
  if rec.kind == "module" then
    return package.loaded[rec.name]
  end
  return rec.value
end

-- Loads and runs the new version of rec in a staging environment. Returns
-- the loaded unit, or nil and an error (file:line first).
local function loadNew(rec, source)
  local global = rec.kind ~= "plugin"
  -- Globals it sets land here (merged into _G only if the batch commits);
  -- a plugin's environment is its own, as loom.plugin gives it.
  local staging = setmetatable({}, { __index = _G })
  local chunk, e = load(source, "@" .. rec.path, "t", staging)
  if chunk == nil then
    return nil, e
  end
  local handler = loadErrorHandler(rec.path)
  local made, r
  if rec.kind == "module" then
    made, r = runBounded(handler, chunk, rec.name, rec.path)
  else
    local args = rec.args or { n = 0 }
    made, r = runBounded(handler, chunk, table.unpack(args, 1, args.n))
  end
  if not r[1] then
    return nil, r[2]
  end
  local value = r[2]
  if value == nil and rec.kind == "module" then
    value = true -- as require: a module that returns nothing is `true`
  end
  local old = currentValue(rec)
  if type(old) == "table" and type(value) ~= "table" then
    -- An editor's empty or half-written file: swapping it in would cut
    -- the module off (require gets `true`, and later edits match nothing).
    return nil, string.format("%s: the file returned %s where it returned"
      .. " a table (empty or half written?)", rec.path, tostring(value))
  end
  local unit = { rec = rec, chunk = chunk, staging = staging,
    global = global, value = value, old = old, made = made }
  if type(value) == "table" and type(rawget(value, "migrate")) == "function"
      and old ~= nil then
    -- migrate reads the old module and sets the new one up, before
    -- anything is swapped: its error fails the batch as a load error.
    local _, mr = runBounded(handler, value.migrate, old)
    if not mr[1] then
      return nil, mr[2]
    end
    unit.migrated = true
  end
  return unit
end

-- Step 2: match -----------------------------------------------------------------

-- Pairs new tables of the module value with old ones, key by key: classes
-- the load made with the old classes under the same key, nested plain
-- tables with nested plain tables.
local function matchByKeys(new, old, unit, map, targets, madeSet, depth)
  for k, nv in next, new do
    local ov = rawget(old, k)
    if nv ~= ov and type(nv) == "table" and type(ov) == "table"
        and not map[nv] and not targets[ov] then
      if isClass(nv) and isClass(ov) and madeSet[nv] then
        map[nv], targets[ov] = ov, true
      elseif isPlainTable(nv) and isPlainTable(ov)
          and depth < MAX_MERGE_DEPTH then
        map[nv], targets[ov] = ov, true
        unit.plain[#unit.plain + 1] = { nv, ov }
        matchByKeys(nv, ov, unit, map, targets, madeSet, depth + 1)
      end
    end
  end
end

local function matchUnit(unit, map, targets)
  local madeSet = {}
  for _, c in ipairs(unit.made) do
    madeSet[c] = true
  end
  local new, old = unit.value, unit.old
  unit.plain = {}
  if isClass(new) and isClass(old) and madeSet[new] and not targets[old] then
    map[new], targets[old] = old, true -- a module that returns its class
  elseif isPlainTable(new) and isPlainTable(old) and not targets[old] then
    map[new], targets[old] = old, true
    unit.plain[1] = { new, old }
    matchByKeys(new, old, unit, map, targets, madeSet, 1)
  end
  -- The rest by __name, among the classes this file made last time (a
  -- name two of them share matches neither).
  local byName = {}
  for _, c in ipairs(unit.rec.classes) do
    local name = rawget(c, "__name")
    if name ~= nil then
      byName[name] = byName[name] == nil and c or false
    end
  end
  for _, c in ipairs(unit.made) do
    local o = byName[rawget(c, "__name") or false]
    if not map[c] and o and not targets[o] then
      map[c], targets[o] = o, true
    end
  end
end

local function isFrom(f, sources)
  local info = debug.getinfo(f, "S")
  return info.what ~= "C" and sources[info.source] == true
end

-- The upvalues of f that hold a new table now hold the old one; the others
-- are pushed to visit when f is new code (own).
local function repointFunction(f, map, push, own)
  for i = 1, math.huge do
    local name, up = debug.getupvalue(f, i)
    if name == nil then
      return
    elseif map[up] ~= nil then
      debug.setupvalue(f, i, map[up])
    elseif own then
      push(up)
    end
  end
end

-- The same for a table: its metatable, its fields and keys (a class's own
-- __index stays itself), and a class's base (its metatable's __index).
local function repointTable(t, map, push)
  local mt = getmetatable(t)
  if type(mt) == "table" and map[mt] ~= nil then
    setmetatable(t, map[mt])
  end
  local isCls = isClass(t)
  local moves = {}
  for k, x in next, t do
    if map[k] ~= nil then
      moves[#moves + 1] = k
    end
    if map[x] ~= nil and not (isCls and k == "__index") then
      rawset(t, k, map[x])
    else
      push(x)
    end
    push(k)
  end
  for _, k in ipairs(moves) do
    local x = rawget(t, k)
    rawset(t, k, nil)
    rawset(t, map[k], x)
  end
  if isCls and type(mt) == "table" and map[rawget(mt, "__index")] ~= nil then
    -- A new class that was not matched, whose base was.
    rawset(mt, "__index", map[rawget(mt, "__index")])
  end
end

-- Points every reference the new code holds to a new table that was
-- matched (map: new -> old) at the old one: functions' upvalues, table
-- fields and keys, metatables. Walks from roots through the new code
-- (functions of the batch's files, and the tables they reach), not into
-- loaded modules or _G, nor into the upvalues of functions of other files
-- (those it re-points only where they hold a new table).
local function repoint(roots, map, targets, sources)
  local skip = { [_G] = true }
  for _, v in pairs(package.loaded) do
    if type(v) == "table" then
      skip[v] = true
    end
  end
  local seen, stack = {}, {}
  local function push(v)
    local t = type(v)
    if (t == "table" or t == "function") and not seen[v] and not skip[v]
        and not targets[v] then
      stack[#stack + 1] = v
    end
  end
  for _, root in ipairs(roots) do
    push(root)
  end
  local visits = 0
  while #stack > 0 do
    local v = table.remove(stack)
    if not seen[v] then
      seen[v] = true
      visits = visits + 1
      if visits > MAX_VISITS then
        log.warn("reload: stopped re-pointing references after %d tables"
          .. " and functions", MAX_VISITS)
        return
      end
      if type(v) == "function" then
        repointFunction(v, map, push, isFrom(v, sources))
      else
        repointTable(v, map, push)
      end
    end
  end
end

-- Step 3: patch -------------------------------------------------------------------

local CLASS_SOURCE = debug.getinfo(class.subclasses, "S").source

-- A metamethod forwarder loom.class made (an inherited metamethod).
local function isForwarder(v)
  return type(v) == "function"
    and debug.getinfo(v, "S").source == CLASS_SOURCE
end

-- Gives the old class O the new class N's fields: what N defines replaces
-- or adds, what it no longer defines goes. O's own metamethod forwarders
-- are kept (they look the base up at each call). Counts into stats.
local function patchClass(O, N, stats)
  stats.classes = stats.classes + 1
  local base = rawget(N, "super")
  if base ~= nil and base ~= rawget(O, "super") then
    -- The class now extends another base: lookups go through it.
    rawset(getmetatable(O), "__index", base)
    rawset(O, "super", base)
    stats.rebased = stats.rebased + 1
  end
  for k, v in next, N do
    local ov = rawget(O, k)
    if k ~= "__index" and k ~= "super" and ov ~= v
        and not (isForwarder(v) and isForwarder(ov)) then
      if ov == nil then
        stats.added = stats.added + 1
      else
        stats.replaced = stats.replaced + 1
      end
      O[k] = v -- a new key goes through loom.class (metamethods spread)
    end
  end
  local gone = {}
  for k in next, O do
    if rawget(N, k) == nil and k ~= "__index" and k ~= "super" then
      gone[#gone + 1] = k
    end
  end
  for _, k in ipairs(gone) do
    if type(rawget(O, k)) == "function" then
      stats.removed = stats.removed + 1
    end
    rawset(O, k, nil)
  end
end

-- Merges the new module table N into the old one O, in place, so that
-- every reference other code holds to O stays valid:
--  * functions and classes: the new ones replace the old, and one the new
--    module no longer has is removed (a class the file made was patched
--    in place already: the field is the old class);
--  * a plain table (no metatable) in both is merged by these same rules,
--    key by key (it is one of the pairs commit merges);
--  * any other value (numbers, strings, booleans, instances, userdata):
--    the old one stays (module state: counters, tables of users);
--  * a key only the new module has is added.
-- With migrate (newWins), the new module decides: every value of N
-- replaces O's, and a key N does not have is removed.
local function mergeModule(O, N, newWins, stats)
  for k, v in next, N do
    local ov = rawget(O, k)
    if ov == nil then
      rawset(O, k, v)
      stats.added = stats.added + 1
    elseif v ~= ov and (newWins or type(v) == "function" or isClass(v)) then
      rawset(O, k, v)
      stats.replaced = stats.replaced + 1
    end
  end
  local gone = {}
  for k, ov in next, O do
    if rawget(N, k) == nil and (newWins or type(ov) == "function"
        or isClass(ov)) then
      gone[#gone + 1] = k
    end
  end
  for _, k in ipairs(gone) do
    stats.removed = stats.removed + 1
    rawset(O, k, nil)
  end
end

-- The globals the load set: a function replaces, any other value is
-- added only when _G has none (as module state, the running one wins).
local function mergeGlobals(staging)
  for k, v in next, staging do
    if type(v) == "function" or rawget(_G, k) == nil then
      rawset(_G, k, v)
    end
  end
end

local function setEnv(chunk, env)
  for i = 1, math.huge do
    local name = debug.getupvalue(chunk, i)
    if name == nil then
      return
    elseif name == "_ENV" then
      debug.setupvalue(chunk, i, env)
      return
    end
  end
end

-- Reload --------------------------------------------------------------------------

local function changedFiles()
  local changed, missing = {}, {}
  for _, path in ipairs(order) do
    local rec = files[path]
    if rec.kind ~= "module" or not isFramework(rec.name) then
      local stamp = stampOf(path)
      if stamp == nil then
        missing[#missing + 1] = path
      elseif not sameStamp(stamp, rec.stamp) then
        local src = readFile(path)
        if src == nil then
          missing[#missing + 1] = path
        elseif hash(src) == rec.hash then
          rec.stamp = stamp -- touched, not edited
        else
          changed[#changed + 1] = { rec = rec, source = src, stamp = stamp }
        end
      end
    end
  end
  return changed, missing
end

local function plural(n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

local function commit(units)
  local map, targets = {}, {}
  for _, unit in ipairs(units) do
    matchUnit(unit, map, targets)
  end
  local roots, sources = {}, {}
  for _, unit in ipairs(units) do
    sources["@" .. unit.rec.path] = true
    roots[#roots + 1] = unit.chunk
    roots[#roots + 1] = unit.staging
    if type(unit.value) == "table" then
      roots[#roots + 1] = unit.value
    end
    for _, c in ipairs(unit.made) do
      roots[#roots + 1] = c
    end
  end
  repoint(roots, map, targets, sources)
  local stats = { classes = 0, replaced = 0, added = 0, removed = 0,
    rebased = 0, fresh = 0, gone = 0 }
  local patched = {}
  for new, old in pairs(map) do
    if isClass(new) then
      patchClass(old, new, stats)
      patched[old] = true
    end
  end
  for _, unit in ipairs(units) do
    local rec = unit.rec
    local new, old = map[unit.value] or unit.value, unit.old
    for _, pair in ipairs(unit.plain) do
      mergeModule(pair[2], pair[1], unit.migrated, stats)
    end
    if rec.kind == "module" and old ~= new then
      package.loaded[rec.name] = new -- nothing to merge into: replaced
    end
    if rec.kind ~= "module" and rec.value ~= new and isPlainTable(new) then
      rec.value = new
    end
    if unit.global then
      mergeGlobals(unit.staging)
      setEnv(unit.chunk, _G)
    end
    -- The file's classes now: the old ones kept, the new ones not matched.
    local classes, kept = {}, {}
    for _, c in ipairs(unit.made) do
      classes[#classes + 1] = map[c] or c
      if map[c] then
        kept[map[c]] = true
      else
        -- Live instances of an old class it did not match keep the old
        -- code: say so, with what would have matched it.
        stats.fresh = stats.fresh + 1
        log.info("reload: %s: class %s is new (no old class under its key"
          .. " or __name)", rec.path, tostring(rawget(c, "__name") or "?"))
      end
    end
    for _, c in ipairs(rec.classes) do
      if not kept[c] then
        stats.gone = stats.gone + 1
        log.info("reload: %s: class %s is gone from the file; its live"
          .. " instances keep its old code", rec.path,
          tostring(rawget(c, "__name") or "?"))
      end
    end
    rec.classes = classes
    claim(rec.path, classes)
  end
  stats.upgrades = upgrade.scheduleUpgrades(patched)
  return stats
end

local function shortPaths(units)
  local names = {}
  for _, unit in ipairs(units) do
    names[#names + 1] = unit.rec.path
  end
  return table.concat(names, ", ")
end

-- Reloads every tracked file that changed since it was loaded, as one
-- batch (see the top of this file). Returns a one-line summary, which is
-- also logged, and { ok=, reloaded= {paths}, errors= {messages} }.
function M.reloadNow()
  if reloading then
    return "reload: already reloading", { ok = false, reloaded = {},
      errors = {} }
  end
  reloading = true
  local ok, summary, details = xpcall(function()
    local changed, missing = changedFiles()
    local note = #missing > 0 and (" (" .. table.concat(missing, ", ")
      .. " missing)") or ""
    if #changed == 0 then
      local s = string.format("reload: no file changed (%s tracked)%s",
        plural(#order, "file"), note)
      log.info("%s", s)
      return s, { ok = true, reloaded = {}, errors = {} }
    end
    local units, errors = {}, {}
    for _, c in ipairs(changed) do
      local unit, e = loadNew(c.rec, c.source)
      if unit then
        unit.stamp, unit.hash = c.stamp, hash(c.source)
        units[#units + 1] = unit
      else
        errors[#errors + 1] = tostring(e)
        log.error("reload: %s", tostring(e))
      end
    end
    if #errors > 0 then
      local s = string.format("reload failed: %s, nothing swapped, the old"
        .. " code keeps running: %s", plural(#errors, "error"),
        (errors[1]:gsub("\n.*", "")))
      log.error("%s", s)
      return s, { ok = false, reloaded = {}, errors = errors }
    end
    local stats = commit(units)
    local reloaded = {}
    for _, unit in ipairs(units) do
      unit.rec.stamp, unit.rec.hash = unit.stamp, unit.hash
      reloaded[#reloaded + 1] = unit.rec.path
    end
    local s = string.format("reload: %s reloaded (%s); %d class%s patched;"
      .. " %d replaced, %d added, %d removed%s%s%s; %s to upgrade%s",
      plural(#units, "file"), shortPaths(units), stats.classes,
      stats.classes == 1 and "" or "es",
      stats.replaced, stats.added, stats.removed,
      stats.rebased > 0 and (", " .. stats.rebased .. " rebased") or "",
      stats.fresh > 0 and (", " .. stats.fresh .. " new") or "",
      stats.gone > 0 and (", " .. stats.gone .. " gone") or "",
      plural(stats.upgrades, "instance"), note)
    log.info("%s", s)
    return s, { ok = true, reloaded = reloaded, errors = {} }
  end, debug.traceback)
  reloading = false
  if not ok then
    -- A bug of the reload itself: said, never raised into the caller's
    -- event (a watcher, a signal, the manhole).
    log.error("reload: internal error: %s", tostring(summary))
    return "reload failed: internal error: " .. tostring(summary):gsub("\n.*",
      ""), { ok = false, reloaded = {}, errors = { summary } }
  end
  return summary, details
end

-- Watching ----------------------------------------------------------------------

-- Watches the directory of every tracked file (and of every file tracked
-- later): a change to one reloads, M.delay seconds after the last event.
function M.watch(opts)
  if opts and opts.delay then
    M.delay = opts.delay
  end
  watcher.start(function() return M.delay end, M.reloadNow)
  for _, path in ipairs(order) do
    watchFile(files[path])
  end
end

M.stopWatching = watcher.stop
-- The directories being watched (sorted).
M.watched = watcher.watched

return M
