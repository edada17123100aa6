-- Hot reload's cost, measured from outside as a user sees it: a loom server
-- (`loom run app.lua --reload`, a child process) with N connected clients
-- and one echo ping-pong; the server's protocol module is edited 2*ROUNDS
-- times, and for each edit this measures
--   latency  from the file saved to the first reply made by the new code,
--            as the ping-pong client sees it: ROUNDS edits left to the
--            watcher (the time includes its debounce, reload.delay =
--            0.1 s), ROUNDS followed at once by a SIGHUP (from the signal);
--   work     how long the reload itself ran in the server (app.lua wraps
--            reload.reloadNow to time it and logs the time);
--   pause    the longest ping round trip from the save until 0.3 s after
--            the new code answered: how long the reload held up every
--            other connection (the ping runs every millisecond);
--   idle     the longest ping round trip over 0.5 s before the edit, for
--            comparison (what the machine gives without a reload).
--
--   build/loom run bench/reload_bench.lua N [ROUNDS] [upgrade]
--   (bench/reload_bench.sh runs it for 1,000 and 10,000 clients)
-- Prints one line, "reload clients=N key=median,max ..." (milliseconds,
-- median and maximum over the edits).
local core = require "loom.core"
local defer = require "loom.defer"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local task = require "loom.task"

local N = assert(tonumber((...)),
  "usage: reload_bench.lua N [ROUNDS] [upgrade]")
local ROUNDS = tonumber((select(2, ...))) or 5
-- "upgrade": the class defines upgrade(self), so that each reload reaches
-- every live instance (docs/reload.md), a cost that grows with N.
local UPGRADE = select(3, ...) == "upgrade"
local LOOM = os.getenv("LOOM_BIN") or "build/loom"
local WINDOW = 100 -- clients connecting at once
local STEP_TIMEOUT = 30

local now = core.walltime
local await = defer.await

local function sleep(secs)
  return task.deferLater(reactor, secs)
end

local function writeFile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The server: an echo whose replies carry the version of its code.
local function module(version)
  return ([[
local protocol = require "loom.protocol"
local M = {}
M.Echo = protocol.Protocol:extend({ __name = "BenchEcho" })
function M.Echo:dataReceived(data)
  self.transport:write("v%d " .. data)
end
%s
return M
]]):format(version, UPGRADE and [[
function M.Echo:upgrade()
  self.upgrades = (self.upgrades or 0) + 1
end]] or "")
end

local APP = [[
package.path = %q .. "/?.lua;" .. package.path
local application = require "loom.application"
local protocol = require "loom.protocol"
local strports = require "loom.strports"
local echo = require "benchecho"
-- How long each reload runs, in the server's log.
local core = require "loom.core"
local log = require "loom.log"
local reload = require "loom.reload"
local reloadNow = reload.reloadNow
function reload.reloadNow(...)
  local t0 = core.walltime()
  local summary, details = reloadNow(...)
  log.info("bench: %%.3f ms: %%s", (core.walltime() - t0) * 1000, summary)
  return summary, details
end
local app = application.Application("reload bench")
strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(echo.Echo)):setServiceParent(app)
return app
]]

local dir = io.popen("mktemp -d"):read("l")
local modulePath = dir .. "/benchecho.lua"

-- The server, its stdout parsed for its port, its log (stderr) kept.
local Server = protocol.ProcessProtocol:extend({ __name = "Server" })
function Server:init()
  self.out, self.log, self.listening = "", {}, defer.Deferred()
  self.ended = defer.Deferred()
end
function Server:outReceived(data)
  self.out = self.out .. data
  local port = self.out:match("listening on 127%.0%.0%.1:(%d+)\n")
  if port and not self.listening.called then
    self.port = tonumber(port)
    self.listening:callback(self)
  end
