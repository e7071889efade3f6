/*
** child.c — what a forked child runs: the function, under lua_pcall with a
** traceback handler, then its Result written as frames on the result pipe.
** A child never returns into the host's code and leaves only through _exit,
** so the host's atexit handlers and stdio buffers are never run twice.
*/
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pfp_internal.h"

#define QUEUE_MT "pfp.Queue"

typedef struct queue {
  int fd;
  int put_done;
} queue;

/* Leaves the child.  Everything the function printed is flushed first; the
** host's buffers were flushed before fork, so nothing appears twice. */
static PFP__NORETURN void child_exit(int code) {
  fflush(NULL);
  _exit(code);
}

/* A write to the host failed: the host is gone or has given up on us. */
static PFP__NORETURN void host_gone(void) { _exit(125); }

/* Raises msg as an error located at the Lua code that called the C
** function (luaL_error would point at the C function itself). */
static int caller_error(lua_State *L, const char *msg) {
  luaL_where(L, 1);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Splits a value given to q:put or returned by the function into its
** function_name (pushed, or nil) and result (pushed). */
static void unwrap_result(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE && luaL_getmetafield(L, idx, "__name")) {
    int is_result = lua_type(L, -1) == LUA_TSTRING &&
                    strcmp(lua_tostring(L, -1), PFP__RESULT_MT) == 0;
    lua_pop(L, 1);
    if (is_result) {
      /* Raw reads: no metamethod of the user's runs here. */
      lua_pushliteral(L, "function_name");
      lua_rawget(L, idx);
      if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushnil(L);
      }
      lua_pushliteral(L, "result");
      lua_rawget(L, idx);
      return;
    }
  }
  lua_pushnil(L);
  lua_pushvalue(L, idx);
}

/* A big result goes through a wider pipe: fewer, larger reads and
** writes, fewer switches between child and host.  Best effort. */
#define WIDE_PIPE (1 << 20)
static void widen_pipe(int fd, size_t payload) {
  if (payload > (64u << 10))
    (void)fcntl(fd, F_SETPIPE_SZ, WIDE_PIPE);
}

/* The name frame (if any) and the result frame of type `type`, whose
** payload is the text in json with each hole's string put in its place, as
** iovecs (at most RESULT_IOV: two for the name, the result's header, two
** per hole and the text after the last) over the two headers given: no
** copy of a long string.  *total gets the payload's size. */
#define RESULT_IOV (4 + 2 * PFP__HOLES_MAX)

/* Adds a frame's header (built in `header`) and, unless empty, its payload
** to iov at *k. */
static void add_frame(struct iovec *iov, int *k,
                      unsigned char header[PFP__FRAME_HEADER], int type,
                      const void *payload, size_t len) {
  pfp__frame_header(header, type, len);
  iov[(*k)++] = (struct iovec){header, PFP__FRAME_HEADER};
  if (len > 0)
    iov[(*k)++] = (struct iovec){(void *)payload, len};
}

static int result_iov(struct iovec *iov,
                      unsigned char headers[2][PFP__FRAME_HEADER], int type,
                      const char *name, size_t name_len, const pfp__buf *json,
                      const pfp__json_holes *holes, uint64_t *total,
                      int *pieces_at) {
  int k = 0;
  if (name != NULL)
    add_frame(iov, &k, headers[0], PFP__FRAME_NAME, name, name_len);
  *total = json->len;
  for (size_t h = 0; h < holes->n; h++)
    *total += holes->list[h].len;
  pfp__frame_header(headers[1], type, *total); /* its pieces follow */
  iov[k++] = (struct iovec){headers[1], PFP__FRAME_HEADER};
  if (pieces_at != NULL)
    *pieces_at = k;
  size_t from = 0;
  for (size_t h = 0; h < holes->n; h++) {
    const pfp__json_hole *hole = &holes->list[h];
    iov[k++] = (struct iovec){json->data + from, hole->at - from};
    iov[k++] = (struct iovec){(void *)hole->s, hole->len};
    from = hole->at;
  }
  iov[k++] = (struct iovec){json->data + from, json->len - from};
  return k;
}

