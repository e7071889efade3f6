/*
** pfp.h — the C embedding API of pfp, the parallel function processor.
**
** pfp runs many Lua 5.4 functions at once, each in its own forked process,
** and hands their results back as records.  The host loads scripts once;
** every registered call is then run by a child forked from the loaded state
** (no exec), which writes its Result as JSON on a pipe.  The host decodes it
** into a record whose status says what happened: ok, error, timeout or
** crashed.  One bad function never hangs the run or costs a sibling its
** record.
**
** Typical use:
**
**     pfp_processor *p = pfp_processor_create();
**     if (pfp_load_file(p, "counters.lua") != PFP_OK ||
**         pfp_set_context_json(p, "{\"counter1\": [0, 9, 8]}") != PFP_OK ||
**         pfp_register(p, "counter1", "{\"Operation\": \"ADD\"}") != PFP_OK ||
**         pfp_execute(p) < 0)
**         fprintf(stderr, "%s\n", pfp_errmsg(p));
**     for (size_t i = 0; i < pfp_record_count(p); i++) { ... }
**     pfp_processor_destroy(p);
**
** Conventions
**   - Functions that can fail return an int: PFP_OK (0) on success, a
**     negative PFP_E* code on failure.  The message for the most recent
**     failure is read with pfp_errmsg() and is owned by the processor.
**   - Every returned pointer says who owns it and how long it stays valid.
**   - The library never calls exit(), never installs signal handlers, never
**     prints, and reaps only the children it forked itself.
**   - A processor is not thread-safe: use one from one thread at a time.
*/
#ifndef PFP_H
#define PFP_H

#include <stddef.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(PFP_BUILDING)
#define PFP_API __attribute__((visibility("default")))
#else
#define PFP_API
#endif

#define PFP_VERSION_MAJOR 0
#define PFP_VERSION_MINOR 1
#define PFP_VERSION_PATCH 0
#define PFP_VERSION "0.1.0"

/* Deepest nesting of tables (or JSON arrays and objects) that pfp converts,
** in either direction.  Deeper values are refused with a clear error. */
#define PFP_MAX_DEPTH 1000

/*
** Return codes.  X(name, value, description): PFP_OK is 0, failures are
** negative.  pfp_strerror() gives the description.
*/
#define PFP_ERROR_MAP(X)                                                     \
  X(OK, 0, "success")                                                        \
  X(EINVAL, -1, "invalid argument")                                          \
  X(ENOMEM, -2, "out of memory")                                             \
  X(ESCRIPT, -3, "script error")                                             \
  X(EJSON, -4, "invalid JSON")                                               \
  X(ENOFUNC, -5, "unknown function")                                         \
  X(ESYS, -6, "system call failed")                                          \
  X(EINTR, -7, "interrupted")                                                \
  X(EABORT, -8, "stopped by the record callback")                            \
  X(EFEED, -9, "job feed failed")                                            \
  X(EBUSY, -10, "processor is executing")

typedef enum pfp_code {
#define PFP__CODE_ENUM(name, value, text) PFP_##name = value,
  PFP_ERROR_MAP(PFP__CODE_ENUM)
#undef PFP__CODE_ENUM
} pfp_code;

/*
** Record statuses: how one registered call ended.
**   ok       the function delivered a result and its process exited cleanly;
**   error    the function raised a Lua error, or its result could not be
**            turned into JSON (the error text says which value and why);
**   timeout  it was still running at its deadline and was killed;
**   crashed  its process died from a signal, or exited without delivering
**            a result (os.exit, a torn result frame).
*/
#define PFP_STATUS_MAP(X)                                                    \
  X(OK, 0, "ok")                                                             \
  X(ERROR, 1, "error")                                                       \
  X(TIMEOUT, 2, "timeout")                                                   \
  X(CRASHED, 3, "crashed")

typedef enum pfp_status {
#define PFP__STATUS_ENUM(name, value, text) PFP_STATUS_##name = value,
  PFP_STATUS_MAP(PFP__STATUS_ENUM)
#undef PFP__STATUS_ENUM
} pfp_status;

/* Opaque handles. */
typedef struct pfp_processor pfp_processor;
typedef struct pfp_record pfp_record;

/* The description of a return code, e.g. "unknown function".  Static
** storage; never NULL (unknown codes give "unknown error"). */
PFP_API const char *pfp_strerror(int code);

/* The name of a status: "ok", "error", "timeout" or "crashed".  Static
** storage; NULL for a value that is not a status. */
PFP_API const char *pfp_status_name(pfp_status status);

/* The library's version string, e.g. "0.1.0".  Static storage. */
PFP_API const char *pfp_version(void);

/* ---------------------------------------------------------------------
** The processor
** ------------------------------------------------------------------- */

