/*
** embed_bench.c: what embedding loom costs a C program (make bench, through
** bench/embed.sh; docs/PERFORMANCE.md, "Embedding"). It is the game server
** of examples/embed: examples/embed/players.lua as the players' protocol
** (LineReceiver, idle timeout, backpressure, maxPending per update), a
** "game" module registered from C, and game_server.c's fixed-rate 30 Hz
** tick pushing one update line per tick to every player through
** Lobby:broadcast. Its world is a counter of players instead of world.c,
** whose grid holds 64.
**
**   embed_bench idle  [--steps N] [--rounds R]
**       loom_step on a host that listens, with nothing connected
**   embed_bench conns [--conns C] [--steps N] [--rounds R]
**       the same with C players connected (from this process) and idle
**   embed_bench tick  [--players P] [--seconds S]
**       loom_run with the 30 Hz tick and P players, each a connection of a
**       client process that reads every update and checks they come in
**       order, one per tick
**   embed_bench rawtick [--players P] [--seconds S]
**       the same tick and clients on plain libuv, without loom or Lua: the
**       floor for the tick's work (the kernel's share of 1,000 writes)
**
** Output: key=value words on one line (bench/embed.sh reads them). idle
** and conns time R rounds of N steps and give each round's ns per step;
** the steps are made by measured_steps() alone, so that callgrind's
** --toggle-collect=measured_steps counts their instructions and nothing
** else. tick gives the lateness of each tick (when its callback ran,
** against when it was due), in microseconds, and what the clients saw.
** Exit status 0 when everything was as expected, 1 otherwise.
*/
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "loom.h"

/* The checkout: loom's lua/ and examples/embed/players.lua (the Makefile
   sets it). */
#ifndef EMBED_BENCH_TOP
#define EMBED_BENCH_TOP "."
#endif

#define TICK_HZ 30
#define TICK_NS (1000000000u / TICK_HZ)
#define MAX_CATCH_UP 5          /* as game_server.c */
#define WARMUP_TICKS 30         /* after every player joined, not measured */
#define JOIN_TIMEOUT_S 60       /* players connecting and joining */
#define DRAIN_TIMEOUT_S 30      /* the clients' last check and goodbye */
#define MAX_PLAYERS 20000

/* "embed_bench: what[: detail]" and exit 1. */
static void die(const char *what, const char *detail) {
  fprintf(stderr, "embed_bench: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  exit(1);
}

/* CPU time of this thread: the tick's own cost, whatever else runs. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Each connection is one descriptor here and, in conns, one more for its
   client end: say so plainly when the limit is too low. */
static void need_files(int fds) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)fds) {
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)fds) {
      rl.rlim_cur = (rlim_t)fds;
      if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        return;
    }
    fprintf(stderr, "embed_bench: this needs about %d open files; the limit "
            "is %llu (ulimit -n) and cannot be raised\n", fds,
            (unsigned long long)rl.rlim_cur);
    exit(1);
  }
}

/* ------------------------------------------------- the host: players */

/* The "game" module players.lua requires: join and leave only, since the
   bench's players send nothing but their name. */
typedef struct bench_world {
  int joined;             /* players in the world now */
  unsigned next_id;
} bench_world;

static int l_join(lua_State *L) {
  bench_world *w = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checkstring(L, 1);
  w->joined++;
  lua_pushinteger(L, (lua_Integer)++w->next_id);
  return 1;
}

