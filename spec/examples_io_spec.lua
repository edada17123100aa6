-- The UDP, Unix-socket, process, thread, upload and remote-command
-- examples, each run as a real `build/loom run` subprocess (under
-- `timeout`) and talked to over loopback or a temporary Unix socket.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local defer = require "loom.defer"
local json = require "loom.json"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local LOOM = "build/loom"
local LIMIT = 15

local function readFile(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

local function tempdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  return dir
end

-- Starts `loom run examples/NAME args...`; returns once it printed its
-- listening line: {pid=, port=, line=, handle=, errfile=}. `timeout
-- --foreground` passes our one SIGTERM on once; without it, timeout also
-- signals its whole process group, and the second SIGTERM can land after
-- loom's handlers were removed at the end of a fast shutdown (exit 143).
-- `setup` (optional) is shell run just before, e.g. "ulimit -f 2048;".
local function start(name, args, setup)
  local errfile = os.tmpname()
  local h = assert(io.popen(string.format(
    "sh -c 'echo $$; %s exec timeout --foreground %d %s run examples/%s %s' "
    .. "2>%s", setup or "", LIMIT,
    LOOM, name, args or "0", errfile), "r"))
  local pid = assert(tonumber(h:read("l")))
  local line = h:read("l")
  if not line then
    h:close()
    error(name .. " did not start: " .. readFile(errfile))
  end
  return { pid = pid, line = line, handle = h, errfile = errfile,
    port = tonumber(line:match(":(%d+)$")) }
end

local function stop(server)
  os.execute("kill " .. server.pid .. " 2>/dev/null")
  server.handle:read("a")
  local _, how, code = server.handle:close()
  os.remove(server.errfile)
  return how == "exit" and code or -1
end

-- Runs a command to completion: its stdout and exit status.
local function shell(cmd)
  local h = assert(io.popen(cmd .. "; echo \"status=$?\"", "r"))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), status
end

local function run(script, args)
  return shell(string.format("timeout %d %s run examples/%s %s 2>/dev/null",
    LIMIT, LOOM, script, args))
end

describe("examples/udp_echo_server.lua and udp_echo_client.lua", function()
  it("echoes each datagram back", function()
    local server = start("udp_echo_server.lua")
    local out, status = run("udp_echo_client.lua",
      server.port .. " 127.0.0.1 one two")
    assert.equal(0, status)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "one", "two" }, lines)
    assert.equal(0, stop(server))
  end)
end)

