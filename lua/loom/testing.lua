-- loom.testing: helpers for testing protocols without sockets, as in
-- twisted.internet.testing (proto_helpers) and a light twisted.test.iosim.
--
--   local t = testing.StringTransport()
--   proto:makeConnection(t)
--   proto:dataReceived("hello\r\n")
--   assert.equals("hello\r\n", t:value())
--
-- testing.Clock is task.Clock; testing.runUntil(d, timeout) spins the real
-- reactor until a Deferred fires. Both load their modules on first use, so
-- this module works wherever loom.task or loom.reactor are not needed.

local address = require "loom.address"
local class = require "loom.class"

local M = {}

local concat = table.concat

-- StringTransport ----------------------------------------------------------

local StringTransport = class.Object:extend({
  __name = "StringTransport",
  disconnecting = false,
  disconnected = false,
  connected = true,
  producer = nil,
  streaming = nil,
  producerState = "producing",
  writeDisconnected = false,
  tcpNoDelay = false,
  tcpKeepAlive = false,
})
M.StringTransport = StringTransport

local DEFAULT_PEER = { type = "TCP", host = "192.168.1.1", port = 54321 }
local DEFAULT_HOST = { type = "TCP", host = "10.0.0.1", port = 12345 }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

-- opts: hostAddress=, peerAddress= (address tables), lenient= (allow
-- resuming after loseConnection, as Twisted's _lenient).
function StringTransport:init(opts)
  opts = opts or {}
  self.hostAddr = opts.hostAddress
  self.peerAddr = opts.peerAddress
  self.lenient = opts.lenient or false
  -- An instance field: protocols read it once per line.
  self.disconnecting = false
  self:clear()
end

-- Forget everything written so far (a test helper, not a transport method).
function StringTransport:clear()
  self._io, self._n = {}, 0
end

-- Everything written since the last clear().
function StringTransport:value()
  local io = self._io
  if self._n > 1 then
    local s = concat(io, "", 1, self._n)
    self._io, self._n = { s }, 1
    return s
  end
  return io[1] or ""
end

local function checkData(method, data, index)
  if type(data) ~= "string" then
    local where = index and (" (item " .. index .. ")") or ""
    error(string.format("StringTransport.%s: data must be a string%s, got %s",
      method, where, type(data)), 3)
  end
end

function StringTransport:write(data)
  checkData("write", data)
  local n = self._n + 1
  self._io[n], self._n = data, n
end

function StringTransport:writeSequence(list)
  if type(list) ~= "table" then
    error("StringTransport.writeSequence: expected a list of strings, got "
      .. type(list), 2)
  end
  for i = 1, #list do
    checkData("writeSequence", list[i], i)
  end
  for i = 1, #list do
    self:write(list[i])
  end
end

-- Only marks the transport as disconnecting.
function StringTransport:loseConnection()
  self.disconnecting = true
end

-- As loseConnection, and also sets `disconnected`.
function StringTransport:abortConnection()
  self.disconnected = true
  self:loseConnection()
end

-- Half-close: records that the write side was shut.
function StringTransport:loseWriteConnection()
  self.writeDisconnected = true
end

function StringTransport:getPeer()
  return self.peerAddr or address.new(copy(DEFAULT_PEER))
end

function StringTransport:getHost()
  return self.hostAddr or address.new(copy(DEFAULT_HOST))
end

function StringTransport:setTcpNoDelay(enabled)
  self.tcpNoDelay = enabled and true or false
end

function StringTransport:getTcpNoDelay()
  return self.tcpNoDelay
end

function StringTransport:setTcpKeepAlive(enabled)
  self.tcpKeepAlive = enabled and true or false
end

function StringTransport:getTcpKeepAlive()
  return self.tcpKeepAlive
end

-- Consumer side: one producer at a time, as in Twisted.
function StringTransport:registerProducer(producer, streaming)
  if self.producer ~= nil then
    error("StringTransport.registerProducer: cannot register two producers",
      2)
  end
  self.producer, self.streaming = producer, streaming and true or false
end

function StringTransport:unregisterProducer()
  if self.producer == nil then
    error("StringTransport.unregisterProducer: no producer is registered", 2)
  end
  self.producer, self.streaming = nil, nil
end

-- Producer side (the reading half of a real transport).
local function checkState(self, method)
  if self.disconnecting and not self.lenient then
    error("StringTransport." .. method
      .. ": cannot resume producing after loseConnection", 3)
  end
  if self.producerState == "stopped" then
    error("StringTransport." .. method .. ": cannot resume a stopped producer",
      3)
  end
end

function StringTransport:pauseProducing()
  checkState(self, "pauseProducing")
  self.producerState = "paused"
end

function StringTransport:resumeProducing()
  checkState(self, "resumeProducing")
  self.producerState = "producing"
end

function StringTransport:stopProducing()
  self.producerState = "stopped"
end

-- StringTransportWithDisconnection: loseConnection tells `protocol`.
local StringTransportWithDisconnection = StringTransport:extend({
  __name = "StringTransportWithDisconnection",
})
M.StringTransportWithDisconnection = StringTransportWithDisconnection

local function connectionDone()
  local errors = require "loom.error"
  local failure = require "loom.failure"
  return failure.Failure(errors.ConnectionDone("Connection was closed cleanly."))
end

function StringTransportWithDisconnection:loseConnection()
  self.disconnecting = true
  if self.connected then
    self.connected = false
    local p = self.protocol
    if p and p.connectionLost then
      p:connectionLost(connectionDone())
    end
  end
end

-- connectedPair -------------------------------------------------------------
--
-- Two StringTransports wired together: pump() delivers what each side wrote
-- to the other side's dataReceived (not while that side's transport is
-- paused), and a side that called loseConnection() or abortConnection() gets
-- both protocols' connectionLost once its output is delivered.

