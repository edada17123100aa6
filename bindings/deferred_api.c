/*
** deferred_api.c: making and firing a Deferred from C (loom.h's
** loom_deferred_new/callback/errback, api.c, build on them), over the class loom.defer bound in deferred.c.
** Each runs in protected mode and never raises: it returns 0, or minus a Lua
** status (LUA_ERRRUN, LUA_ERRMEM, LUA_ERRERR) with the error message, a
** string, in place of its result. When the stack cannot grow by the few
** slots they need, they return -LUA_ERRMEM and leave the stack as it was.
*/
#include "binding.h"

/* The message handler: the error as a one-line string (an error value's
   __tostring gives "AlreadyCalledError: ..."). */
static int error_message(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Calls f with the nargs values on top, protected; 0 or -status. */
static int call_protected(lua_State *L, lua_CFunction f, int nargs,
                          int nresults) {
  int handler = lua_gettop(L) - nargs + 1, status;
  lua_pushcfunction(L, error_message);
  lua_pushcfunction(L, f);
  lua_rotate(L, handler, 2);
  status = lua_pcall(L, nargs, nresults, handler);
  lua_remove(L, handler);
  return status == LUA_OK ? 0 : -status;
}

/* Pushes the Deferred class, loading loom.defer (whose bind() records it)
   the first time. */
static void push_deferred_class(lua_State *L) {
  if (loom__push_deferred_class(L) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  if (lua_getglobal(L, "require") != LUA_TFUNCTION)
    luaL_error(L, "loom.defer is not loaded and there is no require");
  lua_pushliteral(L, "loom.defer");
  lua_call(L, 1, 0);
  if (loom__push_deferred_class(L) != LUA_TTABLE)
    luaL_error(L, "loom.defer did not bind its C core");
}

static int p_new(lua_State *L) {
  push_deferred_class(L);
  lua_call(L, 0, 1); /* Deferred() */
  return 1;
}

/* Whether the value at idx is an instance of the class on top (or of a
   subclass), which it pops. */
static int is_instance_of_top(lua_State *L, int idx) {
  int depth, found = 0, cls = lua_gettop(L);
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return 0;
  }
  for (depth = 0; depth < LOOM_MAX_CLASS_DEPTH && !found; depth++) {
    if (lua_rawequal(L, -1, cls))
      found = 1;
    else if (lua_type(L, -1) != LUA_TTABLE)
      break;
    else {
      lua_pushliteral(L, "super");
      lua_rawget(L, -2);
      lua_remove(L, -2);
    }
  }
  lua_settop(L, cls - 1);
  return found;
}

/* d (1), value (2): d:callback(value) or d:errback(value), as the method
   of d's class (a subclass may override it). */
static int fire_protected(lua_State *L, const char *method) {
  push_deferred_class(L);
  if (!is_instance_of_top(L, 1))
    return luaL_error(L, "cannot %s: not a Deferred (a %s)", method,
                      luaL_typename(L, 1));
  lua_getfield(L, 1, method);
  lua_insert(L, 1);
  lua_call(L, 2, 0);
  return 0;
}

static int p_callback(lua_State *L) {
  return fire_protected(L, "callback");
}

static int p_errback(lua_State *L) {
  return fire_protected(L, "errback");
}

/* Fires the Deferred at idx with the value on top, which it pops. */
static int fire_from_c(lua_State *L, int idx, lua_CFunction method) {
  if (!lua_checkstack(L, 4))
    return -LUA_ERRMEM;
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, idx);
  lua_insert(L, -2);
  return call_protected(L, method, 2, 0);
}

int loom__deferred_new(lua_State *L) {
  if (!lua_checkstack(L, 3))
    return -LUA_ERRMEM;
  return call_protected(L, p_new, 0, 1);
}

int loom__deferred_callback(lua_State *L, int idx) {
  return fire_from_c(L, idx, p_callback);
}

int loom__deferred_errback(lua_State *L, int idx) {
  return fire_from_c(L, idx, p_errback);
}
