-- defer.setDebugging (Twisted's name): where each Deferred was made and
-- first fired, in the unhandled-error report and in AlreadyCalledError.
local defer = require "loom.defer"
local dbg = require "loom.defer.debug"
local err = require "loom.error"
local log = require "loom.log"

local Deferred = defer.Deferred
local getinfo = debug.getinfo

local SPEC = "defer_debug_spec.lua"

-- The line this is called from.
local function here()
  return getinfo(2, "l").currentline
end

local function at(line)
  return SPEC .. ":" .. line .. ":"
end

-- The first line of a recorded stack as a report shows it.
local function shownFirst(stack)
  return dbg.shorten(stack):match("^[^\n]*")
end

-- The methods debugging replaces, as loaded (the C functions).
local originals = {
  new = Deferred.new, call = getmetatable(Deferred).__call,
  callback = Deferred.callback, errback = Deferred.errback,
  succeed = defer.succeed, listNew = defer.DeferredList.new,
}

local function assertOriginals()
  assert.equals(originals.new, Deferred.new)
  assert.equals(originals.call, getmetatable(Deferred).__call)
  assert.equals(originals.callback, Deferred.callback)
  assert.equals(originals.errback, Deferred.errback)
  assert.equals(originals.succeed, defer.succeed)
  assert.equals(originals.listNew, defer.DeferredList.new)
end

local function collect()
  for _ = 1, 4 do
    collectgarbage()
  end
end

describe("defer.setDebugging", function()
  after_each(function()
    defer.setDebugging(false) -- (every spec runs in one process)
  end)

  it("is off by default, with the C methods in place and nothing recorded",
    function()
      assert.is_false(defer.getDebugging())
      assert.equals("C", getinfo(Deferred.callback, "S").what)
      assert.equals("C", getinfo(Deferred.new, "S").what)
      assert.equals("C", getinfo(defer.succeed, "S").what)
      assertOriginals()
      local d = Deferred()
      d:callback(1)
      assert.is_nil(rawget(d, "_debugInfo"))
      assert.is_nil(rawget(defer.inlineCallbacks(function() end)(),
        "_debugInfo"))
    end)

  it("records where a Deferred was made and where it was first fired",
    function()
      defer.setDebugging(true)
      assert.is_true(defer.getDebugging())
      local d, made = Deferred(), here()
      local info = d._debugInfo
      assert.matches(at(made), shownFirst(info.creator), 1, true)
      assert.is_nil(info.invoker)
      d:callback("v")
      local fired = here() - 1
      assert.matches(at(fired), shownFirst(info.invoker), 1, true)
      -- As shown, loom's Deferred machinery is not in them.
      assert.is_nil(dbg.shorten(info.creator):find("loom/defer", 1, true))
      assert.is_nil(dbg.shorten(info.invoker):find("loom/defer", 1, true))
    end)

  it("names the creator and the first invoker in AlreadyCalledError",
    function()
      defer.setDebugging(true)
      local d, made = Deferred(), here()
      d:errback("first")
      local fired = here() - 1
      d:addErrback(function() end)
      local ok, e = pcall(d.callback, d, "second")
      assert.is_false(ok)
      assert.is_true(err.isError(e) and e:isa(err.AlreadyCalledError))
      local text = tostring(e)
      assert.matches("C: Deferred was created:", text, 1, true)
      assert.matches(at(made), text, 1, true)
      assert.matches("I: First Invoker was:", text, 1, true)
      assert.matches(at(fired), text, 1, true)
      -- The second firing did not replace the first invoker.
      assert.matches(at(fired), d._debugInfo.invoker, 1, true)
    end)

  describe("the unhandled-error report", function()
    local events, observer
    before_each(function()
      collect()
      events = {}
      observer = log.addObserver(function(ev)
        if ev.text:find("Unhandled error in Deferred:", 1, true) then
          events[#events + 1] = ev
        end
      end)
    end)
    after_each(function()
      log.removeObserver(observer)
    end)

    it("names where the Deferred was made and first fired", function()
      defer.setDebugging(true)
      local made, fired
      do
        local d
        d, made = Deferred(), here()
        d:addCallback(function() error("lost in the void") end)
        d:callback(1)
        fired = here() - 1
      end
      collect()
      assert.equals(1, #events)
      local text = events[1].text
      assert.matches("lost in the void", text, 1, true)
      assert.matches("(debug:", text, 1, true)
      local spec = SPEC:gsub("%.", "%%.")
      assert.matches(" C: Deferred was created:\n C:  [^\n]*" .. spec
        .. ":" .. made .. ":", text)
      assert.matches(" I: First Invoker was:\n I:  [^\n]*" .. spec
        .. ":" .. fired .. ":", text)
    end)

    it("stays as it was when debugging is off", function()
      do
        local d = Deferred()
        d:errback("plain")
      end
      collect()
      assert.equals(1, #events)
      assert.matches("plain", events[1].text, 1, true)
      assert.is_nil(events[1].text:find("(debug:", 1, true))
    end)

    it("covers succeed, fail and an inlineCallbacks call", function()
      defer.setDebugging(true)
      local lines = {}
      local waitFor = Deferred()
      local body = defer.inlineCallbacks(function()
        defer.await(waitFor)
        error("inline failed")
      end)
      do
        local s = defer.succeed(1)
        lines.succeed = here() - 1
        assert.matches(at(lines.succeed), s._debugInfo.creator, 1, true)
        assert.matches(at(lines.succeed), s._debugInfo.invoker, 1, true)
        local f = defer.fail("failed on purpose")
        lines.fail = here() - 1
        assert.matches(at(lines.fail), f._debugInfo.creator, 1, true)
        local call = body()
        lines.inline = here() - 1
        assert.matches(at(lines.inline), call._debugInfo.creator, 1, true)
        waitFor:callback("go")
        lines.go = here() - 1
        assert.matches(at(lines.go), call._debugInfo.invoker, 1, true)
      end
      collect()
      assert.equals(2, #events)
      local all = events[1].text .. events[2].text
      assert.matches("failed on purpose", all, 1, true)
      assert.matches("inline failed", all, 1, true)
      for _, name in ipairs({ "fail", "inline", "go" }) do
        assert.matches(at(lines[name]), all, 1, true)
      end
    end)
  end)

  it("records DeferredLists and Deferreds of a subclass made by calling it",
    function()
      defer.setDebugging(true)
      local list, line = defer.DeferredList({}), here()
      assert.matches(at(line), list._debugInfo.creator, 1, true)
      -- (an empty list fires as it is made: the same place)
      assert.matches(at(line), list._debugInfo.invoker, 1, true)
      local Sub = Deferred:extend({ __name = "Sub" })
      local s, made = Sub(), here()
      assert.matches(at(made), s._debugInfo.creator, 1, true)
    end)

  it("folds loom's frames between the user's into one line",
    function()
      defer.setDebugging(true)
      local outer, inner, madeInner = Deferred(), nil, nil
      outer:addCallback(function()
        inner = Deferred()
        madeInner = here() - 1
      end)
      outer:callback(0)
      local fired = here() - 1
      local creator = dbg.shorten(inner._debugInfo.creator)
      local first, fold, caller = creator:match(
        "^([^\n]*)\n([^\n]*)\n([^\n]*)")
      assert.matches(at(madeInner), first, 1, true)
      assert.matches("^%[%d+ loom frames?%]$", fold)
      assert.matches(at(fired), caller, 1, true)
    end)

  it("shows at most MAX_FRAMES lines of a deep stack, then ...", function()
    defer.setDebugging(true)
    local function dig(n)
      if n == 0 then
        return Deferred()
      end
      local d = dig(n - 1)
      return d -- (not a tail call: each level stays on the stack)
    end
    local shown = dbg.shorten(dig(20)._debugInfo.creator)
    local lines = {}
    for line in shown:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    assert.equals(dbg.MAX_FRAMES + 1, #lines)
    assert.equals("...", lines[#lines])
    for i = 1, dbg.MAX_FRAMES do
      assert.matches("^spec/defer_debug_spec%.lua:%d+: in ", lines[i])
    end
  end)

  it("keeps an error about a bad result pointing at the caller", function()
    defer.setDebugging(true)
    local line
    local ok, e = pcall(function()
      line = here()
      Deferred():callback(Deferred())
    end)
    assert.is_false(ok)
    assert.matches(at(line + 1), e, 1, true)
    assert.matches("the result cannot be a Deferred", e, 1, true)
    ok, e = pcall(function()
      line = here()
      defer.succeed(Deferred())
    end)
    assert.is_false(ok)
    assert.matches(at(line + 1), e, 1, true)
  end)

  it("wraps a plain errback value in a Failure with the caller's traceback",
    function()
      defer.setDebugging(true)
      local d = Deferred()
      local got
      d:addErrback(function(f) got = f end)
      d:errback("plain value")
      local line = here() - 1
      assert.equals("plain value", got.value)
      local first = got.traceback:match("stack traceback:\n%s*([^\n]*)")
      assert.matches(at(line), first, 1, true)
    end)

  it("puts the very same methods back when turned off", function()
    defer.setDebugging(true)
    local kept = Deferred()
    assert.are_not.equal(originals.callback, Deferred.callback)
    defer.setDebugging(true) -- (twice on, once off: still all restored)
    defer.setDebugging(false)
    assert.is_false(defer.getDebugging())
    assertOriginals()
    assert.is_nil(rawget(Deferred(), "_debugInfo"))
    assert.is_nil(rawget(defer.inlineCallbacks(function() end)(),
      "_debugInfo"))
    -- A Deferred made while on keeps what it recorded.
    assert.is_string(kept._debugInfo.creator)
  end)

  it("examples/deferreds/lost_error.lua shows where its lost Deferred was"
    .. " made and fired", function()
    local loom = os.getenv("LOOM_BIN") or "build/loom"
    local p = io.popen("timeout 10 " .. loom
      .. " run examples/deferreds/lost_error.lua 2>&1; echo \"status=$?\"")
    local out = p:read("a")
    p:close()
    assert.matches("status=0%s*$", out)
    assert.matches("loom is a Twisted-style network host", out, 1, true)
    local file = "examples/deferreds/lost_error.lua:"
    local made = out:match(" C: Deferred was created:\n(.-)\n I:")
    assert.is_string(made, out)
    assert.matches(" C:  " .. file .. "15: in upvalue 'lookup'\n"
      .. " C:  " .. file .. "28: in local 'show'", made, 1, true)
    assert.matches(" I: First Invoker was:\n I:  " .. file .. "20: ", out,
      1, true)
    assert.matches("no such name: lume", out, 1, true)
  end)
end)