/* A reused worker's result when its function returned it: kept, encoded,
** until the job's end, whose frames then go with it in one write.  The
** function has finished; only the worker's own bookkeeping runs in
** between.  A result given to q:put is written at once instead, so that it
** is delivered even if the function then dies. */
static struct {
  int set;
  char *name; /* a copy: the Lua string may be collected meanwhile */
  size_t name_len;
  pfp__buf json;
  pfp__json_holes holes; /* their strings stay anchored until released */
} held;

static void release_held(lua_State *L) {
  if (!held.set)
    return;
  pfp__json_holes_release(L, &held.holes);
  pfp__buf_free(&held.json);
  free(held.name);
  held.set = 0;
  held.name = NULL;
}

/* This process is a reused worker (pfp__worker_run), not a child that runs
** one job (pfp__child_run).  Set by both, never left as inherited: a nested
** run's child may have been forked by a worker, or the reverse.
**
** A worker holds a result its function returned until the job's end (see
** `held`).  A one-job child instead lends the pages of a long piece of its
** result to the pipe (pfp__lend_all) rather than copying them into it: the
** piece is a string the result holds, or encoded text, and both are then
** kept, unchanged, until the child exits.  A worker goes on to other jobs,
** whose allocations could reuse that memory before the host has read it,
** so it copies. */
static int in_worker;
#define LEND_MIN (256u << 10)
/* The encoded text of results lent so far, kept reachable: a leak checker
** would otherwise call it lost when the child exits.  Volatile, or the
** compiler drops stores nothing reads.  A one-job child delivers one
** result; the other places are for a function's own mistakes. */
static char *volatile lent_text[4];
static volatile size_t nlent_text;

/* Writes the n iovecs; those from pieces_at on are the result's payload,
** which in a one-job child is lent where a piece is LEND_MIN bytes or more
** (*lent then says so: the caller must keep what it points into).  0 or
** -1 (errno). */
static int write_result(int fd, struct iovec *iov, int n, int pieces_at,
                        int *lent) {
  int from = 0;
  *lent = 0;
  for (int i = pieces_at; !in_worker && i < n; i++) {
    if (iov[i].iov_len < LEND_MIN)
      continue;
    if (i > from && pfp__writev_all(fd, iov + from, i - from) != 0)
      return -1;
    if (pfp__lend_all(fd, iov[i].iov_base, iov[i].iov_len) != 0)
      return -1;
    *lent = 1;
    from = i + 1;
  }
  return from < n ? pfp__writev_all(fd, iov + from, n - from) : 0;
}

static void *arena_take(size_t size);
#define RESULT_TEXT_FIRST ((size_t)4 << 10)

/* Encodes the result at the top of the stack (its function_name below it)
** and writes the frames, or in a reused worker, when the function returned
** it, keeps them for the job's end.  `returned`: the function returned it
** (it has ended), else it gave it to q:put.  Returns NULL, or an error
** message (new string) when it cannot be serialized; raises nothing
** itself. */
static char *deliver(lua_State *L, int fd, int returned) {
  int hold = returned && in_worker;
  size_t name_len = 0;
  const char *name = lua_type(L, -2) == LUA_TSTRING
                         ? lua_tolstring(L, -2, &name_len)
                         : NULL;
  pfp__buf json = {0};
  /* A one-job child's result text starts in its arena (see child_alloc):
  ** from malloc, a small result cost three copy-on-write faults, for a
  ** chunk and for malloc's own bookkeeping on pages the host shares.
  ** Longer text moves to the heap as it grows. */
  char *first = in_worker ? NULL : arena_take(RESULT_TEXT_FIRST);
  if (first != NULL)
    pfp__buf_init_borrowed(&json, first, RESULT_TEXT_FIRST);
  pfp__json_holes holes;
  char *errmsg = NULL;
  int rc = pfp__lua_to_json_holes(L, -1, "result", &json, &holes, &errmsg);
  if (rc != 0) {
    pfp__json_holes_release(L, &holes);
    pfp__buf_free(&json);
    return errmsg ? errmsg : pfp__strdup("result: not enough memory");
  }
  char *name_copy = hold && name ? malloc(name_len + 1) : NULL;
  if (hold && (name == NULL || name_copy != NULL)) {
    if (name_copy != NULL)
      memcpy(name_copy, name, name_len + 1);
    held.set = 1;
    held.name = name_copy;
    held.name_len = name_len;
    held.json = json;
    held.holes = holes;
    return NULL;
  }
  struct iovec iov[RESULT_IOV];
  unsigned char headers[2][PFP__FRAME_HEADER];
  uint64_t total;
  int pieces_at;
  int k = result_iov(iov, headers,
                     returned ? PFP__FRAME_RETURNED : PFP__FRAME_RESULT, name,
                     name_len, &json, &holes, &total, &pieces_at);
  widen_pipe(fd, (size_t)total);
  int lent;
  if (write_result(fd, iov, k, pieces_at, &lent) != 0)
    host_gone();
  if (!lent) {
    pfp__json_holes_release(L, &holes);
    pfp__buf_free(&json);
  } else if (nlent_text < sizeof lent_text / sizeof lent_text[0]) {
    lent_text[nlent_text] = json.data;
    nlent_text = nlent_text + 1;
  }
  return NULL;
}

