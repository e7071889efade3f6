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

/* The record's JSON text before and after its result, which is not
** copied: pfp-run writes a large result straight from the record.  The
** head holds only what is known when a result begins to arrive (the name
** and index), so that pfp-run can write a big result while it comes; the
** status, decided when the function has ended, follows it. */
static int record_head(const pfp_record *r, pfp__buf *head) {
  int rc = pfp__buf_reserve(head, 64 + strlen(r->function_name));
  rc |= PUT(head, "{\"function_name\":");
  rc |= pfp__jw_string(head, r->function_name, strlen(r->function_name), 1,
                       NULL);
  rc |= PUT(head, ",\"index\":");
  rc |= pfp__jw_integer(head, (long long)r->index);
  rc |= PUT(head, ",\"result\":");
  /* A streamed result is written by whoever streamed it, after the head. */
  if (r->result_text == NULL && !r->result_streamed)
    rc |= PUT(head, "null");
  return rc;
}

static int record_tail(const pfp_record *r, pfp__buf *tail) {
  const char *status = pfp_status_name(r->status);
  int rc = pfp__buf_reserve(tail, 160 + r->out_len + r->err_len +
                                      (r->error ? strlen(r->error) : 0));
  rc |= PUT(tail, ",\"status\":\"");
  rc |= pfp__buf_append(tail, status, strlen(status));
  rc |= PUT(tail, "\",\"error\":");
  rc |= put_text(tail, r->error, r->error ? strlen(r->error) : 0);
  rc |= PUT(tail, ",\"exit_code\":");
  rc |= put_optional(tail, r->exit_code, 0);
  rc |= PUT(tail, ",\"signal\":");
  rc |= put_optional(tail, r->signal, 1);
  rc |= PUT(tail, ",\"duration_ms\":");
  rc |= put_millis(tail, r->duration_ms);
  rc |= PUT(tail, ",\"stdout\":");
  rc |= put_text(tail, r->out ? r->out : "", r->out_len);
  rc |= PUT(tail, ",\"stderr\":");
  rc |= put_text(tail, r->err ? r->err : "", r->err_len);
  rc |= PUT(tail, "}");
  return rc;
}

int pfp__record_json_parts(const pfp_record *r, pfp__buf *head,
                           pfp__buf *tail) {
  int rc = head != NULL ? record_head(r, head) : 0;
  if (tail != NULL)
    rc |= record_tail(r, tail);
  return rc == 0 ? 0 : -1;
}

char *pfp_record_to_json(const pfp_record *r) {
  if (r == NULL)
    return NULL;
  pfp__buf head = {0}, tail = {0};
  int rc = pfp__record_json_parts(r, &head, &tail);
  if (rc == 0 && r->result_streamed) /* not here to write */
    rc = pfp__buf_append(&head, "null", 4);
  if (rc == 0 && r->result_text != NULL)
    rc = pfp__buf_append(&head, r->result_text, r->result_len);
  if (rc == 0)
    rc = pfp__buf_append(&head, tail.data, tail.len);
  pfp__buf_free(&tail);
  if (rc != 0) {
    pfp__buf_free(&head);
    return NULL;
  }
  return pfp__buf_steal(&head, NULL);
}

void pfp_free(void *ptr) { free(ptr); }
