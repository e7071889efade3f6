/*
** jobs_line.c — one line of a jobs file: {"function": "name", "args": {...}}.
** Kept apart from pfp-run so that the fuzzer can reach it.
*/
#include <errno.h>
#include <poll.h>
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

/* ---- reading lines without blocking the engine ------------------------ */

void pfp__line_reader_init(pfp__line_reader *r, int fd) {
  memset(r, 0, sizeof *r);
  r->fd = fd;
}

void pfp__line_reader_free(pfp__line_reader *r) { pfp__buf_free(&r->buf); }

int pfp__line_reader_next(pfp__line_reader *r, const char **line, size_t *len,
                          int may_block) {
  for (;;) {
    char *unread = r->buf.data + r->start;
    size_t have = r->buf.len - r->start;
    char *nl = have > 0 ? memchr(unread, '\n', have) : NULL;
    if (nl != NULL) {
      *line = unread;
      *len = (size_t)(nl - unread);
      r->start += *len + 1;
      return 1;
    }
    if (r->eof) {
      if (have == 0)
        return 0;
      *line = unread; /* a last line without a newline */
      *len = have;
      r->start = r->buf.len;
      return 1;
    }
    if (r->start > 0) {
      memmove(r->buf.data, unread, have);
      r->buf.len = have;
      r->start = 0;
    }
    if (!may_block) {
      struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
      if (poll(&pfd, 1, 0) == 0)
        return PFP_FEED_WAIT;
    }
    if (pfp__buf_reserve(&r->buf, 65536) != 0) {
      errno = ENOMEM;
      return -1;
    }
    ssize_t n = pfp__read_some(r->fd, r->buf.data + r->buf.len, 65536);
    if (n < 0)
      return errno == EAGAIN ? PFP_FEED_WAIT : -1;
    if (n == 0)
      r->eof = 1;
    r->buf.len += (size_t)n;
  }
}