/* q:put(r) — delivers r (a pfp.Result, or any value as the result itself). */
static int queue_put(lua_State *L) {
  queue *q = luaL_checkudata(L, 1, QUEUE_MT);
  luaL_checkany(L, 2);
  if (q->put_done)
    return caller_error(L, "q:put: a result was already put (put may be "
                           "called once per function)");
  unwrap_result(L, 2);
  char *errmsg = deliver(L, q->fd, 0);
  if (errmsg != NULL) {
    lua_pushstring(L, errmsg);
    free(errmsg);
    return caller_error(L, lua_tostring(L, -1));
  }
  q->put_done = 1;
  return 0;
}

void pfp__child_setup_queue(lua_State *L) {
  if (luaL_newmetatable(L, QUEUE_MT)) {
    lua_newtable(L);
    lua_pushcfunction(L, queue_put);
    lua_setfield(L, -2, "put");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* os.exit in a child: flush and leave without running the host's atexit
** handlers.  Status as in Lua: true/none is 0, false is 1. */
static int child_os_exit(lua_State *L) {
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  child_exit(code);
}

/* The memory limit: the child's Lua allocations are counted from the
** moment the function starts, and an allocation that would take them past
** the limit fails, which Lua raises as a memory error.  Memory inherited
** from the host is not counted; freeing it gives room back. */
typedef struct limiter {
  lua_Alloc alloc;
  void *ud;
  long long used;
  long long limit;
  int hit;
} limiter;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  limiter *m = ud;
  long long old = ptr ? (long long)osize : 0;
  long long delta = (long long)nsize - old;
  if (nsize > 0 && delta > 0 && m->used + delta > m->limit) {
    m->hit = 1;
    return NULL;
  }
  void *block = m->alloc(m->ud, ptr, osize, nsize);
  if (block != NULL || nsize == 0)
    m->used += delta;
  return block;
}

/* Message handler: the error message with a traceback (as lua.c does). */
static int traceback_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* The job a child is running.  Static storage: a child runs one job at a
** time (a reused worker, several in turn), and the allocator's state must
** outlive any stack frame. */
static struct {
  const char *name;
  int result_fd;
  size_t memory_limit;
  limiter mem;
} job;

/* Lua's last resort when an error escapes every protected call: leave as
** a crash instead of returning into the host's code. */
static int child_panic(lua_State *L) {
  (void)L;
  fflush(NULL);
  _exit(125);
}

static void send_error(const char *msg, size_t len) {
  if (pfp__frame_write(job.result_fd, PFP__FRAME_ERROR, msg, len) != 0)
    host_gone();
}

static void lift_memory_limit(lua_State *L) {
  void *ud = NULL;
  if (job.mem.alloc != NULL && lua_getallocf(L, &ud) == limited_alloc &&
      ud == &job.mem) {
    lua_setallocf(L, job.mem.alloc, job.mem.ud);
    job.mem.alloc = NULL;
  }
}

/* Replaces args given as JSON text (a reused worker's batch: a light
** userdata pointing at checked text the host kept beside it) with the
** table it stands for.  Args are always a table otherwise. */
static void decode_args(lua_State *L, int args) {
  if (lua_type(L, args) != LUA_TLIGHTUSERDATA)
    return;
  const char *text = lua_touserdata(L, args);
  size_t len = strlen(text);
  if (pfp__push_json_text(L, text, len) == 0) {
    lua_replace(L, args);
    return;
  }
  char *msg = NULL;
  json_t *v = pfp__parse_object(text, len, "args", &msg);
  if (v == NULL) {
    lua_pushstring(L, msg ? msg : "out of memory");
    free(msg);
    lua_error(L);
  }
  /* A memory error in here leaves v unfreed: the child is about to
  ** report it and end, or (a reused worker) loses those bytes only. */
  int rc = pfp__push_json(L, v);
  json_decref(v);
  if (rc != 0)
    luaL_error(L, "args nested deeper than %d levels", PFP_MAX_DEPTH);
  lua_replace(L, args);
}

/* The child's whole body, under lua_pcall, so that no Lua error (a strict
** _ENV, a metamethod, memory) can unwind into the host's code.  Arguments:
** context, function, args. */
static int child_body(lua_State *L) {
  decode_args(L, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushliteral(L, "os");
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_pushliteral(L, "exit");
    lua_pushcfunction(L, child_os_exit);
    lua_rawset(L, -3);
  }
  lua_pop(L, 2);

  /* The queue stays on the stack below the call: the call's own copy is
  ** consumed by lua_pcall, and q->put_done is read after it returns. */
  queue *q = lua_newuserdatauv(L, sizeof *q, 0);
  q->fd = job.result_fd;
  q->put_done = 0;
  pfp__child_setup_queue(L);
  luaL_setmetatable(L, QUEUE_MT);
  int queue_index = lua_gettop(L);
  lua_pushcfunction(L, traceback_handler);
  int handler = lua_gettop(L);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, queue_index);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 3);
  if (job.memory_limit > 0) {
    job.mem.alloc = lua_getallocf(L, &job.mem.ud);
    job.mem.limit = job.memory_limit > (size_t)LLONG_MAX
                        ? LLONG_MAX
                        : (long long)job.memory_limit;
    lua_setallocf(L, limited_alloc, &job.mem);
  }
  int status = lua_pcall(L, 3, 1, handler);
  /* The limit is for the function; delivering its result needs room. */
  lift_memory_limit(L);
  if (status != LUA_OK) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    char text[160];
    if (status == LUA_ERRMEM) {
      /* Lua raises memory errors without calling the message handler. */
      if (job.mem.hit)
        snprintf(text, sizeof text,
                 "out of memory: the function's Lua allocations went past "
                 "its memory limit of %zu bytes",
                 job.memory_limit);
      else
        snprintf(text, sizeof text, "out of memory (not enough memory)");
      msg = text;
      len = strlen(msg);
    }
    if (msg == NULL)
      msg = "(error object is not a string)", len = strlen(msg);
    send_error(msg, len);
    return 0;
  }
  if (!q->put_done) {
    /* No put: the function's return value is its result. */
    unwrap_result(L, -1);
    char *errmsg = deliver(L, job.result_fd, 1);
    if (errmsg != NULL) {
      lua_pushfstring(L, "%s (the function's return value)", errmsg);
      free(errmsg);
      size_t len;
      const char *msg = lua_tolstring(L, -1, &len);
      send_error(msg, len);
    }
  }
  return 0;
}

