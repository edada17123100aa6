/*
** timer.c: core.timer(fn, arg) -> a one-shot timer that calls fn(arg).
** reactor.lua builds DelayedCall on it; passing arg avoids a closure per
** callLater. The box is pinned from creation until close().
*/
#include <stdlib.h>

#include "binding.h"

#define TIMER "loom.Timer"

typedef struct timer_box {
  loom_timer *p;
} timer_box;

static loom_timer *check_timer(lua_State *L) {
  timer_box *box = luaL_checkudata(L, 1, TIMER);
  if (box->p == NULL)
    luaL_error(L, "timer is closed");
  return box->p;
}

static int deliver_timer(lua_State *L) {
  loom_timer *t = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_getiuservalue(L, -1, 1);
  lua_getiuservalue(L, -2, 2);
  lua_call(L, 1, 0);
  return 0;
}

static void on_timer(loom_timer *t) {
  if (t->st->L == NULL || t->ref == LUA_NOREF)
    return;
  if (loom__call(t->st, deliver_timer, t) != LUA_OK) {
    loom__report_error(t->st, "callLater", 0);
    lua_pop(t->st->L, 1);
  }
}

static void on_timer_closed(loom_timer *t) {
  lua_State *L = t->st->L;
  if (L != NULL && t->ref != LUA_NOREF) {
    timer_box *box;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    box = lua_touserdata(L, -1);
    if (box != NULL) {
      box->p = NULL;
      lua_pushnil(L);
      lua_setiuservalue(L, -2, 1);
      lua_pushnil(L);
      lua_setiuservalue(L, -2, 2);
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  }
  free(t);
}

static int l_timer_new(lua_State *L) {
  loom_state *st = loom__get_state(L);
  timer_box *box;
  loom_timer *t;
  int ref, rc;
  luaL_checkany(L, 1);
  box = lua_newuserdatauv(L, sizeof(*box), 2);
  box->p = NULL;
  luaL_setmetatable(L, TIMER);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  lua_pushvalue(L, -1);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t = calloc(1, sizeof(*t));
  if (t == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  rc = loom__timer_init(t, st, on_timer);
  if (rc < 0) {
    free(t);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "timer: %s", uv_strerror(rc));
  }
  t->on_closed = on_timer_closed;
  t->ref = ref;
  box->p = t;
  return 1;
}

static int l_timer_start(lua_State *L) {
  loom_timer *t = check_timer(L);
  int rc = loom__timer_start(t, luaL_checknumber(L, 2));
  if (rc < 0)
    return luaL_error(L, "timer: %s", uv_strerror(rc));
  return 0;
}

static int l_timer_stop(lua_State *L) {
  loom__timer_stop(check_timer(L));
  return 0;
}

static int l_timer_close(lua_State *L) {
  timer_box *box = luaL_checkudata(L, 1, TIMER);
  if (box->p != NULL)
    loom__timer_close(box->p);
  return 0;
}

static int l_timer_gc(lua_State *L) {
  timer_box *box = lua_touserdata(L, 1);
  if (box->p != NULL) {
    box->p->ref = LUA_NOREF; /* The Lua state is closing. */
    loom__timer_close(box->p);
    box->p = NULL;
  }
  return 0;
}

static const luaL_Reg timer_methods[] = {
  {"start", l_timer_start},
  {"stop", l_timer_stop},
  {"close", l_timer_close},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_timer(lua_State *L) {
  luaL_newmetatable(L, TIMER);
  luaL_newlib(L, timer_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_timer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_timer_new);
  lua_setfield(L, -2, "timer");
}
