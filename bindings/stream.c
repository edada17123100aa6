/*
** stream.c: what every stream transport class shares (tcp.c and unix.c
** register theirs with loom__new_transport_class): the common transport
** methods, and the vtable that turns host events into protocol hooks. The
** protocol is user value UVAL_PROTOCOL of the box, so a class patched in
** place is seen at the next event. stdio.c's box has the same user values
** and uses the hook deliveries and producer methods defined here.
*/
#include <stddef.h>
#include <string.h>

#include "binding.h"

static const char *const transport_names[] = { LOOM_TCP_TRANSPORT,
                                               LOOM_UNIX_TRANSPORT, NULL };

static transport_box *check_box(lua_State *L, int idx) {
  int i;
  for (i = 0; transport_names[i] != NULL; i++) {
    void *u = luaL_testudata(L, idx, transport_names[i]);
    if (u != NULL)
      return u;
  }
  luaL_typeerror(L, idx, "transport");
  return NULL;
}

/* The open stream, or NULL when the transport has closed. */
static loom_stream *to_stream(lua_State *L, int idx) {
  return check_box(L, idx)->p;
}

static loom_stream *check_open(lua_State *L, int idx) {
  loom_stream *s = to_stream(L, idx);
  if (s == NULL)
    luaL_error(L, "transport is closed");
  return s;
}

void loom__push_transport(lua_State *L, loom_stream *s) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(s->data));
}

/*
** A new box for s, pinned by one registry ref (in s->data) that the close
** callback releases. May raise; s is untouched until nothing else can.
*/
transport_box *loom__new_transport(lua_State *L, loom_stream *s) {
  const loom_transport_class *c;
  transport_box *box;
  int ref;
  luaL_getmetatable(L, s->h.handle.type == UV_NAMED_PIPE
                           ? LOOM_UNIX_TRANSPORT : LOOM_TCP_TRANSPORT);
  lua_getfield(L, -1, LOOM_TRANSPORT_CLASS);
  c = lua_touserdata(L, -1);
  lua_pop(L, 2);
  box = loom__new_box(L, &c->base, sizeof(*box), &ref);
  box->p = s;
  s->data = loom__ref_data(ref);
  return box;
}

#define ADDRESS_CLASS "loom.Address"

/*
** Gives the address table on the top of the stack the one metatable that
** loom.address registered (its tostring reads like Twisted's); a plain
** table when loom.address was never loaded.
*/
void loom__set_address_class(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, ADDRESS_CLASS) == LUA_TTABLE)
    lua_setmetatable(L, -2);
  else
    lua_pop(L, 1);
}

/* core.setAddressClass(mt): the metatable of every address made in C. */
static int l_set_address_class(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, ADDRESS_CLASS);
  return 0;
}

int loom__push_address(lua_State *L, const struct sockaddr *sa) {
  char host[64];
  int port = 0;
  if (loom__sockaddr_format(sa, host, sizeof(host), &port) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "TCP");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  loom__set_address_class(L);
  return 1;
}

/* ------------------------------------------------------------ addresses */

/*
** Asks the socket under the box at index box for its own (peer = 0) or its
** peer's address through its class's sockname: the file that
** owns the handle type (tcp.c, unix.c) knows how. Returns 1 (the address)
** or 3 (nil, errname, message).
*/
static int push_socket_name(lua_State *L, int box, loom_stream *s,
                            int peer) {
  const loom_transport_class *c;
  lua_getmetatable(L, box);
  lua_getfield(L, -1, LOOM_TRANSPORT_CLASS);
  c = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return c->sockname(L, s, peer);
}

/* The bytes of a TCP socket address, or 0 for another family. */
static size_t sockaddr_size(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return sizeof(struct sockaddr_in);
  if (sa->sa_family == AF_INET6)
    return sizeof(struct sockaddr_in6);
  return 0;
}

