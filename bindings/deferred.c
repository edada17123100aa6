/*
** deferred.c: the hot half of loom.defer's Deferred, in C: making one,
** adding to its callback chain and running the chain (Twisted's
** _runCallbacks). A Deferred stays a plain Lua table, so it can be
** subclassed and inspected (d.called, d.result); this file reads and writes
** its fields raw, a missing field meaning the class default (called=false,
** paused=0, ...). defer.lua keeps the rest (errback's Failure, pause,
** cancel, DeferredList, inlineCallbacks) and hands in what this file needs
** through bind(). deferred_api.c makes and fires a Deferred from C
** (loom_deferred_new/callback/errback; binding.h, docs/defer.md).
**
** Why C: in Lua every chain step paid for a C call just to look at the
** result's type (getmetatable), and addCallback(f, ...) for a vararg frame
** plus select("#"); here both cost a few instructions.
**
** The chain is the Deferred's own sequence d[1..#d]; d._i is the next entry
** to run. Entries already run stay until the chain has run out (so #d is
** the end of the chain, with no count to maintain), then are cleared. A
** plain function (or callable) is a callback-only entry; anything else is a
** marker followed by one value:
**   ERRBACK, f      errback only
**   BOTH, f         the same function on both paths
**   FULL, {cb, eb, cbArgs|false, ebArgs|false}   anything with arguments
**   CONTINUE, d     hand the result on to d, which waits on this one
*/
#include "binding.h"

/*
** The upvalues shared by every function bind() makes, in upvalue order: the
** field names it reads and writes (made into strings once), the markers of
** chain entries (empty tables, told apart by identity), and what defer.lua
** hands in (by field name of bind's argument). One list, so that an
** upvalue's index and the value bind() puts there cannot drift apart.
*/
#define DEFERRED_UPVALUES(KEY, MARKER, OBJECT)                           \
  KEY(K_I, "_i")                                                         \
  KEY(K_CALLED, "called")                                                \
  KEY(K_RESULT, "result")                                                \
  KEY(K_RUNNING, "_running")                                             \
  KEY(K_PAUSED, "paused")                                                \
  KEY(K_CHAINEDTO, "_chainedTo")                                         \
  KEY(K_DEBUGINFO, "_debugInfo")                                         \
  KEY(K_FAILRESULT, "failResult")                                        \
  KEY(K_CANCELLER, "_canceller")                                         \
  KEY(K_SUPER, "super")                                                  \
  KEY(K_INIT, "init")                                                    \
  KEY(K_ARGN, "n")                                                       \
  MARKER(M_ERRBACK)                                                      \
  MARKER(M_BOTH)                                                         \
  MARKER(M_FULL)                                                         \
  MARKER(M_CONTINUE)                                                     \
  OBJECT(O_DEFERRED, "Deferred")                                         \
  OBJECT(O_FAILURE, "Failure")                                           \
  OBJECT(O_DEBUGINFO, "DebugInfo")                                       \
  OBJECT(O_PASSTHRU, "passthru")                                         \
  OBJECT(O_HANDLER, "handler")                                           \
  OBJECT(O_ALREADY, "alreadyCalled")                                     \
  OBJECT(O_INLINE, "inline")                                             \
  OBJECT(O_AWAIT, "AWAIT")

#define UPVALUE_NAME(name, string) name,
#define MARKER_NAME(name) name,

enum {
  UPVALUE_NONE, /* upvalues count from 1 */
  DEFERRED_UPVALUES(UPVALUE_NAME, MARKER_NAME, UPVALUE_NAME)
  NUPVALUES_END
};
#define NUPVALUES (NUPVALUES_END - 1)

#define UP(k) lua_upvalueindex(k)

enum { ENTRY_CALLBACK, ENTRY_ERRBACK, ENTRY_BOTH, ENTRY_FULL, ENTRY_CONTINUE };
enum { PLAIN, FAILURE, DEFERRED };

/* Raw field access; t is an absolute index -------------------------------- */

static void push_field(lua_State *L, int t, int key) {
  lua_pushvalue(L, UP(key));
  lua_rawget(L, t);
}

