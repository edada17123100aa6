-- Shared by the transport specs (tcp_spec, unix_spec): an echo protocol,
-- a client protocol recording everything with Deferreds for its events,
-- and waiting helpers bounded in time.
--   local net = dofile("spec/support/net.lua")
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"

local net = {}

net.Echo = protocol.Protocol:extend({ __name = "Echo" })
function net.Echo:dataReceived(data)
  self.transport:write(data)
end

-- Records what arrives; `made` fires with self, `lost` with self (a Failure
-- given to callback would take the errback path), reason in self.reason.
local Recorder = protocol.Protocol:extend({ __name = "Recorder" })
net.Recorder = Recorder
function Recorder:init()
  self.received = {}
  self.made = defer.Deferred()
  self.lost = defer.Deferred()
end
function Recorder:connectionMade()
  self.made:callback(self)
end
function Recorder:dataReceived(data)
  self.received[#self.received + 1] = data
  if self.onData then
    self:onData(data)
  end
  self:_check()
end
function Recorder:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end
function Recorder:text()
  return table.concat(self.received)
end
function Recorder:_check()
  local w = self.want
  if w and not w.d.called and w.test(self:text()) then
    self.want = nil
    w.d:callback(self:text())
  end
end
-- A Deferred firing with all the text once test(text) holds.
function Recorder:_wait(test)
  local d = defer.Deferred()
  self.want = { d = d, test = test }
  self:_check()
  return d
end
-- A Deferred firing with the text once n bytes have arrived.
function Recorder:expect(n)
  return self:_wait(function(s) return #s >= n end)
end
-- Spins the reactor until the text matches `pattern` (a plain substring
-- when plain is true); returns all the text.
function Recorder:waitFor(pattern, plain, timeout)
  return testing.runUntil(self:_wait(function(s)
    return s:find(pattern, 1, plain) ~= nil
  end), timeout or 5)
end

-- A server factory for P whose `next` Deferred fires with each protocol
-- it builds (take `next` before connecting).
function net.recordingFactory(P)
  local f = protocol.Factory.forProtocol(P)
  f.built = {}
  f.next = defer.Deferred()
  local build = f.buildProtocol
  function f:buildProtocol(addr)
    local p = build(self, addr)
    self.built[#self.built + 1] = p
    local d = self.next
    self.next = defer.Deferred()
    d:callback(p)
    return p
  end
  return f
end

-- A TCP port on loopback (127.0.0.1 unless iface), port 0.
function net.listen(factory, iface)
  return reactor.listenTCP(0, factory, { interface = iface or "127.0.0.1" })
end

-- Connects a new P (default Recorder) to port; returns the protocol, the
-- connector and the client factory.
function net.connect(port, P, host)
  local proto = (P or Recorder):new()
  local cf = protocol.ClientFactory:new()
  function cf:buildProtocol()
    return proto
  end
  local connector = reactor.connectTCP(host or "127.0.0.1",
    port:getHost().port, cf)
  return proto, connector, cf
end

-- Spins the reactor until cond() holds (polling), at most timeout s.
function net.waitFor(cond, timeout)
  local d = defer.Deferred()
  local function poll()
    if cond() then
      d:callback(true)
    else
      reactor.callLater(0.005, poll)
    end
  end
  poll()
  return testing.runUntil(d, timeout or 5)
end

-- Spins the reactor for secs.
function net.sleep(secs)
  local d = defer.Deferred()
  reactor.callLater(secs, function() d:callback() end)
  return testing.runUntil(d, secs + 5)
end

return net
