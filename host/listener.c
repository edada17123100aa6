/*
** listener.c: what TCP and Unix listeners share. A listener is a uv_poll_t
** on a listening socket that tcp.c or unix.c made and bound, and we call
** accept(2) ourselves instead of uv_listen: so the peer's address comes
** with each connection (a client that resets at once still has one), and
** running out of file descriptors is reported, where libuv accepts and
** closes the waiting connections without a word.
*/
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* Connections taken per readable event, so a flood cannot starve the loop. */
#define ACCEPT_BATCH 256

static void close_op(loom_object *o) {
  loom__listener_close(loom__object_of(o, loom_listener, obj));
}

/* Shutdown closes a listener at once, as the final close does. */
static const loom_object_ops listener_ops = { "listener", close_op,
                                              close_op };

static void on_closed(uv_handle_t *h) {
  loom_listener *l = (loom_listener *)h;
  l->on_closed(l);
}


/* A descriptor kept in reserve, freed to shed connections (see below). */
static void take_reserve(loom_listener *l) {
  if (l->reserve_fd < 0)
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/*
** Out of file descriptors: connections wait in the backlog, and the socket
** stays readable (a busy loop). As libuv does, free the reserve, accept
** and close what waits (its clients see the close at once instead of
** hanging), and take the reserve back; unlike libuv, report it, with the
** count in l->dropped, so the binding logs it. accept(2) fails so even
** with nothing waiting (it takes a descriptor first): that costs nobody
** anything and is not reported.
*/
static void out_of_descriptors(loom_listener *l, int status) {
  int fd, n = 0;
  l->dropped = 0;
  take_reserve(l);
  if (l->reserve_fd >= 0) {
    close(l->reserve_fd);
    l->reserve_fd = -1;
    while (n++ < ACCEPT_BATCH &&
           ((fd = accept(l->fd, NULL, NULL)) >= 0 || errno == EINTR ||
            errno == ECONNABORTED))
      if (fd >= 0) {
        close(fd);
        l->dropped++;
      }
    take_reserve(l);
  }
  if (l->dropped > 0 || l->reserve_fd < 0)
    l->on_connection(l, status);
}

/*
** Accepts what waits, each connection handed to on_connection with its
** descriptor in l->accepted_fd (which the callback takes, or it is closed
** here) and its address in l->peer.
*/
static void on_readable(uv_poll_t *p, int status, int events) {
  loom_listener *l = (loom_listener *)p;
  int i;
  (void)events;
  if (status < 0) {
    l->on_connection(l, status);
    return;
  }
  for (i = 0; i < ACCEPT_BATCH && !l->closing && !l->paused; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED)
        continue;
      if (err == EAGAIN || err == EWOULDBLOCK)
        return;
      if (err == EMFILE || err == ENFILE)
        out_of_descriptors(l, uv_translate_sys_error(err));
      else
        l->on_connection(l, uv_translate_sys_error(err));
      return;
    }
    l->accepted_fd = fd;
    l->peer = (const struct sockaddr *)&ss;
    l->on_connection(l, 0);
    l->peer = NULL;
    if (l->accepted_fd >= 0)
      close(l->accepted_fd);
    l->accepted_fd = -1;
  }
}

/*
** Listens on fd (a bound socket, which l now owns). close_cb (NULL: the
** default) runs when the listener has closed and must end by calling
** l->on_closed. On failure returns a libuv error: if l->closing is set the
** handle is closing (l stays allocated until close_cb), else fd is closed
** and nothing else was made.
*/
int loom__listener_open(loom_listener *l, loom_state *st, int fd, int backlog,
                        uv_close_cb close_cb) {
  int rc = 0;
  l->st = st;
  l->fd = fd;
  l->reserve_fd = l->accepted_fd = -1;
  l->close_cb = close_cb != NULL ? close_cb : on_closed;
  if (listen(fd, backlog) < 0 ||
      (rc = uv_poll_init_socket(st->loop, &l->h.poll, fd)) < 0) {
    rc = rc < 0 ? rc : uv_translate_sys_error(errno);
    close(fd);
    l->fd = -1;
    return rc;
  }
  loom__object_link(st, &l->obj, &listener_ops);
  take_reserve(l);
  rc = uv_poll_start(&l->h.poll, UV_READABLE, on_readable);
  if (rc < 0)
    loom__listener_close(l);
  return rc;
}

/* The address the socket is bound to; 0 or a libuv error. */
int loom__listener_sockname(loom_listener *l, struct sockaddr_storage *ss) {
  socklen_t len = sizeof(*ss);
  if (getsockname(l->fd, (struct sockaddr *)ss, &len) < 0)
    return uv_translate_sys_error(errno);
  return 0;
}

/* While paused, new connections wait in the kernel's backlog. */
void loom__listener_pause(loom_listener *l) {
  l->paused = 1;
  if (!l->closing)
    uv_poll_stop(&l->h.poll);
}

void loom__listener_resume(loom_listener *l) {
  if (!l->paused || l->closing)
    return;
  l->paused = 0;
  uv_poll_start(&l->h.poll, UV_READABLE, on_readable);
}

/*
** uv_close stops the polling at once, so the socket is closed at once too:
** a connect right after stopListening is refused, as with uv_listen.
*/
void loom__listener_close(loom_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  loom__object_unlink(&l->obj);
  uv_close(&l->h.handle, l->close_cb);
  close(l->fd);
  if (l->reserve_fd >= 0)
    close(l->reserve_fd);
  l->fd = l->reserve_fd = -1;
}
