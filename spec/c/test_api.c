/*
** test_api.c — tests of the C embedding API, written the way an embedding
** program uses it.  Prints TAP ("ok N - name" / "not ok N - name"); the
** exit status is non-zero when any test failed.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfp.h"

#include "tap.h"

static const char *SCRIPT =
    "local pfp = require 'pfp'\n"
    "function add(q, context, args)\n"
    "  local r = pfp.Result()\n"
    "  r.result.sum = (context.base or 0) + args.a + args.b\n"
    "  q:put(r)\n"
    "end\n"
    "function echo(q, context, args) return args end\n"
    "function fails(q) error('boom') end\n"
    "function forever(q) while true do end end\n"
    "function leaves(q) os.exit(7) end\n"
    "function chatty(q) print('to stdout'); io.stderr:write('to stderr\\n'); "
    "return 1 end\n"
    "function big_int(q) return math.maxinteger end\n"
    "return { exported = function(q) return 'from the table' end }\n";

static pfp_processor *new_loaded(void) {
  pfp_processor *p = pfp_processor_create();
  if (p && pfp_load_string(p, "=test", SCRIPT) != PFP_OK) {
    printf("#   loading the test script failed: %s\n", pfp_errmsg(p));
    pfp_processor_destroy(p);
    return NULL;
  }
  return p;
}

/* ---- tests ----------------------------------------------------------- */

static void test_names_and_codes(void) {
  CHECK(strcmp(pfp_status_name(PFP_STATUS_OK), "ok") == 0);
  CHECK(strcmp(pfp_status_name(PFP_STATUS_ERROR), "error") == 0);
  CHECK(strcmp(pfp_status_name(PFP_STATUS_TIMEOUT), "timeout") == 0);
  CHECK(strcmp(pfp_status_name(PFP_STATUS_CRASHED), "crashed") == 0);
  CHECK(pfp_status_name((pfp_status)42) == NULL);
  CHECK(strcmp(pfp_strerror(PFP_ENOFUNC), "unknown function") == 0);
  CHECK(strcmp(pfp_strerror(12345), "unknown error") == 0);
  CHECK(strcmp(pfp_version(), PFP_VERSION) == 0);
  pfp_processor_destroy(NULL); /* a no-op */
  CHECK(strlen(pfp_errmsg(NULL)) > 0);
out:;
}

static void test_runs_and_decodes(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_set_context_json(p, "{\"base\": 100}"));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 10, \"b\": 20}"));
  CHECK(pfp_registration_count(p) == 2);
  CHECK_EXEC(p, 0);
  CHECK(pfp_record_count(p) == 2);
  const pfp_record *r0 = pfp_record_at(p, 0), *r1 = pfp_record_at(p, 1);
  CHECK(pfp_record_at(p, 2) == NULL);
  CHECK(pfp_record_status(r0) == PFP_STATUS_OK);
  CHECK(strcmp(pfp_record_function_name(r0), "add") == 0);
  CHECK(pfp_record_index(r0) == 0 && pfp_record_index(r1) == 1);
  CHECK(json_integer_value(json_object_get(pfp_record_result(r0), "sum")) ==
        103);
  CHECK(json_integer_value(json_object_get(pfp_record_result(r1), "sum")) ==
        130);
  CHECK(pfp_record_error(r0) == NULL);
  CHECK(pfp_record_exit_code(r0) == 0 && pfp_record_signal(r0) == 0);
  CHECK(pfp_record_duration_ms(r0) > 0);
  size_t len;
  const char *text = pfp_record_result_text(r1, &len);
  CHECK(text != NULL && len == strlen("{\"sum\":130}") &&
        memcmp(text, "{\"sum\":130}", len) == 0);
out:
  pfp_processor_destroy(p);
}

/* Jobs of several functions, interleaved, each get their own function; and
** a script loaded between runs replaces a function of the same name. */
static void test_functions_by_name_across_runs(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  for (int i = 0; i < 6; i++)
    CHECK_RC(p, pfp_register(p, i % 3 == 2 ? "echo" : "add",
                             "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  for (size_t i = 0; i < 6; i++) {
    const pfp_record *r = pfp_record_at(p, i);
    const json_t *got = pfp_record_result(r);
    if (i % 3 == 2)
      CHECK(json_integer_value(json_object_get(got, "a")) == 1 &&
            json_object_get(got, "sum") == NULL);
    else
      CHECK(json_integer_value(json_object_get(got, "sum")) == 3);
  }
  pfp_clear(p);
  CHECK_RC(p, pfp_load_string(p, "=again",
                              "function add(q, c, args) return 'new add' end"));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  CHECK(strcmp(json_string_value(pfp_record_result(pfp_record_at(p, 0))),
               "new add") == 0);
out:
  pfp_processor_destroy(p);
}

static void test_exported_and_global_functions(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "exported", NULL));
  CHECK_EXEC(p, 0);
  CHECK(strcmp(json_string_value(pfp_record_result(pfp_record_at(p, 0))),
               "from the table") == 0);
