/*
** embed_host.c — a C program that embeds pfp, for the benchmarks: how fast
** it runs trivial functions when the host itself has grown big (workload
** d), and how much memory it needs per finished record (workload e).
**
**   embed_host [-j JOBS] [-n CALLS] [-m HOLD_MIB] [-r REUSE] [-s] SCRIPT
**   embed_host -F
**
** Creates a processor (and with -s starts the fork server right away,
** while the host is still small), then, when -m is given, allocates
** HOLD_MIB MiB and writes every page of it, as a host that has grown would.
** Then it loads SCRIPT, registers CALLS calls (default 1000) of its
** function `sq` with args {"i": 1} .. {"i": CALLS}, runs them at most JOBS
** at once (default 2; with -r, REUSE calls per forked worker) and keeps
** every record.  It checks each record: status
** ok and result text exactly {"i":I,"sq":I*I}.  It prints one line:
**
**   calls=N ok=N elapsed_s=S rss_before_kb=R peak_kb=P result_bytes=B
**
** S times pfp_execute alone.  R is the resident set just before the first
** registration, P the peak resident set at the end, B the total length of
** the result texts, so (P - R) / N - B / N is what the host holds per
** registration and record beyond the result data.  Exits 0 when every
** record checked, 1 otherwise, 3 when -s or -r was asked of a pfp without
** the fork server or worker reuse.  -F prints "fork_server=B reuse=B" (B
** is 1 or 0): whether this build has pfp_start_fork_server, pfp_set_reuse.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <pfp.h>

/* Both are new in pfp: bench.mk defines these when pfp.h declares them. */
#ifdef HAVE_FORK_SERVER
#define FORK_SERVER_BUILT 1
#else
#define FORK_SERVER_BUILT 0
#endif
#ifdef HAVE_REUSE
#define REUSE_BUILT 1
#else
#define REUSE_BUILT 0
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The current resident set in KiB (VmRSS), or -1. */
static long resident_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

/* Registers calls of sq with {"i": 1} .. {"i": calls}. */
static int register_calls(pfp_processor *p, long calls) {
  char args[64];
  for (long i = 1; i <= calls; i++) {
    snprintf(args, sizeof args, "{\"i\": %ld}", i);
    if (pfp_register(p, "sq", args) != PFP_OK)
      return -1;
  }
  return 0;
}

/* Counts the records that are ok with the result sq must give; adds the
** length of every result text to *result_bytes. */
static long count_correct(const pfp_processor *p, size_t *result_bytes) {
  long correct = 0;
  char expected[64];
  for (size_t k = 0; k < pfp_record_count(p); k++) {
    const pfp_record *r = pfp_record_at(p, k);
    size_t len = 0;
    const char *text = pfp_record_result_text(r, &len);
    long long i = (long long)pfp_record_index(r) + 1;
    int n = snprintf(expected, sizeof expected, "{\"i\":%lld,\"sq\":%lld}", i,
                     i * i);
    *result_bytes += len;
    if (pfp_record_status(r) == PFP_STATUS_OK && text != NULL &&
        len == (size_t)n && memcmp(text, expected, len) == 0)
      correct++;
  }
  return correct;
}

int main(int argc, char **argv) {
  long jobs = 2, calls = 1000, hold_mib = 0, reuse = 0;
  int fork_server = 0;
  int opt;
  while ((opt = getopt(argc, argv, "j:n:m:r:sF")) != -1) {
    switch (opt) {
    case 'j': jobs = strtol(optarg, NULL, 10); break;
    case 'n': calls = strtol(optarg, NULL, 10); break;
    case 'm': hold_mib = strtol(optarg, NULL, 10); break;
    case 'r': reuse = strtol(optarg, NULL, 10); break;
    case 's': fork_server = 1; break;
    case 'F':
      printf("fork_server=%d reuse=%d\n", FORK_SERVER_BUILT, REUSE_BUILT);
      return 0;
    default: goto usage;
    }
  }
  if (optind != argc - 1 || jobs < 1 || calls < 0 || hold_mib < 0 ||
      reuse < 0)
    goto usage;
  if ((fork_server && !FORK_SERVER_BUILT) || (reuse > 0 && !REUSE_BUILT)) {
    fputs("embed_host: this pfp has no fork server or no worker reuse\n",
          stderr);
    return 3;
  }

  int status = 1;
  char *held = NULL;
  pfp_processor *p = pfp_processor_create();
  if (p == NULL) {
    fprintf(stderr, "embed_host: %s\n", pfp_errmsg(NULL));
    return 1;
  }
#ifdef HAVE_FORK_SERVER
  /* Before the host grows: children are then forked from the small server. */
  if (fork_server && pfp_start_fork_server(p) != PFP_OK)
    goto fail;
#endif
  if (hold_mib > 0) {
    size_t bytes = (size_t)hold_mib << 20;
    held = malloc(bytes);
    if (held == NULL) {
      fprintf(stderr, "embed_host: cannot allocate %ld MiB\n", hold_mib);
      goto done;
    }
    memset(held, 1, bytes); /* every page resident, as in a grown host */
  }
  if (pfp_load_file(p, argv[optind]) != PFP_OK ||
      pfp_set_jobs(p, (unsigned)jobs) != PFP_OK)
    goto fail;
#ifdef HAVE_REUSE
  if (reuse > 0 && pfp_set_reuse(p, (unsigned)reuse) != PFP_OK)
    goto fail;
#endif

  long rss_before = resident_kb();
  if (register_calls(p, calls) != 0)
    goto fail;
  double start = now();
  int not_ok = pfp_execute(p);
  double elapsed = now() - start;
  if (not_ok < 0)
    goto fail;
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);

  size_t result_bytes = 0;
  long correct = count_correct(p, &result_bytes);
  printf("calls=%ld ok=%ld elapsed_s=%.6f rss_before_kb=%ld peak_kb=%ld "
         "result_bytes=%zu\n",
         calls, correct, elapsed, rss_before, usage.ru_maxrss, result_bytes);
  status = correct == calls ? 0 : 1;
  goto done;

fail:
  fprintf(stderr, "embed_host: %s\n", pfp_errmsg(p));
done:
  pfp_processor_destroy(p);
  free(held);
  return status;

usage:
  fputs("usage: embed_host [-j JOBS] [-n CALLS] [-m HOLD_MIB] [-r REUSE] [-s] "
        "SCRIPT\n"
        "       embed_host -F\n",
        stderr);
  return 2;
}
