/*
** tls.c: TLS beneath a stream transport, over OpenSSL memory BIOs.
**
** One transport, not a second one: the TLS io (tls_io) replaces the
** stream's socket io (docs/architecture.md, "The stream's I/O seam").
** What the socket reads is written into the session's read BIO and the
** plaintext SSL_read gives is handed to loom__stream_received; what the
** protocol writes is queued by stream.c as for any socket (the TLS io's
** try_write takes nothing), handed to tls_write as the one write in flight,
** and encrypted at the end of the loop turn, so that many small writes in
** one turn become one batch of records and one socket write (twisted#11989).
** The ciphertext goes to the socket through a write of the layer's own.
**
** Backpressure is the socket's: the stream's write completes once its
** plaintext is encrypted and the layer holds less than TLS_OUT_MAX bytes of
** ciphertext (as the kernel's socket buffer takes bytes), so the stream's
** queue, its high-water mark and max_write work as over TCP.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* Ciphertext the layer holds before the stream's write waits. */
#define TLS_OUT_MAX 65536
/* Plaintext per SSL_write: four full records. */
#define TLS_CHUNK 65536

enum {
  T_HANDSHAKEN = 1 << 0,
  T_FINISHING = 1 << 1,   /* loseConnection: close_notify, then close */
  T_SHUT_PENDING = 1 << 2, /* loseWriteConnection: close_notify, shutdown */
  T_NOTIFY_SENT = 1 << 3, /* SSL_shutdown was called */
  T_PEER_NOTIFY = 1 << 4, /* the peer's close_notify arrived */
  T_IN_READ = 1 << 5      /* in tls_received: it flushes when done */
};

typedef struct loom_tls loom_tls;

/* One per state: the idle handle that flushes sessions written to in this
** loop turn, and the list of those sessions (head: a sentinel). Freed once
** its handle closed and no session uses it. */
typedef struct tls_flusher {
  uv_idle_t h;
  loom_object obj;     /* closed with the state's objects */
  loom_tls *head;
  int sessions;
  int closing, closed; /* uv_close called; its callback ran */
} tls_flusher;

struct loom_tls {
  loom_tls *prev, *next;  /* in the flusher's list while scheduled */
  loom_stream *s;
  tls_flusher *f;
  loom_tls_ctx *c;
  SSL *ssl;
  BIO *rbio, *wbio;       /* network side: we write rbio, read wbio */
  loom_tls_handshake_cb cb;
  unsigned flags;
  const char *sdata;      /* the stream's write in progress (plaintext) */
  size_t slen, soff;
  loom_buf fly;           /* ciphertext of the one uv_write in flight */
  uv_write_t wreq;
  const char *code;       /* why it failed: loom__tls_failure */
  const char *kind;       /* the error name for LOOM_CLOSE_LAYER */
  char why[256];
};

static const loom_stream_io tls_io;

/* ------------------------------------------------------ the flush list */

static void flush(loom_tls *t);

