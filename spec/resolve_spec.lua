-- reactor.resolve and host names in connectTCP. Only `localhost` and names
-- under .invalid are looked up: no real DNS query is ever made.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local function has(list, v)
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

describe("reactor.resolve", function()
  it("resolves localhost to 127.0.0.1", function()
    assert.equal("127.0.0.1", runUntil(reactor.resolve("localhost")))
  end)

  it("resolveAll lists every address of a name", function()
    local addrs = runUntil(reactor.resolveAll("localhost"))
    assert.is_true(has(addrs, "127.0.0.1"))
  end)

  it("returns IP literals as they are", function()
    assert.equal("::1", runUntil(reactor.resolve("::1")))
    assert.equal("10.1.2.3", runUntil(reactor.resolve("10.1.2.3")))
  end)

  it("fails with DNSLookupError for an unknown name", function()
    local ok, f = pcall(runUntil, reactor.resolve("no-such-host.invalid"))
    assert.is_false(ok)
    assert.is_truthy(f:check(err.DNSLookupError))
    assert.matches("no%-such%-host%.invalid", f:getErrorMessage())
  end)

  it("rejects a name that is not a string", function()
    assert.has_error(function() reactor.resolve(nil) end)
    assert.has_error(function() reactor.resolve("") end)
  end)
end)

describe("connectTCP with a host name", function()
  local Hello = protocol.Protocol:extend({})
  function Hello:connectionMade()
    self.transport:write("hi")
    self.transport:loseConnection()
  end

  local function client()
    local cf = protocol.ClientFactory:new()
    cf.result = defer.Deferred()
    local P = protocol.Protocol:extend({})
    function P:dataReceived(data)
      cf.result:callback({ data = data, peer = self.transport:getPeer() })
    end
    cf.protocol = P
    function cf:clientConnectionFailed(_, reason)
      self.result:callback({ reason = reason })
    end
    return cf
  end

  for _, iface in ipairs({ "127.0.0.1", "::1" }) do
    it("connects to localhost when the server listens on " .. iface
      .. " only, trying each address", function()
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Hello),
        { interface = iface })
      local cf = client()
      reactor.connectTCP("localhost", port:getHost().port, cf)
      local r = runUntil(cf.result)
      if r.reason and iface == "::1" and
          not has(runUntil(reactor.resolveAll("localhost")), "::1") then
        -- This host's localhost has no IPv6 address: refused is right.
        assert.is_truthy(r.reason:check(err.ConnectionRefusedError))
      else
        assert.is_nil(r.reason)
        assert.equal("hi", r.data)
        assert.equal(iface, r.peer.host)
      end
      runUntil(port:stopListening())
    end)
  end

  it("reports DNSLookupError for an unknown name", function()
    local cf = client()
    reactor.connectTCP("nowhere.invalid", 80, cf)
    local r = runUntil(cf.result)
    assert.is_truthy(r.reason:check(err.DNSLookupError))
  end)

  it("reports the last refusal when no address accepts", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Hello),
      { interface = "127.0.0.1" })
    local n = port:getHost().port
    runUntil(port:stopListening())
    local cf = client()
    reactor.connectTCP("localhost", n, cf)
    local r = runUntil(cf.result)
    assert.is_truthy(r.reason:check(err.ConnectionRefusedError))
  end)

  it("stopConnecting while resolving reports a failed attempt", function()
    local cf = client()
    local c = reactor.connectTCP("localhost", 9, cf)
    c:stopConnecting()
    local r = runUntil(cf.result)
    assert.is_not_nil(r.reason)
    assert.equal("disconnected", c.state)
  end)
end)
