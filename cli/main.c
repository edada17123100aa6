/*
** main.c: the loom executable, a program on top of the library as Lua's
** lua.c is, through its public API (include/loom.h): a host with its own
** loop and Lua state (loom's Lua modules found in the build tree or the
** install prefix), whose Lua state gets argv through loom.cli. Errors end
** as one line on stderr and status 1 (LOOM_DEBUG=1 adds the traceback).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/loom.h"
#include "lineedit.h"

/*
** An error that escaped loom.cli (a bug, or out of memory): its first
** line, as every start-up error; the traceback with LOOM_DEBUG=1.
*/
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1), *debug = getenv("LOOM_DEBUG");
  if (msg == NULL)
    msg = luaL_tolstring(L, 1, NULL);
  if (debug != NULL && debug[0] != '\0' && strcmp(debug, "0") != 0)
    luaL_traceback(L, L, msg, 1);
  else
    lua_pushlstring(L, msg, strcspn(msg, "\n"));
  return 1;
}

/* The executable's own module: `loom console`'s line editing. */
static void preload_lineedit(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_loom_lineedit);
  lua_setfield(L, -2, "loom.lineedit");
  lua_pop(L, 1);
}

/* Protected main, as lua.c's pmain: everything that can raise is here. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int i;
  preload_lineedit(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "loom.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_call(L, 1, 1);
  return 1;
}

/*
** Exiting now: closing the signal watchers gives SIGINT/SIGTERM back their
** default action, and a second signal (timeout(1) also sends one to the
** whole process group) must not kill a clean shutdown. Blocked, it stays
** pending and dies with the process.
*/
static void block_stop_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
}

/*
** The Lua collector's mode for the program: generational unless
** LOOM_GC=incremental. A server's garbage is mostly young (a request, a
** read's string), which the generational mode frees without walking the
** old heap again: HTTP requests/s went up by a fifth to a half, with the
** same memory for idle connections (docs/PERFORMANCE.md, "The collector").
** A program may still call collectgarbage("incremental") itself.
*/
static int set_gc_mode(lua_State *L) {
  const char *mode = getenv("LOOM_GC");
  if (mode == NULL || *mode == '\0' || strcmp(mode, "generational") == 0) {
    lua_gc(L, LUA_GCGEN, 0, 0);
    return 1;
  }
  if (strcmp(mode, "incremental") == 0) {
    lua_gc(L, LUA_GCINC, 0, 0, 0);
    return 1;
  }
  fprintf(stderr, "loom: LOOM_GC must be generational or incremental, "
                  "not '%s'\n", mode);
  return 0;
}

int main(int argc, char **argv) {
  loom_host *h;
  lua_State *L;
  int status, code = 1;
  if (loom_new(NULL, &h) != LOOM_OK) {
    fprintf(stderr, "loom: %s\n", loom_errmsg(NULL));
    return 1;
  }
  L = loom_lua(h);
  if (!set_gc_mode(L)) {
    loom_free(h);
    return 1;
  }
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 1);
  if (status != LUA_OK) {
    fprintf(stderr, "loom: %s\n", lua_tostring(L, -1));
  } else {
    code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  }
  fflush(stdout);
  block_stop_signals();
  loom_free(h); /* Closes every handle, the loop and the Lua state. */
  return code;
}
