-- The chat plugin's web side (plugins/chat.lua, plugins/chat/): the page
-- and the WebSocket at /ws, where browser members share the room with
-- line members under the same rules and limits. loom's own WebSocket
-- client stands in for the browser (spec/chat_e2e_spec.lua runs Chromium).
local defer = require "loom.defer"
local log = require "loom.log"
local protocol = require "loom.protocol"
local task = require "loom.task"
local testing = require "loom.testing"
local web = require "loom.web"
local plugin = require "loom.plugin"

local W = dofile("spec/support/web_server.lua")
local net = W.net
local chatPlugin = dofile("plugins/chat.lua")
local runUntil = testing.runUntil

-- A browser stand-in: records every message, waits for one by pattern.
local WsMember = protocol.Protocol:extend({ __name = "WsMember" })
function WsMember:init()
  self.messages = {}
  self.lost = defer.Deferred()
end
function WsMember:messageReceived(msg, isBinary)
  self.messages[#self.messages + 1] = msg
  self.binary = self.binary or isBinary
end
function WsMember:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end
function WsMember:text()
  return table.concat(self.messages, "\n")
end
function WsMember:waitFor(text, timeout)
  net.waitFor(function()
    for _, m in ipairs(self.messages) do
      if m:find(text, 1, true) then
        return true
      end
    end
    return false
  end, timeout or 5)
end

-- A room with the page and the line port, both on loopback port 0; torn
-- down when the spec ends.
local function startRoom(opts, finally)
  local room = chatPlugin.ChatFactory:new(opts)
  local server = W.serve(chatPlugin.ChatRoot:new(room, chatPlugin.PAGE_DIR),
    { accessLog = false }, finally)
  local linePort = net.listen(room)
  local lineClients = {}
  W.atEnd(function()
    for _, c in ipairs(lineClients) do
      if c.transport and c.transport.connected then
        c.transport:abortConnection()
      end
    end
    for _, m in pairs(room.users) do
      if m.transport and m.transport.connected then
        m.transport:abortConnection()
      end
    end
    runUntil(linePort:stopListening())
  end, finally)
  function server.line(nick)
    local c = net.connect(linePort)
    lineClients[#lineClients + 1] = c
    runUntil(c.made)
    if nick then
      c.transport:write(nick .. "\n")
      c:waitFor("* hello " .. nick .. "!", true)
    end
    return c
  end
  function server.browser(nick, wsOpts)
    local m = WsMember:new()
    local p = runUntil(web.connectWebSocket("ws://127.0.0.1:"
      .. server.portNumber .. "/ws", {
        buildProtocol = function() return m end }, wsOpts), 5)
    lineClients[#lineClients + 1] = p.transport
    if nick then
      m:waitFor("What is your nickname?")
      p.transport:sendMessage(nick)
      m:waitFor("* hello " .. nick .. "!")
    end
    return m
  end
  server.room = room
  return server
end

-- Runs f with log lines gathered (kept off the spec's output).
local function logged(f)
  local lines = {}
  local function observe(ev)
    lines[#lines + 1] = ev.text
  end
  log.addObserver(observe)
  local level = log.level
  log.level = "error"
  local ok, e = pcall(f)
  log.level = level
  log.removeObserver(observe)
  assert(ok, e)
  return table.concat(lines, "\n")
end

describe("chat --web: the page", function()
  it("serves index.html, chat.js and chat.css with a strict CSP, nothing"
    .. " outside its directory", function()
      local server = startRoom({}, finally)
      local out, _, code = W.curl("-i", server.url("/"))
      assert.equal(0, code)
      assert.truthy(out:find("HTTP/1.1 200", 1, true), out)
      assert.truthy(out:find("Content-Type: text/html", 1, true), out)
      assert.truthy(out:find("Content-Security-Policy: default-src 'none';"
        .. " script-src 'self'", 1, true), out)
      assert.truthy(out:find("frame-ancestors 'none'", 1, true), out)
      assert.truthy(out:find('<script src="chat.js"', 1, true), out)
      for path, ctype in pairs({ ["/chat.js"] = "javascript",
        ["/chat.css"] = "text/css" }) do
        local js, _, c = W.curl("-i", server.url(path))
        assert.equal(0, c)
        assert.truthy(js:find("HTTP/1.1 200", 1, true), path)
        assert.truthy(js:match("Content%-Type: [^\r\n]*" .. ctype), js)
      end
      for _, path in ipairs({ "/%2e%2e/chat.lua", "/..%2fchat.lua",
        "/nothing.html" }) do
        local text = W.exchangeUntilClosed(server, "GET " .. path
          .. " HTTP/1.0\r\n\r\n")
        assert.truthy(text:find("^HTTP/1.%d 404"), path .. ": " .. text)
      end
      -- /ws without an upgrade is refused, not served as a file.
      local text
      logged(function()
        text = W.exchangeUntilClosed(server,
          "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      end)
      assert.truthy(text:find("^HTTP/1.1 426"), text)
    end)

  it("shows what the room says as text only (textContent, no innerHTML)",
    function()
      local f = assert(io.open(chatPlugin.PAGE_DIR .. "/chat.js"))
      local js = f:read("a")
      f:close()
      assert.truthy(js:find("textContent", 1, true))
      assert.is_nil(js:find("innerHTML", 1, true))
      assert.is_nil(js:find("insertAdjacentHTML", 1, true))
      assert.is_nil(js:find("document.write", 1, true))
      assert.is_nil(js:find("eval(", 1, true))
    end)
end)

describe("chat --web: browsers and line members in one room", function()
  it("relay both ways, with the same nicknames, commands and notices",
    function()
      local server = startRoom({}, finally)
      local liner = server.line("liner")
      local webby = server.browser()
      webby:waitFor("Welcome to the loom chat. What is your nickname?")
      local ws = webby.transport
      ws:sendMessage("liner")
      webby:waitFor("* the nickname 'liner' is taken, try another:")
      ws:sendMessage("<b>")
      webby:waitFor("* '<b>' is not a valid nickname")
      ws:sendMessage("webby")
      webby:waitFor("* hello webby! Here: liner.")
      liner:waitFor("* webby has joined\r\n", true)
      ws:sendMessage("hello from the browser")
      liner:waitFor("<webby> hello from the browser\r\n", true)
      liner.transport:write("hello from the terminal\n")
      webby:waitFor("<liner> hello from the terminal")
      -- One message per line, without the line protocol's CRLF.
      for _, m in ipairs(webby.messages) do
        assert.is_nil(m:find("[\r\n]"), m)
      end
      assert.is_falsy(webby.binary)
      ws:sendMessage("/who")
      webby:waitFor("* here: liner, webby")
      ws:sendMessage("/nick webster")
      liner:waitFor("* webby is now known as webster\r\n", true)
      ws:sendMessage("/quit")
      webby:waitFor("* bye!")
      runUntil(webby.lost, 5)
      assert.is_truthy(webby.reason.value.wasClean)
      liner:waitFor("* webster has left\r\n", true)
      assert.is_nil(server.room.users.webster)
    end)

  it("take a message of several lines as several lines, so no one can"
    .. " forge another's", function()
      local server = startRoom({}, finally)
      local liner = server.line("liner")
      local webby = server.browser("webby")
      webby.transport:sendMessage("one\r\n<liner> forged\ntwo\n")
      liner:waitFor("<webby> two\r\n", true)
      assert.truthy(liner:text():find("<webby> one\r\n<webby> <liner>"
        .. " forged\r\n<webby> two\r\n", 1, true), liner:text())
    end)

  it("give a browser valid UTF-8 whatever bytes a line member sends",
    function()
      local server = startRoom({}, finally)
      local liner = server.line("liner")
      local webby = server.browser("webby")
      liner.transport:write("caf\xc3\xa9 \xff\xfe \xc0\xaf \xed\xa0\x80 ok\n")
      webby:waitFor("ok")
      assert.equal("<liner> café \u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD}"
        .. " \u{FFFD}\u{FFFD}\u{FFFD} ok", webby.messages[#webby.messages])
      liner.transport:write("still here\n")
      webby:waitFor("<liner> still here")
      assert.is_true(webby.transport.connected)
    end)

  it("answer a binary message with a notice", function()
    local server = startRoom({}, finally)
    local webby = server.browser("webby")
    webby.transport:sendMessage("\1\2\3", true)
    webby:waitFor("* only text messages are understood here")
  end)
end)

describe("chat --web: limits", function()
  it("a message over 16384 bytes closes that browser with 1009; the room"
    .. " goes on", function()
      local server = startRoom({}, finally)
      local liner = server.line("liner")
      local webby = server.browser("webby")
      local text = logged(function()
        webby.transport:sendMessage(("x"):rep(16385))
        runUntil(webby.lost, 5)
      end)
      assert.equal(1009, webby.reason.value.code)
      assert.truthy(text:find("close code 1009", 1, true), text)
      liner:waitFor("* webby has left\r\n", true)
      local other = server.browser("other")
      other.transport:sendMessage(("y"):rep(16384))
      liner:waitFor("<other> " .. ("y"):rep(16384) .. "\r\n", true)
    end)

  it("--rate holds browsers and line members alike (task.Clock)", function()
    local clock = task.Clock()
    local server = startRoom({ rate = 5, clock = clock }, finally)
    local liner = server.line("liner")
    local webby = server.browser("webby")
    -- 2 * rate pass at once (the nickname was one), the rest are refused
    -- with one notice.
    local burst = {}
    for i = 1, 14 do
      burst[#burst + 1] = "w" .. i
    end
    local said = logged(function()
      webby.transport:sendMessage(table.concat(burst, "\n"))
      webby:waitFor("* slow down: at most 5 lines a second; lines dropped")
    end)
    assert.truthy(said:find("chat: webby sends more than 5 lines a second"
      .. " (--rate): lines dropped", 1, true), said)
    liner:waitFor("<webby> w9\r\n", true)
    clock:advance(1)
    webby.transport:sendMessage("after a second")
    liner:waitFor("<webby> after a second\r\n", true)
    assert.is_nil(liner:text():find("w10", 1, true))
    local notices = 0
    for _, m in ipairs(webby.messages) do
      if m:find("slow down", 1, true) then
        notices = notices + 1
      end
    end
    assert.equal(1, notices)
    local lines = {}
    for i = 1, 12 do
      lines[i] = "l" .. i
    end
    logged(function()
      liner.transport:write(table.concat(lines, "\n") .. "\n")
      liner:waitFor("* slow down: at most 5 lines a second", true)
    end)
    -- liner's bucket was refilled by the second above: 10 pass.
    webby:waitFor("<liner> l10")
    net.sleep(0.05)
    assert.is_nil(webby:text():find("l11", 1, true), webby:text())
  end)

  it("a browser that does not read is dropped past --max-queue, logged by"
    .. " name", function()
      local server = startRoom({ maxQueue = 128 * 1024, rate = 0 }, finally)
      local liner = server.line("liner")
      local webby = server.browser("webby")
      local cat = server.line("cat")
      -- webby stops reading: its TCP window fills, then the server's queue.
      webby.transport:pauseProducing()
      local batch = (("a"):rep(1000) .. "\n"):rep(64)
      local text = logged(function()
        net.waitFor(function()
          if server.room.users.webby == nil then
            return true
          end
          if liner.transport:bufferedBytes() == 0 then
            liner.transport:write(batch)
          end
          return false
        end, 30)
      end)
      assert.truthy(text:find("chat: disconnecting webby: more than 131072"
        .. " bytes of chat left unread (--max-queue)", 1, true), text)
      cat:waitFor("* webby has left\r\n", true, 10)
      liner.transport:write("still here\n")
      cat:waitFor("<liner> still here\r\n", true, 10)
    end)

  it("a silent browser is disconnected after --timeout, as a line member",
    function()
      local server = startRoom({ timeout = 0.3 }, finally)
      local webby
      local text = logged(function()
        webby = server.browser("webby")
        runUntil(webby.lost, 5)
      end)
      assert.truthy(webby:text():find("* disconnected: idle for too long",
        1, true), webby:text())
      assert.truthy(text:find("chat: disconnecting webby: silent for 0.3 s",
        1, true), text)
      assert.is_nil(server.room.users.webby)
    end)

  it("refuses a page of another origin (cross-site WebSocket)", function()
    local server = startRoom({}, finally)
    local url = "ws://127.0.0.1:" .. server.portNumber .. "/ws"
    local f = WsMember:new()
    local factory = { buildProtocol = function() return f end }
    local ok, e
    logged(function()
      ok, e = pcall(runUntil, web.connectWebSocket(url, factory,
        { origin = "http://evil.example" }), 5)
    end)
    assert.is_false(ok)
    assert.truthy(tostring(e.value):find("403", 1, true), tostring(e.value))
    local same = runUntil(web.connectWebSocket(url, factory,
      { origin = "http://127.0.0.1:" .. server.portNumber }), 5)
    f:waitFor("What is your nickname?")
    same.transport:loseConnection()
    runUntil(f.lost, 5)
  end)
end)

describe("chat --web: the plugin's options", function()
  local p = assert(plugin.load("plugins/chat.lua", "chat"))

  local function make(argv)
    local opts = assert(plugin.parseOptions(p, argv, 1))
    return p.makeService(opts)
  end

  it("is off by default; a port number is on loopback", function()
    local svc = make({})
    assert.equal("127.0.0.1", svc.endpoint.interface)
    assert.is_nil(svc.iter)
    local both = make({ "--port", "tcp:0:interface=127.0.0.1", "--web", "0" })
    local children = {}
    for child in both:iter() do
      children[#children + 1] = child
    end
    assert.equal(2, #children)
    assert.equal("127.0.0.1", children[2].endpoint.interface)
    assert.truthy(children[2].factory.resource.children.ws)
  end)

  it("warns when the page is served beyond loopback, refuses bad values",
    function()
      local text = logged(function()
        make({ "--web", "tcp:0" })
      end)
      assert.truthy(text:find("chat: the page is served on 0.0.0.0, not"
        .. " loopback only", 1, true), text)
      local ok, e = pcall(make, { "--rate", "-1" })
      assert.is_false(ok)
      assert.equal("--rate must be 0 or more lines a second", e)
      ok, e = pcall(make, { "--web", "bogus:1" })
      assert.is_false(ok)
      assert.truthy(tostring(e):find("bogus", 1, true), tostring(e))
    end)

  it("runs from the command line: the page and the line port", function()
    local sub = dofile("spec/support/subprocess.lua")
    local server = sub.start("chat --port tcp:0:interface=127.0.0.1"
      .. " --web tcp:0:interface=127.0.0.1", 2)
    local ok, e = pcall(function()
      local out, _, code = W.curl("-s", "http://127.0.0.1:"
        .. server.ports[2] .. "/")
      assert.equal(0, code)
      assert.truthy(out:find("<title>loom chat</title>", 1, true), out)
    end)
    assert.equal(0, (sub.stop(server)))
    assert(ok, e)
  end)
end)

describe("loom chat --web --reload", function()
  it("keeps browsers and line members, and gives both the edited code",
    function()
      local sub = dofile("spec/support/subprocess.lua")
      local dir = sub.tmpdir()
      finally(function() os.execute("rm -rf " .. dir) end)
      local src = sub.readFile("plugins/chat.lua")
      sub.writeFile(dir .. "/chat.lua", src)
      os.execute("mkdir " .. dir .. "/chat && cp plugins/chat/* " .. dir
        .. "/chat/")
      local server = sub.start("chat --port tcp:0:interface=127.0.0.1"
        .. " --web tcp:0:interface=127.0.0.1 --reload", 2,
        "LOOM_PLUGIN_PATH=" .. dir)
      local ok, e = pcall(function()
        local liner = sub.connect(server.ports[1])
        liner:waitFor("nickname?", true)
        liner.transport:write("liner\n")
        liner:waitFor("hello liner", true)
        local webby = WsMember:new()
        local p = runUntil(web.connectWebSocket("ws://127.0.0.1:"
          .. server.ports[2] .. "/ws", {
            buildProtocol = function() return webby end }), 5)
        p.transport:sendMessage("webby")
        webby:waitFor("* hello webby!")

        local edited = src:gsub('"%* here: "', '"* present: "')
        assert.are_not.equal(src, edited)
        sub.writeFile(dir .. "/chat.lua", edited)
        net.waitFor(function()
          return sub.readFile(server.errfile):find("reload: 1 file reloaded",
            1, true) ~= nil
        end, 10)
        p.transport:sendMessage("/who")
        webby:waitFor("* present: liner, webby")
        liner.transport:write("/who\n")
        liner:waitFor("* present: liner, webby\r\n", true)
        p.transport:sendMessage("after the reload")
        liner:waitFor("<webby> after the reload\r\n", true)
        assert.is_true(p.transport.connected)
        p.transport:loseConnection()
        runUntil(webby.lost, 5)
        liner.transport:loseConnection()
        runUntil(liner.lost, 5)
      end)
      assert.equal(0, (sub.stop(server)))
      assert(ok, e)
    end)
end)

describe("chat.toUtf8", function()
  -- The per-byte rule, as the plugin had it before it went a run at a time.
  local function reference(s)
    local out, i = {}, 1
    while true do
      local ok, bad = utf8.len(s, i)
      if ok then
        out[#out + 1] = s:sub(i)
        return table.concat(out)
      end
      out[#out + 1] = s:sub(i, bad - 1)
      out[#out + 1] = "\u{FFFD}"
      i = bad + 1
    end
  end

  it("agrees with the byte-at-a-time rule on random bytes", function()
    math.randomseed(11)
    local pool = { "a", "é", "€", "😀", "\x80", "\xbf", "\xc0", "\xc3", "\xe2",
      "\xed\xa0", "\xf4\x90", "\xff", "\x82\xac" }
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 10) do t[i] = pool[math.random(#pool)] end
      local s = table.concat(t)
      assert.equal(reference(s), chatPlugin.toUtf8(s), string.format("%q", s))
    end
  end)

  it("keeps valid UTF-8 and replaces each bad byte with U+FFFD", function()
    local f = chatPlugin.toUtf8
    assert.equal("plain", f("plain"))
    assert.equal("é€😀", f("é€😀"))
    assert.equal("a\u{FFFD}b", f("a\xffb"))
    assert.equal("\u{FFFD}\u{FFFD}", f("\xc0\xaf")) -- overlong /
    assert.equal("x\u{FFFD}\u{FFFD}", f("x\xe2\x82")) -- cut short
    assert.equal("\u{FFFD}\u{FFFD}\u{FFFD}", f("\xed\xa0\x80")) -- surrogate
    assert.equal("\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}", f("\xf4\x90\x80\x80"))
    assert.is_truthy(utf8.len(f(string.char(table.unpack((function()
      local t = {}
      for i = 0, 255 do
        t[#t + 1] = i
      end
      return t
    end)())))))
  end)
end)