out:
  pfp_processor_destroy(p);
}

static void test_exact_integers(void) {
  pfp_processor *p = new_loaded();
  json_t *args = NULL;
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "big_int", NULL));
  args = json_pack("{s:I,s:f,s:f}", "min", (json_int_t)INT64_MIN, "tenth",
                   0.1, "one", 1.0);
  CHECK_RC(p, pfp_register_json(p, "echo", args));
  CHECK_EXEC(p, 0);
  CHECK(json_integer_value(pfp_record_result(pfp_record_at(p, 0))) ==
        INT64_MAX);
  const json_t *echoed = pfp_record_result(pfp_record_at(p, 1));
  CHECK(json_integer_value(json_object_get(echoed, "min")) == INT64_MIN);
  CHECK(json_is_real(json_object_get(echoed, "tenth")));
  CHECK(json_real_value(json_object_get(echoed, "tenth")) == 0.1);
  CHECK(json_is_real(json_object_get(echoed, "one")));
  const char *text = pfp_record_result_text(pfp_record_at(p, 1), NULL);
  CHECK(strstr(text, "\"one\":1.0") != NULL);
  CHECK(strstr(text, "\"tenth\":0.1") != NULL);
out:
  json_decref(args);
  pfp_processor_destroy(p);
}

/* A host whose LC_NUMERIC writes decimals with a comma (printf and strtod
** follow it, in the host and in the children it forks): args text with
** reals is still read exactly, and results are written with a '.'.  The
** de_DE locale is built with localedef (package locales) into a
** temporary LOCPATH, which setlocale reads at each call. */
static void test_comma_locale(void) {
  pfp_processor *p = NULL;
  char dir[] = "/tmp/pfp-locale-XXXXXX";
  char command[128];
  int made = mkdtemp(dir) != NULL;
  CHECK(made);
  snprintf(command, sizeof command,
           "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null", dir);
  /* Exit 1 is a warning; whether the locale works is checked next. */
  int built = system(command);
  CHECK(setenv("LOCPATH", dir, 1) == 0);
  if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL)
    printf("#   localedef exited with %d: is the locales package "
           "installed (scripts/with-deps installs it)?\n",
           WIFEXITED(built) ? WEXITSTATUS(built) : -1);
  CHECK(setlocale(LC_NUMERIC, NULL) != NULL &&
        strcmp(setlocale(LC_NUMERIC, NULL), "de_DE.UTF-8") == 0);
  char written[16];
  snprintf(written, sizeof written, "%.2f", 0.25);
  CHECK(strcmp(written, "0,25") == 0); /* else the test proves nothing */

  p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "echo", "{\"a\":0.25,\"b\":1e-7,"
                                      "\"c\":123456.789,"
                                      "\"d\":0.3333333333333333}"));
  CHECK_EXEC(p, 0);
  const json_t *got = pfp_record_result(pfp_record_at(p, 0));
  CHECK(json_real_value(json_object_get(got, "a")) == 0.25);
  CHECK(json_real_value(json_object_get(got, "b")) == 1e-7);
  CHECK(json_real_value(json_object_get(got, "c")) == 123456.789);
  CHECK(json_real_value(json_object_get(got, "d")) == 1.0 / 3.0);
  const char *text = pfp_record_result_text(pfp_record_at(p, 0), NULL);
  CHECK(strstr(text, "\"a\":0.25") != NULL);
out:
  pfp_processor_destroy(p);
  setlocale(LC_NUMERIC, "C");
  unsetenv("LOCPATH");
  if (made) {
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0)
      printf("#   could not remove %s\n", dir);
  }
}

static void test_every_status(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_set_timeout(p, SECONDS(0.3)));
  CHECK_RC(p, pfp_set_jobs(p, 4));
  CHECK_RC(p, pfp_register(p, "fails", NULL));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "leaves", NULL));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_EXEC(p, 3);
  const pfp_record *e = pfp_record_at(p, 0), *t = pfp_record_at(p, 1),
                   *c = pfp_record_at(p, 2), *ok = pfp_record_at(p, 3);
  CHECK(pfp_record_status(e) == PFP_STATUS_ERROR);
  CHECK(strstr(pfp_record_error(e), "test:8: boom") != NULL);
  CHECK(strstr(pfp_record_error(e), "stack traceback") != NULL);
  CHECK(pfp_record_status(t) == PFP_STATUS_TIMEOUT);
  CHECK(pfp_record_signal(t) == SIGTERM);
  CHECK(pfp_record_status(c) == PFP_STATUS_CRASHED);
  CHECK(pfp_record_exit_code(c) == 7);
  CHECK(json_is_null(pfp_record_result(c)));
  CHECK(pfp_record_status(ok) == PFP_STATUS_OK);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

