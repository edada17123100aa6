-- loom.application (service tree), loom.internet and loom.strports, after
-- twisted/application/test/test_service.py and test_internet.py.
local application = require "loom.application"
local internet = require "loom.internet"
local strports = require "loom.strports"
local defer = require "loom.defer"
local task = require "loom.task"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local testing = require "loom.testing"

local Service, MultiService = application.Service, application.MultiService

-- A service recording start/stop events into a shared list.
local function recorder(name, events, stopResult)
  local s = Service:new(name)
  function s:privilegedStartService()
    events[#events + 1] = "priv " .. name
  end
  function s:startService()
    Service.startService(self)
    events[#events + 1] = "start " .. name
  end
  function s:stopService()
    Service.stopService(self)
    events[#events + 1] = "stop " .. name
    return stopResult
  end
  return s
end

local function capture()
  local lines = {}
  local obs = log.addObserver(function(ev) lines[#lines + 1] = ev.text end)
  return lines, function() log.removeObserver(obs) end
end

describe("Service", function()
  it("has a name, a parent and a running flag", function()
    local s = Service:new("a")
    assert.equal("a", s.name)
    assert.is_false(s.running)
    assert.is_nil(s.parent)
    s:startService()
    assert.is_true(s.running)
    s:stopService()
    assert.is_false(s.running)
  end)

  it("setName works without a parent and raises once it has one", function()
    local s = Service:new()
    s:setName("x")
    assert.equal("x", s.name)
    s:setServiceParent(MultiService:new())
    assert.has_error(function() s:setName("y") end,
      "setName: cannot change the name of a service that has a parent"
      .. " (call disownServiceParent first)")
  end)

  it("setServiceParent adds it to the parent; disown removes it", function()
    local p = MultiService:new()
    local s = Service:new("child")
    s:setServiceParent(p)
    assert.equal(p, s.parent)
    assert.equal(s, p:getServiceNamed("child"))
    s:disownServiceParent()
    assert.is_nil(s.parent)
    assert.equal(0, #p)
  end)

  it("moving to another parent leaves the first", function()
    local p1, p2 = MultiService:new(), MultiService:new()
    local s = Service:new("c")
    s:setServiceParent(p1)
    s:setServiceParent(p2)
    assert.equal(0, #p1)
    assert.equal(1, #p2)
    assert.equal(p2, s.parent)
  end)

  it("a non-service parent is refused", function()
    assert.has_error(function() Service:new():setServiceParent({}) end,
      "setServiceParent: the parent must be a MultiService")
  end)
end)

describe("MultiService", function()
  it("refuses two children with the same name", function()
    local p = MultiService:new("root")
    Service:new("web"):setServiceParent(p)
    local ok, e = pcall(Service.setServiceParent, Service:new("web"), p)
    assert.is_false(ok)
    assert.matches('cannot have two services named "web" in '
      .. '<MultiService "root">', e, 1, true)
    assert.equal(1, #p)
  end)

  it("allows any number of unnamed children", function()
    local p = MultiService:new()
    Service:new():setServiceParent(p)
    Service:new():setServiceParent(p)
    assert.equal(2, #p)
  end)

  it("getServiceNamed raises for an unknown name", function()
    local p = MultiService:new("root")
    assert.has_error(function() p:getServiceNamed("nope") end,
      'getServiceNamed: no service named "nope" in <MultiService "root">')
  end)

  it("removeService of a stranger raises", function()
    assert.has_error(function()
      MultiService:new():removeService(Service:new("x"))
    end)
  end)

  it("starts children in order (privileged first) and stops in reverse",
    function()
      local ev = {}
      local p = MultiService:new()
      recorder("a", ev):setServiceParent(p)
      recorder("b", ev):setServiceParent(p)
      p:privilegedStartService()
      p:startService()
      assert.is_true(p.running)
      p:stopService()
      assert.same({ "priv a", "priv b", "start a", "start b", "stop b",
        "stop a" }, ev)
    end)

  it("iterates over its children in order", function()
    local p = MultiService:new()
    local a, b = Service:new("a"), Service:new("b")
    a:setServiceParent(p)
    b:setServiceParent(p)
    local seen = {}
    for child in p:iter() do
      seen[#seen + 1] = child
    end
    assert.same({ a, b }, seen)
  end)

  it("stopService waits for every child's Deferred", function()
    local d1, d2 = defer.Deferred(), defer.Deferred()
    local p = MultiService:new()
    recorder("a", {}, d1):setServiceParent(p)
    recorder("b", {}, d2):setServiceParent(p)
    p:startService()
    local done = p:stopService()
    assert.is_false(done.called)
    d2:callback(nil)
    assert.is_false(done.called)
    d1:callback(nil)
    assert.is_true(done.called)
  end)

  it("a child's failing stop is logged and does not block the rest",
    function()
      local lines, undo = capture()
      local p = MultiService:new()
      local bad = Service:new("bad")
      function bad.stopService() error("cannot stop") end
      bad:setServiceParent(p)
      p:startService()
      local done = p:stopService()
      undo()
      assert.is_true(done.called)
      assert.matches("error stopping <Service \"bad\">", lines[1], 1, true)
    end)

  it("a child added to a running parent is started at once", function()
    local ev = {}
    local p = MultiService:new()
    p:startService()
    recorder("late", ev):setServiceParent(p)
    assert.same({ "priv late", "start late" }, ev)
  end)

  it("removing a child from a running parent stops it", function()
    local ev = {}
    local p = MultiService:new()
    local s = recorder("x", ev, "result")
    s:setServiceParent(p)
    p:startService()
    assert.equal("result", s:disownServiceParent())
    assert.same({ "start x", "stop x" }, ev)
  end)
end)

describe("Application", function()
  it("is a named MultiService", function()
    local app = application.Application("demo")
    assert.equal("demo", app.name)
    Service:new("s"):setServiceParent(app)
    assert.equal(1, #app)
    assert.is_true(require("loom.class").isinstance(app, MultiService))
  end)

  it("exposes strports and internet", function()
    assert.equal(strports, application.strports)
    assert.equal(internet, application.internet)
  end)

  it("keeps {uid=, gid=} (names or numbers) for loom to switch to",
    function()
      local app = application.Application("a", { uid = "nobody", gid = 65534 })
      assert.equal("nobody", app.uid)
      assert.equal(65534, app.gid)
      assert.is_nil(application.Application("b").uid)
    end)

  it("refuses options it does not know or cannot use, naming the caller",
    function()
      local function err(opts)
        local ok, e = pcall(function()
          local app = application.Application("a", opts)
          return app
        end)
        assert.is_false(ok)
        return e
      end
      assert.matches("^spec/application_spec%.lua:%d+: Application: unknown"
        .. ' option "user" %(uid, gid%)$', err({ user = "nobody" }))
      assert.matches("Application: uid must be a name or a number, got"
        .. " boolean$", err({ uid = true }))
      assert.matches("Application: gid must be a name or a number, got an"
        .. " empty string$", err({ gid = "" }))
      assert.matches("Application: options must be a table", err("nobody"))
    end)
end)

describe("application.stopWithTimeout", function()
  it("fires when the tree has stopped", function()
    local clock = task.Clock()
    local app = application.Application("a")
    local d = defer.Deferred()
    recorder("slow", {}, d):setServiceParent(app)
    app:startService()
    local done = application.stopWithTimeout(app, 10, clock)
    assert.is_false(done.called)
    d:callback(nil)
    assert.is_true(done.called)
    assert.equal(0, #clock:getDelayedCalls())
  end)

  it("gives up after the timeout and names the service that hung",
    function()
      local clock = task.Clock()
      local app = application.Application("app")
      local inner = MultiService:new("web")
      inner:setServiceParent(app)
      recorder("fast", {}):setServiceParent(app)
      recorder("stuck", {}, defer.Deferred()):setServiceParent(inner)
      app:startService()
      local lines, undo = capture()
      local done = application.stopWithTimeout(app, 10, clock)
      clock:advance(9)
      assert.is_false(done.called)
      clock:advance(1)
      undo()
      assert.is_true(done.called)
      assert.equal("services did not stop within 10s: app/web/stuck",
        lines[1])
    end)
end)

describe("internet.TimerService", function()
  it("calls f with its arguments every step on its clock", function()
    local clock = task.Clock()
    local calls = {}
    local t = internet.TimerService(5, function(a, b)
      calls[#calls + 1] = a .. b
    end, "x", "y")
    t.clock = clock
    t:startService()
    assert.equal(1, #calls)
    clock:advance(5)
    clock:advance(5)
    assert.same({ "xy", "xy", "xy" }, calls)
    local d = t:stopService()
    assert.is_true(d.called)
    clock:advance(10)
    assert.equal(3, #calls)
    assert.is_false(t.running)
  end)

  it("stopService waits for a call still in progress", function()
    local clock = task.Clock()
    local pending = defer.Deferred()
    local t = internet.TimerService(1, function() return pending end)
    t.clock = clock
    t:startService()
    local d = t:stopService()
    assert.is_false(d.called)
    -- Twisted's test_stopServiceWaits: running stays true until the call
    -- in progress is done.
    assert.is_true(t.running)
    pending:callback(nil)
    assert.is_true(d.called)
    assert.is_false(t.running)
  end)

  it("stopService after the loop failed stops at once", function()
    local clock = task.Clock()
    local t = internet.TimerService(1, function() error("tick failed") end)
    t.clock = clock
    local _, undo = capture()
    t:startService()
    undo()
    local d = t:stopService()
    assert.is_true(d.called)
    assert.is_false(t.running)
  end)

  it("logs a failing call and stops calling", function()
    local clock = task.Clock()
    local n = 0
    local t = internet.TimerService(1, function()
      n = n + 1
      error("tick failed")
    end)
    t.clock = clock
    local lines, undo = capture()
    t:startService()
    clock:advance(3)
    undo()
    assert.equal(1, n)
    assert.matches("TimerService: the timed call failed", lines[1], 1, true)
  end)
end)

-- A fake reactor recording listenTCP/connectTCP calls.
local function fakeReactor()
  local r = { listened = {}, connected = {} }
  function r.listenTCP(port, factory, opts)
    local p = { port = port, factory = factory, opts = opts,
      stopped = false }
    function p.getHost() return { type = "TCP", host = "1.2.3.4", port = 99 } end
    function p.stopListening()
      p.stopped = true
      return defer.succeed(nil)
    end
    r.listened[#r.listened + 1] = p
    return p
  end
  function r.connectTCP(host, port, factory, opts)
    local c = { host = host, port = port, factory = factory, opts = opts }
    function c.disconnect() c.disconnected = true end
    r.connected[#r.connected + 1] = c
    return c
  end
  return r
end

describe("internet.TCPServer and TCPClient", function()
  it("TCPServer listens in privilegedStartService and stops listening",
    function()
      local r = fakeReactor()
      local f = protocol.Factory:new()
      local s = internet.TCPServer(8000, f, { interface = "127.0.0.1" })
      s.reactor = r
      s:privilegedStartService()
      s:startService()
      assert.equal(1, #r.listened)
      assert.equal(8000, r.listened[1].port)
      assert.equal("127.0.0.1", r.listened[1].opts.interface)
      assert.same({ type = "TCP", host = "1.2.3.4", port = 99 }, s:getHost())
      local d = s:stopService()
      assert.is_true(d.called)
      assert.is_true(r.listened[1].stopped)
    end)

  it("TCPClient connects on start and disconnects on stop", function()
    local r = fakeReactor()
    local s = internet.TCPClient("127.0.0.1", 25, protocol.ClientFactory:new())
    s.reactor = r
    s:startService()
    assert.equal(25, r.connected[1].port)
    s:stopService()
    assert.is_true(r.connected[1].disconnected)
  end)
end)

describe("strports.service", function()
  it("raises a bad description's error at once", function()
    assert.has_error(function()
      strports.service("tcp:abc", protocol.Factory:new())
    end, "tcp: port 'abc' is not a number")
  end)

  it("listens on a real port while running; stopService stops it",
    function()
      local f = protocol.Factory.forProtocol(protocol.Protocol)
      local s = strports.service("tcp:0:interface=127.0.0.1", f)
      local app = application.Application("t")
      s:setServiceParent(app)
      app:privilegedStartService()
      app:startService()
      local host = s:getHost()
      assert.equal("127.0.0.1", host.host)
      assert.is_true(host.port > 0)
      local d = app:stopService()
      testing.runUntil(d, 5)
      assert.is_nil(s:getHost())
    end)

  it("a port in use raises from privilegedStartService", function()
    local f = protocol.Factory.forProtocol(protocol.Protocol)
    local held = reactor.listenTCP(0, f, { interface = "127.0.0.1" })
    local s = strports.service("tcp:" .. held:getHost().port
      .. ":interface=127.0.0.1", f)
    local ok, e = pcall(s.privilegedStartService, s)
    testing.runUntil(held:stopListening(), 5)
    assert.is_false(ok)
    assert.matches("EADDRINUSE", tostring(e))
  end)

  it("the old form, a bare port number, means tcp", function()
    local r = fakeReactor()
    local s = strports.service("8123", protocol.Factory:new(), { reactor = r })
    s:privilegedStartService()
    assert.equal(8123, r.listened[1].port)
  end)
end)

describe("strports options", function()
  it("takes the reactor from {reactor=}, as Twisted's keyword", function()
    local r = fakeReactor()
    local s = strports.service("tcp:8124", protocol.Factory:new(),
      { reactor = r })
    s:privilegedStartService()
    assert.equal(8124, r.listened[1].port)
  end)

  it("refuses a reactor passed where the options go, naming the caller's"
    .. " line", function()
      local ok, e = pcall(strports.service, "tcp:0", protocol.Factory:new(),
        fakeReactor())
      assert.is_false(ok)
      assert.matches("the third argument is an options table: pass"
        .. " {reactor = r}, not the reactor", e, 1, true)
      local line = debug.getinfo(1, "l").currentline
      local ok2, e2 = pcall(function()
        strports.service("tcp:0", protocol.Factory:new(), fakeReactor())
      end)
      assert.is_false(ok2)
      assert.matches("^spec/application_spec%.lua:" .. (line + 2) .. ": ", e2)
    end)

  it("refuses unknown options and a reactor that is not one", function()
    local f = protocol.Factory:new()
    assert.has_error(function()
      strports.service("tcp:0", f, { reactr = {} })
    end)
    local ok, e = pcall(strports.service, "tcp:0", f, { reactor = {} })
    assert.is_false(ok)
    assert.matches("options.reactor is not a reactor", e, 1, true)
    ok, e = pcall(strports.listen, "tcp:0", f, 42)
    assert.is_false(ok)
    assert.matches("strports.listen: options must be a table", e, 1, true)
  end)
end)

describe("internet.StreamServerEndpointService", function()
  it("stopService returns the stopListening Deferred", function()
    local stopD = defer.Deferred()
    local port = { stopListening = function() return stopD end }
    local ep = { listen = function() return defer.succeed(port) end }
    local s = internet.StreamServerEndpointService(ep, protocol.Factory:new())
    s:startService()
    local fired = false
    s:stopService():addCallback(function() fired = true end)
    assert.is_false(fired)
    stopD:callback(nil)
    assert.is_true(fired)
  end)

  -- Twisted's test_stopServiceBeforeStartFinished and
  -- test_stopServiceCancelStartError: a cancelled listen logs nothing,
  -- another error from the cancellation is logged.
  it("stopped before its listen finished logs nothing", function()
    local listening = defer.Deferred()
    local ep = { listen = function() return listening end }
    local s = internet.StreamServerEndpointService(ep, protocol.Factory:new())
    local lines, undo = capture()
    s:startService()
    local d = s:stopService()
    undo()
    assert.is_true(d.called)
    assert.is_true(listening.called)
    assert.same({}, lines)
    assert.is_false(s.running)
  end)

  it("logs an error other than CancelledError from the cancelled listen",
    function()
      local listening = defer.Deferred(function(d)
        d:errback(require("loom.failure").Failure("division by zero"))
      end)
      local ep = { listen = function() return listening end }
      local s = internet.StreamServerEndpointService(ep,
        protocol.Factory:new())
      local lines, undo = capture()
      s:startService()
      local d = s:stopService()
      undo()
      assert.is_true(d.called)
      assert.equal(1, #lines)
      assert.matches("error listening on", lines[1], 1, true)
    end)

  it("logs a listen failure unless told to raise", function()
    local ep = { listen = function() return defer.fail("no port for you") end }
    local s = internet.StreamServerEndpointService(ep, protocol.Factory:new())
    local lines, undo = capture()
    s:startService()
    undo()
    assert.matches("error listening on", lines[1], 1, true)
    assert.matches("no port for you", lines[1], 1, true)
  end)
end)
