-- The `loom` command: flags, start-up errors (one line, exit 1), script
-- arguments and clean exit on SIGINT/SIGTERM. Each runs build/loom as a
-- subprocess under `timeout`, so nothing here can hang the suite.
local LOOM = os.getenv("LOOM_BIN") or "build/loom"
local LIMIT = 10

local function tmpfile(contents)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(contents)
  f:close()
  return path
end

local function readFile(path)
  local f = io.open(path)
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

-- Runs `loom ARGS`; returns stdout, stderr and the exit status.
local function loom(args)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "timeout %d %s %s 2>%s </dev/null; echo \"status=$?\"",
    LIMIT, LOOM, args, errfile)))
  local out = h:read("a")
  h:close()
  local err = readFile(errfile)
  os.remove(errfile)
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), err, status
end

local function lineCount(s)
  local _, n = s:gsub("\n", "")
  return n
end

describe("loom --version", function()
  it("prints the version and exits 0", function()
    local out, err, status = loom("--version")
    assert.equal("loom 0.1.0\n", out)
    assert.equal("", err)
    assert.equal(0, status)
  end)
end)

describe("loom --help", function()
  it("exits 0 and lists the run command", function()
    local out, _, status = loom("--help")
    assert.equal(0, status)
    assert.matches("Usage: loom", out)
    assert.matches("\n%s+run FILE", out)
  end)
end)

describe("loom start-up errors", function()
  it("reports a missing file in one line and exits 1", function()
    local out, err, status = loom("run spec/fixtures/no_such_file.lua")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal(1, lineCount(err))
    assert.matches("^loom: .*no_such_file%.lua.*No such file", err)
  end)

  it("reports a syntax error naming file:line in one line, exits 1",
    function()
      local path = tmpfile("local x = 1\nlocal = 2\n")
      local out, err, status = loom("run " .. path)
      os.remove(path)
      assert.equal(1, status)
      assert.equal("", out)
      assert.equal(1, lineCount(err))
      assert.matches(path:gsub("%p", "%%%0") .. ":2:", err)
    end)

  it("reports an unknown flag in one line and exits 1", function()
    local out, err, status = loom("--no-such-flag")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal(1, lineCount(err))
    assert.matches("%-%-no%-such%-flag", err)
  end)

  it("reports an unknown command in one line and exits 1", function()
    local out, err, status = loom("frobnicate")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal(1, lineCount(err))
    assert.matches("frobnicate", err)
  end)

  it("reports run without a file in one line and exits 1", function()
    local _, err, status = loom("run")
    assert.equal(1, status)
    assert.equal(1, lineCount(err))
  end)
end)

describe("loom run", function()
  it("gives the script arg[0], arg[1..] and ...", function()
    local path = tmpfile([[
print(arg[0])
print(#arg, arg[1], arg[2])
print(select("#", ...), ...)
]])
    local out, err, status = loom("run " .. path .. " one 'two words'")
    os.remove(path)
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal(path .. "\n2\tone\ttwo words\n2\tone\ttwo words\n", out)
  end)

  it("exits 0 when the script ends without running the reactor", function()
    local path = tmpfile("local reactor = require 'loom.reactor'\n")
    local _, err, status = loom("run " .. path)
    os.remove(path)
    assert.equal("", err)
    assert.equal(0, status)
  end)

  it("exits 1 when the script raises", function()
    local path = tmpfile("error('boom')\n")
    local _, err, status = loom("run " .. path)
    os.remove(path)
    assert.equal(1, status)
    assert.matches("boom", err)
  end)
end)

-- Starts a server script; returns its pid and an io.popen handle positioned
-- after the "listening on" line (printed once the reactor runs, so signal
-- handlers are in place).
local function startServer(script)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "sh -c 'echo $$; exec timeout %d %s run %s 0' 2>%s",
    LIMIT, LOOM, script, errfile)))
  local pid = assert(tonumber(h:read("l")))
  local line = h:read("l")
  assert(line and line:match("^listening on 127%.0%.0%.1:%d+$"),
    "server did not start: " .. tostring(line) .. readFile(errfile))
  return { pid = pid, handle = h, errfile = errfile }
end

-- Sends sig, waits for the exit; returns the rest of stdout, stderr, status.
local function signal(server, sig)
  os.execute(string.format("kill -%s %d", sig, server.pid))
  local rest = server.handle:read("a")
  local _, how, code = server.handle:close()
  local err = readFile(server.errfile)
  os.remove(server.errfile)
  return rest, err, how == "exit" and code or -1
end

describe("loom run and signals", function()
  for _, sig in ipairs({ "INT", "TERM" }) do
    it("stops examples/echo.lua cleanly with exit 0 on SIG" .. sig,
      function()
        local _, err, status = signal(startServer("examples/echo.lua"), sig)
        assert.equal(0, status)
        assert.matches("received SIG" .. sig, err)
      end)

    it("runs before-shutdown triggers on SIG" .. sig .. ", then exits 0",
      function()
        local server = startServer("spec/fixtures/shutdown_trigger.lua")
        local rest, _, status = signal(server, sig)
        assert.equal(0, status)
        assert.equal("shutdown trigger ran\nreactor.run returned\n", rest)
      end)
  end
end)