/* A missing field is the common case: it costs no conversion. */
static lua_Integer get_int(lua_State *L, int t, int key, lua_Integer def) {
  lua_Integer v = def;
  lua_pushvalue(L, UP(key));
  if (lua_rawget(L, t) == LUA_TNUMBER) {
    int isnum;
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum)
      v = def;
  }
  lua_pop(L, 1);
  return v;
}

static int get_bool(lua_State *L, int t, int key) {
  int b;
  lua_pushvalue(L, UP(key));
  b = lua_rawget(L, t) != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

static void set_int(lua_State *L, int t, int key, lua_Integer v) {
  lua_pushvalue(L, UP(key));
  lua_pushinteger(L, v);
  lua_rawset(L, t);
}

static void set_bool(lua_State *L, int t, int key, int b) {
  lua_pushvalue(L, UP(key));
  lua_pushboolean(L, b);
  lua_rawset(L, t);
}

static void set_nil(lua_State *L, int t, int key) {
  lua_pushvalue(L, UP(key));
  lua_pushnil(L);
  lua_rawset(L, t);
}

/* t[key] = the value at idx. */
static void set_value(lua_State *L, int t, int key, int idx) {
  lua_pushvalue(L, UP(key));
  lua_pushvalue(L, idx);
  lua_rawset(L, t);
}

/* d._chainedTo = nil; reading first is cheaper than a raw set of an
   absent key, and the key is almost always absent. */
static void clear_chained_to(lua_State *L, int d) {
  lua_pushvalue(L, UP(K_CHAINEDTO));
  if (lua_rawget(L, d) != LUA_TNIL)
    set_nil(L, d, K_CHAINEDTO);
  lua_pop(L, 1);
}

/* PLAIN, FAILURE or DEFERRED: an instance of Failure or Deferred, or of a
   subclass (class.isinstance walks "super" the same way; a walk this long
   is a cycle of "super" fields, not a class). */

static int classify(lua_State *L, int idx) {
  int kind = PLAIN, depth;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
    return PLAIN;
  for (depth = 0; depth < LOOM_MAX_CLASS_DEPTH; depth++) {
    if (lua_rawequal(L, -1, UP(O_FAILURE))) {
      kind = FAILURE;
      break;
    }
    if (lua_rawequal(L, -1, UP(O_DEFERRED))) {
      kind = DEFERRED;
      break;
    }
    if (lua_type(L, -1) != LUA_TTABLE)
      break;
    push_field(L, lua_gettop(L), K_SUPER);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return kind;
}

/* An error raised where the caller of the C function stands. */
static int error_at_caller(lua_State *L, const char *msg) {
  luaL_where(L, 2);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Unhandled-error bookkeeping ----------------------------------------------
** Twisted's DebugInfo: a finalizer object hung on a Deferred only while its
** chain ends in a Failure (its __gc, in defer.lua, logs it).
*/

static void clear_fail_result(lua_State *L, int d) {
  push_field(L, d, K_DEBUGINFO);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushvalue(L, UP(K_FAILRESULT));
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

static void note_fail_result(lua_State *L, int d, int failure) {
  push_field(L, d, K_DEBUGINFO);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, UP(O_DEBUGINFO));
    lua_setmetatable(L, -2);
    set_value(L, d, K_DEBUGINFO, lua_gettop(L));
  }
  lua_pushvalue(L, UP(K_FAILRESULT));
  lua_pushvalue(L, failure);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* After a chain ran as far as it can, with the result at r: remember a
   final Failure for the unhandled-error report, or forget one that got
   handled. */
static void settle(lua_State *L, int d, int r, int failed) {
  if (failed)
    note_fail_result(L, d, r);
  else
    clear_fail_result(L, d);
}

/* Every entry d[1..n] has run: clear them, so that the chain starts again
   at 1 and holds on to nothing. start is the _i the run began at. */
static void reset_chain(lua_State *L, int d, lua_Integer n,
                        lua_Integer start) {
  for (; n >= 1; n--) {
    lua_pushnil(L);
    lua_rawseti(L, d, n);
  }
  if (start != 1)
    set_int(L, d, K_I, 1);
}

/* Running the chain ---------------------------------------------------------- */

/* d._i, the next entry to run (an _i set from Lua below 1 counts as 1). */
static lua_Integer next_entry(lua_State *L, int d) {
  lua_Integer i = get_int(L, d, K_I, 1);
  return i < 1 ? 1 : i;
}

static int entry_kind(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE)
    return ENTRY_CALLBACK;
  if (lua_rawequal(L, idx, UP(M_ERRBACK)))
    return ENTRY_ERRBACK;
  if (lua_rawequal(L, idx, UP(M_BOTH)))
    return ENTRY_BOTH;
  if (lua_rawequal(L, idx, UP(M_FULL)))
    return ENTRY_FULL;
  if (lua_rawequal(L, idx, UP(M_CONTINUE)))
    return ENTRY_CONTINUE;
  return ENTRY_CALLBACK; /* a callable table */
}

static int corrupt(lua_State *L) {
  return luaL_error(L, "Deferred: corrupt callback chain");
}

/*
** With a FULL entry's table on top: replaces it with the function for this
** path and its argument list, if any. Returns how many were pushed (1 or
** 2), or 0 (nothing left on the stack) when the function is passthru.
*/
static int push_full_function(lua_State *L, int failed) {
  int slot = failed ? 2 : 1;
  if (lua_type(L, -1) != LUA_TTABLE)
    return corrupt(L);
  lua_rawgeti(L, -1, slot);
  if (lua_rawequal(L, -1, UP(O_PASSTHRU))) {
    lua_pop(L, 2);
    return 0;
  }
  lua_rawgeti(L, -2, slot + 2);
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_remove(L, -2);
    return 1;
  }
  if (lua_type(L, -1) != LUA_TTABLE)
    return corrupt(L);
  lua_remove(L, -3);
  return 2;
}

/* How many of the argument list at args to pass: its n, or its length;
   -1 when the stack cannot take them. */
static int arg_count(lua_State *L, int args) {
  lua_Integer count = -1;
  int isnum = 0;
  lua_pushvalue(L, UP(K_ARGN));
  if (lua_rawget(L, args) == LUA_TNUMBER)
    count = lua_tointegerx(L, -1, &isnum);
  if (!isnum)
    count = (lua_Integer)lua_rawlen(L, args);
  lua_pop(L, 1);
  if (count < 0)
    count = 0;
  if (count > 100000 || !lua_checkstack(L, (int)count + LUA_MINSTACK))
    return -1;
  return (int)count;
}

/*
** Calls f(result, args...), f and its argument list (when pushed is 2) on
** top, in protected mode: a callback's error becomes a Failure (made by
** the handler, with the traceback of the place that raised). The return
** value or the Failure replaces the result at r; returns whether the call
** succeeded. One protected call per callback, not one per chain: then a
** callback costs one C level of Lua's ~200, so Deferreds fired from each
** other's callbacks can nest as deep as Lua allows.
*/
static int call_entry(lua_State *L, int r, int pushed, int handler) {
  int nargs = 1, status;
  lua_pushvalue(L, r);
  if (pushed == 2) {
    int args = lua_gettop(L) - 1, k, count = arg_count(L, args);
    if (count < 0) {
      /* Too many to pass: the callback fails as if it had raised. */
      lua_settop(L, args - 2);
      lua_pushvalue(L, handler);
      lua_pushliteral(L, "Deferred: too many callback arguments");
      lua_call(L, 1, 1);
      lua_replace(L, r);
      return 0;
    }
    for (k = 1; k <= count; k++)
      lua_rawgeti(L, args, k);
    lua_remove(L, args);
    nargs += count;
  }
  status = lua_pcall(L, nargs, 1, handler);
  if (status != LUA_OK && classify(L, -1) != FAILURE) {
    /* The handler itself failed (out of C stack): wrap the error now
       that the stack has unwound. */
    lua_pushvalue(L, handler);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || classify(L, -1) != FAILURE)
      lua_error(L);
  }
  lua_replace(L, r);
  return status == LUA_OK;
}

