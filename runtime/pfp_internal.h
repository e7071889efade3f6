/*
** pfp_internal.h — declarations shared between runtime files (pfp__ prefix).
** Nothing here is part of the public API or exported from libpfp.so.
*/
#ifndef PFP_INTERNAL_H
#define PFP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <lua.h>
#include <lauxlib.h>

#include "pfp.h"

#define PFP__STR_(x) #x
#define PFP__STR(x) PFP__STR_(x)

#if defined(__GNUC__)
#define PFP__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define PFP__NORETURN __attribute__((noreturn))
#else
#define PFP__PRINTF(f, a)
#define PFP__NORETURN
#endif

/* Debug builds check that a function leaves the Lua stack as it found it
** (plus `pushed` values): an unbalanced stack is a bug that would surface
** much later and far away.  PFP__STACK_MARK(L) opens the check. */
#include <assert.h>
#define PFP__STACK_MARK(L) int pfp__stack_top = lua_gettop(L)
#define PFP__STACK_CHECK(L, pushed)                                          \
  assert(lua_gettop(L) == pfp__stack_top + (pushed))

/* ---- buf.c: a growable byte buffer ------------------------------------ */

/* Always NUL-terminated after a successful append (data may be NULL while
** empty).  Appends return 0, or -1 when memory runs out (the buffer is then
** unchanged). */
typedef struct pfp__buf {
  char *data;
  size_t len;
  size_t cap;
  int borrowed; /* data is the caller's storage: never freed or realloc'd */
} pfp__buf;

void pfp__buf_free(pfp__buf *b);
/* Starts an empty buffer in `storage` (cap bytes, cap > 0), which the
** caller owns and keeps valid while the buffer lives: appends that do not
** fit move the bytes to the heap; steal and take copy them out. */
void pfp__buf_init_borrowed(pfp__buf *b, char *storage, size_t cap);
int pfp__buf_reserve(pfp__buf *b, size_t extra);
int pfp__buf_append(pfp__buf *b, const void *data, size_t len);
int pfp__buf_puts(pfp__buf *b, const char *s);
int pfp__buf_printf(pfp__buf *b, const char *fmt, ...) PFP__PRINTF(2, 3);
/* As pfp__buf_steal, but an empty buffer yields NULL (no allocation): a
** record's empty stdout costs nothing. */
char *pfp__buf_take(pfp__buf *b, size_t *len);
/* pfp__buf_reserve, but growing to exactly the room asked for (no
** doubling): for a payload whose size is known. */
int pfp__buf_reserve_exact(pfp__buf *b, size_t extra);
/* Hands the bytes over (caller frees); the buffer is left empty.  An empty
** buffer yields an allocated "": NULL only when memory runs out. */
char *pfp__buf_steal(pfp__buf *b, size_t *len);

/* ---- sys.c: system calls wrapped once --------------------------------- */