/*
** Keeps sa in user value slot of the box at index box as its raw bytes: a
** short string costs a third of the address table, which is made only when
** asked for (10,000 idle connections hold 2 addresses each). Returns 0, or
** -1 for a family kept otherwise.
*/
int loom__keep_sockaddr(lua_State *L, int box, int slot,
                        const struct sockaddr *sa) {
  size_t n = sockaddr_size(sa);
  if (n == 0)
    return -1;
  lua_pushlstring(L, (const char *)sa, n);
  lua_setiuservalue(L, box, slot);
  return 0;
}

/*
** The address in user value slot (UVAL_PEER or UVAL_HOST) of the box at
** index box: kept when the stream connected or was accepted, so it stays
** known after the socket closed (in connectionLost, as in Twisted) and
** getPeer costs no system call; a TCP address is kept as its raw bytes and
** a new table made from them at each call. s may be NULL (closed): then
** only what was kept is known. Returns 1 (the address or, closed and never
** kept, nil) or 3 (nil, errname, message).
*/
static int push_kept_name(lua_State *L, int box, loom_stream *s, int slot) {
  int n, t = lua_getiuservalue(L, box, slot);
  if (t == LUA_TSTRING) {
    struct sockaddr_storage ss;
    size_t len;
    const char *raw = lua_tolstring(L, -1, &len);
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, raw, len < sizeof(ss) ? len : sizeof(ss));
    lua_pop(L, 1);
    return loom__push_address(L, (const struct sockaddr *)&ss);
  }
  if (t != LUA_TNIL || s == NULL)
    return 1;
  lua_pop(L, 1);
  n = push_socket_name(L, box, s, slot == UVAL_PEER);
  if (n != 1)
    return n;
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return loom__push_error(L, UV_EAFNOSUPPORT, "%s",
                            uv_strerror(UV_EAFNOSUPPORT));
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, box, slot);
  return 1;
}

/* Keeps one address of a stream: a TCP one as raw bytes, else the table. */
static void keep_name(lua_State *L, int box, loom_stream *s, int slot) {
  struct sockaddr_storage ss;
  int len = sizeof(ss), rc;
  if (lua_getiuservalue(L, box, slot) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (s->h.handle.type == UV_TCP) {
    rc = slot == UVAL_PEER
             ? uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len)
             : uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0 && loom__keep_sockaddr(L, box, slot,
                                       (struct sockaddr *)&ss) == 0)
      return;
  }
  lua_pop(L, push_kept_name(L, box, s, slot));
}

/* Keeps both addresses of a stream that just connected or was accepted. */
void loom__keep_names(lua_State *L, int box, loom_stream *s) {
  keep_name(L, box, s, UVAL_PEER);
  keep_name(L, box, s, UVAL_HOST);
}

static int l_transport_get_peer(lua_State *L) {
  return push_kept_name(L, 1, check_open(L, 1), UVAL_PEER);
}

static int l_transport_get_host(lua_State *L) {
  return push_kept_name(L, 1, check_open(L, 1), UVAL_HOST);
}

/* transport.client: the peer as {host, port} on a server-side TCP
** transport (Twisted's Server.client), else nil. */
static void push_client(lua_State *L, loom_stream *s) {
  int n;
  if (s == NULL || !loom__stream_is_accepted(s) ||
      s->h.handle.type != UV_TCP) {
    lua_pushnil(L);
    return;
  }
  n = push_kept_name(L, 1, s, UVAL_PEER);
  if (n != 1 || !lua_istable(L, -1)) {
    lua_pop(L, n);
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, 2, 0);
  lua_getfield(L, -2, "host");
  lua_rawseti(L, -2, 1);
  lua_getfield(L, -2, "port");
  lua_rawseti(L, -2, 2);
}

/* ---------------------------------------------------------------- hooks */

/*
** The delivery functions below serve every transport whose box has the
** UVAL_* layout: a stream's (this file) and standard IO's (stdio.c). They
** find the box by a->data, the owner slot that holds its ref.
*/

/* Pushes the box and its protocol; leaves the box at -2. */
static void push_box_protocol(lua_State *L, const loom_event *a) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  lua_getiuservalue(L, -1, UVAL_PROTOCOL);
}

