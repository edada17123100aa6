/*
** process.c: core.spawnProcess and the "loom.ProcessTransport" box. User
** value 1 is the ProcessProtocol; the box is pinned from the spawn until
** processEnded was delivered (exit and every pipe closed). Output is handed
** to childDataReceived (or outReceived/errReceived of a plain table); the
** rarer events go through hooks.processEvent, which builds the reasons.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define PROCESS "loom.ProcessTransport"
#define PROCESS_PROTOCOL 1
/* 2 is unused; 3 is UVAL_PRODUCER, so stream.c's producer calls serve. */
#define PROCESS_NUV 3

static const loom_class process_class;

typedef struct process_box {
  loom_process *p;
} process_box;

static process_box *check_box(lua_State *L) {
  return luaL_checkudata(L, 1, PROCESS);
}

typedef struct data_args {
  loom_process *p;
  int fd;
  const char *buf;
  size_t len;
  const char *what;
} data_args;

static void push_box_protocol(lua_State *L, loom_process *p) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(p->data));
  lua_getiuservalue(L, -1, PROCESS_PROTOCOL);
}

/* proto:childDataReceived(fd, data), else outReceived / errReceived. */
static int deliver_data(lua_State *L) {
  data_args *a = lua_touserdata(L, 1);
  push_box_protocol(L, a->p);
  if (lua_getfield(L, -1, "childDataReceived") != LUA_TNIL) {
    lua_insert(L, -2);
    lua_pushinteger(L, a->fd);
  } else {
    lua_pop(L, 1);
    if (a->fd > 2 || lua_getfield(L, -1, a->fd == 1 ? "outReceived"
                                                  : "errReceived") == LUA_TNIL)
      return 0;
    lua_insert(L, -2);
  }
  lua_pushlstring(L, a->buf, a->len);
  lua_call(L, lua_gettop(L) - 3, 0);
  return 0;
}

/* Logs the caught error under the protocol's name and pops it. */
static void hook_failed(loom_process *p, const char *where) {
  lua_State *L = LOOM_L(p->st);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(p->data));
  lua_insert(L, -2); /* transport, caught */
  loom__report_error(p->st, where, lua_gettop(L) - 1);
  lua_pop(L, 2);
}

static int alive(loom_process *p) {
  return LOOM_L(p->st) != NULL && p->data != NULL;
}

/* A hook error drops only that pipe, as Twisted drops the connection. */
static void on_data(loom_process *p, int fd, const char *buf, size_t len) {
  data_args a;
  if (!alive(p))
    return;
  a.p = p;
  a.fd = fd;
  a.buf = buf;
  a.len = len;
  if (loom__call(p->st, deliver_data, &a) != LUA_OK) {
    hook_failed(p, fd == 1 ? "outReceived" : fd == 2 ? "errReceived"
                                                     : "childDataReceived");
    loom__process_close_fd(p, fd);
  }
}

/* hooks.processEvent(transport, protocol, what, a, b) */
static int deliver_event(lua_State *L) {
  data_args *a = lua_touserdata(L, 1);
  loom_process *p = a->p;
  if (loom__push_hook(L, p->st, "processEvent") == LUA_TNIL)
    return 0;
  push_box_protocol(L, p);
  lua_pushstring(L, a->what);
  if (strcmp(a->what, "fd") == 0) {
    lua_pushinteger(L, a->fd);
    lua_pushnil(L);
  } else {
    lua_pushinteger(L, (lua_Integer)p->exit_status);
    lua_pushinteger(L, p->term_signal);
  }
  lua_call(L, 5, 0);
  return 0;
}

static void event(loom_process *p, const char *what, int fd) {
  data_args a;
  if (!alive(p))
    return;
  a.p = p;
  a.fd = fd;
  a.what = what;
  if (loom__call(p->st, deliver_event, &a) != LUA_OK)
    hook_failed(p, what);
}

