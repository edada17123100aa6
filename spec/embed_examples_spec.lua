-- examples/embed: the game server three ways, each run as a real
-- subprocess on port 0 and played over loopback by several players:
--   game          C world, loom on its own loop (loom_run)
--   game_uvloop   C world, loom on the program's uv_loop_t
--   frame_loop    Lua world, a plain lua5.4 frame loop over reactor.iterate
-- The C programs are built by `make -C examples/embed` (loom installed into
-- a scratch prefix, then cc ... $(pkg-config --cflags --libs loom)).
--
-- LOOM_EMBED_VALGRIND=1 (make sanitize, through spec/valgrind.sh) runs the
-- two C programs under valgrind instead: any invalid access, definite leak
-- or unclean exit fails their specs.
local reactor = require "loom.reactor"
local basic = require "loom.basic"
local defer = require "loom.defer"
local log = require "loom.log"
local testing = require "loom.testing"

local sub = dofile("spec/support/subprocess.lua")
local waitUntil, readFile = sub.waitUntil, sub.readFile

local BUILD = os.getenv("BUILD") or "build"
local VALGRIND = os.getenv("LOOM_EMBED_VALGRIND") == "1"
-- Seconds: a subprocess's whole life, and one wait for a line.
local LIMIT = VALGRIND and 120 or 30
local WAIT = VALGRIND and 30 or 5

local function sh(cmd)
  local h = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"status=$?\""))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), status
end

-- make -C examples/embed, once per run (a new make, not the outer one's
-- job server). A sanitized libloom needs its runtime in the programs too.
local built
local function buildC()
  if built == nil then
    local san = os.getenv("LOOM_SANITIZE") and not VALGRIND
      and " CFLAGS='-O1 -g -fsanitize=address,undefined'"
        .. " LDFLAGS=-fsanitize=address,undefined" or ""
    local out, status = sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout"
      .. " 300 make -s -C examples/embed BUILD=" .. BUILD .. san)
    built = { ok = status == 0, out = out }
  end
  assert(built.ok, "make -C examples/embed failed:\n" .. built.out)
  return BUILD .. "/embed/"
end

local VG = "valgrind -q --error-exitcode=99 --leak-check=full"
  .. " --errors-for-leak-kinds=definite --show-leak-kinds=definite"

-- The command that runs each variant with `args`.
local variants = {
  { name = "game (C world, loom_run)", cmd = function(args)
    return (VALGRIND and VG .. " " or "") .. buildC() .. "game " .. args
  end },
  { name = "game_uvloop (C world, the program's uv_loop_t)",
    cmd = function(args)
      return (VALGRIND and VG .. " " or "") .. buildC() .. "game_uvloop "
        .. args
    end },
  { name = "frame_loop.lua (Lua world, plain lua5.4)", lua = true,
    cmd = function(args)
      -- build/loom.so, not a sanitizer build's: lua5.4 has no ASan.
      return "env 'LUA_PATH=lua/?.lua;lua/?/init.lua;;'"
        .. " 'LUA_CPATH=build/?.so;;' lua5.4 examples/embed/frame_loop.lua "
        .. args
    end },
}

