-- loom.class: the one class helper every loom class is built with.
--
--   local Echo = Protocol:extend({ greeting = "hi" })
--   local e = Echo:new(...)      -- or Echo(...); runs e:init(...) when defined
--
-- A class is a table that is the metatable of its instances (`__index` is the
-- class itself) and whose own metatable points at its base, so a method patched
-- into a class in place (hot reload) is seen by every live instance at once.

local class = {}

local function call(cls, ...)
  return cls:new(...)
end

local function new(cls, ...)
  local self = setmetatable({}, cls)
  local init = cls.init
  if init then
    init(self, ...)
  end
  return self
end

-- Metamethods are copied down on extend because Lua looks them up with rawget.
local inherited = { "__tostring", "__eq", "__lt", "__le", "__concat", "__len",
  "__close", "__gc", "__name" }

local function extend(base, fields)
  local cls = fields or {}
  for _, k in ipairs(inherited) do
    if rawget(cls, k) == nil then
      cls[k] = rawget(base, k)
    end
  end
  cls.__index = cls
  cls.super = base
  return setmetatable(cls, { __index = base, __call = call })
end

-- A root class: `class.Object:extend{...}` starts a new hierarchy.
class.Object = setmetatable({ new = new, extend = extend }, { __call = call })
class.Object.__index = class.Object

-- isinstance(obj, cls): true when cls is obj's class or one of its bases.
-- (A chain of 100 bases is a loop of "super" fields, not a class.)
function class.isinstance(obj, cls)
  if type(obj) ~= "table" then
    return false
  end
  local c = getmetatable(obj)
  for _ = 1, 100 do
    if c == cls then
      return true
    end
    if type(c) ~= "table" then
      return false
    end
    c = rawget(c, "super")
  end
  return false
end

return class
