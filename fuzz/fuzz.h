/*
** fuzz.h: what a loom fuzz harness and its two drivers share. Each
** harness (fuzz/NAME_fuzz.c) defines LLVMFuzzerTestOneInput and checks
** what it finds with FUZZ_CHECK. Under libFuzzer (make fuzz) a failed
** check aborts, so the fuzzer saves the input; under fuzz/replay.c (make
** test) it is counted, and the driver goes on with the next input.
*/
#ifndef LOOM_FUZZ_H
#define LOOM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a failed check; defined by each driver. */
void loom_fuzz_failed(const char *file, int line, const char *what);

#define FUZZ_CHECK(cond)                                                   \
  ((cond) ? (void)0 : loom_fuzz_failed(__FILE__, __LINE__, #cond))

#endif
