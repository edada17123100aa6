/*
** tls_test.c: host/tls.c without Lua: contexts from PEM files, a TLS echo
** over loopback through the stream vtable, a failed verification, a peer
** that closes without close_notify, and the flusher's life. The
** certificate is made at test time by the openssl command.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/tls.h"
#include "check.h"

typedef struct seen {
  loom_buf data;
  int handshakes, failures;
  const char *code;
  char why[256];
  int closed, close_status;
  const char *close_kind;
  char close_why[256];
  int echo;
} seen;

static loom_state st;
static seen slots[8];
static int nslots;
static loom_tls_ctx *server_ctx, *client_ctx;
static const char *client_name = "localhost";
static seen *last_server;
static char dir[64];

static seen *new_seen(void) {
  seen *w = &slots[nslots++];
  memset(w, 0, sizeof(*w));
  return w;
}

static void on_handshake(loom_stream *s, int ok) {
  seen *w = s->data;
  if (ok) {
    w->handshakes++;
  } else {
    w->failures++;
    snprintf(w->why, sizeof(w->why), "%s", loom__tls_failure(s, &w->code));
  }
}

static void t_connected(loom_stream *s, int status) {
  char err[256];
  if (status < 0) {
    loom__stream_close(s, status);
    return;
  }
  CHECK(loom__tls_start(s, client_ctx, client_name, on_handshake, err,
                        sizeof(err)) == 0);
  loom__stream_start(s);
}

static void t_data(loom_stream *s, const char *buf, size_t len) {
  seen *w = s->data;
  loom__buf_append(&w->data, buf, len);
  if (w->echo)
    loom__stream_write(s, buf, len);
}

static int t_eof(loom_stream *s) {
  (void)s;
  return 0;
}

static void t_pause(loom_stream *s, int pause) {
  (void)s;
  (void)pause;
}

static void t_closed(loom_stream *s, int status) {
  seen *w = s->data;
  w->closed = 1;
  w->close_status = status;
  if (status == LOOM_CLOSE_LAYER)
    snprintf(w->close_why, sizeof(w->close_why), "%s",
             s->io->error(s, &w->close_kind));
}

static const loom_stream_vtable vt = {
  t_connected, t_data, t_eof, t_pause, t_closed
};

static void on_accept(loom_listener *l, int status) {
  loom_stream *s;
  char err[256];
  if (status < 0)
    return;
  s = calloc(1, sizeof(*s));
  s->vt = &vt;
  if (loom__tcp_accept(l, s) < 0)
    return;
  last_server = new_seen();
  last_server->echo = 1;
  s->data = last_server;
  loom__stream_mark_accepted(s);
  CHECK(loom__tls_start(s, server_ctx, NULL, on_handshake, err,
                        sizeof(err)) == 0);
  loom__stream_start(s);
}

static void on_listener_closed(loom_listener *l) {
  free(l);
}

#define RUN_UNTIL(cond)                                         \
  do {                                                          \
    int n_ = 0;                                                 \
    while (!(cond) && n_++ < 2000)                              \
      uv_run(st.loop, UV_RUN_ONCE);                             \
    CHECK(cond);                                                \
  } while (0)

static char path_buf[4][128];

static const char *path(int i, const char *name) {
  snprintf(path_buf[i], sizeof(path_buf[i]), "%s/%s", dir, name);
  return path_buf[i];
}

/* A self-signed P-256 certificate for localhost and 127.0.0.1. */
static int make_cert(void) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
           " -nodes -keyout %s/key.pem -out %s/cert.pem -days 2"
           " -subj /CN=localhost"
           " -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
           " >/dev/null 2>&1", dir, dir);
  return system(cmd);
}

static void test_contexts(void) {
  loom_tls_config cfg;
  char err[256];
  memset(&cfg, 0, sizeof(cfg));
  cfg.server = 1;
  CHECK(loom__tls_ctx_new(&cfg, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "needs a certificate") != NULL);
  cfg.certificate = path(0, "missing.pem");
  cfg.private_key = path(1, "key.pem");
  CHECK(loom__tls_ctx_new(&cfg, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "missing.pem: No such file or directory") != NULL);
  cfg.certificate = path(0, "cert.pem");
  server_ctx = loom__tls_ctx_new(&cfg, err, sizeof(err));
  CHECK(server_ctx != NULL);
  memset(&cfg, 0, sizeof(cfg));
  cfg.ca_file = path(2, "cert.pem"); /* self-signed: its own CA */
  cfg.verify = 1;
  client_ctx = loom__tls_ctx_new(&cfg, err, sizeof(err));
  CHECK(client_ctx != NULL);
}

