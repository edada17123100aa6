/*
** lines.c: the inner loop of loom.basic's LineReceiver in C. Finding the
** delimiter, cutting the line and calling lineReceived happen here with no
** Lua-level string.find/string.sub per line; everything stateful (modes,
** pausing, buffers) stays in basic.lua, which this loop hands back to as
** soon as a hook changes anything.
*/
#include <string.h>

#include "binding.h"

/* Result codes, mirrored in basic.lua. */
enum { LINES_NOTFOUND = 1, LINES_TOOLONG, LINES_STOPPED, LINES_DIRTY,
       LINES_DISCONNECTING };

static const char *find_delim(const char *s, size_t n, const char *d,
                              size_t dlen) {
  const char *end = s + n, *p = s;
  if (dlen > n)
    return NULL;
  while ((p = memchr(p, d[0], (size_t)(end - p) - dlen + 1)) != NULL) {
    if (memcmp(p, d, dlen) == 0)
      return p;
    if (++p > end - dlen)
      break;
  }
  return NULL;
}

/*
** How to ask the transport whether it is disconnecting: a loom transport's
** flags are read straight from its box; anything else (a StringTransport, a
** plain table) through its "disconnecting" field.
*/
static const loom_stream *const *box_of(lua_State *L, int t) {
  if (lua_type(L, t) == LUA_TUSERDATA &&
      (luaL_testudata(L, t, "loom.TCPTransport") != NULL ||
       luaL_testudata(L, t, "loom.UNIXTransport") != NULL))
    return lua_touserdata(L, t);
  return NULL;
}

/* Stack slots of the key strings, pushed once per call: pushing a C
** string literal costs a strcmp in Lua's string cache every time. */
enum { K_POS = 9, K_DIRTY, K_DISCONNECTING };

static int disconnecting(lua_State *L, int t, const loom_stream *const *box) {
  int yes;
  if (box != NULL)
    return *box == NULL ||
           ((*box)->flags & (LOOM_S_DISCONNECTING | LOOM_S_CLOSING)) != 0;
  if (lua_isnoneornil(L, t))
    return 0;
  lua_pushvalue(L, K_DISCONNECTING);
  lua_gettable(L, t);
  yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* self._dirty, read raw: the class default is false, so nil means clean. */
static int dirty(lua_State *L) {
  int yes;
  lua_pushvalue(L, K_DIRTY);
  lua_rawget(L, 1);
  yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

static int result(lua_State *L, int code, size_t pos) {
  lua_pushinteger(L, code);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return 2;
}

/*
** core.deliverLines(self, buf, pos, search, delim, maxLen, lineReceived,
** transport) -> code, pos [, why]. Delivers every complete line of buf
** from pos (1-based); self._pos is kept current before each call so hooks
** that read the buffer see the right place. buf stays valid on the stack
** even if a hook replaces self._buffer.
*/
static int l_deliver_lines(lua_State *L) {
  size_t blen, dlen;
  const char *buf = luaL_checklstring(L, 2, &blen);
  size_t pos = (size_t)luaL_checkinteger(L, 3) - 1;
  size_t search = (size_t)luaL_checkinteger(L, 4) - 1;
  const char *delim = luaL_checklstring(L, 5, &dlen);
  size_t maxlen = (size_t)luaL_checkinteger(L, 6);
  luaL_argcheck(L, dlen > 0, 5, "empty delimiter");
  const loom_stream *const *box;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 7, LUA_TFUNCTION);
  box = box_of(L, 8);
  lua_settop(L, 8);
  lua_pushliteral(L, "_pos");
  lua_pushliteral(L, "_dirty");
  lua_pushliteral(L, "disconnecting");
  if (search < pos)
    search = pos;
  for (;;) {
    const char *hit;
    size_t at;
    if (disconnecting(L, 8, box))
      return result(L, LINES_DISCONNECTING, pos);
    hit = search < blen ? find_delim(buf + search, blen - search, delim, dlen)
                        : NULL;
    if (hit == NULL)
      return result(L, LINES_NOTFOUND, pos);
    at = (size_t)(hit - buf);
    if (at - pos > maxlen)
      return result(L, LINES_TOOLONG, pos);
    lua_pushvalue(L, 7);
    lua_pushvalue(L, 1);
    lua_pushlstring(L, buf + pos, at - pos);
    pos = search = at + dlen;
    lua_pushvalue(L, K_POS); /* Raw: receivers have no __newindex. */
    lua_pushinteger(L, (lua_Integer)pos + 1);
    lua_rawset(L, 1);
    lua_call(L, 2, 1);
    if (lua_toboolean(L, -1)) {
      result(L, LINES_STOPPED, pos);
      lua_rotate(L, -3, -1); /* code, pos, why */
      return 3;
    }
    lua_pop(L, 1);
    if (dirty(L))
      return result(L, LINES_DIRTY, pos);
  }
}

/* Expects the core module table on the top of the stack. */
void loom__open_lines(lua_State *L) {
  lua_pushcfunction(L, l_deliver_lines);
  lua_setfield(L, -2, "deliverLines");
}
