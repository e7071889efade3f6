/*
** convert.c — converting between Lua values and JSON, on purpose.
**
** The mapping (documented in README.md, "Values across the pipe"):
**   integer <-> JSON integer (full int64); float <-> JSON number with a '.'
**   or exponent (shortest text that reads back as the same double);
**   table with keys 1..n <-> array; table with string keys <-> object;
**   empty table -> {} unless it carries the array metatable (pfp.array),
**   which decoded arrays keep; JSON null <-> pfp.null (a NULL light
**   userdata, the same value as cjson.null).
** Everything else is refused with a message naming the path to the value,
** e.g. "result.items[3].cb: function cannot be serialized".
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

/* ---- JSON -> Lua ----------------------------------------------------- */

/* Containers are counted as levels: a value nested in PFP_MAX_DEPTH arrays
** or objects is fine, one more level is refused (as the encoder does). */
static int too_deep(const json_t *v, int depth) {
  return (json_is_array(v) || json_is_object(v)) && depth >= PFP_MAX_DEPTH;
}

static int push_json_at(lua_State *L, const json_t *v, int depth) {
  if (too_deep(v, depth) || !lua_checkstack(L, 4))
    return -1;
  switch (json_typeof(v)) {
  case JSON_NULL:
    lua_pushlightuserdata(L, NULL);
    return 0;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    return 0;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    return 0;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    return 0;
  case JSON_REAL:
    lua_pushnumber(L, (lua_Number)json_real_value(v));
    return 0;
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    return 0;
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      if (push_json_at(L, json_array_get(v, i), depth + 1) != 0) {
        lua_pop(L, 1);
        return -1;
      }
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, PFP__ARRAY_MT);
    return 0;
  }
  case JSON_OBJECT: {
    const char *key;
    size_t key_len;
    json_t *value;
    size_t n = json_object_size(v);
    lua_createtable(L, 0, n > INT32_MAX ? INT32_MAX : (int)n);
    json_object_keylen_foreach((json_t *)v, key, key_len, value) {
      lua_pushlstring(L, key, key_len);
      if (push_json_at(L, value, depth + 1) != 0) {
        lua_pop(L, 2);
        return -1;
      }
      lua_rawset(L, -3);
    }
    return 0;
  }
  }
  return -1;
}

int pfp__push_json(lua_State *L, const json_t *v) {
  return push_json_at(L, v, 0);
}

static int depth_ok(const json_t *v, int depth) {
  if (too_deep(v, depth))
    return 0;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!depth_ok(json_array_get(v, i), depth + 1))
        return 0;
  } else if (json_is_object(v)) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value) {
      if (!depth_ok(value, depth + 1))
        return 0;
    }
  }
  return 1;
}

int pfp__json_depth_ok(const json_t *v) { return depth_ok(v, 0); }

int pfp__json_keys_have_nul(const json_t *v) {
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (pfp__json_keys_have_nul(json_array_get(v, i)))
        return 1;
  } else if (json_is_object(v)) {
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach((json_t *)v, key, key_len, value) {
      if (memchr(key, '\0', key_len) != NULL || pfp__json_keys_have_nul(value))
        return 1;
    }
  }
  return 0;
}

char *pfp__json_error_text(const json_error_t *err) {
  char *text = pfp__strdup(err->text);
  char *near = text ? strstr(text, " near '") : NULL;
  if (near != NULL)
    *near = '\0';
  return text;
}

json_t *pfp__parse_object(const char *text, size_t len, const char *name,
                          char **errmsg) {
  json_error_t err;
  /* jansson's own limit (2048 levels) stops runaway nesting while parsing;
  ** ours is checked afterwards so both directions share one limit. */
  json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                         &err);
  if (v == NULL) {
    char *why = pfp__json_error_text(&err);
    if (err.line > 0)
      *errmsg = pfp__strdupf("%s:%d:%d: invalid JSON: %s", name, err.line,
                             err.column, why ? why : "out of memory");
    else
      *errmsg = pfp__strdupf("%s: invalid JSON: %s", name,
                             why ? why : "out of memory");
    free(why);
    return NULL;
  }
  const char *problem = NULL;
  if (!json_is_object(v))
    problem = "expected a JSON object";
  else if (!pfp__json_depth_ok(v))
    problem = "nested deeper than " PFP__STR(PFP_MAX_DEPTH) " levels";
  else if (pfp__json_keys_have_nul(v))
    problem = "an object key contains a NUL byte";
  if (problem) {
    *errmsg = pfp__strdupf("%s: %s", name, problem);
    json_decref(v);
    return NULL;
  }
  return v;
}

