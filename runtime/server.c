/*
** server.c — the fork server (pfp_start_fork_server).
**
** fork() costs time in proportion to the forking process's memory: its page
** tables are copied, and every page either side then writes is copied once
** more.  A host that holds a gigabyte of its own pays that on every call.
** The fork server is a helper process forked from the host while the host
** is still small.  It owns a copy of the processor and runs the normal
** engine (exec.c), so every child is forked from the small server instead
** of the large host.
**
** Host and server talk over a socketpair in messages: a type byte, the
** payload length as 8 bytes little-endian, then the payload (the framing of
** wire.c).  Loads and the context are requests answered at once, so their
** errors are reported by the call that caused them; a run is a stream.
**
**   host -> server                         server -> host
**   'L' cwd NUL path NUL                   'N' names, after every load
**   'S' chunkname NUL source NUL           'K' code (i32) message: reply
**   'C' context JSON (empty: none)
**   'X' options, cwd NUL: a run begins     'G' the run has begun
**   'J' index (u64) name NUL args JSON     'R' a record
**   'E' no more jobs                       'D' code (i32) message: it ended
**
** During a run the host sends a job only when the server has a slot free
** for it: `jobs` of them at first, then one for each record that comes
** back.  So the feed is called, and a record callback that asks to stop is
** obeyed, at the same moments as without a server: no job the server
** already holds can start after the callback said stop.  The host writes
** without blocking and reads records whenever they come; the server writes
** records blocking, which is safe because the host always reads while a
** run lasts.  Neither side can wait on the other, however large a result.
**
** A stop (pfp_interrupt, a record callback asking to stop) does not travel
** on the socket: the server reads the socket only when it has a free slot,
** so a stop sent there would wait for ever behind functions that never end.
** Instead the host keeps a write end of the server processor's own
** interrupt pipe, which the engine polls whatever it is doing.
*/

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfp_internal.h"

enum {
  MSG_LOAD_FILE = 'L',
  MSG_LOAD_STRING = 'S',
  MSG_CONTEXT = 'C',
  MSG_RUN = 'X',
  MSG_JOB = 'J',
  MSG_END = 'E',
  MSG_NAMES = 'N',
  MSG_REPLY = 'K',
  MSG_STARTED = 'G',
  MSG_RECORD = 'R',
  MSG_DONE = 'D'
};

#define HEADER PFP__FRAME_HEADER
#define READ_CHUNK 65536
/* Jobs are taken from the processor only while fewer bytes than this wait
** to be sent, so that many jobs with huge args are not all held at once. */
#define LOW_WATER 65536
/* Fixed part of a record message: index, status, exit code, signal,
** duration. */
#define RECORD_FIXED (8 + 1 + 4 + 4 + 8)
#define NO_TEXT UINT64_MAX /* length of a NULL string in a record */
/* Fixed part of a run message: jobs, timeout, kill grace, output limit,
** memory limit, reuse; the working directory follows. */
#define RUN_FIXED (4 + 8 + 8 + 8 + 8 + 4)

/* ---- encoding --------------------------------------------------------- */

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)p[i] << (8 * i);
  return v;
}

static uint64_t double_bits(double d) {
  uint64_t v;
  memcpy(&v, &d, sizeof v);
  return v;
}

static double bits_double(uint64_t v) {
  double d;
  memcpy(&d, &v, sizeof d);
  return d;
}

/* Sends one message made of `count` payload pieces, blocking. */
#define MAX_PIECES 12
static int send_message(int fd, int type, const struct iovec *pieces,
                        int count) {
  unsigned char header[HEADER];
  struct iovec iov[MAX_PIECES + 1];
  uint64_t len = 0;
  assert(count <= MAX_PIECES);
  header[0] = (unsigned char)type;
  iov[0].iov_base = header;
  iov[0].iov_len = HEADER;
  for (int i = 0; i < count; i++) {
    iov[i + 1] = pieces[i];
    len += pieces[i].iov_len;
  }
  put_u64(header + 1, len);
  return pfp__sendv_all(fd, iov, count + 1);
}

/* Sends a reply or the end of a run: a code and a message. */
static int send_code(int fd, int type, int code, const char *msg) {
  unsigned char c[4];
  put_u32(c, (uint32_t)code);
  struct iovec pieces[2] = {{c, 4}, {(void *)msg, msg ? strlen(msg) : 0}};
  return send_message(fd, type, pieces, 2);
}

/* Messages built in a buffer: begun with a header whose length is filled
** in by msg_end. */
static int msg_begin(pfp__buf *b, int type, size_t *at) {
  unsigned char header[HEADER] = {(unsigned char)type};
  *at = b->len;
  return pfp__buf_append(b, header, HEADER);
}

static void msg_end(pfp__buf *b, size_t at) {
  put_u64((unsigned char *)b->data + at + 1, b->len - at - HEADER);
}

/* Drops a message begun at `at` that could not be finished. */
static void msg_abandon(pfp__buf *b, size_t at) {
  b->len = at;
  if (b->data)
    b->data[at] = '\0';
}

/* ---- reading messages ------------------------------------------------- */

typedef struct msg_reader {
  pfp__buf in; /* bytes received; those before `start` are used up */
  size_t start;
} msg_reader;

