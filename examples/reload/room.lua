-- examples/reload/room.lua: the chat room examples/reload/server.lua
-- serves, written to be edited while it runs (docs/reload.md). Run the
-- server with --reload, connect with `nc 127.0.0.1 8002`, then change the
-- greeting, a command's text, or add a command, and save: members already
-- connected get the new behaviour on their next line, nobody is dropped.
-- A mistake (a syntax error, an error at load) is logged with file:line
-- and the running version stays.
--
-- How it stays reloadable:
--  * state is in the module table (M.members, M.stats), which a reload
--    keeps as it is; constants are locals or class fields, which follow
--    the file;
--  * commands are functions in a table (M.commands), merged key by key:
--    an edited one replaces the old, a deleted one goes;
--  * methods are called on self (self:say), looked up at each call, and
--    nothing holds a method value in a pending callback.
local basic = require "loom.basic"
local log = require "loom.log"
local policies = require "loom.policies"
local trim = require("loom.strings").trim

local M = {}

-- State a reload keeps.
M.members = {} -- nickname -> Member
M.count = 0 -- members in the room, nicknamed or not
M.stats = { lines = 0 }

-- Bounds: members at once, bytes of chat a member may leave unread, the
-- length of a line (MAX_LENGTH below).
local MAX_MEMBERS = 100
local MAX_UNREAD = 256 * 1024

local Member = basic.LineReceiver:extend({
  __name = "Member",
  delimiter = "\n",
  MAX_LENGTH = 1024,
  -- Edit me while the server runs: the next newcomer is greeted so.
  greeting = "Welcome to the live room. Your nickname?",
})
M.Member = Member

-- Each write is checked against what the member has left unread: one who
-- does not read is dropped rather than buffered without bound.
function Member:say(text)
  local t = self.transport
  if self.dropped or t == nil then
    return
  end
  t:write(text .. "\r\n")
  if t:bufferedBytes() > MAX_UNREAD then
    self.dropped = true
    log.warn("room: dropping %s: over %d bytes unread", self.nick or "?",
      MAX_UNREAD)
    t:abortConnection()
  end
end

function M.broadcast(text, except)
  for _, member in pairs(M.members) do
    if member ~= except then
      member:say(text)
    end
  end
end

-- Commands: /NAME ARGS calls M.commands.NAME(member, ARGS).
M.commands = {}

function M.commands.help(member)
  local names = {}
  for name in pairs(M.commands) do
    names[#names + 1] = "/" .. name
  end
  table.sort(names)
  member:say("* commands: " .. table.concat(names, " "))
end

function M.commands.who(member)
  local names = {}
  for nick in pairs(M.members) do
    names[#names + 1] = nick
  end
  table.sort(names)
  member:say("* here: " .. table.concat(names, ", "))
end

function M.commands.me(member, action)
  M.broadcast("* " .. member.nick .. " " .. action)
end

function M.commands.quit(member)
  member:say("* bye")
  member.transport:loseConnection()
end

function Member:connectionMade()
  policies.applyBackpressure(self)
  M.count = M.count + 1
  if M.count > MAX_MEMBERS then
    self:say("* the room is full, try later")
    self.transport:loseConnection()
    return
  end
  self:say(self.greeting)
end

-- Members connected before a reload that added per-member state get it
-- here, once, before their next line (docs/reload.md, "upgrade").
function Member:upgrade()
  self.lines = self.lines or 0
end

function Member:lineReceived(line)
  line = line:gsub("\r$", "")
  if self.nick == nil then
    return self:pickNick(trim(line))
  end
  self.lines = (self.lines or 0) + 1
  M.stats.lines = M.stats.lines + 1
  local name, rest = line:match("^/(%w+)(.*)$")
  rest = rest and trim(rest)
  if name == nil then
    M.broadcast("<" .. self.nick .. "> " .. line, self)
    return
  end
  local command = M.commands[name]
  if command == nil then
    self:say("* no command /" .. name .. " (try /help)")
  else
    command(self, rest)
  end
end

function Member:pickNick(nick)
  if not nick:match("^[%w_%-]+$") or #nick > 24 then
    self:say("* letters, digits, _ and - (at most 24), please:")
  elseif M.members[nick] then
    self:say("* " .. nick .. " is taken, another one:")
  else
    self.nick = nick
    M.members[nick] = self
    self:say("* hello " .. nick .. " (/help for commands)")
    M.broadcast("* " .. nick .. " joined", self)
  end
end

function Member:connectionLost()
  M.count = M.count - 1
  if self.nick and M.members[self.nick] == self then
    M.members[self.nick] = nil
    M.broadcast("* " .. self.nick .. " left")
  end
end

return M
