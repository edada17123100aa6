-- web.File: a directory served safely (curl and raw sockets): types,
-- Range, If-Modified-Since, no escape, listing off by default.
local core = require "loom.core"
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

  it("checks segments", function()
    assert.same({ "a", "b" }, static.safeSegments({ "a", "b" }))
    assert.same({ "a" }, static.safeSegments({ "a", "" }))
    assert.is_nil(static.safeSegments({ "", "a" }))
    assert.is_nil(static.safeSegments({ ".." }))
    assert.is_nil(static.safeSegments({ "a/b" }))
    assert.is_true(core.stat ~= nil)
  end)
end)
