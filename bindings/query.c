/*
** query.c: %XX decoding and query strings, for loom.web's server:
** core.httpUnquote (a path segment), core.httpParseQuery (a query string
** or an urlencoded body into request.args), and the same two for the
** fast lane (bindings/http_server.c). In Lua they cost ten times as much
** (a gmatch, a match and four gsubs with a closure each for "id=3").
*/
#include <string.h>

#include "binding.h"

static int hexval(int c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/*
** Pushes s[0..n) with %XX decoded, and + as a space when plus is set (a
** decoded %2B stays a +); a %XX that is not two hex digits stays as it is.
*/
void loom__push_unquoted(lua_State *L, const char *s, size_t n, int plus) {
  luaL_Buffer b;
  size_t i;
  if (memchr(s, '%', n) == NULL && (!plus || memchr(s, '+', n) == NULL)) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n &&
        (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      luaL_addchar(&b, (char)(hi * 16 + lo));
      i += 2;
    } else {
      luaL_addchar(&b, plus && s[i] == '+' ? ' ' : s[i]);
    }
  }
  luaL_pushresult(&b);
}

/*
** Adds the pairs of the query string or urlencoded body s[0..n) to the
** table at args (name -> list of values): the pairs are split at &, a
** pair at its first = (none: a blank value), both decoded, as Twisted's
** parse_qs(..., 1) keeps them.
*/
void loom__parse_query(lua_State *L, const char *s, size_t n, int args) {
  const char *end = s + n;
  while (s < end) {
    const char *amp = memchr(s, '&', (size_t)(end - s));
    const char *stop = amp ? amp : end, *eq;
    if (stop > s) {
      eq = memchr(s, '=', (size_t)(stop - s));
      loom__push_unquoted(L, s, (size_t)((eq ? eq : stop) - s), 1);
      lua_pushvalue(L, -1);
      if (lua_gettable(L, args) == LUA_TNIL) { /* k, list */
        lua_pop(L, 1);
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_settable(L, args);
      }
      if (eq)
        loom__push_unquoted(L, eq + 1, (size_t)(stop - eq - 1), 1);
      else
        lua_pushliteral(L, "");
      lua_seti(L, -2, luaL_len(L, -2) + 1);
      lua_pop(L, 2);
    }
    s = stop + 1;
  }
}

/* core.httpParseQuery(qs, args) -> args */
static int l_parse_query(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  loom__parse_query(L, s, n, 2);
  return 1;
}

/* core.httpUnquote(s) -> s with %XX decoded (a path segment) */
static int l_unquote(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  loom__push_unquoted(L, s, n, 0);
  return 1;
}

void loom__open_query(lua_State *L) {
  lua_pushcfunction(L, l_parse_query);
  lua_setfield(L, -2, "httpParseQuery");
  lua_pushcfunction(L, l_unquote);
  lua_setfield(L, -2, "httpUnquote");
}
