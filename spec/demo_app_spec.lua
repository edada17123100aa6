-- examples/demo_app.lua (what `make run` starts), on ports picked by the
-- system: echo, chat and finger answer, and Ctrl-C (SIGINT) exits 0.
local testing = require "loom.testing"
local sub = dofile("spec/support/subprocess.lua")

describe("the demo application", function()
  it("serves echo, chat and finger, prints how to connect, and stops "
    .. "cleanly on SIGINT", function()
    local server = sub.start("run examples/demo_app.lua 0 0 0", 3)
    local ok, e = pcall(function()
      local echoPort, chatPort, fingerPort = table.unpack(server.ports)
      local c = sub.connect(echoPort)
      c.transport:write("ping")
      assert.equal("ping", c:waitFor("ping", true))
      c.transport:loseConnection()
      testing.runUntil(c.lost, 5)

      local chat = sub.connect(chatPort)
      chat:waitFor("nick", true)
      chat.transport:loseConnection()
      testing.runUntil(chat.lost, 5)

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