/* Receives once.  Returns bytes received, 0 at EOF, -1 with errno. */
static ssize_t reader_fill(msg_reader *r, int fd, int flags) {
  if (r->start == r->in.len) {
    r->in.len = r->start = 0;
  } else if (r->start > r->in.len - r->start) {
    /* Moved only when less is left than was used: amortized, even while a
    ** 100 MB record arrives. */
    memmove(r->in.data, r->in.data + r->start, r->in.len - r->start);
    r->in.len -= r->start;
    r->start = 0;
  }
  if (pfp__buf_reserve(&r->in, READ_CHUNK) != 0) {
    errno = ENOMEM;
    return -1;
  }
  ssize_t n = pfp__recv_some(fd, r->in.data + r->in.len,
                             r->in.cap - r->in.len - 1, flags);
  if (n > 0) {
    r->in.len += (size_t)n;
    r->in.data[r->in.len] = '\0';
  }
  return n;
}

/* The next complete message, if one has arrived: 1 with its type and its
** payload (valid until the next reader_fill), 0 when none is complete, -1
** for a length no message can have. */
static int reader_take(msg_reader *r, int *type, const char **payload,
                       size_t *len) {
  size_t have = r->in.len - r->start;
  if (have < HEADER)
    return 0;
  const unsigned char *h = (const unsigned char *)r->in.data + r->start;
  uint64_t want = get_u64(h + 1);
  if (want > PFP__FRAME_MAX)
    return -1;
  if (have - HEADER < want)
    return 0;
  *type = h[0];
  *payload = (const char *)h + HEADER;
  *len = (size_t)want;
  r->start += HEADER + (size_t)want;
  return 1;
}

/* Waits for the next message: 1, 0 at EOF, -1 on an error (errno), -2 for
** garbage. */
static int reader_next(msg_reader *r, int fd, int *type, const char **payload,
                       size_t *len) {
  for (;;) {
    int rc = reader_take(r, type, payload, len);
    if (rc != 0)
      return rc > 0 ? 1 : -2;
    ssize_t n = reader_fill(r, fd, 0);
    if (n <= 0)
      return n == 0 ? 0 : -1;
  }
}

/* The strings of a payload made of NUL-terminated pieces: the next one
** from *at, or NULL when the payload does not hold one. */
static const char *next_string(const char *payload, size_t len, size_t *at) {
  if (*at >= len)
    return NULL;
  const char *s = payload + *at;
  const char *nul = memchr(s, '\0', len - *at);
  if (nul == NULL)
    return NULL;
  *at = (size_t)(nul - payload) + 1;
  return s;
}

/* =====================================================================
** The server's side
** ===================================================================== */

typedef struct serving {
  pfp_processor *p;
  int sock;
  int stop_r;      /* read end of the processor's interrupt pipe */
  msg_reader rd;
  int end_seen;    /* the current run's 'E' has been read */
  uint64_t next_index;
  pfp__buf args;   /* the last job's args text, NUL-terminated */
} serving;

/* The host is gone or talks nonsense: nothing is left to serve.  The
** server's children die with it (their parent-death signal). */
static PFP__NORETURN void server_quit(int code) { _exit(code); }

/* Sends the names of the functions the state now defines.  A failure to
** list them leaves the host's cache as it was; the reply still follows. */
static int send_names(serving *sv) {
  char **entries = NULL;
  size_t count = 0;
  pfp__buf b = {0};
  int rc = 0;
  if (pfp__function_names(sv->p, &entries, &count) != PFP_OK)
    return -1;
  for (size_t i = 0; i < count && rc == 0; i++)
    rc = pfp__buf_append(&b, entries[i], strlen(entries[i]) + 1);
  if (rc == 0) {
    struct iovec piece = {b.data, b.len};
    rc = send_message(sv->sock, MSG_NAMES, &piece, 1) == 0 ? 0 : -1;
    if (rc != 0)
      server_quit(1);
  }
  for (size_t i = 0; i < count; i++)
    free(entries[i]);
  free(entries);
  pfp__buf_free(&b);
  return rc;
}

/* Replies with rc and, for a failure, the processor's message. */
static void reply(serving *sv, int rc) {
  if (send_code(sv->sock, MSG_REPLY, rc, rc == PFP_OK ? "" : pfp_errmsg(sv->p))
      != 0)
    server_quit(1);
}

/* The host's working directory, so that relative paths (scripts, and the
** files functions open) mean what they mean in the host.  When it cannot
** be entered (removed, or not visible here) the server keeps its own. */
static void enter_directory(const char *cwd) {
  if (cwd[0] != '\0')
    (void)!chdir(cwd);
}

static void serve_load(serving *sv, int type, const char *payload,
                       size_t len) {
  size_t at = 0;
  const char *first = next_string(payload, len, &at);
  const char *second = next_string(payload, len, &at);
  if (first == NULL || second == NULL)
    server_quit(2);
  int rc;
  if (type == MSG_LOAD_FILE) {
    enter_directory(first);
    rc = pfp_load_file(sv->p, second);
  } else {
    rc = pfp_load_string(sv->p, first, second);
  }
  /* Kept aside: listing the names may set a message of its own. */
  char *msg = rc != PFP_OK ? pfp__strdup(pfp_errmsg(sv->p)) : NULL;
  /* Even a script that failed may have defined functions before it did. */
  if (send_names(sv) != 0 && rc == PFP_OK)
    rc = PFP_ENOMEM;
  if (send_code(sv->sock, MSG_REPLY, rc,
                msg ? msg : rc == PFP_OK ? "" : pfp_strerror(rc)) != 0)
    server_quit(1);
  free(msg);
}

static void serve_context(serving *sv, const char *payload, size_t len) {
  json_t *context = NULL;
  if (len > 0) {
    json_error_t err;
    context = json_loadb(payload, len, JSON_ALLOW_NUL, &err);
    if (context == NULL) {
      /* The host wrote this text from a valid object: only memory fails. */
      if (send_code(sv->sock, MSG_REPLY, PFP_ENOMEM,
                    pfp_strerror(PFP_ENOMEM)) != 0)
        server_quit(1);
      return;
    }
  }
  int rc = pfp_set_context(sv->p, context);
  json_decref(context);
  reply(sv, rc);
}

