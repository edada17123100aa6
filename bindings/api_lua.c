/*
** api_lua.c: loom.h's calls between C and the host's Lua: the log sink,
** C functions as a Lua module, Deferreds made and fired from C, and a
** protected method call whose error is reported as a hook's is (logged
** with its traceback through loom.log).
*/
#include <stdio.h>
#include <string.h>

#include "api.h"

/* The log sink ------------------------------------------------------------- */

static int level_code(const char *level) {
  if (strcmp(level, "error") == 0)
    return LOOM_LOG_ERROR;
  if (strcmp(level, "warn") == 0)
    return LOOM_LOG_WARN;
  if (strcmp(level, "debug") == 0)
    return LOOM_LOG_DEBUG;
  return LOOM_LOG_INFO;
}

/* log.setSink's function: (level, line) to the embedder's loom_log_fn. */
static int log_sink(lua_State *L) {
  loom_host *h = lua_touserdata(L, lua_upvalueindex(1));
  const char *level = luaL_checkstring(L, 1);
  const char *line = luaL_checkstring(L, 2);
  if (h->log_fn != NULL)
    h->log_fn(h->log_ud, level_code(level), line);
  return 0;
}

static int p_set_log(lua_State *L) {
  loom_host *h = lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "loom.log");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "setSink");
  if (h->log_fn != NULL) {
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, log_sink, 1);
  } else {
    lua_pushnil(L);
  }
  lua_call(L, 1, 0);
  return 0;
}

int loom_set_log(loom_host *h, loom_log_fn fn, void *ud) {
  int rc = loom__api_check(h, "loom_set_log");
  if (rc != LOOM_OK)
    return rc;
  h->log_fn = fn;
  h->log_ud = fn != NULL ? ud : NULL;
  return loom__api_pcall(h, p_set_log, h, 0, "loom_set_log");
}

/* C functions as a module -------------------------------------------------- */

typedef struct module_args {
  const char *name;
  const luaL_Reg *funcs;
  void *ud;
  int code;
} module_args;

/* package.preload's loader: the table made at registration. */
static int module_loader(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static int p_register(lua_State *L) {
  module_args *a = lua_touserdata(L, 1);
  const luaL_Reg *f;
  int n = 0;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, a->name) != LUA_TNIL) {
    a->code = LOOM_ESTATE;
    return luaL_error(L, "loom_register_module: module '%s' is already "
                         "loaded", a->name);
  }
  for (f = a->funcs; f->name != NULL; f++)
    n++;
  lua_createtable(L, 0, n);
  for (f = a->funcs; f->name != NULL; f++) {
    lua_pushlightuserdata(L, a->ud);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  lua_pushcclosure(L, module_loader, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, a->name);
  return 0;
}

int loom_register_module(loom_host *h, const char *name,
                         const luaL_Reg *funcs, void *ud) {
  module_args a;
  const luaL_Reg *f;
  int rc = loom__api_check(h, "loom_register_module");
  if (rc != LOOM_OK)
    return rc;
  if (name == NULL || name[0] == '\0' || funcs == NULL)
    return loom__api_error(h, LOOM_EINVAL, "loom_register_module: %s",
                           funcs == NULL ? "funcs is NULL"
                                         : "the name is NULL or empty");
  for (f = funcs; f->name != NULL; f++)
    if (f->func == NULL)
      return loom__api_error(h, LOOM_EINVAL, "loom_register_module: "
                             "'%s' has no function", f->name);
  a.name = name;
  a.funcs = funcs;
  a.ud = ud;
  a.code = LOOM_ELUA;
  rc = loom__api_pcall(h, p_register, &a, 0, "loom_register_module");
  return rc == LOOM_ELUA ? a.code : rc;
}

/* Deferreds ---------------------------------------------------------------- */

/* A result of deferred_api.c: 0, or its message on top (copied, popped). */
static int deferred_result(loom_host *h, int rc, const char *fn) {
  const char *msg;
  if (rc == 0)
    return LOOM_OK;
  msg = lua_tostring(h->L, -1);
  loom__api_error(h, rc == -LUA_ERRMEM ? LOOM_ENOMEM : LOOM_ELUA, "%s: %s",
                  fn, msg != NULL ? msg : "(no message)");
  lua_pop(h->L, 1);
  return rc == -LUA_ERRMEM ? LOOM_ENOMEM : LOOM_ELUA;
}

int loom_deferred_new(loom_host *h) {
  int rc = loom__api_check(h, "loom_deferred_new");
  if (rc != LOOM_OK)
    return rc;
  if (!lua_checkstack(h->L, 8))
    return loom__api_error(h, LOOM_ENOMEM, "loom_deferred_new: the Lua "
                                           "stack cannot grow");
  return deferred_result(h, loom__deferred_new(h->L), "loom_deferred_new");
}

/* d at idx, the value on top: checked; on an error the value is popped. */
static int fire(loom_host *h, int idx, int (*how)(lua_State *, int),
                const char *fn) {
  int rc = loom__api_check(h, fn), top;
  if (rc != LOOM_OK)
    return rc;
  top = lua_gettop(h->L);
  if (top < 1)
    return loom__api_error(h, LOOM_EINVAL, "%s: no value on the stack", fn);
  if (idx < 0 && idx > LUA_REGISTRYINDEX)
    idx = top + idx + 1;
  if (idx < 1 || idx >= top) {
    lua_pop(h->L, 1);
    return loom__api_error(h, LOOM_EINVAL, "%s: index %d is not below the "
                           "value on top of the stack", fn, idx);
  }
  if (!lua_checkstack(h->L, 8)) {
    lua_pop(h->L, 1);
    return loom__api_error(h, LOOM_ENOMEM, "%s: the Lua stack cannot grow",
                           fn);
  }
  return deferred_result(h, how(h->L, idx), fn);
}

