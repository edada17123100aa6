/*
** host_test.c: the C host without Lua: the stream transport, TCP and the
** state's close path, driven through the vtable as bindings/ would.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/internal.h"
#include "check.h"

/* What the test vtable saw; one per stream (the stream's data). */
typedef struct seen {
  loom_buf data;
  int connected;
  int connect_status;
  int closed;
  int close_status;
  int eofs;
  int echo;       /* write back what arrives */
  int pauses, resumes;
} seen;

static seen slots[16];
static int nslots;
static loom_state st;

/* The test's owner data is its slot, where bindings/ keep a ref. */
static seen *seen_of(loom_stream *s) {
  return s->data;
}

static void t_connected(loom_stream *s, int status) {
  seen *w = seen_of(s);
  w->connected = 1;
  w->connect_status = status;
  if (status == 0)
    loom__stream_start(s);
  else
    loom__stream_close(s, status);
}

static void t_data(loom_stream *s, const char *buf, size_t len) {
  seen *w = seen_of(s);
  loom__buf_append(&w->data, buf, len);
  if (w->echo)
    loom__stream_write(s, buf, len);
}

static int t_eof(loom_stream *s) {
  seen_of(s)->eofs++;
  return 0;
}

static void t_pause_producer(loom_stream *s, int pause) {
  if (pause)
    seen_of(s)->pauses++;
  else
    seen_of(s)->resumes++;
}

static void t_closed(loom_stream *s, int status) {
  seen *w = seen_of(s);
  w->closed = 1;
  w->close_status = status;
}

static const loom_stream_vtable test_vt = {
  t_connected, t_data, t_eof, t_pause_producer, t_closed
};

static seen *new_seen(void) {
  seen *w = &slots[nslots++];
  memset(w, 0, sizeof(*w));
  return w;
}

static loom_stream *new_stream(void) {
  loom_stream *s = calloc(1, sizeof(*s));
  s->st = &st;
  s->vt = &test_vt;
  return s;
}

/* Each accepted server stream gets a fresh slot; mode says what it does. */
static int server_echo = 1;
static const char *server_send;
static size_t server_send_len;
static seen *last_server;
static int last_peer_port; /* from the listener's l->peer */

static void on_accept(loom_listener *l, int status) {
  loom_stream *s;
  char host[64];
  if (status < 0)
    return;
  if (l->peer == NULL ||
      loom__sockaddr_format(l->peer, host, sizeof(host), &last_peer_port) < 0)
    last_peer_port = -1;
  s = new_stream();
  if (loom__tcp_accept(l, s) < 0)
    return;
  last_server = new_seen();
  last_server->echo = server_echo;
  s->data = last_server;
  loom__stream_start(s);
  if (server_send != NULL) {
    loom__stream_write(s, server_send, server_send_len);
    loom__stream_lose(s);
  }
}

static int listeners_closed;

static void on_listener_closed(loom_listener *l) {
  listeners_closed++;
  free(l);
}

static loom_listener *listen_any(int *port) {
  loom_listener *l = calloc(1, sizeof(*l));
  char err[128];
  struct sockaddr_storage ss;
  l->on_connection = on_accept;
  l->on_closed = on_listener_closed;
  if (loom__tcp_listen(l, &st, "127.0.0.1", 0, 16, err, sizeof(err)) < 0) {
    fprintf(stderr, "listen: %s\n", err);
    exit(1);
  }
  loom__listener_sockname(l, &ss);
  loom__sockaddr_format((struct sockaddr *)&ss, err, sizeof(err), port);
  return l;
}

static loom_stream *connect_to(int port, seen *w) {
  loom_stream *s = new_stream();
  char err[128];
  int rc = loom__tcp_connect(s, "127.0.0.1", port, NULL, 0, err, sizeof(err));
  s->data = w;
  CHECK(rc == 0);
  return s;
}

/* Runs the loop until cond holds, at most ~2 s of iterations. */
#define RUN_UNTIL(cond)                                                    \
  do {                                                                     \
    int i_;                                                                \
    for (i_ = 0; i_ < 2000 && !(cond); i_++)                               \
      uv_run(st.loop, UV_RUN_ONCE);                                        \
  } while (0)

static void test_echo_and_clean_close(void) {
  int port;
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  RUN_UNTIL(c->connected);
  CHECK(c->connect_status == 0);
  CHECK(loom__stream_write(s, "hello", 5) == 0);
  RUN_UNTIL(c->data.len == 5);
  CHECK(c->data.len == 5 && memcmp(c->data.data, "hello", 5) == 0);
  loom__stream_lose(s);
  RUN_UNTIL(c->closed && last_server->closed);
  CHECK(c->close_status == LOOM_CLOSE_CLEAN);
  CHECK(last_server->close_status == LOOM_CLOSE_CLEAN);
  CHECK(last_server->eofs == 1);
  loom__listener_close(l);
}

