-- players.lua: the player line protocol of the embed examples, in Lua.
-- The world lives elsewhere, behind `require "game"`: in C (game.c,
-- game_uvloop.c register it with loom_register_module) or in Lua
-- (frame_loop.lua puts one in package.preload). Whoever owns the world
-- calls lobby:broadcast(text) once per tick with that tick's updates.
--
-- The protocol, one line each way (nc or telnet; "\n" or "\r\n"):
--   first line      your name       -> "ok welcome NAME ..." | "error ..."
--   move DX DY      a step, each -5..5 -> "ok at X Y"
--   say TEXT        chat            -> "ok said"
--   look            the world       -> "you ...", "player ...", "chat ...",
--                                      then "ok look"
--   help                            -> "ok commands: ..."
--   quit                            -> "ok bye", then the server closes
-- Anything else gets one "error ..." line. Updates from the world arrive
-- between answers as lines starting with "@TICK" ("@42 pos bob 3 4").
--
-- What a peer can make it hold is bounded: lines of maxLine bytes (longer
-- ones are refused and the connection closed), maxConnections connections,
-- idleTimeout seconds without a line, command answers held back by
-- backpressure, and tick updates skipped (logged) for a player who leaves
-- more than maxPending bytes unread; maxWriteBuffer is the safety net.
local basic = require "loom.basic"
local log = require "loom.log"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local trim = require("loom.strings").trim
local game = require "game"

local M = {}

-- Every limit's default (players.Lobby:new{...} overrides each).
M.defaults = {
  maxLine = 512,              -- bytes in one line
  idleTimeout = 300,          -- seconds without a whole line (0: none)
  maxConnections = 128,       -- connections at once, named or not
  maxPending = 64 * 1024,     -- unread bytes past which updates are skipped
  maxWriteBuffer = 1024 * 1024, -- unread bytes that abort the connection
}

local HELP = "ok commands: move DX DY (each -5..5), say TEXT, look, help,"
  .. " quit"

-- Player ---------------------------------------------------------------------

local Player = basic.LineReceiver:extend({ __name = "Player",
  delimiter = "\n" })
policies.mixin(Player, policies.TimeoutMixin)
M.Player = Player

function Player:connectionMade()
  local lobby = self.factory
  self.MAX_LENGTH = lobby.maxLine
  lobby.connections = lobby.connections + 1
  lobby.open[self] = true
  -- Answers wait while the peer does not read them: its input waits too.
  policies.applyBackpressure(self)
  if lobby.connections > lobby.maxConnections then
    self:send("error the server is full, try again later")
    return self.transport:loseConnection()
  end
  if lobby.idleTimeout > 0 then
    self:setTimeout(lobby.idleTimeout)
  end
  self:send("hello: what is your name? (1 to 16 letters, digits, _ or -)")
end

-- Lines go out with "\r\n", which nc and telnet both show right. A write
-- to a closed connection is ignored (as in Twisted); one to a peer that
-- does not read is bounded by backpressure and maxWriteBuffer.
function Player:send(line)
  self.transport:write(line .. "\r\n")
end

function Player:fail(why)
  self:send("error " .. why)
end

local commands = {}

local function integer(s)
  return s and math.tointeger(tonumber(s))
end

function commands.move(self, args)
  local a, b = args:match("^(%S+)%s+(%S+)$")
  local dx, dy = integer(a), integer(b)
  if not dx or not dy then
    return self:fail("usage: move DX DY (whole numbers, each -5..5)")
  end
  local x, y = game.move(self.id, dx, dy)
  if not x then
    return self:fail(y)
  end
  self:send(string.format("ok at %d %d", x, y))
end

function commands.say(self, args)
  local ok, err = game.say(self.id, args)
  if not ok then
    return self:fail(err)
  end
  self:send("ok said")
end

function commands.look(self)
  local view = game.look(self.id)
  for line in view:gmatch("[^\n]+") do
    self:send(line)
  end
  self:send("ok look")
end

function commands.help(self)
  self:send(HELP)
end

function commands.quit(self)
  self:send("ok bye")
  self.transport:loseConnection()
end

