/*
** lines.c: core.splitLines, the line cutter of loom.basic's LineReceiver
** and LineOnlyReceiver: parsers/lines.c cuts a batch of lines with no
** Lua-level string.find/string.sub per line; delivering them and
** everything stateful (modes, pausing, buffers) stays in basic/line.lua.
*/
#include <stdint.h>

#include "../parsers/lines.h"
#include "binding.h"

/* Result codes, mirrored in basic/line.lua. */
enum { LINES_NOTFOUND = 1, LINES_TOOLONG, LINES_FULL };

#define SPLIT_MAX 1024 /* lines per call: bounds the Lua stack used */

/*
** Pushes up to max lines cut by c. A tight loop: the per-line work is one
** memchr and one lua_pushlstring. A full batch has found the next
** delimiter too, so that the caller learns without another call whether
** more lines follow. Returns LINES_* and the number of lines in *n.
*/
static int cut_lines(lua_State *L, loom_lines *c, int max, int *n) {
  const char *line;
  size_t len;
  for (*n = 0;; ++*n) {
    if (!loom_lines_find(c))
      return LINES_NOTFOUND;
    if (*n == max)
      return LINES_FULL;
    if (loom_lines_take(c, &line, &len) == LOOM_LINES_TOOLONG)
      return LINES_TOOLONG;
    lua_pushlstring(L, line, len);
  }
}

/* A length limit: any non-negative number, math.huge meaning none. */
static size_t check_limit(lua_State *L, int idx) {
  lua_Number n;
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    luaL_argcheck(L, i >= 0, idx, "negative length");
    return (size_t)i;
  }
  n = luaL_checknumber(L, idx);
  luaL_argcheck(L, n >= 0, idx, "negative length");
  return n >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)n;
}

/*
** core.splitLines(buf, pos, search, delim, maxLen[, max]) -> code, at, hit,
** line...
** Cuts up to `max` (at most SPLIT_MAX) complete lines of buf from pos
** (1-based; no delimiter starts before search) and returns them after
** three values saying why it stopped. code is LINES_NOTFOUND (no further
** complete line), LINES_TOOLONG (the line at `at` is longer than maxLen;
** its delimiter is at `hit`) or LINES_FULL (another delimiter follows: call
** again from `at`); `at` is where the unconsumed input starts. The lines
** are results rather than table entries: basic/line.lua collects them with
** one table constructor, which is cheaper than a lua_rawseti per line, and
** delivers them in Lua, where a Lua-to-Lua call per line is cheaper than
** calling into Lua from C.
*/
static int l_split_lines(lua_State *L) {
  size_t blen, dlen;
  const char *buf = luaL_checklstring(L, 1, &blen);
  lua_Integer pos = luaL_checkinteger(L, 2);
  lua_Integer search = luaL_checkinteger(L, 3);
  const char *delim = luaL_checklstring(L, 4, &dlen);
  size_t maxlen = check_limit(L, 5);
  lua_Integer max = luaL_optinteger(L, 6, SPLIT_MAX);
  int top = lua_gettop(L), code, n;
  loom_lines c;
  luaL_argcheck(L, pos >= 1 && (lua_Unsigned)pos - 1 <= blen, 2,
                "out of range");
  luaL_argcheck(L, dlen > 0, 4, "empty delimiter");
  if (search < pos)
    search = pos;
  if (max < 1 || max > SPLIT_MAX)
    max = SPLIT_MAX;
  luaL_checkstack(L, (int)max + 3, "too many lines");
  lua_settop(L, top + 3); /* code, at, hit: known once the lines are cut */
  /* A search start past the end finds nothing (init clamps it). */
  loom_lines_init(&c, buf, blen, delim, dlen, maxlen, (size_t)pos - 1,
                  (lua_Unsigned)search - 1 < blen ? (size_t)search - 1 : blen);
  code = cut_lines(L, &c, (int)max, &n);
  lua_pushinteger(L, code);
  lua_replace(L, top + 1);
  lua_pushinteger(L, (lua_Integer)c.pos + 1);
  lua_replace(L, top + 2);
  lua_pushinteger(L, code == LINES_TOOLONG ? (lua_Integer)c.hit + 1 : 1);
  lua_replace(L, top + 3);
  return n + 3;
}

/*
** nextLine's arguments are read without luaL_check*, one call each
** instead of two (it runs once per line); on a bad one, this raises the
** error luaL_check* would have.
*/
static int next_line_error(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkinteger(L, 2);
  luaL_checkinteger(L, 3);
  luaL_checkstring(L, 4);
  return 0;
}

/*
** core.nextLine(buf, pos, search, delim) -> line, next: the line of buf
** from pos (1-based) to the first delimiter at or after search, and the
** position after that delimiter; nothing when no delimiter follows. For
** input arriving a line or a few at a time, where splitLines' batch costs
** more than it saves: about 600 fewer instructions per call than
** splitLines(..., 1), which checks more arguments and places its three
** codes before the lines.
*/
static int l_next_line(lua_State *L) {
  size_t blen, dlen, len;
  int ok1, ok2;
  const char *buf = lua_tolstring(L, 1, &blen);
  lua_Integer pos = lua_tointegerx(L, 2, &ok1);
  lua_Integer search = lua_tointegerx(L, 3, &ok2);
  const char *delim = lua_tolstring(L, 4, &dlen);
  const char *line;
  if (buf == NULL || !ok1 || !ok2 || delim == NULL)
    return next_line_error(L);
  loom_lines c;
  luaL_argcheck(L, pos >= 1 && (lua_Unsigned)pos - 1 <= blen, 2,
                "out of range");
  luaL_argcheck(L, dlen > 0, 4, "empty delimiter");
  if (search < pos)
    search = pos;
  loom_lines_init(&c, buf, blen, delim, dlen, SIZE_MAX, (size_t)pos - 1,
                  (lua_Unsigned)search - 1 < blen ? (size_t)search - 1 : blen);
  if (loom_lines_next(&c, &line, &len) != LOOM_LINES_LINE)
    return 0;
  lua_pushlstring(L, line, len);
  lua_pushinteger(L, (lua_Integer)c.pos + 1);
  return 2;
}

/* Expects the core module table on the top of the stack. */
void loom__open_lines(lua_State *L) {
  lua_pushcfunction(L, l_split_lines);
  lua_setfield(L, -2, "splitLines");
  lua_pushcfunction(L, l_next_line);
  lua_setfield(L, -2, "nextLine");
}
