/*
** stdio.c: core.standardIO and the "loom.StandardIO" box: standard input
** and output as the transport of one protocol (Twisted's
** stdio.StandardIO). The box is pinned from creation until connectionLost
** was delivered, once both directions closed. User value 1 is the
** protocol, as on a stream transport, so a read is one Lua call.
*/
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define STDIO "loom.StandardIO"
#define PIPE_ADDRESS "loom.PipeAddress"

/* User values of the box. */
#define IO_PROTOCOL 1
#define IO_PRODUCER 2
#define IO_REASON 3
#define IO_NUV 3

static const loom_class stdio_class;

typedef struct stdio_box {
  loom_stdio *p;
} stdio_box;

static stdio_box *check_box(lua_State *L) {
  return luaL_checkudata(L, 1, STDIO);
}

/* The open transport, or NULL once it ended. */
static loom_stdio *to_io(lua_State *L) {
  return check_box(L)->p;
}

static int alive(loom_stdio *io) {
  return LOOM_L(io->st) != NULL && io->data != NULL;
}

/* ---------------------------------------------------------------- hooks */

typedef struct io_args {
  loom_stdio *io;
  const char *buf;
  size_t len;
  int status;
  int result;
} io_args;

/* Pushes the box and its protocol; leaves the box at -2. */
static void push_box_protocol(lua_State *L, loom_stdio *io) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(io->data));
  lua_getiuservalue(L, -1, IO_PROTOCOL);
}

/* A hook raised: log it, keep its Failure for connectionLost, abort. */
static void hook_failed(loom_stdio *io, const char *where) {
  lua_State *L = LOOM_L(io->st);
  int t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(io->data));
  lua_insert(L, -2); /* transport, caught */
  t = lua_gettop(L) - 1;
  loom__report_error(io->st, where, t); /* transport, Failure */
  if (lua_type(L, t) == LUA_TUSERDATA)
    lua_setiuservalue(L, t, IO_REASON);
  else
    lua_pop(L, 1);
  lua_pop(L, 1);
  loom__stdio_close(io, LOOM_CLOSE_HOOK_ERROR);
}

