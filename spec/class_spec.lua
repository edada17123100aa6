-- loom.class: extend/new, and a base changed after extend (hot reload)
-- reaching its subclasses and their live instances.
local class = require "loom.class"

local Object = class.Object

local function contains(list, v)
  for _, x in ipairs(list) do
    if x == v then
      return true
    end
  end
  return false
end

describe("class", function()
  it("makes instances with new, a call, and init", function()
    local A = Object:extend({ __name = "A" })
    function A:init(x) self.x = x end
    assert.equal(1, A:new(1).x)
    assert.equal(2, A(2).x)
    assert.equal(A, getmetatable(A(3)))
    assert.is_true(class.isinstance(A(4), A))
    assert.is_true(class.isinstance(A:extend()(), A))
    assert.is_false(class.isinstance({}, A))
  end)

  it("a method changed on the base reaches subclasses and live instances",
    function()
      local A = Object:extend()
      function A:m() return "old" end
      local B = A:extend()
      local C = B:extend({ m = function() return "own" end })
      local b, c = B(), C()
      function A:m() return "new" end
      assert.equal("new", b:m())
      assert.equal("own", c:m())
      A.later = function() return "later" end
      assert.equal("later", B():later())
    end)

  it("a metamethod replaced on the base reaches subclasses", function()
    local A = Object:extend({ __tostring = function() return "A1" end })
    local B = A:extend()
    local C = B:extend()
    local c = C()
    assert.equal("A1", tostring(c))
    A.__tostring = function() return "A2" end
    assert.equal("A2", tostring(c))
    assert.equal("A2", tostring(B()))
  end)

  it("a metamethod added to the base later reaches subclasses without one",
    function()
      local A = Object:extend()
      local B = A:extend()
      local C = B:extend()
      local Own = A:extend({ __tostring = function() return "own" end })
      local c = C()
      function A.__tostring() return "added" end
      function A.__eq() return true end
      assert.equal("added", tostring(c))
      assert.equal("added", tostring(B()))
      assert.equal("own", tostring(Own()))
      assert.is_true(C() == B())
    end)

  it("a subclass's own metamethod wins over a later change of the base",
    function()
      local A = Object:extend({ __tostring = function() return "A" end })
      local B = A:extend()
      function B.__tostring() return "B" end
      local C = B:extend()
      A.__tostring = function() return "A2" end
      assert.equal("B", tostring(B()))
      assert.equal("B", tostring(C()))
    end)

  it("a metamethod removed from the base falls back to Lua's own", function()
    local A = Object:extend({ __name = "A", __tostring = function()
      return "A" end })
    local b = A:extend()()
    A.__tostring = nil
    assert.matches("^A: 0x", tostring(b))
  end)

  it("copies __name unless the subclass names itself", function()
    local A = Object:extend({ __name = "A" })
    assert.equal("A", rawget(A:extend(), "__name"))
    assert.equal("B", rawget(A:extend({ __name = "B" }), "__name"))
  end)

  it("inherits __call, __len and __gc", function()
    local collected = 0
    local A = Object:extend({
      __call = function(self, x) return x + 1 end,
      __len = function() return 7 end,
      __gc = function() collected = collected + 1 end,
    })
    local B = A:extend()
    local b = B()
    assert.equal(2, b(1))
    assert.equal(7, #b)
    b = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(1, collected)
  end)

  it("keeps a weak set of each class's direct subclasses", function()
    local A = Object:extend()
    local B = A:extend()
    local C = B:extend()
    assert.same({ B }, class.subclasses(A))
    assert.same({ C }, class.subclasses(B))
    assert.is_true(contains(class.subclasses(Object), A))
    assert.same({}, class.subclasses(C))
    C = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.same({}, class.subclasses(B))
  end)
end)
