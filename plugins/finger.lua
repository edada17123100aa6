-- loom finger: a finger server (RFC 1288) answering from a JSON file of
-- {"user": "what to say about them", ...}. An empty query lists the users.
local basic = require "loom.basic"
local json = require "loom.json"
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local function loadUsers(path)
  if path == nil or path == "" then
    return {}
  end
  local f, e = io.open(path, "r")
  if not f then
    error("--users: " .. tostring(e), 0)
  end
  local text = f:read("a")
  f:close()
  local users, msg = json.decode(text)
  if type(users) ~= "table" then
    error(string.format("--users: %s: %s", path, msg or "not a JSON object"),
      0)
  end
  return users
end

local Finger = basic.LineReceiver:extend({ __name = "Finger",
  delimiter = "\n" })

function Finger:lineReceived(line)
  -- "/W user" asks for verbose output (RFC 1288): same answer here.
  local user = line:gsub("\r$", ""):gsub("^/W%s*", ""):match("^%s*(.-)%s*$")
  local users = self.factory.users
  if user == "" then
    local names = {}
    for name in pairs(users) do
      names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
      self.transport:write(name .. "\r\n")
    end
  else
    local info = users[user]
    self.transport:write((info ~= nil and tostring(info) or "No such user")
      .. "\r\n")
  end
  self.transport:loseConnection()
end

local FingerFactory = protocol.ServerFactory:extend({ __name =
  "FingerFactory", protocol = Finger })

function FingerFactory:init(users)
  self.users = users
end

return {
  name = "finger",
  description = "finger server (RFC 1288): user information from a JSON file",
  options = {
    { "port", "p", "tcp:8079:interface=127.0.0.1", "where to listen" },
    { "users", "u", nil, "JSON file mapping user names to their information" },
  },
  Finger = Finger,
  FingerFactory = FingerFactory,
  loadUsers = loadUsers,
  makeService = function(opts)
    return strports.service(opts.port, FingerFactory:new(loadUsers(opts.users)))
  end,
}
