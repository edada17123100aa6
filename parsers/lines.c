/*
** lines.c: cutting a buffer into delimited lines (see lines.h).
*/
#include <string.h>

#include "lines.h"

const char *loom_lines_memmem(const char *s, size_t n, const char *d,
                              size_t dlen) {
  const char *end = s + n, *p = s;
  if (dlen == 0 || dlen > n)
    return NULL;
  while ((p = memchr(p, d[0], (size_t)(end - p) - dlen + 1)) != NULL) {
    /* Most delimiters are 1 or 2 bytes ("\n", "\r\n"): no memcmp call. */
    if (dlen == 1 || (p[1] == d[1] &&
                      (dlen == 2 || memcmp(p + 2, d + 2, dlen - 2) == 0)))
      return p;
    if (++p > end - dlen)
      break;
  }
  return NULL;
}

void loom_lines_init(loom_lines *c, const char *buf, size_t len,
                     const char *delim, size_t dlen, size_t max_len,
                     size_t pos, size_t search) {
  c->buf = buf;
  c->len = len;
  c->delim = delim;
  c->dlen = dlen;
  c->max_len = max_len;
  c->pos = pos < len ? pos : len;
  c->search = search > c->pos ? (search < len ? search : len) : c->pos;
  c->hit = 0;
}

int loom_lines_find(loom_lines *c) {
  const char *hit = loom_lines_memmem(c->buf + c->search, c->len - c->search,
                                      c->delim, c->dlen);
  size_t resume;
  if (hit != NULL) {
    c->hit = (size_t)(hit - c->buf);
    return 1;
  }
  /* A delimiter may still start in the last dlen - 1 bytes. */
  resume = c->len >= c->dlen ? c->len - c->dlen + 1 : 0;
  if (resume > c->search)
    c->search = resume;
  return 0;
}

int loom_lines_take(loom_lines *c, const char **line, size_t *n) {
  if (c->hit - c->pos > c->max_len)
    return LOOM_LINES_TOOLONG;
  *line = c->buf + c->pos;
  *n = c->hit - c->pos;
  c->pos = c->search = c->hit + c->dlen;
  return LOOM_LINES_LINE;
}

int loom_lines_next(loom_lines *c, const char **line, size_t *n) {
  if (!loom_lines_find(c))
    return LOOM_LINES_NOTFOUND;
  return loom_lines_take(c, line, n);
}
