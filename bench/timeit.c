/*
** timeit.c — runs one command and reports its wall time and peak memory,
** for the benchmark driver (bench/bench.lua).
**
**   timeit [-i IN] [-o OUT] [-e ERR] -- COMMAND [ARG...]
**
** COMMAND's stdin, stdout and stderr are the files IN, OUT and ERR when
** given (OUT and ERR are created or truncated), else timeit's own.  When
** COMMAND has ended, timeit prints one line on its stdout:
**
**   wall_s=0.123456 maxrss_kb=4321 status=0
**
** wall_s is measured on the monotonic clock from just before the fork to
** the moment wait4 returns.  maxrss_kb is wait4's ru_maxrss: on Linux the
** largest peak resident set of COMMAND and of the descendants it waited
** for.  A child forked without exec starts with its parent's resident pages
** counted, so for a host that forks its workers (pfp-run, the floor) this
** is the host's own peak plus at most what one child added.  status is
** COMMAND's exit code (127 when it could not be executed), or 128+N when
** signal N ended it.  timeit exits 0 once it has waited for COMMAND,
** whatever COMMAND's status, and 125 on its own failure.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* In the child: makes `path` descriptor `fd`, or ends the child. */
static void redirect(const char *path, int fd, int flags) {
  if (path == NULL)
    return;
  int opened = open(path, flags, 0644);
  if (opened < 0 || dup2(opened, fd) < 0) {
    fprintf(stderr, "timeit: %s: %s\n", path, strerror(errno));
    _exit(127);
  }
  close(opened);
}

static int usage(void) {
  fputs("usage: timeit [-i IN] [-o OUT] [-e ERR] -- COMMAND [ARG...]\n",
        stderr);
  return 125;
}

int main(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *err = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "+i:o:e:")) != -1) {
    switch (opt) {
    case 'i': in = optarg; break;
    case 'o': out = optarg; break;
    case 'e': err = optarg; break;
    default: return usage();
    }
  }
  if (optind >= argc)
    return usage();
  char **command = argv + optind;

  fflush(NULL);
  double start = now();
  pid_t pid = fork();
  if (pid < 0) {
    perror("timeit: fork");
    return 125;
  }
  if (pid == 0) {
    redirect(in, STDIN_FILENO, O_RDONLY);
    redirect(out, STDOUT_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
    redirect(err, STDERR_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
    execvp(command[0], command);
    fprintf(stderr, "timeit: %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }

  int wstatus;
  struct rusage usage;
  pid_t waited;
  do
    waited = wait4(pid, &wstatus, 0, &usage);
  while (waited < 0 && errno == EINTR);
  double wall = now() - start;
  if (waited < 0) {
    perror("timeit: wait4");
    return 125;
  }
  int status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                                  : 128 + WTERMSIG(wstatus);
  printf("wall_s=%.6f maxrss_kb=%ld status=%d\n", wall, usage.ru_maxrss,
         status);
  return 0;
}
