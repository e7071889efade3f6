/*
** pfp_run.c — the pfp-run command: Lua scripts and JSON in, JSON records out.
**
**   pfp-run [OPTIONS] SCRIPT [FUNCTION[=ARGS_JSON] ...]
**
** Everything that can be checked before a child runs is checked first:
** options, the script, the context, every FUNCTION=ARGS, and a jobs file
** that is a regular file.  Exit status: 0 all records ok, 1 some record
** not ok (or output could not be written), 2 bad usage or input, 128+N
** after signal N.
*/

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pfp_internal.h"

enum { EXIT_ALL_OK = 0, EXIT_NOT_OK = 1, EXIT_USAGE = 2 };

typedef struct run {
  pfp_processor *p;
  int jsonl;
  /* JSON mode prints records in registration order: those that finish
  ** early wait here as text, indexed by registration index. */
  char **waiting;
  size_t cap_waiting;
  size_t next_to_print;
  size_t printed;
  int write_failed;
  pfp__buf out;  /* records not yet written (see flush_out) */
  pfp__buf tail; /* the end of the record being written */
  /* A big result goes from its child to stdout as it arrives (see
  ** stream_result), when stdout is a regular file written at its end: one
  ** cut short can then be taken back. */
  int out_streamable;
  int streaming;        /* a result is on its way: other output waits */
  size_t stream_index;  /* its record's index */
  off_t stream_at;      /* where its record (with separator) begins */
  /* The jobs file, read as a stream. */
  int jobs_fd;             /* -1: no jobs file */
  int jobs_seekable;       /* a regular file: read it whole, twice */
  pfp__line_reader jobs;
  const char *jobs_name;
  size_t jobs_line;
  pfp__buf name; /* a jobs line's function name, NUL-terminated */
  pfp__buf fed; /* the job the feed handed out last: "name\0args" */
} run;

static volatile sig_atomic_t got_signal;
static pfp_processor *signal_target;

static void on_signal(int sig) {
  got_signal = sig;
  pfp_interrupt(signal_target);
}

static void usage(FILE *to) {
  fputs(
      "usage: pfp-run [OPTIONS] SCRIPT [FUNCTION[=ARGS_JSON] ...]\n"
      "\n"
      "Runs Lua functions from SCRIPT in parallel, each in its own forked\n"
      "process, and prints one JSON record per call.\n"
      "\n"
      "  FUNCTION[=ARGS_JSON]   one call of FUNCTION with ARGS_JSON (a JSON\n"
      "                         object, {} when left out); names may repeat.\n"
      "                         With none (and no --jobs-file), every function\n"
      "                         in the table SCRIPT returns runs once.\n"
      "\n"
      "Options:\n"
      "  -c, --context FILE     the context, a JSON object (- for stdin)\n"
      "  -j, --jobs N           at most N functions at once (default: CPUs)\n"
      "  -t, --timeout SECONDS  kill a function still running after SECONDS\n"
      "      --kill-grace SECONDS  SIGTERM to SIGKILL delay (default 1)\n"
      "      --output-limit SIZE  stdout/stderr kept per function (1M)\n"
      "      --memory SIZE      most memory a function's Lua code may\n"
      "                         allocate, e.g. 512M (default: no limit)\n"
      "      --reuse N          worker reuse: each forked worker runs up to N\n"
      "                         functions in turn (default 1: a fresh process\n"
      "                         per function); see README, \"Worker reuse\"\n"
      "      --format json|jsonl   one array in registration order (json,\n"
      "                         default) or one record per line as each\n"
      "                         completes (jsonl)\n"
      "      --jobs-file FILE   more calls, one JSON object per line:\n"
      "                         {\"function\": \"name\", \"args\": {...}}\n"
      "                         (- for stdin), read as a stream\n"
      "  -h, --help             show this help\n"
      "      --version          show the version\n"
      "\n"
      "Exit status: 0 all records ok; 1 some record not ok; 2 usage or input\n"
      "error (nothing was run); 128+N after signal N.\n",
      to);
}

