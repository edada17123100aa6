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
** A write to a socket the peer has closed must fail with EPIPE, not kill
** the process: ignore SIGPIPE unless the program chose its own handler.
*/
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

/* Uses loop when given (an embedder's), else a loop of the state's own. */
int loom__state_init(loom_state *st, uv_loop_t *loop) {
  int rc;
  ignore_sigpipe();
  memset(st, 0, sizeof(*st));
  st->hooks_ref = -2; /* LUA_NOREF, without including lua.h here. */
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
  return 0;
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

static void lose_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (loom__is_stream_handle(h))
    loom__stream_lose((loom_stream *)h);
  else if (loom__is_listener_handle(h))
    loom__listener_close((loom_listener *)h);
  else if (loom__is_udp_handle(h))
    loom__udp_close((loom_udp *)h);
}

/* Shutdown: listeners close, connections flush and close. */
void loom__close_all(loom_state *st) {
  uv_walk(st->loop, lose_handle, NULL);
}

static void on_straggler_closed(uv_handle_t *h) {
  (void)h;
}

static void close_handle(uv_handle_t *h, void *arg) {
  loom_state *st = arg;
  if (uv_is_closing(h))
    return;
  if (loom__is_stream_handle(h))
    loom__stream_close((loom_stream *)h, LOOM_CLOSE_SHUTDOWN);
  else if (loom__is_listener_handle(h))
    loom__listener_close((loom_listener *)h);
  else if (loom__is_timer_handle(h))
    loom__timer_close((loom_timer *)h);
  else if (loom__is_signal_handle(h))
    loom__signal_close((loom_signal *)h);
  else if (loom__is_udp_handle(h))
    loom__udp_close((loom_udp *)h);
  else if (loom__is_process_handle(h))
    loom__process_close((loom_process *)h); /* The child lives on. */
  else if (h == (uv_handle_t *)&st->keepalive || st->loop == &st->own_loop)
    uv_close(h, on_straggler_closed);
  /* Otherwise the handle is an embedder's own, on its loop: not ours. */
}

/*
** The last step: Lua is gone (st->L is NULL), so close callbacks only free.
** Runs the loop until every close callback ran, then closes our own loop.
*/
void loom__state_close(loom_state *st) {
  st->L = NULL;
  loom__pool_shutdown(st);      /* Joins the workers, closes its async. */
  loom__resolve_cancel_all(st); /* Lookups still queued never start. */
  uv_walk(st->loop, close_handle, st);
  uv_run(st->loop, UV_RUN_DEFAULT);
  if (st->loop == &st->own_loop && uv_loop_close(st->loop) != 0)
    fprintf(stderr, "loom: loop closed with handles still open\n");
}
