-- loom.defer.sync: DeferredLock, DeferredSemaphore and DeferredQueue, as in
-- twisted.internet.defer. Seen as part of loom.defer (defer.DeferredLock,
-- …), which loads this module on their first use.

local class = require "loom.class"
local err = require "loom.error"
local defer = require "loom.defer"

local Deferred = defer.Deferred
local pack, unpack = table.pack, table.unpack

local sync = {}

local function removeValue(list, v)
  for i = 1, #list do
    if list[i] == v then
      table.remove(list, i)
      return
    end
  end
end

-- Shared by DeferredLock and DeferredSemaphore: acquire, run f, release.
local function run(self, f, ...)
  local args = pack(...)
  return self:acquire():addCallback(function()
    return defer.maybeDeferred(f, unpack(args, 1, args.n)):addBoth(function(r)
      self:release()
      return r
    end)
  end)
end

local DeferredLock = class.Object:extend({ __name = "DeferredLock" })
sync.DeferredLock = DeferredLock
DeferredLock.run = run

function DeferredLock:init()
  self.locked = false
  self.waiting = {}
end

function DeferredLock:acquire()
  local d = Deferred(function(d)
    removeValue(self.waiting, d)
  end)
  if self.locked then
    self.waiting[#self.waiting + 1] = d
  else
    self.locked = true
    d:callback(self)
  end
  return d
end

function DeferredLock:release()
  assert(self.locked, "Tried to release an unlocked lock")
  self.locked = false
  if #self.waiting > 0 then
    self.locked = true
    table.remove(self.waiting, 1):callback(self)
  end
end

local DeferredSemaphore = class.Object:extend({ __name = "DeferredSemaphore" })
sync.DeferredSemaphore = DeferredSemaphore
DeferredSemaphore.run = run

function DeferredSemaphore:init(tokens)
  if type(tokens) ~= "number" or tokens < 1 then
    error("DeferredSemaphore requires tokens >= 1", 3)
  end
  self.tokens = tokens
  self.limit = tokens
  self.waiting = {}
end

function DeferredSemaphore:acquire()
  local d = Deferred(function(d)
    removeValue(self.waiting, d)
  end)
  if self.tokens == 0 then
    self.waiting[#self.waiting + 1] = d
  else
    self.tokens = self.tokens - 1
    d:callback(self)
  end
  return d
end

function DeferredSemaphore:release()
  assert(self.tokens < self.limit,
    "Someone released me too many times: too many tokens!")
  self.tokens = self.tokens + 1
  if #self.waiting > 0 then
    self.tokens = self.tokens - 1
    table.remove(self.waiting, 1):callback(self)
  end
end

local DeferredQueue = class.Object:extend({ __name = "DeferredQueue" })
sync.DeferredQueue = DeferredQueue

-- DeferredQueue(size?, backlog?): at most size pending values and backlog
-- waiting gets (nil: no limit). nil is a value like any other, so pending
-- is a list with its count in n (as table.pack makes).
function DeferredQueue:init(size, backlog)
  self.size = size
  self.backlog = backlog
  self.waiting = {}
  self.pending = { n = 0 }
end

function DeferredQueue:put(v)
  local pending = self.pending
  if #self.waiting > 0 then
    table.remove(self.waiting, 1):callback(v)
  elseif self.size == nil or pending.n < self.size then
    pending.n = pending.n + 1
    pending[pending.n] = v
  else
    error(err.QueueOverflow("DeferredQueue is full"), 2)
  end
end

function DeferredQueue:get()
  local pending = self.pending
  local n = pending.n
  if n > 0 then
    local v = pending[1]
    table.move(pending, 2, n, 1)
    pending[n] = nil
    pending.n = n - 1
    return defer.succeed(v)
  elseif self.backlog == nil or #self.waiting < self.backlog then
    local d = Deferred(function(d)
      removeValue(self.waiting, d)
    end)
    self.waiting[#self.waiting + 1] = d
    return d
  end
  error(err.QueueUnderflow("too many gets are already waiting"), 2)
end

return sync
