-- loom.reload.watch: the file watcher behind reload.watch (docs/reload.md).
-- It watches the directory of each file it is given (core.watchPath; an
-- editor's save often renames a new file over the old one, which only the
-- directory sees) and, a debounce delay after the last change to one of
-- those files, calls the reload it was started with.

local core = require "loom.core"
local log = require "loom.log"

local M = {}

-- dir -> { watcher=, names = {basename -> true} }
local dirs = {}
local watching = false
local pending -- the debounce DelayedCall
local delayOf, reloadNow -- set by start

local function splitPath(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if dir == nil then
    return ".", path
  end
  return dir == "" and "/" or dir, base
end

local function schedule()
  local reactor = require "loom.reactor"
  if pending and pending:active() then
    pending:reset(delayOf())
  else
    pending = reactor.callLater(delayOf(), function()
      pending = nil
      reloadNow()
    end)
  end
end

local function watchDir(dir)
  local entry = dirs[dir]
  if entry.watcher == nil then
    local w, _, msg = core.watchPath(dir, function(name, what)
      if name == nil or entry.names[name] then
        schedule()
      elseif what ~= "change" and what ~= "rename" then
        log.warn("reload: watching %s: %s", dir, what)
      end
    end)
    if w == nil then
      log.warn("reload: %s; its files are reloaded by SIGHUP only", msg)
    end
    entry.watcher = w
  end
end

-- A file to watch (once watching started, and if watched is true: loom's
-- own modules are tracked, never watched).
function M.file(path, watched)
  local dir, base = splitPath(path)
  local entry = dirs[dir] or { names = {} }
  dirs[dir] = entry
  entry.names[base] = true
  if watching and watched then
    watchDir(dir)
  end
end

-- Starts watching: a change runs reload() delay() seconds after the last
-- event. The files given before are watched by the caller's M.file again.
function M.start(delay, reload)
  delayOf, reloadNow = delay, reload
  watching = true
end

function M.stop()
  watching = false
  for _, entry in pairs(dirs) do
    if entry.watcher then
      entry.watcher:close()
      entry.watcher = nil
    end
  end
  if pending and pending:active() then
    pending:cancel()
  end
  pending = nil
end

-- The directories being watched (sorted).
function M.watched()
  local list = {}
  for dir, entry in pairs(dirs) do
    if entry.watcher then
      list[#list + 1] = dir
    end
  end
  table.sort(list)
  return list
end

return M
