/*
** exec.c — how calls run: one forked child per call, at most `jobs` at a
** time, every pipe drained while children run, every child reaped.
**
** What runs is not decided here: jobs come one at a time from the caller's
** `next` hook and finished records go back through `done`.
**
** Each child gets three pipes: a result pipe (frames, see wire.c), and its
** stdout and stderr.  The host learns that a child has ended from a pidfd,
** so it needs no SIGCHLD handler and never reaps a process it did not fork.
** A child is finished when its process has exited: its result frames were
** fully written before it could exit, so a non-blocking drain of the pipes
** then collects everything, even while a background grandchild still holds
** the stdout pipe open.  Each child leads its own process group, so a
** timeout or an interrupt reaches everything it started, and leftovers are
** killed once the child itself is gone.
*/

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfp_internal.h"

/* Large enough for a widened result pipe (child.c) in one read. */
#define READ_CHUNK (1 << 20)
/* Chunks read from one descriptor per wake-up, so that one chatty child
** cannot starve the others. */
#define READS_PER_WAKE 16

enum { FD_RESULT, FD_OUT, FD_ERR, FD_PID, FD_KINDS };

/* Tells a child forked ahead to start its function (it waits for it with
** every signal blocked, so it is never delivered as a signal). */
#define START_SIGNAL SIGUSR1

typedef struct capture {
  pfp__buf text;
  size_t dropped;
} capture;

struct exec_state;

typedef struct slot {
  struct exec_state *owner;
  int active;
  pid_t pid;
  int fd[FD_KINDS]; /* read ends of the pipes, and the pidfd */
  double started;
  double deadline;  /* when SIGTERM is due; INFINITY for none */
  double kill_at;   /* when SIGKILL is due; INFINITY for none */
  int timed_out;
  int interrupted;
  int waiting;   /* forked ahead: set up, waiting for START_SIGNAL */
  int cancelled; /* forked ahead, then killed unstarted: no record */
  char *name;
  size_t index;
  pfp__frame_reader reader;
  capture out, err;
  /* A reused worker's batch: jobs [0, batch_len) in the Lua table at
  ** batches[slot + 1]; those before batch_done have their records.  A
  ** batch outlives a worker that crashed in it: the rest runs in a new
  ** one. */
  char **batch_names;   /* owned, NULL once handed to a record */
  size_t *batch_index;
  /* Args given as text, kept here rather than as Lua strings: copying
  ** them costs the host less than interning them, and the worker decodes
  ** them.  batch_text_at[k]: job k's offset in batch_text, or
  ** PFP__NO_TEXT when its args are in the Lua table. */
  pfp__buf batch_text;
  size_t *batch_text_at;
  size_t batch_len, batch_cap, batch_done;
  size_t timed_out_job; /* batch position that timed out */
  int out_file, err_file; /* the worker's stdout and stderr (memfds) */
} slot;

typedef struct exec_state {
  lua_State *L;
  int context;
  const pfp__exec_opts *opts;
  const pfp__exec_hooks *hooks;
  slot *slots;
  unsigned running;
  int devnull;
  int more_jobs;     /* the `next` hook may still have jobs */
  int feed_waiting;  /* `next` waits for feed_fd to become readable */
  int pending;       /* a job taken from `next` waits for resources */
  char *pending_name;
  size_t pending_index;
  const char *pending_text; /* args as text (reused workers), or NULL */
  int stop_code;     /* first reason to stop, 0 while running normally */
  char *errmsg;
  char *chunk;       /* READ_CHUNK bytes */
  pid_t host_pid;     /* the process that forks the children */
  sigset_t changed_signals; /* not at their default action when run began */
  struct pollfd *pfds;
  int *pfd_slot;     /* which slot each pollfd belongs to (-1: wake fd) */
  int batches;       /* stack index of the batch tables (reuse only) */
  unsigned nslots;   /* jobs, plus one for the child forked ahead */
  struct slot *ahead; /* the child forked ahead, waiting to start, or NULL */
} exec_state;

static int reusing(const exec_state *e) { return e->opts->reuse > 1; }

static void set_error(exec_state *e, int code, char *msg) {
  if (e->stop_code == 0) {
    e->stop_code = code;
    e->errmsg = msg;
  } else {
    free(msg);
  }
}

/* ---- the child's side of fork ---------------------------------------- */

