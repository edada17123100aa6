-- loom.basic NetstringReceiver, with Twisted's test vectors; fed in chunks
-- of 1, 2, 3, 7 and 4096 bytes.

local H = dofile("spec/support/basic_helpers.lua")
local basic = H.basic
local StringTransport = H.StringTransport
local CHUNKINGS = H.CHUNKINGS
local feed = H.feed
local connect = H.connect
local logged = H.logged
local instrumentedBasic = H.instrumentedBasic
local allocatedWithin = H.allocatedWithin
local Collector = H.Collector

describe("loom.basic.NetstringReceiver", function()
  local TestNetstring = Collector(basic.NetstringReceiver, { MAX_LENGTH = 50 })
  function TestNetstring:stringReceived(s)
    self.received[#self.received + 1] = s
    self.transport:write(s)
  end
  local strings = { "hello", "world", "how", "are", "you123", ":today",
    ("a"):rep(515) }

  for size = 1, 9 do
    it("receives netstrings in " .. size .. "-byte packets", function()
      local p, t = connect(TestNetstring)
      p.MAX_LENGTH = 699
      for _, s in ipairs(strings) do
        p:sendString(s)
      end
      local out = t:value()
      t:clear()
      feed(p, out, size)
      assert.same(strings, p.received)
    end)
  end

  for _, size in ipairs(CHUNKINGS) do
    it("receives netstrings in " .. size .. "-byte chunks", function()
      local p = connect(Collector(basic.NetstringReceiver))
      local big = ("0123456789"):rep(9000)
      feed(p, "0:,1:a,2:ab,4:1:a,,90000:" .. big .. ",3:end,", size)
      assert.same({ "", "a", "ab", "1:a,", big, "end" }, p.received)
    end)
  end

  it("formats netstrings in sendString", function()
    local p, t = connect(TestNetstring)
    p:sendString("abc")
    p:sendString("")
    assert.equals("3:abc,0:,", t:value())
  end)

  it("receives an empty netstring", function()
    local p = connect(TestNetstring)
    p:dataReceived("0:,")
    assert.same({ "" }, p.received)
  end)

  it("receives a one-character netstring", function()
    local p = connect(TestNetstring)
    p:dataReceived("1:a,")
    assert.same({ "a" }, p.received)
  end)

  it("receives a two-character netstring", function()
    local p = connect(TestNetstring)
    p:dataReceived("2:ab,")
    assert.same({ "ab" }, p.received)
  end)

  it("is not confused by ':' and ',' inside the data", function()
    local p = connect(TestNetstring)
    p:dataReceived("4:1:a,,")
    assert.same({ "1:a," }, p.received)
  end)

  it("receives a netstring in two portions", function()
    local p = connect(TestNetstring)
    p:dataReceived("4:aa")
    p:dataReceived("aa,")
    assert.same({ "aaaa" }, p.received)
  end)

  it("receives a netstring whose length is split across portions",
    function()
      local p = connect(TestNetstring)
      for _, part in ipairs({ "1", "0:01234", "56789", "," }) do
        p:dataReceived(part)
      end
      assert.same({ "0123456789" }, p.received)
    end)

  it("receives a netstring one character at a time", function()
    local p = connect(TestNetstring)
    for _, part in ipairs({ "2", ":", "a", "b", "," }) do
      p:dataReceived(part)
    end
    assert.same({ "ab" }, p.received)
  end)

  it("receives two netstrings split after the second's length", function()
    local p = connect(TestNetstring)
    p:dataReceived("1:a,1")
    assert.same({ "a" }, p.received)
    p:dataReceived(":b,")
    assert.same({ "a", "b" }, p.received)
  end)

  it("accepts a length equal to MAX_LENGTH", function()
    local p, t = connect(Collector(basic.NetstringReceiver,
      { MAX_LENGTH = 12 }))
    p:dataReceived("12:" .. ("x"):rep(12) .. ",")
    assert.same({ ("x"):rep(12) }, p.received)
    assert.is_false(t.disconnecting)
  end)

  it("refuses a length of MAX_LENGTH + 1", function()
    local p, t = connect(Collector(basic.NetstringReceiver,
      { MAX_LENGTH = 11 }))
    logged(function() p:dataReceived("12:") end)
    assert.is_true(t.disconnecting)
  end)

  it("refuses a length far above MAX_LENGTH", function()
    local p, t = connect(Collector(basic.NetstringReceiver,
      { MAX_LENGTH = 11 }))
    logged(function() p:dataReceived("1000:") end)
    assert.is_true(t.disconnecting)
  end)

  it("refuses a netstring longer than MAX_LENGTH sent in full", function()
    local p, t = connect(TestNetstring)
    logged(function()
      p:dataReceived("51:" .. ("a"):rep(51) .. ",")
    end)
    assert.is_true(t.disconnecting)
    assert.same({}, p.received)
  end)

  local illegal = {
    { "an over-long length", "9999999999999999999999" },
    { "a non-digit length", "abc" },
    { "more data than the length says", "4:abcde" },
    { "a length above MAX_LENGTH", "51:" .. ("a"):rep(50) .. "b," },
    { "more data than specified", "2:aaa," },
    { "data in an empty netstring", "0:a," },
    { "a missing length", ":aaa," },
    { "a missing colon", "3aaa," },
    { "a missing length and colon", "aaa," },
    { "only data", "aaa" },
    { "a leading zero", "01:a," },
    { "a negative length", "-1:," },
    { "a missing comma", "3:abc;" },
  }
  for _, case in ipairs(illegal) do
    local what, input = case[1], case[2]
    for _, size in ipairs({ 1, #input }) do
      it("closes the connection and logs NetstringParseError on " .. what
        .. " (" .. size .. "-byte chunks)", function()
        local p, t = connect(TestNetstring)
        local events = logged(function() feed(p, input, size) end)
        assert.is_true(t.disconnecting)
        assert.is_true(p.brokenPeer)
        assert.equals(1, #events)
        assert.equals("error", events[1].level)
        assert.truthy(events[1].text:find("NetstringParseError", 1, true))
      end)
    end
  end

  it("ignores and does not buffer data after a parse error", function()
    local p, t = connect(TestNetstring)
    local events = logged(function()
      p:dataReceived("x")
      for _ = 1, 100 do
        p:dataReceived(("9"):rep(1000))
      end
      p:dataReceived("1:a,")
    end)
    assert.equals(1, #events)
    assert.is_true(t.disconnecting)
    assert.same({}, p.received)
    assert.equals("", p._remaining)
  end)

  it("refuses a run of digits after the first few bytes", function()
    local p, t = connect(Collector(basic.NetstringReceiver))
    logged(function() p:dataReceived(("1"):rep(10 * 1024 * 1024)) end)
    assert.is_true(t.disconnecting)
    assert.equals("", p._remaining)
  end)

  it("raises when stringReceived is not overridden", function()
    local p = basic.NetstringReceiver()
    assert.has_error(function() p:stringReceived("foo") end,
      "NetstringReceiver.stringReceived must be overridden by a subclass")
  end)

  it("copies a 1 MiB netstring fed one byte at a time a bounded number "
    .. "of times", function()
    local b, stats = instrumentedBasic()
    local P = b.NetstringReceiver:extend({ MAX_LENGTH = 2 * 1024 * 1024 })
    function P:stringReceived(s)
      self.got = s
    end
    local p = P()
    p:makeConnection(StringTransport())
    local n = 1024 * 1024
    p:dataReceived(n .. ":")
    allocatedWithin(64 * n, n, function()
      p:dataReceived("n")
    end)
    p:dataReceived(",")
    assert.equals(n, #p.got)
    assert.is_true(stats.copied < 4 * n, "copied " .. stats.copied)
  end)
end)