static int l_leave(lua_State *L) {
  bench_world *w = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checkinteger(L, 1);
  w->joined--;
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg game_funcs[] = {
  {"join", l_join},
  {"leave", l_leave},
  {NULL, NULL}
};

/* Warnings and errors (a player skipped for not reading: "maxPending")
   are counted; the first few are shown. */
static int log_problems;

static void on_log(void *ud, int level, const char *line) {
  (void)ud;
  if (level < LOOM_LOG_WARN)
    return;
  if (++log_problems <= 5)
    fprintf(stderr, "embed_bench: loom logged: %s\n", line);
}

typedef struct bench_host {
  loom_host *h;
  bench_world world;
  int lobby;              /* registry ref of the players.Lobby */
  int port;
} bench_host;

static void check_lua(bench_host *b, int rc, const char *what) {
  if (rc != LOOM_OK) {
    fprintf(stderr, "embed_bench: %s: %s: %s\n", what, loom_strerror(rc),
            loom_errmsg(b->h));
    exit(1);
  }
}

/*
** A host with the game module, players.lua's Lobby listening on a free
** port of 127.0.0.1 for up to max_players, as game_server.c sets it up.
*/
static void host_open(bench_host *b, int max_players) {
  loom_config cfg;
  lua_State *L;
  int top;
  memset(b, 0, sizeof(*b));
  memset(&cfg, 0, sizeof(cfg));
  cfg.root = EMBED_BENCH_TOP;
  if (loom_new(&cfg, &b->h) != LOOM_OK)
    die("loom_new", loom_errmsg(NULL));
  check_lua(b, loom_set_log(b->h, on_log, NULL), "loom_set_log");
  check_lua(b, loom_register_module(b->h, "game", game_funcs, &b->world),
            "loom_register_module");
  check_lua(b, loom_dostring(b->h, "package.path = '" EMBED_BENCH_TOP
                             "/examples/embed/?.lua;' .. package.path",
                             "=embed_bench"), "package.path");
  L = loom_lua(b->h);
  top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "players");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("players.lua", lua_tostring(L, -1));
  lua_getfield(L, -1, "Lobby");
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, max_players + 8);
  lua_setfield(L, -2, "maxConnections");
  check_lua(b, loom_call_method(b->h, top + 2, "new", 1, 1), "Lobby:new");
  lua_pushvalue(L, -1);
  b->lobby = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushinteger(L, 0);
  lua_pushliteral(L, "127.0.0.1");
  check_lua(b, loom_call_method(b->h, top + 3, "listen", 2, 1),
            "Lobby:listen");
  b->port = (int)lua_tointeger(L, -1);
  lua_settop(L, top);
}

static void host_close(bench_host *b) {
  lua_State *L = loom_lua(b->h);
  if (L != NULL)
    luaL_unref(L, LUA_REGISTRYINDEX, b->lobby);
  loom_free(b->h);
}

/* One tick's text to lobby:broadcast, as game_server.c's push_updates. */
static void broadcast(bench_host *b, const char *text, size_t len) {
  lua_State *L = loom_lua(b->h);
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->lobby);
  lua_pushlstring(L, text, len);
  loom_call_method(b->h, top + 1, "broadcast", 1, 0);
  lua_settop(L, top);
}

/* ------------------------------------------------- idle and conns */

/* The only caller of loom_step while measuring (callgrind counts this
   function's instructions with --toggle-collect). */
__attribute__((noinline)) static int measured_steps(loom_host *h, long n) {
  int bad = 0;
  long i;
  for (i = 0; i < n; i++)
    bad |= loom_step(h);
  return bad;
}

static int connect_nonblocking(int port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    die("socket", strerror(errno));
  if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
    die("fcntl", strerror(errno));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
      errno != EINPROGRESS)
    die("connect", strerror(errno));
  return fd;
}

/* Sends "pN\n" (the player's name) once the connection is up: 1 when sent,
   0 when not yet connected. */
static int send_name(int fd, int n) {
  char name[32];
  int len = snprintf(name, sizeof(name), "p%d\n", n), err = 0;
  socklen_t el = sizeof(err);
  struct pollfd p = { fd, POLLOUT, 0 };
  if (poll(&p, 1, 0) != 1)
    return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
    die("connecting a player", strerror(err ? err : errno));
  if (write(fd, name, (size_t)len) != len)
    die("sending a name", strerror(errno));
  return 1;
}

