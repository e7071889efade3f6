/*
** jobs_line.c — one line of a jobs file: {"function": "name", "args": {...}}.
** Kept apart from pfp-run so that the fuzzer can reach it.
*/
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

int pfp__parse_job_line(const char *line, size_t len, const char *source,
                        size_t line_no, char **name, json_t **args,
                        char **msg) {
  size_t i = 0;
  *name = NULL;
  *args = NULL;
  *msg = NULL;
  while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' ||
                     line[i] == '\n'))
    i++;
  if (i == len)
    return 1;
  json_error_t err;
  json_t *job = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                           &err);
  if (job == NULL) {
    char *why = pfp__json_error_text(&err);
    *msg = pfp__strdupf("%s:%zu:%d: invalid JSON: %s", source, line_no,
                        err.column, why ? why : "out of memory");
    free(why);
    return -1;
  }
  const char *key;
  size_t key_len;
  json_t *value;
  const char *problem = NULL;
  json_t *fn = NULL, *a = NULL;
  if (!json_is_object(job)) {
    problem = "expected a JSON object {\"function\": ..., \"args\": {...}}";
  } else {
    json_object_keylen_foreach(job, key, key_len, value) {
      if (key_len == 8 && memcmp(key, "function", 8) == 0)
        fn = value;
      else if (key_len == 4 && memcmp(key, "args", 4) == 0)
        a = value;
      else {
        *msg = pfp__strdupf("%s:%zu: unknown key '%.*s' (expected only "
                            "\"function\" and \"args\")",
                            source, line_no, (int)key_len, key);
        json_decref(job);
        return -1;
      }
    }
    if (problem == NULL) {
      if (!json_is_string(fn) || json_string_length(fn) == 0)
        problem = "\"function\" must be a non-empty string";
      else if (strlen(json_string_value(fn)) != json_string_length(fn))
        problem = "\"function\" contains a NUL byte";
      else if (a != NULL && !json_is_object(a))
        problem = "\"args\" must be a JSON object";
      else if (a != NULL && !pfp__json_depth_ok(a))
        problem = "\"args\" is nested deeper than " PFP__STR(PFP_MAX_DEPTH)
                  " levels";
      else if (a != NULL && pfp__json_keys_have_nul(a))
        problem = "an object key in \"args\" contains a NUL byte";
    }
  }
  if (problem) {
    *msg = pfp__strdupf("%s:%zu: %s", source, line_no, problem);
    json_decref(job);
    return -1;
  }
  *name = pfp__strdup(json_string_value(fn));
  *args = a ? json_incref(a) : NULL;
  json_decref(job);
  if (*name == NULL) {
    json_decref(*args);
    *args = NULL;
    *msg = pfp__strdup("out of memory");
    return -1;
  }
  return 0;
}