describe("examples/unix_echo.lua", function()
  it("echoes over a Unix socket and removes it on exit", function()
    local dir = tempdir()
    local path = dir .. "/echo.sock"
    local server = start("unix_echo.lua", "server " .. path)
    assert.equal("listening on " .. path, server.line)
    local out, status = run("unix_echo.lua", "client " .. path .. " ping")
    assert.equal(0, status)
    assert.equal("ping\n", out)
    assert.equal(0, stop(server))
    assert.is_not_true(os.execute("test -e " .. path))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("examples/process_runner.lua", function()
  it("streams ls -l and prints the exit code", function()
    local dir = tempdir()
    assert(io.open(dir .. "/marker.txt", "w")):close()
    local out, status = run("process_runner.lua", dir)
    assert.equal(0, status)
    assert.matches("marker%.txt", out)
    assert.matches("exit code 0\n$", out)
    out = run("process_runner.lua", dir .. "/missing")
    assert.matches("exit code 2\n$", out)
    os.execute("rm -rf " .. dir)
  end)
end)

-- A line client recording lines; `want(n)` fires once n lines arrived.
local Lines = basic.LineReceiver:extend({ delimiter = "\n" })
function Lines:init()
  self.lines = {}
  self.made = defer.Deferred()
end
function Lines:connectionMade() self.made:callback(self) end
function Lines:lineReceived(line)
  self.lines[#self.lines + 1] = line
  if self.wanted and #self.lines >= self.wanted and not self.d.called then
    self.d:callback(self.lines)
  end
end
function Lines:want(n)
  self.wanted, self.d = n, defer.Deferred()
  return self.d
end

local function connect(port, proto)
  local cf = protocol.ClientFactory:new()
  function cf:buildProtocol() return proto end
  reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
  runUntil(proto.made, 5)
  return proto
end

describe("examples/thread_prime.lua", function()
  it("keeps echoing while a worker counts primes", function()
    local server = start("thread_prime.lua")
    local c = connect(server.port, Lines:new())
    local d = c:want(2)
    c.transport:write("primes 1000000\nstill here\n")
    local lines = runUntil(d, 10)
    assert.equal("still here", lines[1]) -- the echo did not wait
    assert.equal("primes below 1000000: 78498", lines[2])
    c.transport:loseConnection()
    assert.equal(0, stop(server))
  end)
end)

-- Sends an upload header (and `body`, once "ready"); returns the replies.
local function upload(port, name, size, body)
  local c = connect(port, Lines:new())
  local d = c:want(1)
  c:sendLine(json.encode({ action = "put", filename = name, filesize = size }))
  local replies = { json.decode(runUntil(d, 5)[1]) }
  if body and replies[1].status == "ready" then
    d = c:want(2)
    c.transport:write(body)
    replies[2] = json.decode(runUntil(d, 10)[2])
  end
  c.transport:loseConnection()
  return replies
end

describe("examples/upload", function()
  local dir, server
  before_each(function()
    dir = tempdir()
    server = start("upload/server.lua", dir .. " 0")
  end)
  after_each(function()
    stop(server)
    os.execute("rm -rf " .. dir)
  end)

  it("stores an uploaded file under the directory", function()
    local src = dir .. "/../loom-upload-src.bin"
    assert(os.execute("head -c 300000 /dev/urandom > " .. src))
    local out, status = run("upload/client.lua",
      server.port .. " " .. src .. " copy.bin")
    assert.equal(0, status)
    assert.equal("uploaded copy.bin (300000 bytes)\n", out)
    assert.equal(readFile(src), readFile(dir .. "/copy.bin"))
    os.remove(src)
  end)

  it("rejects unsafe names and bad sizes, and drops short uploads",
    function()
      for _, name in ipairs({ "../evil", "a/b", "", ".hidden", ".." }) do
        local c = connect(server.port, Lines:new())
        local d = c:want(1)
        c:sendLine(json.encode({ action = "put", filename = name,
          filesize = 3 }))
        local reply = json.decode(runUntil(d, 5)[1])
        assert.equal("error", reply.status, name)
        assert.equal("unsafe file name", reply.message)
      end
      local c = connect(server.port, Lines:new())
      local d = c:want(1)
      c:sendLine(json.encode({ action = "put", filename = "x",
        filesize = -1 }))
      assert.equal("error", json.decode(runUntil(d, 5)[1]).status)
      -- A body cut short leaves no file behind.
      local short = connect(server.port, Lines:new())
      d = short:want(1)
      short:sendLine(json.encode({ action = "put", filename = "short.txt",
        filesize = 100 }))
      assert.equal("ready", json.decode(runUntil(d, 5)[1]).status)
      short.transport:write("only a bit")
      short.transport:loseConnection()
      local wait = defer.Deferred()
      reactor.callLater(0.2, wait.callback, wait, true)
      runUntil(wait)
      assert.equal("", (shell("ls -A " .. dir)))
    end)

  it("refuses names too long to store as unsafe, and stores the longest"
    .. " it allows", function()
      for _, n in ipairs({ 241, 250, 255, 256 }) do
        local r = upload(server.port, ("n"):rep(n), 3)
        assert.same({ status = "error", message = "unsafe file name" }, r[1],
          n)
      end
      local longest = ("n"):rep(240)
      local r = upload(server.port, longest, 3, "abc")
      assert.equal("ready", r[1].status)
      assert.equal("done", r[2].status)
      assert.equal("abc", readFile(dir .. "/" .. longest))
    end)

  it("answers a store failure without the server's paths", function()
    os.execute("rm -rf " .. dir)
    local r = upload(server.port, "gone.txt", 3)
    assert.same({ status = "error", message = "cannot store the file" }, r[1])
  end)
end)

describe("examples/upload on a full disk", function()
  it("answers an error, not done, and leaves no partial file", function()
    -- RLIMIT_FSIZE of 1 MiB (2048 blocks of 512 bytes): writes past it fail
    -- with EFBIG as on a full disk. The host ignores SIGXFSZ (as Python
    -- does), so the limit does not kill it.
    local dir = tempdir()
    local server = start("upload/server.lua", dir .. " 0", "ulimit -f 2048;")
    local size = 3 * 1024 * 1024
    local r = upload(server.port, "big.bin", size, ("x"):rep(size))
    assert.equal("ready", r[1].status)
    assert.same({ status = "error", message = "cannot store the file" }, r[2])
    assert.equal("", (shell("ls -A " .. dir)))
    assert.equal(0, stop(server))
    os.execute("rm -rf " .. dir)
  end)
end)

-- A remote_command client: `replies(n)` fires with the first n replies.
local Commands = basic.Int32StringReceiver:extend({})
function Commands:init()
  self.made, self.replies = defer.Deferred(), {}
end
function Commands:connectionMade() self.made:callback(self) end
function Commands:stringReceived(s)
  self.replies[#self.replies + 1] = json.decode(s)
  if self.wanted and #self.replies >= self.wanted and not self.d.called then
    self.d:callback(self.replies)
  end
end
function Commands:want(n)
  self.wanted, self.d = n, defer.Deferred()
  return self.d
end
-- Sends each command line, all in one write (pipelined).
function Commands:send(lines)
  local frames = {}
  for i, line in ipairs(lines) do
    frames[i] = string.pack(">s4", line)
  end
  self.transport:write(table.concat(frames))
end

-- The pids of pid's children (its main thread's: libuv spawns from there).
local function children(pid)
  local out = {}
  local s = readFile(string.format("/proc/%d/task/%d/children", pid, pid))
  for n in s:gmatch("%d+") do
    out[#out + 1] = tonumber(n)
  end
  return out
end

-- The loom process of a started example (sh exec'd timeout, which forks it).
local function loomPid(server)
  return children(server.pid)[1]
end

local function waitUntil(test, secs)
  local deadline = reactor.seconds() + (secs or 5)
  while not test() do
    assert(reactor.seconds() < deadline, "condition not met in time")
    local tick = defer.Deferred()
    reactor.callLater(0.02, tick.callback, tick, true)
    runUntil(tick, 1)
  end
end

describe("examples/remote_command.lua", function()
  it("runs allowed commands without a shell and refuses others", function()
    local server = start("remote_command.lua")
    local out, status = run("remote_command.lua",
      "client " .. server.port .. " echo 'a;b' '$(id)'")
    assert.equal(0, status)
    assert.equal("a;b $(id)\n", out)
    out, status = run("remote_command.lua",
      "client " .. server.port .. " rm -rf /tmp/nothing")
    assert.equal(1, status)
    assert.equal("", out)
    local Raw = basic.Int32StringReceiver:extend({})
    function Raw:init()
      self.made, self.got = defer.Deferred(), defer.Deferred()
    end
    function Raw:connectionMade() self.made:callback(self) end
    function Raw:stringReceived(s) self.got:callback(s) end
    local c = connect(server.port, Raw:new())
    c:sendString("ls /nonexistent-dir")
    local reply = json.decode(runUntil(c.got, 5))
    assert.is_true(reply.ok)
    assert.equal(2, reply.exitCode)
    assert.matches("nonexistent", reply.stderr)
    c.transport:loseConnection()
    assert.equal(0, stop(server))
  end)

  it("allow-lists the arguments too: date -f FILE and other forms are"
    .. " refused", function()
      local server = start("remote_command.lua")
      local c = connect(server.port, Commands:new())
      local bad = { "date -f /etc/passwd", "date --file=/etc/passwd",
        "ls -R /usr/share", "ls --dereference /", "uname --help",
        "whoami root", "sleep 99", "echo -e x" }
      local d = c:want(#bad + 1)
      c:send(bad)
      c:send({ "date +%Y" })
      local replies = runUntil(d, 5)
      for i, line in ipairs(bad) do
        assert.same({ ok = false, error = "arguments not allowed: " .. line },
          replies[i])
      end
      assert.is_true(replies[#bad + 1].ok)
      assert.matches("^%d%d%d%d\n$", replies[#bad + 1].stdout)
      c.transport:loseConnection()
      assert.equal(0, stop(server))
    end)

  it("runs at most 4 commands at once per connection, and kills them when"
    .. " the client goes away", function()
      local server = start("remote_command.lua")
      local pid = loomPid(server)
      local c = connect(server.port, Commands:new())
      local d = c:want(2)
      c:send({ "sleep 9", "sleep 9", "sleep 9", "sleep 9", "sleep 9",
        "sleep 9" })
      local busy = { ok = false,
        error = "busy: at most 4 commands at once per connection" }
      assert.same({ busy, busy }, runUntil(d, 5))
      waitUntil(function() return #children(pid) == 4 end)
      c.transport:loseConnection()
      waitUntil(function() return #children(pid) == 0 end)
      assert.equal(0, stop(server))
    end)

  it("runs at most 16 commands at once on the server", function()
    local server = start("remote_command.lua")
    local pid = loomPid(server)
    local clients = {}
    for i = 1, 4 do
      clients[i] = connect(server.port, Commands:new())
      clients[i]:send({ "sleep 9", "sleep 9", "sleep 9", "sleep 9" })
    end
    waitUntil(function() return #children(pid) == 16 end)
    local extra = connect(server.port, Commands:new())
    local d = extra:want(1)
    extra:send({ "echo hi" })
    assert.same({ { ok = false,
      error = "busy: at most 16 commands at once on this server" } },
      runUntil(d, 5))
    for _, c in ipairs(clients) do
      c.transport:loseConnection()
    end
    waitUntil(function() return #children(pid) == 0 end)
    d = extra:want(2)
    extra:send({ "echo hi" })
    assert.equal("hi\n", runUntil(d, 5)[2].stdout)
    extra.transport:loseConnection()
    assert.equal(0, stop(server))
  end)
end)