-- Starts cmd (under timeout) and reads its "listening on" line:
-- {pid=, port=, handle=, errfile=}. --foreground: stop()'s SIGTERM then
-- reaches the program once, as kill(1) or a supervisor sends it. Without
-- it timeout(1) sends it again to its whole process group, and on a busy
-- machine that second one can land after plain lua5.4 has closed its
-- state (so the signal's default action is back) and fail a clean stop
-- with 143.
local function start(cmd)
  local errfile = os.tmpname()
  local script = os.tmpname()
  sub.writeFile(script, "echo $$; exec timeout --foreground " .. LIMIT
    .. " " .. cmd .. "\n")
  local h = assert(io.popen("sh " .. script .. " 2>" .. errfile
    .. " </dev/null"))
  local pid = assert(tonumber(h:read("l")), "no pid from sh")
  local line = h:read("l")
  os.remove(script)
  local port = line and tonumber(line:match("^listening on 127%.0%.0%.1:(%d+)$"))
  if not port then
    h:close()
    error(cmd .. " did not start: " .. tostring(line) .. "\n"
      .. readFile(errfile))
  end
  return { pid = pid, port = port, handle = h, errfile = errfile }
end

-- SIGTERM, then the exit status, the rest of stdout and all of stderr.
local function stop(server)
  os.execute(string.format("kill -TERM %d 2>/dev/null", server.pid))
  local rest = server.handle:read("a")
  local _, how, code = server.handle:close()
  local err = readFile(server.errfile)
  os.remove(server.errfile)
  return how == "exit" and code or -1, rest, err
end

-- A player: every line it gets, and waits for the next ones.
local Client = basic.LineReceiver:extend({ __name = "Client",
  delimiter = "\r\n" })

function Client:init()
  self.lines, self.seen = {}, 0
  self.made, self.lost = defer.Deferred(), defer.Deferred()
end
function Client:connectionMade()
  self.made:callback(self)
end
function Client:lineReceived(line)
  self.lines[#self.lines + 1] = line
end
function Client:connectionLost(reason)
  self.reason = reason
  self.lost:callback(self)
end
function Client:send(line)
  self.transport:write(line .. "\n")
end

-- Waits for the first line after those already seen that matches
-- pattern; returns it (with its captures). Lines skipped on the way stay
-- in self.lines.
function Client:waitLine(pattern)
  local found
  waitUntil(function()
    for i = self.seen + 1, #self.lines do
      if self.lines[i]:find(pattern) then
        self.seen, found = i, i
        return true
      end
    end
    return false
  end, WAIT)
  assert(found, string.format("no line matching %q; got:\n%s", pattern,
    table.concat(self.lines, "\n", self.seen + 1)))
  return self.lines[found], self.lines[found]:match(pattern)
end

-- The answer lines (not "@" updates) since the last wait, up to and
-- including the next "ok"/"error" line.
function Client:answer()
  local out = {}
  waitUntil(function()
    for i = self.seen + 1, #self.lines do
      local l = self.lines[i]
      if l:sub(1, 1) ~= "@" then
        out[#out + 1] = l
        if l:find("^ok") or l:find("^error") then
          self.seen = i
          return true
        end
      end
    end
    out = {}
    return false
  end, WAIT)
  assert(#out > 0, "no answer; got:\n" .. table.concat(self.lines, "\n",
    self.seen + 1))
  return out
end

local function connect(port)
  local c = sub.connect(port, Client:new())
  c:waitLine("^hello: what is your name%?")
  return c
end

local function join(port, name)
  local c = connect(port)
  c:send(name)
  assert.same({ "ok welcome " .. name .. " (help lists the commands)" },
    c:answer())
  return c
end

local function waitLost(c)
  testing.runUntil(c.lost, WAIT)
end

for _, v in ipairs(variants) do
  if not (VALGRIND and v.lua) then
    describe("examples/embed " .. v.name, function()
      local server

      after_each(function()
        if server then
          stop(server)
          server = nil
        end
      end)

      it("plays: joins, moves, chat, look, per-tick updates, errors, and"
        .. " a clean stop", function()
        server = start(v.cmd("0"))
        local port = server.port
        local alice = join(port, "alice")
        local bob = join(port, "bob")
        local carol = join(port, "carol")

        -- Names are checked by the world.
        local dave = connect(port)
        dave:send("alice")
        assert.same({ "error that name is taken (send another name)" },
          dave:answer())
        dave:send("no spaces!")
        assert.same({ "error a name is 1 to 16 letters, digits, '_' or '-'"
          .. " (send another name)" }, dave:answer())

        -- The others hear of each join in a tick's updates.
        bob:waitLine("^@%d+ join carol 11 83$")

        -- A move answers at once; the others see it at the next tick.
        alice:send("move 2 3")
        assert.same({ "ok at 39 64" }, alice:answer())
        local _, t1 = bob:waitLine("^@(%d+) pos alice 39 64$")
        carol:waitLine("^@%d+ pos alice 39 64$")
        alice:waitLine("^@%d+ pos alice 39 64$")

        alice:send("say hello, world")
        assert.same({ "ok said" }, alice:answer())
        bob:waitLine("^@%d+ say alice hello, world$")
        carol:waitLine("^@%d+ say alice hello, world$")

        bob:send("look")
        assert.same({ "you bob 74 22", "player alice 39 64",
          "player carol 11 83", "chat alice hello, world", "ok look" },
          bob:answer())

        -- The world's edge stops a player.
        carol:send("move -5 0")
        assert.same({ "ok at 6 83" }, carol:answer())
        carol:send("move -5 5")
        assert.same({ "ok at 1 88" }, carol:answer())
        carol:send("move -5 5")
        assert.same({ "ok at 0 93" }, carol:answer())
        carol:send("move 0 5")
        assert.same({ "ok at 0 98" }, carol:answer())
        carol:send("move 0 5")
        assert.same({ "ok at 0 99" }, carol:answer())

        -- Each bad command gets one error line, and play goes on.
        for cmd, err in pairs({
          ["fly away"] = "error unknown command 'fly' (try help)",
          ["move 6 0"] = "error a step is at most 5 in x and in y",
          ["move -1 -6"] = "error a step is at most 5 in x and in y",
          ["move a b"] = "error usage: move DX DY (whole numbers, each -5..5)",
          ["move 1"] = "error usage: move DX DY (whole numbers, each -5..5)",
          ["move 99999999999999999999999 0"] =
            "error usage: move DX DY (whole numbers, each -5..5)",
          ["say"] = "error say what? (say TEXT)",
          ["say " .. ("y"):rep(201)] = "error a chat line is at most 200 bytes",
        }) do
          bob:send(cmd)
          assert.same({ err }, bob:answer(), cmd)
        end
        bob:send("help")
        assert.same({ "ok commands: move DX DY (each -5..5), say TEXT, look,"
          .. " help, quit" }, bob:answer())

        -- Control bytes in chat reach the others as '?'.
        bob:send("say a\27[2Jb")
        assert.same({ "ok said" }, bob:answer())
        alice:waitLine("^@%d+ say bob a%?%[2Jb$")

        -- Ticks come at about 30 Hz: ~15 in half a second (loosely: the
        -- machine may be loaded, and valgrind is slow).
        sub.sleep(0.5)
        alice:send("move 1 0")
        assert.same({ "ok at 40 64" }, alice:answer())
        local _, t2 = bob:waitLine("^@(%d+) pos alice 40 64$")
        local ticks = tonumber(t2) - tonumber(t1)
        assert.is_true(ticks >= 3 and ticks <= 100, "ticks: " .. ticks)

        -- An over-long line is refused and its connection closed.
        carol:send(("x"):rep(600))
        assert.same({ "error a line is at most 512 bytes; bye" },
          carol:answer())
        waitLost(carol)
        alice:waitLine("^@%d+ leave carol$")

        bob:send("quit")
        assert.same({ "ok bye" }, bob:answer())
        waitLost(bob)
        alice:waitLine("^@%d+ leave bob$")

        -- A clean stop: the players left are told, then closed.
        local status, _, err = stop(server)
        server = nil
        alice:waitLine("^%* the server is shutting down; bye$")
        waitLost(alice)
        waitLost(dave)
        assert.equal(0, status, err)
        assert.not_matches("error", err)
        assert.not_matches("ERROR", err)
        assert.not_matches("traceback", err)
        assert.matches("stopped", err)
      end)

      if not VALGRIND then
        it("closes a connection idle for --idle-timeout seconds", function()
          server = start(v.cmd("--idle-timeout 1 0"))
          local quiet = connect(server.port)
          local t0 = reactor.seconds()
          quiet:waitLine("^error idle for too long; bye$")
          waitLost(quiet)
          assert.is_true(reactor.seconds() - t0 < 4)
        end)

        it("refuses a player when the world is full (64)", function()
          server = start(v.cmd("0"))
          local ps = {}
          for i = 1, 64 do
            ps[i] = join(server.port, "p" .. i)
          end
          local late = connect(server.port)
          late:send("late")
          assert.same({ "error the world is full (send another name)" },
            late:answer())
          ps[1]:send("quit")
          waitLost(ps[1])
          -- Its slot is free again after the tick that announced it left.
          ps[2]:waitLine("^@%d+ leave p1$")
          late:send("late")
          assert.same({ "ok welcome late (help lists the commands)" },
            late:answer())
        end)

        it("rejects bad command-line arguments with a usage line", function()
          local out, status = sh("timeout 10 " .. v.cmd("--bogus"))
          assert.equal(2, status, out)
          assert.matches("usage: .*%[%-%-idle%-timeout SECONDS%] %[PORT"
            .. " %[INTERFACE%]%]", out)
          out, status = sh("timeout 10 " .. v.cmd("70000"))
          assert.equal(2, status, out)
        end)

        it("exits 1 saying why when its port is taken", function()
          server = start(v.cmd("0"))
          local out, status = sh("timeout 10 " .. v.cmd(server.port))
          assert.equal(1, status, out)
          assert.matches("cannot listen on 127%.0%.0%.1:" .. server.port, out)
          assert.matches("EADDRINUSE", out)
        end)
      end
    end)
  end
end

-- players.lua alone, in this process: the tick updates a player who does
-- not read are skipped (and logged), and resume once it catches up.
describe("examples/embed/players.lua updates to a slow reader", function()
  local saved = {}

  before_each(function()
    saved.path = package.path
    saved.game, saved.players = package.loaded.game, package.loaded.players
    package.path = "examples/embed/?.lua;" .. package.path
    package.loaded.players = nil
    local nextId = 0
    package.loaded.game = {
      join = function() nextId = nextId + 1 return nextId end,
      leave = function() return true end,
    }
  end)

  after_each(function()
    package.path = saved.path
    package.loaded.game, package.loaded.players = saved.game, saved.players
  end)

  it("skips a player with more than maxPending bytes unread", function()
    local players = require "players"
    local lobby = players.Lobby:new({ maxPending = 100, idleTimeout = 0 })
    local function player(name)
      local p = lobby:buildProtocol()
      local t = testing.StringTransport:new()
      local unread = 0
      function t.bufferedBytes() return unread end
      p:makeConnection(t)
      p:dataReceived(name .. "\n")
      t:clear()
      return p, t, function(n) unread = n end
    end
    local _, fast = player("fast")
    local _, slow, setUnread = player("slow")
    local logged = {}
    local function observe(ev) logged[#logged + 1] = ev.text end
    log.addObserver(observe)
    setUnread(101)
    lobby:broadcast("@1 pos fast 1 1\r\n")
    lobby:broadcast("@2 pos fast 2 2\r\n")
    setUnread(0)
    lobby:broadcast("@3 pos fast 3 3\r\n")
    log.removeObserver(observe)
    assert.equal("@1 pos fast 1 1\r\n@2 pos fast 2 2\r\n@3 pos fast 3 3\r\n",
      fast:value())
    assert.equal("* you missed updates while behind; look shows the world\r\n"
      .. "@3 pos fast 3 3\r\n", slow:value())
    assert.same({ "slow: skipping updates, more than 100 bytes unread"
      .. " (maxPending)", "slow: caught up, sending updates again" }, logged)
  end)

  it("rejects a limit that is not a whole number >= 0", function()
    local players = require "players"
    assert.has_error(function() players.Lobby:new({ maxLine = -1 }) end,
      "players: maxLine must be a whole number >= 0, got -1")
    assert.has_error(function() players.Lobby:new({ maxPending = "x" }) end,
      "players: maxPending must be a whole number >= 0, got x")
  end)
end)
