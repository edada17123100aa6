-- loom chat: a line-based chat room. A new user is asked for a nickname;
-- then every line is sent to the others as "<nick> text". Commands:
-- /nick NAME, /who, /quit. Joins, leaves and renames are announced.
--
-- Bounded against members who do not keep up: a member who leaves more
-- than --max-queue bytes unread is disconnected (logged), one silent for
-- --timeout seconds (no complete line) is disconnected, and a member's own
-- input is not read while the answers to it are still queued.
--
-- Reloads cleanly (`loom chat --reload`, docs/reload.md): the room's state
-- (users) is on the factory instance, which a reload keeps; the classes
-- are returned under keys of their own; methods are looked up on self at
-- each call, and the timeout's pending call calls self:timeoutConnection()
-- when it fires, so an edit of any method reaches every member at once.
local basic = require "loom.basic"
local log = require "loom.log"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local strports = require "loom.strports"

-- Defaults of --timeout and --max-queue.
local TIMEOUT = 600
local MAX_QUEUE = 1024 * 1024

local Chat = basic.LineReceiver:extend({ __name = "Chat", delimiter = "\n" })
policies.mixin(Chat, policies.TimeoutMixin)

function Chat:connectionMade()
  self.nick = nil
  policies.applyBackpressure(self)
  local secs = self.factory.timeout
  if secs and secs > 0 then
    self:setTimeout(secs)
  end
  self:say("Welcome to the loom chat. What is your nickname?")
end

-- Lines go out with CRLF (nc and telnet both show them right). A member
-- whose unread text passes the room's maxQueue is dropped, once.
function Chat:say(text)
  local t = self.transport
  if self.dropped then
    return
  end
  t:write(text .. "\r\n")
  local limit = self.factory.maxQueue
  if limit and limit > 0 and t.bufferedBytes and t:bufferedBytes() > limit
      then
    self.dropped = true
    log.prefixed(self:logPrefix()).warn("chat: disconnecting %s: more than"
      .. " %d bytes of chat left unread (--max-queue)",
      self.nick or "a member without a nickname", limit)
    t:abortConnection()
  end
end

function Chat:timeoutConnection()
  log.prefixed(self:logPrefix()).info("chat: disconnecting %s: silent for"
    .. " %s s (--timeout)", self.nick or "a member without a nickname",
    tostring(self.timeOut))
  self:say("* disconnected: idle for too long")
  policies.TimeoutMixin.timeoutConnection(self)
end

-- A line longer than MAX_LENGTH: the member is told, it is logged, and
-- the connection is dropped (LineReceiver's default, silent otherwise).
function Chat:lineLengthExceeded(line)
  log.prefixed(self:logPrefix()).info("chat: disconnecting %s: a line"
    .. " longer than %d bytes", self.nick or "a member without a nickname",
    self.MAX_LENGTH)
  self:say(string.format("* disconnected: lines are at most %d bytes",
    self.MAX_LENGTH))
  return basic.LineReceiver.lineLengthExceeded(self, line)
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
  self:resetTimeout()
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
  self:setTimeout(nil)
  local room = self.factory
  if self.nick and room.users[self.nick] == self then
    room.users[self.nick] = nil
    room:broadcast("* " .. self.nick .. " has left", self)
  end
end

-- timeout: seconds of silence before a member is disconnected (0: never);
-- maxQueue: bytes of unread chat a member may have queued (0: no limit).
local ChatFactory = protocol.ServerFactory:extend({ __name = "ChatFactory",
  protocol = Chat, timeout = TIMEOUT, maxQueue = MAX_QUEUE })

function ChatFactory:init(opts)
  self.users = {}
  opts = opts or {}
  if opts.timeout ~= nil then
    self.timeout = opts.timeout
  end
  if opts.maxQueue ~= nil then
    self.maxQueue = opts.maxQueue
  end
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
    { "timeout", "t", TIMEOUT, "seconds a member may stay silent (no whole"
      .. " line) before being disconnected; 0: never" },
    { "max-queue", nil, MAX_QUEUE, "bytes of chat a member may leave unread"
      .. " before being disconnected; 0: no limit" },
  },
  Chat = Chat,
  ChatFactory = ChatFactory,
  makeService = function(opts)
    if opts.timeout < 0 then
      error("--timeout must be 0 or more seconds", 0)
    end
    if opts["max-queue"] < 0 then
      error("--max-queue must be 0 or more bytes", 0)
    end
    return strports.service(opts.port, ChatFactory:new({
      timeout = opts.timeout, maxQueue = opts["max-queue"] }))
  end,
}
