-- loom.web.url: absolute http URLs for the client (twisted.web.client's
-- URI), and resolving a redirect's Location against the request's URL
-- (RFC 3986 section 5.2, as Twisted's _urljoin).
--
--   local url = require "loom.web.url"
--   local u, why = url.parse("http://example.org:8080/a/b?x=1#top")
--   u.scheme, u.host, u.port  --> "http", "example.org", 8080
--   u.path, u.query           --> "/a/b", "x=1"
--   url.target(u)      --> "/a/b?x=1"   (the request line's origin form)
--   url.hostHeader(u)  --> "example.org:8080"
--   url.join("http://h/a/b", "../c")  --> "http://h/c"
--
-- parse returns nil and a one-line reason for anything it cannot use, so a
-- bad URL from a server (a redirect) is an ordinary failure, not a raise.

local M = {}

M.DEFAULT_PORTS = { http = 80, https = 443 }

-- Longest URL accepted (the server's default maxUrl is 8 KiB too).
M.MAX_LENGTH = 8192

-- What may never appear in a URL we send: controls (CR and LF would let a
-- URL add header lines), space, and bytes a request line cannot carry.
local FORBIDDEN = "[%z\1-\32\127]"

local function bad(s, why)
  local shown = #s > 80 and (s:sub(1, 77) .. "...") or s
  -- One line whatever the URL holds: controls shown as \ddd.
  shown = shown:gsub("[%c\\\"]", function(c)
    return string.format("\\%d", c:byte())
  end)
  return nil, string.format("invalid URL \"%s\": %s", shown, why)
end

-- "[::1]:8080", "example.org", "h:80" -> host, port string or nil.
local function splitAuthority(authority)
  local v6, rest = authority:match("^%[([%x:.]+)%](.*)$")
  if v6 then
    if rest ~= "" and not rest:match("^:%d*$") then
      return nil
    end
    return v6, rest:sub(2)
  end
  local host, port = authority:match("^([^:]*):(%d*)$")
  if host then
    return host, port
  end
  if authority:find(":", 1, true) then
    return nil
  end
  return authority, ""
end

local function validHost(host)
  if host == "" or #host > 253 then
    return false
  end
  if host:find(":", 1, true) then -- an IPv6 literal from brackets
    return true
  end
  return host:match("^[%w%-%._~%%]+$") ~= nil
end

-- "/p?q#f" -> {path=, query=, fragment=} (absent parts nil; path may be "").
local function splitTail(rest)
  local path, after = rest:match("^([^?#]*)(.*)$")
  local query, fragment
  if after:sub(1, 1) == "?" then
    query, after = after:match("^%?([^#]*)(.*)$")
  end
  if after:sub(1, 1) == "#" then
    fragment = after:sub(2)
  end
  return { path = path, query = query, fragment = fragment }
end

-- url.parse(s) -> {scheme=, host=, port=, path=, query=, fragment=} or
-- nil, reason. The scheme is lower-cased; only http and https parse.
function M.parse(s)
  if type(s) ~= "string" then
    return nil, "invalid URL: expected a string, got " .. type(s)
  end
  if #s > M.MAX_LENGTH then
    return bad(s, string.format("longer than %d bytes", M.MAX_LENGTH))
  end
  if s:find(FORBIDDEN) then
    return bad(s, "contains a space or a control character")
  end
  local scheme, rest = s:match("^([%a][%w+.-]*)://(.*)$")
  if not scheme then
    return bad(s, "not an absolute URL (expected scheme://host/path)")
  end
  scheme = scheme:lower()
  if not M.DEFAULT_PORTS[scheme] then
    return bad(s, string.format("unsupported scheme %q (http or https)",
      scheme))
  end
  local authority, tail = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@", 1, true) then
    return bad(s, "credentials in the URL are not supported")
  end
  local host, portText = splitAuthority(authority)
  if not host and authority:match(":[^:]*$")
      and not authority:find("[", 1, true) then
    return bad(s, "the port must be a number")
  elseif not host or not validHost(host) then
    return bad(s, "bad host " .. string.format("%q", authority))
  end
  local port = M.DEFAULT_PORTS[scheme]
  if portText ~= "" then
    port = tonumber(portText)
    if port < 1 or port > 65535 then
      return bad(s, "port must be 1-65535")
    end
  end
  local parts = splitTail(tail)
  return {
    scheme = scheme,
    host = host:lower(),
    port = math.tointeger(port),
    path = parts.path ~= "" and parts.path or "/",
    query = parts.query,
    fragment = parts.fragment,
  }
end

-- The request target in origin form: path and query, never the fragment.
function M.target(u)
  if u.query then
    return u.path .. "?" .. u.query
  end
  return u.path
end

local function hostPart(u)
  if u.host:find(":", 1, true) then
    return "[" .. u.host .. "]"
  end
  return u.host
end

-- The Host header: the port only when it is not the scheme's default.
function M.hostHeader(u)
  if u.port == M.DEFAULT_PORTS[u.scheme] then
    return hostPart(u)
  end
  return hostPart(u) .. ":" .. u.port
end

-- The URL back as a string (without the fragment).
function M.unparse(u)
  return u.scheme .. "://" .. M.hostHeader(u) .. M.target(u)
end

-- Same scheme, host and port: headers such as Authorization may follow a
-- redirect only within one origin.
function M.sameOrigin(a, b)
  return a.scheme == b.scheme and a.host == b.host and a.port == b.port
end

-- RFC 3986 5.2.4: removes "." and ".." segments from a path.
local function removeDotSegments(path)
  local out = {}
  local input = path
  while input ~= "" do
    if input:sub(1, 3) == "../" then
      input = input:sub(4)
    elseif input:sub(1, 2) == "./" then
      input = input:sub(3)
    elseif input:sub(1, 3) == "/./" then
      input = input:sub(3)
    elseif input == "/." then
      input = "/"
    elseif input:sub(1, 4) == "/../" or input == "/.." then
      input = "/" .. input:sub(5)
      out[#out] = nil
    elseif input == "." or input == ".." then
      input = ""
    else
      local seg, rest = input:match("^(/?[^/]*)(.*)$")
      out[#out + 1] = seg
      input = rest
    end
  end
  return table.concat(out)
end

-- Splits any reference into its RFC 3986 parts (scheme, authority, path,
-- query, fragment); absent parts are nil.
local function split(ref)
  local scheme, rest = ref:match("^([%a][%w+.-]*):(.*)$")
  if not scheme then
    rest = ref
  end
  local authority
  if rest:sub(1, 2) == "//" then
    authority, rest = rest:match("^//([^/?#]*)(.*)$")
  end
  local t = splitTail(rest)
  t.scheme, t.authority = scheme, authority
  return t
end

local function merge(base, refPath)
  if base.authority and base.path == "" then
    return "/" .. refPath
  end
  return (base.path:match("^(.*/)") or "") .. refPath
end

local function compose(t)
  local s = {}
  if t.scheme then s[#s + 1] = t.scheme .. ":" end
  if t.authority then s[#s + 1] = "//" .. t.authority end
  s[#s + 1] = t.path
  if t.query then s[#s + 1] = "?" .. t.query end
  if t.fragment then s[#s + 1] = "#" .. t.fragment end
  return table.concat(s)
end

-- url.join(base, ref): ref resolved against base (RFC 3986 5.2.2). As
-- Twisted's _urljoin, a reference without a fragment keeps none of base's.
function M.join(base, ref)
  local b, r = split(base), split(ref)
  local t = {}
  if r.scheme then
    t.scheme, t.authority = r.scheme, r.authority
    t.path, t.query = removeDotSegments(r.path), r.query
  else
    if r.authority then
      t.authority, t.path = r.authority, removeDotSegments(r.path)
      t.query = r.query
    else
      if r.path == "" then
        t.path = b.path
        t.query = r.query or b.query
      else
        if r.path:sub(1, 1) == "/" then
          t.path = removeDotSegments(r.path)
        else
          t.path = removeDotSegments(merge(b, r.path))
        end
        t.query = r.query
      end
      t.authority = b.authority
    end
    t.scheme = b.scheme
  end
  t.fragment = r.fragment
  return compose(t)
end

return M
