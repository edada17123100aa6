/*
** lines.c: line splitting for loom.basic's LineReceiver and
** LineOnlyReceiver. Finding the delimiter and cutting the lines happen
** here, a batch at a time, with no Lua-level string.find/string.sub per
** line; delivering them and everything stateful (modes, pausing, buffers)
** stays in basic.lua.
*/
#include <stdint.h>
#include <string.h>

#include "binding.h"

/* Result codes, mirrored in basic.lua. */
enum { LINES_NOTFOUND = 1, LINES_TOOLONG, LINES_FULL };

static const char *find_delim(const char *s, size_t n, const char *d,
                              size_t dlen) {
  const char *end = s + n, *p = s;
  if (dlen > n)
    return NULL;
  while ((p = memchr(p, d[0], (size_t)(end - p) - dlen + 1)) != NULL) {
    /* Most delimiters are 1 or 2 bytes ("\n", "\r\n"): no memcmp call. */
    if (dlen == 1 || (p[1] == d[1] &&
                      (dlen == 2 || memcmp(p + 2, d + 2, dlen - 2) == 0)))
      return p;
    if (++p > end - dlen)
      break;
  }
  return NULL;
}

#define SPLIT_MAX 1024 /* lines per call: bounds the Lua stack used */

/* Where cutting stopped. Offsets are 0-based. */
typedef struct cut_state {
  size_t pos; /* where the unconsumed input starts */
  size_t hit; /* where the delimiter of a too-long line starts */
  int code;   /* LINES_* */
  int n;      /* lines pushed */
} cut_state;

/*
** Pushes up to max lines of buf from c->pos, searching from `search`. A
** tight loop: the per-line work is one memchr and one lua_pushlstring.
** A full batch has found the next delimiter too, so that the caller
** learns without another call whether more lines follow.
*/
static void cut_lines(lua_State *L, const char *buf, size_t blen,
                      size_t search, const char *d, size_t dlen,
                      size_t maxlen, int max, cut_state *c) {
  size_t pos = c->pos;
  int n = 0;
  for (;;) {
    const char *hit = search < blen
      ? find_delim(buf + search, blen - search, d, dlen) : NULL;
    size_t at;
    if (hit == NULL) {
      c->code = LINES_NOTFOUND;
      break;
    }
    if (n == max) {
      c->code = LINES_FULL;
      break;
    }
    at = (size_t)(hit - buf);
    if (at - pos > maxlen) {
      c->code = LINES_TOOLONG;
      c->hit = at;
      break;
    }
    lua_pushlstring(L, buf + pos, at - pos);
    n++;
    pos = search = at + dlen;
  }
  c->pos = pos;
  c->n = n;
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
** are results rather than table entries: basic.lua collects them with one
** table constructor, which is cheaper than a lua_rawseti per line, and
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
  int top = lua_gettop(L);
  cut_state c = { 0, 0, 0, 0 };
  luaL_argcheck(L, pos >= 1 && (lua_Unsigned)pos - 1 <= blen, 2,
                "out of range");
  luaL_argcheck(L, dlen > 0, 4, "empty delimiter");
  if (search < pos)
    search = pos;
  if (max < 1 || max > SPLIT_MAX)
    max = SPLIT_MAX;
  luaL_checkstack(L, (int)max + 3, "too many lines");
  lua_settop(L, top + 3); /* code, at, hit: known once the lines are cut */
  c.pos = (size_t)pos - 1;
  /* A search start past the end finds nothing (cut_lines checks). */
  cut_lines(L, buf, blen, (size_t)(search - 1), delim, dlen, maxlen,
            (int)max, &c);
  lua_pushinteger(L, c.code);
  lua_replace(L, top + 1);
  lua_pushinteger(L, (lua_Integer)c.pos + 1);
  lua_replace(L, top + 2);
  lua_pushinteger(L, (lua_Integer)c.hit + 1);
  lua_replace(L, top + 3);
  return c.n + 3;
}

/*
** core.nextLine(buf, pos, search, delim) -> line, next: the line of buf
** from pos (1-based) to the first delimiter at or after search, and the
** position after that delimiter; nothing when no delimiter follows. For
** input arriving a line or a few at a time: one call per line instead of a
** string.find and a string.sub.
*/
static int l_next_line(lua_State *L) {
  size_t blen, dlen, from;
  const char *buf = luaL_checklstring(L, 1, &blen);
  lua_Integer pos = luaL_checkinteger(L, 2);
  lua_Integer search = luaL_checkinteger(L, 3);
  const char *delim = luaL_checklstring(L, 4, &dlen);
  const char *hit;
  luaL_argcheck(L, pos >= 1 && (lua_Unsigned)pos - 1 <= blen, 2,
                "out of range");
  luaL_argcheck(L, dlen > 0, 4, "empty delimiter");
  from = search > pos ? (size_t)search - 1 : (size_t)pos - 1;
  if (from >= blen)
    return 0;
  hit = find_delim(buf + from, blen - from, delim, dlen);
  if (hit == NULL)
    return 0;
  lua_pushlstring(L, buf + pos - 1, (size_t)(hit - buf) - (size_t)(pos - 1));
  lua_pushinteger(L, (lua_Integer)(hit - buf) + (lua_Integer)dlen + 1);
  return 2;
}

/* Expects the core module table on the top of the stack. */
void loom__open_lines(lua_State *L) {
  lua_pushcfunction(L, l_split_lines);
  lua_setfield(L, -2, "splitLines");
  lua_pushcfunction(L, l_next_line);
  lua_setfield(L, -2, "nextLine");
}
