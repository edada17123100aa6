-- loom.basic: line, netstring and length-prefixed protocols, as in
-- twisted.protocols.basic.
--
--   local Echo = basic.LineReceiver:extend({ delimiter = "\n" })
--   function Echo:lineReceived(line) self:sendLine(line) end
--
-- One file per kind of receiver: basic/line.lua (LineReceiver,
-- LineOnlyReceiver, with basic/input.lua for their pending input),
-- basic/netstring.lua, basic/prefixed.lua (Int32/16/8StringReceiver);
-- basic/receiver.lua holds what they share.

local M = {}

for _, part in ipairs({ "line", "netstring", "prefixed" }) do
  for name, value in pairs(require("loom.basic." .. part)) do
    M[name] = value
  end
end

return M
