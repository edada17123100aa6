-- loom.web.resource: Resource, the node of a site's tree, as
-- twisted.web.resource; NoResource and ErrorPage; NOT_DONE_YET.
--
--   local Hello = web.Resource:extend({ isLeaf = true })
--   function Hello:render_GET(request) return "hello" end
--
-- A render method returns the body (a string), a Deferred of it, or
-- web.NOT_DONE_YET after which it writes and finishes the request itself.

local class = require "loom.class"

local M = {}

-- The sentinel a render returns when it will finish the request later.
M.NOT_DONE_YET = setmetatable({}, {
  __tostring = function() return "NOT_DONE_YET" end,
  __name = "NOT_DONE_YET",
})

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
  ['"'] = "&quot;", ["'"] = "&#39;" }

-- Text made safe inside HTML (error pages and listings echo paths).
function M.escapeHTML(s)
  return (tostring(s):gsub("[&<>\"']", ESCAPES))
end

local Resource = class.Object:extend({ __name = "Resource" })
M.Resource = Resource
Resource.isLeaf = false

function Resource:init()
  self.children = {}
end

-- Children are found by name, one path segment (already %-decoded).
function Resource:putChild(path, child)
  if type(path) ~= "string" then
    error("putChild: the path must be a string", 2)
  end
  if rawget(self, "children") == nil then
    self.children = {} -- a subclass whose init did not call Resource.init
  end
  self.children[path] = child
end

-- A child that is not among the children: NoResource, as in Twisted.
function Resource:getChild(path, request) -- luacheck: ignore
  return M.NoResource()
end

function Resource:getChildWithDefault(path, request)
  local children = rawget(self, "children")
  local child = children and children[path]
  if child ~= nil then
    return child
  end
  return self:getChild(path, request)
end

-- The methods this resource renders: its render_* names (GET brings HEAD).
function Resource:allowedMethods()
  local seen, list = {}, {}
  local function scan(t)
    for k, v in pairs(t) do
      local m = type(k) == "string" and type(v) == "function"
        and k:match("^render_(%u[%u%-]*)$")
      if m and not seen[m] then
        seen[m] = true
        list[#list + 1] = m
      end
    end
  end
  scan(self)
  local c = getmetatable(self)
  while type(c) == "table" do
    scan(c)
    c = rawget(c, "super")
  end
  if seen.GET and not seen.HEAD then
    list[#list + 1] = "HEAD"
  end
  table.sort(list)
  return list
end

-- Calls render_<METHOD>; HEAD falls back to render_GET (the server then
-- sends no body). A method with no render_ is 405 with an Allow header.
-- "render_GET" and so on, made once per method.
local renderNames = setmetatable({}, { __index = function(t, method)
  local name = "render_" .. method
  t[method] = name -- (methods are the parser's fixed set)
  return name
end })

function Resource:render(request)
  local m = self[renderNames[request.method]]
  if m == nil and request.method == "HEAD" then
    m = self.render_GET
  end
  if m == nil then
    local allowed = self:allowedMethods()
    request:setResponseCode(405)
    request:setHeader("Allow", table.concat(allowed, ", "))
    request:setHeader("Content-Type", "text/html; charset=utf-8")
    return M.errorPage(405, "Method Not Allowed",
      "Your browser approached me (at " .. request.uri .. ") with the method \""
      .. request.method .. "\". I only allow the method"
      .. (#allowed == 1 and " " or "s ") .. table.concat(allowed, ", ")
      .. " here.")
  end
  return m(self, request)
end

function M.errorPage(code, brief, detail)
  return string.format("<html><head><title>%d - %s</title></head><body>"
    .. "<h1>%s</h1><p>%s</p></body></html>\n", code, M.escapeHTML(brief),
    M.escapeHTML(brief), M.escapeHTML(detail))
end

-- ErrorPage(code, brief, detail): renders that code and page for any method.
local ErrorPage = Resource:extend({ __name = "ErrorPage", isLeaf = true })
M.ErrorPage = ErrorPage

function ErrorPage:init(code, brief, detail)
  Resource.init(self)
  self.code, self.brief, self.detail = code, brief, detail
end

function ErrorPage:render(request)
  request:setResponseCode(self.code)
  request:setHeader("Content-Type", "text/html; charset=utf-8")
  return M.errorPage(self.code, self.brief, self.detail)
end

function ErrorPage:getChild()
  return self
end

M.NoResource = ErrorPage:extend({ __name = "NoResource" })
function M.NoResource:init(message)
  ErrorPage.init(self, 404, "No Such Resource",
    message or "Sorry. No luck finding that resource.")
end

M.ForbiddenResource = ErrorPage:extend({ __name = "ForbiddenResource" })
function M.ForbiddenResource:init(message)
  ErrorPage.init(self, 403, "Forbidden Resource",
    message or "Sorry, resource is forbidden.")
end

return M
