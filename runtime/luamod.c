/*
** luamod.c — the Lua module `pfp`: require "pfp" from a stock lua5.4, or
** from scripts run by pfp-run and the C API (where it is preloaded).
**
**   pfp.Result([name])        a Result: {function_name = name, result = {}}
**   pfp.MultiProcessor{...}   registrations, execute_parallel, results
**   pfp.null                  JSON null (the same value as cjson.null)
**   pfp.array([t])            marks t (or a new table) as a JSON array
**   pfp.is_array(t)
**   pfp.encode(v), pfp.decode(s)   the exact JSON mapping pfp uses
**   pfp.queue()               a stand-in q for unit-testing a function
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pfp_internal.h"

#define MP_MT "pfp.MultiProcessor"
#define BOX_MT "pfp.processor_box"
#define STANDIN_MT "pfp.stand_in_queue"

void pfp__setup_state(lua_State *L) {
  luaL_newmetatable(L, PFP__ARRAY_MT);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, PFP__RESULT_MT)) {
    lua_pushliteral(L, "Result");
    lua_setfield(L, -2, "__type");
  }
  lua_pop(L, 1);
  pfp__child_setup_queue(L);
}

/* ---- values ------------------------------------------------------------ */

static int l_result(lua_State *L) {
  const char *name = luaL_optstring(L, 1, NULL);
  if (name == NULL)
    name = pfp__current_name();
  lua_createtable(L, 0, 2);
  if (name != NULL) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "function_name");
  }
  lua_newtable(L);
  lua_setfield(L, -2, "result");
  luaL_setmetatable(L, PFP__RESULT_MT);
  return 1;
}

static int l_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, PFP__ARRAY_MT);
    if (!lua_rawequal(L, -1, -2))
      return luaL_error(L, "pfp.array: the table already has another "
                           "metatable");
    lua_pop(L, 2);
    return 1;
  }
  luaL_setmetatable(L, PFP__ARRAY_MT);
  return 1;
}

static int l_is_array(lua_State *L) {
  int yes = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, PFP__ARRAY_MT);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  pfp__buf b = {0};
  char *errmsg = NULL;
  int rc = pfp__lua_to_json(L, 1, "value", &b, &errmsg);
  if (rc != 0) {
    pfp__buf_free(&b);
    if (errmsg == NULL)
      return luaL_error(L, "pfp.encode: not enough memory");
    lua_pushfstring(L, "pfp.encode: %s", errmsg);
    free(errmsg);
    return lua_error(L);
  }
  lua_pushlstring(L, b.data, b.len);
  pfp__buf_free(&b);
  return 1;
}

/* Userdata that owns a json_t, so a Lua error cannot leak it. */
static int json_box_gc(lua_State *L) {
  json_t **box = lua_touserdata(L, 1);
  json_decref(*box);
  *box = NULL;
  return 0;
}

