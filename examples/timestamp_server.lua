-- Timestamp server: answers each line with "<ISO timestamp> <the line>".
--   loom run examples/timestamp_server.lua [PORT]  (default 8001; 0 picks one)
-- Lines end with "\n" (a trailing "\r" is dropped, so telnet works too).
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local policies = require "loom.policies"

local function isoNow()
  local t = reactor.seconds()
  local whole = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole)
    .. string.format(".%03dZ", math.floor((t - whole) * 1000))
end

local Timestamp = basic.LineReceiver:extend({
  __name = "Timestamp",
  delimiter = "\n",
})

-- A client that sends lines without reading the answers is not read from
-- while more than 64 KiB of answers wait for it (backpressure).
function Timestamp:connectionMade()
  policies.applyBackpressure(self)
end

function Timestamp:lineReceived(line)
  line = line:gsub("\r$", "")
  self:sendLine(isoNow() .. " " .. line)
end

local factory = protocol.Factory.forProtocol(Timestamp)
local port = reactor.listenTCP(tonumber(arg[1]) or 8001, factory,
  { interface = "127.0.0.1" })
-- Said once running: SIGINT/SIGTERM then stop it cleanly (exit 0).
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
