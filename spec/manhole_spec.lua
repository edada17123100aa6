-- loom.manhole: the console's evaluation (a Session fed lines), then the
-- manhole over a real Unix socket and loopback TCP in a fresh directory.
local application = require "loom.application"
local core = require "loom.core"
local defer = require "loom.defer"
local manhole = require "loom.manhole"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local testing = require "loom.testing"

local net = dofile("spec/support/net.lua")
local Echo, Recorder = net.Echo, net.Recorder
local runUntil = testing.runUntil

-- A session whose output is collected; feed(line) returns what one line
-- printed (and the Deferred of an evaluation that awaits).
local function newSession(opts)
  local out = {}
  opts = opts or {}
  opts.write = function(s)
    out[#out + 1] = s
  end
  local session = manhole.Session(opts)
  local function feed(line)
    local d = session:push(line)
    local text = table.concat(out)
    for i = #out, 1, -1 do
      out[i] = nil
    end
    return text, d
  end
  local function take()
    local text = table.concat(out)
    for i = #out, 1, -1 do
      out[i] = nil
    end
    return text
  end
  return session, feed, take
end

describe("manhole session", function()
  it("evaluates an expression and prints its value", function()
    local _, feed = newSession()
    assert.equal("2\n", feed("1 + 1"))
    assert.equal('"ab"\n', feed("'a' .. 'b'"))
    assert.equal("1, nil, 3\n", feed("1, nil, 3"))
    assert.equal("nil\n", feed("nil"))
  end)

  it("runs statements, keeping names in the session's own environment",
    function()
    local session, feed = newSession()
    assert.equal("", feed("x = 41"))
    assert.equal("42\n", feed("x + 1"))
    assert.is_nil(rawget(_G, "x"))
    assert.equal(41, session.env.x)
    local _, other = newSession()
    assert.equal("nil\n", other("x"))
    -- _G stays reachable through the session's environment.
    assert.equal('"table"\n', feed("type(string)"))
  end)

  it("keeps a local declared at the start of an input, and _", function()
    local _, feed = newSession()
    assert.equal("", feed("local q, r = 3, 4"))
    assert.equal("7\n", feed("q + r"))
    assert.equal("7\n", feed("_"))
    assert.equal("", feed("local function twice(n) return 2 * n end"))
    assert.equal("14\n", feed("twice(_)"))
  end)

  it("waits for more lines while a chunk is unfinished", function()
    local session, feed = newSession()
    assert.equal("", feed("function f(a)"))
    assert.equal(manhole.MORE, session:prompt())
    assert.equal("", feed("  local b = a * 2"))
    assert.equal("", feed(""))
    assert.equal("", feed("  return b"))
    assert.equal("", feed("end"))
    assert.equal(manhole.PROMPT, session:prompt())
    assert.equal("42\n", feed("f(21)"))
    assert.equal("", feed("t = {"))
    assert.equal("{1, 2}\n", feed("1, 2 } ; return t"))
  end)

  it("prints a syntax error as one line and drops the chunk", function()
    local session, feed = newSession()
    local out = feed("x = = 1")
    assert.matches("^error: console:1: unexpected symbol near '='\n$", out)
    assert.equal(manhole.PROMPT, session:prompt())
    assert.equal("3\n", feed("1 + 2"))
  end)

  it("prints a runtime error with its traceback and goes on", function()
    local _, feed = newSession()
    feed("function boom() error('it broke') end")
    local out = feed("boom()")
    assert.matches("^error: console:1: it broke\nstack traceback:\n", out)
    assert.matches("\n\tconsole:1: in %a+ 'boom'\n\tconsole:1: in main chunk\n$",
      out)
    assert.not_matches("manhole%.lua", out)
    assert.equal("5\n", feed("2 + 3"))
    out = feed("nosuch.field")
    assert.matches("^error: console:1: attempt to index a nil value %(global"
      .. " 'nosuch'%)", out)
  end)

  it("sends the output of print to the console", function()
    local _, feed = newSession()
    assert.equal("hi\t1\t{a = true}\n", feed("print('hi', 1, {a = true})"))
    assert.equal("a\nb\n", feed("for _, s in ipairs({'a', 'b'}) do print(s)"
      .. " end"))
  end)

  it("pretty-prints nested tables with bounds, cycles and quoted strings",
    function()
    local _, feed = newSession()
    feed("t = {1, 'two', x = {y = 'a\\nb'}}")
    assert.equal('{1, "two", x = {y = "a\\nb"}}\n', feed("t"))
    feed("t.self = t")
    assert.matches("self = <cycle>", feed("t"))
    assert.equal("{{{{{...}}}}}\n", feed("{{{{{{1}}}}}}"))
    local big = feed("(function() local l = {} for i = 1, 200 do l[i] = i"
      .. " end return l end)()")
    assert.matches("50,\n  %.%.%.%(150 more%),\n}\n$", big)
    local long = feed("('x'):rep(5000)")
    assert.matches('^"x+"%.%.%.%(5000 bytes%)\n$', long)
    assert.equal(1000, #long:match('"(x+)"'))
    assert.equal("<class Protocol>\n",
      feed("require('loom.protocol').Protocol"))
  end)

  it("prints a Deferred with its number, waiting and fired", function()
    local _, feed = newSession()
    feed("d = require('loom.defer').Deferred()")
    local waiting = feed("d")
    local n = waiting:match("^<Deferred #(%d+) waiting>\n$")
    assert.is_not_nil(n)
    assert.equal(waiting, feed("d"), "the number is stable")
    feed("d:callback({ok = 1})")
    assert.equal("<Deferred #" .. n .. " fired: {ok = 1}>\n", feed("d"))
    local other = feed("require('loom.defer').succeed(2)")
    assert.matches("^<Deferred #%d+ fired: 2>\n$", other)
    assert.not_equal(n, other:match("#(%d+)"))
  end)

  it("awaits a Deferred at the prompt, then prints its result", function()
    local later = defer.Deferred()
    local session, feed, take = newSession({ namespace = { later = later } })
    local out, d = feed("await(later) + 1")
    assert.equal("", out)
    assert.is_truthy(defer.isDeferred(d), "the caller must hold input")
    later:callback(41)
    assert.is_true(d.called)
    assert.equal("42\n", take())
    assert.equal(42, session.env._)
  end)

  it("awaits a failing Deferred and prints the Failure", function()
    local later = defer.Deferred()
    local _, feed, take = newSession({ namespace = { later = later } })
    local _, d = feed("await(later)")
    later:errback("remote went away")
    assert.is_true(d.called)
    assert.matches("^error: remote went away\n", take())
    assert.equal("1\n", feed("1"))
  end)

  it("bounds a chunk, the output and the run time of an evaluation",
    function()
    local session, feed = newSession({ maxChunk = 64, maxOutput = 100,
      maxRunTime = 0.2 })
    feed("f = function()")
    local out = feed(("x = 1 "):rep(20))
    assert.matches("^error: input longer than 64 bytes %(maxChunk%)", out)
    assert.equal(manhole.PROMPT, session:prompt())
    out = feed("for i = 1, 1000 do print(i) end")
    assert.matches("output cut %(more than 100 bytes; maxOutput%)\n$", out)
    assert.is_true(#out < 200)
    out = feed("while true do end")
    assert.matches("^error: .*interrupted: it ran for more than 0.2 s", out)
    assert.equal("2\n", feed("1 + 1"))
  end)

  it("reload() calls loom.reload's reloadNow, or says it is missing",
    function()
    local _, feed = newSession()
    local searchers, loaded = package.searchers, package.loaded["loom.reload"]
    package.loaded["loom.reload"] = nil
    package.searchers = { function() return "\n\tnot here" end }
    local ok, out = pcall(feed, "reload()")
    package.searchers = searchers
    assert.is_true(ok, out)
    assert.equal("reload: hot reload is not available in this build (no"
      .. " loom.reload module)\n", out)
    package.loaded["loom.reload"] = { reloadNow = function()
      return defer.succeed({ reloaded = 2 })
    end }
    ok, out = pcall(feed, "reload()")
    package.loaded["loom.reload"] = loaded
    assert.is_true(ok, out)
    assert.equal("{reloaded = 2}\n", out)
  end)

  it("help() lists the helpers", function()
    local _, feed = newSession()
    local out = feed("help()")
    for _, name in ipairs({ "connections()", "services()", "await(d)",
      "reload()", "help()" }) do
      assert.is_truthy(out:find(name, 1, true), name)
    end
  end)

  it("compares passwords whole", function()
    assert.is_true(manhole.sameSecret("secret", "secret"))
    assert.is_false(manhole.sameSecret("secreT", "secret"))
    assert.is_false(manhole.sameSecret("secret!", "secret"))
    assert.is_false(manhole.sameSecret("", "secret"))
    assert.is_false(manhole.sameSecret("secret", ""))
  end)
end)

local function tempdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  return dir
end

local function writeFile(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  os.execute(string.format("chmod %s %s", mode, path))
end

-- A client of the manhole at path (unix) or port (tcp).
local function connect(where)
  local proto = Recorder:new()
  local cf = protocol.ClientFactory:new()
  function cf.buildProtocol()
    return proto
  end
  if type(where) == "number" then
    reactor.connectTCP("127.0.0.1", where, cf, { timeout = 5 })
  else
    reactor.connectUNIX(where, cf, { timeout = 5 })
  end
  runUntil(proto.made)
  return proto
end

-- Sends line, waits until the text since it ends with a prompt (">>> "
-- or "... "); returns that text without the prompt.
local function ask(client, line)
  local before = #client:text()
  client.transport:write(line .. "\n")
  local text = runUntil(client:_wait(function(s)
    local since = s:sub(before + 1)
    return since:find(">>> $") or since:find("%.%.%. $")
  end), 5)
  return (text:sub(before + 1):gsub("[>.][>.][>.] $", ""))
end

local function started(svc)
  svc:privilegedStartService()
  svc:startService()
  return svc
end

describe("manhole over a Unix socket", function()
  local dir, svc
  before_each(function()
    dir = tempdir()
  end)
  after_each(function()
    if svc and svc.running then
      runUntil(svc:stopService())
    end
    svc = nil
    os.execute("rm -rf " .. dir)
  end)

  it("creates its socket 0600 and evaluates what a client sends",
    function()
    local path = dir .. "/m.sock"
    svc = started(manhole.service("unix:" .. path))
    local st = core.lstat(path)
    assert.equal("socket", st.type)
    assert.equal(tonumber("600", 8), st.mode)
    local c = connect(path)
    assert.matches("^loom manhole %(Lua 5%.4%)[^\n]*\n>>> $",
      c:waitFor(">>> ", true))
    assert.equal("2\n", ask(c, "1 + 1"))
    assert.equal("", ask(c, "for i = 1, 2 do"))
    assert.equal("1\n2\n", ask(c, "print(i) end"))
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("refuses a directory that others can write to", function()
    os.execute("chmod 777 " .. dir)
    local ok, e = pcall(manhole.service, "unix:" .. dir .. "/m.sock")
    assert.is_false(ok)
    assert.matches("^manhole: refusing unix:.*its directory .* is writable by"
      .. " its group or others %(mode 777%)", e)
    os.execute("chmod 720 " .. dir)
    ok, e = pcall(manhole.service, "unix:" .. dir .. "/m.sock")
    assert.is_false(ok)
    assert.matches("writable by its group or others %(mode 720%)", e)
    assert.is_not_true(os.execute("test -e " .. dir .. "/m.sock"))
    ok, e = pcall(manhole.service, "unix:" .. dir .. "/none/m.sock")
    assert.is_false(ok)
    assert.equal("manhole: cannot use unix:" .. dir .. "/none/m.sock: " .. dir
      .. "/none: no such file or directory", e)
  end)

  it("lists live connections with their peer, protocol and buffer, and"
    .. " the service tree", function()
    local app = application.Application("demo")
    local echoPort = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
      { interface = "127.0.0.1" })
    local path = dir .. "/m.sock"
    svc = manhole.service("unix:" .. path, { root = function() return app end })
    svc:setServiceParent(app)
    started(app)
    local client = net.connect(echoPort)
    runUntil(client.made)
    local c = connect(path)
    c:waitFor(">>> ", true)
    local out = ask(c, "connections()")
    local clientPort = client.transport:getHost().port
    -- Both ends of the echo connection, and of the console's (and any
    -- connection an earlier spec of this process left open).
    local n = tonumber(out:match("^(%d+) connections\n"))
    assert.is_true(n >= 4, out)
    assert.matches("\n  127%.0%.0%.1:" .. clientPort .. "%s+Echo%s+0\n", out)
    assert.matches("\n  127%.0%.0%.1:" .. echoPort:getHost().port
      .. "%s+Recorder%s+0\n", out)
    assert.matches("\n  unix:%(unnamed peer%)%s+Manhole %(this console%)%s+0\n",
      out)
    out = ask(c, "services()")
    assert.matches('^<Application "demo"> %(running%)\n', out)
    assert.matches('\n  <StreamServerEndpointService "manhole"> unix:.*'
      .. '%(running%) listening on ' .. path:gsub("%p", "%%%0"), out)
    assert.equal('"demo"\n', ask(c, "application.name"))
    client.transport:loseConnection()
    runUntil(client.lost)
    assert.matches("^" .. (n - 2) .. " connections\n", ask(c, "connections()"))
    assert.is_nil(ask(c, "connections()"):find("Echo", 1, true))
    c.transport:loseConnection()
    runUntil(c.lost)
    runUntil(app:stopService())
    runUntil(echoPort:stopListening())
  end)

  it("awaits at the prompt without blocking the reactor, holding the lines"
    .. " typed meanwhile", function()
    local later = defer.Deferred()
    local path = dir .. "/m.sock"
    svc = started(manhole.service("unix:" .. path,
      { namespace = { later = later } }))
    local c = connect(path)
    c:waitFor(">>> ", true)
    local before = #c:text()
    c.transport:write("await(later)\n1 + 1\n")
    local ticked = defer.Deferred()
    reactor.callLater(0.05, function() ticked:callback(true) end)
    runUntil(ticked) -- the reactor runs while the session waits
    assert.equal("", c:text():sub(before + 1))
    later:callback("done")
    local out = c:waitFor('"done"\n>>> 2\n>>> ', true)
    assert.equal('"done"\n>>> 2\n>>> ', out:sub(before + 1))
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("keeps the session after an error, and closes on a line too long",
    function()
    local path = dir .. "/m.sock"
    svc = started(manhole.service("unix:" .. path, { maxLineLength = 100 }))
    local c = connect(path)
    c:waitFor(">>> ", true)
    assert.matches("^error: console:1: attempt to call a nil value",
      ask(c, "nothing()"))
    assert.equal("3\n", ask(c, "1 + 2"))
    c.transport:write(("x"):rep(300) .. "\n")
    runUntil(c.lost)
    assert.matches("error: line longer than 100 bytes %(maxLineLength%);"
      .. " closing\n$", c:text())
  end)
end)

describe("manhole over loopback TCP", function()
  local dir, svc
  before_each(function()
    dir = tempdir()
    writeFile(dir .. "/passwd", "s3cret\nignored\n", "600")
  end)
  after_each(function()
    if svc and svc.running then
      runUntil(svc:stopService())
    end
    svc = nil
    os.execute("rm -rf " .. dir)
  end)

  local function tcpManhole(opts)
    opts = opts or {}
    opts.passwdFile = opts.passwdFile or (dir .. "/passwd")
    svc = started(manhole.service("tcp:0:interface=127.0.0.1", opts))
    return svc:getHost().port
  end

  it("asks for the password first, then opens the session", function()
    local c = connect(tcpManhole())
    assert.equal("password: ", c:waitFor("password: ", true))
    c.transport:write("s3cret\r\n")
    c:waitFor(">>> ", true)
    assert.equal("6\n", ask(c, "2 * 3"))
    c.transport:loseConnection()
    runUntil(c.lost)
  end)

  it("refuses a wrong password clearly, after a delay, and closes",
    function()
    local c = connect(tcpManhole({ failDelay = 0.2 }))
    c:waitFor("password: ", true)
    local t0 = core.monotonic()
    c.transport:write("s3cre\n1 + 1\n")
    c:waitFor("wrong password; closing\n", true)
    -- the answer itself waits: a client that closes at once learns nothing
    assert.is_true(core.monotonic() - t0 >= 0.15)
    runUntil(c.lost)
    assert.equal("password: wrong password; closing\n", c:text())
  end)

  it("lets maxPendingLogins connections at once try a password", function()
    local port = tcpManhole({ failDelay = 0.3, maxPendingLogins = 2 })
    local a, b = connect(port), connect(port)
    a:waitFor("password: ", true)
    b:waitFor("password: ", true)
    local lines = {}
    local obs = require("loom.log").addObserver(function(ev) lines[#lines + 1] = ev.text end)
    local c = connect(port)
    runUntil(c.lost)
    local d = connect(port) -- (refused in the same second: one log line)
    runUntil(d.lost)
    require("loom.log").removeObserver(obs)
    assert.equal("too many logins in progress; closing\n", c:text())
    assert.equal("too many logins in progress; closing\n", d:text())
    assert.equal(1, #lines)
    assert.matches("2 connections already waiting to log in", lines[1])
    -- a wrong guess holds its place until answered; then there is room
    a.transport:write("nope\n")
    a:waitFor("wrong password; closing\n", true)
    runUntil(a.lost)
    local e = connect(port)
    e:waitFor("password: ", true)
    e.transport:write("s3cret\n")
    e:waitFor(">>> ", true)
    for _, x in ipairs({ b, e }) do
      x.transport:loseConnection()
      runUntil(x.lost)
    end
  end)

  it("listens on loopback only", function()
    for _, desc in ipairs({ "tcp:0:interface=0.0.0.0",
      "tcp:0:interface=192.168.1.1", "tcp6:0:interface=\\:\\:" }) do
      local ok, e = pcall(manhole.service, desc,
        { passwdFile = dir .. "/passwd" })
      assert.is_false(ok)
      assert.matches("^manhole: refusing .*loopback only", e)
    end
    svc = manhole.service("tcp:0", { passwdFile = dir .. "/passwd" })
    assert.equal("127.0.0.1", svc.endpoint.interface)
  end)

  it("needs a password file that is there, private and not empty",
    function()
    local ok, e = pcall(manhole.service, "tcp:0")
    assert.is_false(ok)
    assert.matches("needs %-%-manhole%-passwd FILE", e)
    ok, e = pcall(manhole.service, "tcp:0", { passwdFile = dir .. "/none" })
    assert.is_false(ok)
    assert.matches("no such file", e)
    writeFile(dir .. "/open", "pw\n", "644")
    ok, e = pcall(manhole.service, "tcp:0", { passwdFile = dir .. "/open" })
    assert.is_false(ok)
    assert.matches("readable by everyone %(mode 644%)", e)
    writeFile(dir .. "/empty", "\nsecond\n", "600")
    ok, e = pcall(manhole.service, "tcp:0", { passwdFile = dir .. "/empty" })
    assert.is_false(ok)
    assert.matches("the first line %(the password%) is empty", e)
  end)
end)
