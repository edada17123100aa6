-- Errors in protocol hooks and what a factory may hand the reactor: every
-- error is logged with a short traceback and drops only its connection;
-- connectionLost always follows connectionMade; buildProtocol's result is
-- checked; a plain table of hooks is a protocol for TCP, Unix and UDP.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local failure = require "loom.failure"
local log = require "loom.log"
local testing = require "loom.testing"

local Protocol, Factory, ClientFactory =
  protocol.Protocol, protocol.Factory, protocol.ClientFactory
local runUntil = testing.runUntil

local net = dofile("spec/support/net.lua")
local Echo, Recorder = net.Echo, net.Recorder
local waitFor = net.waitFor
local listen, connect = net.listen, net.connect

-- Collects the error events logged while fn runs.
local function errorsLogged(fn)
  local events = {}
  local obs = log.addObserver(function(ev)
    if ev.level == "error" then
      events[#events + 1] = ev
    end
  end)
  local ok, e = pcall(fn)
  log.removeObserver(obs)
  if not ok then
    error(e, 0)
  end
  return events
end

local function find(events, text)
  for _, ev in ipairs(events) do
    if ev.text:find(text, 1, true) then
      return ev
    end
  end
  return nil
end

-- A server whose dataReceived recurses `depth` levels (nil: without end,
-- until Lua's stack overflows) before raising.
local Deep = Protocol:extend({ __name = "Deep" })
local function recurse(n, depth)
  if depth and n >= depth then
    error("bottom reached")
  end
  return 1 + recurse(n + 1, depth) -- not a tail call: the stack grows
end
function Deep:dataReceived(data)
  if data == "ping" then
    self.transport:write("pong")
  else
    recurse(0, tonumber(data))
  end
end

describe("a deep recursion in a hook", function()
  local function check(trigger, message)
    local port = listen(Factory.forProtocol(Deep))
    local victim, other = connect(port), connect(port)
    runUntil(victim.made)
    runUntil(other.made)
    local events = errorsLogged(function()
      victim.transport:write(trigger)
      runUntil(victim.lost, 5)
      -- The other connection is still served.
      other.transport:write("ping")
      other:waitFor("pong", true, 5)
    end)
    local ev = assert(find(events, message), "the error was not logged")
    assert.matches("Deep%.dataReceived", ev.text)
    -- Cut as luaL_traceback cuts: first and last levels, "..." between.
    assert.truthy(ev.text:find("\n\t...\t(skipping ", 1, true))
    assert.is_true(#ev.text < 4000, "traceback of " .. #ev.text .. " bytes")
    local _, lines = ev.text:gsub("\n", "")
    assert.is_true(lines < 40)
    other.transport:loseConnection()
    runUntil(other.lost)
    runUntil(port:stopListening())
  end

  it("40,000 levels deep is reported in a short traceback", function()
    check("40000", "bottom reached")
  end)

  it("without end (stack overflow) is reported, the reactor serves on",
    function()
      check("forever", "stack overflow")
    end)
end)

describe("a connectionMade that raises", function()
  it("still gets connectionLost with the Failure, for every connection",
    function()
      local registered, made, lost, reasons = {}, 0, 0, {}
      local Bad = Protocol:extend({ __name = "Bad" })
      function Bad:connectionMade()
        made = made + 1
        registered[self] = true
        error("refusing to greet")
      end
      function Bad:connectionLost(reason)
        lost = lost + 1
        registered[self] = nil
        reasons[#reasons + 1] = reason
      end
      local port = listen(Factory.forProtocol(Bad))
      local clients = {}
      errorsLogged(function()
        for i = 1, 10 do
          clients[i] = connect(port)
        end
        for i = 1, 10 do
          runUntil(clients[i].lost)
        end
        waitFor(function() return lost == 10 end)
      end)
      assert.equal(10, made)
      assert.equal(10, lost)
      assert.is_nil(next(registered))
      for _, r in ipairs(reasons) do
        assert.is_true(failure.isFailure(r))
        assert.matches("refusing to greet", r:getErrorMessage(), 1, true)
      end
      runUntil(port:stopListening())
    end)
end)

describe("any error value raised by a hook", function()
  local values = {
    { "nil", nil, failure.NIL_ERROR },
    { "false", false, "false" },
    { "a table without message", { code = 7 }, "table: " },
    { "a value whose __tostring raises",
      setmetatable({}, { __tostring = error }), "tostring cannot show" },
    { "a value whose __tostring returns no string",
      setmetatable({}, { __tostring = function() return {} end }),
      "tostring cannot show" },
  }
  for _, case in ipairs(values) do
    local name, value, text = case[1], case[2], case[3]
    it("is logged through the log: " .. name, function()
      local Raiser = Protocol:extend({ __name = "Raiser" })
      function Raiser:dataReceived()
        error(value)
      end
      local lostReason
      function Raiser:connectionLost(reason)
        lostReason = reason
        error(value) -- and once more, where safeCall reports it
      end
      local port = listen(Factory.forProtocol(Raiser))
      local c = connect(port)
      runUntil(c.made)
      local events = errorsLogged(function()
        c.transport:write("x")
        runUntil(c.lost)
        waitFor(function() return lostReason ~= nil end)
        net.sleep(0.02)
      end)
      local ev = assert(find(events, "error in Raiser.dataReceived"))
      assert.truthy(ev.text:find(text, 1, true))
      assert.truthy(ev.text:find("stack traceback", 1, true))
      assert.truthy(find(events, "error in connectionLost"))
      assert.is_true(failure.isFailure(lostReason))
      runUntil(port:stopListening())
    end)
  end
end)

describe("buildProtocol", function()
  it("returning a non-protocol is a logged error naming it; the port serves on",
    function()
      local f = Factory.forProtocol(Echo)
      local calls = 0
      function f:buildProtocol(addr)
        calls = calls + 1
        if calls == 1 then
          return 42
        end
        return Factory.buildProtocol(self, addr)
      end
      local port = listen(f)
      local events = errorsLogged(function()
        local bad = connect(port)
        runUntil(bad.lost)
      end)
      local ev = assert(find(events, "buildProtocol returned 42 (a number)"))
      assert.truthy(ev.text:find("Factory.buildProtocol", 1, true))
      assert.falsy(ev.text:find("attempt to index", 1, true))
      local good = connect(port)
      runUntil(good.made)
      good.transport:write("still serving")
      good:waitFor("still serving", true)
      good.transport:loseConnection()
      runUntil(good.lost)
      runUntil(port:stopListening())
    end)

  it("returning nil refuses the connection quietly", function()
    local f = Factory:new()
    function f:buildProtocol() return nil end
    local port = listen(f)
    local events = errorsLogged(function()
      runUntil(connect(port).lost)
    end)
    assert.equal(0, #events)
    runUntil(port:stopListening())
  end)
end)

-- A plain table of hooks as a stream protocol: echoes, records its events.
local function plainEcho(seen)
  return {
    connectionMade = function(self)
      seen.transport = self.transport
    end,
    dataReceived = function(self, data)
      self.transport:write(data)
    end,
    connectionLost = function(_, reason)
      seen.reason = reason
    end,
  }
end

describe("a plain table of hooks as the protocol", function()
  it("serves TCP: self.transport is set, missing hooks are no-ops",
    function()
      local seen = {}
      local f = Factory:new()
      function f:buildProtocol() return plainEcho(seen) end
      local port = listen(f)
      local c = connect(port)
      runUntil(c.made)
      c.transport:write("plain")
      c:waitFor("plain", true)
      assert.is_truthy(seen.transport)
      c.transport:loseConnection()
      runUntil(c.lost)
      waitFor(function() return seen.reason ~= nil end)
      assert.is_true(seen.reason:check("ConnectionDone") ~= nil)
      runUntil(port:stopListening())
    end)

  it("serves TCP with only dataReceived", function()
    local f = Factory:new()
    function f:buildProtocol()
      return { dataReceived = function(self, d) self.transport:write(d) end }
    end
    local port = listen(f)
    local c = connect(port)
    runUntil(c.made)
    c.transport:write("bare")
    c:waitFor("bare", true)
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("works as a TCP client protocol", function()
    local port = listen(Factory.forProtocol(Echo))
    local got = defer.Deferred()
    local cf = ClientFactory:new()
    function cf:buildProtocol()
      return {
        connectionMade = function(self) self.transport:write("hi") end,
        dataReceived = function(self, d)
          got:callback(d)
          self.transport:loseConnection()
        end,
      }
    end
    reactor.connectTCP("127.0.0.1", port:getHost().port, cf)
    assert.equal("hi", runUntil(got))
    runUntil(port:stopListening())
  end)

  it("serves a Unix socket", function()
    local h = assert(io.popen("mktemp -d"))
    local dir = h:read("l")
    h:close()
    local path = dir .. "/plain.sock"
    local seen = {}
    local f = Factory:new()
    function f:buildProtocol() return plainEcho(seen) end
    local port = reactor.listenUNIX(path, f)
    local c = Recorder:new()
    local cf = ClientFactory:new()
    function cf:buildProtocol() return c end
    reactor.connectUNIX(path, cf)
    runUntil(c.made)
    c.transport:write("unix")
    c:waitFor("unix", true)
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
    os.remove(dir)
  end)

  it("serves UDP: datagramReceived, startProtocol, stopProtocol", function()
    local calls = {}
    local server = reactor.listenUDP(0, {
      startProtocol = function() calls[#calls + 1] = "start" end,
      stopProtocol = function() calls[#calls + 1] = "stop" end,
      datagramReceived = function(self, data, addr)
        self.transport:write(data, addr)
      end,
    }, { interface = "127.0.0.1" })
    local got = defer.Deferred()
    local client = reactor.listenUDP(0, {
      datagramReceived = function(_, data) got:callback(data) end,
    }, { interface = "127.0.0.1" })
    client:write("dgram", { host = "127.0.0.1",
      port = server:getHost().port })
    assert.equal("dgram", runUntil(got))
    runUntil(client:stopListening())
    runUntil(server:stopListening())
    assert.same({ "start", "stop" }, calls)
  end)
end)

describe("log.err", function()
  it("logs a value whose __tostring raises, instead of raising", function()
    local events = errorsLogged(function()
      log.err(setmetatable({}, { __tostring = error }), "while testing")
    end)
    assert.equal(1, #events)
    assert.equal("while testing\n(a table value that tostring cannot show)",
      events[1].text)
  end)
end)

describe("core.traceback (what loom.failure uses)", function()
  local core = require "loom.core"

  it("reads as debug.traceback outside the reactor", function()
    local function here()
      local a, b = core.traceback("m", 1), debug.traceback("m", 1)
      return a, b
    end
    local a, b = here()
    -- The message and the first levels alike (lauxlib also names global
    -- functions its own way, and its skip count is one short).
    local head = "^(m\nstack traceback:\n[^\n]*\n[^\n]*\n)"
    assert.equal(b:match(head), a:match(head))
    assert.truthy(a:match(head))
    local t = {}
    assert.equal(t, core.traceback(t))
  end)

  it("gives a Failure made at the bottom of a deep recursion a short traceback",
    function()
      local function dive(n)
        if n == 0 then
          return failure.Failure("deep down")
        end
        local f = dive(n - 1)
        return f
      end
      local f = dive(30000)
      assert.truthy(f.traceback:find("\n\t...\t(skipping", 1, true))
      assert.is_true(#f.traceback < 2000)
    end)
end)