static int l_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  json_error_t err;
  json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  if (luaL_newmetatable(L, "pfp.json_box")) {
    lua_pushcfunction(L, json_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  *box = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (*box == NULL)
    return luaL_error(L, "pfp.decode: line %d, column %d: %s", err.line,
                      err.column, err.text);
  if (pfp__push_json(L, *box) != 0)
    return luaL_error(L, "pfp.decode: nested deeper than %d levels",
                      PFP_MAX_DEPTH);
  return 1;
}

/* ---- the stand-in queue ----------------------------------------------- */

/* q:put(r) outside any host: checks r the way a child would (it must turn
** into JSON, and only one put is allowed) and keeps it for the test:
** q.value (what was put), q.result, q.function_name, q.json. */
static int standin_put(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  if (lua_getfield(L, 1, "put_count") != LUA_TNIL)
    return luaL_error(L, "q:put: a result was already put (put may be "
                         "called once per function)");
  lua_pop(L, 1);
  int is_result = 0;
  if (lua_getmetatable(L, 2)) {
    luaL_getmetatable(L, PFP__RESULT_MT);
    is_result = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (is_result) {
    lua_getfield(L, 2, "result");
    lua_getfield(L, 2, "function_name");
  } else {
    lua_pushvalue(L, 2);
    lua_pushnil(L);
  }
  pfp__buf b = {0};
  char *errmsg = NULL;
  int rc = pfp__lua_to_json(L, 3, "result", &b, &errmsg);
  if (rc != 0) {
    pfp__buf_free(&b);
    if (errmsg == NULL)
      return luaL_error(L, "q:put: not enough memory");
    luaL_where(L, 1);
    lua_pushstring(L, errmsg);
    free(errmsg);
    lua_concat(L, 2);
    return lua_error(L);
  }
  lua_pushlstring(L, b.data, b.len);
  pfp__buf_free(&b);
  lua_setfield(L, 1, "json");
  lua_setfield(L, 1, "function_name");
  lua_setfield(L, 1, "result");
  lua_pushvalue(L, 2);
  lua_setfield(L, 1, "value");
  lua_pushinteger(L, 1);
  lua_setfield(L, 1, "put_count");
  return 0;
}

static int l_queue(lua_State *L) {
  lua_newtable(L);
  if (luaL_newmetatable(L, STANDIN_MT)) {
    lua_newtable(L);
    lua_pushcfunction(L, standin_put);
    lua_setfield(L, -2, "put");
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  return 1;
}

/* ---- MultiProcessor ---------------------------------------------------- */

/* Checks the options in table idx and copies the known ones into the
** table at `into`.  `allow_context`: the constructor also takes context. */
static void copy_options(lua_State *L, int idx, int into, int allow_context) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *key =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (key == NULL) {
      luaL_error(L, "options: keys must be option names");
    } else if (strcmp(key, "jobs") == 0) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
          lua_tointeger(L, -1) > 1000000)
        luaL_error(L, "option jobs: expected an integer >= 1, got %s",
                   luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "timeout") == 0 ||
               strcmp(key, "kill_grace") == 0) {
      if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0) ||
          lua_tonumber(L, -1) == HUGE_VAL)
        luaL_error(L, "option %s: expected a number of seconds >= 0, got %s",
                   key, luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "reuse") == 0) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
          lua_tointeger(L, -1) > 1000000000)
        luaL_error(L, "option reuse: expected an integer >= 1 (calls per "
                      "worker), got %s",
                   luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "output_limit") == 0 ||
               strcmp(key, "memory") == 0) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        luaL_error(L, "option %s: expected an integer number of bytes >= 0, "
                      "got %s",
                   key, luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "context") == 0 && allow_context) {
      if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "option context: expected a table, got %s",
                   luaL_typename(L, -1));
    } else {
      luaL_error(L, "unknown option '%s' (options: context, jobs, timeout, "
                    "kill_grace, output_limit, memory, reuse)",
                 key);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, into);
  }
}

static int l_multiprocessor(lua_State *L) {
  lua_settop(L, 1);
  if (lua_isnil(L, 1)) {
    lua_newtable(L);
    lua_replace(L, 1);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_newtable(L); /* 2: options */
  copy_options(L, 1, 2, 1);
  lua_newtable(L); /* 3: the object */
  lua_getfield(L, 2, "context");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_setfield(L, 3, "context");
  lua_pushnil(L);
  lua_setfield(L, 2, "context");
  lua_pushvalue(L, 2);
  lua_setfield(L, 3, "options");
  lua_newtable(L);
  lua_setfield(L, 3, "registrations");
  lua_newtable(L);
  lua_setfield(L, 3, "results");
  luaL_setmetatable(L, MP_MT);
  return 1;
}

/* Checks that argument 1 is a MultiProcessor (called with ':'). */
static void check_mp(lua_State *L, const char *method) {
  int ok = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, MP_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok)
    luaL_error(L, "%s: call it as m:%s(...) on a pfp.MultiProcessor", method,
               method);
}

