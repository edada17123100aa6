/*
** stream.c: the stream transport shared by TCP, Unix sockets and pipes:
** reading into the loop's shared buffer, the write queue with its
** high-water mark, and the three ways to end (lose, lose-write, close).
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void on_close(uv_handle_t *h);
static void start_write(loom_stream *s);

static void lose_op(loom_object *o) {
  loom__stream_lose(loom__object_of(o, loom_stream, obj));
}

static void close_op(loom_object *o) {
  loom__stream_close(loom__object_of(o, loom_stream, obj),
                     LOOM_CLOSE_SHUTDOWN);
}

static const loom_object_ops stream_ops = { "stream", lose_op, close_op };

void loom__stream_setup(loom_stream *s, loom_state *st,
                        const loom_stream_vtable *vt) {
  loom__object_link(st, &s->obj, &stream_ops);
  s->st = st;
  s->vt = vt;
  s->io = &loom__socket_io;
  s->high_water = LOOM_HIGH_WATER;
  s->max_write = LOOM_NO_LIMIT;
  st->nstreams++;
}

size_t loom__stream_buffered(const loom_stream *s) {
  return s->pending.len + s->inflight.len;
}

/* A layer between the socket and the protocol; set before reading. */
void loom__stream_set_io(loom_stream *s, const loom_stream_io *io) {
  s->io = io;
}

/* ------------------------------------------------ the plain socket's io */

/*
** Every read lands in the one loop-wide buffer: libuv calls alloc_cb and
** read_cb back to back for a stream, and the data is consumed (copied into
** a Lua string) before the next alloc_cb.
*/
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  loom_stream *s = (loom_stream *)h;
  (void)suggested;
  buf->base = s->st->readbuf;
  buf->len = sizeof(s->st->readbuf);
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  loom_stream *s = (loom_stream *)h;
  s->io->received(s, nread, buf->base);
}

static int socket_read_start(loom_stream *s) {
  return uv_read_start(&s->h.stream, on_alloc, on_read);
}

static void socket_read_stop(loom_stream *s) {
  uv_read_stop(&s->h.stream);
}

static int socket_try_write(loom_stream *s, const char *data, size_t len) {
  uv_buf_t b = loom__write_buf(data, len);
  return uv_try_write(&s->h.stream, &b, 1);
}

static void on_write(uv_write_t *req, int status) {
  loom__stream_written(req->data, status);
}

/* The write request is allocated when first needed and reused. */
static int socket_write(loom_stream *s, const char *data, size_t len) {
  uv_buf_t b = loom__write_buf(data, len);
  if (s->wreq == NULL && (s->wreq = malloc(sizeof(*s->wreq))) == NULL)
    return UV_ENOMEM;
  s->wreq->data = s;
  return uv_write(s->wreq, &s->h.stream, &b, 1, on_write);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  loom_stream *s = req->data;
  free(req);
  loom__stream_shutdown_done(s, status);
}

static int socket_shutdown(loom_stream *s) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  int rc;
  if (req == NULL)
    return UV_ENOMEM;
  req->data = s;
  rc = uv_shutdown(req, &s->h.stream, on_shutdown);
  if (rc < 0)
    free(req);
  return rc;
}

const loom_stream_io loom__socket_io = {
  "socket", socket_try_write, socket_write, socket_shutdown,
  socket_read_start, socket_read_stop, loom__stream_received,
  NULL, NULL, NULL
};

/* ------------------------------------------------------------- reading */

/* nread bytes at data, or UV_EOF, or a read error. */
void loom__stream_received(loom_stream *s, ssize_t nread, const char *data) {
  if (nread > 0) {
    s->vt->data(s, data, (size_t)nread);
  } else if (nread == UV_EOF) {
    s->io->read_stop(s);
    s->flags &= ~LOOM_S_READING;
    /* A half-close-aware protocol keeps the stream open, unless our own
    ** write side is already shut: then both halves are done (Twisted). */
    if (!(s->flags & LOOM_S_CLOSING) &&
        (!s->vt->eof(s) || (s->flags & LOOM_S_SHUT_SENT)))
      loom__stream_close(s, LOOM_CLOSE_CLEAN);
  } else if (nread < 0) {
    loom__stream_close(s, (int)nread);
  }
}

/* Not after loseConnection: a producer resumed by the final flush must not
** start reading again (Twisted's resumeProducing checks disconnecting). */
static int read_start(loom_stream *s) {
  int rc;
  if (s->flags & (LOOM_S_READING | LOOM_S_PAUSED | LOOM_S_CLOSING |
                  LOOM_S_DISCONNECTING))
    return 0;
  rc = s->io->read_start(s);
  if (rc == 0)
    s->flags |= LOOM_S_READING;
  return rc;
}

