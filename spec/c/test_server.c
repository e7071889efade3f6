/*
** test_server.c — the fork server (pfp_start_fork_server), tested the way
** an embedding program uses it.  Most tests run the same calls on a
** processor with a server and on one without, and require the same
** outcome: records, codes and messages.  Prints TAP; the exit status is
** non-zero when any test failed.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfp_internal.h" /* pfp__register_value, for the Lua-values test */

#include "tap.h"

static const char *SCRIPT =
    "local pfp = require 'pfp'\n"
    "function add(q, context, args)\n"
    "  local r = pfp.Result()\n"
    "  r.result.sum = (context.base or 0) + args.a + args.b\n"
    "  q:put(r)\n"
    "end\n"
    "function echo(q, context, args) return args end\n"
    "function context_of(q, context) return context end\n"
    "function fails(q) error('boom') end\n"
    "function forever(q) while true do end end\n"
    "function leaves(q) os.exit(7) end\n"
    "function segv(q) os.execute('kill -SEGV $PPID'); while true do end end\n"
    "function chatty(q) print('to stdout'); io.write('a\\0b');\n"
    "  io.stderr:write('to stderr\\n'); return 1 end\n"
    "function renamed(q) local r = pfp.Result('other'); r.result = 5; "
    "q:put(r) end\n"
    "function unserializable(q) return { f = print } end\n"
    "function big(q, c, args) return string.rep('x', args.n) end\n"
    "function pwd(q) local f = io.open('here.txt'); "
    "return f and f:read('a') or 'none' end\n"
    "return { exported = function(q) return 'from the table' end }\n";

static pfp_processor *new_loaded(int with_server) {
  pfp_processor *p = pfp_processor_create();
  if (p == NULL)
    return NULL;
  if (with_server && pfp_start_fork_server(p) != PFP_OK) {
    printf("#   pfp_start_fork_server failed: %s\n", pfp_errmsg(p));
    pfp_processor_destroy(p);
    return NULL;
  }
  if (pfp_load_string(p, "=test", SCRIPT) != PFP_OK) {
    printf("#   loading the test script failed: %s\n", pfp_errmsg(p));
    pfp_processor_destroy(p);
    return NULL;
  }
  return p;
}

/* The pid of this process's only child (the server), or -1. */
static pid_t only_child(void) {
  char path[64], text[256];
  snprintf(path, sizeof path, "/proc/self/task/%ld/children", (long)getpid());
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  long pid = -1;
  int used = 0;
  if (sscanf(text, "%ld %n", &pid, &used) != 1 || text[used] != '\0')
    return -1;
  return (pid_t)pid;
}

/* Compares two records field by field (all but the duration); prints the
** first difference. */
static int same_text(const char *what, size_t i, const char *a, size_t alen,
                     const char *b, size_t blen) {
  if ((a == NULL) != (b == NULL) || alen != blen ||
      (a != NULL && memcmp(a, b, alen) != 0)) {
    printf("#   record %zu: %s differs: '%.*s' vs '%.*s'\n", i, what,
           a ? (int)alen : 4, a ? a : "NULL", b ? (int)blen : 4,
           b ? b : "NULL");
    return 0;
  }
  return 1;
}

static int same_records(pfp_processor *a, pfp_processor *b) {
  if (pfp_record_count(a) != pfp_record_count(b)) {
    printf("#   %zu records vs %zu\n", pfp_record_count(a),
           pfp_record_count(b));
    return 0;
  }
  for (size_t i = 0; i < pfp_record_count(a); i++) {
    const pfp_record *x = pfp_record_at(a, i), *y = pfp_record_at(b, i);
    size_t xl, yl;
    const char *xt, *yt;
    if (pfp_record_index(x) != pfp_record_index(y) ||
        pfp_record_status(x) != pfp_record_status(y) ||
        pfp_record_exit_code(x) != pfp_record_exit_code(y) ||
        pfp_record_signal(x) != pfp_record_signal(y)) {
      printf("#   record %zu: index, status, exit code or signal differ\n", i);
      return 0;
    }
    const char *xn = pfp_record_function_name(x),
               *yn = pfp_record_function_name(y);
    const char *xe = pfp_record_error(x), *ye = pfp_record_error(y);
    xt = pfp_record_result_text(x, &xl);
    yt = pfp_record_result_text(y, &yl);
    if (!same_text("function_name", i, xn, strlen(xn), yn, strlen(yn)) ||
        !same_text("result", i, xt, xl, yt, yl) ||
        !same_text("error", i, xe, xe ? strlen(xe) : 0, ye,
                   ye ? strlen(ye) : 0))
      return 0;
    xt = pfp_record_stdout(x, &xl);
    yt = pfp_record_stdout(y, &yl);
    if (!same_text("stdout", i, xt, xl, yt, yl))
      return 0;
    xt = pfp_record_stderr(x, &xl);
    yt = pfp_record_stderr(y, &yl);
    if (!same_text("stderr", i, xt, xl, yt, yl))
      return 0;
  }
  return 1;
}