/* A callback returned the Deferred at r: take its result if it has one
   (returns 1), or pause current and make r continue it when r fires. */
static int adopt(lua_State *L, int current, int r) {
  lua_Integer n;
  if (get_bool(L, r, K_CALLED) && get_int(L, r, K_PAUSED, 0) == 0) {
    push_field(L, r, K_RESULT);
    set_nil(L, r, K_RESULT);
    clear_fail_result(L, r);
    lua_replace(L, r);
    return 1;
  }
  set_value(L, current, K_RESULT, r);
  set_int(L, current, K_PAUSED, get_int(L, current, K_PAUSED, 0) + 1);
  set_value(L, current, K_CHAINEDTO, r);
  n = (lua_Integer)lua_rawlen(L, r);
  lua_pushvalue(L, UP(M_CONTINUE));
  lua_rawseti(L, r, n + 1);
  lua_pushvalue(L, current);
  lua_rawseti(L, r, n + 2);
  return 0;
}

/* A CONTINUE entry: the waiting Deferred at w takes the result at r. */
static void hand_on(lua_State *L, int current, int w, int r) {
  if (lua_type(L, w) != LUA_TTABLE)
    corrupt(L);
  set_value(L, w, K_RESULT, r);
  set_nil(L, current, K_RESULT);
  clear_fail_result(L, current);
  set_int(L, w, K_PAUSED, get_int(L, w, K_PAUSED, 0) - 1);
}

