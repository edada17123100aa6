-- loom.endpoints: the description grammar (Twisted's _tokenize/_parse and
-- its tcp/unix parsers, after internet/test/test_endpoints.py), the error
-- messages, and TCP endpoints over real loopback.
local endpoints = require "loom.endpoints"
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local function errorOf(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("endpoints.parse", function()
  it("splits positional and key=value arguments", function()
    local args, kw = endpoints.parse("a:b:d=1:c")
    assert.same({ "a", "b", "c" }, args)
    assert.same({ d = "1" }, kw)
  end)

  it("honours backslash escapes for ':' and '='", function()
    local args, kw = endpoints.parse([[unix:/tmp/a\:b:mode=6\=6]])
    assert.same({ "unix", "/tmp/a:b" }, args)
    assert.same({ mode = "6=6" }, kw)
  end)

  it("treats '=' after the first as part of the value", function()
    local _, kw = endpoints.parse("x:key=a=b")
    assert.same({ key = "a=b" }, kw)
  end)

  it("an escaped backslash is a backslash", function()
    local args = endpoints.parse([[x:a\\b]])
    assert.same({ "x", [[a\b]] }, args)
  end)

  it("keeps empty parameters", function()
    local args = endpoints.parse("tcp::")
    assert.same({ "tcp", "", "" }, args)
  end)

  it("refuses a trailing lone backslash", function()
    assert.equal([[endpoint description "tcp:80\\" ends with a lone]]
      .. " backslash", errorOf(endpoints.parse, "tcp:80\\"))
  end)
end)

describe("endpoints.parseServer", function()
  it("tcp: port, interface and backlog, positional or by name", function()
    local kind, port, opts = endpoints.parseServer(
      "tcp:8000:interface=127.0.0.1:backlog=7")
    assert.equal("tcp", kind)
    assert.equal(8000, port)
    assert.same({ interface = "127.0.0.1", backlog = 7 }, opts)
    kind, port, opts = endpoints.parseServer("tcp:80:10.0.0.1:3")
    assert.equal(80, port)
    assert.same({ interface = "10.0.0.1", backlog = 3 }, opts)
    _, port = endpoints.parseServer("tcp:port=81")
    assert.equal(81, port)
  end)

  it("a bare number is the old strports form of tcp", function()
    local kind, port, opts = endpoints.parseServer("8000")
    assert.equal("tcp", kind)
    assert.equal(8000, port)
    assert.same({}, opts)
  end)

  it("the type is case-insensitive", function()
    assert.equal("tcp", (endpoints.parseServer("TCP:1")))
  end)

  it("unix: path, octal mode, lockfile, backlog", function()
    local kind, path, opts = endpoints.parseServer(
      "unix:/tmp/s.sock:mode=600:lockfile=0:backlog=5")
    assert.equal("unix", kind)
    assert.equal("/tmp/s.sock", path)
    assert.same({ mode = 384, wantPID = false, backlog = 5 }, opts)
    _, path, opts = endpoints.parseServer("unix:address=/tmp/x")
    assert.equal("/tmp/x", path)
    assert.same({ mode = 438, wantPID = true, backlog = 50 }, opts)
    _, path = endpoints.parseServer("unix:path=/tmp/y")
    assert.equal("/tmp/y", path)
  end)

  it("tcp6 defaults to the :: interface", function()
    local kind, port, opts = endpoints.parseServer("tcp6:9000")
    assert.equal("tcp6", kind)
    assert.equal(9000, port)
    assert.equal("::", opts.interface)
    _, _, opts = endpoints.parseServer([[tcp6:9000:interface=\:\:1]])
    assert.equal("::1", opts.interface)
  end)

  local bad = {
    { "foo:bar", "unknown endpoint type 'foo' (known: tcp, tcp6, unix, ssl)" },
    { "", "unknown endpoint type '' (known: tcp, tcp6, unix, ssl)" },
    { "tcp:abc", "tcp: port 'abc' is not a number" },
    { "tcp:-1", "tcp: port -1 is out of range 0-65535" },
    { "tcp:0:maxWriteBuffer=-5",
      "tcp: maxWriteBuffer -5 is out of range 0-1125899906842624" },
    { "tcp:70000", "tcp: port 70000 is out of range 0-65535" },
    -- (tonumber wraps these around to 7766279631452241920 and such)
    { "tcp:0:backlog=99999999999999999999",
      "tcp: backlog 99999999999999999999 is out of range 0-1073741824" },
    { "tcp:18446744073709551617", "tcp: port 18446744073709551617 is out of range 0-65535" },
    { "tcp", "tcp: missing port" },
    { "tcp:interface=127.0.0.1", "tcp: missing port" },
    { "tcp:80:colour=red",
      "unknown parameter 'colour' for tcp (known: port, interface, backlog,"
      .. " maxWriteBuffer)" },
    { "tcp:80:port=81", "tcp: port given twice" },
    { "tcp:80:127.0.0.1:5:extra",
      "tcp: too many positional arguments (4; tcp takes port, interface,"
      .. " backlog)" },
    { "tcp:80:backlog=lots", "tcp: backlog 'lots' is not a number" },
    { "unix:/tmp/s:mode=888", "unix: mode '888' is not an octal number" },
    { "unix:/tmp/s:lockfile=yes", "unix: lockfile 'yes' is not 0 or 1" },
    { "unix", "unix: missing address" },
    { "ssl:443", "ssl: missing privateKey" },
    { "ssl:443:privateKey=k.pem:sslmethod=SSLv3_METHOD",
      "ssl: sslmethod 'SSLv3_METHOD' is not TLSv1_2_METHOD or"
      .. " TLSv1_3_METHOD" },
  }
  for _, case in ipairs(bad) do
    it("refuses '" .. case[1] .. "'", function()
      assert.equal(case[2], errorOf(endpoints.parseServer, case[1]))
    end)
  end
end)

describe("endpoints.parseClient", function()
  it("tcp: host and port by name", function()
    local kind, host, port, opts = endpoints.parseClient(
      "tcp:host=example.org:port=80:timeout=5:bindAddress=10.0.0.2")
    assert.equal("tcp", kind)
    assert.equal("example.org", host)
    assert.equal(80, port)
    assert.same({ timeout = 5, bindAddress = { "10.0.0.2", 0 } }, opts)
  end)

  it("tcp: host and port positional, or port positional after host=",
    function()
      local _, host, port = endpoints.parseClient("tcp:127.0.0.1:25")
      assert.equal("127.0.0.1", host)
      assert.equal(25, port)
      _, host, port = endpoints.parseClient("tcp:26:host=10.1.1.1")
      assert.equal("10.1.1.1", host)
      assert.equal(26, port)
    end)

  it("unix: path, timeout, lockfile", function()
    local kind, path, opts = endpoints.parseClient(
      "unix:/var/foo/bar:lockfile=1:timeout=9")
    assert.equal("unix", kind)
    assert.equal("/var/foo/bar", path)
    assert.same({ timeout = 9, checkPID = true }, opts)
    _, path = endpoints.parseClient("unix:path=/tmp/sock")
    assert.equal("/tmp/sock", path)
  end)

  local bad = {
    { "udp:1", "unknown endpoint type 'udp' (known: tcp, unix, ssl, tls)" },
    { "tcp:host=a", "tcp: missing port" },
    { "tcp:port=80", "tcp: missing host" },
    { "tcp:h:0", "tcp: port 0 is out of range 1-65535" },
    { "tcp:h:http", "tcp: port 'http' is not a number" },
    { "tcp:h:80:timeout=soon", "tcp: timeout 'soon' is not a number" },
    { "tcp:h:80:colour=red", "unknown parameter 'colour' for tcp (known:"
      .. " host, port, timeout, bindAddress, maxWriteBuffer)" },
    { "unix:/a:mode=1", "unknown parameter 'mode' for unix (known: path,"
      .. " timeout, lockfile, maxWriteBuffer)" },
    { "tls:host=a", "tls: missing port" },
    { "ssl:port=1", "ssl: missing host" },
    { "tls:h:1:privateKey=k.pem", "tls: certificate and privateKey go"
      .. " together" },
  }
  for _, case in ipairs(bad) do
    it("refuses '" .. case[1] .. "'", function()
      assert.equal(case[2], errorOf(endpoints.parseClient, case[1]))
    end)
  end
end)

describe("serverFromString and clientFromString", function()
  it("build TCP4 endpoints with the parsed options", function()
    local ep = endpoints.serverFromString(reactor,
      "tcp:8000:interface=127.0.0.1:backlog=9")
    assert.equal(endpoints.TCP4ServerEndpoint, getmetatable(ep))
    assert.equal(8000, ep.port)
    assert.equal("127.0.0.1", ep.interface)
    assert.equal(9, ep.backlog)
    local c = endpoints.clientFromString(reactor,
      "tcp:host=127.0.0.1:port=80:timeout=5")
    assert.equal(endpoints.TCP4ClientEndpoint, getmetatable(c))
    assert.equal(5, c.timeout)
  end)

  it("an IPv6 client host gives a TCP6 endpoint", function()
    local c = endpoints.clientFromString(reactor, [[tcp:\:\:1:80]])
    assert.equal(endpoints.TCP6ClientEndpoint, getmetatable(c))
    assert.equal("::1", c.host)
  end)

  it("build UNIX endpoints", function()
    local s = endpoints.serverFromString(reactor, "unix:/tmp/x.sock:mode=600")
    assert.equal(endpoints.UNIXServerEndpoint, getmetatable(s))
    assert.equal(384, s.mode)
    local c = endpoints.clientFromString(reactor, "unix:path=/tmp/x.sock")
    assert.equal(endpoints.UNIXClientEndpoint, getmetatable(c))
    assert.equal("/tmp/x.sock", c.path)
  end)

  it("unix endpoints call listenUNIX/connectUNIX with the options",
    function()
      local calls = {}
      local fake = {
        listenUNIX = function(path, f, opts)
          calls[#calls + 1] = { "listen", path, f, opts }
          return "port"
        end,
        connectUNIX = function(path, f, opts)
          calls[#calls + 1] = { "connect", path, f, opts }
          return {}
        end,
      }
      local f = protocol.Factory:new()
      local d = endpoints.serverFromString(fake,
        "unix:/tmp/z:mode=640:lockfile=1"):listen(f)
      local port
      d:addCallback(function(p) port = p end)
      assert.equal("port", port)
      assert.same({ "listen", "/tmp/z", f,
        { mode = 416, backlog = 50, wantPID = true } }, calls[1])
      endpoints.clientFromString(fake, "unix:/tmp/z:timeout=3"):connect(f)
      assert.equal("connect", calls[2][1])
      assert.equal("/tmp/z", calls[2][2])
      assert.same({ timeout = 3, checkPID = false }, calls[2][4])
    end)
end)

-- TCP over loopback ----------------------------------------------------------------

local Echo = protocol.Protocol:extend({ __name = "Echo" })
function Echo:dataReceived(data)
  self.transport:write(data)
end

local Client = protocol.Protocol:extend({ __name = "Client" })
function Client:init()
  self.got = defer.Deferred()
  self.lost = defer.Deferred()
end
function Client:dataReceived(data)
  self.got:callback(data)
end
function Client:connectionLost()
  self.lost:callback(nil)
end

describe("TCP endpoints over loopback", function()
  it("listen gives a Port; connect gives the connected protocol", function()
    local port = runUntil(endpoints.serverFromString(reactor,
      "tcp:0:interface=127.0.0.1"):listen(protocol.Factory.forProtocol(Echo)),
      5)
    local n = port:getHost().port
    local ep = endpoints.clientFromString(reactor,
      "tcp:127.0.0.1:" .. n .. ":timeout=5")
    local proto = runUntil(ep:connect(protocol.Factory.forProtocol(Client)),
      5)
    assert.equal(Client, getmetatable(proto))
    assert.is_true(proto.connected)
    proto.transport:write("ping")
    assert.equal("ping", runUntil(proto.got, 5))
    proto.transport:loseConnection()
    runUntil(proto.lost, 5)
    runUntil(port:stopListening(), 5)
  end)

  it("connectProtocol connects an existing protocol instance", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1",
      port:getHost().port, { timeout = 5 })
    local c = Client:new()
    assert.equal(c, runUntil(endpoints.connectProtocol(ep, c), 5))
    c.transport:write("x")
    assert.equal("x", runUntil(c.got, 5))
    c.transport:loseConnection()
    runUntil(c.lost, 5)
    runUntil(port:stopListening(), 5)
  end)

  it("connect errbacks with the refusal", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local n = port:getHost().port
    runUntil(port:stopListening(), 5)
    local ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", n)
    local ok, f = pcall(runUntil, ep:connect(protocol.Factory.forProtocol(
      Client)), 5)
    assert.is_false(ok)
    assert.truthy(f:check(err.ConnectionRefusedError))
  end)

  it("listen errbacks when the port is taken", function()
    local port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local ep = endpoints.TCP4ServerEndpoint(reactor, port:getHost().port,
      { interface = "127.0.0.1" })
    local ok, f = pcall(runUntil, ep:listen(protocol.Factory:new()), 5)
    runUntil(port:stopListening(), 5)
    assert.is_false(ok)
    assert.matches("EADDRINUSE", f:getErrorMessage())
  end)
end)

describe("UNIX endpoints over a real socket", function()
  local base = os.tmpname()
  os.remove(base)
  local path = base .. ".sock"
  local has = reactor.listenUNIX ~= nil
  local test = has and it or pending
  test("listen and connect (needs reactor.listenUNIX, issue F5)", function()
    local port = runUntil(endpoints.serverFromString(reactor,
      "unix:" .. path):listen(protocol.Factory.forProtocol(Echo)), 5)
    local c = runUntil(endpoints.clientFromString(reactor, "unix:" .. path)
      :connect(protocol.Factory.forProtocol(Client)), 5)
    c.transport:write("unix!")
    assert.equal("unix!", runUntil(c.got, 5))
    c.transport:loseConnection()
    runUntil(c.lost, 5)
    runUntil(port:stopListening(), 5)
    os.remove(path)
  end)
end)

describe("the registry of endpoint types", function()
  -- A type registered by another module, checked with endpoints.param.
  local echoParser = {
    parse = function(args, kw, order)
      local p = endpoints.param
      local v = p.bind("echo", { "port", "greeting" }, args, kw, order)
      local port = p.integer("echo", "port", p.required("echo", v, "port"),
        0, 65535)
      return "echo", port, { greeting = v.greeting or "hi" }
    end,
    endpoint = function(reactor_, port, opts)
      return { reactor = reactor_, port = port, greeting = opts.greeting }
    end,
  }

  it("serverFromString builds a registered type's endpoint", function()
    assert.is_nil(endpoints.registerServer("echo", echoParser))
    local ep = endpoints.serverFromString(reactor, "echo:7:greeting=yo")
    assert.same({ reactor = reactor, port = 7, greeting = "yo" }, ep)
    assert.same({ "echo", 8, { greeting = "hi" } },
      { endpoints.parseServer("ECHO:port=8") })
    assert.same({ "tcp", "tcp6", "unix", "ssl", "echo" },
      endpoints.serverTypes())
    assert.equal("unknown endpoint type 'x' (known: tcp, tcp6, unix, ssl,"
      .. " echo)", errorOf(endpoints.parseServer, "x:1"))
    assert.equal("echo: port 'seven' is not a number",
      errorOf(endpoints.serverFromString, reactor, "echo:seven"))
    assert.equal("unknown parameter 'colour' for echo (known: port,"
      .. " greeting, maxWriteBuffer)",
      errorOf(endpoints.parseServer, "echo:1:colour=red"))
    assert.equal(echoParser, endpoints.registerServer("echo", nil))
    assert.same({ "tcp", "tcp6", "unix", "ssl" }, endpoints.serverTypes())
    assert.equal("unknown endpoint type 'echo' (known: tcp, tcp6, unix,"
      .. " ssl)", errorOf(endpoints.parseServer, "echo:1"))
  end)

  it("clientFromString builds a registered type's endpoint", function()
    endpoints.registerClient("Echo", echoParser)
    local ep = endpoints.clientFromString(reactor, "echo:9")
    assert.same({ reactor = reactor, port = 9, greeting = "hi" }, ep)
    assert.same({ "tcp", "unix", "ssl", "tls", "echo" },
      endpoints.clientTypes())
    endpoints.registerClient("echo", nil)
    assert.same({ "tcp", "unix", "ssl", "tls" }, endpoints.clientTypes())
  end)

  it("a type registered again replaces the old one in its place",
    function()
      local ssl = endpoints.registerServer("ssl", echoParser)
      assert.is_table(ssl)
      assert.equal(5, endpoints.serverFromString(reactor, "ssl:5").port)
      assert.same({ "tcp", "tcp6", "unix", "ssl" }, endpoints.serverTypes())
      assert.equal(echoParser, endpoints.registerServer("ssl", ssl))
      assert.equal("ssl: missing privateKey",
        errorOf(endpoints.serverFromString, reactor, "ssl:5"))
    end)

  it("refuses a bad type name or parser", function()
    assert.has_error(function() endpoints.registerServer("a:b", echoParser) end,
      "registerServer: type must be a name of letters, digits and _.+-,"
      .. " got a:b")
    assert.has_error(function() endpoints.registerClient("", echoParser) end,
      "registerClient: type must be a name of letters, digits and _.+-,"
      .. " got ")
    assert.has_error(function()
      endpoints.registerServer("x", { parse = print })
    end, "registerServer: parser must be a table with parse and endpoint"
      .. " functions")
  end)
end)
