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
** Starts cutting buf[0..len) from pos, with no delimiter before search
** (both clamped into the buffer). delim must not be empty.
*/
void loom_lines_init(loom_lines *c, const char *buf, size_t len,
                     const char *delim, size_t dlen, size_t max_len,
                     size_t pos, size_t search);

/*
** Finds the delimiter that ends the line at pos: returns 1 and sets hit,
** or returns 0 and moves search to the first place a delimiter could
** still start once more bytes follow.
*/
int loom_lines_find(loom_lines *c);

/*
** Takes the line that loom_lines_find found: LOOM_LINES_LINE with the
** line in *line, *n and pos past its delimiter, or LOOM_LINES_TOOLONG
** (nothing consumed).
*/
int loom_lines_take(loom_lines *c, const char **line, size_t *n);

/* loom_lines_find, then loom_lines_take: one step of the cutter. */
int loom_lines_next(loom_lines *c, const char **line, size_t *n);

#endif