int loom__deliver_data(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  push_box_protocol(L, a);
  if (lua_getfield(L, -1, "dataReceived") != LUA_TNIL) {
    lua_insert(L, -2);
    lua_pushlstring(L, a->buf, a->len);
    lua_call(L, 2, 0);
  }
  return 0;
}

/* Calls protocol[a->hook](protocol) when present; a->result says whether. */
int loom__deliver_optional(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  push_box_protocol(L, a);
  a->result = lua_getfield(L, -1, a->hook) != LUA_TNIL;
  if (a->result) {
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* The registered producer's pauseProducing (a->status 1) or
** resumeProducing (0). */
int loom__deliver_pause_producer(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  if (lua_getiuservalue(L, -1, UVAL_PRODUCER) == LUA_TNIL)
    return 0;
  lua_getfield(L, -1, a->status ? "pauseProducing" : "resumeProducing");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/*
** A hook raised (its error on the top of the stack, popped): log it and
** keep its Failure for connectionLost. The caller then aborts.
*/
void loom__keep_hook_error(loom_state *st, void *data, const char *where) {
  lua_State *L = LOOM_L(st);
  int t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(data));
  lua_insert(L, -2); /* transport, caught */
  t = lua_gettop(L) - 1;
  loom__report_error(st, where, t); /* transport, Failure */
  if (lua_type(L, t) == LUA_TUSERDATA)
    lua_setiuservalue(L, t, UVAL_REASON);
  else
    lua_pop(L, 1);
  lua_pop(L, 1);
}

void loom__transport_hook_failed(loom_stream *s, const char *where) {
  loom__keep_hook_error(s->st, s->data, where);
  loom__stream_close(s, LOOM_CLOSE_HOOK_ERROR);
}

static void on_data(loom_stream *s, const char *buf, size_t len) {
  loom_event a;
  a.st = s->st;
  a.data = s->data;
  a.buf = buf;
  a.len = len;
  if (loom__call(s->st, loom__deliver_data, &a) != LUA_OK)
    loom__transport_hook_failed(s, "dataReceived");
}

/* hooks.connected(transport, owner, errname, errmsg) */
static int deliver_connected(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  if (loom__push_hook(L, a->st, "connected") == LUA_TNIL)
    return 0;
  loom__push_transport(L, a->s);
  if (a->status == 0)
    loom__keep_names(L, lua_gettop(L), a->s);
  lua_getiuservalue(L, -1, UVAL_OWNER);
  if (a->status == 0) {
    lua_pushnil(L);
    lua_pushnil(L);
  } else {
    lua_pushstring(L, uv_err_name(a->status));
    lua_pushstring(L, uv_strerror(a->status));
  }
  lua_call(L, 4, 0);
  return 0;
}

static void on_connected(loom_stream *s, int status) {
  loom_event a;
  a.st = s->st;
  a.s = s;
  a.status = status;
  if (loom__call(s->st, deliver_connected, &a) != LUA_OK) {
    loom__transport_hook_failed(s, "connectionMade");
    return;
  }
  if (status < 0)
    loom__stream_close(s, status);
  else if (!loom__stream_closing(s))
    loom__stream_start(s);
}

/* A protocol with readConnectionLost handles half-closes (Twisted's
** IHalfCloseableProtocol); any other is closed cleanly on EOF. */
static int on_eof(loom_stream *s) {
  loom_event a;
  a.st = s->st;
  a.data = s->data;
  a.hook = "readConnectionLost";
  a.result = 0;
  if (loom__call(s->st, loom__deliver_optional, &a) != LUA_OK) {
    loom__transport_hook_failed(s, "readConnectionLost");
    return 1;
  }
  return a.result;
}

static void on_pause_producer(loom_stream *s, int pause) {
  loom_event a;
  a.st = s->st;
  a.data = s->data;
  a.status = pause;
  if (loom__call(s->st, loom__deliver_pause_producer, &a) != LUA_OK)
    loom__transport_hook_failed(s, pause ? "pauseProducing"
                                         : "resumeProducing");
}

static const char *close_reason(int status) {
  switch (status) {
  case LOOM_CLOSE_CLEAN: return "done";
  case LOOM_CLOSE_ABORTED: return "aborted";
  case LOOM_CLOSE_HOOK_ERROR: return "error";
  case LOOM_CLOSE_SHUTDOWN: return "shutdown";
  case LOOM_CLOSE_WRITE_FULL: return "writeBufferFull";
  default: return uv_err_name(status);
  }
}

/* As Twisted's connectionLost: a registered producer is told to stop. */
static int deliver_stop_producing(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  if (lua_getiuservalue(L, -1, UVAL_PRODUCER) == LUA_TNIL)
    return 0;
  lua_pushnil(L);
  lua_setiuservalue(L, -3, UVAL_PRODUCER);
  if (lua_getfield(L, -1, "stopProducing") != LUA_TNIL) {
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* hooks.lost(transport, protocol, owner, kind, message, reason, connected) */
static int deliver_lost(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  int t;
  if (loom__push_hook(L, a->st, "lost") == LUA_TNIL)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  t = lua_gettop(L);
  lua_getiuservalue(L, t, UVAL_PROTOCOL);
  lua_getiuservalue(L, t, UVAL_OWNER);
  if (a->status == LOOM_CLOSE_LAYER) {
    /* The io layer (TLS) names the error and says why. */
    const char *kind = "ELAYER";
    const char *why = a->s->io->error(a->s, &kind);
    lua_pushstring(L, kind);
    lua_pushstring(L, why);
  } else {
    lua_pushstring(L, close_reason(a->status));
    if (a->status < 0)
      lua_pushstring(L, uv_strerror(a->status));
    else if (a->status == LOOM_CLOSE_WRITE_FULL)
      lua_pushfstring(L, "write buffer limit exceeded: the peer left more"
                      " than %I bytes unread (maxWriteBuffer)",
                      (lua_Integer)a->max_write);
    else
      lua_pushnil(L);
  }
  lua_getiuservalue(L, t, UVAL_REASON);
  lua_pushboolean(L, a->connected);
  lua_call(L, 7, 0);
  return 0;
}

/*
** The transport ended (a->status why): a registered producer is stopped
** (asked only when may_have_producer), connectionLost delivered, then the
** box emptied and its one ref released; the caller forgets a->data.
*/
void loom__deliver_ended(loom_event *a, int may_have_producer) {
  lua_State *L = LOOM_L(a->st);
  if (may_have_producer &&
      loom__call(a->st, deliver_stop_producing, a) != LUA_OK) {
    loom__report_error(a->st, "stopProducing", 0);
    lua_pop(L, 1);
  }
  if (loom__call(a->st, deliver_lost, a) != LUA_OK) {
    loom__report_error(a->st, "connectionLost", 0);
    lua_pop(L, 1);
  }
  loom__box_closed(L, loom__ref(a->data), TRANSPORT_NUV);
}

static void on_closed(loom_stream *s, int status) {
  loom_event a;
  if (LOOM_L(s->st) == NULL || s->data == NULL)
    return; /* Lua is gone or never had this stream. */
  a.st = s->st;
  a.s = s;
  a.data = s->data;
  a.status = status;
  a.max_write = s->max_write;
  a.connected = loom__stream_was_connected(s);
  loom__deliver_ended(&a, loom__stream_has_producer(s));
  s->data = NULL;
}

const loom_stream_vtable loom__lua_stream_vt = {
  on_connected, on_data, on_eof, on_pause_producer, on_closed
};

/* ------------------------------------------------------------- methods */

/*
** A write may call the producer back at once (pauseProducing above the
** high-water mark): make that call on the thread that is writing, which may
** be a coroutine, not on the thread that runs the loop.
*/
static int write_on(lua_State *L, loom_stream *s, const char *data,
                    size_t len) {
  void *saved = LOOM_L(s->st);
  int rc;
  LOOM_L(s->st) = L;
  rc = loom__stream_write(s, data, len);
  LOOM_L(s->st) = saved;
  return rc;
}

void loom__transport_write(lua_State *L, transport_box *box, const char *data,
                           size_t len) {
  if (box->p != NULL)
    write_on(L, box->p, data, len);
}

static int l_transport_write(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (s != NULL)
    write_on(L, s, data, len);
  return 0;
}

/*
** writeSequence(items) on the box at 1: each item, a string, goes through
** write_item, which finds the transport anew (a producer called back by a
** write may have closed it).
*/
int loom__write_sequence(lua_State *L,
                         void (*write_item)(lua_State *L, const char *data,
                                            size_t len)) {
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
    write_item(L, data, len);
    lua_pop(L, 1);
  }
  return 0;
}

/* The box at 1 was checked by l_transport_write_sequence. */
static void write_item(lua_State *L, const char *data, size_t len) {
  loom_stream *s = ((transport_box *)lua_touserdata(L, 1))->p;
  if (s != NULL && s->data != NULL)
    write_on(L, s, data, len);
}

static int l_transport_write_sequence(lua_State *L) {
  to_stream(L, 1);
  return loom__write_sequence(L, write_item);
}

static int l_transport_lose_connection(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  if (s != NULL)
    loom__stream_lose(s);
  return 0;
}

int loom__l_transport_abort(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  if (s != NULL)
    loom__stream_close(s, LOOM_CLOSE_ABORTED);
  return 0;
}

static int l_transport_lose_write_connection(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  if (s != NULL)
    loom__stream_lose_write(s);
  return 0;
}

static int l_transport_pause_producing(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  if (s != NULL)
    loom__stream_pause(s);
  return 0;
}

static int l_transport_resume_producing(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  if (s != NULL)
    loom__stream_resume(s);
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
** registerProducer(producer, streaming) on the box at 1, whose writes go
** to out (NULL: the output is gone, so the producer is stopped at once, as
** in Twisted). A streaming producer is paused above the high-water mark
** and resumed once the queue drains to half; a pull producer is asked for
** more each time the queue is empty.
*/
int loom__register_producer(lua_State *L, loom_stream *out) {
  int streaming = lua_toboolean(L, 3);
  luaL_checkany(L, 2);
  if (lua_getiuservalue(L, 1, UVAL_PRODUCER) != LUA_TNIL)
    return luaL_error(L, "registerProducer: a producer is already "
                         "registered; call unregisterProducer first");
  if (out == NULL) {
    call_producer(L, 2, "stopProducing");
    return 0;
  }
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, UVAL_PRODUCER);
  if (loom__stream_set_producer(out, streaming ? LOOM_PRODUCER_STREAMING
                                               : LOOM_PRODUCER_PULL))
    call_producer(L, 2, "pauseProducing");
  else if (!streaming)
    call_producer(L, 2, "resumeProducing");
  return 0;
}

/* unregisterProducer() on the box at 1, whose writes go to out (or NULL). */
int loom__unregister_producer(lua_State *L, loom_stream *out) {
  lua_pushnil(L);
  lua_setiuservalue(L, 1, UVAL_PRODUCER);
  if (out != NULL)
    loom__stream_set_producer(out, LOOM_PRODUCER_NONE);
  return 0;
}

static int l_transport_register_producer(lua_State *L) {
  return loom__register_producer(L, check_open(L, 1));
}

static int l_transport_unregister_producer(lua_State *L) {
  return loom__unregister_producer(L, to_stream(L, 1));
}

/* Bytes written but not yet taken by the kernel. */
static int l_transport_buffered(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  lua_pushinteger(L, s ? (lua_Integer)loom__stream_buffered(s) : 0);
  return 1;
}

/*
** setMaxWriteBuffer(bytes): a write that would queue more than this aborts
** the connection (connectionLost gets error.WriteBufferFull); 0 = no limit.
*/
static int l_transport_set_max_write_buffer(lua_State *L) {
  loom_stream *s = to_stream(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "maxWriteBuffer must be 0 (no limit) or a"
                " positive number of bytes");
  if (s != NULL)
    s->max_write = n == 0 ? LOOM_NO_LIMIT : (size_t)n;
  return 0;
}

static int l_transport_set_protocol(lua_State *L) {
  check_box(L, 1);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, UVAL_PROTOCOL);
  return 0;
}


/*
** The box __index was called for. Lua only calls it with a box of this
** class (upvalue 2); a check of the one metatable is enough, and cheaper
** than check_box's walk over every transport class.
*/
static transport_box *index_box(lua_State *L) {
  if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(2)))
    luaL_typeerror(L, 1, "transport");
  lua_pop(L, 1);
  return lua_touserdata(L, 1);
}