/* Runs in the child between fork and the function.  Any failure here ends
** the child with code 126, which the host reports as a crash.  The pairs
** are the child's pipes, read end first; a worker's out and err are files
** (read end -1). */
static PFP__NORETURN void child_start(exec_state *e, slot *s,
                                      const int result_pipe[2],
                                      const int out_pipe[2],
                                      const int err_pipe[2], int ahead) {
  int result_w = result_pipe[1], out_w = out_pipe[1], err_w = err_pipe[1];
  /* If the host dies without a chance to clean up (SIGKILL, a crash), its
  ** children follow instead of running on as orphans. */
  if (pfp__tie_to_parent(e->host_pid) != 0)
    _exit(126);
  /* The host may ignore or catch signals; the function starts clean.
  ** Only the signals found changed when the run began are reset: a
  ** sigaction for each of the 64 costs more than a trivial function. */
  pfp__default_signals(&e->changed_signals);

  /* Nothing of the host's bookkeeping stays open in the child.  Closed
  ** first: near the descriptor limit the moves below need free slots. */
  for (unsigned i = 0; i < e->nslots; i++) {
    slot *o = &e->slots[i];
    for (int k = 0; k < FD_KINDS; k++)
      if (o->fd[k] >= 0)
        close(o->fd[k]);
    if (o != s) {
      if (o->out_file >= 0)
        close(o->out_file);
      if (o->err_file >= 0)
        close(o->err_file);
    }
  }
  int read_ends[] = {result_pipe[0], out_pipe[0], err_pipe[0],
                     e->opts->wake_fd, e->opts->wake_write_fd};
  for (size_t i = 0; i < sizeof read_ends / sizeof read_ends[0]; i++)
    if (read_ends[i] >= 0)
      close(read_ends[i]);

  /* The pipes were made non-blocking for the host's sake; the function
  ** writes with ordinary, blocking descriptors. */
  if (pfp__set_blocking(out_w) != 0 || pfp__set_blocking(err_w) != 0 ||
      pfp__set_blocking(result_w) != 0)
    _exit(126);
  /* Each end goes into place with dup2.  One that is itself 0, 1 or 2 (the
  ** host runs with some of those closed) is first copied above 2, so that
  ** no dup2 clobbers it; usually none is.  The result pipe stays where it
  ** is, close-on-exec, so exec'd grandchildren never hold it. */
  int in = e->devnull, out = out_w, err = err_w, result = result_w;
  int *ends[] = {&in, &out, &err, &result};
  for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
    if (*ends[i] >= 0 && *ends[i] <= 2 &&
        (*ends[i] = fcntl(*ends[i], F_DUPFD_CLOEXEC, 3)) < 0)
      _exit(126);
  if (in < 0)
    close(0); /* no /dev/null: stdin closed (it may already be) */
  if ((in >= 0 && dup2(in, 0) < 0) || dup2(out, 1) < 0 || dup2(err, 2) < 0)
    _exit(126);
  /* Of the descriptors above 2 these name, only the result pipe stays. */
  int spare[] = {in, out, err, e->devnull, out_w, err_w, result_w};
  for (size_t i = 0; i < sizeof spare / sizeof spare[0]; i++) {
    int seen = spare[i] <= 2 || spare[i] == result;
    for (size_t j = 0; j < i && !seen; j++)
      seen = spare[j] == spare[i];
    if (!seen)
      close(spare[i]);
  }

  /* Forked ahead: everything is ready; the function waits for its slot.
  ** Signals are still blocked, so the start signal cannot be missed. */
  if (ahead) {
    sigset_t start;
    sigemptyset(&start);
    sigaddset(&start, START_SIGNAL);
    while (sigwaitinfo(&start, NULL) < 0)
      if (errno != EINTR)
        _exit(126);
  }
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  int top = lua_gettop(e->L);
  if (reusing(e)) {
    pfp__batch batch = {top, s->batch_names, s->batch_text.data,
                        s->batch_text_at};
    pfp__worker_run(e->L, e->context, &batch, s->batch_done, s->batch_len,
                    result, e->opts->memory_limit);
  }
  pfp__child_run(e->L, e->context, top - 1, top, s->name, result,
                 e->opts->memory_limit);
}

/* ---- starting a job -------------------------------------------------- */

static void capture_reset(capture *c) {
  pfp__buf_free(&c->text);
  c->dropped = 0;
}

/* Forgets the slot's process; a reused worker's batch stays. */
static void slot_end_process(slot *s) {
  for (int k = 0; k < FD_KINDS; k++)
    pfp__close(&s->fd[k]);
  pfp__close(&s->out_file);
  pfp__close(&s->err_file);
  free(s->name);
  s->name = NULL;
  pfp__frame_reader_free(&s->reader);
  capture_reset(&s->out);
  capture_reset(&s->err);
  s->active = 0;
  s->pid = 0;
  s->timed_out = s->interrupted = s->waiting = s->cancelled = 0;
  s->deadline = s->kill_at = INFINITY;
}

/* Drops what is left of the slot's batch: those jobs never ran. */
static void slot_drop_batch(exec_state *e, slot *s) {
  for (size_t k = 0; k < s->batch_len; k++) {
    free(s->batch_names[k]);
    s->batch_names[k] = NULL;
  }
  s->batch_len = s->batch_done = 0;
  s->batch_text.len = 0;
  if (e->batches != 0) {
    lua_pushnil(e->L); /* the slot's entry exists, so this cannot fail */
    lua_rawseti(e->L, e->batches, (lua_Integer)(s - e->slots) + 1);
  }
}

static void slot_init(exec_state *e, slot *s) {
  memset(s, 0, sizeof *s);
  s->owner = e;
  for (int k = 0; k < FD_KINDS; k++)
    s->fd[k] = -1;
  s->out_file = s->err_file = -1;
  s->deadline = s->kill_at = INFINITY;
}

static void slot_free(exec_state *e, slot *s) {
  slot_end_process(s);
  slot_drop_batch(e, s);
  free(s->batch_names);
  free(s->batch_index);
  free(s->batch_text_at);
  pfp__buf_free(&s->batch_text);
  s->batch_names = NULL;
  s->batch_index = NULL;
  s->batch_text_at = NULL;
}

/* Errors that mean "not now": a later try, with fewer children running,
** may succeed. */
static int transient(int err) {
  return err == EAGAIN || err == EMFILE || err == ENFILE || err == ENOMEM;
}

static int take_interrupt(exec_state *e);

/* Hands a finished record to the caller, who may ask to stop, by its
** return value or with pfp_interrupt: that is seen at once, so that no
** further job starts after it. */
static void deliver(exec_state *e, pfp_record *r) {
  int rc = e->hooks->done(e->hooks->ud, r);
  if (rc != 0)
    set_error(e, rc < 0 ? rc : PFP_EABORT, pfp__strdup(pfp_strerror(rc)));
  else if (e->opts->interrupt_flag != NULL && *e->opts->interrupt_flag &&
           take_interrupt(e))
    set_error(e, PFP_EINTR, pfp__strdup("interrupted"));
}

/* Ends a job that could not be started with a crashed record. */
static void fail_to_start(exec_state *e, char *name, size_t index,
                          const char *what, int err) {
  pfp_record *r = pfp__record_new();
  if (r == NULL) {
    free(name);
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    return;
  }
  r->function_name = name;
  r->index = index;
  r->status = PFP_STATUS_CRASHED;
  r->error = pfp__strdupf("could not start: %s: %s", what, strerror(err));
  deliver(e, r);
}

/* The fork both kinds of child share.  Returns the pid (the child never
** returns from here), or -1 with errno. */
static pid_t spawn(exec_state *e, slot *s, const int result[2],
                   const int out[2], const int err[2], int ahead) {
  /* Whatever the host printed must not be printed again by the child. */
  fflush(NULL);
  /* Signals stay blocked across fork so that no handler of the host's runs
  ** in the child before its dispositions are reset. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  s->started = pfp__now();
  pid_t pid = fork();
  if (pid == 0)
    child_start(e, s, result, out, err, ahead);
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid > 0)
    setpgid(pid, pid); /* both sides do: kill(-pid) works whichever is first */
  errno = saved;
  return pid;
}

static void close_pipes(int result[2], int out[2], int err[2]) {
  int *fds[] = {&result[0], &result[1], &out[0], &out[1], &err[0], &err[1]};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    pfp__close(fds[i]);
}