int loom_deferred_callback(loom_host *h, int idx) {
  return fire(h, idx, loom__deferred_callback, "loom_deferred_callback");
}

int loom_deferred_errback(loom_host *h, int idx) {
  return fire(h, idx, loom__deferred_errback, "loom_deferred_errback");
}

/* Calling a method --------------------------------------------------------- */

/* The message handler of a method call: call.c's {err, tb}, the traceback
   cut at the trampoline as a hook's is. */
static int method_handler(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "err");
  lua_pushcfunction(L, loom__l_traceback);
  lua_pushnil(L);
  lua_pushinteger(L, 2); /* Above this handler: where the error was. */
  lua_call(L, 2, 1);
  lua_setfield(L, -2, "tb");
  return 1;
}

/* (method name, obj, args...): obj:method(args...), all its results. */
static int call_trampoline(lua_State *L) {
  const char *method = lua_touserdata(L, 1);
  int nargs = lua_gettop(L) - 2;
  if (lua_getfield(L, 2, method) != LUA_TFUNCTION)
    return luaL_error(L, "no method '%s' (a %s) on %s", method,
                      luaL_typename(L, -1), luaL_typename(L, 2));
  lua_replace(L, 1);
  lua_call(L, nargs + 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int p_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* h->err from the caught {err, tb} on top: its message, via __tostring. */
static void keep_message(loom_host *h, const char *where) {
  lua_State *L = h->L;
  const char *msg;
  lua_pushcfunction(L, p_tostring);
  lua_getfield(L, -2, "err");
  msg = lua_pcall(L, 1, 1, 0) == LUA_OK ? lua_tostring(L, -1) : NULL;
  loom__api_error(h, LOOM_ELUA, "error in %s: %s", where,
                  msg != NULL ? msg : "(an error value tostring cannot show)");
  lua_pop(L, 1);
}

/* "Class.method" when obj's metatable names its class, else "method". */
static void describe(lua_State *L, int obj, const char *method, char *where,
                     size_t len) {
  const char *cls = NULL;
  if (lua_getmetatable(L, obj)) {
    lua_pushliteral(L, "__name");
    lua_rawget(L, -2);
    cls = lua_tostring(L, -1);
  }
  if (cls != NULL)
    snprintf(where, len, "%.200s.%.200s", cls, method);
  else
    snprintf(where, len, "%.200s", method);
  /* The caller resets the stack top. */
}

int loom_call_method(loom_host *h, int idx, const char *method, int nargs,
                     int nresults) {
  lua_State *L;
  loom_lua_host *lh;
  lua_CFunction saved_fn;
  lua_State *saved_L;
  char where[420];
  int rc = loom__api_check(h, "loom_call_method"), top, obj, base, status;
  if (rc != LOOM_OK)
    return rc;
  L = h->L;
  top = lua_gettop(L);
  if (method == NULL || nargs < 0 || nargs >= top ||
      (nresults < 0 && nresults != LUA_MULTRET))
    return loom__api_error(h, LOOM_EINVAL, "loom_call_method: %s",
                           method == NULL ? "method is NULL"
                           : nargs < 0 || nargs >= top
                               ? "nargs is not the number of values above "
                                 "the object"
                               : "nresults is negative");
  obj = idx < 0 && idx > LUA_REGISTRYINDEX ? top + idx + 1 : idx;
  if (obj < 1 || obj > top - nargs) {
    lua_pop(L, nargs);
    return loom__api_error(h, LOOM_EINVAL, "loom_call_method: index %d is "
                           "not an object below the %d arguments", idx,
                           nargs);
  }
  if (!lua_checkstack(L, 12 + (nresults > 0 ? nresults : 0))) {
    lua_pop(L, nargs);
    return loom__api_error(h, LOOM_ENOMEM, "loom_call_method: the Lua "
                                           "stack cannot grow");
  }
  base = top - nargs; /* the handler goes at base + 1 */
  describe(L, obj, method, where, sizeof(where));
  lua_settop(L, top);
  lua_pushcfunction(L, method_handler);
  lua_pushcfunction(L, call_trampoline);
  lua_pushlightuserdata(L, LOOM_UNCONST(method));
  lua_pushvalue(L, obj);
  lua_rotate(L, base + 1, 4); /* handler, trampoline, method, obj, args */
  lh = LOOM_HOST(h->st);
  saved_fn = lh->current_fn;
  lh->current_fn = call_trampoline;
  status = lua_pcall(L, nargs + 2, nresults, base + 1);
  lh->current_fn = saved_fn;
  lua_remove(L, base + 1);
  if (status == LUA_OK)
    return LOOM_OK;
  if (status == LUA_ERRMEM || !lua_istable(L, -1)) {
    loom__api_error(h, status == LUA_ERRMEM ? LOOM_ENOMEM : LOOM_ELUA,
                    "error in %s: %s", where,
                    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                   : "(error in the handler)");
    lua_pop(L, 1);
    return status == LUA_ERRMEM ? LOOM_ENOMEM : LOOM_ELUA;
  }
  keep_message(h, where);
  /* Logged as a hook's error is (hooks.error), on this thread's stack. */
  saved_L = LOOM_L(h->st);
  LOOM_L(h->st) = L;
  loom__report_error(h->st, where, 0);
  LOOM_L(h->st) = saved_L;
  lua_settop(L, base);
  return LOOM_ELUA;
}
