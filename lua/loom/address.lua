-- loom.address: the addresses getPeer, getHost, buildProtocol and
-- datagramReceived hand out. An address is a plain table,
--   {type="TCP", host="127.0.0.1", port=8000}   (type "TCP" or "UDP")
--   {type="UNIX", name="/tmp/app.sock"}          (name nil: unnamed)
-- sharing one metatable, so that tostring reads like Twisted's
--   IPv4Address(type='TCP', host='127.0.0.1', port=8000)
--   IPv6Address(type='TCP', host='::1', port=8000)
--   UNIXAddress('/tmp/app.sock')
-- and two addresses with the same fields are equal (==), as in Twisted.
--
--   local address = require "loom.address"
--   address.TCP("127.0.0.1", 8000), address.UDP(host, port),
--   address.UNIX(path), address.new(t) (gives t the metatable),
--   address.isAddress(x)

local address = {}

local Address = { __name = "Address" }
address.Address = Address

-- Python's repr of a str: single quotes, backslash escapes.
local function quote(s)
  return "'" .. tostring(s):gsub("[\\']", "\\%0"):gsub("\n", "\\n") .. "'"
end

function Address.__tostring(a)
  local kind = a.type
  if kind == "UNIX" then
    return "UNIXAddress(" .. (a.name ~= nil and quote(a.name) or "nil") .. ")"
  end
  local host = a.host
  local family = "Address"
  if kind == "TCP" or kind == "UDP" then
    family = type(host) == "string" and host:find(":", 1, true)
      and "IPv6Address" or "IPv4Address"
  end
  return string.format("%s(type=%s, host=%s, port=%s)", family,
    quote(kind), quote(host), tostring(a.port))
end

function Address.__eq(a, b)
  return a.type == b.type and a.host == b.host and a.port == b.port
    and a.name == b.name
end

function address.new(t)
  return setmetatable(t, Address)
end

function address.TCP(host, port)
  return setmetatable({ type = "TCP", host = host, port = port }, Address)
end

function address.UDP(host, port)
  return setmetatable({ type = "UDP", host = host, port = port }, Address)
end

function address.UNIX(name)
  return setmetatable({ type = "UNIX", name = name }, Address)
end

function address.isAddress(x)
  return getmetatable(x) == Address
end

-- Addresses made in C get the same metatable (none without the C core,
-- e.g. loom.testing under a plain lua5.4).
local ok, core = pcall(require, "loom.core")
if ok and type(core) == "table" and core.setAddressClass then
  core.setAddressClass(Address)
end

return address
