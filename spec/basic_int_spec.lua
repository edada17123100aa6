-- loom.basic Int32/Int16/Int8StringReceiver; fed in chunks of 1, 2, 3, 7
-- and 4096 bytes.

local H = dofile("spec/support/basic_helpers.lua")
local basic = H.basic
local StringTransport = H.StringTransport
local CHUNKINGS = H.CHUNKINGS
local feed = H.feed
local connect = H.connect
local instrumentedBasic = H.instrumentedBasic
local allocatedWithin = H.allocatedWithin
local Collector = H.Collector

local intCases = {
  { name = "Int32StringReceiver", fmt = ">I4", bits = 32,
    illegal = "\x10\x00\x00\x00aaaaaa",
    partial = { "\x00\x00\x00", "hello there", "" },
    send = "\x00\x00\x00\x03foo", recv = "\x00\x00\x00\x04ubar" },
  { name = "Int16StringReceiver", fmt = ">I2", bits = 16,
    illegal = "\x10\x00aaaaaa", partial = { "\x00", "hello there", "" },
    send = "\x00\x03foo", recv = "\x00\x04ubar" },
  { name = "Int8StringReceiver", fmt = ">B", bits = 8,
    illegal = "\x00\x00aaaaaa", partial = { "\x08", "dzadz", "" },
    send = "\x03foo", recv = "\x04ubar" },
}

for _, case in ipairs(intCases) do
  describe("loom.basic." .. case.name, function()
    local cls = basic[case.name]
    local Tester = Collector(cls, { MAX_LENGTH = 50 })
    local function message(s)
      return string.pack(case.fmt, #s) .. s
    end

    it("has a " .. case.bits // 8 .. "-byte big-endian prefix", function()
      assert.equals(case.bits // 8, cls.prefixLength)
      assert.equals(case.fmt, cls.structFormat)
      assert.equals(99999, cls.MAX_LENGTH)
    end)

    it("receives strings fed one byte at a time", function()
      local p = connect(Tester)
      feed(p, message("a") .. message(("b"):rep(16)), 1)
      assert.same({ "a", ("b"):rep(16) }, p.received)
    end)

    for _, size in ipairs(CHUNKINGS) do
      it("receives strings fed in " .. size .. "-byte chunks", function()
        local p = connect(Collector(cls))
        local strs = { "", "x", ("y"):rep(200), "z" }
        local wire = {}
        for i, s in ipairs(strs) do
          wire[i] = message(s)
        end
        feed(p, table.concat(wire), size)
        assert.same(strs, p.received)
      end)
    end

    it("delivers nothing for partial input", function()
      for _, s in ipairs(case.partial) do
        local p = connect(Tester)
        feed(p, s, 1)
        assert.same({}, p.received)
      end
    end)

    it("sendString writes the prefix and the string", function()
      local p, t = connect(Tester)
      p:sendString(("b"):rep(16))
      assert.equals(string.pack(case.fmt, 16) .. ("b"):rep(16), t:value())
    end)

    it("sends and receives Twisted's sample data", function()
      local p, t = connect(Tester)
      p:sendString("foo")
      assert.equals(case.send, t:value())
      p:dataReceived(case.recv)
      assert.same({ "ubar" }, p.received)
    end)

    it("calls lengthLimitExceeded with a length above MAX_LENGTH", function()
      local p = connect(Tester)
      local lengths = {}
      p.lengthLimitExceeded = function(_, n) lengths[#lengths + 1] = n end
      p.MAX_LENGTH = 10
      p:dataReceived(string.pack(case.fmt, 11))
      assert.same({ 11 }, lengths)
    end)

    it("does not deliver a string longer than MAX_LENGTH", function()
      local p = connect(Tester)
      p.MAX_LENGTH = 10
      p:dataReceived(string.pack(case.fmt, 11) .. ("x"):rep(11))
      assert.same({}, p.received)
    end)

    it("closes the connection on an illegal length by default", function()
      local p, t = connect(Tester)
      feed(p, case.illegal, 1)
      assert.is_true(t.disconnecting)
    end)

    it("does not buffer data after the length limit is exceeded", function()
      local p = connect(Tester)
      local calls = 0
      p.lengthLimitExceeded = function() calls = calls + 1 end
      p:dataReceived(case.illegal)
      for _ = 1, 100 do
        p:dataReceived(("a"):rep(1000))
      end
      assert.is_true(#p._unprocessed <= case.bits // 8)
      assert.equals(101, calls)
    end)

    it("refuses to send a string too long for the prefix", function()
      if case.bits == 32 then
        return -- 4 GiB strings are not built in a spec
      end
      local p = connect(Tester)
      local n = 2 ^ case.bits
      assert.has_error(function() p:sendString(("b"):rep(n + 1)) end,
        string.format("sendString: string of %d bytes is too long for an "
          .. "%d-bit length prefix", n + 1, case.bits))
    end)

    it("holds strings while paused and delivers them on resume", function()
      local P = Collector(cls)
      function P:stringReceived(s)
        self.received[#self.received + 1] = s
        self:pauseProducing()
      end
      local p, t = connect(P)
      p:dataReceived(message("one") .. message("two") .. message("three"))
      assert.same({ "one" }, p.received)
      assert.equals("paused", t.producerState)
      p:resumeProducing()
      assert.same({ "one", "two" }, p.received)
      p:dataReceived(message("four"))
      p:resumeProducing()
      p:resumeProducing()
      assert.same({ "one", "two", "three", "four" }, p.received)
    end)

    it("parses data given from inside stringReceived afterwards", function()
      local P = Collector(cls)
      function P:stringReceived(s)
        self.received[#self.received + 1] = s
        if s == "inject" then
          self:dataReceived(message("injected"))
        end
      end
      local p = connect(P)
      p:dataReceived(message("inject") .. message("next"))
      assert.same({ "inject", "next", "injected" }, p.received)
    end)

    it("raises when stringReceived is not overridden", function()
      local p = cls()
      assert.has_error(function() p:stringReceived("foo") end,
        "IntNStringReceiver.stringReceived must be overridden by a subclass")
    end)
  end)
end

describe("loom.basic.Int32StringReceiver linearity", function()
  it("copies a 1 MiB string fed one byte at a time a bounded number of "
    .. "times", function()
    local b, stats = instrumentedBasic()
    local P = b.Int32StringReceiver:extend({ MAX_LENGTH = 2 * 1024 * 1024 })
    function P:stringReceived(s)
      self.got = s
    end
    local p = P()
    p:makeConnection(StringTransport())
    local n = 1024 * 1024
    p:dataReceived(string.pack(">I4", n))
    allocatedWithin(64 * n, n, function()
      p:dataReceived("i")
    end)
    assert.equals(n, #p.got)
    assert.is_true(stats.copied < 4 * n, "copied " .. stats.copied)
  end)
end)
