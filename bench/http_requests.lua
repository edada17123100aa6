-- What the HTTP server costs a request apart from the network: a Site's
-- channel on a transport that only keeps its last write, fed the same
-- request N times (docs/PERFORMANCE.md, "A request as a browser sends it").
--   loom run bench/http_requests.lua KIND N
-- KIND is one of:
--   hello       wrk's request to bench/http_hello.lua's resource
--   browser     GET /api/items?id=3 with ten headers as Firefox sends
--               them, a two-level tree, a render that reads an arg and a
--               header and sets two headers
--   leaf        the browser's request to a leaf root
--   fewheaders  the browser's request with two headers
--   noquery     the browser's request without its query
--   form        a urlencoded POST with the browser's headers (the Lua path)
-- Prints "KIND N us_per_request=X". N = 0 sets everything up and sends
-- nothing: callgrind's count for N minus the count for 0, over N, is the
-- instructions a request (bench/http_requests.sh). Every answer must be a
-- 200 with the render's body, or the run fails.
local web = require "loom.web"

local kind, n = arg[1] or "hello", tonumber(arg[2] or "100000")

local BROWSER = "Host: 127.0.0.1:8080\r\n"
  .. "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
  .. "Accept: application/json,*/*;q=0.8\r\n"
  .. "Accept-Language: en-US,en;q=0.5\r\n"
  .. "Accept-Encoding: gzip, deflate, br\r\n"
  .. "Connection: keep-alive\r\n"
  .. "Sec-Fetch-Dest: empty\r\n"
  .. "Sec-Fetch-Mode: cors\r\n"
  .. "Sec-Fetch-Site: same-origin\r\n"
local FORM = "id=3&qty=10"

local REQUESTS = {
  hello = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
  browser = "GET /api/items?id=3 HTTP/1.1\r\n" .. BROWSER .. "\r\n",
  leaf = "GET /api/items?id=3 HTTP/1.1\r\n" .. BROWSER .. "\r\n",
  fewheaders = "GET /api/items?id=3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    .. "Accept: application/json\r\n\r\n",
  noquery = "GET /api/items HTTP/1.1\r\n" .. BROWSER .. "\r\n",
  form = "POST /api/items HTTP/1.1\r\n" .. BROWSER
    .. "Content-Type: application/x-www-form-urlencoded\r\n"
    .. "Content-Length: " .. #FORM .. "\r\n\r\n" .. FORM,
}
local request = REQUESTS[kind]
if request == nil then
  io.stderr:write("http_requests.lua: unknown kind ", tostring(kind), "\n")
  os.exit(2)
end

local Hello = web.Resource:extend({ __name = "Hello", isLeaf = true })
function Hello:render_GET(req)
  req:setHeader("Content-Type", "text/plain")
  return "Hello, World!"
end

-- The application's resource: reads an arg and a header, sets two.
local Items = web.Resource:extend({ __name = "Items", isLeaf = true })
local function items(_, req)
  local id = req.args.id and req.args.id[1]
  local accept = req:getHeader("accept")
  req:setHeader("Content-Type", "application/json")
  req:setHeader("Cache-Control", "no-store")
  return (id and accept) and "Hello, World!" or "missing"
end
Items.render_GET, Items.render_POST = items, items

local root
if kind == "hello" then
  root = Hello()
elseif kind == "leaf" then
  root = Items()
else
  root = web.Resource()
  local api = web.Resource()
  root:putChild("api", api)
  api:putChild("items", Items())
end
if kind == "noquery" then
  Items.render_GET = function(_, req)
    req:setHeader("Content-Type", "application/json")
    req:setHeader("Cache-Control", "no-store")
    return req:getHeader("accept") and "Hello, World!" or "missing"
  end
end

local site = web.Site(root, { accessLog = false })
local last, writes = nil, 0
local T = {}
T.__index = T
function T:write(data) writes, last = writes + 1, data end
function T:writeSequence(list) self:write(table.concat(list)) end
function T:registerProducer() end
function T:unregisterProducer() end
function T:setTcpNoDelay() end
function T:getPeer() return { type = "TCP", host = "127.0.0.1", port = 1 } end
function T:getHost() return { type = "TCP", host = "127.0.0.1", port = 2 } end
function T:loseConnection() error("the channel closed the connection") end
function T:pauseProducing() end
function T:resumeProducing() end
local channel = site:buildProtocol({})
channel:makeConnection(setmetatable({ connected = true }, T))

local t0 = os.clock()
for _ = 1, n do
  channel:dataReceived(request)
end
local t1 = os.clock()
if n > 0 then
  if writes ~= n or not last:find("^HTTP/1.1 200 OK\r\n")
      or not last:find("\r\n\r\nHello, World!$") then
    io.stderr:write("http_requests.lua: ", kind, ": ", writes, " writes for ",
      n, " requests, the last: ", string.format("%q", last), "\n")
    os.exit(1)
  end
  print(string.format("%s %d us_per_request=%.2f", kind, n,
    (t1 - t0) * 1e6 / n))
end
os.exit(0)