/*
** n players connect from this process and send their names, loom_step
** accepting them, until the world has all n. Their ends stay open, never
** read (they are idle: what loom sent them, a greeting, waits in the
** kernel).
*/
static int *connect_players(bench_host *b, int n) {
  int *fds = calloc((size_t)n + 1, sizeof(int));
  char *named = calloc((size_t)n + 1, 1);
  uint64_t deadline = now_ns() + (uint64_t)JOIN_TIMEOUT_S * 1000000000u;
  int i, opened = 0;
  if (fds == NULL || named == NULL)
    die("out of memory", NULL);
  while (b->world.joined < n) {
    if (now_ns() > deadline)
      die("players did not all join in time", NULL);
    /* Connect in batches the listen backlog takes. */
    for (i = 0; i < 64 && opened < n; i++)
      fds[opened++] = connect_nonblocking(b->port);
    for (i = 0; i < opened; i++)
      if (!named[i])
        named[i] = (char)send_name(fds[i], i);
    check_lua(b, loom_step(b->h), "loom_step");
  }
  free(named);
  return fds;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int run_steps(int conns, long steps, int rounds) {
  bench_host b;
  double *per = calloc((size_t)rounds, sizeof(double));
  int *fds = NULL, i, bad = 0;
  if (per == NULL)
    die("out of memory", NULL);
  need_files(2 * conns + 64);
  host_open(&b, conns);
  check_lua(&b, loom_step(b.h), "loom_step"); /* starts the reactor */
  if (conns > 0)
    fds = connect_players(&b, conns);
  bad |= measured_steps(b.h, steps / 10 + 1); /* warm-up */
  for (i = 0; i < rounds; i++) {
    uint64_t t0 = now_ns();
    bad |= measured_steps(b.h, steps);
    per[i] = (double)(now_ns() - t0) / (double)steps;
  }
  printf("mode=%s conns=%d steps=%ld rounds=%d measured_calls=%ld "
         "joined=%d step_errors=%d log_problems=%d",
         conns > 0 ? "conns" : "idle", conns, steps, rounds,
         steps / 10 + 1 + rounds * steps, b.world.joined, bad != 0,
         log_problems);
  for (i = 0; i < rounds; i++)
    printf(" round_ns=%.1f", per[i]);
  qsort(per, (size_t)rounds, sizeof(double), cmp_double);
  printf(" median_ns=%.1f min_ns=%.1f\n", per[(rounds - 1) / 2], per[0]);
  bad |= b.world.joined != conns || log_problems != 0;
  host_close(&b);
  for (i = 0; i < conns; i++)
    close(fds[i]);
  free(fds);
  free(per);
  return bad != 0;
}

/* ----------------------------------------------- tick: the clients */

/*
** The client process: P players, each reading (and dropping) everything,
** and checking that the updates ("@TICK ...") come one per tick, in
** order. It reads "port N" on ctl, later "done LAST" (the last tick
** sent); once every player has LAST, or DRAIN_TIMEOUT_S after "done", it
** writes its findings on res, closes every connection and exits.
*/
typedef struct player_end {
  int fd;
  unsigned long long first, last, updates;
  unsigned gaps;
  int welcomed, eof;
  char head[24];          /* the start of the line being read */
  size_t len;             /* bytes of that line read so far */
} player_end;

static void end_line(player_end *p) {
  p->head[p->len < sizeof(p->head) ? p->len : sizeof(p->head) - 1] = '\0';
  if (p->head[0] == '@') {
    unsigned long long t = strtoull(p->head + 1, NULL, 10);
    if (p->updates > 0 && t != p->last + 1)
      p->gaps++;
    if (p->updates == 0)
      p->first = t;
    p->last = t;
    p->updates++;
  } else if (strncmp(p->head, "ok welcome", 10) == 0) {
    p->welcomed = 1;
  }
  p->len = 0;
}

/* Reads what there is (level-triggered epoll brings it back for more). */
static void read_player(int ep, player_end *p) {
  char buf[16384];
  ssize_t n = read(p->fd, buf, sizeof(buf)), i;
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    p->eof = 1;
    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    return;
  }
  for (i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      end_line(p);
    } else {
      if (p->len < sizeof(p->head))
        p->head[p->len] = buf[i];
      p->len++;
    }
  }
}

static int connect_blocking(int port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
    return -1;
  return fd;
}

static void client_report(int res, int players, player_end *ps,
                          unsigned long long last) {
  int i, welcomed = 0, complete = 0, eof = 0;
  unsigned gaps = 0;
  unsigned long long umin = ~0ull, umax = 0;
  char line[256];
  int len;
  for (i = 0; i < players; i++) {
    player_end *p = &ps[i];
    welcomed += p->welcomed;
    eof += p->eof;
    gaps += p->gaps;
    umin = p->updates < umin ? p->updates : umin;
    umax = p->updates > umax ? p->updates : umax;
    complete += p->welcomed && p->gaps == 0 && p->updates > 0 &&
                p->last == last;
  }
  if (players == 0)
    umin = 0;
  len = snprintf(line, sizeof(line), "welcomed=%d complete=%d gaps=%u "
                 "updates_min=%llu updates_max=%llu early_eof=%d\n",
                 welcomed, complete, gaps, umin, umax, eof);
  if (write(res, line, (size_t)len) != len)
    _exit(1);
}