/*
** Runs current's entries from i until they run out, current waits on a
** Deferred, or a CONTINUE entry hands the result to a waiting Deferred;
** leaves that waiting Deferred, or nil, on the stack.
*/
static void run_entries(lua_State *L, int current, int handler,
                        lua_Integer i) {
  const lua_Integer start = i;
  const int r = lua_gettop(L) + 1, top = r;
  lua_Integer n;
  int failed, kind, type;
  push_field(L, current, K_RESULT);
  failed = classify(L, r) == FAILURE;
  n = (lua_Integer)lua_rawlen(L, current);
  for (;;) {
    int pushed = 1;
    if (i > n && (n = (lua_Integer)lua_rawlen(L, current), i > n))
      break; /* (a callback may have added entries) */
    type = lua_rawgeti(L, current, i++);
    kind = type == LUA_TTABLE ? entry_kind(L, -1) : ENTRY_CALLBACK;
    if (kind != ENTRY_CALLBACK) {
      lua_pop(L, 1);
      lua_rawgeti(L, current, i++);
      if (kind == ENTRY_CONTINUE) {
        hand_on(L, current, lua_gettop(L), r);
        set_int(L, current, K_I, i);
        lua_replace(L, r);
        return;
      }
      if (kind == ENTRY_FULL)
        pushed = push_full_function(L, failed);
      else if (kind == ENTRY_ERRBACK && !failed)
        pushed = 0;
    } else if (failed) {
      pushed = 0;
    }
    if (pushed == 0) {
      lua_settop(L, top);
      continue;
    }
    if (!call_entry(L, r, pushed, handler)) {
      failed = 1;
      continue;
    }
    kind = classify(L, r);
    failed = kind == FAILURE;
    if (kind == DEFERRED && lua_rawequal(L, r, current)) {
      /* It would wait on itself forever (Twisted warns, then hangs). */
      lua_pushvalue(L, handler);
      lua_pushliteral(L, "Callback returned the Deferred it was attached "
                         "to; this breaks the callback chain");
      lua_call(L, 1, 1);
      lua_replace(L, r);
      failed = 1;
    } else if (kind == DEFERRED) {
      if (!adopt(L, current, r)) {
        set_int(L, current, K_I, i);
        clear_fail_result(L, current); /* it waits: no result yet */
        lua_pushnil(L);
        lua_replace(L, r);
        return;
      }
      failed = classify(L, r) == FAILURE;
    }
  }
  set_value(L, current, K_RESULT, r);
  reset_chain(L, current, n, start);
  settle(L, current, r, failed);
  lua_pushnil(L);
  lua_replace(L, r);
}

