-- A small JSON API whose render returns a Deferred (Twisted never managed
-- this: twisted#3711). A note store kept in memory, bounded:
--   GET  /notes         -> {"notes": [...]}
--   POST /notes         body {"text": "..."} -> 201 {"id": n}
--   GET  /notes/<id>    -> {"id": n, "text": "..."} or 404
-- Each answer is "looked up" after a short delay, as a database would.
--   loom run examples/web/json_api.lua [PORT]   (default 8080; 0 picks one)
--   curl -d '{"text":"hi"}' http://127.0.0.1:8080/notes
local reactor = require "loom.reactor"
local defer = require "loom.defer"
local json = require "loom.json"
local web = require "loom.web"

local MAX_NOTES, MAX_TEXT = 1000, 1000

local notes = {}

-- A Deferred that fires with f()'s result after a simulated lookup.
local function later(f)
  local d = defer.Deferred()
  reactor.callLater(0.01, function() d:callback(f()) end)
  return d
end

local function reply(request, code, value)
  request:setResponseCode(code)
  request:setHeader("Content-Type", "application/json")
  return json.encode(value)
end

local Note = web.Resource:extend({ __name = "Note", isLeaf = true })
function Note:init(id)
  web.Resource.init(self)
  self.id = id
end
function Note:render_GET(request)
  return later(function()
    local text = notes[self.id]
    if text == nil then
      return reply(request, 404, { error = "no such note" })
    end
    return reply(request, 200, { id = self.id, text = text })
  end)
end

local Notes = web.Resource:extend({ __name = "Notes" })
function Notes:getChild(name)
  local id = tonumber(name)
  if id and math.type(id) == "integer" then
    return Note(id)
  end
  return web.NoResource()
end
function Notes:render_GET(request)
  return later(function()
    local list = {}
    for id, text in ipairs(notes) do list[#list + 1] = { id = id, text = text } end
    return reply(request, 200, { notes = list })
  end)
end
function Notes:render_POST(request)
  local body = json.decode(request:getContent())
  if type(body) ~= "table" or type(body.text) ~= "string" then
    return reply(request, 400, { error = 'expected {"text": "..."}' })
  elseif #body.text > MAX_TEXT or #notes >= MAX_NOTES then
    return reply(request, 413, { error = "note too long or store full" })
  end
  return later(function()
    notes[#notes + 1] = body.text
    return reply(request, 201, { id = #notes })
  end)
end

local root = web.Resource()
root:putChild("notes", Notes())
-- Small bodies only: a note is at most MAX_TEXT bytes.
local site = web.Site(root, { maxBodySize = 16 * 1024 })
local port = reactor.listenTCP(tonumber(arg[1]) or 8080, site,
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
