-- loom.reload.upgrade: a class's upgrade(self), run once by each live
-- instance of a patched class (or of a subclass) on its next event, after a
-- hot reload (docs/reload.md). loom.reload calls scheduleUpgrades(patched)
-- with the set of class tables it patched; the count of instances that will
-- upgrade comes back.

local class = require "loom.class"
local hooks = require "loom.reactor.hooks"

local type, next, rawget, rawset, pairs, ipairs = type, next, rawget, rawset,
  pairs, ipairs
local getmetatable = getmetatable

local M = {}

-- What the reactor delivers to a protocol or factory: a live instance
-- that must upgrade gets each of these that it has shadowed by a
-- trampoline that removes the shadows, runs upgrade, then the method.
-- No event pays anything once the instance has upgraded (and none pays
-- while no upgrade is pending).
local EVENTS = hooks.EVENTS
local trampolines = {}

local function clearShadows(self)
  for _, e in ipairs(EVENTS) do
    if rawget(self, e) == trampolines[e] then
      rawset(self, e, nil)
    end
  end
end

for _, e in ipairs(EVENTS) do
  trampolines[e] = function(self, ...)
    clearShadows(self)
    local upgrade = self.upgrade
    if type(upgrade) == "function" then
      upgrade(self)
    end
    local m = self[e]
    if m ~= nil then
      return m(self, ...)
    end
  end
end

-- Whether obj must upgrade: its class is, or derives from, a patched one.
local function reached(obj, patched)
  local c = getmetatable(obj)
  for _ = 1, 100 do
    if type(c) ~= "table" then
      return false
    elseif patched[c] then
      return true
    end
    c = rawget(c, "super")
  end
  return false
end

local function shadow(obj)
  local any = false
  for _, e in ipairs(EVENTS) do
    local own = rawget(obj, e)
    if own == nil and obj[e] ~= nil then
      rawset(obj, e, trampolines[e])
      any = true
    elseif own == trampolines[e] then
      any = true -- still pending from an earlier reload: runs once
    end
  end
  return any
end

-- Every live connection's protocol and its factory: the transports are
-- the host's boxes, pinned in the registry while open.
local function liveObjects()
  local out, seen = {}, {}
  local function add(o)
    if type(o) == "table" and not seen[o] then
      seen[o] = true
      out[#out + 1] = o
    end
  end
  for _, v in next, debug.getregistry() do
    if type(v) == "userdata" then
      local mt = getmetatable(v)
      local name = type(mt) == "table" and rawget(mt, "__name")
      if type(name) == "string" and name:sub(1, 5) == "loom." then
        local ok, p = pcall(function() return v.protocol end)
        if ok and type(p) == "table" then
          add(p)
          add(rawget(p, "factory"))
        end
      end
    end
  end
  return out
end

-- Whether a patched class, or one of its subclasses, has upgrade.
local function anyUpgrade(patched)
  local seen = {}
  local function has(c)
    if seen[c] then
      return false
    end
    seen[c] = true
    if type(rawget(c, "upgrade")) == "function" or (patched[c]
        and type(c.upgrade) == "function") then
      return true
    end
    for _, sub in ipairs(class.subclasses(c)) do
      if has(sub) then
        return true
      end
    end
    return false
  end
  for c in pairs(patched) do
    if has(c) then
      return true
    end
  end
  return false
end

function M.scheduleUpgrades(patched)
  if not anyUpgrade(patched) then
    return 0
  end
  local n = 0
  for _, obj in ipairs(liveObjects()) do
    if reached(obj, patched) and type(obj.upgrade) == "function"
        and shadow(obj) then
      n = n + 1
    end
  end
  return n
end

return M