static int fail_usage(const char *fmt, ...) PFP__PRINTF(1, 2);
static int fail_usage(const char *fmt, ...) {
  va_list ap;
  fputs("pfp-run: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\n", stderr);
  return EXIT_USAGE;
}

/* ---- option values ---------------------------------------------------- */

static int parse_seconds(const char *opt, const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v < 0)
    return fail_usage("option %s: expected a number of seconds >= 0, got '%s'",
                      opt, text);
  *out = v;
  return 0;
}

static int parse_count(const char *opt, const char *text, unsigned long min,
                       unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  if (text[0] == '-' || text[0] == '\0')
    goto bad;
  unsigned long v = strtoul(text, &end, 10);
  if (*end != '\0' || errno != 0 || v < min || v > max)
    goto bad;
  *out = v;
  return 0;
bad:
  return fail_usage("option %s: expected an integer from %lu to %lu, got '%s'",
                    opt, min, max, text);
}

/* A size in bytes, with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *opt, const char *text, unsigned long *out) {
  char *end;
  errno = 0;
  if (text[0] < '0' || text[0] > '9')
    goto bad;
  unsigned long v = strtoul(text, &end, 10);
  unsigned long scale = 1;
  if (*end == 'K' || *end == 'k')
    scale = 1UL << 10, end++;
  else if (*end == 'M' || *end == 'm')
    scale = 1UL << 20, end++;
  else if (*end == 'G' || *end == 'g')
    scale = 1UL << 30, end++;
  if (*end != '\0' || errno != 0 || v > (1UL << 50) / scale)
    goto bad;
  *out = v * scale;
  return 0;
bad:
  return fail_usage("option %s: expected a size in bytes (with an optional "
                    "K, M or G), got '%s'",
                    opt, text);
}

/* Reads a whole file ("-" for stdin) into a new string. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL)
    return NULL;
  pfp__buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (pfp__buf_append(&b, chunk, n) != 0) {
      errno = ENOMEM;
      break;
    }
  int bad = ferror(f) || errno == ENOMEM;
  int saved = errno;
  if (f != stdin)
    fclose(f);
  if (bad) {
    pfp__buf_free(&b);
    errno = saved ? saved : EIO;
    return NULL;
  }
  return pfp__buf_steal(&b, len);
}

/* ---- output ------------------------------------------------------------ */

/* Output goes through pfp-run's own buffer and write(2), not stdio: the
** engine flushes stdio before every fork, and a write failing there (a
** signal, a full pipe) would drop buffered records with nobody told.
** Here every failure is seen, and a signal only makes the write retry. */
#define OUT_BUFFER (64 << 10)

static void flush_out(run *r) {
  if (r->streaming)
    return; /* written after the streamed record */
  if (!r->write_failed && r->out.len > 0 &&
      pfp__write_all(STDOUT_FILENO, r->out.data, r->out.len) != 0)
    r->write_failed = errno ? errno : EIO;
  r->out.len = 0;
}

static void write_bytes(run *r, const char *data, size_t len) {
  if (r->write_failed || len == 0)
    return;
  if (len >= OUT_BUFFER && !r->streaming) {
    /* A big result goes out from where it is, not through the buffer. */
    flush_out(r);
    if (!r->write_failed && pfp__write_all(STDOUT_FILENO, data, len) != 0)
      r->write_failed = errno ? errno : EIO;
    return;
  }
  if (pfp__buf_append(&r->out, data, len) != 0) {
    r->write_failed = ENOMEM;
    return;
  }
  if (r->out.len >= OUT_BUFFER)
    flush_out(r);
}

static void write_text(run *r, const char *text) {
  write_bytes(r, text, strlen(text));
}

static void print_in_order(run *r, char *json) {
  write_text(r, r->printed == 0 ? "[\n" : ",\n");
  write_text(r, json);
  r->printed++;
  free(json);
}