-- The first line names the player; later ones are commands.
function Player:lineReceived(line)
  self:resetTimeout()
  line = line:gsub("\r$", "")
  if not self.id then
    return self:join(line)
  end
  local cmd, args = trim(line):match("^(%S*)(.*)$")
  args = trim(args)
  if cmd == "" then
    return
  end
  local run = commands[cmd]
  if not run then
    return self:fail(string.format("unknown command '%s' (try help)",
      cmd:sub(1, 32)))
  end
  return run(self, args)
end

function Player:join(name)
  name = trim(name)
  local id, err = game.join(name)
  if not id then
    return self:fail(err .. " (send another name)")
  end
  self.id, self.name = id, name
  self.factory.players[self] = true
  self:send("ok welcome " .. name .. " (help lists the commands)")
end

function Player:lineLengthExceeded(line)
  log.prefixed(self:logPrefix()).info("closing: a line longer than %d bytes",
    self.MAX_LENGTH)
  self:fail(string.format("a line is at most %d bytes; bye", self.MAX_LENGTH))
  return basic.LineReceiver.lineLengthExceeded(self, line)
end

function Player:timeoutConnection()
  log.prefixed(self:logPrefix()).info("closing: idle for %s s",
    tostring(self.timeOut))
  self:fail("idle for too long; bye")
  return policies.TimeoutMixin.timeoutConnection(self)
end

function Player:connectionLost()
  self:setTimeout(nil)
  local lobby = self.factory
  lobby.connections = lobby.connections - 1
  lobby.open[self] = nil
  if self.id then
    lobby.players[self] = nil
    game.leave(self.id)
    self.id = nil
  end
end

-- Tick updates to one player: skipped while it has more than maxPending
-- bytes unread, so one slow reader costs the others nothing; it is told
-- once it catches up.
function Player:update(text, maxPending)
  local t = self.transport
  if t:bufferedBytes() > maxPending then
    if not self.behind then
      self.behind = true
      log.prefixed(self:logPrefix()).warn("%s: skipping updates, more than"
        .. " %d bytes unread (maxPending)", self.name, maxPending)
    end
    return
  end
  if self.behind then
    self.behind = false
    log.prefixed(self:logPrefix()).info("%s: caught up, sending updates"
      .. " again", self.name)
    self:send("* you missed updates while behind; look shows the world")
  end
  t:write(text)
end

-- Lobby: the factory, its players and its port ------------------------------

local Lobby = protocol.ServerFactory:extend({ __name = "Lobby",
  protocol = Player })
M.Lobby = Lobby

function Lobby:init(opts)
  for k, v in pairs(M.defaults) do
    local given = opts and opts[k]
    if given ~= nil and (math.type(given) ~= "integer" or given < 0) then
      error(string.format("players: %s must be a whole number >= 0, got %s",
        k, tostring(given)), 3)
    end
    self[k] = given or v
  end
  self.players = {}   -- the named players (a set)
  self.open = {}      -- every connection, named or not (a set)
  self.connections = 0
end

-- Listens on interface (default 127.0.0.1) and port (0: any free one);
-- returns the port number.
function Lobby:listen(port, interface)
  -- Each connection takes its write-buffer limit from
  -- self.maxWriteBuffer (Factory.maxWriteBuffer).
  self.port = reactor.listenTCP(port, self,
    { interface = interface or "127.0.0.1" })
  -- When the reactor stops, players are told before their connections
  -- close.
  reactor.addSystemEventTrigger("before", "shutdown", self.close, self)
  return self.port:getHost().port
end

-- One tick's updates ("\r\n"-terminated lines) to every named player.
function Lobby:broadcast(text)
  if text == "" then
    return
  end
  local maxPending = self.maxPending
  for p in pairs(self.players) do
    p:update(text, maxPending)
  end
end

-- Stops listening and closes every connection, each once it has flushed
-- what it has queued (abort() closes them at once). connectionLost brings
-- self.connections to 0.
function Lobby:close()
  if self.closed then
    return
  end
  self.closed = true
  if self.port then
    self.port:stopListening()
    self.port = nil
  end
  for p in pairs(self.open) do
    p:send("* the server is shutting down; bye")
    p.transport:loseConnection()
  end
end

function Lobby:abort()
  for p in pairs(self.open) do
    p.transport:abortConnection()
  end
end

return M