/* ---- tests ----------------------------------------------------------- */

/* The same registrations, options and context on both processors. */
static int set_up_mix(pfp_processor *p) {
  json_t *args = json_pack("{s:I,s:f,s:f,s:s}", "min", (json_int_t)INT64_MIN,
                           "tenth", 0.1, "one", 1.0, "s", "caf\xc3\xa9");
  int rc = pfp_set_timeout(p, SECONDS(0.3));
  rc = rc ? rc : pfp_set_kill_grace(p, SECONDS(0.2));
  rc = rc ? rc : pfp_set_jobs(p, 4);
  rc = rc ? rc : pfp_set_output_limit(p, 6);
  rc = rc ? rc : pfp_set_context_json(p, "{\"base\": 100}");
  rc = rc ? rc : pfp_register(p, "add", "{\"a\": 1, \"b\": 2}");
  rc = rc ? rc : pfp_register(p, "fails", NULL);
  rc = rc ? rc : pfp_register(p, "forever", NULL);
  rc = rc ? rc : pfp_register(p, "leaves", NULL);
  rc = rc ? rc : pfp_register(p, "segv", NULL);
  rc = rc ? rc : pfp_register(p, "chatty", NULL);
  rc = rc ? rc : pfp_register(p, "renamed", NULL);
  rc = rc ? rc : pfp_register(p, "unserializable", NULL);
  rc = rc ? rc : pfp_register(p, "exported", NULL);
  rc = rc ? rc : pfp_register_json(p, "echo", args);
  rc = rc ? rc : pfp_register(p, "add", "{\"a\": 9007199254740993, \"b\": 0}");
  json_decref(args);
  return rc;
}