/* read/write retried on EINTR.  pfp__write_all loops over short writes and
** returns 0 or -1 (errno set).  pfp__read_some returns bytes read, 0 at EOF,
** -1 with errno (EAGAIN for an empty non-blocking pipe). */
ssize_t pfp__read_some(int fd, void *buf, size_t len);
int pfp__write_all(int fd, const void *buf, size_t len);
/* Moves up to len bytes from a non-blocking pipe to `to` in the kernel
** (splice), retried on EINTR: bytes moved, 0 at EOF, -1 with errno
** (EAGAIN: the pipe is empty; EINVAL: `to` cannot take a splice). */
ssize_t pfp__splice_some(int from, int to, size_t len);
/* For the fork server's socket.  Sends use MSG_NOSIGNAL: a peer that is gone
** gives EPIPE, never a SIGPIPE that would kill the host.  pfp__send_some
** and pfp__recv_some return bytes moved or -1 (flags may add MSG_DONTWAIT);
** pfp__sendv_all sends every byte of the iovecs, blocking, and returns 0 or
** -1 (it advances iov as it goes). */
ssize_t pfp__send_some(int fd, const void *buf, size_t len, int flags);
int pfp__sendv_all(int fd, struct iovec *iov, int count);
ssize_t pfp__recv_some(int fd, void *buf, size_t len, int flags);
/* A pipe whose both ends are close-on-exec; the read end is non-blocking. */
int pfp__pipe(int fds[2]);
/* A pipe whose both ends are close-on-exec and non-blocking, made in one
** call: the engine makes three per child, and the child, not the host,
** pays for turning its write ends back to blocking (pfp__set_blocking). */
int pfp__pipe_nonblock(int fds[2]);
/* Makes an end of such a pipe blocking: it clears every status flag, as
** O_NONBLOCK is the only one pfp__pipe_nonblock sets (no F_GETFL first). */
int pfp__set_blocking(int fd);
/* writev until everything is written; iov is consumed.  0 or -1 (errno). */
struct iovec;
int pfp__writev_all(int fd, struct iovec *iov, int n);
/* Like pfp__write_all, but into a pipe by lending it the pages (vmsplice)
** instead of copying them, where the kernel allows; the rest is written.
** The caller must leave those bytes unchanged, and their memory allocated,
** for as long as the reader may not have read them.  0 or -1 (errno). */
int pfp__lend_all(int fd, const void *buf, size_t len);
/* Asks the kernel to back [addr, addr + len) with memory now, in one pass,
** instead of a page fault at each page's first write.  A hint: whole pages
** inside the range only, failures ignored (kernels before 5.14 lack it). */
void pfp__populate(void *addr, size_t len);
/* For a block of many MB that will be filled once, front to back (a big
** result): huge pages make that a few hundred page faults instead of one
** per 4 KiB.  Only whole pages inside the block are advised, which splits
** its mapping, so realloc can no longer move it cheaply: only for blocks
** that will not grow.  Failure is harmless (no transparent huge pages). */
void pfp__advise_huge_pages(char *data, size_t len);
/* Zeroed memory of its own mapping, left out of every child forked later
** (MADV_DONTFORK): for what only the forking process uses.  A child must
** never touch it.  NULL when out of memory; freed with the same len. */
void *pfp__host_only(size_t len);
void pfp__host_only_free(void *p, size_t len);
int pfp__set_nonblock(int fd);
/* close() that keeps errno and never retries (a retried close can close
** someone else's descriptor). */
void pfp__close(int *fd);
/* waitpid retried on EINTR. */
pid_t pfp__waitpid(pid_t pid, int *status, int flags);
/* A pollable descriptor for the child pid, or -1 when the kernel has none
** (then the caller falls back to the result pipe's end). */
int pfp__pidfd_open(pid_t pid);
/* Sends sig to the process a pidfd names (never to another that reuses its
** pid).  0, or -1 with errno. */
int pfp__pidfd_signal(int pidfd, int sig);
/* For a process just forked (a child, the fork server): leads its own
** process group and is killed with its parent (PR_SET_PDEATHSIG).
** Returns -1 when the parent is already gone. */
int pfp__tie_to_parent(pid_t parent);
/* Resets the signals in `which` (NULL: all that can be) to their default
** actions: the parent's handlers and ignored signals are not ours. */
void pfp__default_signals(const sigset_t *which);
/* How much a job wrote to an output file of a reused worker (exec.c):
** its position, but never past its end.  -1 when it cannot be told. */
off_t pfp__written_size(int fd);
/* Monotonic time in seconds. */
double pfp__now(void);

/* ---- jsonw.c: writing JSON text --------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes; 1 for ASCII),
** or 0 when the bytes there are not valid UTF-8 (overlong forms,
** surrogates and code points above U+10FFFF are invalid). */
size_t pfp__utf8_sequence(const unsigned char *s, size_t n);

/* Length of the longest prefix of s that a JSON string holds as is
** (printable ASCII other than '"', '\\' and DEL). */
size_t pfp__jw_plain_prefix(const char *s, size_t len);
/* Appends s as a JSON string.  strict: invalid UTF-8 is an error (returns
** -2 and sets *bad_at to the offset of the first bad byte); lossy: bad bytes
** become U+FFFD.  Returns 0, -1 on out of memory. */
int pfp__jw_string(pfp__buf *b, const char *s, size_t len, int lossy,
                   size_t *bad_at);
/* Appends a float as the shortest text that reads back as the same double,
** always with a '.' or an exponent so it stays a float.  Returns -2 for NaN
** and infinities. */
int pfp__jw_double(pfp__buf *b, double v);
int pfp__jw_integer(pfp__buf *b, long long v);
/* Appends a jansson value as compact JSON (numbers as above). */
int pfp__jw_json(pfp__buf *b, const json_t *v);