/* The processor's feed during a run: jobs as the host sends them.  Waits
** (PFP_FEED_WAIT, the engine polls the socket) when none has arrived. */
static int server_feed(void *ud, const char **name, const char **args) {
  serving *sv = ud;
  for (;;) {
    int type;
    const char *payload;
    size_t len;
    int rc = reader_take(&sv->rd, &type, &payload, &len);
    if (rc == 0) {
      ssize_t n = reader_fill(&sv->rd, sv->sock, MSG_DONTWAIT);
      if (n > 0)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return PFP_FEED_WAIT;
      pfp_feed_error(sv->p, "fork server: the host closed the connection");
      return -1;
    }
    if (rc > 0 && type == MSG_END) {
      sv->end_seen = 1;
      return 0;
    }
    size_t at = 8;
    const char *job_name =
        rc > 0 && type == MSG_JOB ? next_string(payload, len, &at) : NULL;
    if (job_name == NULL ||
        get_u64((const unsigned char *)payload) != sv->next_index) {
      pfp_feed_error(sv->p, "fork server: a malformed job message");
      return -1;
    }
    sv->next_index++;
    /* Args stay text, as the host wrote them: the processor checks them
    ** and the child decodes them, so the server builds nothing. */
    *args = NULL;
    if (at < len) {
      sv->args.len = 0;
      if (pfp__buf_append(&sv->args, payload + at, len - at) != 0 ||
          pfp__buf_append(&sv->args, "", 1) != 0) {
        pfp_feed_error(sv->p, "fork server: out of memory reading a job");
        return -1;
      }
      *args = sv->args.data;
    }
    *name = job_name; /* valid until the next call: the reader keeps it */
    return 1;
  }
}

/* The processor's record callback: each record goes to the host at once.
** Blocking is safe: the host reads for as long as the run lasts. */
static int server_record(void *ud, const pfp_record *r) {
  serving *sv = ud;
  unsigned char fixed[RECORD_FIXED], lens[5][8];
  const char *texts[5] = {r->function_name, r->result_text, r->error, r->out,
                          r->err};
  size_t sizes[5] = {r->function_name ? strlen(r->function_name) : 0,
                     r->result_len, r->error ? strlen(r->error) : 0,
                     r->out_len, r->err_len};
  struct iovec pieces[11];
  put_u64(fixed, r->index);
  fixed[8] = (unsigned char)r->status;
  put_u32(fixed + 9, (uint32_t)r->exit_code);
  put_u32(fixed + 13, (uint32_t)r->signal);
  put_u64(fixed + 17, double_bits(r->duration_ms));
  pieces[0] = (struct iovec){fixed, sizeof fixed};
  for (int i = 0; i < 5; i++) {
    put_u64(lens[i], texts[i] ? sizes[i] : NO_TEXT);
    pieces[1 + 2 * i] = (struct iovec){lens[i], 8};
    pieces[2 + 2 * i] =
        (struct iovec){(void *)texts[i], texts[i] ? sizes[i] : 0};
  }
  return send_message(sv->sock, MSG_RECORD, pieces, 11) == 0 ? 0 : 1;
}

/* Empties the interrupt pipe of stops the host sent for an earlier run
** that had already ended.  The host sends a stop for this run only after
** it has seen 'G', which is sent after this. */
static void drop_stale_stops(serving *sv) {
  char drain[64];
  while (pfp__read_some(sv->stop_r, drain, sizeof drain) > 0) {
  }
}

static void serve_run(serving *sv, const char *payload, size_t len) {
  const unsigned char *u = (const unsigned char *)payload;
  size_t at = RUN_FIXED;
  const char *cwd = len >= RUN_FIXED ? next_string(payload, len, &at) : NULL;
  if (cwd == NULL)
    server_quit(2);
  /* The host checked these values; the setters cannot refuse them. */
  pfp_set_jobs(sv->p, get_u32(u));
  pfp_set_timeout(sv->p, bits_double(get_u64(u + 4)));
  pfp_set_kill_grace(sv->p, bits_double(get_u64(u + 12)));
  pfp_set_output_limit(sv->p, (size_t)get_u64(u + 20));
  pfp_set_memory_limit(sv->p, (size_t)get_u64(u + 28));
  pfp_set_reuse(sv->p, get_u32(u + 36));
  enter_directory(cwd);
  drop_stale_stops(sv);
  sv->end_seen = 0;
  sv->next_index = 0;
  if (send_message(sv->sock, MSG_STARTED, NULL, 0) != 0)
    server_quit(1);

  int rc = pfp_execute(sv->p);
  if (send_code(sv->sock, MSG_DONE, rc, rc < 0 ? pfp_errmsg(sv->p) : "") != 0)
    server_quit(1);
  /* A run that stopped early left jobs unread: they end with the 'E'. */
  while (!sv->end_seen) {
    int type;
    const char *rest;
    size_t rest_len;
    int got = reader_next(&sv->rd, sv->sock, &type, &rest, &rest_len);
    if (got == 0)
      server_quit(0);
    if (got < 0 || (type != MSG_JOB && type != MSG_END))
      server_quit(2);
    sv->end_seen = type == MSG_END;
  }
}