/* ---- Lua -> JSON ----------------------------------------------------- */

/* One step of the path from the root to the value being written. */
typedef struct path_step {
  const void *table; /* the table at this depth, for cycle detection */
  const char *key;   /* the key leading to the child, or NULL for index */
  size_t key_len;
  lua_Integer index;
} path_step;

/* A string key in an object, kept by pointer while the table holds it. */
typedef struct key_ref {
  const char *s;
  size_t len;
} key_ref;

/* Room kept in the encoder itself, on the caller's stack, before either
** list moves to the heap: a result of ordinary shape is encoded without a
** single malloc.  (In a child, each block malloc hands out lies on a page
** shared with the host, and writing it costs a copy-on-write fault.) */
#define STEPS_INLINE 32
#define KEYS_INLINE 64

typedef struct encoder {
  lua_State *L;
  pfp__buf *out;
  const char *root;
  path_step *steps; /* nsteps entries: steps_inline, or PFP_MAX_DEPTH + 1 */
  size_t nsteps;
  /* The keys of the objects being written, a stack: each object sorts its
  ** own above those of the objects it is inside.  Used by index, as a
  ** nested object may move the list. */
  key_ref *keys; /* keys_cap entries: keys_inline, or the heap */
  size_t keys_len, keys_cap;
  int array_mt;     /* stack index of the array metatable */
  char *errmsg;
  pfp__json_holes *holes; /* NULL: every string goes into out */
  path_step steps_inline[STEPS_INLINE];
  key_ref keys_inline[KEYS_INLINE];
} encoder;

/* Registry key of the table that keeps the strings of holes alive. */
static const char hole_anchors = 0;

void pfp__json_holes_release(lua_State *L, const pfp__json_holes *holes) {
  if (holes->n > 0) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &hole_anchors);
  }
}

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') ||
                  (s[0] >= 'A' && s[0] <= 'Z')))
    return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

#define PATH_ENDS 8     /* steps shown at each end of a long path */
#define PATH_KEY_MAX 64 /* bytes of a key shown */

/* Records "path: what" as the encoder's error; returns -2. */
static int fail(encoder *e, int depth, const char *fmt, ...)
    PFP__PRINTF(3, 4);
static int fail(encoder *e, int depth, const char *fmt, ...) {
  pfp__buf msg = {0};
  va_list ap;
  char what[256];
  pfp__buf_puts(&msg, e->root);
  /* The path stays readable and small however deep or long the keys are:
  ** long keys are cut, and only the first and last steps of a deep path
  ** are shown. */
  for (int d = 0; d < depth; d++) {
    const path_step *s = &e->steps[d];
    if (depth > 2 * PATH_ENDS && d == PATH_ENDS) {
      pfp__buf_printf(&msg, "\xE2\x80\xA6(%d levels)\xE2\x80\xA6",
                      depth - 2 * PATH_ENDS);
      d = depth - PATH_ENDS - 1;
      continue;
    }
    size_t len = s->key_len > PATH_KEY_MAX ? PATH_KEY_MAX : s->key_len;
    const char *cut = len < s->key_len ? "\xE2\x80\xA6" : ""; /* U+2026 */
    if (s->key == NULL)
      pfp__buf_printf(&msg, "[%lld]", (long long)s->index);
    else if (is_identifier(s->key, s->key_len))
      pfp__buf_printf(&msg, ".%.*s%s", (int)len, s->key, cut);
    else {
      pfp__buf_puts(&msg, "[");
      pfp__jw_string(&msg, s->key, len, 1, NULL);
      pfp__buf_printf(&msg, "%s]", cut);
    }
  }
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  pfp__buf_printf(&msg, ": %s", what);
  free(e->errmsg);
  e->errmsg = msg.data; /* NULL if even this ran out of memory */
  return -2;
}

static int encode_value(encoder *e, int idx, int depth);

/* Makes room for n more keys above those in use.  0, or -1 (memory). */
static int grow_keys(encoder *e, size_t n) {
  size_t want = e->keys_len + n, cap = e->keys_cap * 2;
  if (want < e->keys_len)
    return -1;
  if (cap < want)
    cap = want;
  if (cap > SIZE_MAX / sizeof *e->keys)
    return -1;
  key_ref *keys = e->keys == e->keys_inline ? malloc(cap * sizeof *keys)
                                            : realloc(e->keys, cap * sizeof *keys);
  if (keys == NULL)
    return -1;
  if (e->keys == e->keys_inline)
    memcpy(keys, e->keys_inline, e->keys_len * sizeof *keys);
  e->keys = keys;
  e->keys_cap = cap;
  return 0;
}