/* ---- convert.c: Lua <-> JSON ------------------------------------------ */

/* Registry keys of the metatables pfp uses. */
#define PFP__ARRAY_MT "pfp.array"
#define PFP__RESULT_MT "pfp.Result"

/* Pushes the JSON value as a Lua value: integers as integers, reals as
** floats, arrays as tables marked with the array metatable, null as
** pfp.null.  Returns 0, or -1 (nothing pushed) if the Lua stack cannot grow
** or the value is nested deeper than PFP_MAX_DEPTH. */
int pfp__push_json(lua_State *L, const json_t *v);

/* Converts the Lua value at `idx` to JSON text appended to b.  `root` names
** the value in error messages ("result").  Returns 0; -1 out of memory; -2
** for a value that cannot be serialized, with a message such as
** "result.items[3].cb: function cannot be serialized" in *errmsg (a new
** string the caller frees). */
int pfp__lua_to_json(lua_State *L, int idx, const char *root, pfp__buf *b,
                     char **errmsg);

/* The same, except that long strings needing no escapes are left out of
** the text: each hole says where its bytes belong (`at`, an offset in b,
** between the quotes) and points into the Lua string, which is kept alive
** (in the registry) until pfp__json_holes_release.  A child writes its result so, without
** copying a string of hundreds of MB. */
#define PFP__HOLE_MIN ((size_t)64 << 10)
#define PFP__HOLES_MAX 64
typedef struct pfp__json_hole {
  size_t at;
  const char *s;
  size_t len;
} pfp__json_hole;
typedef struct pfp__json_holes {
  pfp__json_hole list[PFP__HOLES_MAX];
  size_t n;
} pfp__json_holes;
int pfp__lua_to_json_holes(lua_State *L, int idx, const char *root,
                           pfp__buf *b, pfp__json_holes *holes,
                           char **errmsg);
/* Lets the strings of holes go once they are written. */
void pfp__json_holes_release(lua_State *L, const pfp__json_holes *holes);

/* Checks a decoded JSON value's depth against PFP_MAX_DEPTH. */
int pfp__json_depth_ok(const json_t *v);

/* Parses JSON text that must be an object.  On failure returns NULL and
** writes "NAME:LINE:COLUMN: reason" (or "NAME: reason") into *errmsg (new
** string).  `name` names the source: a file or "argument 2". */
json_t *pfp__parse_object(const char *text, size_t len, const char *name,
                          char **errmsg);

/* True when an object key anywhere in v contains a NUL byte. */
int pfp__json_keys_have_nul(const json_t *v);

/* jansson's message for a parse error without the "near '...'" excerpt of
** the input, which could be a secret from a context file.  New string. */
char *pfp__json_error_text(const json_error_t *err);

/* ---- jobs_line.c ------------------------------------------------------ */

/* Parses one line of a jobs file.  Returns 0 with *name (new string) and
** *args (new reference, or NULL for {}); 1 for a blank line; -1 with *msg
** (new string) as "SOURCE:LINE[:COLUMN]: reason". */
int pfp__parse_job_line(const char *line, size_t len, const char *source,
                        size_t line_no, char **name, json_t **args,
                        char **msg);

/* ---- json_scan.c ------------------------------------------------------ */

enum { PFP__SCAN_UNSURE, PFP__SCAN_SURE, PFP__SCAN_BLANK };

/* Where a jobs line's parts are: its function name (no escapes in it) and
** its args object (args_len 0: the line has none). */
typedef struct pfp__job_span {
  size_t name_at, name_len, args_at, args_len;
} pfp__job_span;

/* Checks a jobs line without building anything.  PFP__SCAN_SURE: the line
** is one pfp__parse_job_line accepts, its parts where *job says.
** PFP__SCAN_BLANK: it skips the line.  PFP__SCAN_UNSURE: only
** pfp__parse_job_line can tell (and give the message). */
int pfp__scan_job_line(const char *line, size_t len, pfp__job_span *job);

/* The same for args text: PFP__SCAN_SURE when pfp__parse_object accepts it,
** else PFP__SCAN_UNSURE. */
int pfp__scan_object(const char *text, size_t len);

