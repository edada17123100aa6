-- `loom test [ARGS]`: busted run inside the loom host.
local LOOM = os.getenv("LOOM_BIN") or "build/loom"

local function loomTest(args, env)
  local p = io.popen((env or "") .. " timeout 60 " .. LOOM .. " test " .. args
    .. " 2>&1; echo \"status=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("status=(%d+)%s*$"))
end

-- A directory holding one spec file with body as its only test.
local function specDir(body)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  local f = assert(io.open(dir .. "/one_spec.lua", "w"))
  f:write('describe("x", function() it("y", function()\n', body,
    '\nend) end)\n')
  f:close()
  return dir
end

local function loomTestBody(body)
  local dir = specDir(body)
  local out, status = loomTest(dir)
  os.execute("rm -rf " .. dir)
  return out, status
end

describe("loom test", function()
  it("runs the specs of a directory and exits 0 when they pass", function()
    local out, status = loomTest("examples/testing")
    assert.equal(0, status, out)
    assert.matches("2 successes", out)
  end)

  it("exits non-zero when a spec fails", function()
    local out, status = loomTestBody("assert.equal(1, 2)")
    assert.is_true(status ~= 0, out)
    assert.matches("1 failure", out)
  end)

  it("runs the specs inside the loom host, on its C core", function()
    local out, status = loomTestBody(
      'assert.truthy(package.loaded["loom.hostinfo"])\n'
      .. 'assert.is_function(package.preload["loom.core"])')
    assert.equal(0, status, out)
    assert.matches("1 success", out)
  end)

  it("passes busted's options on", function()
    local out, status = loomTest("-o TAP examples/testing")
    assert.equal(0, status, out)
    assert.matches("\nok 2 %- ", out)
  end)

  it("fails a run whose specs leave a listener open", function()
    local out, status = loomTestBody([[
      local reactor = require "loom.reactor"
      local protocol = require "loom.protocol"
      _G.leftOpen = reactor.listenTCP(0, protocol.Factory.forProtocol(
        protocol.Protocol), { interface = "127.0.0.1" })]])
    assert.equal(1, status, out)
    assert.matches("1 success", out)
    assert.matches("loom: loop closed with handles still open: listener 1",
      out, 1, true)
  end)

  it("fails a run whose specs leave a delayed call pending", function()
    local out, status = loomTestBody([[
      require("loom.reactor").callLater(3600, print)]])
    assert.equal(1, status, out)
    assert.matches("handles still open: timer 1", out, 1, true)
  end)

  it("says in one line when busted is not installed", function()
    local out, status = loomTest("examples/testing", "LUA_PATH='/nonexistent/?.lua'")
    assert.equal(1, status, out)
    assert.equal("loom: test: busted is not installed (apt-get install"
      .. " lua-busted)\nstatus=1\n", out)
  end)

  it("passes a run whose specs closed what they opened", function()
    local out, status = loomTestBody([[
      local reactor = require "loom.reactor"
      local protocol = require "loom.protocol"
      local port = reactor.listenTCP(0, protocol.Factory.forProtocol(
        protocol.Protocol), { interface = "127.0.0.1" })
      port:stopListening()
      reactor.callLater(3600, print):cancel()]])
    assert.equal(0, status, out)
  end)
end)
