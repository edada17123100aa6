-- loom.cli: the `loom` command. host/main.c calls main(argv) and exits
-- with what it returns. Every start-up error is one line on stderr and
-- status 1.

local cli = {}

local USAGE = [[
Usage: loom COMMAND [ARGS]

Commands:
  run FILE [ARGS]   run a Lua script with the reactor available
                    (the script gets arg and ... as lua5.4 gives them)

Options:
  -h, --help        show this help
  -v, --version     print the version

Docs: docs/ in the source tree (docs/README.md).]]

local function fail(fmt, ...)
  io.stderr:write("loom: ", string.format(fmt, ...), "\n")
  return 1
end

local function version()
  local info = package.loaded["loom.hostinfo"] or {}
  return info.version or require("loom.core").version
end

-- run FILE [ARGS]: arg[0] is the script, arg[1..] its arguments.
local function run(argv, first)
  local file = argv[first]
  if file == nil then
    return fail("run: missing FILE (usage: loom run FILE [ARGS])")
  end
  local chunk, msg = loadfile(file)
  if not chunk then
    -- loadfile's message already names file:line for a syntax error.
    return fail("%s", msg)
  end
  local args = { [0] = file, [-1] = argv[0] }
  for i = first + 1, #argv do
    args[#args + 1] = argv[i]
  end
  _G.arg = args
  local ok, e = xpcall(chunk, function(m)
    return debug.traceback(tostring(m), 2)
  end, table.unpack(args, 1, #args))
  if not ok then
    io.stderr:write("loom: ", tostring(e), "\n")
    return 1
  end
  return 0
end

function cli.main(argv)
  local a = argv[1]
  if a == nil or a == "-h" or a == "--help" or a == "help" then
    print(USAGE)
    return a == nil and 1 or 0
  elseif a == "-v" or a == "--version" then
    print("loom " .. version())
    return 0
  elseif a == "run" then
    return run(argv, 2)
  elseif a:sub(1, 1) == "-" then
    return fail("unknown option '%s' (see loom --help)", a)
  end
  return fail("unknown command '%s' (see loom --help)", a)
end

return cli
