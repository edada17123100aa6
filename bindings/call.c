/*
** call.c: the one way from libuv into Lua. loom__call runs a C trampoline
** under lua_pcall with a message handler that keeps the error value and a
** traceback cut at the reactor boundary; errors are reported through the
** Lua error hook (which logs them via loom.log) and never escape into libuv.
*/
#include <stdio.h>
#include <string.h>

#include "binding.h"

loom_state *loom__get_state(lua_State *L) {
  loom_state **slot = (loom_state **)lua_getextraspace(L);
  if (*slot == NULL) {
    /* A coroutine made before loom loaded: look it up once and cache it. */
    lua_getfield(L, LUA_REGISTRYINDEX, LOOM_STATE_KEY);
    *slot = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (*slot == NULL)
      luaL_error(L, "loom is not initialised in this Lua state");
  }
  return *slot;
}

/* Is level's function the trampoline that loom__call started? */
static int is_boundary(lua_State *L, lua_Debug *ar, lua_CFunction fn) {
  int hit;
  lua_getinfo(L, "f", ar);
  hit = lua_iscfunction(L, -1) && lua_tocfunction(L, -1) == fn;
  lua_pop(L, 1);
  return hit;
}

/* lauxlib's traceback format, stopping at the reactor boundary. */
static void push_traceback(lua_State *L) {
  loom_state *st = *(loom_state **)lua_getextraspace(L);
  lua_CFunction fn = st ? (lua_CFunction)st->current_fn : NULL;
  luaL_Buffer b;
  lua_Debug ar;
  int level;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "stack traceback:");
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    if (fn != NULL && is_boundary(L, &ar, fn))
      break;
    lua_getinfo(L, "Slnt", &ar);
    lua_pushfstring(L, "\n\t%s:", ar.short_src);
    luaL_addvalue(&b);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%d:", ar.currentline);
      luaL_addvalue(&b);
    }
    if (ar.name != NULL)
      lua_pushfstring(L, " in %s '%s'", ar.namewhat, ar.name);
    else if (*ar.what == 'm')
      lua_pushliteral(L, " in main chunk");
    else if (*ar.what == 'C')
      lua_pushliteral(L, " in ?");
    else
      lua_pushfstring(L, " in function <%s:%d>", ar.short_src,
                      ar.linedefined);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

/* Message handler: returns {err = value, tb = traceback}. */
static int msgh(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "err");
  push_traceback(L);
  lua_setfield(L, -2, "tb");
  return 1;
}

/*
** Runs fn(ud) protected. Before lua_pcall only calls that cannot raise.
** Returns LUA_OK, or an error status with the caught value on the top of
** the stack (the caller reports it and pops it).
*/
int loom__call(loom_state *st, lua_CFunction fn, void *ud) {
  lua_State *L = st->L;
  void (*saved)(void) = st->current_fn;
  int base, status;
  if (L == NULL)
    return LUA_ERRRUN;
  if (!lua_checkstack(L, 8)) {
    loom__fatal_report("loom__call", "Lua stack overflow");
    lua_pushnil(L);
    return LUA_ERRRUN;
  }
  base = lua_gettop(L);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  st->current_fn = (void (*)(void))fn;
  status = lua_pcall(L, 1, 0, base + 1);
  st->current_fn = saved;
  lua_remove(L, base + 1);
  return status;
}

void loom__fatal_report(const char *where, const char *msg) {
  fprintf(stderr, "loom: error in %s: %s\n", where, msg ? msg : "?");
}

/* Pushes hooks[name] (nil when missing). Runs inside a trampoline. */
int loom__push_hook(lua_State *L, loom_state *st, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->hooks_ref);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

typedef struct report_args {
  loom_state *st;
  const char *where;
} report_args;

/* (args, caught, transport) -> hooks.error(where, err, tb, transport) */
static int deliver_report(lua_State *L) {
  report_args *a = lua_touserdata(L, 1);
  if (loom__push_hook(L, a->st, "error") == LUA_TNIL)
    return luaL_error(L, "no error hook installed");
  lua_pushstring(L, a->where);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "err");
    lua_getfield(L, 2, "tb");
  } else {
    lua_pushvalue(L, 2);
    lua_pushnil(L);
  }
  lua_pushvalue(L, 3);
  lua_call(L, 4, 1);
  return 1;
}

/*
** Reports the caught value on the top of the stack. Leaves in its place the
** Failure made by the hook, or the raw error value when reporting failed.
*/
void loom__report_error(loom_state *st, const char *where, int tindex) {
  lua_State *L = st->L;
  int caught = lua_gettop(L);
  report_args a;
  a.st = st;
  a.where = where;
  if (!lua_checkstack(L, 8)) {
    loom__fatal_report(where, "Lua stack overflow");
    return;
  }
  lua_pushcfunction(L, deliver_report);
  lua_pushlightuserdata(L, &a);
  lua_pushvalue(L, caught);
  if (tindex)
    lua_pushvalue(L, tindex);
  else
    lua_pushnil(L);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK) {
    lua_replace(L, caught);
    return;
  }
  loom__fatal_report(where, lua_tostring(L, -1));
  lua_pop(L, 1);
  if (lua_istable(L, caught)) {
    lua_getfield(L, caught, "err"); /* Keep at least the original value. */
    lua_replace(L, caught);
  }
}