/* The same statuses with reused workers, each call in the one worker's
** turn: the calls after a crash and after a timeout still run. */
static void test_every_status_with_reuse(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_set_timeout(p, SECONDS(0.3)));
  CHECK_RC(p, pfp_set_jobs(p, 1));
  CHECK_RC(p, pfp_set_reuse(p, 100));
  const char *order[] = {"fails", "forever", "leaves", "chatty", "big_int"};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    CHECK_RC(p, pfp_register(p, order[i], NULL));
  CHECK_EXEC(p, 3);
  CHECK(pfp_record_count(p) == 5);
  CHECK(pfp_record_status(pfp_record_at(p, 0)) == PFP_STATUS_ERROR);
  CHECK(pfp_record_status(pfp_record_at(p, 1)) == PFP_STATUS_TIMEOUT);
  CHECK(pfp_record_status(pfp_record_at(p, 2)) == PFP_STATUS_CRASHED);
  CHECK(pfp_record_exit_code(pfp_record_at(p, 2)) == 7);
  const pfp_record *chatty = pfp_record_at(p, 3), *big = pfp_record_at(p, 4);
  CHECK(pfp_record_status(chatty) == PFP_STATUS_OK);
  size_t len;
  CHECK(strcmp(pfp_record_stdout(chatty, &len), "to stdout\n") == 0);
  CHECK(strcmp(pfp_record_stderr(chatty, &len), "to stderr\n") == 0);
  CHECK(pfp_record_status(big) == PFP_STATUS_OK);
  CHECK(strcmp(pfp_record_result_text(big, &len), "9223372036854775807") == 0);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

static void test_captured_output_and_silence(void) {
  /* The library prints nothing of its own: everything the functions write
  ** is captured into records, so fds 1 and 2 stay untouched. */
  char path[] = "/tmp/pfp-test-XXXXXX";
  int fd = mkstemp(path);
  int saved_out = dup(1), saved_err = dup(2);
  pfp_processor *p = new_loaded();
  fflush(stdout);
  dup2(fd, 1);
  dup2(fd, 2);
  int rc = -100;
  if (p) {
    pfp_register(p, "chatty", NULL);
    pfp_register(p, "fails", NULL);
    pfp_register(p, "leaves", NULL);
    rc = pfp_execute(p);
  }
  fflush(stdout);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  close(saved_out);
  close(saved_err);
  off_t written = lseek(fd, 0, SEEK_END);
  close(fd);
  unlink(path);
  CHECK(p != NULL);
  CHECK(rc == 2);
  CHECK(written == 0);
  size_t len;
  CHECK(strcmp(pfp_record_stdout(pfp_record_at(p, 0), &len), "to stdout\n") ==
        0);
  CHECK(len == 10);
  CHECK(strcmp(pfp_record_stderr(pfp_record_at(p, 0), NULL), "to stderr\n") ==
        0);
out:
  pfp_processor_destroy(p);
}

static void test_bad_input_errors(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK(pfp_register(p, "nope", NULL) == PFP_ENOFUNC);
  CHECK(pfp_errcode(p) == PFP_ENOFUNC);
  CHECK(strstr(pfp_errmsg(p), "nope") != NULL);
  CHECK(pfp_register(p, "add", "{\"a\": 1,\n \"b\": }") == PFP_EJSON);
  CHECK(strstr(pfp_errmsg(p), ":2:") != NULL);
  CHECK(pfp_register(p, "add", "[1, 2]") == PFP_EJSON);
  CHECK(strstr(pfp_errmsg(p), "object") != NULL);
  CHECK(pfp_set_context_json(p, "{\"a\": 99999999999999999999}") == PFP_EJSON);
  CHECK(strstr(pfp_errmsg(p), "context:1:") != NULL);
  CHECK(pfp_set_context_json_named(p, "{\"a\" 1}", "ctx.json") == PFP_EJSON);
  CHECK(strstr(pfp_errmsg(p), "ctx.json:1:") != NULL);
  CHECK(pfp_load_string(p, "@broken.lua", "function f(\n  x y\nend") ==
        PFP_ESCRIPT);
  CHECK(strstr(pfp_errmsg(p), "broken.lua:2:") != NULL);
  CHECK(pfp_load_file(p, "/nonexistent/script.lua") == PFP_ESCRIPT);
  CHECK(strstr(pfp_errmsg(p), "/nonexistent/script.lua") != NULL);
  CHECK(pfp_load_file(p, "/tmp") == PFP_ESCRIPT);
  CHECK(pfp_load_string(p, "=raises", "error('at load time')") == PFP_ESCRIPT);
  CHECK(strstr(pfp_errmsg(p), "at load time") != NULL);
  CHECK(pfp_set_jobs(p, 0) == PFP_EINVAL);
  CHECK(pfp_set_timeout(p, -1) == PFP_EINVAL);
  CHECK(pfp_set_timeout(p, NAN) == PFP_EINVAL);
  CHECK(pfp_set_timeout(p, INFINITY) == PFP_EINVAL);
  CHECK(pfp_set_kill_grace(p, -0.5) == PFP_EINVAL);
  /* None of the failures registered anything. */
  CHECK(pfp_registration_count(p) == 0);
  CHECK(pfp_execute(p) == 0 && pfp_record_count(p) == 0);
out:
  pfp_processor_destroy(p);
}

