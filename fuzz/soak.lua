-- What the soaks of `make soak` (fuzz/*_soak.lua) share:
--   local S = dofile("fuzz/soak.lua").new(seed)
--   S.R(n)              1..n from a fixed generator: a seed replays the choices
--   S.bytes(n)          n random bytes
--   S.mutate(s)         s with 0-3 bytes flipped, dropped, doubled, runs
--                       inserted, or one byte repeated thousands of times
--   S.writeInPieces(t, text, fate)  writes text in random pieces, some a
--                       moment later; then fate: "close", "abort", a
--                       function to call, or nil; "cut": only a random
--                       part of text, then abort
--   S.watchErrors(expected, level)  every error logged whose text does not
--                       hold `expected` (plain) is collected in the list
--                       returned; what is at `level` ("warn") or above is
--                       shown, but for the expected errors
--   S.whenSettled(busy, deadline, f)  calls f once busy() is false, or
--                       20 s past deadline (seconds on the reactor's clock)
--   S.verdict(unexpected, ok, ...)  prints the soak's one line and returns
--                       its exit status: FAILED with the first error logged,
--                       else with the first of ... that is a string (false:
--                       no problem), else "soak: ok: " .. ok
--   S.count(t)          the keys of t
--   S.within(d, secs)   fires Deferred d with "(nothing in SECS s)" unless
--                       it fired by then; returns d
--   S.wsFrame(fin, rsv, opcode, masked, payload, lie)  a WebSocket frame;
--                       masked with a random key (a zero one past 1 KiB,
--                       which leaves the payload as it is); lie: a length
--                       other than the payload's
local log = require "loom.log"
local reactor = require "loom.reactor"

local M = {}

function M.new(seed)
  local S = {}
  seed = seed or 1

  function S.R(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
  end
  local R = S.R

  -- (past 256 bytes, a random 256 repeated: the soak's own time is the
  -- reactor's too)
  function S.bytes(n)
    local t = {}
    for i = 1, math.min(n, 256) do
      t[i] = string.char(R(256) - 1)
    end
    local s = table.concat(t)
    return n > 256 and s:rep(n // 256 + 1):sub(1, n) or s
  end

  local RUNS = { "\r\n", "\r\n\r\n", "%", "%%", "0123456789abcdef", ";", " ",
    "\0" }

  function S.mutate(s)
    for _ = 1, R(4) - 1 do
      if s == "" then
        return s
      end
      local at, op = R(#s), R(6)
      if op == 1 then
        s = s:sub(1, at - 1) .. string.char(R(256) - 1) .. s:sub(at + 1)
      elseif op == 2 then
        s = s:sub(1, at - 1) .. s:sub(at + 1)
      elseif op == 3 then
        s = s:sub(1, at) .. s:sub(at)
      elseif op == 4 then
        s = s:sub(1, at) .. RUNS[R(#RUNS)] .. s:sub(at + 1)
      elseif op == 5 then
        s = s:sub(1, at) .. S.bytes(R(64)) .. s:sub(at + 1)
      else -- one byte many times: past a limit, or just long
        s = s:sub(1, at) .. s:sub(at, at):rep(R(5000)) .. s:sub(at + 1)
      end
    end
    return s
  end

  function S.writeInPieces(t, text, fate)
    local pos = 1
    if fate == "cut" then
      text, fate = text:sub(1, R(#text + 1) - 1), "abort"
    end
    local function step()
      if not t.connected then
        return
      end
      if pos > #text then
        if fate == "close" then
          t:loseConnection()
        elseif fate == "abort" then
          t:abortConnection()
        elseif fate then
          fate()
        end
        return
      end
      local n = R(3) == 1 and #text or R(512)
      t:write(text:sub(pos, pos + n - 1))
      pos = pos + n
      if R(8) == 1 then
        reactor.callLater(0.001 * R(3), step)
      else
        return step()
      end
    end
    step()
  end

  function S.watchErrors(expected, level)
    local unexpected = {}
    log.level = level or "warn"
    if expected then
      log.setSink(function(_, line)
        if not line:find(expected, 1, true) then
          io.stderr:write(line, "\n")
        end
      end)
    end
    log.addObserver(function(ev)
      if ev.level == "error" and not (expected
          and tostring(ev.text):find(expected, 1, true)) then
        unexpected[#unexpected + 1] = ev.text
      end
    end)
    return unexpected
  end

  function S.whenSettled(busy, deadline, f)
    local function check()
      if busy() and reactor.seconds() < deadline + 20 then
        return reactor.callLater(0.1, check)
      end
      f()
    end
    check()
  end

  function S.verdict(unexpected, ok, ...)
    if #unexpected > 0 then
      print(string.format("soak: FAILED: %d errors logged, the first:\n%s",
        #unexpected, unexpected[1]))
      return 1
    end
    local problems = table.pack(...)
    for i = 1, problems.n do
      if problems[i] then
        print("soak: FAILED: " .. problems[i])
        return 1
      end
    end
    print("soak: ok: " .. ok)
    return 0
  end

  function S.count(t)
    local n = 0
    for _ in pairs(t) do
      n = n + 1
    end
    return n
  end

  function S.within(d, secs)
    reactor.callLater(secs, function()
      if not d.called then
        d:callback(string.format("(nothing in %g s)", secs))
      end
    end)
    return d
  end

  function S.wsFrame(fin, rsv, opcode, masked, payload, lie)
    local len = lie or #payload
    local head = string.char((fin and 0x80 or 0) | (rsv << 4) | opcode)
    local m = masked and 0x80 or 0
    if len < 126 then
      head = head .. string.char(m | len)
    elseif len < 65536 then
      head = head .. string.char(m | 126) .. string.pack(">I2", len)
    else
      head = head .. string.char(m | 127) .. string.pack(">I8", len)
    end
    if masked and #payload > 1024 then
      return head .. "\0\0\0\0" .. payload
    elseif masked then
      local key = S.bytes(4)
      local out = {}
      for i = 1, #payload do
        out[i] = string.char(payload:byte(i) ~ key:byte((i - 1) % 4 + 1))
      end
      return head .. key .. table.concat(out)
    end
    return head .. payload
  end

  return S
end

return M
