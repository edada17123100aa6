/*
** lines_fuzz.c: fuzz harness of parsers/lines.c. An input is a header,
** a delimiter and the bytes to cut:
**
**   byte 0      delimiter length - 1 (mod 4)
**   byte 1      max_len (mod 32; 255 means no limit)
**   byte 2      seed of the chunk sizes for the streamed run
**   bytes 3...  the delimiter, then the data
**
** Checked: cutting the whole data gives what a brute-force reference
** gives (lines, the stop, where the unconsumed input starts, where
** searching resumes); and cutting it as it arrives in chunks, resuming
** from pos and search as LineReceiver does, gives the same.
*/
#include <stdint.h>
#include <string.h>

#include "../parsers/lines.h"
#include "fuzz.h"

#define MAX_EVENTS 4096

/* What cutting produced: each line as (start, length), then the stop. */
typedef struct events {
  size_t start[MAX_EVENTS], len[MAX_EVENTS];
  int n;
  int stop;   /* LOOM_LINES_NOTFOUND or LOOM_LINES_TOOLONG */
  size_t pos; /* where the unconsumed input starts */
} events;

/* The first delimiter at or after from, by brute force; SIZE_MAX if none. */
static size_t ref_find(const char *b, size_t len, size_t from, const char *d,
                       size_t dlen) {
  size_t i;
  for (i = from; i + dlen <= len; i++)
    if (memcmp(b + i, d, dlen) == 0)
      return i;
  return SIZE_MAX;
}

static void ref_cut(const char *b, size_t len, const char *d, size_t dlen,
                    size_t max_len, events *ev) {
  size_t pos = 0, hit;
  ev->n = 0;
  while ((hit = ref_find(b, len, pos, d, dlen)) != SIZE_MAX &&
         hit - pos <= max_len && ev->n < MAX_EVENTS) {
    ev->start[ev->n] = pos;
    ev->len[ev->n++] = hit - pos;
    pos = hit + dlen;
  }
  ev->stop = hit == SIZE_MAX ? LOOM_LINES_NOTFOUND : LOOM_LINES_TOOLONG;
  ev->pos = pos;
}

/* Adds the lines c cuts to ev; returns how it stopped. */
static int cut(loom_lines *c, events *ev) {
  const char *line;
  size_t n;
  int code = LOOM_LINES_NOTFOUND;
  while (ev->n < MAX_EVENTS &&
         (code = loom_lines_next(c, &line, &n)) == LOOM_LINES_LINE) {
    FUZZ_CHECK(line >= c->buf && line + n <= c->buf + c->len);
    ev->start[ev->n] = (size_t)(line - c->buf);
    ev->len[ev->n++] = n;
  }
  if (ev->n == MAX_EVENTS)
    return -1;
  FUZZ_CHECK(c->pos <= c->search && c->search <= c->len);
  if (code == LOOM_LINES_TOOLONG)
    FUZZ_CHECK(c->hit >= c->pos && c->hit - c->pos > c->max_len &&
               memcmp(c->buf + c->hit, c->delim, c->dlen) == 0);
  return code;
}

static void check_same(const events *a, const events *b) {
  int i;
  FUZZ_CHECK(a->n == b->n);
  for (i = 0; i < a->n && i < b->n; i++)
    FUZZ_CHECK(a->start[i] == b->start[i] && a->len[i] == b->len[i]);
  FUZZ_CHECK(a->stop == b->stop);
  FUZZ_CHECK(a->pos == b->pos);
}

/* Where a search must resume after finding nothing in b[0..len) from pos. */
static size_t resume_at(size_t len, size_t dlen, size_t pos) {
  size_t r = len >= dlen ? len - dlen + 1 : 0;
  return r > pos ? r : pos;
}

/* The whole data at once. */
static void check_whole(const char *b, size_t len, const char *d,
                        size_t dlen, size_t max_len, const events *ref) {
  static events ev;
  loom_lines c;
  ev.n = 0;
  loom_lines_init(&c, b, len, d, dlen, max_len, 0, 0);
  ev.stop = cut(&c, &ev);
  if (ev.stop < 0)
    return;
  ev.pos = c.pos;
  check_same(&ev, ref);
  if (ev.stop == LOOM_LINES_NOTFOUND)
    FUZZ_CHECK(c.search == resume_at(len, dlen, c.pos));
}

/*
** The data arriving in chunks: the buffer grows and cutting resumes from
** the pos and search where it stopped, until a line is too long.
*/
static void check_streamed(const char *b, size_t len, const char *d,
                           size_t dlen, size_t max_len, unsigned seed,
                           const events *ref) {
  static events ev;
  size_t have = 0, pos = 0, search = 0;
  int stop = LOOM_LINES_NOTFOUND;
  loom_lines c;
  ev.n = 0;
  while (have < len && stop == LOOM_LINES_NOTFOUND) {
    seed = seed * 1103515245u + 12345u;
    have += 1 + (seed >> 16) % 17;
    if (have > len)
      have = len;
    loom_lines_init(&c, b, have, d, dlen, max_len, pos, search);
    stop = cut(&c, &ev);
    if (stop < 0)
      return;
    pos = c.pos;
    search = c.search;
  }
  if (len == 0) {
    loom_lines_init(&c, b, 0, d, dlen, max_len, 0, 0);
    stop = cut(&c, &ev);
    pos = c.pos;
  }
  ev.stop = stop;
  ev.pos = pos;
  check_same(&ev, ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static events ref;
  size_t dlen, max_len, len;
  const char *d, *b;
  unsigned seed;
  if (size < 3)
    return 0;
  dlen = 1 + data[0] % 4;
  max_len = data[1] == 255 ? SIZE_MAX : data[1] % 32;
  seed = data[2];
  if (size < 3 + dlen)
    return 0;
  d = (const char *)data + 3;
  b = d + dlen;
  len = size - 3 - dlen;
  ref.n = 0;
  ref_cut(b, len, d, dlen, max_len, &ref);
  if (ref.n == MAX_EVENTS)
    return 0; /* too many lines to compare */
  check_whole(b, len, d, dlen, max_len, &ref);
  check_streamed(b, len, d, dlen, max_len, seed, &ref);
  return 0;
}
