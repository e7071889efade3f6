/*
** test_scan.c — the jobs-file scanner (runtime/json_scan.c), which checks a
** jobs file's lines before the run without building them.  It must settle
** ordinary lines itself (or the check costs a parse per line again) and
** leave everything doubtful to jansson.  That it never calls a line good
** that jansson refuses is fuzzed (spec/fuzz/fuzz_inputs.c).
*/
#include <string.h>

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
  CHECK(scan("{\"function\":\"f\",\"args\":{\"n\":-92233720368547758}}",
             "f") == PFP__SCAN_SURE);
out:;
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
      "{\"function\":\"f\",\"args\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
  };
  for (size_t i = 0; i < sizeof doubtful / sizeof *doubtful; i++) {
    if (scan(doubtful[i], NULL) != PFP__SCAN_UNSURE)
      printf("#   sure of: %s\n", doubtful[i]);
    CHECK(scan(doubtful[i], NULL) == PFP__SCAN_UNSURE);
  }
out:;
}

int main(void) {
  run_test("the jobs-file scanner settles ordinary lines itself",
           test_settles_ordinary_lines);
  run_test("the jobs-file scanner skips blank lines", test_blank_lines);
  run_test("the jobs-file scanner leaves doubtful lines to jansson",
           test_leaves_doubtful_lines_to_jansson);
  return tests_failed ? 1 : 0;
}
