-- Runs `ls -l DIR` as a child process, streams its output as it arrives
-- and prints the exit code (Twisted's process howto, the reactor way).
--   loom run examples/process_runner.lua [DIR]
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local err = require "loom.error"

local Runner = protocol.ProcessProtocol:extend({ __name = "Runner" })

function Runner:connectionMade()
  io.stderr:write("started pid " .. self.transport.pid .. "\n")
  self.transport:closeStdin() -- ls reads nothing
end

function Runner:outReceived(data)
  io.write(data)
  io.stdout:flush()
end

function Runner:errReceived(data)
  io.stderr:write(data)
end

function Runner:processEnded(reason)
  local e = reason.value
  if reason:check(err.ProcessDone) then
    print("exit code 0")
  elseif e.signal then
    print("killed by signal " .. e.signal)
  else
    print("exit code " .. tostring(e.exitCode))
  end
  reactor.stop()
end

reactor.spawnProcess(Runner:new(), "/bin/ls", { "ls", "-l", arg[1] or "." },
  { env = { LC_ALL = "C" } })
reactor.run()
