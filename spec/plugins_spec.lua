-- The built-in plugins, each run as a real `loom PLUGIN` subprocess on a
-- free loopback port and talked to; plugin discovery, options and errors.
local sub = dofile("spec/support/subprocess.lua")
local plugin = require "loom.plugin"
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local testing = require "loom.testing"

local PORT = "--port tcp:0:interface=127.0.0.1"

local function childPid(pid)
  local s = sub.readFile(string.format("/proc/%d/task/%d/children", pid, pid))
  return tonumber(s:match("%d+"))
end

describe("plugin options", function()
  local p = { name = "t", options = {
    { "port", "p", "tcp:1", "where" },
    { "count", "n", 3, "how many" },
    { "verbose", "v", false, "talk" },
    { "name", nil, nil, "a name" },
  } }

  it("fills in defaults", function()
    assert.same({ port = "tcp:1", count = 3, verbose = false },
      plugin.parseOptions(p, {}, 1))
  end)

  it("takes --opt X, --opt=X and -o X, typed from the default", function()
    local o = plugin.parseOptions(p, { "--port", "tcp:2", "--count=7", "-v",
      "--name", "x" }, 1)
    assert.same({ port = "tcp:2", count = 7, verbose = true, name = "x" }, o)
    o = plugin.parseOptions(p, { "-p", "tcp:3", "-n", "2.5" }, 1)
    assert.equal("tcp:3", o.port)
    assert.equal(2.5, o.count)
  end)

  it("boolean options have --no- forms", function()
    local q = { name = "q", options = { { "color", "c", true, "colour" } } }
    assert.is_false(plugin.parseOptions(q, { "--no-color" }, 1).color)
  end)

  local bad = {
    { { "--colour", "red" }, "unknown option '--colour' for t (see loom t"
      .. " --help)" },
    { { "-x" }, "unknown option '-x' for t (see loom t --help)" },
    { { "--count", "many" }, "option --count expects a number, got 'many'" },
    { { "--port" }, "option --port needs a value (where)" },
    { { "--verbose=yes" }, "option --verbose is a flag and takes no value" },
    { { "stray" }, "unexpected argument 'stray' for t (see loom t --help)" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. table.concat(case[1], " "), function()
      local o, e = plugin.parseOptions(p, case[1], 1)
      assert.is_nil(o)
      assert.equal(case[2], e)
    end)
  end

  it("--help asks for the usage, which lists every option", function()
    assert.equal("help", plugin.parseOptions(p, { "--help" }, 1))
    local u = plugin.usage(p)
    assert.matches("Usage: loom t %[options%]", u)
    assert.matches("%-n, %-%-count N%s+how many %(default: 3%)", u)
    assert.matches("%-%-%[no%-%]verbose", u)
  end)
end)

describe("loom PLUGIN from the command line", function()
  it("loom --help lists every built-in plugin with its description",
    function()
      local out, _, status = sub.loom("--help")
      assert.equal(0, status)
      for _, name in ipairs({ "echo", "discard", "daytime", "chargen",
        "finger", "portforward", "chat" }) do
        assert.matches("\n  " .. name .. " +%S", out)
      end
    end)

  it("loom echo --help shows its options and exits 0", function()
    local out, _, status = sub.loom("echo --help")
    assert.equal(0, status)
    assert.matches("%-p, %-%-port", out)
    assert.matches("default: tcp:8000:interface=127.0.0.1", out, 1, true)
  end)

  it("an unknown option is one line and exit 1", function()
    local out, err, status = sub.loom("echo --colour red")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: unknown option '--colour' for echo (see loom echo"
      .. " --help)\n", err)
  end)

  it("a bad endpoint is one line naming it and exit 1", function()
    local _, err, status = sub.loom("echo --port tcp:abc")
    assert.equal(1, status)
    assert.equal("loom: echo: tcp: port 'abc' is not a number\n", err)
  end)

  it("an unknown plugin is one line and exit 1", function()
    local _, err, status = sub.loom("nosuchplugin --port 1")
    assert.equal(1, status)
    assert.equal("loom: unknown command 'nosuchplugin' (see loom --help)\n",
      err)
  end)

  it("finds plugins in LOOM_PLUGIN_PATH", function()
    local dir = sub.tmpdir()
    sub.writeFile(dir .. "/hello.lua", [[
local application = require "loom.application"
return { name = "hello", description = "says hello",
  options = { { "who", "w", "world", "whom to greet" } },
  makeService = function(opts)
    local s = application.Service:new("hello")
    function s:startService()
      print("hello " .. opts.who)
      require("loom.reactor").callLater(0, require("loom.reactor").stop)
    end
    return s
  end }
]])
    local out, err, status = sub.loom("hello --who there",
      "LOOM_PLUGIN_PATH=" .. dir)
    local help = sub.loom("--help", "LOOM_PLUGIN_PATH=/nonexistent:" .. dir)
    os.execute("rm -rf " .. dir)
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal("hello there\n", out)
    assert.matches("\n  hello +says hello", help)
  end)

  it("a plugin with a syntax error: one line naming file:line, exit 1",
    function()
      local dir = sub.tmpdir()
      sub.writeFile(dir .. "/broken.lua", "return {\n  name = 'broken'\n"
        .. "  description = 'x'\n}\n")
      local out, err, status = sub.loom("broken",
        "LOOM_PLUGIN_PATH=" .. dir)
      os.execute("rm -rf " .. dir)
      assert.equal(1, status)
      assert.equal("", out)
      assert.matches("^loom: plugin " .. (dir .. "/broken.lua:3: ")
        :gsub("%p", "%%%0") .. "[^\n]+\n$", err)
    end)

  it("a plugin without makeService is refused in one line", function()
    local dir = sub.tmpdir()
    sub.writeFile(dir .. "/empty.lua", "return { name = 'empty' }\n")
    local _, err, status = sub.loom("empty", "LOOM_PLUGIN_PATH=" .. dir)
    os.execute("rm -rf " .. dir)
    assert.equal(1, status)
    assert.equal("loom: plugin " .. dir .. "/empty.lua: the plugin has no"
      .. " makeService function\n", err)
  end)
end)

-- RSS growth bounds a server's buffering. Under ASan (make sanitize sets
-- LOOM_SANITIZE) freed memory sits in quarantine and RSS says nothing.
local function assertBounded(before, after, kb)
  if os.getenv("LOOM_SANITIZE") then
    return
  end
  assert.is_true(after - before < kb,
    string.format("RSS grew from %d kB to %d kB", before, after))
