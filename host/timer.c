/*
** timer.c: one-shot timers behind reactor.callLater.
*/
#include <math.h>

#include "internal.h"

static void close_op(loom_object *o) {
  loom__timer_close(loom__object_of(o, loom_timer, obj));
}

static const loom_object_ops timer_ops = { "timer", NULL, close_op };

static void on_timer(uv_timer_t *h) {
  loom_timer *t = (loom_timer *)h;
  t->cb(t);
}

int loom__timer_init(loom_timer *t, loom_state *st, loom_timer_cb cb) {
  int rc = uv_timer_init(st->loop, &t->h);
  if (rc < 0)
    return rc;
  loom__object_link(st, &t->obj, &timer_ops);
  t->st = st;
  t->cb = cb;
  return 0;
}

/* Fires once after secs; libuv's clock is in whole milliseconds. */
int loom__timer_start(loom_timer *t, double secs) {
  double ms = ceil(secs * 1000.0);
  if (!(ms > 0)) /* Also catches NaN. */
    ms = 0;
  if (ms > 9.0e15)
    ms = 9.0e15;
  uv_update_time(t->st->loop);
  return uv_timer_start(&t->h, on_timer, (uint64_t)ms, 0);
}

void loom__timer_stop(loom_timer *t) {
  uv_timer_stop(&t->h);
}

static void on_timer_closed(uv_handle_t *h) {
  loom_timer *t = (loom_timer *)h;
  t->on_closed(t);
}

void loom__timer_close(loom_timer *t) {
  if (t->closing)
    return;
  t->closing = 1;
  loom__object_unlink(&t->obj);
  uv_close((uv_handle_t *)&t->h, on_timer_closed);
}