/*
** Twisted's iterative _runCallbacks: a Deferred that hands its result to a
** waiting one (CONTINUE) goes on a chain stack and the waiting one runs
** next, so long chains of Deferreds waiting on Deferreds use constant C
** stack.
*/
static void run_callbacks(lua_State *L, int self) {
  int base = lua_gettop(L), handler = base + 1, chain = base + 2;
  int current = base + 3;
  lua_Integer depth = 0, i, n;
  if (get_bool(L, self, K_RUNNING) || get_int(L, self, K_PAUSED, 0) > 0)
    return;
  i = next_entry(L, self);
  n = (lua_Integer)lua_rawlen(L, self);
  if (i > n) {
    /* Nothing to run (a Deferred fired before any callback was added). */
    clear_chained_to(L, self);
    reset_chain(L, self, n, i);
    push_field(L, self, K_RESULT);
    settle(L, self, lua_gettop(L), classify(L, -1) == FAILURE);
    lua_settop(L, base);
    return;
  }
  luaL_checkstack(L, LUA_MINSTACK, "Deferred chain");
  lua_pushvalue(L, UP(O_HANDLER));
  lua_pushnil(L); /* the chain stack, made when first needed */
  lua_pushvalue(L, self);
  for (;;) {
    clear_chained_to(L, current);
    set_bool(L, current, K_RUNNING, 1);
    run_entries(L, current, handler, i);
    set_bool(L, current, K_RUNNING, 0);
    if (!lua_isnil(L, -1)) {
      /* Run the waiting Deferred now; come back to this one afterwards. */
      if (lua_isnil(L, chain)) {
        lua_newtable(L);
        lua_replace(L, chain);
      }
      lua_pushvalue(L, current);
      lua_rawseti(L, chain, ++depth);
      lua_replace(L, current);
    } else {
      lua_pop(L, 1);
      if (depth == 0)
        break;
      lua_rawgeti(L, chain, depth);
      lua_replace(L, current);
      lua_pushnil(L);
      lua_rawseti(L, chain, depth--);
    }
    if (get_int(L, current, K_PAUSED, 0) > 0)
      break;
    i = next_entry(L, current);
  }
  lua_settop(L, base);
}

/* Methods ------------------------------------------------------------------- */

/* Appends the `count` values on top of the stack to self's chain, then
   runs the chain if self has fired; returns self. */
static int append(lua_State *L, int count) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  int k;
  for (k = count; k >= 1; k--)
    lua_rawseti(L, 1, n + k);
  lua_pushvalue(L, UP(K_CALLED));
  if (lua_rawget(L, 1) != LUA_TNIL && lua_toboolean(L, -1)) {
    lua_settop(L, 1);
    run_callbacks(L, 1);
  }
  lua_pushvalue(L, 1);
  return 1;
}

/* Pushes {values from..to, n = count} (an argument list). */
static void pack_args(lua_State *L, int from, int to) {
  int k;
  lua_createtable(L, to - from + 1, 1);
  for (k = from; k <= to; k++) {
    lua_pushvalue(L, k);
    lua_rawseti(L, -2, k - from + 1);
  }
  set_int(L, lua_gettop(L), K_ARGN, to - from + 1);
}

/* Pushes FULL and {cb, eb, cbArgs|false, ebArgs|false}; 0 means false. */
static void push_full(lua_State *L, int cb, int eb, int cbArgs, int ebArgs) {
  int idx[4], k;
  idx[0] = cb, idx[1] = eb, idx[2] = cbArgs, idx[3] = ebArgs;
  lua_pushvalue(L, UP(M_FULL));
  lua_createtable(L, 4, 0);
  for (k = 0; k < 4; k++) {
    if (idx[k] == 0)
      lua_pushboolean(L, 0);
    else
      lua_pushvalue(L, idx[k]);
    lua_rawseti(L, -2, k + 1);
  }
}

