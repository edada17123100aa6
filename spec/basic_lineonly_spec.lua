-- loom.basic LineOnlyReceiver, ported from Twisted's
-- protocols/test/test_basic.py and extended: fed in chunks of 1, 2, 3, 7
-- and 4096 bytes; a hook acting on every line position of a batch.

local H = dofile("spec/support/basic_helpers.lua")
local basic = H.basic
local CHUNKINGS = H.CHUNKINGS
local feed = H.feed
local connect = H.connect
local instrumentedBasic = H.instrumentedBasic
local allocatedWithin = H.allocatedWithin
local StringTransport = H.StringTransport
local Collector = H.Collector
local CHUNKS = H.numberedChunks()

describe("loom.basic.LineOnlyReceiver", function()
  local LineOnlyTester = Collector(basic.LineOnlyReceiver,
    { delimiter = "\n", MAX_LENGTH = 64 })
  local buffer = "foo\n    bleakness\n    desolation\n    plastic forks\n    "

  for _, size in ipairs(CHUNKINGS) do
    it("splits lines fed in " .. size .. "-byte chunks", function()
      local p = connect(LineOnlyTester)
      feed(p, buffer, size)
      assert.same({ "foo", "    bleakness", "    desolation",
        "    plastic forks" }, p.received)
    end)

    it("splits on a multi-byte delimiter fed in " .. size .. "-byte chunks",
      function()
        local p = connect(Collector(basic.LineOnlyReceiver))
        feed(p, "a\r\n\r\nb\rc\r\nd", size)
        assert.same({ "a", "", "b\rc" }, p.received)
      end)
  end

  it("disconnects on a line longer than MAX_LENGTH + len(delimiter)",
    function()
      local p, t = connect(LineOnlyTester)
      p:dataReceived(("x"):rep(64 + 1 + 1) .. "\r\nr")
      assert.is_true(t.disconnecting)
    end)

  it("disconnects on an unfinished line longer than MAX_LENGTH", function()
    for _, size in ipairs(CHUNKINGS) do
      local p, t = connect(LineOnlyTester)
      feed(p, "ok\n" .. ("x"):rep(200), size)
      assert.is_true(t.disconnecting)
      assert.same({ "ok" }, p.received)
    end
  end)

  it("calls lineLengthExceeded with the long line and frees the buffer",
    function()
      local P = Collector(basic.LineOnlyReceiver, { MAX_LENGTH = 4 })
      function P:lineLengthExceeded(line)
        self.long = line
      end
      local p = connect(P)
      p:dataReceived("abcdefgh\r\nrest")
      assert.equals("abcdefgh", p.long)
      p:dataReceived("x\r\n")
      assert.same({ "x" }, p.received)
    end)

  it("raises when lineReceived is not overridden", function()
    local p = basic.LineOnlyReceiver()
    assert.has_error(function() p:lineReceived("foo") end,
      "LineOnlyReceiver.lineReceived must be overridden by a subclass")
  end)

  it("raises a clear error when the delimiter is empty", function()
    local p = connect(Collector(basic.LineOnlyReceiver, { delimiter = "" }))
    assert.has_error(function() p:dataReceived("a\r\nb") end,
      "LineOnlyReceiver.delimiter is empty")
    assert.same({}, p.received)
  end)

  it("sendLine writes the line and the delimiter with writeSequence",
    function()
      local seq
      local p = basic.LineOnlyReceiver()
      p:makeConnection({ writeSequence = function(_, s) seq = s end })
      p:sendLine("hi")
      assert.same({ "hi", "\r\n" }, seq)
    end)

  it("delivers no lines once the transport is disconnecting", function()
    local P = Collector(basic.LineOnlyReceiver)
    function P:lineReceived(line)
      self.received[#self.received + 1] = line
      self.transport:loseConnection()
    end
    local p = connect(P)
    p:dataReceived("a\r\nb\r\n")
    p:dataReceived("c\r\n")
    assert.same({ "a" }, p.received)
  end)

  it("parses data given from inside lineReceived after the current lines",
    function()
      local P = Collector(basic.LineOnlyReceiver, { delimiter = "\n" })
      function P:lineReceived(line)
        self.received[#self.received + 1] = line
        if line == "inject" then
          self:dataReceived("injected\n")
        end
      end
      local p = connect(P)
      p:dataReceived("inject\nnext\n")
      assert.same({ "inject", "next", "injected" }, p.received)
    end)

  it("scans a 1 MiB line fed one byte at a time a bounded number of times",
    function()
      local b, stats = instrumentedBasic()
      local P = b.LineOnlyReceiver:extend({ MAX_LENGTH = 4 * 1024 * 1024 })
      function P:lineReceived(line)
        self.got = line
      end
      local p = P()
      p:makeConnection(StringTransport())
      local n = 1024 * 1024
      allocatedWithin(64 * n, n, function()
        p:dataReceived("z")
      end)
      p:dataReceived("\r\n")
      assert.equals(n, #p.got)
      assert.is_true(stats.scanned < 8 * n, "scanned " .. stats.scanned)
      assert.is_true(stats.copied < 8 * n, "copied " .. stats.copied)
    end)
end)

describe("loom.basic.LineOnlyReceiver, a hook acting on line n", function()
  local function actor(on, act, fields)
    local P = basic.LineOnlyReceiver:extend(fields)
    function P:connectionMade()
      self.received = {}
    end
    function P:lineReceived(line)
      local r = self.received
      r[#r + 1] = line
      if #r == on and not self.acted then
        self.acted = true
        act(self, line)
      end
    end
    function P:lineLengthExceeded(line)
      self.long = line
    end
    return connect(P)
  end

  for _, c in ipairs(CHUNKS) do
    local tail = c.restAfter(c.count)
    for _, n in ipairs(c.actOn) do
      local where = " on line " .. n .. " of " .. c.count

      it("delivers nothing after loseConnection" .. where, function()
        local p = actor(n, function(self) self.transport:loseConnection() end)
        p:dataReceived(c.input)
        p:dataReceived("more\r\n")
        assert.same(c.lines(n), p.received)
      end)

      it("parses data given from the hook after the chunk" .. where,
        function()
          local p = actor(n, function(self) self:dataReceived("extra\r\n") end)
          p:dataReceived(c.input)
          assert.same(c.lines(c.count, { tail .. "extra" }), p.received)
        end)

      it("hands a too-long line" .. where .. " to lineLengthExceeded",
        function()
          local lines = c.lines(c.count)
          lines[n] = ("x"):rep(200)
          local p = actor(0, nil, { MAX_LENGTH = 100 })
          p:dataReceived(table.concat(lines, "\r\n") .. "\r\n")
          assert.same(c.lines(n - 1), p.received)
          assert.equals(lines[n], p.long)
          p:dataReceived("more\r\n")
          assert.same(c.lines(n - 1, { "more" }), p.received)
        end)
    end
  end

  it("hands an unfinished tail longer than MAX_LENGTH after many lines to "
    .. "lineLengthExceeded", function()
    local long = CHUNKS[#CHUNKS]
    local p = actor(0, nil, { MAX_LENGTH = 100 })
    p:dataReceived(long.input .. ("y"):rep(101))
    assert.same(long.lines(long.count), p.received)
    assert.equals(("y"):rep(101), p.long)
  end)
end)
