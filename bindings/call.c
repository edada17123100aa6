/*
** call.c: the one way from libuv into Lua. loom__call runs a C trampoline
** under lua_pcall with a message handler that keeps the error value and a
** traceback cut at the reactor boundary; errors are reported through the
** Lua error hook (which logs them via loom.log) and never escape into libuv.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "binding.h"

/*
** The one synchronous failure convention (docs/architecture.md): a call
** that the environment made fail (a socket, a file, a process) returns
** nil, errname, message, where errname is libuv's name for rc ("EADDRINUSE",
** "ECONNREFUSED", ...) and message one actionable line. Lua picks the error
** class by errname (loom.error.fromErrno), never by the message's text.
** Misuse (a bad argument, a closed object) raises instead, as Lua's own
** libraries do.
*/
int loom__push_error(lua_State *L, int rc, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  lua_pushstring(L, uv_err_name(rc));
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return 3;
}

loom_state *loom__get_state(lua_State *L) {
  loom_state **slot = (loom_state **)lua_getextraspace(L);
  if (*slot == NULL) {
    /* A coroutine made before loom loaded: look it up once and cache it. */
    lua_getfield(L, LUA_REGISTRYINDEX, LOOM_STATE_KEY);
    *slot = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (*slot == NULL)
      luaL_error(L, "loom is not initialised in this Lua state");
  }
  /* An embedder closed the host and kept its Lua state (api.c). */
  if (LOOM_HOST(*slot)->closed)
    luaL_error(L, "the loom host of this Lua state is closed");
  return *slot;
}

/* Is level's function the trampoline that loom__call started? */
static int is_boundary(lua_State *L, lua_Debug *ar, lua_CFunction fn) {
  int hit;
  lua_getinfo(L, "f", ar);
  hit = lua_iscfunction(L, -1) && lua_tocfunction(L, -1) == fn;
  lua_pop(L, 1);
  return hit;
}

/* As lauxlib's: the first LEVELS1 and the last LEVELS2 levels are shown. */
#define LEVELS1 10
#define LEVELS2 11
/* How far from the bottom of the stack the reactor boundary is looked for. */
#define BOUNDARY_SCAN 256
/*
** Deeper stacks show their first levels only. lua_getstack(L, n) walks n
** frames from the top, so each bottom level costs a walk of the whole
** stack: over 300,000 levels (a stack overflow) that is ~10 ms a walk, and
** finding the depth and the bottom levels takes some 40 walks.
*/
#define DEEP_STACK 20000

/*
** The deepest valid level, by lauxlib's search: lua_getstack(L, n) walks n
** frames, so probing doubling levels and bisecting costs O(n log n), not
** the O(n^2) of asking for every level in turn.
*/
static int last_level(lua_State *L) {
  lua_Debug ar;
  int li = 1, le = 1;
  while (lua_getstack(L, le, &ar)) {
    li = le;
    le *= 2;
  }
  while (li < le) {
    int m = (li + le) / 2;
    if (lua_getstack(L, m, &ar))
      li = m + 1;
    else
      le = m;
  }
  return le - 1;
}

/*
** The level of the trampoline loom__call started, looked for from the
** bottom of the stack (it sits just above the loop's own few frames), or
** last + 1 when there is none: levels below it are the host's, not the
** hook's.
*/
static int boundary_level(lua_State *L, int last) {
  loom_state *st = *(loom_state **)lua_getextraspace(L);
  lua_CFunction fn = st ? LOOM_HOST(st)->current_fn : NULL;
  lua_Debug ar;
  int level;
  if (fn == NULL)
    return last + 1;
  for (level = last; level >= 1 && level > last - BOUNDARY_SCAN; level--)
    if (lua_getstack(L, level, &ar) && is_boundary(L, &ar, fn))
      return level;
  return last + 1;
}

static void add_level(lua_State *L, luaL_Buffer *b, int level) {
  lua_Debug ar;
  if (!lua_getstack(L, level, &ar))
    return;
  lua_getinfo(L, "Slnt", &ar);
  lua_pushfstring(L, "\n\t%s:", ar.short_src);
  luaL_addvalue(b);
  if (ar.currentline > 0) {
    lua_pushfstring(L, "%d:", ar.currentline);
    luaL_addvalue(b);
  }
  if (ar.name != NULL)
    lua_pushfstring(L, " in %s '%s'", ar.namewhat, ar.name);
  else if (*ar.what == 'm')
    lua_pushliteral(L, " in main chunk");
  else if (*ar.what == 'C')
    lua_pushliteral(L, " in ?");
  else
    lua_pushfstring(L, " in function <%s:%d>", ar.short_src,
                    ar.linedefined);
  luaL_addvalue(b);
  if (ar.istailcall)
    luaL_addstring(b, "\n\t(...tail calls...)");
}

/*
** A stack over DEEP_STACK levels (a runaway recursion): its first levels
** from start (up to the boundary, should the host's own stack be that
** deep), then a note in place of the rest. Costs one walk of DEEP_STACK
** frames.
*/
static void add_deep_levels(lua_State *L, luaL_Buffer *b, int start) {
  loom_state *st = *(loom_state **)lua_getextraspace(L);
  lua_CFunction fn = st ? LOOM_HOST(st)->current_fn : NULL;
  lua_Debug ar;
  int level;
  for (level = start; level < start + LEVELS1; level++) {
    if (!lua_getstack(L, level, &ar) ||
        (fn != NULL && is_boundary(L, &ar, fn)))
      return;
    add_level(L, b, level);
  }
  lua_pushfstring(L, "\n\t...\t(skipping the rest: the stack is over %d "
                  "levels deep)", DEEP_STACK);
  luaL_addvalue(b);
}

