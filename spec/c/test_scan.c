/*
** test_scan.c — the jobs-file scanner (runtime/json_scan.c), which checks a
** jobs file's lines before the run without building them.  It must settle
** ordinary lines itself (or the check costs a parse per line again) and
** leave everything doubtful to jansson.  That it never calls a line good
** that jansson refuses is fuzzed (spec/fuzz/fuzz_inputs.c).  Also its
** decoder of args text (pfp__push_json_text), which must build what
** jansson and pfp__push_json build (fuzzed in spec/fuzz/fuzz_json_lua.c).
*/
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "pfp_internal.h"

#include "tap.h"

static int scan(const char *line, const char *name) {
  pfp__job_span job;
  int rc = pfp__scan_job_line(line, strlen(line), &job);
  if (rc == PFP__SCAN_SURE &&
      (name == NULL || job.name_len != strlen(name) ||
       memcmp(line + job.name_at, name, job.name_len) != 0))
    return -1; /* sure, but of the wrong name */
  return rc;
}

static void test_settles_ordinary_lines(void) {
  CHECK(scan("{\"function\":\"sq\",\"args\":{\"i\":1}}", "sq") ==
        PFP__SCAN_SURE);
  CHECK(scan("  {\"args\" : {\"a\": [1, 2.5, -0, 1e5, 1E-2, true, false, "
             "null, 1.5e99, -2e-99]}, \"function\" : \"f\"}\r",
             "f") == PFP__SCAN_SURE);
  CHECK(scan("{\"function\": \"f\"}", "f") == PFP__SCAN_SURE);
  CHECK(scan("{\"function\": \"f\", \"args\": {}}", "f") == PFP__SCAN_SURE);
  CHECK(scan("{\"function\":\"f\",\"args\":{\"s\":\"tab\\t \\\"q\\\" "
             "\\u00e9 caf\xc3\xa9 \xf0\x9f\x98\x80\"}}",
             "f") == PFP__SCAN_SURE);
  CHECK(scan("{\"function\":\"f\",\"args\":{\"a\":{\"b\":[[{\"a\":1}]]},"
             "\"c\":{\"a\":2}}}",
             "f") == PFP__SCAN_SURE);
  CHECK(scan("{\"function\":\"f\",\"args\":{\"n\":-923372036854775807}}",
             "f") == PFP__SCAN_SURE);
  /* Reals as programs print them: long fractions are fine. */
  CHECK(scan("{\"function\":\"f\",\"args\":{\"x\":-101.01787042252374, "
             "\"y\":123456789012345678.25e99, \"z\":5e-324, "
             "\"w\":1e-9999}}",
             "f") == PFP__SCAN_SURE);
out:;
}

/* A line whose args hold `levels` nested arrays. */
static char *nested_line(int levels) {
  pfp__buf b = {0};
  pfp__buf_puts(&b, "{\"function\":\"f\",\"args\":{\"a\":");
  for (int i = 0; i < levels; i++)
    pfp__buf_puts(&b, "[");
  for (int i = 0; i < levels; i++)
    pfp__buf_puts(&b, "]");
  pfp__buf_puts(&b, "}}");
  return b.data;
}

static void test_depth_boundary(void) {
  char *sure = nested_line(31), *deep = nested_line(32);
  CHECK(sure != NULL && deep != NULL);
  /* Both are valid: only the scanner's own depth bound tells them apart. */
  json_t *a = json_loads(sure, 0, NULL), *b = json_loads(deep, 0, NULL);
  int both = a != NULL && b != NULL;
  json_decref(a);
  json_decref(b);
  CHECK(both);
  CHECK(scan(sure, "f") == PFP__SCAN_SURE);
  CHECK(scan(deep, NULL) == PFP__SCAN_UNSURE);
out:
  free(sure);
  free(deep);
}

static void test_blank_lines(void) {
  CHECK(scan("", NULL) == PFP__SCAN_BLANK);
  CHECK(scan(" \t\r", NULL) == PFP__SCAN_BLANK);
out:;
}