/* Calls protocol[name](protocol) when present; a->result says whether. */
static int deliver_optional(lua_State *L, const char *name) {
  io_args *a = lua_touserdata(L, 1);
  push_box_protocol(L, a->io);
  a->result = lua_getfield(L, -1, name) != LUA_TNIL;
  if (a->result) {
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

static int deliver_data(lua_State *L) {
  io_args *a = lua_touserdata(L, 1);
  push_box_protocol(L, a->io);
  if (lua_getfield(L, -1, "dataReceived") != LUA_TNIL) {
    lua_insert(L, -2);
    lua_pushlstring(L, a->buf, a->len);
    lua_call(L, 2, 0);
  }
  return 0;
}

static void on_data(loom_stdio *io, const char *buf, size_t len) {
  io_args a;
  if (!alive(io))
    return;
  a.io = io;
  a.buf = buf;
  a.len = len;
  if (loom__call(io->st, deliver_data, &a) != LUA_OK)
    hook_failed(io, "dataReceived");
}

static int deliver_read_lost(lua_State *L) {
  return deliver_optional(L, "readConnectionLost");
}

/*
** End of input. A protocol with readConnectionLost handles half-closes
** (Twisted's IHalfCloseableProtocol) and may go on writing; any other is
** disconnected as by loseConnection: the output is flushed first.
*/
static void on_read_lost(loom_stdio *io) {
  io_args a;
  a.io = io;
  a.result = 0;
  if (alive(io) && loom__call(io->st, deliver_read_lost, &a) != LUA_OK)
    hook_failed(io, "readConnectionLost");
  else if (!a.result)
    loom__stdio_lose(io);
}

static int deliver_write_lost(lua_State *L) {
  return deliver_optional(L, "writeConnectionLost");
}

static void on_write_lost(loom_stdio *io) {
  io_args a;
  a.io = io;
  if (alive(io) && loom__call(io->st, deliver_write_lost, &a) != LUA_OK)
    hook_failed(io, "writeConnectionLost");
}

static int deliver_pause_producer(lua_State *L) {
  io_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->io->data));
  if (lua_getiuservalue(L, -1, IO_PRODUCER) == LUA_TNIL)
    return 0;
  lua_getfield(L, -1, a->status ? "pauseProducing" : "resumeProducing");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

static void on_pause_producer(loom_stdio *io, int pause) {
  io_args a;
  if (!alive(io))
    return;
  a.io = io;
  a.status = pause;
  if (loom__call(io->st, deliver_pause_producer, &a) != LUA_OK)
    hook_failed(io, pause ? "pauseProducing" : "resumeProducing");
}

/* As Twisted's connectionLost: a registered producer is told to stop. */
static int deliver_stop_producing(lua_State *L) {
  io_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->io->data));
  if (lua_getiuservalue(L, -1, IO_PRODUCER) == LUA_TNIL)
    return 0;
  lua_pushnil(L);
  lua_setiuservalue(L, -3, IO_PRODUCER);
  if (lua_getfield(L, -1, "stopProducing") != LUA_TNIL) {
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

static const char *close_reason(int status) {
  switch (status) {
  case LOOM_CLOSE_CLEAN: return "done";
  case LOOM_CLOSE_ABORTED: return "aborted";
  case LOOM_CLOSE_HOOK_ERROR: return "error";
  case LOOM_CLOSE_SHUTDOWN: return "shutdown";
  default: return uv_err_name(status);
  }
}

/* hooks.lost(transport, protocol, nil, kind, message, reason, true) */
static int deliver_lost(lua_State *L) {
  io_args *a = lua_touserdata(L, 1);
  int t;
  if (loom__push_hook(L, a->io->st, "lost") == LUA_TNIL)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->io->data));
  t = lua_gettop(L);
  lua_getiuservalue(L, t, IO_PROTOCOL);
  lua_pushnil(L);
  lua_pushstring(L, close_reason(a->status));
  if (a->status < 0)
    lua_pushstring(L, uv_strerror(a->status));
  else
    lua_pushnil(L);
  lua_getiuservalue(L, t, IO_REASON);
  lua_pushboolean(L, 1);
  lua_call(L, 7, 0);
  return 0;
}

/* Empties the box and releases its one ref: it is plain garbage now. */
static void detach(loom_stdio *io) {
  loom__box_closed(LOOM_L(io->st), loom__ref(io->data), IO_NUV);
  io->data = NULL;
}

static void on_ended(loom_stdio *io, int status) {
  io_args a;
  if (!alive(io))
    return;
  a.io = io;
  a.status = status;
  if (loom__call(io->st, deliver_stop_producing, &a) != LUA_OK) {
    loom__report_error(io->st, "stopProducing", 0);
    lua_pop(LOOM_L(io->st), 1);
  }
  if (loom__call(io->st, deliver_lost, &a) != LUA_OK) {
    loom__report_error(io->st, "connectionLost", 0);
    lua_pop(LOOM_L(io->st), 1);
  }
  detach(io);
}

static const loom_stdio_vtable stdio_vt = {
  on_data, on_read_lost, on_write_lost, on_pause_producer, on_ended
};

