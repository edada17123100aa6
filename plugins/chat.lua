-- loom chat: a line-based chat room. A new user is asked for a nickname;
-- then every line is sent to the others as "<nick> text". Commands:
-- /nick NAME, /who, /quit. Joins, leaves and renames are announced.
local basic = require "loom.basic"
local protocol = require "loom.protocol"
local strports = require "loom.strports"

local Chat = basic.LineReceiver:extend({ __name = "Chat", delimiter = "\n" })

function Chat:connectionMade()
  self.nick = nil
  self:say("Welcome to the loom chat. What is your nickname?")
end

-- Lines go out with CRLF (nc and telnet both show them right).
function Chat:say(text)
  self.transport:write(text .. "\r\n")
end

local function validNick(nick)
  return nick:match("^[%w_%-%.]+$") ~= nil and #nick <= 32
end

function Chat:_takeNick(nick)
  local room = self.factory
  if not validNick(nick) then
    self:say("* '" .. nick .. "' is not a valid nickname (letters, digits,"
      .. " _-. up to 32), try another:")
    return false
  elseif room.users[nick] and room.users[nick] ~= self then
    self:say("* the nickname '" .. nick .. "' is taken, try another:")
    return false
  end
  return true
end

function Chat:lineReceived(line)
  line = line:gsub("\r$", "")
  local room = self.factory
  if self.nick == nil then
    local nick = line:match("^%s*(.-)%s*$")
    if not self:_takeNick(nick) then
      return
    end
    self.nick = nick
    room.users[nick] = self
    local others = room:names(self)
    self:say(string.format("* hello %s! %s. Commands: /nick NAME, /who,"
      .. " /quit", nick, #others == 0 and "You are alone here"
      or ("Here: " .. table.concat(others, ", "))))
    room:broadcast("* " .. nick .. " has joined", self)
    return
  end
  local cmd, rest = line:match("^/(%S+)%s*(.-)%s*$")
  if cmd == nil then
    room:broadcast("<" .. self.nick .. "> " .. line, self)
  elseif cmd == "nick" then
    if self:_takeNick(rest) then
      local old = self.nick
      room.users[old] = nil
      room.users[rest] = self
      self.nick = rest
      self:say("* you are now " .. rest)
      room:broadcast("* " .. old .. " is now known as " .. rest, self)
    end
  elseif cmd == "who" then
    self:say("* here: " .. table.concat(room:names(), ", "))
  elseif cmd == "quit" then
    self:say("* bye!")
    self.transport:loseConnection()
  else
    self:say("* unknown command /" .. cmd .. " (try /nick NAME, /who, /quit)")
  end
end

function Chat:connectionLost()
  local room = self.factory
  if self.nick and room.users[self.nick] == self then
    room.users[self.nick] = nil
    room:broadcast("* " .. self.nick .. " has left", self)
  end
end

local ChatFactory = protocol.ServerFactory:extend({ __name = "ChatFactory",
  protocol = Chat })

function ChatFactory:init()
  self.users = {}
end

-- Sorted nicknames, without `except`.
function ChatFactory:names(except)
  local names = {}
  for nick, p in pairs(self.users) do
    if p ~= except then
      names[#names + 1] = nick
    end
  end
  table.sort(names)
  return names
end

function ChatFactory:broadcast(text, except)
  for _, p in pairs(self.users) do
    if p ~= except then
      p:say(text)
    end
  end
end

return {
  name = "chat",
  description = "chat room: nicknames, /nick, /who, /quit; lines go to"
    .. " everyone",
  options = {
    { "port", "p", "tcp:8001:interface=127.0.0.1", "where to listen" },
  },
  Chat = Chat,
  ChatFactory = ChatFactory,
  makeService = function(opts)
    return strports.service(opts.port, ChatFactory:new())
  end,
}