/* Pushes the table for args text that pfp__scan_object is sure of, the
** same one pfp__push_json makes of jansson's reading, and returns 0; for
** other text pushes nothing and returns -1 (then ask jansson).  Raises
** only Lua's memory errors. */
int pfp__push_json_text(lua_State *L, const char *text, size_t len);

/* Lines from a descriptor (a jobs file, or a pipe that delivers slowly). */
typedef struct pfp__line_reader {
  int fd;
  pfp__buf buf; /* bytes read; those before `start` are used up */
  size_t start;
  int eof;
} pfp__line_reader;

void pfp__line_reader_init(pfp__line_reader *r, int fd);
void pfp__line_reader_free(pfp__line_reader *r);
/* The next line, without its newline, in *line and *len (valid until the next
** call).  Returns 1, 0 at the end, PFP_FEED_WAIT when `may_block` is 0 and
** no whole line can be had without waiting, -1 on a read error (errno). */
int pfp__line_reader_next(pfp__line_reader *r, const char **line, size_t *len,
                          int may_block);

/* ---- wire.c: frames on the result pipe -------------------------------- */

/* A frame is a type byte, a 64-bit little-endian length and the payload. */
enum {
  PFP__FRAME_NAME = 'N',   /* the Result's function_name (UTF-8) */
  PFP__FRAME_RESULT = 'R', /* the result as JSON text, given to q:put */
  PFP__FRAME_RETURNED = 'T', /* the same, returned: the function has ended */
  PFP__FRAME_ERROR = 'E',  /* a Lua error message with traceback */
  /* From a reused worker only, which runs many jobs on one pipe: */
  PFP__FRAME_STDOUT = 'O', /* what the job wrote to stdout; one byte more
                              than the output limit means truncated */
  PFP__FRAME_STDERR = 'D', /* the same for stderr */
  PFP__FRAME_JOB_END = 'F' /* the job's frames are complete (no payload) */
};
#define PFP__FRAME_HEADER 9
#define PFP__FRAME_MAX ((uint64_t)1 << 40)

int pfp__frame_write(int fd, int type, const void *payload, size_t len);
/* The 9 header bytes of a frame of `len` payload bytes. */
void pfp__frame_header(unsigned char header[PFP__FRAME_HEADER], int type,
                       uint64_t len);
/* A payload up to this size gets its whole buffer once its first 64 KiB
** have arrived, so a big result is never copied to grow it (a header alone,
** which may lie, reserves nothing big).  Larger payloads grow as they
** arrive. */
#define PFP__FRAME_RESERVE_MAX ((uint64_t)1 << 30)

/* The host's incremental reader: feed it bytes as they come. */
struct pfp__frame_reader;
/* Called at each job-end frame; it may take (steal) the job's fields, and
** whatever it leaves is freed before the next job's frames. */
typedef void (*pfp__job_end_fn)(void *ud, struct pfp__frame_reader *r);
typedef struct pfp__frame_reader {
  unsigned char header[PFP__FRAME_HEADER];
  size_t header_len;
  uint64_t want;   /* payload bytes of the current frame */
  pfp__buf payload;
  int in_payload;
  /* What has been delivered: */
  char *name;
  char *result;
  size_t result_len;
  char *error;
  char *out, *err; /* a reused worker's output for the job */
  size_t out_len, err_len;
  char *protocol_error; /* set once; the reader then ignores further bytes */
  /* A result payload copied out to a descriptor as it arrives instead of
  ** kept (pfp__frame_reader_stream): */
  int stream_decided;  /* the current result frame was offered */
  int streaming;       /* its payload bytes now go to stream_fd */
  int stream_fd;       /* -1: the output failed, the rest is dropped */
  int stream_copy;     /* splice refused: copy through the host */
  int stream_errno;    /* why the output failed, 0 if it did not */
  uint64_t streamed;   /* payload bytes gone to the stream so far */
  int result_streamed; /* the whole result went to the stream */
  /* Set for a reused worker's pipe (NULL: one job, no job-end frames). */
  pfp__job_end_fn on_job_end;
  void *ud;
} pfp__frame_reader;

