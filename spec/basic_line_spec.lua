-- loom.basic LineReceiver and LineOnlyReceiver, ported from Twisted's
-- protocols/test/test_basic.py and extended: fed in chunks of 1, 2, 3, 7
-- and 4096 bytes.

local H = dofile("spec/support/basic_helpers.lua")
local basic = H.basic
local StringTransport = H.StringTransport
local CHUNKINGS = H.CHUNKINGS
local feed = H.feed
local feedTwisted = H.feedTwisted
local connect = H.connect
local instrumentedBasic = H.instrumentedBasic
local allocatedWithin = H.allocatedWithin
local Collector = H.Collector
local LineTester = H.LineTester
local FakeClock = H.FakeClock

local CHUNKS = H.numberedChunks()

describe("loom.basic.LineReceiver", function()
  local Lines = Collector(basic.LineReceiver)

  for _, size in ipairs(CHUNKINGS) do
    it("splits CRLF lines fed in " .. size .. "-byte chunks", function()
      local p = connect(Lines)
      feed(p, "one\r\ntwo\r\n\r\nthree four\r\nunfinished", size)
      assert.same({ "one", "two", "", "three four" }, p.received)
      assert.equals("unfinished", p:clearLineBuffer())
    end)

    it("splits on a multi-byte delimiter fed in " .. size .. "-byte chunks",
      function()
        local p = connect(Collector(basic.LineReceiver,
          { delimiter = "<END>" }))
        feed(p, "a<END>b<EN<END><END>x<E", size)
        assert.same({ "a", "b<EN", "" }, p.received)
        assert.equals("x<E", p:clearLineBuffer())
      end)

    it("splits on a one-byte delimiter fed in " .. size .. "-byte chunks",
      function()
        local p = connect(Collector(basic.LineReceiver, { delimiter = "\n" }))
        feed(p, ("line\n"):rep(1000), size)
        assert.equals(1000, #p.received)
        assert.equals("line", p.received[1000])
      end)

    it("handles a delimiter whose prefix repeats (" .. size
      .. "-byte chunks)", function()
      local p = connect(Collector(basic.LineReceiver, { delimiter = "aab" }))
      feed(p, "xaaab" .. "aaaab" .. "aab" .. "aa", size)
      assert.same({ "xa", "aa", "" }, p.received)
      assert.equals("aa", p:clearLineBuffer())
    end)

    it("switches to raw mode mid-chunk without losing or repeating bytes ("
      .. size .. "-byte chunks)", function()
      local P = basic.LineReceiver:extend()
      function P:connectionMade()
        self.events = {}
      end
      function P:lineReceived(line)
        self.events[#self.events + 1] = "L:" .. line
        local n = tonumber(line:match("^raw (%d+)$"))
        if n then
          self.want, self.raw = n, {}
          self:setRawMode()
        end
      end
      function P:rawDataReceived(data)
        local take = data:sub(1, self.want)
        self.raw[#self.raw + 1] = take
        self.want = self.want - #take
        if self.want == 0 then
          self.events[#self.events + 1] = "R:" .. table.concat(self.raw)
          self:setLineMode(data:sub(#take + 1))
        end
      end
      local p = connect(P)
      local body = "\r\nbinary\r\n\0body"
      feed(p, "a\r\nraw " .. #body .. "\r\n" .. body .. "b\r\nraw 3\r\nxyzc\r\n",
        size)
      assert.same({ "L:a", "L:raw " .. #body, "R:" .. body, "L:b", "L:raw 3",
        "R:xyz", "L:c" }, p.events)
    end)
  end

  for size = 1, 9 do
    it("parses Twisted's LineTester buffer in " .. size .. "-byte packets",
      function()
        local buffer = "len 10\n\n0123456789len 5\n\n1234\nlen 20\nfoo 123\n\n\z
          0123456789\n012345678len 0\nfoo 5\n\n\z
          1234567890123456789012345678901234567890123456789012345678901234567890\n\z
          len 1\n\na"
        local p = connect(LineTester)
        feedTwisted(p, buffer, size)
        assert.same({ "len 10", "0123456789", "len 5", "1234\n", "len 20",
          "foo 123", "0123456789\n012345678", "len 0", "foo 5", "", "67890",
          "len 1", "a" }, p.received)
      end)

    it("holds lines after pauseProducing until resumed (" .. size
      .. "-byte packets)", function()
      local clock = FakeClock()
      local p = connect(LineTester)
      p.clock = clock
      feedTwisted(p, "twiddle1\ntwiddle2\npause\ntwiddle3\n", size)
      assert.same({ "twiddle1", "twiddle2", "pause" }, p.received)
      clock:advance()
      assert.same({ "twiddle1", "twiddle2", "pause", "twiddle3" }, p.received)
    end)

    it("holds raw data after pausing in raw mode (" .. size
      .. "-byte packets)", function()
      local clock = FakeClock()
      local p = connect(LineTester)
      p.clock = clock
      feedTwisted(p, "twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n",
        size)
      assert.same({ "twiddle1", "twiddle2", "len 5", "rawpause", "" },
        p.received)
      clock:advance()
      assert.same({ "twiddle1", "twiddle2", "len 5", "rawpause", "12345",
        "twiddle3" }, p.received)
    end)

    it("delivers nothing after stopProducing (" .. size .. "-byte packets)",
      function()
        local p, t = connect(LineTester)
        feedTwisted(p, "twiddle1\ntwiddle2\nstop\nmore\nstuff\n", size)
        assert.same({ "twiddle1", "twiddle2", "stop" }, p.received)
        assert.equals("stopped", t.producerState)
      end)
  end

  it("can register itself as the transport's producer from lineReceived",
    function()
      local p, t = connect(LineTester)
      p:dataReceived("produce\nhello world\nunproduce\ngoodbye\n")
      assert.same({ "produce", "hello world", "unproduce", "goodbye" },
        p.received)
      assert.is_nil(t.producer)
    end)

  it("clearLineBuffer returns and drops the buffered data, from lineReceived",
    function()
      local P = basic.LineReceiver:extend()
      function P:lineReceived(line)
        self.line = line
        self.rest = self:clearLineBuffer()
      end
      local p = P()
      p:dataReceived("foo\r\nbar\r\nbaz")
      assert.equals("foo", p.line)
      assert.equals("bar\r\nbaz", p.rest)
      p:dataReceived("quux\r\n")
      assert.equals("quux", p.line)
      assert.equals("", p.rest)
    end)

  it("clearLineBuffer returns a long unfinished line in full", function()
    local p = connect(Collector(basic.LineReceiver, { MAX_LENGTH = 1e9 }))
    local long = ("x"):rep(100000)
    feed(p, long, 7)
    assert.same({}, p.received)
    assert.equals(long, p:clearLineBuffer())
    assert.equals("", p:clearLineBuffer())
  end)

  it("survives switching modes on every line of one chunk", function()
    local P = basic.LineReceiver:extend({ delimiter = "\n" })
    function P:init()
      self.lines = {}
    end
    function P:lineReceived(line)
      self.lines[#self.lines + 1] = line
      self:setRawMode()
    end
    function P:rawDataReceived(data)
      self:setLineMode(data:sub(2))
    end
    local p = P()
    p:makeConnection(StringTransport())
    p:dataReceived(("x\nx"):rep(3000))
    assert.equals(("x"):rep(3000), table.concat(p.lines))
  end)

  it("sendLine writes the line and the delimiter", function()
    local p, t = connect(Collector(basic.LineReceiver, { delimiter = "\n" }))
    p:sendLine("hello")
    p:sendLine("")
    assert.equals("hello\n\n", t:value())
  end)

  it("disconnects when a line exceeds MAX_LENGTH", function()
    local p, t = connect(basic.LineReceiver)
    p:dataReceived(("x"):rep(p.MAX_LENGTH + 1) .. "\r\nr")
    assert.is_true(t.disconnecting)
  end)

  it("disconnects when an unfinished line exceeds MAX_LENGTH", function()
    local p, t = connect(basic.LineReceiver)
    p:dataReceived(("x"):rep(p.MAX_LENGTH + #p.delimiter))
    assert.is_true(t.disconnecting)
  end)

  for _, size in ipairs(CHUNKINGS) do
    it("frees the buffer and disconnects on an over-long line ("
      .. size .. "-byte chunks)", function()
      local p, t = connect(Collector(basic.LineReceiver, { MAX_LENGTH = 100 }))
      feed(p, "ok\r\n" .. ("y"):rep(5000), size)
      assert.is_true(t.disconnecting)
      assert.same({ "ok" }, p.received)
      assert.equals("", p:clearLineBuffer())
    end)
  end

  it("accepts a line of exactly MAX_LENGTH", function()
    local p, t = connect(Collector(basic.LineReceiver, { MAX_LENGTH = 10 }))
    p:dataReceived(("z"):rep(10) .. "\r\n")
    assert.same({ ("z"):rep(10) }, p.received)
    assert.is_false(t.disconnecting)
  end)

  it("keeps a MAX_LENGTH line whose delimiter is split across chunks",
    function()
      local p, t = connect(LineTester)
      p.MAX_LENGTH = 4
      local line = ("x"):rep(3)
      p:dataReceived(line)
      p:dataReceived(p.delimiter:sub(1, -2))
      p:dataReceived(p.delimiter:sub(-1) .. line)
      assert.is_false(t.disconnecting)
      assert.same({ line }, p.received)
    end)

  it("keeps an unfinished MAX_LENGTH line ending in part of the delimiter",
    function()
      local p, t = connect(basic.LineReceiver)
      p:dataReceived(("x"):rep(p.MAX_LENGTH) .. p.delimiter:sub(1, -2))
      assert.is_false(t.disconnecting)
    end)

  it("returns a truthy value from rawDataReceived from dataReceived",
    function()
      local p = connect(basic.LineReceiver)
      local oops = { "oops" }
      p.rawDataReceived = function() return oops end
      p:setRawMode()
      assert.equals(oops, p:dataReceived("data"))
    end)

  it("raises when lineReceived is not overridden", function()
    local p = basic.LineReceiver()
    assert.has_error(function() p:lineReceived("foo") end,
      "LineReceiver.lineReceived must be overridden by a subclass")
  end)

  it("raises when rawDataReceived is not overridden", function()
    local p = basic.LineReceiver()
    assert.has_error(function() p:rawDataReceived("foo") end,
      "LineReceiver.rawDataReceived must be overridden by a subclass")
  end)

  -- Hostile configuration: Twisted (and the pure-Lua loop before) would
  -- deliver empty lines forever.
  it("raises a clear error when the delimiter is empty, and recovers",
    function()
      local p = connect(Collector(basic.LineReceiver, { delimiter = "" }))
      assert.has_error(function() p:dataReceived("a\r\nb") end,
        "LineReceiver.delimiter is empty")
      assert.same({}, p.received)
      p.delimiter = "\r\n"
      p:dataReceived("\r\n")
      assert.same({ "a", "b" }, p.received)
    end)

  it("delivers no lines once the transport is disconnecting", function()
    local P = Collector(basic.LineReceiver)
    function P:lineReceived(line)
      self.received[#self.received + 1] = line
      if line == "quit" then
        self.transport:loseConnection()
      end
    end
    for _, size in ipairs(CHUNKINGS) do
      local p = connect(P)
      feed(p, "a\r\nquit\r\nb\r\nc\r\n", size)
      p:dataReceived("d\r\n")
      assert.same({ "a", "quit" }, p.received)
    end
  end)

  it("appends data given from inside lineReceived to the buffered data",
    function()
      local P = Collector(basic.LineReceiver, { delimiter = "\n" })
      function P:lineReceived(line)
        self.received[#self.received + 1] = line
        if line == "inject" then
          self:dataReceived("ed\n")
        end
      end
      local p = connect(P)
      p:dataReceived("inject\nappend")
      assert.same({ "inject", "appended" }, p.received)
      p:dataReceived("more\n")
      assert.same({ "inject", "appended", "more" }, p.received)
    end)

  it("keeps working after lineReceived raises", function()
    local P = Collector(basic.LineReceiver, { delimiter = "\n" })
    function P:lineReceived(line)
      if line == "boom" then
        error("boom")
      end
      self.received[#self.received + 1] = line
    end
    local p = connect(P)
    assert.has_error(function() p:dataReceived("boom\nx") end)
    p:dataReceived("\ny\n")
    assert.same({ "x", "y" }, p.received)
  end)

  it("setLineMode(extra) from outside a hook parses extra at once",
    function()
      local p = connect(Collector(basic.LineReceiver, { delimiter = "\n" }))
      p:setRawMode()
      p:setLineMode("a\nb\nc")
      assert.same({ "a", "b" }, p.received)
      assert.equals("c", p:clearLineBuffer())
    end)

  it("honours a delimiter changed between chunks", function()
    local p = connect(Collector(basic.LineReceiver, { delimiter = "\n" }))
    p:dataReceived("a\nb;")
    p.delimiter = ";"
    p:dataReceived("c;")
    assert.same({ "a", "b", "c" }, p.received)
  end)

  describe("lineLengthExceeded", function()
    local Catcher = basic.LineReceiver:extend({ MAX_LENGTH = 6 })
    function Catcher:connectionMade()
      self.longLines = {}
    end
    function Catcher:lineReceived() end
    function Catcher:lineLengthExceeded(data)
      self.longLines[#self.longLines + 1] = data
    end

    it("gets all of a long unended line", function()
      local p = connect(Catcher)
      local excessive = ("x"):rep(6 * 2 + 2)
      p:dataReceived(excessive)
      assert.same({ excessive }, p.longLines)
    end)

    it("gets all the bytes after a short line's delimiter", function()
      local p = connect(Catcher)
      local excessive = ("x"):rep(6 * 2 + 2)
      p:dataReceived("x\r\n" .. excessive)
      assert.same({ excessive }, p.longLines)
    end)

    it("gets the whole input when the first line is too long", function()
      local p = connect(Catcher)
      local excessive = ("x"):rep(14) .. "\r\n" .. ("x"):rep(14)
      p:dataReceived(excessive)
      assert.same({ excessive }, p.longLines)
    end)

    it("gets the whole input when it holds several long lines", function()
      local p = connect(Catcher)
      local excessive = (("x"):rep(14) .. "\r\n"):rep(2)
      p:dataReceived(excessive)
      assert.same({ excessive }, p.longLines)
    end)
  end)

  describe("as a producer", function()
    -- Twisted's OnlyProducerTransport and ConsumingProtocol.
    local function OnlyProducerTransport()
      return {
        paused = false, disconnecting = false, data = {},
        pauseProducing = function(self) self.paused = true end,
        resumeProducing = function(self) self.paused = false end,
        write = function(self, s) self.data[#self.data + 1] = s end,
      }
    end
    local Consuming = basic.LineReceiver:extend()
    function Consuming:lineReceived(line)
      self.transport:write(line)
      self:pauseProducing()
    end

    it("pauses after each line and delivers held lines on resume", function()
      local t = OnlyProducerTransport()
      local p = connect(Consuming, t)
      p:dataReceived("hello, ")
      assert.same({}, t.data)
      assert.is_false(t.paused)
      assert.is_false(p.paused)
      p:dataReceived("world\r\n")
      assert.same({ "hello, world" }, t.data)
      assert.is_true(t.paused)
      assert.is_true(p.paused)
      p:resumeProducing()
      assert.same({ "hello, world" }, t.data)
      assert.is_false(t.paused)
      assert.is_false(p.paused)
      p:dataReceived("hello\r\nworld\r\n")
      assert.same({ "hello, world", "hello" }, t.data)
      assert.is_true(t.paused)
      p:resumeProducing()
      assert.same({ "hello, world", "hello", "world" }, t.data)
      assert.is_true(t.paused)
      p:dataReceived("goodbye\r\n")
      assert.same({ "hello, world", "hello", "world" }, t.data)
      p:resumeProducing()
      assert.same({ "hello, world", "hello", "world", "goodbye" }, t.data)
      assert.is_true(p.paused)
      p:resumeProducing()
      assert.same({ "hello, world", "hello", "world", "goodbye" }, t.data)
      assert.is_false(t.paused)
      assert.is_false(p.paused)
    end)

    for _, size in ipairs(CHUNKINGS) do
      it("holds every line while paused and delivers them on resume ("
        .. size .. "-byte chunks)", function()
        local p, t = connect(Collector(basic.LineReceiver))
        p:pauseProducing()
        assert.equals("paused", t.producerState)
        local input = {}
        for i = 1, 500 do
          input[i] = "line " .. i
        end
        feed(p, table.concat(input, "\r\n") .. "\r\n", size)
        assert.same({}, p.received)
        p:resumeProducing()
        assert.equals("producing", t.producerState)
        assert.same(input, p.received)
      end)
    end
  end)

  describe("parses in linear time", function()
    it("scans and copies a 1 MiB line fed one byte at a time a bounded "
      .. "number of times", function()
      local b, stats = instrumentedBasic()
      local P = b.LineReceiver:extend({ MAX_LENGTH = 4 * 1024 * 1024 })
      function P:lineReceived(line)
        self.got = line
      end
      local p = P()
      p:makeConnection(StringTransport())
      local n = 1024 * 1024
      local bytes = {}
      for i = 0, 255 do
        bytes[i] = string.char(97 + i % 26)
      end
      allocatedWithin(64 * n, n, function(i)
        p:dataReceived(bytes[i % 26])
      end)
      p:dataReceived("\r\n")
      assert.equals(n, #p.got)
      assert.is_true(stats.scanned < 8 * n, "scanned " .. stats.scanned)
      assert.is_true(stats.copied < 8 * n, "copied " .. stats.copied)
    end)

    it("scans a 10 MiB burst of 10-byte lines once", function()
      local b, stats = instrumentedBasic()
      local P = b.LineReceiver:extend()
      function P:lineReceived()
        self.count = self.count + 1
      end
      local p = P()
      p.count = 0
      p:makeConnection(StringTransport())
      local burst = ("abcdefgh\r\n"):rep(1024 * 1024)
      p:dataReceived(burst)
      assert.equals(1024 * 1024, p.count)
      assert.is_true(stats.scanned <= #burst, "scanned " .. stats.scanned)
      assert.is_true(stats.copied <= #burst, "copied " .. stats.copied)
    end)

    it("scans 10 MiB of 10-byte lines in odd chunks a bounded number of "
      .. "times", function()
      local b, stats = instrumentedBasic()
      local P = b.LineReceiver:extend()
      function P:lineReceived()
        self.count = self.count + 1
      end
      local p = P()
      p.count = 0
      p:makeConnection(StringTransport())
      local burst = ("abcdefgh\r\n"):rep(1024 * 1024)
      feed(p, burst, 4093)
      assert.equals(1024 * 1024, p.count)
      assert.is_true(stats.scanned < 2 * #burst, "scanned " .. stats.scanned)
      assert.is_true(stats.copied < 2 * #burst, "copied " .. stats.copied)
    end)

    it("allocates in proportion to the input for a growing unfinished line",
      function()
        local function run(n)
          local p = connect(Collector(basic.LineReceiver,
            { MAX_LENGTH = 1e9 }))
          return allocatedWithin(64 * n, n, function()
            p:dataReceived("q")
          end)
        end
        local small, large = run(64 * 1024), run(512 * 1024)
        -- 8x the input: linear gives about 8x; quadratic would give 64x.
        assert.is_true(large < 20 * small,
          string.format("%d bytes for 64 KiB, %d for 512 KiB", small, large))
      end)
  end)
end)

describe("loom.basic.LineReceiver, a hook acting on line n", function()
  -- A receiver whose lineReceived runs act(self, line) on line `on`.
  local function actor(on, act)
    local P = basic.LineReceiver:extend()
    function P:connectionMade()
      self.received, self.raw = {}, {}
    end
    function P:lineReceived(line)
      local r = self.received
      r[#r + 1] = line
      if #r == on and not self.acted then
        self.acted = true
        return act(self, line)
      end
    end
    function P:rawDataReceived(data)
      self.raw[#self.raw + 1] = data
    end
    return connect(P)
  end

  for _, c in ipairs(CHUNKS) do
    local all = c.lines(c.count)
    local tail = c.restAfter(c.count)
    for _, n in ipairs(c.actOn) do
      local where = " on line " .. n .. " of " .. c.count
      local rest = c.restAfter(n)

      it("switches to raw mode" .. where, function()
        local p = actor(n, function(self) self:setRawMode() end)
        p:dataReceived(c.input)
        assert.same(c.lines(n), p.received)
        assert.same(rest == "" and {} or { rest }, p.raw)
      end)

      it("switches to raw mode and back with extra data" .. where, function()
        local p = actor(n, function(self)
          self:setRawMode()
          self:setLineMode("extra\r\n")
        end)
        p:dataReceived(c.input)
        assert.same(c.lines(c.count, { tail .. "extra" }), p.received)
        assert.same({}, p.raw)
      end)

      it("pauses" .. where .. " and delivers the rest on resume", function()
        local p, t = actor(n, function(self) self:pauseProducing() end)
        p:dataReceived(c.input)
        assert.same(c.lines(n), p.received)
        assert.equals("paused", t.producerState)
        p:resumeProducing()
        assert.same(all, p.received)
        assert.equals(tail, p:clearLineBuffer())
      end)

      it("pauses and resumes within the hook" .. where, function()
        local p = actor(n, function(self)
          self:pauseProducing()
          self:resumeProducing()
        end)
        p:dataReceived(c.input)
        assert.same(all, p.received)
      end)

      it("holds every line after stopProducing" .. where, function()
        local p = actor(n, function(self) self:stopProducing() end)
        p:dataReceived(c.input)
        p:dataReceived("more\r\n")
        assert.same(c.lines(n), p.received)
      end)

      it("clears the buffer" .. where, function()
        local cleared
        local p = actor(n, function(self) cleared = self:clearLineBuffer() end)
        p:dataReceived(c.input)
        assert.equals(rest, cleared)
        p:dataReceived("more\r\n")
        assert.same(c.lines(n, { "more" }), p.received)
      end)

      it("appends data given from the hook" .. where, function()
        local p = actor(n, function(self) self:dataReceived("extra\r\n") end)
        p:dataReceived(c.input)
        assert.same(c.lines(c.count, { tail .. "extra" }), p.received)
      end)

      it("delivers nothing after loseConnection" .. where, function()
        local p = actor(n, function(self) self.transport:loseConnection() end)
        p:dataReceived(c.input)
        p:dataReceived("more\r\n")
        assert.same(c.lines(n), p.received)
        assert.equals("", p:clearLineBuffer())
      end)

      it("gives the rest to rawDataReceived when the hook switches to raw "
        .. "mode and disconnects" .. where, function()
        local p = actor(n, function(self)
          self:setRawMode()
          self.transport:loseConnection()
        end)
        p:dataReceived(c.input)
        assert.same(c.lines(n), p.received)
        assert.same(rest == "" and {} or { rest }, p.raw)
      end)

      it("stops and keeps the rest when the hook returns a value" .. where,
        function()
          local stop = { "stop" }
          local p = actor(n, function() return stop end)
          assert.equals(stop, p:dataReceived(c.input))
          assert.same(c.lines(n), p.received)
          p:dataReceived("")
          assert.same(all, p.received)
          assert.equals(tail, p:clearLineBuffer())
        end)

      it("goes on after the line when the hook raises" .. where, function()
        local p = actor(n, function() error("boom") end)
        assert.has_error(function() p:dataReceived(c.input) end, "boom")
        assert.same(c.lines(n), p.received)
        p:dataReceived("")
        assert.same(all, p.received)
        assert.equals(tail, p:clearLineBuffer())
      end)

      it("delivers every line once when the hook replaces lineReceived on "
        .. "the instance" .. where, function()
        local p = actor(n, function(self)
          self.second = {}
          self.lineReceived = function(s, line)
            s.second[#s.second + 1] = line
          end
        end)
        p:dataReceived(c.input)
        p:dataReceived("more\r\n")
        local seen = { table.unpack(p.received) }
        for _, line in ipairs(p.second) do
          seen[#seen + 1] = line
        end
        assert.same(c.lines(c.count, { tail .. "more" }), seen)
        assert.equals(tail .. "more", p.second[#p.second])
      end)
    end
  end

  local long = CHUNKS[#CHUNKS]

  for _, n in ipairs({ 1, 3, 4, 17, 81, 500 }) do
    it("hands line " .. n .. " of " .. long.count .. " and everything after "
      .. "it to lineLengthExceeded when it is too long", function()
      local lines = long.lines(long.count)
      lines[n] = ("x"):rep(200)
      local P = Collector(basic.LineReceiver, { MAX_LENGTH = 100 })
      function P:lineLengthExceeded(line)
        self.long = line
      end
      local p = connect(P)
      p:dataReceived(table.concat(lines, "\r\n") .. "\r\n")
      assert.same(long.lines(n - 1), p.received)
      assert.equals(table.concat(lines, "\r\n", n) .. "\r\n", p.long)
    end)
  end

  it("lets a hook feed another receiver, which acts on its own lines",
    function()
      local inner = actor(700, function(self) self:setRawMode() end)
      local outer = actor(300, function() inner:dataReceived(long.input) end)
      outer:dataReceived(long.input)
      assert.same(long.lines(long.count), outer.received)
      assert.same(long.lines(700), inner.received)
      assert.same({ long.restAfter(700) }, inner.raw)
    end)

  it("switches modes on every line of a long chunk", function()
    local P = basic.LineReceiver:extend({ delimiter = "\n" })
    function P:init()
      self.lines, self.raw = {}, {}
    end
    function P:lineReceived(line)
      self.lines[#self.lines + 1] = line
      self:setRawMode()
    end
    function P:rawDataReceived(data)
      self.raw[#self.raw + 1] = data:sub(1, 1)
      self:setLineMode(data:sub(2))
    end
    local p = P()
    p:makeConnection(StringTransport())
    p:dataReceived(("ab\n"):rep(3000))
    -- "ab", then each raw chunk gives back all but its first byte, "a".
    assert.equals(3000, #p.lines)
    assert.equals("a" .. ("b"):rep(3000), table.concat(p.lines))
    assert.equals(("a"):rep(2999), table.concat(p.raw))
  end)
end)