/* Checks d:add*(f, ...) and returns the top. */
static int check_add(lua_State *L, const char *name) {
  if (lua_type(L, 1) != LUA_TTABLE)
    luaL_typeerror(L, 1, "Deferred");
  if (lua_type(L, 2) <= LUA_TNIL)
    luaL_error(L, "%s: f must be a function", name);
  return lua_gettop(L);
}

/*
** d:addCallback(f, ...), d:addErrback(f, ...), d:addBoth(f, ...): f on the
** success path, the failure path or both; extra arguments are passed after
** the result. Without them the entry is f alone, or `marker` and f; with
** them, a FULL entry.
*/
static int add(lua_State *L, const char *name, int marker, int onSuccess,
               int onFailure) {
  int top = check_add(L, name);
  if (top == 2) {
    if (marker == 0)
      return append(L, 1);
    lua_pushvalue(L, marker);
    lua_insert(L, 2);
    return append(L, 2);
  }
  pack_args(L, 3, top);
  push_full(L, onSuccess ? 2 : UP(O_PASSTHRU), onFailure ? 2 : UP(O_PASSTHRU),
            onSuccess ? top + 1 : 0, onFailure ? top + 1 : 0);
  return append(L, 2);
}

static int l_add_callback(lua_State *L) {
  return add(L, "addCallback", 0, 1, 0);
}

static int l_add_errback(lua_State *L) {
  return add(L, "addErrback", UP(M_ERRBACK), 0, 1);
}

static int l_add_both(lua_State *L) {
  return add(L, "addBoth", UP(M_BOTH), 1, 1);
}

/* An argument list is a table (a list, with an optional n) or nil. */
static int args_at(lua_State *L, int idx) {
  if (lua_isnil(L, idx))
    return 0;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "callback arguments must be a table (a list)");
  return idx;
}

/* d:addCallbacks(cb, eb, cbArgs?, ebArgs?): a nil cb or eb passes through. */
static int l_add_callbacks(lua_State *L) {
  int cb, eb;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 5);
  cb = lua_toboolean(L, 2) ? 2 : UP(O_PASSTHRU);
  eb = lua_toboolean(L, 3) ? 3 : UP(O_PASSTHRU);
  push_full(L, cb, eb, args_at(L, 4), args_at(L, 5));
  return append(L, 2);
}

/* Fires the Deferred at 1 with the value at 2. */
static void fire(lua_State *L) {
  set_bool(L, 1, K_CALLED, 1);
  set_value(L, 1, K_RESULT, 2);
  run_callbacks(L, 1);
}

/* d:callback(result): fires d; a Deferred cannot be a result. */
static int l_callback(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (get_bool(L, 1, K_CALLED)) {
    lua_pushvalue(L, UP(O_ALREADY));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
  }
  if (classify(L, 2) == DEFERRED)
    return error_at_caller(L, "Deferred:callback: the result cannot be a "
                              "Deferred (return it from a callback instead)");
  fire(L);
  return 0;
}

