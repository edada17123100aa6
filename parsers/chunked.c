/*
** chunked.c: the framing of a chunked body (chunked.h says what).
*/
#include "chunked.h"

enum {
  CK_OFF,      /* not in a body */
  CK_SIZE0,    /* a size line's first byte: a hex digit */
  CK_SIZE,     /* more hex digits, or what follows the size */
  CK_WS,       /* white space after the size: ";" or CR next */
  CK_EXT,      /* an extension, up to CR */
  CK_SIZE_LF,  /* the size line's LF */
  CK_DATA,     /* left bytes of data */
  CK_DATA_CR, CK_DATA_LF,
  CK_TRAILER0, /* a trailer line's first byte: CR ends the body */
  CK_TRAILER, CK_TRAILER_LF, CK_END_LF
};

void loom_chunked_start(loom_chunked *c) {
  c->state = CK_SIZE0;
  c->left = 0;
}

int loom_chunked_active(const loom_chunked *c) { return c->state != CK_OFF; }

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_ctl(unsigned char c) { return (c < 32 && c != '\t') || c == 127; }

/* One byte of everything but the data; returns why it is wrong, or NULL. */
static const char *step(loom_chunked *c, unsigned char ch) {
  int h;
  switch (c->state) {
  case CK_SIZE0:
  case CK_SIZE:
    if ((h = hex_value(ch)) >= 0) {
      if (c->left > (UINT64_MAX - 16) / 16) /* (as the library's bound) */
        return "chunk size too large";
      c->left = c->left * 16 + (uint64_t)h;
      c->state = CK_SIZE;
    } else if (c->state == CK_SIZE0) {
      return "a chunk size line without a size";
    } else if (ch == ' ' || ch == '\t') {
      c->state = CK_WS;
    } else if (ch == ';') {
      c->state = CK_EXT;
    } else if (ch == '\r') {
      c->state = CK_SIZE_LF;
    } else {
      return "a chunk size followed by other than ; or CRLF";
    }
    return NULL;
  case CK_WS:
    if (ch == ';')
      c->state = CK_EXT;
    else if (ch == '\r')
      c->state = CK_SIZE_LF;
    else if (ch != ' ' && ch != '\t')
      return "a chunk size followed by other than ; or CRLF";
    return NULL;
  case CK_EXT:
    if (ch == '\r')
      c->state = CK_SIZE_LF;
    else if (is_ctl(ch))
      return "a control byte (bare LF, NUL) in a chunk extension";
    return NULL;
  case CK_SIZE_LF:
    if (ch != '\n')
      return "a chunk size line not ended by CRLF";
    c->state = c->left > 0 ? CK_DATA : CK_TRAILER0;
    return NULL;
  case CK_DATA_CR:
  case CK_DATA_LF:
    if (ch != (c->state == CK_DATA_CR ? '\r' : '\n'))
      return "chunk data not followed by CRLF";
    c->state = c->state == CK_DATA_CR ? CK_DATA_LF : CK_SIZE0;
    c->left = 0;
    return NULL;
  case CK_TRAILER0:
  case CK_TRAILER:
    if (ch == '\n')
      return "a bare LF in a chunked body's trailer";
    c->state = ch != '\r' ? CK_TRAILER
               : c->state == CK_TRAILER0 ? CK_END_LF : CK_TRAILER_LF;
    return NULL;
  default: /* CK_TRAILER_LF, CK_END_LF */
    if (ch != '\n')
      return "a trailer line not ended by CRLF";
    c->state = c->state == CK_END_LF ? CK_OFF : CK_TRAILER0;
    return NULL;
  }
}

size_t loom_chunked_check(loom_chunked *c, const char *data, size_t len,
                          const char **why) {
  size_t i = 0;
  *why = NULL;
  while (i < len && c->state != CK_OFF) {
    if (c->state == CK_DATA) { /* the data itself: skipped whole */
      size_t n = len - i;
      if ((uint64_t)n > c->left)
        n = (size_t)c->left;
      i += n;
      if ((c->left -= n) == 0)
        c->state = CK_DATA_CR;
      continue;
    }
    if ((*why = step(c, (unsigned char)data[i++])) != NULL)
      break;
  }
  return i;
}
