-- Helpers for specs that run build/loom as a real subprocess (under
-- `timeout`, so nothing can hang the suite) and talk to it over loopback.
--   local sub = dofile("spec/support/subprocess.lua")
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
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

-- A client protocol recording what it receives.
local Recorder = protocol.Protocol:extend({ __name = "Recorder" })
M.Recorder = Recorder
function Recorder:init()
  self.received = {}
  self.made = defer.Deferred()
  self.lost = defer.Deferred()
end
function Recorder:connectionMade()
  self.made:callback(self)
end
function Recorder:dataReceived(data)
  self.received[#self.received + 1] = data
  self:_check()
end
function Recorder:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end
function Recorder:text()
  return table.concat(self.received)
end
function Recorder:_check()
  local w = self.want
  if w and not w.d.called and w.test(self:text()) then
    self.want = nil
    w.d:callback(self:text())
  end
end
-- Waits until the received text matches `pattern` (plain substring when
-- plain is true); returns all the text.
function Recorder:waitFor(pattern, plain, timeout)
  local d = defer.Deferred()
  self.want = { d = d, test = function(s)
    return s:find(pattern, 1, plain) ~= nil
  end }
  self:_check()
  return testing.runUntil(d, timeout or 5)
end

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

-- Spins the reactor until cond() holds (polling), at most `timeout` s.
function M.waitUntil(cond, timeout)
  local d = defer.Deferred()
  local function poll()
    if cond() then
      d:callback(true)
    else
      reactor.callLater(0.02, poll)
    end
  end
  poll()
  return testing.runUntil(d, timeout or 5)
end

function M.sleep(secs)
  local d = defer.Deferred()
  reactor.callLater(secs, function() d:callback(nil) end)
  return testing.runUntil(d, secs + 5)
end

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
