/*
** libfuzzer.c: the libFuzzer driver's failed check: abort, so that
** libFuzzer reports it and saves the input (see fuzz.h).
*/
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

void loom_fuzz_failed(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  abort();
}