/*
** resolve(d, v) -> done, for the value an inlineCallbacks function
** returns: fires d with v (true); leaves d to the caller when v is a
** Deferred (false); drops v when d has fired already, cancelled meanwhile
** (true).
*/
static int l_resolve(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (!get_bool(L, 1, K_CALLED)) {
    if (classify(L, 2) == DEFERRED) {
      lua_pushboolean(L, 0);
      return 1;
    }
    fire(L);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_run_callbacks(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  run_callbacks(L, 1);
  return 0;
}

/*
** A new Deferred has room for 16 chain slots (8 to 16 callbacks) and for
** the fields firing sets (called, result, _running, one spare; twice that
** with a canceller), so that building and running a usual chain never
** rebuilds the table. That is 430 bytes with two callbacks; Twisted's
** Deferred takes 680 (docs/PERFORMANCE.md).
*/
#define NEW_ARRAY 16
#define NEW_FIELDS 4

/* Deferred:new(canceller?, ...), and Deferred(...): canceller(d) runs on
   d:cancel() before d fires. A subclass's init(d, canceller, ...) runs. */
static int l_new(lua_State *L) {
  int top = lua_gettop(L), d = top + 1, k;
  int cancellable = top >= 2 && !lua_isnil(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_createtable(L, NEW_ARRAY, cancellable ? 2 * NEW_FIELDS : NEW_FIELDS);
  lua_pushvalue(L, 1);
  lua_setmetatable(L, d);
  if (cancellable)
    set_value(L, d, K_CANCELLER, 2);
  lua_pushvalue(L, UP(K_INIT));
  if (lua_gettable(L, 1) == LUA_TNIL) {
    lua_settop(L, d);
    return 1;
  }
  lua_pushvalue(L, d);
  for (k = 2; k <= top; k++)
    lua_pushvalue(L, k);
  lua_call(L, top, 0);
  return 1;
}

/* defer.succeed(v): a Deferred fired with v. */
static int l_succeed(lua_State *L) {
  int kind;
  lua_settop(L, 1);
  kind = classify(L, 1);
  if (kind == DEFERRED)
    return error_at_caller(L, "Deferred:callback: the result cannot be a "
                              "Deferred (return it from a callback instead)");
  lua_createtable(L, 0, NEW_FIELDS);
  lua_pushvalue(L, UP(O_DEFERRED));
  lua_setmetatable(L, 2);
  set_bool(L, 2, K_CALLED, 1);
  set_value(L, 2, K_RESULT, 1);
  if (kind == FAILURE)
    note_fail_result(L, 2, 1);
  lua_settop(L, 2);
  return 1;
}

/* await's continuation: resumed with (ok, value) by inlineCallbacks. */
static int await_resumed(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  lua_settop(L, 3);
  if (lua_toboolean(L, 2))
    return 1;
  return lua_error(L);
}

/*
** defer.await(d): inside an inlineCallbacks function, d's result, or its
** Failure raised (error(failure, 0)). A value that is not a Deferred is
** returned as is; a Deferred that has fired gives its result (taken from
** it, as in Twisted) without yielding; otherwise the coroutine yields
** (AWAIT, d) to inlineCallbacks, which resumes it with (ok, value).
** inline[1] is the coroutine inlineCallbacks is running.
*/
static int l_await(lua_State *L) {
  lua_settop(L, 1);
  lua_rawgeti(L, UP(O_INLINE), 1);
  if (!lua_pushthread(L) && lua_rawequal(L, 2, 3)) {
    lua_settop(L, 1);
  } else {
    return error_at_caller(L, "defer.await: called outside an "
                              "inlineCallbacks function");
  }
  if (classify(L, 1) != DEFERRED)
    return 1;
  if (get_bool(L, 1, K_CALLED) && get_int(L, 1, K_PAUSED, 0) == 0 &&
      !get_bool(L, 1, K_RUNNING)) {
    push_field(L, 1, K_RESULT);
    set_nil(L, 1, K_RESULT);
    clear_fail_result(L, 1);
    if (classify(L, 2) == FAILURE)
      return lua_error(L);
    return 1;
  }
  if (!lua_isyieldable(L))
    /* A callback chain (C) runs between here and the coroutine's base. */
    return error_at_caller(L, "defer.await: cannot wait inside a Deferred "
                              "callback (or another C call) running in this "
                              "coroutine; make that callback an "
                              "inlineCallbacks function");
  lua_pushvalue(L, UP(O_AWAIT));
  lua_pushvalue(L, 1);
  return lua_yieldk(L, 2, 0, await_resumed);
}

/* Raising at a plain coroutine.yield ------------------------------------------
** Inside an inlineCallbacks body coroutine.yield(d) waits for d as await(d)
** does, and a failure must be raised where the body yielded. await raises
** from its continuation; coroutine.yield has none, and a coroutine cannot be
** resumed "with an error". But the first thing a coroutine resumed from a
** yield does is return from the C function that yielded, and a return hook
** sees that return. So raiseOnResume arms a one-shot return hook on the
** suspended coroutine; the hook puts back whatever hook the coroutine had
** (a debugger's, a coverage tool's) and raises the Failure right there,
** inside any pcall around the yield. The Failure and the hook it replaced
** wait for that one instant in a weak-keyed table in the registry, keyed by
** the coroutine (so a coroutine that is never resumed takes them along).
*/

typedef struct SavedHook {
  lua_Hook hook;
  int mask, count;
} SavedHook;

static const char ARMED = 0; /* registry key of the weak-keyed table */

/* Pushes the table of armed coroutines, made on first use. */
static void push_armed(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ARMED) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ARMED);
}

static void raise_at_yield(lua_State *L, lua_Debug *ar) {
  const SavedHook *saved;
  (void)ar;
  push_armed(L);
  lua_pushthread(L);
  lua_rawget(L, -2);
  saved = (const SavedHook *)lua_touserdata(L, -1);
  if (saved == NULL) { /* (not armed by raiseOnResume: just disarm) */
    lua_sethook(L, NULL, 0, 0);
    lua_pop(L, 2);
    return;
  }
  lua_sethook(L, saved->hook, saved->mask, saved->count);
  lua_getiuservalue(L, -1, 1);
  lua_pushthread(L);
  lua_pushnil(L);
  lua_rawset(L, -5);
  lua_error(L);
}

/* raiseOnResume(co, failure): co, suspended in a coroutine.yield, raises
   failure there when next resumed. */
static int l_raise_on_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  SavedHook *saved;
  luaL_argexpected(L, co != NULL && lua_status(co) == LUA_YIELD, 1,
                   "suspended coroutine");
  lua_settop(L, 2);
  push_armed(L);
  lua_pushvalue(L, 1);
  saved = (SavedHook *)lua_newuserdatauv(L, sizeof *saved, 1);
  saved->hook = lua_gethook(co);
  saved->mask = lua_gethookmask(co);
  saved->count = lua_gethookcount(co);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_rawset(L, 3);
  lua_sethook(co, raise_at_yield, LUA_MASKRET, 0);
  return 0;
}