/* Called once the protocol is attached: delivers data from now on. */
int loom__stream_start(loom_stream *s) {
  s->flags |= LOOM_S_CONNECTED;
  s->flags &= ~LOOM_S_CONNECTING;
  start_write(s);
  if (s->flags & LOOM_S_CLOSING)
    return 0;
  return read_start(s);
}

void loom__stream_pause(loom_stream *s) {
  s->flags |= LOOM_S_PAUSED;
  if (s->flags & LOOM_S_READING) {
    s->io->read_stop(s);
    s->flags &= ~LOOM_S_READING;
  }
}

void loom__stream_resume(loom_stream *s) {
  s->flags &= ~LOOM_S_PAUSED;
  if (s->flags & LOOM_S_CONNECTED)
    read_start(s);
}

void loom__stream_shutdown_done(loom_stream *s, int status) {
  if (status < 0 && status != UV_ECANCELED)
    loom__stream_close(s, status);
}

/* With the queue empty: finish a pending loseConnection/loseWriteConnection. */
static void flushed(loom_stream *s) {
  if (s->flags & LOOM_S_DISCONNECTING) {
    /* A layer may have last words (TLS close_notify); it closes after. */
    if (s->io->finish == NULL || !s->io->finish(s))
      loom__stream_close(s, LOOM_CLOSE_CLEAN);
  } else if ((s->flags & LOOM_S_WRITE_SHUT) &&
             !(s->flags & LOOM_S_SHUT_SENT)) {
    int rc;
    s->flags |= LOOM_S_SHUT_SENT;
    rc = s->io->shutdown(s);
    if (rc < 0)
      loom__stream_close(s, rc == UV_ENOMEM ? rc : LOOM_CLOSE_CLEAN);
  }
}

static void producer_check(loom_stream *s) {
  size_t n = loom__stream_buffered(s);
  if (s->flags & LOOM_S_PULL_PRODUCER) {
    if (n == 0)
      s->vt->pause_producer(s, 0);
    return;
  }
  if (n > s->high_water && !(s->flags & LOOM_S_PRODUCER_PAUSED)) {
    s->flags |= LOOM_S_PRODUCER_PAUSED;
    s->vt->pause_producer(s, 1);
  } else if (n <= s->high_water / 2 && (s->flags & LOOM_S_PRODUCER_PAUSED)) {
    s->flags &= ~LOOM_S_PRODUCER_PAUSED;
    s->vt->pause_producer(s, 0);
  }
}

/* The one write in flight finished (status 0 or an error). */
void loom__stream_written(loom_stream *s, int status) {
  s->inflight.len = 0;
  if (s->flags & LOOM_S_CLOSING)
    return; /* Cancelled by uv_close: the close callback follows. */
  if (status < 0) {
    loom__stream_close(s, status);
    return;
  }
  if (s->pending.len > 0)
    start_write(s);
  producer_check(s);
  if (!(s->flags & LOOM_S_CLOSING) && loom__stream_buffered(s) == 0)
    flushed(s);
}

/* Hands the whole pending queue to the io as one write; one is in flight. */
static void start_write(loom_stream *s) {
  loom_buf tmp;
  int rc;
  if (s->inflight.len > 0 || s->pending.len == 0)
    return;
  tmp = s->inflight;
  s->inflight = s->pending;
  s->pending = tmp;
  rc = s->io->write(s, s->inflight.data, s->inflight.len);
  if (rc < 0) {
    s->inflight.len = 0;
    loom__stream_close(s, rc);
  }
}

/*
** Writes data: straight to the socket when nothing is queued (no copy, no
** allocation), and only the part the kernel did not take is queued.
** Returns 0, or a libuv error after which the stream is closing. A write
** that would queue more than max_write bytes aborts the stream instead
** (LOOM_CLOSE_WRITE_FULL): a peer that never reads cannot make us hold
** more; the check costs one comparison, on the queueing path only.
*/
int loom__stream_write(loom_stream *s, const char *data, size_t len) {
  int rc;
  if (s->flags & (LOOM_S_CLOSING | LOOM_S_WRITE_SHUT)) {
    /* Twisted drops writes once the write side is done. A streaming
    ** producer writing in a loop is paused, or it would never stop. */
    if ((s->flags & LOOM_S_HAS_PRODUCER) &&
        !(s->flags & (LOOM_S_PULL_PRODUCER | LOOM_S_PRODUCER_PAUSED))) {
      s->flags |= LOOM_S_PRODUCER_PAUSED;
      s->vt->pause_producer(s, 1);
    }
    return 0;
  }
  if (len == 0)
    return 0;
  /* A pull producer's writes are queued so that draining asks for more. */
  if (loom__stream_buffered(s) == 0 &&
      !(s->flags & (LOOM_S_CONNECTING | LOOM_S_PULL_PRODUCER))) {
    rc = s->io->try_write(s, data, len);
    if (rc == (int)len)
      return 0;
    if (rc < 0 && rc != UV_EAGAIN) {
      loom__stream_close(s, rc);
      return rc;
    }
    if (rc > 0) {
      data += rc;
      len -= (size_t)rc;
    }
  }
  if (loom__stream_buffered(s) + len > s->max_write) {
    loom__stream_close(s, LOOM_CLOSE_WRITE_FULL);
    return UV_ENOBUFS;
  }
  rc = loom__buf_append(&s->pending, data, len);
  if (rc < 0) {
    loom__stream_close(s, rc);
    return rc;
  }
  if (!(s->flags & LOOM_S_CONNECTING))
    start_write(s);
  producer_check(s);
  return 0;
}

