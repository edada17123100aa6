-- loom.stdio: standard input and output as the transport of a protocol,
-- as Twisted's twisted.internet.stdio, so an interactive client reads the
-- keyboard without blocking the reactor:
--
--   local stdio = require "loom.stdio"
--   stdio.StandardIO(MyLineProtocol:new())
--   reactor.run()
--
-- The transport is C (bindings/stdio.c over host/stdio.c): input is read
-- and output written by the same stream code as sockets, whatever stdin
-- and stdout are (a terminal, a pipe, a socket, a regular file).

local core = require "loom.core"
local reactor = require "loom.reactor" -- installs the hooks the C side calls

local M = {}

local function checkFd(name, fd)
  if math.type(fd) ~= "integer" or fd < 0 then
    error(string.format("StandardIO: %s must be an fd number >= 0, got %s",
      name, tostring(fd)), 3)
  end
end

-- StandardIO(protocol, {stdin=0, stdout=1, reactor=}) -> the transport.
-- Calls protocol:makeConnection(transport) (a plain table of hooks gets
-- .transport and connectionMade()), then reads stdin: dataReceived(data)
-- for each read; at its end readConnectionLost() when the protocol has it
-- (Twisted's IHalfCloseableProtocol), else the output is flushed and
-- connectionLost(ConnectionDone) follows. A descriptor that cannot be used
-- raises one line: "StandardIO: fd 0: EBADF: bad file descriptor".
function M.StandardIO(proto, opts)
  opts = opts or {}
  if type(proto) ~= "table" then
    error("StandardIO: protocol must be a Protocol (a table of hooks), got "
      .. type(proto), 2)
  end
  if type(opts) ~= "table" then
    error("StandardIO: options must be a table", 2)
  end
  if opts.reactor ~= nil and opts.reactor ~= reactor then
    error("StandardIO: reactor must be loom.reactor (the only one)", 2)
  end
  local stdin, stdout = opts.stdin or 0, opts.stdout or 1
  checkFd("stdin", stdin)
  checkFd("stdout", stdout)
  local transport, _, msg = core.standardIO(proto, stdin, stdout)
  if not transport then
    error("StandardIO: " .. msg, 2)
  end
  return transport
end

return M