/* Writes the record as JSON without first copying its result into one
** string: a result can be hundreds of MB. */
static int write_record(run *r, const pfp_record *rec) {
  /* The head goes straight into the output buffer, the tail into a buffer
  ** kept for it: no allocation per record. */
  size_t before = r->out.len;
  r->tail.len = 0;
  if (pfp__record_json_parts(rec, &r->out, &r->tail) != 0) {
    r->out.len = before;
    return -1;
  }
  size_t len;
  const char *result = pfp_record_result_text(rec, &len);
  if (result != NULL)
    write_bytes(r, result, len);
  write_bytes(r, r->tail.data, r->tail.len);
  return 0;
}

/* ---- big results, streamed ---------------------------------------------- */

/* Offered each big result as it begins to arrive: when it is the record to
** print next, its separator and head are written now and the engine copies
** the result after them (splice: it never passes through this process).
** Returns the descriptor to copy to, or -1 to get the record whole. */
static int stream_result(void *ud, const pfp_record *head) {
  run *r = ud;
  if (!r->out_streamable || r->streaming || r->write_failed ||
      (!r->jsonl && pfp_record_index(head) != r->next_to_print))
    return -1;
  flush_out(r);
  off_t at = lseek(STDOUT_FILENO, 0, SEEK_CUR);
  struct stat st;
  /* Taking a result back truncates the file: nothing may follow. */
  if (r->write_failed || at < 0 || fstat(STDOUT_FILENO, &st) != 0 ||
      st.st_size != at)
    return -1;
  /* The separator and head go through the output buffer, empty now. */
  if ((!r->jsonl &&
       pfp__buf_append(&r->out, r->printed == 0 ? "[\n" : ",\n", 2)) ||
      pfp__record_json_parts(head, &r->out, NULL) != 0) {
    r->out.len = 0;
    return -1;
  }
  flush_out(r);
  if (r->write_failed)
    return -1;
  r->streaming = 1;
  r->stream_index = pfp_record_index(head);
  r->stream_at = at;
  return STDOUT_FILENO;
}

/* Drops what was written of a streamed record. */
static void take_back_stream(run *r) {
  r->streaming = 0;
  if (ftruncate(STDOUT_FILENO, r->stream_at) != 0 ||
      lseek(STDOUT_FILENO, r->stream_at, SEEK_SET) < 0)
    r->write_failed = errno ? errno : EIO;
}

/* The record of the streamed result has come.  Returns 1 when it is now
** written whole, 0 when it was taken back and must be written as usual.
** Its head is the one already written: the engine records a streamed
** result under the name and index it was offered with. */
static int end_stream(run *r, const pfp_record *rec) {
  if (rec->stream_errno != 0) {
    /* The output ends at the last whole record, and the run stops. */
    take_back_stream(r);
    r->write_failed = rec->stream_errno;
    return 1;
  }
  if (!rec->result_streamed) {
    take_back_stream(r); /* cut short: its record has no result */
    return 0;
  }
  r->streaming = 0;
  r->tail.len = 0;
  if (pfp__record_json_parts(rec, NULL, &r->tail) != 0 ||
      (r->jsonl && pfp__buf_append(&r->tail, "\n", 1) != 0)) {
    r->write_failed = ENOMEM;
    return 1;
  }
  if (pfp__write_all(STDOUT_FILENO, r->tail.data, r->tail.len) != 0)
    r->write_failed = errno ? errno : EIO;
  if (!r->jsonl) {
    r->printed++;
    r->next_to_print++;
  }
  return 1;
}

static int out_of_memory(void) {
  fputs("pfp-run: out of memory\n", stderr);
  return 1;
}

