/*
** chunked.h: checking the framing of a chunked body (RFC 9112 7.1), as it
** arrives. Pure C11: no libuv, no Lua, no allocation. Used by
** bindings/http.c beside libhttp-parser, whose non-strict build (Debian's)
** is lax about this framing; tested by test/chunked_test.c and
** fuzz/chunked_fuzz.c.
**
** Only the framing is checked, byte by byte from the first size line to
** the blank line after the trailers:
**   chunk = 1*HEXDIG [ *WS ";" ext ] CRLF data CRLF   (ext: no CTL)
**   last  = 1*"0" [ ... ] CRLF *( trailer-line CRLF ) CRLF
** The parser still decodes; a peer and a proxy reading one body two ways
** is what this stops.
*/
#ifndef LOOM_PARSERS_CHUNKED_H
#define LOOM_PARSERS_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

typedef struct loom_chunked {
  int state;     /* 0: not in a body (before one, or past its end) */
  uint64_t left; /* the current chunk's size, then its data still due */
} loom_chunked;

/* A body starts: the next byte is its first size line's. */
void loom_chunked_start(loom_chunked *c);

/* Whether c is inside a body (started, its end not seen yet). */
int loom_chunked_active(const loom_chunked *c);

/*
** Checks data[0..len), the body's next bytes, and stops at its end (the
** rest is not the body's). Returns how many bytes were the body's, and
** sets *why (to NULL, or to what is wrong in a phrase such as "chunk data
** not followed by CRLF"; c is then not to be used again).
*/
size_t loom_chunked_check(loom_chunked *c, const char *data, size_t len,
                          const char **why);

#endif
