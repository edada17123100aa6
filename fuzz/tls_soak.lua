-- Hostile bytes inside TLS, for `make soak` (under the ASan and UBSan
-- build): for SECONDS, 50 connectSSL clients at a time talk to a
-- listenSSL echo through a proxy that, on most connections, flips, drops,
-- doubles and inserts bytes in either direction, splits them, stalls a
-- direction, or cuts the connection, at any point of the handshake or
-- after it; and raw TCP clients send the server noise and mutated copies of
-- a real ClientHello.
--   loom run fuzz/tls_soak.lua [SECONDS [SEED]]   (default 30 s, seed 1)
-- Passes (exit 0) when nothing was logged as an error, every client
-- attempt settled once (clientConnectionFailed, or connectionLost after
-- connectionMade), and a clean TLS echo works at the end; the sanitizers
-- abort on any invalid access. Certificates are made in a temporary
-- directory by spec/support/mkcerts.sh (openssl).
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"

local SECONDS = tonumber(arg[1]) or 30
local CONCURRENCY = 50
local S = dofile("fuzz/soak.lua").new(tonumber(arg[2]) or 1)
local R, bytes, mutate = S.R, S.bytes, S.mutate

-- Certificates ----------------------------------------------------------------

local dir = assert(io.popen("mktemp -d")):read("l")
assert(os.execute("sh spec/support/mkcerts.sh " .. dir),
  "tls_soak: spec/support/mkcerts.sh failed (is openssl installed?)")
local SERVER_TLS = { certificate = dir .. "/server.pem",
  privateKey = dir .. "/server.key", handshakeTimeout = 2 }
local CLIENT_TLS = { caCerts = dir .. "/ca.pem", hostname = "localhost" }

-- Errors logged: any is loom's (each failed handshake is a warning) ------

local unexpected = S.watchErrors(nil, "error")

-- The TLS echo ------------------------------------------------------------------

local Echo = protocol.Protocol:extend({ __name = "SoakTLSEcho" })
function Echo:dataReceived(data)
  self.transport:write(data)
end
local tlsPort = reactor.listenSSL(0, protocol.Factory.forProtocol(Echo),
  SERVER_TLS, { interface = "127.0.0.1" }):getHost().port

-- The proxy -------------------------------------------------------------------

-- A proxied connection is two Pipes, each the other's `other`: what one
-- reads, the other writes (send), mutated, split, stalled or cut when the
-- connection is a hostile one (two in three).
local Pipe = protocol.Protocol:extend({ __name = "SoakProxyPipe" })

-- The back (towards the server) once connected: what the front read
-- meanwhile goes out.
function Pipe:connectionMade()
  for _, data in ipairs(self.pending) do
    self:send(data)
  end
  self.pending = nil
  if self.other.gone then
    self.transport:abortConnection()
  end
end