static loom_listener *listen_any(int *port) {
  loom_listener *l = calloc(1, sizeof(*l));
  char err[128];
  struct sockaddr_storage ss;
  l->on_connection = on_accept;
  l->on_closed = on_listener_closed;
  CHECK(loom__tcp_listen(l, &st, "127.0.0.1", 0, 16, err, sizeof(err)) == 0);
  loom__listener_sockname(l, &ss);
  loom__sockaddr_format((struct sockaddr *)&ss, err, sizeof(err), port);
  return l;
}

static loom_stream *connect_to(int port, seen *w) {
  loom_stream *s = calloc(1, sizeof(*s));
  char err[128];
  s->st = &st;
  s->vt = &vt;
  s->data = w;
  CHECK(loom__tcp_connect(s, "127.0.0.1", port, NULL, 0, err,
                          sizeof(err)) == 0);
  return s;
}

/* 100 small writes in one turn, echoed; loseConnection: clean both ways. */
static void test_echo(int port) {
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  int i;
  RUN_UNTIL(c->handshakes == 1);
  CHECK(loom__tls_handshake_done(s));
  CHECK(loom__tls_ssl(s) != NULL);
  CHECK(st.tls != NULL); /* the flusher lives while sessions do */
  for (i = 0; i < 100; i++)
    CHECK(loom__stream_write(s, "hello", 5) == 0);
  CHECK(loom__stream_buffered(s) == 500); /* queued until the turn ends */
  RUN_UNTIL(c->data.len == 500);
  CHECK(memcmp(c->data.data, "hellohello", 10) == 0);
  loom__stream_lose(s);
  RUN_UNTIL(c->closed && last_server->closed);
  CHECK_EQ(c->close_status, LOOM_CLOSE_CLEAN);
  /* The client's close_notify arrived: a clean end for the server too. */
  CHECK_EQ(last_server->close_status, LOOM_CLOSE_CLEAN);
  CHECK_EQ(last_server->handshakes, 1);
  RUN_UNTIL(st.tls == NULL); /* the last session took the flusher along */
  loom__buf_free(&c->data);
  loom__buf_free(&last_server->data);
}

static void test_wrong_name(int port) {
  seen *c = new_seen();
  client_name = "wrong.test";
  connect_to(port, c);
  RUN_UNTIL(c->closed);
  client_name = "localhost";
  CHECK_EQ(c->failures, 1);
  CHECK(c->code != NULL && strcmp(c->code, "hostnameMismatch") == 0);
  CHECK(strstr(c->why, "certificate verify failed: hostname mismatch") !=
        NULL);
  CHECK_EQ(c->close_status, LOOM_CLOSE_LAYER);
  CHECK(strcmp(c->close_kind, "ETLS") == 0);
  RUN_UNTIL(last_server->closed);
  CHECK_EQ(last_server->failures, 1);
}

static void test_truncated(int port) {
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  RUN_UNTIL(c->handshakes == 1 && last_server->handshakes == 1);
  /* An echo first: the server's session tickets are read by then, or the
  ** close with them unread would be a reset, not a FIN. */
  CHECK(loom__stream_write(s, "x", 1) == 0);
  RUN_UNTIL(c->data.len == 1);
  loom__stream_close(s, LOOM_CLOSE_CLEAN); /* a FIN, no close_notify */
  RUN_UNTIL(c->closed && last_server->closed);
  CHECK_EQ(last_server->close_status, LOOM_CLOSE_LAYER);
  CHECK(strcmp(last_server->close_kind, "ETLSTRUNCATED") == 0);
  CHECK(strstr(last_server->close_why, "without a TLS close_notify") != NULL);
}

int main(void) {
  int port;
  loom_listener *l;
  char cmd[128];
  snprintf(dir, sizeof(dir), "/tmp/loom-tls-test.XXXXXX");
  if (mkdtemp(dir) == NULL || make_cert() != 0) {
    fprintf(stderr, "tls_test: cannot make a certificate with openssl\n");
    return 1;
  }
  CHECK(loom__state_init(&st, NULL) == 0);
  test_contexts();
  l = listen_any(&port);
  test_echo(port);
  test_wrong_name(port);
  test_truncated(port);
  loom__listener_close(l);
  loom__tls_ctx_release(server_ctx);
  loom__tls_ctx_release(client_ctx);
  loom__state_stop(&st);
  loom__state_close(&st);
  CHECK(st.nstreams == 0);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "tls_test: could not remove %s\n", dir);
  return check_report();
}
