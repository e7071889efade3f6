/*
** measure.c — runs one command and reports what it cost, for the stress
** scripts (GNU time may not be installed, and it cannot see descriptors).
**
**   measure [-r REPORT] [-T SECONDS] [-i MS] [-g SECONDS] -- COMMAND [ARG...]
**
** COMMAND inherits stdin, stdout and stderr.  While it runs, measure samples
** every MS milliseconds (default 50) the number of its open descriptors
** (/proc/PID/fd), of its direct children (/proc/PID/task/PID/children) and
** its VmHWM.  It traces COMMAND (ptrace, exec and exit events only) so that VmHWM and
** the descriptor count are read once more at the very moment it exits, when
** its memory is still mapped.  measure is a child subreaper: anything
** COMMAND started that outlives it is reparented here, so after COMMAND
** ends measure can tell (and list) every process it left behind.  Those
** still alive after the grace (-g, default 2 s) are reported and killed.
** After SECONDS (-T, default 600) COMMAND gets SIGTERM, 5 s later SIGKILL,
** and the report says timed_out=1.
**
** The report (REPORT, default stderr) is shell-readable key=value lines:
**   wall_s exit signal timed_out hwm_kb hwm_at_exit maxrss_tree_kb
**   fd_min fd_max fd_at_exit fd_samples children_max
**   orphans_reaped leftover leftover_pids
** measure exits with COMMAND's status (128+N after signal N), 125 on its
** own failure.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct stats {
  long fd_min, fd_max, fd_at_exit, samples, children_max;
  long hwm_kb;
  int hwm_at_exit;
} stats;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long count_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* Reads /proc/PID/task/PID/children into pids (up to cap); returns the
** count, or -1. */
static long read_children(pid_t pid, pid_t *pids, long cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid,
           (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  long n = 0;
  int v;
  while (fscanf(f, "%d", &v) == 1) {
    if (n < cap && pids != NULL)
      pids[n] = v;
    n++;
  }
  fclose(f);
  return n;
}

static long read_hwm(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static void sample(pid_t pid, stats *s) {
  long fds = count_fds(pid);
  if (fds >= 0) {
    if (s->samples == 0 || fds < s->fd_min)
      s->fd_min = fds;
    if (fds > s->fd_max)
      s->fd_max = fds;
    s->samples++;
  }
  long kids = read_children(pid, NULL, 0);
  if (kids > s->children_max)
    s->children_max = kids;
  long hwm = read_hwm(pid);
  if (hwm > s->hwm_kb)
    s->hwm_kb = hwm;
}

/* Waits for SIGCHLD (blocked) for at most ms milliseconds. */
static void wait_chld(long ms) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  sigtimedwait(&set, NULL, &ts);
}

static void usage(void) {
  fputs("usage: measure [-r REPORT] [-T SECONDS] [-i MS] [-g SECONDS] -- "
        "COMMAND [ARG...]\n",
        stderr);
  exit(125);
}

int main(int argc, char **argv) {
  const char *report = NULL;
  double limit = 600, grace = 2;
  long interval = 50;
  int c;
  while ((c = getopt(argc, argv, "+r:T:i:g:")) != -1) {
    switch (c) {
    case 'r': report = optarg; break;
    case 'T': limit = atof(optarg); break;
    case 'i': interval = atol(optarg); break;
    case 'g': grace = atof(optarg); break;
    default: usage();
    }
  }
  if (optind >= argc || interval < 1)
    usage();

  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    perror("measure: PR_SET_CHILD_SUBREAPER");
    return 125;
  }
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);

  double start = now();
  pid_t pid = fork();
  if (pid < 0) {
    perror("measure: fork");
    return 125;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* Traced for its exit event only; if tracing is not allowed, the
    ** command runs untraced and VmHWM comes from the last sample. */
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    execvp(argv[optind], argv + optind);
    fprintf(stderr, "measure: %s: %s\n", argv[optind], strerror(errno));
    _exit(127);
  }

  stats s;
  memset(&s, 0, sizeof s);
  s.fd_min = s.fd_max = s.fd_at_exit = -1;
  s.hwm_kb = -1;
  int wstatus = 0, done = 0, timed_out = 0, term_sent = 0, traced = 0;
  long orphans = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  double end = start;

  while (!done) {
    int st;
    struct rusage r1;
    pid_t w;
    while ((w = wait4(-1, &st, WNOHANG | __WALL, &r1)) > 0) {
      if (w != pid) {
        orphans++; /* something COMMAND started, reparented here */
        continue;
      }
      if (WIFSTOPPED(st)) {
        int sig = WSTOPSIG(st);
        if (sig == SIGTRAP && (st >> 16) == PTRACE_EVENT_EXIT) {
          long hwm = read_hwm(pid);
          if (hwm >= 0) {
            s.hwm_kb = hwm > s.hwm_kb ? hwm : s.hwm_kb;
            s.hwm_at_exit = 1;
          }
          s.fd_at_exit = count_fds(pid);
          ptrace(PTRACE_CONT, pid, NULL, NULL);
        } else if (sig == SIGTRAP && (st >> 16) == 0 && !traced) {
          /* the stop after execve: ask for exit events, then go on */
          traced = 1;
          ptrace(PTRACE_SETOPTIONS, pid, NULL,
                 (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC |
                                 PTRACE_O_EXITKILL));
          ptrace(PTRACE_CONT, pid, NULL, NULL);
        } else if (sig == SIGTRAP && (st >> 16) == PTRACE_EVENT_EXEC) {
          ptrace(PTRACE_CONT, pid, NULL, NULL); /* COMMAND ran exec again */
        } else {
          ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig);
        }
        continue;
      }
      wstatus = st;
      ru = r1;
      end = now();
      done = 1;
    }
    if (done)
      break;
    sample(pid, &s);
    double t = now() - start;
    if (t > limit && !term_sent) {
      timed_out = 1;
      term_sent = 1;
      kill(pid, SIGTERM);
    } else if (t > limit + 5) {
      kill(pid, SIGKILL);
    }
    wait_chld(interval);
  }

  /* Everything COMMAND left behind is now our child. */
  double left_until = now() + grace;
  pid_t kids[256];
  long nkids = 0;
  char leftover[4096] = "";
  size_t lo_len = 0;
  long leftover_count = 0;
  for (int round = 0;; round++) {
    int st;
    while (waitpid(-1, &st, WNOHANG | __WALL) > 0)
      orphans++;
    nkids = read_children(getpid(), kids, 256);
    if (nkids <= 0)
      break;
    if (now() < left_until) {
      wait_chld(20);
      continue;
    }
    /* Past the grace: note them and end them, by pid. */
    for (long i = 0; i < nkids && i < 256; i++) {
      char comm[64] = "?", path[64];
      snprintf(path, sizeof path, "/proc/%d/comm", (int)kids[i]);
      FILE *f = fopen(path, "r");
      if (f != NULL) {
        if (fgets(comm, sizeof comm, f) != NULL)
          comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
      }
      if (lo_len < sizeof leftover - 80)
        lo_len += (size_t)snprintf(leftover + lo_len, sizeof leftover - lo_len,
                                   "%s%d(%s)", lo_len ? "," : "", (int)kids[i],
                                   comm);
      leftover_count++;
      kill(kids[i], SIGKILL);
    }
    wait_chld(100);
    if (round > 200)
      break;
  }

  FILE *out = stderr;
  if (report != NULL && (out = fopen(report, "w")) == NULL) {
    perror(report);
    return 125;
  }
  int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  fprintf(out,
          "wall_s=%.3f\nexit=%d\nsignal=%d\ntimed_out=%d\nhwm_kb=%ld\n"
          "hwm_at_exit=%d\nmaxrss_tree_kb=%ld\nfd_min=%ld\nfd_max=%ld\n"
          "fd_at_exit=%ld\nfd_samples=%ld\nchildren_max=%ld\n"
          "orphans_reaped=%ld\nleftover=%ld\nleftover_pids='%s'\n",
          end - start, code, sig, timed_out, s.hwm_kb, s.hwm_at_exit,
          ru.ru_maxrss, s.fd_min, s.fd_max, s.fd_at_exit, s.samples,
          s.children_max, orphans, leftover_count, leftover);
  if (out != stderr)
    fclose(out);
  return sig ? 128 + sig : code;
}