static int read_ctl(int ctl, const char *key, unsigned long long *v) {
  char buf[64];
  ssize_t n = read(ctl, buf, sizeof(buf) - 1);
  size_t kl = strlen(key);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  if (strncmp(buf, key, kl) != 0)
    return -1;
  *v = strtoull(buf + kl, NULL, 10);
  return 0;
}

static void watch_fd(int ep, int fd, void *ptr) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = ptr;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    _exit(1);
}

/* Each connects and sends its name ("pN"). */
static void connect_clients(int ep, int port, int players, player_end *ps) {
  int i;
  for (i = 0; i < players; i++) {
    char name[32];
    int len = snprintf(name, sizeof(name), "p%d\n", i);
    int fd = connect_blocking(port);
    if (fd < 0 || write(fd, name, (size_t)len) != len ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
      fprintf(stderr, "embed_bench: client %d cannot connect: %s\n", i,
              strerror(errno));
      _exit(1);
    }
    ps[i].fd = fd;
    watch_fd(ep, fd, &ps[i]);
  }
}

static void client_main(int ctl, int res, int players, int seconds) {
  struct epoll_event evs[256];
  struct timespec batch = { 0, 2000000 };
  player_end *ps = calloc((size_t)players + 1, sizeof(*ps));
  unsigned long long port, last = 0;
  uint64_t drain_end = 0;
  int i, done = 0, ep = epoll_create1(0);
  alarm((unsigned)(JOIN_TIMEOUT_S + seconds + DRAIN_TIMEOUT_S + 30));
  if (ps == NULL || ep < 0 || read_ctl(ctl, "port ", &port) != 0)
    _exit(1);
  connect_clients(ep, (int)port, players, ps);
  watch_fd(ep, ctl, NULL);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 100), complete = 0;
    if (n < 0 && errno != EINTR)
      _exit(1);
    for (i = 0; i < n; i++) {
      if (evs[i].data.ptr != NULL) {
        read_player(ep, evs[i].data.ptr);
      } else {
        if (read_ctl(ctl, "done ", &last) != 0)
          _exit(1);
        done = 1;
        epoll_ctl(ep, EPOLL_CTL_DEL, ctl, NULL);
        drain_end = now_ns() + (uint64_t)DRAIN_TIMEOUT_S * 1000000000u;
      }
    }
    /* Real players are other machines: reading in batches keeps this
       process from waking (and waking the server's writes) per update. */
    if (n > 0)
      nanosleep(&batch, NULL);
    if (!done)
      continue;
    for (i = 0; i < players; i++)
      complete += ps[i].last >= last;
    if (complete == players || now_ns() > drain_end)
      break;
  }
  client_report(res, players, ps, last);
  for (i = 0; i < players; i++)
    close(ps[i].fd);
  _exit(0);
}

/* -------------------------------------- tick: the raw libuv baseline */

/*
** The floor for the tick's work: the same players served by plain libuv
** (no Lua, no loom), each update one uv_try_write. A player has joined
** once its first line (the name) is in; a short write is counted, not
** retried (40 bytes to a reader that keeps up never are).
*/
typedef struct raw_server {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_tcp_t **clients;     /* NULL once closed */
  int nclients, cap, short_writes;
  bench_world world;
  int port;
} raw_server;

typedef struct raw_client {
  uv_tcp_t tcp;
  raw_server *rs;
  int joined;
  int slot;
} raw_client;

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char space[16384];
  (void)h;
  (void)hint;
  *buf = uv_buf_init(space, sizeof(space));
}

static void raw_free(uv_handle_t *h) {
  free(h);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  raw_client *c = (raw_client *)s;
  if (n < 0) {
    if (c->joined)
      c->rs->world.joined--;
    c->rs->clients[c->slot] = NULL;
    uv_close((uv_handle_t *)s, raw_free);
  } else if (n > 0 && !c->joined && memchr(buf->base, '\n', (size_t)n)) {
    static char welcome[] = "ok welcome\r\n";
    uv_buf_t w = uv_buf_init(welcome, sizeof(welcome) - 1);
    c->joined = 1;
    c->rs->world.joined++;
    if (uv_try_write(s, &w, 1) != (int)w.len)
      c->rs->short_writes++;
  }
}