/* Runs one job: the function at fn with the context and args, its result
** or error sent as frames.  Returns with the stack as it found it. */
static void run_job(lua_State *L, int context, int fn, int args,
                    const char *name) {
  int top = lua_gettop(L);
  job.name = name;
  memset(&job.mem, 0, sizeof job.mem);
  lua_pushcfunction(L, child_body);
  lua_pushvalue(L, context);
  lua_pushvalue(L, fn);
  lua_pushvalue(L, args);
  int status = lua_pcall(L, 3, 0, 0);
  if (status != LUA_OK) {
    /* Outside the function itself: setting up, or turning its return
    ** value into JSON. */
    lift_memory_limit(L);
    size_t len = 0;
    const char *msg = status == LUA_ERRMEM ? NULL : lua_tolstring(L, -1, &len);
    char text[256];
    snprintf(text, sizeof text, "pfp: the child failed outside the function: "
                                "%s",
             msg ? msg : "out of memory");
    send_error(text, strlen(text));
  }
  lua_settop(L, top);
}

/* The child's Lua allocator wraps the host's, for two costs of a fresh
** process.
**
** Small blocks come from an arena: a static array the host never touches,
** so it holds no pages until a child writes to it, and the child's first
** allocations fill whole fresh pages one after another.  From the host's
** heap they would land in free chunks scattered over pages the child
** shares with the host, and each page written (a chunk, malloc's own
** bookkeeping) costs a copy-on-write fault: about eight per trivial call,
** a fifth of all a child takes.  Freed arena blocks are not reused (a
** child is short-lived; the arena then only runs out sooner, and the
** host's allocator takes over).  Nested runs share it: a child's child
** goes on from where its parent left off.  Not under AddressSanitizer,
** which must see every block.
**
** A new string of POPULATE_MIN bytes or more is populated in one call
** (pfp__populate) rather than faulted in a page at a time as Lua writes it:
** 25,000 page faults for 100 MB.  Only strings: Lua writes a string whole
** as it makes it, where a buffer (a read of up to n bytes, a growing
** luaL_Buffer) may stay mostly unwritten, and populating it would make
** memory resident that was never used. */
#define ARENA_SIZE ((size_t)1 << 20)
#define ARENA_BLOCK_MAX ((size_t)8 << 10)
#define POPULATE_MIN ((size_t)1 << 20)
#if defined(__SANITIZE_ADDRESS__)
#define USE_ARENA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define USE_ARENA 0
#endif
#endif
#ifndef USE_ARENA
#define USE_ARENA 1
#endif