/* The readable name of function f at idx: its global name, else
** "source:line". */
static void push_function_name(lua_State *L, int idx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  if (ar.linedefined > 0)
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
  else
    lua_pushstring(L, ar.short_src);
}

/* m:register_function(f, args [, name]) -> the registration's 0-based
** index.  f is a function or the name of a global function. */
static int mp_register(lua_State *L) {
  check_mp(L, "register_function");
  lua_settop(L, 4);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *gname = lua_tostring(L, 2);
    lua_getglobal(L, gname);
    if (lua_type(L, -1) != LUA_TFUNCTION)
      return luaL_error(L, "register_function: no global function named '%s'",
                        gname);
    if (lua_isnil(L, 4)) {
      lua_pushvalue(L, 2);
      lua_replace(L, 4);
    }
    lua_replace(L, 2);
  }
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return luaL_error(L, "register_function: expected a function or the name "
                         "of a global function, got %s",
                      luaL_typename(L, 2));
  if (lua_isnil(L, 3)) {
    lua_newtable(L);
    lua_replace(L, 3);
  }
  if (lua_type(L, 3) != LUA_TTABLE)
    return luaL_error(L, "register_function: args must be a table, got %s",
                      luaL_typename(L, 3));
  if (lua_isnil(L, 4)) {
    push_function_name(L, 2);
    lua_replace(L, 4);
  }
  if (lua_type(L, 4) != LUA_TSTRING)
    return luaL_error(L, "register_function: name must be a string, got %s",
                      luaL_typename(L, 4));
  lua_getfield(L, 1, "registrations");
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, 3, 0);
  for (int i = 2; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  lua_rawseti(L, -2, n + 1);
  lua_pushinteger(L, n);
  return 1;
}

static int box_gc(lua_State *L) {
  pfp_processor **box = lua_touserdata(L, 1);
  pfp_processor_destroy(*box);
  *box = NULL;
  return 0;
}

static void set_opt_field(lua_State *L, const char *key, lua_Integer ival,
                          lua_Number nval, int is_int) {
  if (is_int)
    lua_pushinteger(L, ival);
  else
    lua_pushnumber(L, nval);
  lua_setfield(L, -2, key);
}

static void push_record(lua_State *L, const pfp_record *r) {
  size_t len;
  const char *s;
  lua_createtable(L, 0, 10);
  lua_pushstring(L, pfp_record_function_name(r));
  lua_setfield(L, -2, "function_name");
  set_opt_field(L, "index", (lua_Integer)pfp_record_index(r), 0, 1);
  lua_pushstring(L, pfp_status_name(pfp_record_status(r)));
  lua_setfield(L, -2, "status");
  if (pfp_record_result_text(r, NULL) != NULL) {
    const json_t *v = pfp_record_result(r);
    if (v != NULL && !json_is_null(v)) {
      if (pfp__push_json(L, v) != 0)
        luaL_error(L, "result nested too deeply");
      lua_setfield(L, -2, "result");
    }
  }
  if ((s = pfp_record_error(r)) != NULL) {
    lua_pushstring(L, s);
    lua_setfield(L, -2, "error");
  }
  if (pfp_record_exit_code(r) >= 0)
    set_opt_field(L, "exit_code", pfp_record_exit_code(r), 0, 1);
  if (pfp_record_signal(r) > 0)
    set_opt_field(L, "signal", pfp_record_signal(r), 0, 1);
  set_opt_field(L, "duration_ms", 0, pfp_record_duration_ms(r), 0);
  s = pfp_record_stdout(r, &len);
  lua_pushlstring(L, s, len);
  lua_setfield(L, -2, "stdout");
  s = pfp_record_stderr(r, &len);
  lua_pushlstring(L, s, len);
  lua_setfield(L, -2, "stderr");
}