static void raw_accept(uv_stream_t *server, int status) {
  raw_server *rs = server->data;
  raw_client *c;
  if (status < 0)
    return;
  if (rs->nclients == rs->cap) {
    int cap = rs->cap ? 2 * rs->cap : 64;
    uv_tcp_t **grown = realloc(rs->clients, (size_t)cap * sizeof(*grown));
    if (grown == NULL)
      die("out of memory", NULL);
    rs->clients = grown;
    rs->cap = cap;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    die("out of memory", NULL);
  c->rs = rs;
  c->slot = rs->nclients;
  uv_tcp_init(&rs->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, raw_free);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  rs->clients[rs->nclients++] = &c->tcp;
  uv_read_start((uv_stream_t *)&c->tcp, raw_alloc, raw_read);
}

static void raw_open(raw_server *rs) {
  struct sockaddr_in sa;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  memset(rs, 0, sizeof(*rs));
  uv_loop_init(&rs->loop);
  uv_tcp_init(&rs->loop, &rs->listener);
  rs->listener.data = rs;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  if (uv_tcp_bind(&rs->listener, (struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)&rs->listener, 511, raw_accept) != 0 ||
      uv_tcp_getsockname(&rs->listener, (struct sockaddr *)&bound, &len) != 0)
    die("raw listener", "cannot listen on 127.0.0.1");
  rs->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void raw_broadcast(raw_server *rs, const char *text, size_t len) {
  uv_buf_t buf = uv_buf_init((char *)(uintptr_t)text, (unsigned)len);
  int i;
  for (i = 0; i < rs->nclients; i++) {
    raw_client *c = (raw_client *)rs->clients[i];
    if (c != NULL && c->joined &&
        uv_try_write((uv_stream_t *)&c->tcp, &buf, 1) != (int)len)
      rs->short_writes++;
  }
}

static void raw_close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, h->type == UV_TCP && h->data == NULL ? raw_free : NULL);
}

static void raw_close(raw_server *rs) {
  uv_walk(&rs->loop, raw_close_handle, NULL);
  uv_run(&rs->loop, UV_RUN_DEFAULT);
  uv_loop_close(&rs->loop);
  free(rs->clients);
}

/* ------------------------------------------------- tick: the server */

enum { JOINING, WARMING, MEASURING, DRAINING };

typedef struct ticker {
  bench_host b;                 /* loom's game server, or */
  raw_server *raw;              /* the raw libuv baseline */
  uv_loop_t *loop;
  bench_world *world;
  uv_timer_t tick, watch;
  uint64_t next_tick;           /* uv_hrtime() at which the next tick is due */
  unsigned long long ticks;     /* ticks so far: the update's number */
  int phase, players, ctl, failed;
  long warm, measured, wanted;
  unsigned long long updates;   /* update lines handed to the server */
  unsigned long long skipped;   /* ticks dropped, MAX_CATCH_UP behind */
  double *late_us, *work_us;    /* per measured tick: wall clock */
  double *cpu_us;               /* and this thread's CPU time */
  uint64_t deadline;            /* of the current phase */
} ticker;

/* One tick: one update line to every player (game_server.c's advance).
   Not inlined: callgrind counts its instructions (--toggle-collect). */
__attribute__((noinline)) static void advance(ticker *t, uint64_t now) {
  char text[64];
  uint64_t t0 = uv_hrtime(), c0 = cpu_ns();
  unsigned long long n = ++t->ticks;
  int len = snprintf(text, sizeof(text), "@%llu pos p0 %llu %llu\r\n", n,
                     n % 100, (n / 100) % 100);
  t->updates += (unsigned long long)t->world->joined;
  if (t->raw != NULL)
    raw_broadcast(t->raw, text, (size_t)len);
  else
    broadcast(&t->b, text, (size_t)len);
  if (t->phase == MEASURING && t->measured < t->wanted) {
    t->late_us[t->measured] = (double)(now - t->next_tick) / 1e3;
    t->work_us[t->measured] = (double)(uv_hrtime() - t0) / 1e3;
    t->cpu_us[t->measured] = (double)(cpu_ns() - c0) / 1e3;
    t->measured++;
  }
}

