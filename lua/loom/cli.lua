-- loom.cli: the `loom` command. host/main.c calls main(argv) and exits
-- with what it returns. Every start-up error is one line on stderr and
-- status 1.
--
--   loom [FLAGS] run FILE [ARGS]     a script, or an application file
--   loom [FLAGS] PLUGIN [OPTIONS]    a plugin (see loom.plugin)
--
-- An application file returns (or sets the global) `application`, a
-- service: loom starts it (privilegedStartService, then startService),
-- runs the reactor, and on SIGINT/SIGTERM stops it in reverse order,
-- waiting (bounded) for its stopService Deferreds, then exits 0.

local plugin = require "loom.plugin"

local cli = {}

-- Seconds a stopping service tree may take before loom gives up on it.
cli.stopTimeout = 10

local USAGE = [[
Usage: loom [FLAGS] COMMAND [ARGS]

Commands:
  run FILE [ARGS]   run a Lua script, or an application file (one that
                    returns or sets `application`) until SIGINT/SIGTERM
                    (the file gets arg and ... as lua5.4 gives them)
  PLUGIN [OPTIONS]  run a plugin's service (loom PLUGIN --help)
  test [DIR]        run the busted specs in DIR (default spec/) with loom's
                    modules on their path; exit 0 only if all pass

Flags (before the command or the file):
  --logfile PATH    log to PATH instead of stderr (reopened on SIGUSR1)
  --pidfile PATH    write the pid to PATH; refuse to start if a live
                    process holds it; removed on exit
  -h, --help        show this help
  -v, --version     print the version

Docs: docs/ in the source tree (docs/README.md, docs/application.md).]]

local function fail(fmt, ...)
  io.stderr:write("loom: ", string.format(fmt, ...), "\n")
  return 1
end

-- The first line of an error value (no traceback).
local function oneLine(e)
  return (tostring(e):gsub("\n.*", ""))
end

local function version()
  local info = package.loaded["loom.hostinfo"] or {}
  return info.version or require("loom.core").version
end

-- Flags ---------------------------------------------------------------------

local FLAGS = { logfile = true, pidfile = true }

-- Consumes a common flag at argv[i] into flags; returns how many arguments
-- it used, nil if argv[i] is not one, or raises a one-line message.
local function takeFlag(flags, flag, inline, nextArg)
  local name = flag:match("^%-%-(.+)$")
  if not (name and FLAGS[name]) then
    return nil
  end
  local value = inline or nextArg
  if value == nil or value == "" then
    error(string.format("%s needs a PATH", flag), 0)
  end
  flags[name] = value
  return inline and 1 or 2
end

-- Pid files -------------------------------------------------------------------

-- Takes path for this process; raises one line if a live process holds it
-- or it is a symlink. loom keeps a lock on it while running (see
-- bindings/pidfile.c), so two hosts started together cannot both take it;
-- a stale pid file (its process is gone) is replaced.
local function takePidfile(path)
  local held, e = require("loom.core").takePidfile(path)
  if not held then
    error(e, 0)
  end
  return held
end

-- Removes the pid file if it is still ours, and drops the lock.
local function releasePidfile(_, held)
  if held then
    held:release()
  end
end

-- Running a service tree ---------------------------------------------------------

local function isService(v)
  return type(v) == "table" and type(v.startService) == "function"
    and type(v.stopService) == "function"
end

-- Prints "listening on HOST:PORT" for every listening service of the tree.
local function announce(svc)
  local host = type(svc.getHost) == "function" and svc:getHost()
  if type(host) == "table" then
    if host.port then
      print(string.format("listening on %s:%d", host.host, host.port))
    elseif host.name or host.path then
      print("listening on " .. tostring(host.name or host.path))
    end
  end
  if type(svc.iter) == "function" then
    for child in svc:iter() do
      announce(child)
    end
  end
end

-- Starts svc, runs the reactor until a signal, stops svc (bounded).
local function serve(svc)
  local reactor = require "loom.reactor"
  local application = require "loom.application"
  local ok, e = pcall(function()
    svc:privilegedStartService()
    svc:startService()
  end)
  if not ok then
    return fail("%s", oneLine(e))
  end
  reactor.addSystemEventTrigger("before", "shutdown", function()
    return application.stopWithTimeout(svc, cli.stopTimeout)
  end)
  reactor.callWhenRunning(function()
    announce(svc)
    io.stdout:flush()
  end)
  reactor.run()
  return 0
end

-- Runs `body` with the flags applied: the log file (reopened on SIGUSR1)
-- and the pid file (removed afterwards, whatever happens).
local function withFlags(flags, body)
  local log = require "loom.log"
  local watcher
  if flags.logfile then
    local ok, e = log.toFile(flags.logfile)
    if not ok then
      return fail("--logfile: %s", tostring(e))
    end
    watcher = require("loom.core").onSignal("USR1", function()
      log.toFile(flags.logfile)
    end)
  end
  local me
  if flags.pidfile then
    local ok, e = pcall(takePidfile, flags.pidfile)
    if not ok then
      if watcher then
        watcher:close()
      end
      return fail("%s", e)
    end
    me = e
  end
  local ok, code = pcall(body)
  if watcher then
    watcher:close()
  end
  releasePidfile(flags.pidfile, me)
  if flags.logfile then
    log.toFile(nil)
  end
  if not ok then
    error(code, 0)
  end
  return code
