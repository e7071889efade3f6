/*
** host_size.c — what the size of an embedding host costs per call, and
** what the fork server (pfp_start_fork_server) wins back.
**
**   host_size [--ballast MIB] [--server] [--calls N] [--jobs J] [--rounds R]
**
** Creates a processor (starting its fork server first with --server, as a
** host should while it is small), then allocates and touches MIB MiB of
** its own, then runs N calls of a trivial function (each returns
** {i = i, sq = i * i}) with J jobs, R times.  Checks every record and
** prints one line: the median and best time per call in microseconds.
** Exit status 1 when a record is wrong.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pfp.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size_t ballast_mib = 0;
  int server = 0, calls = 1000, rounds = 5;
  unsigned jobs = 2;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--ballast") == 0 && i + 1 < argc)
      ballast_mib = (size_t)atol(argv[++i]);
    else if (strcmp(argv[i], "--server") == 0)
      server = 1;
    else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
      calls = atoi(argv[++i]);
    else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
      jobs = (unsigned)atoi(argv[++i]);
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--ballast MIB] [--server] [--calls N] "
                      "[--jobs J] [--rounds R]\n", argv[0]);
      return 2;
    }
  }
  if (calls < 1 || rounds < 1 || rounds > 100 || jobs < 1) {
    fprintf(stderr, "host_size: bad numbers\n");
    return 2;
  }

  pfp_processor *p = pfp_processor_create();
  if (p == NULL || (server && pfp_start_fork_server(p) != PFP_OK)) {
    fprintf(stderr, "host_size: %s\n", pfp_errmsg(p));
    return 1;
  }
  /* The host grows after its server started: allocated and touched. */
  size_t size = ballast_mib << 20;
  char *ballast = size ? malloc(size) : NULL;
  if (size && ballast == NULL) {
    fprintf(stderr, "host_size: cannot allocate %zu MiB\n", ballast_mib);
    return 1;
  }
  long page = sysconf(_SC_PAGESIZE);
  for (size_t off = 0; off < size; off += (size_t)page)
    ballast[off] = (char)(off >> 12);

  if (pfp_load_string(p, "=bench",
                      "return { f = function(q, c, args) "
                      "return { i = args.i, sq = args.i * args.i } end }") !=
          PFP_OK ||
      pfp_set_jobs(p, jobs) != PFP_OK) {
    fprintf(stderr, "host_size: %s\n", pfp_errmsg(p));
    return 1;
  }
  for (int i = 0; i < calls; i++) {
    char args[48];
    snprintf(args, sizeof args, "{\"i\": %d}", i);
    if (pfp_register(p, "f", args) != PFP_OK) {
      fprintf(stderr, "host_size: %s\n", pfp_errmsg(p));
      return 1;
    }
  }

  double per_call[100];
  for (int r = 0; r < rounds; r++) {
    double t0 = now();
    int rc = pfp_execute(p);
    per_call[r] = (now() - t0) / calls * 1e6;
    if (rc != 0 || pfp_record_count(p) != (size_t)calls) {
      fprintf(stderr, "host_size: pfp_execute returned %d: %s\n", rc,
              pfp_errmsg(p));
      return 1;
    }
    for (int i = 0; i < calls; i++) {
      const json_t *res = pfp_record_result(pfp_record_at(p, (size_t)i));
      if (json_integer_value(json_object_get(res, "i")) != i ||
          json_integer_value(json_object_get(res, "sq")) !=
              (json_int_t)i * i) {
        fprintf(stderr, "host_size: record %d is wrong\n", i);
        return 1;
      }
    }
  }
  qsort(per_call, (size_t)rounds, sizeof per_call[0], compare_doubles);
  printf("host %4zu MiB  %-9s  -j %u  %d calls x %d: %.1f us per call "
         "(median), %.1f best\n",
         ballast_mib, server ? "server" : "no server", jobs, calls, rounds,
         per_call[rounds / 2], per_call[0]);
  if (ballast)
    ballast[size - 1] = 1; /* kept alive to the end */
  free(ballast);
  pfp_processor_destroy(p);
  return 0;
}
