/*
** lines.h: cutting a buffer into delimited lines, as LineReceiver does.
** Pure C11: no libuv, no Lua, no allocation; the caller owns the buffer.
** Used by bindings/lines.c; tested by test/lines_test.c and
** fuzz/lines_fuzz.c.
**
** The cutter walks one buffer. A line is the bytes from `pos` up to the
** first delimiter; the delimiter is consumed with it. Searching starts at
** `search`, so that input already known to hold no delimiter is never
** scanned again: after loom_lines_find fails, `search` is where a search
** must resume once more input is appended to the same bytes.
*/
#ifndef LOOM_PARSERS_LINES_H
#define LOOM_PARSERS_LINES_H

#include <stddef.h>

typedef struct loom_lines {
  const char *buf;   /* the input */
  size_t len;
  const char *delim; /* the delimiter: dlen > 0 */
  size_t dlen;
  size_t max_len;    /* longest line accepted, delimiter excluded */
  size_t pos;        /* where the unconsumed input starts */
  size_t search;     /* no delimiter starts in [pos, search) */
  size_t hit;        /* after loom_lines_find: where the delimiter starts */
} loom_lines;

/* What loom_lines_next found. */
enum {
  LOOM_LINES_LINE,     /* a line: *line, *n; pos is past its delimiter */
  LOOM_LINES_NOTFOUND, /* no complete line from pos; search is advanced */
  LOOM_LINES_TOOLONG   /* the line at pos is longer than max_len; its
                          delimiter starts at hit */
};

/* The first occurrence of d (dlen > 0) in s[0..n), or NULL. */
const char *loom_lines_memmem(const char *s, size_t n, const char *d,
                              size_t dlen);

/*
** The steps below are inline: they run once per line, and a call into
** another file costs as much as the step (80 instructions per line cut by
** core.nextLine, callgrind).
*/

/*
** Starts cutting buf[0..len) from pos, with no delimiter before search
** (both clamped into the buffer). delim must not be empty.
*/
static inline void loom_lines_init(loom_lines *c, const char *buf,
                                   size_t len, const char *delim,
                                   size_t dlen, size_t max_len, size_t pos,
                                   size_t search) {
  c->buf = buf;
  c->len = len;
  c->delim = delim;
  c->dlen = dlen;
  c->max_len = max_len;
  c->pos = pos < len ? pos : len;
  c->search = search > c->pos ? (search < len ? search : len) : c->pos;
  c->hit = 0;
}

/*
** Finds the delimiter that ends the line at pos: returns 1 and sets hit,
** or returns 0 and moves search to the first place a delimiter could
** still start once more bytes follow.
*/
static inline int loom_lines_find(loom_lines *c) {
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

/*
** Takes the line that loom_lines_find found: LOOM_LINES_LINE with the
** line in *line, *n and pos past its delimiter, or LOOM_LINES_TOOLONG
** (nothing consumed).
*/
static inline int loom_lines_take(loom_lines *c, const char **line,
                                  size_t *n) {
  if (c->hit - c->pos > c->max_len)
    return LOOM_LINES_TOOLONG;
  *line = c->buf + c->pos;
  *n = c->hit - c->pos;
  c->pos = c->search = c->hit + c->dlen;
  return LOOM_LINES_LINE;
}

/* loom_lines_find, then loom_lines_take: one step of the cutter. */
static inline int loom_lines_next(loom_lines *c, const char **line,
                                  size_t *n) {
  if (!loom_lines_find(c))
    return LOOM_LINES_NOTFOUND;
  return loom_lines_take(c, line, n);
}

#endif
