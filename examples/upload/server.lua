-- File-upload server (the classic socket-tutorial upload, the reactor way).
-- A client sends one JSON header line
--   {"action":"put","filename":"notes.txt","filesize":1234}
-- gets a JSON reply line ({"status":"ready"} or {"status":"error",...}),
-- then sends exactly filesize raw bytes, and gets {"status":"done",...}.
-- The body goes straight to a temporary file in DIR as it arrives (never
-- held in memory) and is renamed into place once complete. Every write and
-- the close are checked: a full disk (or any write error) answers
-- {"status":"error","message":"cannot store the file"} and removes the
-- partial file; the reason is logged on the server only, since replies
-- never carry server paths.
-- Limits: MAX_SIZE bytes per file (64 MiB), names of MAX_NAME bytes (240:
-- the temporary ".NAME.XXXXXXXX.part" must fit the file system's 255).
--   loom run examples/upload/server.lua DIR [PORT]   (default 8000; 0 picks)
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local basic = require "loom.basic"
local json = require "loom.json"
local log = require "loom.log"

local DIR = arg[1]
local MAX_SIZE = 64 * 1024 * 1024
local PART_FORMAT = "%s/.%s.%08x.part"
-- NAME_MAX (255) less what PART_FORMAT adds: ".", ".XXXXXXXX" and ".part".
local MAX_NAME = 255 - 15
if not DIR then
  io.stderr:write("usage: upload/server.lua DIR [PORT]\n")
  os.exit(1)
end

-- Plain names only: no path separators, no "..", nothing hidden or empty,
-- and short enough that its temporary part file can be created too.
local function safeName(name)
  return type(name) == "string" and #name > 0 and #name <= MAX_NAME
    and not name:find("/", 1, true) and not name:find("..", 1, true)
    and name:sub(1, 1) ~= "." and name:match("^[%w%._%-]+$") ~= nil
end

local Upload = basic.LineReceiver:extend({ __name = "Upload",
  delimiter = "\n", MAX_LENGTH = 4096 })

function Upload:reply(t)
  self:sendLine(json.encode(t))
end

-- The partial file is gone before the client hears of the failure.
function Upload:fail(message)
  self:discard()
  self:reply({ status = "error", message = message })
  self.transport:loseConnection()
end

function Upload:lineReceived(line)
  local h = json.decode(line)
  if type(h) ~= "table" or h.action ~= "put" then
    return self:fail("expected {\"action\":\"put\",...}")
  elseif not safeName(h.filename) then
    return self:fail("unsafe file name")
  elseif math.type(h.filesize) ~= "integer" or h.filesize < 0
      or h.filesize > MAX_SIZE then
    return self:fail("filesize must be an integer 0-" .. MAX_SIZE)
  end
  self.name, self.size, self.got = h.filename, h.filesize, 0
  self.partPath = string.format(PART_FORMAT, DIR, h.filename,
    math.random(0, 0xffffffff))
  local f, msg = io.open(self.partPath, "wb")
  if not f then
    return self:storeFailed(msg)
  end
  self.file = f
  self:reply({ status = "ready" })
  self:setRawMode()
  if self.size == 0 then
    self:finish()
  end
end

function Upload:rawDataReceived(data)
  if not self.file then
    return
  end
  if self.got + #data > self.size then
    return self:fail("more data than filesize")
  end
  local ok, msg = self.file:write(data)
  if not ok then
    return self:storeFailed(msg)
  end
  self.got = self.got + #data
  if self.got == self.size then
    self:finish()
  end
end

-- The detail (with its path) goes to the server's log; the client learns
-- only that the file was not stored.
function Upload:storeFailed(msg)
  log.warn("upload of %s failed: %s", self.name, tostring(msg))
  self:fail("cannot store the file")
end

function Upload:finish()
  -- close() flushes the last buffered bytes: it can fail as write can.
  local ok, msg = self.file:close()
  self.file = nil
  if ok then
    ok, msg = os.rename(self.partPath, DIR .. "/" .. self.name)
  end
  if not ok then
    os.remove(self.partPath)
    return self:storeFailed(msg)
  end
  self:reply({ status = "done", filename = self.name, size = self.got })
  self.transport:loseConnection()
end

-- An unfinished upload leaves nothing behind.
function Upload:discard()
  if self.file then
    self.file:close() -- Its result no longer matters: the file goes.
    self.file = nil
    os.remove(self.partPath)
  end
end

function Upload:connectionLost()
  self:discard()
end

local port = reactor.listenTCP(tonumber(arg[2]) or 8000,
  protocol.Factory.forProtocol(Upload), { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
