/*
** thread.c: deferToThread / callInThread / callFromThread over the state's
** thread pool (host/thread.c). Each worker thread owns a Lua state of its
** own; a function crosses as bytecode (no upvalues but _ENV) and values
** are copied as bytes: nil, booleans, numbers, strings and tables of them.
** Results come back through hooks.threadDone(id, ok, values, traceback).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "binding.h"

#define MAX_DEPTH 64

/* ------------------------------------------------------------ copying */

typedef struct copier {
  lua_State *L;
  loom_buf *b;
  const char *what;  /* "deferToThread" */
  char err[256];
} copier;

static int put(copier *c, const void *p, size_t n) {
  if (loom__buf_append(c->b, p, n) < 0)
    return snprintf(c->err, sizeof(c->err), "%s: out of memory", c->what), -1;
  return 0;
}

static int put_tag(copier *c, char tag) {
  return put(c, &tag, 1);
}

static int put_string(copier *c, char tag, const char *s, size_t n) {
  uint64_t len = n;
  if (put_tag(c, tag) < 0 || put(c, &len, sizeof(len)) < 0)
    return -1;
  return put(c, s, n);
}

/* Appends ".key" or "[1]" for the key at the top of the stack. */
static void extend_path(lua_State *L, char *path, size_t size) {
  size_t n = strlen(path);
  if (lua_type(L, -1) == LUA_TSTRING)
    snprintf(path + n, size - n, ".%s", lua_tostring(L, -1));
  else if (lua_isinteger(L, -1))
    snprintf(path + n, size - n, "[%lld]", (long long)lua_tointeger(L, -1));
  else
    snprintf(path + n, size - n, "[%s]", luaL_typename(L, -1));
}

static int put_value(copier *c, int idx, char *path, size_t size,
                     int depth);

static int put_table(copier *c, int idx, char *path, size_t size,
                     int depth) {
  lua_State *L = c->L;
  size_t n = strlen(path);
  if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
    return snprintf(c->err, sizeof(c->err), "%s: %s is nested too deeply "
                    "(or has a cycle)", c->what, path), -1;
  idx = lua_absindex(L, idx);
  if (put_tag(c, 'T') < 0)
    return -1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int kt = lua_type(L, -2);
    lua_pushvalue(L, -2);
    extend_path(L, path, size);
    lua_pop(L, 1);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      snprintf(c->err, sizeof(c->err), "%s: %s has a %s key", c->what,
               path, lua_typename(L, kt));
      lua_pop(L, 2);
      return -1;
    }
    if (put_value(c, -2, path, size, depth + 1) < 0 ||
        put_value(c, -1, path, size, depth + 1) < 0) {
      lua_pop(L, 2);
      return -1;
    }
    path[n] = '\0';
    lua_pop(L, 1);
  }
  return put_tag(c, 'E');
}

static int put_value(copier *c, int idx, char *path, size_t size,
                     int depth) {
  lua_State *L = c->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return put_tag(c, 'n');
  case LUA_TBOOLEAN:
    return put_tag(c, lua_toboolean(L, idx) ? 't' : 'f');
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      return put_tag(c, 'i') < 0 ? -1 : put(c, &i, sizeof(i));
    } else {
      lua_Number d = lua_tonumber(L, idx);
      return put_tag(c, 'd') < 0 ? -1 : put(c, &d, sizeof(d));
    }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(c, 's', s, n);
  }
  case LUA_TTABLE:
    return put_table(c, idx, path, size, depth);
  default:
    snprintf(c->err, sizeof(c->err), "%s: %s is a %s", c->what, path,
             luaL_typename(L, idx));
    return -1;
  }
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return loom__buf_append(ud, p, n) < 0;
}

/* The function at idx as bytecode; only an _ENV upvalue is allowed. */
static int put_function(copier *c, int idx) {
  lua_State *L = c->L;
  loom_buf code = {NULL, 0, 0};
  const char *name;
  int i, rc;
  if (lua_type(L, idx) != LUA_TFUNCTION)
    return snprintf(c->err, sizeof(c->err), "%s: expected a function, got "
                    "a %s", c->what, luaL_typename(L, idx)), -1;
  if (lua_iscfunction(L, idx))
    return snprintf(c->err, sizeof(c->err), "%s: cannot send a C function "
                    "to a thread", c->what), -1;
  for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      return snprintf(c->err, sizeof(c->err), "%s: the function uses "
                      "upvalue '%s'; only globals and arguments reach a "
                      "thread (pass it as an argument)", c->what, name), -1;
  }
  lua_pushvalue(L, idx);
  rc = lua_dump(L, dump_writer, &code, 0);
  lua_pop(L, 1);
  if (rc == 0)
    rc = put_string(c, 'F', code.data, code.len);
  else
    snprintf(c->err, sizeof(c->err), "%s: out of memory", c->what);
  loom__buf_free(&code);
  return rc == 0 ? 0 : -1;
}

