/*
** resolver.c: core.resolve(name, id) looks name up off the loop and calls
** hooks.resolved(id, addresses) or hooks.resolved(id, nil, errname,
** message). reactor.lua keeps the Deferred under id, so a lookup holds no
** registry ref.
*/
#include <stdlib.h>

#include "binding.h"

typedef struct lookup {
  loom_resolve r; /* first */
  lua_Integer id;
  int status;
  struct addrinfo *res;
} lookup;

/* Pushes {"::1", "127.0.0.1", ...}: each address once, in order. */
static void push_addresses(lua_State *L, struct addrinfo *res) {
  int n = 0;
  lua_newtable(L);
  lua_newtable(L); /* seen */
  for (; res != NULL; res = res->ai_next) {
    char host[64];
    int port;
    if (loom__sockaddr_format(res->ai_addr, host, sizeof(host), &port) < 0)
      continue;
    if (lua_getfield(L, -1, host) != LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, host);
    lua_pushstring(L, host);
    lua_rawseti(L, -3, ++n);
  }
  lua_pop(L, 1);
}

static int deliver_resolved(lua_State *L) {
  lookup *k = lua_touserdata(L, 1);
  if (loom__push_hook(L, k->r.st, "resolved") == LUA_TNIL)
    return 0;
  lua_pushinteger(L, k->id);
  if (k->status < 0) {
    lua_pushnil(L);
    lua_pushstring(L, uv_err_name(k->status));
    lua_pushstring(L, uv_strerror(k->status));
  } else {
    push_addresses(L, k->res);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_call(L, 4, 0);
  return 0;
}

static void on_resolved(loom_resolve *r, int status, struct addrinfo *res) {
  lookup *k = (lookup *)r;
  loom_state *st = r->st;
  k->status = status;
  k->res = res;
  if (LOOM_L(st) != NULL && loom__call(st, deliver_resolved, k) != LUA_OK) {
    loom__report_error(st, "resolve", 0);
    lua_pop(LOOM_L(st), 1);
  }
  free(k);
}

/* core.resolve(name, id) -> true, or nil, errname, message. */
static int l_resolve(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *name = loom__check_cstring(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  lookup *k = calloc(1, sizeof(*k));
  int rc;
  if (k == NULL)
    return luaL_error(L, "out of memory");
  k->id = id;
  k->r.cb = on_resolved;
  rc = loom__resolve_start(&k->r, st, name);
  if (rc < 0) {
    free(k);
    return loom__push_error(L, rc, "%s", uv_strerror(rc));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Expects the core module table on the top of the stack. */
void loom__open_resolver(lua_State *L) {
  lua_pushcfunction(L, l_resolve);
  lua_setfield(L, -2, "resolve");
}
