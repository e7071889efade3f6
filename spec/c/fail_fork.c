/*
** fail_fork.c — a test shim, loaded with LD_PRELOAD into pfp-run: makes
** chosen fork() calls fail with EAGAIN, as a low RLIMIT_NPROC would (root,
** which CI runs as, is not bound by RLIMIT_NPROC, so the limit itself
** cannot be used).
**
**   PFP_TEST_FAIL_FORK=FIRST[-[LAST]]   1-based numbers of the fork calls
**                                       that fail ("3-" means 3 onwards)
*/
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

pid_t fork(void);

pid_t fork(void) {
  static pid_t (*real_fork)(void);
  static long calls;
  if (real_fork == NULL)
    real_fork = (pid_t(*)(void))dlsym(RTLD_NEXT, "fork");
  calls++;
  const char *spec = getenv("PFP_TEST_FAIL_FORK");
  if (spec != NULL) {
    char *end;
    long first = strtol(spec, &end, 10), last = first;
    if (*end == '-')
      last = end[1] ? strtol(end + 1, NULL, 10) : LONG_MAX;
    if (calls >= first && calls <= last) {
      errno = EAGAIN;
      return -1;
    }
  }
  return real_fork();
}