/* Creates a processor with its own Lua 5.4 state (standard libraries open,
** and `require "pfp"` available to scripts).  Returns NULL only when memory
** or the Lua state cannot be had.  Destroy it with pfp_processor_destroy. */
PFP_API pfp_processor *pfp_processor_create(void);

/* Frees the processor, its Lua state and all its records.  Every pointer
** obtained from it becomes invalid.  NULL is a no-op.  Must not be called
** while pfp_execute() runs (e.g. from the record callback). */
PFP_API void pfp_processor_destroy(pfp_processor *p);

/* The message of the most recent failure on p ("" if none).  Owned by p;
** valid until the next call on p that can fail, or until p is destroyed.
** With p == NULL it explains why pfp_processor_create() failed. */
PFP_API const char *pfp_errmsg(const pfp_processor *p);

/* The code of the most recent failure on p (PFP_OK if none). */
PFP_API int pfp_errcode(const pfp_processor *p);

/* Loads and runs a Lua script from a file, once, in the host.  The script
** defines functions as globals, or returns a table of them (or both).
** Errors: PFP_ESCRIPT for an unreadable file, a syntax error or an error
** raised while the script runs; the message names the file and line. */
PFP_API int pfp_load_file(pfp_processor *p, const char *path);

/* As pfp_load_file, with the script's text given directly.  `chunkname`
** is used in messages and tracebacks (e.g. "=inline" or "@name.lua"); NULL
** gives "=string".  `source` is copied; it need not stay valid. */
PFP_API int pfp_load_string(pfp_processor *p, const char *chunkname,
                            const char *source);

/* Sets the context table every function receives, from JSON text that must
** be an object.  Replaces any earlier context.  Errors: PFP_EJSON, with the
** line and column in the message ("context" names the source there unless
** a name is given with pfp_set_context_json_named). */
PFP_API int pfp_set_context_json(pfp_processor *p, const char *json_text);

/* As pfp_set_context_json; `source_name` (e.g. a file name) is used in
** error messages.  NULL means "context". */
PFP_API int pfp_set_context_json_named(pfp_processor *p, const char *json_text,
                                       const char *source_name);

/* Sets the context from a JSON object.  `context` is borrowed: pfp takes
** its own reference; the caller keeps theirs.  NULL clears the context to
** an empty table. */
PFP_API int pfp_set_context(pfp_processor *p, json_t *context);

/* Registers one call of the function `name` (looked up in the tables the
** loaded scripts returned, newest first, then among globals) with `args_json`
** as its args (a JSON object; NULL means {}).  A name may be registered any
** number of times.  Errors: PFP_ENOFUNC when no loaded script defines it,
** PFP_EJSON for bad args (message with line and column). */
PFP_API int pfp_register(pfp_processor *p, const char *name,
                         const char *args_json);

/* As pfp_register with args as a JSON object.  `args` is borrowed (NULL
** means {}). */
PFP_API int pfp_register_json(pfp_processor *p, const char *name,
                              json_t *args);

/* Number of registrations made so far. */
PFP_API size_t pfp_registration_count(const pfp_processor *p);

/* Removes all registrations and records (options, scripts and context
** stay).  Use it to run a different job list with the same loaded state. */
PFP_API void pfp_clear(pfp_processor *p);

/* ---------------------------------------------------------------------
** Options (each may be set any time before pfp_execute)
** ------------------------------------------------------------------- */

/* At most `jobs` children run at once (>= 1).  Default: the number of
** online CPUs. */
PFP_API int pfp_set_jobs(pfp_processor *p, unsigned jobs);

/* Seconds each function may run before its process group is sent SIGTERM
** (then SIGKILL after the kill grace).  0 (the default) means no limit.
** Negative, NaN or infinite values are PFP_EINVAL. */
PFP_API int pfp_set_timeout(pfp_processor *p, double seconds);

/* Seconds between SIGTERM and SIGKILL for a timed-out or interrupted
** function.  Default 1. */
PFP_API int pfp_set_kill_grace(pfp_processor *p, double seconds);

/* Most bytes of stdout, and of stderr, kept per function (default 1 MiB).
** Output beyond it is read and dropped, and a marker saying how much was
** dropped ends the captured text. */
PFP_API int pfp_set_output_limit(pfp_processor *p, size_t bytes);

/* Most bytes each function's Lua code may allocate (0, the default: no
** limit).  A function that needs more gets an error record saying "out of
** memory" instead of growing until the kernel's OOM killer picks a
** process.  Memory the function inherits from the host is not counted. */
PFP_API int pfp_set_memory_limit(pfp_processor *p, size_t bytes);

