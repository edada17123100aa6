-- loom.cli: the `loom` command. cli/main.c calls main(argv) and exits
-- with what it returns. Every start-up error is one line on stderr and
-- status 1.
--
--   loom [FLAGS] run FILE [ARGS]     a script, or an application file
--   loom [FLAGS] PLUGIN [OPTIONS]    a plugin (see loom.plugin)
--
-- An application file returns (or sets the global) `application`, a
-- service: loom starts it (privilegedStartService, then --uid/--gid or the
-- Application's {uid=, gid=}, then startService), runs the reactor, and on
-- SIGINT/SIGTERM stops it in reverse order, waiting (bounded) for its
-- stopService Deferreds, then exits 0. SIGHUP and SIGUSR1 reopen the
-- --logfile; SIGHUP never kills the host, and reloads the Lua files that
-- changed (loom.reload; --reload also reloads on save). User code loads
-- as source only unless --allow-binary. A start-up error's traceback:
-- LOOM_DEBUG=1.
--
--   loom reload PIDFILE              SIGHUP to the loom process of PIDFILE

local plugin = require "loom.plugin"
local reload = require "loom.reload"

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
  reload PIDFILE    reload the changed Lua files of the running loom whose
                    --pidfile is PIDFILE (sends it SIGHUP)
  test [ARGS]       run busted (default: the specs in spec/) inside loom;
                    exit 0 only if every spec passes and none left a
                    handle open (busted --help for ARGS)
  console WHERE     a Lua console into a server's --manhole (WHERE: its
                    socket PATH, or tcp:HOST:PORT), with line editing

Flags (before the command or the file):
  --logfile PATH    log to PATH instead of stderr (reopened on SIGUSR1
                    and SIGHUP)
  --pidfile PATH    write the pid to PATH; refuse to start if a live
                    process holds it; removed on exit
  --uid USER        switch to USER (name or number) once the service
  --gid GROUP       tree has opened its ports (as root; as twistd does)
  --reload          reload the application's Lua files when one is saved
                    (also after `run FILE`; SIGHUP reloads them with or
                    without it; docs/reload.md)
  --allow-binary    also load precompiled (luac) chunks: a corrupted
                    one can crash the host, so only trusted ones
  --manhole DESC    a live Lua console into the server (loom console):
                    unix:PATH (socket 0600; its directory must not be
                    writable by its group or others) or
                    tcp:PORT:interface=127.0.0.1
  --manhole-passwd FILE  the tcp manhole's password (FILE's first line;
                    FILE must not be readable by everyone)
  -h, --help        show this help
  -v, --version     print the version

Start-up errors are one line; LOOM_DEBUG=1 adds the traceback.
Docs: docs/ in the source tree (docs/README.md, docs/application.md).]]

local function fail(fmt, ...)
  io.stderr:write("loom: ", string.format(fmt, ...), "\n")
  return 1
end

-- The first line of an error value (no traceback).
local function oneLine(e)
  return (tostring(e):gsub("\n.*", ""))
end

-- Start-up errors ------------------------------------------------------------

local function debugging()
  local v = os.getenv("LOOM_DEBUG")
  return v ~= nil and v ~= "" and v ~= "0"
end