static PFP__NORETURN void serve(serving *sv) {
  pfp_set_feed_text(sv->p, server_feed, sv);
  pfp_set_feed_fd(sv->p, sv->sock);
  pfp_set_on_record(sv->p, server_record, sv);
  pfp_set_keep_records(sv->p, 0);
  for (;;) {
    int type;
    const char *payload;
    size_t len;
    int rc = reader_next(&sv->rd, sv->sock, &type, &payload, &len);
    if (rc == 0)
      server_quit(0); /* the processor was destroyed */
    if (rc < 0)
      server_quit(1);
    switch (type) {
    case MSG_LOAD_FILE:
    case MSG_LOAD_STRING:
      serve_load(sv, type, payload, len);
      break;
    case MSG_CONTEXT:
      serve_context(sv, payload, len);
      break;
    case MSG_RUN:
      serve_run(sv, payload, len);
      break;
    default:
      server_quit(2);
    }
  }
}

/* Closes every descriptor from lo to hi. */
static void close_between(unsigned lo, unsigned hi) {
  if (lo > hi)
    return;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, lo, hi, 0) == 0)
    return;
#endif
  /* Kernels before 5.9: one by one, up to the descriptor limit. */
  struct rlimit rl;
  unsigned most = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < most)
    most = (unsigned)rl.rlim_cur;
  for (unsigned fd = lo; fd <= hi && fd < most; fd++)
    close((int)fd);
}

static int compare_ints(const void *a, const void *b) {
  return *(const int *)a - *(const int *)b;
}

/* A descriptor above 2, so that stdio can be pointed at /dev/null. */
static int above_stdio(int fd) {
  return fd > 2 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

/* Runs in the new server process; never returns. */
static PFP__NORETURN void server_main(pfp_processor *p, int sock,
                                      const int stop[2], pid_t host) {
  /* Its own process group: a terminal's Ctrl-C reaches the host, which
  ** decides what to do (pfp_interrupt), not the server.  It dies with the
  ** host. */
  if (pfp__tie_to_parent(host) != 0)
    server_quit(1);
  /* The host's handlers and ignored signals are not the server's; SIGCHLD
  ** in particular must be at its default for children to be waitable. */
  pfp__default_signals(NULL);

  int keep[3] = {above_stdio(sock), above_stdio(stop[0]),
                 above_stdio(stop[1])};
  if (keep[0] < 0 || keep[1] < 0 || keep[2] < 0)
    server_quit(1);
  serving sv = {p, keep[0], keep[1], {{0}, 0}, 0, 0, {0}};
  pfp__processor_become_server(p, keep[1], keep[2]);

  /* The server lives as long as the processor: it must not hold the host's
  ** descriptors (a listening socket the host closes, the write end of a
  ** pipe whose reader waits for EOF).  Its stdio is /dev/null for the same
  ** reason; children get their own pipes from the engine. */
  qsort(keep, 3, sizeof keep[0], compare_ints);
  unsigned lo = 3;
  for (int i = 0; i < 3; i++) {
    if (keep[i] > 0 && (unsigned)keep[i] >= lo)
      close_between(lo, (unsigned)keep[i] - 1);
    lo = (unsigned)keep[i] + 1;
  }
  close_between(lo, ~0U);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; fd++) {
    if (null < 0)
      close(fd);
    else if (null != fd)
      dup2(null, fd);
  }
  if (null > 2)
    close(null);

  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  serve(&sv);
}

/* =====================================================================
** The host's side
** ===================================================================== */

struct pfp__server {
  pid_t owner;  /* the process that started the server */
  pid_t pid;    /* the server, 0 once reaped */
  int sock;     /* the host's end of the socketpair */
  int stop_w;   /* a write end of the server processor's interrupt pipe */
  int pidfd;    /* the server's pidfd, -1 when the kernel has none */
  char *gone;   /* why the server is gone; NULL while it serves */
  msg_reader rd;
  char **names; /* sorted; each a kind letter then the name */
  size_t nnames;
};

static void free_names(char **names, size_t count) {
  for (size_t i = 0; i < count; i++)
    free(names[i]);
  free(names);
}

/* Kills the server.  A host whose SIGCHLD handler reaps every child may
** have taken its status already, and its pid may then name another
** process: the signal goes through the pidfd, or, without one, only while
** the server is still this process's child. */
static void kill_server(pfp__server *s) {
  if (s->pid <= 0)
    return;
  if (s->pidfd >= 0) {
    pfp__pidfd_signal(s->pidfd, SIGKILL);
    return;
  }
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid(P_PID, (id_t)s->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0)
    kill(s->pid, SIGKILL);
}

static void close_server_fds(pfp__server *s) {
  pfp__close(&s->sock);
  pfp__close(&s->stop_w);
  pfp__close(&s->pidfd);
}

static char *describe_status(pid_t got, int wstatus) {
  if (got <= 0)
    return pfp__strdup("its exit status was collected by someone else");
  if (WIFSIGNALED(wstatus)) {
    const char *abbrev = sigabbrev_np(WTERMSIG(wstatus));
    return pfp__strdupf("killed by signal %d (SIG%s)", WTERMSIG(wstatus),
                        abbrev ? abbrev : "unknown");
  }
  return pfp__strdupf("exited with code %d", WEXITSTATUS(wstatus));
}

/* The server cannot be used any more: `why` says what happened.  It is
** killed and reaped.  Returns PFP_ESYS with *errmsg set (a new string, may
** be NULL). */
static int server_lost(pfp__server *s, const char *why, char **errmsg) {
  if (s->gone == NULL) {
    int wstatus = 0;
    pid_t got = -1;
    /* Killed in every case, so the wait cannot hang; one that was already
    ** exiting keeps the status it exits with. */
    kill_server(s);
    close_server_fds(s);
    if (s->pid > 0)
      got = pfp__waitpid(s->pid, &wstatus, 0);
    char *status = describe_status(got, wstatus);
    s->gone = pfp__strdupf("fork server (pid %ld) %s: %s", (long)s->pid, why,
                           status ? status : "out of memory");
    free(status);
    s->pid = 0;
  }
  if (errmsg != NULL)
    *errmsg = s->gone ? pfp__strdup(s->gone) : NULL;
  return PFP_ESYS;
}

