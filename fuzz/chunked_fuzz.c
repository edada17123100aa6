/*
** chunked_fuzz.c: fuzz harness of parsers/chunked.c. An input is
**
**   byte 0      seed of the chunk sizes for the streamed runs
**   bytes 1...  the data
**
** Checked: the data checked whole and as it arrives in pieces gives the
** same verdict at the same byte; and the data encoded as a chunked body
** (pieces of sizes the seed picks, an extension and a trailer now and
** then) is accepted to its last byte, whole and in pieces.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../parsers/chunked.h"
#include "fuzz.h"

#define MAX_BODY 65536

typedef struct verdict {
  size_t used;     /* bytes that were the body's */
  const char *why; /* NULL, or what was wrong */
  int active;      /* still inside the body at the end */
} verdict;

static unsigned next(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return *seed >> 16;
}

static verdict check_whole(const char *b, size_t len) {
  loom_chunked c;
  verdict v;
  loom_chunked_start(&c);
  v.used = loom_chunked_check(&c, b, len, &v.why);
  v.active = loom_chunked_active(&c);
  return v;
}

static verdict check_pieces(const char *b, size_t len, unsigned seed) {
  loom_chunked c;
  verdict v = {0, NULL, 1};
  size_t at = 0;
  loom_chunked_start(&c);
  while (at < len && loom_chunked_active(&c) && v.why == NULL) {
    size_t n = 1 + next(&seed) % 9, used;
    if (n > len - at)
      n = len - at;
    used = loom_chunked_check(&c, b + at, n, &v.why);
    FUZZ_CHECK(used <= n);
    FUZZ_CHECK(used == n || v.why != NULL || !loom_chunked_active(&c));
    at += used;
  }
  v.used = at;
  v.active = loom_chunked_active(&c);
  return v;
}

static void check_same(verdict a, verdict b) {
  FUZZ_CHECK(a.used == b.used);
  FUZZ_CHECK(a.why == b.why);
  FUZZ_CHECK(a.active == b.active);
}

/* data as a chunked body of pieces the seed sizes; its length. */
static size_t encode(const uint8_t *data, size_t size, unsigned seed,
                     char *out, size_t cap) {
  size_t at = 0, n = 0;
  while (at < size && n + 64 < cap) {
    size_t k = 1 + next(&seed) % 40;
    if (k > size - at)
      k = size - at;
    if (n + k + 64 >= cap)
      break;
    n += (size_t)snprintf(out + n, cap - n, next(&seed) % 4 ? "%zx\r\n"
                          : "%zX ;x=\"y z\"\r\n", k);
    memcpy(out + n, data + at, k);
    n += k;
    out[n++] = '\r';
    out[n++] = '\n';
    at += k;
  }
  n += (size_t)snprintf(out + n, cap - n, "%s",
                        next(&seed) % 2 ? "0\r\n\r\n" : "0\r\nT: v\r\n\r\n");
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char body[MAX_BODY + 256];
  unsigned seed;
  size_t n;
  verdict v;
  if (size < 1)
    return 0;
  seed = data[0];
  check_same(check_whole((const char *)data + 1, size - 1),
             check_pieces((const char *)data + 1, size - 1, seed));
  if (size - 1 > MAX_BODY / 2)
    return 0;
  n = encode(data + 1, size - 1, seed, body, sizeof body);
  v = check_whole(body, n);
  FUZZ_CHECK(v.why == NULL && v.used == n && !v.active);
  check_same(v, check_pieces(body, n, seed + 1));
  return 0;
}
