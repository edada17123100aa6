/*
** resolver.c: name lookups off the loop (uv_getaddrinfo on libuv's thread
** pool). Requests in flight are listed in the state so shutdown can
** cancel the ones not yet started.
*/
#include <string.h>

#include "internal.h"

static void unlink_request(loom_resolve *r) {
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    r->st->resolving = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  loom_resolve *r = (loom_resolve *)req;
  unlink_request(r);
  r->cb(r, status, res); /* Frees r; res is ours to free. */
  if (res != NULL)
    uv_freeaddrinfo(res);
}

/* Starts resolving name (IPv4 and IPv6, stream sockets); r->cb is set. */
int loom__resolve_start(loom_resolve *r, loom_state *st, const char *name) {
  struct addrinfo hints;
  int rc;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r->st = st;
  rc = uv_getaddrinfo(st->loop, &r->req, on_resolved, name, NULL, &hints);
  if (rc < 0)
    return rc;
  r->prev = NULL;
  r->next = st->resolving;
  if (st->resolving != NULL)
    st->resolving->prev = r;
  st->resolving = r;
  return 0;
}

/* Shutdown: lookups not yet running end with UV_EAI_CANCELED. */
void loom__resolve_cancel_all(loom_state *st) {
  loom_resolve *r;
  for (r = st->resolving; r != NULL; r = r->next)
    uv_cancel((uv_req_t *)&r->req);
}
