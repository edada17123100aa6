/*
** api_thread.c: loom_call_from_thread, as reactor.callFromThread: any
** thread queues fn(h, ud) under a lock and wakes the loop with a uv_async;
** the loop's thread runs the queue in order. At loom_close the queue stops
** taking work, and what is still queued runs then, before anything closes.
*/
#include <stddef.h>
#include <stdlib.h>

#include "api.h"

/* Runs the queued calls, oldest first; calls queued meanwhile wait for the
   next wake-up (or the close). */
static void run_queued(loom_host *h) {
  loom_thread_call *list, *c;
  uv_mutex_lock(&h->lock);
  list = h->calls;
  h->calls = h->calls_tail = NULL;
  uv_mutex_unlock(&h->lock);
  h->dispatching++;
  while ((c = list) != NULL) {
    loom_thread_fn fn = c->fn;
    void *ud = c->ud;
    list = c->next;
    free(c);
    fn(h, ud);
  }
  h->dispatching--;
}

static void on_async(uv_async_t *a) {
  run_queued((loom_host *)(void *)((char *)a - offsetof(loom_host, async)));
}

/* Opens the wake-up on h's loop; it does not keep the loop alive. */
int loom__api_thread_open(loom_host *h) {
  int rc = uv_async_init(h->st->loop, &h->async, on_async);
  if (rc < 0)
    return loom__api_error(h, LOOM_EUV, "uv_async_init: %s", uv_strerror(rc));
  uv_unref((uv_handle_t *)&h->async);
  h->async_open = 1;
  uv_mutex_lock(&h->lock);
  h->accepting = 1;
  uv_mutex_unlock(&h->lock);
  return LOOM_OK;
}

/* No more work taken; what is queued runs now; the wake-up closes (its
   close completes with the loop's, in loom_close). */
void loom__api_thread_close(loom_host *h) {
  uv_mutex_lock(&h->lock);
  h->accepting = 0;
  uv_mutex_unlock(&h->lock);
  run_queued(h);
  if (h->async_open) {
    uv_close((uv_handle_t *)&h->async, NULL);
    h->async_open = 0;
  }
}

int loom_call_from_thread(loom_host *h, loom_thread_fn fn, void *ud) {
  loom_thread_call *c;
  if (h == NULL || fn == NULL)
    return LOOM_EINVAL;
  if ((c = malloc(sizeof(*c))) == NULL)
    return LOOM_ENOMEM;
  c->next = NULL;
  c->fn = fn;
  c->ud = ud;
  uv_mutex_lock(&h->lock);
  if (!h->accepting) {
    uv_mutex_unlock(&h->lock);
    free(c);
    return LOOM_ECLOSED;
  }
  if (h->calls_tail != NULL)
    h->calls_tail->next = c;
  else
    h->calls = c;
  h->calls_tail = c;
  /* Under the lock: the close cannot come between the check and this. */
  uv_async_send(&h->async);
  uv_mutex_unlock(&h->lock);
  return LOOM_OK;
}
