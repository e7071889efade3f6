/*
** pipe_raw.c — raw pipe throughput, the reference for workload c (one
** 100 MB result): a forked child writes BYTES through a pipe in 64 KiB
** writes; the parent reads them in 64 KiB reads and counts them.  Nothing
** is encoded, checked or stored, so no way of moving a result from one
** process to another through a pipe can beat it.
**
**   pipe_raw BYTES
**
** Prints "bytes=N elapsed_s=S" (S from the fork to the reaping) and exits
** 1 unless exactly BYTES arrived and the writer exited cleanly.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The writer: BYTES of 'x', then _exit (0 on success). */
static void write_all(int fd, long long bytes) {
  static char chunk[CHUNK];
  memset(chunk, 'x', sizeof chunk);
  while (bytes > 0) {
    size_t want = bytes < CHUNK ? (size_t)bytes : CHUNK;
    ssize_t n = write(fd, chunk, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      _exit(1);
    bytes -= n;
  }
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fputs("usage: pipe_raw BYTES\n", stderr);
    return 2;
  }
  long long bytes = strtoll(argv[1], NULL, 10);
  int fds[2];
  if (pipe(fds) != 0) {
    perror("pipe_raw: pipe");
    return 1;
  }
  double start = now();
  pid_t pid = fork();
  if (pid < 0) {
    perror("pipe_raw: fork");
    return 1;
  }
  if (pid == 0) {
    close(fds[0]);
    write_all(fds[1], bytes);
  }
  close(fds[1]);

  static char buf[CHUNK];
  long long received = 0;
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    received += n;
  }
  int wstatus;
  pid_t waited;
  do
    waited = waitpid(pid, &wstatus, 0);
  while (waited < 0 && errno == EINTR);
  double elapsed = now() - start;

  printf("bytes=%lld elapsed_s=%.6f\n", received, elapsed);
  int writer_ok =
      waited == pid && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
  return received == bytes && writer_ok ? 0 : 1;
}