/* PFP_ESYS when the server cannot be used from this process: it is gone,
** or this is a copy of the host made by fork(), whose messages would mix
** with the host's on the same socket. */
static int server_unusable(pfp__server *s, char **errmsg) {
  if (s->gone != NULL)
    *errmsg = pfp__strdupf("%s; this processor cannot run anything more",
                           s->gone);
  else if (getpid() != s->owner)
    *errmsg = pfp__strdupf("fork server (pid %ld) belongs to process %ld: "
                           "a processor with a fork server cannot be used in "
                           "a process forked from its host",
                           (long)s->pid, (long)s->owner);
  else
    return PFP_OK;
  return PFP_ESYS;
}

int pfp__server_start(pfp_processor *p, char **names, size_t count,
                      pfp__server **out, char **errmsg) {
  int sv[2] = {-1, -1}, stop[2] = {-1, -1};
  int saved;
  const char *what = "socketpair";
  *out = NULL;
  *errmsg = NULL;
  pfp__server *s = calloc(1, sizeof *s);
  if (s == NULL) {
    free_names(names, count);
    return PFP_ENOMEM;
  }
  s->names = names;
  s->nnames = count;
  s->sock = s->stop_w = s->pidfd = -1;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    goto fail;
  what = "pipe";
  /* The host must never block on a stop: the pipe's write end is
  ** non-blocking too (a full pipe already holds a stop). */
  if (pfp__pipe(stop) != 0 || pfp__set_nonblock(stop[1]) != 0)
    goto fail;

  /* Whatever the host printed must not be printed again by the server. */
  fflush(NULL);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t host = getpid();
  s->owner = host;
  pid_t pid = fork();
  if (pid == 0) {
    /* The host's handle is the host's: the server's copy would only be
    ** memory nothing points to, in the server and every child it forks. */
    free_names(s->names, s->nnames);
    free(s);
    close(sv[0]);
    server_main(p, sv[1], stop, host);
  }
  saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = saved;
  what = "fork";
  if (pid < 0)
    goto fail;
  /* Both sides set the group, whichever runs first. */
  setpgid(pid, pid);
  pfp__close(&sv[1]);
  pfp__close(&stop[0]);
  s->pid = pid;
  s->sock = sv[0];
  s->stop_w = stop[1];
  s->pidfd = pfp__pidfd_open(pid);
  *out = s;
  return PFP_OK;

fail:
  saved = errno;
  *errmsg = pfp__strdupf("pfp_start_fork_server: %s: %s", what,
                         strerror(saved));
  pfp__close(&sv[0]);
  pfp__close(&sv[1]);
  pfp__close(&stop[0]);
  pfp__close(&stop[1]);
  free_names(s->names, s->nnames);
  free(s);
  return PFP_ESYS;
}

void pfp__server_stop(pfp__server *s) {
  if (s == NULL)
    return;
  /* Closing the socket ends the server (it exits at EOF).  It is killed as
  ** well: a copy of the host made by a plain fork() may still hold the
  ** socket, and the server has nothing left to finish between runs.  Such
  ** a copy, destroying its processor, must leave the host's server alone:
  ** it only closes its descriptors. */
  int owner = getpid() == s->owner;
  if (owner)
    kill_server(s);
  close_server_fds(s);
  if (owner && s->pid > 0)
    pfp__waitpid(s->pid, NULL, 0);
  pfp__buf_free(&s->rd.in);
  free_names(s->names, s->nnames);
  free(s->gone);
  free(s);
}

/* Replaces the cache of names with the list the server sent. */
static int set_names(pfp__server *s, const char *payload, size_t len) {
  size_t count = 0, at = 0;
  for (size_t i = 0; i < len; i++)
    count += payload[i] == '\0';
  char **names = calloc(count ? count : 1, sizeof *names);
  if (names == NULL)
    return -1;
  for (size_t i = 0; i < count; i++) {
    const char *entry = next_string(payload, len, &at);
    if ((names[i] = pfp__strdup(entry)) == NULL) {
      free_names(names, i);
      return -1;
    }
  }
  free_names(s->names, s->nnames);
  s->names = names;
  s->nnames = count;
  return 0;
}

/* Sends a request and waits for its reply, taking the names that come
** before it. */
static int request(pfp__server *s, int type, const struct iovec *pieces,
                   int count, char **errmsg) {
  *errmsg = NULL;
  if (server_unusable(s, errmsg) != PFP_OK)
    return PFP_ESYS;
  if (send_message(s->sock, type, pieces, count) != 0)
    return server_lost(s, "is gone", errmsg);
  int names_failed = 0;
  for (;;) {
    int t;
    const char *payload;
    size_t len;
    int rc = reader_next(&s->rd, s->sock, &t, &payload, &len);
    if (rc == 0 || (rc == -1 && errno != ENOMEM))
      return server_lost(s, "is gone", errmsg);
    /* Out of memory halfway through a message: the stream cannot be
    ** followed any more, so the server cannot be either. */
    if (rc == -1)
      return server_lost(s, "was killed: no memory for its reply", errmsg);
    if (rc < 0 || (t != MSG_NAMES && (t != MSG_REPLY || len < 4)))
      return server_lost(s, "sent a malformed message and was killed",
                         errmsg);
    if (t == MSG_NAMES) {
      names_failed = set_names(s, payload, len) != 0;
      continue;
    }
    int code = (int32_t)get_u32((const unsigned char *)payload);
    if (code == PFP_OK && names_failed)
      return PFP_ENOMEM;
    if (code != PFP_OK)
      *errmsg = len > 4 ? pfp__strdupf("%.*s", (int)(len - 4), payload + 4)
                        : NULL;
    return code;
  }
}

