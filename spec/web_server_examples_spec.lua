-- examples/web/json_api.lua and static.lua, run as `loom run` subprocesses
-- and fetched with curl.
local W = dofile("spec/support/web_server.lua")
local sub = dofile("spec/support/subprocess.lua")
local json = require "loom.json"

local function start(args, n)
  local server = sub.start("run " .. args, n)
  W.atEnd(function()
    if not server.stopped then sub.stop(server) end
  end, finally)
  return server, "http://127.0.0.1:" .. server.port
end

describe("examples/web", function()
  it("json_api: POST, list, get one, 404, 400", function()
    local _, base = start("examples/web/json_api.lua 0")
    local out = W.curl("-d", '{"text":"first"}', base .. "/notes")
    assert.same({ id = 1 }, json.decode(out))
    W.curl("-d", '{"text":"second"}', base .. "/notes")
    assert.same({ notes = { { id = 1, text = "first" }, { id = 2, text = "second" } } },
      json.decode((W.curl(base .. "/notes"))))
    assert.same({ id = 2, text = "second" }, json.decode((W.curl(base .. "/notes/2"))))
    out = W.curl("-i", base .. "/notes/9")
    assert.matches("^HTTP/1.1 404", out)
    assert.matches("Content%-Type: application/json", out)
    out = W.curl("-i", "-d", "not json", base .. "/notes")
    assert.matches("^HTTP/1.1 400", out)
  end)

  it("finger_web: the finger service over finger and the web", function()
    local server = start("examples/web/finger_web.lua 0 0", 2)
    local base = "http://127.0.0.1:" .. server.ports[2]
    local out = W.curl(base .. "/")
    assert.equals('<h1>Users</h1><ul><li><a href="ann">ann</a></li>'
      .. '<li><a href="glyph">glyph</a></li><li><a href="moshez">moshez</a></li></ul>\n', out)
    assert.equals("<h1>moshez</h1><p>Happy and well</p>\n", (W.curl(base .. "/moshez")))
    assert.equals("<h1>&lt;x&gt;</h1><p>No such user</p>\n", (W.curl(base .. "/%3Cx%3E")))
    local c = sub.connect(server.ports[1])
    c.transport:write("glyph\r\n")
    require("loom.testing").runUntil(c.lost, 5)
    assert.equals("Busy writing Twisted\r\n", c:text())
  end)

  it("static: serves its directory, nothing above it", function()
    local _, base = start("examples/web/static.lua 0")
    local f = assert(io.open("examples/web/static.lua"))
    local text = f:read("a")
    f:close()
    assert.equals(text, (W.curl(base .. "/static.lua")))
    assert.matches("^HTTP/1.1 404", (W.curl("-i", "--path-as-is", base .. "/../echo.lua")))
    assert.matches("^HTTP/1.1 403", (W.curl("-i", base .. "/")))
  end)
end)
