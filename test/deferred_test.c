/*
** deferred_test.c: the C entry points of bindings/deferred.c, called from C
** as an embedder (F8's loom.h) calls them: no Lua frame below, values pushed
** by the caller, errors returned and never raised. The Lua side is loom's
** own (lua/loom, found next to the build directory), in a plain lua_State.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <string.h>

#include <lualib.h>
#include <uv.h>

#include "../bindings/binding.h"
#include "../bindings/embed.h"

#include "check.h"

/* The error message on top contains text. */
static int message_has(lua_State *L, const char *text) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL || strstr(msg, text) == NULL) {
    fprintf(stderr, "message: %s (wanted: %s)\n", msg ? msg : "(not a string)",
            text);
    return 0;
  }
  return 1;
}

/* A state set up as the loom executable sets its own (bindings/embed.c),
   from the source tree: this program is build/test/deferred_test. */
static lua_State *new_state(void) {
  char exe[4096], root[4200];
  size_t n = sizeof(exe);
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (uv_exepath(exe, &n) == 0 && strrchr(exe, '/') != NULL) {
    *strrchr(exe, '/') = '\0';
    snprintf(root, sizeof(root), "%s/../..", exe);
    loom_embed_setup(L, root);
  }
  return L;
}

/* Runs the Lua chunk with the value at idx as its `...`; 1 if it ran. */
static int run_lua(lua_State *L, int idx, const char *chunk) {
  idx = lua_absindex(L, idx);
  if (luaL_loadstring(L, chunk) != LUA_OK) {
    fprintf(stderr, "chunk: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "chunk: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* The Lua expression's value, as an integer (LUA_MININTEGER if not). */
static lua_Integer lua_int(lua_State *L, const char *expr) {
  lua_Integer v = LUA_MININTEGER;
  char chunk[256];
  snprintf(chunk, sizeof(chunk), "return %s", expr);
  if (luaL_dostring(L, chunk) == LUA_OK && lua_isinteger(L, -1))
    v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int lua_true(lua_State *L, const char *expr) {
  char chunk[256];
  int b = 0;
  snprintf(chunk, sizeof(chunk), "return %s", expr);
  if (luaL_dostring(L, chunk) == LUA_OK)
    b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

static void test_new_then_callback(lua_State *L) {
  int top = lua_gettop(L);
  CHECK(loom__deferred_new(L) == 0);
  CHECK(lua_gettop(L) == top + 1);
  CHECK(run_lua(L, -1, "d1 = ...\n"
                       "d1:addCallback(function(v) seen = v + 1; "
                       "return seen end)"));
  CHECK(lua_true(L, "d1.called == false"));
  lua_pushinteger(L, 41);
  CHECK(loom__deferred_callback(L, top + 1) == 0);
  CHECK(lua_gettop(L) == top + 1); /* the value is popped */
  CHECK(lua_int(L, "seen") == 42);
  CHECK(lua_true(L, "d1.called and d1.result == 42"));

  /* Firing twice is an error, returned with its message, not raised. */
  lua_pushinteger(L, 1);
  CHECK(loom__deferred_callback(L, -2) == -LUA_ERRRUN);
  CHECK(lua_gettop(L) == top + 2);
  CHECK(message_has(L, "AlreadyCalledError"));
  lua_settop(L, top);
}

static void test_errback(lua_State *L) {
  int top = lua_gettop(L);
  CHECK(loom__deferred_new(L) == 0);
  CHECK(run_lua(L, -1, "d2 = ...\n"
                       "d2:addErrback(function(f) got = f.value; "
                       "return 'handled' end)"));
  lua_pushliteral(L, "boom");
  CHECK(loom__deferred_errback(L, -2) == 0);
  CHECK(lua_gettop(L) == top + 1);
  CHECK(lua_true(L, "got == 'boom' and d2.result == 'handled'"));

  /* A callback that raises: its error is the chain's Failure, as when
     fired from Lua; the C caller sees success. */
  CHECK(loom__deferred_new(L) == 0);
  CHECK(run_lua(L, -1, "d3 = ...\n"
                       "d3:addCallback(function() error('in callback') end)"));
  lua_pushboolean(L, 1);
  CHECK(loom__deferred_callback(L, -2) == 0);
  CHECK(lua_true(L, "require('loom.failure').isFailure(d3.result) and "
                    "d3.result:getErrorMessage():find('in callback')"));
  CHECK(run_lua(L, -1, "(...):addErrback(function() end)"));
  lua_settop(L, top);
}

/* A value that is not a Deferred, and a Deferred as the result. */
static void test_bad_arguments(lua_State *L) {
  int top = lua_gettop(L);
  lua_pushinteger(L, 5);
  lua_pushinteger(L, 6);
  CHECK(loom__deferred_callback(L, top + 1) == -LUA_ERRRUN);
  CHECK(lua_gettop(L) == top + 2);
  CHECK(message_has(L, "cannot callback: not a Deferred"));
  lua_pop(L, 1);
  lua_newtable(L);
  CHECK(loom__deferred_errback(L, -2) == -LUA_ERRRUN);
  CHECK(message_has(L, "cannot errback: not a Deferred"));
  lua_settop(L, top);

  CHECK(loom__deferred_new(L) == 0);
  CHECK(loom__deferred_new(L) == 0);
  CHECK(loom__deferred_callback(L, top + 1) == -LUA_ERRRUN);
  CHECK(lua_gettop(L) == top + 2);
  CHECK(message_has(L, "the result cannot be a Deferred"));
  lua_settop(L, top);
}

/* An inlineCallbacks body waiting on a Deferred fired from C resumes. */
static void test_resumes_inline(lua_State *L) {
  int top = lua_gettop(L);
  CHECK(loom__deferred_new(L) == 0);
  CHECK(run_lua(L, -1,
                "local d = ...\n"
                "local defer = require 'loom.defer'\n"
                "r4 = defer.inlineCallbacks(function()\n"
                "  return defer.await(d) * 2\n"
                "end)()"));
  CHECK(lua_true(L, "r4.called == false"));
  lua_pushinteger(L, 21);
  CHECK(loom__deferred_callback(L, top + 1) == 0);
  CHECK(lua_true(L, "r4.called and r4.result == 42"));
  lua_settop(L, top);
}

/* With no room left on the stack: -LUA_ERRMEM, the stack as it was. */
static void test_full_stack(lua_State *L) {
  int top = lua_gettop(L), full;
  CHECK(loom__deferred_new(L) == 0);
  while (lua_checkstack(L, 3))
    lua_pushnil(L);
  full = lua_gettop(L);
  CHECK(full > top + 1000);
  CHECK(loom__deferred_new(L) == -LUA_ERRMEM);
  CHECK(lua_gettop(L) == full);
  CHECK(loom__deferred_callback(L, top + 1) == -LUA_ERRMEM);
  CHECK(lua_gettop(L) == full);
  lua_settop(L, top + 1);
  CHECK(lua_true(L, "true")); /* the state still works */
  lua_settop(L, top);
}

/* Without loom's Lua modules (or any require): a clear error. */
static void test_without_loom(void) {
  lua_State *L = luaL_newstate();
  CHECK(loom__deferred_new(L) == -LUA_ERRRUN);
  CHECK(lua_gettop(L) == 1);
  CHECK(message_has(L, "loom.defer is not loaded and there is no require"));
  lua_close(L);

  L = luaL_newstate();
  luaL_openlibs(L);
  CHECK(luaL_dostring(L, "package.path = ''; package.cpath = ''") == 0);
  CHECK(loom__deferred_new(L) == -LUA_ERRRUN);
  CHECK(lua_gettop(L) == 1);
  CHECK(message_has(L, "module 'loom.defer' not found"));
  lua_close(L);
}

int main(void) {
  lua_State *L = new_state();
  test_new_then_callback(L);
  test_errback(L);
  test_bad_arguments(L);
  test_resumes_inline(L);
  test_full_stack(L);
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
  test_without_loom();
  return check_report();
}
