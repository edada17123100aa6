-- loom.threads: run Lua functions on worker threads (Twisted's
-- twisted.internet.threads and the reactor's IReactorThreads).
--
--   local threads = require "loom.threads"
--   threads.deferToThread(function(n) ... return count end, 1e7)
--     :addCallback(print)
--
-- Each worker thread has a Lua state of its own. The function is copied
-- as bytecode, so it may use globals and the standard library but no
-- upvalues (locals of the enclosing code) except _ENV; arguments and
-- results are copied too: nil, booleans, numbers, strings and tables of
-- those. A worker never touches the reactor; it can post a function back
-- to the loop with require("loom.worker").callFromThread(f, ...).

local core = require "loom.core"
local defer = require "loom.defer"
local failure = require "loom.failure"
local log = require "loom.log"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure

local M = {}

local pending, lastId = {}, 0
local calls = {}   -- callFromThread from the loop thread itself

local function submit(what, id, f, ...)
  local ok, e = pcall(core.threadCall, what, id, f, ...)
  if not ok then
    error(e, 0)
  end
end

-- deferToThread(f, ...) -> Deferred of f's first result; an error raised
-- by f arrives as a Failure carrying the worker's traceback.
function M.deferToThread(f, ...)
  local id = lastId + 1
  submit("deferToThread", id, f, ...)
  lastId = id
  local d = defer.Deferred()
  pending[id] = d
  return d
end

-- callInThread(f, ...): runs f on a worker; its result is dropped and an
-- error is logged.
function M.callInThread(f, ...)
  submit("callInThread", 0, f, ...)
end

-- callFromThread(f, ...) from the loop thread: f runs on a later loop
-- turn, woken through the same thread-safe queue the workers use.
function M.callFromThread(f, ...)
  if type(f) ~= "function" and not (getmetatable(f) or {}).__call then
    error("callFromThread: f must be callable", 2)
  end
  calls[#calls + 1] = table.pack(f, ...)
  if #calls == 1 then
    core.wakeFromThread()
  end
end

-- The most workers that run at once (default UV_THREADPOOL_SIZE or 4).
function M.setPoolSize(n)
  if math.type(n) ~= "integer" or n < 1 then
    error("setPoolSize: size must be a positive integer", 2)
  end
  core.setPoolSize(n)
end

-- From C: a job finished.
function M._done(id, ok, values, tb)
  local d = pending[id]
  pending[id] = nil
  if ok then
    if d then
      d:callback(values[1])
    end
    return
  end
  local f = Failure(values[1], tb or "")
  if d then
    d:errback(f)
  else
    log.err(f, "error in callInThread")
  end
end

function M._drain()
  local list = calls
  calls = {}
  for _, c in ipairs(list) do
    local ok, e = xpcall(c[1], debug.traceback, table.unpack(c, 2, c.n))
    if not ok then
      log.error("error in callFromThread: %s", tostring(e))
    end
  end
end

hooks.threadDone = M._done
hooks.callFromThread = M._drain

return M
