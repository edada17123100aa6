-- Shared by the TLS specs: certificates made at load time by
-- spec/support/mkcerts.sh into a temporary directory (removed by
-- M.cleanup), TLS echo servers and clients on loopback, and waiting.
--   local tls = dofile("spec/support/tls.lua")
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")

local M = { net = net }

local function tempdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  return dir
end

M.dir = tempdir()
assert(os.execute("sh spec/support/mkcerts.sh " .. M.dir),
  "spec/support/mkcerts.sh failed (is openssl installed?)")

-- M.cert("server") -> "DIR/server.pem", M.key("server") -> "DIR/server.key"
function M.cert(name)
  return M.dir .. "/" .. name .. ".pem"
end

function M.key(name)
  return M.dir .. "/" .. name .. ".key"
end

function M.serverOptions(name, extra)
  local o = { certificate = M.cert(name or "server"),
    privateKey = M.key(name or "server") }
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  return o
end

function M.clientOptions(extra)
  local o = { caCerts = M.cert("ca") }
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  return o
end

function M.cleanup()
  os.execute("rm -rf '" .. M.dir .. "'")
end

-- A TLS port on 127.0.0.1 (port 0) for factory; tracked for M.closePorts.
local ports = {}
function M.listen(factory, options)
  local p = reactor.listenSSL(0, factory, options or M.serverOptions(),
    { interface = "127.0.0.1" })
  ports[#ports + 1] = p
  return p
end

function M.closePorts()
  for _, p in ipairs(ports) do
    p:stopListening()
  end
  ports = {}
end

function M.echoPort(options)
  return M.listen(protocol.Factory.forProtocol(net.Echo), options)
end

-- Connects a new P (default net.Recorder) over TLS: returns the protocol
-- and a Deferred firing with it once connected (handshake done), or
-- erring with the connect failure.
function M.connect(port, options, P)
  local proto = (P or net.Recorder):new()
  local d = defer.Deferred()
  local cf = protocol.ClientFactory:new()
  function cf:buildProtocol()
    return proto
  end
  function cf:clientConnectionFailed(_, reason)
    d:errback(reason)
  end
  local made = proto.connectionMade
  function proto:connectionMade()
    if made then
      made(self)
    end
    d:callback(self)
  end
  local port_ = type(port) == "number" and port or port:getHost().port
  M.connector = reactor.connectSSL("127.0.0.1", port_, cf,
    options or M.clientOptions(), { timeout = 5 })
  return proto, d
end

-- The Failure a Deferred ends with (it must fail), within 5 s.
function M.failureOf(d)
  local ok, f = pcall(testing.runUntil, d, 5)
  assert(not ok, "expected a failure, got a result")
  return f
end

-- Log lines while f runs: { {level=, text=}, ... }.
function M.captureLog(f)
  local log = require "loom.log"
  local lines = {}
  local function observer(ev)
    lines[#lines + 1] = ev
  end
  log.addObserver(observer)
  local ok, e = pcall(f)
  log.removeObserver(observer)
  if not ok then
    error(e, 0)
  end
  return lines
end

function M.findLine(lines, pattern)
  for _, ev in ipairs(lines) do
    if tostring(ev.text):find(pattern) then
      return ev
    end
  end
  return nil
end

return M