static void unschedule(loom_tls *t) {
  if (t->prev == NULL)
    return;
  t->prev->next = t->next;
  t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

/* Flushes every session scheduled before this turn's idle phase; those
** scheduled meanwhile wait for the next turn (the idle handle keeps the
** loop from blocking until then). */
static void on_idle(uv_idle_t *h) {
  tls_flusher *f = (tls_flusher *)(void *)h;
  loom_tls *head = f->head;
  loom_tls batch;
  if (head->next == head) {
    uv_idle_stop(h);
    return;
  }
  batch.next = head->next;
  batch.prev = head->prev;
  batch.next->prev = &batch;
  batch.prev->next = &batch;
  head->next = head->prev = head;
  while (batch.next != &batch)
    flush(batch.next); /* unschedules it first */
  if (head->next == head)
    uv_idle_stop(h);
}

static void schedule(loom_tls *t) {
  tls_flusher *f = t->f;
  loom_tls *head = f->head;
  if (t->prev != NULL || f->closing)
    return;
  if (head->next == head)
    uv_idle_start(&f->h, on_idle);
  t->prev = head->prev;
  t->next = head;
  head->prev->next = t;
  head->prev = t;
}

static void flusher_free(tls_flusher *f) {
  free(f->head);
  free(f);
}

static void on_flusher_closed(uv_handle_t *h) {
  tls_flusher *f = (tls_flusher *)(void *)h;
  f->closed = 1;
  if (f->sessions == 0)
    flusher_free(f);
}

static void flusher_close(tls_flusher *f) {
  if (f->closing)
    return;
  f->closing = 1;
  loom__object_unlink(&f->obj);
  uv_close((uv_handle_t *)&f->h, on_flusher_closed);
}

/* The state closes: so does the handle (sessions still open keep the
** memory until they close). */
static void flusher_close_op(loom_object *o) {
  flusher_close(loom__object_of(o, tls_flusher, obj));
}

static const loom_object_ops flusher_ops = { "tls", NULL, flusher_close_op };

/* The state's flusher, made with its first session. Its handle is not
** referenced: it never keeps the loop alive by itself, nor counts as left
** open (core.openHandles). */
static tls_flusher *flusher_ref(loom_state *st) {
  tls_flusher *f = st->tls;
  if (f == NULL || f->closing) {
    if ((f = calloc(1, sizeof(*f))) == NULL)
      return NULL;
    if ((f->head = calloc(1, sizeof(*f->head))) == NULL) {
      free(f);
      return NULL;
    }
    f->head->next = f->head->prev = f->head;
    uv_idle_init(st->loop, &f->h);
    uv_unref((uv_handle_t *)&f->h);
    loom__object_link(st, &f->obj, &flusher_ops);
    st->tls = f;
  }
  f->sessions++;
  return f;
}

/* A session is gone; with the last, the handle goes too (none is left
** open between connections). */
static void flusher_unref(loom_state *st, tls_flusher *f) {
  if (--f->sessions > 0)
    return;
  if (st->tls == f)
    st->tls = NULL;
  if (!f->closing)
    flusher_close(f);
  else if (f->closed)
    flusher_free(f);
}

/* ------------------------------------------------------------- failure */

/* The failure: kind (LOOM_CLOSE_LAYER's error name), code
** (loom__tls_failure's) and the message, what .. detail. */
static void set_error(loom_tls *t, const char *kind, const char *code,
                      const char *what, const char *detail) {
  t->kind = kind;
  t->code = code;
  snprintf(t->why, sizeof(t->why), "%s%s", what, detail);
}

static const char *verify_code(long v) {
  switch (v) {
  case X509_V_ERR_CERT_HAS_EXPIRED: return "expired";
  case X509_V_ERR_CERT_NOT_YET_VALID: return "notYetValid";
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH: return "hostnameMismatch";
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED: return "unknownCA";
  default: return "verifyFailed";
  }
}

/* Why the handshake failed, in words: the verification's result first,
** else OpenSSL's reason ("wrong version number", "tlsv1 alert unknown
** ca", ...), never its raw error stack. */
static void describe_failure(loom_tls *t) {
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK) {
    ERR_clear_error();
    set_error(t, "ETLS", verify_code(v), "certificate verify failed: ",
              X509_verify_cert_error_string(v));
  } else {
    set_error(t, "ETLS", "handshakeFailure", "handshake failure: ",
              loom__tls_reason());
  }
}

static void send_now(loom_tls *t);

/* The handshake failed: tell the owner, send the alert if the socket
** takes it now, close. */
static void handshake_failed(loom_tls *t) {
  loom_stream *s = t->s;
  send_now(t);
  t->cb(s, 0);
  loom__stream_close(s, LOOM_CLOSE_LAYER);
}

/* --------------------------------------------------------- the pump */

/* Ciphertext SSL wrote and the socket has not taken: in the wbio, and in
** the uv_write in flight. */
static size_t held(loom_tls *t) {
  return BIO_ctrl_pending(t->wbio) + t->fly.len;
}

