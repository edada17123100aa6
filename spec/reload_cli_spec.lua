-- Hot reload from the command line: `loom run app.lua --reload`, `loom
-- PLUGIN --reload`, SIGHUP and `loom reload PIDFILE`, against a real loom
-- process (under timeout) and a real connection to it.
local sub = dofile("spec/support/subprocess.lua")

local dir

before_each(function()
  dir = sub.tmpdir()
end)

after_each(function()
  os.execute("rm -rf " .. dir)
end)

-- The module the application serves: its reply is what the specs edit.
local function greeter(word)
  return [[
local protocol = require "loom.protocol"
local M = {}
M.Greeter = protocol.Protocol:extend({ __name = "Greeter" })
function M.Greeter:dataReceived(data)
  self.count = (self.count or 0) + 1
  self.transport:write("]] .. word .. [[ " .. self.count .. "\n")
end
return M
]]
end

local APP = [[
package.path = %q .. "/?.lua;" .. package.path
local application = require "loom.application"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local greeter = require "greeter"
local app = application.Application("greeter")
strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(greeter.Greeter)):setServiceParent(app)
return app
]]

local function writeApp()
  sub.writeFile(dir .. "/greeter.lua", greeter("hello"))
  sub.writeFile(dir .. "/app.lua", APP:format(dir))
end

-- Sends "x" and waits for `want` (a plain substring of all the text).
local function ask(client, want)
  client.transport:write("x")
  return client:waitFor(want, true, 5)
end

-- Waits until the server's log (its stderr) has `text` n times.
local function logSays(server, text, n)
  sub.waitUntil(function()
    local log, count = sub.readFile(server.errfile), 0
    for _ in log:gmatch(text:gsub("%p", "%%%0")) do
      count = count + 1
    end
    return count >= (n or 1)
  end, 5)
end

local function stop(server)
  local status, _, err = sub.stop(server)
  assert.equal(0, status, err)
  return err
end

describe("loom run app.lua --reload", function()
  it("reloads an edited module: the live connection keeps its state and"
    .. " runs the new code; a broken edit is rolled back", function()
    writeApp()
    local pidfile = dir .. "/pid"
    local server = sub.start("--pidfile " .. pidfile .. " run " .. dir
      .. "/app.lua --reload")
    local c = sub.connect(server.port)
    ask(c, "hello 1\n")
    sub.writeFile(dir .. "/greeter.lua", greeter("bye"))
    logSays(server, "reload: 1 file reloaded")
    ask(c, "bye 2\n")
    -- A broken edit: logged with file:line, the old code keeps running.
    sub.writeFile(dir .. "/greeter.lua", greeter("bye") .. "\nlocal = 1\n")
    logSays(server, "reload failed: 1 error, nothing swapped")
    ask(c, "bye 3\n")
    -- A rename-over save.
    sub.writeFile(dir .. "/greeter.tmp", greeter("again"))
    assert(os.rename(dir .. "/greeter.tmp", dir .. "/greeter.lua"))
    logSays(server, "reload: 1 file reloaded", 2)
    ask(c, "again 4\n")

    -- SIGHUP and `loom reload PIDFILE` reach it too: nothing changed now.
    local out, err, status = sub.loom("reload " .. pidfile)
    assert.equal(0, status, err)
    assert.matches("^sent SIGHUP to loom process %d+", out)
    logSays(server, "reload: no file changed")
    c.transport:loseConnection()
    local log = stop(server)
    assert.truthy(log:find(dir .. "/greeter.lua:10: ", 1, true), log)
    assert.matches("received SIGHUP, no log file to reopen\n.-reload: no"
      .. " file changed %(2 files tracked%)", log)
  end)
end)

describe("loom run app.lua --reload, one file", function()
  it("reloads the application file itself: its class, matched by name,"
    .. " is patched; the service tree it makes again is not started",
    function()
    local function app(word)
      return [[
local service = require "loom.application"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local nargs = select("#", ...)
local Echo = protocol.Protocol:extend({ __name = "Echo" })
function Echo:dataReceived(data)
  self.transport:write("]] .. word .. [[ " .. data .. " " .. nargs .. "\n")
end
application = service.Application("one file")
strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(Echo)):setServiceParent(application)
]]
    end
    sub.writeFile(dir .. "/app.lua", app("one"))
    local server = sub.start("run " .. dir .. "/app.lua --reload a b")
    local c = sub.connect(server.port)
    c.transport:write("x")
    c:waitFor("one x 2\n", true)
    sub.writeFile(dir .. "/app.lua", app("two"))
    logSays(server, "reload: 1 file reloaded")
    c.transport:write("y")
    c:waitFor("two y 2\n", true) -- the arguments given again
    c.transport:loseConnection()
    -- One listening port: the tree made again was never started.
    local status, rest, err = sub.stop(server)
    assert.equal(0, status, err)
    assert.equal("", rest)
    assert.matches("listening on 127%.0%.0%.1:%d+$",
      table.concat(server.lines, "\n"))
  end)
