/*
** thread.c: the state's thread pool. Workers are started on demand up to
** the pool size; each keeps a context of its own (bindings/ give it a Lua
** state) for its whole life. Finished jobs go back to the loop through a
** mutex-protected queue and one uv_async_t, which is also how any thread
** posts work to the loop (callFromThread).
*/
#include <stdlib.h>

#include "internal.h"

struct loom_pool {
  uv_async_t async;
  loom_state *st;
  loom_pool_config cfg;
  uv_mutex_t lock;
  uv_cond_t cond;
  loom_job *queued, *queued_tail;   /* waiting for a worker */
  loom_job *done, *done_tail;   /* waiting for the loop */
  uv_thread_t *threads;
  int nthreads;    /* ever started: each is joined at shutdown */
  int cap;
  int live;        /* not exited */
  int idle;        /* waiting for work */
  int stopping;
  int outstanding; /* submitted and not yet done (loop thread only) */
};

static void push(loom_job **head, loom_job **tail, loom_job *j) {
  j->next = NULL;
  if (*tail != NULL)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

static loom_job *pop(loom_job **head, loom_job **tail) {
  loom_job *j = *head;
  if (j != NULL) {
    *head = j->next;
    if (*head == NULL)
      *tail = NULL;
  }
  return j;
}

/* Called with the lock held: no more work, or too many workers. */
static int should_exit(loom_pool *pool) {
  return pool->stopping || pool->live > pool->cfg.size;
}

static void worker_main(void *arg) {
  loom_pool *pool = arg;
  void *ctx = pool->cfg.worker_open(pool->cfg.arg);
  loom_job *j;
  uv_mutex_lock(&pool->lock);
  for (;;) {
    while (pool->queued == NULL && !should_exit(pool)) {
      pool->idle++;
      uv_cond_wait(&pool->cond, &pool->lock);
      pool->idle--;
    }
    if (should_exit(pool))
      break;
    j = pop(&pool->queued, &pool->queued_tail);
    uv_mutex_unlock(&pool->lock);
    j->work(j, ctx);
    uv_mutex_lock(&pool->lock);
    push(&pool->done, &pool->done_tail, j);
    uv_async_send(&pool->async);
  }
  pool->live--;
  uv_mutex_unlock(&pool->lock);
  pool->cfg.worker_close(ctx);
}

/* Delivers finished jobs and posted calls on the loop thread. */
static void on_async(uv_async_t *a) {
  loom_pool *pool = (loom_pool *)a;
  loom_job *list, *j;
  uv_mutex_lock(&pool->lock);
  list = pool->done;
  pool->done = pool->done_tail = NULL;
  uv_mutex_unlock(&pool->lock);
  while ((j = list) != NULL) {
    list = j->next;
    if (j->work != NULL && --pool->outstanding == 0)
      uv_unref((uv_handle_t *)&pool->async);
    j->done(j, 0);
  }
}

int loom__pool_start(loom_state *st, const loom_pool_config *cfg) {
  loom_pool *pool = calloc(1, sizeof(*pool));
  int rc;
  if (pool == NULL)
    return UV_ENOMEM;
  pool->st = st;
  pool->cfg = *cfg;
  if (pool->cfg.size < 1)
    pool->cfg.size = 1;
  if ((rc = uv_mutex_init(&pool->lock)) < 0) {
    free(pool);
    return rc;
  }
  if ((rc = uv_cond_init(&pool->cond)) < 0) {
    uv_mutex_destroy(&pool->lock);
    free(pool);
    return rc;
  }
  if ((rc = uv_async_init(st->loop, &pool->async, on_async)) < 0) {
    uv_cond_destroy(&pool->cond);
    uv_mutex_destroy(&pool->lock);
    free(pool);
    return rc;
  }
  uv_unref((uv_handle_t *)&pool->async);
  st->pool = pool;
  return 0;
}

/* With the lock held: one more worker, when none is idle and size allows. */
static int grow(loom_pool *pool) {
  int rc;
  if (pool->idle > 0 || pool->live >= pool->cfg.size)
    return 0;
  if (pool->nthreads == pool->cap) {
    int cap = pool->cap ? pool->cap * 2 : 8;
    uv_thread_t *t = realloc(pool->threads, sizeof(*t) * (size_t)cap);
    if (t == NULL)
      return UV_ENOMEM;
    pool->threads = t;
    pool->cap = cap;
  }
  rc = uv_thread_create(&pool->threads[pool->nthreads], worker_main, pool);
  if (rc < 0)
    return rc;
  pool->nthreads++;
  pool->live++;
  return 0;
}

/* Queues j for a worker (loop thread only). 0 or a libuv error. */
int loom__pool_submit(loom_pool *pool, loom_job *j) {
  int rc;
  uv_mutex_lock(&pool->lock);
  rc = grow(pool);
  if (rc < 0 && pool->live > 0)
    rc = 0; /* The running workers will get to it. */
  if (rc == 0) {
    push(&pool->queued, &pool->queued_tail, j);
    uv_cond_signal(&pool->cond);
  }
  uv_mutex_unlock(&pool->lock);
  if (rc == 0 && pool->outstanding++ == 0)
    uv_ref((uv_handle_t *)&pool->async);
  return rc;
}

/* From any thread: run j->done on the loop thread (j->work is NULL). */
int loom__pool_post(loom_pool *pool, loom_job *j) {
  uv_mutex_lock(&pool->lock);
  if (pool->stopping) {
    uv_mutex_unlock(&pool->lock);
    return UV_ECANCELED;
  }
  push(&pool->done, &pool->done_tail, j);
  uv_mutex_unlock(&pool->lock);
  return uv_async_send(&pool->async);
}

/* Workers beyond the new size leave once idle. */
void loom__pool_set_size(loom_pool *pool, int size) {
  uv_mutex_lock(&pool->lock);
  pool->cfg.size = size < 1 ? 1 : size;
  uv_cond_broadcast(&pool->cond);
  uv_mutex_unlock(&pool->lock);
}

static void on_pool_closed(uv_handle_t *h) {
  loom_pool *pool = (loom_pool *)h;
  uv_cond_destroy(&pool->cond);
  uv_mutex_destroy(&pool->lock);
  free(pool->threads);
  free(pool);
}

static void cancel_all(loom_job *j) {
  while (j != NULL) {
    loom_job *next = j->next;
    j->done(j, 1);
    j = next;
  }
}

/*
** Shutdown (Lua is gone): workers finish the job they run, then exit and
** are joined; queued jobs are cancelled. A job that never returns blocks
** here, as a non-daemon thread blocks Python's exit.
*/
void loom__pool_shutdown(loom_state *st) {
  loom_pool *pool = st->pool;
  int i;
  if (pool == NULL)
    return;
  uv_mutex_lock(&pool->lock);
  pool->stopping = 1;
  uv_cond_broadcast(&pool->cond);
  uv_mutex_unlock(&pool->lock);
  for (i = 0; i < pool->nthreads; i++)
    uv_thread_join(&pool->threads[i]);
  cancel_all(pool->queued);
  cancel_all(pool->done);
  pool->queued = pool->done = NULL;
  st->pool = NULL;
  uv_close((uv_handle_t *)&pool->async, on_pool_closed);
}
