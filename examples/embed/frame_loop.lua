-- frame_loop.lua: loom inside a plain lua5.4 program that owns its main
-- loop, as a game engine scripted in Lua does. The world is in Lua here
-- (the `game` module below, with the C world's functions and limits);
-- players.lua is the same protocol the C servers use. Each frame, 30 a
-- second: reactor.iterate(0) gives the network its turn, then the world
-- advances one tick and the tick's updates go to the players, then the
-- rest of the frame is waited out.
--
--   eval "$(make -s print-lua-paths)"     # or an installed loom
--   lua5.4 examples/embed/frame_loop.lua [--idle-timeout SECONDS] [PORT [INTERFACE]]
--   nc 127.0.0.1 PORT
--
-- Ctrl-C (SIGINT) or SIGTERM stops it: the players are told, their
-- connections closed, and the script returns.

-- players.lua sits next to this script.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

-- The world ----------------------------------------------------------------

local WIDTH, HEIGHT = 100, 100 -- x in 0..WIDTH-1, y in 0..HEIGHT-1
local MAX_STEP = 5             -- |dx| and |dy| of one move
local MAX_PLAYERS = 64
local MAX_SAY = 200            -- bytes of one chat line
local CHAT_RING = 32           -- chat lines kept
local LOOK_CHAT = 8            -- chat lines look shows

local world = {
  players = {},   -- id -> {id=, name=, x=, y=, announced=, moved=}
  count = 0,      -- players in the world
  leaving = {},   -- names whose "leave" the next tick announces
  nextId = 1,
  ticks = 0,
  chat = {},      -- line n (from 0) at chat[n % CHAT_RING]: {name, text}
  chatTotal = 0,  -- lines said so far
  chatSent = 0,   -- lines already in a tick's updates
}

local function byName(name)
  for _, p in pairs(world.players) do
    if p.name == name then
      return p
    end
  end
end

local game = {}

function game.join(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'join' (string expected)", 2)
  end
  if #name > 16 or not name:match("^[%w_%-]+$") then
    return nil, "a name is 1 to 16 letters, digits, '_' or '-'"
  elseif byName(name) then
    return nil, "that name is taken"
  elseif world.count + #world.leaving >= MAX_PLAYERS then
    return nil, "the world is full"
  end
  local id = world.nextId
  world.nextId = id + 1
  -- Spread newcomers over the grid, the same way every run.
  world.players[id] = { id = id, name = name, x = id * 37 % WIDTH,
    y = id * 61 % HEIGHT, announced = false, moved = false }
  world.count = world.count + 1
  return id
end

local function player(id)
  local p = world.players[id]
  if not p then
    return nil, "no such player"
  end
  return p
end

function game.leave(id)
  local p, err = player(id)
  if not p then
    return nil, err
  end
  world.players[id] = nil
  world.count = world.count - 1
  -- Never announced: nobody needs to hear that it left.
  if p.announced then
    world.leaving[#world.leaving + 1] = p.name
  end
  return true
end

local function clamp(v, hi)
  return v < 0 and 0 or v > hi and hi or v
end

function game.move(id, dx, dy)
  local p, err = player(id)
  if not p then
    return nil, err
  end
  if math.type(dx) ~= "integer" or math.type(dy) ~= "integer" then
    error("bad argument to 'move' (integers expected)", 2)
  end
  if math.abs(dx) > MAX_STEP or math.abs(dy) > MAX_STEP then
    return nil, "a step is at most 5 in x and in y"
  end
  -- The world's edges stop a player.
  local x, y = clamp(p.x + dx, WIDTH - 1), clamp(p.y + dy, HEIGHT - 1)
  if x ~= p.x or y ~= p.y then
    p.x, p.y, p.moved = x, y, true
  end
  return x, y
end

function game.say(id, text)
  local p, err = player(id)
  if not p then
    return nil, err
  elseif #text == 0 then
    return nil, "say what? (say TEXT)"
  elseif #text > MAX_SAY then
    return nil, "a chat line is at most 200 bytes"
  elseif world.chatTotal - world.chatSent >= CHAT_RING then
    return nil, "too much chat this tick, say it again"
  end
  -- What others' terminals show: no control bytes (escape sequences).
  world.chat[world.chatTotal % CHAT_RING] = { p.name,
    (text:gsub("[%c\127]", "?")) }
  world.chatTotal = world.chatTotal + 1
  return true
end

local function sortedIds()
  local ids = {}
  for id in pairs(world.players) do
    ids[#ids + 1] = id
  end
  table.sort(ids)
  return ids
end

function game.look(id)
  local me, err = player(id)
  if not me then
    return nil, err
  end
  local out = { string.format("you %s %d %d", me.name, me.x, me.y) }
  for _, other in ipairs(sortedIds()) do
    local p = world.players[other]
    if p ~= me then
      out[#out + 1] = string.format("player %s %d %d", p.name, p.x, p.y)
    end
  end
  for n = math.max(0, world.chatTotal - LOOK_CHAT), world.chatTotal - 1 do
    local c = world.chat[n % CHAT_RING]
    out[#out + 1] = "chat " .. c[1] .. " " .. c[2]
  end
  return table.concat(out, "\n")
end

-- One tick: the updates since the last one, "\r\n"-terminated lines in
-- the C world's format ("" when nothing happened).
local function tick()
  world.ticks = world.ticks + 1
  local t, out = world.ticks, {}
  for _, name in ipairs(world.leaving) do
    out[#out + 1] = string.format("@%d leave %s\r\n", t, name)
  end
  world.leaving = {}
  for _, id in ipairs(sortedIds()) do
    local p = world.players[id]
    if not p.announced then
      out[#out + 1] = string.format("@%d join %s %d %d\r\n", t, p.name, p.x,
        p.y)
    elseif p.moved then
      out[#out + 1] = string.format("@%d pos %s %d %d\r\n", t, p.name, p.x,
        p.y)
    end
    p.announced, p.moved = true, false
  end
  for n = world.chatSent, world.chatTotal - 1 do
    local c = world.chat[n % CHAT_RING]
    out[#out + 1] = string.format("@%d say %s %s\r\n", t, c[1], c[2])
  end
  world.chatSent = world.chatTotal
  return table.concat(out)
end

-- players.lua's `require "game"` finds this world.
package.preload.game = function()
  return game
end

-- The program --------------------------------------------------------------

local function usage()
  io.stderr:write("usage: lua5.4 frame_loop.lua [--idle-timeout SECONDS]"
    .. " [PORT [INTERFACE]]\n")
  os.exit(2)
end

local port, interface, idle = 8010, "127.0.0.1", nil
do
  local i, pos = 1, 0
  while arg and arg[i] do
    local a = arg[i]
    if a == "--idle-timeout" then
      idle = math.tointeger(tonumber(arg[i + 1]))
      if not idle or idle < 0 then
        usage()
      end
      i = i + 1
    elseif a:sub(1, 1) == "-" or pos >= 2 then
      usage()
    elseif pos == 0 then
      port = math.tointeger(tonumber(a))
      if not port or port < 0 or port > 65535 then
        usage()
      end
      pos = 1
    else
      interface, pos = a, 2
    end
    i = i + 1
  end
end

local loom = require "loom"
local log, reactor = loom.log, loom.reactor
local players = require "players"

local lobby = players.Lobby:new({ idleTimeout = idle })
local ok, bound = pcall(lobby.listen, lobby, port, interface)
if not ok then
  io.stderr:write("frame_loop: cannot listen on ", interface, ":",
    tostring(port), ": ", tostring(bound), "\n")
  os.exit(1)
end
print(string.format("listening on %s:%d", interface, bound))
io.stdout:flush()

-- Startup triggers run, and SIGINT/SIGTERM now call reactor.stop(),
-- whose shutdown (driven by the loop below) closes the lobby (players.lua)
-- and every connection.
reactor.startRunning()

local FRAME = 1 / 30
-- Further behind than this, the frame clock skips ahead instead of
-- running the missed frames back to back.
local MAX_LATE = 5 * FRAME

local frameEnd = reactor.seconds()
while reactor.running do
  reactor.iterate(0) -- the network's turn: lines in, writes out, timers
  local updates = tick()
  if updates ~= "" then
    -- As loom_call_method does for the C servers: an error is logged with
    -- its traceback and costs this tick's updates only.
    local ok, e = xpcall(lobby.broadcast, debug.traceback, lobby, updates)
    if not ok then
      log.error("error in Lobby.broadcast\n%s", e)
    end
  end
  -- The rest of the frame: an engine would render, then sleep. Plain Lua
  -- has no sleep; reactor.iterate(delay) is one that also takes a
  -- player's line as soon as it comes.
  frameEnd = frameEnd + FRAME
  local now = reactor.seconds()
  if now > frameEnd + MAX_LATE then
    frameEnd = now
  end
  while now < frameEnd and reactor.running do
    reactor.iterate(frameEnd - now)
    now = reactor.seconds()
  end
end

-- Stopping: shutdown is closing the connections; let every
-- connectionLost run (bounded).
local deadline = reactor.seconds() + 10
while lobby.connections > 0 and reactor.seconds() < deadline do
  reactor.iterate(0.01)
end
io.stderr:write(string.format("frame_loop: stopped after %d ticks, %d"
  .. " players left\n", world.ticks, world.count))