/* Copies values first..last as "<name> 1", "<name> 2"...; -1 on error. */
static int put_values(copier *c, int first, int last, const char *name) {
  uint32_t n = (uint32_t)(last >= first ? last - first + 1 : 0);
  char path[200];
  int i;
  if (put(c, &n, sizeof(n)) < 0)
    return -1;
  for (i = first; i <= last; i++) {
    snprintf(path, sizeof(path), "%s %d", name, i - first + 1);
    if (put_value(c, i, path, sizeof(path), 0) < 0)
      return -1;
  }
  return 0;
}

typedef struct reader {
  const char *p, *end;
} reader;

static const char *take(lua_State *L, reader *r, size_t n) {
  const char *p = r->p;
  if ((size_t)(r->end - r->p) < n)
    luaL_error(L, "thread value copy: truncated");
  r->p += n;
  return p;
}

static void get_value(lua_State *L, reader *r);

static void get_table(lua_State *L, reader *r) {
  luaL_checkstack(L, 4, "thread value copy: nested too deeply");
  lua_newtable(L);
  while (*take(L, r, 1) != 'E') {
    r->p--;
    get_value(L, r);
    get_value(L, r);
    lua_rawset(L, -3);
  }
}

/* Pushes the next value; a function ('F') is loaded as bytecode. */
static void get_value(lua_State *L, reader *r) {
  char tag = *take(L, r, 1);
  uint64_t len;
  lua_Integer i;
  lua_Number d;
  switch (tag) {
  case 'n': lua_pushnil(L); break;
  case 't': lua_pushboolean(L, 1); break;
  case 'f': lua_pushboolean(L, 0); break;
  case 'i': memcpy(&i, take(L, r, sizeof(i)), sizeof(i));
            lua_pushinteger(L, i); break;
  case 'd': memcpy(&d, take(L, r, sizeof(d)), sizeof(d));
            lua_pushnumber(L, d); break;
  case 'T': get_table(L, r); break;
  case 's':
  case 'F':
    memcpy(&len, take(L, r, sizeof(len)), sizeof(len));
    if (tag == 's') {
      lua_pushlstring(L, take(L, r, (size_t)len), (size_t)len);
    } else if (luaL_loadbufferx(L, take(L, r, (size_t)len), (size_t)len,
                                "=thread", "b") != LUA_OK) {
      lua_error(L);
    }
    break;
  default:
    luaL_error(L, "thread value copy: bad tag");
  }
}

/* Pushes a count-prefixed list of values; returns the count. */
static int get_values(lua_State *L, reader *r) {
  uint32_t n, k;
  memcpy(&n, take(L, r, sizeof(n)), sizeof(n));
  luaL_checkstack(L, (int)n + 4, "thread value copy: too many values");
  for (k = 0; k < n; k++)
    get_value(L, r);
  return (int)n;
}

/* --------------------------------------------------------------- jobs */

typedef struct thread_job {
  loom_job job;     /* first */
  loom_state *st;
  lua_Integer id;   /* the Deferred's key in loom.threads; 0: none */
  int ok;
  loom_buf in;      /* function, arguments */
  loom_buf out;     /* results, or error value and traceback */
} thread_job;

typedef struct worker {
  lua_State *L;
  loom_state *st;
} worker;

static void free_job(thread_job *t) {
  loom__buf_free(&t->in);
  loom__buf_free(&t->out);
  free(t);
}

#define WORKER_TB "loom.worker.traceback"

/* Worker message handler: keeps the error value; the traceback goes to
** the registry (a handler returns one value). */
static int worker_msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, WORKER_TB);
  return 1;
}

