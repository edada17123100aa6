-- loom.protocol: Protocol and Factory, with no sockets.
local protocol = require "loom.protocol"
local testing = require "loom.testing"

local Protocol, Factory = protocol.Protocol, protocol.Factory

describe("Protocol classes", function()
  it("extend with fields, and new runs init with the arguments", function()
    local Greeter = Protocol:extend({ __name = "Greeter", greeting = "hi" })
    function Greeter:init(name, punct)
      self.name, self.punct = name, punct
    end
    local g = Greeter:new("ann", "!")
    assert.equal("ann", g.name)
    assert.equal("!", g.punct)
    assert.equal("hi", g.greeting)
    assert.equal(Greeter, getmetatable(g))
  end)

  it("can be called: Cls(...) is Cls:new(...)", function()
    local P = Protocol:extend({ __name = "P" })
    function P:init(a, b) self.sum = a + b end
    local p = P(2, 3)
    assert.equal(5, p.sum)
    assert.equal(P, getmetatable(p))
  end)

  it("inherit methods through several levels", function()
    local A = Protocol:extend({ __name = "A" })
    function A:hello() return "A" end
    local B = A:extend({ __name = "B" })
    local b = B()
    assert.equal("A", b:hello())
    assert.is_function(b.makeConnection)
  end)

  it("start disconnected with no transport", function()
    local p = Protocol()
    assert.is_false(p.connected)
    assert.is_nil(p.transport)
  end)
end)

describe("Protocol:makeConnection", function()
  it("sets transport and connected, then calls connectionMade", function()
    local P = Protocol:extend({ __name = "P" })
    local seen
    function P:connectionMade()
      seen = { transport = self.transport, connected = self.connected }
    end
    local t = testing.StringTransport()
    local p = P()
    p:makeConnection(t)
    assert.equal(t, p.transport)
    assert.is_true(p.connected)
    assert.same({ transport = t, connected = true }, seen)
  end)

  it("has no-op default hooks", function()
    local p = Protocol()
    p:makeConnection(testing.StringTransport())
    p:dataReceived("x")
    p:connectionLost(nil)
  end)

  it("gives a log prefix of the class name and the peer", function()
    local P = Protocol:extend({ __name = "Echo" })
    local p = P()
    assert.equal("Echo", p:logPrefix())
    p:makeConnection(testing.StringTransport({
      peerAddress = { type = "TCP", host = "127.0.0.1", port = 5000 } }))
    assert.equal("Echo,127.0.0.1:5000", p:logPrefix())
  end)
end)

