-- make soak's hostile peers (fuzz/*_soak.lua), two seconds each, so every
-- run of the suite (and make sanitize's, in the ASan+UBSan loom) sends the
-- HTTP server and client, WebSocket, TLS and the demo's plugins a little
-- of everything they must survive. A soak exits 0 and prints "soak: ok:"
-- only when nothing was logged as an error, every request and connection
-- settled, and its service still works afterwards.
local sub = dofile("spec/support/subprocess.lua")

local SOAKS = { "web_soak", "web_client_soak", "websocket_soak", "tls_soak",
  "plugins_soak" }

describe("make soak's peers, briefly", function()
  for _, name in ipairs(SOAKS) do
    it(name .. " for 2 s: nothing logged as an error, all settled, the"
      .. " service still works", function()
      local out, err, status = sub.loom("run fuzz/" .. name .. ".lua 2 1")
      assert.equal(0, status, out .. err:sub(-3000))
      assert.matches("\nsoak: ok: [^\n]+\n$", out)
    end)
  end
end)
