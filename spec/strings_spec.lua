-- loom.strings: trim and splitFirst, which code trimming peer input uses
-- instead of the quadratic s:match("^%s*(.-)%s*$").
local strings = require "loom.strings"

describe("loom.strings", function()
  it("trims as the usual pattern does, on random strings", function()
    local alphabet = { " ", "\t", "\r", "\n", "a", "b", "=", ";", "\0", "\v" }
    math.randomseed(7)
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 12) do
        t[i] = alphabet[math.random(#alphabet)]
      end
      local s = table.concat(t)
      assert.equals(s:match("^%s*(.-)%s*$"), strings.trim(s), string.format("%q", s))
    end
  end)

  it("trims a long run of inner spaces, keeping it", function()
    local s = "a" .. (" "):rep(100000) .. "b"
    assert.equals(s, strings.trim("\t " .. s .. " \r\n"))
    assert.equals("", strings.trim((" "):rep(100000)))
  end)

  it("splits at the first separator and trims both sides", function()
    assert.same({ "a", "b = c" }, { strings.splitFirst(" a = b = c ", "=") })
    assert.same({ "", "" }, { strings.splitFirst("=", "=") })
    assert.same({ "k", "v" }, { strings.splitFirst("k:: v", "::") })
    assert.is_nil(strings.splitFirst("no separator", "="))
  end)
end)
