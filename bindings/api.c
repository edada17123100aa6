/*
** api.c: loom.h's host (docs/embedding.md): made on a loop and a Lua state
** of its own or the caller's; loading Lua files, strings and plugins;
** running, stepping, starting and stopping the reactor; closing. Every
** entry point checks its host and calls Lua only in protected mode, so bad
** input is an error code and a message, never a crash or a longjmp into
** the caller.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "api.h"
#include "embed.h"

/* Why the last loom_new of this thread failed (it has no host to say it). */
static _Thread_local char new_error[LOOM_ERRMSG_SIZE];

const char *loom_version(void) {
  return LOOM_VERSION;
}

const char *loom_errmsg(const loom_host *h) {
  if (h == NULL)
    return new_error[0] != '\0' ? new_error : "loom: no host (NULL)";
  return h->err;
}

const char *loom_strerror(int code) {
  switch (code) {
  case LOOM_OK: return "LOOM_OK";
  case LOOM_EINVAL: return "LOOM_EINVAL";
  case LOOM_ECLOSED: return "LOOM_ECLOSED";
  case LOOM_ELUA: return "LOOM_ELUA";
  case LOOM_ENOENT: return "LOOM_ENOENT";
  case LOOM_ENOMEM: return "LOOM_ENOMEM";
  case LOOM_EUV: return "LOOM_EUV";
  case LOOM_ESTATE: return "LOOM_ESTATE";
  default: return "LOOM_E?";
  }
}

int loom__api_error(loom_host *h, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->err, sizeof(h->err), fmt, ap);
  va_end(ap);
  return code;
}

/* 0, or the error of a NULL or closed host (fn names the entry point). */
int loom__api_check(loom_host *h, const char *fn) {
  if (h == NULL)
    return LOOM_EINVAL;
  if (h->closed)
    return loom__api_error(h, LOOM_ECLOSED, "%s: the host is closed", fn);
  return LOOM_OK;
}

/*
** Inside the loop: a loom callback, loom_run or a turn in progress, or
** queued thread work. libuv's uv_run is not reentrant, so running,
** stepping or closing from there is refused.
*/
int loom__api_in_loop(loom_host *h) {
  loom_state *st = h->st;
  return st->running || st->turning || h->dispatching ||
         LOOM_HOST(st)->current_fn != NULL;
}

/* The error value as a message (its __tostring for an error object). */
static int message_handler(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_tolstring(L, 1, NULL);
  return 1;
}

/*
** Runs f(ud) protected on h's main thread, leaving nresults results. A Lua
** error becomes LOOM_ELUA (LOOM_ENOMEM when out of memory) with its
** message in h->err; fn names the entry point for the errors it adds.
*/
int loom__api_pcall(loom_host *h, lua_CFunction f, void *ud, int nresults,
                    const char *fn) {
  lua_State *L = h->L;
  int base, status, code;
  if (!lua_checkstack(L, 4 + (nresults > 0 ? nresults : 0)))
    return loom__api_error(h, LOOM_ENOMEM, "%s: the Lua stack cannot grow",
                           fn);
  base = lua_gettop(L);
  lua_pushcfunction(L, message_handler);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  status = lua_pcall(L, 1, nresults, base + 1);
  lua_remove(L, base + 1);
  if (status == LUA_OK)
    return LOOM_OK;
  code = status == LUA_ERRMEM ? LOOM_ENOMEM : LOOM_ELUA;
  loom__api_error(h, code, "%s", lua_type(L, -1) == LUA_TSTRING
                                     ? lua_tostring(L, -1)
                                     : "(an error value with no message)");
  lua_pop(L, 1);
  return code;
}

/* Making a host ------------------------------------------------------------ */

typedef struct setup_args {
  loom_host *h;
  uv_loop_t *loop;
  const char *root;
  int code; /* what a raise here means */
} setup_args;

/* Loads loom into h->L: its paths and C modules, the state on the loop,
   loom.reactor. */