/* The allocator's state goes in front of the arena, on the page of its
** first blocks: a child writes both, and one page is one fault. */
static struct {
  lua_Alloc alloc; /* the host's allocator, and its userdata */
  void *ud;
  size_t arena_used;
  _Alignas(16) unsigned char arena[USE_ARENA ? ARENA_SIZE : 16];
} child_mem;

static int in_arena(const void *p) {
  return (const unsigned char *)p >= child_mem.arena &&
         (const unsigned char *)p < child_mem.arena + sizeof child_mem.arena;
}

static void *arena_take(size_t size) {
  size_t rounded = (size + 15) & ~(size_t)15;
  if (!USE_ARENA || size == 0 || rounded > ARENA_SIZE - child_mem.arena_used)
    return NULL;
  void *block = child_mem.arena + child_mem.arena_used;
  child_mem.arena_used += rounded;
  return block;
}

static void *child_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr != NULL && in_arena(ptr)) {
    if (nsize <= osize)
      return nsize == 0 ? NULL : ptr; /* freed, or shrunk in place */
    void *block = child_alloc(NULL, NULL, 0, nsize);
    if (block != NULL)
      memcpy(block, ptr, osize);
    return block;
  }
  if (ptr == NULL && nsize <= ARENA_BLOCK_MAX) {
    void *block = arena_take(nsize);
    if (block != NULL)
      return block;
  }
  void *block = child_mem.alloc(child_mem.ud, ptr, osize, nsize);
  /* A new string: Lua fills it at once (other blocks, such as a buffer
  ** for a read of up to n bytes, may stay mostly untouched). */
  if (block != NULL && ptr == NULL && osize == LUA_TSTRING &&
      nsize >= POPULATE_MIN)
    pfp__populate(block, nsize);
  return block;
}