static void on_tls_write(uv_write_t *req, int status) {
  loom_tls *t = req->data;
  t->fly.len = 0;
  if (loom__stream_closing(t->s))
    return; /* cancelled by the close */
  if (status < 0) {
    loom__stream_close(t->s, status);
    return;
  }
  if (BIO_ctrl_pending(t->wbio) == 0)
    loom__buf_free(&t->fly); /* idle again: hold no buffer */
  flush(t);
}

/*
** Gives the wbio's ciphertext to the socket: read out through the loop's
** read buffer (free outside a read callback's delivery: what it held was
** copied into a Lua string), what the kernel takes now goes at once, the
** rest into t->fly for one uv_write. The connection holds a ciphertext
** buffer of its own only while the socket is slower than we write.
** Returns 1 when all of it was taken, 0 when a write is in flight
** (on_tls_write flushes again) or the stream is closing.
*/
static int send_out(loom_tls *t) {
  loom_stream *s = t->s;
  char *scratch = s->st->readbuf;
  if (t->fly.len > 0)
    return 0;
  for (;;) {
    int n = BIO_read(t->wbio, scratch, LOOM_READ_BUFSIZE), rc;
    uv_buf_t b;
    if (n <= 0)
      return 1;
    b = loom__write_buf(scratch, (size_t)n);
    rc = uv_try_write(&s->h.stream, &b, 1);
    if (rc == UV_EAGAIN)
      rc = 0;
    if (rc < 0) {
      loom__stream_close(s, rc);
      return 0;
    }
    if (rc == n)
      continue;
    if (loom__buf_append(&t->fly, scratch + rc, (size_t)(n - rc)) < 0) {
      loom__stream_close(s, UV_ENOMEM);
      return 0;
    }
    while ((n = BIO_read(t->wbio, scratch, LOOM_READ_BUFSIZE)) > 0)
      if (loom__buf_append(&t->fly, scratch, (size_t)n) < 0) {
        loom__stream_close(s, UV_ENOMEM);
        return 0;
      }
    b = loom__write_buf(t->fly.data, t->fly.len);
    t->wreq.data = t;
    rc = uv_write(&t->wreq, &s->h.stream, &b, 1, on_tls_write);
    if (rc < 0) {
      t->fly.len = 0;
      loom__stream_close(s, rc);
    }
    return 0;
  }
}

/* Sends what the socket takes now, dropping the rest: before a close. */
static void send_now(loom_tls *t) {
  char *scratch = t->s->st->readbuf;
  int n;
  if (t->fly.len > 0 || loom__stream_closing(t->s))
    return;
  while ((n = BIO_read(t->wbio, scratch, LOOM_READ_BUFSIZE)) > 0) {
    uv_buf_t b = loom__write_buf(scratch, (size_t)n);
    if (uv_try_write(&t->s->h.stream, &b, 1) != n)
      break;
  }
}

/* A new, empty mem BIO in place of bio, once it is empty and grew past a
** few KiB (the handshake's flights, a bulk transfer): a mem BIO keeps the
** largest buffer it ever held, and an idle connection should hold little. */
static BIO *trim_bio(BIO *bio) {
  BUF_MEM *bm = NULL;
  BIO *fresh;
  if (BIO_ctrl_pending(bio) > 0 || BIO_get_mem_ptr(bio, &bm) <= 0 ||
      bm == NULL || bm->max <= 4096 || (fresh = BIO_new(BIO_s_mem())) == NULL)
    return NULL;
  BIO_set_mem_eof_return(fresh, -1);
  return fresh;
}

static void trim_bios(loom_tls *t) {
  BIO *b;
  if ((b = trim_bio(t->rbio)) != NULL) {
    SSL_set0_rbio(t->ssl, b); /* frees the old one */
    t->rbio = b;
  }
  if ((b = trim_bio(t->wbio)) != NULL) {
    SSL_set0_wbio(t->ssl, b);
    t->wbio = b;
  }
}

/* A TLS error on an established connection: close with it. */
static void fail(loom_tls *t, const char *what) {
  set_error(t, "ETLS", "protocolError", "", what);
  send_now(t);
  loom__stream_close(t->s, LOOM_CLOSE_LAYER);
}

