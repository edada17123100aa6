-- Remote-command server (the classic tutorial, made safe): clients on the
-- loopback interface send a command line as one Int32-prefixed string; the
-- words become argv (never a shell) and must match one of the allowed
-- command forms below, program *and* arguments (an allow-list of programs
-- alone is not enough: `date -f FILE` prints any readable file); the reply
-- is one Int32-prefixed JSON string
--   {"ok":true,"exitCode":0,"stdout":"...","stderr":"..."}
-- or {"ok":false,"error":"..."}. Limits: MAX_PER_CONNECTION commands run at
-- once per connection (4) and MAX_RUNNING on the whole server (16); past
-- either, the command is answered with a "busy: ..." error at once. A
-- command's output is capped at MAX_OUTPUT, and the commands of a client
-- that goes away are killed.
--   loom run examples/remote_command.lua [PORT]       (server; 0 picks one)
--   loom run examples/remote_command.lua client PORT COMMAND [ARGS...]
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local json = require "loom.json"

-- Each program with the arguments it may get: at most `max` of them, each
-- matching one of `args` (anchored Lua patterns). No form takes an option
-- that names a file to read, and no operand may start with "-".
local ALLOWED = {
  date = { exe = "/bin/date", max = 1, args = { "^%+[%w%%:%._/%-]*$" } },
  uptime = { exe = "/usr/bin/uptime", max = 0 },
  ls = { exe = "/bin/ls", max = 4, args = { "^%-l$", "^%-a$", "^%-la$",
    "^[^%-][%w%._/%-]*$" } },
  echo = { exe = "/bin/echo", max = 16, args = { "^[^%-]" } },
  whoami = { exe = "/usr/bin/whoami", max = 0 },
  uname = { exe = "/bin/uname", max = 1, args = { "^%-[asnrm]$" } },
  sleep = { exe = "/bin/sleep", max = 1, args = { "^[0-9]$" } },
}
local MAX_OUTPUT = 1024 * 1024
local MAX_PER_CONNECTION = 4
local MAX_RUNNING = 16
local running = 0 -- commands running on the whole server

-- Whether argv[2..] fits the program's allowed form.
local function argsAllowed(form, argv)
  if #argv - 1 > form.max then
    return false
  end
  for i = 2, #argv do
    local fits = false
    for _, pattern in ipairs(form.args) do
      fits = fits or argv[i]:find(pattern) ~= nil
    end
    if not fits then
      return false
    end
  end
  return true
end

-- Collects one command's output; answers the client when it has ended.
local Run = protocol.ProcessProtocol:extend({ __name = "RemoteRun" })

function Run:init(client)
  self.client, self.out, self.err, self.size = client, {}, {}, 0
end

function Run:connectionMade()
  self.transport:closeStdin()
end

-- The process may have exited already (its pipes still draining).
function Run:kill()
  pcall(self.transport.signalProcess, self.transport, "KILL")
end

function Run:collect(list, data)
  self.size = self.size + #data
  if self.size > MAX_OUTPUT then
    if not self.tooBig then
      self.tooBig = true
      self:kill()
    end
    return
  end
  list[#list + 1] = data
end

function Run:outReceived(data) self:collect(self.out, data) end

function Run:errReceived(data) self:collect(self.err, data) end

function Run:processEnded(reason)
  local e = reason.value
  running = running - 1
  self.client:ended(self, { ok = not self.tooBig, exitCode = e.exitCode,
    signal = e.signal, stdout = table.concat(self.out),
    stderr = table.concat(self.err),
    error = self.tooBig and "output too large" or nil })
end

local Server = basic.Int32StringReceiver:extend({ __name = "RemoteCommand",
  MAX_LENGTH = 4096 })

function Server:connectionMade()
  self.runs, self.nruns = {}, 0
end

function Server:answer(t)
  if not self.gone then
    self:sendString(json.encode(t))
  end
end

function Server:ended(run, result)
  self.runs[run] = nil
  self.nruns = self.nruns - 1
  self:answer(result)
end

-- Why argv may not run now, or nil.
function Server:refusal(argv)
  local form = ALLOWED[argv[1] or ""]
  if not form then
    return "command not allowed: " .. tostring(argv[1])
  elseif not argsAllowed(form, argv) then
    return "arguments not allowed: " .. table.concat(argv, " ")
  elseif self.nruns >= MAX_PER_CONNECTION then
    return string.format("busy: at most %d commands at once per connection",
      MAX_PER_CONNECTION)
  elseif running >= MAX_RUNNING then
    return string.format("busy: at most %d commands at once on this server",
      MAX_RUNNING)
  end
  return nil
end

function Server:stringReceived(line)
  local argv = {}
  for word in line:gmatch("%S+") do
    argv[#argv + 1] = word
  end
  local refused = self:refusal(argv)
  if refused then
    return self:answer({ ok = false, error = refused })
  end
  local run = Run:new(self)
  local ok, e = pcall(reactor.spawnProcess, run, ALLOWED[argv[1]].exe, argv,
    { env = { LC_ALL = "C", PATH = "/usr/bin:/bin" } })
  if not ok then
    return self:answer({ ok = false, error = tostring(e) })
  end
  self.runs[run] = true
  self.nruns = self.nruns + 1
  running = running + 1
end

-- Nobody is left to answer: the client's commands are killed.
function Server:connectionLost()
  self.gone = true
  for run in pairs(self.runs) do
    run:kill()
  end
end

local function client(port, words)
  local Client = basic.Int32StringReceiver:extend({
    MAX_LENGTH = 2 * MAX_OUTPUT })
  local status = 1
  function Client:connectionMade()
    self:sendString(table.concat(words, " "))
  end
  function Client:stringReceived(s)
    local r = json.decode(s) or {}
    io.write(r.stdout or "")
    io.stderr:write(r.stderr or "", r.error and (r.error .. "\n") or "")
    status = r.ok and (r.exitCode or 1) or 1
    self.transport:loseConnection()
  end
  local cf = protocol.ClientFactory:forProtocol(Client)
  function cf:clientConnectionLost() reactor.stop() end
  function cf:clientConnectionFailed(_, reason)
    io.stderr:write(reason:getErrorMessage() .. "\n")
    reactor.stop()
  end
  reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
  reactor.run()
  os.exit(status)
end

if arg[1] == "client" then
  client(tonumber(arg[2]), { table.unpack(arg, 3) })
end

local port = reactor.listenTCP(tonumber(arg[1]) or 8000,
  protocol.Factory.forProtocol(Server), { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