/* Worker reuse, for many small functions: each forked worker runs up to
** max_calls_per_worker calls one after another, then is replaced (0 or 1,
** the default: one fresh child per call).  Records and statuses are the
** same; a crash or timeout costs only the call that was running (the rest
** of its worker's calls run in a new worker).  What it gives up: calls
** that share a worker share its Lua state (globals, module caches, the
** random seed) and its process, so one call can see what an earlier one
** left behind; stdout and stderr are files rather than pipes, and writes
** past the output limit fail instead of being discarded. */
PFP_API int pfp_set_reuse(pfp_processor *p, unsigned max_calls_per_worker);

/* Called once per record, in completion order, from inside pfp_execute().
** `record` is owned by p: valid until the callback returns when records are
** not kept (see pfp_set_keep_records), else until pfp_clear/destroy.
** Returning non-zero stops the run: running children are killed and
** pfp_execute returns PFP_EABORT.  NULL removes the callback. */
typedef int (*pfp_record_fn)(void *userdata, const pfp_record *record);
PFP_API int pfp_set_on_record(pfp_processor *p, pfp_record_fn fn,
                              void *userdata);

/* Called from inside pfp_execute() each time the run is about to wait for
** children or input: the moment to flush output the record callback
** buffered (a callback that flushes every record pays a write per record).
** Returning non-zero stops the run as the record callback's does.  NULL
** removes it. */
typedef int (*pfp_idle_fn)(void *userdata);
PFP_API int pfp_set_on_idle(pfp_processor *p, pfp_idle_fn fn, void *userdata);

/* Whether records are kept for pfp_record_at() after the run (default 1).
** With 0, each record lives only during its on_record callback, so a run
** of millions of calls needs memory for the running ones only. */
PFP_API int pfp_set_keep_records(pfp_processor *p, int keep);

/* A job feed supplies registrations lazily, after those made with
** pfp_register, so a long job list need not be held in memory.  It is
** called whenever a slot is free.  Return 1 after filling *name (copied by
** pfp before the next call) and *args (a new reference that pfp steals; NULL
** means {}); 0 when there are no more jobs; PFP_FEED_WAIT when no job is
** ready yet (pfp calls again once the descriptor given to pfp_set_feed_fd
** is readable, and meanwhile keeps reading and reaping its children); -1 to
** fail the run, after which pfp_execute returns PFP_EFEED with the message
** set by pfp_feed_error.  NULL removes the feed. */
#define PFP_FEED_WAIT 2
typedef int (*pfp_feed_fn)(void *userdata, const char **name, json_t **args);
PFP_API int pfp_set_feed(pfp_processor *p, pfp_feed_fn fn, void *userdata);

/* The same with each job's args as JSON text (NULL means {}), as
** pfp_register takes them: *name and *args_json need only last until the
** feed's next call.  pfp checks the text before the job runs (a bad one
** fails the run with PFP_EFEED) and the child decodes it, so the host never
** builds the args: the cheaper feed when jobs arrive as text.  Setting
** either kind of feed replaces the other. */
typedef int (*pfp_feed_text_fn)(void *userdata, const char **name,
                                const char **args_json);
PFP_API int pfp_set_feed_text(pfp_processor *p, pfp_feed_text_fn fn,
                              void *userdata);

/* The descriptor the feed reads its jobs from, polled while the feed
** waits (PFP_FEED_WAIT).  -1 (the default): the feed never waits.  pfp only
** polls it; the caller keeps it open and closes it. */
PFP_API int pfp_set_feed_fd(pfp_processor *p, int fd);

/* From inside a feed: sets the message pfp_execute reports with PFP_EFEED. */
PFP_API void pfp_feed_error(pfp_processor *p, const char *message);

/* ---------------------------------------------------------------------
** Running
** ------------------------------------------------------------------- */

/* Runs every registration (and every job from the feed), at most `jobs` at
** a time, and returns when all have ended.  Returns the number of records
** whose status is not ok (0 when all are ok), or a negative PFP_E* code:
** PFP_EINTR after pfp_interrupt, PFP_EABORT after the record callback asked
** to stop, PFP_EFEED, PFP_ENOFUNC (a feed named an unknown function),
** PFP_ESYS, PFP_ENOMEM.  Records finished before a failure are kept.
** May be called again: it runs the registrations afresh.  SIGCHLD must not
** be ignored in the calling process (PFP_EINVAL if it is): the exit status
** of each child is part of its record. */
PFP_API int pfp_execute(pfp_processor *p);

/* Asks a running pfp_execute to stop: every running child's process group
** gets SIGTERM (then SIGKILL after the kill grace), no new child starts,
** and pfp_execute returns PFP_EINTR.  Async-signal-safe: meant to be called
** from the host's own SIGINT/SIGTERM handler.  A call made while nothing
** runs makes the next pfp_execute stop at once. */
PFP_API void pfp_interrupt(pfp_processor *p);

/* ---------------------------------------------------------------------
** The fork server
** ------------------------------------------------------------------- */