/*
** Encrypts the stream's write while the layer holds less than TLS_OUT_MAX
** of ciphertext; a write fully encrypted is complete for the stream (which
** may hand the next one at once). Then the close_notify a loseConnection or
** loseWriteConnection asked for, once nothing is left to encrypt.
*/
static void encrypt(loom_tls *t) {
  loom_stream *s = t->s;
  while (t->sdata != NULL && held(t) < TLS_OUT_MAX) {
    size_t n = t->slen - t->soff;
    int w;
    if (t->flags & T_NOTIFY_SENT) {
      t->soff = t->slen; /* written after our close_notify: dropped */
    } else {
      if (n > TLS_CHUNK)
        n = TLS_CHUNK;
      w = SSL_write(t->ssl, t->sdata + t->soff, (int)n);
      if (w <= 0) {
        fail(t, loom__tls_reason());
        return;
      }
      t->soff += (size_t)w;
    }
    if (t->soff == t->slen) {
      t->sdata = NULL;
      loom__stream_written(s, 0); /* may write, finish or close */
      if (loom__stream_closing(s))
        return;
    }
  }
  if (t->sdata == NULL && (t->flags & (T_FINISHING | T_SHUT_PENDING)) &&
      !(t->flags & T_NOTIFY_SENT)) {
    t->flags |= T_NOTIFY_SENT;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
  }
}

