/*
** fuzz.h — what every fuzz target shares.  A target is one .c file defining
** LLVMFuzzerTestOneInput; it is linked either with libFuzzer (`make fuzz`)
** or with replay.c (`make test` replays the corpus and the regressions).
*/
#ifndef PFP_FUZZ_H
#define PFP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* libFuzzer calls this once per input; it returns 0 and aborts when an
** invariant breaks, so that both drivers report the input as a crash. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant, checked in every build (assert() would vanish under
** NDEBUG, and a fuzz target without its checks only finds crashes). */
#define FUZZ_CHECK(cond)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                        \
      abort();                                                               \
    }                                                                        \
  } while (0)

#endif /* PFP_FUZZ_H */
