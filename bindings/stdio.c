/*
** stdio.c: core.standardIO and the "loom.StandardIO" box: standard input
** and output as the transport of one protocol (Twisted's
** stdio.StandardIO). The box is pinned from creation until connectionLost
** was delivered, once both directions closed. Its user values are a
** stream transport's (UVAL_*), so the hook deliveries and producer methods
** of bindings/stream.c serve it too, and a read is one Lua call.
*/
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define STDIO "loom.StandardIO"
#define PIPE_ADDRESS "loom.PipeAddress"

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

/* An event of io for the delivery functions of bindings/stream.c. */
static void event_of(loom_event *a, loom_stdio *io) {
  a->st = io->st;
  a->data = io->data;
}

/* A hook raised: log it, keep its Failure for connectionLost, abort. */
static void hook_failed(loom_stdio *io, const char *where) {
  loom__keep_hook_error(io->st, io->data, where);
  loom__stdio_close(io, LOOM_CLOSE_HOOK_ERROR);
}

static void on_data(loom_stdio *io, const char *buf, size_t len) {
  loom_event a;
  if (!alive(io))
    return;
  event_of(&a, io);
  a.buf = buf;
  a.len = len;
  if (loom__call(io->st, loom__deliver_data, &a) != LUA_OK)
    hook_failed(io, "dataReceived");
}

/* Calls the protocol's hook, when it has one: 1 if it had (or it raised,
** and io is aborted). */
static int call_optional(loom_stdio *io, const char *hook) {
  loom_event a;
  event_of(&a, io);
  a.hook = hook;
  a.result = 0;
  if (loom__call(io->st, loom__deliver_optional, &a) != LUA_OK) {
    hook_failed(io, hook);
    return 1;
  }
  return a.result;
}

/*
** End of input. A protocol with readConnectionLost handles half-closes
** (Twisted's IHalfCloseableProtocol) and may go on writing; any other is
** disconnected as by loseConnection: the output is flushed first.
*/
static void on_read_lost(loom_stdio *io) {
  if (!alive(io) || !call_optional(io, "readConnectionLost"))
    loom__stdio_lose(io);
}

static void on_write_lost(loom_stdio *io) {
  if (alive(io))
    call_optional(io, "writeConnectionLost");
}

static void on_pause_producer(loom_stdio *io, int pause) {
  loom_event a;
  if (!alive(io))
    return;
  event_of(&a, io);
  a.status = pause;
  if (loom__call(io->st, loom__deliver_pause_producer, &a) != LUA_OK)
    hook_failed(io, pause ? "pauseProducing" : "resumeProducing");
}

/* hooks.lost(transport, protocol, nil, kind, message, reason, true) */
static void on_ended(loom_stdio *io, int status) {
  loom_event a;
  if (!alive(io))
    return;
  event_of(&a, io);
  a.status = status;
  a.max_write = LOOM_NO_LIMIT;
  a.connected = 1;
  loom__deliver_ended(&a, 1);
  io->data = NULL;
}

static const loom_stdio_vtable stdio_vt = {
  on_data, on_read_lost, on_write_lost, on_pause_producer, on_ended
};

/* proto:makeConnection(transport), or for a plain table of hooks:
** proto.transport = transport and proto:connectionMade(). */
static int deliver_make(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  lua_getiuservalue(L, -1, UVAL_PROTOCOL); /* box, proto */
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
  loom_event a;
  event_of(&a, io);
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
  lua_setiuservalue(L, b, UVAL_PROTOCOL);
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

/* The box at 1 was checked by l_stdio_write_sequence. */
static void write_item(lua_State *L, const char *data, size_t len) {
  loom_stdio *io = ((stdio_box *)lua_touserdata(L, 1))->p;
  if (io != NULL)
    write_on(L, io, data, len);
}

static int l_stdio_write_sequence(lua_State *L) {
  check_box(L);
  return loom__write_sequence(L, write_item);
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

/* The stream that writes standard output, or NULL once it closed. */
static loom_stream *output_of(lua_State *L) {
  loom_stdio *io = to_io(L);
  return io != NULL && io->out != NULL ? &io->out->s : NULL;
}

/* As on a stream transport; with the output gone the producer is stopped
** at once (Twisted). */
static int l_stdio_register_producer(lua_State *L) {
  return loom__register_producer(L, output_of(L));
}

static int l_stdio_unregister_producer(lua_State *L) {
  return loom__unregister_producer(L, output_of(L));
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
    lua_getiuservalue(L, 1, UVAL_PROTOCOL);
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
  STDIO, stdio_methods, TRANSPORT_NUV, l_stdio_abort_connection, stdio_forget
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