end

-- run FILE [ARGS]: arg[0] is the file, arg[1..] its arguments.
local function run(argv, first, flags)
  local i = first
  while argv[i] and argv[i]:sub(1, 2) == "--" do
    local flag, inline = argv[i]:match("^(%-%-[^=]+)=(.*)$")
    local ok, used = pcall(takeFlag, flags, flag or argv[i], inline,
      argv[i + 1])
    if not ok then
      return fail("%s", used)
    elseif not used then
      return fail("run: unknown flag '%s' (see loom --help)", argv[i])
    end
    i = i + used
  end
  local file = argv[i]
  if file == nil then
    return fail("run: missing FILE (usage: loom run FILE [ARGS])")
  end
  local chunk, msg = loadfile(file)
  if not chunk then
    -- loadfile's message already names file:line for a syntax error.
    return fail("%s", msg)
  end
  local args = { [0] = file, [-1] = argv[0] }
  for j = i + 1, #argv do
    args[#args + 1] = argv[j]
  end
  return withFlags(flags, function()
    _G.arg = args
    local ok, e = xpcall(chunk, function(m)
      return debug.traceback(tostring(m), 2)
    end, table.unpack(args, 1, #args))
    if not ok then
      io.stderr:write("loom: ", tostring(e), "\n")
      return 1
    end
    local app = e
    if not isService(app) then
      app = rawget(_G, "application")
    end
    if app == nil then
      return 0 -- a plain script
    end
    if not isService(app) then
      return fail("%s: `application` must be a service (an Application),"
        .. " got %s", file, type(app))
    end
    return serve(app)
  end)
end

-- loom PLUGIN [OPTIONS]
local function runPlugin(name, file, argv, first, flags)
  local p, msg = plugin.load(file, name)
  if not p then
    return fail("plugin %s", msg)
  end
  local opts, e = plugin.parseOptions(p, argv, first, function(...)
    return takeFlag(flags, ...)
  end)
  if opts == "help" then
    print(plugin.usage(p))
    return 0
  elseif opts == nil then
    return fail("%s", e)
  end
  return withFlags(flags, function()
    local ok, svc = pcall(p.makeService, opts)
    if not ok then
      return fail("%s: %s", p.name, oneLine(svc))
    elseif not isService(svc) then
      return fail("%s: makeService returned %s, not a service", p.name,
        type(svc))
    end
    return serve(svc)
  end)
end

local function help()
  local lines = { USAGE, "", "Plugins:" }
  local list = plugin.list()
  if #list == 0 then
    lines[#lines + 1] = "  (none found)"
  end
  for _, entry in ipairs(list) do
    local p, msg = plugin.load(entry.file, entry.name)
    local text = p and (p.description or "") or ("cannot load: " .. msg)
    lines[#lines + 1] = string.format("  %-16s  %s", entry.name,
      (text:gsub("\n.*", "")))
  end
  print(table.concat(lines, "\n"))
end

local function shellQuote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- test [DIR]: busted, in a lua5.4 that finds loom's Lua modules and its C
-- module (build/loom.so in the source tree, lib/lua/5.4 once installed).
local function test(dir)
  local info = package.loaded["loom.hostinfo"] or {}
  local root = info.root or "."
  local busted = "/usr/bin/busted"
  if not io.open(busted) then
    return fail("test: busted is not installed (apt-get install lua-busted)")
  end
  dir = dir or "spec"
  local lpath = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"
  local cpath = root .. "/build/?.so;" .. root .. "/../../lib/lua/5.4/?.so;;"
  local ok, how, code = os.execute(string.format(
    "LUA_PATH=%s LUA_CPATH=%s lua5.4 %s %s", shellQuote(lpath),
    shellQuote(cpath), busted, shellQuote(dir)))
  if how == "exit" then
    return code
  end
  return ok and 0 or 1
end

function cli.main(argv)
  local flags = {}
  local i = 1
  while true do
    local a = argv[i]
    if a == nil or a:sub(1, 2) ~= "--" then
      break
    end
    local flag, inline = a:match("^(%-%-[^=]+)=(.*)$")
    local ok, used = pcall(takeFlag, flags, flag or a, inline, argv[i + 1])
    if not ok then
      return fail("%s", used)
    elseif not used then
      break
    end
    i = i + used
  end
  local a = argv[i]
  if a == nil or a == "-h" or a == "--help" or a == "help" then
    if a == nil then
      print(USAGE)
      return 1
    end
    help()
    return 0
  elseif a == "-v" or a == "--version" then
    print("loom " .. version())
    return 0
  elseif a == "run" then
    return run(argv, i + 1, flags)
  elseif a == "test" then
    return test(argv[i + 1])
  elseif a:sub(1, 1) == "-" then
    return fail("unknown option '%s' (see loom --help)", a)
  end
  local file = plugin.find(a)
  if file then
    return runPlugin(a, file, argv, i + 1, flags)
  end
  return fail("unknown command '%s' (see loom --help)", a)
end

return cli
