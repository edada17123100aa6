/*
** timer.c: one-shot timers behind reactor.callLater.
**
** A zero-delay timer started from a timer's callback waits for the next
** turn of the loop: libuv 1.44 (Debian 12's) runs a timer due now in the
** same pass of its timers, so callLater(0) from a callLater(0) callback
** (a producer writing a file a few chunks a turn) would run before any
** I/O, forever. Such timers are started by a prepare handle, after this
** pass and before the poll, and so run in the next turn, as Twisted's
** callLater(0) does (libuv fixed this in 1.47: #4250).
*/
#include <math.h>

#include "internal.h"

static void close_op(loom_object *o) {
  loom__timer_close(loom__object_of(o, loom_timer, obj));
}

static const loom_object_ops timer_ops = { "timer", NULL, close_op };

static void on_timer(uv_timer_t *h) {
  loom_timer *t = (loom_timer *)h;
  loom_state *st = t->st;
  st->in_timer++;
  t->cb(t);
  st->in_timer--;
}

static void stop_waiting(loom_timer *t) {
  if (!t->waiting)
    return;
  t->waiting = 0;
  if (t->prev != NULL)
    t->prev->next = t->next;
  else
    t->st->next_turn = t->next;
  if (t->next != NULL)
    t->next->prev = t->prev;
  else
    t->st->next_turn_last = t->prev;
  t->next = t->prev = NULL;
  if (t->st->next_turn == NULL)
    uv_prepare_stop(&t->st->next_turn_starter);
}

/* Appends t, keeping the order the timers were started in. */
static void wait_next_turn(loom_timer *t) {
  loom_state *st = t->st;
  t->prev = st->next_turn_last;
  t->next = NULL;
  if (t->prev != NULL)
    t->prev->next = t;
  else
    st->next_turn = t;
  st->next_turn_last = t;
  t->waiting = 1;
}

static void on_next_turn(uv_prepare_t *p) {
  loom_state *st = p->data;
  uv_update_time(st->loop);
  while (st->next_turn != NULL) {
    loom_timer *t = st->next_turn;
    stop_waiting(t);
    uv_timer_start(&t->h, on_timer, 0, 0);
  }
}

int loom__timers_init(loom_state *st) {
  int rc = uv_prepare_init(st->loop, &st->next_turn_starter);
  if (rc == 0) {
    st->next_turn_starter.data = st;
    uv_unref((uv_handle_t *)&st->next_turn_starter); /* (timers keep it) */
  }
  return rc;
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
  stop_waiting(t);
  if (ms == 0 && t->st->in_timer) {
    uv_timer_stop(&t->h);
    if (t->st->next_turn == NULL)
      uv_prepare_start(&t->st->next_turn_starter, on_next_turn);
    wait_next_turn(t);
    return 0;
  }
  uv_update_time(t->st->loop);
  return uv_timer_start(&t->h, on_timer, (uint64_t)ms, 0);
}

void loom__timer_stop(loom_timer *t) {
  stop_waiting(t);
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
  stop_waiting(t);
  loom__object_unlink(&t->obj);
  uv_close((uv_handle_t *)&t->h, on_timer_closed);
}
