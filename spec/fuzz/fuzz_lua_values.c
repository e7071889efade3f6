/*
** fuzz_lua_values.c — Lua values -> JSON (pfp__lua_to_json), the path of
** every result a function returns.
**
** The input is a tiny program that builds Lua values on the stack: numbers
** at every edge, strings with invalid UTF-8 and NUL bytes, tables with odd
** keys, arrays, deep nesting, shared subtables and cycles, and values that
** have no JSON form.  The value on top is then converted.  Either the
** conversion succeeds, and the text parses, pushes back into Lua and is
** written again as the very same text; or it fails with a message naming
** the path from the root ("result...").  Never a crash, never a leak.
*/
#include <float.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "pfp_internal.h"

#define FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define MAX_SLOTS 64
/* A table reachable along many paths is written once per path, so a few
** insertions of shared tables can make the text exponentially large; this
** keeps every input fast while still allowing sharing. */
#define MAX_TABLE_INSERTS 8
#define MAX_NEST_LEVELS 1100

static lua_State *L;

typedef struct program {
  const uint8_t *d;
  size_t n, pos;
  int base;          /* stack top before the program ran */
  int table_inserts; /* insertions of a table value so far */
  int nest_levels;   /* tables made by NEST so far */
} program;

/* Past the end of the input, every read gives zeros. */
static unsigned get_byte(program *p) {
  return p->pos < p->n ? p->d[p->pos++] : 0;
}

static void get_bytes(program *p, void *out, size_t len) {
  unsigned char *o = out;
  for (size_t i = 0; i < len; i++)
    o[i] = (unsigned char)get_byte(p);
}

static int slots(const program *p) { return lua_gettop(L) - p->base; }

/* The stack index of a slot picked by the next byte (1 = bottom). */
static int pick_slot(program *p) {
  return p->base + 1 + (int)(get_byte(p) % (unsigned)slots(p));
}

static double edge_double(unsigned i) {
  static const double edges[] = {
      0.0,       -0.0,      0.1,        -0.1,       1.0,
      0.5,       1e15,      1e16,       1e17,       1e21,
      1e22,      1e-7,      123456789012345678.0,   9007199254740992.0,
      9007199254740993.0,   9223372036854775808.0,  -9223372036854775808.0,
      18446744073709551616.0, DBL_MAX,  -DBL_MAX,   DBL_MIN,
      -DBL_MIN,  DBL_EPSILON, 4.9406564584124654e-324, /* smallest subnormal */
      2.2250738585072009e-308, /* largest subnormal */
      1.7976931348623157e308, 5e-324, 1.0 / 3.0,     2.0 / 3.0,
      100.0,     1e300,     1e-300,
  };
  unsigned n = sizeof edges / sizeof edges[0];
  /* The rest of the byte range gives what is not a constant expression. */
  switch (i % (n + 3)) {
  case 0:
    return NAN;
  case 1:
    return INFINITY;
  case 2:
    return -INFINITY;
  default:
    return edges[i % (n + 3) - 3];
  }
}

static void push_short_string(program *p, unsigned max) {
  char s[64];
  size_t len = get_byte(p) % max;
  get_bytes(p, s, len);
  lua_pushlstring(L, s, len);
}

/* Pushes a key; returns 0 when the next byte picked one Lua cannot use as
** a key (NaN), with nothing pushed. */
static int push_key(program *p) {
  unsigned kind = get_byte(p) % 7;
  double f;
  lua_Integer i;
  switch (kind) {
  case 0:
  case 1:
    push_short_string(p, 12);
    return 1;
  case 2:
    lua_pushinteger(L, (lua_Integer)(signed char)get_byte(p));
    return 1;
  case 3:
    get_bytes(p, &i, sizeof i);
    lua_pushinteger(L, i);
    return 1;
  case 4:
    get_bytes(p, &f, sizeof f);
    break;
  case 5:
    f = edge_double(get_byte(p));
    break;
  default:
    lua_pushboolean(L, get_byte(p) & 1);
    return 1;
  }
  if (isnan(f))
    return 0;
  lua_pushnumber(L, f);
  return 1;
}

/* t[key] = v for the table at index t and the value on top (popped). */
static void set_field(program *p, int t) {
  if (lua_type(L, -1) == LUA_TTABLE &&
      ++p->table_inserts > MAX_TABLE_INSERTS) {
    lua_pop(L, 1);
    return;
  }
  if (!push_key(p)) {
    lua_pop(L, 1);
    return;
  }
  lua_insert(L, -2);
  lua_rawset(L, t);
}

static int dummy_function(lua_State *l) {
  (void)l;
  return 0;
}

static void push_special(program *p) {
  switch (get_byte(p) % 8) {
  case 0:
    lua_pushcfunction(L, dummy_function);
    break;
  case 1:
    lua_newuserdatauv(L, 8, 0);
    break;
  case 2:
    lua_pushlightuserdata(L, NULL); /* pfp.null */
    break;
  case 3:
    lua_pushlightuserdata(L, &L);
    break;
  case 4:
    lua_pushboolean(L, 1);
    break;
  case 5:
    lua_pushboolean(L, 0);
    break;
  case 6:
    lua_pushnil(L);
    break;
  default:
    lua_newthread(L);
    break;
  }
}