static int on_record(void *ud, const pfp_record *rec) {
  run *r = ud;
  size_t index = pfp_record_index(rec);
  if (r->streaming && index == r->stream_index && end_stream(r, rec)) {
    flush_out(r); /* what finished meanwhile */
  } else if (r->jsonl || index == r->next_to_print) {
    if (!r->jsonl)
      write_text(r, r->printed++ == 0 ? "[\n" : ",\n");
    if (write_record(r, rec) != 0)
      return out_of_memory();
    if (r->jsonl)
      write_text(r, "\n");
    else
      r->next_to_print++;
  } else {
    /* Out of order: kept as text until the records before it are in. */
    char *json = pfp_record_to_json(rec);
    if (json == NULL)
      return out_of_memory();
    if (index >= r->cap_waiting) {
      size_t cap = r->cap_waiting ? r->cap_waiting : 64;
      while (cap <= index)
        cap *= 2;
      char **grown = realloc(r->waiting, cap * sizeof *grown);
      if (grown == NULL) {
        free(json);
        return out_of_memory();
      }
      memset(grown + r->cap_waiting, 0,
             (cap - r->cap_waiting) * sizeof *grown);
      r->waiting = grown;
      r->cap_waiting = cap;
    }
    r->waiting[index] = json;
  }
  while (r->next_to_print < r->cap_waiting && r->waiting[r->next_to_print]) {
    print_in_order(r, r->waiting[r->next_to_print]);
    r->waiting[r->next_to_print++] = NULL;
  }
  return r->write_failed != 0;
}

/* Flushed whenever the run waits: readers see records as soon as they are
** in order, without a write per record, and a write error (a full disk, a
** reader gone) stops the run now rather than after every function has
** run. */
static int on_idle(void *ud) {
  run *r = ud;
  flush_out(r);
  return r->write_failed != 0;
}

/* Ends JSON mode's array.  After an interrupted run, records that finished
** out of order are written too, in order, so nothing finished is lost. */
static void finish_output(run *r) {
  if (r->streaming)
    take_back_stream(r); /* the run stopped before its record came */
  if (!r->jsonl) {
    for (size_t i = r->next_to_print; i < r->cap_waiting; i++)
      if (r->waiting[i]) {
        print_in_order(r, r->waiting[i]);
        r->waiting[i] = NULL;
      }
    write_text(r, r->printed == 0 ? "[]\n" : "\n]\n");
  }
  flush_out(r);
}

/* ---- the jobs file ------------------------------------------------------ */

/* Reads the next line; returns 1, 0 at the end, PFP_FEED_WAIT when a pipe
** has no whole line yet, -1 with *msg. */
static int next_line(run *r, const char **line, size_t *len, char **msg) {
  int rc = pfp__line_reader_next(&r->jobs, line, len, r->jobs_seekable);
  if (rc < 0)
    *msg = pfp__strdupf("%s: read error: %s", r->jobs_name,
                        strerror(errno ? errno : EIO));
  else if (rc == 1)
    r->jobs_line++;
  return rc;
}

/* The next job as pfp_set_feed_text takes it: its name and args text (in
** r->fed, until the next call).  A line the scanner is sure of is cut into
** its parts; jansson parses the others, and their args go back to text.
** Returns 1, 0 at the end, PFP_FEED_WAIT when a pipe has no whole line
** yet, -1 with *msg. */
static int next_job(run *r, const char **name, const char **args,
                    char **msg) {
  for (;;) {
    const char *line;
    size_t len;
    int rc = next_line(r, &line, &len, msg);
    if (rc != 1)
      return rc;
    pfp__job_span job;
    const char *name_at, *args_at;
    size_t name_len, args_len;
    char *parsed_name = NULL, *dumped = NULL;
    switch (pfp__scan_job_line(line, len, &job)) {
    case PFP__SCAN_BLANK:
      continue;
    case PFP__SCAN_SURE:
      name_at = line + job.name_at;
      name_len = job.name_len;
      args_at = job.args_len ? line + job.args_at : NULL;
      args_len = job.args_len;
      break;
    default: {
      json_t *parsed_args = NULL;
      rc = pfp__parse_job_line(line, len, r->jobs_name, r->jobs_line,
                               &parsed_name, &parsed_args, msg);
      if (rc == 1)
        continue;
      if (rc < 0)
        return -1;
      /* jansson writes reals with 17 digits: the same values come back. */
      dumped = parsed_args ? json_dumps(parsed_args, JSON_COMPACT) : NULL;
      json_decref(parsed_args);
      if (parsed_args != NULL && dumped == NULL) {
        free(parsed_name);
        *msg = pfp__strdup("out of memory");
        return -1;
      }
      name_at = parsed_name;
      name_len = strlen(parsed_name);
      args_at = dumped;
      args_len = dumped ? strlen(dumped) : 0;
    }
    }
    /* "name\0args\0" */
    r->fed.len = 0;
    int failed = pfp__buf_append(&r->fed, name_at, name_len) != 0 ||
                 pfp__buf_append(&r->fed, "", 1) != 0 ||
                 pfp__buf_append(&r->fed, args_at, args_len) != 0;
    free(parsed_name);
    free(dumped);
    if (failed) {
      *msg = pfp__strdup("out of memory");
      return -1;
    }
    *name = r->fed.data;
    *args = args_at ? r->fed.data + name_len + 1 : NULL;
    return 1;
  }
}

