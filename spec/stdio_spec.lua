-- loom.stdio: StandardIO, each case a real `build/loom run` subprocess
-- (under `timeout`) whose stdin and stdout are pipes, regular files or
-- devices set up by the shell, as Twisted's test_stdio runs its
-- stdio_test_*.py children.
local stdio = require "loom.stdio"

local LOOM = os.getenv("LOOM_BIN") or "build/loom"
local LIMIT = 15 -- seconds any one child may live

local function readFile(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

local function writeFile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local dir

-- Each child shares this head: report(reason) tells the parent on stderr
-- which reason connectionLost got, then stops the reactor.
local HEAD = [[
local reactor = require "loom.reactor"
local stdio = require "loom.stdio"
local basic = require "loom.basic"
local protocol = require "loom.protocol"
local task = require "loom.task"
local err = require "loom.error"
local function report(reason)
  local kind = reason:check(err.ConnectionDone) and "ConnectionDone"
    or reason:check(err.ConnectionLost) and "ConnectionLost" or "other"
  io.stderr:write("lost: ", kind, ": ", reason:getErrorMessage(), "\n")
  if reactor.running then reactor.stop() end
end
]]

local CHILDREN = {
  -- Lines echoed back upper-cased.
  upper = [[
local Upper = basic.LineReceiver:extend({ __name = "Upper", delimiter = "\n" })
function Upper:lineReceived(line) self:sendLine(line:upper()) end
function Upper:connectionLost(reason) report(reason) end
stdio.StandardIO(Upper:new())
reactor.run()
]],
  -- Every byte echoed; the count reported at the end.
  echo = [[
local n = 0
local Echo = protocol.Protocol:extend({ __name = "Echo" })
function Echo:dataReceived(data)
  n = n + #data
  self.transport:write(data)
end
function Echo:connectionLost(reason)
  io.stderr:write("bytes ", n, "\n")
  report(reason)
end
stdio.StandardIO(Echo:new())
reactor.run()
]],
  -- Ticks while stdin has nothing to say; a line reports how many.
  ticker = [[
local ticks = 0
local Ticker = basic.LineReceiver:extend({ __name = "Ticker",
  delimiter = "\n" })
function Ticker:connectionMade()
  self.loop = task.LoopingCall(function() ticks = ticks + 1 end)
  self.loop:start(0.02)
end
function Ticker:lineReceived(line)
  self:sendLine(line .. " after " .. ticks .. " ticks")
  self.transport:loseConnection()
end
function Ticker:connectionLost(reason) self.loop:stop() report(reason) end
stdio.StandardIO(Ticker:new())
reactor.run()
]],
  -- Twisted's stdio_test_halfclose: readConnectionLost, then it writes on.
  halfclose = [[
local Half = protocol.Protocol:extend({ __name = "Half" })
function Half:readConnectionLost()
  self.transport:write("read lost, still writing\n")
  self.transport:loseConnection()
end
function Half:connectionLost(reason) report(reason) end
stdio.StandardIO(Half:new())
reactor.run()
]],
  -- stdio_test_loseconn: loseConnection from connectionMade.
  loseconn = [[
local P = protocol.Protocol:extend({ __name = "LoseConn" })
function P:connectionMade()
  self.transport:write("bye\n")
  self.transport:loseConnection()
end
function P:connectionLost(reason) report(reason) end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- stdio_test_hostpeer and stdio_test_writeseq.
  hostpeer = [[
local P = protocol.Protocol:extend({ __name = "HostPeer" })
function P:connectionMade()
  local t = self.transport
  t:writeSequence({ tostring(t:getHost()), "\n", tostring(t:getPeer()),
    "\n", t:getPeer().type, "\n" })
  t:loseConnection()
end
function P:connectionLost(reason) report(reason) end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- A hook that raises: logged, only the transport is dropped.
  raise = [[
local P = protocol.Protocol:extend({ __name = "Raiser" })
function P:dataReceived() error("boom in dataReceived") end
function P:connectionLost(reason)
  io.stderr:write("reason: ", reason:getErrorMessage(), "\n")
  reactor.stop()
end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- stdio_test_producer: no dataReceived while paused.
  paused = [[
local P = protocol.Protocol:extend({ __name = "Paused" })
local paused = false
function P:connectionMade()
  paused = true
  self.transport:pauseProducing()
  reactor.callLater(0.3, function()
    paused = false
    self.transport:resumeProducing()
  end)
end
function P:dataReceived(data)
  local when = paused and "while paused: " or "after resume: "
  self.transport:write(when .. data)
end
function P:connectionLost(reason) report(reason) end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- stdio_test_consumer: a pull producer writes 1000 numbered lines.
  consumer = [[
local P = protocol.Protocol:extend({ __name = "Consumer" })
function P:connectionMade()
  local i, t = 0, self.transport
  local producer = {}
  function producer.resumeProducing()
    if i == 1000 then
      t:unregisterProducer()
      t:loseConnection()
      return
    end
    local chunk = {}
    for k = i, i + 99 do chunk[#chunk + 1] = k .. "\n" end
    i = i + 100
    t:write(table.concat(chunk))
  end
  function producer.stopProducing() end
  t:registerProducer(producer, false)
end
function P:connectionLost(reason) report(reason) end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- The reactor stops while input is still coming.
  stopper = [[
local P = protocol.Protocol:extend({ __name = "Stopper" })
function P:connectionMade()
  reactor.callLater(0.2, function()
    self.transport:write("stopping\n")
    reactor.stop()
  end)
end
function P:connectionLost(reason) report(reason) end
stdio.StandardIO(P:new())
reactor.run()
]],
  -- A stdin it cannot use: the one-line error.
  baddir = [[
local ok, e = pcall(stdio.StandardIO, {})
io.stderr:write("error: ", tostring(e), "\n")
]],
  -- A plain table of hooks works as the protocol too.
  plain = [[
local P = {}
function P.connectionMade() P.transport:write("made\n") end
function P.dataReceived(_, data) P.transport:write("got " .. data) end
function P.connectionLost(_, reason) report(reason) end
stdio.StandardIO(P)
reactor.run()
]],
}

-- Runs a shell command line with {loom NAME} standing for the child;
-- returns stdout, stderr, and the exit status of the last command.
local function sh(cmd)
  cmd = cmd:gsub("{loom (%w+)}", function(name)
    return string.format("timeout %d %s run %s/%s.lua", LIMIT, LOOM, dir,
      name)
  end)
  local errfile = os.tmpname()
  local h = assert(io.popen("( " .. cmd .. " ) 2>" .. errfile
    .. "; echo \"status=$?\""))
  local out = h:read("a")
  h:close()
  local e = readFile(errfile)
  os.remove(errfile)
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), e, status
end

-- n bytes of numbered lines.
local function numberedLines(n)
  local t, size, i = {}, 0, 0
  while size < n do
    local line = string.format("line %08d of the input\n", i)
    t[#t + 1] = line
    size = size + #line
    i = i + 1
  end
  return table.concat(t)
end

describe("stdio.StandardIO", function()
  setup(function()
    local h = assert(io.popen("mktemp -d"))
    dir = h:read("l")
    h:close()
    for name, body in pairs(CHILDREN) do
      writeFile(dir .. "/" .. name .. ".lua", HEAD .. body)
    end
  end)

  teardown(function()
    os.execute("rm -rf " .. dir)
  end)

  it("delivers piped lines to a LineReceiver and writes its replies",
    function()
    local out, err, status = sh("printf 'abc\\ndef\\n' | {loom upper}")
    assert.are.equal("ABC\nDEF\n", out)
    assert.are.equal(0, status, err)
  end)

  it("gives connectionLost with ConnectionDone at the end of input",
    function()
    local out, err = sh("printf 'x\\n' | {loom upper}")
    assert.are.equal("X\n", out)
    assert.matches("lost: ConnectionDone: Connection was closed cleanly",
      err, 1, true)
  end)

  it("passes a few MiB through a pipe whole and in order", function()
    local input = numberedLines(3 * 1024 * 1024)
    writeFile(dir .. "/big.txt", input)
    local out, err, status = sh("cat " .. dir .. "/big.txt | {loom echo} | cat")
    assert.are.equal(0, status, err)
    assert.are.equal(#input, #out)
    assert.is_true(input == out, "output differs from input")
    assert.matches("bytes " .. #input, err, 1, true)
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("reads stdin from a regular file and writes stdout to one", function()
    local input = numberedLines(2 * 1024 * 1024)
    writeFile(dir .. "/big.txt", input)
    local _, err, status = sh("{loom echo} < " .. dir .. "/big.txt > "
      .. dir .. "/out.txt")
    assert.are.equal(0, status, err)
    local out = readFile(dir .. "/out.txt")
    assert.are.equal(#input, #out)
    assert.is_true(input == out, "output file differs from input")
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("takes /dev/null as an empty input", function()
    local out, err, status = sh("{loom upper} < /dev/null")
    assert.are.equal("", out)
    assert.are.equal(0, status, err)
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("keeps running timers while it waits on stdin", function()
    local out, err, status = sh("(sleep 1; printf 'hi\\n') | {loom ticker}")
    assert.are.equal(0, status, err)
    local ticks = tonumber(out:match("^hi after (%d+) ticks\n$"))
    assert.is_not_nil(ticks, out)
    assert.is_true(ticks >= 5, "only " .. tostring(ticks) .. " ticks")
  end)

  it("gives connectionLost, not a crash, when stdout's reader went away",
    function()
    local statusFile = dir .. "/status"
    local out, err = sh("yes | ({loom upper}; echo $? > " .. statusFile
      .. ") | head -c 4")
    assert.are.equal("Y\nY\n", out)
    assert.are.equal("0\n", readFile(statusFile), err)
    assert.matches("lost: ConnectionLost: broken pipe", err, 1, true)
  end)

  it("reports a failing output file (/dev/full) as ConnectionLost",
    function()
    local _, err, status = sh("printf 'a\\n' | {loom upper} > /dev/full")
    assert.are.equal(0, status, err)
    assert.matches("lost: ConnectionLost: no space left on device", err, 1,
      true)
  end)

  it("calls readConnectionLost of a half-closeable protocol, which may "
    .. "go on writing", function()
    local out, err, status = sh("printf '' | {loom halfclose}")
    assert.are.equal(0, status, err)
    assert.are.equal("read lost, still writing\n", out)
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("disconnects with ConnectionDone on loseConnection, after the flush",
    function()
    local out, err, status = sh("yes | {loom loseconn}")
    assert.are.equal(0, status, err)
    assert.are.equal("bye\n", out)
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("flushes and gives ConnectionDone when the reactor stops", function()
    local out, err, status = sh("yes | {loom stopper}")
    assert.are.equal(0, status, err)
    assert.are.equal("stopping\n", out)
    assert.matches("lost: ConnectionDone", err, 1, true)
  end)

  it("leaves a stdin pipe blocking for the next reader", function()
    -- cat reads the same pipe after loom: non-blocking, it would fail with
    -- EAGAIN before the late line is written.
    local out, err, status = sh("(sleep 0.5; printf 'late\\n') | "
      .. "({loom loseconn}; cat)")
    assert.are.equal(0, status, err)
    assert.are.equal("bye\nlate\n", out)
  end)

  it("leaves a stdout pipe blocking for the next writer", function()
    -- head writes 300000 bytes into the pipe loom wrote to, read slowly.
    local out, err, status = sh("yes | ({loom loseconn}; head -c 300000 "
      .. "/dev/zero) | (sleep 0.3; wc -c)")
    assert.are.equal(0, status, err)
    assert.are.equal("300004", out:match("%d+"))
  end)

  it("has PipeAddress for getHost and getPeer, and writeSequence",
    function()
    local out, err, status = sh("{loom hostpeer} < /dev/null")
    assert.are.equal(0, status, err)
    assert.are.equal("PipeAddress()\nPipeAddress()\nPIPE\n", out)
  end)

  it("logs a hook's error and gives it to connectionLost", function()
    local out, err, status = sh("printf 'x' | {loom raise}")
    assert.are.equal(0, status, err)
    assert.are.equal("", out)
    assert.matches("error in Raiser.dataReceived", err, 1, true)
    assert.matches("reason: .*boom in dataReceived", err)
  end)

  it("delivers no data while paused", function()
    local out, err, status = sh("printf 'hello\\n' | {loom paused}")
    assert.are.equal(0, status, err)
    assert.are.equal("after resume: hello\n", out)
  end)

  it("serves a pull producer registered on it", function()
    local out, err, status = sh("yes | {loom consumer}")
    assert.are.equal(0, status, err)
    local want = {}
    for i = 0, 999 do
      want[#want + 1] = i .. "\n"
    end
    assert.are.equal(table.concat(want), out)
  end)

  it("takes a plain table of hooks as its protocol", function()
    local out, err, status = sh("printf 'x\\n' | {loom plain}")
    assert.are.equal(0, status, err)
    assert.are.equal("made\ngot x\n", out)
  end)

  it("raises one line for a descriptor it cannot use", function()
    local ok, e = pcall(stdio.StandardIO, {}, { stdin = 987 })
    assert.is_false(ok)
    assert.matches("StandardIO: fd 987: EBADF: bad file descriptor$", e)
  end)

  it("raises one line for a stdin that is a directory", function()
    local _, err, status = sh("{loom baddir} < /")
    assert.are.equal(0, status, err)
    assert.matches("error: [^\n]*StandardIO: fd 0: EINVAL: not a terminal, "
      .. "pipe, socket or file\n", err)
  end)

  it("raises one line for a bad protocol or fd", function()
    local ok, e = pcall(stdio.StandardIO, "proto")
    assert.is_false(ok)
    assert.matches("StandardIO: protocol must be a Protocol", e, 1, true)
    ok, e = pcall(stdio.StandardIO, {}, { stdout = -1 })
    assert.is_false(ok)
    assert.matches("StandardIO: stdout must be an fd number >= 0, got -1",
      e, 1, true)
  end)
end)

describe("examples/stdio_client.lua", function()
  local sub = dofile("spec/support/subprocess.lua")
  local server

  setup(function()
    server = sub.start("echo --port tcp:0:interface=127.0.0.1")
  end)

  teardown(function()
    sub.stop(server)
  end)

  local function client(input, port)
    return sh(string.format("printf '%s' | timeout %d %s run "
      .. "examples/stdio_client.lua %d", input, LIMIT, LOOM,
      port or server.port))
  end

  it("sends typed lines and prints the replies, then exits 0", function()
    local out, err, status = client("hello\\nworld\\n")
    assert.are.equal(0, status, err)
    assert.are.equal("hello\nworld\n", out)
  end)

  it("passes a large input through with backpressure both ways",
    function()
    local input, path = numberedLines(1024 * 1024), os.tmpname()
    writeFile(path, input)
    local out, err, status = sh(string.format("cat %s | timeout %d %s run "
      .. "examples/stdio_client.lua %d | cat", path, LIMIT, LOOM,
      server.port))
    os.remove(path)
    assert.are.equal(0, status, err)
    assert.is_true(out == input, "replies differ from input")
  end)

  it("exits 1 with one line when it cannot connect", function()
    local out, err, status = client("hi\\n", 1)
    assert.are.equal(1, status)
    assert.are.equal("", out)
    assert.matches("^stdio_client: cannot connect: [^\n]*refused\n$", err)
  end)
end)
