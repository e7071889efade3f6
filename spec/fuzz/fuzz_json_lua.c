/*
** fuzz_json_lua.c — JSON -> Lua -> JSON, the path of a context and of args
** (pfp__push_json) and of a result (pfp__lua_to_json).
**
** Any JSON text jansson accepts must come back as an equal JSON value after
** a trip through a Lua state, except for what pfp refuses on purpose: values
** nested deeper than PFP_MAX_DEPTH (refused by pfp__push_json, with nothing
** left on the stack) and object keys containing a NUL byte (refused by the
** encoder, since jansson cannot read such keys back).  pfp's own writer of
** jansson values (pfp__jw_json) must round-trip too, and so must args
** text decoded without jansson (pfp__push_json_text).
*/
#include <string.h>

#include "fuzz.h"
#include "pfp_internal.h"

#define FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* One state for every input, as a host keeps one across many results;
** reachable from here, so LeakSanitizer does not count it. */
static lua_State *L;

static void check_equal_after_reparse(const json_t *want, const pfp__buf *b) {
  json_error_t err;
  json_t *again = json_loadb(b->data, b->len, FLAGS, &err);
  if (again == NULL)
    fprintf(stderr, "written text does not parse: %s\n%.*s\n", err.text,
            (int)(b->len > 400 ? 400 : b->len), b->data);
  FUZZ_CHECK(again != NULL);
  FUZZ_CHECK(json_equal(want, again));
  json_decref(again);
}

/* The Lua values at a and b are the same: types, integer or float (and
** the float's bits, so -0.0 is not 0.0), bytes of strings, and tables
** with the same metatable and the same keys holding the same values. */
static int same_value(lua_State *S, int a, int b, int depth) {
  if (depth > PFP_MAX_DEPTH + 1 || !lua_checkstack(S, 6))
    return 0;
  int type = lua_type(S, a);
  if (type != lua_type(S, b))
    return 0;
  switch (type) {
  case LUA_TNUMBER:
    if (lua_isinteger(S, a) != lua_isinteger(S, b))
      return 0;
    if (lua_isinteger(S, a))
      return lua_tointeger(S, a) == lua_tointeger(S, b);
    lua_Number x = lua_tonumber(S, a), y = lua_tonumber(S, b);
    return memcmp(&x, &y, sizeof x) == 0;
  case LUA_TSTRING: {
    size_t la, lb;
    const char *sa = lua_tolstring(S, a, &la), *sb = lua_tolstring(S, b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  }
  case LUA_TTABLE: {
    int ma = lua_getmetatable(S, a), mb = lua_getmetatable(S, b);
    int same_mt = ma == mb && (!ma || lua_rawequal(S, -1, -2));
    lua_pop(S, ma + mb);
    if (!same_mt || lua_rawlen(S, a) != lua_rawlen(S, b))
      return 0;
    size_t na = 0, nb = 0;
    lua_pushnil(S);
    while (lua_next(S, a) != 0) {
      na++;
      lua_pushvalue(S, -2);
      lua_rawget(S, b);
      int same = same_value(S, lua_gettop(S) - 1, lua_gettop(S), depth + 1);
      lua_pop(S, 2);
      if (!same) {
        lua_pop(S, 1);
        return 0;
      }
    }
    lua_pushnil(S);
    while (lua_next(S, b) != 0) {
      nb++;
      lua_pop(S, 1);
    }
    return na == nb;
  }
  default:
    return lua_rawequal(S, a, b);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    pfp__setup_state(L);
  }
  json_error_t err;
  json_t *v = json_loadb((const char *)data, size, FLAGS, &err);
  if (v == NULL)
    return 0;
  int deep = !pfp__json_depth_ok(v);
  int nul_key = pfp__json_keys_have_nul(v);
  int top = lua_gettop(L);

  if (pfp__push_json(L, v) != 0) {
    /* Refused only for depth, and then with nothing pushed. */
    FUZZ_CHECK(deep);
    FUZZ_CHECK(lua_gettop(L) == top);
    json_decref(v);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
  }
  FUZZ_CHECK(!deep);
  FUZZ_CHECK(lua_gettop(L) == top + 1);

  pfp__buf b = {0};
  char *msg = NULL;
  int rc = pfp__lua_to_json(L, -1, "result", &b, &msg);
  FUZZ_CHECK(lua_gettop(L) == top + 1);
  if (rc != 0) {
    fprintf(stderr, "refused: %s\n", msg ? msg : "(no message)");
    FUZZ_CHECK(rc == -2 && nul_key);
    FUZZ_CHECK(msg != NULL && strncmp(msg, "result", 6) == 0 &&
               strstr(msg, "NUL") != NULL);
  } else {
    FUZZ_CHECK(!nul_key);
    check_equal_after_reparse(v, &b);
  }
  free(msg);
  pfp__buf_free(&b);
  lua_settop(L, top);

  /* Args text the scanner is sure of is decoded without jansson
  ** (pfp__push_json_text): it must make the very value pfp__push_json
  ** makes of jansson's reading.  Other text it must leave alone. */
  int sure = pfp__scan_object((const char *)data, size) == PFP__SCAN_SURE;
  if (pfp__push_json_text(L, (const char *)data, size) == 0) {
    FUZZ_CHECK(sure && !deep && !nul_key);
    FUZZ_CHECK(lua_gettop(L) == top + 1);
    FUZZ_CHECK(pfp__push_json(L, v) == 0);
    FUZZ_CHECK(same_value(L, top + 1, top + 2, 0));
  } else {
    FUZZ_CHECK(!sure);
    FUZZ_CHECK(lua_gettop(L) == top);
  }
  lua_settop(L, top);

  /* The writer of jansson values (used for records) reads back equal too;
  ** it writes keys up to their first NUL, so such keys are left out. */
  if (!nul_key) {
    FUZZ_CHECK(pfp__jw_json(&b, v) == 0);
    check_equal_after_reparse(v, &b);
    pfp__buf_free(&b);
  }
  json_decref(v);
  /* What this input made is freed now: libFuzzer runs a (slow) leak
  ** check after any input that allocated more than it freed. */
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