/* Forks a small helper process, the fork server, that runs p's work from
** then on, so that the children are forked from the server instead of from
** the calling process.  fork() costs time in proportion to the memory of
** the process that forks (its page tables are copied): a host that holds
** or will hold a lot of memory should call this right after
** pfp_processor_create(), while it is still small.
**
** The server starts as a copy of p (whatever is loaded, the context) and
** of the calling process as it is at that moment.  From then on
** pfp_load_file, pfp_load_string and pfp_set_context* are carried out in
** the server (their errors are still reported by the call, with the same
** messages); registrations and options stay in p and are sent with each
** pfp_execute, which streams the jobs to the server and delivers the
** records it sends back.  Records, statuses, errors, the record callback,
** the feed, pfp_interrupt and return values behave exactly as without a
** server.  What differs:
**   - args, the context and results cross a socket as JSON text (exactly,
**     as they cross the result pipe), which costs a little per call;
**   - functions are registered by name with JSON args only
**     (pfp_register, pfp_register_json, the feed);
**   - the functions run in the server: environment variables, resource
**     limits and other process state the host changes afterwards do not
**     reach them (the working directory does: it is sent with each load
**     and run); the server holds none of the host's descriptors;
**   - the server dies with the thread that called this function (its
**     parent-death signal), like the children do with the thread that
**     forks them;
**   - SIGCHLD's disposition in the host no longer matters.
** If the server dies (killed), the call that notices returns PFP_ESYS with
** a message naming it, and every later load, context or pfp_execute on p
** fails the same way.  pfp_processor_destroy ends the server and reaps it.
** In a copy of the host made by fork() those calls fail with PFP_ESYS, and
** destroying p there leaves the host's server alone.
** Errors: PFP_EBUSY when p already has a server or is executing; PFP_ESYS
** when the socket, pipe or fork cannot be had; PFP_EINVAL for a processor
** that runs in a Lua state it does not own (the Lua module's). */
PFP_API int pfp_start_fork_server(pfp_processor *p);

/* ---------------------------------------------------------------------
** Records
** ------------------------------------------------------------------- */

/* Number of records kept from the last run. */
PFP_API size_t pfp_record_count(const pfp_processor *p);

/* Kept record i (0-based, in registration order), or NULL when out of
** range.  Owned by p; valid until pfp_clear, the next pfp_execute or
** pfp_processor_destroy. */
PFP_API const pfp_record *pfp_record_at(const pfp_processor *p, size_t i);

/* The function's name: the function_name of the Result it delivered, else
** the registered name.  Owned by the record. */
PFP_API const char *pfp_record_function_name(const pfp_record *r);

/* The registration's 0-based index (its place in registration order). */
PFP_API size_t pfp_record_index(const pfp_record *r);

/* How the call ended. */
PFP_API pfp_status pfp_record_status(const pfp_record *r);

/* The result, decoded on first use (JSON null when there is none).  Owned
** by the record: borrowed reference, do not decref; json_incref it to keep
** it longer.  NULL only if decoding failed (out of memory; pfp's children
** write only text that decodes). */
PFP_API const json_t *pfp_record_result(const pfp_record *r);

/* The result as the exact JSON text the function delivered (not
** NUL-terminated in general; *len gets its length), or NULL when there is
** none.  Owned by the record.  Reading it costs no decoding. */
PFP_API const char *pfp_record_result_text(const pfp_record *r, size_t *len);

/* For error, timeout and crashed records: what went wrong (for a Lua error,
** the message with file:line and a traceback).  NULL for ok records.  Owned
** by the record. */
PFP_API const char *pfp_record_error(const pfp_record *r);

/* The process's exit code, or -1 when it did not exit normally. */
PFP_API int pfp_record_exit_code(const pfp_record *r);

/* The signal that ended the process, or 0. */
PFP_API int pfp_record_signal(const pfp_record *r);

/* Wall time from fork to reaping, in milliseconds. */
PFP_API double pfp_record_duration_ms(const pfp_record *r);

/* What the function wrote to stdout / stderr (bounded by the output limit,
** with a marker when cut).  NUL-terminated; *len (if not NULL) gets the
** length, which counts any NUL bytes inside.  Owned by the record. */
PFP_API const char *pfp_record_stdout(const pfp_record *r, size_t *len);
PFP_API const char *pfp_record_stderr(const pfp_record *r, size_t *len);

/* The whole record as one line of JSON text (keys function_name, index,
** result, status, error, exit_code, signal, duration_ms, stdout, stderr;
** captured output that is not UTF-8 has its bad bytes replaced by U+FFFD).
** Returns a new string the caller frees with pfp_free, or NULL when out of
** memory or r is NULL. */
PFP_API char *pfp_record_to_json(const pfp_record *r);

/* Frees memory that pfp handed to the caller (pfp_record_to_json). */
PFP_API void pfp_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif /* PFP_H */
