/*
** tls_loadgen.c: TLS load for make bench's TLS cells (bench/tls.sh), as
** ../shared/bench/loadgen.c is for plain TCP: one thread, epoll, OpenSSL on
** non-blocking sockets, 127.0.0.1 only, bounded in time.
**
**   tls_loadgen -p PORT [-c CONNS] [-s BYTES] [-d SECS] [-w WARMUP] [-k]
**
** Default (echo): every connection does one handshake, then sends BYTES,
** waits for all of them back, repeats. -k (handshakes): every connection
** loops connect, full handshake (no resumption), BYTES there and back,
** close. One line on stdout:
**   tls_echo conns=50 size=64 secs=3.00 msgs=... msgs_per_s=... MB_per_s=...
**     p50_us=... p99_us=... errors=0 cpu=0.97
**   tls_churn conns=50 size=64 secs=3.00 handshakes=... handshakes_per_s=...
**     errors=0 cpu=...
** cpu is this process's CPU time in cores: near 1.00 it is the bottleneck.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum { CONNECTING, HANDSHAKE, SENDING, READING };

typedef struct conn {
  int fd;
  int state;
  SSL *ssl;
  size_t sent, got;
  double t0;
} conn;

static int port, nconns = 50, size = 64, churn;
static double secs = 3, warmup = 1;
static SSL_CTX *ctx;
static int ep;
static char *msg, *rbuf;
static long long msgs, errors;
static int counting;
static unsigned *lat;
static size_t nlat, caplat;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void watch(conn *c, unsigned events, int op) {
  struct epoll_event ev;
  ev.events = events;
  ev.data.ptr = c;
  epoll_ctl(ep, op, c->fd, &ev);
}

static void start(conn *c) {
  struct sockaddr_in sa;
  int one = 1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  c->state = CONNECTING;
  c->sent = c->got = 0;
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
      errno != EINPROGRESS) {
    perror("connect");
    exit(1);
  }
  watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void stop(conn *c) {
  SSL_free(c->ssl);
  close(c->fd); /* removes it from the epoll set */
  c->ssl = NULL;
}

static void failed(conn *c) {
  errors++;
  ERR_clear_error();
  stop(c);
  start(c);
}

static void record(double us) {
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : 1 << 16;
    lat = realloc(lat, caplat * sizeof(*lat));
  }
  lat[nlat++] = (unsigned)us;
}

/* Advances c until OpenSSL wants the socket; sets what epoll waits for. */
static void step(conn *c) {
  for (;;) {
    int rc, e;
    if (c->state == CONNECTING) {
      c->state = HANDSHAKE;
      continue;
    }
    if (c->state == HANDSHAKE) {
      rc = SSL_do_handshake(c->ssl);
      if (rc == 1) {
        c->state = SENDING;
        continue;
      }
    } else if (c->state == SENDING) {
      if (c->sent == 0)
        c->t0 = now();
      rc = SSL_write(c->ssl, msg + c->sent, size - (int)c->sent);
      if (rc > 0) {
        c->sent += (size_t)rc;
        if (c->sent == (size_t)size) {
          c->state = READING;
          c->got = 0;
        }
        continue;
      }
    } else {
      rc = SSL_read(c->ssl, rbuf, 65536);
      if (rc > 0) {
        c->got += (size_t)rc;
        if (c->got >= (size_t)size) {
          if (counting) {
            msgs++;
            if (!churn)
              record((now() - c->t0) * 1e6);
          }
          if (churn) {
            SSL_shutdown(c->ssl);
            stop(c);
            start(c);
            return;
          }
          c->state = SENDING;
          c->sent = 0;
        }
        continue;
      }
    }
    e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
      watch(c, EPOLLIN, EPOLL_CTL_MOD);
      return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      watch(c, EPOLLOUT, EPOLL_CTL_MOD);
      return;
    }
    failed(c);
    return;
  }
}

static int cmp(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return x < y ? -1 : x > y;
}

static void run_until(double end) {
  struct epoll_event evs[256];
  while (now() < end) {
    int i, n = epoll_wait(ep, evs, 256, 100);
    for (i = 0; i < n; i++)
      step(evs[i].data.ptr);
  }
}

int main(int argc, char **argv) {
  int opt, i;
  conn *conns;
  double t, cpu;
  struct rusage ru;
  while ((opt = getopt(argc, argv, "p:c:s:d:w:k")) != -1) {
    switch (opt) {
    case 'p': port = atoi(optarg); break;
    case 'c': nconns = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'd': secs = atof(optarg); break;
    case 'w': warmup = atof(optarg); break;
    case 'k': churn = 1; break;
    default:
      fprintf(stderr, "usage: tls_loadgen -p PORT [-c CONNS] [-s BYTES]"
              " [-d SECS] [-w WARMUP] [-k]\n");
      return 2;
    }
  }
  if (port <= 0 || nconns <= 0 || size <= 0) {
    fprintf(stderr, "tls_loadgen: -p PORT is required\n");
    return 2;
  }
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  msg = malloc((size_t)size);
  rbuf = malloc(65536);
  memset(msg, 'x', (size_t)size);
  msg[size - 1] = '\n';
  ep = epoll_create1(0);
  conns = calloc((size_t)nconns, sizeof(*conns));
  for (i = 0; i < nconns; i++)
    start(&conns[i]);
  run_until(now() + warmup);
  counting = 1;
  getrusage(RUSAGE_SELF, &ru);
  cpu = -((double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  t = now();
  run_until(t + secs);
  t = now() - t;
  getrusage(RUSAGE_SELF, &ru);
  cpu += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  if (churn) {
    printf("tls_churn conns=%d size=%d secs=%.2f handshakes=%lld"
           " handshakes_per_s=%.0f errors=%lld cpu=%.2f\n", nconns, size, t,
           msgs, (double)msgs / t, errors, cpu / t);
  } else {
    qsort(lat, nlat, sizeof(*lat), cmp);
    printf("tls_echo conns=%d size=%d secs=%.2f msgs=%lld msgs_per_s=%.0f"
           " MB_per_s=%.2f p50_us=%u p99_us=%u errors=%lld cpu=%.2f\n",
           nconns, size, t, msgs, (double)msgs / t,
           (double)msgs * size / t / 1e6, nlat ? lat[nlat / 2] : 0,
           nlat ? lat[nlat * 99 / 100] : 0, errors, cpu / t);
  }
  return msgs > 0 ? 0 : 1;
}