/*
** Fields read like Twisted's attributes; everything else is a method.
** "disconnecting" comes first: LineReceiver reads it after every line.
*/
static int l_transport_index(lua_State *L) {
  loom_stream *s;
  const char *key;
  if (lua_rawequal(L, 2, lua_upvalueindex(3))) {
    s = index_box(L)->p;
    lua_pushboolean(L, s == NULL || loom__stream_disconnecting(s));
    return 1;
  }
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return 1;
  key = lua_tostring(L, 2);
  s = index_box(L)->p;
  if (key == NULL)
    return 1;
  if (strcmp(key, "connected") == 0)
    lua_pushboolean(L, s != NULL && loom__stream_was_connected(s) &&
                       !loom__stream_closing(s));
  else if (strcmp(key, "protocol") == 0)
    lua_getiuservalue(L, 1, UVAL_PROTOCOL);
  else if (strcmp(key, "client") == 0)
    push_client(L, s);
  else
    lua_pushnil(L);
  return 1;
}

/* __gc of an open transport: the Lua state closes, close it without Lua. */
void loom__transport_forget(void *p) {
  loom_stream *s = p;
  s->data = NULL;
  loom__stream_close(s, LOOM_CLOSE_SHUTDOWN);
}

static const luaL_Reg transport_methods[] = {
  {"write", l_transport_write},
  {"writeSequence", l_transport_write_sequence},
  {"loseConnection", l_transport_lose_connection},
  {"abortConnection", loom__l_transport_abort},
  {"loseWriteConnection", l_transport_lose_write_connection},
  {"getPeer", l_transport_get_peer},
  {"getHost", l_transport_get_host},
  {"pauseProducing", l_transport_pause_producing},
  {"resumeProducing", l_transport_resume_producing},
  {"stopProducing", l_transport_lose_connection},
  {"registerProducer", l_transport_register_producer},
  {"unregisterProducer", l_transport_unregister_producer},
  {"bufferedBytes", l_transport_buffered},
  {"setMaxWriteBuffer", l_transport_set_max_write_buffer},
  {"setProtocol", l_transport_set_protocol},
  {NULL, NULL}
};

/*
** A transport class: the stream methods every transport has, plus c's own
** (setTcpNoDelay only on TCP) and c->sockname, which reads the socket's
** addresses. The file that owns the handle type calls this from its
** loom__open_*; c must be static.
*/
void loom__new_transport_class(lua_State *L, const loom_transport_class *c) {
  loom__new_class(L, &c->base);
  luaL_getmetatable(L, c->base.name);
  lua_getfield(L, -1, "__index"); /* the class's own methods */
  luaL_setfuncs(L, transport_methods, 0);
  lua_pushvalue(L, -2);
  lua_pushliteral(L, "disconnecting");
  lua_pushcclosure(L, l_transport_index, 3);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, LOOM_UNCONST(c));
  lua_setfield(L, -2, LOOM_TRANSPORT_CLASS);
  lua_pop(L, 1);
}

/* Expects the core module table on the top of the stack. */
void loom__open_stream(lua_State *L) {
  lua_pushcfunction(L, l_set_address_class);
  lua_setfield(L, -2, "setAddressClass");
  lua_pushcfunction(L, loom__l_traceback); /* bindings/call.c */
  lua_setfield(L, -2, "traceback");
}