-- loom's own Lua code (lua/loom/ and the shipped plugins/), which an
-- error's location should not point into: the user's file is the news.
local function isOwnSource(source)
  local info = package.loaded["loom.hostinfo"] or {}
  if source:find("/lua/loom/", 1, true) then
    return true
  end
  return info.plugins ~= nil
    and source:sub(2, #info.plugins + 2) == info.plugins .. "/"
end

-- "file:line" of the innermost Lua frame outside loom's own code, or nil
-- when the innermost Lua frame (the raiser) is itself outside: an error
-- the user's code raised without a position (level 0) is left as it is.
local function userLocation()
  local level, raisedByLoom = 3, false -- above startupError and `error`
  while true do
    local frame = debug.getinfo(level, "Sl")
    if frame == nil then
      return nil
    end
    if frame.what ~= "C" then
      local own = frame.source:sub(1, 1) ~= "@" or isOwnSource(frame.source)
      if not own and frame.currentline > 0 then
        return raisedByLoom and (frame.short_src .. ":" .. frame.currentline)
          or nil
      end
      raisedByLoom = raisedByLoom or own
    end
    level = level + 1
  end
end

-- The message handler of start-up code: the error's first line; when loom
-- raised it without a position, prefixed with the user's file:line that
-- called into loom. The traceback only with LOOM_DEBUG=1.
local function startupError(e)
  local msg = oneLine(e)
  if not msg:match("^[^:\n]+:%d+: ") then
    local where = userLocation()
    if where then
      msg = where .. ": " .. msg
    end
  end
  if debugging() then
    return debug.traceback(msg, 2)
  end
  return msg
end

local function version()
  local info = package.loaded["loom.hostinfo"] or {}
  return info.version or require("loom.core").version
end

-- Flags ---------------------------------------------------------------------

-- Each common flag: what its value is called, or false for a switch;
-- `key` is its field in the flags table when that differs from its name.
local FLAGS = {
  logfile = { value = "PATH" },
  pidfile = { value = "PATH" },
  uid = { value = "USER" },
  gid = { value = "GROUP" },
  ["allow-binary"] = { value = false, key = "allowBinary" },
  reload = { value = false },
  manhole = { value = "DESC" },
  ["manhole-passwd"] = { value = "FILE", key = "manholePasswd" },
}

-- Consumes a common flag at argv[i] into flags; returns how many arguments
-- it used, nil if argv[i] is not one, or raises a one-line message.
local function takeFlag(flags, flag, inline, nextArg)
  local name = flag:match("^%-%-(.+)$")
  local spec = name and FLAGS[name]
  if not spec then
    return nil
  end
  if spec.value == false then
    if inline ~= nil then
      error(string.format("%s takes no value", flag), 0)
    end
    flags[spec.key or name] = true
    return 1
  end
  local value = inline or nextArg
  if value == nil or value == "" then
    error(string.format("%s needs a %s", flag, spec.value), 0)
  end
  flags[spec.key or name] = value
  return inline and 1 or 2
end

-- Pid files -------------------------------------------------------------------

-- Takes path for this process; raises one line if a live process holds it
-- or it is a symlink. loom keeps a lock on it while running (see
-- bindings/pidfile.c), so two hosts started together cannot both take it;
-- a stale pid file (its process is gone) is replaced.
local function takePidfile(path)
  local held, _, e = require("loom.core").takePidfile(path)
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

-- Switches to the user/group of --uid/--gid, else of the Application's
-- {uid=, gid=} (svc may be nil), once the (privileged) ports are open: as
-- twistd. Raises a one-line message.
local function shedPrivileges(svc, flags)
  local uid = flags.uid or (svc and rawget(svc, "uid"))
  local gid = flags.gid or (svc and rawget(svc, "gid"))
  if flags.identitySet or (uid == nil and gid == nil) then
    return
  end
  flags.identitySet = true
  local ok, e, msg = require("loom.core").switchIdentity(uid, gid)
  if not ok then
    error(msg, 0)
  end
  require("loom.log").info("set %s", e)
end

-- --manhole: opens the console socket before the user's code runs (its
-- services() shows flags.root, the tree serve runs, once there is one).
-- Returns nil, or a one-line message.
local function openManhole(flags)
  if flags.manhole == nil then
    if flags.manholePasswd then
      return "--manhole-passwd needs --manhole tcp:PORT:interface=127.0.0.1"
    end
    return nil
  end
  local ok, e = pcall(require("loom.manhole").startFromFlags, flags,
    function() return flags.root or rawget(_G, "application") end)
  return not ok and oneLine(e) or nil
end

