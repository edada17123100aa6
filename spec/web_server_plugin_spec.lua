-- `loom web`: the static web server plugin, run as a real subprocess and
-- fetched with curl.
local W = dofile("spec/support/web_server.lua")
local sub = dofile("spec/support/subprocess.lua")

local PORT = "--port tcp:0:interface=127.0.0.1"

-- sub.stop once (an explicit stop, then the cleanup's).
local function stopOnce(server)
  if not server.status then
    server.status = { sub.stop(server) }
  end
  return table.unpack(server.status)
end

describe("loom web", function()
  it("serves --path on loopback, access log to --access-log", function()
    local dir = sub.tmpdir()
    local logfile = os.tmpname()
    sub.writeFile(dir .. "/hello.txt", "hi from loom web\n")
    sub.writeFile(dir .. "/../loom-web-secret-" .. dir:match("[^/]+$"), "secret")
    local server = sub.start("web " .. PORT .. " --path " .. dir
      .. " --access-log " .. logfile)
    W.atEnd(function()
      stopOnce(server)
      os.execute("rm -rf " .. dir .. " " .. dir .. "/../loom-web-secret-"
        .. dir:match("[^/]+$"))
      os.remove(logfile)
    end, finally)
    local base = "http://127.0.0.1:" .. server.port
    assert.equals("hi from loom web\n", (W.curl(base .. "/hello.txt")))
    local out = W.curl("-i", "--path-as-is", base .. "/../loom-web-secret-"
      .. dir:match("[^/]+$"))
    assert.matches("^HTTP/1.1 404", out)
    out = W.curl("-i", base .. "/")
    assert.matches("^HTTP/1.1 403", out) -- no listing by default
    assert.equals(0, (stopOnce(server)))
    assert.matches('"GET /hello.txt HTTP/1.1" 200 17 "%-" "curl/', sub.readFile(logfile))
  end)

  it("--listing lists a directory", function()
    local dir = sub.tmpdir()
    sub.writeFile(dir .. "/a.txt", "a")
    local server = sub.start("web " .. PORT .. " --listing --path " .. dir)
    W.atEnd(function()
      stopOnce(server)
      os.execute("rm -rf " .. dir)
    end, finally)
    assert.matches('<a href="a.txt">a.txt</a>',
      (W.curl("http://127.0.0.1:" .. server.port .. "/")))
  end)

  it("without --path, or with a missing one, is one line and exit 1", function()
    local _, err, status = sub.loom("web " .. PORT)
    assert.equals(1, status)
    assert.matches("^loom: web: %-%-path is required", err)
    _, err, status = sub.loom("web " .. PORT .. " --path /no/such/dir")
    assert.equals(1, status)
    assert.matches("^loom: web: %-%-path: /no/such/dir: no such file or directory\n$", err)
    _, err, status = sub.loom("web " .. PORT .. " --path /tmp --access-log /no/such/dir/log")
    assert.equals(1, status)
    assert.matches("^loom: web: %-%-access%-log: cannot open the access log: /no/such/dir/log: "
      .. "No such file or directory\n$", err)
  end)

  it("hides dotfiles unless --dotfiles", function()
    local dir = sub.tmpdir()
    sub.writeFile(dir .. "/.env", "SECRET=1")
    local server = sub.start("web " .. PORT .. " --path " .. dir)
    local open = sub.start("web " .. PORT .. " --dotfiles --path " .. dir)
    W.atEnd(function()
      stopOnce(server)
      stopOnce(open)
      os.execute("rm -rf " .. dir)
    end, finally)
    assert.matches("^HTTP/1.1 404", (W.curl("-i", "http://127.0.0.1:" .. server.port .. "/.env")))
    assert.equals("SECRET=1", (W.curl("http://127.0.0.1:" .. open.port .. "/.env")))
  end)
end)