end
function Server:errReceived(data)
  self.log[#self.log + 1] = data
end
function Server:logText()
  return table.concat(self.log)
end
function Server:processEnded()
  if not self.listening.called then
    self.listening:errback("the server did not start:\n" .. self:logText())
  end
  self.ended:callback(nil)
end

local function startServer()
  writeFile(modulePath, module(1))
  writeFile(dir .. "/app.lua", APP:format(dir))
  local server = Server:new()
  reactor.spawnProcess(server, LOOM, { LOOM, "run", dir .. "/app.lua",
    "--reload" }, { env = true })
  return server.listening:addTimeout(STEP_TIMEOUT)
end

-- N clients that say hello once (so the server has accepted them and made
-- their protocol) and then stay idle.
local Idle = protocol.Protocol:extend({ __name = "Idle" })
function Idle:connectionMade()
  self.transport:write("hi")
end
function Idle:dataReceived()
  if not self.answered then
    self.answered = true
    self.onAnswer()
  end
end
function Idle:connectionLost(reason)
  if not self.quitting then
    io.stderr:write("reload_bench: an idle client was disconnected: ",
      tostring(reason), "\n")
    os.exit(1)
  end
end

local function connectIdle(port, n)
  local d, started, answered, clients = defer.Deferred(), 0, 0, {}
  local function connectNext()
    if started >= n then
      return
    end
    started = started + 1
    local c = Idle:new()
    c.onAnswer = function()
      answered = answered + 1
      if answered == n then
        d:callback(clients)
      end
      connectNext()
    end
    clients[#clients + 1] = c
    local cf = protocol.ClientFactory:new()
    function cf.buildProtocol()
      return c
    end
    function cf.clientConnectionFailed(_, _, reason)
      d:errback(reason)
    end
    reactor.connectTCP("127.0.0.1", port, cf, { timeout = 10 })
  end
  for _ = 1, WINDOW do
    connectNext()
  end
  if n == 0 then
    d:callback(clients)
  end
  return d:addTimeout(STEP_TIMEOUT)
end

-- The ping-pong: one "ping" in flight, the next a millisecond after each
-- answer; records the longest round trip since reset() and fires `seen`
-- with the time the first answer of version `want` arrived.
local Ping = protocol.Protocol:extend({ __name = "Ping" })
function Ping:connectionMade()
  self.buf, self.maxRtt = "", 0
  self.made:callback(self)
  self:send()
end
function Ping:send()
  self.sentAt = now()
  self.transport:write("ping")
end
function Ping:dataReceived(data)
  self.buf = self.buf .. data
  local version = self.buf:match("^v(%d+) ping$")
  if not version then
    return
  end
  local t = now()
  self.buf = ""
  local rtt = t - self.sentAt
  if rtt > self.maxRtt then
    self.maxRtt = rtt
  end
  if self.want and tonumber(version) == self.want then
    self.want = nil
    self.seen:callback(t)
  end
  reactor.callLater(0.001, self.send, self)
end
function Ping:reset()
  self.maxRtt = 0
end

local function connectPing(port)
  local p = Ping:new()
  p.made = defer.Deferred()
  local cf = protocol.ClientFactory:new()
  function cf.buildProtocol()
    return p
  end
  reactor.connectTCP("127.0.0.1", port, cf, { timeout = 10 })
  return p.made:addTimeout(STEP_TIMEOUT)
end

local function medianMax(list)
  local s = table.move(list, 1, #list, 1, {})
  table.sort(s)
  return string.format("%.1f,%.1f", s[(#s + 1) // 2] * 1000, s[#s] * 1000)
end

-- One edit of the module to `version`, followed by a SIGHUP when hup:
-- returns the latency, the pause and the idle round trip before it.
local function edit(server, ping, version, hup)
  ping:reset()
  await(sleep(0.5))
  local idle = ping.maxRtt
  ping.want, ping.seen = version, defer.Deferred()
  ping:reset()
  local start = now()
  writeFile(modulePath, module(version))
  if hup then
    start = now()
    server.transport:signalProcess("HUP")
  end
  local latency = await(ping.seen:addTimeout(STEP_TIMEOUT)) - start
  await(sleep(0.3))
  return latency, ping.maxRtt, idle
end

-- The reload times the server logged, in seconds (real reloads only).
local function reloadWork(server)
  local list = {}
  for ms in server:logText():gmatch("bench: ([%d.]+) ms: reload: 1 file"
    .. " reloaded") do
    list[#list + 1] = tonumber(ms) / 1000
  end
  return list
end

local function run(server)
  local clients = await(connectIdle(server.port, N))
  local ping = await(connectPing(server.port))
  local r = { watch = {}, hup = {}, pause = {}, idle = {} }
  for round = 1, 2 * ROUNDS do
    local hup = round > ROUNDS
    local latency, pause, idle = edit(server, ping, round + 1, hup)
    table.insert(hup and r.hup or r.watch, latency)
    r.pause[round], r.idle[round] = pause, idle
  end
  local work = reloadWork(server)
  if #work ~= 2 * ROUNDS then
    error(string.format("%d reloads logged, not %d:\n%s", #work,
      2 * ROUNDS, server:logText()))
  end
  print(string.format("reload clients=%d%s watch_ms=%s hup_ms=%s work_ms=%s "
    .. "pause_ms=%s idle_ms=%s", N, UPGRADE and " upgrade=1" or "",
    medianMax(r.watch), medianMax(r.hup),
    medianMax(work), medianMax(r.pause), medianMax(r.idle)))
  for _, c in ipairs(clients) do
    c.quitting = true
    c.transport:abortConnection()
  end
  ping.transport:abortConnection()
end

local main = defer.inlineCallbacks(function()
  local ok, e = pcall(function()
    local server = await(startServer())
    local ran, why = pcall(run, server)
    server.transport:signalProcess("TERM")
    await(server.ended:addTimeout(STEP_TIMEOUT))
    assert(ran, why)
  end)
  os.execute("rm -rf " .. dir)
  if not ok then
    io.stderr:write("reload_bench: ", tostring(e), "\n")
    os.exit(1)
  end
  reactor.stop()
end)

reactor.callWhenRunning(main)
reactor.run()
