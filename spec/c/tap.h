/*
** tap.h — what the C tests share: a small TAP harness (CHECK macros that
** jump to the test's `out:` label, and run_test, which prints "ok N - name"
** or "not ok N - name"), and checks of the test process's own state.  Each
** test program includes it once.
*/
#ifndef PFP_TEST_TAP_H
#define PFP_TEST_TAP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

#include "pfp.h"

static int tests_run, tests_failed, current_failed;

/* Timeouts in these tests are short; under valgrind everything is ~20x
** slower, so spec/valgrind.sh stretches them with PFP_TEST_TIME_SCALE. */
static double time_scale __attribute__((unused)) = 1.0;
#define SECONDS(s) ((s) * time_scale)

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
      current_failed = 1;                                                    \
      goto out;                                                              \
    }                                                                        \
  } while (0)

#define CHECK_RC(p, call)                                                    \
  do {                                                                       \
    int rc_ = (call);                                                        \
    if (rc_ != PFP_OK) {                                                     \
      printf("#   %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call,   \
             rc_, pfp_errmsg(p));                                            \
      current_failed = 1;                                                    \
      goto out;                                                              \
    }                                                                        \
  } while (0)

/* Prints a processor's records as TAP comments (shown when a check of
** pfp_execute's result fails). */
static inline void dump_records(pfp_processor *p) {
  for (size_t i = 0; p && i < pfp_record_count(p); i++) {
    char *json = pfp_record_to_json(pfp_record_at(p, i));
    printf("#     record %zu: %s\n", i, json ? json : "(no memory)");
    pfp_free(json);
  }
}

#define CHECK_EXEC(p, expected)                                              \
  do {                                                                       \
    int got_ = pfp_execute(p);                                               \
    if (got_ != (expected)) {                                                \
      printf("#   %s:%d: pfp_execute returned %d, expected %d (%s)\n",       \
             __FILE__, __LINE__, got_, (expected), pfp_errmsg(p));           \
      dump_records(p);                                                       \
      current_failed = 1;                                                    \
      goto out;                                                              \
    }                                                                        \
  } while (0)

typedef void (*test_fn)(void);

static void run_test(const char *name, test_fn fn) {
  current_failed = 0;
  fflush(stdout);
  fn();
  tests_run++;
  if (current_failed)
    tests_failed++;
  printf("%s %d - %s\n", current_failed ? "not ok" : "ok", tests_run, name);
  fflush(stdout);
}

/* Descriptors open in this process (-1 when that cannot be told). */
static inline int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* True when this process has no child left to reap (none running either). */
static inline int no_children_left(void) {
  return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

#endif