int loom__stream_set_producer(loom_stream *s, int kind) {
  s->flags &= ~(LOOM_S_HAS_PRODUCER | LOOM_S_PULL_PRODUCER |
                LOOM_S_PRODUCER_PAUSED);
  if (kind == LOOM_PRODUCER_NONE)
    return 0;
  s->flags |= LOOM_S_HAS_PRODUCER;
  if (kind == LOOM_PRODUCER_PULL) {
    s->flags |= LOOM_S_PULL_PRODUCER;
    return 0;
  }
  if (loom__stream_buffered(s) > s->high_water) {
    s->flags |= LOOM_S_PRODUCER_PAUSED;
    return 1;
  }
  return 0;
}

/* From a listener: a server-side stream, connected from makeConnection on
** (Twisted's Server is), so a close inside it still delivers
** connectionLost. */
void loom__stream_mark_accepted(loom_stream *s) {
  s->flags |= LOOM_S_CONNECTED | LOOM_S_ACCEPTED;
}

/*
** Takes the connection a listener accepted (l->accepted_fd) into s, whose
** vt the caller set: init and open_fd are the kind's (TCP, Unix socket)
** libuv calls. On failure the descriptor stays the listener's, which
** closes it.
*/
int loom__stream_accept(loom_listener *l, loom_stream *s,
                        int (*init)(uv_loop_t *loop, loom_stream *s),
                        int (*open_fd)(loom_stream *s, int fd)) {
  int rc = init(l->st->loop, s);
  if (rc < 0)
    return rc;
  loom__stream_setup(s, l->st, s->vt);
  rc = open_fd(s, l->accepted_fd);
  if (rc < 0) {
    loom__stream_close(s, rc);
    return rc;
  }
  l->accepted_fd = -1;
  return 0;
}

/* The connect callback of every stream kind; req was malloc'd for it. */
void loom__stream_on_connect(uv_connect_t *req, int status) {
  loom_stream *s = req->data;
  free(req);
  if (s->flags & LOOM_S_CLOSING)
    return; /* Cancelled: the close callback reports it. */
  if (status == 0)
    s->flags |= LOOM_S_CONNECTED;
  s->vt->connected(s, status);
}

/* loseConnection: close once everything queued has been written. */
void loom__stream_lose(loom_stream *s) {
  if (s->flags & LOOM_S_CLOSING)
    return;
  if (s->flags & LOOM_S_CONNECTING) {
    loom__stream_close(s, LOOM_CLOSE_CLEAN);
    return;
  }
  /* As Twisted's loseConnection: no more reads, but queued writes go out. */
  loom__stream_pause(s);
  s->flags |= LOOM_S_DISCONNECTING;
  if (loom__stream_buffered(s) == 0)
    flushed(s);
}

/* loseWriteConnection: half-close after the queue drains; keep reading. */
void loom__stream_lose_write(loom_stream *s) {
  if (s->flags & (LOOM_S_CLOSING | LOOM_S_WRITE_SHUT))
    return;
  s->flags |= LOOM_S_WRITE_SHUT;
  if (loom__stream_buffered(s) == 0 && !(s->flags & LOOM_S_CONNECTING))
    flushed(s);
}

/* Closes now; runs once. Queued writes are dropped (libuv cancels them). */
void loom__stream_close(loom_stream *s, int status) {
  if (s->flags & LOOM_S_CLOSING)
    return;
  s->flags |= LOOM_S_CLOSING;
  s->close_status = status;
  loom__object_unlink(&s->obj);
  if (s->flags & LOOM_S_READING) {
    s->io->read_stop(s);
    s->flags &= ~LOOM_S_READING;
  }
  uv_close(&s->h.handle, on_close);
}

/* Memory is freed here only, after the binding delivered connectionLost. */
static void on_close(uv_handle_t *h) {
  loom_stream *s = (loom_stream *)h;
  s->st->nstreams--;
  s->vt->closed(s, s->close_status);
  if (s->io->closed != NULL)
    s->io->closed(s);
  loom__buf_free(&s->pending);
  loom__buf_free(&s->inflight);
  free(s->wreq);
  free(s);
}
