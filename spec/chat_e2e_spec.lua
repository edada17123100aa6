-- The chat page in a real browser: headless Chromium (Debian's chromium
-- and chromium-driver, installed by `make chat-e2e-deps` when missing)
-- opens the page, joins, sends a line; a raw TCP line client of the same
-- room sees it and answers; the answer must show in the page (read from
-- the DOM) as text, and a screenshot of the page is saved to
-- build/chat-e2e.png. The browser is driven by spec/support/chat_e2e.py
-- (Python's standard library speaking WebDriver to chromedriver), run as
-- a child process while this spec's reactor serves the room.
local defer = require "loom.defer"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local testing = require "loom.testing"

local W = dofile("spec/support/web_server.lua")
local net = W.net
local chatPlugin = dofile("plugins/chat.lua")
local runUntil = testing.runUntil

-- (CHROMIUM and CHROMEDRIVER name others; the helper reads them too.)
local BROWSER = { os.getenv("CHROMIUM") or "/usr/bin/chromium",
  os.getenv("CHROMEDRIVER") or "/usr/bin/chromedriver" }
local SCREENSHOT = (os.getenv("BUILD") or "build") .. "/chat-e2e.png"

local function executable(path)
  local ok = os.execute("test -x " .. path)
  return ok == true
end

local function haveBrowser()
  for _, path in ipairs(BROWSER) do
    if not executable(path) then
      return false, path
    end
  end
  return true
end

-- Chromium and its driver, installed through the Makefile when missing
-- (as root); nil and why when they cannot be had.
local function ensureBrowser()
  local ok, missing = haveBrowser()
  if ok then
    return true
  end
  if not executable("/usr/bin/make") then
    return nil, missing .. " is missing and there is no make to install it"
  end
  local out, err, code = W.run({ "/usr/bin/make", "-s", "--no-print-directory",
    "chat-e2e-deps" }, 600)
  ok, missing = haveBrowser()
  if ok then
    return true
  end
  local why = ((out or "") .. (err or "")):gsub("%s+$", ""):match("[^\n]*$")
  if why == "" then
    why = "it installed nothing that provides it"
  end
  return nil, string.format("%s is missing and `make chat-e2e-deps` could"
    .. " not install it (exit %s: %s)", missing, tostring(code), why)
end

-- Runs the browser helper; returns its output and exit status. The
-- helper bounds itself (90 s); this bounds it again and kills it (it
-- kills its browser when told to stop).
local Helper = protocol.ProcessProtocol:extend({ __name = "ChatE2EHelper" })
function Helper:init()
  self.out = {}
  self.ended = defer.Deferred()
end
function Helper:outReceived(d) self.out[#self.out + 1] = d end
function Helper:errReceived(d) self.out[#self.out + 1] = d end
function Helper:processEnded(reason)
  self.code = reason.value and reason.value.exitCode
  self.ended:callback(self)
end

local function runHelper(args, timeout)
  local h = Helper:new()
  local argv = { "/usr/bin/python3", "spec/support/chat_e2e.py" }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  local t = reactor.spawnProcess(h, argv[1], argv)
  local ok, e = pcall(runUntil, h.ended, timeout)
  if not ok then
    pcall(t.signalProcess, t, "TERM")
    if not pcall(runUntil, h.ended, 15) then
      pcall(t.signalProcess, t, "KILL")
      runUntil(h.ended, 5)
    end
    error(tostring(e) .. "\n" .. table.concat(h.out), 0)
  end
  return table.concat(h.out), h.code
end

describe("the chat page in headless Chromium", function()
  it("sends a line to a line client and shows its reply, as text, and"
    .. " saves a screenshot", function()
      local ready, why = ensureBrowser()
      if not ready then
        pending("chat e2e SKIPPED: " .. why)
        return
      end
      local room = chatPlugin.ChatFactory:new()
      local server = W.serve(chatPlugin.ChatRoot:new(room,
        chatPlugin.PAGE_DIR), { accessLog = false }, finally)
      local linePort = net.listen(room)
      local liner = net.connect(linePort)
      W.atEnd(function()
        if liner.transport and liner.transport.connected then
          liner.transport:abortConnection()
        end
        for _, m in pairs(room.users) do
          if m.transport and m.transport.connected then
            m.transport:abortConnection()
          end
        end
        runUntil(linePort:stopListening())
      end, finally)
      runUntil(liner.made, 5)
      liner.transport:write("liner\n")
      liner:waitFor("* hello liner!", true)

      -- The reply carries markup: the page must show it, not make it.
      local said = "hello from the browser"
      local reply = "hello from the terminal <b>not bold</b>"
        .. " <img src=x onerror=alert(1)> & done"
      local replied = false
      function liner.onData()
        if not replied and liner:text():find("<webby> " .. said .. "\r\n",
            1, true) then
          replied = true
          liner.transport:write(reply .. "\n")
        end
      end
      os.remove(SCREENSHOT)
      local out, code = runHelper({ server.url("/"), "webby", said,
        "<liner> " .. reply, SCREENSHOT }, 120)
      assert.equal(0, code, out)
      assert.truthy(out:find("\nOK\n", 1, true), out)
      assert.is_true(replied, "the line client never saw the browser's line")
      assert.truthy(liner:text():find("* webby has joined\r\n<webby> " .. said
        .. "\r\n", 1, true), liner:text())
      local f = assert(io.open(SCREENSHOT, "rb"), "no " .. SCREENSHOT)
      local png = f:read("a")
      f:close()
      assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
      assert.is_true(#png > 1000)
      -- The browser left: the room saw it go.
      liner:waitFor("* webby has left\r\n", true, 10)
    end)
end)