local Pair = class.Object:extend({ __name = "ConnectedPair" })
M.ConnectedPair = Pair

function Pair:init(server, client, opts)
  opts = opts or {}
  local serverAddr = opts.serverAddress
    or address.TCP("127.0.0.1", 8000)
  local clientAddr = opts.clientAddress
    or address.TCP("127.0.0.1", 54321)
  self.server, self.client = server, client
  self.serverTransport = StringTransport({ hostAddress = serverAddr,
    peerAddress = clientAddr })
  self.clientTransport = StringTransport({ hostAddress = clientAddr,
    peerAddress = serverAddr })
  self.closed = false
  server:makeConnection(self.serverTransport)
  client:makeConnection(self.clientTransport)
end

-- Move one side's pending output to the other; true when bytes moved.
local function flow(from, to, proto)
  if to.producerState ~= "producing" then
    return false
  end
  local data = from:value()
  if data == "" then
    return false
  end
  from:clear()
  proto:dataReceived(data)
  return true
end

local function closeBoth(self)
  self.closed = true
  self.serverTransport.connected = false
  self.clientTransport.connected = false
  local st, ct = self.serverTransport, self.clientTransport
  local reason = connectionDone
  if st.disconnected or ct.disconnected then
    reason = function()
      local errors = require "loom.error"
      local failure = require "loom.failure"
      return failure.Failure(errors.ConnectionLost("Connection was aborted."))
    end
  end
  self.server:connectionLost(reason())
  self.client:connectionLost(reason())
end

-- Deliver data both ways until nothing moves; returns true if any did.
function Pair:pump()
  if self.closed then
    return false
  end
  local st, ct = self.serverTransport, self.clientTransport
  local moved = false
  for _ = 1, 10000 do
    local a = flow(st, ct, self.client)
    local b = flow(ct, st, self.server)
    if not (a or b) then
      break
    end
    moved = true
  end
  if st.disconnecting or ct.disconnecting then
    closeBoth(self)
  end
  return moved
end

-- testing.connectedPair(serverProto, clientProto, opts?) → pair with
-- pair:pump(), pair.serverTransport, pair.clientTransport.
function M.connectedPair(server, client, opts)
  return Pair(server, client, opts)
end

-- runUntil -------------------------------------------------------------------

-- Replaceable for specs that drive runUntil with a fake reactor.
function M._getReactor()
  return require "loom.reactor"
end

-- Spin the reactor until d fires; return its result or raise its Failure.
-- The result is consumed: d's chain continues with nil afterwards.
function M.runUntil(d, timeout)
  timeout = timeout or 5
  local fired, ok, result = false, nil, nil
  local reactor, stopped = nil, true
  local function stop()
    if not stopped then
      stopped = true
      -- crash, not stop: no shutdown, so connections live on to the next
      -- runUntil of the same spec.
      ;(reactor.crash or reactor.stop)()
    end
  end
  local function settle(success, value)
    fired, ok, result = true, success, value
    if reactor and reactor.running then
      stop()
    end
    return nil
  end
  d:addCallbacks(function(v) return settle(true, v) end,
    function(f) return settle(false, f) end)
  if not fired then
    reactor = M._getReactor()
    if reactor.running then
      error("runUntil: the reactor is already running", 2)
    end
    stopped = false
    -- The timeout, and a first-tick check for a d fired during start-up.
    local timer = reactor.callLater(timeout, stop)
    local check = reactor.callLater(0, function()
      if fired then
        stop()
      end
    end)
    local runOk, runErr = pcall(reactor.run)
    stopped = true
    for _, dc in ipairs({ timer, check }) do
      if dc:active() then
        dc:cancel()
      end
    end
    if not runOk then
      error(runErr, 0)
    end
    if not fired then
      local errors = require "loom.error"
      error(errors.TimeoutError(string.format(
        "runUntil: Deferred did not fire within %g seconds", timeout)), 0)
    end
  end
  if not ok then
    error(result, 0)
  end
  return result
end

-- testing.Clock is loom.task.Clock, loaded on first use.
return setmetatable(M, {
  __index = function(_, key)
    if key == "Clock" then
      return require("loom.task").Clock
    end
    return nil
  end,
})
