-- Unix stream sockets over real sockets in a fresh temporary directory.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local err = require "loom.error"
local testing = require "loom.testing"

local Protocol, Factory, ClientFactory =
  protocol.Protocol, protocol.Factory, protocol.ClientFactory
local runUntil = testing.runUntil

local function tempdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  return dir
end

local function exists(path)
  return os.execute("test -e " .. path .. " -o -L " .. path) == true
end

local net = dofile("spec/support/net.lua")
local Echo, Recorder = net.Echo, net.Recorder

local function connect(path, opts)
  local proto = Recorder:new()
  local cf = ClientFactory:new()
  cf.failed = defer.Deferred()
  function cf:buildProtocol() return proto end
  function cf:clientConnectionFailed(_, reason)
    self.failed:callback({ reason }) -- a Failure would take the errback path
  end
  local c = reactor.connectUNIX(path, cf, opts)
  return proto, c, cf
end

describe("listenUNIX / connectUNIX", function()
  local dir
  before_each(function() dir = tempdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("echoes over a Unix socket with the stream transport", function()
    local path = dir .. "/echo.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    assert.same({ type = "UNIX", name = path }, port:getHost())
    local c = connect(path)
    runUntil(c.made)
    assert.equal("loom.UNIXTransport", tostring(c.transport):match("^%S+"))
    local big = string.rep("x", 300000) -- past the high-water mark
    local got = c:expect(#big + 5)
    c.transport:write("hello")
    c.transport:write(big)
    assert.equal("hello" .. big, runUntil(got))
    assert.same({ type = "UNIX", name = path }, c.transport:getPeer())
    c.transport:loseConnection()
    runUntil(c.lost)
    assert.is_truthy(c.reason:check(err.ConnectionDone))
    runUntil(port:stopListening())
  end)

  it("has no TCP-only methods: a pipe is never handed to uv_tcp_*", function()
    local path = dir .. "/notcp.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    local c = connect(path)
    runUntil(c.made)
    -- As in Twisted, a Unix transport has no setTcpNoDelay at all.
    assert.is_nil(c.transport.setTcpNoDelay)
    assert.is_nil(c.transport.setTcpKeepAlive)
    local ok, msg = pcall(function() c.transport:setTcpNoDelay(true) end)
    assert.is_false(ok)
    assert.not_matches("not supported", msg)
    assert.is_true(c.transport.connected) -- nothing happened to the socket
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(port:stopListening())
  end)

  it("removes the socket file on stopListening", function()
    local path = dir .. "/gone.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    assert.is_true(exists(path))
    runUntil(port:stopListening()) -- fires once the file is removed
    assert.is_false(exists(path))
  end)

  it("applies mode to the socket file", function()
    local path = dir .. "/mode.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo),
      { mode = tonumber("600", 8) })
    local h = io.popen("stat -c %a " .. path)
    local mode = h:read("l")
    h:close()
    assert.equal("600", mode)
    runUntil(port:stopListening())
  end)

  it("refuses a path in use with a one-line error", function()
    local path = dir .. "/busy.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    local ok, e = pcall(reactor.listenUNIX, path, Factory.forProtocol(Echo))
    assert.is_false(ok)
    assert.is_true(e:isa(err.CannotListenError))
    assert.matches("listenUNIX: .*busy.sock: EADDRINUSE", tostring(e))
    assert.is_nil(tostring(e):find("\n"))
    assert.is_true(exists(path)) -- the live server keeps its socket
    runUntil(port:stopListening())
  end)

  it("with wantPID writes a lock holding our pid and removes it", function()
    local path = dir .. "/pid.sock"
    local port = reactor.listenUNIX(path, Factory.forProtocol(Echo),
      { wantPID = true })
    local h = io.popen("readlink " .. path .. ".lock")
    local pid = tonumber(h:read("l"))
    h:close()
    assert.is_true(pid ~= nil and pid > 0)
    local ok, e = pcall(reactor.listenUNIX, path, Factory.forProtocol(Echo),
      { wantPID = true })
    assert.is_false(ok)
    assert.matches("in use by a live process", tostring(e))
    assert.is_nil(tostring(e):find("\n"))
    runUntil(port:stopListening())
    assert.is_false(exists(path .. ".lock"))
  end)

  -- Twisted's test_socketLocking: once stopListening's Deferred fired, the
  -- socket file and the lock are gone and the path can be listened on again.
  it("with wantPID relistens as soon as stopListening fires", function()
    local path = dir .. "/relisten.sock"
    local f = Factory.forProtocol(Echo)
    local stops = 0
    function f:stopFactory() stops = stops + 1 end
    local port = reactor.listenUNIX(path, f, { wantPID = true })
    assert.has_error(function()
      reactor.listenUNIX(path, f, { wantPID = true })
    end)
    local seen = {}
    local again = port:stopListening():addCallback(function()
      seen.lock = exists(path .. ".lock")
      seen.file = exists(path)
      seen.stops = stops
      return reactor.listenUNIX(path, f, { wantPID = true })
    end)
    local port2 = runUntil(again)
    assert.same({ lock = false, file = false, stops = 1 }, seen)
    assert.is_true(port2.connected)
    local both = defer.DeferredList({ port2:stopListening(),
      port2:stopListening() })
    runUntil(both)
    assert.is_false(exists(path .. ".lock"))
    assert.equal(2, stops)
    assert.is_true(runUntil(port2:stopListening():addCallback(function()
      return true
    end)))
  end)

  it("with wantPID replaces a stale socket whose lock holder is dead",
    function()
      local path = dir .. "/stale.sock"
      -- A dead server: its socket file and a lock naming a finished pid.
      -- (A loom process that listens, then exits without closing.)
      local script = dir .. "/die.lua"
      local f = assert(io.open(script, "w"))
      f:write('local p = require "loom.protocol"\n'
        .. 'require("loom.reactor").listenUNIX(arg[1], '
        .. 'p.Factory.forProtocol(p.Protocol))\nos.exit(0)\n')
      f:close()
      assert(os.execute(string.format("%s run %s %s",
        os.getenv("LOOM_BIN") or "build/loom", script, path)))
      assert.is_true(exists(path))
      local h = io.popen("sh -c 'echo $$'")
      local dead = h:read("l")
      h:close()
      assert(os.execute(string.format("ln -s %s %s.lock", dead, path)))
      local port = reactor.listenUNIX(path, Factory.forProtocol(Echo),
        { wantPID = true })
      local c = connect(path)
      runUntil(c.made)
      local got = c:expect(4)
      c.transport:write("ping")
      assert.equal("ping", runUntil(got))
      c.transport:loseConnection()
      runUntil(c.lost)
      runUntil(port:stopListening())
    end)

  it("with checkPID fails unless a live server holds the lock", function()
    local path = dir .. "/checked.sock"
    local plain = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    local _, _, cf = connect(path, { checkPID = true })
    local reason = runUntil(cf.failed)[1]
    assert.matches("no live server holds", reason:getErrorMessage())
    runUntil(plain:stopListening())
    local locked = reactor.listenUNIX(path, Factory.forProtocol(Echo),
      { wantPID = true })
    local c = connect(path, { checkPID = true })
    runUntil(c.made)
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(locked:stopListening())
  end)

  it("reports a missing socket to clientConnectionFailed", function()
    local _, c, cf = connect(dir .. "/nobody.sock")
    local reason = runUntil(cf.failed)[1]
    assert.is_truthy(reason:check(err.ConnectError))
    assert.matches("nobody.sock: ENOENT", reason:getErrorMessage())
    assert.same({ type = "UNIX", name = dir .. "/nobody.sock" },
      c:getDestination())
  end)

  it("serves other connections when one protocol's hook raises", function()
    local path = dir .. "/iso.sock"
    local Fragile = Protocol:extend({ __name = "Fragile" })
    function Fragile:dataReceived(data)
      if data == "boom" then error("kaboom") end
      self.transport:write(data)
    end
    local port = reactor.listenUNIX(path, Factory.forProtocol(Fragile))
    local a, b = connect(path), connect(path)
    runUntil(a.made)
    runUntil(b.made)
    a.transport:write("boom")
    runUntil(a.lost)
    local got = b:expect(2)
    b.transport:write("ok")
    assert.equal("ok", runUntil(got))
    b.transport:loseConnection()
    runUntil(b.lost)
    runUntil(port:stopListening())
  end)

  it("rejects a bad path and a bad mode", function()
    assert.has_error(function()
      reactor.listenUNIX("", Factory.forProtocol(Echo))
    end)
    assert.has_error(function()
      reactor.listenUNIX(dir .. "/x", Factory.forProtocol(Echo),
        { mode = "rw" })
    end)
  end)
end)
