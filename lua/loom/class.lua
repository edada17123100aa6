-- loom.class: the one class helper every loom class is built with.
--
--   local Echo = Protocol:extend({ greeting = "hi" })
--   local e = Echo:new(...)      -- or Echo(...); runs e:init(...) when defined
--
-- A class is a table that is the metatable of its instances (`__index` is the
-- class itself) and whose own metatable points at its base. Nothing is copied
-- down from the base but metamethods, so a method patched into a class in
-- place (hot reload) is seen at once by every live instance of it and of its
-- subclasses that do not override it.
--
-- Metamethods are the exception: Lua reads them from the metatable with
-- rawget, so a subclass must hold them itself. An inherited one is held as a
-- forwarder that looks the base's up at each call, so replacing the base's
-- later reaches the subclass too; one added to a base later is installed in
-- its subclasses that do not define their own (each class keeps a weak set
-- of its subclasses, class.subclasses). `__name`, a string, is copied.

local class = {}

local getmetatable, setmetatable = getmetatable, setmetatable
local rawget, rawset, type = rawget, rawset, type

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

-- The metamethods a subclass inherits (not __index, __newindex, __mode,
-- __metatable: those belong to one class).
local INHERITED = {}
for _, k in ipairs({ "__tostring", "__name", "__eq", "__lt", "__le",
  "__concat", "__len", "__call", "__close", "__gc", "__unm", "__add", "__sub",
  "__mul", "__div", "__mod", "__pow", "__idiv", "__band", "__bor", "__bxor",
  "__shl", "__shr", "__bnot" }) do
  INHERITED[k] = true
end

-- Every class's direct subclasses, held weakly: a class nobody uses any
-- more is collected as before.
local subclassesOf = setmetatable({}, { __mode = "k" })

-- What an instance gets when no base defines k any more (set to nil in
-- place): Lua's own behaviour where it has one.
local FALLBACK = {
  __tostring = function(self)
    local name = rawget(getmetatable(self), "__name") or "table"
    return string.format("%s: %p", name, self)
  end,
  __eq = rawequal,
  __len = rawlen,
  __gc = function() end,
  __close = function() end,
}

-- The base's own k or its forwarder: an inherited metamethod costs one Lua
-- call per level of classes between the instance and the definition.
local function forwarder(cls, base, k)
  local function missing()
    local m = FALLBACK[k]
    if m == nil then
      error(string.format("attempt to use %s: no base of %s defines it any"
        .. " more", k, tostring(rawget(cls, "__name") or "this class")), 3)
    end
    return m
  end
  if k == "__call" then
    return function(...)
      return (base[k] or missing())(...)
    end
  end
  return function(a, b) -- every other metamethod takes at most two
    return (base[k] or missing())(a, b)
  end
end

-- Gives cls its base's metamethod k (v: the base's value for it).
local function inherit(cls, base, k, v)
  if type(v) == "function" then
    rawset(cls, k, forwarder(cls, base, k))
  else
    rawset(cls, k, v)
  end
end

-- A metamethod just defined on cls reaches its subclasses (and theirs)
-- that have none of their own.
local function spread(cls, k, v)
  local subs = subclassesOf[cls]
  if subs == nil then
    return
  end
  for sub in pairs(subs) do
    if rawget(sub, k) == nil then
      inherit(sub, cls, k, v)
      spread(sub, k, v)
    end
  end
end

-- Every new key of a class goes through here (an existing one is replaced
-- in place, which the forwarders and the __index chain already see).
local function define(cls, k, v)
  rawset(cls, k, v)
  if INHERITED[k] and v ~= nil then
    spread(cls, k, v)
  end
end

local function extend(base, fields)
  local cls = fields or {}
  -- A class holds every metamethod it has (its own, or a forwarder or copy
  -- of its base's), so the base's own keys are all there is to look at.
  for k, v in next, base do
    if INHERITED[k] and rawget(cls, k) == nil then
      inherit(cls, base, k, v)
    end
  end
  rawset(cls, "__index", cls)
  rawset(cls, "super", base)
  local subs = subclassesOf[base]
  if subs == nil then
    subs = setmetatable({}, { __mode = "k" })
    subclassesOf[base] = subs
  end
  subs[cls] = true
  return setmetatable(cls, { __index = base, __call = call,
    __newindex = define })
end

-- A root class: `class.Object:extend{...}` starts a new hierarchy.
class.Object = setmetatable({ new = new, extend = extend },
  { __call = call, __newindex = define })
class.Object.__index = class.Object

-- class.subclasses(cls): a list of cls's live direct subclasses (in no
-- particular order); hot reload walks it to find what a change reaches.
function class.subclasses(cls)
  local list = {}
  for sub in pairs(subclassesOf[cls] or {}) do
    list[#list + 1] = sub
  end
  return list
end

-- isinstance(obj, cls): true when cls is obj's class or one of its bases.
-- Each class's set of bases is built on first use and kept (weakly): a
-- class's "super" never changes, and Failure() and error checks ask this on
-- every closed connection, where walking the chain showed in profiles.
-- (A chain of 100 bases is a loop of "super" fields, not a class.)
local basesOf = setmetatable({}, { __mode = "k" })

local function bases(c)
  local set = {}
  for _ = 1, 100 do
    if type(c) ~= "table" then
      break
    end
    set[c] = true
    c = rawget(c, "super")
  end
  return set
end

function class.isinstance(obj, cls)
  if type(obj) ~= "table" then
    return false
  end
  local c = getmetatable(obj)
  if c == cls then
    return true
  end
  if type(c) ~= "table" then
    return false
  end
  local set = basesOf[c]
  if set == nil then
    set = bases(c)
    basesOf[c] = set
  end
  return set[cls] == true
end

return class
