-- Remote-command server (the classic tutorial, made safe): clients on the
-- loopback interface send a command line as one Int32-prefixed string; the
-- first word must be on the allow-list, the rest become argv (never a
-- shell); the reply is one Int32-prefixed JSON string
--   {"ok":true,"exitCode":0,"stdout":"...","stderr":"..."}.
--   loom run examples/remote_command.lua [PORT]       (server; 0 picks one)
--   loom run examples/remote_command.lua client PORT COMMAND [ARGS...]
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local json = require "loom.json"

local ALLOWED = {
  date = "/bin/date", uptime = "/usr/bin/uptime", ls = "/bin/ls",
  echo = "/bin/echo", whoami = "/usr/bin/whoami", uname = "/bin/uname",
}
local MAX_OUTPUT = 1024 * 1024

-- Collects one command's output; answers the client when it has ended.
local Run = protocol.ProcessProtocol:extend({ __name = "RemoteRun" })

function Run:init(client)
  self.client, self.out, self.err, self.size = client, {}, {}, 0
end

function Run:connectionMade()
  self.transport:closeStdin()
end

function Run:collect(list, data)
  self.size = self.size + #data
  if self.size > MAX_OUTPUT then
    if not self.tooBig then
      self.tooBig = true
      self.transport:signalProcess("KILL")
    end
    return
  end
  list[#list + 1] = data
end

function Run:outReceived(data) self:collect(self.out, data) end

function Run:errReceived(data) self:collect(self.err, data) end

function Run:processEnded(reason)
  local e = reason.value
  self.client:answer({ ok = not self.tooBig, exitCode = e.exitCode,
    signal = e.signal, stdout = table.concat(self.out),
    stderr = table.concat(self.err),
    error = self.tooBig and "output too large" or nil })
end

local Server = basic.Int32StringReceiver:extend({ __name = "RemoteCommand",
  MAX_LENGTH = 4096 })

function Server:answer(t)
  if self.transport then
    self:sendString(json.encode(t))
  end
end

function Server:stringReceived(line)
  local argv = {}
  for word in line:gmatch("%S+") do
    argv[#argv + 1] = word
  end
  local exe = ALLOWED[argv[1] or ""]
  if not exe then
    return self:answer({ ok = false,
      error = "command not allowed: " .. tostring(argv[1]) })
  end
  local ok, e = pcall(reactor.spawnProcess, Run:new(self), exe, argv,
    { env = { LC_ALL = "C", PATH = "/usr/bin:/bin" } })
  if not ok then
    self:answer({ ok = false, error = tostring(e) })
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
