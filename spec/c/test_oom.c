/*
** test_oom.c — allocation failure in the host.  Every allocation of a
** small embedding scenario is made to fail in turn (the first, then the
** second, ...), each time in a fresh worker process.  Whatever fails, the
** scenario must end with an error code or a record, never a crash, and
** pfp_processor_destroy must free everything that was allocated.
**
** malloc and friends are replaced here for the whole program (Lua and
** jansson included) by wrappers around glibc's own __libc_* allocator.
** Not built with sanitizers, which replace the allocator themselves.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfp.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* Exported even under -fvisibility=hidden: liblua and libjansson must find
** these, not glibc's. */
#define EXPORTED __attribute__((visibility("default")))

static long allocations; /* counted while armed */
static long fail_at;     /* 0: never fail */
static int persistent;   /* fail every allocation from fail_at on */
static long live;        /* blocks currently allocated (while armed) */
static int armed;
static pid_t armed_pid;

/* Only the worker's own allocations count: children forked by pfp inherit
** the counters but must run normally. */
static int should_fail(void) {
  if (!armed || getpid() != armed_pid)
    return 0;
  ++allocations;
  return persistent ? allocations >= fail_at : allocations == fail_at;
}

EXPORTED void *malloc(size_t n) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_malloc(n);
  if (p && armed && getpid() == armed_pid)
    live++;
  return p;
}

EXPORTED void *calloc(size_t n, size_t size) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_calloc(n, size);
  if (p && armed && getpid() == armed_pid)
    live++;
  return p;
}

EXPORTED void *realloc(void *old, size_t n) {
  if (old == NULL)
    return malloc(n);
  if (n == 0) {
    free(old);
    return NULL;
  }
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_realloc(old, n);
}

EXPORTED void free(void *p) {
  if (p && armed && getpid() == armed_pid)
    live--;
  __libc_free(p);
}

static const char *SCRIPT =
    "function ok(q, c, a) local r = {n = a.n, tag = c.tag}; return r end\n"
    "function fails(q) error('expected failure') end\n";

/* The scenario: returns 0 when it behaved (succeeded, or failed with a
** code and a message), 1 when an API broke its promises.  With a fork
** server, only the host's allocations fail: the server is another process
** (see should_fail). */
static int with_server;
static int scenario(void) {
  pfp_processor *p = pfp_processor_create();
  if (p == NULL)
    return strlen(pfp_errmsg(NULL)) > 0 ? 0 : 1;
  int bad = 0;
  int rc = with_server ? pfp_start_fork_server(p) : PFP_OK;
  if (rc != PFP_OK) {
    bad |= rc >= 0 || pfp_errmsg(p) == NULL;
    goto done;
  }
  rc = pfp_load_string(p, "=oom", SCRIPT);
  if (rc != PFP_OK) {
    bad |= rc >= 0 || pfp_errmsg(p) == NULL;
    goto done;
  }
  rc = pfp_set_context_json(p, "{\"tag\": \"context\", \"list\": [1, 2.5]}");
  if (rc != PFP_OK) {
    bad |= rc >= 0 || pfp_errmsg(p) == NULL;
    goto done;
  }
  rc = pfp_register(p, "ok", "{\"n\": 1}");
  if (rc == PFP_OK)
    rc = pfp_register(p, "fails", NULL);
  if (rc != PFP_OK) {
    bad |= rc >= 0 || pfp_errmsg(p) == NULL;
    goto done;
  }
  rc = pfp_execute(p);
  if (rc < 0) {
    bad |= pfp_errmsg(p) == NULL;
    goto done;
  }
  for (size_t i = 0; i < pfp_record_count(p); i++) {
    const pfp_record *r = pfp_record_at(p, i);
    char *json = pfp_record_to_json(r);
    pfp_free(json);
    (void)pfp_record_result(r);
    bad |= pfp_record_function_name(r) == NULL;
  }
done:
  pfp_processor_destroy(p);
  return bad;
}

/* Runs the scenario in a worker with allocation number n failing.
** Returns 0 when fine; prints why otherwise.  *done is set when the
** scenario made fewer than n allocations (nothing failed any more). */
static int run_with_failure_at(long n, int from_then_on, int *done) {
  int report[2];
  if (pipe(report) != 0)
    return 1;
  fflush(stdout); /* the worker must not print our buffered output again */
  pid_t pid = fork();
  if (pid == 0) {
    close(report[0]);
    fail_at = n;
    persistent = from_then_on;
    allocations = 0;
    live = 0;
    armed_pid = getpid();
    armed = 1;
    int bad = scenario();
    armed = 0;
    long result[3] = {bad, live, allocations};
    (void)!write(report[1], result, sizeof result);
    _exit(0);
  }
  close(report[1]);
  long result[3] = {0, 0, 0};
  ssize_t got = read(report[0], result, sizeof result);
  close(report[0]);
  int status;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status) || got != (ssize_t)sizeof result) {
    printf("#   allocation %ld%s failing: the host died (%s)\n", n,
           from_then_on ? " and all after it" : "",
           WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no report");
    return 1;
  }
  if (result[0]) {
    printf("#   allocation %ld%s failing: an API returned no error code\n", n,
           from_then_on ? " and all after it" : "");
    return 1;
  }
  if (result[1] != 0) {
    printf("#   allocation %ld%s failing: %ld blocks leaked\n", n,
           from_then_on ? " and all after it" : "", result[1]);
    return 1;
  }
  *done = result[2] < n;
  return 0;
}

/* Lua retries a failed allocation once after an emergency collection, so
** a single failure mostly passes unseen; failing every allocation from n
** on reaches Lua's own error paths too. */
static int sweep(int from_then_on, int number) {
  int failures = 0, done = 0;
  long n;
  for (n = 1; !done && n < 100000 && failures < 5; n++)
    failures += run_with_failure_at(n, from_then_on, &done) != 0;
  printf("# %ld runs\n", n - 1);
  printf("%s %d - %s allocation failure in the host gives an error code or "
         "a record, no crash and no leak%s\n",
         failures == 0 && done ? "ok" : "not ok", number,
         from_then_on ? "running out of memory at any point:"
                      : "any single",
         with_server ? " (with a fork server)" : "");
  return failures == 0 && done;
}

int main(void) {
  int ok = sweep(0, 1);
  ok &= sweep(1, 2);
  with_server = 1;
  ok &= sweep(0, 3);
  ok &= sweep(1, 4);
  printf("1..4\n");
  return ok ? 0 : 1;
}
