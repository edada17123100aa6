/*
** signal.c: signal watchers (SIGINT/SIGTERM stop the reactor). They are
** unreferenced so that watching a signal never keeps the loop alive.
*/
#include "internal.h"

static void close_op(loom_object *o) {
  loom__signal_close(loom__object_of(o, loom_signal, obj));
}

static const loom_object_ops signal_ops = { "signal", NULL, close_op };

static void on_signal(uv_signal_t *h, int signum) {
  loom_signal *g = (loom_signal *)h;
  (void)signum;
  g->cb(g);
}

int loom__signal_start(loom_signal *g, loom_state *st, int signum,
                       loom_signal_cb cb) {
  int rc = uv_signal_init(st->loop, &g->h);
  if (rc < 0)
    return rc;
  loom__object_link(st, &g->obj, &signal_ops);
  g->st = st;
  g->cb = cb;
  rc = uv_signal_start(&g->h, on_signal, signum);
  uv_unref((uv_handle_t *)&g->h);
  return rc;
}

static void on_signal_closed(uv_handle_t *h) {
  loom_signal *g = (loom_signal *)h;
  g->on_closed(g);
}

void loom__signal_close(loom_signal *g) {
  if (g->closing)
    return;
  g->closing = 1;
  loom__object_unlink(&g->obj);
  uv_close((uv_handle_t *)&g->h, on_signal_closed);
}
