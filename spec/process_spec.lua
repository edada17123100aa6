-- spawnProcess with real children (/bin/sh, /bin/cat, /bin/sleep).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local testing = require "loom.testing"

local runUntil = testing.runUntil

-- Records every event; `ended` fires with the protocol after processEnded.
local Recorder = protocol.ProcessProtocol:extend({ __name = "ProcRecorder" })
function Recorder:init()
  self.out, self.err, self.events = {}, {}, {}
  self.ended = defer.Deferred()
end
function Recorder:connectionMade() self.events[#self.events + 1] = "made" end
function Recorder:outReceived(d) self.out[#self.out + 1] = d end
function Recorder:errReceived(d) self.err[#self.err + 1] = d end
function Recorder:inConnectionLost() self.events[#self.events + 1] = "in" end
function Recorder:outConnectionLost() self.events[#self.events + 1] = "out" end
function Recorder:errConnectionLost() self.events[#self.events + 1] = "err" end
function Recorder:processExited(reason)
  self.events[#self.events + 1] = "exited"
  self.exitReason = reason
end
function Recorder:processEnded(reason)
  self.events[#self.events + 1] = "ended"
  self.reason = reason
  self.ended:callback(self)
end
function Recorder:stdout() return table.concat(self.out) end
function Recorder:stderr() return table.concat(self.err) end

local function sh(script, opts, P)
  local p = (P or Recorder):new()
  local t = reactor.spawnProcess(p, "/bin/sh", { "sh", "-c", script }, opts)
  return p, t
end

local function index(list, v)
  for i, x in ipairs(list) do
    if x == v then return i end
  end
end

describe("spawnProcess", function()
  it("streams stdout and ends with ProcessDone for exit code 0", function()
    local p = sh("echo hello; echo world")
    runUntil(p.ended)
    assert.equal("hello\nworld\n", p:stdout())
    assert.is_truthy(p.reason:check(err.ProcessDone))
    assert.equal(0, p.reason.value.exitCode)
    assert.is_nil(p.reason.value.signal)
  end)

  it("passes args[1] as argv[0]", function()
    local p = Recorder:new()
    reactor.spawnProcess(p, "/bin/cat", { "kitty", "/proc/self/cmdline" })
    runUntil(p.ended)
    assert.equal("kitty\0/proc/self/cmdline\0", p:stdout())
  end)

  it("writes to stdin, closeStdin gives the child EOF, and every pipe's "
    .. "loss comes before processEnded", function()
    local p = Recorder:new()
    local t = reactor.spawnProcess(p, "/bin/cat", { "cat" })
    assert.is_true(t.pid > 0)
    t:write("through ")
    t:writeSequence({ "the ", "pipe" })
    t:closeStdin()
    runUntil(p.ended)
    assert.equal("through the pipe", p:stdout())
    assert.equal("made", p.events[1])
    assert.equal("ended", p.events[#p.events])
    for _, e in ipairs({ "in", "out", "err", "exited" }) do
      assert.is_truthy(index(p.events, e), e)
    end
    assert.is_truthy(p.exitReason:check(err.ProcessDone))
  end)

  it("delivers stderr to errReceived", function()
    local p = sh("echo oops >&2")
    runUntil(p.ended)
    assert.equal("oops\n", p:stderr())
    assert.equal("", p:stdout())
  end)

  it("ends with ProcessTerminated carrying the exit code", function()
    local p = sh("exit 3")
    runUntil(p.ended)
    assert.is_truthy(p.reason:check(err.ProcessTerminated))
    assert.equal(3, p.reason.value.exitCode)
    assert.is_nil(p.reason.value.signal)
    assert.matches("exit code 3", p.reason:getErrorMessage())
  end)

  it("ends with ProcessTerminated carrying the signal of a killed child",
    function()
      local p = Recorder:new()
      local t = reactor.spawnProcess(p, "/bin/sleep", { "sleep", "30" })
      t:signalProcess("TERM")
      runUntil(p.ended)
      assert.is_truthy(p.reason:check(err.ProcessTerminated))
      assert.equal(15, p.reason.value.signal)
      assert.is_nil(p.reason.value.exitCode)
      assert.matches("signal 15", p.reason:getErrorMessage())
    end)

  it("accepts signal numbers and KILL, and refuses signals after the end",
    function()
      local p = Recorder:new()
      local t = reactor.spawnProcess(p, "/bin/sleep", { "sleep", "30" })
      local pid = t.pid
      t:signalProcess(9)
      runUntil(p.ended)
      assert.equal(9, p.reason.value.signal)
      assert.is_nil(t.pid)
      local ok, e = pcall(t.signalProcess, t, "KILL")
      assert.is_false(ok)
      assert.is_true(e:isa(err.ProcessExitedAlready))
      -- Reaped: no zombie is left behind.
      assert.is_not_true(os.execute("kill -0 " .. pid .. " 2>/dev/null"))
      assert.has_error(function() t:signalProcess("NOPE") end)
    end)

  it("raises one line for a missing executable", function()
    local ok, e = pcall(reactor.spawnProcess, Recorder:new(), "/no/such",
      { "such" })
    assert.is_false(ok)
    assert.equal("spawnProcess: /no/such: ENOENT: no such file or directory",
      tostring(e):match("spawnProcess: .*$"))
    assert.is_nil(tostring(e):find("\n"))
  end)

  it("gives an empty environment by default, env as given, or the host's "
    .. "with env=true", function()
      local p = sh('echo "[$FOO][$HOME]"', { env = { FOO = "bar" } })
      runUntil(p.ended)
      assert.equal("[bar][]\n", p:stdout())
      local q = sh('echo "[$LOOM_SPEC_ENV]"')
      runUntil(q.ended)
      assert.equal("[]\n", q:stdout())
      local r = sh('echo "[$PATH]"', { env = true })
      runUntil(r.ended)
      assert.equal("[" .. os.getenv("PATH") .. "]\n", r:stdout())
    end)

  it("runs in the directory given as path", function()
    local p = sh("pwd", { path = "/tmp" })
    runUntil(p.ended)
    assert.equal("/tmp\n", p:stdout())
  end)

  it("maps extra childFDs to childDataReceived", function()
    local P = Recorder:extend({})
    function P:childDataReceived(fd, data)
      self.fds = self.fds or {}
      self.fds[fd] = (self.fds[fd] or "") .. data
    end
    local p = sh("echo three >&3; echo one",
      { childFDs = { [0] = "w", [1] = "r", [2] = "r", [3] = "r" } }, P)
    runUntil(p.ended)
    assert.equal("three\n", p.fds[3])
    assert.equal("one\n", p.fds[1])
  end)

  it("works with a plain table of hooks", function()
    local d = defer.Deferred()
    local out = {}
    local pp = {
      outReceived = function(_, data) out[#out + 1] = data end,
      processEnded = function(_, reason) d:callback({ reason }) end,
    }
    reactor.spawnProcess(pp, "/bin/echo", { "echo", "plain" })
    local reason = runUntil(d)[1]
    assert.is_truthy(reason:check(err.ProcessDone))
    assert.equal("plain\n", table.concat(out))
    assert.is_not_nil(pp.transport)
  end)

  it("logs an outReceived error and still ends the process", function()
    local logged = {}
    local obs = log.addObserver(function(ev) logged[#logged + 1] = ev.text end)
    local P = Recorder:extend({ __name = "Faulty" })
    function P:outReceived() error("bad output handler") end
    local p = sh("echo x; sleep 0.1; echo y")
    p.outReceived = P.outReceived
    runUntil(p.ended)
    log.removeObserver(obs)
    assert.matches("bad output handler", table.concat(logged, "\n"))
    assert.is_truthy(index(p.events, "out"))
  end)

  it("loseConnection closes all three pipes", function()
    local p = Recorder:new()
    local t = reactor.spawnProcess(p, "/bin/cat", { "cat" })
    t:loseConnection()
    runUntil(p.ended)
    assert.is_truthy(index(p.events, "in"))
    assert.is_truthy(index(p.events, "out"))
    assert.is_truthy(index(p.events, "err"))
  end)

  -- Flow control, as Twisted's Process: a child's output can be paused
  -- (its pipe fills and it blocks), and a producer feeding its stdin is
  -- paused while that queue is full.
  it("pauseProducing stops reading the child; resumeProducing goes on",
    function()
      local p, t = sh("while :; do echo 0123456789; sleep 0.005; done")
      local net = dofile("spec/support/net.lua")
      net.waitFor(function() return #p:stdout() > 0 end)
      t:pauseProducing()
      net.sleep(0.05) -- (what was already read arrives)
      local held = #p:stdout()
      net.sleep(0.2) -- the child writes on meanwhile
      assert.equal(held, #p:stdout()) -- nothing read
      t:resumeProducing()
      net.waitFor(function() return #p:stdout() > held + 11 end)
      t:signalProcess("KILL")
      runUntil(p.ended, 10)
    end)

  it("pauses a producer writing to a child that does not read, and"
    .. " resumes it when the child reads", function()
      local p, t = sh("sleep 0.3; cat >/dev/null")
      local producer = { events = {} }
      function producer.pauseProducing() producer.events[#producer.events + 1] = "pause" end
      function producer.resumeProducing() producer.events[#producer.events + 1] = "resume" end
      function producer.stopProducing() producer.events[#producer.events + 1] = "stop" end
      t:registerProducer(producer, true)
      assert.has_error(function() t:registerProducer(producer, true) end)
      t:write(("x"):rep(4 * 1024 * 1024)) -- more than the pipe takes
      assert.is_true(t:bufferedBytes() > 0)
      assert.same({ "pause" }, producer.events)
      local net = dofile("spec/support/net.lua")
      net.waitFor(function() return producer.events[2] ~= nil end, 10)
      assert.same({ "pause", "resume" }, producer.events)
      assert.equal(0, t:bufferedBytes())
      t:closeStdin() -- the producer is told to stop with stdin
      runUntil(p.ended, 10)
      assert.same({ "pause", "resume", "stop" }, producer.events)
    end)

  it("rejects bad arguments with clear errors", function()
    assert.has_error(function()
      reactor.spawnProcess(Recorder:new(), "/bin/echo", { "echo", 3 })
    end, "spawnProcess: args[2] is a number, not a string")
    assert.has_error(function()
      reactor.spawnProcess(Recorder:new(), "/bin/echo", { "echo" },
        { childFDs = { [0] = "x" } })
    end)
    assert.has_error(function()
      reactor.spawnProcess(Recorder:new(), "", {})
    end)
    -- a NUL would cut a string short and run something else: /bin/echo
    -- for "/bin/echo\0junk", a shorter argument, another directory
    local function fails(msg, ...)
      local ok, e = pcall(reactor.spawnProcess, Recorder:new(), ...)
      assert.is_false(ok)
      assert.matches(msg, e)
    end
    fails("holds a NUL byte", "/bin/echo\0junk", { "echo" })
    fails("spawnProcess: args%[2%] holds a NUL byte", "/bin/echo", { "echo", "a\0b" })
    fails("holds a NUL byte", "/bin/echo", { "echo" }, { env = { A = "x\0y" } })
    fails("env key \"A=B\" must be non%-empty, without = or NUL", "/bin/echo",
      { "echo" }, { env = { ["A=B"] = "c" } })
    fails("spawnProcess: path /tmp\0/etc is not a directory", "/bin/echo", { "echo" },
      { path = "/tmp\0/etc" })
    fails("spawnProcess: path /no/such/dir is not a directory", "/bin/ls", { "ls" },
      { path = "/no/such/dir" })
    fails("spawnProcess: unknown option bogus", "/bin/echo", { "echo" }, { bogus = 1 })
  end)
end)
