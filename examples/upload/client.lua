-- File-upload client for upload/server.lua: sends the JSON header, waits
-- for "ready", then streams the file from disk with a pull producer (a
-- chunk each time the transport's queue empties), and prints the reply.
--   loom run examples/upload/client.lua PORT FILE [NAME]
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local json = require "loom.json"

local port, path = tonumber(arg[1]), arg[2]
if not port or not path then
  io.stderr:write("usage: upload/client.lua PORT FILE [NAME]\n")
  os.exit(1)
end
local name = arg[3] or path:match("([^/]+)$")
local file = assert(io.open(path, "rb"))
local size = file:seek("end")
file:seek("set", 0)
local status = 1

-- Reads the next 64 KiB chunk whenever the transport asks for more.
local Sender = {}
Sender.__index = Sender

function Sender:resumeProducing()
  local chunk = file:read(65536)
  if chunk then
    self.transport:write(chunk)
  else
    self.transport:unregisterProducer()
  end
end

function Sender:stopProducing() end

local Client = basic.LineReceiver:extend({ __name = "UploadClient",
  delimiter = "\n" })

function Client:connectionMade()
  self:sendLine(json.encode({ action = "put", filename = name,
    filesize = size }))
end

function Client:lineReceived(line)
  local r = json.decode(line) or {}
  if r.status == "ready" then
    self.transport:registerProducer(setmetatable({ transport =
      self.transport }, Sender), false)
  elseif r.status == "done" then
    print(string.format("uploaded %s (%d bytes)", r.filename, r.size))
    status = 0
  else
    io.stderr:write("server: " .. tostring(r.message or line) .. "\n")
  end
end

function Client:connectionLost()
  reactor.stop()
end

local cf = protocol.ClientFactory:forProtocol(Client)
function cf:clientConnectionFailed(_, reason)
  io.stderr:write(reason:getErrorMessage() .. "\n")
  reactor.stop()
end
reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
reactor.run()
file:close()
os.exit(status)