/* The producer writing to stdin is told to stop when stdin closes. */
static int deliver_stop_producer(lua_State *L) {
  data_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->p->data));
  if (lua_getiuservalue(L, -1, UVAL_PRODUCER) == LUA_TNIL)
    return 0;
  lua_pushnil(L);
  lua_setiuservalue(L, -3, UVAL_PRODUCER);
  if (lua_getfield(L, -1, "stopProducing") == LUA_TNIL)
    return 0;
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

static void on_fd_closed(loom_process *p, int fd, int status) {
  (void)status;
  if (fd == 0 && alive(p)) {
    data_args a;
    a.p = p;
    if (loom__call(p->st, deliver_stop_producer, &a) != LUA_OK)
      hook_failed(p, "stopProducing");
  }
  event(p, "fd", fd);
}

/* The producer registered for stdin: pauseProducing / resumeProducing. */
static void on_pause_producer(loom_process *p, int pause) {
  loom_event a;
  if (!alive(p))
    return;
  memset(&a, 0, sizeof(a));
  a.st = p->st;
  a.data = p->data;
  a.status = pause;
  if (loom__call(p->st, loom__deliver_pause_producer, &a) != LUA_OK)
    hook_failed(p, pause ? "pauseProducing" : "resumeProducing");
}

static void on_exited(loom_process *p) {
  event(p, "exited", -1);
}

/* processEnded, then the box is emptied and its one ref released. */
static void on_ended(loom_process *p) {
  if (!alive(p))
    return;
  event(p, "ended", -1);
  loom__box_closed(LOOM_L(p->st), loom__ref(p->data), 1);
  p->data = NULL;
}

static const loom_process_vtable process_vt = {
  on_data, on_fd_closed, on_exited, on_ended, on_pause_producer
};

/* A NULL-terminated char* array of the strings in table idx, GC-owned. */
static char **string_array(lua_State *L, int idx, const char *what) {
  lua_Integer i, n = luaL_len(L, idx);
  char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (i = 1; i <= n; i++) {
    if (lua_geti(L, idx, i) != LUA_TSTRING)
      luaL_error(L, "spawnProcess: %s[%d] is a %s, not a string", what,
                 (int)i, luaL_typename(L, -1));
    v[i - 1] = LOOM_UNCONST(lua_tostring(L, -1)); /* Kept alive by the table. */
    if (strlen(v[i - 1]) != lua_rawlen(L, -1)) /* (it would be cut short) */
      luaL_error(L, "spawnProcess: %s[%d] holds a NUL byte", what, (int)i);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  return v;
}

/* fds: {plan for fd 0, fd 1, ...}: "r", "w", an fd to inherit, or false. */
static void read_fds(lua_State *L, int idx, loom_spawn_opts *o) {
  lua_Integer i, n = luaL_len(L, idx);
  if (n > LOOM_PROCESS_MAXFD)
    luaL_error(L, "spawnProcess: childFDs: at most %d fds",
               LOOM_PROCESS_MAXFD);
  o->nfds = (int)n;
  for (i = 0; i < n; i++) {
    const char *s;
    lua_geti(L, idx, i + 1);
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s != NULL && strcmp(s, "r") == 0)
      o->fds[i] = LOOM_FD_READ;
    else if (s != NULL && strcmp(s, "w") == 0)
      o->fds[i] = LOOM_FD_WRITE;
    else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
      o->fds[i] = (int)lua_tointeger(L, -1);
    else if (!lua_toboolean(L, -1))
      o->fds[i] = LOOM_FD_CLOSED;
    else
      luaL_error(L, "spawnProcess: childFDs[%d] must be \"r\", \"w\" or an "
                 "fd number", (int)i);
    lua_pop(L, 1);
  }
}