-- Starts svc, runs the reactor until a signal, stops svc (bounded).
local function serve(svc, flags)
  local reactor = require "loom.reactor"
  local application = require "loom.application"
  flags.root = svc
  local ok, e = xpcall(function()
    svc:privilegedStartService()
    shedPrivileges(svc, flags)
    svc:startService()
  end, startupError)
  if not ok then
    return fail("%s", e)
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

-- Reopens the log file (SIGUSR1, SIGHUP); without one there is nothing to
-- reopen. Either way a SIGHUP no longer kills the host (its default
-- action), says what it did, and reloads the Lua files that changed.
local function watchLogSignals(flags)
  local core = require "loom.core"
  local log = require "loom.log"
  local function reopen(name)
    if flags.logfile then
      local ok, e = log.toFile(flags.logfile)
      if not ok then
        log.error("received SIG%s, cannot reopen the log file: %s", name,
          tostring(e))
      elseif name == "HUP" then
        log.info("received SIGHUP, reopened the log file %s",
          flags.logfile)
      end
    elseif name == "HUP" then
      log.info("received SIGHUP, no log file to reopen")
    end
    if name == "HUP" then
      reload.reloadNow()
    end
  end
  local watchers = { core.onSignal("HUP", reopen) }
  if flags.logfile then
    watchers[2] = core.onSignal("USR1", reopen)
  end
  return watchers
end

local function closeAll(watchers)
  for _, w in ipairs(watchers) do
    w:close()
  end
end

-- Runs `body` with the flags applied: the log file (reopened on SIGUSR1
-- and SIGHUP) and the pid file (removed afterwards, whatever happens).
local function withFlags(flags, body)
  local log = require "loom.log"
  if flags.logfile then
    local ok, e = log.toFile(flags.logfile)
    if not ok then
      return fail("--logfile: %s", tostring(e))
    end
  end
  local watchers = watchLogSignals(flags)
  local me
  if flags.pidfile then
    local ok, e = pcall(takePidfile, flags.pidfile)
    if not ok then
      closeAll(watchers)
      return fail("%s", e)
    end
    me = e
  end
  reload.install()
  if flags.reload then
    reload.watch()
  end
  local ok, code = pcall(body)
  reload.stopWatching()
  closeAll(watchers)
  releasePidfile(flags.pidfile, me)
  if flags.logfile then
    log.toFile(nil)
  end
  if not ok then
    error(code, 0)
  end
  return code
end

-- Source only: loadfile and dofile default to text chunks, and require
-- finds user modules as Lua does (package.path) but loads text only. Lua
-- does not verify bytecode, and a corrupted .luac crashes the process.
local TEXT_ONLY = [[
local loadfile0, searchpath = loadfile, package.searchpath
function loadfile(file, mode, ...)
  return loadfile0(file, mode or "t", ...)
end
function dofile(file)
  local chunk, e = loadfile0(file, "t")
  if chunk == nil then
    error(e, 2)
  end
  return chunk()
end
package.searchers[2] = function(name)
  local path, notFound = searchpath(name, package.path)
  if path == nil then
    return notFound
  end
  local chunk, msg = loadfile0(path, "t")
  if chunk == nil then
    error(string.format("error loading module '%s' from file '%s':\n\t%s",
      name, path, msg), 2)
  end
  return chunk, path
end
]]

local textOnly = false

local function loadTextOnly(flags)
  if not (flags.allowBinary or textOnly) then
    textOnly = true
    assert(load(TEXT_ONLY, "=(loom text only)", "t"))()
  end
end

-- Loads FILE as the flags allow: text only unless --allow-binary. Returns
-- the chunk, or nil and a one-line message.
local function loadUserFile(file, flags)
  local chunk, msg = loadfile(file, flags.allowBinary and "bt" or "t")
  if chunk then
    loadTextOnly(flags)
    return chunk
  end
  if msg:find("attempt to load a binary chunk", 1, true) then
    return nil, file .. ": a precompiled (binary) chunk: loom loads Lua"
      .. " source only (--allow-binary loads it; a corrupted one can crash"
      .. " the host)"
  end
  -- loadfile's message already names file:line for a syntax error.
  return nil, oneLine(msg)
