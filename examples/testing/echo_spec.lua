-- Testing a protocol the loom way: run with  build/loom test examples/testing
-- StringTransport stands in for the network (Twisted's proto_helpers), and
-- the reactor is real where a spec needs one (testing.runUntil).
local protocol = require "loom.protocol"
local testing = require "loom.testing"
local reactor = require "loom.reactor"
local defer = require "loom.defer"

local policies = require "loom.policies"

local Echo = protocol.Protocol:extend({ __name = "Echo" })
function Echo:connectionMade()
  policies.applyBackpressure(self) -- stop reading while echoes pile up
end
function Echo:dataReceived(data)
  self.transport:write(data)
end

describe("Echo", function()
  it("writes back what it receives", function()
    local transport = testing.StringTransport()
    local p = Echo()
    p:makeConnection(transport)
    p:dataReceived("hello")
    assert.equal("hello", transport:value())
  end)

  it("echoes over a real loopback connection", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local got = defer.Deferred()
    local Client = protocol.Protocol:extend()
    function Client:connectionMade() self.transport:write("ping") end
    function Client:dataReceived(d)
      self.transport:loseConnection()
      got:callback(d)
    end
    reactor.connectTCP("127.0.0.1", port:getHost().port,
      protocol.ClientFactory.forProtocol(Client))
    assert.equal("ping", testing.runUntil(got, 5))
    testing.runUntil(port:stopListening(), 5)
  end)
end)
