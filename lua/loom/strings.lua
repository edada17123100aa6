-- loom.strings: string helpers that stay linear on what a peer sends.
--
-- The usual Lua trim, s:match("^%s*(.-)%s*$"), is quadratic in a run of
-- spaces inside s: "(.-)" grows a byte at a time and "%s*$" rescans the
-- run each time, so a 16 KiB header or line of "a", spaces and "b" holds
-- the reactor for seconds. Code that trims peer input uses trim below.
local M = {}

-- s without its leading and trailing whitespace (%s).
function M.trim(s)
  local i = s:find("%S")
  if i == nil then
    return ""
  end
  return s:sub(i, (s:find("%S%s*$")))
end

-- The two sides of s around its first sep (a plain string), trimmed; nil
-- when s has no sep.
function M.splitFirst(s, sep)
  local at = s:find(sep, 1, true)
  if at == nil then
    return nil
  end
  return M.trim(s:sub(1, at - 1)), M.trim(s:sub(at + #sep))
end

return M