/*
** lauxlib's traceback from level start, stopping at the reactor boundary
** and cut as luaL_traceback cuts it: a runaway recursion is reported in a
** few lines, in time linear in the depth (each of the ~LEVELS2 bottom
** levels and the boundary scan walk the stack once), and for a stack
** deeper than DEEP_STACK in one walk of DEEP_STACK frames.
*/
static void push_traceback(lua_State *L, int start) {
  luaL_Buffer b;
  lua_Debug ar;
  int n, level;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "stack traceback:");
  if (lua_getstack(L, start + DEEP_STACK, &ar)) {
    add_deep_levels(L, &b, start);
    luaL_pushresult(&b);
    return;
  }
  n = boundary_level(L, last_level(L)) - 1; /* levels ..n are the hook's */
  for (level = start; level <= n; level++) {
    if (n - start + 1 > LEVELS1 + LEVELS2 && level == start + LEVELS1) {
      int skip = n - start + 1 - LEVELS1 - LEVELS2;
      lua_pushfstring(L, "\n\t...\t(skipping %d levels)", skip);
      luaL_addvalue(&b);
      level += skip;
    }
    add_level(L, &b, level);
  }
  luaL_pushresult(&b);
}

/* Message handler: returns {err = value, tb = traceback}. */
static int msgh(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "err");
  push_traceback(L, 1);
  lua_setfield(L, -2, "tb");
  return 1;
}

/*
** core.traceback([msg [, level]]): debug.traceback's contract (a msg that
** is neither a string nor nil is returned as it is), with loom's cut
** traceback: linear in the depth, and stopping at the reactor boundary.
** loom.failure makes its tracebacks with it.
*/
int loom__l_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  int level = (int)luaL_optinteger(L, 2, 1);
  if (msg == NULL && !lua_isnoneornil(L, 1)) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_argcheck(L, level >= 0, 2, "level must not be negative");
  if (msg != NULL) {
    lua_pushstring(L, msg);
    lua_pushliteral(L, "\n");
  }
  push_traceback(L, level);
  lua_concat(L, msg != NULL ? 3 : 1);
  return 1;
}

/*
** Runs fn(ud) protected. Before lua_pcall only calls that cannot raise.
** Returns LUA_OK, or an error status with the caught value on the top of
** the stack (the caller reports it and pops it).
*/
int loom__call(loom_state *st, lua_CFunction fn, void *ud) {
  lua_State *L = LOOM_L(st);
  lua_CFunction saved = LOOM_HOST(st)->current_fn;
  int base, status;
  if (L == NULL)
    return LUA_ERRRUN;
  if (!lua_checkstack(L, 8)) {
    loom__fatal_report("loom__call", "Lua stack overflow");
    lua_pushnil(L);
    return LUA_ERRRUN;
  }
  base = lua_gettop(L);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  LOOM_HOST(st)->current_fn = fn;
  status = lua_pcall(L, 1, 0, base + 1);
  LOOM_HOST(st)->current_fn = saved;
  lua_remove(L, base + 1);
  return status;
}

void loom__fatal_report(const char *where, const char *msg) {
  fprintf(stderr, "loom: error in %s: %s\n", where, msg ? msg : "?");
}

/* Pushes hooks[name] (nil when missing). Runs inside a trampoline. */
int loom__push_hook(lua_State *L, loom_state *st, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LOOM_HOST(st)->hooks_ref);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

typedef struct report_args {
  loom_state *st;
  const char *where;
} report_args;

/* (args, caught, transport) -> hooks.error(where, err, tb, transport) */
static int deliver_report(lua_State *L) {
  report_args *a = lua_touserdata(L, 1);
  if (loom__push_hook(L, a->st, "error") == LUA_TNIL)
    return luaL_error(L, "no error hook installed");
  lua_pushstring(L, a->where);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "err");
    lua_getfield(L, 2, "tb");
  } else {
    lua_pushvalue(L, 2);
    lua_pushnil(L);
  }
  lua_pushvalue(L, 3);
  lua_call(L, 4, 1);
  return 1;
}

/*
** Reports the caught value on the top of the stack. Leaves in its place the
** Failure made by the hook, or the raw error value when reporting failed.
*/
void loom__report_error(loom_state *st, const char *where, int tindex) {
  lua_State *L = LOOM_L(st);
  int caught = lua_gettop(L);
  report_args a;
  a.st = st;
  a.where = where;
  if (!lua_checkstack(L, 8)) {
    loom__fatal_report(where, "Lua stack overflow");
    return;
  }
  lua_pushcfunction(L, deliver_report);
  lua_pushlightuserdata(L, &a);
  lua_pushvalue(L, caught);
  if (tindex)
    lua_pushvalue(L, tindex);
  else
    lua_pushnil(L);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK) {
    lua_replace(L, caught);
    return;
  }
  loom__fatal_report(where, lua_tostring(L, -1));
  lua_pop(L, 1);
  if (lua_istable(L, caught)) {
    lua_getfield(L, caught, "err"); /* Keep at least the original value. */
    lua_replace(L, caught);
  }
}

/*
** luaL_checkstring for a string C reads up to its first NUL: a host name,
** a path. One holding a NUL would be cut short there and name something
** else ("localhost\0.bank.example" verified as localhost), so it raises.
*/
const char *loom__check_cstring(lua_State *L, int idx) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  if (strlen(s) != n)
    luaL_argerror(L, idx, "holds a NUL byte");
  return s;
}

const char *loom__opt_cstring(lua_State *L, int idx, const char *def) {
  return lua_isnoneornil(L, idx) ? def : loom__check_cstring(L, idx);
}
