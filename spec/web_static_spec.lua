-- web.File: a directory served safely (curl and raw sockets): types,
-- Range, If-Modified-Since, no escape, listing off by default.
local core = require "loom.core"
local log = require "loom.log"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local web = require "loom.web"
local static = require "loom.web.static"

local W = dofile("spec/support/web_server.lua")

local function sh(cmd)
  assert(os.execute(cmd), cmd)
end

-- A fresh tree: root/{index-less dir, files, links in and out}, and a
-- secret beside root that nothing may reach.
local function tree()
  local top = os.tmpname()
  os.remove(top)
  sh("mkdir -p " .. top .. "/root/sub " .. top .. "/root/withindex")
  local function put(path, text)
    local f = assert(io.open(top .. "/" .. path, "wb"))
    f:write(text)
    f:close()
  end
  put("secret.txt", "TOP SECRET")
  put("root/hello.txt", "hello world\n")
  put("root/page.HTML", "<p>hi</p>")
  put("root/data.bin", ("0123456789"):rep(100))
  put("root/sub/a.json", "{}")
  put("root/withindex/index.html", "<h1>index</h1>")
  put("root/big.dat", ("x"):rep(3 * 1024 * 1024 + 5))
  put("root/.env", "SECRET=1")
  sh("mkdir -p " .. top .. "/root/.git")
  put("root/.git/config", "[core]")
  sh("ln -s page.HTML " .. top .. "/root/page-as.txt")
  sh("ln -s ../secret.txt " .. top .. "/root/out-link")
  sh("ln -s .. " .. top .. "/root/out-dir")
  sh("ln -s hello.txt " .. top .. "/root/in-link")
  return top
end

local function serveTree(opts)
  local top = tree()
  W.atEnd(function() os.execute("rm -rf " .. top) end, finally)
  local server = W.serve(web.File(top .. "/root", opts), { accessLog = false }, finally)
  return server, top
end

-- One raw request; the response.
local function get(server, target, extra, heads)
  local c = W.raw(server, "GET " .. target .. " HTTP/1.1\r\nHost: x\r\n"
    .. (extra or "") .. "\r\n")
  return W.waitResponses(c, 1, heads)[1]
end

