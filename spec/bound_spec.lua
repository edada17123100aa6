-- Every bound object (a C box over a host object) is made one way
-- (bindings/box.c): the same metamethods for every class, closed by
-- `<close>` as by its close method, its one registry ref released once the
-- host object closed, and "(closed)" in its tostring from then on.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local testing = require "loom.testing"
local core = require "loom.core"

local net = dofile("spec/support/net.lua")
local runUntil = testing.runUntil

-- Is obj pinned by a registry ref?
local function pinned(obj)
  for k, v in pairs(debug.getregistry()) do
    if math.type(k) == "integer" and rawequal(v, obj) then
      return true
    end
  end
  return false
end

-- Runs the loop until pred() holds (or fails after 3 s).
local function waitFor(pred, what)
  local d = defer.Deferred()
  local deadline = reactor.seconds() + 3
  local function poll()
    if pred() then
      d:callback(true)
    elseif reactor.seconds() > deadline then
      d:errback(what .. ": timed out")
    else
      reactor.callLater(0.01, poll)
    end
  end
  poll()
  return runUntil(d)
end

local function tempdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  return dir
end

local dir = tempdir()
local listeners = {}

local function echoPort()
  local port = reactor.listenTCP(0, protocol.Factory.forProtocol(net.Echo),
    { interface = "127.0.0.1" })
  listeners[#listeners + 1] = port
  return port
end

-- name -> a function making one open object of that class.
local classes = {
  ["loom.Timer"] = function() return core.timer(function() end) end,
  ["loom.Signal"] = function() return core.onSignal("USR2", function() end) end,
  ["loom.FsEvent"] = function()
    return assert(core.watchPath(dir, function() end))
  end,
  ["loom.Listener"] = function()
    return reactor.listenTCP(0, protocol.Factory.forProtocol(net.Echo),
      { interface = "127.0.0.1" }).listener
  end,
  ["loom.UNIXListener"] = function()
    return reactor.listenUNIX(dir .. "/bound.sock",
      protocol.Factory.forProtocol(net.Echo)).listener
  end,
  ["loom.UDPSocket"] = function()
    return reactor.listenUDP(0, protocol.DatagramProtocol:new(),
      { interface = "127.0.0.1" }).socket
  end,
  ["loom.TCPTransport"] = function()
    local proto = net.Recorder:new()
    local cf = protocol.ClientFactory:new()
    function cf:buildProtocol() return proto end
    reactor.connectTCP("127.0.0.1", echoPort():getHost().port, cf)
    return runUntil(proto.made).transport
  end,
  ["loom.UNIXTransport"] = function()
    local path = dir .. "/t.sock"
    os.remove(path)
    local port = reactor.listenUNIX(path,
      protocol.Factory.forProtocol(net.Echo))
    listeners[#listeners + 1] = port
    local proto = net.Recorder:new()
    local cf = protocol.ClientFactory:new()
    function cf:buildProtocol() return proto end
    reactor.connectUNIX(path, cf)
    return runUntil(proto.made).transport
  end,
  ["loom.ProcessTransport"] = function()
    return reactor.spawnProcess(protocol.ProcessProtocol:new(), "/bin/cat",
      { "cat" })
  end,
}

describe("bound objects", function()
  teardown(function()
    for _, port in ipairs(listeners) do
      runUntil(port:stopListening())
    end
    os.execute("rm -rf " .. dir)
  end)

  for name, make in pairs(classes) do
    it(name .. " has the common metamethods and closes by <close>",
      function()
        local obj = make()
        assert.is_true(pinned(obj)) -- by its one ref while open
        local mt = getmetatable(obj)
        assert.equal(name, mt.__name)
        assert.is_function(mt.__gc)
        assert.is_function(mt.__close)
        assert.is_function(mt.__tostring)
        assert.equal(name, tostring(obj):match("^%S+"))
        assert.not_matches("closed", tostring(obj))
        do
          local scoped <close> = obj
        end
        -- Closed only once libuv called the close callback: wait for it.
        waitFor(function()
          return tostring(obj):find("(closed)", 1, true)
            or tostring(obj):find("(ended)", 1, true)
        end, name)
        waitFor(function() return not pinned(obj) end,
          name .. " registry ref")
      end)
  end
end)