/* The protocol reads again: deliver what is already decrypted or read. */
static int input_pending(loom_tls *t) {
  return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

/*
** The peer's close_notify: the end of its input, as the socket's EOF is
** (stream.c's loom__stream_received). A protocol that does not keep the
** connection half-open closes it: ours is sent first, as peers that wait
** for it (Python's unwrap) expect. A half-closing protocol may still
** write; ours follows when it closes.
*/
static void peer_notified(loom_tls *t) {
  loom_stream *s = t->s;
  t->flags |= T_PEER_NOTIFY;
  s->io->read_stop(s);
  s->flags &= ~LOOM_S_READING;
  if (loom__stream_closing(s) ||
      (s->vt->eof(s) && !(s->flags & LOOM_S_SHUT_SENT)))
    return;
  if (!(t->flags & T_NOTIFY_SENT)) {
    t->flags |= T_NOTIFY_SENT;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    send_now(t);
  }
  loom__stream_close(s, LOOM_CLOSE_CLEAN);
}

/*
** Decrypts into the loop's read buffer (its ciphertext was copied into the
** rbio) and delivers up to a full buffer at a time: one dataReceived for
** several records that arrived together.
*/
static void read_plaintext(loom_tls *t) {
  loom_stream *s = t->s;
  char *buf = s->st->readbuf;
  while ((s->flags & LOOM_S_READING) && !loom__stream_closing(s)) {
    size_t got = 0;
    int n = 0, e = SSL_ERROR_NONE;
    while (got < LOOM_READ_BUFSIZE) {
      n = SSL_read(t->ssl, buf + got, (int)(LOOM_READ_BUFSIZE - got));
      if (n <= 0) {
        e = SSL_get_error(t->ssl, n);
        break;
      }
      got += (size_t)n;
    }
    if (got > 0) {
      loom__stream_received(s, (ssize_t)got, buf);
      if (!(s->flags & LOOM_S_READING) || loom__stream_closing(s))
        return; /* an error, if any, is met again at the next read */
    }
    if (e == SSL_ERROR_NONE)
      continue; /* the buffer filled: more may be there */
    if (e == SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      return;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
      peer_notified(t);
    else
      fail(t, loom__tls_reason());
    return;
  }
}

/*
** The session's turn: deliver pending input to a reading protocol, encrypt
** and send what the stream handed over, and finish a close once all is out.
*/
static void flush(loom_tls *t) {
  loom_stream *s = t->s;
  unschedule(t);
  if (loom__stream_closing(s) || !(t->flags & T_HANDSHAKEN))
    return;
  if ((s->flags & LOOM_S_READING) && input_pending(t)) {
    read_plaintext(t);
    if (loom__stream_closing(s))
      return;
  }
  for (;;) {
    encrypt(t);
    if (loom__stream_closing(s) || !send_out(t))
      return;
    if (t->sdata == NULL)
      break;
  }
  if (!(t->flags & T_NOTIFY_SENT))
    return;
  if (t->flags & T_FINISHING) {
    loom__stream_close(s, LOOM_CLOSE_CLEAN);
  } else if (t->flags & T_SHUT_PENDING) {
    int rc;
    t->flags &= ~T_SHUT_PENDING;
    rc = loom__socket_io.shutdown(s);
    if (rc < 0)
      loom__stream_close(s, rc == UV_ENOMEM ? rc : LOOM_CLOSE_CLEAN);
  }
}

static void handshake(loom_tls *t) {
  loom_stream *s = t->s;
  int rc = SSL_do_handshake(t->ssl), e;
  if (rc == 1) {
    t->flags |= T_HANDSHAKEN;
    t->cb(s, 1); /* the protocol is attached: it may write or close */
    if (!loom__stream_closing(s))
      flush(t);
    if (!loom__stream_closing(s))
      trim_bios(t);
    return;
  }
  e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    send_out(t);
    return;
  }
  describe_failure(t);
  handshake_failed(t);
}

/* ------------------------------------------------------------- the io */

/* Nothing is taken now: stream.c queues the bytes and hands them to
** tls_write, which encrypts the turn's writes together. */
static int tls_try_write(loom_stream *s, const char *data, size_t len) {
  (void)s;
  (void)data;
  (void)len;
  return UV_EAGAIN;
}

static int tls_write(loom_stream *s, const char *data, size_t len) {
  loom_tls *t = s->layer;
  t->sdata = data;
  t->slen = len;
  t->soff = 0;
  if (!(t->flags & T_IN_READ)) /* else flushed once the read is done */
    schedule(t);
  return 0;
}

static int tls_shutdown(loom_stream *s) {
  loom_tls *t = s->layer;
  if (!(t->flags & T_HANDSHAKEN))
    return loom__socket_io.shutdown(s);
  t->flags |= T_SHUT_PENDING;
  schedule(t);
  return 0;
}

static int tls_finish(loom_stream *s) {
  loom_tls *t = s->layer;
  if (!(t->flags & T_HANDSHAKEN))
    return 0; /* nothing to notify: close now */
  t->flags |= T_FINISHING;
  schedule(t);
  return 1;
}

static int tls_read_start(loom_stream *s) {
  loom_tls *t = s->layer;
  int rc = loom__socket_io.read_start(s);
  if (rc == 0 && (t->flags & T_HANDSHAKEN) && input_pending(t))
    schedule(t); /* read while paused: delivered in the flush */
  return rc;
}

static void tls_read_stop(loom_stream *s) {
  loom__socket_io.read_stop(s);
}

static void tls_received(loom_stream *s, ssize_t nread, const char *data) {
  loom_tls *t = s->layer;
  if (nread > 0) {
    if (BIO_write(t->rbio, data, (int)nread) != (int)nread) {
      loom__stream_close(s, UV_ENOMEM);
      return;
    }
    if (!(t->flags & T_HANDSHAKEN)) {
      handshake(t);
      return; /* its flush read what came with the last flight */
    }
    t->flags |= T_IN_READ;
    read_plaintext(t);
    t->flags &= ~T_IN_READ;
    /* Send at once what the protocol wrote in reply (an echo), with the
    ** rest of its writes of this read. */
    if (!loom__stream_closing(s) &&
        (t->sdata != NULL || t->prev != NULL ||
         BIO_ctrl_pending(t->wbio) > 0))
      flush(t);
    if (!loom__stream_closing(s))
      trim_bios(t);
    return;
  }
  if (!(t->flags & T_HANDSHAKEN)) {
    set_error(t, "ETLS", "handshakeFailure", "handshake failure: ",
              nread == UV_EOF ? "the peer closed the connection"
                              : uv_strerror((int)nread));
    handshake_failed(t);
    return;
  }
  if (nread == UV_EOF && !(t->flags & T_PEER_NOTIFY)) {
    set_error(t, "ETLSTRUNCATED", "truncated", "",
              "the peer closed the connection without a TLS close_notify"
              " (what it sent may be truncated)");
    loom__stream_close(s, LOOM_CLOSE_LAYER);
    return;
  }
  loom__stream_received(s, nread, data);
}

static const char *tls_error(loom_stream *s, const char **kind) {
  loom_tls *t = s->layer;
  *kind = t->kind ? t->kind : "ETLS";
  return t->why;
}

/* The stream is being freed: so is its session. */
static void tls_closed(loom_stream *s) {
  loom_tls *t = s->layer;
  unschedule(t);
  SSL_free(t->ssl); /* frees both BIOs */
  loom__tls_ctx_release(t->c);
  loom__buf_free(&t->fly);
  flusher_unref(s->st, t->f);
  free(t);
  s->layer = NULL;
  loom__stream_set_io(s, &loom__socket_io);
}

static const loom_stream_io tls_io = {
  "tls", tls_try_write, tls_write, tls_shutdown, tls_read_start,
  tls_read_stop, tls_received, tls_finish, tls_error, tls_closed
};

/* ---------------------------------------------------------- sessions */

static int is_ip_literal(const char *name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name, buf) == 1 ||
         inet_pton(AF_INET6, name, buf) == 1;
}

