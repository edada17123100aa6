/*
** udp.c: UDP ports over IPv4 and IPv6: bind, receive into the loop's
** shared buffer, send (uv_udp_try_send first; a copy only when the kernel
** would block), connect, and ICMP port-unreachable for connected sockets.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void close_op(loom_object *o) {
  loom__udp_close(loom__object_of(o, loom_udp, obj));
}

static const loom_object_ops udp_ops = { "udp", close_op, close_op };

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  loom_udp *u = (loom_udp *)h;
  (void)suggested;
  buf->base = u->st->readbuf;
  buf->len = sizeof(u->st->readbuf);
}

/*
** libuv reports a pending socket error (for a connected socket, the ICMP
** port unreachable that the kernel turned into ECONNREFUSED) as nread < 0
** with no address; nread 0 without an address means "nothing more".
*/
static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
  loom_udp *u = (loom_udp *)h;
  (void)flags;
  if (u->closing)
    return;
  if (nread == UV_ECONNREFUSED)
    u->vt->refused(u);
  else if (nread >= 0 && addr != NULL)
    u->vt->datagram(u, buf->base, (size_t)nread, addr);
}

/*
** Binds host:port (an IP literal) and starts receiving. On failure returns
** a libuv error with a one-line reason in err; the handle is then closing
** if it was initialised (u->closing), and u stays allocated until closed.
*/
int loom__udp_bind(loom_udp *u, loom_state *st, const char *host, int port,
                   char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int rc = loom__sockaddr_parse(host, port, &ss);
  u->st = st;
  if (rc < 0) {
    snprintf(err, errlen, "%s: not an IP address", host);
    return UV_EAI_NONAME; /* as host/tcp.c */
  }
  rc = uv_udp_init_ex(st->loop, &u->h, ss.ss_family);
  if (rc < 0) {
    snprintf(err, errlen, "%s:%d: %s", host, port, uv_strerror(rc));
    return rc;
  }
  loom__object_link(st, &u->obj, &udp_ops);
  rc = uv_udp_bind(&u->h, (struct sockaddr *)&ss,
                   ss.ss_family == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
  if (rc == 0)
    rc = uv_udp_recv_start(&u->h, on_alloc, on_recv);
  if (rc < 0) {
    snprintf(err, errlen, "%s:%d: %s: %s", host, port, uv_err_name(rc),
             uv_strerror(rc));
    loom__udp_close(u);
  }
  return rc;
}

typedef struct send_req {
  uv_udp_send_t req;
  char data[1];
} send_req;

static void on_send(uv_udp_send_t *req, int status) {
  /* libuv runs every send callback before the handle's close callback. */
  loom_udp *u = (loom_udp *)req->handle;
  free(req);
  if (status == UV_ECONNREFUSED && !u->closing)
    u->vt->refused(u);
}

/*
** Sends one datagram to `to` (NULL on a connected socket). Returns 0 or a
** libuv error (UV_ECONNREFUSED: an earlier datagram was refused).
*/
int loom__udp_send(loom_udp *u, const char *data, size_t len,
                   const struct sockaddr *to) {
  uv_buf_t b = loom__write_buf(data, len);
  send_req *r;
  int rc = uv_udp_try_send(&u->h, &b, 1, to);
  if (rc >= 0)
    return 0;
  if (rc != UV_EAGAIN)
    return rc;
  r = malloc(sizeof(*r) + len); /* The kernel would block: copy it. */
  if (r == NULL)
    return UV_ENOMEM;
  memcpy(r->data, data, len);
  b = uv_buf_init(r->data, (unsigned int)len);
  rc = uv_udp_send(&r->req, &u->h, &b, 1, to, on_send);
  if (rc < 0)
    free(r);
  return rc;
}

/* Connects (or with `to` AF_UNSPEC-less NULL, disconnects) the socket. */
int loom__udp_connect(loom_udp *u, const struct sockaddr *to) {
  int rc;
  if (u->connected) {
    rc = uv_udp_connect(&u->h, NULL);
    if (rc < 0)
      return rc;
    u->connected = 0;
  }
  if (to == NULL)
    return 0;
  rc = uv_udp_connect(&u->h, to);
  if (rc == 0)
    u->connected = 1;
  return rc;
}

static void on_close(uv_handle_t *h) {
  loom_udp *u = (loom_udp *)h;
  u->vt->closed(u);
  free(u);
}

void loom__udp_close(loom_udp *u) {
  if (u->closing)
    return;
  u->closing = 1;
  loom__object_unlink(&u->obj);
  uv_close((uv_handle_t *)&u->h, on_close);
}
