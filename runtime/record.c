/*
** record.c — result records: one per registered call, whatever happened.
*/
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

pfp_record *pfp__record_new(void) {
  pfp_record *r = calloc(1, sizeof *r);
  if (r) {
    r->exit_code = -1;
  }
  return r;
}

void pfp__record_free(pfp_record *r) {
  if (r == NULL)
    return;
  free(r->function_name);
  free(r->result_text);
  json_decref(r->result);
  free(r->error);
  free(r->out);
  free(r->err);
  free(r);
}

const char *pfp_record_function_name(const pfp_record *r) {
  return r->function_name;
}

size_t pfp_record_index(const pfp_record *r) { return r->index; }

pfp_status pfp_record_status(const pfp_record *r) { return r->status; }

const json_t *pfp_record_result(const pfp_record *r) {
  if (r->result == NULL) {
    /* The cache is not part of the record's observable state. */
    pfp_record *mut = (pfp_record *)r;
    if (r->result_text != NULL) {
      json_error_t err;
      mut->result = json_loadb(r->result_text, r->result_len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    }
    else
      mut->result = json_null();
  }
  return r->result;
}

const char *pfp_record_result_text(const pfp_record *r, size_t *len) {
  if (len)
    *len = r->result_text ? r->result_len : 0;
  return r->result_text;
}

const char *pfp_record_error(const pfp_record *r) { return r->error; }

int pfp_record_exit_code(const pfp_record *r) { return r->exit_code; }

int pfp_record_signal(const pfp_record *r) { return r->signal; }

double pfp_record_duration_ms(const pfp_record *r) { return r->duration_ms; }

const char *pfp_record_stdout(const pfp_record *r, size_t *len) {
  if (len)
    *len = r->out_len;
  return r->out ? r->out : "";
}

const char *pfp_record_stderr(const pfp_record *r, size_t *len) {
  if (len)
    *len = r->err_len;
  return r->err ? r->err : "";
}

/* Appends a literal: the records are written at the rate functions
** finish, so no printf on this path. */
#define PUT(b, lit) pfp__buf_append((b), (lit), sizeof(lit) - 1)

static int put_text(pfp__buf *b, const char *s, size_t len) {
  if (s == NULL)
    return PUT(b, "null");
  return pfp__jw_string(b, s, len, 1, NULL);
}

/* A count that is absent when negative (or zero, for signals). */
static int put_optional(pfp__buf *b, int value, int least) {
  return value >= least ? pfp__jw_integer(b, value) : PUT(b, "null");
}

/* Milliseconds with three decimals, always with a '.', whatever the
** locale. */
static int put_millis(pfp__buf *b, double ms) {
  if (!(ms >= 0) || ms > 9e15)
    ms = 0;
  long long us = llround(ms * 1000.0);
  char frac[5] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                  (char)('0' + us % 10), 0};
  return pfp__jw_integer(b, us / 1000) | pfp__buf_append(b, frac, 4);
}

char *pfp_record_to_json(const pfp_record *r) {
  pfp__buf b = {0};
  if (r == NULL)
    return NULL;
  const char *status = pfp_status_name(r->status);
  size_t guess = 160 + strlen(r->function_name) + r->result_len + r->out_len +
                 r->err_len + (r->error ? strlen(r->error) : 0);
  int rc = pfp__buf_reserve(&b, guess);
  rc |= PUT(&b, "{\"function_name\":");
  rc |= pfp__jw_string(&b, r->function_name, strlen(r->function_name), 1,
                       NULL);
  rc |= PUT(&b, ",\"index\":");
  rc |= pfp__jw_integer(&b, (long long)r->index);
  rc |= PUT(&b, ",\"status\":\"");
  rc |= pfp__buf_append(&b, status, strlen(status));
  rc |= PUT(&b, "\",\"result\":");
  if (r->result_text != NULL)
    rc |= pfp__buf_append(&b, r->result_text, r->result_len);
  else
    rc |= PUT(&b, "null");
  rc |= PUT(&b, ",\"error\":");
  rc |= put_text(&b, r->error, r->error ? strlen(r->error) : 0);
  rc |= PUT(&b, ",\"exit_code\":");
  rc |= put_optional(&b, r->exit_code, 0);
  rc |= PUT(&b, ",\"signal\":");
  rc |= put_optional(&b, r->signal, 1);
  rc |= PUT(&b, ",\"duration_ms\":");
  rc |= put_millis(&b, r->duration_ms);
  rc |= PUT(&b, ",\"stdout\":");
  rc |= put_text(&b, r->out ? r->out : "", r->out_len);
  rc |= PUT(&b, ",\"stderr\":");
  rc |= put_text(&b, r->err ? r->err : "", r->err_len);
  rc |= PUT(&b, "}");
  if (rc != 0) {
    pfp__buf_free(&b);
    return NULL;
  }
  return pfp__buf_steal(&b, NULL);
}

void pfp_free(void *ptr) { free(ptr); }
