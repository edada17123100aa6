-- loom finger: a finger server (RFC 1288) answering from a JSON file of
-- {"user": "what to say about them", ...}. An empty query lists the users.
-- A client has --timeout seconds to send its query and read the answer;
-- then it is disconnected. (One answer, then the connection closes: no
-- more input is read, so there is nothing to hold back beyond that.)
local basic = require "loom.basic"
local json = require "loom.json"
local log = require "loom.log"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local trim = require("loom.strings").trim

-- Default of --timeout.
local TIMEOUT = 30

local function loadUsers(path)
  if path == nil or path == "" then
    return {}
  end
  local f, e = io.open(path, "r")
  if not f then
    error("--users: " .. tostring(e), 0)
  end
  local text, re = f:read("a")
  f:close()
  if text == nil then -- (a directory opens, and reads as nothing)
    error(string.format("--users: %s: %s", path, tostring(re or "cannot be read")), 0)
  end
  local users, msg = json.decode(text)
  if type(users) ~= "table" or (next(users) ~= nil and users[1] ~= nil) then
    error(string.format("--users: %s: %s", path, msg or "not a JSON object"),
      0)
  end
  -- Each answer is a line of text: a number or a string, nothing else
  -- (a table would be answered as "table: 0x55...", a heap address).
  for name, info in pairs(users) do
    if type(info) ~= "string" and type(info) ~= "number" then
      error(string.format("--users: %s: the entry for %s is a %s, not a"
        .. " string", path, tostring(name), json.null == info and "null"
        or type(info)), 0)
    end
  end
  return users
end

local Finger = basic.LineReceiver:extend({ __name = "Finger",
  delimiter = "\n" })
policies.mixin(Finger, policies.TimeoutMixin)

-- The whole exchange is bounded: the timeout is not reset by input.
function Finger:connectionMade()
  local secs = self.factory.timeout
  if secs and secs > 0 then
    self:setTimeout(secs)
  end
end

function Finger:timeoutConnection()
  log.prefixed(self:logPrefix()).info("finger: disconnecting: the query"
    .. " and its answer took over %s s (--timeout)", tostring(self.timeOut))
  policies.TimeoutMixin.timeoutConnection(self)
end

-- A query longer than MAX_LENGTH: logged, then the connection is dropped.
function Finger:lineLengthExceeded(line)
  log.prefixed(self:logPrefix()).info("finger: disconnecting: a query"
    .. " longer than %d bytes", self.MAX_LENGTH)
  return basic.LineReceiver.lineLengthExceeded(self, line)
end

function Finger:connectionLost()
  self:setTimeout(nil)
end

function Finger:lineReceived(line)
  -- "/W user" asks for verbose output (RFC 1288): same answer here.
  local user = trim((line:gsub("\r$", ""):gsub("^/W%s*", "")))
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

-- timeout: seconds a client has for the whole exchange (0: no limit).
local FingerFactory = protocol.ServerFactory:extend({ __name =
  "FingerFactory", protocol = Finger, timeout = TIMEOUT })

function FingerFactory:init(users, timeout)
  self.users = users
  if timeout ~= nil then
    self.timeout = timeout
  end
end

return {
  name = "finger",
  description = "finger server (RFC 1288): user information from a JSON file",
  options = {
    { "port", "p", "tcp:8079:interface=127.0.0.1", "where to listen" },
    { "users", "u", nil, "JSON file mapping user names to their information" },
    { "timeout", "t", TIMEOUT, "seconds a client has to ask and read the"
      .. " answer; 0: no limit" },
  },
  Finger = Finger,
  FingerFactory = FingerFactory,
  loadUsers = loadUsers,
  makeService = function(opts)
    if opts.timeout < 0 then
      error("--timeout must be 0 or more seconds", 0)
    end
    return strports.service(opts.port, FingerFactory:new(loadUsers(opts.users),
      opts.timeout))
  end,
}
