-- Helpers for specs that run build/loom as a real subprocess (under
-- `timeout`, so nothing can hang the suite) and talk to it over loopback.
--   local sub = dofile("spec/support/subprocess.lua")
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local testing = require "loom.testing"

local M = {}
M.LOOM = os.getenv("LOOM_BIN") or "build/loom"
M.LIMIT = 20 -- seconds any one subprocess may live

function M.readFile(path)
  local f = io.open(path)
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

-- Runs `loom ARGS` to completion; returns stdout, stderr, exit status.
function M.loom(args, env)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "%s timeout %d %s %s 2>%s </dev/null; echo \"status=$?\"",
    env or "", M.LIMIT, M.LOOM, args, errfile)))
  local out = h:read("a")
  h:close()
  local err = M.readFile(errfile)
  os.remove(errfile)
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), err, status
end

-- Starts `loom ARGS` in the background; returns {pid=, handle=, errfile=,
-- lines=} once it printed `n` "listening on" lines (ports in .ports).
function M.start(args, n, env)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "%s sh -c 'echo $$; exec timeout %d %s %s' 2>%s",
    env or "", M.LIMIT, M.LOOM, args, errfile)))
  local pid = assert(tonumber(h:read("l")), "no pid from sh")
  local server = { pid = pid, handle = h, errfile = errfile, ports = {},
    lines = {} }
  while #server.ports < (n or 1) do
    local line = h:read("l")
    if line == nil then
      h:close()
      error("loom " .. args .. " did not start: " .. M.readFile(errfile))
    end
    server.lines[#server.lines + 1] = line
    local port = tonumber(line:match("^listening on 127%.0%.0%.1:(%d+)$"))
    if port then
      server.ports[#server.ports + 1] = port
    end
  end
  server.port = server.ports[1]
  return server
end

-- Sends `sig` (TERM by default), waits; returns status, stdout rest, stderr.
function M.stop(server, sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM",
    server.pid))
  local rest = server.handle:read("a")
  local _, how, code = server.handle:close()
  local err = M.readFile(server.errfile)
  os.remove(server.errfile)
  return how == "exit" and code or -1, rest, err
end

-- The client protocol of the transport specs (spec/support/net.lua).
local net = dofile("spec/support/net.lua")
local Recorder = net.Recorder
M.Recorder = Recorder

function M.connect(port, proto)
  proto = proto or Recorder:new()
  local cf = protocol.ClientFactory:new()
  function cf.buildProtocol()
    return proto
  end
  reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
  testing.runUntil(proto.made, 5)
  return proto
end

M.waitUntil = net.waitFor
M.sleep = net.sleep

function M.tmpdir()
  local h = io.popen("mktemp -d")
  local dir = h:read("l")
  h:close()
  return dir
end

function M.writeFile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function M.rss(pid)
  local s = M.readFile("/proc/" .. pid .. "/status")
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

return M