/* Registry key of the bound Deferred class, for deferred_api.c. */
static const char BOUND_CLASS = 0;

/* bind{Deferred=, Failure=, DebugInfo=, passthru=, handler=, alreadyCalled=,
   inline=, AWAIT=} -> {new=, addCallback=, ..., succeed=}. */
static int l_bind(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"new", l_new},
    {"addCallback", l_add_callback},
    {"addErrback", l_add_errback},
    {"addBoth", l_add_both},
    {"addCallbacks", l_add_callbacks},
    {"callback", l_callback},
    {"runCallbacks", l_run_callbacks},
    {"succeed", l_succeed},
    {"await", l_await},
    {"resolve", l_resolve},
    {NULL, NULL}
  };
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 2 * NUPVALUES + 4, "bind");
  lua_newtable(L);
  lua_pushcfunction(L, l_raise_on_resume);
  lua_setfield(L, -2, "raiseOnResume");
#define PUSH_KEY(name, key) lua_pushliteral(L, key);
#define PUSH_MARKER(name) lua_newtable(L);
#define PUSH_OBJECT(name, field)                                           \
  if (lua_getfield(L, 1, field) == LUA_TNIL)                               \
    return luaL_error(L, "bind: %s is required", field);
  DEFERRED_UPVALUES(PUSH_KEY, PUSH_MARKER, PUSH_OBJECT)
#undef PUSH_KEY
#undef PUSH_MARKER
#undef PUSH_OBJECT
  lua_pushvalue(L, 2 + O_DEFERRED); /* (upvalue k is at 2 + k) */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &BOUND_CLASS);
  luaL_setfuncs(L, methods, NUPVALUES);
  return 1;
}

/* The bound Deferred class (nil before loom.defer was loaded), for the C
   entry points of deferred_api.c. */
int loom__push_deferred_class(lua_State *L) {
  return lua_rawgetp(L, LUA_REGISTRYINDEX, &BOUND_CLASS);
}

int luaopen_loom_defer_core(lua_State *L) {
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_bind);
  lua_setfield(L, -2, "bind");
  return 1;
}