typedef struct seen {
  int count;
  size_t order[64];
  int stop_after;
  pfp_processor *interrupt;
} seen;

static int remember(void *ud, const pfp_record *r) {
  seen *s = ud;
  if (s->count < 64)
    s->order[s->count] = pfp_record_index(r);
  s->count++;
  if (s->interrupt)
    pfp_interrupt(s->interrupt);
  return s->stop_after > 0 && s->count >= s->stop_after;
}

static void test_callback_and_unkept_records(void) {
  pfp_processor *p = new_loaded();
  seen s = {0};
  CHECK(p != NULL);
  for (int i = 0; i < 10; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_RC(p, pfp_set_keep_records(p, 0));
  CHECK_EXEC(p, 0);
  CHECK(s.count == 10);
  CHECK(pfp_record_count(p) == 0);
  int seen_index[10] = {0};
  for (int i = 0; i < 10; i++)
    seen_index[s.order[i]]++;
  for (int i = 0; i < 10; i++)
    CHECK(seen_index[i] == 1);
out:
  pfp_processor_destroy(p);
}

static void test_callback_stops_the_run(void) {
  pfp_processor *p = new_loaded();
  seen s = {0};
  s.stop_after = 1;
  CHECK(p != NULL);
  CHECK_RC(p, pfp_set_jobs(p, 3));
  CHECK_RC(p, pfp_set_kill_grace(p, SECONDS(0.2)));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_EXEC(p, PFP_EABORT);
  CHECK(pfp_errcode(p) == PFP_EABORT);
  /* The fast call finished; the two endless ones were killed; the last
  ** never started. */
  CHECK(pfp_record_count(p) == 3);
  CHECK(pfp_record_status(pfp_record_at(p, 0)) == PFP_STATUS_CRASHED);
  CHECK(strstr(pfp_record_error(pfp_record_at(p, 0)), "interrupted") != NULL);
  CHECK(pfp_record_status(pfp_record_at(p, 2)) == PFP_STATUS_OK);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

static void test_interrupt(void) {
  pfp_processor *p = new_loaded();
  seen s = {0};
  CHECK(p != NULL);
  s.interrupt = p;
  CHECK_RC(p, pfp_set_jobs(p, 3));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_EXEC(p, PFP_EINTR);
  CHECK(pfp_record_count(p) == 3);
  CHECK(pfp_record_status(pfp_record_at(p, 2)) == PFP_STATUS_OK);
  CHECK(pfp_record_signal(pfp_record_at(p, 0)) == SIGTERM);
  CHECK(no_children_left());
  /* An interrupt while nothing runs stops the next run at once. */
  pfp_set_on_record(p, NULL, NULL);
  pfp_interrupt(p);
  CHECK_EXEC(p, PFP_EINTR);
  CHECK(pfp_record_count(p) == 0);
  /* And the run after that is normal again. */
  pfp_clear(p);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_EXEC(p, 0);
out:
  pfp_processor_destroy(p);
}

/* pfp_interrupt from the record callback: no job starts after it, not
** even the one whose child was already forked ahead, waiting for a slot. */
static void test_interrupt_from_callback_starts_nothing_more(void) {
  pfp_processor *p = new_loaded();
  seen s = {0};
  CHECK(p != NULL);
  s.interrupt = p;
  CHECK_RC(p, pfp_set_jobs(p, 1));
  for (int i = 0; i < 5; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_set_on_record(p, remember, &s));
  CHECK_EXEC(p, PFP_EINTR);
  CHECK(s.count == 1);
  CHECK(pfp_record_count(p) == 1);
  CHECK(pfp_record_index(pfp_record_at(p, 0)) == 0);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

typedef struct idle_state {
  int calls, stop_at;
} idle_state;

static int count_idle(void *ud) {
  idle_state *st = ud;
  return ++st->calls == st->stop_at;
}

/* The idle hook runs while the run waits, and can stop it. */
static void test_idle_hook(void) {
  pfp_processor *p = new_loaded();
  idle_state st = {0, 0};
  CHECK(p != NULL);
  CHECK_RC(p, pfp_set_jobs(p, 2));
  for (int i = 0; i < 4; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_set_on_idle(p, count_idle, &st));
  CHECK_EXEC(p, 0);
  CHECK(st.calls >= 1);
  pfp_clear(p);
  st = (idle_state){0, 1};
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_EXEC(p, PFP_EABORT);
  CHECK(st.calls >= 1);
  CHECK(pfp_record_status(pfp_record_at(p, 0)) == PFP_STATUS_CRASHED);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

typedef struct feed_state {
  int next, total, fail_at;
  pfp_processor *p;
} feed_state;

static int feed_jobs(void *ud, const char **name, json_t **args) {
  feed_state *f = ud;
  if (f->fail_at > 0 && f->next == f->fail_at) {
    pfp_feed_error(f->p, "feed broke at job 5");
    return -1;
  }
  if (f->next >= f->total)
    return 0;
  *name = "add";
  *args = json_pack("{s:i,s:i}", "a", f->next, "b", 0);
  f->next++;
  return 1;
}

static void test_feed(void) {
  pfp_processor *p = new_loaded();
  feed_state f = {0, 50, 0, NULL};
  CHECK(p != NULL);
  f.p = p;
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": -1, \"b\": 0}"));
  CHECK_RC(p, pfp_set_feed(p, feed_jobs, &f));
  CHECK_RC(p, pfp_set_jobs(p, 3));
  CHECK_EXEC(p, 0);
  CHECK(pfp_record_count(p) == 51);
  for (size_t i = 0; i < 51; i++) {
    const pfp_record *r = pfp_record_at(p, i);
    CHECK(pfp_record_index(r) == i);
    CHECK(json_integer_value(json_object_get(pfp_record_result(r), "sum")) ==
          (json_int_t)i - 1);
  }
  /* A failing feed stops the run with its message. */
  f.next = 0;
  f.fail_at = 5;
  CHECK_EXEC(p, PFP_EFEED);
  CHECK(strcmp(pfp_errmsg(p), "feed broke at job 5") == 0);
  CHECK(pfp_record_count(p) == 6);
  CHECK(no_children_left());
out:
  pfp_processor_destroy(p);
}

/* Jobs as JSON text: settled by pfp's scanner, by jansson (an integer of
** 19 digits, escapes), or refused. */
static const char *const TEXT_JOBS[] = {
    "{\"a\": 1, \"b\": [true, null, 2.5]}",
    NULL,
    "{\"big\": 9223372036854775807, \"tiny\": 5e-324, \"s\": \"caf\\u00e9\","
    " \"nested\": {\"k\": [{}]}}",
    " {} ",
};

typedef struct text_feed {
  size_t next, bad_at;
} text_feed;

/* The text lives in one buffer the feed overwrites at each call, as a
** feed reading lines does: pfp must take what it needs before asking for
** the next job. */
static int feed_text_jobs(void *ud, const char **name, const char **args) {
  static char name_buf[16], text_buf[256];
  text_feed *f = ud;
  size_t count = sizeof TEXT_JOBS / sizeof *TEXT_JOBS;
  memset(name_buf, 'X', sizeof name_buf - 1);
  memset(text_buf, 'X', sizeof text_buf - 1);
  const char *text;
  if (f->next == f->bad_at)
    text = "{\"a\": 1, \"a\": 2}";
  else if (f->next >= count)
    return 0;
  else
    text = TEXT_JOBS[f->next];
  f->next++;
  strcpy(name_buf, "echo");
  *name = name_buf;
  if (text == NULL) {
    *args = NULL;
  } else {
    snprintf(text_buf, sizeof text_buf, "%s", text);
    *args = text_buf;
  }
  return 1;
}

static void test_feed_text(void) {
  pfp_processor *p = NULL;
  json_t *expected[sizeof TEXT_JOBS / sizeof *TEXT_JOBS] = {NULL};
  size_t count = sizeof TEXT_JOBS / sizeof *TEXT_JOBS;
  for (size_t i = 0; i < count; i++) {
    expected[i] = TEXT_JOBS[i] ? json_loads(TEXT_JOBS[i], 0, NULL)
                               : json_object();
    CHECK(expected[i] != NULL);
  }
  /* One fork per call, then reused workers: the same exact values. */
  for (unsigned reuse = 0; reuse <= 8; reuse += 8) {
    text_feed f = {0, (size_t)-1};
    p = new_loaded();
    CHECK(p != NULL);
    CHECK_RC(p, pfp_set_reuse(p, reuse));
    CHECK_RC(p, pfp_set_feed_text(p, feed_text_jobs, &f));
    CHECK_EXEC(p, 0);
    CHECK(pfp_record_count(p) == count);
    for (size_t i = 0; i < count; i++) {
      const json_t *got = pfp_record_result(pfp_record_at(p, i));
      if (!json_equal(got, expected[i]))
        dump_records(p);
      CHECK(json_equal(got, expected[i]));
    }
    /* Bad text stops the run before that job runs, naming the function. */
    f.next = 0;
    f.bad_at = 2;
    CHECK_EXEC(p, PFP_EFEED);
    CHECK(strstr(pfp_errmsg(p), "job feed: 'echo'") != NULL);
    CHECK(strstr(pfp_errmsg(p), "duplicate") != NULL);
    CHECK(pfp_record_count(p) == 2);
    CHECK(no_children_left());
    pfp_processor_destroy(p);
    p = NULL;
  }
out:
  for (size_t i = 0; i < count; i++)
    json_decref(expected[i]);
  pfp_processor_destroy(p);
}

/* Registrations of every kind in one batch of a reused worker: args as
** text (kept beside the batch), as a json_t and none (in its Lua table). */
static void test_mixed_args_in_a_batch(void) {
  pfp_processor *p = new_loaded();
  json_t *obj = json_pack("{s:i,s:s}", "n", 2, "kind", "json");
  CHECK(p != NULL && obj != NULL);
  CHECK_RC(p, pfp_set_reuse(p, 100));
  CHECK_RC(p, pfp_set_jobs(p, 1));
  for (int i = 0; i < 12; i++) {
    char text[64];
    snprintf(text, sizeof text, "{\"n\": %d, \"kind\": \"text\"}", i);
    if (i % 3 == 0)
      CHECK_RC(p, pfp_register(p, "echo", text));
    else if (i % 3 == 1)
      CHECK_RC(p, pfp_register_json(p, "echo", obj));
    else
      CHECK_RC(p, pfp_register(p, "echo", NULL));
  }
  CHECK_EXEC(p, 0);
  CHECK(pfp_record_count(p) == 12);
  for (size_t i = 0; i < 12; i++) {
    const json_t *got = pfp_record_result(pfp_record_at(p, i));
    json_t *want = i % 3 == 0 ? json_pack("{s:i,s:s}", "n", (int)i, "kind",
                                          "text")
                   : i % 3 == 1 ? json_incref(obj)
                                : json_object();
    int same = json_equal(got, want);
    json_decref(want);
    if (!same)
      dump_records(p);
    CHECK(same);
  }
out:
  json_decref(obj);
  pfp_processor_destroy(p);
}

static void test_record_to_json(void) {
  pfp_processor *p = new_loaded();
  char *text = NULL;
  json_t *v = NULL;
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "chatty", NULL));
  CHECK_EXEC(p, 0);
  text = pfp_record_to_json(pfp_record_at(p, 0));
  CHECK(text != NULL);
  json_error_t err;
  v = json_loads(text, 0, &err);
  CHECK(v != NULL);
  CHECK(strcmp(json_string_value(json_object_get(v, "function_name")),
               "chatty") == 0);
  CHECK(strcmp(json_string_value(json_object_get(v, "status")), "ok") == 0);
  CHECK(json_integer_value(json_object_get(v, "result")) == 1);
  CHECK(json_integer_value(json_object_get(v, "index")) == 0);
  CHECK(json_is_null(json_object_get(v, "error")));
  CHECK(strcmp(json_string_value(json_object_get(v, "stdout")),
               "to stdout\n") == 0);
  CHECK(json_is_real(json_object_get(v, "duration_ms")));
out:
  json_decref(v);
  pfp_free(text);
  pfp_processor_destroy(p);
}

