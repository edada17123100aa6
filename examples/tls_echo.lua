-- TLS echo: a server that sends back every byte it receives, and a client
-- that checks it, both over TLS with the server's certificate verified.
--
-- Make a CA and a certificate for localhost once (a test CA: never trust
-- it outside your machine):
--   mkdir -p /tmp/loom-tls && cd /tmp/loom-tls
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -keyout ca.key -out ca.pem -days 30 -subj "/CN=My Test CA"
--   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -keyout key.pem -out req.csr -subj "/CN=localhost"
--   printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
--   openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
--     -days 30 -extfile san.ext -out cert.pem
-- Then:
--   loom run examples/tls_echo.lua server 8443 /tmp/loom-tls/cert.pem /tmp/loom-tls/key.pem
--   loom run examples/tls_echo.lua client 8443 /tmp/loom-tls/ca.pem
--   openssl s_client -connect 127.0.0.1:8443 -CAfile /tmp/loom-tls/ca.pem
-- (`loom echo --port ssl:8443:privateKey=key.pem:certKey=cert.pem` is the
-- same server as a plugin.)
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"

local mode, port = arg[1], tonumber(arg[2])

local function usage()
  io.stderr:write("usage: tls_echo.lua server PORT CERT.pem KEY.pem\n"
    .. "       tls_echo.lua client PORT CA.pem\n")
  os.exit(2)
end

if not port then
  usage()
end

-- Server ------------------------------------------------------------------------

local Echo = protocol.Protocol:extend({ __name = "TLSEcho" })

function Echo:connectionMade()
  self.transport:setTcpNoDelay(true)
  -- A client that sends without reading is not read from while more than
  -- 64 KiB of echoes wait for it.
  policies.applyBackpressure(self)
end

function Echo:dataReceived(data)
  self.transport:write(data)
end

-- Client ------------------------------------------------------------------------

local Check = protocol.Protocol:extend({ __name = "TLSCheck",
  message = "hello over TLS\n" })

-- Called once the handshake succeeded: the certificate was verified.
function Check:connectionMade()
  local cert = self.transport:getPeerCertificate()
  print(string.format("connected with %s to %s (issued by %s)",
    self.transport:getTLSVersion(), cert.subject, cert.issuer))
  self.got = ""
  self.transport:write(self.message)
end

function Check:dataReceived(data)
  self.got = self.got .. data
  if #self.got >= #self.message then
    print("echoed: " .. self.got:gsub("\n$", ""))
    self.transport:loseConnection() -- sends close_notify first
  end
end

function Check:connectionLost(reason)
  print("closed: " .. tostring(reason.value))
  reactor.stop()
end

local CheckFactory = protocol.ClientFactory:extend({ protocol = Check })

-- A failed verification (unknown CA, expired, wrong name) comes here as
-- error.TLSError, with .reason saying which.
function CheckFactory:clientConnectionFailed(_, reason)
  print("failed: " .. tostring(reason.value))
  reactor.stop()
end

if mode == "server" and arg[3] and arg[4] then
  local p = reactor.listenSSL(port, protocol.Factory.forProtocol(Echo),
    { certificate = arg[3], privateKey = arg[4] },
    { interface = "127.0.0.1", backlog = 511 })
  reactor.callWhenRunning(function()
    print("listening on 127.0.0.1:" .. p:getHost().port)
    io.stdout:flush()
  end)
elseif mode == "client" and arg[3] then
  reactor.connectSSL("127.0.0.1", port, CheckFactory:new(),
    { caCerts = arg[3], hostname = "localhost" }, { timeout = 10 })
else
  usage()
end
reactor.run()