static int feed(void *ud, const char **name, const char **args) {
  run *r = ud;
  char *msg = NULL;
  int rc = next_job(r, name, args, &msg);
  if (rc < 0) {
    pfp_feed_error(r->p, msg ? msg : "out of memory");
    free(msg);
    return -1;
  }
  /* The processor checks the name; an unknown one ends the run with
  ** PFP_ENOFUNC, reported by main() with this line's place. */
  return rc;
}

/* Checks that the `len` bytes at `name` name a loaded function. */
static int check_name(run *r, const char *name, size_t len) {
  r->name.len = 0;
  if (pfp__buf_append(&r->name, name, len) != 0)
    return fail_usage("out of memory");
  if (pfp__check_function(r->p, r->name.data) != PFP_OK)
    return fail_usage("%s:%zu: %s", r->jobs_name, r->jobs_line,
                      pfp_errmsg(r->p));
  return 0;
}

/* Checks every line of a jobs file that can be read twice, so a bad line
** is reported before any child runs.  The scanner settles ordinary lines
** without building them; jansson judges (and words the error for) the
** rest. */
static int validate_jobs_file(run *r) {
  const char *line;
  size_t len;
  char *msg = NULL;
  int rc;
  while ((rc = next_line(r, &line, &len, &msg)) == 1) {
    pfp__job_span job;
    int scan = pfp__scan_job_line(line, len, &job);
    if (scan == PFP__SCAN_BLANK)
      continue;
    if (scan == PFP__SCAN_SURE) {
      if (check_name(r, line + job.name_at, job.name_len) != 0)
        return -1;
      continue;
    }
    char *name = NULL;
    json_t *args = NULL;
    rc = pfp__parse_job_line(line, len, r->jobs_name, r->jobs_line, &name,
                             &args, &msg);
    json_decref(args);
    int bad = rc == 0 && check_name(r, name, strlen(name)) != 0;
    free(name);
    if (bad)
      return -1;
    if (rc < 0)
      break;
  }
  if (rc < 0) {
    fail_usage("%s", msg ? msg : "out of memory");
    free(msg);
    return -1;
  }
  if (lseek(r->jobs_fd, 0, SEEK_SET) != 0) {
    fail_usage("%s: cannot read it again: %s", r->jobs_name, strerror(errno));
    return -1;
  }
  pfp__line_reader_free(&r->jobs);
  pfp__line_reader_init(&r->jobs, r->jobs_fd);
  r->jobs_line = 0;
  return 0;
}

/* ---- main --------------------------------------------------------------- */

enum { OPT_FORMAT = 256, OPT_JOBS_FILE, OPT_VERSION, OPT_KILL_GRACE,
       OPT_OUTPUT_LIMIT, OPT_MEMORY, OPT_REUSE };

