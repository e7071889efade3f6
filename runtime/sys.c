/*
** sys.c — every system call pfp makes more than once, wrapped here once:
** EINTR retried, short reads and writes handled, close never retried.
*/

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pfp_internal.h"

ssize_t pfp__read_some(int fd, void *buf, size_t len) {
  ssize_t n;
  do
    n = read(fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

ssize_t pfp__splice_some(int from, int to, size_t len) {
  ssize_t n;
  do
    n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  while (n < 0 && errno == EINTR);
  return n;
}

int pfp__write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int pfp__lend_all(int fd, const void *buf, size_t len) {
  struct iovec iov = {(void *)buf, len};
  while (iov.iov_len > 0) {
    ssize_t n = vmsplice(fd, &iov, 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EBADF))
      return pfp__write_all(fd, iov.iov_base, iov.iov_len); /* not a pipe */
    if (n < 0)
      return -1;
    iov.iov_base = (char *)iov.iov_base + n;
    iov.iov_len -= (size_t)n;
  }
  return 0;
}

void *pfp__host_only(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  (void)madvise(p, len, MADV_DONTFORK); /* a hint: the memory works anyway */
  return p;
}

void pfp__host_only_free(void *p, size_t len) {
  if (p != NULL)
    munmap(p, len);
}

/* madvise over the whole pages inside [addr, addr + len): the ends of a
** heap block share their pages with other blocks.  A hint: failure ignored. */
static void advise_inside(void *addr, size_t len, int advice) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t from = ((uintptr_t)addr + page - 1) & ~(page - 1);
  uintptr_t to = ((uintptr_t)addr + len) & ~(page - 1);
  if (to > from)
    (void)madvise((void *)from, to - from, advice);
}

void pfp__populate(void *addr, size_t len) {
#ifdef MADV_POPULATE_WRITE
  advise_inside(addr, len, MADV_POPULATE_WRITE);
#else
  (void)addr;
  (void)len;
#endif
}

/* Smaller blocks would gain little from huge pages. */
#define HUGE_ENOUGH ((size_t)8 << 20)
void pfp__advise_huge_pages(char *data, size_t len) {
  if (len >= HUGE_ENOUGH)
    advise_inside(data, len, MADV_HUGEPAGE);
}

int pfp__pipe_nonblock(int fds[2]) {
  return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int pfp__set_blocking(int fd) {
  return fcntl(fd, F_SETFL, 0) < 0 ? -1 : 0;
}

ssize_t pfp__send_some(int fd, const void *buf, size_t len, int flags) {
  ssize_t n;
  do
    n = send(fd, buf, len, flags | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Writes the whole iovec with writev (socket: sendmsg, so that a closed
** peer gives EPIPE, never SIGPIPE).  A short write resumes inside the
** iovec it ended in. */
static int vector_write_all(int fd, struct iovec *iov, int count,
                            int socket) {
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  while (count > 0) {
    if (iov->iov_len == 0) {
      iov++;
      count--;
      continue;
    }
    ssize_t n;
    if (socket) {
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)count;
      n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } else {
      n = writev(fd, iov, count);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    size_t sent = (size_t)n;
    while (count > 0 && sent >= iov->iov_len) {
      sent -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = (char *)iov->iov_base + sent;
      iov->iov_len -= sent;
    }
  }
  return 0;
}

int pfp__writev_all(int fd, struct iovec *iov, int n) {
  return vector_write_all(fd, iov, n, 0);
}

int pfp__sendv_all(int fd, struct iovec *iov, int count) {
  return vector_write_all(fd, iov, count, 1);
}

ssize_t pfp__recv_some(int fd, void *buf, size_t len, int flags) {
  ssize_t n;
  do
    n = recv(fd, buf, len, flags);
  while (n < 0 && errno == EINTR);
  return n;
}

int pfp__set_nonblock(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return -1;
  return 0;
}

int pfp__pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  if (pfp__set_nonblock(fds[0]) != 0) {
    pfp__close(&fds[0]);
    pfp__close(&fds[1]);
    return -1;
  }
  return 0;
}

void pfp__close(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
    *fd = -1;
  }
}

pid_t pfp__waitpid(pid_t pid, int *status, int flags) {
  pid_t r;
  do
    r = waitpid(pid, status, flags);
  while (r < 0 && errno == EINTR);
  return r;
}

int pfp__pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    /* pidfds are close-on-exec already; nothing else to set. */
    return fd;
  }
#else
  (void)pid;
#endif
  return -1;
}

int pfp__pidfd_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
  (void)pidfd;
  (void)sig;
  errno = ENOSYS;
  return -1;
#endif
}

int pfp__tie_to_parent(pid_t parent) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* A parent that died before the prctl has left us orphaned already. */
  return getppid() == parent ? 0 : -1;
}

void pfp__default_signals(const sigset_t *which) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; sig++)
    if (which == NULL ? sig != SIGKILL && sig != SIGSTOP
                      : sigismember(which, sig) == 1)
      sigaction(sig, &dfl, NULL);
}

off_t pfp__written_size(int fd) {
  off_t end = fd >= 0 ? lseek(fd, 0, SEEK_CUR) : -1;
  struct stat st;
  if (end > 0 && fstat(fd, &st) == 0 && end > st.st_size)
    end = st.st_size; /* a seek past the end wrote nothing there */
  return end;
}

double pfp__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
