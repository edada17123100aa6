-- loom.strports: a service from an endpoint description, as
-- twisted.application.strports.
--
--   strports.service("tcp:8000:interface=127.0.0.1", factory)
--     :setServiceParent(app)
--   strports.service("tcp:8000", factory, { reactor = r })  -- another reactor
--
-- The description is parsed at once (a bad one raises its one-line
-- error); the port opens when the service starts, and a failure to listen
-- raises from the start-up.

local endpoints = require "loom.endpoints"
local internet = require "loom.internet"

local M = {}

-- The reactor of strports' options table (Twisted's reactor= keyword).
-- Raises, naming the caller's line, for anything else: notably a reactor
-- passed where the options go, which would fail only at start-up.
local function reactorOf(fname, opts)
  if opts == nil then
    return require "loom.reactor"
  end
  if type(opts) ~= "table" then
    error(string.format("strports.%s: options must be a table ({reactor=}),"
      .. " got %s", fname, type(opts)), 3)
  end
  if opts.listenTCP ~= nil then
    error(string.format("strports.%s: the third argument is an options"
      .. " table: pass {reactor = r}, not the reactor", fname), 3)
  end
  for key in pairs(opts) do
    if key ~= "reactor" then
      error(string.format("strports.%s: unknown option %q (reactor)", fname,
        tostring(key)), 3)
    end
  end
  local reactor = opts.reactor or require "loom.reactor"
  if type(reactor) ~= "table" or type(reactor.listenTCP) ~= "function" then
    error(string.format("strports.%s: options.reactor is not a reactor (it"
      .. " has no listenTCP)", fname), 3)
  end
  return reactor
end

-- strports.service(description, factory, {reactor=}) -> a service.
function M.service(description, factory, opts)
  local reactor = reactorOf("service", opts)
  local svc = internet.StreamServerEndpointService:new(
    endpoints.serverFromString(reactor, description), factory)
  svc._raiseSynchronously = true
  svc.description = description
  return svc
end

-- strports.listen(description, factory, {reactor=}) -> Deferred(Port), no
-- service.
function M.listen(description, factory, opts)
  local reactor = reactorOf("listen", opts)
  return endpoints.serverFromString(reactor, description):listen(factory)
end

return M