/* When a function started at `start` times out (INFINITY: no timeout). */
static double deadline_from(const exec_state *e, double start) {
  return e->opts->timeout > 0 ? start + e->opts->timeout : INFINITY;
}

/* Records in slot s the child `pid` that spawn just forked, reading its
** results from result_r.  Forked ahead, it waits; else it runs now. */
static void slot_started(exec_state *e, slot *s, pid_t pid, int result_r,
                         int ahead) {
  s->active = 1;
  s->pid = pid;
  s->fd[FD_RESULT] = result_r;
  s->fd[FD_PID] = pfp__pidfd_open(pid);
  s->kill_at = INFINITY;
  if (ahead) {
    s->waiting = 1;
    s->deadline = INFINITY;
    e->ahead = s;
  } else {
    s->deadline = deadline_from(e, s->started);
    e->running++;
  }
}

/* Forks the pending job (function and args on top of the Lua stack) into
** slot s.  Returns 0 when started, 1 when it must wait for resources, -1
** when it failed for good (a record says why). */
static int fork_job(exec_state *e, slot *s, int ahead) {
  int result[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  const char *what = "pipe";
  int saved;
  if (pfp__pipe_nonblock(result) != 0 || pfp__pipe_nonblock(out) != 0 ||
      pfp__pipe_nonblock(err) != 0)
    goto fail;

  s->name = e->pending_name;
  s->index = e->pending_index;
  if (e->pending_text != NULL) {
    /* Valid until the next job is taken, which is after this fork. */
    lua_pushlightuserdata(e->L, (void *)e->pending_text);
    lua_replace(e->L, -2);
  }
  pid_t pid = spawn(e, s, result, out, err, ahead);
  if (pid < 0) {
    s->name = NULL;
    what = "fork";
    goto fail;
  }
  e->pending = 0;
  e->pending_name = NULL;
  lua_pop(e->L, 2);

  slot_started(e, s, pid, result[0], ahead);
  s->fd[FD_OUT] = out[0];
  s->fd[FD_ERR] = err[0];
  pfp__close(&result[1]);
  pfp__close(&out[1]);
  pfp__close(&err[1]);
  return 0;

fail:
  saved = errno;
  close_pipes(result, out, err);
  if (transient(saved) && e->running > 0)
    return 1; /* retried when a running child has finished */
  lua_pop(e->L, 2);
  e->pending = 0;
  char *name = e->pending_name;
  e->pending_name = NULL;
  fail_to_start(e, name, e->pending_index, what, saved);
  return -1;
}

/* Takes the next job from the hook if none is pending.  Returns 1 when a
** job is pending, 0 when there is none. */
static int take_job(exec_state *e) {
  if (e->pending)
    return 1;
  if (!e->more_jobs || e->stop_code != 0)
    return 0;
  char *name = NULL;
  size_t index = 0;
  const char *text = NULL;
  /* Args as text come beside the function (nil in their place): a
  ** reused worker's batch keeps them, a child decodes them. */
  int rc = e->hooks->next(e->hooks->ud, e->L, &name, &index, &text);
  if (rc == PFP_FEED_WAIT) {
    free(name);
    e->feed_waiting = 1;
    return 0;
  }
  if (rc == 1) {
    e->pending = 1;
    e->pending_name = name;
    e->pending_index = index;
    e->pending_text = text;
    return 1;
  }
  free(name);
  e->more_jobs = 0;
  if (rc < 0)
    set_error(e, rc, NULL);
  return 0;
}

/* Forks at most this many children per turn of the loop, so that with a
** large `jobs` the running children's pipes and deadlines are still seen
** to while the rest start. */
#define FORKS_PER_TURN 16

/* Lets the child forked ahead run its function. */
static void start_ahead(exec_state *e) {
  slot *s = e->ahead;
  e->ahead = NULL;
  s->waiting = 0;
  s->started = pfp__now();
  s->deadline = deadline_from(e, s->started);
  e->running++;
  /* If it has died meanwhile, its pidfd says so and it is judged. */
  kill(s->pid, START_SIGNAL);
}

/* Kills the child forked ahead, which has not started its function: its
** job gets no record, as if it had never been taken. */
static void cancel_ahead(exec_state *e) {
  if (e->ahead != NULL && !e->ahead->cancelled) {
    e->ahead->cancelled = 1;
    kill(-e->ahead->pid, SIGKILL);
  }
}

/* Starts jobs while there are free slots; returns whether more could have
** started this turn (the caller then polls without waiting).  With every
** slot busy, the next job's child is forked ahead: the fork, the costliest
** step, then overlaps the running functions, and a freed slot starts it
** with one signal. */
static int start_jobs(exec_state *e) {
  int started = 0;
  while (e->stop_code == 0) {
    if (e->running < e->opts->jobs && e->ahead != NULL) {
      start_ahead(e);
      continue;
    }
    int ahead = e->running >= e->opts->jobs;
    if ((ahead && (e->ahead != NULL || e->nslots == e->opts->jobs)) ||
        e->feed_waiting)
      break;
    if (started == FORKS_PER_TURN)
      return 1;
    if (!take_job(e))
      break;
    /* Fewer than nslots children exist, so a slot is free. */
    slot *s = NULL;
    for (unsigned i = 0; i < e->nslots && s == NULL; i++)
      if (!e->slots[i].active)
        s = &e->slots[i];
    if (s == NULL || fork_job(e, s, ahead) == 1)
      break;
    started++;
  }
  return 0;
}

/* ---- reused workers: batches --------------------------------------- */

/* Jobs per batch: like multiprocessing's map chunks, about a quarter of
** each slot's share of what is left, so the last batches are small and the
** slots finish together (with one slot there is nothing to balance);
** never more than the reuse limit, nor than BATCH_MAX, which bounds what
** one batch preallocates. */
#define BATCH_MAX 4096
static size_t batch_size(exec_state *e) {
  size_t most = e->opts->reuse < BATCH_MAX ? e->opts->reuse : BATCH_MAX;
  size_t left =
      e->hooks->remaining ? e->hooks->remaining(e->hooks->ud) : SIZE_MAX;
  if (left != SIZE_MAX) {
    size_t parts = e->opts->jobs == 1 ? 1 : (size_t)e->opts->jobs * 4;
    size_t share = left / parts + (left % parts != 0);
    if (share < most)
      most = share;
  }
  return most < 1 ? 1 : most;
}

/* batches[key] = a table with room for 2 * n values.  Preallocated, so
** that storing the jobs cannot raise a memory error outside a pcall. */
static int new_batch_protected(lua_State *L) {
  lua_createtable(L, (int)lua_tointeger(L, 2), 0);
  lua_rawseti(L, 1, lua_tointeger(L, 3));
  return 0;
}

/* One entry per slot, in the array part: storing or clearing a slot's
** batch later never allocates. */
static int make_batches_protected(lua_State *L) {
  lua_createtable(L, (int)lua_tointeger(L, 1), 0);
  return 1;
}

/* Pushes the table of per-slot batches (its index in e->batches). */
static int make_batches(exec_state *e) {
  lua_pushcfunction(e->L, make_batches_protected);
  lua_pushinteger(e->L, (lua_Integer)e->opts->jobs);
  if (lua_pcall(e->L, 1, 1, 0) != LUA_OK) {
    lua_pop(e->L, 1);
    return -1;
  }
  e->batches = lua_gettop(e->L);
  return 0;
}

/* Takes up to batch_size() jobs from `next` into slot s's batch.  Returns
** how many. */
static size_t fill_batch(exec_state *e, slot *s) {
  lua_State *L = e->L;
  size_t want = batch_size(e);
  lua_Integer key = (lua_Integer)(s - e->slots) + 1;
  if (want > s->batch_cap) {
    char **names = realloc(s->batch_names, want * sizeof *names);
    if (names != NULL)
      s->batch_names = names;
    size_t *index = realloc(s->batch_index, want * sizeof *index);
    if (index != NULL)
      s->batch_index = index;
    size_t *text_at = realloc(s->batch_text_at, want * sizeof *text_at);
    if (text_at != NULL)
      s->batch_text_at = text_at;
    if (names == NULL || index == NULL || text_at == NULL) {
      set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
      return 0;
    }
    s->batch_cap = want;
  }
  lua_pushcfunction(L, new_batch_protected);
  lua_pushvalue(L, e->batches);
  lua_pushinteger(L, (lua_Integer)(2 * want));
  lua_pushinteger(L, key);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    return 0;
  }
  lua_rawgeti(L, e->batches, key);
  s->batch_text.len = 0;
  size_t n = 0;
  while (n < want && take_job(e)) {
    s->batch_text_at[n] = PFP__NO_TEXT;
    if (e->pending_text != NULL) {
      size_t at = s->batch_text.len;
      if (pfp__buf_append(&s->batch_text, e->pending_text,
                          strlen(e->pending_text) + 1) != 0) {
        lua_pop(L, 2);
        e->pending = 0;
        char *name = e->pending_name;
        e->pending_name = NULL;
        e->pending_text = NULL;
        fail_to_start(e, name, e->pending_index, "args", ENOMEM);
        continue; /* take_job sees the stop, if there is one */
      }
      s->batch_text_at[n] = at;
    }
    /* [batch, function, args]: stored in the preallocated array part. */
    lua_rawseti(L, -3, (lua_Integer)(2 * n + 2));
    lua_rawseti(L, -2, (lua_Integer)(2 * n + 1));
    s->batch_names[n] = e->pending_name;
    s->batch_index[n] = e->pending_index;
    e->pending = 0;
    e->pending_name = NULL;
    e->pending_text = NULL;
    n++;
  }
  lua_pop(L, 1);
  s->batch_len = n;
  s->batch_done = 0;
  return n;
}

