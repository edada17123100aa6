/*
** loom.h: the public C API of libloom, for a program that embeds loom as
** its scriptable network core (docs/embedding.md). Installed as
** PREFIX/include/loom/loom.h; build with
**
**   cc game.c $(pkg-config --cflags --libs loom)
**
** A loom_host is one reactor and one Lua state with loom loaded: on a loop
** and a Lua state of its own, or on the caller's. Every int-returning call
** returns LOOM_OK (0) or a negative LOOM_E* code, with loom_errmsg(h) one
** line saying why; none raises a Lua error or aborts on bad input.
**
** Threads: a host is used from one thread (the one that runs its loop),
** except loom_call_from_thread, which any thread may call until loom_free.
*/
#ifndef LOOM_H
#define LOOM_H

#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1
#define LOOM_VERSION_PATCH 0
#define LOOM_VERSION "0.1.0"
/* The library's version, which may differ from the header's. */
const char *loom_version(void);

typedef struct loom_host loom_host; /* opaque */

/* Error codes: every int-returning call returns LOOM_OK (0) or one of
   these (negative). */
#define LOOM_OK 0
#define LOOM_EINVAL (-1)  /* NULL host or bad argument */
#define LOOM_ECLOSED (-2) /* host already closed (loom_step... after loom_close) */
#define LOOM_ELUA (-3)    /* a Lua error: syntax or runtime, message has file:line */
#define LOOM_ENOENT (-4)  /* file or plugin not found (or not readable) */
#define LOOM_ENOMEM (-5)
#define LOOM_EUV (-6)     /* a libuv call failed; message names it */
#define LOOM_ESTATE (-7)  /* wrong state: e.g. loom_run while running */

/* h's last error message; "" when none. For a NULL h: why the last
   loom_new of this thread failed, or a fixed text when none did. */
const char *loom_errmsg(const loom_host *h);
/* The code's name, e.g. "LOOM_ECLOSED"; "LOOM_E?" for an unknown one. */
const char *loom_strerror(int code);

typedef struct loom_config {
  /* NULL: the host makes and owns its own loop; else it runs on the
     caller's, and never closes it. */
  uv_loop_t *loop;
  /* NULL: a fresh state with the standard libraries; else the caller's
     (loom is loaded into it: package.path and package.preload set; never
     lua_close'd by loom). loom keeps its host pointer in the state's
     LUA_EXTRASPACE: the caller must not use that space. */
  lua_State *L;
  /* The directory holding loom's lua/ and plugins/; NULL: found as the
     loom executable finds it, then next to libloom (../share/loom), then
     the install prefix's share/loom. */
  const char *root;
  /* Nonzero: the reactor's start (loom_run, loom_start, the first
     loom_step) installs SIGINT/SIGTERM handlers that stop it, as
     reactor.run() does in the loom executable. 0 (the default): the
     program keeps its signals. */
  int install_signal_handlers;
} loom_config;

/* Makes a host; cfg may be NULL (all defaults). *out is NULL on failure
   (loom_errmsg(NULL) then says why). loom.reactor is loaded. */
int loom_new(const loom_config *cfg, loom_host **out);
lua_State *loom_lua(loom_host *h); /* main thread; NULL for NULL/closed h */
uv_loop_t *loom_loop(loom_host *h); /* NULL for NULL/closed h */

/* Loads and runs a Lua source file (never a precompiled chunk). */
int loom_dofile(loom_host *h, const char *path);
int loom_dostring(loom_host *h, const char *chunk, const char *chunkname);
/* As `loom NAME argv...`: options parsed, the plugin's service made and
   started (stopped by the reactor's shutdown). argv may be NULL when argc
   is 0. */
int loom_load_plugin(loom_host *h, const char *name, int argc,
                     const char *const *argv);

/* Runs the reactor until loom_stop or reactor.stop(): 0 on a clean stop. */
int loom_run(loom_host *h);
/* One non-blocking turn of the loop (reactor.iterate(0)); the first one
   starts the reactor (startup triggers, callWhenRunning). */
int loom_step(loom_host *h);
/* Starts the reactor without running its loop, for a host whose loop the
   caller runs (uv_run on the loop of loom_config): startup triggers run;
   loom_stop then works. LOOM_ESTATE if it is started. */
int loom_start(loom_host *h);
/* 1 from the reactor's start (loom_run, loom_start, first loom_step) until
   its shutdown has finished, else 0 (also for a NULL or closed host). */
int loom_running(loom_host *h);
/* As reactor.stop(): shutdown triggers run, connections close, then
   loom_run returns and loom_running becomes 0 (after a few more loom_step
   turns, or turns of the caller's loop). LOOM_ESTATE when not started. */
int loom_stop(loom_host *h);
/* Closes every handle loom opened (and its own loop and Lua state if it
   made them). Not from inside the loop (a callback). LOOM_ECLOSED if
   already closed. */
int loom_close(loom_host *h);
/* loom_close if needed, then frees h; NULL is a no-op. */
void loom_free(loom_host *h);

/* The log sink: every line loom's default log observer would write (at or
   above loom.log's level), without its newline; a traceback is one line
   with newlines in it. */
typedef void (*loom_log_fn)(void *ud, int level, const char *line);
#define LOOM_LOG_DEBUG (-1)
#define LOOM_LOG_INFO 0
#define LOOM_LOG_WARN 1
#define LOOM_LOG_ERROR 2
/* NULL fn: back to loom's default sink (stderr, or --logfile's file). */
int loom_set_log(loom_host *h, loom_log_fn fn, void *ud);

/* require(name) then returns a table of funcs (copied now; NULL-name
   terminated); each C function gets ud as upvalue 1
   (lua_touserdata(L, lua_upvalueindex(1))). LOOM_ESTATE if name is already
   loaded. */
int loom_register_module(loom_host *h, const char *name,
                         const luaL_Reg *funcs, void *ud);

/* Deferreds from C: each pushes/pops on loom_lua(h)'s stack; never raises.
   On an error nothing is pushed and the value is popped anyway. */
int loom_deferred_new(loom_host *h); /* pushes a new Deferred */
/* Fires the Deferred at idx with the value on top (popped). */
int loom_deferred_callback(loom_host *h, int idx);
/* Fires it with the error value on top (popped). */
int loom_deferred_errback(loom_host *h, int idx);

/* Calls obj:method(args...): obj at stack index idx, nargs arguments on
   top of the stack (popped); protected; an error is logged the loom way
   (traceback through the log sink) and returned as LOOM_ELUA; on success
   nresults results (or all, LUA_MULTRET) are left on the stack. */
int loom_call_method(loom_host *h, int idx, const char *method, int nargs,
                     int nresults);

/* Any thread: run fn(h, ud) on the loop's thread in a coming loop turn
   (uv_async), in the order of the calls; 0 or LOOM_ECLOSED (or
   LOOM_ENOMEM). Work still queued when loom_close begins runs then, on
   the closing thread, before anything closes; a call after that gets
   LOOM_ECLOSED. No thread may call it once loom_free has begun. */
typedef void (*loom_thread_fn)(loom_host *h, void *ud);
int loom_call_from_thread(loom_host *h, loom_thread_fn fn, void *ud);

/* The Lua C modules loom_new preloads, for a program that sets up a
   lua_State of its own without loom_new (`require "loom.core"`). */
int luaopen_loom_core(lua_State *L);       /* "loom.core": the reactor's C side */
int luaopen_loom_json(lua_State *L);       /* "loom.json" */
int luaopen_loom_defer_core(lua_State *L); /* "loom.defer.core" */

#ifdef __cplusplus
}
#endif

#endif
