/*
** chunked_test.c: parsers/chunked.c without Lua: what RFC 9112 allows of a
** chunked body's framing, what it does not, and the same verdicts however
** the bytes are cut.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <string.h>

#include "../parsers/chunked.h"
#include "check.h"

/* Checks s whole from a body's start: the bytes that were the body's. */
static size_t whole(const char *s, const char **why) {
  loom_chunked c;
  loom_chunked_start(&c);
  return loom_chunked_check(&c, s, strlen(s), why);
}

/* The same a byte at a time: the verdict, and where the body ended. */
static size_t bytewise(const char *s, const char **why) {
  loom_chunked c;
  size_t i, len = strlen(s);
  loom_chunked_start(&c);
  *why = NULL;
  for (i = 0; i < len && loom_chunked_active(&c); i++) {
    loom_chunked_check(&c, s + i, 1, why);
    if (*why != NULL)
      return i + 1;
  }
  return i;
}

static void test_good_bodies(void) {
  static const char *const good[] = {
    "5\r\nhello\r\n0\r\n\r\n",
    "5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n",
    "5 \t;ext\r\nhello\r\n000\r\n\r\n",
    "1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
    "3\r\nabc\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n",
    "0\r\n\r\n",
  };
  size_t i;
  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    const char *why;
    CHECK_EQ(whole(good[i], &why), strlen(good[i]));
    CHECK(why == NULL);
    CHECK_EQ(bytewise(good[i], &why), strlen(good[i]));
    CHECK(why == NULL);
  }
}

/* The body ends at its blank line: what follows is not checked. */
static void test_stops_at_the_end(void) {
  loom_chunked c;
  const char *why;
  const char *s = "2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
  loom_chunked_start(&c);
  CHECK(loom_chunked_active(&c));
  CHECK_EQ(loom_chunked_check(&c, s, strlen(s), &why), 12);
  CHECK(why == NULL);
  CHECK(!loom_chunked_active(&c));
  CHECK_EQ(loom_chunked_check(&c, "junk", 4, &why), 0);
  CHECK(why == NULL);
}

static void test_bad_framing(void) {
  static const struct { const char *body, *why; } bad[] = {
    {"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"},
    {"5\r\nhello\nX0\r\n\r\n", "chunk data not followed by CRLF"},
    {"5 garbage\r\nhello\r\n0\r\n\r\n",
     "a chunk size followed by other than ; or CRLF"},
    {"5x\r\nhello\r\n0\r\n\r\n",
     "a chunk size followed by other than ; or CRLF"},
    {"5;a\nb\r\nhello\r\n0\r\n\r\n",
     "a control byte (bare LF, NUL) in a chunk extension"},
    {"5\rXhello\r\n0\r\n\r\n", "a chunk size line not ended by CRLF"},
    {"\r\n", "a chunk size line without a size"},
    {";ext\r\n", "a chunk size line without a size"},
    {"0\r\nT: v\nX: y\r\n\r\n", "a bare LF in a chunked body's trailer"},
    {"0\r\n\rX", "a trailer line not ended by CRLF"},
    {"11111111111111111\r\n", "chunk size too large"},
  };
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *why, *why1;
    whole(bad[i].body, &why);
    CHECK(why != NULL && strcmp(why, bad[i].why) == 0);
    bytewise(bad[i].body, &why1);
    CHECK(why1 == why);
  }
}

/* 16 hex digits fit (as libhttp-parser's bound); a NUL byte in the
** extension is a control byte even past the C string's end. */
static void test_edges(void) {
  loom_chunked c;
  const char *why;
  static const char nul_ext[] = "1;a\0b\r\nx\r\n0\r\n\r\n";
  loom_chunked_start(&c);
  loom_chunked_check(&c, "fffffffffffffff\r\n", 17, &why);
  CHECK(why == NULL);
  CHECK_EQ(c.left, 0xfffffffffffffffULL);
  loom_chunked_start(&c);
  loom_chunked_check(&c, nul_ext, sizeof nul_ext - 1, &why);
  CHECK(why != NULL);
}

int main(void) {
  test_good_bodies();
  test_stops_at_the_end();
  test_bad_framing();
  test_edges();
  return check_report();
}
