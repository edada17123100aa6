/*
** lines.c: cutting a buffer into delimited lines (see lines.h, which
** holds the per-line steps, inline).
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