static void phase_step(ticker *t) {
  if (t->phase == JOINING && t->world->joined == t->players) {
    t->phase = WARMING;
  } else if (t->phase == WARMING && ++t->warm >= WARMUP_TICKS) {
    t->phase = MEASURING;
  } else if (t->phase == MEASURING && t->measured == t->wanted) {
    char msg[64];
    int len = snprintf(msg, sizeof(msg), "done %llu\n", t->ticks);
    t->phase = DRAINING;
    t->deadline = uv_hrtime() + (uint64_t)DRAIN_TIMEOUT_S * 1000000000u;
    if (write(t->ctl, msg, (size_t)len) != len)
      die("telling the clients", strerror(errno));
  }
}

/* game_server.c's on_tick: ticks at fixed times, not 33 ms after the
   previous callback, with the timer set for the rest of the period. */
static void on_tick(uv_timer_t *h) {
  ticker *t = h->data;
  uint64_t now = uv_hrtime();
  int n = 0;
  while (now >= t->next_tick && n < MAX_CATCH_UP && t->phase != DRAINING) {
    advance(t, now);
    t->next_tick += TICK_NS;
    n++;
    phase_step(t);
  }
  if (t->phase == DRAINING)
    return; /* the clients check what they got; no more ticks */
  if (now >= t->next_tick) { /* as game_server.c, without its log line */
    t->skipped += (now - t->next_tick) / TICK_NS + 1;
    t->next_tick = now + TICK_NS;
  }
  uv_timer_start(h, on_tick, (t->next_tick - now + 999999) / 1000000, 0);
}

static void stop_server(ticker *t) {
  if (t->raw != NULL)
    uv_stop(t->loop);
  else
    loom_stop(t->b.h);
}

/* Every 20 ms: the phase's deadline, and the end once the clients have
   gone (each goodbye is a game.leave). */
static void on_watch(uv_timer_t *h) {
  ticker *t = h->data;
  int over = uv_hrtime() > t->deadline;
  if (t->phase == DRAINING && t->world->joined == 0) {
    stop_server(t);
    uv_timer_stop(h);
  } else if (over && (t->phase == JOINING || t->phase == DRAINING)) {
    fprintf(stderr, "embed_bench: %s: %d of %d players in the world\n",
            t->phase == JOINING ? "players did not all join in time"
                                : "the clients did not finish in time",
            t->world->joined, t->players);
    t->failed = 1;
    stop_server(t);
    uv_timer_stop(h);
  }
}

static void print_stats(const char *key, double *v, long n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  if (n == 0) {
    printf(" %s_p50=- %s_p99=- %s_max=-", key, key, key);
    return;
  }
  printf(" %s_p50=%.0f %s_p99=%.0f %s_max=%.0f", key, v[(n - 1) / 2], key,
         v[(n * 99 - 1) / 100], key, v[n - 1]);
}

