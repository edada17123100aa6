/*
** fsevent.c: what hot reload (lua/loom/reload.lua) needs of the file
** system.
**   core.watchPath(path, fn) -> watcher with close(): fn(filename, what)
**     runs on the loop for each change libuv reports under path (a file or
**     a directory: filename is the entry that changed, or nil), `what`
**     "change" or "rename", or a libuv error name when the watch failed.
**     Raises on misuse; returns nil, errname, message when path cannot be
**     watched (bindings/call.c's convention).
**   core.fileStat(path) -> { size=, mtime= (seconds, with nanoseconds),
**     ino= } or nil, errname, message: what tells a changed file from an
**     unchanged one without reading it.
*/
#include <stdlib.h>

#include "binding.h"

#define FSEVENT "loom.FsEvent"

typedef struct fsevent_box {
  loom_fsevent *p;
} fsevent_box;

typedef struct fsevent_arg {
  loom_fsevent *w;
  const char *filename;
  int events;
  int status;
} fsevent_arg;

static int deliver_fsevent(lua_State *L) {
  fsevent_arg *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->w->data));
  lua_getiuservalue(L, -1, 1);
  if (a->filename != NULL)
    lua_pushstring(L, a->filename);
  else
    lua_pushnil(L);
  if (a->status < 0)
    lua_pushstring(L, uv_err_name(a->status));
  else if (a->events & UV_RENAME)
    lua_pushliteral(L, "rename");
  else
    lua_pushliteral(L, "change");
  lua_call(L, 2, 0);
  return 0;
}

static void on_fsevent(loom_fsevent *w, const char *filename, int events,
                       int status) {
  fsevent_arg a;
  if (LOOM_L(w->st) == NULL || w->data == NULL)
    return;
  a.w = w;
  a.filename = filename;
  a.events = events;
  a.status = status;
  if (loom__call(w->st, deliver_fsevent, &a) != LUA_OK) {
    loom__report_error(w->st, "watchPath function", 0);
    lua_pop(LOOM_L(w->st), 1);
  }
}

static void on_fsevent_closed(loom_fsevent *w) {
  lua_State *L = LOOM_L(w->st);
  if (L != NULL && w->data != NULL)
    loom__box_closed(L, loom__ref(w->data), 2);
  free(w);
}

static const loom_class fsevent_class;

static int l_watch_path(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
  fsevent_box *box;
  loom_fsevent *w;
  int ref, rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  box = loom__new_box(L, &fsevent_class, sizeof(*box), &ref);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 2);
  w = calloc(1, sizeof(*w));
  if (w == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  w->on_closed = on_fsevent_closed;
  w->data = loom__ref_data(ref);
  rc = loom__fsevent_start(w, st, path, on_fsevent);
  if (rc < 0) {
    w->data = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (w->st != NULL) /* the handle was initialised */
      loom__fsevent_close(w);
    else
      free(w);
    return loom__push_error(L, rc, "cannot watch %s: %s", path,
                            uv_strerror(rc));
  }
  box->p = w;
  return 1;
}

static int l_fsevent_close(lua_State *L) {
  fsevent_box *box = luaL_checkudata(L, 1, FSEVENT);
  if (box->p != NULL)
    loom__fsevent_close(box->p);
  return 0;
}

/* The path being watched (nil once closed). */
static int l_fsevent_path(lua_State *L) {
  luaL_checkudata(L, 1, FSEVENT);
  lua_getiuservalue(L, 1, 2);
  return 1;
}

static void fsevent_forget(void *p) {
  loom_fsevent *w = p;
  w->data = NULL;
  loom__fsevent_close(w);
}

static const luaL_Reg fsevent_methods[] = {
  {"close", l_fsevent_close},
  {"path", l_fsevent_path},
  {NULL, NULL}
};

static const loom_class fsevent_class = {
  FSEVENT, fsevent_methods, 2, l_fsevent_close, fsevent_forget
};

void loom__open_fsevent(lua_State *L) {
  loom__new_class(L, &fsevent_class);
  lua_pushcfunction(L, l_watch_path);
  lua_setfield(L, -2, "watchPath");
}