/* The host's directory (see enter_directory); "" when it has none. */
static char *host_directory(void) {
  char *cwd = getcwd(NULL, 0);
  return cwd ? cwd : pfp__strdup("");
}

int pfp__server_load_file(pfp__server *s, const char *path, char **errmsg) {
  char *cwd = host_directory();
  if (cwd == NULL) {
    *errmsg = NULL;
    return PFP_ENOMEM;
  }
  struct iovec pieces[2] = {{cwd, strlen(cwd) + 1},
                            {(void *)path, strlen(path) + 1}};
  int rc = request(s, MSG_LOAD_FILE, pieces, 2, errmsg);
  free(cwd);
  return rc;
}

int pfp__server_load_string(pfp__server *s, const char *chunkname,
                            const char *source, char **errmsg) {
  struct iovec pieces[2] = {{(void *)chunkname, strlen(chunkname) + 1},
                            {(void *)source, strlen(source) + 1}};
  return request(s, MSG_LOAD_STRING, pieces, 2, errmsg);
}

int pfp__server_set_context(pfp__server *s, const json_t *context,
                            char **errmsg) {
  pfp__buf text = {0};
  *errmsg = NULL;
  /* pfp__jw_json writes every number exactly, so the server's table holds
  ** the same values the host's would. */
  if (context != NULL && pfp__jw_json(&text, context) != 0) {
    pfp__buf_free(&text);
    return PFP_ENOMEM;
  }
  struct iovec piece = {text.data, text.len};
  int rc = request(s, MSG_CONTEXT, &piece, 1, errmsg);
  pfp__buf_free(&text);
  return rc;
}

static int compare_name(const void *key, const void *entry) {
  return strcmp(key, *(char *const *)entry + 1);
}

int pfp__server_has_function(const pfp__server *s, const char *name) {
  return bsearch(name, s->names, s->nnames, sizeof *s->names,
                 compare_name) != NULL;
}

int pfp__server_exported_functions(const pfp__server *s, char ***names,
                                   size_t *count) {
  size_t n = 0;
  *names = calloc(s->nnames ? s->nnames : 1, sizeof **names);
  *count = 0;
  if (*names == NULL)
    return PFP_ENOMEM;
  for (size_t i = 0; i < s->nnames; i++) {
    if (s->names[i][0] != 'x')
      continue;
    if (((*names)[n] = pfp__strdup(s->names[i] + 1)) == NULL) {
      free_names(*names, n);
      *names = NULL;
      return PFP_ENOMEM;
    }
    n++;
  }
  *count = n;
  return PFP_OK;
}

/* ---- a run, seen from the host --------------------------------------- */

typedef struct remote_run {
  pfp__server *s;
  const pfp__exec_opts *opts;
  const pfp__remote_hooks *hooks;
  pfp__buf out;       /* messages waiting to be sent */
  size_t out_pos;     /* bytes of `out` already sent */
  int more_jobs;      /* `next` may still have jobs */
  int feed_waiting;   /* `next` waits for feed_fd */
  int end_queued;     /* the 'E' is in `out` */
  int started;        /* 'G' has arrived: stops may be sent */
  int stop_sent;
  int finished;       /* 'D' has arrived */
  size_t sent;        /* jobs queued for the server */
  size_t received;    /* records that came back */
  int stop_code;      /* first reason to stop, 0 while running normally */
  char *errmsg;
  int server_code;    /* what the server's pfp_execute returned */
  char *server_msg;
} remote_run;

static void run_error(remote_run *r, int code, char *msg) {
  if (r->stop_code == 0) {
    r->stop_code = code;
    r->errmsg = msg;
  } else {
    free(msg);
  }
}

/* Stops that end running functions at once, as in exec.c. */
static int hard_stop(int code) {
  return code == PFP_EINTR || code == PFP_EABORT;
}

/* The server is gone mid-run.  That is what the run reports, whatever
** stopped it before: nothing more will arrive, and later calls fail too. */
static void run_lost(remote_run *r, const char *why) {
  char *msg = NULL;
  server_lost(r->s, why, &msg);
  free(r->errmsg);
  r->stop_code = PFP_ESYS;
  r->errmsg = msg;
}

/* Empties the host's interrupt pipe; returns whether it held a request. */
static int take_interrupt(int wake_fd) {
  char drain[64];
  int any = 0;
  if (wake_fd < 0)
    return 0;
  while (pfp__read_some(wake_fd, drain, sizeof drain) > 0)
    any = 1;
  return any;
}

static int queue_options(remote_run *r) {
  const pfp__exec_opts *o = r->opts;
  unsigned char fixed[RUN_FIXED];
  size_t at;
  char *cwd = host_directory();
  if (cwd == NULL)
    return -1;
  put_u32(fixed, o->jobs);
  put_u64(fixed + 4, double_bits(o->timeout));
  put_u64(fixed + 12, double_bits(o->kill_grace));
  put_u64(fixed + 20, o->output_limit);
  put_u64(fixed + 28, o->memory_limit);
  put_u32(fixed + 36, o->reuse);
  int rc = msg_begin(&r->out, MSG_RUN, &at) != 0 ||
                   pfp__buf_append(&r->out, fixed, sizeof fixed) != 0 ||
                   pfp__buf_append(&r->out, cwd, strlen(cwd) + 1) != 0
               ? -1
               : 0;
  free(cwd);
  if (rc == 0)
    msg_end(&r->out, at);
  return rc;
}

