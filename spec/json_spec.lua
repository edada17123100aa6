-- loom.json (C, on cJSON): encode/decode round trips, json.null, errors.
local json = require "loom.json"

-- Known bug (reported, bindings/json.c is not ours): with cJSON 1.7.15 the
-- trailing-garbage check makes json.decode reject every valid document.
-- The decode specs run as soon as that is fixed; until then they are pending.
local DECODE_OK = json.decode("[1]") ~= nil
local function itDecodes(name, f)
  if DECODE_OK then
    it(name, f)
  else
    pending(name .. " (json.decode rejects valid input: see F1 report)")
  end
end

-- Known bug (reported): numbers are printed by cJSON, whose round-trip check
-- compares with a tolerance, so 0.1 + 0.2 encodes as "0.3" and 2^53 as
-- "9.00719925474099e+15". The exact-number specs wait for the fix.
local EXACT_NUMBERS = json.encode(0.1 + 0.2) == "0.30000000000000004"
local function itExact(name, f)
  if EXACT_NUMBERS then
    it(name, f)
  else
    pending(name .. " (json.encode rounds numbers: see F1 report)")
  end
end

local function roundTrip(v)
  local s = json.encode(v)
  assert.is_string(s)
  local back, msg = json.decode(s)
  assert(back ~= nil, msg)
  return back, s
end

describe("json.encode", function()
  it("encodes an empty table as {}", function()
    assert.equal("{}", json.encode({}))
  end)

  it("encodes a sequence as an array and other tables as objects", function()
    assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equal('{"a":1}', json.encode({ a = 1 }))
  end)

  it("encodes scalars", function()
    assert.equal("true", json.encode(true))
    assert.equal("false", json.encode(false))
    assert.equal("42", json.encode(42))
    assert.equal("-2.5", json.encode(-2.5))
    assert.equal('"hi"', json.encode("hi"))
  end)

  it("encodes json.null and nil as null", function()
    assert.equal("null", json.encode(json.null))
    assert.equal("[null]", json.encode({ json.null }))
    assert.equal("null", json.encode(nil))
  end)

  it("escapes quotes, backslashes and control characters", function()
    assert.equal('"a\\"b\\\\c\\n\\t\\u0001"', json.encode('a"b\\c\n\t\1'))
  end)

  it("passes UTF-8 through unchanged", function()
    assert.equal('"h\xc3\xa9llo \xf0\x9f\x98\x80"',
      json.encode("h\xc3\xa9llo \xf0\x9f\x98\x80"))
  end)

  it("raises a clear error for a function", function()
    local ok, e = pcall(json.encode, { f = print })
    assert.is_false(ok)
    assert.matches("json.encode: cannot encode a function", e)
  end)

  it("raises a clear error for a coroutine", function()
    local ok, e = pcall(json.encode, coroutine.create(print))
    assert.is_false(ok)
    assert.matches("json.encode: cannot encode a coroutine", e)
  end)

  -- The tree is attached node by node and built under lua_pcall, so a
  -- value that fails deep inside frees everything built so far
  -- (spec/valgrind.sh runs this file under memcheck).
  it("frees the partial tree when a value deep inside fails", function()
    local v = { a = { 1, 2.5, { b = "x", [1.5] = { true, json.null } } } }
    v.a[3].z = { function() end }
    for _ = 1, 3 do
      local ok, e = pcall(json.encode, v)
      assert.is_false(ok)
      assert.matches("cannot encode a function", e)
    end
    v.a[3].z = nil
    assert.equal(v.a[3].b, json.decode(json.encode(v)).a[3].b)
  end)

  it("raises 'nesting too deep' for a cycle", function()
    local t = {}
    t.self = t
    local ok, e = pcall(json.encode, t)
    assert.is_false(ok)
    assert.matches("json.encode: nesting too deep", e)
  end)

  it("raises 'nesting too deep' for very deep nesting", function()
    local deep = {}
    local c = deep
    for _ = 1, 5000 do
      c[1] = {}
      c = c[1]
    end
    local ok, e = pcall(json.encode, deep)
    assert.is_false(ok)
    assert.matches("nesting too deep", e)
  end)

  it("raises a clear error for NaN and infinity", function()
    for _, v in ipairs({ 0 / 0, math.huge, -math.huge }) do
      local ok, e = pcall(json.encode, v)
      assert.is_false(ok)
      assert.matches("json.encode: cannot encode NaN or infinity", e)
    end
  end)

  it("raises a clear error for a boolean table key", function()
    local ok, e = pcall(json.encode, { [true] = 1 })
    assert.is_false(ok)
    assert.matches("json.encode: table keys must be strings or numbers", e)
  end)

  it("encodes integers exactly", function()
    assert.equal("1234567890123456", json.encode(1234567890123456))
    assert.equal("-123456789012", json.encode(-123456789012))
  end)

  itExact("encodes integers exactly up to 2^53", function()
    assert.equal("9007199254740992", json.encode(9007199254740992))
  end)

  itExact("encodes every float so that it reads back exactly", function()
    assert.equal(0.1 + 0.2, tonumber(json.encode(0.1 + 0.2)))
  end)
end)