static int p_setup(lua_State *L) {
  setup_args *a = lua_touserdata(L, 1);
  if (a->h->own_L)
    luaL_openlibs(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LOOM_STATE_KEY) != LUA_TNIL) {
    a->code = LOOM_ESTATE;
    return luaL_error(L, "loom_new: this Lua state already has loom loaded "
                         "(a host, or require \"loom\"); one host per state");
  }
  lua_pop(L, 1);
  if (lua_getglobal(L, "package") != LUA_TTABLE ||
      lua_getglobal(L, "require") != LUA_TFUNCTION)
    return luaL_error(L, "loom_new: the Lua state has no package library "
                         "(open it with luaL_openlibs or luaL_requiref)");
  lua_pop(L, 2);
  loom_embed_setup(L, a->root);
  a->code = LOOM_EUV;
  a->h->st = loom__new_state(L, a->loop);
  a->code = LOOM_ELUA;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "loom.reactor");
  lua_call(L, 1, 1);
  a->h->reactor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/*
** Closes h's state and keeps the caller's Lua state: with Lua still there,
** the close callbacks empty the boxes Lua may still hold (a stale one then
** says "closed"), and the host is marked closed first, so nothing new can
** be opened from the hooks they run (connectionLost).
*/
static void close_kept_state(loom_host *h) {
  loom_state *st = h->st;
  LOOM_HOST(st)->closed = 1;
  loom__state_close(st);
  LOOM_L(st) = NULL;
  st->loop = NULL; /* Nothing left for its __gc. */
}

static int p_clear_log(lua_State *L) {
  (void)lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "loom.log");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "setSink");
  lua_pushnil(L);
  lua_call(L, 1, 0);
  return 0;
}

/* Everything loom_close does after the thread work ran. */
static void close_host(loom_host *h) {
  if (h->own_L) {
    lua_close(h->L); /* The state's __gc closes every handle (core.c). */
  } else {
    /* The sink holds h, which is about to go. */
    if (h->log_fn != NULL)
      loom__api_pcall(h, p_clear_log, h, 0, "loom_close");
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->reactor_ref);
    if (h->st != NULL)
      close_kept_state(h);
  }
  h->reactor_ref = LUA_NOREF;
  h->closed = 1;
  h->L = NULL;
  h->st = NULL;
}

static int lua_files_at(const char *root) {
  char probe[8300];
  snprintf(probe, sizeof(probe), "%.8000s/lua/loom/init.lua", root);
  return access(probe, R_OK) == 0;
}

static int new_failed(int code, const char *msg) {
  snprintf(new_error, sizeof(new_error), "%s", msg);
  return code;
}