static int queue_job(remote_run *r, const char *name, const json_t *args,
                     size_t index) {
  unsigned char idx[8];
  size_t at;
  put_u64(idx, index);
  if (msg_begin(&r->out, MSG_JOB, &at) != 0 ||
      pfp__buf_append(&r->out, idx, 8) != 0 ||
      pfp__buf_append(&r->out, name, strlen(name) + 1) != 0 ||
      (args != NULL && pfp__jw_json(&r->out, args) != 0)) {
    msg_abandon(&r->out, at);
    return -1;
  }
  msg_end(&r->out, at);
  return 0;
}

/* Takes jobs from the processor while the server has free slots. */
static void fill_jobs(remote_run *r) {
  while (r->more_jobs && r->stop_code == 0 && !r->feed_waiting &&
         !r->finished && r->sent - r->received < r->opts->jobs &&
         r->out.len - r->out_pos < LOW_WATER) {
    const char *name = NULL;
    json_t *args = NULL;
    size_t index = 0;
    int rc = r->hooks->next(r->hooks->ud, &name, &args, &index);
    if (rc == PFP_FEED_WAIT) {
      r->feed_waiting = 1;
      json_decref(args);
      return;
    }
    if (rc == 1) {
      if (queue_job(r, name, args, index) != 0)
        run_error(r, PFP_ENOMEM, pfp__strdup("out of memory"));
      else
        r->sent++;
      json_decref(args);
      continue;
    }
    json_decref(args);
    r->more_jobs = 0;
    if (rc < 0)
      run_error(r, rc, NULL); /* the hook set the processor's message */
  }
}

/* Sends what the socket takes now, without waiting. */
static void flush_out(remote_run *r) {
  while (r->out_pos < r->out.len && r->s->gone == NULL) {
    ssize_t n = pfp__send_some(r->s->sock, r->out.data + r->out_pos,
                               r->out.len - r->out_pos, MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        run_lost(r, "died during the run");
      return;
    }
    r->out_pos += (size_t)n;
  }
  r->out.len = r->out_pos = 0;
  if (r->out.cap > 4 * LOW_WATER) /* a job with huge args has gone */
    pfp__buf_free(&r->out);
}

/* Decodes a record message into a new record; NULL for a malformed one
** (*nomem tells out-of-memory apart). */
static pfp_record *decode_record(const char *payload, size_t len,
                                 int *nomem) {
  const unsigned char *u = (const unsigned char *)payload;
  *nomem = 0;
  if (len < RECORD_FIXED)
    return NULL;
  pfp_record *r = pfp__record_new();
  if (r == NULL) {
    *nomem = 1;
    return NULL;
  }
  r->index = (size_t)get_u64(u);
  r->status = (pfp_status)u[8];
  r->exit_code = (int32_t)get_u32(u + 9);
  r->signal = (int32_t)get_u32(u + 13);
  r->duration_ms = bits_double(get_u64(u + 17));
  char **texts[5] = {&r->function_name, &r->result_text, &r->error, &r->out,
                     &r->err};
  size_t *sizes[5] = {NULL, &r->result_len, NULL, &r->out_len, &r->err_len};
  size_t at = RECORD_FIXED;
  for (int i = 0; i < 5; i++) {
    if (len - at < 8)
      goto bad;
    uint64_t n = get_u64(u + at);
    at += 8;
    if (n == NO_TEXT)
      continue;
    if (n > len - at)
      goto bad;
    /* Every text is NUL-terminated, as exec.c's are. */
    if ((*texts[i] = malloc((size_t)n + 1)) == NULL) {
      *nomem = 1;
      goto bad;
    }
    memcpy(*texts[i], payload + at, (size_t)n);
    (*texts[i])[n] = '\0';
    if (sizes[i])
      *sizes[i] = (size_t)n;
    at += (size_t)n;
  }
  if (at != len || r->function_name == NULL || pfp_status_name(r->status) ==
                                                   NULL)
    goto bad;
  return r;
bad:
  pfp__record_free(r);
  return NULL;
}

static void deliver(remote_run *r, const char *payload, size_t len) {
  int nomem;
  pfp_record *rec = decode_record(payload, len, &nomem);
  if (rec == NULL) {
    if (nomem)
      run_error(r, PFP_ENOMEM, pfp__strdup("out of memory"));
    else
      run_lost(r, "sent a malformed record and was killed");
    return;
  }
  /* As exec.c's deliver: the caller may ask to stop. */
  int rc = r->hooks->done(r->hooks->ud, rec);
  if (rc != 0)
    run_error(r, rc < 0 ? rc : PFP_EABORT, pfp__strdup(pfp_strerror(rc)));
}

/* Handles every complete message that has arrived. */
static void take_messages(remote_run *r) {
  int type;
  const char *payload;
  size_t len;
  int rc;
  while (r->s->gone == NULL &&
         (rc = reader_take(&r->s->rd, &type, &payload, &len)) != 0) {
    if (rc < 0) {
      run_lost(r, "sent a malformed message and was killed");
      return;
    }
    if (type == MSG_STARTED && !r->started) {
      r->started = 1;
    } else if (type == MSG_RECORD && r->started && !r->finished &&
               r->received < r->sent) {
      r->received++; /* a slot is free in the server */
      deliver(r, payload, len);
    } else if (type == MSG_DONE && r->started && !r->finished && len >= 4) {
      r->finished = 1;
      r->server_code = (int32_t)get_u32((const unsigned char *)payload);
      if (r->server_code < 0)
        r->server_msg = pfp__strdupf("%.*s", (int)(len - 4), payload + 4);
    } else {
      run_lost(r, "sent a malformed message and was killed");
      return;
    }
  }
}

