-- Random-chunking fuzz harness for loom.basic (not part of `make test`).
--
--   LUA_PATH="lua/?.lua;;" lua5.4 spec/fuzz/basic_fuzz.lua [iterations] [seed]
--
-- Each iteration builds a random input (random bytes drawn from a small
-- alphabet so delimiters occur often), feeds it to a receiver in random
-- chunk sizes, and compares what was delivered with a simple reference
-- parser working on the whole input at once. Prints the seed of the first
-- mismatch and exits 1.

local basic = require "loom.basic"
local testing = require "loom.testing"

local iterations = tonumber(arg[1]) or 2000
local seed = tonumber(arg[2]) or os.time()

local function randomString(n, alphabet)
  local t = {}
  for i = 1, n do
    local k = math.random(#alphabet)
    t[i] = alphabet:sub(k, k)
  end
  return table.concat(t)
end

local function feedRandomly(proto, data)
  local i = 1
  while i <= #data do
    local size = math.random(1, math.random(1, 64) == 1 and 4096 or 9)
    proto:dataReceived(data:sub(i, i + size - 1))
    i = i + size
  end
end

-- Reference: split on delim; stop at the first line longer than max.
local function referenceLines(data, delim, max)
  local lines, pos = {}, 1
  while true do
    local s, e = data:find(delim, pos, true)
    if not s then
      return lines, #data - pos + 1 >= max + #delim
    end
    if s - pos > max then
      return lines, true
    end
    lines[#lines + 1] = data:sub(pos, s - 1)
    pos = e + 1
  end
end

local function same(a, b)
  if #a ~= #b then
    return false
  end
  for i = 1, #a do
    if a[i] ~= b[i] then
      return false
    end
  end
  return true
end

local function lineCase()
  local delims = { "\n", "\r\n", "ab", "aab", "--END--" }
  local delim = delims[math.random(#delims)]
  local max = math.random(1, 40)
  local data = randomString(math.random(0, 600), "aab\r\n-END")
  local P = basic.LineReceiver:extend({ delimiter = delim, MAX_LENGTH = max })
  function P:lineReceived(line)
    self.got[#self.got + 1] = line
  end
  function P:lineLengthExceeded()
    self.exceeded = true
    self.transport:loseConnection()
  end
  local p = P()
  p.got = {}
  p:makeConnection(testing.StringTransport())
  feedRandomly(p, data)
  local want, exceeded = referenceLines(data, delim, max)
  return same(p.got, want) and (p.exceeded or false) == exceeded,
    "LineReceiver delim=" .. delim
end

local function rawSwitchCase()
  -- "R<n>" lines switch to raw mode for n bytes; all bytes must reappear.
  local parts, expected = {}, {}
  for _ = 1, math.random(1, 30) do
    if math.random(2) == 1 then
      local line = randomString(math.random(0, 8), "xyz")
      parts[#parts + 1] = line .. "\n"
      expected[#expected + 1] = "L" .. line
    else
      local body = randomString(math.random(0, 20), "xyz\nR")
      parts[#parts + 1] = "R" .. #body .. "\n" .. body
      expected[#expected + 1] = "L" .. "R" .. #body
      if #body > 0 then
        expected[#expected + 1] = "B" .. body
      end
    end
  end
  local P = basic.LineReceiver:extend({ delimiter = "\n" })
  function P:lineReceived(line)
    self.got[#self.got + 1] = "L" .. line
    local n = tonumber(line:match("^R(%d+)$"))
    if n and n > 0 then
      self.want, self.body = n, {}
      self:setRawMode()
    end
  end
  function P:rawDataReceived(data)
    local take = data:sub(1, self.want)
    self.body[#self.body + 1] = take
    self.want = self.want - #take
    if self.want == 0 then
      self.got[#self.got + 1] = "B" .. table.concat(self.body)
      self:setLineMode(data:sub(#take + 1))
    end
  end
  local p = P()
  p.got = {}
  p:makeConnection(testing.StringTransport())
  feedRandomly(p, table.concat(parts))
  return same(p.got, expected), "LineReceiver raw switching"
end

local function netstringCase()
  local strings = {}
  local P = basic.NetstringReceiver:extend({ MAX_LENGTH = 5000 })
  function P:stringReceived(s)
    self.got[#self.got + 1] = s
  end
  local p = P()
  p.got = {}
  local t = testing.StringTransport()
  p:makeConnection(t)
  for i = 1, math.random(0, 20) do
    strings[i] = randomString(math.random(0, 300), "0123456789:,x")
    p:sendString(strings[i])
  end
  local wire = t:value()
  feedRandomly(p, wire)
  return same(p.got, strings) and not p.brokenPeer, "NetstringReceiver"
end

local function intCase()
  local names = { "Int8StringReceiver", "Int16StringReceiver",
    "Int32StringReceiver" }
  local name = names[math.random(#names)]
  local P = basic[name]:extend()
  function P:stringReceived(s)
    self.got[#self.got + 1] = s
  end
  local p = P()
  p.got = {}
  local t = testing.StringTransport()
  p:makeConnection(t)
  local strings = {}
  for i = 1, math.random(0, 20) do
    strings[i] = randomString(math.random(0, 255), "\0\1\255ab")
    p:sendString(strings[i])
  end
  feedRandomly(p, t:value())
  return same(p.got, strings), name
end

local cases = { lineCase, rawSwitchCase, netstringCase, intCase }
for i = 1, iterations do
  local s = seed + i
  math.randomseed(s)
  local case = cases[(i - 1) % #cases + 1]
  local ok, what = case()
  if not ok then
    print(string.format("MISMATCH in %s at seed %d", what, s))
    os.exit(1)
  end
end
print(string.format("basic_fuzz: %d iterations OK (seed %d)", iterations, seed))