/* Protected, on the worker: run f(args) and copy the results out. */
static int run_job(lua_State *L) {
  thread_job *t = lua_touserdata(L, 1);
  reader r;
  copier c;
  int base = lua_gettop(L), n;
  r.p = t->in.data;
  r.end = t->in.data + t->in.len;
  get_value(L, &r);
  n = get_values(L, &r);
  lua_call(L, n, LUA_MULTRET);
  c.L = L;
  c.b = &t->out;
  c.what = "deferToThread";
  if (put_values(&c, base + 1, lua_gettop(L), "result") < 0) {
    t->out.len = 0;
    lua_pushstring(L, c.err);
    return lua_error(L);
  }
  return 0;
}

/*
** With the error value on the top: copies it and the worker's traceback.
** A value that cannot be copied is replaced by a description of it.
*/
static void copy_error(lua_State *L, thread_job *t) {
  int e = lua_gettop(L);
  copier c;
  c.L = L;
  c.b = &t->out;
  c.what = "deferToThread";
  t->out.len = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, WORKER_TB);
  if (put_values(&c, e, e + 1, "error") == 0)
    return;
  t->out.len = 0;
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, e));
  lua_replace(L, e);
  if (put_values(&c, e, e + 1, "error") < 0)
    t->out.len = 0;
}

static void work(loom_job *j, void *ctx) {
  thread_job *t = (thread_job *)j;
  worker *w = ctx;
  lua_State *L = w != NULL ? w->L : NULL;
  if (L == NULL) {
    t->ok = 0;
    return;
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, worker_msgh);
  lua_pushcfunction(L, run_job);
  lua_pushlightuserdata(L, t);
  t->ok = lua_pcall(L, 1, 0, 1) == LUA_OK;
  if (!t->ok)
    copy_error(L, t);
  lua_settop(L, 0);
}

/* hooks.threadDone(id, ok, {values}, traceback) */
static int deliver_done(lua_State *L) {
  thread_job *t = lua_touserdata(L, 1);
  reader r;
  int n, top;
  if (loom__push_hook(L, t->st, "threadDone") == LUA_TNIL)
    return 0;
  lua_pushinteger(L, t->id);
  lua_pushboolean(L, t->ok && t->out.len > 0);
  if (t->out.len == 0) {
    lua_createtable(L, 1, 0);
    lua_pushliteral(L, "deferToThread: the worker failed (out of memory)");
    lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "");
    lua_call(L, 4, 0);
    return 0;
  }
  r.p = t->out.data;
  r.end = t->out.data + t->out.len;
  top = lua_gettop(L);
  n = get_values(L, &r);
  lua_createtable(L, n, 1);
  lua_insert(L, top + 1);
  lua_pushinteger(L, n);
  lua_setfield(L, top + 1, "n");
  for (; n > 0; n--)
    lua_rawseti(L, top + 1, n);
  lua_pushnil(L); /* The traceback: the error's second value. */
  if (!t->ok) {
    lua_rawgeti(L, top + 1, 2);
    lua_replace(L, -2);
  }
  lua_call(L, 4, 0);
  return 0;
}

static void job_done(loom_job *j, int cancelled) {
  thread_job *t = (thread_job *)j;
  loom_state *st = t->st;
  if (!cancelled && LOOM_L(st) != NULL &&
      loom__call(st, deliver_done, t) != LUA_OK) {
    loom__report_error(st, "deferToThread", 0);
    lua_pop(LOOM_L(st), 1);
  }
  free_job(t);
}

/* ----------------------------------------------- callFromThread posts */

/* Runs a function (and arguments) copied from a worker, on the loop. */
static int deliver_call(lua_State *L) {
  thread_job *t = lua_touserdata(L, 1);
  reader r;
  int n;
  r.p = t->in.data;
  r.end = t->in.data + t->in.len;
  get_value(L, &r);
  n = get_values(L, &r);
  lua_call(L, n, 0);
  return 0;
}

/* hooks.callFromThread(): runs the loop thread's own queued calls. */
static int deliver_wake(lua_State *L) {
  thread_job *t = lua_touserdata(L, 1);
  if (loom__push_hook(L, t->st, "callFromThread") != LUA_TNIL)
    lua_call(L, 0, 0);
  return 0;
}

static void call_done(loom_job *j, int cancelled) {
  thread_job *t = (thread_job *)j;
  loom_state *st = t->st;
  if (!cancelled && LOOM_L(st) != NULL &&
      loom__call(st, t->in.len > 0 ? deliver_call : deliver_wake, t) !=
          LUA_OK) {
    loom__report_error(st, "callFromThread", 0);
    lua_pop(LOOM_L(st), 1);
  }
  free_job(t);
}