static const struct option long_options[] = {
    {"context", required_argument, NULL, 'c'},
    {"jobs", required_argument, NULL, 'j'},
    {"timeout", required_argument, NULL, 't'},
    {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
    {"output-limit", required_argument, NULL, OPT_OUTPUT_LIMIT},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"reuse", required_argument, NULL, OPT_REUSE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"jobs-file", required_argument, NULL, OPT_JOBS_FILE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

typedef struct settings {
  const char *context_file;
  const char *jobs_file;
  unsigned long jobs;
  double timeout;
  double kill_grace;
  unsigned long output_limit;
  unsigned long memory;
  unsigned long reuse;
  int have_jobs, have_kill_grace, have_output_limit;
  int jsonl;
} settings;

/* Returns -1 to go on, or an exit status. */
static int parse_options(int argc, char **argv, settings *s) {
  int c;
  opterr = 0;
  /* '+': options end at SCRIPT, so FUNCTION=ARGS is never taken apart. */
  while ((c = getopt_long(argc, argv, "+:c:j:t:h", long_options, NULL)) !=
         -1) {
    switch (c) {
    case 'c':
      s->context_file = optarg;
      break;
    case 'j':
      if (parse_count("--jobs", optarg, 1, 100000, &s->jobs) != 0)
        return EXIT_USAGE;
      s->have_jobs = 1;
      break;
    case 't':
      if (parse_seconds("--timeout", optarg, &s->timeout) != 0)
        return EXIT_USAGE;
      break;
    case OPT_KILL_GRACE:
      if (parse_seconds("--kill-grace", optarg, &s->kill_grace) != 0)
        return EXIT_USAGE;
      s->have_kill_grace = 1;
      break;
    case OPT_OUTPUT_LIMIT:
      if (parse_size("--output-limit", optarg, &s->output_limit) != 0)
        return EXIT_USAGE;
      s->have_output_limit = 1;
      break;
    case OPT_MEMORY:
      if (parse_size("--memory", optarg, &s->memory) != 0)
        return EXIT_USAGE;
      break;
    case OPT_REUSE:
      if (parse_count("--reuse", optarg, 1, 1000000000, &s->reuse) != 0)
        return EXIT_USAGE;
      break;
    case OPT_FORMAT:
      if (strcmp(optarg, "json") == 0)
        s->jsonl = 0;
      else if (strcmp(optarg, "jsonl") == 0)
        s->jsonl = 1;
      else
        return fail_usage("option --format: expected json or jsonl, got '%s'",
                          optarg);
      break;
    case OPT_JOBS_FILE:
      s->jobs_file = optarg;
      break;
    case 'h':
      usage(stdout);
      return EXIT_ALL_OK;
    case OPT_VERSION:
      printf("pfp-run %s (%s, jansson %s)\n", PFP_VERSION, LUA_RELEASE,
             JANSSON_VERSION);
      return EXIT_ALL_OK;
    case ':':
      fail_usage("option %s needs a value", argv[optind - 1]);
      fputs("Try 'pfp-run --help'.\n", stderr);
      return EXIT_USAGE;
    default:
      fail_usage("unknown option '%s'", argv[optind - 1]);
      fputs("Try 'pfp-run --help'.\n", stderr);
      return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fail_usage("missing SCRIPT");
    fputs("Try 'pfp-run --help'.\n", stderr);
    return EXIT_USAGE;
  }
  if (s->context_file && s->jobs_file && strcmp(s->context_file, "-") == 0 &&
      strcmp(s->jobs_file, "-") == 0)
    return fail_usage("--context and --jobs-file cannot both read stdin");
  return -1;
}

/* Registers FUNCTION[=ARGS] arguments, or the script's exported functions
** when there are none.  Returns -1 to go on, or an exit status. */
static int register_calls(run *r, const char *script, int argc, char **argv,
                          int first, int have_jobs_file) {
  if (first >= argc && !have_jobs_file) {
    char **names;
    size_t n;
    if (pfp__exported_functions(r->p, &names, &n) != PFP_OK)
      return fail_usage("%s", pfp_errmsg(r->p));
    for (size_t i = 0; i < n; i++) {
      if (pfp_register(r->p, names[i], NULL) != PFP_OK)
        fail_usage("%s", pfp_errmsg(r->p));
      free(names[i]);
    }
    free(names);
    if (n == 0)
      return fail_usage("%s returns no table of functions: name the "
                        "functions to run (pfp-run %s FUNCTION ...)",
                        script, script);
    return pfp_registration_count(r->p) == n ? -1 : EXIT_USAGE;
  }
  for (int i = first; i < argc; i++) {
    char *arg = argv[i];
    char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (name_len == 0)
      return fail_usage("argument %d ('%s'): missing the function name "
                        "(expected FUNCTION or FUNCTION=ARGS_JSON)",
                        i - first + 1, arg);
    char *name = strndup(arg, name_len);
    if (name == NULL)
      return fail_usage("out of memory");
    /* Kept as text, as a jobs file's args are. */
    int rc = pfp_register(r->p, name, eq ? eq + 1 : NULL);
    if (rc == PFP_EJSON) {
      /* Worded again to name the argument (and place the error in it). */
      char *msg = NULL;
      char *where = pfp__strdupf("argument %d (%s)", i - first + 1, name);
      json_t *args = pfp__parse_object(eq + 1, strlen(eq + 1),
                                       where ? where : name, &msg);
      free(where);
      json_decref(args);
      if (msg != NULL) {
        fail_usage("%s", msg);
        free(msg);
        free(name);
        return EXIT_USAGE;
      }
    }
    free(name);
    if (rc != PFP_OK)
      return fail_usage("argument %d: %s", i - first + 1, pfp_errmsg(r->p));
  }
  return -1;
}

static int open_jobs_file(run *r, const char *path) {
  struct stat st;
  r->jobs_name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  r->jobs_fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
  if (r->jobs_fd < 0)
    return fail_usage("cannot open jobs file %s: %s", path, strerror(errno));
  pfp__line_reader_init(&r->jobs, r->jobs_fd);
  if (fstat(r->jobs_fd, &st) != 0)
    return fail_usage("cannot read jobs file %s: %s", r->jobs_name,
                      strerror(errno));
  if (S_ISDIR(st.st_mode))
    return fail_usage("cannot read jobs file %s: it is a directory", path);
  r->jobs_seekable = S_ISREG(st.st_mode);
  if (r->jobs_seekable && validate_jobs_file(r) != 0)
    return EXIT_USAGE;
  return -1;
}

static int install_signal_handlers(pfp_processor *p) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  signal_target = p;
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  /* A closed stdout is reported as a write error, and the children are
  ** stopped, instead of pfp-run dying with them still running. */
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  /* Inherited from whoever started us, SIG_IGN would make the kernel reap
  ** children before pfp can read their exit status. */
  sa.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &sa, NULL);
  return 0;
}

int main(int argc, char **argv) {
  settings s;
  run r;
  memset(&s, 0, sizeof s);
  memset(&r, 0, sizeof r);
  r.jobs_fd = -1;
  /* No fastbins: a child's first large allocation would consolidate them,
  ** writing to chunks all over the heap it shares with pfp-run, a
  ** copy-on-write fault each (about four per child).  A program's choice,
  ** so pfp-run makes it, not the library. */
  mallopt(M_MXFAST, 0);
  /* Children make stdout line-buffered unless it already is (see
  ** child.c); pfp-run's own output never goes through stdio's stdout, so
  ** setting it once here spares each child the write. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  int status = parse_options(argc, argv, &s);
  if (status >= 0)
    return status;
  const char *script = argv[optind];

  r.p = pfp_processor_create();
  if (r.p == NULL)
    return fail_usage("%s", pfp_errmsg(NULL));
  r.jsonl = s.jsonl;

  if (pfp_load_file(r.p, script) != PFP_OK) {
    status = fail_usage("%s", pfp_errmsg(r.p));
    goto done;
  }
  if (s.context_file != NULL) {
    size_t len;
    char *text = read_file(s.context_file, &len);
    const char *cname =
        strcmp(s.context_file, "-") == 0 ? "<stdin>" : s.context_file;
    if (text == NULL) {
      status = fail_usage("cannot read context file %s: %s", cname,
                          strerror(errno));
      goto done;
    }
    if (strlen(text) != len) {
      free(text);
      status = fail_usage("%s: invalid JSON: contains a NUL byte", cname);
      goto done;
    }
    int rc = pfp_set_context_json_named(r.p, text, cname);
    free(text);
    if (rc != PFP_OK) {
      status = fail_usage("%s", pfp_errmsg(r.p));
      goto done;
    }
  }
  if (s.jobs_file != NULL && (status = open_jobs_file(&r, s.jobs_file)) >= 0)
    goto done;
  status = register_calls(&r, script, argc, argv, optind + 1,
                          s.jobs_file != NULL);
  if (status >= 0)
    goto done;

  if (s.have_jobs)
    pfp_set_jobs(r.p, (unsigned)s.jobs);
  pfp_set_timeout(r.p, s.timeout);
  if (s.have_kill_grace)
    pfp_set_kill_grace(r.p, s.kill_grace);
  if (s.have_output_limit)
    pfp_set_output_limit(r.p, (size_t)s.output_limit);
  pfp_set_memory_limit(r.p, (size_t)s.memory);
  pfp_set_reuse(r.p, (unsigned)s.reuse);
  pfp_set_keep_records(r.p, 0);
  pfp_set_on_record(r.p, on_record, &r);
  pfp_set_on_idle(r.p, on_idle, &r);
  struct stat out_stat;
  int out_flags = fcntl(STDOUT_FILENO, F_GETFL);
  /* O_APPEND: a moved result could not be written back in place. */
  r.out_streamable = fstat(STDOUT_FILENO, &out_stat) == 0 &&
                     S_ISREG(out_stat.st_mode) && out_flags >= 0 &&
                     !(out_flags & O_APPEND);
  /* JSON Lines come as records finish: a result given to q:put, after
  ** which its function may run on, is not streamed there, so that its
  ** record cannot hold back records finished meanwhile.  In a JSON array
  ** they wait for it anyway. */
  if (r.out_streamable)
    pfp__set_result_stream(r.p, stream_result, &r, r.jsonl);
  /* Only now: until children run, the default action (die) is right, and
  ** a script stuck while loading can still be interrupted. */
  install_signal_handlers(r.p);
  if (r.jobs_fd >= 0) {
    pfp_set_feed_text(r.p, feed, &r);
    pfp_set_feed_fd(r.p, r.jobs_fd);
  }

  int rc = pfp_execute(r.p);
  finish_output(&r);
  if (r.write_failed) {
    fprintf(stderr, "pfp-run: cannot write output: %s\n",
            strerror(r.write_failed));
    status = EXIT_NOT_OK;
  } else if (got_signal != 0) {
    status = 128 + got_signal;
  } else if (rc == PFP_ENOFUNC && r.jobs_fd >= 0) {
    /* Only the feed can name an unknown function this late: the line just
    ** read is the one. */
    status = fail_usage("%s:%zu: %s", r.jobs_name, r.jobs_line,
                        pfp_errmsg(r.p));
  } else if (rc == PFP_EFEED || rc == PFP_ENOFUNC) {
    status = fail_usage("%s", pfp_errmsg(r.p));
  } else if (rc < 0) {
    fprintf(stderr, "pfp-run: %s\n", pfp_errmsg(r.p));
    status = EXIT_NOT_OK;
  } else {
    status = rc == 0 ? EXIT_ALL_OK : EXIT_NOT_OK;
  }

done:
  if (r.jobs_fd > 0)
    close(r.jobs_fd);
  pfp__line_reader_free(&r.jobs);
  pfp__buf_free(&r.name);
  for (size_t i = 0; i < r.cap_waiting; i++)
    free(r.waiting[i]);
  free(r.waiting);
  pfp__buf_free(&r.out);
  pfp__buf_free(&r.tail);
  pfp__buf_free(&r.fed);
  signal_target = NULL;
  pfp_processor_destroy(r.p);
  return status;
}