describe("Factory.forProtocol", function()
  local P = Protocol:extend({ __name = "P" })

  it("called with a dot makes a Factory whose protocol is P", function()
    local f = Factory.forProtocol(P)
    assert.equal(Factory, getmetatable(f))
    assert.equal(P, f.protocol)
  end)

  it("called on a subclass makes that subclass, args going to init",
    function()
      local MyFactory = Factory:extend({ __name = "MyFactory" })
      function MyFactory:init(greeting, n)
        self.greeting, self.n = greeting, n
      end
      local f = MyFactory:forProtocol(P, "hello", 3)
      assert.equal(MyFactory, getmetatable(f))
      assert.equal(P, f.protocol)
      assert.equal("hello", f.greeting)
      assert.equal(3, f.n)
    end)

  it("works for ClientFactory too", function()
    local f = protocol.ClientFactory:forProtocol(P)
    assert.equal(protocol.ClientFactory, getmetatable(f))
    assert.is_function(f.clientConnectionFailed)
  end)

  -- Twisted users write the dot form on every class
  -- (ClientFactory.forProtocol(P)); it must make that class, not a Factory.
  it("called with a dot on a subclass makes that subclass", function()
    local RCF = protocol.ReconnectingClientFactory
    for _, cls in ipairs({ protocol.ClientFactory, RCF,
      protocol.ServerFactory }) do
      local f = cls.forProtocol(P)
      assert.equal(cls, getmetatable(f))
      assert.equal(P, f.protocol)
    end
    assert.is_function(RCF.forProtocol(P).retry)
  end)

  it("dot and colon forms agree on user subclasses made with :extend",
    function()
      local Mine = protocol.ReconnectingClientFactory:extend({
        __name = "Mine" })
      function Mine:init(n)
        self.n = n
      end
      local Deeper = Mine:extend({ __name = "Deeper" })
      for _, f in ipairs({ Mine.forProtocol(P, 7), Mine:forProtocol(P, 7) })
      do
        assert.equal(Mine, getmetatable(f))
        assert.equal(P, f.protocol)
        assert.equal(7, f.n)
      end
      assert.equal(Deeper, getmetatable(Deeper.forProtocol(P, 1)))
      assert.equal(Deeper, getmetatable(Deeper:forProtocol(P, 1)))
      -- Called on an instance, as Python allows for a classmethod.
      local inst = Mine:new(1)
      assert.equal(Mine, getmetatable(inst:forProtocol(P, 2)))
    end)

  it("a plain table of hooks is a protocol, not a factory", function()
    local hooks = { dataReceived = function() end }
    local f = protocol.ClientFactory.forProtocol(hooks)
    assert.equal(protocol.ClientFactory, getmetatable(f))
    assert.equal(hooks, f.protocol)
  end)

  it("without a protocol fails loudly", function()
    assert.has_error(function() protocol.ClientFactory.forProtocol() end,
      "forProtocol: a protocol class is required")
  end)
end)

describe("Factory:buildProtocol", function()
  it("builds a fresh instance of protocol with .factory set", function()
    local P = Protocol:extend({ __name = "P" })
    local f = Factory.forProtocol(P)
    local a = f:buildProtocol({ type = "TCP", host = "127.0.0.1", port = 1 })
    local b = f:buildProtocol({ type = "TCP", host = "127.0.0.1", port = 2 })
    assert.equal(P, getmetatable(a))
    assert.equal(f, a.factory)
    assert.are_not.equal(a, b)
  end)

  it("builds from a plain table of hooks, missing hooks being no-ops",
    function()
      local hooks = {
        dataReceived = function(self, data) self.got = data end,
      }
      local f = Factory()
      f.protocol = hooks
      local p = f:buildProtocol({ type = "TCP", host = "127.0.0.1", port = 1 })
      assert.equal(f, p.factory)
      assert.are_not.equal(hooks, p)
      p:dataReceived("abc")
      assert.equal("abc", p.got)
      assert.is_nil(hooks.got)
      assert.is_nil(p.connectionMade)
    end)

  it("raises a clear error when there is no protocol", function()
    local ok, e = pcall(Factory().buildProtocol, Factory())
    assert.is_false(ok)
    assert.matches("no protocol", e)
  end)
end)

describe("Factory doStart/doStop", function()
  local Counting = Factory:extend({ __name = "Counting" })
  function Counting:init()
    self.starts, self.stops = 0, 0
  end
  function Counting:startFactory() self.starts = self.starts + 1 end
  function Counting:stopFactory() self.stops = self.stops + 1 end

  it("call startFactory once for the first port, stopFactory after the last",
    function()
      local f = Counting()
      f:doStart()
      f:doStart()
      assert.equal(1, f.starts)
      f:doStop()
      assert.equal(0, f.stops)
      f:doStop()
      assert.equal(1, f.stops)
    end)

  it("ignore a doStop with no matching doStart", function()
    local f = Counting()
    f:doStop()
    assert.equal(0, f.stops)
    f:doStart()
    f:doStop()
    assert.same({ 1, 1 }, { f.starts, f.stops })
  end)

  it("count per factory instance, not per class", function()
    local a, b = Counting(), Counting()
    a:doStart()
    b:doStart()
    assert.same({ 1, 1 }, { a.starts, b.starts })
    assert.equal(0, Counting.numPorts)
  end)
end)