static int compare_keys(const void *a, const void *b) {
  const key_ref *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->s, y->s, n);
  if (c != 0)
    return c;
  return (x->len > y->len) - (x->len < y->len);
}

static int encode_table(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  if (depth >= PFP_MAX_DEPTH)
    return fail(e, depth, "table nested deeper than %d levels", PFP_MAX_DEPTH);
  if ((size_t)depth >= e->nsteps) {
    path_step *all = malloc((PFP_MAX_DEPTH + 1) * sizeof *all);
    if (all == NULL)
      return -1;
    memcpy(all, e->steps, e->nsteps * sizeof *all);
    e->steps = all;
    e->nsteps = PFP_MAX_DEPTH + 1;
  }
  for (int d = 0; d < depth; d++)
    if (e->steps[d].table == self)
      return fail(e, depth, "table contains itself (a cycle)");
  if (!lua_checkstack(L, 6))
    return fail(e, depth, "Lua stack exhausted");
  e->steps[depth].table = self;

  int marked_array = 0;
  if (lua_getmetatable(L, idx)) {
    marked_array = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
  }

  /* One pass to classify the keys; nothing is written yet. */
  size_t n_int = 0, n_str = 0;
  lua_Integer max_int = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    int kt = lua_type(L, -1);
    if (kt == LUA_TSTRING) {
      n_str++;
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -1) &&
               lua_tointeger(L, -1) >= 1) {
      n_int++;
      if (lua_tointeger(L, -1) > max_int)
        max_int = lua_tointeger(L, -1);
    } else {
      const char *what =
          kt == LUA_TNUMBER
              ? (lua_isinteger(L, -1) ? "an integer key below 1"
                                      : "a non-integer number key")
              : lua_typename(L, kt);
      lua_pop(L, 1);
      if (kt == LUA_TNUMBER)
        return fail(e, depth, "table has %s", what);
      return fail(e, depth, "table key of type %s cannot be serialized",
                  what);
    }
  }

  int as_array;
  if (n_int == 0 && n_str == 0) {
    return pfp__buf_puts(e->out, marked_array ? "[]" : "{}");
  } else if (n_str == 0 && (lua_Integer)n_int == max_int) {
    as_array = 1;
  } else if (n_int == 0 && !marked_array) {
    as_array = 0;
  } else if (marked_array && n_str > 0) {
    return fail(e, depth, "array (pfp.array) has string keys");
  } else if (n_str == 0) {
    return fail(e, depth,
                "table is a sparse array (%zu values, highest index %lld)",
                n_int, (long long)max_int);
  } else {
    return fail(e, depth,
                "table has mixed keys (%zu integer and %zu string keys)", n_int,
                n_str);
  }

  if (as_array) {
    if (pfp__buf_puts(e->out, "[") != 0)
      return -1;
    for (lua_Integer i = 1; i <= max_int; i++) {
      if (i > 1 && pfp__buf_puts(e->out, ",") != 0)
        return -1;
      e->steps[depth].key = NULL;
      e->steps[depth].index = i;
      lua_rawgeti(L, idx, i);
      int rc = encode_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc != 0)
        return rc;
    }
    return pfp__buf_puts(e->out, "]");
  }

  /* Objects are written with sorted keys, so the same table always gives
  ** the same text (Lua's traversal order changes from run to run). */
  if (n_str > e->keys_cap - e->keys_len && grow_keys(e, n_str) != 0)
    return -1;
  size_t base = e->keys_len, k = base;
  e->keys_len += n_str;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    e->keys[k].s = lua_tolstring(L, -1, &e->keys[k].len);
    k++;
  }
  qsort(e->keys + base, n_str, sizeof *e->keys, compare_keys);
  int rc = pfp__buf_puts(e->out, "{");
  for (size_t i = 0; rc == 0 && i < n_str; i++) {
    size_t bad_at = 0;
    key_ref key = e->keys[base + i];
    e->steps[depth].key = key.s;
    e->steps[depth].key_len = key.len;
    if (i > 0 && pfp__buf_puts(e->out, ",") != 0) {
      rc = -1;
      break;
    }
    if (memchr(key.s, '\0', key.len) != NULL) {
      /* JSON could carry it as \u0000, but jansson refuses such keys, so
      ** the host could not read the result back. */
      rc = fail(e, depth + 1, "key contains a NUL byte");
      break;
    }
    rc = pfp__jw_string(e->out, key.s, key.len, 0, &bad_at);
    if (rc == -2) {
      rc = fail(e, depth + 1, "key is not valid UTF-8 (byte %zu)", bad_at + 1);
      break;
    }
    if (rc == 0)
      rc = pfp__buf_puts(e->out, ":");
    if (rc == 0) {
      lua_pushlstring(L, key.s, key.len);
      lua_rawget(L, idx);
      rc = encode_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
  }
  e->keys_len = base;
  if (rc == 0)
    rc = pfp__buf_puts(e->out, "}");
  return rc;
}

