-- examples/demo_app.lua (what `make run` starts), on ports picked by the
-- system: echo, chat (and its page) and finger answer, and Ctrl-C (SIGINT)
-- exits 0.
local testing = require "loom.testing"
local sub = dofile("spec/support/subprocess.lua")

describe("the demo application", function()
  it("serves echo, chat and finger, prints how to connect, and stops "
    .. "cleanly on SIGINT", function()
    -- Ports: echo, chat, finger, the manhole (its default path), the chat
    -- page.
    local server = sub.start("run examples/demo_app.lua 0 0 0"
      .. " build/demo.manhole 0", 4)
    local ok, e = pcall(function()
      local echoPort, chatPort, webPort, fingerPort =
        table.unpack(server.ports)
      local c = sub.connect(echoPort)
      c.transport:write("ping")
      assert.equal("ping", c:waitFor("ping", true))
      c.transport:loseConnection()
      testing.runUntil(c.lost, 5)

      local chat = sub.connect(chatPort)
      chat:waitFor("nick", true)
      chat.transport:loseConnection()
      testing.runUntil(chat.lost, 5)

      -- The page, at the URL the demo prints.
      local url = "http://127.0.0.1:" .. webPort .. "/"
      local h = io.popen("curl -sS --max-time 5 " .. url)
      local page = h:read("a")
      h:close()
      assert.truthy(page:find("<title>loom chat</title>", 1, true), page)
      local printed = sub.readFile(server.errfile)
      for _ = 1, 100 do
        local line = server.handle:read("l")
        if line == nil then
          break
        end
        server.lines[#server.lines + 1] = line
        if line:find("http://", 1, true) then
          break
        end
      end
      assert.truthy(table.concat(server.lines, "\n"):find("open " .. url
        .. " in a browser", 1, true), table.concat(server.lines, "\n")
        .. printed)

      local f = sub.connect(fingerPort)
      f.transport:write("nobody-here\r\n")
      testing.runUntil(f.lost, 5)
      assert.equal("No such user\r\n", f:text())
    end)
    local status, out = sub.stop(server, "INT")
    assert(ok, e)
    assert.equal(0, status)
    assert.is_truthy((table.concat(server.lines, "\n") .. (out or ""))
      :find("loom demo running", 1, true))
  end)
end)