describe("json.decode", function()
  itDecodes("round-trips nested objects and arrays", function()
    local v = { name = "loom", list = { 1, 2, { deep = { true, false } } },
      obj = { a = { b = { c = "d" } } } }
    assert.same(v, (roundTrip(v)))
  end)

  itDecodes("round-trips strings with escapes and UTF-8", function()
    for _, s in ipairs({ 'q"uote', "back\\slash", "nl\nnl", "tab\tx",
      "ctl\1\31", "h\xc3\xa9llo", "\xf0\x9f\x98\x80", "" }) do
      assert.equal(s, (roundTrip(s)))
    end
  end)

  itDecodes("decodes \\u escapes, surrogate pairs included, to UTF-8",
    function()
      assert.equal("\xc3\xbc\xf0\x9f\x98\x80",
        json.decode('"\\u00fc\\ud83d\\ude00"'))
    end)

  itDecodes("gives integers for integral numbers, floats otherwise",
    function()
      local v = json.decode("[3, -7, 0, 2.5, 1e-3, 0.1]")
      assert.equal("integer", math.type(v[1]))
      assert.equal(-7, v[2])
      assert.equal("integer", math.type(v[3]))
      assert.equal("float", math.type(v[4]))
      assert.equal(2.5, v[4])
      assert.equal(0.001, v[5])
      assert.equal(0.1, v[6])
    end)

  itDecodes("round-trips floats exactly", function()
    for _, x in ipairs({ 0.1, 1 / 3, -2.5, 1e300, 5e-324, math.pi }) do
      local back = roundTrip(x)
      assert.equal(x, back)
    end
  end)

  itDecodes("round-trips integers as integers", function()
    for _, n in ipairs({ 0, 1, -1, 42, 2 ^ 31 | 0, 1234567890123456 }) do
      local back = roundTrip(n)
      assert.equal(n, back)
      assert.equal("integer", math.type(back))
    end
  end)

  itDecodes("round-trips booleans", function()
    assert.same({ true, false }, (roundTrip({ true, false })))
    assert.is_true(json.decode("true"))
    assert.is_false(json.decode("false"))
  end)

  itDecodes("decodes null as json.null, at the top and inside", function()
    assert.equal(json.null, json.decode("null"))
    local v = json.decode('{"a":[1,{"b":null}],"c":null}')
    assert.equal(json.null, v.a[2].b)
    assert.equal(json.null, v.c)
    assert.equal('{"c":null}', json.encode({ c = json.decode("null") }))
  end)

  itDecodes("accepts whitespace around the document", function()
    assert.same({ 1 }, json.decode(" \n\t[1] \r\n"))
  end)

  it("returns nil and a message naming the position for bad input",
    function()
      local v, msg = json.decode('{"a":}')
      assert.is_nil(v)
      assert.matches("position 6", msg)
    end)

  -- cJSON keeps strings as C does: "admin\u0000evil" would decode as
  -- "admin", and two different keys as one.
  it("refuses a \\u0000 escape instead of cutting the string there", function()
    for _, text in ipairs({ '{"user":"admin\\u0000evil"}', '["\\u0000"]',
      '{"\\u0000k":1}', '"a\\\\\\u0000"' }) do
      local v, msg = json.decode(text)
      assert.is_nil(v, text)
      assert.matches("\\u0000 in a string at position %d+ is not supported", msg)
    end
    assert.equal("a\\u0000", json.decode('"a\\\\u0000"')) -- an escaped backslash
    assert.equal("\1x", json.decode('"\\u0001x"'))
  end)

  it("returns nil and a position for trailing garbage", function()
    local v, msg = json.decode("[1] x")
    assert.is_nil(v)
    assert.matches("position 5", msg)
  end)

  it("returns nil and a position for empty and truncated input", function()
    for _, s in ipairs({ "", "[1, 2", '{"a": "b' }) do
      local v, msg = json.decode(s)
      assert.is_nil(v)
      assert.matches("position %d+", msg)
    end
  end)

  it("returns nil and a position for nesting too deep to decode", function()
    local v, msg = json.decode(string.rep("[", 5000) .. string.rep("]", 5000))
    assert.is_nil(v)
    assert.matches("position", msg)
  end)
end)

describe("json.decode errors on hostile bytes", function()
  it("quotes a NUL, a control byte or a non-ASCII byte escaped", function()
    for input, quoted in pairs({
      ["\0"] = "\\0", ["1\0"] = "\\0", ["[1]\31"] = "\\x1f",
      ["[1,\255]"] = "\\xff", ["\127"] = "\\x7f", ["'"] = "\\x27",
      ["x"] = "x",
    }) do
      local v, msg = json.decode(input)
      assert.is_nil(v)
      assert.matches("^json%.decode: unexpected '" .. quoted:gsub("%p", "%%%0")
        .. "' at position %d+$", msg)
    end
  end)

  it("never puts a byte outside printable ASCII in a message", function()
    for c = 0, 255 do
      for _, input in ipairs({ string.char(c), "[1," .. string.char(c),
        '{"a"' .. string.char(c) }) do
        local v, msg = json.decode(input)
        if v == nil then
          assert.is_nil(msg:find("[^\32-\126]"), msg)
          assert.is_true(#msg < 60)
        end
      end
    end
  end)
end)

describe("json.encode with NUL bytes", function()
  it("escapes a NUL inside a string instead of cutting it short", function()
    assert.equal('"a\\u0000b\\"\\u000a"', json.encode("a\0b\"\n"))
  end)

  it("raises a clear error for a table key holding a NUL byte", function()
    local ok, e = pcall(json.encode, { ["k\0x"] = 1 })
    assert.is_false(ok)
    assert.matches("json.encode: a table key holds a NUL byte", e)
  end)
end)
