-- getpage.lua: the classic concurrent fetch. Several web.getPage calls run
-- at once; a DeferredList gathers them and stops the reactor when all are
-- done. Only loopback is reachable here, so the script first starts a
-- small loom web server to fetch from.
--
--   build/loom run examples/web/getpage.lua
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local task = require "loom.task"
local web = require "loom.web"

-- The site: a page at once, one that takes a moment (a render may return
-- a Deferred), one that redirects; anything else is a 404.
local Page = web.Resource:extend({ __name = "Page", isLeaf = true })

function Page:init(text, delay)
  web.Resource.init(self)
  self.text, self.delay = text, delay
end

function Page:render_GET(request)
  request:setHeader("Content-Type", "text/plain")
  if self.delay then
    return task.deferLater(reactor, self.delay, function()
      return self.text
    end)
  end
  return self.text
end

local Moved = web.Resource:extend({ __name = "Moved", isLeaf = true })

function Moved:render_GET(request)
  request:setResponseCode(302)
  request:setHeader("Location", "/fast")
  return ""
end

local root = web.Resource()
root:putChild("fast", Page("the fast page"))
root:putChild("slow", Page("the slow page", 0.3))
root:putChild("moved", Moved())

-- Port 0: the system picks a free port; loopback only.
local port = reactor.listenTCP(0, web.Site(root), { interface = "127.0.0.1" })
local base = "http://127.0.0.1:" .. port:getHost().port

-- A port nobody listens on, for a refused connection.
local closed = reactor.listenTCP(0, web.Site(root), { interface = "127.0.0.1" })
local refused = "http://127.0.0.1:" .. closed:getHost().port .. "/"
closed:stopListening()

local urls = { base .. "/slow", base .. "/fast", base .. "/moved",
  base .. "/missing", refused }

local started = reactor.seconds()
local pages = {}
for i, url in ipairs(urls) do
  pages[i] = web.getPage(url, { timeout = 5 })
end

-- consumeErrors: the failures are reported here, not as unhandled.
defer.DeferredList(pages, { consumeErrors = true })
  :addCallback(function(results)
    for i, result in ipairs(results) do
      local ok, value = result[1], result[2]
      if ok then
        print(string.format("%-40s %q", urls[i], value))
      else
        print(string.format("%-40s failed: %s", urls[i],
          tostring(value.value)))
      end
    end
    print(string.format("%d pages in %.1fs (fetched at once, not one by "
      .. "one)", #urls, reactor.seconds() - started))
  end)
  :addBoth(function()
    port:stopListening()
    reactor.stop()
  end)

reactor.run()