static void start_child(lua_State *L, int result_fd, size_t memory_limit) {
  /* Lines written with io.write reach the host even if the function is
  ** killed later (print flushes; io.write alone would not).  When the host
  ** has made stdout line-buffered itself (pfp-run does), nothing is done:
  ** setvbuf writes to stdio's state, shared with the host until written,
  ** which costs a child two copy-on-write page faults. */
  if (!__flbf(stdout))
    setvbuf(stdout, NULL, _IOLBF, 0);
  lua_atpanic(L, child_panic);
  /* Written before lift_memory_limit reads the page they share: a read
  ** first would cost a fault for the read and another for the write. */
  job.result_fd = result_fd;
  job.memory_limit = memory_limit;
  /* Forked by a nested run inside a function that has a memory limit,
  ** this child inherits that function's limiter as its allocator: the
  ** limit was the parent's, and run_job is about to reset its state. */
  lift_memory_limit(L);
  if (child_mem.alloc == NULL) { /* else a nested run: already in place */
    child_mem.alloc = lua_getallocf(L, &child_mem.ud);
    lua_setallocf(L, child_alloc, NULL);
  }
  if (!lua_checkstack(L, 8))
    child_panic(L);
}

void pfp__child_run(lua_State *L, int context, int fn, int args,
                    const char *name, int result_fd, size_t memory_limit) {
  start_child(L, result_fd, memory_limit);
  in_worker = 0;
  run_job(L, context, fn, args, name);
  child_exit(0);
}

/* What a job wrote to descriptor fd, a file the worker's output goes to
** (see exec.c): read back from its start, then rewound for the next job.
** Returns a new buffer (NULL when nothing was written or it cannot be
** read: the output is then lost, never misattributed). */
static char *take_output(int fd, size_t *len) {
  *len = 0;
  off_t end = pfp__written_size(fd);
  if (end <= 0)
    return NULL;
  char *data = malloc((size_t)end);
  ssize_t got = data ? pread(fd, data, (size_t)end, 0) : -1;
  (void)lseek(fd, 0, SEEK_SET);
  if (got <= 0) {
    free(data);
    return NULL;
  }
  *len = (size_t)got;
  return data;
}

/* A reused worker's frames at the end of a job, in one write: the result
** it holds (if any), what the job wrote to stdout and stderr (if
** anything), and the job's end. */
static int write_job_end(int fd, const char *out, size_t out_len,
                         const char *err, size_t err_len) {
  struct iovec iov[RESULT_IOV + 5];
  unsigned char result_headers[2][PFP__FRAME_HEADER];
  unsigned char headers[3][PFP__FRAME_HEADER];
  int k = 0;
  if (held.set) {
    uint64_t total;
    k = result_iov(iov, result_headers, PFP__FRAME_RETURNED, held.name,
                   held.name_len, &held.json, &held.holes, &total, NULL);
    widen_pipe(fd, (size_t)total);
  }
  if (out != NULL)
    add_frame(iov, &k, headers[0], PFP__FRAME_STDOUT, out, out_len);
  if (err != NULL)
    add_frame(iov, &k, headers[1], PFP__FRAME_STDERR, err, err_len);
  add_frame(iov, &k, headers[2], PFP__FRAME_JOB_END, NULL, 0);
  return pfp__writev_all(fd, iov, k);
}

void pfp__worker_run(lua_State *L, int context, const pfp__batch *batch,
                     size_t first, size_t count, int result_fd,
                     size_t memory_limit) {
  start_child(L, result_fd, memory_limit);
  in_worker = 1;
  for (size_t k = first; k < count; k++) {
    lua_rawgeti(L, batch->table, (lua_Integer)(2 * k + 1));
    /* Text is decoded inside child_body's protected call (decode_args):
    ** pushing it as a string here could raise a memory error unguarded. */
    if (batch->text_at[k] != PFP__NO_TEXT)
      lua_pushlightuserdata(L, (void *)(batch->texts + batch->text_at[k]));
    else
      lua_rawgeti(L, batch->table, (lua_Integer)(2 * k + 2));
    int top = lua_gettop(L);
    run_job(L, context, top - 1, top, batch->names[k]);
    lua_pop(L, 2);
    fflush(stdout);
    fflush(stderr);
    size_t out_len, err_len;
    char *out = take_output(STDOUT_FILENO, &out_len);
    char *err = take_output(STDERR_FILENO, &err_len);
    if (write_job_end(result_fd, out, out_len, err, err_len) != 0)
      host_gone();
    release_held(L);
    free(out);
    free(err);
  }
  child_exit(0);
}

const char *pfp__current_name(void) { return job.name; }