end)

describe("reloading by hand, without --reload", function()
  it("SIGHUP reloads the changed files", function()
    writeApp()
    local server = sub.start("run " .. dir .. "/app.lua")
    local c = sub.connect(server.port)
    ask(c, "hello 1\n")
    sub.writeFile(dir .. "/greeter.lua", greeter("hup"))
    sub.sleep(0.3)
    ask(c, "hello 2\n") -- no watcher: nothing happens on its own
    local pid = tonumber(sub.readFile(string.format(
      "/proc/%d/task/%d/children", server.pid, server.pid)):match("%d+"))
    os.execute("kill -HUP " .. pid)
    logSays(server, "reload: 1 file reloaded")
    ask(c, "hup 3\n")
    c.transport:loseConnection()
    stop(server)
  end)

  it("loom reload PIDFILE reloads them", function()
    writeApp()
    local pidfile = dir .. "/pid"
    local server = sub.start("--pidfile " .. pidfile .. " run " .. dir
      .. "/app.lua")
    local c = sub.connect(server.port)
    ask(c, "hello 1\n")
    sub.writeFile(dir .. "/greeter.lua", greeter("by hand"))
    local out, err, status = sub.loom("reload " .. pidfile)
    assert.equal(0, status, err)
    assert.equal("", err)
    assert.matches("^sent SIGHUP to loom process %d+", out)
    logSays(server, "reload: 1 file reloaded")
    ask(c, "by hand 2\n")
    c.transport:loseConnection()
    stop(server)
  end)
end)

describe("loom PLUGIN --reload", function()
  it("reloads the plugin file itself", function()
    local function plugin(word)
      return [[
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local Hi = protocol.Protocol:extend({ __name = "Hi" })
function Hi:dataReceived(data)
  self.n = (self.n or 0) + 1
  self.transport:write("]] .. word .. [[ " .. self.n .. "\n")
end
return { name = "hi", description = "says hi",
  options = { { "port", "p", "tcp:0:interface=127.0.0.1", "where" } },
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Hi))
  end }
]]
    end
    sub.writeFile(dir .. "/hi.lua", plugin("hi"))
    local server = sub.start("hi --reload", 1, "LOOM_PLUGIN_PATH=" .. dir)
    local c = sub.connect(server.port)
    ask(c, "hi 1\n")
    sub.writeFile(dir .. "/hi.lua", plugin("ho"))
    logSays(server, "reload: 1 file reloaded")
    ask(c, "ho 2\n")
    c.transport:loseConnection()
    stop(server)
  end)
end)

describe("loom chat --reload", function()
  it("keeps every member and nickname across a good edit and a broken"
    .. " one", function()
    local src = sub.readFile("plugins/chat.lua")
    sub.writeFile(dir .. "/chat.lua", src)
    local server = sub.start("chat --port tcp:0:interface=127.0.0.1 --reload",
      1, "LOOM_PLUGIN_PATH=" .. dir)
    local alice, bob = sub.connect(server.port), sub.connect(server.port)
    alice:waitFor("nickname?", true)
    alice.transport:write("alice\n")
    alice:waitFor("hello alice", true)
    bob:waitFor("nickname?", true)
    bob.transport:write("bob\n")
    bob:waitFor("hello bob", true)

    local edited = src:gsub('"%* here: "', '"* present: "')
    assert.are_not.equal(src, edited)
    sub.writeFile(dir .. "/chat.lua", edited)
    logSays(server, "reload: 1 file reloaded")
    alice.transport:write("/who\n")
    alice:waitFor("* present: alice, bob\r\n", true)

    sub.writeFile(dir .. "/chat.lua", edited .. "\nthis is not Lua\n")
    logSays(server, "reload failed: 1 error, nothing swapped")
    bob.transport:write("/who\n")
    bob:waitFor("* present: alice, bob\r\n", true)
    bob.transport:write("still here\n")
    alice:waitFor("<bob> still here\r\n", true)
    -- A newcomer is served by the new code too.
    local carol = sub.connect(server.port)
    carol:waitFor("nickname?", true)
    carol.transport:write("carol\n/who\n")
    carol:waitFor("* present: alice, bob, carol\r\n", true)
    for _, c in ipairs({ alice, bob, carol }) do
      assert.is_nil(c.reason)
      c.transport:loseConnection()
    end
    local log = stop(server)
    assert.truthy(log:find(dir .. "/chat.lua:", 1, true), log)
  end)
end)