void pfp__frame_reader_free(pfp__frame_reader *r);
/* Returns 0, or -1 when out of memory. */
int pfp__frame_reader_feed(pfp__frame_reader *r, const char *data, size_t len);
/* Where the next bytes of a large payload may be read into directly (at
** most *room of them, then pfp__frame_reader_commit), or NULL when they
** must go through pfp__frame_reader_feed. */
char *pfp__frame_reader_direct(pfp__frame_reader *r, size_t *room);
/* Accepts n bytes read into the space pfp__frame_reader_direct gave.
** Returns 0, or -1 when out of memory. */
int pfp__frame_reader_commit(pfp__frame_reader *r, size_t n);
/* Frees the current job's fields (name, result, error, output). */
void pfp__frame_reader_take_job(pfp__frame_reader *r);
/* True when a frame was begun and not completed. */
int pfp__frame_reader_partial(const pfp__frame_reader *r);
/* Payload bytes of the current frame received so far. */
uint64_t pfp__frame_reader_received(const pfp__frame_reader *r);
/* True when the current frame is a result payload of at least `min` bytes
** that has not yet been offered to a stream (with `returned_only`, only a
** result the function returned, whose end is near). */
int pfp__frame_reader_stream_offer(pfp__frame_reader *r, uint64_t min,
                                   int returned_only);
/* Sends the rest of the current result payload to fd (-1: nowhere, the
** output has failed): the bytes already buffered must have been written
** there first (they are dropped here).  From now on the caller moves the
** payload itself and reports each piece with
** pfp__frame_reader_stream_commit. */
void pfp__frame_reader_stream(pfp__frame_reader *r, int fd);
/* Counts n more payload bytes as streamed; completes the frame with the
** last of them. */
void pfp__frame_reader_stream_commit(pfp__frame_reader *r, size_t n);

/* ---- record.c --------------------------------------------------------- */

struct pfp_record {
  char *function_name;
  size_t index;
  pfp_status status;
  char *result_text; /* exact JSON text, or NULL */
  size_t result_len;
  /* The result went to a stream (pfp__set_result_stream) as it arrived:
  ** result_text is NULL, result_len its length.  stream_errno: the stream's
  ** output failed with it, and the copy is incomplete. */
  int result_streamed;
  int stream_errno;
  json_t *result;    /* decoded lazily from result_text */
  char *error;
  int exit_code;
  int signal;
  double duration_ms;
  char *out;         /* NULL when empty */
  size_t out_len;
  char *err;         /* NULL when empty */
  size_t err_len;
};

pfp_record *pfp__record_new(void);
/* Appends the record's JSON text before its result (which follows, as
** pfp_record_result_text gives it) to head, and what comes after to tail;
** either may be NULL.  The head depends only on the name and index (and on
** whether there is a result).  Returns 0, or -1 when out of memory. */
int pfp__record_json_parts(const pfp_record *r, pfp__buf *head,
                           pfp__buf *tail);
void pfp__record_free(pfp_record *r);

/* ---- child.c: what a forked child runs -------------------------------- */

/* Runs the function at stack index `fn` with (q, context, args) and leaves
** through _exit.  memory_limit: most bytes its Lua code may allocate (0: no
** limit).  Never returns. */
PFP__NORETURN void pfp__child_run(lua_State *L, int context, int fn, int args,
                                  const char *name, int result_fd,
                                  size_t memory_limit);
/* A reused worker's jobs: function k at 2k+1 of the Lua table at stack
** index `table`, its args at 2k+2, or, where text_at[k] is not
** PFP__NO_TEXT, as JSON text at texts + text_at[k]. */
#define PFP__NO_TEXT SIZE_MAX
typedef struct pfp__batch {
  int table;
  char *const *names;
  const char *texts;
  const size_t *text_at;
} pfp__batch;

/* A reused worker: runs jobs first..count-1 of the batch one after
** another, each followed by its output and a job-end frame, then leaves
** through _exit.  Its stdout and stderr must be seekable files (exec.c
** gives it memfds). */
PFP__NORETURN void pfp__worker_run(lua_State *L, int context,
                                   const pfp__batch *batch, size_t first,
                                   size_t count, int result_fd,
                                   size_t memory_limit);

/* The registered name of the call running in this child (NULL in the
** host).  Owned by the host's bookkeeping, which the child inherited and
** never changes: a C string, so that a child writes nothing to the Lua
** registry for it (a copy-on-write page fault each). */
const char *pfp__current_name(void);