function Pipe:dataReceived(data)
  local other = self.other
  if other.pending then -- the back is still connecting
    other.pending[#other.pending + 1] = data
  else
    other:send(data)
  end
end

function Pipe:send(data)
  local t = self.transport
  if self.stalled or not t.connected then
    return
  end
  if self.hostile then
    if R(4) == 1 then
      data = mutate(data)
    end
    if R(40) == 1 then
      self.stalled = true -- this direction says nothing more
      return
    end
    if R(60) == 1 then
      t:write(data:sub(1, R(#data + 1) - 1))
      return t:abortConnection()
    end
  end
  while #data > 0 do
    local n = self.hostile and R(#data) or #data
    t:write(data:sub(1, n))
    data = data:sub(n + 1)
  end
end

function Pipe:connectionLost()
  self.gone = true
  local t = self.other.transport
  if t and t.connected then
    if R(2) == 1 then
      t:loseConnection()
    else
      t:abortConnection()
    end
  end
end

-- The front (accepted from a client): connects its back to the server.
local Front = Pipe:extend({ __name = "SoakProxyFront" })
function Front:connectionMade()
  local hostile = R(3) > 1
  local back = Pipe()
  back.hostile, back.other, back.pending = hostile, self, {}
  self.hostile, self.other = hostile, back
  local front = self
  local f = protocol.ClientFactory()
  f.buildProtocol = function() return back end
  function f.clientConnectionFailed()
    front.transport:abortConnection()
  end
  reactor.connectTCP("127.0.0.1", tlsPort, f, { timeout = 2 })
end

local proxyPort = reactor.listenTCP(0, protocol.Factory.forProtocol(Front),
  { interface = "127.0.0.1" }):getHost().port

-- Clients -----------------------------------------------------------------------

local stats = { tls = 0, made = 0, failed = 0, raw = 0 }
local inflight, deadline = 0, reactor.seconds() + SECONDS
local outstanding = {}
local spawn
local CLIENT_HELLO -- a real one, captured below

local function ended()
  inflight = inflight - 1
  spawn()
end

-- A TLS client: writes, reads its echo, closes (or not: the proxy's cuts
-- and the server's timeouts end it).
local Talker = protocol.Protocol:extend({ __name = "SoakTLSTalker" })
function Talker:connectionMade()
  stats.made = stats.made + 1
  self.want = bytes(R(2000))
  self.got = ""
  self.transport:write(self.want)
  local t = self.transport
  reactor.callLater(0.2 + 0.01 * R(30), function()
    if t.connected then
      t:loseConnection()
    end
  end)
end
function Talker:dataReceived(data)
  self.got = self.got .. data
  if #self.got >= #self.want and R(2) == 1 then
    self.transport:loseConnection()
  end
end

local function tlsClient(id)
  local once = false
  local function settle(how)
    if once then
      log.error("soak: TLS client %d settled twice (%s)", id, how)
      return
    end
    once = true
    outstanding[id] = nil
    ended()
  end
  local f = protocol.ClientFactory()
  function f.buildProtocol()
    local p = Talker()
    function p.connectionLost()
      settle("lost")
    end
    return p
  end
  function f.clientConnectionFailed()
    stats.failed = stats.failed + 1
    settle("failed")
  end
  reactor.connectSSL("127.0.0.1", proxyPort, f, CLIENT_TLS, { timeout = 2 })
end

-- A raw client: noise, or a mutated ClientHello, straight to the server.
local Raw = protocol.Protocol:extend({ __name = "SoakTLSRaw" })
function Raw:connectionMade()
  local t = self.transport
  local text = (CLIENT_HELLO and R(3) > 1) and mutate(CLIENT_HELLO)
    or bytes(R(600))
  t:write(text)
  reactor.callLater(0.05 + 0.01 * R(10), function()
    if t.connected then
      t:loseConnection()
    end
  end)
end
local rawFactory = protocol.ClientFactory.forProtocol(Raw)
function rawFactory.clientConnectionLost()
  ended()
end
function rawFactory.clientConnectionFailed(_, _, reason)
  log.error("soak: a raw connection failed: %s", tostring(reason))
  ended()
end

function spawn()
  while inflight < CONCURRENCY and reactor.seconds() < deadline do
    inflight = inflight + 1
    if R(4) == 1 then
      stats.raw = stats.raw + 1
      reactor.connectTCP("127.0.0.1", tlsPort, rawFactory, { timeout = 2 })
    else
      stats.tls = stats.tls + 1
      outstanding[stats.tls] = true
      tlsClient(stats.tls)
    end
  end
end

-- A ClientHello to mutate: a TLS client's first flight, caught by a TCP
-- server that never answers.
local function captureHello()
  local got = defer.Deferred()
  local Catch = protocol.Protocol:extend({})
  function Catch:dataReceived(data)
    if not got.called then
      got:callback(data)
    end
    self.transport:abortConnection()
  end
  local catcher = reactor.listenTCP(0, protocol.Factory.forProtocol(Catch),
    { interface = "127.0.0.1" })
  local f = protocol.ClientFactory()
  f.buildProtocol = function() return protocol.Protocol() end
  reactor.connectSSL("127.0.0.1", catcher:getHost().port, f, CLIENT_TLS,
    { timeout = 2 })
  return got:addCallback(function(hello)
    catcher:stopListening()
    return hello
  end)
end

-- The end -------------------------------------------------------------------------

local status = 1
local function finish(echoed)
  local left = S.count(outstanding)
  status = S.verdict(unexpected, string.format("%d TLS clients through the"
    .. " proxy (%d connected, %d failed), %d raw clients; then a clean TLS"
    .. " echo", stats.tls, stats.made, stats.failed, stats.raw),
    left > 0 and left .. " TLS clients never settled",
    echoed ~= "final" and "the last TLS echo got " .. tostring(echoed))
  reactor.stop()
end

local function cleanEcho()
  local got = defer.Deferred()
  local Final = protocol.Protocol:extend({})
  function Final:connectionMade()
    self.transport:write("final")
  end
  function Final:dataReceived(data)
    if not got.called then
      got:callback(data)
    end
    self.transport:loseConnection()
  end
  local f = protocol.ClientFactory.forProtocol(Final)
  function f.clientConnectionFailed(_, _, reason)
    if not got.called then
      got:callback("(failed: " .. tostring(reason) .. ")")
    end
  end
  reactor.connectSSL("127.0.0.1", tlsPort, f, CLIENT_TLS, { timeout = 5 })
  S.within(got, 5):addCallback(finish)
end

local function last()
  S.whenSettled(function() return inflight > 0 end, deadline, cleanEcho)
end

print(string.format("soak: %d s, a TLS echo on 127.0.0.1:%d behind a proxy"
  .. " on 127.0.0.1:%d (seed %s)", SECONDS, tlsPort, proxyPort,
  arg[2] or "1"))
captureHello():addCallbacks(function(hello)
  CLIENT_HELLO = hello
  spawn()
  reactor.callLater(SECONDS, last)
end, function(f)
  unexpected[#unexpected + 1] = "no ClientHello captured: " .. tostring(f)
  finish()
end)
reactor.run()
os.execute("rm -rf '" .. dir .. "'")
os.exit(status)
