/*
** transports_test.c: host/ without Lua for Unix sockets, UDP, processes,
** the thread pool and the resolver, driven through their vtables as
** bindings/ would. Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../host/internal.h"
#include "check.h"

static loom_state st;

/* Runs the loop until *flag is set, at most 5 seconds. */
static void run_until(int *flag) {
  uint64_t deadline = uv_hrtime() + 5000000000ULL;
  while (!*flag && uv_hrtime() < deadline)
    uv_run(st.loop, UV_RUN_NOWAIT);
}

/* lstat: the lock is a symlink to a pid, not to a file. */
static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

/* ---------------------------------------------------------------- UDP */

static char udp_got[64];
static int udp_from_port, udp_seen, udp_refused, udp_closed;

static void u_datagram(loom_udp *u, const char *buf, size_t len,
                       const struct sockaddr *from) {
  char host[64];
  (void)u;
  if (len < sizeof(udp_got)) {
    memcpy(udp_got, buf, len);
    udp_got[len] = '\0';
  }
  loom__sockaddr_format(from, host, sizeof(host), &udp_from_port);
  udp_seen = 1;
}

static void u_refused(loom_udp *u) {
  (void)u;
  udp_refused = 1;
}

static void u_closed(loom_udp *u) {
  (void)u;
  udp_closed++;
}

static const loom_udp_vtable udp_vt = { u_datagram, u_refused, u_closed };

static loom_udp *udp_open(void) {
  loom_udp *u = calloc(1, sizeof(*u));
  char err[128];
  u->vt = &udp_vt;
  CHECK(loom__udp_bind(u, &st, "127.0.0.1", 0, err, sizeof(err)) == 0);
  return u;
}

static int udp_port(loom_udp *u) {
  struct sockaddr_storage ss;
  char host[64];
  int len = sizeof(ss), port = 0;
  uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len);
  loom__sockaddr_format((struct sockaddr *)&ss, host, sizeof(host), &port);
  return port;
}

static void test_udp_send_receive(void) {
  loom_udp *a = udp_open(), *b = udp_open();
  struct sockaddr_storage to;
  loom__sockaddr_parse("127.0.0.1", udp_port(b), &to);
  CHECK(loom__udp_send(a, "ping", 4, (struct sockaddr *)&to) == 0);
  run_until(&udp_seen);
  CHECK(strcmp(udp_got, "ping") == 0);
  CHECK(udp_from_port == udp_port(a));
  loom__udp_close(a);
  loom__udp_close(b);
  uv_run(st.loop, UV_RUN_NOWAIT);
  CHECK(udp_closed == 2);
}

static void test_udp_connected_refused(void) {
  loom_udp *gone = udp_open(), *c = udp_open();
  struct sockaddr_storage to;
  int i;
  loom__sockaddr_parse("127.0.0.1", udp_port(gone), &to);
  loom__udp_close(gone);
  CHECK(loom__udp_connect(c, (struct sockaddr *)&to) == 0);
  for (i = 0; i < 50 && !udp_refused; i++) {
    int rc = loom__udp_send(c, "x", 1, NULL);
    if (rc == UV_ECONNREFUSED)
      udp_refused = 1;
    uv_run(st.loop, UV_RUN_NOWAIT);
    uv_sleep(10);
  }
  CHECK(udp_refused);
  loom__udp_close(c);
  uv_run(st.loop, UV_RUN_NOWAIT);
}

/* ------------------------------------------------------- Unix sockets */

static int unix_accepted, unix_closed_listener;
static loom_stream *unix_server_side;

static void s_connected(loom_stream *s, int status) {
  (void)status;
  loom__stream_start(s);
}
static void s_data(loom_stream *s, const char *buf, size_t len) {
  loom__stream_write(s, buf, len); /* echo */
}
static int s_eof(loom_stream *s) {
  (void)s;
  return 0;
}
static void s_pause_producer(loom_stream *s, int pause) {
  (void)s;
  (void)pause;
}
static void s_closed(loom_stream *s, int status) {
  (void)s;
  (void)status;
}
static const loom_stream_vtable echo_vt = {
  s_connected, s_data, s_eof, s_pause_producer, s_closed
};