/* Installs the queue metatable and the module's shared metatables in L.
** Used by luaopen_pfp. */
void pfp__child_setup_queue(lua_State *L);

/* ---- exec.c: how calls run (fork, pipes, reaping) --------------------- */

typedef struct pfp__exec_opts {
  unsigned jobs;
  double timeout;     /* 0: none */
  double kill_grace;
  size_t output_limit;
  size_t memory_limit; /* 0: none */
  int wake_fd;        /* read end of the interrupt pipe */
  int wake_write_fd;  /* its write end: closed in children, never used */
  int feed_fd;        /* polled while `next` waits for input, or -1 */
  /* Reused workers: each forked worker runs up to this many jobs in turn
  ** (0 or 1: one child per job). */
  unsigned reuse;
  /* Set by pfp_interrupt before it writes to the interrupt pipe: read
  ** after each record without a system call.  May be NULL. */
  volatile sig_atomic_t *interrupt_flag;
} pfp__exec_opts;

/* What to run comes from the caller: `next` pushes the function and its
** args table on L (2 values) and stores the registered name (a new string
** the executor frees) and 0-based index.  It may instead push nil for the
** args and point *args_text (else left NULL) at checked JSON text, valid
** until its next call, which the child or reused worker decodes.  It
** returns 1, 0 when there are no
** more jobs, PFP_FEED_WAIT when the next job is not ready before feed_fd is
** readable, or a negative PFP_E* code to stop.  `done` receives each
** finished record (ownership passes) and returns 0, or a negative PFP_E*
** code to stop (PFP_EABORT: the caller's callback asked for it). */
typedef struct pfp__exec_hooks {
  int (*next)(void *ud, lua_State *L, char **name, size_t *index,
              const char **args_text);
  int (*done)(void *ud, pfp_record *record);
  /* How many jobs `next` still has, or SIZE_MAX when unknown (a feed);
  ** sizes reused workers' batches.  May be NULL. */
  size_t (*remaining)(void *ud);
  /* Called before the engine waits; non-zero stops the run as `done`
  ** does.  May be NULL. */
  int (*idle)(void *ud);
  /* Offered each result of at least 1 MiB as its frame begins, described
  ** by a record (borrowed for the call) with result_streamed set: returns
  ** a descriptor the payload is copied to as it arrives, or -1 to keep it
  ** as usual.  The record that follows says whether the whole result went
  ** there (result_streamed) and whether writing failed (stream_errno).
  ** May be NULL. */
  int (*stream_begin)(void *ud, const pfp_record *head);
  int stream_returned_only; /* see pfp__set_result_stream */
  void *ud;
} pfp__exec_hooks;

/* Runs jobs until `next` has none left and every child is reaped.  The
** context table is at stack index `context`.  Returns 0 or a negative
** PFP_E* code with a message in *errmsg (new string). */
int pfp__exec(lua_State *L, int context, const pfp__exec_opts *opts,
              const pfp__exec_hooks *hooks, char **errmsg);

/* pfp-run's way out for big results: each result of at least 1 MiB is
** offered to fn as it begins (see pfp__exec_hooks.stream_begin), while
** records are not kept and no fork server runs the work.  NULL: off. */
typedef int (*pfp__stream_fn)(void *ud, const pfp_record *head);
/* returned_only: offer only results the function returned, not those given
** to q:put, after which it may run on for any time while its record, and
** so everything written after it, waits. */
void pfp__set_result_stream(pfp_processor *p, pfp__stream_fn fn, void *ud,
                            int returned_only);

/* ---- server.c: the fork server (pfp_start_fork_server) ---------------- */

/* The host's handle on its fork server: the process, the socket to it, and
** the names of the functions its state defines.  Opaque outside server.c. */
typedef struct pfp__server pfp__server;

/* Forks the server from the host as it is now: the server's processor is a
** copy of p (its Lua state with whatever is loaded, its context) and then
** serves requests until the socket closes.  `names` (from
** pfp__function_names, `count` entries) becomes the cache of function names;
** ownership passes in every case.  Returns PFP_OK with *out, or PFP_ESYS /
** PFP_ENOMEM with *errmsg (a new string, NULL when out of memory). */
int pfp__server_start(pfp_processor *p, char **names, size_t count,
                      pfp__server **out, char **errmsg);