describe("loom chat --reload with many members", function()
  it("drops none of 200 members across a good and a broken edit", function()
    local N = 200
    local src = sub.readFile("plugins/chat.lua")
    sub.writeFile(dir .. "/chat.lua", src)
    local server = sub.start("chat --port tcp:0:interface=127.0.0.1 --reload",
      1, "LOOM_PLUGIN_PATH=" .. dir)
    local members = {}
    for i = 1, N do
      local c = sub.connect(server.port)
      c.transport:write("u" .. i .. "\n")
      members[i] = c
    end
    for i, c in ipairs(members) do
      c:waitFor("hello u" .. i .. "!", true)
    end
    local edited = src:gsub('"%* here: "', '"* present: "')
    sub.writeFile(dir .. "/chat.lua", edited)
    logSays(server, "reload: 1 file reloaded")
    sub.writeFile(dir .. "/chat.lua", edited .. "\nbroken(\n")
    logSays(server, "reload failed")
    for _, c in ipairs(members) do
      c.transport:write("/who\n")
    end
    for _, c in ipairs(members) do
      c:waitFor("* present: u1, u10, u100,", true)
    end
    members[1].transport:write("bye all\n")
    for i = 2, N do
      members[i]:waitFor("<u1> bye all\r\n", true)
    end
    for _, c in ipairs(members) do
      assert.is_nil(c.reason)
      c.transport:loseConnection()
    end
    stop(server)
  end)
end)

describe("examples/reload", function()
  it("serves the edited greeting and commands to the members already"
    .. " there", function()
    local room = sub.readFile("examples/reload/room.lua")
    sub.writeFile(dir .. "/room.lua", room)
    sub.writeFile(dir .. "/server.lua",
      sub.readFile("examples/reload/server.lua"))
    local server = sub.start("run " .. dir .. "/server.lua --reload 0")
    local alice = sub.connect(server.port)
    alice:waitFor("Welcome to the live room. Your nickname?\r\n", true)
    alice.transport:write("alice\n")
    alice:waitFor("* hello alice", true)

    local edited = room:gsub("Welcome to the live room%. Your nickname%?",
      "Hi, who are you?"):gsub('"%* here: "', '"* in the room: "')
      :gsub("\nfunction M%.commands%.quit", [[

function M.commands.lines(member)
  member:say("* lines so far: " .. M.stats.lines)
end
%0]])
    sub.writeFile(dir .. "/room.lua", edited)
    logSays(server, "reload: 1 file reloaded")
    alice.transport:write("/who\n/lines\n/help\n")
    alice:waitFor("* in the room: alice\r\n* lines so far: 2\r\n"
      .. "* commands: /help /lines /me /quit /who\r\n", true)
    local bob = sub.connect(server.port)
    bob:waitFor("Hi, who are you?\r\n", true)
    bob.transport:write("bob\n")
    alice:waitFor("* bob joined", true)
    alice.transport:loseConnection()
    bob.transport:loseConnection()
    stop(server)
  end)
end)

describe("loom reload PIDFILE refuses", function()
  it("a missing pid file, in one line", function()
    local out, err, status = sub.loom("reload " .. dir .. "/none.pid")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: reload: " .. dir .. "/none.pid: No such file or"
      .. " directory (is loom running with --pidfile " .. dir
      .. "/none.pid?)\n", err)
  end)

  it("a stale pid file (no loom holds it), in one line", function()
    -- This spec's own process is alive but holds no lock on the file.
    local pid = sub.readFile("/proc/self/stat"):match("^%d+")
    sub.writeFile(dir .. "/stale.pid", pid .. "\n")
    local out, err, status = sub.loom("reload " .. dir .. "/stale.pid")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: reload: " .. dir .. "/stale.pid is stale: process "
      .. pid .. " does not hold it (not a running loom)\n", err)
  end)

  it("a pid file that holds no pid, in one line", function()
    sub.writeFile(dir .. "/junk.pid", "not a pid\n")
    local out, err, status = sub.loom("reload " .. dir .. "/junk.pid")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: reload: " .. dir .. "/junk.pid holds no pid and no"
      .. " running loom holds it\n", err)
  end)

  it("no PIDFILE", function()
    local _, err, status = sub.loom("reload")
    assert.equal(1, status)
    assert.equal("loom: reload: missing PIDFILE (usage: loom reload"
      .. " PIDFILE)\n", err)
  end)
end)
