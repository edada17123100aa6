/*
** tcp.c: TCP listeners and connections over IPv4 and IPv6. The connection
** itself is a loom_stream (stream.c); this file binds, listens, accepts,
** connects and formats addresses.
*/
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* An IP literal (v4 or v6) to a sockaddr; 0 or a libuv error. */
int loom__sockaddr_parse(const char *host, int port,
                         struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (strchr(host, ':') != NULL)
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

/*
** Dotted decimal by hand: uv_ip4_name goes through snprintf, which cost
** more than the rest of building a peer's address on every accept.
*/
static int format_ip4(const struct in_addr *in, char *host, size_t hostlen) {
  const unsigned char *b = (const unsigned char *)&in->s_addr;
  char buf[16], *p = buf;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (v >= 100)
      *p++ = (char)('0' + v / 100);
    if (v >= 10)
      *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    *p++ = i < 3 ? '.' : '\0';
  }
  if ((size_t)(p - buf) > hostlen)
    return UV_ENOSPC;
  memcpy(host, buf, (size_t)(p - buf));
  return 0;
}

int loom__sockaddr_format(const struct sockaddr *sa, char *host,
                          size_t hostlen, int *port) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
    *port = ntohs(a6->sin6_port);
    return uv_ip6_name(a6, host, hostlen);
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
    *port = ntohs(a4->sin_port);
    return format_ip4(&a4->sin_addr, host, hostlen);
  }
  return UV_EAFNOSUPPORT;
}

/* A non-blocking socket bound to ss (SO_REUSEADDR, IPv6 only for v6). */
static int bind_socket(const struct sockaddr_storage *ss, int *fdp) {
  int on = 1, rc = 0;
  socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
      (ss->ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
      bind(fd, (const struct sockaddr *)ss, len) < 0) {
    rc = uv_translate_sys_error(errno);
    close(fd);
    return rc;
  }
  *fdp = fd;
  return 0;
}

/*
** Binds and listens. On failure returns a libuv error with a one-line
** reason in err ("127.0.0.1:80: EACCES: permission denied"); if l->closing
** is then set, l must stay allocated until on_closed runs.
*/
int loom__tcp_listen(loom_listener *l, loom_state *st, const char *host,
                     int port, int backlog, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int fd = -1;
  int rc = loom__sockaddr_parse(host, port, &ss);
  if (rc < 0) {
    /* getaddrinfo's name for it: this name gives no address without a
    ** lookup, which the caller (reactor.lua) does first. */
    snprintf(err, errlen, "%s: not an IP address", host);
    return UV_EAI_NONAME;
  }
  rc = bind_socket(&ss, &fd);
  if (rc == 0)
    rc = loom__listener_open(l, st, fd, backlog, NULL);
  if (rc < 0)
    snprintf(err, errlen, "%s:%d: %s: %s", host, port, uv_err_name(rc),
             uv_strerror(rc));
  return rc;
}

static int tcp_init(uv_loop_t *loop, loom_stream *s) {
  return uv_tcp_init(loop, &s->h.tcp);
}

static int tcp_open(loom_stream *s, int fd) {
  return uv_tcp_open(&s->h.tcp, fd);
}

/* The listener's accepted connection into s, whose vt the caller set. */
int loom__tcp_accept(loom_listener *l, loom_stream *s) {
  return loom__stream_accept(l, s, tcp_init, tcp_open);
}

/*
** Starts connecting s (its vt set, not yet set up) to an IP literal. On a
** synchronous failure err says why; the stream is then closing.
*/
int loom__tcp_connect(loom_stream *s, const char *host, int port,
                      const char *bind_host, int bind_port,
                      char *err, size_t errlen) {
  struct sockaddr_storage ss, bs;
  loom_state *st = s->st;
  int rc = loom__sockaddr_parse(host, port, &ss);
  if (rc < 0) {
    /* getaddrinfo's name for it: this name gives no address without a
    ** lookup, which the caller (reactor.lua) does first. */
    snprintf(err, errlen, "%s: not an IP address", host);
    return UV_EAI_NONAME;
  }
  rc = uv_tcp_init(st->loop, &s->h.tcp);
  if (rc < 0) {
    snprintf(err, errlen, "%s:%d: %s", host, port, uv_strerror(rc));
    return rc;
  }
  loom__stream_setup(s, st, s->vt);
  s->flags |= LOOM_S_CONNECTING;
  if (bind_host != NULL) {
    rc = loom__sockaddr_parse(bind_host, bind_port, &bs);
    if (rc == 0)
      rc = uv_tcp_bind(&s->h.tcp, (struct sockaddr *)&bs, 0);
  }
  if (rc == 0) {
    uv_connect_t *req = malloc(sizeof(*req));
    if (req == NULL) {
      rc = UV_ENOMEM;
    } else {
      req->data = s;
      rc = uv_tcp_connect(req, &s->h.tcp, (struct sockaddr *)&ss,
                          loom__stream_on_connect);
      if (rc < 0)
        free(req);
    }
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s:%d: %s: %s", host, port, uv_err_name(rc),
             uv_strerror(rc));
    loom__stream_close(s, rc);
  }
  return rc;
}

