-- loom chargen: the character generator (RFC 864). Each line is 72 of the
-- 95 printable ASCII characters, starting one further along than the line
-- before. The protocol is a streaming producer registered on its
-- transport, which pauses it above the write high-water mark: a slow
-- reader never makes the server buffer more than about that much.
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local reactor = require "loom.reactor"

-- One whole cycle: 95 lines, after which the pattern repeats.
local CYCLE
do
  local chars = {}
  for c = 32, 126 do
    chars[#chars + 1] = string.char(c)
  end
  local ring = table.concat(chars) .. table.concat(chars)
  local lines = {}
  for i = 1, 95 do
    lines[i] = ring:sub(i, i + 71) .. "\r\n"
  end
  CYCLE = table.concat(lines)
end
local CHUNK = CYCLE:rep(4) -- about 28 KB per turn of the loop

local Chargen = protocol.Protocol:extend({ __name = "Chargen" })
Chargen.CYCLE = CYCLE

local function produce(self)
  return self:_produce()
end

function Chargen:connectionMade()
  self.paused = false
  self.scheduled = false
  self.transport:registerProducer(self, true)
  self:_schedule()
end

function Chargen:_schedule()
  if not self.scheduled and not self.paused and self.connected then
    self.scheduled = true
    -- By name, when the call runs: a hot reload in between is seen
    -- (docs/reload.md), where self._produce would be the method of now.
    reactor.callLater(0, produce, self)
  end
end

function Chargen:_produce()
  self.scheduled = false
  if self.paused or not self.connected then
    return
  end
  self.transport:write(CHUNK)
  self:_schedule()
end

function Chargen:pauseProducing()
  self.paused = true
end

function Chargen:resumeProducing()
  self.paused = false
  self:_schedule()
end

function Chargen:stopProducing()
  self.paused = true
end

function Chargen:dataReceived(data) end -- luacheck: ignore

function Chargen:connectionLost()
  self.paused = true
end

return {
  name = "chargen",
  description = "character generator (RFC 864): an endless rotating pattern,"
    .. " flow-controlled",
  options = {
    { "port", "p", "tcp:8019:interface=127.0.0.1", "where to listen" },
  },
  Chargen = Chargen,
  makeService = function(opts)
    return strports.service(opts.port, protocol.Factory.forProtocol(Chargen))
  end,
}
