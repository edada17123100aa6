-- loom.strports: a service from an endpoint description, as
-- twisted.application.strports.
--
--   strports.service("tcp:8000:interface=127.0.0.1", factory)
--     :setServiceParent(app)
--
-- The description is parsed at once (a bad one raises its one-line
-- error); the port opens when the service starts, and a failure to listen
-- raises from the start-up.

local endpoints = require "loom.endpoints"
local internet = require "loom.internet"

local M = {}

function M.service(description, factory, reactor)
  reactor = reactor or require "loom.reactor"
  local svc = internet.StreamServerEndpointService:new(
    endpoints.serverFromString(reactor, description), factory)
  svc._raiseSynchronously = true
  svc.description = description
  return svc
end

-- strports.listen(description, factory) → Deferred(Port), no service.
function M.listen(description, factory, reactor)
  reactor = reactor or require "loom.reactor"
  return endpoints.serverFromString(reactor, description):listen(factory)
end

return M
