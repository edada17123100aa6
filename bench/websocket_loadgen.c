/*
** websocket_loadgen.c: WebSocket echo ping-pong for make bench
** (bench/websocket.sh). Plain epoll, one thread, loopback only.
**
**   websocket_loadgen [-p port] [-c conns] [-s bytes] [-d secs] [-w warmup]
**                     [-u path]
**
** Each connection does the opening handshake (blocking, before the clock
** starts), then sends one masked text message of -s bytes, waits for the
** whole echo (an unmasked text frame of the same length and bytes), and
** repeats. One line on stdout:
**   wsecho conns=50 size=64 secs=3.00 msgs=... msgs_per_s=... errors=0
** Exit 1 when a handshake fails, 2 on bad usage.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  size_t got;      /* bytes of the current echo read so far */
  unsigned char *in;
} conn;

static unsigned char *frame;   /* the masked message, built once */
static size_t frame_len;
static unsigned char *expect;  /* the echo: header and payload */
static size_t expect_len;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void build_frames(size_t size) {
  static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t h = size < 126 ? 2 : 4, i;
  frame_len = h + 4 + size;
  frame = malloc(frame_len);
  expect_len = h + size;
  expect = malloc(expect_len);
  frame[0] = expect[0] = 0x81;
  if (size < 126) {
    frame[1] = (unsigned char)(0x80 | size);
    expect[1] = (unsigned char)size;
  } else {
    frame[1] = 0x80 | 126;
    expect[1] = 126;
    frame[2] = expect[2] = (unsigned char)(size >> 8);
    frame[3] = expect[3] = (unsigned char)size;
  }
  memcpy(frame + h, key, 4);
  for (i = 0; i < size; i++) {
    unsigned char c = i + 1 == size ? '\n' : (unsigned char)('a' + i % 26);
    expect[h + i] = c;
    frame[h + 4 + i] = c ^ key[i & 3];
  }
}

/* Connects and does the handshake, blocking; returns the fd or -1. */
static int open_ws(int port, const char *path) {
  struct sockaddr_in a;
  char req[512], resp[2048];
  size_t n = 0;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  snprintf(req, sizeof req,
           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n", path, port);
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
    return -1;
  while (n < sizeof resp - 1) {
    ssize_t r = read(fd, resp + n, 1); /* byte by byte: no frame is read */
    if (r <= 0)
      return -1;
    n++;
    resp[n] = 0;
    if (n >= 4 && memcmp(resp + n - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0 ||
      strstr(resp, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == NULL)
    return -1;
  return fd;
}

static int send_frame(int fd) {
  return write(fd, frame, frame_len) == (ssize_t)frame_len ? 0 : -1;
}

int main(int argc, char **argv) {
  int port = 8080, conns = 50, opt, ep, i;
  size_t size = 64;
  double secs = 3, warmup = 1, start, end, t;
  const char *path = "/echo";
  long msgs = 0, errors = 0;
  conn *cs;
  struct epoll_event ev, evs[256];
  while ((opt = getopt(argc, argv, "p:c:s:d:w:u:")) != -1) {
    switch (opt) {
    case 'p': port = atoi(optarg); break;
    case 'c': conns = atoi(optarg); break;
    case 's': size = (size_t)atol(optarg); break;
    case 'd': secs = atof(optarg); break;
    case 'w': warmup = atof(optarg); break;
    case 'u': path = optarg; break;
    default:
      fprintf(stderr, "usage: %s [-p port] [-c conns] [-s bytes] [-d secs] "
                      "[-w warmup] [-u path]\n", argv[0]);
      return 2;
    }
  }
  if (conns < 1 || size < 1 || size > 65535 || secs <= 0) {
    fprintf(stderr, "websocket_loadgen: bad arguments\n");
    return 2;
  }
  build_frames(size);
  cs = calloc((size_t)conns, sizeof *cs);
  ep = epoll_create1(0);
  for (i = 0; i < conns; i++) {
    cs[i].fd = open_ws(port, path);
    if (cs[i].fd < 0) {
      fprintf(stderr, "websocket_loadgen: handshake %d failed\n", i);
      return 1;
    }
    cs[i].in = malloc(expect_len);
    ev.events = EPOLLIN;
    ev.data.ptr = &cs[i];
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  for (i = 0; i < conns; i++)
    if (send_frame(cs[i].fd) != 0)
      errors++;
  start = now() + warmup;
  end = start + secs;
  while ((t = now()) < end) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      ssize_t r = read(c->fd, c->in + c->got, expect_len - c->got);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN)
          continue;
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      c->got += (size_t)r;
      if (c->got < expect_len)
        continue;
      c->got = 0;
      if (memcmp(c->in, expect, expect_len) != 0)
        errors++;
      else if (t >= start)
        msgs++;
      if (send_frame(c->fd) != 0)
        errors++;
    }
  }
  printf("wsecho conns=%d size=%zu secs=%.2f msgs=%ld msgs_per_s=%.0f "
         "errors=%ld\n", conns, size, secs, msgs, msgs / secs, errors);
  return 0;
}
