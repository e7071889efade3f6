/*
** luarun.c — a minimal stand-alone Lua: runs SCRIPT with `arg` set, in a
** state from the shared liblua5.4 that pfp links, for workload b.
**
**   luarun SCRIPT [ARG...]
**
** Debian's /usr/bin/lua5.4 carries its own copy of the interpreter, built
** apart from liblua5.4.so, and the two run the same Lua code at different
** speeds.  Beside `xargs lua5.4`, `xargs luarun` shows how much of a
** difference between pfp and xargs comes from that alone.
*/
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: luarun SCRIPT [ARG...]\n", stderr);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fputs("luarun: cannot create a Lua state\n", stderr);
    return 1;
  }
  luaL_openlibs(L);
  /* arg[0] is the script and arg[1..] its arguments, as lua5.4 sets them. */
  lua_createtable(L, argc - 2, 1);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int status = luaL_dofile(L, argv[1]);
  if (status != LUA_OK)
    fprintf(stderr, "luarun: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
