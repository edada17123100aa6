/*
** check.h: the checks every C test of loom uses (the test/ programs, and
** fuzz/ and parsers/ tests as they come). One test program is one
** translation unit, so the counters are static here. A failed check prints file:line and
** the expression, and the program goes on to the next check; main ends
** with `return check_report();`, which prints "N passed, M failed" (the
** line spec/run.sh adds up) and returns the exit status.
*/
#ifndef LOOM_TEST_CHECK_H
#define LOOM_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (cond) {                                                            \
      check_passed++;                                                      \
    } else {                                                               \
      check_failed++;                                                      \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                      \
    }                                                                      \
  } while (0)

/* An integer check that shows both values when they differ. */
#define CHECK_EQ(got, want)                                                \
  do {                                                                     \
    long long check_got_ = (long long)(got);                               \
    long long check_want_ = (long long)(want);                             \
    if (check_got_ == check_want_) {                                       \
      check_passed++;                                                      \
    } else {                                                               \
      check_failed++;                                                      \
      fprintf(stderr, "%s:%d: check failed: %s == %s (%lld, not %lld)\n",  \
              __FILE__, __LINE__, #got, #want, check_got_, check_want_);   \
    }                                                                      \
  } while (0)

static inline int check_report(void) {
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed != 0;
}

#endif
