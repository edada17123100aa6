-- Hot reload under load: 1,000 members of `loom chat --reload` (a child
-- process) while a copy of the plugin's file is edited twice, a good edit
-- and then a broken one. Every member is checked after each step: none is
-- disconnected, each keeps its nickname and runs the new code, and so do
-- members who join after each edit; the broken edit is logged with
-- file:line and rolled back (the good edit's code keeps running).
--
-- A join is announced to every member, so 1,000 joins make ~500,000 lines.
-- The members live in this process as one light protocol each: it cuts
-- what arrives into lines once and keeps only what a check needs (the
-- transport specs' Recorder keeps and re-joins all of its text), and while
-- the others join it does not read, so that the announcements wait in its
-- socket and are read in a few large reads, not 1,000 small ones.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local sub = dofile("spec/support/subprocess.lua")

-- Under make sanitize (ASan/UBSan, several times slower) fewer members:
-- that run looks for memory errors, this one for scale.
local N = os.getenv("LOOM_SANITIZE") and 250 or 1000
local TIMEOUT = 10 -- seconds a step may make no progress
sub.LIMIT = 90 -- (the server's life, under timeout; it is killed before)

-- The edit: a command the plugin does not have, answered with the asker's
-- own nickname, which only the state each live connection kept can give.
local function addWhoami(src)
  local edited, n = src:gsub('\n  elseif cmd == "who" then\n', [[

  elseif cmd == "whoami" then
    self:say("* you are " .. self.nick)
%0]])
  assert.equal(1, n)
  return edited
end

local UNKNOWN = "* unknown command /whoami (try /nick NAME, /who, /quit)"

local function youAre(m)
  return "* you are " .. m.nick
end

local function unknown()
  return UNKNOWN
end

-- What the members saw, counted; at most 10 problems are kept.
local Room = {}
Room.__index = Room

local function newRoom()
  return setmetatable({ greeted = 0, answered = 0, lost = 0, problems = {},
    expect = nil, holdReading = false, all = {} }, Room)
end

function Room:problem(text)
  if #self.problems < 10 then
    self.problems[#self.problems + 1] = text
  end
end

-- One member: sends its nickname once connected, then reads lines.
local Member = protocol.Protocol:extend({ __name = "Member" })

function Member:init(room, nick)
  self.room, self.nick, self.partial = room, nick, ""
  room.all[#room.all + 1] = self
end

function Member:connectionMade()
  self.transport:write(self.nick .. "\n")
end

function Member:dataReceived(data)
  local text, at = self.partial .. data, 1
  while true do
    local e = text:find("\r\n", at, true)
    if e == nil then
      break
    end
    self:lineReceived(text:sub(at, e - 1))
    at = e + 2
  end
  self.partial = text:sub(at)
end

-- A /who answer's list ("a, b, c"): `want` names, self's among them.
local function checkNames(self, list, want)
  local count = select(2, list:gsub(", ", "")) + 1
  local mine = (", " .. list .. ", "):find(", " .. self.nick .. ", ", 1,
    true) ~= nil
  if count ~= want or not mine then
    self.room:problem(string.format("%s: /who listed %d names (want %d)%s",
      self.nick, count, want, mine and "" or ", not its own"))
    return false
  end
  return true
end

function Member:greeted(line)
  local room = self.room
  if line:sub(9, 9 + #self.nick) ~= self.nick .. "!" then
    room:problem(self.nick .. ": greeted as " .. line:sub(1, 40))
  end
  room.greeted = room.greeted + 1
  if room.holdReading then
    self.transport:pauseProducing()
  end
  self.onGreeted()
end

-- Lines from the server to this member: its greeting, the answers a step
-- expects (room.expect(member) gives the line), and the room's chatter
-- ("* x has joined", "<x> text"), read and dropped. Nobody may leave.
function Member:lineReceived(line)
  local room = self.room
  if line:sub(1, 2) ~= "* " or line:find(" has joined$") then
    return
  elseif line:sub(1, 8) == "* hello " then
    return self:greeted(line)
  elseif line:sub(1, 8) == "* here: " then
    if checkNames(self, line:sub(9), room.names) then
      room.answered = room.answered + 1
    end
  elseif room.expect and line == room.expect(self) then
    room.answered = room.answered + 1
  else
    room:problem(self.nick .. ": unexpected line: " .. line:sub(1, 60))
  end
end

function Member:connectionLost(reason)
  self.room.lost = self.room.lost + 1
  self.reason = reason
end

-- Connects a member per nickname, at most WINDOW not yet greeted at a
-- time. (A connect completes in the kernel before the server accepts it:
-- 1,000 at once would overflow the listen backlog of 50, as they would
-- Twisted's, and wait a second for the kernel's retries.)
local WINDOW = 32

local function connectAll(room, port, nicks)
  local members, nextIndex = {}, 1
  local function connectNext()
    local i = nextIndex
    if i > #nicks then
      return
    end
    nextIndex = i + 1
    local m = Member:new(room, nicks[i])
    m.onGreeted = connectNext
    members[i] = m
    local cf = protocol.ClientFactory:new()
    function cf.buildProtocol()
      return m
    end
    function cf.clientConnectionFailed(_, _, reason)
      room:problem(nicks[i] .. ": could not connect: " .. tostring(reason))
      connectNext()
    end
    reactor.connectTCP("127.0.0.1", port, cf, { timeout = 5 })
  end
  for _ = 1, WINDOW do
    connectNext()
  end
  return members
end

-- Waits until room[counter] reaches n (or a problem is seen). A busy
-- machine makes the joins slow but not stuck: it fails when the count has
-- not moved for TIMEOUT seconds (or after LONGEST in all).
local LONGEST = 50

local function waitCount(room, counter, n)
  local last, movedAt = nil, reactor.seconds()
  pcall(sub.waitUntil, function()
    local v, t = room[counter], reactor.seconds()
    if v ~= last then
      last, movedAt = v, t
    end
    return v >= n or #room.problems > 0 or t - movedAt > TIMEOUT
  end, LONGEST)
  assert.same({}, room.problems)
  assert(room[counter] == n, string.format("%s: %d of %d (stuck for %d s,"
    .. " or %d s in all)", counter, room[counter], n, TIMEOUT, LONGEST))
end

-- Each of `askers` sends `line`; each must get room.expect's answer.
local function askAll(room, askers, line, expect)
  room.expect, room.answered = expect, 0
  for _, m in ipairs(askers) do
    m.transport:write(line .. "\n")
  end
  waitCount(room, "answered", #askers)
  room.expect = nil
end

-- One member's /who lists `count` names, its own among them.
local function whoLists(room, m, count)
  room.names = count
  askAll(room, { m }, "/who")
end

-- Kills the server at once (under `timeout`, which a KILL would orphan).
local function kill(server)
  local pid = sub.readFile(string.format("/proc/%d/task/%d/children",
    server.pid, server.pid)):match("%d+")
  if pid then
    os.execute("kill -KILL " .. pid)
  end
  local _, _, log = sub.stop(server)
  return log
end

local function logSays(server, text)
  local plain = text:gsub("%p", "%%%0")
  local ok = pcall(sub.waitUntil, function()
    return sub.readFile(server.errfile):find(plain) ~= nil
  end, TIMEOUT)
  assert(ok, "the log never said " .. text .. ":\n"
    .. sub.readFile(server.errfile))
end

describe("loom chat --reload with 1,000 members", function()
  local dir
  before_each(function()
    dir = sub.tmpdir()
  end)
  after_each(function()
    os.execute("rm -rf " .. dir)
  end)

  it("drops none across a good edit and a broken one; each keeps its"
    .. " nickname and runs the new code, as do newcomers", function()
    local src = sub.readFile("plugins/chat.lua")
    local file = dir .. "/chat.lua"
    sub.writeFile(file, src)
    local server = sub.start("chat --port tcp:0:interface=127.0.0.1 --reload",
      1, "LOOM_PLUGIN_PATH=" .. dir)
    local room, members, stopped = newRoom(), {}, false
    finally(function()
      if not stopped then
        kill(server)
      end
      for _, m in ipairs(room.all) do
        if m.transport and not m.reason then
          m.transport:abortConnection()
        end
      end
      pcall(sub.waitUntil, function() return room.lost >= #room.all end, 5)
    end)
    local function join(nicks)
      local joined = connectAll(room, server.port, nicks)
      waitCount(room, "greeted", #members + #nicks)
      table.move(joined, 1, #nicks, #members + 1, members)
      return joined[#joined]
    end

    local nicks = {}
    for i = 1, N do
      nicks[i] = "u" .. i
    end
    room.holdReading = true
    join(nicks)
    room.holdReading = false
    for _, m in ipairs(members) do
      m.transport:resumeProducing()
    end
    whoLists(room, members[N], N)
    askAll(room, members, "/whoami", unknown) -- (the plugin as shipped)

    -- The good edit: every member, and a newcomer, runs the new code.
    local edited = addWhoami(src)
    sub.writeFile(file, edited)
    logSays(server, "reload: 1 file reloaded")
    askAll(room, members, "/whoami", youAre)
    local first = join({ "after1" })
    askAll(room, { first }, "/whoami", youAre)
    whoLists(room, first, N + 1)

    -- The broken edit: logged with file:line; the good edit's code stays.
    sub.writeFile(file, edited .. "\nbroken(\n")
    logSays(server, "reload failed: 1 error, nothing swapped")
    local brokenLine = select(2, edited:gsub("\n", "")) + 2
    assert.truthy(sub.readFile(server.errfile):find(file .. ":" .. brokenLine
      .. ": <eof> expected near 'broken'", 1, true),
      sub.readFile(server.errfile))
    askAll(room, members, "/whoami", youAre)
    local second = join({ "after2" })
    askAll(room, { second }, "/whoami", youAre)
    whoLists(room, second, N + 2)

    -- Nobody was disconnected, as either side saw it. (The server is
    -- killed: a clean stop would announce 1,002 leaves to everyone.)
    assert.equal(0, room.lost)
    local log = kill(server)
    stopped = true
    assert.is_nil(log:find("disconnecting", 1, true), log)
  end)
end)