/* m:execute_parallel([options]) -> m.results: one record per
** registration, in registration order. */
static int mp_execute(lua_State *L) {
  check_mp(L, "execute_parallel");
  lua_settop(L, 2);
  lua_newtable(L); /* 3: effective options */
  lua_getfield(L, 1, "options");
  if (lua_type(L, -1) == LUA_TTABLE)
    copy_options(L, lua_gettop(L), 3, 0);
  lua_pop(L, 1);
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    copy_options(L, 2, 3, 0);
  }
  lua_getfield(L, 1, "context"); /* 4 */
  if (lua_isnil(L, 4)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  if (lua_type(L, 4) != LUA_TTABLE)
    return luaL_error(L, "execute_parallel: context must be a table, got %s",
                      luaL_typename(L, 4));
  lua_getfield(L, 1, "registrations"); /* 5 */
  luaL_checktype(L, 5, LUA_TTABLE);

  pfp_processor **box = lua_newuserdatauv(L, sizeof *box, 0); /* 6 */
  *box = NULL;
  if (luaL_newmetatable(L, BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  pfp_processor *p = *box = pfp__processor_attach(L);
  if (p == NULL)
    return luaL_error(L, "execute_parallel: %s", pfp_errmsg(NULL));

  if (lua_getfield(L, 3, "jobs") != LUA_TNIL)
    pfp_set_jobs(p, (unsigned)lua_tointeger(L, -1));
  if (lua_getfield(L, 3, "timeout") != LUA_TNIL)
    pfp_set_timeout(p, lua_tonumber(L, -1));
  if (lua_getfield(L, 3, "kill_grace") != LUA_TNIL)
    pfp_set_kill_grace(p, lua_tonumber(L, -1));
  if (lua_getfield(L, 3, "output_limit") != LUA_TNIL)
    pfp_set_output_limit(p, (size_t)lua_tointeger(L, -1));
  if (lua_getfield(L, 3, "memory") != LUA_TNIL)
    pfp_set_memory_limit(p, (size_t)lua_tointeger(L, -1));
  if (lua_getfield(L, 3, "reuse") != LUA_TNIL)
    pfp_set_reuse(p, (unsigned)lua_tointeger(L, -1));
  lua_pop(L, 6);
  pfp__set_context_value(p, 4);

  lua_Integer n = (lua_Integer)lua_rawlen(L, 5);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 5, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    if (pfp__register_value(p, -3, -2, lua_tostring(L, -1)) != PFP_OK)
      return luaL_error(L, "execute_parallel: %s", pfp_errmsg(p));
    lua_pop(L, 4);
  }

  int rc = pfp_execute(p);
  if (rc < 0) {
    lua_pushfstring(L, "execute_parallel: %s", pfp_errmsg(p));
    pfp_processor_destroy(p);
    *box = NULL;
    return lua_error(L);
  }
  size_t count = pfp_record_count(p);
  lua_createtable(L, count > INT32_MAX ? INT32_MAX : (int)count, 0);
  for (size_t i = 0; i < count; i++) {
    push_record(L, pfp_record_at(p, i));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  pfp_processor_destroy(p);
  *box = NULL;
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "results");
  return 1;
}

static const luaL_Reg mp_methods[] = {
    {"register_function", mp_register},
    {"execute_parallel", mp_execute},
    {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"Result", l_result},   {"MultiProcessor", l_multiprocessor},
    {"array", l_array},     {"is_array", l_is_array},
    {"encode", l_encode},   {"decode", l_decode},
    {"queue", l_queue},     {NULL, NULL},
};

PFP_API int luaopen_pfp(lua_State *L) {
  pfp__setup_state(L);
  if (luaL_newmetatable(L, MP_MT)) {
    luaL_newlib(L, mp_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, module_functions);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  luaL_getmetatable(L, PFP__ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
  lua_pushliteral(L, PFP_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
