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
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(t->data));
  lua_getiuservalue(L, -1, 1);
  lua_getiuservalue(L, -2, 2);
  lua_call(L, 1, 0);
  return 0;
}

static void on_timer(loom_timer *t) {
  if (LOOM_L(t->st) == NULL || t->data == NULL)
    return;
  if (loom__call(t->st, deliver_timer, t) != LUA_OK) {
    loom__report_error(t->st, "callLater", 0);
    lua_pop(LOOM_L(t->st), 1);
  }
}

static void on_timer_closed(loom_timer *t) {
  lua_State *L = LOOM_L(t->st);
  if (L != NULL && t->data != NULL)
    loom__box_closed(L, loom__ref(t->data), 2);
  free(t);
}

static const loom_class timer_class;

static int l_timer_new(lua_State *L) {
  loom_state *st = loom__get_state(L);
  timer_box *box;
  loom_timer *t;
  int ref, rc;
  luaL_checkany(L, 1);
  box = loom__new_box(L, &timer_class, sizeof(*box), &ref);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
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
  t->data = loom__ref_data(ref);
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

static void timer_forget(void *p) {
  loom_timer *t = p;
  t->data = NULL;
  loom__timer_close(t);
}

static const luaL_Reg timer_methods[] = {
  {"start", l_timer_start},
  {"stop", l_timer_stop},
  {"close", l_timer_close},
  {NULL, NULL}
};

static const loom_class timer_class = {
  TIMER, timer_methods, 2, l_timer_close, timer_forget
};

/* Expects the core module table on the top of the stack. */
void loom__open_timer(lua_State *L) {
  loom__new_class(L, &timer_class);
  lua_pushcfunction(L, l_timer_new);
  lua_setfield(L, -2, "timer");
}