/* Reads what the socket holds (all of it when `all`: the server has
** exited) and handles it. */
static void read_socket(remote_run *r, int all) {
  for (int n = 0; r->s->gone == NULL && (all || n < 16); n++) {
    ssize_t got = reader_fill(&r->s->rd, r->s->sock, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (got < 0 && errno == ENOMEM) {
      run_lost(r, "sent more than the host has memory for, and was killed");
      return;
    }
    if (got <= 0) {
      take_messages(r); /* what it sent before it went still counts */
      if (r->s->gone == NULL)
        run_lost(r, "died during the run");
      return;
    }
    take_messages(r);
  }
}

static void run_loop(remote_run *r) {
  pfp__server *s = r->s;
  for (;;) {
    /* A record callback may have called pfp_interrupt just now: no job
    ** is handed out after that. */
    if (!hard_stop(r->stop_code) && take_interrupt(r->opts->wake_fd))
      run_error(r, PFP_EINTR, pfp__strdup("interrupted"));
    fill_jobs(r);
    if (!r->end_queued && (!r->more_jobs || r->stop_code != 0 ||
                           r->finished)) {
      size_t at;
      if (msg_begin(&r->out, MSG_END, &at) != 0) {
        /* Without its 'E' the server would wait for ever. */
        run_lost(r, "could not be told the jobs had ended (out of memory) "
                    "and was killed");
        return;
      }
      msg_end(&r->out, at);
      r->end_queued = 1;
    }
    if (r->stop_code != 0 && hard_stop(r->stop_code) && r->started &&
        !r->finished && !r->stop_sent) {
      char byte = 1;
      /* A full pipe already holds a stop. */
      (void)!write(s->stop_w, &byte, 1);
      r->stop_sent = 1;
    }
    flush_out(r);
    if (s->gone != NULL || (r->finished && r->out_pos == r->out.len))
      return;
    /* About to wait: the caller's moment to flush.  A stop it asks for
    ** is handled (sent on) before waiting. */
    if (r->stop_code == 0 && r->hooks->idle != NULL) {
      int stop = r->hooks->idle(r->hooks->ud);
      if (stop != 0) {
        run_error(r, stop, pfp__strdup(pfp_strerror(stop)));
        continue;
      }
    }

    struct pollfd pfds[4];
    enum { P_SOCK, P_WAKE, P_FEED, P_PID };
    int which[4];
    nfds_t n = 0;
    pfds[n] = (struct pollfd){.fd = s->sock, .events = POLLIN};
    if (r->out_pos < r->out.len)
      pfds[n].events |= POLLOUT;
    which[n++] = P_SOCK;
    if (r->opts->wake_fd >= 0 && !hard_stop(r->stop_code)) {
      pfds[n] = (struct pollfd){.fd = r->opts->wake_fd, .events = POLLIN};
      which[n++] = P_WAKE;
    }
    if (r->feed_waiting && r->more_jobs && r->stop_code == 0 &&
        r->opts->feed_fd >= 0) {
      pfds[n] = (struct pollfd){.fd = r->opts->feed_fd, .events = POLLIN};
      which[n++] = P_FEED;
    }
    if (s->pidfd >= 0) {
      pfds[n] = (struct pollfd){.fd = s->pidfd, .events = POLLIN};
      which[n++] = P_PID;
    }
    int rc = poll(pfds, n, -1);
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc < 0) {
      /* Without poll the run cannot be followed: end it for sure. */
      char *why = pfp__strdupf("was killed: the host's poll failed: %s",
                               strerror(errno));
      run_lost(r, why ? why : "was killed: the host's poll failed");
      free(why);
      return;
    }
    for (nfds_t j = 0; j < n && s->gone == NULL; j++) {
      if (pfds[j].revents == 0)
        continue;
      switch (which[j]) {
      case P_SOCK:
        if (pfds[j].revents & (POLLIN | POLLHUP | POLLERR))
          read_socket(r, 0);
        break;
      case P_WAKE:
        if (take_interrupt(r->opts->wake_fd))
          run_error(r, PFP_EINTR, pfp__strdup("interrupted"));
        break;
      case P_FEED:
        r->feed_waiting = 0; /* input (or its end) has arrived */
        break;
      case P_PID:
        read_socket(r, 1); /* its last records, then the news */
        if (s->gone == NULL)
          run_lost(r, "died during the run");
        break;
      }
    }
  }
}

int pfp__server_exec(pfp__server *s, const pfp__exec_opts *opts,
                     const pfp__remote_hooks *hooks, char **errmsg) {
  remote_run r;
  memset(&r, 0, sizeof r);
  r.s = s;
  r.opts = opts;
  r.hooks = hooks;
  r.more_jobs = 1;
  *errmsg = NULL;
  if (server_unusable(s, errmsg) != PFP_OK)
    return PFP_ESYS;
  /* An interrupt that came while nothing ran stops this run before it
  ** starts anything, as in exec.c. */
  if (take_interrupt(opts->wake_fd)) {
    *errmsg = pfp__strdup("interrupted");
    return PFP_EINTR;
  }
  if (queue_options(&r) != 0) {
    pfp__buf_free(&r.out);
    return PFP_ENOMEM;
  }
  run_loop(&r);
  /* Requests made during this run were for this run. */
  take_interrupt(opts->wake_fd);
  pfp__buf_free(&r.out);
  if (r.stop_code == 0 && r.finished && r.server_code < 0) {
    r.stop_code = r.server_code;
    r.errmsg = r.server_msg;
    r.server_msg = NULL;
  }
  free(r.server_msg);
  *errmsg = r.errmsg;
  return r.stop_code;
}