int loom_new(const loom_config *cfg, loom_host **out) {
  static const loom_config defaults;
  char root[8192];
  setup_args a;
  loom_host *h;
  int rc;
  new_error[0] = '\0';
  if (out == NULL)
    return new_failed(LOOM_EINVAL, "loom_new: out is NULL");
  *out = NULL;
  if (cfg == NULL)
    cfg = &defaults;
  if (cfg->root != NULL)
    snprintf(root, sizeof(root), "%s", cfg->root);
  else
    loom_embed_find_root(root, sizeof(root));
  if (!lua_files_at(root)) {
    snprintf(new_error, sizeof(new_error), "loom_new: loom's Lua files are "
             "not in %.900s (no lua/loom/init.lua); set loom_config.root",
             root);
    return LOOM_ENOENT;
  }
  if ((h = calloc(1, sizeof(*h))) == NULL)
    return new_failed(LOOM_ENOMEM, "loom_new: out of memory");
  h->reactor_ref = LUA_NOREF;
  h->signals = cfg->install_signal_handlers != 0;
  if (uv_mutex_init(&h->lock) != 0) {
    free(h);
    return new_failed(LOOM_EUV, "loom_new: uv_mutex_init failed");
  }
  if (cfg->L != NULL) {
    lua_rawgeti(cfg->L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    h->L = lua_tothread(cfg->L, -1);
    lua_pop(cfg->L, 1);
  } else if ((h->L = luaL_newstate()) != NULL) {
    h->own_L = 1;
  } else {
    uv_mutex_destroy(&h->lock);
    free(h);
    return new_failed(LOOM_ENOMEM, "loom_new: cannot make a Lua state: out "
                                   "of memory");
  }
  a.h = h;
  a.loop = cfg->loop;
  a.root = root;
  a.code = LOOM_ELUA;
  rc = loom__api_pcall(h, p_setup, &a, 0, "loom_new");
  if (rc == LOOM_ELUA)
    rc = a.code;
  if (rc == LOOM_OK)
    rc = loom__api_thread_open(h);
  if (rc != LOOM_OK) {
    new_failed(rc, h->err);
    loom__api_thread_close(h);
    close_host(h);
    uv_mutex_destroy(&h->lock);
    free(h);
    return rc;
  }
  *out = h;
  return LOOM_OK;
}

lua_State *loom_lua(loom_host *h) {
  return h != NULL && !h->closed ? h->L : NULL;
}

uv_loop_t *loom_loop(loom_host *h) {
  return h != NULL && !h->closed ? h->st->loop : NULL;
}

/* Loading Lua -------------------------------------------------------------- */

typedef struct load_args {
  const char *path;  /* a file, or */
  const char *chunk; /* a string of len bytes named name */
  size_t len;
  const char *name;
  int status; /* the load's */
} load_args;

/* Loads (source only: a precompiled chunk can crash Lua) and runs. */
static int p_load(lua_State *L) {
  load_args *a = lua_touserdata(L, 1);
  if (a->path != NULL)
    a->status = luaL_loadfilex(L, a->path, "t");
  else
    a->status = luaL_loadbufferx(L, a->chunk, a->len, a->name, "t");
  if (a->status != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, 0);
  return 0;
}

static int load(loom_host *h, load_args *a, const char *fn) {
  int rc;
  a->status = LUA_OK;
  rc = loom__api_pcall(h, p_load, a, 0, fn);
  if (rc == LOOM_ELUA && a->status == LUA_ERRFILE)
    rc = LOOM_ENOENT;
  return rc;
}

int loom_dofile(loom_host *h, const char *path) {
  load_args a;
  int rc = loom__api_check(h, "loom_dofile");
  if (rc != LOOM_OK)
    return rc;
  if (path == NULL)
    return loom__api_error(h, LOOM_EINVAL, "loom_dofile: path is NULL");
  memset(&a, 0, sizeof(a));
  a.path = path;
  return load(h, &a, "loom_dofile");
}

int loom_dostring(loom_host *h, const char *chunk, const char *chunkname) {
  load_args a;
  int rc = loom__api_check(h, "loom_dostring");
  if (rc != LOOM_OK)
    return rc;
  if (chunk == NULL)
    return loom__api_error(h, LOOM_EINVAL, "loom_dostring: chunk is NULL");
  memset(&a, 0, sizeof(a));
  a.chunk = chunk;
  a.len = strlen(chunk);
  a.name = chunkname != NULL ? chunkname : "=loom_dostring";
  return load(h, &a, "loom_dostring");
}

typedef struct plugin_args {
  const char *name;
  int argc;
  const char *const *argv;
  int code;
} plugin_args;

/* loom.embed.startPlugin(name, {argv...}); its failures raise here. */
static int p_plugin(lua_State *L) {
  plugin_args *a = lua_touserdata(L, 1);
  const char *kind;
  int i;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "loom.embed");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "startPlugin");
  lua_pushstring(L, a->name);
  lua_createtable(L, a->argc, 0);
  for (i = 0; i < a->argc; i++) {
    lua_pushstring(L, a->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_call(L, 2, 3);
  if (!lua_isnil(L, -3))
    return 0;
  kind = lua_tostring(L, -2);
  a->code = kind == NULL              ? LOOM_ELUA
            : !strcmp(kind, "ENOENT") ? LOOM_ENOENT
            : !strcmp(kind, "EINVAL") ? LOOM_EINVAL
                                      : LOOM_ELUA;
  return lua_error(L); /* The message on top. */
}

int loom_load_plugin(loom_host *h, const char *name, int argc,
                     const char *const *argv) {
  plugin_args a;
  int rc = loom__api_check(h, "loom_load_plugin"), i;
  if (rc != LOOM_OK)
    return rc;
  if (name == NULL || argc < 0 || (argc > 0 && argv == NULL))
    return loom__api_error(h, LOOM_EINVAL, "loom_load_plugin: %s",
                           name == NULL ? "name is NULL"
                                        : "argc < 0, or argv NULL");
  for (i = 0; i < argc; i++)
    if (argv[i] == NULL)
      return loom__api_error(h, LOOM_EINVAL,
                             "loom_load_plugin: argv[%d] is NULL", i);
  a.name = name;
  a.argc = argc;
  a.argv = argv;
  a.code = LOOM_ELUA;
  rc = loom__api_pcall(h, p_plugin, &a, 0, "loom_load_plugin");
  return rc == LOOM_ELUA ? a.code : rc;
}

/* Running ------------------------------------------------------------------ */

/* Pushes the reactor's field name (raw: the reactor is a plain table). */
static void push_reactor_field(loom_host *h, const char *name) {
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->reactor_ref);
  lua_pushstring(h->L, name);
  lua_rawget(h->L, -2);
  lua_remove(h->L, -2);
}

