/*
** test_buf.c — the byte buffer (runtime/buf.c), started in storage the
** caller owns (pfp__buf_init_borrowed, which a one-call child uses for its
** result text).  The child's own storage is a static arena that
** AddressSanitizer cannot see into, so these tests borrow heap blocks of
** exactly the stated size instead: an overrun, or a free or realloc of
** storage the buffer does not own, is then reported by `make asan`.
*/
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

#include "tap.h"

static void test_fits_then_moves(void) {
  char *storage = malloc(8);
  pfp__buf b = {0};
  CHECK(storage != NULL);
  pfp__buf_init_borrowed(&b, storage, 8);
  CHECK(b.len == 0 && b.data == storage && b.data[0] == '\0');
  CHECK(pfp__buf_append(&b, "abcdefg", 7) == 0); /* 7 + NUL: fits */
  CHECK(b.data == storage && b.borrowed);
  CHECK(pfp__buf_append(&b, "hij", 3) == 0); /* outgrows it */
  CHECK(b.data != storage && !b.borrowed);
  CHECK(b.len == 10 && strcmp(b.data, "abcdefghij") == 0);
  CHECK(memcmp(storage, "abcdefg", 8) == 0); /* left as it was */
  pfp__buf_free(&b); /* frees the heap copy only */
out:
  free(storage);
}

static void test_steal_and_take_copy_out(void) {
  char *storage = malloc(16);
  char *got = NULL;
  pfp__buf b = {0};
  size_t len = 99;
  CHECK(storage != NULL);
  pfp__buf_init_borrowed(&b, storage, 16);
  CHECK(pfp__buf_puts(&b, "kept") == 0);
  got = pfp__buf_steal(&b, &len);
  CHECK(got != NULL && got != storage); /* the caller frees it */
  CHECK(len == 4 && strcmp(got, "kept") == 0);
  CHECK(b.data == NULL && b.len == 0 && !b.borrowed);
  free(got);
  got = NULL;

  pfp__buf_init_borrowed(&b, storage, 16);
  CHECK(pfp__buf_take(&b, &len) == NULL && len == 0); /* empty: nothing */
  CHECK(!b.borrowed);
  pfp__buf_init_borrowed(&b, storage, 16);
  CHECK(pfp__buf_printf(&b, "%d-%s", 42, "x") == 0);
  got = pfp__buf_take(&b, &len);
  CHECK(got != NULL && got != storage && len == 4 &&
        strcmp(got, "42-x") == 0);
out:
  free(got);
  free(storage);
}

static void test_free_leaves_storage(void) {
  char *storage = malloc(32);
  pfp__buf b = {0};
  CHECK(storage != NULL);
  pfp__buf_init_borrowed(&b, storage, 32);
  CHECK(pfp__buf_puts(&b, "never freed by the buffer") == 0);
  pfp__buf_free(&b);
  CHECK(b.data == NULL && b.cap == 0 && !b.borrowed);
  /* An ordinary buffer afterwards owns its bytes again. */
  CHECK(pfp__buf_puts(&b, "own") == 0 && !b.borrowed);
  pfp__buf_free(&b);
out:
  free(storage);
}

int main(void) {
  run_test("a borrowed buffer fills its storage, then moves to the heap",
           test_fits_then_moves);
  run_test("steal and take copy a borrowed buffer's bytes out",
           test_steal_and_take_copy_out);
  run_test("freeing a borrowed buffer leaves the storage to its owner",
           test_free_leaves_storage);
  printf("1..%d\n", tests_run);
  return tests_failed == 0 ? 0 : 1;
}
