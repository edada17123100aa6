-- loom.internet: services that own a port, a connection or a timer, as
-- twisted.application.internet.
--
--   internet.TCPServer(8000, factory, {interface="127.0.0.1"})
--   internet.TCPClient("127.0.0.1", 8000, factory)
--   internet.TimerService(60, f, ...)            -- f(...) every 60 s
--   internet.StreamServerEndpointService(endpoint, factory)
--
-- Servers listen in privilegedStartService (before privileges would be
-- dropped), so a port that cannot be opened fails the start-up at once.

local application = require "loom.application"
local defer = require "loom.defer"
local err = require "loom.error"
local log = require "loom.log"
local task = require "loom.task"

local Service = application.Service

local M = {}

local function reactorOf(self)
  return self.reactor or require "loom.reactor"
end

-- Listening services answer getHost() with the port's address (the `loom`
-- command prints "listening on HOST:PORT" from it).
local function getHost(self)
  local port = self._port
  if port == nil or port.getHost == nil then
    return nil
  end
  return port:getHost()
end

-- TCPServer ---------------------------------------------------------------------

local TCPServer = Service:extend({ __name = "TCPServer" })
M.TCPServer = TCPServer
TCPServer.getHost = getHost

function TCPServer:init(port, factory, opts)
  self.port = port
  self.factory = factory
  self.opts = opts or {}
end

function TCPServer:_getPort()
  return reactorOf(self).listenTCP(self.port, self.factory, self.opts)
end

function TCPServer:privilegedStartService()
  Service.privilegedStartService(self)
  self._port = self:_getPort()
end

function TCPServer:startService()
  Service.startService(self)
  if self._port == nil then
    self._port = self:_getPort()
  end
end

function TCPServer:stopService()
  Service.stopService(self)
  local port = self._port
  if port ~= nil then
    self._port = nil
    return port:stopListening()
  end
end

-- TCPClient -----------------------------------------------------------------------

local TCPClient = Service:extend({ __name = "TCPClient" })
M.TCPClient = TCPClient

function TCPClient:init(host, port, factory, opts)
  self.host = host
  self.port = port
  self.factory = factory
  self.opts = opts or {}
end

function TCPClient:startService()
  Service.startService(self)
  self._connection = reactorOf(self).connectTCP(self.host, self.port,
    self.factory, self.opts)
end

function TCPClient:stopService()
  Service.stopService(self)
  local c = self._connection
  if c ~= nil then
    self._connection = nil
    c:disconnect()
  end
end

-- TimerService ----------------------------------------------------------------------

local TimerService = Service:extend({ __name = "TimerService" })
M.TimerService = TimerService

-- f(...) every `step` seconds while running, the first call at start.
-- Set `clock` (e.g. a task.Clock) before starting; the reactor by default.
function TimerService:init(step, f, ...)
  self.step = step
  self.call = { f, table.pack(...) }
  self.clock = nil
end

function TimerService:startService()
  Service.startService(self)
  local f, args = self.call[1], self.call[2]
  local loop = task.LoopingCall(f, table.unpack(args, 1, args.n))
  loop.clock = self.clock or reactorOf(self)
  self._loop = loop
  self._loopFinished = loop:start(self.step, true)
  self._loopFinished:addErrback(function(failure)
    log.err(failure, "TimerService: the timed call failed; it stops")
  end)
end

-- → the Deferred that fires once the loop has stopped. As in Twisted,
-- `running` stays true until a call still in progress has finished.
function TimerService:stopService()
  local loop = self._loop
  if loop == nil then
    Service.stopService(self)
    return nil
  end
  self._loop = nil
  if loop.running then
    loop:stop()
  end
  return self._loopFinished:addCallback(function()
    Service.stopService(self)
  end)
end

-- StreamServerEndpointService --------------------------------------------------------

local EndpointService = Service:extend({
  __name = "StreamServerEndpointService" })
M.StreamServerEndpointService = EndpointService
EndpointService.getHost = getHost

-- With _raiseSynchronously (strports.service sets it), a listen failure
-- raises from privilegedStartService instead of being only logged.
function EndpointService:init(endpoint, factory)
  self.endpoint = endpoint
  self.factory = factory
  self._raiseSynchronously = false
end

function EndpointService:privilegedStartService()
  Service.privilegedStartService(self)
  local d = self.endpoint:listen(self.factory)
  self._waitingForPort = d
  local raised
  d:addCallbacks(function(port)
    self._port = port
    return port
  end, function(failure)
    if self._raiseSynchronously then
      raised = failure
    elseif not failure:check(err.CancelledError) then
      -- A cancelled listen is stopService's doing, not an error.
      log.err(failure, "error listening on " .. tostring(self.endpoint))
    end
    return nil
  end)
  if raised then
    error(raised.value, 0)
  end
end

function EndpointService:startService()
  Service.startService(self)
  if self._waitingForPort == nil then
    self:privilegedStartService()
  end
end

-- → the stopListening Deferred (a listen still pending is cancelled).
function EndpointService:stopService()
  Service.stopService(self)
  local d = self._waitingForPort
  self._waitingForPort = nil
  if d == nil then
    return nil
  end
  if not d.called then
    d:cancel()
  end
  return d:addCallback(function(port)
    self._port = nil
    if port ~= nil then
      return port:stopListening()
    end
  end)
end

return M