static void test_big_write_then_lose(void) {
  static char big[1 << 20];
  int port, i;
  loom_listener *l;
  seen *c = new_seen();
  for (i = 0; i < (int)sizeof(big); i++)
    big[i] = (char)('a' + i % 26);
  server_echo = 0;
  server_send = big;
  server_send_len = sizeof(big);
  l = listen_any(&port);
  connect_to(port, c);
  RUN_UNTIL(c->closed);
  CHECK(c->data.len == sizeof(big));
  CHECK(c->data.len == sizeof(big) &&
        memcmp(c->data.data, big, sizeof(big)) == 0);
  CHECK(c->close_status == LOOM_CLOSE_CLEAN);
  server_send = NULL;
  server_echo = 1;
  loom__listener_close(l);
}

static void test_high_water_signals(void) {
  static char chunk[32768];
  int port, i;
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  RUN_UNTIL(c->connected);
  RUN_UNTIL(last_server != NULL && !last_server->closed);
  loom__stream_pause(s); /* The client reads nothing; echoes pile up. */
  /* Fill the client's own queue past the mark without running the loop. */
  for (i = 0; i < 1024 && c->pauses == 0; i++)
    loom__stream_write(s, chunk, sizeof(chunk));
  CHECK(c->pauses == 1);
  CHECK(loom__stream_buffered(s) > LOOM_HIGH_WATER);
  loom__stream_resume(s);
  RUN_UNTIL(c->resumes == 1);
  CHECK(c->resumes == 1);
  loom__stream_close(s, LOOM_CLOSE_ABORTED);
  RUN_UNTIL(c->closed);
  CHECK(c->close_status == LOOM_CLOSE_ABORTED);
  loom__listener_close(l);
}

/* A write that would queue past max_write aborts the stream instead. */
static void test_write_limit(void) {
  static char chunk[32768];
  int port, i, over = 0;
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  RUN_UNTIL(c->connected);
  RUN_UNTIL(last_server != NULL && !last_server->closed);
  s->max_write = 100000;
  /* The server is not run, so the kernel's buffers fill, then our queue. */
  for (i = 0; i < 4096 && !(s->flags & LOOM_S_CLOSING); i++) {
    loom__stream_write(s, chunk, sizeof(chunk));
    over |= loom__stream_buffered(s) > s->max_write;
  }
  CHECK(!over);
  CHECK(s->flags & LOOM_S_CLOSING);
  RUN_UNTIL(c->closed);
  CHECK(c->close_status == LOOM_CLOSE_WRITE_FULL);
  loom__listener_close(l);
}

/* The listener hands over the address accept(2) gave with the connection. */
static void test_accept_gives_peer_address(void) {
  struct sockaddr_storage ss;
  int port, len = sizeof(ss), client_port = 0;
  char host[64];
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  last_peer_port = 0;
  RUN_UNTIL(c->connected && last_peer_port != 0);
  CHECK(uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len) == 0);
  loom__sockaddr_format((struct sockaddr *)&ss, host, sizeof(host),
                        &client_port);
  CHECK(last_peer_port == client_port && client_port > 0);
  CHECK(l->accepted_fd == -1 && l->peer == NULL);
  loom__stream_close(s, LOOM_CLOSE_ABORTED);
  RUN_UNTIL(c->closed);
  loom__listener_close(l);
  CHECK(l->fd == -1); /* closed at once: a new connect is refused */
}

/* IPv4 addresses format as inet_ntop does; a short buffer is refused. */
static void test_format_ip4(void) {
  static const char *const cases[] = {
    "0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.3.100", "1.2.3.4",
    "192.168.100.9"
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct sockaddr_in a;
    char host[64];
    int port = 0;
    CHECK(uv_ip4_addr(cases[i], 8080, &a) == 0);
    CHECK(loom__sockaddr_format((struct sockaddr *)&a, host, sizeof(host),
                                &port) == 0);
    CHECK(strcmp(host, cases[i]) == 0 && port == 8080);
    CHECK(loom__sockaddr_format((struct sockaddr *)&a, host,
                                strlen(cases[i]), &port) == UV_ENOSPC);
  }
}

static void test_connection_refused(void) {
  int port;
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom__listener_close(l);
  uv_run(st.loop, UV_RUN_NOWAIT);
  connect_to(port, c);
  RUN_UNTIL(c->closed);
  CHECK(c->connected && c->connect_status == UV_ECONNREFUSED);
  CHECK(c->close_status == UV_ECONNREFUSED);
}

static void test_bad_address(void) {
  loom_stream *s = new_stream();
  char err[128];
  int rc = loom__tcp_connect(s, "not-an-ip", 80, NULL, 0, err, sizeof(err));
  CHECK(rc < 0);
  CHECK(strstr(err, "not an IP address") != NULL);
  free(s); /* Never initialised: the caller frees it. */
}

static void test_buf_growth(void) {
  loom_buf b = {0};
  int i;
  for (i = 0; i < 10000; i++)
    if (loom__buf_append(&b, "0123456789", 10) != 0)
      break;
  CHECK(b.len == 100000);
  CHECK(b.cap >= b.len);
  loom__buf_free(&b);
  CHECK(b.data == NULL && b.len == 0);
}

