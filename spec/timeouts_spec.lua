-- Idle and slow peers of the line-based plugins (chat, finger): a peer
-- trickling bytes that never make a line is disconnected after --timeout,
-- one that talks is not. Real loopback, and chat on a task.Clock.
local err = require "loom.error"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local task = require "loom.task"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")
local sub = dofile("spec/support/subprocess.lua")
local chatPlugin = dofile("plugins/chat.lua")
local fingerPlugin = dofile("plugins/finger.lua")

local listen = net.listen

local connect = net.connect

-- Writes `what` every `every` seconds while connected.
local function trickle(c, what, every)
  local function tick()
    if c.transport and c.transport.connected then
      c.transport:write(what)
      reactor.callLater(every, tick)
    end
  end
  testing.runUntil(c.made, 5)
  tick()
end

describe("chat --timeout", function()
  it("disconnects members trickling bytes that never make a line, not one"
    .. " who talks", function()
      local room = chatPlugin.ChatFactory:new({ timeout = 0.5 })
      local port = listen(room)
      local talker = connect(port)
      testing.runUntil(talker.made, 5)
      talker.transport:write("tom\n")
      talker:waitFor("You are alone here", true)
      local start = reactor.seconds()
      trickle(talker, "hi\n", 0.1)
      local slow = {}
      for i = 1, 20 do
        slow[i] = connect(port)
        trickle(slow[i], "a", 0.1)
      end
      for i = 1, 20 do
        testing.runUntil(slow[i].lost, 5)
        assert.is_truthy(slow[i].reason:check(err.ConnectionDone))
        assert.matches("* disconnected: idle for too long", slow[i]:text(), 1,
          true)
      end
      assert.is_true(reactor.seconds() - start >= 0.45)
      net.sleep(0.3)
      assert.is_true(talker.transport.connected)
      assert.is_truthy(room.users.tom)
      talker.transport:loseConnection()
      testing.runUntil(talker.lost, 5)
      testing.runUntil(port:stopListening(), 5)
    end)

  it("counts silence from the last whole line (task.Clock)", function()
    local clock = task.Clock()
    local room = chatPlugin.ChatFactory:new({ timeout = 60 })
    local p = room:buildProtocol()
    p.callLater = clock.callLater
    local t = testing.StringTransport()
    p:makeConnection(t)
    p:dataReceived("ann\n")
    clock:advance(59)
    p:dataReceived("still here\n")
    clock:advance(59)
    p:dataReceived("no newline yet")
    assert.is_false(t.disconnecting)
    clock:advance(1)
    assert.is_true(t.disconnecting)
    assert.matches("* disconnected: idle for too long\r\n$", t:value())
    p:connectionLost(err.ConnectionDone())
    assert.equal(0, #clock:getDelayedCalls())
  end)

  it("0 turns it off", function()
    local clock = task.Clock()
    local room = chatPlugin.ChatFactory:new({ timeout = 0 })
    local p = room:buildProtocol()
    p.callLater = clock.callLater
    p:makeConnection(testing.StringTransport())
    assert.equal(0, #clock:getDelayedCalls())
  end)
end)

describe("finger --timeout", function()
  it("disconnects a client that trickles its query", function()
    local port = listen(fingerPlugin.FingerFactory:new({ alice = "hi" }, 0.4))
    local slow = connect(port)
    local start = reactor.seconds()
    trickle(slow, "a", 0.1)
    testing.runUntil(slow.lost, 5)
    assert.is_true(reactor.seconds() - start >= 0.35)
    assert.equal("", slow:text())
    local quick = connect(port)
    testing.runUntil(quick.made, 5)
    quick.transport:write("alice\r\n")
    testing.runUntil(quick.lost, 5)
    assert.equal("hi\r\n", quick:text())
    testing.runUntil(port:stopListening(), 5)
  end)
end)

describe("the limits' plugin options", function()
  local bad = {
    { "chat --timeout -1", "loom: chat: --timeout must be 0 or more seconds\n" },
    { "chat --max-queue -5",
      "loom: chat: --max-queue must be 0 or more bytes\n" },
    { "finger --timeout -1",
      "loom: finger: --timeout must be 0 or more seconds\n" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1] .. " in one line", function()
      local _, e, status = sub.loom(case[1]
        .. " --port tcp:0:interface=127.0.0.1")
      assert.equal(1, status)
      assert.equal(case[2], e)
    end)
  end

  it("are listed in --help with their defaults", function()
    local out = sub.loom("chat --help")
    assert.matches("--timeout N", out, 1, true)
    assert.matches("(default: 600)", out, 1, true)
    assert.matches("--max-queue N", out, 1, true)
    assert.matches("(default: 1048576)", out, 1, true)
    out = sub.loom("finger --help")
    assert.matches("(default: 30)", out, 1, true)
  end)
end)