/* proto:makeConnection(transport), or for a plain table of hooks:
** proto.transport = transport and proto:connectionMade(). */
static int deliver_make(lua_State *L) {
  io_args *a = lua_touserdata(L, 1);
  push_box_protocol(L, a->io); /* box, proto */
  if (lua_getfield(L, -1, "makeConnection") != LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -4);
    lua_call(L, 2, 0);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "transport");
  if (lua_getfield(L, -1, "connectionMade") != LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* Attaches the protocol on the calling thread (maybe a coroutine), then
** reads; a raising makeConnection is logged and aborts the transport. */
static void connect_protocol(lua_State *L, loom_stdio *io) {
  void *saved = LOOM_L(io->st);
  io_args a;
  a.io = io;
  LOOM_L(io->st) = L;
  if (loom__call(io->st, deliver_make, &a) != LUA_OK)
    hook_failed(io, "makeConnection");
  else
    loom__stdio_start(io);
  LOOM_L(io->st) = saved;
}

/*
** core.standardIO(proto, stdinFd, stdoutFd) -> transport, or nil and
** "fd 0: EBADF: bad file descriptor".
*/
static int l_standard_io(lua_State *L) {
  loom_state *st = loom__get_state(L);
  lua_Integer in_fd = luaL_checkinteger(L, 2);
  lua_Integer out_fd = luaL_checkinteger(L, 3);
  stdio_box *box;
  loom_stdio *io;
  char err[256];
  int ref, b, rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, in_fd >= 0 && in_fd <= 65535, 2, "not an fd");
  luaL_argcheck(L, out_fd >= 0 && out_fd <= 65535, 3, "not an fd");
  box = loom__new_box(L, &stdio_class, sizeof(*box), &ref);
  b = lua_gettop(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, b, IO_PROTOCOL);
  if ((io = calloc(1, sizeof(*io))) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "StandardIO: out of memory");
  }
  io->vt = &stdio_vt;
  io->data = NULL;
  rc = loom__stdio_open(io, st, (int)in_fd, (int)out_fd, err, sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return loom__push_error(L, rc, "%s", err);
  }
  io->data = loom__ref_data(ref);
  box->p = io;
  connect_protocol(L, io);
  lua_pushvalue(L, b);
  return 1;
}

/* ------------------------------------------------------------- methods */

/* A producer called back from the write runs on the writing thread. */
static void write_on(lua_State *L, loom_stdio *io, const char *data,
                     size_t len) {
  void *saved = LOOM_L(io->st);
  LOOM_L(io->st) = L;
  loom__stdio_write(io, data, len);
  LOOM_L(io->st) = saved;
}

static int l_stdio_write(lua_State *L) {
  loom_stdio *io = to_io(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (io != NULL)
    write_on(L, io, data, len);
  return 0;
}

static int l_stdio_write_sequence(lua_State *L) {
  loom_stdio *io = to_io(L);
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *data;
    lua_geti(L, 2, i);
    data = lua_tolstring(L, -1, &len);
    if (data == NULL)
      return luaL_error(L, "writeSequence: item %d is a %s, not a string",
                        (int)i, luaL_typename(L, -1));
    io = to_io(L); /* A producer's callback may have ended it. */
    if (io != NULL)
      write_on(L, io, data, len);
    lua_pop(L, 1);
  }
  return 0;
}

static int l_stdio_lose_connection(lua_State *L) {
  loom_stdio *io = to_io(L);
  if (io != NULL)
    loom__stdio_lose(io);
  return 0;
}

static int l_stdio_abort_connection(lua_State *L) {
  loom_stdio *io = to_io(L);
  if (io != NULL)
    loom__stdio_close(io, LOOM_CLOSE_ABORTED);
  return 0;
}

static int l_stdio_lose_write_connection(lua_State *L) {
  loom_stdio *io = to_io(L);
  if (io != NULL)
    loom__stdio_lose_write(io);
  return 0;
}

/* Twisted's PipeAddress: {type="PIPE"}, printed "PipeAddress()". */
static int l_stdio_address(lua_State *L) {
  check_box(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "PIPE");
  lua_setfield(L, -2, "type");
  luaL_setmetatable(L, PIPE_ADDRESS);
  return 1;
}

static int l_pipe_address_tostring(lua_State *L) {
  lua_pushliteral(L, "PipeAddress()");
  return 1;
}

static int l_stdio_pause_producing(lua_State *L) {
  loom_stdio *io = to_io(L);
  if (io != NULL)
    loom__stdio_pause(io);
  return 0;
}

static int l_stdio_resume_producing(lua_State *L) {
  loom_stdio *io = to_io(L);
  if (io != NULL)
    loom__stdio_resume(io);
  return 0;
}

