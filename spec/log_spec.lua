-- loom.log: levels, timestamps, prefixes, log.err, observers.
local log = require "loom.log"

-- Collects events while f runs; the default output goes to a temp file,
-- whose text is returned too.
local function capture(f)
  local events = {}
  local function obs(ev)
    events[#events + 1] = ev
  end
  local path = os.tmpname()
  local level = log.level
  log.toFile(path)
  log.addObserver(obs)
  local ok, e = pcall(f)
  log.removeObserver(obs)
  log.toFile(nil)
  log.level = level
  local fh = io.open(path)
  local text = fh:read("a")
  fh:close()
  os.remove(path)
  assert(ok, e)
  return events, text
end

describe("loom.log levels", function()
  it("sends info, warn and error events with their level", function()
    local events = capture(function()
      log.info("one")
      log.warn("two")
      log.error("three")
    end)
    assert.equal(3, #events)
    assert.same({ "info", "warn", "error" },
      { events[1].level, events[2].level, events[3].level })
    assert.same({ "one", "two", "three" },
      { events[1].text, events[2].text, events[3].text })
  end)

  it("formats with string.format when given arguments", function()
    local events = capture(function()
      log.info("%s=%d", "n", 42)
      log.info("100%")
    end)
    assert.equal("n=42", events[1].text)
    assert.equal("100%", events[2].text)
  end)

  it("filters the default output by log.level", function()
    local _, text = capture(function()
      log.level = "warn"
      log.info("quiet")
      log.warn("loud")
    end)
    assert.is_nil(text:find("quiet", 1, true))
    assert.matches("warn: loud\n", text)
  end)

  it("does not filter what observers see by log.level", function()
    local events = capture(function()
      log.level = "error"
      log.info("still observed")
    end)
    assert.equal(1, #events)
    assert.equal("still observed", events[1].text)
  end)
end)

describe("loom.log events", function()
  it("carry a wall-clock timestamp in seconds", function()
    local before = os.time()
    local events = capture(function() log.info("tick") end)
    local t = events[1].time
    assert.is_number(t)
    local after = os.time()
    assert.is_true(t >= before - 1 and t <= after + 1, string.format(
      "time %s not within [%d, %d] (event %q, %d events)", tostring(t),
      before - 1, after + 1, tostring(events[1].text), #events))
  end)

  it("are written as one line with an ISO 8601 UTC timestamp", function()
    local _, text = capture(function() log.info("hello") end)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ info: "
      .. "hello\n$", text)
  end)

  it("are formatted by log.format with their prefix", function()
    local s = log.format({ level = "warn", time = 0, prefix = "Echo,1.2.3.4:5",
      text = "hi" })
    assert.equal("1970-01-01T00:00:00.000Z [Echo,1.2.3.4:5] warn: hi", s)
  end)
end)

describe("log.prefixed", function()
  it("makes a logger whose events carry the prefix", function()
    local p = log.prefixed("Echo,127.0.0.1:5000")
    local events, text = capture(function()
      p.info("made")
      p.err("oops")
      log.info("plain")
    end)
    assert.equal("Echo,127.0.0.1:5000", events[1].prefix)
    assert.equal("Echo,127.0.0.1:5000", events[2].prefix)
    assert.is_nil(events[3].prefix)
    assert.matches("%[Echo,127%.0%.0%.1:5000%] info: made\n", text)
  end)
end)

describe("log.err", function()
  it("logs a Failure-like value with its traceback", function()
    local failure = {
      getTraceback = function() return "Traceback: boom\n  at x.lua:1" end,
    }
    local events = capture(function() log.err(failure) end)
    assert.equal("error", events[1].level)
    assert.equal("Traceback: boom\n  at x.lua:1", events[1].text)
  end)

  it("puts `why` before the traceback", function()
    local failure = { getTraceback = function() return "TB" end }
    local events = capture(function()
      log.err(failure, "error in Echo.dataReceived")
    end)
    assert.equal("error in Echo.dataReceived\nTB", events[1].text)
  end)

  it("logs a plain string error", function()
    local events = capture(function() log.err("just a string") end)
    assert.equal("error", events[1].level)
    assert.equal("just a string", events[1].text)
  end)

  it("logs a real loom Failure", function()
    local Failure = require("loom.failure").Failure
    local _, f = pcall(function() error(Failure("kaput")) end)
    local events = capture(function() log.err(f, "why") end)
    assert.matches("^why\n", events[1].text)
    assert.matches("kaput", events[1].text)
  end)
end)

describe("log observers", function()
  it("stop receiving events once removed", function()
    local seen = 0
    local function obs() seen = seen + 1 end
    capture(function()
      log.addObserver(obs)
      log.info("a")
      log.removeObserver(obs)
      log.info("b")
    end)
    assert.equal(1, seen)
  end)

  it("that raise do not stop other observers or the caller", function()
    local function bad() error("observer exploded") end
    local events, text = capture(function()
      log.addObserver(bad)
      local ok = pcall(log.info, "survives")
      log.removeObserver(bad)
      assert.is_true(ok)
      log.info("after")
    end)
    assert.equal(2, #events)
    assert.equal("survives", events[1].text)
    assert.matches("observer exploded", text)
  end)
end)