static char client_got[64];
static int client_done;
static void c_data(loom_stream *s, const char *buf, size_t len) {
  (void)s;
  memcpy(client_got, buf, len < 63 ? len : 63);
  client_done = 1;
}
static const loom_stream_vtable client_vt = {
  s_connected, c_data, s_eof, s_pause_producer, s_closed
};

static void on_unix_connection(loom_listener *l, int status) {
  loom_stream *s = calloc(1, sizeof(*s));
  (void)status;
  s->vt = &echo_vt;
  if (loom__unix_accept(l, s) == 0) {
    loom__stream_start(s);
    unix_server_side = s;
    unix_accepted = 1;
  }
}

static void on_unix_closed(loom_listener *l) {
  unix_closed_listener = 1;
  free(l);
}

static void test_unix_echo_and_cleanup(void) {
  char dir[] = "/tmp/loom-ctest-......", path[128], lock[140], err[256];
  loom_unix_listener *u = calloc(1, sizeof(*u));
  loom_stream *c = calloc(1, sizeof(*c));
  memset(strchr(dir, '.'), 'X', 6); /* mkdtemp's template suffix */
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/s.sock", dir);
  snprintf(lock, sizeof(lock), "%s.lock", path);
  u->l.on_connection = on_unix_connection;
  u->l.on_closed = on_unix_closed;
  CHECK(loom__unix_listen(u, &st, path, 8, 0600, 1, err, sizeof(err)) == 0);
  CHECK(exists(path) && exists(lock));
  CHECK(loom__unix_lock_held(path));
  c->st = &st;
  c->vt = &client_vt;
  CHECK(loom__unix_connect(c, path) == 0);
  run_until(&unix_accepted);
  loom__stream_write(c, "over unix", 9);
  run_until(&client_done);
  CHECK(strcmp(client_got, "over unix") == 0);
  loom__stream_close(c, LOOM_CLOSE_CLEAN);
  loom__stream_close(unix_server_side, LOOM_CLOSE_CLEAN);
  loom__listener_close(&u->l);
  run_until(&unix_closed_listener);
  CHECK(!exists(path) && !exists(lock));
  rmdir(dir);
}

/* ---------------------------------------------------------- processes */

static char proc_out[256];
static size_t proc_len;
static int proc_fds_closed, proc_exited, proc_ended;
static int64_t proc_status;

static void p_data(loom_process *p, int fd, const char *buf, size_t len) {
  (void)p;
  if (fd == 1 && proc_len + len < sizeof(proc_out)) {
    memcpy(proc_out + proc_len, buf, len);
    proc_len += len;
  }
}
static void p_fd_closed(loom_process *p, int fd, int status) {
  (void)p;
  (void)fd;
  (void)status;
  proc_fds_closed++;
}
static void p_exited(loom_process *p) {
  proc_status = p->exit_status;
  proc_exited = 1;
}
static void p_ended(loom_process *p) {
  (void)p;
  proc_ended = 1;
}
static const loom_process_vtable proc_vt = {
  p_data, p_fd_closed, p_exited, p_ended, NULL
};

static void test_process_output_and_exit(void) {
  /* uv_process_options_t takes char **: writable copies of the words. */
  char sh[] = "sh", c[] = "-c", script[] = "read x; echo got $x; exit 3";
  char *args[] = { sh, c, script, NULL };
  char *env[] = { NULL };
  loom_spawn_opts o;
  loom_process *p = calloc(1, sizeof(*p));
  char err[256];
  memset(&o, 0, sizeof(o));
  o.file = "/bin/sh";
  o.args = args;
  o.env = env;
  o.nfds = 3;
  o.fds[0] = LOOM_FD_WRITE;
  o.fds[1] = LOOM_FD_READ;
  o.fds[2] = LOOM_FD_READ;
  p->vt = &proc_vt;
  CHECK(loom__process_spawn(p, &st, &o, err, sizeof(err)) == 0);
  CHECK(loom__process_write(p, 0, "line\n", 5) == 0);
  run_until(&proc_ended);
  CHECK(proc_exited && proc_status == 3);
  CHECK(proc_fds_closed == 3);
  CHECK(strncmp(proc_out, "got line\n", proc_len) == 0 && proc_len == 9);
}

