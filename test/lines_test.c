/*
** lines_test.c: parsers/lines.c without Lua: finding delimiters, cutting
** lines, the length limit and resuming a search as input grows.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../parsers/lines.h"
#include "check.h"


/* Whether the next step of c is a line equal to want. */
static int next_is(loom_lines *c, const char *want) {
  const char *line;
  size_t n;
  return loom_lines_next(c, &line, &n) == LOOM_LINES_LINE &&
         n == strlen(want) && memcmp(line, want, n) == 0;
}

static void init(loom_lines *c, const char *buf, const char *delim,
                 size_t max_len) {
  loom_lines_init(c, buf, strlen(buf), delim, strlen(delim), max_len, 0, 0);
}

static void test_memmem(void) {
  const char *s = "xaaabaaaab";
  CHECK(loom_lines_memmem(s, 10, "aab", 3) == s + 2);
  CHECK(loom_lines_memmem(s, 10, "b", 1) == s + 4);
  CHECK(loom_lines_memmem(s, 10, "aaaab", 5) == s + 5);
  CHECK(loom_lines_memmem(s, 10, "bx", 2) == NULL);
  CHECK(loom_lines_memmem(s, 2, "xaa", 3) == NULL); /* longer than s */
  CHECK(loom_lines_memmem(s, 10, "", 0) == NULL);
  CHECK(loom_lines_memmem("a<EN<END>", 9, "<END>", 5) != NULL);
}

static void test_cuts_lines(void) {
  loom_lines c;
  const char *line;
  size_t n;
  init(&c, "one\r\ntwo\r\n\r\nthree four\r\nunfinished", "\r\n", SIZE_MAX);
  CHECK(next_is(&c, "one"));
  CHECK(next_is(&c, "two"));
  CHECK(next_is(&c, ""));
  CHECK(next_is(&c, "three four"));
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  CHECK(c.pos == 24);
}

static void test_multibyte_delimiters(void) {
  loom_lines c;
  init(&c, "a<END>b<EN<END><END>x<E", "<END>", SIZE_MAX);
  CHECK(next_is(&c, "a"));
  CHECK(next_is(&c, "b<EN"));
  CHECK(next_is(&c, ""));
  init(&c, "xaaabaaaabaab", "aab", SIZE_MAX);
  CHECK(next_is(&c, "xa"));
  CHECK(next_is(&c, "aa"));
  CHECK(next_is(&c, ""));
}

/* A line of exactly max_len passes; one byte more stops, consuming none. */
static void test_length_limit(void) {
  loom_lines c;
  const char *line;
  size_t n;
  init(&c, "12345\r\n123456\r\nx\r\n", "\r\n", 5);
  CHECK(next_is(&c, "12345"));
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_TOOLONG);
  CHECK(c.pos == 7 && c.hit == 13);
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_TOOLONG);
  init(&c, ";;", ";", 0);
  CHECK(next_is(&c, ""));
  CHECK(next_is(&c, ""));
}

/*
** After finding nothing, search stops short of the end by dlen - 1 bytes,
** so a delimiter split between two reads is found once the rest arrives.
*/
static void test_resumes_across_reads(void) {
  const char *all = "abc\r\ndef";
  loom_lines c;
  const char *line;
  size_t n;
  loom_lines_init(&c, all, 4, "\r\n", 2, SIZE_MAX, 0, 0); /* "abc\r" */
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  CHECK(c.pos == 0 && c.search == 3);
  loom_lines_init(&c, all, 8, "\r\n", 2, SIZE_MAX, c.pos, c.search);
  CHECK(next_is(&c, "abc"));
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  CHECK(c.pos == 5 && c.search == 7);
}

/* No delimiter is looked for before search, and both are clamped. */
static void test_search_start(void) {
  loom_lines c;
  const char *line;
  size_t n;
  loom_lines_init(&c, "ab;c;", 5, ";", 1, SIZE_MAX, 0, 3);
  CHECK(next_is(&c, "ab;c"));
  loom_lines_init(&c, "a;", 2, ";", 1, SIZE_MAX, 0, 10);
  CHECK(c.search == 2);
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  loom_lines_init(&c, "a;", 2, ";", 1, SIZE_MAX, 9, 0);
  CHECK(c.pos == 2 && c.search == 2);
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
}

/* A delimiter longer than the input, or none at all: nothing to cut. */
static void test_short_input(void) {
  loom_lines c;
  const char *line;
  size_t n;
  init(&c, "<EN", "<END>", SIZE_MAX);
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  CHECK(c.search == 0);
  init(&c, "", "\n", SIZE_MAX);
  CHECK(loom_lines_next(&c, &line, &n) == LOOM_LINES_NOTFOUND);
  CHECK(c.pos == 0 && c.search == 0);
}

int main(void) {
  test_memmem();
  test_cuts_lines();
  test_multibyte_delimiters();
  test_length_limit();
  test_resumes_across_reads();
  test_search_start();
  test_short_input();
  return check_report();
}
