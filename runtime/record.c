/*
** record.c — result records: one per registered call, whatever happened.
*/
#include <stdio.h>
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

static int put_key(pfp__buf *b, const char *key, int first) {
  return pfp__buf_printf(b, "%s\"%s\":", first ? "" : ",", key);
}

static int put_text(pfp__buf *b, const char *key, const char *s, size_t len) {
  if (put_key(b, key, 0) != 0)
    return -1;
  if (s == NULL)
    return pfp__buf_puts(b, "null");
  return pfp__jw_string(b, s, len, 1, NULL);
}

char *pfp_record_to_json(const pfp_record *r) {
  pfp__buf b = {0};
  if (r == NULL)
    return NULL;
  int rc = pfp__buf_puts(&b, "{");
  rc |= put_key(&b, "function_name", 1);
  rc |= pfp__jw_string(&b, r->function_name, strlen(r->function_name), 1,
                       NULL);
  rc |= put_key(&b, "index", 0);
  rc |= pfp__buf_printf(&b, "%zu", r->index);
  rc |= put_key(&b, "status", 0);
  rc |= pfp__buf_printf(&b, "\"%s\"", pfp_status_name(r->status));
  rc |= put_key(&b, "result", 0);
  if (r->result_text != NULL)
    rc |= pfp__buf_append(&b, r->result_text, r->result_len);
  else
    rc |= pfp__buf_puts(&b, "null");
  rc |= put_text(&b, "error", r->error, r->error ? strlen(r->error) : 0);
  rc |= put_key(&b, "exit_code", 0);
  rc |= r->exit_code >= 0 ? pfp__buf_printf(&b, "%d", r->exit_code)
                          : pfp__buf_puts(&b, "null");
  rc |= put_key(&b, "signal", 0);
  rc |= r->signal > 0 ? pfp__buf_printf(&b, "%d", r->signal)
                      : pfp__buf_puts(&b, "null");
  rc |= put_key(&b, "duration_ms", 0);
  char ms[64];
  snprintf(ms, sizeof ms, "%.3f", r->duration_ms);
  pfp__c_decimal_point(ms);
  rc |= pfp__buf_puts(&b, ms);
  rc |= put_text(&b, "stdout", r->out ? r->out : "", r->out_len);
  rc |= put_text(&b, "stderr", r->err ? r->err : "", r->err_len);
  rc |= pfp__buf_puts(&b, "}");
  if (rc != 0) {
    pfp__buf_free(&b);
    return NULL;
  }
  return pfp__buf_steal(&b, NULL);
}

void pfp_free(void *ptr) { free(ptr); }