static int encode_value(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return pfp__buf_puts(e->out, "null");
  case LUA_TBOOLEAN:
    return pfp__buf_puts(e->out, lua_toboolean(L, idx) ? "true" : "false");
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return pfp__jw_integer(e->out, (long long)lua_tointeger(L, idx));
    else {
      double v = (double)lua_tonumber(L, idx);
      int rc = pfp__jw_double(e->out, v);
      if (rc == -2)
        return fail(e, depth, "%s cannot be serialized",
                    isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"));
      return rc;
    }
  case LUA_TSTRING: {
    size_t len, bad_at = 0;
    const char *s = lua_tolstring(L, idx, &len);
    if (e->holes != NULL && len >= PFP__HOLE_MIN &&
        e->holes->n < PFP__HOLES_MAX && pfp__jw_plain_prefix(s, len) == len) {
      /* Left out of the text, written later straight from the string,
      ** which a registry table keeps alive until pfp__json_holes_release:
      ** a finalizer run by a collection meanwhile cannot free it by
      ** taking it out of the result. */
      int at = lua_absindex(L, idx);
      if (e->holes->n == 0) {
        lua_createtable(L, PFP__HOLES_MAX, 0);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &hole_anchors);
      }
      lua_rawgetp(L, LUA_REGISTRYINDEX, &hole_anchors);
      lua_pushvalue(L, at);
      lua_rawseti(L, -2, (lua_Integer)e->holes->n + 1);
      lua_pop(L, 1);
      pfp__json_hole *h = &e->holes->list[e->holes->n++];
      if (pfp__buf_append(e->out, "\"", 1) != 0)
        return -1;
      *h = (pfp__json_hole){e->out->len, s, len};
      return pfp__buf_append(e->out, "\"", 1);
    }
    int rc = pfp__jw_string(e->out, s, len, 0, &bad_at);
    if (rc == -2)
      return fail(e, depth, "string is not valid UTF-8 (byte %zu)",
                  bad_at + 1);
    return rc;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return pfp__buf_puts(e->out, "null");
    return fail(e, depth, "light userdata cannot be serialized");
  case LUA_TTABLE:
    return encode_table(e, idx, depth);
  default:
    return fail(e, depth, "%s cannot be serialized",
                lua_typename(L, lua_type(L, idx)));
  }
}

int pfp__lua_to_json(lua_State *L, int idx, const char *root, pfp__buf *b,
                     char **errmsg) {
  return pfp__lua_to_json_holes(L, idx, root, b, NULL, errmsg);
}

int pfp__lua_to_json_holes(lua_State *L, int idx, const char *root,
                           pfp__buf *b, pfp__json_holes *holes,
                           char **errmsg) {
  encoder e;
  e.holes = holes;
  if (holes != NULL)
    holes->n = 0;
  idx = lua_absindex(L, idx);
  *errmsg = NULL;
  e.L = L;
  e.out = b;
  e.root = root;
  e.errmsg = NULL;
  e.steps = e.steps_inline;
  e.nsteps = STEPS_INLINE;
  e.keys = e.keys_inline;
  e.keys_len = 0;
  e.keys_cap = KEYS_INLINE;
  if (!lua_checkstack(L, 2))
    return -1;
  luaL_getmetatable(L, PFP__ARRAY_MT);
  e.array_mt = lua_gettop(L);
  int rc = encode_value(&e, idx, 0);
  lua_pop(L, 1);
  if (e.steps != e.steps_inline)
    free(e.steps);
  if (e.keys != e.keys_inline)
    free(e.keys);
  if (rc == -2) {
    if (e.errmsg == NULL)
      return -1;
    *errmsg = e.errmsg;
  } else {
    free(e.errmsg);
  }
  return rc < 0 ? rc : 0;
}
