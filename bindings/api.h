/*
** api.h: the public loom_host (include/loom.h) as the files that implement
** loom.h see it: api.c (the host's life, loading, running), api_lua.c
** (the log sink, modules, Deferreds, method calls) and api_thread.c
** (loom_call_from_thread).
*/
#ifndef LOOM_API_H
#define LOOM_API_H

#include "../include/loom.h"
#include "binding.h"

#define LOOM_ERRMSG_SIZE 1024

/* One loom_call_from_thread call waiting for the loop's thread. */
typedef struct loom_thread_call {
  struct loom_thread_call *next;
  loom_thread_fn fn;
  void *ud;
} loom_thread_call;

/*
** The embedder's handle: malloc'd, it outlives loom_close (so a late call
** gets LOOM_ECLOSED, not a crash) until loom_free. The Lua side of the
** host (loom_lua_host, in a userdata of L) is reached through st.
*/
struct loom_host {
  lua_State *L;      /* the main thread; NULL once closed */
  loom_state *st;    /* NULL once closed */
  int own_L;         /* L is ours to lua_close */
  int closed;
  int signals;       /* loom_config.install_signal_handlers */
  int stepped;       /* loom_step has started the reactor once */
  int reactor_ref;   /* registry ref of the loom.reactor table */
  int dispatching;   /* running loom_call_from_thread work */
  loom_log_fn log_fn;
  void *log_ud;
  /* loom_call_from_thread: a queue under lock, and a wake-up. */
  uv_async_t async;
  int async_open;
  uv_mutex_t lock;
  int accepting;     /* under lock: posts are taken */
  loom_thread_call *calls, *calls_tail;
  char err[LOOM_ERRMSG_SIZE];
};

#if defined(__GNUC__)
#define LOOM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LOOM_PRINTF(f, a)
#endif

/* api.c */
int loom__api_error(loom_host *h, int code, const char *fmt, ...)
    LOOM_PRINTF(3, 4);
int loom__api_check(loom_host *h, const char *fn);
int loom__api_in_loop(loom_host *h);
int loom__api_pcall(loom_host *h, lua_CFunction f, void *ud, int nresults,
                    const char *fn);

/* api_thread.c */
int loom__api_thread_open(loom_host *h);
void loom__api_thread_close(loom_host *h);

#endif
