/*
** buf.c — a growable byte buffer, and string helpers.
*/
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

void pfp__buf_free(pfp__buf *b) {
  if (!b->borrowed)
    free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->borrowed = 0;
}

void pfp__buf_init_borrowed(pfp__buf *b, char *storage, size_t cap) {
  b->data = storage;
  b->data[0] = '\0';
  b->len = 0;
  b->cap = cap;
  b->borrowed = 1;
}

/* Moves borrowed bytes to a heap block of cap bytes. */
static char *unborrow(pfp__buf *b, size_t cap) {
  char *data = malloc(cap);
  if (data != NULL) {
    memcpy(data, b->data, b->len + 1);
    b->borrowed = 0;
  }
  return data;
}

/* Makes room for `extra` more bytes plus the NUL: doubling (appends in a
** loop stay linear), or to exactly that size. */
static int reserve(pfp__buf *b, size_t extra, int exact) {
  if (extra >= SIZE_MAX - b->len - 1)
    return -1;
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = exact ? need : b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *data = b->borrowed ? unborrow(b, cap) : realloc(b->data, cap);
  if (data == NULL)
    return -1;
  if (b->data == NULL)
    data[0] = '\0';
  b->data = data;
  b->cap = cap;
  return 0;
}

int pfp__buf_reserve(pfp__buf *b, size_t extra) {
  return reserve(b, extra, 0);
}

int pfp__buf_append(pfp__buf *b, const void *data, size_t len) {
  /* Records are built of many small appends: the usual case, room to
  ** spare, costs one comparison.  (cap >= len always; both 0 at first.) */
  if (len >= b->cap - b->len && pfp__buf_reserve(b, len) != 0)
    return -1;
  if (len > 0)
    memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int pfp__buf_puts(pfp__buf *b, const char *s) {
  return pfp__buf_append(b, s, strlen(s));
}

int pfp__buf_printf(pfp__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || pfp__buf_reserve(b, (size_t)n) != 0)
    return -1;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

char *pfp__buf_steal(pfp__buf *b, size_t *len) {
  if (b->borrowed) {
    char *copy = unborrow(b, b->len + 1);
    if (copy == NULL) {
      if (len)
        *len = 0;
      return NULL; /* the bytes stay in the caller's storage */
    }
    b->data = copy;
  }
  char *data = b->data;
  if (len)
    *len = b->len;
  if (data == NULL)
    data = calloc(1, 1);
  b->data = NULL;
  b->len = b->cap = 0;
  return data;
}

char *pfp__buf_take(pfp__buf *b, size_t *len) {
  if (b->len == 0) {
    pfp__buf_free(b);
    *len = 0;
    return NULL;
  }
  return pfp__buf_steal(b, len);
}

int pfp__buf_reserve_exact(pfp__buf *b, size_t extra) {
  return reserve(b, extra, 1);
}

char *pfp__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = malloc(n);
  if (copy)
    memcpy(copy, s, n);
  return copy;
}

char *pfp__strdupf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  char *s = malloc((size_t)n + 1);
  if (s == NULL)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}
