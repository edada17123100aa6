/*
** signal.c: core.onSignal(name, fn) -> watcher with close(). fn(name) runs
** on the loop, not in the signal handler, so it may do anything.
** core.sendSignal(pid, name) -> true, or nil, errname, message (`loom
** reload PIDFILE` sends HUP).
*/
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define SIGNAL "loom.Signal"

typedef struct signal_box {
  loom_signal *p;
} signal_box;

static const struct {
  const char *name;
  int num;
} signal_names[] = {
  {"INT", SIGINT}, {"TERM", SIGTERM}, {"HUP", SIGHUP},
  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CHLD", SIGCHLD},
  {NULL, 0}
};

static int deliver_signal(lua_State *L) {
  loom_signal *g = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(g->data));
  lua_getiuservalue(L, -1, 1);
  lua_getiuservalue(L, -2, 2);
  lua_call(L, 1, 0);
  return 0;
}

static void on_signal(loom_signal *g) {
  if (LOOM_L(g->st) == NULL || g->data == NULL)
    return;
  if (loom__call(g->st, deliver_signal, g) != LUA_OK) {
    loom__report_error(g->st, "signal handler", 0);
    lua_pop(LOOM_L(g->st), 1);
  }
}

static void on_signal_closed(loom_signal *g) {
  lua_State *L = LOOM_L(g->st);
  if (L != NULL && g->data != NULL)
    loom__box_closed(L, loom__ref(g->data), 2);
  free(g);
}

static const loom_class signal_class;

static int l_on_signal(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *name = luaL_checkstring(L, 1);
  signal_box *box;
  loom_signal *g;
  int i, ref, rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  for (i = 0; signal_names[i].name != NULL; i++)
    if (strcmp(signal_names[i].name, name) == 0)
      break;
  if (signal_names[i].name == NULL)
    return luaL_argerror(L, 1, "unknown signal name");
  box = loom__new_box(L, &signal_class, sizeof(*box), &ref);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 2);
  g = calloc(1, sizeof(*g));
  if (g == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  g->on_closed = on_signal_closed;
  g->data = loom__ref_data(ref);
  rc = loom__signal_start(g, st, signal_names[i].num, on_signal);
  if (rc < 0) {
    g->data = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (g->st != NULL) /* the handle was initialised */
      loom__signal_close(g);
    else
      free(g);
    return luaL_error(L, "onSignal: %s", uv_strerror(rc));
  }
  box->p = g;
  return 1;
}

static int l_send_signal(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  const char *name = luaL_checkstring(L, 2);
  int i, rc;
  for (i = 0; signal_names[i].name != NULL; i++)
    if (strcmp(signal_names[i].name, name) == 0)
      break;
  if (signal_names[i].name == NULL)
    return luaL_argerror(L, 2, "unknown signal name");
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "not a process id");
  rc = uv_kill((int)pid, signal_names[i].num);
  if (rc < 0)
    return loom__push_error(L, rc, "cannot signal process %I: %s", pid,
                            uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_signal_close(lua_State *L) {
  signal_box *box = luaL_checkudata(L, 1, SIGNAL);
  if (box->p != NULL)
    loom__signal_close(box->p);
  return 0;
}

static void signal_forget(void *p) {
  loom_signal *g = p;
  g->data = NULL;
  loom__signal_close(g);
}

static const luaL_Reg signal_methods[] = {
  {"close", l_signal_close},
  {NULL, NULL}
};

static const loom_class signal_class = {
  SIGNAL, signal_methods, 2, l_signal_close, signal_forget
};

void loom__open_signal(lua_State *L) {
  loom__new_class(L, &signal_class);
  lua_pushcfunction(L, l_on_signal);
  lua_setfield(L, -2, "onSignal");
  lua_pushcfunction(L, l_send_signal);
  lua_setfield(L, -2, "sendSignal");
}
