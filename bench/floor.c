/*
** floor.c — the floor for one fork per function: what fork, _exit and
** waitpid cost from a process that holds a loaded Lua state, with nothing
** else done.  pfp does the same forks plus everything a call needs (pipes,
** running the function, sending and decoding its result), so its time per
** function can approach this number but not beat it.
**
**   floor [-j JOBS] [-n CALLS] [-m HOLD_MIB] [-f] SCRIPT
**
** Opens a Lua state with the standard libraries, runs SCRIPT in it (the
** benchmark's own functions, so the state is the size pfp's is), then,
** when -m is given, allocates HOLD_MIB MiB and writes every page of it, as
** a host that has grown would.  Then it forks CALLS children (default
** 1000), at most JOBS at once (default 2); each child only calls _exit(0).
** With -f, each child first runs the script's function `sq` as pfp would
** run it, sq(q, context, {i = N}), with a q whose put keeps the Result,
** and exits 1 unless the result's sq is N * N: the cost of running a Lua
** function in a forked child at all, without pfp's pipes, JSON or records.
** It prints "calls=N elapsed_s=S", S timing the forks alone (from the
** first fork to the last reaping), and exits 1 if any child failed.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Given the module, returns a function of N that runs module.sq as pfp
** would and says whether its Result holds N * N. */
static const char CALL_SQ[] =
    "local module = ...\n"
    "local got\n"
    "local q, context = { put = function(_, r) got = r end }, {}\n"
    "return function(i)\n"
    "  got = nil\n"
    "  module.sq(q, context, { i = i })\n"
    "  return got ~= nil and got.result.sq == i * i\n"
    "end\n";

/* In a child: runs the call for n; returns its exit code. */
static int run_sq(lua_State *L, int call_sq, long n) {
  lua_pushvalue(L, call_sq);
  lua_pushinteger(L, n);
  return lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1) ? 0 : 1;
}

/* Reaps one child; returns 0 if it exited with code 0, else -1. */
static int reap_one(void) {
  int wstatus;
  pid_t pid;
  do
    pid = waitpid(-1, &wstatus, 0);
  while (pid < 0 && errno == EINTR);
  if (pid < 0) {
    perror("floor: waitpid");
    return -1;
  }
  return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  long jobs = 2, calls = 1000, hold_mib = 0;
  int opt, call = 0;
  while ((opt = getopt(argc, argv, "j:n:m:f")) != -1) {
    switch (opt) {
    case 'j': jobs = strtol(optarg, NULL, 10); break;
    case 'n': calls = strtol(optarg, NULL, 10); break;
    case 'm': hold_mib = strtol(optarg, NULL, 10); break;
    case 'f': call = 1; break;
    default: goto usage;
    }
  }
  if (optind != argc - 1 || jobs < 1 || calls < 0 || hold_mib < 0)
    goto usage;

  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fputs("floor: cannot create a Lua state\n", stderr);
    return 1;
  }
  luaL_openlibs(L);
  /* The module's sq, bound to a q and a context made before any fork, as
  ** pfp makes them: a child pays only for the call. */
  if (luaL_loadstring(L, CALL_SQ) != LUA_OK ||
      luaL_loadfile(L, argv[optind]) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK || lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "floor: %s\n", lua_tostring(L, -1));
    return 1;
  }
  int call_sq = lua_gettop(L);

  char *held = NULL;
  if (hold_mib > 0) {
    size_t bytes = (size_t)hold_mib << 20;
    held = malloc(bytes);
    if (held == NULL) {
      fprintf(stderr, "floor: cannot allocate %ld MiB\n", hold_mib);
      return 1;
    }
    memset(held, 1, bytes); /* every page resident, as in a grown host */
  }

  long started = 0, running = 0, failed = 0;
  double start = now();
  while (started < calls || running > 0) {
    if (started < calls && running < jobs) {
      pid_t pid = fork();
      if (pid < 0) {
        perror("floor: fork");
        return 1;
      }
      if (pid == 0)
        _exit(call ? run_sq(L, call_sq, started + 1) : 0);
      started++;
      running++;
    } else {
      if (reap_one() != 0)
        failed++;
      running--;
    }
  }
  double elapsed = now() - start;

  printf("calls=%ld elapsed_s=%.6f\n", calls, elapsed);
  free(held);
  lua_close(L);
  return failed == 0 ? 0 : 1;

usage:
  fputs("usage: floor [-j JOBS] [-n CALLS] [-m HOLD_MIB] [-f] SCRIPT\n",
        stderr);
  return 2;
}
