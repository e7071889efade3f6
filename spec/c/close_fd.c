/*
** close_fd.c — a test shim: a Lua C function that closes a descriptor,
** loaded by a spec with package.loadlib so that a function can close its
** own result pipe and go on running (plain Lua cannot close a descriptor).
** Lua's symbols come from the process that loads it.
*/
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

int pfp_test_close_fd(lua_State *L);

int pfp_test_close_fd(lua_State *L) {
  lua_pushinteger(L, close((int)luaL_checkinteger(L, 1)));
  return 1;
}