/* Calls producer[name](producer) at index idx, when it has one. */
static void call_producer(lua_State *L, int idx, const char *name) {
  if (lua_getfield(L, idx, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, idx);
  lua_call(L, 1, 0);
}

/*
** registerProducer(producer, streaming), as on a stream transport: a
** streaming producer is paused above the high-water mark and resumed at
** half; a pull producer is asked for more whenever the output drains. With
** the output gone the producer is stopped at once (Twisted).
*/
static int l_stdio_register_producer(lua_State *L) {
  loom_stdio *io = to_io(L);
  int streaming = lua_toboolean(L, 3);
  loom_stream *s;
  luaL_checkany(L, 2);
  if (lua_getiuservalue(L, 1, IO_PRODUCER) != LUA_TNIL)
    return luaL_error(L, "registerProducer: a producer is already "
                         "registered; call unregisterProducer first");
  if (io == NULL || io->out == NULL) {
    call_producer(L, 2, "stopProducing");
    return 0;
  }
  s = &io->out->s;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, IO_PRODUCER);
  if (loom__stream_set_producer(s, streaming ? LOOM_PRODUCER_STREAMING
                                             : LOOM_PRODUCER_PULL))
    call_producer(L, 2, "pauseProducing");
  else if (!streaming)
    call_producer(L, 2, "resumeProducing");
  return 0;
}

static int l_stdio_unregister_producer(lua_State *L) {
  loom_stdio *io = to_io(L);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, IO_PRODUCER);
  if (io != NULL && io->out != NULL)
    loom__stream_set_producer(&io->out->s, LOOM_PRODUCER_NONE);
  return 0;
}

/* Output bytes written but not yet taken by the kernel. */
static int l_stdio_buffered(lua_State *L) {
  loom_stdio *io = to_io(L);
  size_t n = io != NULL && io->out != NULL
                 ? loom__stream_buffered(&io->out->s) : 0;
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* Methods first; then Twisted's attributes disconnecting and connected,
** and protocol. */
static int l_stdio_index(lua_State *L) {
  loom_stdio *io;
  const char *key;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return 1;
  io = to_io(L);
  key = lua_tostring(L, 2);
  if (key == NULL)
    return 1;
  if (strcmp(key, "disconnecting") == 0)
    lua_pushboolean(L, io == NULL || loom__stdio_disconnecting(io));
  else if (strcmp(key, "connected") == 0)
    lua_pushboolean(L, io != NULL && !loom__stdio_disconnecting(io));
  else if (strcmp(key, "protocol") == 0)
    lua_getiuservalue(L, 1, IO_PROTOCOL);
  else
    lua_pushnil(L);
  return 1;
}

/* Reached with an open transport only while the Lua state closes (an open
** one is pinned): close it without Lua. */
static void stdio_forget(void *p) {
  loom_stdio *io = p;
  io->data = NULL;
  loom__stdio_close(io, LOOM_CLOSE_SHUTDOWN);
}

static const luaL_Reg stdio_methods[] = {
  {"write", l_stdio_write},
  {"writeSequence", l_stdio_write_sequence},
  {"loseConnection", l_stdio_lose_connection},
  {"abortConnection", l_stdio_abort_connection},
  {"loseWriteConnection", l_stdio_lose_write_connection},
  {"getPeer", l_stdio_address},
  {"getHost", l_stdio_address},
  {"pauseProducing", l_stdio_pause_producing},
  {"resumeProducing", l_stdio_resume_producing},
  {"stopProducing", l_stdio_lose_connection},
  {"registerProducer", l_stdio_register_producer},
  {"unregisterProducer", l_stdio_unregister_producer},
  {"bufferedBytes", l_stdio_buffered},
  {NULL, NULL}
};

static const loom_class stdio_class = {
  STDIO, stdio_methods, IO_NUV, l_stdio_abort_connection, stdio_forget
};

void loom__open_stdio(lua_State *L) {
  luaL_newmetatable(L, PIPE_ADDRESS);
  lua_pushcfunction(L, l_pipe_address_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  loom__new_class(L, &stdio_class);
  luaL_getmetatable(L, STDIO);
  lua_getfield(L, -1, "__index");
  lua_pushcclosure(L, l_stdio_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_standard_io);
  lua_setfield(L, -2, "standardIO");
}
