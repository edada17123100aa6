/*
** buf.c: the growable byte buffer behind write queues.
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Returns 0, or UV_ENOMEM with the buffer unchanged. */
int loom__buf_append(loom_buf *b, const char *data, size_t len) {
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *p;
    while (cap < b->len + len)
      cap *= 2;
    p = realloc(b->data, cap);
    if (p == NULL)
      return UV_ENOMEM;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

void loom__buf_free(loom_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