end

-- The pitfall of `local application = require "loom.application"` then
-- `application = application.Application(...)`: the tree lands in the
-- local, and the file would end as a plain script that serves nothing.
local function lostApplication(file, made, reactorRan)
  local application = package.loaded["loom.application"]
  if reactorRan or application == nil
    or (application._applicationsMade or 0) <= made then
    return nil
  end
  return string.format("%s made an Application but did not return it or"
    .. " set the global `application` (a `local application` hides the"
    .. " global: end the file with `return application`)", file)
end

-- Runs an application file's or script's chunk; returns the service it
-- handed over (returned, or the global `application`), or nil for a plain
-- script; raises a one-line message.
local function runUserChunk(file, chunk, args, flags)
  local application = require "loom.application"
  local reactor = require "loom.reactor"
  local made, reactorRan, switchFailed = application._applicationsMade or 0,
    false, nil
  -- A plain script opens its ports, then runs the reactor itself: that is
  -- when --uid/--gid apply to it (an application file's are done in serve).
  reactor.addSystemEventTrigger("before", "startup", function()
    reactorRan = true
    local ok, e = pcall(shedPrivileges, nil, flags)
    if not ok then
      -- Still privileged: no further startup trigger, no shutdown either;
      -- the error ends the run once reactor.run returns.
      switchFailed = e
      reactor.crash()
      return require("loom.defer").Deferred()
    end
  end)
  _G.arg = args
  -- Recorded for hot reload: the classes it makes, and the file (an
  -- application file only: a plain script's top level serves, it is not
  -- run twice; the modules it requires are reloaded).
  local classes, ok, e = reload.recordClasses(xpcall, chunk, startupError,
    table.unpack(args, 1, #args))
  if ok and not reactorRan then
    reload.track(file, "app", { classes = classes,
      args = table.pack(table.unpack(args, 1, #args)) })
  end
  if switchFailed then
    error(switchFailed, 0)
  elseif not ok then
    error(e, 0)
  end
  local app = e
  if not isService(app) then
    app = rawget(_G, "application")
  end
  if app == nil then
    local lost = lostApplication(file, made, reactorRan)
    if lost then
      error(lost, 0)
    end
    return nil
  end
  if not isService(app) then
    error(string.format("%s: `application` must be a service (an"
      .. " Application), got %s", file, type(app)), 0)
  end
  return app
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
  local chunk, msg = loadUserFile(file, flags)
  if not chunk then
    return fail("%s", msg)
  end
  local args = { [0] = file, [-1] = argv[0] }
  local verbatim = false
  for j = i + 1, #argv do
    -- `loom run app.lua --reload` (docs/reload.md): loom's, not the
    -- file's, unless after a `--`.
    if argv[j] == "--reload" and not verbatim then
      flags.reload = true
    else
      verbatim = verbatim or argv[j] == "--"
      args[#args + 1] = argv[j]
    end
  end
  return withFlags(flags, function()
    local manholeError = openManhole(flags)
    if manholeError then
      return fail("%s", manholeError)
    end
    local ok, app = pcall(runUserChunk, file, chunk, args, flags)
    if not ok then
      return fail("%s", app)
    elseif app == nil then
      return 0 -- a plain script
    end
    return serve(app, flags)
  end)
end

-- loom PLUGIN [OPTIONS]: plugin files are loaded as text only (loom.plugin).
local function runPlugin(name, file, argv, first, flags)
  -- Modules the plugin requires as it loads are tracked for hot reload
  -- (installed again, over the text-only searcher, in withFlags).
  reload.install()
  local p, msg = reload.loadTracked(file, "plugin", plugin.load, file, name)
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
  loadTextOnly(flags)
  return withFlags(flags, function()
    local manholeError = openManhole(flags)
    if manholeError then
      return fail("%s", manholeError)
    end
    local ok, svc = xpcall(p.makeService, startupError, opts)
    if not ok then
      return fail("%s: %s", p.name, svc)
    elseif not isService(svc) then
      return fail("%s: makeService returned %s, not a service", p.name,
        type(svc))
    end
    return serve(svc, flags)
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

-- libuv's handle types, as a spec's author knows them.
local HANDLE_KINDS = {
  poll = "listener", tcp = "TCP connection", pipe = "Unix connection",
  timer = "timer", udp = "UDP port", process = "process",
  signal = "signal watcher", tty = "stdio", async = "thread pool",
  fs_event = "file watcher",
}

-- What the specs left open, as "listener 1, timer 2", or nil. A garbage
-- collection and one turn of the loop first, so that closes under way
-- finish (a handle that is closing does not count). Twisted's trial fails
-- a test that leaves the reactor dirty in the same way.
local function leftOpen()
  local core = require "loom.core"
  collectgarbage()
  collectgarbage()
  local reactor = require "loom.reactor"
  reactor.callLater(0, core.stop)
  core.run()
  local open, kinds = core.openHandles(), {}
  for kind, n in pairs(open) do
    kinds[#kinds + 1] = (HANDLE_KINDS[kind] or kind) .. " " .. n
  end
  table.sort(kinds)
  return #kinds > 0 and table.concat(kinds, ", ") or nil
end

-- test [BUSTED ARGS]: busted (default: the specs in spec/) run inside this
-- host, so the specs use the C core linked into the loom executable and a
-- sanitized build checks them with no LD_PRELOAD. Loads source only unless
-- --allow-binary. Busted exits 1 itself when a spec fails; when all pass,
-- a handle left open (a listener, a connection, a pending timer) fails the
-- run, as a dirty reactor fails one of trial's tests.
local function test(argv, i, flags)
  local found, runner = pcall(require, "busted.runner")
  if not found then
    if tostring(runner):find("module 'busted.runner' not found", 1, true) then
      return fail("test: busted is not installed (apt-get install lua-busted)")
    end
    return fail("test: %s", oneLine(runner))
  end
  local args = { [0] = "busted" }
  for j = i, #argv do
    args[#args + 1] = argv[j]
  end
  loadTextOnly(flags)
  arg = args -- busted reads its options from the global `arg`
  runner({ standalone = false })
  local open = leftOpen()
  if open then
    io.stdout:flush()
    return fail("loop closed with handles still open: %s", open)
  end
  return 0
end

-- loom reload PIDFILE: SIGHUP to the loom process holding PIDFILE (the
-- lock loom keeps on its --pidfile says it is one, and still running).
local function reloadCommand(pidfile)
  if pidfile == nil or pidfile == "" then
    return fail("reload: missing PIDFILE (usage: loom reload PIDFILE)")
  end
  local core = require "loom.core"
  local pid, written, msg = core.pidfileHolder(pidfile)
  if pid == nil then
    return fail("reload: %s (is loom running with --pidfile %s?)",
      msg, pidfile)
  elseif pid == false then
    if written > 0 then
      return fail("reload: %s is stale: process %d does not hold it (not a"
        .. " running loom)", pidfile, written)
    end
    return fail("reload: %s holds no pid and no running loom holds it",
      pidfile)
  end
  local ok, _, e = core.sendSignal(pid, "HUP")
  if not ok then
    return fail("reload: %s", e)
  end
  print(string.format("sent SIGHUP to loom process %d: it reloads its"
    .. " changed Lua files (see its log)", pid))
  return 0
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
    return test(argv, i + 1, flags)
  elseif a == "reload" then
    return reloadCommand(argv[i + 1])
  elseif a == "console" then
    return require("loom.console").main(argv, i + 1)
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