/* What `loom test` reports as left open: a listener until it closes. */
static void test_open_handles(void) {
  int counts[UV_HANDLE_TYPE_MAX], port, before;
  loom_listener *l;
  before = loom__open_handles(&st, counts);
  l = listen_any(&port);
  CHECK_EQ(loom__open_handles(&st, counts), before + 1);
  CHECK_EQ(counts[UV_POLL], 1);
  loom__listener_close(l);
  CHECK_EQ(loom__open_handles(&st, counts), before); /* closing: not open */
  CHECK_EQ(counts[UV_POLL], 0);
  uv_run(st.loop, UV_RUN_NOWAIT); /* Its close callback. */
}

/*
** A layer in the stream's I/O seam (where TLS will go): it counts the
** bytes written through it and upper-cases what it reads before the
** protocol sees it, over the plain socket's io.
*/
static size_t layer_written;

static int layer_try_write(loom_stream *s, const char *data, size_t len) {
  int rc = loom__socket_io.try_write(s, data, len);
  if (rc > 0)
    layer_written += (size_t)rc;
  return rc;
}

static int layer_write(loom_stream *s, const char *data, size_t len) {
  layer_written += len;
  return loom__socket_io.write(s, data, len);
}

static void layer_received(loom_stream *s, ssize_t nread, const char *data) {
  char up[64];
  ssize_t i;
  if (nread <= 0 || nread > (ssize_t)sizeof(up)) {
    loom__stream_received(s, nread, data);
    return;
  }
  for (i = 0; i < nread; i++)
    up[i] = (data[i] >= 'a' && data[i] <= 'z') ? data[i] - 32 : data[i];
  loom__stream_received(s, nread, up);
}

static const loom_stream_io upper_io = {
  "upper", layer_try_write, layer_write, NULL, NULL, NULL, layer_received,
  NULL, NULL, NULL
}; /* the rest is the socket's: see test_io_layer */

static void test_io_layer(void) {
  int port;
  loom_listener *l = listen_any(&port);
  seen *c = new_seen();
  loom_stream *s = connect_to(port, c);
  static loom_stream_io io; /* the socket's, but our two ends; outlives s */
  int closed = listeners_closed;
  io = loom__socket_io;
  io.try_write = upper_io.try_write;
  io.write = upper_io.write;
  io.received = upper_io.received;
  CHECK(s->io == &loom__socket_io);
  loom__stream_set_io(s, &io);
  RUN_UNTIL(c->connected);
  CHECK(loom__stream_write(s, "hello", 5) == 0);
  RUN_UNTIL(c->data.len == 5);
  CHECK(c->data.len == 5 && memcmp(c->data.data, "HELLO", 5) == 0);
  CHECK(layer_written == 5);
  loom__stream_lose(s);
  RUN_UNTIL(c->closed && last_server->closed);
  CHECK(c->close_status == LOOM_CLOSE_CLEAN);
  loom__listener_close(l);
  RUN_UNTIL(listeners_closed == closed + 1);
}

/* Every open host object is in the state's list, by its own header (not
** libuv's handle->data); closing unlinks it. */
static void test_object_list(void) {
  int port;
  loom_listener *l = listen_any(&port);
  loom_object *o;
  int found = 0, closed = listeners_closed;
  for (o = st.objects.next; o != &st.objects; o = o->next)
    if (o == &l->obj)
      found = 1;
  CHECK(found);
  CHECK(strcmp(l->obj.ops->kind, "listener") == 0);
  CHECK(l->h.handle.data == NULL); /* libuv's slot is left alone */
  loom__listener_close(l);
  CHECK(l->obj.next == NULL);
  for (o = st.objects.next; o != &st.objects; o = o->next)
    CHECK(o != &l->obj);
  RUN_UNTIL(listeners_closed == closed + 1);
}

int main(void) {
  CHECK(loom__state_init(&st, NULL) == 0);
  CHECK_EQ(loom__open_handles(&st, (int[UV_HANDLE_TYPE_MAX]){0}), 0);
  test_echo_and_clean_close();
  test_big_write_then_lose();
  test_high_water_signals();
  test_write_limit();
  test_accept_gives_peer_address();
  test_connection_refused();
  test_format_ip4();
  test_bad_address();
  test_buf_growth();
  test_open_handles();
  test_object_list();
  test_io_layer();
  /* A stop before any run (a crash() in a startup trigger) must not keep
  ** the close below from closing what is open. */
  {
    int port, before;
    listen_any(&port);
    before = listeners_closed;
    loom__state_stop(&st);
    loom__state_close(&st); /* Must leave no handle behind. */
    CHECK(listeners_closed == before + 1);
    CHECK(st.objects.next == &st.objects); /* nothing left open */
  }
  CHECK(st.nstreams == 0);
  return check_report();
}