describe("web.File", function()
  it("serves files with their content types", function()
    local server = serveTree()
    local out = W.curl("-i", server.url("/hello.txt"))
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\nContent%-Type: text/plain; charset=utf%-8\r\n", out)
    assert.matches("\r\nContent%-Length: 12\r\n", out)
    assert.matches("\r\nLast%-Modified: %a%a%a, %d%d %a%a%a %d%d%d%d [%d:]+ GMT\r\n", out)
    assert.matches("\r\n\r\nhello world\n$", out)
    assert.matches("text/html", get(server, "/page.HTML").headers["content-type"])
    assert.equals("application/json", get(server, "/sub/a.json").headers["content-type"])
    assert.equals("application/octet-stream", get(server, "/data.bin").headers["content-type"])
    assert.equals("hello world\n", get(server, "/in-link").body)
  end)

  it("sends a large file whole, under backpressure", function()
    local server = serveTree()
    local out = W.curl(server.url("/big.dat"))
    assert.equals(3 * 1024 * 1024 + 5, #out)
    assert.is_nil(out:find("[^x]"))
  end)

  it("answers HEAD with the length and no body", function()
    local server = serveTree()
    local c = W.raw(server, "HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/a.json HTTP/1.1\r\nHost: x\r\n\r\n")
    local list = W.waitResponses(c, 2, { true })
    assert.equals("12", list[1].headers["content-length"])
    assert.equals("", list[1].body)
    assert.equals("{}", list[2].body)
  end)

  it("serves one Range: 206, suffix and open ranges, 416", function()
    local server = serveTree()
    local r = get(server, "/data.bin", "Range: bytes=10-14\r\n")
    assert.equals(206, r.status)
    assert.equals("01234", r.body)
    assert.equals("bytes 10-14/1000", r.headers["content-range"])
    r = get(server, "/data.bin", "Range: bytes=-3\r\n")
    assert.equals("789", r.body)
    r = get(server, "/data.bin", "Range: bytes=995-\r\n")
    assert.equals("56789", r.body)
    r = get(server, "/data.bin", "Range: bytes=990-5000\r\n")
    assert.equals("0123456789", r.body)
    r = get(server, "/data.bin", "Range: bytes=1000-\r\n")
    assert.equals(416, r.status)
    assert.equals("bytes */1000", r.headers["content-range"])
    -- Several ranges or another unit: the whole file.
    r = get(server, "/data.bin", "Range: bytes=0-1,5-6\r\n")
    assert.equals(200, r.status)
    assert.equals(1000, #r.body)
    -- curl agrees.
    assert.equals("345", (W.curl("-r", "3-5", server.url("/data.bin"))))
  end)

  it("answers If-Modified-Since with 304 when not modified", function()
    local server = serveTree()
    local r = get(server, "/hello.txt")
    local lm = r.headers["last-modified"]
    r = get(server, "/hello.txt", "If-Modified-Since: " .. lm .. "\r\n")
    assert.equals(304, r.status)
    assert.equals("", r.body)
    r = get(server, "/hello.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
    assert.equals(200, r.status)
    r = get(server, "/hello.txt", "If-Modified-Since: garbage\r\n")
    assert.equals(200, r.status)
    assert.equals(784111777, static.parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"))
  end)

  it("never leaves the directory", function()
    local server = serveTree()
    for _, target in ipairs({ "/../secret.txt", "/sub/../../secret.txt",
      "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
      "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/sub%2f..%2f..%2fsecret.txt",
      "/..%5csecret.txt", "/out-link", "/out-dir/secret.txt", "/out-dir/",
      "//secret.txt", "/hello.txt%00.png", "/./hello.txt", "/sub//a.json" }) do
      local r = get(server, target)
      assert.equals(404, r.status, target)
      assert.is_nil(r.body:find("TOP SECRET", 1, true), target)
    end
  end)

  it("redirects a directory without its slash; no listing by default", function()
    local server = serveTree()
    local r = get(server, "/sub")
    assert.equals(301, r.status)
    assert.equals("/sub/", r.headers.location)
    r = get(server, "/sub/")
    assert.equals(403, r.status)
    assert.is_nil(r.body:find("a.json", 1, true))
    r = get(server, "/withindex/")
    assert.equals("<h1>index</h1>", r.body)
  end)

  it("lists a directory when listing is on, names escaped", function()
    local server, top = serveTree({ listing = true })
    local f = assert(io.open(top .. "/root/sub/<b>&.txt", "w"))
    f:close()
    local r = get(server, "/sub/")
    assert.equals(200, r.status)
    assert.matches('<a href="a.json">a.json</a>', r.body)
    assert.matches('<a href="%%3Cb%%3E%%26.txt">&lt;b&gt;&amp;.txt</a>', r.body)
  end)

  it("allows GET and HEAD only", function()
    local server = serveTree()
    local out = W.curl("-i", "-X", "POST", server.url("/hello.txt"))
    assert.matches("^HTTP/1.1 405", out)
    assert.matches("\r\nAllow: GET, HEAD\r\n", out)
  end)

  it("refuses a path that does not exist at start", function()
    assert.has_error(function() web.File("/no/such/dir") end,
      "File: /no/such/dir: no such file or directory")
  end)

  -- A reader as fast as the kernel never fills the write queue, so the
  -- file's producer is never paused: it must still let the reactor turn.
  it("serves others while a fast client downloads a large file", function()
    local server, top = serveTree()
    sh("truncate -s 4G " .. top .. "/root/huge.bin")
    local Proc = protocol.ProcessProtocol:extend({})
    local ended = false
    function Proc:processEnded() ended = true end
    local proc = reactor.spawnProcess(Proc:new(), "/usr/bin/curl",
      { "/usr/bin/curl", "-sS", "-o", "/dev/null", "--max-time", "20",
        server.url("/huge.bin") })
    W.atEnd(function()
      if not ended then pcall(proc.signalProcess, proc, "KILL") end
      W.net.waitFor(function() return ended end)
    end, finally)
    W.net.sleep(0.2) -- the download under way
    assert.equals("hello world\n", (W.curl(server.url("/hello.txt"))))
    assert.is_false(ended, "the 4 GiB download ended before hello was answered")
  end)

  it("honours If-Range naming the file's Last-Modified only", function()
    local server = serveTree()
    local lm = get(server, "/data.bin").headers["last-modified"]
    local r = get(server, "/data.bin", "Range: bytes=0-1\r\nIf-Range: " .. lm .. "\r\n")
    assert.same({ 206, "01" }, { r.status, r.body })
    for _, stale in ipairs({ "Sat, 01 Jan 2000 00:00:00 GMT", '"an-etag"', "W/\"x\"" }) do
      r = get(server, "/data.bin", "Range: bytes=0-1\r\nIf-Range: " .. stale .. "\r\n")
      assert.equals(200, r.status, stale)
      assert.equals(1000, #r.body)
    end
  end)

  it("reads the three HTTP date forms, and no impossible date", function()
    local t = 784111777
    assert.equals(t, static.parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equals(t, static.parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equals(t, static.parseHttpDate("Sun Nov  6 08:49:37 1994"))
    assert.equals(t, static.parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT; length=6"))
    for _, bad in ipairs({ "Xyz, 99 Jan 2099 99:99:99 GMT", "Mon, 31 Feb 2099 00:00:00 GMT",
      "Mon, 29 Feb 2100 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "garbage", "" }) do
      assert.is_nil(static.parseHttpDate(bad), bad)
    end
    assert.is_number(static.parseHttpDate("Tue, 29 Feb 2000 00:00:00 GMT"))
    -- linear on a long run of spaces
    assert.is_nil(static.parseHttpDate("a" .. (" "):rep(20000) .. "b"))
  end)

  it("hides dotfiles unless dotfiles = true; types by the requested name", function()
    local server = serveTree({ listing = true })
    assert.equals(404, get(server, "/.env").status)
    assert.equals(404, get(server, "/.git/config").status)
    assert.is_nil(get(server, "/").body:find(".env", 1, true))
    -- a link takes the type of its own name, as Twisted's
    assert.matches("^text/plain", get(server, "/page-as.txt").headers["content-type"])
    local open = serveTree({ dotfiles = true, listing = true })
    assert.equals("SECRET=1", get(open, "/.env").body)
    assert.matches('href="%.env"', get(open, "/").body)
  end)

  it("404s a file asked for as a directory; keeps the query on a redirect", function()
    local server = serveTree()
    assert.equals(404, get(server, "/hello.txt/").status)
    assert.equals(404, get(server, "/sub/a.json/").status)
    local r = get(server, "/sub?x=1&y=2")
    assert.equals(301, r.status)
    assert.equals("/sub/?x=1&y=2", r.headers.location)
  end)

  it("answers a file it cannot open by why: 404 gone, 500 logged", function()
    local events = {}
    local obs = log.addObserver(function(ev) events[#events + 1] = ev.text end)
    W.atEnd(function() log.removeObserver(obs) end, finally)
    local server = serveTree()
    -- stat found it, open did not: gone meanwhile, or out of descriptors
    local realOpen = io.open
    W.atEnd(function() io.open = realOpen end, finally)
    local why = { msg = "gone", errno = 2 }
    io.open = function(path, mode)
      if path:find("hello.txt", 1, true) then return nil, why.msg, why.errno end
      return realOpen(path, mode)
    end
    assert.equals(404, get(server, "/hello.txt").status)
    why.msg, why.errno = "Too many open files", 24
    local r = get(server, "/hello.txt")
    assert.equals(500, r.status)
    assert.is_nil(r.body:find("Too many", 1, true))
    io.open = realOpen
    local logged = table.concat(events, "\n")
    assert.matches("cannot open .*hello%.txt: Too many open files", logged)
  end)

  it("refuses at start a path that is not a directory or a file", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    sh("mkfifo " .. fifo)
    W.atEnd(function() os.remove(fifo) end, finally)
    assert.has_error(function() web.File(fifo) end,
      "File: " .. fifo .. " is not a directory or a regular file")
  end)

  it("checks segments", function()
    assert.same({ "a", "b" }, static.safeSegments({ "a", "b" }))
    assert.same({ "a" }, static.safeSegments({ "a", "" }))
    assert.is_nil(static.safeSegments({ "", "a" }))
    assert.is_nil(static.safeSegments({ ".." }))
    assert.is_nil(static.safeSegments({ "a/b" }))
    assert.is_nil(static.safeSegments({ ".env" }))
    assert.same({ ".env" }, static.safeSegments({ ".env" }, true))
    assert.is_true(core.stat ~= nil)
  end)
end)