end

describe("built-in plugins over loopback", function()
  it("echo echoes and stops with exit 0 on SIGTERM", function()
    local server = sub.start("echo " .. PORT)
    local c = sub.connect(server.port)
    c.transport:write("hello plugin")
    assert.equal("hello plugin", c:waitFor("hello plugin", true))
    c.transport:loseConnection()
    testing.runUntil(c.lost, 5)
    local status = sub.stop(server)
    assert.equal(0, status)
  end)

  it("discard reads everything and sends nothing", function()
    local server = sub.start("discard " .. PORT)
    local c = sub.connect(server.port)
    c.transport:write(("x"):rep(100000))
    sub.sleep(0.1)
    c.transport:loseConnection()
    testing.runUntil(c.lost, 5)
    assert.equal("", c:text())
    assert.equal(0, (sub.stop(server)))
  end)

  it("daytime sends the date line then closes", function()
    local server = sub.start("daytime " .. PORT)
    local c = sub.connect(server.port)
    testing.runUntil(c.lost, 5)
    assert.matches("^%a%a%a %a%a%a [ %d]%d %d%d:%d%d:%d%d %d%d%d%d\r\n$",
      c:text())
    assert.equal(0, (sub.stop(server)))
  end)

  it("chargen sends RFC 864's rotating lines", function()
    local server = sub.start("chargen " .. PORT)
    local c = sub.connect(server.port)
    local text = c:waitFor(("[^\n]*\n"):rep(96))
    -- The server closes first (see the SIGPIPE spec below), while this
    -- side keeps reading so its flush can finish.
    os.execute("kill " .. server.pid)
    testing.runUntil(c.lost, 5)
    assert.equal(0, (sub.stop(server)))
    local lines = {}
    for l in text:gmatch("([^\n]*)\n") do
      lines[#lines + 1] = l
    end
    assert.equal(' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ'
      .. '[\\]^_`abcdefg\r', lines[1])
    assert.equal('!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ['
      .. '\\]^_`abcdefgh\r', lines[2])
    assert.equal(lines[1], lines[96])
  end)

  it("chargen survives a client that closes mid-stream (no SIGPIPE death)",
    function()
      local server = sub.start("chargen " .. PORT)
      local c = sub.connect(server.port)
      c:waitFor(("[^\n]*\n"):rep(10))
      c.transport:abortConnection()
      testing.runUntil(c.lost, 5)
      sub.sleep(0.2) -- The server meets EPIPE/ECONNRESET on its next writes.
      local c2 = sub.connect(server.port)
      c2:waitFor(("[^\n]*\n"):rep(2))
      c2.transport:loseConnection()
      testing.runUntil(c2.lost, 5)
      assert.equal(0, (sub.stop(server)))
    end)

  it("chargen is flow-controlled: a reader that stops does not grow the"
    .. " server's memory", function()
    local server = sub.start("chargen " .. PORT)
    local loomPid = childPid(server.pid)
    local c = sub.connect(server.port)
    sub.waitUntil(function() return #c:text() > 0 end, 5) -- data flows
    c.transport:pauseProducing()
    sub.sleep(0.3)
    local before = sub.rss(loomPid)
    sub.sleep(1.0)
    local after = sub.rss(loomPid)
    assertBounded(before, after, 2048)
    c.received = {}
    c.transport:resumeProducing()
    sub.waitUntil(function() return #c:text() > 200 * 74 end, 5)
    os.execute("kill " .. server.pid)
    testing.runUntil(c.lost, 5)
    assert.equal(0, (sub.stop(server)))
  end)

  it("finger answers from the --users JSON file", function()
    local users = os.tmpname()
    sub.writeFile(users, '{"alice": "Happy and well", "bob": "Out to lunch"}')
    local server = sub.start("finger " .. PORT .. " --users " .. users)
    local function ask(q)
      local c = sub.connect(server.port)
      c.transport:write(q .. "\r\n")
      testing.runUntil(c.lost, 5)
      return c:text()
    end
    assert.equal("Happy and well\r\n", ask("alice"))
    assert.equal("Out to lunch\r\n", ask("/W bob"))
    assert.equal("No such user\r\n", ask("carol"))
    assert.equal("alice\r\nbob\r\n", ask(""))
    os.remove(users)
    assert.equal(0, (sub.stop(server)))
  end)

  it("finger with a missing users file is one line, exit 1", function()
    local _, err, status = sub.loom("finger " .. PORT
      .. " --users /nonexistent/users.json")
    assert.equal(1, status)
    assert.matches("^loom: finger: %-%-users: /nonexistent/users%.json: No"
      .. " such file", err)
    -- a directory, an array, an entry that is not text: one line each
    local dir = sub.tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    sub.writeFile(dir .. "/array.json", "[1, 2]")
    sub.writeFile(dir .. "/nested.json", '{"ann": {"x": 1}}')
    for _, case in ipairs({ { dir, "Is a directory" },
      { dir .. "/array.json", "not a JSON object" },
      { dir .. "/nested.json", "the entry for ann is a table, not a string" } }) do
      _, err, status = sub.loom("finger " .. PORT .. " --users " .. case[1])
      assert.equal(1, status)
      assert.equal("loom: finger: --users: " .. case[1] .. ": " .. case[2] .. "\n", err)
    end
  end)

  it("portforward relays both ways, with backpressure, and closes both"
    .. " sides", function()
    local Echo = protocol.Protocol:extend({})
    function Echo:dataReceived(d) self.transport:write(d) end
    local target = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local server = sub.start("portforward " .. PORT
      .. " --dest tcp:host=127.0.0.1:port=" .. target:getHost().port)
    local c = sub.connect(server.port)
    c.transport:write("through the proxy")
    assert.equal("through the proxy", c:waitFor("through the proxy", true))
    -- 4 MB while not reading: the proxy must pause, not buffer it all.
    local loomPid = childPid(server.pid)
    local before = sub.rss(loomPid)
    c.received = {}
    c.transport:pauseProducing()
    local blob = ("0123456789abcdef"):rep(65536 * 4)
    c.transport:write(blob)
    sub.sleep(0.5)
    local after = sub.rss(loomPid)
    assertBounded(before, after, 3072)
    c.transport:resumeProducing()
    sub.waitUntil(function() return #c:text() >= #blob end, 10)
    assert.equal(#blob, #c:text())
    c.transport:loseConnection()
    testing.runUntil(c.lost, 5)
    testing.runUntil(target:stopListening(), 5)
    assert.equal(0, (sub.stop(server)))
  end)

  it("portforward closes the client when --dest refuses", function()
    local probe = reactor.listenTCP(0, protocol.Factory:new(),
      { interface = "127.0.0.1" })
    local n = probe:getHost().port
    testing.runUntil(probe:stopListening(), 5)
    local server = sub.start("portforward " .. PORT
      .. " --dest tcp:127.0.0.1:" .. n)
    local c = sub.connect(server.port)
    testing.runUntil(c.lost, 5)
    local _, _, err = sub.stop(server)
    assert.matches("portforward: cannot reach", err, 1, true)
  end)

  it("portforward without --dest is one line, exit 1", function()
    local _, err, status = sub.loom("portforward " .. PORT)
    assert.equal(1, status)
    assert.equal("loom: portforward: --dest is required (e.g. --dest"
      .. " tcp:host=127.0.0.1:port=80)\n", err)
  end)

  it("chat: nicknames, broadcast, /who, /nick, /quit, join/leave", function()
    local server = sub.start("chat " .. PORT)
    local a = sub.connect(server.port)
    a:waitFor("What is your nickname?", true)
    a.transport:write("ann\r\n")
    a:waitFor("You are alone here", true)
    local b = sub.connect(server.port)
    b:waitFor("nickname?", true)
    b.transport:write("ann\n")
    b:waitFor("* the nickname 'ann' is taken, try another:", true)
    b.transport:write("ANN\n") -- (one name to the eye: taken too)
    b:waitFor("* the nickname 'ann' is taken, try another:\r\n* the nickname 'ann'", true)
    b.transport:write("..\n")
    b:waitFor("* '..' is not a valid nickname", true)
    b.transport:write("bob\n")
    b:waitFor("Here: ann", true)
    a:waitFor("* bob has joined", true)
    b.transport:write("hi all\n")
    a:waitFor("<bob> hi all\r\n", true)
    -- a CR or an escape cannot make a line pass for another member's
    b.transport:write("x\r<ann> I am ann\27[2K\n")
    a:waitFor("<bob> x\u{FFFD}<ann> I am ann\u{FFFD}[2K\r\n", true)
    a.transport:write("/who\n")
    a:waitFor("* here: ann, bob", true)
    b.transport:write("/nick robert\n")
    a:waitFor("* bob is now known as robert", true)
    b.transport:write("/dance\n")
    b:waitFor("* unknown command /dance", true)
    b.transport:write("/quit\n")
    b:waitFor("* bye!", true)
    testing.runUntil(b.lost, 5)
    a:waitFor("* robert has left", true)
    assert.is_nil(a:text():find("\n<ann>", 1, true)) -- (no line of its own)
    assert.is_nil(b:text():find("hi all", 1, true))
    a.transport:loseConnection()
    testing.runUntil(a.lost, 5)
    assert.equal(0, (sub.stop(server)))
  end)
end)

describe("built-in line plugins and an over-long line", function()
  it("chat and finger log it and drop only that connection", function()
    for _, case in ipairs({
      { "chat", "chat: disconnecting a member without a nickname: a line"
        .. " longer than 16384 bytes" },
      { "finger", "finger: disconnecting: a query longer than 16384 bytes" },
    }) do
      local server = sub.start(case[1] .. " " .. PORT)
      local c = sub.connect(server.port)
      c.transport:write(("x"):rep(20000))
      testing.runUntil(c.lost, 5)
      if case[1] == "chat" then
        c:waitFor("* disconnected: lines are at most 16384 bytes", true)
      end
      local ok = sub.connect(server.port) -- the host goes on serving
      ok.transport:loseConnection()
      testing.runUntil(ok.lost, 5)
      local status, _, err = sub.stop(server)
      assert.equal(0, status)
      assert.truthy(err:find(case[2], 1, true), err)
    end
  end)
end)

describe("built-in plugin defaults", function()
  local endpoints = require "loom.endpoints"
  local log = require "loom.log"

  local function load(name)
    return assert(plugin.load("plugins/" .. name .. ".lua", name))
  end

  it("every built-in plugin listens on loopback unless told otherwise",
    function()
      for _, entry in ipairs({
        "chargen", "chat", "daytime", "discard", "echo", "finger",
        "portforward" }) do
        local p = load(entry)
        local opts = assert(plugin.parseOptions(p, {}, 1))
        local ep = endpoints.serverFromString(reactor, opts.port)
        assert.equal("127.0.0.1", ep.interface, entry)
      end
      -- The service echo makes from its defaults listens there too.
      local echo = load("echo")
      local svc = echo.makeService(assert(plugin.parseOptions(echo, {}, 1)))
      assert.equal("127.0.0.1", svc.endpoint.interface)
    end)

  it("a description the user writes keeps Twisted's meaning (tcp:N is every"
    .. " interface), and portforward warns when it listens beyond loopback",
    function()
      local pf = load("portforward")
      local warnings = {}
      local function observe(ev)
        if ev.level == "warn" then
          warnings[#warnings + 1] = ev.text
        end
      end
      log.addObserver(observe)
      local level = log.level
      log.level = "error" -- Seen by observe, kept off the spec's stderr.
      local made = {}
      for _, port in ipairs({ "tcp:0", "tcp:0:interface=127.0.0.1",
        "tcp6:0", "unix:/tmp/loom-pf-unused.sock" }) do
        made[port] = pf.makeService({ port = port,
          dest = "tcp:host=127.0.0.1:port=1" })
      end
      log.level = level
      log.removeObserver(observe)
      assert.equal("0.0.0.0", made["tcp:0"].endpoint.interface)
      assert.same({
        "portforward: listening on 0.0.0.0, not loopback only: whoever can"
          .. " reach this host can reach --dest through it",
        "portforward: listening on ::, not loopback only: whoever can"
          .. " reach this host can reach --dest through it" }, warnings)
    end)
end)

describe("portforward and half-closes", function()
  -- Reads until the peer's FIN, then answers and closes (an HTTP/1.0-ish
  -- server, or `nc -N` on the other side).
  local Replier = protocol.Protocol:extend({})
  function Replier:dataReceived(d) self.buf = (self.buf or "") .. d end
  function Replier:readConnectionLost()
    self.transport:write("got:" .. (self.buf or ""))
    self.transport:loseConnection()
  end

  local function forwarder(target)
    return sub.start("portforward " .. PORT
      .. " --dest tcp:host=127.0.0.1:port=" .. target:getHost().port)
  end

  it("a client that sends, then shuts its write side, gets the whole reply",
    function()
      local target = reactor.listenTCP(0, protocol.Factory.forProtocol(
        Replier), { interface = "127.0.0.1" })
      local server = forwarder(target)
      for try = 1, 3 do
        local c = sub.connect(server.port)
        c.transport:write("request " .. try)
        c.transport:loseWriteConnection()
        testing.runUntil(c.lost, 5)
        assert.equal("got:request " .. try, c:text())
      end
      testing.runUntil(target:stopListening(), 5)
      assert.equal(0, (sub.stop(server)))
    end)

  it("a destination that half-closes first still gets the client's answer,"
    .. " and both sides close once both are done", function()
      local Greeter = protocol.Protocol:extend({})
      local heard = require("loom.defer").Deferred()
      function Greeter:connectionMade()
        self.transport:write("hello")
        self.transport:loseWriteConnection()
      end
      function Greeter:dataReceived(d) self.buf = (self.buf or "") .. d end
      function Greeter:readConnectionLost() end
      function Greeter:connectionLost() heard:callback(self.buf) end
      local target = reactor.listenTCP(0, protocol.Factory.forProtocol(
        Greeter), { interface = "127.0.0.1" })
      local server = forwarder(target)
      local Answerer = sub.Recorder:extend({})
      function Answerer:readConnectionLost()
        self.transport:write("thanks for " .. self:text())
        self.transport:loseWriteConnection()
      end
      local c = sub.connect(server.port, Answerer:new())
      assert.equal("thanks for hello", testing.runUntil(heard, 5))
      testing.runUntil(c.lost, 5)
      assert.equal("hello", c:text())
      testing.runUntil(target:stopListening(), 5)
      assert.equal(0, (sub.stop(server)))
    end)
end)