static void test_no_leaked_fds_or_zombies_over_runs(void) {
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  int before = count_fds();
  CHECK_RC(p, pfp_set_timeout(p, SECONDS(0.2)));
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_register(p, "fails", NULL));
  CHECK_RC(p, pfp_register(p, "forever", NULL));
  CHECK_RC(p, pfp_register(p, "leaves", NULL));
  for (int round = 0; round < 3; round++) {
    CHECK_EXEC(p, 3);
    CHECK(pfp_record_count(p) == 4);
    CHECK(count_fds() == before);
    CHECK(no_children_left());
  }
out:
  pfp_processor_destroy(p);
}

/* Record callback: the first time, waits until the program's own child has
** exited, without reaping it, so that the rest of the run happens while
** that child is a zombie pfp could wrongly take. */
static pid_t own_zombie;
static int wait_for_own_zombie(void *ud, const pfp_record *r) {
  (void)ud;
  (void)r;
  if (own_zombie > 0) {
    siginfo_t info;
    waitid(P_PID, (id_t)own_zombie, &info, WEXITED | WNOWAIT);
    own_zombie = 0;
  }
  return 0;
}

static void test_leaves_other_children_alone(void) {
  /* The embedding program's own child must still be its own to reap. */
  int gate[2] = {-1, -1};
  pid_t mine = -1;
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK(pipe(gate) == 0);
  fflush(stdout);
  mine = fork();
  CHECK(mine >= 0);
  if (mine == 0) {
    char c;
    close(gate[1]);
    _exit(read(gate[0], &c, 1) == 0 ? 42 : 1);
  }
  close(gate[0]);
  gate[0] = -1;
  CHECK_RC(p, pfp_set_jobs(p, 1));
  for (int i = 0; i < 6; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 1}"));
  CHECK_RC(p, pfp_register(p, "leaves", NULL));
  CHECK_RC(p, pfp_set_on_record(p, wait_for_own_zombie, NULL));
  own_zombie = mine;
  close(gate[1]); /* the program's child exits now, during the run */
  gate[1] = -1;
  CHECK_EXEC(p, 1);
  CHECK(own_zombie == 0); /* the callback did see it exit mid-run */
  int status;
  CHECK(waitpid(mine, &status, WNOHANG) == mine);
  mine = -1;
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
out:
  if (gate[0] >= 0)
    close(gate[0]);
  if (gate[1] >= 0)
    close(gate[1]);
  if (mine > 0)
    waitpid(mine, NULL, 0);
  pfp_processor_destroy(p);
}