/* reactor._started: from its start until its shutdown has finished. */
static int reactor_started(loom_host *h) {
  int started;
  if (!lua_checkstack(h->L, 3))
    return 0;
  push_reactor_field(h, "_started");
  started = lua_toboolean(h->L, -1);
  lua_pop(h->L, 1);
  return started;
}

static void push_signal_option(lua_State *L, loom_host *h) {
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, h->signals);
  lua_setfield(L, -2, "installSignalHandlers");
}

/* reactor.run(), or its mainLoop() when loom_step/loom_start started it. */
static int p_run(lua_State *L) {
  loom_host *h = lua_touserdata(L, 1);
  int started = reactor_started(h);
  push_reactor_field(h, started ? "mainLoop" : "run");
  if (started) {
    lua_call(L, 0, 0);
  } else {
    push_signal_option(L, h);
    lua_call(L, 1, 0);
  }
  return 0;
}

static int p_start(lua_State *L) {
  loom_host *h = lua_touserdata(L, 1);
  push_reactor_field(h, "startRunning");
  push_signal_option(L, h);
  lua_call(L, 1, 0);
  return 0;
}

static int p_stop(lua_State *L) {
  loom_host *h = lua_touserdata(L, 1);
  push_reactor_field(h, "stop");
  lua_call(L, 0, 0);
  return 0;
}

static int refuse_in_loop(loom_host *h, const char *fn) {
  return loom__api_error(h, LOOM_ESTATE, "%s: called from inside the loop "
                         "(a callback, or while it runs); libuv cannot run "
                         "a loop inside itself", fn);
}

int loom_run(loom_host *h) {
  int rc = loom__api_check(h, "loom_run");
  if (rc != LOOM_OK)
    return rc;
  if (loom__api_in_loop(h))
    return refuse_in_loop(h, "loom_run");
  return loom__api_pcall(h, p_run, h, 0, "loom_run");
}

int loom_step(loom_host *h) {
  int rc = loom__api_check(h, "loom_step");
  if (rc != LOOM_OK)
    return rc;
  if (loom__api_in_loop(h))
    return refuse_in_loop(h, "loom_step");
  if (!h->stepped) {
    h->stepped = 1;
    if (!reactor_started(h) &&
        (rc = loom__api_pcall(h, p_start, h, 0, "loom_step")) != LOOM_OK)
      return rc;
  }
  if (loom__state_turn(h->st, 0) != 0)
    return refuse_in_loop(h, "loom_step");
  return LOOM_OK;
}

int loom_start(loom_host *h) {
  int rc = loom__api_check(h, "loom_start");
  if (rc != LOOM_OK)
    return rc;
  if (reactor_started(h))
    return loom__api_error(h, LOOM_ESTATE, "loom_start: the reactor is "
                                           "already running");
  return loom__api_pcall(h, p_start, h, 0, "loom_start");
}

int loom_running(loom_host *h) {
  return h != NULL && !h->closed && reactor_started(h);
}

int loom_stop(loom_host *h) {
  int rc = loom__api_check(h, "loom_stop");
  if (rc != LOOM_OK)
    return rc;
  if (!reactor_started(h))
    return loom__api_error(h, LOOM_ESTATE, "loom_stop: the reactor is not "
                           "running (loom_run, loom_start or loom_step "
                           "starts it)");
  return loom__api_pcall(h, p_stop, h, 0, "loom_stop");
}

/* Closing ------------------------------------------------------------------ */

int loom_close(loom_host *h) {
  int rc = loom__api_check(h, "loom_close");
  if (rc != LOOM_OK)
    return rc;
  if (loom__api_in_loop(h))
    return refuse_in_loop(h, "loom_close");
  loom__api_thread_close(h);
  close_host(h);
  return LOOM_OK;
}

void loom_free(loom_host *h) {
  if (h == NULL)
    return;
  if (!h->closed && loom_close(h) != LOOM_OK) {
    /* Freeing a host whose loop is running would crash it: leak instead. */
    fprintf(stderr, "loom_free: %s; the host is not freed\n", h->err);
    return;
  }
  uv_mutex_destroy(&h->lock);
  free(h);
}