/* A file for a worker's stdout or stderr.  Its size is fixed (sealed
** against growth) past the output limit, so a chatty function cannot fill
** memory: writes past the end fail.  The kernel refuses a write page by
** page, so the size is whole pages: then output longer than the limit
** always leaves more than `limit` bytes in the file, and is known to be
** truncated. */
static int make_output_file(size_t limit) {
  int fd = memfd_create("pfp-output", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  long page_size = sysconf(_SC_PAGESIZE);
  size_t page = page_size > 0 ? (size_t)page_size : 4096;
  off_t size = limit < (size_t)(INT64_MAX / 2)
                   ? (off_t)((limit / page + 1) * page)
                   : (off_t)(INT64_MAX / 2);
  /* Shrinking is sealed too: a function that truncated the file (an
  ** O_TRUNC open of /dev/stdout) would make every later write fail. */
  if (ftruncate(fd, size) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0) {
    pfp__close(&fd);
    return -1;
  }
  return fd;
}

static void worker_job_end(void *ud, pfp__frame_reader *rd);

/* Forks a worker for the rest of slot s's batch.  Returns as fork_job. */
static int fork_worker(exec_state *e, slot *s) {
  int result[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  const char *what = "pipe";
  int saved;
  if (pfp__pipe_nonblock(result) != 0)
    goto fail;
  what = "memfd_create";
  if ((out[1] = make_output_file(e->opts->output_limit)) < 0 ||
      (err[1] = make_output_file(e->opts->output_limit)) < 0)
    goto fail;

  /* The batch table on top of the stack, where the worker finds it. */
  lua_rawgeti(e->L, e->batches, (lua_Integer)(s - e->slots) + 1);
  pid_t pid = spawn(e, s, result, out, err, 0);
  lua_pop(e->L, 1);
  if (pid < 0) {
    what = "fork";
    goto fail;
  }
  slot_started(e, s, pid, result[0], 0);
  pfp__close(&result[1]);
  s->out_file = out[1];
  s->err_file = err[1];
  s->reader.on_job_end = worker_job_end;
  s->reader.ud = s;
  return 0;

fail:
  saved = errno;
  close_pipes(result, out, err);
  if (transient(saved) && e->running > 0)
    return 1;
  for (size_t k = s->batch_done; k < s->batch_len; k++) {
    fail_to_start(e, s->batch_names[k], s->batch_index[k], what, saved);
    s->batch_names[k] = NULL;
  }
  slot_drop_batch(e, s);
  return -1;
}

/* start_jobs for reused workers: a free slot gets a new batch, or the
** rest of the batch its last worker left when it crashed. */
static int start_workers(exec_state *e) {
  int started = 0;
  for (unsigned i = 0; i < e->opts->jobs && e->stop_code == 0; i++) {
    slot *s = &e->slots[i];
    if (s->active)
      continue;
    if (started == FORKS_PER_TURN)
      return 1;
    if (s->batch_done >= s->batch_len) {
      if (!e->pending && (!e->more_jobs || e->feed_waiting))
        continue;
      if (fill_batch(e, s) == 0) {
        slot_drop_batch(e, s);
        continue;
      }
    }
    int rc = fork_worker(e, s);
    if (rc == 1)
      break;
    started += rc == 0;
  }
  return 0;
}

/* ---- streaming a big result ------------------------------------------ */

/* A result payload at least this large is offered to the caller's stream
** (hooks->stream_begin) rather than kept. */
#define STREAM_MIN ((uint64_t)1 << 20)

/* Offers the result frame that has begun on slot s to the caller's stream,
** described as the record it will be: its name and index, status ok as far
** as is known, result_len the payload's size.  Accepted, what has arrived
** is written out first, and the rest follows as it comes (stream_some). */
static void offer_stream(exec_state *e, slot *s) {
  pfp__frame_reader *rd = &s->reader;
  if (!pfp__frame_reader_stream_offer(rd, STREAM_MIN,
                                      e->hooks->stream_returned_only))
    return;
  pfp_record head = {0};
  if (reusing(e)) {
    size_t k = s->batch_done;
    if (k >= s->batch_len)
      return; /* a frame for no job: the reader reports it at its end */
    head.index = s->batch_index[k];
    head.function_name = rd->name ? rd->name : s->batch_names[k];
  } else {
    head.index = s->index;
    head.function_name = rd->name ? rd->name : s->name;
  }
  if (head.function_name == NULL)
    return;
  head.status = PFP_STATUS_OK;
  head.result_streamed = 1;
  head.result_len = (size_t)rd->want;
  int fd = e->hooks->stream_begin(e->hooks->ud, &head);
  if (fd < 0)
    return;
  if (pfp__write_all(fd, rd->payload.data, rd->payload.len) != 0) {
    rd->stream_errno = errno;
    fd = -1;
  }
  pfp__frame_reader_stream(rd, fd);
}

/* Moves what has arrived of a streamed result: spliced in the kernel where
** the output takes it, else copied through the host, and dropped once the
** output has failed (the child must still be heard to its end).  Returns 1
** to go on reading, 0 when the pipe is empty or closed. */
static int stream_some(exec_state *e, slot *s) {
  pfp__frame_reader *rd = &s->reader;
  int from = s->fd[FD_RESULT];
  uint64_t left = rd->want - rd->streamed;
  size_t want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
  ssize_t got;
  if (rd->stream_fd >= 0 && !rd->stream_copy) {
    got = pfp__splice_some(from, rd->stream_fd, want);
    if (got < 0 && errno != EAGAIN) {
      /* Refused by the output's kind (an O_APPEND file, a file system
      ** without splice): copy instead, which shows a real write error. */
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        rd->stream_copy = 1;
      } else {
        rd->stream_errno = errno;
        rd->stream_fd = -1;
      }
      return 1;
    }
  } else {
    got = pfp__read_some(from, e->chunk, want);
    if (got > 0 && rd->stream_fd >= 0 &&
        pfp__write_all(rd->stream_fd, e->chunk, (size_t)got) != 0) {
      rd->stream_errno = errno;
      rd->stream_fd = -1;
    }
  }
  if (got < 0 && errno == EAGAIN)
    return 0;
  if (got <= 0) {
    pfp__close(&s->fd[FD_RESULT]);
    return 0;
  }
  pfp__frame_reader_stream_commit(rd, (size_t)got);
  return 1;
}

/* ---- reading --------------------------------------------------------- */

static void capture_add(capture *c, const char *data, size_t len,
                        size_t limit) {
  size_t room = c->text.len < limit ? limit - c->text.len : 0;
  size_t take = len < room ? len : room;
  if (take > 0 && pfp__buf_append(&c->text, data, take) != 0)
    take = 0; /* out of memory: count it as dropped */
  c->dropped += len - take;
}

/* Reads what descriptor k of slot s has: at most READS_PER_WAKE chunks, or
** with `all` (the child has exited) until the pipe is empty.  A pipe holds
** at most 1 MiB unless enlarged, so DRAIN_CHUNKS bounds even a drain racing
** a writer that escaped the process group. */
#define DRAIN_CHUNKS 256
static void read_fd(exec_state *e, slot *s, int k, int all) {
  int most = all ? DRAIN_CHUNKS : READS_PER_WAKE;
  for (int n = 0; s->fd[k] >= 0 && n < most; n++) {
    if (k == FD_RESULT && e->hooks->stream_begin != NULL) {
      offer_stream(e, s);
      if (s->reader.streaming) {
        if (!stream_some(e, s))
          return;
        continue;
      }
    }
    size_t room = 0;
    char *direct =
        k == FD_RESULT ? pfp__frame_reader_direct(&s->reader, &room) : NULL;
    if (direct != NULL) {
      ssize_t got = pfp__read_some(s->fd[k], direct, room);
      if (got < 0 && errno == EAGAIN)
        return;
      if (got <= 0) {
        pfp__close(&s->fd[k]);
        return;
      }
      if (pfp__frame_reader_commit(&s->reader, (size_t)got) != 0 &&
          s->reader.protocol_error == NULL)
        s->reader.protocol_error = pfp__strdup("out of memory in the host");
      if (s->reader.protocol_error != NULL && reusing(e))
        kill(-s->pid, SIGKILL);
      continue;
    }
    ssize_t got = pfp__read_some(s->fd[k], e->chunk, READ_CHUNK);
    if (got < 0 && errno == EAGAIN)
      return;
    if (got <= 0) {
      pfp__close(&s->fd[k]); /* EOF, or an error that will not go away */
      return;
    }
    if (k == FD_RESULT) {
      if (pfp__frame_reader_feed(&s->reader, e->chunk, (size_t)got) != 0 &&
          s->reader.protocol_error == NULL)
        s->reader.protocol_error = pfp__strdup("out of memory in the host");
      /* A reused worker whose frames can no longer be read must not run
      ** the rest of its batch unheard: those jobs run again elsewhere. */
      if (s->reader.protocol_error != NULL && reusing(e))
        kill(-s->pid, SIGKILL);
    } else {
      capture_add(k == FD_OUT ? &s->out : &s->err, e->chunk, (size_t)got,
                  e->opts->output_limit);
    }
  }
}

/* ---- finishing a job ------------------------------------------------- */

static char *capture_finish(capture *c, const char *stream, size_t *len) {
  if (c->dropped > 0)
    pfp__buf_printf(&c->text, "\n[pfp: %s truncated, %zu more bytes not "
                              "captured]\n",
                    stream, c->dropped);
  return pfp__buf_take(&c->text, len);
}

static const char *signal_text(int sig) {
  const char *abbrev = sigabbrev_np(sig);
  return abbrev ? abbrev : "unknown";
}

/* Decides the record's status from what the child delivered and how its
** process ended. */
static void judge(exec_state *e, slot *s, pfp_record *r, int wstatus,
                  int reaped) {
  pfp__frame_reader *rd = &s->reader;
  if (reaped && WIFEXITED(wstatus))
    r->exit_code = WEXITSTATUS(wstatus);
  if (reaped && WIFSIGNALED(wstatus))
    r->signal = WTERMSIG(wstatus);
  int has_result = 0;
  if (!pfp__frame_reader_partial(rd)) {
    if (rd->result != NULL) {
      r->result_text = rd->result;
      r->result_len = rd->result_len;
      rd->result = NULL;
      has_result = 1;
    } else if (rd->result_streamed) {
      r->result_streamed = 1;
      r->result_len = rd->result_len;
      has_result = 1;
    }
  }
  r->stream_errno = rd->stream_errno;

  if (s->timed_out) {
    r->status = PFP_STATUS_TIMEOUT;
    r->error = pfp__strdupf("timed out after %g s%s", e->opts->timeout,
                            r->signal == SIGKILL ? " (killed with SIGKILL "
                                                   "after SIGTERM was ignored)"
                                                 : "");
  } else if (s->interrupted) {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdup("interrupted: the run was stopped");
  } else if (rd->protocol_error != NULL) {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdupf("bad data on the result pipe: %s",
                            rd->protocol_error);
  } else if (!reaped) {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdup("exit status lost: the process was reaped by "
                           "someone else");
  } else if (WIFSIGNALED(wstatus)) {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdupf("killed by signal %d (SIG%s)%s", r->signal,
                            signal_text(r->signal),
                            pfp__frame_reader_partial(rd)
                                ? " while writing its result"
                                : "");
  } else if (rd->error != NULL) {
    r->status = PFP_STATUS_ERROR;
    r->error = rd->error;
    rd->error = NULL;
  } else if (pfp__frame_reader_partial(rd)) {
    r->status = PFP_STATUS_CRASHED;
    if (rd->in_payload)
      r->error = pfp__strdupf("exited with code %d in the middle of writing "
                              "its result (%llu of %llu bytes)",
                              r->exit_code,
                              (unsigned long long)
                                  pfp__frame_reader_received(rd),
                              (unsigned long long)rd->want);
    else
      r->error = pfp__strdupf("exited with code %d in the middle of writing "
                              "its result (%zu of %d header bytes)",
                              r->exit_code, rd->header_len,
                              PFP__FRAME_HEADER);
  } else if (has_result && r->exit_code == 0) {
    r->status = PFP_STATUS_OK;
  } else if (has_result) {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdupf("exited with code %d after delivering its result",
                            r->exit_code);
  } else {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdupf("exited with code %d without delivering a result",
                            r->exit_code);
  }
}

/* ---- reused workers: finishing jobs ---------------------------------- */

/* A job's captured output as a record's text (new string, NULL when
** empty): at most `limit` bytes, with a marker when there was more. */
static char *output_text(const char *data, size_t len, size_t limit,
                         const char *stream, size_t *text_len) {
  pfp__buf b = {0};
  size_t keep = len < limit ? len : limit;
  if (keep > 0)
    pfp__buf_append(&b, data, keep);
  if (len > limit)
    pfp__buf_printf(&b, "\n[pfp: %s truncated at the output limit of %zu "
                        "bytes; later writes failed]\n",
                    stream, limit);
  return pfp__buf_take(&b, text_len);
}

/* What a worker that died wrote for its last job: read from the host's
** own descriptor of the output file. */
static char *salvage_output(int fd, size_t limit, const char *stream,
                            size_t *text_len) {
  off_t end = pfp__written_size(fd);
  char *data = end > 0 ? malloc((size_t)end) : NULL;
  ssize_t got = data ? pread(fd, data, (size_t)end, 0) : 0;
  char *text = output_text(data, got > 0 ? (size_t)got : 0, limit, stream,
                           text_len);
  free(data);
  return text;
}

/* The name a record carries: the Result's function_name if it set one,
** else the registered name.  Takes both; frees the one not used. */
static char *record_name(char **from_result, char **registered) {
  char *name = *from_result ? *from_result : *registered;
  if (*from_result)
    free(*registered);
  *from_result = *registered = NULL;
  return name;
}

/* A reused worker finished job batch_done: its frames are in rd. */
static void worker_job_end(void *ud, pfp__frame_reader *rd) {
  slot *s = ud;
  exec_state *e = s->owner;
  if (s->batch_done >= s->batch_len) {
    rd->protocol_error = pfp__strdup("more job ends than jobs");
    return;
  }
  size_t k = s->batch_done++;
  double now = pfp__now();
  pfp_record *r = pfp__record_new();
  if (r == NULL) {
    free(s->batch_names[k]);
    s->batch_names[k] = NULL;
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    return;
  }
  r->index = s->batch_index[k];
  r->function_name = record_name(&rd->name, &s->batch_names[k]);
  r->duration_ms = (now - s->started) * 1000.0;
  r->stream_errno = rd->stream_errno;
  if (rd->error != NULL) {
    r->status = PFP_STATUS_ERROR;
    r->error = rd->error;
    rd->error = NULL;
  } else if (rd->result != NULL || rd->result_streamed) {
    r->status = PFP_STATUS_OK;
    r->result_text = rd->result;
    r->result_len = rd->result_len;
    r->result_streamed = rd->result_streamed;
    rd->result = NULL;
  } else {
    r->status = PFP_STATUS_CRASHED;
    r->error = pfp__strdup("finished without delivering a result");
  }
  size_t limit = e->opts->output_limit;
  r->out = output_text(rd->out, rd->out_len, limit, "stdout", &r->out_len);
  r->err = output_text(rd->err, rd->err_len, limit, "stderr", &r->err_len);
  /* The next job starts now; its own deadline follows. */
  s->started = now;
  /* A worker already being stopped keeps its timers as they are. */
  if (!s->interrupted && !s->timed_out && s->kill_at == INFINITY)
    s->deadline =
        s->batch_done < s->batch_len ? deadline_from(e, now) : INFINITY;
  if (r->function_name == NULL ||
      (r->status == PFP_STATUS_CRASHED && r->error == NULL)) {
    pfp__record_free(r);
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    return;
  }
  deliver(e, r);
}

/* A reused worker has exited; its finished jobs are recorded.  The job it
** was running gets a record judged from how it ended, and the rest of the
** batch waits in the slot for a new worker. */
static void finish_worker(exec_state *e, slot *s, int wstatus, int reaped,
                          double ended) {
  size_t k = s->batch_done;
  /* Killed because an earlier job timed out, which then finished after
  ** all: this job did nothing wrong and runs again. */
  int collateral = s->timed_out && s->timed_out_job != k;
  if (k < s->batch_len && !collateral) {
    pfp_record *r = pfp__record_new();
    if (r == NULL) {
      set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    } else {
      s->batch_done++;
      r->index = s->batch_index[k];
      r->duration_ms = (ended - s->started) * 1000.0;
      judge(e, s, r, wstatus, reaped);
      r->function_name = record_name(&s->reader.name, &s->batch_names[k]);
      size_t limit = e->opts->output_limit;
      r->out = salvage_output(s->out_file, limit, "stdout", &r->out_len);
      r->err = salvage_output(s->err_file, limit, "stderr", &r->err_len);
      if (r->function_name == NULL) {
        pfp__record_free(r);
        set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
      } else {
        deliver(e, r);
      }
    }
  }
  e->running--;
  slot_end_process(s);
  if (s->batch_done >= s->batch_len || e->stop_code != 0)
    slot_drop_batch(e, s);
}

static void finish(exec_state *e, slot *s) {
  /* The child has exited but is not reaped, so its pid still names its
  ** process group: anything it left behind is killed, never orphaned. */
  kill(-s->pid, SIGKILL);
  for (int k = FD_RESULT; k <= FD_ERR; k++)
    read_fd(e, s, k, 1);
  int wstatus = 0;
  pid_t got = pfp__waitpid(s->pid, &wstatus, 0);
  double ended = pfp__now();
  if (reusing(e)) {
    finish_worker(e, s, wstatus, got == s->pid, ended);
    return;
  }
  /* A child forked ahead that ended before it was started was not
  ** running; killed by cancel_ahead, its job never ran at all. */
  int was_running = !s->waiting;
  if (e->ahead == s)
    e->ahead = NULL;
  if (s->cancelled) {
    slot_end_process(s);
    return;
  }

  pfp_record *r = pfp__record_new();
  if (r == NULL) {
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    e->running -= (unsigned)was_running;
    slot_end_process(s);
    return;
  }
  r->index = s->index;
  r->duration_ms = (ended - s->started) * 1000.0;
  judge(e, s, r, wstatus, got == s->pid);
  if (s->reader.name != NULL) {
    r->function_name = s->reader.name;
    s->reader.name = NULL;
  } else {
    r->function_name = s->name;
    s->name = NULL;
  }
  r->out = capture_finish(&s->out, "stdout", &r->out_len);
  r->err = capture_finish(&s->err, "stderr", &r->err_len);
  e->running -= (unsigned)was_running;
  slot_end_process(s);
  if (r->function_name == NULL) {
    pfp__record_free(r);
    set_error(e, PFP_ENOMEM, pfp__strdup("out of memory"));
    return;
  }
  deliver(e, r);
}

/* ---- the loop -------------------------------------------------------- */

static void terminate_all(exec_state *e, double now) {
  for (unsigned i = 0; i < e->nslots; i++) {
    slot *s = &e->slots[i];
    if (s->active && !s->interrupted && !s->waiting) {
      s->interrupted = !s->timed_out;
      if (s->kill_at == INFINITY) {
        kill(-s->pid, SIGTERM);
        s->kill_at = now + e->opts->kill_grace;
      }
      s->deadline = INFINITY;
    }
  }
}

/* True when the child has exited (and is not yet reaped): a deadline that
** passes between its exit and our noticing it is not a timeout. */
static int has_exited(const slot *s) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  return waitid(P_PID, (id_t)s->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == s->pid;
}

static void check_timers(exec_state *e, double now) {
  for (unsigned i = 0; i < e->nslots; i++) {
    slot *s = &e->slots[i];
    if (!s->active)
      continue;
    if (now >= s->deadline && has_exited(s)) {
      s->deadline = INFINITY; /* finished in time; reaped on the next turn */
      continue;
    }
    if (now >= s->deadline) {
      s->timed_out = 1;
      s->timed_out_job = s->batch_done;
      s->deadline = INFINITY;
      kill(-s->pid, SIGTERM);
      s->kill_at = now + e->opts->kill_grace;
    }
    if (now >= s->kill_at) {
      kill(-s->pid, SIGKILL);
      s->kill_at = INFINITY;
    }
  }
}

/* Milliseconds until the next timer, or -1 for none. */
static int poll_timeout(exec_state *e, double now) {
  double next = INFINITY;
  for (unsigned i = 0; i < e->nslots; i++) {
    slot *s = &e->slots[i];
    if (s->active) {
      if (s->deadline < next)
        next = s->deadline;
      if (s->kill_at < next)
        next = s->kill_at;
    }
  }
  if (next == INFINITY)
    return -1;
  double ms = ceil((next - now) * 1000.0);
  return ms <= 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static int hard_stop(int code) { return code == PFP_EINTR || code == PFP_EABORT; }

/* Empties the interrupt pipe; returns whether it held a request. */
static int take_interrupt(exec_state *e) {
  char drain[64];
  int any = 0;
  if (e->opts->wake_fd < 0)
    return 0;
  if (e->opts->interrupt_flag != NULL)
    *e->opts->interrupt_flag = 0;
  while (pfp__read_some(e->opts->wake_fd, drain, sizeof drain) > 0)
    any = 1;
  return any;
}

static void run_loop(exec_state *e) {
  int stopping = 0;
  /* An interrupt that came while nothing ran stops this run before it
  ** starts anything. */
  if (take_interrupt(e))
    set_error(e, PFP_EINTR, pfp__strdup("interrupted"));
  for (;;) {
    int more_to_start = reusing(e) ? start_workers(e) : start_jobs(e);
    if (e->stop_code != 0)
      cancel_ahead(e);
    if (e->stop_code != 0 && hard_stop(e->stop_code) && !stopping) {
      stopping = 1;
      terminate_all(e, pfp__now());
    }
    int feed_wait = e->feed_waiting && e->more_jobs && e->stop_code == 0;
    if (e->running == 0 && e->ahead == NULL && !feed_wait && !more_to_start)
      break;

    nfds_t n = 0;
    if (e->opts->wake_fd >= 0 && !stopping) {
      e->pfds[n] = (struct pollfd){.fd = e->opts->wake_fd, .events = POLLIN};
      e->pfd_slot[n++] = -1;
    }
    if (feed_wait) {
      e->pfds[n] = (struct pollfd){.fd = e->opts->feed_fd, .events = POLLIN};
      e->pfd_slot[n++] = -2;
    }
    for (unsigned i = 0; i < e->nslots; i++) {
      slot *s = &e->slots[i];
      if (!s->active)
        continue;
      for (int k = 0; k < FD_KINDS; k++) {
        if (s->fd[k] < 0)
          continue;
        e->pfds[n] = (struct pollfd){.fd = s->fd[k], .events = POLLIN};
        e->pfd_slot[n++] = (int)(i * FD_KINDS + (unsigned)k);
      }
    }
    int wait_ms = more_to_start ? 0 : poll_timeout(e, pfp__now());
    if (wait_ms != 0 && e->hooks->idle != NULL) {
      int stop = e->hooks->idle(e->hooks->ud);
      if (stop != 0)
        set_error(e, stop, pfp__strdup(pfp_strerror(stop)));
    }
    int rc = poll(e->pfds, n, wait_ms);
    if (rc < 0 && errno != EINTR) {
      set_error(e, PFP_ESYS, pfp__strdupf("poll: %s", strerror(errno)));
      terminate_all(e, pfp__now());
      stopping = 1;
      continue;
    }
    for (nfds_t j = 0; rc > 0 && j < n; j++) {
      if (e->pfds[j].revents == 0)
        continue;
      if (e->pfd_slot[j] == -2) {
        e->feed_waiting = 0; /* input (or its end) has arrived */
        continue;
      }
      if (e->pfd_slot[j] < 0) {
        if (take_interrupt(e))
          set_error(e, PFP_EINTR, pfp__strdup("interrupted"));
        continue;
      }
      slot *s = &e->slots[e->pfd_slot[j] / FD_KINDS];
      int k = e->pfd_slot[j] % FD_KINDS;
      if (!s->active)
        continue;
      if (k == FD_PID) {
        finish(e, s);
        continue;
      }
      read_fd(e, s, k, 0);
      /* Without a pidfd, the result pipe's end stands for the child's end:
      ** only the child holds its write end (it is close-on-exec). */
      if (k == FD_RESULT && s->fd[FD_RESULT] < 0 && s->fd[FD_PID] < 0)
        finish(e, s);
    }
    check_timers(e, pfp__now());
  }
  /* Requests made during this run were for this run. */
  take_interrupt(e);
  if (e->pending) {
    lua_pop(e->L, 2);
    free(e->pending_name);
    e->pending_name = NULL;
    e->pending = 0;
  }
}

int pfp__exec(lua_State *L, int context, const pfp__exec_opts *opts,
              const pfp__exec_hooks *hooks, char **errmsg) {
  exec_state e;
  memset(&e, 0, sizeof e);
  e.L = L;
  e.context = lua_absindex(L, context);
  e.opts = opts;
  e.hooks = hooks;
  e.more_jobs = 1;
  e.host_pid = getpid();
  /* One slot more than `jobs` for the child forked ahead (see
  ** fork_ahead); reused workers need none. */
  e.nslots = opts->jobs + (opts->reuse > 1 ? 0 : 1);
  e.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  /* Read once per run.  A handler another thread installs while the run
  ** goes on is not reset in children forked after it. */
  sigemptyset(&e.changed_signals);
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
        sa.sa_handler != SIG_DFL)
      sigaddset(&e.changed_signals, sig);
  }
  e.slots = calloc(e.nslots, sizeof *e.slots);
  /* What only the host uses, written at every turn of the loop: the read
  ** chunk and the poll list.  Kept out of the children (pfp__host_only),
  ** so a fork leaves these pages writable, where a page the children
  ** share costs the host a copy-on-write fault at each fork. */
  size_t npfds = (size_t)e.nslots * FD_KINDS + 2;
  size_t host_only_size = READ_CHUNK + npfds * sizeof *e.pfds +
                          npfds * sizeof *e.pfd_slot;
  char *host_only = pfp__host_only(host_only_size);
  if (host_only != NULL) {
    e.chunk = host_only;
    e.pfds = (struct pollfd *)(host_only + READ_CHUNK);
    e.pfd_slot = (int *)(e.pfds + npfds);
  }
  /* Every slot's descriptors say -1 before anything can fail. */
  if (e.slots != NULL)
    for (unsigned i = 0; i < e.nslots; i++)
      slot_init(&e, &e.slots[i]);
  if (e.slots == NULL || host_only == NULL || !lua_checkstack(L, 8)) {
    set_error(&e, PFP_ENOMEM, pfp__strdup("out of memory"));
  } else {
    if (reusing(&e) && make_batches(&e) != 0)
      set_error(&e, PFP_ENOMEM, pfp__strdup("out of memory"));
    else
      run_loop(&e);
    for (unsigned i = 0; i < e.nslots; i++)
      slot_free(&e, &e.slots[i]);
    if (e.batches != 0) {
      lua_remove(L, e.batches);
      e.batches = 0;
    }
  }
  if (e.slots)
    for (unsigned i = 0; i < e.nslots; i++)
      slot_free(&e, &e.slots[i]);
  pfp__close(&e.devnull);
  free(e.slots);
  pfp__host_only_free(host_only, host_only_size);
  *errmsg = e.errmsg;
  return e.stop_code;
}