/* ---- an embedding program with its own SIGCHLD handler --------------- */

static volatile sig_atomic_t sigchld_count;
static volatile sig_atomic_t own_child_reaped;
static volatile pid_t own_child;

/* Reaps only the program's own child, as a well-behaved program does. */
static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  sigchld_count++;
  if (own_child > 0 && waitpid(own_child, NULL, WNOHANG) == own_child)
    own_child_reaped = 1;
  errno = saved;
}

static void test_with_a_sigchld_handler(void) {
  /* No SA_RESTART: every SIGCHLD interrupts pfp's system calls. */
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, &old);
  sigchld_count = 0;
  own_child_reaped = 0;
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0)
    _exit(0);
  own_child = pid;
  for (int i = 0; i < 20; i++)
    CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_RC(p, pfp_register(p, "leaves", NULL));
  CHECK_RC(p, pfp_set_jobs(p, 4));
  CHECK_EXEC(p, 1);
  for (size_t i = 0; i < 20; i++)
    CHECK(pfp_record_status(pfp_record_at(p, i)) == PFP_STATUS_OK);
  CHECK(pfp_record_exit_code(pfp_record_at(p, 20)) == 7);
  /* The program's handler ran for pfp's children too, and reaped its own
  ** child itself; pfp left that child alone. */
  CHECK(sigchld_count >= 1);
  CHECK(own_child_reaped == 1);
  CHECK(no_children_left());
