-- loom.threads: deferToThread, callInThread, callFromThread on real worker
-- threads, each with a Lua state of its own.
local reactor = require "loom.reactor"
local threads = require "loom.threads"
local defer = require "loom.defer"
local log = require "loom.log"
local testing = require "loom.testing"

local runUntil = testing.runUntil

local function countPrimes(n)
  local count = 0
  for i = 2, n do
    local prime = true
    for j = 2, math.floor(math.sqrt(i)) do
      if i % j == 0 then
        prime = false
        break
      end
    end
    if prime then
      count = count + 1
    end
  end
  return count
end

describe("threads.deferToThread", function()
  it("runs a function on a worker and fires with its result", function()
    assert.equal(1229, runUntil(threads.deferToThread(countPrimes, 10000)))
  end)

  it("copies nested arguments and results", function()
    local echo = function(...) return { ... } end
    local v = runUntil(threads.deferToThread(echo, 1, 2.5, "a\0b", true,
      { list = { 1, 2, 3 }, deep = { deeper = { x = false } } }))
    assert.same({ 1, 2.5, "a\0b", true,
      { list = { 1, 2, 3 }, deep = { deeper = { x = false } } } }, v)
    assert.equal("integer", math.type(v[1]))
    assert.equal("float", math.type(v[2]))
  end)

  it("gives the worker its own globals and standard library", function()
    LOOM_SPEC_GLOBAL = "main"
    local v = runUntil(threads.deferToThread(function()
      local before = LOOM_SPEC_GLOBAL
      LOOM_SPEC_GLOBAL = "worker"
      return { before = before, upper = string.upper("ok") }
    end))
    assert.same({ upper = "OK" }, v)
    assert.equal("main", LOOM_SPEC_GLOBAL)
    LOOM_SPEC_GLOBAL = nil
  end)

  it("turns an error into a Failure with the worker's traceback", function()
    local ok, f = pcall(runUntil, threads.deferToThread(function()
      error("worker exploded")
    end))
    assert.is_false(ok)
    assert.matches("worker exploded", f:getErrorMessage())
    assert.matches("threads_spec.lua:%d+", f:getErrorMessage())
    assert.matches("stack traceback:", f.traceback)
    assert.matches("threads_spec.lua", f.traceback)
  end)

  it("copies a table error value", function()
    local ok, f = pcall(runUntil, threads.deferToThread(function()
      error({ code = 42 })
    end))
    assert.is_false(ok)
    assert.same({ code = 42 }, f.value)
  end)

  it("rejects a function with upvalues, naming the upvalue", function()
    local secret = 7
    local ok, e = pcall(threads.deferToThread, function() return secret end)
    assert.is_false(ok)
    assert.matches("deferToThread: the function uses upvalue 'secret'", e)
  end)

  it("rejects C functions and non-functions", function()
    assert.has_error(function() threads.deferToThread(print) end,
      "deferToThread: cannot send a C function to a thread")
    assert.has_error(function() threads.deferToThread(42) end,
      "deferToThread: expected a function, got a number")
  end)

  it("names the path of an argument that cannot be copied", function()
    assert.has_error(function()
      threads.deferToThread(function() end, 1, { key = print })
    end, "deferToThread: argument 2.key is a function")
    assert.has_error(function()
      threads.deferToThread(function() end, { 1, { coroutine.create(print) } })
    end, "deferToThread: argument 1[2][1] is a thread")
    local cycle = {}
    cycle.self = cycle
    assert.has_error(function()
      threads.deferToThread(function() end, cycle)
    end)
  end)

  it("fails when a result cannot be copied back", function()
    local ok, f = pcall(runUntil, threads.deferToThread(function()
      return 1, { f = print }
    end))
    assert.is_false(ok)
    assert.matches("result 2.f is a function", f:getErrorMessage())
  end)

  it("keeps the reactor running while a worker computes", function()
    local ticks = 0
    local lc = reactor.callLater(0, function() end)
    local function tick()
      ticks = ticks + 1
      lc = reactor.callLater(0.001, tick)
    end
    tick()
    local d = threads.deferToThread(countPrimes, 300000)
    local primes = runUntil(d, 30)
    lc:cancel()
    assert.equal(25997, primes)
    assert.is_true(ticks > 3)
  end)

  it("runs many jobs with a small pool", function()
    threads.setPoolSize(2)
    local list = {}
    for i = 1, 8 do
      list[i] = threads.deferToThread(function(n) return n * n end, i)
    end
    local got = runUntil(defer.gatherResults(list), 10)
    assert.same({ 1, 4, 9, 16, 25, 36, 49, 64 }, { table.unpack(got, 1, 8) })
    threads.setPoolSize(4)
    assert.has_error(function() threads.setPoolSize(0) end)
  end)
end)

describe("callInThread and callFromThread", function()
  it("callInThread runs f on a worker and logs its error", function()
    local logged = defer.Deferred()
    local obs = log.addObserver(function(ev)
      if ev.text:find("callInThread", 1, true) and not logged.called then
        logged:callback(ev.text)
      end
    end)
    reactor.callInThread(function() error("lost in a thread") end)
    local text = runUntil(logged)
    log.removeObserver(obs)
    assert.matches("lost in a thread", text)
  end)

  it("callFromThread on the loop thread runs f later, in order", function()
    local seen = {}
    local d = defer.Deferred()
    reactor.callFromThread(function(x) seen[#seen + 1] = x end, "a")
    reactor.callFromThread(function(x)
      seen[#seen + 1] = x
      d:callback(seen)
    end, "b")
    assert.same({}, seen)
    assert.same({ "a", "b" }, runUntil(d))
  end)

  it("a worker posts a function back to the loop with loom.worker",
    function()
      local d = defer.Deferred()
      _G.LOOM_SPEC_DONE = function(msg) d:callback(msg) end
      threads.deferToThread(function(who)
        require("loom.worker").callFromThread(function(m)
          LOOM_SPEC_DONE(m)
        end, "hello from " .. who)
      end, "a worker")
      assert.equal("hello from a worker", runUntil(d))
      _G.LOOM_SPEC_DONE = nil
    end)
end)