/* Wraps the value on top in `levels` tables, as an array element or under
** a key, which reaches the depth limit in a few bytes of input. */
static void nest(program *p) {
  unsigned levels = get_byte(p) * 4 + 1;
  int as_object = get_byte(p) & 1;
  for (unsigned k = 0; k < levels && p->nest_levels < MAX_NEST_LEVELS; k++) {
    p->nest_levels++;
    lua_createtable(L, 1, 1);
    lua_insert(L, -2);
    if (as_object)
      lua_setfield(L, -2, "k");
    else
      lua_rawseti(L, -2, 1);
  }
}

static void run(program *p) {
  while (p->pos < p->n) {
    unsigned op = get_byte(p) % 14;
    int n = slots(p);
    /* Ops that push need room; ops that use values need them. */
    if (op <= 5 || op == 10 || op == 12) {
      if (n >= MAX_SLOTS)
        continue;
    }
    switch (op) {
    case 0: {
      lua_Integer i;
      get_bytes(p, &i, sizeof i);
      lua_pushinteger(L, i);
      break;
    }
    case 1:
      lua_pushinteger(L, (lua_Integer)(signed char)get_byte(p));
      break;
    case 2: {
      double f;
      get_bytes(p, &f, sizeof f);
      lua_pushnumber(L, f);
      break;
    }
    case 3:
      lua_pushnumber(L, edge_double(get_byte(p)));
      break;
    case 4:
      push_short_string(p, 40);
      break;
    case 5:
      lua_newtable(L);
      break;
    case 6: /* mark as array */
      if (n >= 1 && lua_istable(L, -1))
        luaL_setmetatable(L, PFP__ARRAY_MT);
      break;
    case 7: /* t[key] = top, t picked among the slots below the top */
      if (n >= 2) {
        int t = p->base + 1 + (int)(get_byte(p) % (unsigned)(n - 1));
        if (lua_istable(L, t))
          set_field(p, t);
        else
          lua_pop(L, 1);
      }
      break;
    case 8: /* append: t[#t + 1] = top */
      if (n >= 2 && lua_istable(L, -2)) {
        if (lua_type(L, -1) == LUA_TTABLE &&
            ++p->table_inserts > MAX_TABLE_INSERTS) {
          lua_pop(L, 1);
          break;
        }
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      }
      break;
    case 9: /* a table that contains itself, or a slot below it */
      if (n >= 1 && lua_istable(L, -1)) {
        int t = lua_gettop(L);
        lua_pushvalue(L, (get_byte(p) & 1) ? t : pick_slot(p));
        if (!lua_istable(L, -1)) {
          lua_pop(L, 1);
          break;
        }
        set_field(p, t);
      }
      break;
    case 10:
      push_special(p);
      break;
    case 11:
      if (n >= 1)
        lua_pop(L, 1);
      break;
    case 12:
      if (n >= 1)
        lua_pushvalue(L, pick_slot(p));
      break;
    default:
      if (n >= 1)
        nest(p);
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    pfp__setup_state(L);
    /* MAX_SLOTS values, the key and value of a set, and the encoder's. */
    FUZZ_CHECK(lua_checkstack(L, MAX_SLOTS + 16));
  }
  program p = {data, size, 0, lua_gettop(L), 0, 0};
  run(&p);
  if (slots(&p) == 0)
    lua_pushnil(L);
  int top = lua_gettop(L);

  pfp__buf b = {0};
  char *msg = NULL;
  int rc = pfp__lua_to_json(L, -1, "result", &b, &msg);
  FUZZ_CHECK(lua_gettop(L) == top);
  if (rc != 0) {
    /* Refused on purpose, with a path from the root. */
    FUZZ_CHECK(rc == -2);
    FUZZ_CHECK(msg != NULL && strncmp(msg, "result", 6) == 0);
    FUZZ_CHECK(msg[6] == '.' || msg[6] == '[' || msg[6] == ':');
  } else {
    FUZZ_CHECK(msg == NULL);
    json_error_t err;
    json_t *v = json_loadb(b.data, b.len, FLAGS, &err);
    if (v == NULL)
      fprintf(stderr, "written text does not parse: %s\n%.*s\n", err.text,
              (int)(b.len > 400 ? 400 : b.len), b.data);
    FUZZ_CHECK(v != NULL);
    FUZZ_CHECK(pfp__push_json(L, v) == 0);
    pfp__buf again = {0};
    char *msg2 = NULL;
    int rc2 = pfp__lua_to_json(L, -1, "result", &again, &msg2);
    if (rc2 != 0)
      fprintf(stderr, "second conversion refused: %s\n", msg2);
    FUZZ_CHECK(rc2 == 0);
    if (again.len != b.len || memcmp(again.data, b.data, b.len) != 0)
      fprintf(stderr, "first:  %.*s\nsecond: %.*s\n", (int)b.len, b.data,
              (int)again.len, again.data);
    FUZZ_CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
    pfp__buf_free(&again);
    json_decref(v);
  }
  free(msg);
  pfp__buf_free(&b);
  lua_settop(L, p.base);
  /* What this input made is freed now: libFuzzer runs a (slow) leak
  ** check after any input that allocated more than it freed. */
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