out:
  own_child = 0;
  sigaction(SIGCHLD, &old, NULL);
  pfp_processor_destroy(p);
}

/* The library leaves signal dispositions as it found them. */
static void test_installs_no_signal_handlers(void) {
  struct sigaction before[NSIG], after;
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, NULL, &before[sig]);
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_EXEC(p, 0);
  for (int sig = 1; sig < NSIG; sig++) {
    sigaction(sig, NULL, &after);
    if (sig >= 32 && sig < SIGRTMIN)
      continue; /* reserved by glibc for its threads */
    if (after.sa_handler != before[sig].sa_handler)
      printf("#   signal %d: handler changed\n", sig);
    CHECK(after.sa_handler == before[sig].sa_handler);
  }
out:
  pfp_processor_destroy(p);
}

/* A daemon-like host that closed fds 0-2 after creating the processor:
** the pipes pfp makes then land on 0, 1 and 2 in the host. */
static void test_host_with_closed_stdio(void) {
  int report[2] = {-1, -1};
  CHECK(pipe(report) == 0);
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    pfp_processor *p = new_loaded();
    int devnull_check = report[1];
    close(report[0]);
    close(0);
    close(1);
    close(2);
    int ok = p && pfp_register(p, "chatty", NULL) == PFP_OK &&
             pfp_execute(p) == 0 &&
             json_integer_value(pfp_record_result(pfp_record_at(p, 0))) == 1 &&
             strcmp(pfp_record_stderr(pfp_record_at(p, 0), NULL),
                    "to stderr\n") == 0;
    char c = ok ? 'y' : 'n';
    (void)!write(devnull_check, &c, 1);
    pfp_processor_destroy(p);
    _exit(0);
  }
  close(report[1]);
  report[1] = -1;
  char c = 0;
  CHECK(read(report[0], &c, 1) == 1);
  waitpid(pid, NULL, 0);
  CHECK(c == 'y');
