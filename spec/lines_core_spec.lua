-- The C line cutters of loom.core (bindings/lines.c) that LineReceiver and
-- LineOnlyReceiver use: core.splitLines and core.nextLine. Skipped without
-- the core (the pure-Lua run of spec/run.sh).

local okCore, core = pcall(require, "loom.core")
if okCore then
  describe("loom.core.splitLines", function()
    local split = core.splitLines
    local NOTFOUND, TOOLONG, FULL = 1, 2, 3

    it("cuts the complete lines after code, next position and hit", function()
      assert.same({ NOTFOUND, 7, 1, "a", "b" },
        { split("a\r\nb\r\nc", 1, 1, "\r\n", 100) })
      assert.same({ NOTFOUND, 7, 1, "bc" },
        { split("xa;bc;d", 4, 4, ";", 100) })
      assert.same({ NOTFOUND, 7, 1, "", "bc" },
        { split("xa;bc;d", 3, 1, ";", 100) })
      assert.same({ NOTFOUND, 1, 1 }, { split("abc", 1, 1, "\n", 100) })
      assert.same({ NOTFOUND, 4, 1 }, { split("abc", 4, 4, "\n", 100) })
    end)

    it("stops after max lines, FULL only when another delimiter follows",
      function()
        assert.same({ FULL, 4, 1, "a" }, { split("a\r\nb\r\nc", 1, 1,
          "\r\n", 100, 1) })
        assert.same({ NOTFOUND, 7, 1, "a", "b" }, { split("a\r\nb\r\nc", 1,
          1, "\r\n", 100, 2) })
        local many = { split(("x\n"):rep(5000), 1, 1, "\n", 10, 1e9) }
        assert.equals(FULL, many[1])
        assert.equals(1024 + 3, #many)
      end)

    it("finds no delimiter before search", function()
      assert.same({ NOTFOUND, 6, 1, "ab;c" },
        { split("ab;c;", 1, 4, ";", 100) })
      assert.same({ NOTFOUND, 1, 1 }, { split("a;", 1, 10, ";", 100) })
    end)

    it("reports a line longer than maxLen and where its delimiter is",
      function()
        assert.same({ TOOLONG, 4, 8, "ok" },
          { split("ok\nlong\nx", 1, 1, "\n", 3) })
        assert.same({ NOTFOUND, 5, 1, "abc" }, { split("abc\n", 1, 1, "\n",
          3) })
      end)

    it("matches delimiters whose prefix repeats and that end the buffer",
      function()
        assert.same({ NOTFOUND, 11, 1, "xa", "aa" },
          { split("xaaabaaaabaa", 1, 1, "aab", 100) })
        assert.same({ NOTFOUND, 16, 1, "a", "b<EN" },
          { split("a<END>b<EN<END>", 1, 1, "<END>", 100) })
      end)

    it("rejects bad arguments", function()
      assert.has_error(function() split("abc", 0, 1, "\n", 1) end)
      assert.has_error(function() split("abc", 5, 1, "\n", 1) end)
      assert.has_error(function() split("abc", 1, 1, "", 1) end)
      assert.has_error(function() split("abc", 1, 1, "\n", -1) end)
    end)
  end)
end

if okCore then
  describe("loom.core.nextLine", function()
    local nextLine = core.nextLine

    it("cuts one line and says where the next starts", function()
      assert.same({ "a", 4 }, { nextLine("a\r\nb\r\n", 1, 1, "\r\n") })
      assert.same({ "b", 7 }, { nextLine("a\r\nb\r\n", 4, 4, "\r\n") })
      assert.same({ "", 2 }, { nextLine(";x", 1, 1, ";") })
      assert.same({}, { nextLine("abc", 1, 1, "\n") })
      assert.same({}, { nextLine("abc\n", 5, 5, "\n") })
    end)

    it("finds no delimiter before search", function()
      assert.same({ "ab;c", 6 }, { nextLine("ab;c;", 1, 4, ";") })
      assert.same({}, { nextLine("a;", 1, 10, ";") })
    end)

    it("matches delimiters whose prefix repeats", function()
      assert.same({ "xa", 6 }, { nextLine("xaaabaaaab", 1, 1, "aab") })
      assert.same({ "b<EN", 16 }, { nextLine("a<END>b<EN<END>", 7, 7,
        "<END>") })
    end)

    it("rejects bad arguments", function()
      assert.has_error(function() nextLine("abc", 0, 1, "\n") end)
      assert.has_error(function() nextLine("abc", 5, 1, "\n") end)
      assert.has_error(function() nextLine("abc", 1, 1, "") end)
      assert.has_error(function() nextLine(nil, 1, 1, "\n") end)
    end)
  end)
end

