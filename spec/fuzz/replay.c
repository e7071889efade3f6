/*
** replay.c — runs a fuzz target over the files named on the command line,
** without libFuzzer, so the normal test suite (and the sanitizer suite)
** replays the seed corpus and every input that once crashed.  An invariant
** that fails aborts, which the test runner reports as "not ok".
*/
#include <errno.h>
#include <string.h>

#include "fuzz.h"

/* Reads the whole file into a buffer of exactly its size: a target that
** reads one byte too far then trips AddressSanitizer as it would under
** libFuzzer. */
static uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  if (f == NULL)
    return NULL;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *grown = realloc(data, cap);
      if (grown == NULL)
        goto fail;
      data = grown;
    }
    size_t n = fread(data + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  if (ferror(f))
    goto fail;
  fclose(f);
  /* Shrink to the exact size (malloc(0) may return NULL: keep one byte). */
  uint8_t *exact = malloc(len ? len : 1);
  if (exact == NULL) {
    free(data);
    return NULL;
  }
  memcpy(exact, data, len);
  free(data);
  *size = len;
  return exact;
fail:
  fclose(f);
  free(data);
  return NULL;
}

int main(int argc, char **argv) {
  int status = 0;
  for (int i = 1; i < argc; i++) {
    size_t size = 0;
    uint8_t *data = read_file(argv[i], &size);
    if (data == NULL) {
      fprintf(stderr, "%s: %s\n", argv[i], strerror(errno ? errno : ENOMEM));
      status = 1;
      continue;
    }
    /* Named first, so that the runner's log shows which input aborted. */
    fprintf(stderr, "replay %s\n", argv[i]);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
  }
  return status;
}