/* Copies function (first) and its arguments into a new job; raises. */
static thread_job *new_job(lua_State *L, loom_state *st, const char *what,
                           int first) {
  thread_job *t = calloc(1, sizeof(*t));
  copier c;
  if (t == NULL)
    luaL_error(L, "%s: out of memory", what);
  t->st = st;
  c.L = L;
  c.b = &t->in;
  c.what = what;
  if (put_function(&c, first) < 0 ||
      put_values(&c, first + 1, lua_gettop(L), "argument") < 0) {
    free_job(t);
    lua_pushstring(L, c.err);
    lua_error(L);
  }
  return t;
}

/* worker's callFromThread(f, ...): post f and its arguments to the loop. */
static int l_worker_call_from_thread(lua_State *L) {
  worker *w = lua_touserdata(L, lua_upvalueindex(1));
  thread_job *t = new_job(L, w->st, "callFromThread", 1);
  t->job.work = NULL;
  t->job.done = call_done;
  if (loom__pool_post(w->st->pool, &t->job) < 0) {
    free_job(t);
    return luaL_error(L, "callFromThread: the reactor is shutting down");
  }
  return 0;
}

/* Protected: the standard library and require "loom.worker". */
static int open_worker(lua_State *L) {
  worker *w = lua_touserdata(L, 1);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, l_worker_call_from_thread, 1);
  lua_setfield(L, -2, "callFromThread");
  lua_setfield(L, -2, "loom.worker");
  return 0;
}

/* On the worker thread: its own Lua state, kept for the thread's life. */
static void *worker_open(void *arg) {
  worker *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return NULL;
  w->st = arg;
  w->L = luaL_newstate();
  if (w->L != NULL) {
    lua_pushcfunction(w->L, open_worker);
    lua_pushlightuserdata(w->L, w);
    if (lua_pcall(w->L, 1, 0, 0) != LUA_OK) {
      lua_close(w->L);
      w->L = NULL; /* Its jobs fail with "out of memory". */
    }
  }
  return w;
}

static void worker_close(void *ctx) {
  worker *w = ctx;
  if (w != NULL && w->L != NULL)
    lua_close(w->L);
  free(w);
}

static loom_pool *get_pool(lua_State *L, loom_state *st) {
  loom_pool_config cfg;
  const char *env = getenv("UV_THREADPOOL_SIZE");
  int rc;
  if (st->pool != NULL)
    return st->pool;
  cfg.worker_open = worker_open;
  cfg.worker_close = worker_close;
  cfg.arg = st;
  cfg.size = env != NULL && atoi(env) > 0 ? atoi(env) : 4;
  if ((rc = loom__pool_start(st, &cfg)) < 0)
    luaL_error(L, "thread pool: %s", uv_strerror(rc));
  return st->pool;
}

/*
** core.threadCall(what, id, f, ...): runs f(...) on a worker; its results
** reach hooks.threadDone(id, ...). Raises for anything that cannot cross.
*/
static int l_thread_call(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *what = luaL_checkstring(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  loom_pool *pool = get_pool(L, st);
  thread_job *t = new_job(L, st, what, 3);
  int rc;
  t->id = id;
  t->job.work = work;
  t->job.done = job_done;
  if ((rc = loom__pool_submit(pool, &t->job)) < 0) {
    free_job(t);
    return luaL_error(L, "%s: cannot start a thread: %s", what,
                      uv_strerror(rc));
  }
  return 0;
}

/* core.wakeFromThread(): hooks.callFromThread() runs soon on the loop. */
static int l_wake(lua_State *L) {
  loom_state *st = loom__get_state(L);
  loom_pool *pool = get_pool(L, st);
  thread_job *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return luaL_error(L, "callFromThread: out of memory");
  t->st = st;
  t->job.done = call_done;
  if (loom__pool_post(pool, &t->job) < 0) {
    free(t);
    return luaL_error(L, "callFromThread: the reactor is shutting down");
  }
  return 0;
}

static int l_set_pool_size(lua_State *L) {
  loom_state *st = loom__get_state(L);
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "pool size must be 1-1024");
  loom__pool_set_size(get_pool(L, st), (int)n);
  return 0;
}

static const luaL_Reg thread_functions[] = {
  {"threadCall", l_thread_call},
  {"wakeFromThread", l_wake},
  {"setPoolSize", l_set_pool_size},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_thread(lua_State *L) {
  luaL_setfuncs(L, thread_functions, 0);
}
