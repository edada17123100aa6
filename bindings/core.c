/*
** core.c: luaopen_loom_core, the host object for a Lua state. The state
** lives in a userdata kept in the registry; its __gc closes every handle
** and the loop, so a plain lua5.4 that did require "loom" exits clean.
*/
#include <string.h>
#include <sys/stat.h>

#include "binding.h"

#define STATE "loom.State"

static int l_state_gc(lua_State *L) {
  loom_state *st = lua_touserdata(L, 1);
  if (st->loop != NULL) {
    LOOM_L(st) = NULL; /* Lua is gone: close callbacks only free. */
    loom__state_close(st);
    st->loop = NULL;
  }
  return 0;
}

/*
** The state of L, made on loop (NULL: a loop of its own); kept in the
** registry. luaopen_loom_core makes it on first use; an embedder (api.c)
** makes it first to give it the caller's loop. May raise.
*/
loom_state *loom__new_state(lua_State *L, uv_loop_t *loop) {
  loom_lua_host *h = lua_newuserdatauv(L, sizeof(*h), 0);
  loom_state *st = &h->st;
  int rc;
  memset(h, 0, sizeof(*h));
  rc = loom__state_init(st, loop);
  if (rc < 0)
    luaL_error(L, "loom: cannot create the event loop: %s", uv_strerror(rc));
  luaL_newmetatable(L, STATE);
  lua_pushcfunction(L, l_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  LOOM_HOST(st)->hooks_ref = LUA_NOREF;
  lua_setfield(L, LUA_REGISTRYINDEX, LOOM_STATE_KEY);
  return st;
}

/*
** core.run(): runs the loop until core.stop(). Callbacks run on the thread
** that called run, so a coroutine (a busted test) may drive the reactor.
*/
static int l_run(lua_State *L) {
  loom_state *st = loom__get_state(L);
  void *saved = LOOM_L(st);
  if (st->running || st->turning) /* turning: inside reactor.iterate */
    return luaL_error(L, "reactor is already running");
  LOOM_L(st) = L;
  loom__state_run(st);
  LOOM_L(st) = saved;
  return 0;
}

/*
** core.iterate(delay): one turn of the loop, waiting at most delay seconds
** (reactor.iterate). As run, its callbacks run on the calling thread. A
** turn from inside the loop (a callback, or while run runs) raises: libuv
** cannot run a loop inside itself.
*/
static int l_iterate(lua_State *L) {
  loom_state *st = loom__get_state(L);
  lua_Number delay = luaL_optnumber(L, 1, 0);
  void *saved = LOOM_L(st);
  int rc;
  luaL_argcheck(L, delay >= 0 && delay <= 1e9, 1,
                "delay must be a number of seconds from 0 to 1e9");
  if (LOOM_HOST(st)->current_fn != NULL)
    return luaL_error(L, "reactor.iterate called from inside the reactor "
                         "(a callback); it runs the loop, which is running");
  LOOM_L(st) = L;
  rc = loom__state_turn(st, (uint64_t)(delay * 1000.0 + 0.5));
  LOOM_L(st) = saved;
  if (rc == UV_EBUSY)
    return luaL_error(L, "reactor.iterate called while the reactor runs; "
                         "it runs the loop, which is running");
  return 0;
}

static int l_stop(lua_State *L) {
  loom__state_stop(loom__get_state(L));
  return 0;
}

/* Wall-clock seconds, as Twisted's reactor.seconds() (time.time()). */
static int l_walltime(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  return 1;
}

static int l_monotonic(lua_State *L) {
  lua_pushnumber(L, loom__now(loom__get_state(L)));
  return 1;
}

static int l_set_hooks(lua_State *L) {
  loom_state *st = loom__get_state(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_unref(L, LUA_REGISTRYINDEX, LOOM_HOST(st)->hooks_ref);
  lua_pushvalue(L, 1);
  LOOM_HOST(st)->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int l_close_all(lua_State *L) {
  loom__close_all(loom__get_state(L));
  return 0;
}

static int l_stream_count(lua_State *L) {
  lua_pushinteger(L, loom__get_state(L)->nstreams);
  return 1;
}

/* core.openHandles() -> {tcp = 2, timer = 1}: what is left open, by type. */
static int l_open_handles(lua_State *L) {
  int counts[UV_HANDLE_TYPE_MAX], i;
  loom__open_handles(loom__get_state(L), counts);
  lua_newtable(L);
  for (i = 0; i < UV_HANDLE_TYPE_MAX; i++) {
    if (counts[i] > 0) {
      lua_pushinteger(L, counts[i]);
      lua_setfield(L, -2, uv_handle_type_name((uv_handle_type)i));
    }
  }
  return 1;
}

/* core.listDir(path) -> sorted list of names, or nil, message. */
static int l_list_dir(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
  uv_fs_t req;
  uv_dirent_t ent;
  lua_Integer n = 0;
  int rc = uv_fs_scandir(st->loop, &req, path, 0, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    return loom__push_error(L, rc, "%s: %s", path, uv_strerror(rc));
  }
  lua_createtable(L, rc, 0);
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    lua_pushstring(L, ent.name); /* May raise: the request leaks only then. */
    lua_rawseti(L, -2, ++n);
  }
  uv_fs_req_cleanup(&req);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/*
** core.transports() -> the open connections' transports (TCP and Unix
** streams with a Lua box, connected and not closing), oldest first: the
** manhole's connections(). Walks the state's list of open host objects.
*/
static int l_transports(lua_State *L) {
  loom_state *st = loom__get_state(L);
  loom_object *o;
  lua_Integer n = 0;
  lua_newtable(L);
  for (o = st->objects.next; o != &st->objects; o = o->next) {
    loom_stream *s;
    if (strcmp(o->ops->kind, "stream") != 0)
      continue;
    s = loom__object_of(o, loom_stream, obj);
    if (s->vt != &loom__lua_stream_vt || s->data == NULL
        || !(s->flags & LOOM_S_CONNECTED) || (s->flags & LOOM_S_CLOSING))
      continue;
    loom__push_transport(L, s);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static const luaL_Reg core_functions[] = {
  {"listDir", l_list_dir},
  {"run", l_run},
  {"iterate", l_iterate},
  {"stop", l_stop},
  {"walltime", l_walltime},
  {"monotonic", l_monotonic},
  {"setHooks", l_set_hooks},
  {"closeAll", l_close_all},
  {"streamCount", l_stream_count},
  {"openHandles", l_open_handles},
  {"transports", l_transports},
  {NULL, NULL}
};

int luaopen_loom_core(lua_State *L) {
  loom_state *st;
  lua_State *main;
  lua_getfield(L, LUA_REGISTRYINDEX, LOOM_STATE_KEY);
  st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (st == NULL)
    st = loom__new_state(L, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (LOOM_L(st) == NULL)
    LOOM_L(st) = main;
  *(loom_state **)lua_getextraspace(main) = st;
  *(loom_state **)lua_getextraspace(L) = st;
  luaL_newlib(L, core_functions);
  loom__open_stream(L);
  loom__open_tcp(L);
  loom__open_tls(L);
  loom__open_timer(L);
  loom__open_signal(L);
  loom__open_unix(L);
  loom__open_resolver(L);
  loom__open_udp(L);
  loom__open_process(L);
  loom__open_thread(L);
  loom__open_stdio(L);
  loom__open_lines(L);
  loom__open_pidfile(L);
  loom__open_identity(L);
  loom__open_fsevent(L);
  loom__open_http(L);
  loom__open_http_server(L);
  loom__open_query(L);
  loom__open_websocket(L);
  loom__open_fs(L);
  lua_pushliteral(L, LOOM_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
