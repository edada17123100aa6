-- reactor.iterate(delay) (Twisted's): one turn of the loop for a program
-- whose own frame loop drives the reactor; reactor.startRunning for the
-- startup and shutdown events under it; and require "loom" driven that way
-- from a plain lua5.4.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")

-- Iterates (each turn waiting at most step seconds) until done() or the
-- deadline; returns whether done() became true.
local function iterateUntil(done, step, deadline)
  local stop = reactor.seconds() + (deadline or 5)
  while not done() do
    if reactor.seconds() > stop then
      return false
    end
    reactor.iterate(step)
  end
  return true
end

describe("reactor.iterate", function()
  it("runs what is due and returns without waiting", function()
    local ran = {}
    reactor.callLater(0, function(x) ran[#ran + 1] = x end, "a")
    reactor.callLater(30, function() ran[#ran + 1] = "late" end):cancel()
    local t0 = reactor.seconds()
    reactor.iterate()
    reactor.iterate(0)
    assert.same({ "a" }, ran)
    assert.is_true(reactor.seconds() - t0 < 0.5)
  end)

  it("waits at most delay when nothing happens", function()
    local t0 = reactor.seconds()
    reactor.iterate(0.05)
    local waited = reactor.seconds() - t0
    assert.is_true(waited >= 0.04, "waited " .. waited)
    assert.is_true(waited < 1, "waited " .. waited)
  end)

  it("returns at the first timer due before delay", function()
    local ran = false
    reactor.callLater(0.02, function() ran = true end)
    local t0 = reactor.seconds()
    assert.is_true(iterateUntil(function() return ran end, 2, 3))
    assert.is_true(reactor.seconds() - t0 < 1.5)
  end)

  it("drives TCP connections with no run()", function()
    local port = net.listen(protocol.Factory.forProtocol(net.Echo))
    local c = net.connect(port)
    assert.is_true(iterateUntil(function() return c.made.called end, 0.01))
    c.transport:write("frame")
    assert.is_true(iterateUntil(function() return c:text() == "frame" end,
      0.01))
    c.transport:loseConnection()
    assert.is_true(iterateUntil(function() return c.lost.called end, 0.01))
    local stopped = port:stopListening()
    assert.is_true(iterateUntil(function() return stopped.called end, 0.01))
  end)

  it("refuses a negative or non-number delay", function()
    assert.has_error(function() reactor.iterate(-1) end)
    assert.has_error(function() reactor.iterate(0 / 0) end)
    assert.has_error(function() reactor.iterate("soon") end)
  end)

  it("raises from inside the loop instead of running it twice", function()
    local caught
    reactor.callLater(0, function()
      local ok, e = pcall(reactor.iterate, 0)
      caught = ok and "no error" or tostring(e)
    end)
    reactor.iterate(0)
    assert.matches("inside the reactor", caught)
    local d = defer.Deferred()
    reactor.callLater(0, function()
      local ok, e = pcall(reactor.iterate, 0)
      d:callback(ok and "no error" or tostring(e))
    end)
    -- Under run(): the callback is inside the loop.
    assert.matches("inside the reactor", testing.runUntil(d))
    -- And run() from inside a turn.
    reactor.callLater(0, function()
      local ok, e = pcall(reactor.run)
      caught = ok and "no error" or tostring(e)
    end)
    reactor.iterate(0)
    assert.matches("already running", caught)
  end)
end)

describe("reactor.startRunning", function()
  it("fires startup and, after stop(), shutdown under iterate", function()
    local events = {}
    local ids = {
      reactor.addSystemEventTrigger("after", "startup",
        function() events[#events + 1] = "started" end),
      reactor.addSystemEventTrigger("during", "shutdown",
        function() events[#events + 1] = "shutdown" end),
    }
    reactor.callWhenRunning(function() events[#events + 1] = "running" end)
    reactor.startRunning({ installSignalHandlers = false })
    assert.has_error(function() reactor.startRunning() end,
      "reactor is already running")
    assert.is_true(reactor.running)
    assert.same({ "started", "running" }, events)
    reactor.stop()
    assert.is_true(iterateUntil(function() return not reactor._started end,
      0.01))
    assert.is_false(reactor.running)
    assert.same({ "started", "running", "shutdown" }, events)
    -- The "after startup" trigger ran once and is gone; remove the other.
    pcall(reactor.removeSystemEventTrigger, ids[2])
  end)
end)

describe("require 'loom' in a plain lua5.4", function()
  -- build/loom.so, not a sanitizer build's: lua5.4 has no ASan.
  local function lua(code)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(code)
    f:close()
    local cmd = string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;;' "
      .. "LUA_CPATH='build/?.so;;' timeout 20 lua5.4 %s 2>&1", script)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok = p:close()
    os.remove(script)
    return out, ok
  end

  it("serves TCP from the script's own frame loop", function()
    local out, ok = lua([[
      local loom = require "loom"
      local reactor = loom.reactor
      local Echo = loom.protocol.Protocol:extend({})
      function Echo:dataReceived(data) self.transport:write(data:upper()) end
      local Client = loom.protocol.Protocol:extend({})
      local got = ""
      function Client:dataReceived(data) got = got .. data end
      function Client:connectionMade() self.transport:write("hello") end
      local port = reactor.listenTCP(0,
        loom.protocol.Factory.forProtocol(Echo), { interface = "127.0.0.1" })
      reactor.connectTCP("127.0.0.1", port:getHost().port,
        loom.protocol.ClientFactory.forProtocol(Client))
      local frames, deadline = 0, os.time() + 10
      while got ~= "HELLO" and os.time() < deadline do
        frames = frames + 1     -- the game's own work would go here
        reactor.iterate(0.005)
      end
      assert(got == "HELLO", "got " .. got)
      print("frames", frames > 0)
    ]])
    assert.is_true(ok, out)
    assert.matches("frames\ttrue", out)
  end)
end)