out:
  if (report[0] >= 0)
    close(report[0]);
  if (report[1] >= 0)
    close(report[1]);
}

static void test_refuses_when_sigchld_is_ignored(void) {
  struct sigaction ign, old;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  pfp_processor *p = new_loaded();
  CHECK(p != NULL);
  CHECK_RC(p, pfp_register(p, "add", "{\"a\": 1, \"b\": 2}"));
  sigaction(SIGCHLD, &ign, &old);
  int rc = pfp_execute(p);
  sigaction(SIGCHLD, &old, NULL);
  CHECK(rc == PFP_EINVAL);
  CHECK(strstr(pfp_errmsg(p), "SIGCHLD is ignored") != NULL);
  CHECK(pfp_record_count(p) == 0);
  CHECK_EXEC(p, 0); /* and fine again once restored */
out:
  run_test("the idle hook runs while the run waits and can stop it",
           test_idle_hook);
  run_test("an interrupt from the record callback starts nothing more",
           test_interrupt_from_callback_starts_nothing_more);
  run_test("every status with reused workers; later calls still run",
           test_every_status_with_reuse);
  pfp_processor_destroy(p);
}

static void test_two_processors(void) {
  pfp_processor *a = new_loaded(), *b = new_loaded();
  CHECK(a != NULL && b != NULL);
  CHECK_RC(a, pfp_register(a, "add", "{\"a\": 1, \"b\": 2}"));
  CHECK_RC(b, pfp_register(b, "add", "{\"a\": 3, \"b\": 4}"));
  CHECK_EXEC(a, 0);
  CHECK_EXEC(b, 0);
  CHECK(json_integer_value(json_object_get(
            pfp_record_result(pfp_record_at(a, 0)), "sum")) == 3);
  CHECK(json_integer_value(json_object_get(
            pfp_record_result(pfp_record_at(b, 0)), "sum")) == 7);
out:
  pfp_processor_destroy(a);
  pfp_processor_destroy(b);
}

int main(void) {
  const char *scale = getenv("PFP_TEST_TIME_SCALE");
  if (scale != NULL && atof(scale) >= 1)
    time_scale = atof(scale);
  run_test("status names and return codes", test_names_and_codes);
  run_test("runs registrations and decodes results", test_runs_and_decodes);
  run_test("finds each job's function by name, afresh after a load",
           test_functions_by_name_across_runs);
  run_test("finds functions in the returned table and among globals",
           test_exported_and_global_functions);
  run_test("integers and floats cross the pipe exactly", test_exact_integers);
  run_test("reals are read and written with '.' in a host whose locale "
           "writes a comma", test_comma_locale);
  run_test("every status: error, timeout, crashed, ok", test_every_status);
  run_test("captures the functions' output and prints nothing itself",
           test_captured_output_and_silence);
  run_test("bad input gets a code and a message naming the place",
           test_bad_input_errors);
  run_test("record callback sees every record once; records need not be "
           "kept",
           test_callback_and_unkept_records);
  run_test("a record callback can stop the run", test_callback_stops_the_run);
  run_test("pfp_interrupt stops a run and leaves nothing running",
           test_interrupt);
  run_test("a job feed supplies registrations lazily", test_feed);
  run_test("a text feed's args reach the function exactly; bad text stops "
           "the run", test_feed_text);
  run_test("a reused worker's batch mixes args given as text, as JSON "
           "values and none", test_mixed_args_in_a_batch);
  run_test("a record as JSON text", test_record_to_json);
  run_test("no leaked descriptors or zombies over repeated runs",
           test_no_leaked_fds_or_zombies_over_runs);
  run_test("never reaps the embedding program's own children",
           test_leaves_other_children_alone);
  run_test("two processors in one program", test_two_processors);
  run_test("works beside the program's own SIGCHLD handler and children",
           test_with_a_sigchld_handler);
  run_test("installs no signal handlers", test_installs_no_signal_handlers);
  run_test("works in a host that closed its stdio", test_host_with_closed_stdio);
  run_test("refuses to run while SIGCHLD is ignored",
           test_refuses_when_sigchld_is_ignored);
  printf("1..%d\n", tests_run);
  return tests_failed == 0 ? 0 : 1;
}