static int run_tick(int players, int seconds, int raw) {
  int ctl[2], res[2], status = 0;
  char found[256];
  ssize_t got;
  pid_t pid;
  ticker t;
  raw_server rs;
  need_files(players + 64);
  if (pipe(ctl) != 0 || pipe(res) != 0)
    die("pipe", strerror(errno));
  fflush(stdout);
  /* The clients fork before loom exists: a child shares no loop. */
  pid = fork();
  if (pid < 0)
    die("fork", strerror(errno));
  if (pid == 0) {
    close(ctl[1]);
    close(res[0]);
    client_main(ctl[0], res[1], players, seconds);
  }
  close(ctl[0]);
  close(res[1]);
  memset(&t, 0, sizeof(t));
  t.players = players;
  t.ctl = ctl[1];
  t.wanted = (long)seconds * TICK_HZ;
  t.late_us = calloc((size_t)t.wanted + 1, sizeof(double));
  t.work_us = calloc((size_t)t.wanted + 1, sizeof(double));
  t.cpu_us = calloc((size_t)t.wanted + 1, sizeof(double));
  if (t.late_us == NULL || t.work_us == NULL || t.cpu_us == NULL)
    die("out of memory", NULL);
  if (raw) {
    raw_open(&rs);
    t.raw = &rs;
    t.loop = &rs.loop;
    t.world = &rs.world;
  } else {
    host_open(&t.b, players);
    t.loop = loom_loop(t.b.h);
    t.world = &t.b.world;
  }
  {
    char msg[32];
    int len = snprintf(msg, sizeof(msg), "port %d\n",
                       raw ? rs.port : t.b.port);
    if (write(t.ctl, msg, (size_t)len) != len)
      die("telling the clients", strerror(errno));
  }
  uv_timer_init(t.loop, &t.tick);
  uv_timer_init(t.loop, &t.watch);
  t.tick.data = t.watch.data = &t;
  t.deadline = uv_hrtime() + (uint64_t)JOIN_TIMEOUT_S * 1000000000u;
  t.next_tick = uv_hrtime() + TICK_NS;
  uv_timer_start(&t.tick, on_tick, TICK_NS / 1000000, 0);
  uv_timer_start(&t.watch, on_watch, 20, 20);
  if (raw) {
    uv_run(t.loop, UV_RUN_DEFAULT);
    raw_close(&rs); /* the timers too */
  } else {
    check_lua(&t.b, loom_run(t.b.h), "loom_run");
    uv_close((uv_handle_t *)&t.tick, NULL);
    uv_close((uv_handle_t *)&t.watch, NULL);
    uv_run(t.loop, UV_RUN_NOWAIT);
    host_close(&t.b);
  }
  close(t.ctl);
  got = read(res[0], found, sizeof(found) - 1);
  found[got > 0 ? got : 0] = '\0';
  if (got > 0 && found[got - 1] == '\n')
    found[got - 1] = '\0';
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0 || got <= 0) {
    fprintf(stderr, "embed_bench: the client process failed\n");
    t.failed = 1;
  }
  printf("mode=%s players=%d seconds=%d ticks=%ld skipped=%llu "
         "updates_sent=%llu log_problems=%d short_writes=%d %s",
         raw ? "rawtick" : "tick", players, seconds, t.measured, t.skipped,
         t.updates, log_problems,
         raw ? rs.short_writes : 0, found);
  print_stats("late_us", t.late_us, t.measured);
  print_stats("work_us", t.work_us, t.measured);
  print_stats("cpu_us", t.cpu_us, t.measured);
  printf("\n");
  {
    char want[64];
    snprintf(want, sizeof(want), "complete=%d ", players);
    t.failed |= strstr(found, want) == NULL || t.measured != t.wanted ||
                log_problems != 0 || (raw && rs.short_writes != 0);
  }
  free(t.late_us);
  free(t.work_us);
  free(t.cpu_us);
  return t.failed;
}

/* ------------------------------------------------------------ main */

static long number(const char *s, long lo, long hi) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi)
    die("not a number in range", s);
  return v;
}

int main(int argc, char **argv) {
  long steps = 200000, rounds = 5, conns = 1000, players = 1000,
       seconds = 10;
  int i;
  if (argc < 2)
    goto usage;
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--steps") == 0)
      steps = number(argv[i + 1], 1, 100000000);
    else if (strcmp(argv[i], "--rounds") == 0)
      rounds = number(argv[i + 1], 1, 1000);
    else if (strcmp(argv[i], "--conns") == 0)
      conns = number(argv[i + 1], 1, MAX_PLAYERS);
    else if (strcmp(argv[i], "--players") == 0)
      players = number(argv[i + 1], 0, MAX_PLAYERS);
    else if (strcmp(argv[i], "--seconds") == 0)
      seconds = number(argv[i + 1], 1, 3600);
    else
      goto usage;
  }
  if (i != argc)
    goto usage;
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(argv[1], "idle") == 0)
    return run_steps(0, steps, (int)rounds);
  if (strcmp(argv[1], "conns") == 0)
    return run_steps((int)conns, steps, (int)rounds);
  if (strcmp(argv[1], "tick") == 0)
    return run_tick((int)players, (int)seconds, 0);
  if (strcmp(argv[1], "rawtick") == 0)
    return run_tick((int)players, (int)seconds, 1);
usage:
  fprintf(stderr, "usage: embed_bench idle [--steps N] [--rounds R]\n"
          "       embed_bench conns [--conns C] [--steps N] [--rounds R]\n"
          "       embed_bench tick|rawtick [--players P] [--seconds S]\n");
  return 2;
}
