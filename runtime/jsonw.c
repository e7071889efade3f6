/*
** jsonw.c — writing JSON text.
**
** jansson parses everything pfp reads, but its writer prints every real
** with 17 significant digits (0.1 becomes 0.10000000000000001).  pfp writes
** the shortest text that reads back as the same double instead, so results
** are both exact and readable, and a float with an integral value keeps a
** ".0" so it stays a float on the way back.
*/
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "pfp_internal.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
** bytes there are not valid UTF-8 (overlong forms, surrogates and code
** points above U+10FFFF are invalid). */
size_t pfp__utf8_sequence(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return 0;
  return len;
}

/* Bytes that need no thought: printable ASCII other than '"', '\\' and
** DEL.  Eight at a time, since long strings are mostly such bytes. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static int word_is_plain(uint64_t x) {
  uint64_t quote = x ^ (ONES * '"'), slash = x ^ (ONES * '\\');
  uint64_t del = x ^ (ONES * 0x7F);
  uint64_t bad = x | ((x - ONES * 0x20) & ~x) | ((quote - ONES) & ~quote) |
                 ((slash - ONES) & ~slash) | ((del - ONES) & ~del);
  return (bad & HIGHS) == 0;
}

#if defined(__GNUC__)
/* 32 bytes a test with the compiler's vector types (SSE2 on x86-64, NEON
** on arm64, plain words elsewhere): a 100 MB string is scanned in a third
** of the time eight bytes at a time take. */
typedef unsigned char bytes16 __attribute__((vector_size(16)));
typedef uint64_t words16 __attribute__((vector_size(16)));
static size_t plain_blocks(const char *s, size_t len) {
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    bytes16 a, b;
    memcpy(&a, s + i, 16);
    memcpy(&b, s + i + 16, 16);
    bytes16 bad = (bytes16)((a < 0x20) | (a >= 0x7F) | (a == '"') |
                            (a == '\\') | (b < 0x20) | (b >= 0x7F) |
                            (b == '"') | (b == '\\'));
    words16 any = (words16)bad;
    if (any[0] | any[1])
      break;
  }
  return i;
}
#else
static size_t plain_blocks(const char *s, size_t len) {
  (void)s;
  (void)len;
  return 0;
}
#endif

size_t pfp__jw_plain_prefix(const char *s, size_t len) {
  size_t i = len >= 64 ? plain_blocks(s, len) : 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t word;
    memcpy(&word, s + i, 8);
    if (!word_is_plain(word))
      break;
  }
  for (; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\')
      break;
  }
  return i;
}

int pfp__jw_string(pfp__buf *b, const char *str, size_t len, int lossy,
                   size_t *bad_at) {
  const unsigned char *s = (const unsigned char *)str;
  static const char hex[] = "0123456789abcdef";
  /* Most strings need no escapes: reserve once for the common case. */
  if (pfp__buf_reserve(b, len + 2) != 0)
    return -1;
  if (pfp__buf_append(b, "\"", 1) != 0)
    return -1;
  size_t run = 0; /* start of the pending run of plain bytes */
  size_t i = 0;
  while (i < len) {
    i += pfp__jw_plain_prefix(str + i, len - i);
    if (i == len)
      break;
    unsigned c = s[i];
    const char *esc = NULL;
    char ubuf[7];
    size_t step = 1;
    if (c >= 0x80) {
      step = pfp__utf8_sequence(s + i, len - i);
      if (step > 0) {
        i += step;
        continue;
      }
      if (!lossy) {
        if (bad_at)
          *bad_at = i;
        return -2;
      }
      esc = "\xEF\xBF\xBD"; /* U+FFFD */
      step = 1;
    } else if (c == '"') {
      esc = "\\\"";
    } else if (c == '\\') {
      esc = "\\\\";
    } else if (c == '\n') {
      esc = "\\n";
    } else if (c == '\t') {
      esc = "\\t";
    } else if (c == '\r') {
      esc = "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      ubuf[0] = '\\';
      ubuf[1] = 'u';
      ubuf[2] = '0';
      ubuf[3] = '0';
      ubuf[4] = hex[c >> 4];
      ubuf[5] = hex[c & 15];
      ubuf[6] = '\0';
      esc = ubuf;
    } else {
      i++;
      continue;
    }
    if (pfp__buf_append(b, s + run, i - run) != 0 || pfp__buf_puts(b, esc) != 0)
      return -1;
    i += step;
    run = i;
  }
  if (pfp__buf_append(b, s + run, len - run) != 0 ||
      pfp__buf_append(b, "\"", 1) != 0)
    return -1;
  return 0;
}

