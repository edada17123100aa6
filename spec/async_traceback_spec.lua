-- Tracebacks across await: a Failure raised through inlineCallbacks bodies
-- carries each awaiting caller's frames, outermost last; paths are printed
-- without "dir/.." segments and loom's own frames fold into one line unless
-- LOOM_DEBUG=1. In process (getTraceback, the unhandled-error log line) and
-- through `build/loom run` (its stderr).
local defer = require "loom.defer"
local err = require "loom.error"
local failure = require "loom.failure"
local log = require "loom.log"
local task = require "loom.task"
local sub = dofile("spec/support/subprocess.lua")

local Deferred, inline, await = defer.Deferred, defer.inlineCallbacks,
  defer.await

-- The line it is called from.
local function line()
  return debug.getinfo(2, "l").currentline
end

-- This file as Lua's own tracebacks name it (short_src) and as the async
-- frames do (the whole path, cleaned).
local SHORT = debug.getinfo(1, "S").short_src
local FULL = failure.normalisePath(debug.getinfo(1, "S").source:sub(2))

-- f:getTraceback() as it reads with LOOM_DEBUG unset, whatever the
-- environment of this run says (Lua cannot unset a variable).
local LOOM_DEBUG = os.getenv("LOOM_DEBUG")
local DEBUG_RUN = LOOM_DEBUG ~= nil and LOOM_DEBUG ~= "" and LOOM_DEBUG ~= "0"
local function shown(f)
  if not DEBUG_RUN then
    return f:getTraceback()
  end
  return f:getTraceback():match("^[^\n]*\n")
    .. failure.formatTraceback(f.traceback, f.asyncFrames, false)
end

local function failureOf(d)
  local f
  d:addErrback(function(x) f = x end)
  assert.is_not_nil(f, "the Deferred has not failed")
  return f
end

local function count(text, plain)
  local n, at = 0, 1
  while true do
    local s, e = text:find(plain, at, true)
    if not s then
      return n
    end
    n, at = n + 1, e + 1
  end
end

-- The new user's three levels: inner awaits, then raises; middle awaits
-- inner(); outer awaits middle().
local L = {}
L.innerDef = line(); local inner = inline(function(gate)
  await(gate)
  L.raise = line(); error("boom in inner")
end)
L.middleDef = line(); local middle = inline(function(gate)
  L.middleAwait = line(); return await(inner(gate))
end)
L.outerDef = line(); local outer = inline(function(gate)
  L.outerAwait = line(); local v = await(middle(gate))
  return v
end)

local function at(src, n)
  return src .. ":" .. n
end

-- The traceback the three levels print, loom's frames folded.
local function threeLevels()
  return at(SHORT, L.raise) .. ": boom in inner\n"
    .. "stack traceback:\n"
    .. "\t[C]: in function 'error'\n"
    .. "\t" .. at(SHORT, L.raise) .. ": in function <"
    .. at(SHORT, L.innerDef) .. ">\n"
    .. "\t[1 loom frame]\n"
    .. "\t" .. at(FULL, L.middleAwait) .. ": awaited in function <"
    .. at(FULL, L.middleDef) .. ">\n"
    .. "\t" .. at(FULL, L.outerAwait) .. ": awaited in function <"
    .. at(FULL, L.outerDef) .. ">"
end

