/*
** state.c: loom_state (loom__state_*): the loop's lifecycle: init, run
** until stopped, close-all for shutdown, and the final close that leaves no
** handle behind.
*/
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void on_keepalive(uv_async_t *a) {
  (void)a; /* Only wakes the loop; stop requests are read after uv_run. */
}

/*
** A failing write must return an error to its caller, not kill the
** process: SIGPIPE (a socket the peer closed: EPIPE) and SIGXFSZ (a file
** past RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) are ignored
** unless the program chose its own handler, as Python does for both.
** libuv resets them to the default in spawned children.
*/
static void ignore_if_default(int signum) {
  struct sigaction sa;
  if (sigaction(signum, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(signum, &sa, NULL);
  }
}

static void ignore_write_signals(void) {
  ignore_if_default(SIGPIPE);
  ignore_if_default(SIGXFSZ);
}

/* Uses loop when given (an embedder's), else a loop of the state's own. */
int loom__state_init(loom_state *st, uv_loop_t *loop) {
  int rc;
  ignore_write_signals();
  memset(st, 0, sizeof(*st));
  st->objects.next = st->objects.prev = &st->objects;
  if (loop == NULL) {
    rc = uv_loop_init(&st->own_loop);
    if (rc < 0)
      return rc;
    loop = &st->own_loop;
  }
  st->loop = loop;
  rc = uv_async_init(loop, &st->keepalive, on_keepalive);
  if (rc < 0)
    return rc;
  uv_unref((uv_handle_t *)&st->keepalive);
  rc = uv_timer_init(loop, &st->turn_timer);
  if (rc < 0)
    return rc;
  uv_unref((uv_handle_t *)&st->turn_timer); /* Referenced in a turn only. */
  return loom__timers_init(st);
}

/*
** Runs until loom__state_stop. The keepalive is referenced meanwhile so an
** idle reactor blocks, as Twisted's does, instead of returning at once.
*/
int loom__state_run(loom_state *st) {
  st->stop_requested = 0;
  st->running = 1;
  uv_ref((uv_handle_t *)&st->keepalive);
  while (!st->stop_requested)
    uv_run(st->loop, UV_RUN_DEFAULT);
  uv_unref((uv_handle_t *)&st->keepalive);
  st->running = 0;
  return 0;
}

static void on_turn_timeout(uv_timer_t *t) {
  (void)t; /* Only ends the wait: uv_run(UV_RUN_ONCE) returns after it. */
}

/*
** One turn of the loop for a host that drives it from its own frame loop
** (reactor.iterate, loom_step): what is due runs, then at most timeout_ms
** of waiting for I/O, cut short by the first event or due timer. libuv's
** uv_run is not reentrant, so a turn from inside the loop (a callback, or
** while loom__state_run runs) is refused with UV_EBUSY. Returns 0 or that.
*/
int loom__state_turn(loom_state *st, uint64_t timeout_ms) {
  if (st->running || st->turning)
    return UV_EBUSY;
  st->turning = 1;
  if (timeout_ms == 0) {
    /* uv_run does nothing on a loop with no referenced handle: the
       keepalive makes it poll, for a thread's wake-up (unreferenced). */
    uv_ref((uv_handle_t *)&st->keepalive);
    uv_run(st->loop, UV_RUN_NOWAIT);
    uv_unref((uv_handle_t *)&st->keepalive);
  } else {
    uv_update_time(st->loop);
    uv_ref((uv_handle_t *)&st->turn_timer);
    uv_timer_start(&st->turn_timer, on_turn_timeout, timeout_ms, 0);
    uv_run(st->loop, UV_RUN_ONCE);
    uv_timer_stop(&st->turn_timer);
    uv_unref((uv_handle_t *)&st->turn_timer);
  }
  st->turning = 0;
  return 0;
}

/*
** uv_stop outside uv_run would leave libuv's stop flag set, and the next
** uv_run would return before closing anything (a crash() before the loop
** ran left handles open at exit).
*/
void loom__state_stop(loom_state *st) {
  st->stop_requested = 1;
  if (st->running)
    uv_stop(st->loop);
}

double loom__now(loom_state *st) {
  (void)st;
  return (double)uv_hrtime() / 1e9;
}

/* o goes last in the list whose sentinel is head. */
static void link_before(loom_object *head, loom_object *o) {
  o->next = head;
  o->prev = head->prev;
  o->prev->next = o;
  head->prev = o;
}

void loom__object_link(loom_state *st, loom_object *o,
                       const loom_object_ops *ops) {
  o->ops = ops;
  link_before(&st->objects, o);
}

void loom__object_unlink(loom_object *o) {
  if (o->next == NULL)
    return;
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = NULL;
}

/*
** Calls lose (final = 0) or close on every open object. As uv_walk does,
** the list is moved aside first: an operation may close others (they
** unlink from wherever they are) or open new ones (not visited).
*/
static void walk_objects(loom_state *st, int final) {
  loom_object pending;
  if (st->objects.next == &st->objects)
    return;
  pending.next = st->objects.next;
  pending.prev = st->objects.prev;
  pending.next->prev = pending.prev->next = &pending;
  st->objects.next = st->objects.prev = &st->objects;
  while (pending.next != &pending) {
    loom_object *o = pending.next;
    loom__object_unlink(o);
    link_before(&st->objects, o);
    if (final)
      o->ops->close(o);
    else if (o->ops->lose != NULL)
      o->ops->lose(o);
  }
}

/* Shutdown: listeners close, connections flush and close. */
void loom__close_all(loom_state *st) {
  walk_objects(st, 0);
}

static void count_open(uv_handle_t *h, void *arg) {
  int *counts = arg;
  if (!uv_is_closing(h) && uv_has_ref(h))
    counts[uv_handle_get_type(h)]++;
}

/*
** What a program left open, counted by libuv handle type: the handles that
** are not closing and would keep the loop alive (listeners, connections,
** pending timers, processes). The state's own keepalive and worker-pool
** wake-up are unreferenced between runs, so they do not count. `loom test`
** fails on any (lua/loom/cli.lua). Returns the total.
*/
int loom__open_handles(loom_state *st, int counts[UV_HANDLE_TYPE_MAX]) {
  int i, n = 0;
  memset(counts, 0, sizeof(int) * UV_HANDLE_TYPE_MAX);
  uv_walk(st->loop, count_open, counts);
  for (i = 0; i < UV_HANDLE_TYPE_MAX; i++)
    n += counts[i];
  return n;
}

static void on_straggler_closed(uv_handle_t *h) {
  (void)h;
}

/* What is left once every object closed: our keepalive, turn timer and next-turn starter,
** and on our own loop any handle not closed yet. On an embedder's loop,
** the other handles are its own: not ours to close. */
static void close_straggler(uv_handle_t *h, void *arg) {
  loom_state *st = arg;
  if (!uv_is_closing(h) && (h == (uv_handle_t *)&st->keepalive ||
                            h == (uv_handle_t *)&st->turn_timer ||
                            h == (uv_handle_t *)&st->next_turn_starter ||
                            st->loop == &st->own_loop))
    uv_close(h, on_straggler_closed);
}

/*
** The last step: usually the owner is gone (bindings/ cleared its Lua state
** first), so close callbacks only free; an embedder keeping its Lua state
** closes with it set, and they empty the boxes too.
** Runs the loop until every close callback ran, then closes our own loop.
** An embedder's loop runs with the embedder's handles in it, which must
** not keep us here: every uv_close above is pending, and one non-blocking
** turn runs all pending close callbacks; only a name lookup already on
** libuv's thread pool (it cannot be cancelled) is waited for.
*/
void loom__state_close(loom_state *st) {
  loom__pool_shutdown(st);      /* Joins the workers, closes its async. */
  loom__resolve_cancel_all(st); /* Lookups still queued never start. */
  walk_objects(st, 1);
  uv_walk(st->loop, close_straggler, st);
  if (st->loop == &st->own_loop) {
    uv_run(st->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(st->loop) != 0)
      fprintf(stderr, "loom: loop closed with handles still open\n");
    return;
  }
  uv_run(st->loop, UV_RUN_NOWAIT);
  while (st->resolving != NULL)
    uv_run(st->loop, UV_RUN_ONCE);
  /* A close a close callback started (none today) would be pending now. */
  uv_run(st->loop, UV_RUN_NOWAIT);
}