static void test_same_records(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  int a = -100, b = -100;
  CHECK(plain != NULL && served != NULL);
  CHECK_RC(plain, set_up_mix(plain));
  CHECK_RC(served, set_up_mix(served));
  a = pfp_execute(plain);
  b = pfp_execute(served);
  if (a != 5 || b != 5) {
    printf("#   not ok: %d without a server, %d with one\n", a, b);
    dump_records(served);
  }
  CHECK(a == 5 && b == 5);
  CHECK(same_records(plain, served));
  CHECK(pfp_record_status(pfp_record_at(served, 2)) == PFP_STATUS_TIMEOUT);
  CHECK(pfp_record_signal(pfp_record_at(served, 4)) == SIGSEGV);
  CHECK(pfp_record_duration_ms(pfp_record_at(served, 0)) > 0);
  CHECK(json_integer_value(json_object_get(
            pfp_record_result(pfp_record_at(served, 10)), "sum")) ==
        9007199254740993 + 100);
  CHECK(no_children_left() == 0); /* the server runs on */
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

/* Runs one step on both processors and requires the same code and
** message. */
#define BOTH(call_plain, call_served)                                        \
  do {                                                                       \
    int ra_ = (call_plain), rb_ = (call_served);                            \
    if (ra_ != rb_ || strcmp(pfp_errmsg(plain), pfp_errmsg(served)) != 0) {  \
      printf("#   %s:%d: %d '%s' without a server, %d '%s' with one\n",      \
             __FILE__, __LINE__, ra_, pfp_errmsg(plain), rb_,               \
             pfp_errmsg(served));                                            \
      current_failed = 1;                                                    \
      goto out;                                                              \
    }                                                                        \
  } while (0)

#define SAME(expr) BOTH(expr(plain), expr(served))

static int load_broken(pfp_processor *p) {
  return pfp_load_string(p, "@broken.lua", "function f(\n  x y\nend");
}
static int load_missing(pfp_processor *p) {
  return pfp_load_file(p, "/nonexistent/script.lua");
}
static int load_dir(pfp_processor *p) { return pfp_load_file(p, "/tmp"); }
static int load_null(pfp_processor *p) { return pfp_load_file(p, NULL); }
static int load_raises(pfp_processor *p) {
  return pfp_load_string(p, NULL, "function half() end\nerror('at load')");
}
static int load_ok(pfp_processor *p) {
  return pfp_load_string(p, "=more", "more = {}\nfunction more.f() end\n"
                                     "return { late = function() end }");
}
static int reg_unknown(pfp_processor *p) {
  return pfp_register(p, "nope", NULL);
}
static int reg_empty(pfp_processor *p) { return pfp_register(p, "", NULL); }
static int reg_half(pfp_processor *p) { return pfp_register(p, "half", NULL); }
static int reg_late(pfp_processor *p) { return pfp_register(p, "late", NULL); }
static int reg_type(pfp_processor *p) {
  return pfp_register(p, "type", NULL); /* a standard library function */
}
static int reg_table(pfp_processor *p) {
  return pfp_register(p, "more", NULL); /* a global, but not a function */
}
static int reg_bad_json(pfp_processor *p) {
  return pfp_register(p, "add", "{\"a\": 1,\n \"b\": }");
}
static int ctx_bad_json(pfp_processor *p) {
  return pfp_set_context_json(p, "{\"a\": 99999999999999999999}");
}
static int ctx_array(pfp_processor *p) {
  return pfp_set_context_json_named(p, "[1]", "ctx.json");
}

static void test_same_errors(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  CHECK(plain != NULL && served != NULL);
  SAME(load_broken);
  CHECK(strstr(pfp_errmsg(served), "broken.lua:2:") != NULL);
  SAME(load_missing);
  CHECK(pfp_errcode(served) == PFP_ESCRIPT);
  SAME(load_dir);
  SAME(load_null);
  SAME(reg_unknown);
  CHECK(pfp_errcode(served) == PFP_ENOFUNC);
  CHECK(strstr(pfp_errmsg(served), "'nope'") != NULL);
  SAME(reg_empty);
  SAME(reg_half); /* unknown: its script has not run yet */
  SAME(load_raises);
  CHECK(strstr(pfp_errmsg(served), "at load") != NULL);
  SAME(reg_half); /* defined before the script raised: known now */
  SAME(reg_late);
  SAME(load_ok);
  SAME(reg_late);
  SAME(reg_type);
  SAME(reg_table);
  SAME(reg_bad_json);
  SAME(ctx_bad_json);
  SAME(ctx_array);
  CHECK(pfp_registration_count(served) == 3);
  CHECK(pfp_registration_count(plain) == 3);
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(same_records(plain, served));
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

static void test_context(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  json_t *ctx = json_pack("{s:I,s:f,s:[i,f,n,b],s:{},s:s%}", "big",
                          (json_int_t)INT64_MAX, "third", 1.0 / 3, "list", 1,
                          -0.0, 1, "empty", "nul", "a\0b", (size_t)3);
  CHECK(plain != NULL && served != NULL && ctx != NULL);
  BOTH(pfp_set_context(plain, ctx), pfp_set_context(served, ctx));
  BOTH(pfp_register(plain, "context_of", NULL),
       pfp_register(served, "context_of", NULL));
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(same_records(plain, served));
  const char *text = pfp_record_result_text(pfp_record_at(served, 0), NULL);
  CHECK(strstr(text, "\"third\":0.3333333333333333") != NULL);
  CHECK(strstr(text, "9223372036854775807") != NULL);
  CHECK(strstr(text, "-0.0") != NULL);
  /* NULL clears it. */
  BOTH(pfp_set_context(plain, NULL), pfp_set_context(served, NULL));
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(same_records(plain, served));
  text = pfp_record_result_text(pfp_record_at(served, 0), NULL);
  CHECK(strcmp(text, "{}") == 0);
out:
  json_decref(ctx);
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

static void test_big_result_and_args(void) {
  pfp_processor *p = new_loaded(1);
  char *args = NULL;
  size_t n = 10u << 20;
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "big", "{\"n\": 10485760}"));
  /* And 2 MB of args, so the jobs outgrow the socket's buffer too. */
  args = malloc((2u << 20) + 32);
  CHECK(args != NULL);
  strcpy(args, "{\"pad\": \"");
  memset(args + 9, 'y', 2u << 20);
  strcpy(args + 9 + (2u << 20), "\"}");
  for (int i = 0; i < 4; i++)
    CHECK_RC(p, pfp_register(p, "echo", args));
  CHECK_RC(p, pfp_set_jobs(p, 2));
  CHECK_EXEC(p, 0);
  size_t len;
  const char *text = pfp_record_result_text(pfp_record_at(p, 0), &len);
  CHECK(len == n + 2 && text[0] == '"' && text[n + 1] == '"');
  CHECK(text[1] == 'x' && text[n] == 'x');
  for (int i = 1; i <= 4; i++) {
    text = pfp_record_result_text(pfp_record_at(p, (size_t)i), &len);
    CHECK(len == strlen(args) - 1); /* compact: no space after the colon */
  }
out:
  free(args);
  pfp_processor_destroy(p);
}

typedef struct seen {
  int count;
  int stop_after;
  pfp_processor *interrupt;
  pfp_processor *start_server; /* tries pfp_start_fork_server mid-run */
  int start_rc;
  int feed_write_fd;           /* one byte per record, for the waiting feed */
} seen;

static int remember(void *ud, const pfp_record *r) {
  seen *s = ud;
  (void)r;
  s->count++;
  if (s->interrupt)
    pfp_interrupt(s->interrupt);
  if (s->start_server)
    s->start_rc = pfp_start_fork_server(s->start_server);
  if (s->feed_write_fd >= 0 && write(s->feed_write_fd, "j", 1) != 1)
    return 1;
  return s->stop_after > 0 && s->count >= s->stop_after;
}

/* Three slots: two endless calls and a quick one, whose record stops the
** run; `extra` more quick calls wait for a slot that never comes. */
static int set_up_stoppers(pfp_processor *p, seen *s, int extra) {
  int rc = pfp_set_jobs(p, 3);
  rc = rc ? rc : pfp_set_kill_grace(p, SECONDS(0.2));
  rc = rc ? rc : pfp_register(p, "forever", NULL);
  rc = rc ? rc : pfp_register(p, "forever", NULL);
  for (int i = 0; i <= extra; i++)
    rc = rc ? rc : pfp_register(p, "add", "{\"a\": 1, \"b\": 1}");
  rc = rc ? rc : pfp_set_on_record(p, remember, s);
  return rc;
}

static void test_callback_stops_the_run(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  seen a = {0, 1, NULL, NULL, 0, -1}, b = {0, 1, NULL, NULL, 0, -1};
  CHECK(plain != NULL && served != NULL);
  CHECK_RC(plain, set_up_stoppers(plain, &a, 2));
  CHECK_RC(served, set_up_stoppers(served, &b, 2));
  b.start_server = served;
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(pfp_errcode(served) == PFP_EABORT);
  CHECK(b.start_rc == PFP_EBUSY);
  /* The fast call finished; the two endless ones were killed (and their
  ** records delivered after the stop); the last never started. */
  CHECK(a.count == 3 && b.count == 3);
  CHECK(same_records(plain, served));
  CHECK(strstr(pfp_record_error(pfp_record_at(served, 0)), "interrupted"));
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

static void test_interrupt(void) {
  pfp_processor *p = new_loaded(1);
  seen s = {0, 0, NULL, NULL, 0, -1};
  CHECK(p != NULL);
  s.interrupt = p;
  CHECK_RC(p, set_up_stoppers(p, &s, 0));
  CHECK_EXEC(p, PFP_EINTR);
  CHECK(strcmp(pfp_errmsg(p), "interrupted") == 0);
  CHECK(pfp_record_count(p) == 3);
  CHECK(pfp_record_status(pfp_record_at(p, 2)) == PFP_STATUS_OK);
  CHECK(pfp_record_signal(pfp_record_at(p, 0)) == SIGTERM);
  CHECK(pfp_record_signal(pfp_record_at(p, 1)) == SIGTERM);
  /* An interrupt while nothing runs stops the next run at once. */
  pfp_set_on_record(p, NULL, NULL);
  pfp_interrupt(p);
  CHECK_EXEC(p, PFP_EINTR);
  CHECK(pfp_record_count(p) == 0);
  /* And the run after that is normal again: no stale stop is left over in
  ** the server either. */
  pfp_clear(p);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_EXEC(p, 0);
  CHECK_EXEC(p, 0);
out:
  pfp_processor_destroy(p);
}

typedef struct feed_state {
  int next, total, fail_at, unknown_at;
  pfp_processor *p;
  int wait_fd; /* with >= 0: a job only when a byte can be read */
  pid_t kill_pid; /* kills it at the second job */
} feed_state;

static int feed_jobs(void *ud, const char **name, json_t **args) {
  feed_state *f = ud;
  if (f->fail_at > 0 && f->next == f->fail_at) {
    pfp_feed_error(f->p, "feed broke at job 5");
    return -1;
  }
  if (f->next >= f->total)
    return 0;
  if (f->kill_pid > 0 && f->next == 1)
    kill(f->kill_pid, SIGKILL);
  if (f->wait_fd >= 0) {
    char c;
    if (read(f->wait_fd, &c, 1) != 1)
      return PFP_FEED_WAIT;
  }
  *name = f->unknown_at > 0 && f->next == f->unknown_at ? "missing" : "add";
  *args = json_pack("{s:i,s:i}", "a", f->next, "b", 0);
  f->next++;
  return 1;
}

static void test_feed(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  feed_state fa = {0, 50, 0, 0, NULL, -1, 0}, fb = fa;
  CHECK(plain != NULL && served != NULL);
  fa.p = plain;
  fb.p = served;
  BOTH(pfp_register(plain, "add", "{\"a\": -1, \"b\": 0}"),
       pfp_register(served, "add", "{\"a\": -1, \"b\": 0}"));
  BOTH(pfp_set_feed(plain, feed_jobs, &fa),
       pfp_set_feed(served, feed_jobs, &fb));
  BOTH(pfp_set_jobs(plain, 3), pfp_set_jobs(served, 3));
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(pfp_record_count(served) == 51);
  CHECK(same_records(plain, served));
  /* A failing feed stops the run with its message. */
  fa.next = fb.next = 0;
  fa.fail_at = fb.fail_at = 5;
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(pfp_errcode(served) == PFP_EFEED);
  CHECK(strcmp(pfp_errmsg(served), "feed broke at job 5") == 0);
  CHECK(pfp_record_count(served) == 6);
  CHECK(same_records(plain, served));
  /* An unknown function from the feed: the calls before it run. */
  fa.next = fb.next = 0;
  fa.fail_at = fb.fail_at = 0;
  fa.unknown_at = fb.unknown_at = 7;
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(pfp_errcode(served) == PFP_ENOFUNC);
  CHECK(pfp_record_count(served) == 8);
  CHECK(same_records(plain, served));
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

/* A load can remove a function a registration found a moment before:
** names are looked up afresh after it, with a server or without. */
static void test_load_forgets_checked_names(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  CHECK(plain != NULL && served != NULL);
  BOTH(pfp_register(plain, "add", "{\"a\": 1, \"b\": 2}"),
       pfp_register(served, "add", "{\"a\": 1, \"b\": 2}"));
  BOTH(pfp_load_string(plain, "=gone", "add = nil"),
       pfp_load_string(served, "=gone", "add = nil"));
  CHECK(pfp_register(plain, "add", NULL) == PFP_ENOFUNC);
  CHECK(pfp_register(served, "add", NULL) == PFP_ENOFUNC);
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

/* The same jobs as text (pfp_set_feed_text). */
static int feed_text_jobs(void *ud, const char **name, const char **args) {
  static char text[64];
  json_t *v = NULL;
  int rc = feed_jobs(ud, name, &v);
  if (rc == 1) {
    snprintf(text, sizeof text, "{\"a\": %lld, \"b\": 0}",
             (long long)json_integer_value(json_object_get(v, "a")));
    *args = text;
  }
  json_decref(v);
  return rc;
}

static void test_feed_text(void) {
  pfp_processor *plain = new_loaded(0), *served = new_loaded(1);
  feed_state fa = {0, 30, 0, 0, NULL, -1, 0}, fb = fa;
  CHECK(plain != NULL && served != NULL);
  fa.p = plain;
  fb.p = served;
  BOTH(pfp_register(plain, "add", "{\"a\": -1, \"b\": 0}"),
       pfp_register(served, "add", "{\"a\": -1, \"b\": 0}"));
  BOTH(pfp_set_feed_text(plain, feed_text_jobs, &fa),
       pfp_set_feed_text(served, feed_text_jobs, &fb));
  BOTH(pfp_execute(plain), pfp_execute(served));
  CHECK(pfp_record_count(served) == 31);
  CHECK(same_records(plain, served));
  for (size_t i = 0; i < 31; i++)
    CHECK(json_integer_value(json_object_get(
              pfp_record_result(pfp_record_at(served, i)), "sum")) ==
          (json_int_t)i - 1);
out:
  pfp_processor_destroy(plain);
  pfp_processor_destroy(served);
}

/* A feed that waits on a descriptor: each record lets one more job in. */
static void test_waiting_feed(void) {
  pfp_processor *p = new_loaded(1);
  int fds[2] = {-1, -1};
  feed_state f = {0, 20, 0, 0, NULL, -1, 0};
  seen s = {0, 0, NULL, NULL, 0, -1};
  CHECK(p != NULL);
  CHECK(pipe(fds) == 0);
  CHECK(fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
  CHECK(write(fds[1], "j", 1) == 1);
  f.p = p;
  f.wait_fd = fds[0];
  s.feed_write_fd = fds[1];
  CHECK_RC(p, pfp_set_feed(p, feed_jobs, &f));
  CHECK_RC(p, pfp_set_feed_fd(p, fds[0]));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_RC(p, pfp_set_jobs(p, 2));
  CHECK_EXEC(p, 0);
  CHECK(pfp_record_count(p) == 20 && s.count == 20);
  for (size_t i = 0; i < 20; i++)
    CHECK(json_integer_value(json_object_get(
              pfp_record_result(pfp_record_at(p, i)), "sum")) ==
          (json_int_t)i);
out:
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  pfp_processor_destroy(p);
}

static void test_two_runs_and_unkept_records(void) {
  pfp_processor *p = new_loaded(1);
  seen s = {0, 0, NULL, NULL, 0, -1};
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  CHECK_EXEC(p, 0); /* the same registrations again */
  CHECK(pfp_record_count(p) == 1);
  pfp_clear(p);
  CHECK_RC(p, pfp_set_context_json(p, "{\"base\": 1000}"));
  for (int i = 0; i < 10; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_register(p, "fails", NULL));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_RC(p, pfp_set_keep_records(p, 0));
  CHECK_EXEC(p, 1);
  CHECK(s.count == 11 && pfp_record_count(p) == 0);
  pfp_set_keep_records(p, 1);
  CHECK_EXEC(p, 1);
  CHECK(json_integer_value(json_object_get(
            pfp_record_result(pfp_record_at(p, 9)), "sum")) == 1002);
  /* A run with nothing to do. */
  pfp_clear(p);
  CHECK_EXEC(p, 0);
out:
  pfp_processor_destroy(p);
}

static void test_destroy_reaps_the_server(void) {
  int before = count_fds();
  pfp_processor *p = NULL;
  CHECK(no_children_left());
  p = new_loaded(1);
  CHECK(p != NULL);
  CHECK(waitpid(-1, NULL, WNOHANG) == 0); /* the server runs */
  CHECK(only_child() > 0);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  pfp_processor_destroy(p);
  p = NULL;
  CHECK(no_children_left());
  CHECK(count_fds() == before);
  /* Twice is refused; destroying a processor right after starting too. */
  p = pfp_processor_create();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_start_fork_server(p));
  CHECK(pfp_start_fork_server(p) == PFP_EBUSY);
  pfp_processor_destroy(p);
  p = NULL;
  CHECK(no_children_left());
  CHECK(count_fds() == before);
out:
  pfp_processor_destroy(p);
}

static void test_server_killed(void) {
  pfp_processor *p = new_loaded(1);
  feed_state f = {0, 5, 0, 0, NULL, -1, 0};
  CHECK(p != NULL);
  pid_t server = only_child();
  CHECK(server > 0);
  /* Killed during a run (by the feed, as the second job is taken). */
  f.p = p;
  f.kill_pid = server;
  CHECK_RC(p, pfp_set_feed(p, feed_jobs, &f));
  CHECK_EXEC(p, PFP_ESYS);
  CHECK(strstr(pfp_errmsg(p), "fork server") != NULL);
  CHECK(strstr(pfp_errmsg(p), "SIGKILL") != NULL);
  CHECK(no_children_left()); /* reaped when its death was noticed */
  /* Every later call says so. */
  CHECK(pfp_load_string(p, "=x", "function g() end") == PFP_ESYS);
  CHECK(strstr(pfp_errmsg(p), "cannot run anything more") != NULL);
  CHECK(pfp_set_context_json(p, "{}") == PFP_ESYS);
  CHECK_EXEC(p, PFP_ESYS);
  pfp_processor_destroy(p);

  /* Killed between runs: the next request notices. */
  p = new_loaded(1);
  CHECK(p != NULL);
  server = only_child();
  CHECK(server > 0 && kill(server, SIGKILL) == 0);
  CHECK(pfp_load_string(p, "=x", "function g() end") == PFP_ESYS);
  CHECK(strstr(pfp_errmsg(p), "SIGKILL") != NULL);
  CHECK(no_children_left());
  pfp_processor_destroy(p);

  /* Killed between runs: the next run notices. */
  p = new_loaded(1);
  CHECK(p != NULL);
  server = only_child();
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK(server > 0 && kill(server, SIGKILL) == 0);
  CHECK_EXEC(p, PFP_ESYS);
  CHECK(strstr(pfp_errmsg(p), "SIGKILL") != NULL);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

/* The server holds none of the host's descriptors: a pipe the host closes
** is closed. */
static void test_holds_no_host_descriptors(void) {
  int fds[2] = {-1, -1};
  pfp_processor *p = NULL;
  CHECK(pipe(fds) == 0);
  p = new_loaded(1);
  CHECK(p != NULL);
  close(fds[1]);
  fds[1] = -1;
  char c;
  CHECK(read(fds[0], &c, 1) == 0); /* EOF at once, not a wait */
out:
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  pfp_processor_destroy(p);
}

/* A copy of the host made by fork() cannot use the processor, and
** destroying it there leaves the host's server running. */
static void test_forked_copy_of_the_host(void) {
  pfp_processor *p = new_loaded(1);
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int ok = pfp_execute(p) == PFP_ESYS &&
             strstr(pfp_errmsg(p), "forked from its host") != NULL &&
             pfp_load_string(p, "=x", "x = 1") == PFP_ESYS;
    pfp_processor_destroy(p);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_EXEC(p, 0);
  CHECK(only_child() > 0);
out:
  pfp_processor_destroy(p);
}

/* Relative paths mean what they mean in the host, whose directory may
** change after the server started. */
static void test_working_directory(void) {
  char dir[] = "/tmp/pfp-server-XXXXXX", old[4096], path[4200];
  int made = 0;
  pfp_processor *p = new_loaded(1);
  CHECK(p != NULL);
  CHECK(getcwd(old, sizeof old) != NULL);
  CHECK(mkdtemp(dir) != NULL);
  made = 1;
  snprintf(path, sizeof path, "%s/rel.lua", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("function rel() error('from rel') end\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/here.txt", dir);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("found", f);
  fclose(f);
  CHECK(chdir(dir) == 0);
  CHECK_RC(p, pfp_load_file(p, "rel.lua"));
  CHECK_RC(p, pfp_register(p, "rel", NULL));
  CHECK_RC(p, pfp_register(p, "pwd", NULL));
  CHECK_EXEC(p, 1);
  CHECK(strncmp(pfp_record_error(pfp_record_at(p, 0)), "rel.lua:1: from rel",
                19) == 0);
  CHECK(strcmp(pfp_record_result_text(pfp_record_at(p, 1), NULL),
               "\"found\"") == 0);
out:
  if (made) {
    snprintf(path, sizeof path, "%s/rel.lua", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/here.txt", dir);
    unlink(path);
    if (chdir(old) != 0)
      printf("#   could not return to %s\n", old);
    rmdir(dir);
  }
  pfp_processor_destroy(p);
}

static void test_lua_values_refused(void) {
  pfp_processor *p = new_loaded(1), *attached = NULL;
  lua_State *L = luaL_newstate();
  CHECK(p != NULL && L != NULL);
  CHECK(pfp__register_value(p, 1, 2, "f") == PFP_EINVAL);
  CHECK(strstr(pfp_errmsg(p), "fork server") != NULL);
  CHECK(pfp__set_context_value(p, 1) == PFP_EINVAL);
  CHECK(pfp_registration_count(p) == 0);
  attached = pfp__processor_attach(L);
  CHECK(attached != NULL);
  CHECK(pfp_start_fork_server(attached) == PFP_EINVAL);
out:
  pfp_processor_destroy(attached);
  if (L)
    lua_close(L);
  pfp_processor_destroy(p);
}

/* With a server the host's SIGCHLD disposition does not matter. */
static void test_sigchld_ignored_in_the_host(void) {
  struct sigaction ign, old;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  pfp_processor *p = new_loaded(1);
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "leaves", NULL));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  sigaction(SIGCHLD, &ign, &old);
  int rc = pfp_execute(p);
  sigaction(SIGCHLD, &old, NULL);
  CHECK(rc == 1);
  CHECK(pfp_record_exit_code(pfp_record_at(p, 0)) == 7);
out:
  pfp_processor_destroy(p);
}

/* The case the server is for: a host that grew large after starting it. */
static void test_large_host(void) {
  size_t size = 256u << 20;
  char *ballast = NULL;
  pfp_processor *p = new_loaded(1);
  CHECK(p != NULL);
  ballast = malloc(size);
  CHECK(ballast != NULL);
  memset(ballast, 1, size);
  CHECK_RC(p, pfp_set_jobs(p, 2));
  for (int i = 0; i < 20; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  CHECK(pfp_record_count(p) == 20);
  CHECK(json_integer_value(json_object_get(
            pfp_record_result(pfp_record_at(p, 19)), "sum")) == 3);
  CHECK(ballast[size - 1] == 1);
out:
  free(ballast);
  pfp_processor_destroy(p);
}

int main(void) {
  const char *scale = getenv("PFP_TEST_TIME_SCALE");
  if (scale != NULL && atof(scale) >= 1)
    time_scale = atof(scale);
  run_test("records with a server are those without one: ok, error, "
           "timeout, crashed, exact numbers, output",
           test_same_records);
  run_test("load, registration and context errors come at once, with the "
           "same codes and messages",
           test_same_errors);
  run_test("the context crosses exactly, and can be cleared", test_context);
  run_test("a 10 MB result and 2 MB args stream through",
           test_big_result_and_args);
  run_test("a record callback can stop the run", test_callback_stops_the_run);
  run_test("pfp_interrupt from the record callback stops the run",
           test_interrupt);
  run_test("a job feed runs through the server, and its failures are the "
           "same",
           test_feed);
  run_test("a text feed gives the same records with a server", test_feed_text);
  run_test("a load makes registrations look names up afresh",
           test_load_forgets_checked_names);
  run_test("a feed that waits on a descriptor", test_waiting_feed);
  run_test("runs again; records need not be kept",
           test_two_runs_and_unkept_records);
  run_test("destroy ends and reaps the server; no descriptor is left",
           test_destroy_reaps_the_server);
  run_test("a killed server is reported, now and later, and reaped",
           test_server_killed);
  run_test("the server holds none of the host's descriptors",
           test_holds_no_host_descriptors);
  run_test("a forked copy of the host cannot use the server, and leaves it "
           "running",
           test_forked_copy_of_the_host);
  run_test("relative paths follow the host's working directory",
           test_working_directory);
  run_test("Lua values are refused with a server",
           test_lua_values_refused);
  run_test("works with SIGCHLD ignored in the host",
           test_sigchld_ignored_in_the_host);
  run_test("a host holding 256 MiB runs through its server", test_large_host);
  printf("1..%d\n", tests_run);
  return tests_failed == 0 ? 0 : 1;
}
