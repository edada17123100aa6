-- Requires form a tree (docs/architecture.md, "The Lua framework"): every
-- module of lua/loom loads first, alone, in a fresh lua5.4, and none
-- registers itself in package.loaded before it has finished loading.
local function modules()
  local list = {}
  local p = assert(io.popen("cd lua && find loom -name '*.lua' | sort"))
  for path in p:lines() do
    local name = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    list[#list + 1] = name
  end
  p:close()
  return list
end

-- Runs a plain lua5.4 on code with loom's paths; returns its output and
-- status. build/loom.so, not a sanitizer build's: lua5.4 has no ASan.
local function lua(code)
  local cmd = string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;;' "
    .. "LUA_CPATH='build/?.so;;' lua5.4 -e %q 2>&1", code)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

describe("loom's Lua modules", function()
  local list = modules()

  it("are found", function()
    assert.is_true(#list > 30)
  end)

  for _, name in ipairs(list) do
    it(name .. " loads first, alone", function()
      -- loom.cli runs the command line when loaded as the host does; the
      -- others return their table.
      local out, ok = lua(string.format("assert(require(%q) ~= nil)", name))
      assert.is_true(ok, out)
    end)
  end

  it("never set package.loaded early (a cycle broken by hand)", function()
    local offenders = {}
    for _, name in ipairs(list) do
      local path = "lua/" .. name:gsub("%.", "/") .. ".lua"
      local f = io.open(path) or io.open("lua/" .. name:gsub("%.", "/")
        .. "/init.lua")
      local text = f:read("a")
      f:close()
      -- loom.reload sets a reloaded module's new value once its load has
      -- ended (a module that returned no table): not a cycle broken by hand.
      if text:find("package%.loaded%[[^%]]+%]%s*=")
          and name ~= "loom.reload" then
        offenders[#offenders + 1] = name
      end
    end
    assert.same({}, offenders)
  end)

  it("loom.defer loads DeferredQueue and the rest on first use", function()
    local out, ok = lua([[
      local defer = require "loom.defer"
      assert(package.loaded["loom.defer.sync"] == nil, "loaded early")
      local q = defer.DeferredQueue()
      assert(package.loaded["loom.defer.sync"] ~= nil)
      assert(defer.DeferredLock == require("loom.defer.sync").DeferredLock)
      local got
      q:get():addCallback(function(v) got = v end)
      q:put(7)
      assert(got == 7)]])
    assert.is_true(ok, out)
  end)
end)
