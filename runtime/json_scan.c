/*
** json_scan.c — a JSON checker that builds nothing, or Lua values only.
**
** Checking a 100,000-line jobs file with jansson before the run cost
** about a quarter of the run: every line became a tree of json_t that was
** freed at once.  This scanner walks the text instead, allocating nothing.
** It answers "sure" only for text that jansson, with the flags pfp parses
** with (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL), accepts and that passes
** pfp's own checks (depth, no NUL in a key).  Anything it does not settle
** cheaply (an error, an escape in a key, a surrogate escape, a number that
** might overflow, a large object, deep nesting) it leaves to jansson, which
** then gives the verdict and the message: so the two can never disagree,
** and every error message still comes from one place.  fuzz_inputs checks
** that "sure" is never said of text jansson refuses.
**
** Given a Lua state, the same walk also pushes the values (see
** pfp__push_json_text): args text becomes a table without a json_t tree
** in between, the same table pfp__push_json builds from jansson's tree.
** fuzz_json_lua checks that the two agree.
*/
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "pfp_internal.h"

/* Deeper text is left to jansson: far below PFP_MAX_DEPTH, so the depth
** check needs no counting beyond it. */
#define SCAN_DEPTH 32
/* An object with more keys is left to jansson: checking duplicates costs
** a comparison per pair of keys. */
#define SCAN_KEYS 64
/* A number with more digits before its point, or more exponent digits,
** might not fit in a json_int_t or a double: 18 digits and an exponent of
** 99 stay far below either limit.  Digits after the point cannot overflow
** (a double prints with up to 17), but the whole number must fit the
** decoder's buffer. */
#define SCAN_INTEGER_DIGITS 18
#define SCAN_EXPONENT 2
#define SCAN_NEGATIVE_EXPONENT 4
#define SCAN_NUMBER 63

typedef struct scan {
  const unsigned char *s;
  size_t n, i;
  lua_State *L; /* NULL: check only; else push each value */
} scan;

static void skip_space(scan *sc) {
  while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
                           sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
    sc->i++;
}