/* Replaces the current locale's decimal point in text with '.'. */
static void c_decimal_point(char *text) {
  /* printf and strtod follow LC_NUMERIC, which an embedding program may
  ** have set to a locale whose decimal point is not '.'; JSON's is. */
  const char *point = localeconv()->decimal_point;
  if (point[0] == '.' && point[1] == '\0')
    return;
  size_t plen = strlen(point);
  char *at = strstr(text, point);
  if (at != NULL) {
    *at = '.';
    memmove(at + 1, at + plen, strlen(at + plen) + 1);
  }
}

int pfp__jw_double(pfp__buf *b, double v) {
  char text[48];
  if (!isfinite(v))
    return -2;
  /* %.17g always round-trips; fewer digits usually do and read better.
  ** Both snprintf and strtod use the current locale, so the check holds
  ** before the decimal point is made a '.'. */
  /* Any decimal of at most 15 digits survives a trip through a normal
  ** double (DBL_DIG), so %.15g is already the shortest when it round-trips;
  ** subnormals carry fewer digits and are searched from 1. */
  int first = (v != 0 && fabs(v) < DBL_MIN) ? 1 : 15;
  for (int prec = first; prec <= 17; prec++) {
    snprintf(text, sizeof text - 2, "%.*g", prec, v);
    if (strtod(text, NULL) == v)
      break;
  }
  c_decimal_point(text);
  if (strpbrk(text, ".eE") == NULL)
    strcat(text, ".0");
  return pfp__buf_puts(b, text);
}

/* By hand: snprintf's format parsing is most of the cost of a small
** result, which is mostly integers. */
int pfp__jw_integer(pfp__buf *b, long long v) {
  char text[24];
  char *end = text + sizeof text, *p = end;
  /* Unsigned, so that LLONG_MIN negates without overflow. */
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                               : (unsigned long long)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0)
    *--p = '-';
  return pfp__buf_append(b, p, (size_t)(end - p));
}

int pfp__jw_json(pfp__buf *b, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_NULL:
    return pfp__buf_append(b, "null", 4);
  case JSON_TRUE:
    return pfp__buf_append(b, "true", 4);
  case JSON_FALSE:
    return pfp__buf_append(b, "false", 5);
  case JSON_INTEGER:
    return pfp__jw_integer(b, (long long)json_integer_value(v));
  case JSON_REAL:
    return pfp__jw_double(b, json_real_value(v)) == 0 ? 0 : -1;
  case JSON_STRING:
    return pfp__jw_string(b, json_string_value(v), json_string_length(v), 1,
                          NULL);
  case JSON_ARRAY: {
    if (pfp__buf_append(b, "[", 1) != 0)
      return -1;
    for (size_t i = 0; i < json_array_size(v); i++) {
      if ((i > 0 && pfp__buf_append(b, ",", 1) != 0) ||
          pfp__jw_json(b, json_array_get(v, i)) != 0)
        return -1;
    }
    return pfp__buf_append(b, "]", 1);
  }
  case JSON_OBJECT: {
    const char *key;
    json_t *value;
    int first = 1;
    if (pfp__buf_append(b, "{", 1) != 0)
      return -1;
    json_object_foreach((json_t *)v, key, value) {
      if ((!first && pfp__buf_append(b, ",", 1) != 0) ||
          pfp__jw_string(b, key, strlen(key), 1, NULL) != 0 ||
          pfp__buf_append(b, ":", 1) != 0 || pfp__jw_json(b, value) != 0)
        return -1;
      first = 0;
    }
    return pfp__buf_append(b, "}", 1);
  }
  }
  return -1;
}