static int set_peer_name(loom_tls *t, const char *name) {
  if (is_ip_literal(name))
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
  return SSL_set_tlsext_host_name(t->ssl, name) == 1 &&
         SSL_set1_host(t->ssl, name) == 1;
}

int loom__tls_start(loom_stream *s, loom_tls_ctx *c, const char *name,
                    loom_tls_handshake_cb cb, char *err, size_t errlen) {
  loom_tls *t;
  if (s->layer != NULL || s->io != &loom__socket_io) {
    snprintf(err, errlen, "the connection is already under TLS");
    return -1;
  }
  if ((t = calloc(1, sizeof(*t))) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  t->ssl = loom__tls_ctx_new_ssl(c);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    t->rbio = t->wbio = NULL;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  BIO_set_mem_eof_return(t->rbio, -1); /* empty: "retry", not EOF */
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  if (!loom__tls_ctx_is_server(c) && name != NULL &&
      !set_peer_name(t, name)) {
    snprintf(err, errlen, "bad host name %s", name);
    goto fail;
  }
  if (loom__tls_ctx_is_server(c))
    SSL_set_accept_state(t->ssl);
  else
    SSL_set_connect_state(t->ssl);
  /* Bytes written before STARTTLS go out first, in clear: ahead of the
  ** handshake's in the wbio. */
  if ((s->pending.len > 0 &&
       BIO_write(t->wbio, s->pending.data, (int)s->pending.len) !=
           (int)s->pending.len) ||
      (t->f = flusher_ref(s->st)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  s->pending.len = 0;
  t->s = s;
  t->c = c;
  loom__tls_ctx_retain(c);
  t->cb = cb;
  s->layer = t;
  loom__stream_set_io(s, &tls_io);
  if (!loom__tls_ctx_is_server(c))
    handshake(t); /* the ClientHello */
  else if (BIO_ctrl_pending(t->wbio) > 0)
    send_out(t);
  return 0;
fail:
  SSL_free(t->ssl); /* and the BIOs it was given */
  free(t);
  ERR_clear_error();
  return -1;
}

const char *loom__tls_failure(loom_stream *s, const char **code) {
  loom_tls *t = s->layer;
  *code = t != NULL && t->code != NULL ? t->code : "handshakeFailure";
  return t != NULL ? t->why : "not a TLS connection";
}

SSL *loom__tls_ssl(loom_stream *s) {
  return s->io == &tls_io ? ((loom_tls *)s->layer)->ssl : NULL;
}

int loom__tls_handshake_done(loom_stream *s) {
  return s->io == &tls_io &&
         (((loom_tls *)s->layer)->flags & T_HANDSHAKEN) != 0;
}
