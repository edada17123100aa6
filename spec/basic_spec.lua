-- Specs for loom.basic, ported from Twisted's protocols/test/test_basic.py
-- and extended: every parser is fed in chunks of 1, 2, 3, 7 and 4096 bytes.

local basic = require "loom.basic"
local testing = require "loom.testing"
local log = require "loom.log"

local StringTransport = testing.StringTransport
local CHUNKINGS = { 1, 2, 3, 7, 4096 }

-- Feed data to proto in size-byte chunks.
local function feed(proto, data, size)
  for i = 1, #data, size do
    proto:dataReceived(data:sub(i, i + size - 1))
  end
end

-- Twisted's loop: len // size + 1 chunks, the last one possibly empty.
local function feedTwisted(proto, data, size)
  for i = 0, #data // size do
    proto:dataReceived(data:sub(i * size + 1, (i + 1) * size))
  end
end

local function connect(cls, transport)
  local p = cls()
  transport = transport or StringTransport()
  p:makeConnection(transport)
  return p, transport
end

-- Collect log events while f runs.
local function logged(f)
  local events = {}
  local function observer(ev)
    events[#events + 1] = ev
  end
  log.addObserver(observer)
  log.toFile("/dev/null") -- keep expected errors out of the spec output
  local ok, e = pcall(f)
  log.toFile(nil)
  log.removeObserver(observer)
  assert(ok, e)
  return events
end

-- A fresh copy of loom.basic whose string.find / string.sub / table.concat
-- count the bytes they scan and copy, to catch quadratic parsing without
-- timing anything.
local function instrumentedBasic()
  local realFind, realSub, realConcat = string.find, string.sub, table.concat
  local stats = { scanned = 0, copied = 0, finds = 0 }
  string.find = function(s, p, init, plain) -- luacheck: ignore
    local a, b = realFind(s, p, init, plain)
    init = init or 1
    if init < 0 then
      init = #s + init + 1
    end
    stats.finds = stats.finds + 1
    stats.scanned = stats.scanned + (b or #s) - init + 1
    return a, b
  end
  string.sub = function(s, i, j) -- luacheck: ignore
    local r = realSub(s, i, j)
    stats.copied = stats.copied + #r
    return r
  end
  table.concat = function(t, ...) -- luacheck: ignore
    local r = realConcat(t, ...)
    stats.copied = stats.copied + #r
    return r
  end
  local saved = package.loaded["loom.basic"]
  package.loaded["loom.basic"] = nil
  local ok, mod = pcall(require, "loom.basic")
  string.find, string.sub, table.concat = realFind, realSub, realConcat -- luacheck: ignore
  package.loaded["loom.basic"] = saved
  assert(ok, mod)
  return mod, stats
end

-- Run feedStep(i) for i = 1..n with the collector stopped, failing as soon
-- as more than budget bytes have been allocated (so a quadratic regression
-- fails fast instead of hanging). Returns the bytes allocated.
local function allocatedWithin(budget, n, feedStep)
  collectgarbage()
  collectgarbage("stop")
  local base = collectgarbage("count") * 1024
  local ok, e = pcall(function()
    for i = 1, n do
      feedStep(i)
      if i % 4096 == 0 and collectgarbage("count") * 1024 - base > budget then
        error(string.format("allocated more than %d bytes after %d steps",
          budget, i))
      end
    end
  end)
  local used = collectgarbage("count") * 1024 - base
  collectgarbage("restart")
  collectgarbage()
  assert(ok, e)
  assert(used <= budget, string.format("allocated %d bytes (budget %d)",
    used, budget))
  return used
end

-- Test protocols ------------------------------------------------------------

local function Collector(cls, fields)
  local C = cls:extend(fields or {})
  function C:connectionMade()
    self.received = {}
  end
  function C:lineReceived(line)
    self.received[#self.received + 1] = line
  end
  function C:stringReceived(s)
    self.received[#self.received + 1] = s
  end
  return C
end

-- Twisted's LineTester: acts on tokens in the lines it receives.
local LineTester = basic.LineReceiver:extend({ delimiter = "\n",
  MAX_LENGTH = 64 })

function LineTester:init(clock)
  self.clock = clock
end

function LineTester:connectionMade()
  self.received = {}
end

function LineTester:lineReceived(line)
  local r = self.received
  r[#r + 1] = line
  if line == "" then
    self:setRawMode()
  elseif line == "pause" then
    self:pauseProducing()
    self.clock:callLater(0, function() self:resumeProducing() end)
  elseif line == "rawpause" then
    self:pauseProducing()
    self:setRawMode()
    r[#r + 1] = ""
    self.clock:callLater(0, function() self:resumeProducing() end)
  elseif line == "stop" then
    self:stopProducing()
  elseif line:sub(1, 4) == "len " then
    self.length = tonumber(line:sub(5))
  elseif line:sub(1, 7) == "produce" then
    self.transport:registerProducer(self, false)
  elseif line:sub(1, 9) == "unproduce" then
    self.transport:unregisterProducer()
  end
end

function LineTester:rawDataReceived(data)
  local rest = data:sub(self.length + 1)
  data = data:sub(1, self.length)
  self.length = self.length - #data
  local r = self.received
  r[#r] = r[#r] .. data
  if self.length == 0 then
    self:setLineMode(rest)
  end
end

function LineTester:lineLengthExceeded(line)
  if #line > self.MAX_LENGTH + 1 then
    self:setLineMode(line:sub(self.MAX_LENGTH + 2))
  end
end

-- A minimal Clock (callLater(0, f) + advance) so these specs do not depend
-- on loom.task.
local function FakeClock()
  local calls = {}
  return {
    callLater = function(_, _, f)
      calls[#calls + 1] = f
    end,
    advance = function()
      local now = calls
      calls = {}
      for _, f in ipairs(now) do
        f()
      end
    end,
  }
end

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
