/*
** replay.c: runs a fuzz harness over a checked-in corpus without libFuzzer
** or clang, so that `make test` exercises every harness. Each file of the
** corpus directory (LOOM_FUZZ_CORPUS, or the paths given) is one input;
** an input passes when no FUZZ_CHECK failed on it. Prints
** "N passed, M failed" like every loom test runner; an empty or missing
** corpus counts as a failure.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static int checks_failed;

void loom_fuzz_failed(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  checks_failed++;
}

/* The whole of a file in a malloc'd buffer; NULL if it cannot be read. */
static uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0, got;
  if (f == NULL)
    return NULL;
  do {
    if (n == cap) {
      uint8_t *grown = realloc(buf, cap = cap ? cap * 2 : 4096);
      if (grown == NULL)
        break;
      buf = grown;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
  } while (got > 0);
  if (ferror(f) || n == cap) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *size = n;
  return buf;
}

/* Runs one input; returns 1 if every check passed. */
static int replay(const char *path) {
  size_t size;
  uint8_t *data = read_file(path, &size);
  int before = checks_failed;
  if (data == NULL) {
    fprintf(stderr, "%s: cannot read\n", path);
    return 0;
  }
  LLVMFuzzerTestOneInput(data, size);
  free(data);
  if (checks_failed != before)
    fprintf(stderr, "%s: failed\n", path);
  return checks_failed == before;
}

static void replay_dir(const char *dir, int *passed, int *failed) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[4096];
  if (d == NULL) {
    fprintf(stderr, "%s: cannot open the corpus\n", dir);
    return;
  }
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (replay(path))
      ++*passed;
    else
      ++*failed;
  }
  closedir(d);
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0, i;
  if (argc < 2) {
    replay_dir(LOOM_FUZZ_CORPUS, &passed, &failed);
  }
  for (i = 1; i < argc; i++) {
    if (replay(argv[i]))
      passed++;
    else
      failed++;
  }
  if (passed + failed == 0)
    failed = 1; /* no corpus: nothing was checked */
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