/*
** core.spawnProcess(proto, file, args, env|nil, cwd|nil, uid|nil, gid|nil,
** fds) -> transport, or nil and "file: ENOENT: no such file or directory".
** env nil inherits the host's environment.
*/
static int l_spawn(lua_State *L) {
  loom_state *st = loom__get_state(L);
  loom_spawn_opts o;
  process_box *box;
  loom_process *p;
  char err[512];
  int ref, rc;
  memset(&o, 0, sizeof(o));
  o.file = loom__check_cstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 8, LUA_TTABLE);
  o.args = string_array(L, 3, "args");
  if (!lua_isnil(L, 4))
    o.env = string_array(L, 4, "env");
  o.cwd = loom__opt_cstring(L, 5, NULL);
  o.set_uid = !lua_isnil(L, 6);
  o.uid = (int)luaL_optinteger(L, 6, 0);
  o.set_gid = !lua_isnil(L, 7);
  o.gid = (int)luaL_optinteger(L, 7, 0);
  read_fds(L, 8, &o);
  box = loom__new_box(L, &process_class, sizeof(*box), &ref);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, PROCESS_PROTOCOL);
  if ((p = calloc(1, sizeof(*p))) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  p->data = NULL;
  p->vt = &process_vt;
  rc = loom__process_spawn(p, st, &o, err, sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref); /* p is torn down by libuv. */
    return loom__push_error(L, rc, "%s", err);
  }
  p->data = loom__ref_data(ref);
  box->p = p;
  return 1;
}

/* ------------------------------------------------------------- methods */