/* Closes the socket, makes sure the server has ended, reaps it and frees s.
** NULL is a no-op. */
void pfp__server_stop(pfp__server *s);

/* Requests answered before they return, run in the server's processor as
** the same calls would run in the host.  Return the server's code; for a
** failure *errmsg is the message (a new string, or NULL when out of
** memory).  A server that is gone, or that goes while answering, gives
** PFP_ESYS with a message naming it.  `context` NULL clears the context. */
int pfp__server_load_file(pfp__server *s, const char *path, char **errmsg);
int pfp__server_load_string(pfp__server *s, const char *chunkname,
                            const char *source, char **errmsg);
int pfp__server_set_context(pfp__server *s, const json_t *context,
                            char **errmsg);

/* Whether the server's state defines a function `name` (a global, or in a
** table a script returned), from the names it sent after the last load. */
int pfp__server_has_function(const pfp__server *s, const char *name);
/* As pfp__exported_functions, for the server's state. */
int pfp__server_exported_functions(const pfp__server *s, char ***names,
                                   size_t *count);

/* A run forwarded to the server.  `next` hands out the next job: 1 with
** *name (borrowed, valid until the next call), *args (a new reference the
** caller releases, or NULL for {}) and *index; 0, PFP_FEED_WAIT or a
** negative code as for pfp__exec_hooks.  `done` is as for pfp__exec_hooks.
** No Lua is involved on the host's side. */
typedef struct pfp__remote_hooks {
  int (*next)(void *ud, const char **name, json_t **args, size_t *index);
  int (*done)(void *ud, pfp_record *record);
  int (*idle)(void *ud); /* as in pfp__exec_hooks */
  void *ud;
} pfp__remote_hooks;

/* Runs jobs in the server with the options in opts (wake_fd: the host's
** interrupt pipe; feed_fd: polled while `next` waits), delivering every
** record the server sends through `done`.  Returns as pfp__exec does. */
int pfp__server_exec(pfp__server *s, const pfp__exec_opts *opts,
                     const pfp__remote_hooks *hooks, char **errmsg);

/* ---- processor.c ------------------------------------------------------ */

/* A processor that runs in a Lua state it does not own (the Lua module's
** MultiProcessor): functions and args are given as Lua values. */
pfp_processor *pfp__processor_attach(lua_State *L);
/* Registers the function at stack index fn with the args table at index
** args (both kept as registry references) under `name`. */
int pfp__register_value(pfp_processor *p, int fn, int args, const char *name);
/* Sets the context to the Lua table at stack index idx. */
int pfp__set_context_value(pfp_processor *p, int idx);

/* PFP_OK when `name` names a loaded function, else PFP_ENOFUNC with the
** processor's message set. */
int pfp__check_function(pfp_processor *p, const char *name);
/* The names of the functions in the tables the loaded scripts returned,
** sorted.  The caller frees each name and the array. */
int pfp__exported_functions(pfp_processor *p, char ***names, size_t *count);

/* Every name pfp_register accepts in p's state, sorted by name, each entry
** a kind letter followed by the name: 'x' for a function in a table a script
** returned, 'g' for a global function found in none of them.  Names with a
** NUL byte are left out (C cannot name them).  The caller frees each entry
** and the array.  Returns PFP_OK or a code with p's message set. */
int pfp__function_names(pfp_processor *p, char ***entries, size_t *count);

/* In the fork server's process: turns its copy of the host's processor into
** the server's own.  Registrations, records, the record callback and the
** feed belong to the host and are dropped; wake_r / wake_w become its
** interrupt pipe (the host keeps another write end of it). */
void pfp__processor_become_server(pfp_processor *p, int wake_r, int wake_w);

/* Formats a message into a new string; NULL when out of memory. */
char *pfp__strdupf(const char *fmt, ...) PFP__PRINTF(1, 2);
char *pfp__strdup(const char *s);

/* Creates the metatables pfp needs in L (array, Result, queue). */
void pfp__setup_state(lua_State *L);

/* The Lua module's entry point (also preloaded into processor states). */
int luaopen_pfp(lua_State *L);

#endif /* PFP_INTERNAL_H */
