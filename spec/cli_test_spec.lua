-- `loom test [DIR]`: busted over DIR with loom's modules on the path.
local LOOM = os.getenv("LOOM_BIN") or "build/loom"

local function loomTest(dir)
  local p = io.popen("timeout 60 " .. LOOM .. " test " .. dir
    .. " 2>&1; echo \"status=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("status=(%d+)%s*$"))
end

describe("loom test", function()
  it("runs the specs of a directory and exits 0 when they pass", function()
    local out, status = loomTest("examples/testing")
    assert.equal(0, status, out)
    assert.matches("2 successes", out)
  end)

  it("exits non-zero when a spec fails", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local f = assert(io.open(dir .. "/bad_spec.lua", "w"))
    f:write('describe("x", function() it("fails", function() '
      .. 'assert.equal(1, 2) end) end)\n')
    f:close()
    local out, status = loomTest(dir)
    os.execute("rm -rf " .. dir)
    assert.is_true(status ~= 0, out)
    assert.matches("1 failure", out)
  end)
end)
