-- examples/deferreds/*: each runs as a real `loom run` subprocess and must
-- print its results and stop its own reactor (exit 0) within a few seconds.
local LOOM = os.getenv("LOOM_BIN") or "build/loom"

local function run(script)
  local p = io.popen("timeout 10 " .. LOOM .. " run " .. script
    .. " 2>&1; echo \"status=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("status=(%d+)%s*$"))
end

describe("examples/deferreds", function()
  it("slow_jobs gathers ten deferLater jobs in a DeferredList, then stops",
    function()
      local out, status = run("examples/deferreds/slow_jobs.lua")
      assert.equal(0, status)
      for i = 1, 10 do
        if i ~= 7 then
          assert.matches(("job %d squared is %d"):format(i, i * i), out)
        end
      end
      assert.matches("7 failed .-job 7 ran out of luck", out)
    end)

  it("inline_sum awaits two results in turn and prints their sum", function()
    local out, status = run("examples/deferreds/inline_sum.lua")
    assert.equal(0, status)
    assert.matches("first value:%s+20", out)
    assert.matches("second value:%s+22", out)
    assert.matches("sum:%s+42", out)
  end)
end)