static void test_process_missing_executable(void) {
  char nope[] = "nope";
  char *args[] = { nope, NULL };
  loom_spawn_opts o;
  loom_process *p = calloc(1, sizeof(*p));
  char err[256];
  memset(&o, 0, sizeof(o));
  o.file = "/no/such/program";
  o.args = args;
  o.nfds = 2;
  o.fds[0] = LOOM_FD_WRITE;
  o.fds[1] = LOOM_FD_READ;
  p->vt = &proc_vt;
  proc_ended = 0;
  CHECK(loom__process_spawn(p, &st, &o, err, sizeof(err)) == UV_ENOENT);
  CHECK(strstr(err, "/no/such/program: ENOENT") == err);
  uv_run(st.loop, UV_RUN_NOWAIT); /* The close callbacks free p. */
  CHECK(!proc_ended);
}

/* -------------------------------------------------------- thread pool */

typedef struct square_job {
  loom_job job;
  int in, out, on_worker;
} square_job;

static int pool_done, workers_opened;
static int worker_ctx = 7;

static void *w_open(void *arg) {
  (void)arg;
  __atomic_add_fetch(&workers_opened, 1, __ATOMIC_SEQ_CST);
  return &worker_ctx;
}
static void w_close(void *w) {
  (void)w;
}
static void square_work(loom_job *j, void *w) {
  square_job *s = (square_job *)j;
  s->out = s->in * s->in;
  s->on_worker = *(int *)w;
}
static int squares_sum;
static void square_done(loom_job *j, int cancelled) {
  square_job *s = (square_job *)j;
  if (!cancelled && s->on_worker == 7)
    squares_sum += s->out;
  pool_done++;
  free(s);
}

static void test_pool_jobs(void) {
  loom_pool_config cfg = { w_open, w_close, NULL, 3 };
  uint64_t deadline;
  int i;
  CHECK(loom__pool_start(&st, &cfg) == 0);
  for (i = 1; i <= 20; i++) {
    square_job *s = calloc(1, sizeof(*s));
    s->in = i;
    s->job.work = square_work;
    s->job.done = square_done;
    CHECK(loom__pool_submit(st.pool, &s->job) == 0);
  }
  deadline = uv_hrtime() + 5000000000ULL;
  while (pool_done < 20 && uv_hrtime() < deadline)
    uv_run(st.loop, UV_RUN_NOWAIT);
  CHECK(pool_done == 20);
  CHECK(squares_sum == 2870);
  CHECK(workers_opened >= 1 && workers_opened <= 3);
}

/* ----------------------------------------------------------- resolver */

static int resolved, resolve_status, resolve_v4;

static void on_resolved(loom_resolve *r, int status, struct addrinfo *res) {
  resolve_status = status;
  for (; res != NULL; res = res->ai_next)
    if (res->ai_family == AF_INET)
      resolve_v4 = 1;
  resolved = 1;
  free(r);
}

static void test_resolver(void) {
  loom_resolve *r = calloc(1, sizeof(*r));
  r->cb = on_resolved;
  CHECK(loom__resolve_start(r, &st, "localhost") == 0);
  run_until(&resolved);
  CHECK(resolve_status == 0 && resolve_v4);
  resolved = 0;
  r = calloc(1, sizeof(*r));
  r->cb = on_resolved;
  CHECK(loom__resolve_start(r, &st, "no-such-name.invalid") == 0);
  run_until(&resolved);
  CHECK(resolve_status < 0);
  CHECK(st.resolving == NULL);
}

int main(void) {
  CHECK(loom__state_init(&st, NULL) == 0);
  test_udp_send_receive();
  test_udp_connected_refused();
  test_unix_echo_and_cleanup();
  test_process_output_and_exit();
  test_process_missing_executable();
  test_pool_jobs();
  test_resolver();
  loom__state_close(&st); /* Joins the pool; must leave no handle behind. */
  CHECK(st.nstreams == 0);
  CHECK(st.pool == NULL);
  return check_report();
}