describe("a Failure raised through awaits", function()
  it("shows every awaiting caller's await site, outermost last", function()
    local gate = Deferred()
    local d = outer(gate)
    gate:callback("go") -- inner resumes after its own await, then raises
    local f = failureOf(d)
    assert.equal(threeLevels(), shown(f))
    assert.equal(2, #f.asyncFrames)
    assert.same({ source = FULL, line = L.middleAwait, awaited = true,
      name = "function <" .. at(FULL, L.middleDef) .. ">" }, f.asyncFrames[1])
    assert.equal(L.outerAwait, f.asyncFrames[2].line)
  end)

  it("is the same when inner fails before it ever waits", function()
    local f = failureOf(outer(defer.succeed("at once")))
    assert.equal(threeLevels(), shown(f))
  end)

  it("shows loom's frames, paths cleaned, with LOOM_DEBUG=1", function()
    local gate = Deferred()
    local d = outer(gate)
    gate:callback("go")
    local f = failureOf(d)
    local all = failure.formatTraceback(f.traceback, f.asyncFrames, true)
    assert.falsy(all:find("loom frame", 1, true))
    assert.matches("\n\t[^\n]*lua/loom/defer%.lua:%d+: in function <[^\n]*"
      .. "lua/loom/defer%.lua:%d+>\n", all)
    assert.falsy(all:find("/../", 1, true))
    assert.falsy(all:find("/./", 1, true))
    -- The same frames as the folded form, in the same order.
    local folded = failure.formatTraceback(f.traceback, f.asyncFrames, false)
    local a = all:gsub("\n\t[^\n]*lua/loom/[^\n]*", "")
    local b = folded:gsub("\n\t%[1 loom frame%]", "")
    assert.equal(b, a)
  end)

  it("is in the log line of an unhandled error in a collected Deferred",
    function()
      local events = {}
      local observer = log.addObserver(function(ev)
        if ev.text:find("Unhandled error in Deferred", 1, true) then
          events[#events + 1] = ev
        end
      end)
      log.toFile("/dev/null") -- (the observer sees it; keep stderr quiet)
      do
        local gate = Deferred()
        outer(gate)
        gate:callback("go")
      end
      collectgarbage(); collectgarbage()
      collectgarbage(); collectgarbage()
      log.toFile(nil)
      log.removeObserver(observer)
      assert.equal(1, #events)
      assert.equal("error", events[1].level)
      local want = "Unhandled error in Deferred:\n" .. threeLevels()
      if DEBUG_RUN then -- (the loom frame is printed whole)
        want = want:gsub("\t%[1 loom frame%]\n", function()
          return events[1].text:match("\t[^\n]*lua/loom/defer%.lua:[^\n]*\n")
        end)
      end
      assert.equal(want, events[1].text)
    end)

  it("follows coroutine.yield-style awaits and helpers the body calls",
    function()
      local Y = {}
      local yInner = inline(function(gate)
        coroutine.yield(gate)
        Y.raise = line(); error("boom", 0)
      end)
      Y.helperDef = line(); local function fetch(gate)
        Y.helperAwait = line(); return coroutine.yield(yInner(gate))
      end
      Y.bodyDef = line(); local yOuter = inline(function(gate)
        Y.bodyCall = line(); local v = fetch(gate) -- (not a tail call)
        return v
      end)
      local gate = Deferred()
      local d = yOuter(gate)
      gate:callback()
      local f = failureOf(d)
      assert.same({
        { source = FULL, line = Y.helperAwait, name = "upvalue 'fetch'",
          awaited = true },
        { source = FULL, line = Y.bodyCall,
          name = "function <" .. at(FULL, Y.bodyDef) .. ">" },
      }, f.asyncFrames)
      assert.matches("\n\t" .. at(FULL, Y.helperAwait):gsub("%p", "%%%0")
        .. ": awaited in upvalue 'fetch'\n\t"
        .. at(FULL, Y.bodyCall):gsub("%p", "%%%0") .. ": in function <",
        shown(f))
    end)

  it("follows a Deferred chained through addCallback into an awaiting body",
    function()
      local function plainMiddle(gate) -- not inlineCallbacks: no await site
        return inner(gate):addCallback(function(v) return v end)
      end
      local C = {}
      C.def = line(); local top = inline(function(gate)
        C.await = line(); return await(plainMiddle(gate))
      end)
      local gate = Deferred()
      local d = top(gate)
      gate:callback()
      local f = failureOf(d)
      assert.equal(1, #f.asyncFrames)
      assert.equal(C.await, f.asyncFrames[1].line)
      assert.truthy(shown(f):find("\t[1 loom frame]\n\t"
        .. at(FULL, C.await) .. ": awaited in function <"
        .. at(FULL, C.def) .. ">", 1, true))
    end)

  it("does not repeat frames when a Failure is raised again on its way",
    function()
      local R = {}
      R.def = line(); local again = inline(function(gate)
        local ok, f = pcall(await, middle(gate))
        assert(not ok)
        R.reraise = line(); error(f, 0) -- raised again, not awaited here
      end)
      local trapping = inline(function(gate)
        local ok, f = pcall(await, again(gate))
        assert(not ok)
        f:trap(err.TimeoutError) -- no match: raises f itself
      end)
      local gate = Deferred()
      local d = trapping(gate)
      gate:callback()
      local f = failureOf(d)
      local text = f:getTraceback()
      -- Each body appears once: inner (where it arose), middle (awaited),
      -- again (raised again), trapping (raised from trap): four lines.
      assert.equal(1, count(text, at(SHORT, L.raise) .. ": in function"))
      assert.equal(1, count(text, at(FULL, L.middleAwait) .. ":"))
      assert.equal(1, count(text, at(FULL, R.reraise) .. ": in function <"
        .. at(FULL, R.def) .. ">"))
      assert.equal(0, count(text, at(FULL, R.reraise) .. ": awaited"))
      assert.equal(4, count(text, "\n\t" .. FULL .. ":"))
    end)

  it("does not add the frames of the body that made the Failure", function()
    local M = {}
    M.def = line(); local maker = inline(function(gate)
      await(gate)
      M.make = line(); failure.Failure("made here"):raise()
    end)
    local top = inline(function(gate) return await(maker(gate)) end)
    local gate = Deferred()
    local d = top(gate)
    gate:callback()
    local f = failureOf(d)
    assert.equal(1, #f.asyncFrames) -- top's await only
    local text = f:getTraceback()
    assert.equal(1, count(text, "<" .. at(SHORT, M.def) .. ">"))
    assert.equal(1, count(text, at(SHORT, M.make) .. ": in function <"))
    -- Likewise one made by defer.fail (or d:errback) in the body.
    M.failDef = line(); local failer = inline(function(gate)
      await(gate)
      M.fail = line(); return await(defer.fail("made by fail"))
    end)
    gate = Deferred()
    d = inline(function(g) return await(failer(g)) end)(gate)
    gate:callback()
    f = failureOf(d)
    assert.equal(1, #f.asyncFrames)
    assert.equal(1, count(f:getTraceback(), "<" .. at(SHORT, M.failDef)
      .. ">"))
  end)

  it("records nothing while a Failure is caught where it is awaited",
    function()
      local caught
      local calm = inline(function(gate)
        local ok, f = pcall(await, inner(gate))
        caught = f
        return ok
      end)
      local gate = Deferred()
      local d = calm(gate)
      gate:callback()
      assert.is_true(failure.isFailure(caught))
      assert.is_nil(caught.asyncFrames)
      d:addCallback(function(v) assert.is_false(v) end)
    end)

  it("follows a chain nested far past the resume queue's depth", function()
    local nest
    nest = inline(function(n, gate)
      if n == 0 then
        await(gate)
        error("deep")
      end
      return await(nest(n - 1, gate))
    end)
    local gate = Deferred()
    local d = nest(40, gate)
    gate:callback()
    local f = failureOf(d)
    assert.equal(40, count(f:getTraceback(), ": awaited in function <"))
  end)

  it("stops growing a Failure object that is raised again and again",
    function()
      local shared = failure.Failure("the same every time")
      local raiser = inline(function(gate)
        await(gate)
        shared:raise()
      end)
      for _ = 1, 300 do
        local gate = Deferred()
        raiser(gate):addErrback(function() end)
        gate:callback()
      end
      assert.is_true(#shared.asyncFrames <= 200)
      assert.is_true(#shared.asyncFrames >= 150)
    end)

  it("keeps the chain in a FirstError from gatherResults", function()
    local G = {}
    local top = inline(function(gate)
      G.await = line()
      return await(defer.gatherResults({ middle(gate) }, true))
    end)
    local gate = Deferred()
    local d = top(gate)
    gate:callback()
    local f = failureOf(d)
    assert.truthy(f:check(err.FirstError))
    local text = f:getTraceback()
    assert.truthy(text:find(at(FULL, L.middleAwait) .. ": awaited", 1, true))
    assert.truthy(text:find(at(FULL, G.await + 1) .. ": awaited", 1, true))
    assert.truthy(text:find(at(FULL, L.middleAwait), 1, true)
      < text:find(at(FULL, G.await + 1), 1, true))
  end)
end)

describe("cancel and timeouts through awaits", function()
  it("a cancelled call fails with CancelledError through every await",
    function()
      local gate = Deferred()
      local d = outer(gate)
      d:cancel()
      local f = failureOf(d)
      assert.truthy(f:check(err.CancelledError))
      assert.equal(3, count(f:getTraceback(), ": awaited in function <"))
      assert.equal(L.outerAwait, f.asyncFrames[#f.asyncFrames].line)
    end)

  it("a timeout's TimeoutError carries the await sites too", function()
    local clock = task.Clock()
    local gate = Deferred():addTimeout(5, clock)
    local d = outer(gate)
    clock:advance(5)
    local f = failureOf(d)
    assert.truthy(f:check(err.TimeoutError))
    local text = f:getTraceback()
    assert.equal(3, count(text, ": awaited in function <"))
    assert.truthy(text:find(at(FULL, L.middleAwait), 1, true)
      < text:find(at(FULL, L.outerAwait), 1, true))
  end)
end)

describe("failure.normalisePath", function()
  it("removes dir/.. and . segments, keeps what cannot be removed",
    function()
      local n = failure.normalisePath
      assert.equal("/src/loom/lua/loom/defer.lua",
        n("/src/loom/build/../lua/loom/defer.lua"))
      assert.equal("app.lua", n("sub/../app.lua"))
      assert.equal("../../app.lua", n("../../app.lua"))
      assert.equal("../y.lua", n("../x/../y.lua"))
      assert.equal("./a/b.lua", n("./a/./b.lua"))
      assert.equal("/b.lua", n("/../b.lua"))
      assert.equal("/a/.hidden/b.lua", n("/a/.hidden/b.lua"))
      assert.equal("...lua/loom/defer.lua", n("...uild/../lua/loom/defer.lua"))
      assert.equal("app.lua", n("app.lua"))
    end)

  it("loom's own files are found so, a cut short_src too", function()
    local src = failure.normalisePath(
      debug.getinfo(defer.Deferred.cancel, "S").source:sub(2))
    assert.is_true(failure.isLoomSource(src))
    assert.is_true(failure.isLoomSource("..." .. src:sub(-30)))
    assert.is_false(failure.isLoomSource(FULL))
    assert.is_false(failure.isLoomSource("[C]"))
  end)
end)

describe("loom run: an unhandled async error on stderr", function()
  local SCRIPT = [[
local defer = require "loom.defer"
local reactor = require "loom.reactor"
local inner = defer.inlineCallbacks(function(gate)
  defer.await(gate)
  error("boom in inner")
end)
local middle = defer.inlineCallbacks(function(gate)
  return defer.await(inner(gate))
end)
local outer = defer.inlineCallbacks(function(gate)
  return defer.await(middle(gate))
end)
local gate = defer.Deferred()
outer(gate)
reactor.callLater(0, function() gate:callback("go") end)
reactor.callLater(0.05, reactor.stop)
reactor.run()
]]

  local dir
  setup(function()
    dir = sub.tmpdir()
    os.execute("mkdir " .. dir .. "/sub")
    sub.writeFile(dir .. "/app.lua", SCRIPT)
  end)
  teardown(function()
    os.remove(dir .. "/app.lua")
    os.remove(dir .. "/sub")
    os.remove(dir)
  end)

  it("prints the three levels, loom folded, the script path cleaned",
    function()
      local out, errText, status = sub.loom("run " .. dir .. "/sub/../app.lua",
        "LOOM_DEBUG=")
      assert.equal(0, status)
      assert.equal("", out)
      local app = dir .. "/app.lua"
      local want = "error: Unhandled error in Deferred:\n"
        .. app .. ":5: boom in inner\n"
        .. "stack traceback:\n"
        .. "\t[C]: in function 'error'\n"
        .. "\t" .. app .. ":5: in function <" .. app .. ":3>\n"
        .. "\t[1 loom frame]\n"
        .. "\t" .. app .. ":8: awaited in function <" .. app .. ":7>\n"
        .. "\t" .. app .. ":11: awaited in function <" .. app .. ":10>\n"
      assert.truthy(errText:find(want, 1, true), errText)
      assert.falsy(errText:find("/../", 1, true))
    end)

  it("shows loom's frames with LOOM_DEBUG=1, still without ..", function()
    local _, errText, status = sub.loom("run " .. dir .. "/sub/../app.lua",
      "LOOM_DEBUG=1")
    assert.equal(0, status)
    local app = dir .. "/app.lua"
    assert.falsy(errText:find("loom frame", 1, true))
    assert.matches("\n\t/[^\n]*/lua/loom/defer%.lua:%d+: in function <",
      errText)
    assert.truthy(errText:find("\t" .. app .. ":8: awaited in function <"
      .. app .. ":7>\n\t" .. app .. ":11: awaited in function <" .. app
      .. ":10>\n", 1, true), errText)
    assert.falsy(errText:find("/../", 1, true))
  end)
end)

describe("examples/deferreds/async_traceback.lua", function()
  it("prints where bob was not found, then the two awaiting callers",
    function()
      local out, errText, status = sub.loom(
        "run examples/deferreds/async_traceback.lua", "LOOM_DEBUG=")
      assert.equal(0, status)
      assert.equal("", errText)
      local ex = "examples/deferreds/async_traceback.lua"
      assert.matches("^" .. ex:gsub("%p", "%%%0") .. ":%d+: no such user: bob\n"
        .. "stack traceback:\n", out)
      local first = out:find(ex .. ":%d+: awaited in function <" .. ex
        .. ":%d+>\n")
      assert.truthy(first, out)
      assert.equal(2, count(out, ": awaited in function <"))
      assert.equal(1, count(out, "\t[1 loom frame]\n"))
    end)
end)