static void test_leaves_doubtful_lines_to_jansson(void) {
  static const char *doubtful[] = {
      "{\"function\":\"f\",\"args\":{\"a\":1,\"a\":2}}",
      "{\"function\":\"f\",\"args\":{\"x\":{\"a\":1,\"b\":2,\"a\":3}}}",
      "{\"function\":\"f\",\"args\":{\"a\":1,\"\\u0061\":2}}",
      "{\"function\":\"f\",\"args\":{\"s\":\"\\ud83d\\ude00\"}}",
      "{\"function\":\"f\",\"args\":{\"n\":9223372036854775808}}",
      "{\"function\":\"f\",\"args\":{\"n\":01}}",
      "{\"function\":\"f\",\"args\":{\"x\":1e999}}",
      "{\"function\":\"f\",\"args\":{\"x\":1e+999}}",
      "{\"function\":\"f\",\"args\":{\"n\":1.}}",
      "{\"function\":\"f\",\"args\":{\"n\":truex}}",
      "{\"function\":\"f\",\"args\":{\"s\":\"\xc3\x28\"}}",
      "{\"function\":\"f\",\"args\":{\"s\":\"a\tb\"}}",
      "{\"function\":\"caf\\u00e9\"}",
      "{\"function\":\"\"}",
      "{\"function\":\"f\",\"args\":{}} x",
      "{\"function\":\"f\",\"args\":{},}",
      "{\"function\":\"f\",\"args\":[1]}",
      "{\"function\":\"f\",\"args\":null}",
      "{\"function\":\"f\",\"function\":\"g\"}",
      "{\"function\":\"f\",\"extra\":1}",
      "{\"args\":{}}",
      "[1]",
      "{\"function\":\"f\",\"args\":{\"n\":1234567890123456789.5}}",
  };
  for (size_t i = 0; i < sizeof doubtful / sizeof *doubtful; i++) {
    if (scan(doubtful[i], NULL) != PFP__SCAN_UNSURE)
      printf("#   sure of: %s\n", doubtful[i]);
    CHECK(scan(doubtful[i], NULL) == PFP__SCAN_UNSURE);
  }
out:;
}

/* Decodes text both ways and compares what the two tables write. */
static int same_both_ways(lua_State *L, const char *text) {
  pfp__buf a = {0}, b = {0};
  char *msg = NULL;
  int same = 0;
  json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
  if (v == NULL || pfp__push_json(L, v) != 0)
    goto out;
  if (pfp__lua_to_json(L, -1, "a", &a, &msg) != 0)
    goto out;
  lua_pop(L, 1);
  if (pfp__push_json_text(L, text, strlen(text)) != 0)
    goto out;
  if (pfp__lua_to_json(L, -1, "b", &b, &msg) != 0)
    goto out;
  lua_pop(L, 1);
  same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
  if (!same)
    printf("#   jansson: %s\n#   scanner: %s\n", a.data, b.data);
out:
  free(msg);
  json_decref(v);
  pfp__buf_free(&a);
  pfp__buf_free(&b);
  return same;
}

static void test_decodes_args_text(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  pfp__setup_state(L);
  CHECK(same_both_ways(
      L, "{\"i\": 1, \"neg\": -42, \"zero\": -0, \"r\": 2.5, \"e\": 1e-5, "
         "\"E\": -3.25E+10, \"t\": true, \"f\": false, \"n\": null}"));
  CHECK(same_both_ways(
      L, "{\"s\": \"tab\\t q\\\" bs\\\\ sl\\/ \\b\\f\\r\\n \\u0000 "
         "\\u00e9 \\u20ac caf\\u00C9\", \"u\": \"caf\xc3\xa9\"}"));
  CHECK(same_both_ways(L, "{\"a\": [1, [2, []], {}], \"o\": {\"k\": "
                          "{\"k\": [null]}}, \"\": \"\"}"));
  CHECK(same_both_ways(L, " {} "));
  CHECK(same_both_ways(L, "{\"x\": -101.01787042252374, \"y\": 1e-9999, "
                          "\"z\": 5e-324, \"w\": 123456789012345678.25e99, "
                          "\"v\": -0.0, \"u\": 0.1}"));
  /* A value the stack can check by hand: NUL and a 3-byte character. */
  const char *nul = "{\"s\": \"a\\u0000\\u20ac\"}";
  CHECK(pfp__push_json_text(L, nul, strlen(nul)) == 0);
  lua_getfield(L, -1, "s");
  size_t len;
  const char *got = lua_tolstring(L, -1, &len);
  CHECK(got != NULL && len == 5 && memcmp(got, "a\0\xe2\x82\xac", 5) == 0);
  lua_pop(L, 2);
  /* What it is not sure of, it leaves alone. */
  int top = lua_gettop(L);
  static const char *const doubtful[] = {
      "{\"a\": 1, \"a\": 2}", "{\"big\": 9223372036854775807}", "[1]",
      "{\"a\": 1} x", "{\"a\": [1, 2, tru]}"};
  for (size_t i = 0; i < sizeof doubtful / sizeof *doubtful; i++)
    CHECK(pfp__push_json_text(L, doubtful[i], strlen(doubtful[i])) == -1);
  CHECK(lua_gettop(L) == top);
out:
  if (L != NULL)
    lua_close(L);
}

int main(void) {
  run_test("the jobs-file scanner settles ordinary lines itself",
           test_settles_ordinary_lines);
  run_test("the jobs-file scanner skips blank lines", test_blank_lines);
  run_test("the jobs-file scanner leaves nesting past 31 levels to jansson",
           test_depth_boundary);
  run_test("the jobs-file scanner leaves doubtful lines to jansson",
           test_leaves_doubtful_lines_to_jansson);
  run_test("args text decodes to what jansson's reading decodes to",
           test_decodes_args_text);
  return tests_failed ? 1 : 0;
}