static int is_hex(unsigned c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned c) {
  return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Pushes the string whose text (between the quotes, already checked) is
** s[0..len): escapes decoded, \u to UTF-8 (no surrogates get here). */
static void push_string(lua_State *L, const unsigned char *s, size_t len,
                        int escaped) {
  if (!escaped) {
    lua_pushlstring(L, (const char *)s, len);
    return;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len); /* decoding never lengthens */
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    if (s[i] != '\\') {
      out[n++] = (char)s[i++];
      continue;
    }
    unsigned e = s[i + 1];
    i += 2;
    if (e != 'u') {
      out[n++] = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n'
               : e == 'r' ? '\r' : e == 't' ? '\t' : (char)e;
      continue;
    }
    unsigned cp = hex_value(s[i]) << 12 | hex_value(s[i + 1]) << 8 |
                  hex_value(s[i + 2]) << 4 | hex_value(s[i + 3]);
    i += 4;
    if (cp < 0x80) {
      out[n++] = (char)cp;
    } else if (cp < 0x800) {
      out[n++] = (char)(0xC0 | cp >> 6);
      out[n++] = (char)(0x80 | (cp & 0x3F));
    } else {
      out[n++] = (char)(0xE0 | cp >> 12);
      out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
      out[n++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  luaL_pushresultsize(&b, n);
}

/* A number as jansson reads it: an integer unless it has a fraction or an
** exponent; a real through strtod, with the decimal point of the C
** locale whatever the process's locale is (as jansson does). */
static void push_number(lua_State *L, const unsigned char *s, size_t len) {
  char text[SCAN_NUMBER + 1];
  int real = 0;
  for (size_t k = 0; k < len; k++) {
    text[k] = (char)s[k];
    real |= s[k] == '.' || s[k] == 'e' || s[k] == 'E';
  }
  text[len] = '\0';
  if (!real) {
    /* At most SCAN_INTEGER_DIGITS digits: no overflow. */
    int negative = text[0] == '-';
    lua_Integer v = 0;
    for (size_t k = (size_t)negative; k < len; k++)
      v = v * 10 + (text[k] - '0');
    lua_pushinteger(L, negative ? -v : v);
    return;
  }
  char point = localeconv()->decimal_point[0]; /* one byte: scan_number */
  char *dot = strchr(text, '.');
  if (dot != NULL)
    *dot = point;
  lua_pushnumber(L, (lua_Number)strtod(text, NULL));
}

/* strtod reads the locale's decimal point; one of more than one byte
** (a few locales have them) cannot take the place of '.', so such reals
** are left to jansson. */
static int point_is_one_byte(void) {
  const char *point = localeconv()->decimal_point;
  return point[0] != '\0' && point[1] == '\0';
}

/* A string at the opening quote.  *escaped tells whether it held a
** backslash (a key with one is left to jansson: its decoded bytes are
** what duplicates and NULs are judged on). */
static int scan_string(scan *sc, int *escaped) {
  const unsigned char *s = sc->s;
  size_t i = sc->i + 1;
  *escaped = 0;
  for (;;) {
    if (i >= sc->n)
      return 0;
    unsigned c = s[i];
    if (c == '"')
      break;
    if (c < 0x20)
      return 0; /* a raw control character, NUL included */
    if (c == '\\') {
      *escaped = 1;
      if (i + 1 >= sc->n)
        return 0;
      unsigned e = s[i + 1];
      if (e == 'u') {
        if (i + 5 >= sc->n || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) ||
            !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
          return 0;
        /* \uD800-\uDFFF must pair up: jansson judges that. */
        unsigned hi = (unsigned)(s[i + 2] | 0x20), next = s[i + 3];
        if (hi == 'd' && ((next >= '8' && next <= '9') ||
                          ((next | 0x20) >= 'a' && (next | 0x20) <= 'f')))
          return 0;
        i += 6;
      } else if (strchr("\"\\/bfnrt", (int)e) != NULL && e != '\0') {
        i += 2;
      } else {
        return 0;
      }
    } else if (c >= 0x80) {
      size_t len = pfp__utf8_sequence(s + i, sc->n - i);
      if (len == 0)
        return 0;
      i += len;
    } else {
      i++;
    }
  }
  if (sc->L != NULL)
    push_string(sc->L, s + sc->i + 1, i - sc->i - 1, *escaped);
  sc->i = i + 1;
  return 1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, small enough that
** neither strtoll nor strtod can overflow (see SCAN_INTEGER_DIGITS). */
static int scan_number(scan *sc) {
  const unsigned char *s = sc->s;
  size_t i = sc->i, start = i;
#define DIGIT(k) ((k) < sc->n && s[k] >= '0' && s[k] <= '9')
  if (i < sc->n && s[i] == '-')
    i++;
  if (!DIGIT(i))
    return 0;
  size_t digits = i;
  if (s[i] == '0')
    i++;
  else
    while (DIGIT(i))
      i++;
  if (i - digits > SCAN_INTEGER_DIGITS)
    return 0;
  if (i < sc->n && s[i] == '.') {
    i++;
    if (!DIGIT(i))
      return 0;
    while (DIGIT(i))
      i++;
  }
  if (i < sc->n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    int negative = i < sc->n && s[i] == '-';
    if (i < sc->n && (s[i] == '+' || s[i] == '-'))
      i++;
    digits = i;
    while (DIGIT(i))
      i++;
    /* 1e999 overflows a double however short it is written; 1e-999 only
    ** underflows, which jansson accepts (as 0). */
    if (i == digits ||
        i - digits > (negative ? SCAN_NEGATIVE_EXPONENT : SCAN_EXPONENT))
      return 0;
  }
#undef DIGIT
  if (i - start > SCAN_NUMBER)
    return 0;
  if (memchr(s + start, '.', i - start) != NULL && !point_is_one_byte())
    return 0;
  if (sc->L != NULL)
    push_number(sc->L, s + start, i - start);
  sc->i = i;
  return 1;
}

static int scan_literal(scan *sc, const char *word, size_t len) {
  if (sc->n - sc->i < len || memcmp(sc->s + sc->i, word, len) != 0)
    return 0;
  sc->i += len;
  if (sc->L == NULL)
    return 1;
  if (word[0] == 'n')
    lua_pushlightuserdata(sc->L, NULL); /* null, as pfp__push_json */
  else
    lua_pushboolean(sc->L, word[0] == 't');
  return 1;
}

static int scan_value(scan *sc, int depth);

/* Makes the table of an object whose `count` keys and values lie on the
** stack from index `first` on, set in their order (as pfp__push_json sets
** jansson's, which keeps the order of the text), and leaves it in their
** place. */
static void build_object(lua_State *L, int first, size_t count) {
  lua_createtable(L, 0, (int)count);
  for (size_t k = 0; k < count; k++) {
    lua_pushvalue(L, first + 2 * (int)k);
    lua_pushvalue(L, first + 2 * (int)k + 1);
    lua_rawset(L, -3);
  }
  lua_replace(L, first);
  lua_settop(L, first);
}

/* An object at its '{': keys without escapes, none twice.  Building, its
** keys and values go on the stack until the '}'. */
static int scan_object(scan *sc, int depth) {
  struct {
    size_t at, len;
  } keys[SCAN_KEYS];
  size_t count = 0;
  int first = 0;
  if (sc->L != NULL) {
    if (!lua_checkstack(sc->L, 2 * SCAN_KEYS + 8))
      return 0;
    first = lua_gettop(sc->L) + 1;
  }
  sc->i++;
  skip_space(sc);
  if (sc->i < sc->n && sc->s[sc->i] == '}') {
    sc->i++;
    if (sc->L != NULL)
      lua_createtable(sc->L, 0, 0);
    return 1;
  }
  for (;;) {
    int escaped;
    if (sc->i >= sc->n || sc->s[sc->i] != '"' || count == SCAN_KEYS)
      return 0;
    size_t at = sc->i + 1;
    if (!scan_string(sc, &escaped) || escaped)
      return 0;
    size_t len = sc->i - 1 - at;
    for (size_t k = 0; k < count; k++)
      if (keys[k].len == len && memcmp(sc->s + keys[k].at, sc->s + at, len) == 0)
        return 0;
    keys[count].at = at;
    keys[count].len = len;
    count++;
    skip_space(sc);
    if (sc->i >= sc->n || sc->s[sc->i] != ':')
      return 0;
    sc->i++;
    if (!scan_value(sc, depth + 1))
      return 0;
    skip_space(sc);
    if (sc->i >= sc->n)
      return 0;
    if (sc->s[sc->i] == '}') {
      sc->i++;
      if (sc->L != NULL)
        build_object(sc->L, first, count);
      return 1;
    }
    if (sc->s[sc->i] != ',')
      return 0;
    sc->i++;
    skip_space(sc);
  }
}

/* An array; built, a table with the array metatable, as pfp__push_json
** makes one. */
static int scan_array(scan *sc, int depth) {
  lua_Integer count = 0;
  if (sc->L != NULL) {
    if (!lua_checkstack(sc->L, 8))
      return 0;
    lua_createtable(sc->L, 0, 0);
  }
  sc->i++;
  skip_space(sc);
  if (sc->i < sc->n && sc->s[sc->i] == ']') {
    sc->i++;
    if (sc->L != NULL)
      luaL_setmetatable(sc->L, PFP__ARRAY_MT);
    return 1;
  }
  for (;;) {
    if (!scan_value(sc, depth + 1))
      return 0;
    if (sc->L != NULL)
      lua_rawseti(sc->L, -2, ++count);
    skip_space(sc);
    if (sc->i >= sc->n)
      return 0;
    if (sc->s[sc->i] == ']') {
      sc->i++;
      if (sc->L != NULL)
        luaL_setmetatable(sc->L, PFP__ARRAY_MT);
      return 1;
    }
    if (sc->s[sc->i] != ',')
      return 0;
    sc->i++;
  }
}

/* One value, space before it skipped.  depth counts the containers it is
** nested in, as pfp__json_depth_ok does. */
static int scan_value(scan *sc, int depth) {
  int escaped;
  skip_space(sc);
  if (sc->i >= sc->n)
    return 0;
  switch (sc->s[sc->i]) {
  case '{':
    return depth < SCAN_DEPTH && scan_object(sc, depth);
  case '[':
    return depth < SCAN_DEPTH && scan_array(sc, depth);
  case '"':
    return scan_string(sc, &escaped);
  case 't':
    return scan_literal(sc, "true", 4);
  case 'f':
    return scan_literal(sc, "false", 5);
  case 'n':
    return scan_literal(sc, "null", 4);
  default:
    return scan_number(sc);
  }
}

int pfp__scan_object(const char *text, size_t len) {
  scan sc = {(const unsigned char *)text, len, 0, NULL};
  skip_space(&sc);
  if (sc.i >= len || sc.s[sc.i] != '{' || !scan_object(&sc, 0))
    return PFP__SCAN_UNSURE;
  skip_space(&sc);
  return sc.i == len ? PFP__SCAN_SURE : PFP__SCAN_UNSURE;
}

int pfp__scan_job_line(const char *line, size_t len, pfp__job_span *job) {
  scan sc = {(const unsigned char *)line, len, 0, NULL};
  job->args_at = job->args_len = 0;
  int have_name = 0, have_args = 0;
  skip_space(&sc);
  if (sc.i == len)
    return PFP__SCAN_BLANK;
  if (sc.s[sc.i] != '{')
    return PFP__SCAN_UNSURE;
  sc.i++;
  for (;;) {
    int escaped;
    skip_space(&sc);
    if (sc.i >= len || sc.s[sc.i] != '"')
      return PFP__SCAN_UNSURE;
    size_t key = sc.i + 1;
    if (!scan_string(&sc, &escaped) || escaped)
      return PFP__SCAN_UNSURE;
    size_t key_len = sc.i - 1 - key;
    skip_space(&sc);
    if (sc.i >= len || sc.s[sc.i] != ':')
      return PFP__SCAN_UNSURE;
    sc.i++;
    skip_space(&sc);
    if (key_len == 8 && memcmp(line + key, "function", 8) == 0 && !have_name) {
      /* A non-empty name without escapes: no NUL can hide in it. */
      size_t at = sc.i + 1;
      if (sc.i >= len || sc.s[sc.i] != '"' || !scan_string(&sc, &escaped) ||
          escaped || sc.i - 1 == at)
        return PFP__SCAN_UNSURE;
      job->name_at = at;
      job->name_len = sc.i - 1 - at;
      have_name = 1;
    } else if (key_len == 4 && memcmp(line + key, "args", 4) == 0 &&
               !have_args) {
      size_t at = sc.i;
      if (sc.i >= len || sc.s[sc.i] != '{' || !scan_object(&sc, 0))
        return PFP__SCAN_UNSURE;
      job->args_at = at;
      job->args_len = sc.i - at;
      have_args = 1;
    } else {
      return PFP__SCAN_UNSURE;
    }
    skip_space(&sc);
    if (sc.i >= len)
      return PFP__SCAN_UNSURE;
    if (sc.s[sc.i] == '}')
      break;
    if (sc.s[sc.i] != ',')
      return PFP__SCAN_UNSURE;
    sc.i++;
  }
  sc.i++;
  skip_space(&sc);
  return sc.i == len && have_name ? PFP__SCAN_SURE : PFP__SCAN_UNSURE;
}

int pfp__push_json_text(lua_State *L, const char *text, size_t len) {
  int base = lua_gettop(L);
  scan sc = {(const unsigned char *)text, len, 0, L};
  skip_space(&sc);
  if (sc.i < len && sc.s[sc.i] == '{' && scan_object(&sc, 0)) {
    skip_space(&sc);
    if (sc.i == len)
      return 0;
  }
  lua_settop(L, base);
  return -1;
}
