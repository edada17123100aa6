/*
** lines.c: line splitting for loom.basic's LineReceiver. Finding the
** delimiter and cutting the lines happen here, a batch at a time, with no
** Lua-level string.find/string.sub per line; delivering them and
** everything stateful (modes, pausing, buffers) stays in basic.lua.
*/
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

#define SPLIT_BATCH 256 /* lines per call: bounds the scratch table */

/*
** core.splitLines(buf, pos, search, delim, maxLen, out) -> n, code, at.
** Stores up to SPLIT_BATCH complete lines of buf from pos (1-based) in
** out[1..n] and says why it stopped: LINES_NOTFOUND (no further complete
** line), LINES_TOOLONG (the line at `at` exceeds maxLen) or LINES_FULL
** (the batch is full; call again from after the last line). The caller
** delivers them in Lua, where a Lua-to-Lua call per line is cheaper than
** calling into Lua from C.
*/
static int l_split_lines(lua_State *L) {
  size_t blen, dlen;
  const char *buf = luaL_checklstring(L, 1, &blen);
  size_t pos = (size_t)luaL_checkinteger(L, 2) - 1;
  size_t search = (size_t)luaL_checkinteger(L, 3) - 1;
  const char *delim = luaL_checklstring(L, 4, &dlen);
  size_t maxlen = (size_t)luaL_checkinteger(L, 5);
  int n = 0, code = LINES_FULL;
  luaL_argcheck(L, dlen > 0, 4, "empty delimiter");
  luaL_checktype(L, 6, LUA_TTABLE);
  if (search < pos)
    search = pos;
  while (n < SPLIT_BATCH) {
    const char *hit = search < blen
      ? find_delim(buf + search, blen - search, delim, dlen) : NULL;
    size_t at;
    if (hit == NULL) {
      code = LINES_NOTFOUND;
      break;
    }
    at = (size_t)(hit - buf);
    if (at - pos > maxlen) {
      code = LINES_TOOLONG;
      break;
    }
    lua_pushlstring(L, buf + pos, at - pos);
    lua_rawseti(L, 6, ++n);
    pos = search = at + dlen;
  }
  lua_pushinteger(L, n);
  lua_pushinteger(L, code);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return 3;
}

/* Expects the core module table on the top of the stack. */
void loom__open_lines(lua_State *L) {
  lua_pushcfunction(L, l_split_lines);
  lua_setfield(L, -2, "splitLines");
}
