-- loom.reactor.process: child processes (reactor.spawnProcess). Part of
-- loom.reactor, which re-exports what this module returns.

local core = require "loom.core"
local err = require "loom.error"
local failure = require "loom.failure"
local base = require "loom.reactor.base"
local hooks = require("loom.reactor.hooks").hooks

local Failure = failure.Failure
local safeCall = base.safeCall

local M = {}

-- Processes -----------------------------------------------------------------------

local ProcessExitedAlready = err.ProcessExitedAlready
hooks.ProcessExitedAlready = ProcessExitedAlready

-- Twisted's reasons: ProcessDone for exit code 0, else ProcessTerminated
-- with exitCode (nil when a signal killed it) and signal.
local function processReason(code, signal)
  if signal == 0 and code == 0 then
    return Failure(err.ProcessDone("process finished with exit code 0",
      { exitCode = 0, status = 0 }), "")
  end
  local msg, fields
  if signal ~= 0 then
    msg = "process ended by signal " .. signal .. "."
    fields = { signal = signal, status = 128 + signal }
  else
    msg = "process ended with exit code " .. code .. "."
    fields = { exitCode = code, status = code }
  end
  return Failure(err.ProcessTerminated(
    "A process has ended with a probable error condition: " .. msg, fields),
    "")
end

local FD_HOOKS = { [0] = "inConnectionLost", "outConnectionLost",
  "errConnectionLost" }

function hooks.processEvent(transport, proto, what, a, b)
  if what == "fd" then
    if proto.childConnectionLost then
      safeCall(proto, "childConnectionLost", a)
    elseif FD_HOOKS[a] then
      safeCall(proto, FD_HOOKS[a])
    end
  elseif what == "exited" then
    safeCall(proto, "processExited", processReason(a, b))
  elseif what == "ended" then
    safeCall(proto, "processEnded", processReason(a, b))
  end
  return transport
end

local function checkStrings(what, t)
  if type(t) ~= "table" then
    error("spawnProcess: " .. what .. " must be a table", 3)
  end
end

local function envList(env)
  if env == nil then
    return {} -- Twisted's POSIX default: an empty environment.
  elseif env == true then
    return nil -- Inherit the host's environment (Twisted's env=None).
  end
  checkStrings("env", env)
  local list = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("spawnProcess: env keys and values must be strings", 3)
    elseif k == "" or k:find("[=%z]") then -- ("A=B"="c" would set A)
      error(string.format("spawnProcess: env key %q must be non-empty,"
        .. " without = or NUL", k), 3)
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

local function fdPlans(childFDs)
  childFDs = childFDs or { [0] = "w", "r", "r" }
  checkStrings("childFDs", childFDs)
  local plans, n = {}, 0
  for fd in pairs(childFDs) do
    if math.type(fd) ~= "integer" or fd < 0 then
      error("spawnProcess: childFDs keys must be fd numbers >= 0", 3)
    end
    n = math.max(n, fd + 1)
  end
  for fd = 0, n - 1 do
    plans[fd + 1] = childFDs[fd] or false
  end
  return plans
end

-- spawnProcess(pp, executable, args, {env=, path=, uid=, gid=, childFDs=})
-- args[1] is argv[0]. A spawn failure (no such executable, EACCES…)
-- raises one line: "spawnProcess: /no/such: ENOENT: no such file or
-- directory" (Twisted reports it later, as exit code 1).
local OPTIONS = { env = true, path = true, uid = true, gid = true,
  childFDs = true, usePTY = true }

function M.spawnProcess(proto, executable, args, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error("spawnProcess: unknown option " .. tostring(k), 2)
    end
  end
  if type(proto) ~= "table" then
    error("spawnProcess: processProtocol must be a ProcessProtocol", 2)
  end
  if type(executable) ~= "string" or executable == "" then
    error("spawnProcess: executable must be a non-empty string", 2)
  end
  args = args or { executable }
  checkStrings("args", args)
  if opts.usePTY then
    error("spawnProcess: usePTY is not supported", 2)
  end
  if opts.path ~= nil then -- (else its absence reads as the executable's)
    local st = type(opts.path) == "string" and not opts.path:find("%z", 1)
      and core.stat(opts.path)
    if not st or st.type ~= "directory" then
      error(string.format("spawnProcess: path %s is not a directory",
        tostring(opts.path)), 2)
    end
  end
  local t, _, msg = core.spawnProcess(proto, executable, args, envList(opts.env),
    opts.path, opts.uid, opts.gid, fdPlans(opts.childFDs))
  if not t then
    error("spawnProcess: " .. msg, 2)
  end
  if proto.makeConnection then
    safeCall(proto, "makeConnection", t)
  else
    proto.transport = t
    safeCall(proto, "connectionMade")
  end
  return t
end

return M
