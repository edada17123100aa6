/*
** listener.c: what TCP and Unix listeners share: the handle tag, pausing
** (load shedding) and closing. tcp.c and unix.c bind; this file listens.
*/
#include "internal.h"

static const char listener_tag = 'l'; /* handle->data of every listener. */

int loom__is_listener_handle(uv_handle_t *h) {
  return h->data == &listener_tag;
}

static void on_closed(uv_handle_t *h) {
  loom_listener *l = (loom_listener *)h;
  l->on_closed(l);
}

/*
** After uv_*_init: tags the handle. close_cb (NULL: the default) runs
** when the handle has closed and must end by calling l->on_closed.
*/
void loom__listener_setup(loom_listener *l, loom_state *st,
                          uv_close_cb close_cb) {
  l->st = st;
  l->h.handle.data = (void *)&listener_tag;
  l->close_cb = close_cb != NULL ? close_cb : on_closed;
}

/*
** While paused nothing is accepted; libuv then stops polling the socket
** until uv_accept is called, so new connections wait in the backlog.
*/
static void on_connection(uv_stream_t *server, int status) {
  loom_listener *l = (loom_listener *)server;
  if (l->closing)
    return;
  if (l->paused && status == 0) {
    l->pending = 1;
    return;
  }
  l->on_connection(l, status);
}

int loom__listener_listen(loom_listener *l, int backlog) {
  return uv_listen(&l->h.stream, backlog, on_connection);
}

void loom__listener_pause(loom_listener *l) {
  l->paused = 1;
}

void loom__listener_resume(loom_listener *l) {
  l->paused = 0;
  if (l->pending && !l->closing) {
    l->pending = 0;
    l->on_connection(l, 0); /* Its uv_accept re-arms libuv's watcher. */
  }
}

void loom__listener_close(loom_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  uv_close(&l->h.handle, l->close_cb);
}