static int l_process_write(lua_State *L) {
  process_box *box = check_box(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (box->p != NULL)
    loom__process_write(box->p, 0, data, len);
  return 0;
}

static int l_process_write_sequence(lua_State *L) {
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  for (i = 1; i <= n; i++) {
    lua_pushcfunction(L, l_process_write);
    lua_pushvalue(L, 1);
    lua_geti(L, 2, i);
    lua_call(L, 2, 0);
  }
  return 0;
}

static int l_process_write_to_child(lua_State *L) {
  process_box *box = check_box(L);
  int fd = (int)luaL_checkinteger(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  if (box->p != NULL && loom__process_write(box->p, fd, data, len) ==
                            UV_EBADF)
    return luaL_error(L, "writeToChild: fd %d is not a pipe to the child",
                      fd);
  return 0;
}

static int close_fd(lua_State *L, int fd) {
  process_box *box = check_box(L);
  if (box->p != NULL)
    loom__process_close_fd(box->p, fd);
  return 0;
}

static int l_process_close_stdin(lua_State *L) {
  return close_fd(L, 0);
}

static int l_process_close_stdout(lua_State *L) {
  return close_fd(L, 1);
}

static int l_process_close_stderr(lua_State *L) {
  return close_fd(L, 2);
}

static int l_process_close_child_fd(lua_State *L) {
  return close_fd(L, (int)luaL_checkinteger(L, 2));
}

static int l_process_lose_connection(lua_State *L) {
  close_fd(L, 0);
  close_fd(L, 1);
  return close_fd(L, 2);
}

/* Flow control, as Twisted's Process: reading what the child writes is
** paused and resumed; a producer feeding its stdin is paused while that
** pipe's queue is above the high-water mark. */
static int l_process_pause(lua_State *L) {
  process_box *box = check_box(L);
  if (box->p != NULL)
    loom__process_pause_reading(box->p, 1);
  return 0;
}

static int l_process_resume(lua_State *L) {
  process_box *box = check_box(L);
  if (box->p != NULL)
    loom__process_pause_reading(box->p, 0);
  return 0;
}

static loom_stream *stdin_of(lua_State *L) {
  process_box *box = check_box(L);
  return box->p != NULL ? loom__process_stream(box->p, 0) : NULL;
}

/* Bytes written to stdin and not yet taken by the child's pipe. */
static int l_process_buffered(lua_State *L) {
  loom_stream *s = stdin_of(L);
  lua_pushinteger(L, s ? (lua_Integer)loom__stream_buffered(s) : 0);
  return 1;
}

static int l_process_register_producer(lua_State *L) {
  return loom__register_producer(L, stdin_of(L));
}

static int l_process_unregister_producer(lua_State *L) {
  return loom__unregister_producer(L, stdin_of(L));
}

static const struct { const char *name; int num; } signals[] = {
  {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
  {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
  {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {NULL, 0}
};

static int check_signal(lua_State *L, int idx) {
  const char *name;
  int i;
  if (lua_isinteger(L, idx))
    return (int)lua_tointeger(L, idx);
  name = luaL_checkstring(L, idx);
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (i = 0; signals[i].name != NULL; i++)
    if (strcmp(signals[i].name, name) == 0)
      return signals[i].num;
  return luaL_error(L, "signalProcess: unknown signal %s", name);
}

/* Raises error.ProcessExitedAlready (made by reactor.lua's hooks). */
static int exited_already(lua_State *L) {
  loom_state *st = loom__get_state(L);
  if (loom__push_hook(L, st, "ProcessExitedAlready") == LUA_TNIL)
    return luaL_error(L, "signalProcess: the process has already exited");
  lua_pushliteral(L, "signalProcess: the process has already exited");
  lua_call(L, 1, 1);
  return lua_error(L);
}

static int l_process_signal(lua_State *L) {
  process_box *box = check_box(L);
  int sig = check_signal(L, 2), rc;
  if (box->p == NULL || box->p->exited)
    return exited_already(L);
  rc = uv_process_kill(&box->p->h, sig);
  if (rc == UV_ESRCH)
    return exited_already(L);
  if (rc < 0)
    return luaL_error(L, "signalProcess: %s: %s", uv_err_name(rc),
                      uv_strerror(rc));
  return 0;
}

static int l_process_tostring(lua_State *L) {
  process_box *box = check_box(L);
  if (box->p == NULL)
    lua_pushliteral(L, PROCESS " (ended)");
  else
    lua_pushfstring(L, PROCESS " (pid %d)", box->p->pid);
  return 1;
}

/* pid (nil once reaped, as Twisted), protocol; else a method. */
static int l_process_index(lua_State *L) {
  process_box *box = check_box(L);
  const char *key;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return 1;
  key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "pid") == 0 && box->p != NULL &&
      !box->p->exited)
    lua_pushinteger(L, box->p->pid);
  else if (key != NULL && strcmp(key, "protocol") == 0)
    lua_getiuservalue(L, 1, PROCESS_PROTOCOL);
  else
    lua_pushnil(L);
  return 1;
}

/* __gc with p set, only while the Lua state closes: forget Lua; the
** child runs on (as a Twisted process outlives its reactor). */
static void process_forget(void *p) {
  ((loom_process *)p)->data = NULL;
}

static const luaL_Reg process_methods[] = {
  {"write", l_process_write},
  {"writeSequence", l_process_write_sequence},
  {"writeToChild", l_process_write_to_child},
  {"closeStdin", l_process_close_stdin},
  {"closeStdout", l_process_close_stdout},
  {"closeStderr", l_process_close_stderr},
  {"closeChildFD", l_process_close_child_fd},
  {"loseConnection", l_process_lose_connection},
  {"signalProcess", l_process_signal},
  {"pauseProducing", l_process_pause},
  {"resumeProducing", l_process_resume},
  {"stopProducing", l_process_lose_connection},
  {"bufferedBytes", l_process_buffered},
  {"registerProducer", l_process_register_producer},
  {"unregisterProducer", l_process_unregister_producer},
  {NULL, NULL}
};

/* __close: loseConnection, which closes the child's pipes. */
static const loom_class process_class = {
  PROCESS, process_methods, PROCESS_NUV, l_process_lose_connection,
  process_forget
};

/* Expects the core module table on the top of the stack. */
void loom__open_process(lua_State *L) {
  loom__new_class(L, &process_class);
  luaL_getmetatable(L, PROCESS);
  lua_getfield(L, -1, "__index");
  lua_pushcclosure(L, l_process_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_process_tostring); /* with the pid */
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawnProcess");
}
