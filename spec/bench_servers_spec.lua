-- The HTTP servers `make bench` measures (bench/run.sh) answer as wrk needs:
-- bench/http_hello.lua (a web.Site) and bench/http_floor.lua (one canned
-- answer per read, loom without HTTP), each run as `loom run` on port 0,
-- two keep-alive GETs on one connection, then a clean stop.
local testing = require "loom.testing"

local sub = dofile("spec/support/subprocess.lua")

for _, script in ipairs({ "bench/http_hello.lua", "bench/http_floor.lua" }) do
  describe(script, function()
    it("answers keep-alive GETs with the 13-byte hello, then stops cleanly",
      function()
        local server = sub.start("run " .. script .. " 0")
        local ok, e = pcall(function()
          local c = sub.connect(server.port)
          for n = 1, 2 do
            c.transport:write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            local text = testing.runUntil(c:_wait(function(s)
              local _, count = s:gsub("Hello, World!", "")
              return count >= n
            end), 5)
            local responses = {}
            for head, body in text:gmatch("(HTTP/1%.1 [^\r]*\r\n.-\r\n\r\n)"
              .. "(Hello, World!)") do
              responses[#responses + 1] = { head = head, body = body }
            end
            assert.equal(n, #responses)
            local head = responses[n].head
            assert.matches("^HTTP/1%.1 200 OK\r\n", head)
            assert.matches("\r\nContent%-Length: 13\r\n", head)
            assert.matches("\r\nContent%-Type: text/plain\r\n", head)
            assert.not_matches("[Cc]onnection: close", head)
          end
          c.transport:loseConnection()
        end)
        local status, _, err = sub.stop(server)
        assert(ok, e)
        assert.equal(0, status, err)
      end)
  end)
end

-- bench/http_requests.lua (make bench-http-cost) checks every answer it
-- gets itself: each kind of request it measures must run to the end.
describe("bench/http_requests.lua", function()
  for _, kind in ipairs({ "hello", "browser", "leaf", "fewheaders",
    "noquery", "form" }) do
    it("gets a 200 with the render's body for every " .. kind .. " request",
      function()
        local out, err, status = sub.loom("run bench/http_requests.lua " .. kind .. " 50")
        assert.equal(0, status, err)
        assert.matches("^" .. kind .. " 50 us_per_request=[%d.]+\n$", out)
      end)
  end
  it("refuses a kind it does not know", function()
    local _, err, status = sub.loom("run bench/http_requests.lua nope 1")
    assert.equal(2, status)
    assert.matches("unknown kind nope", err)
  end)
end)
