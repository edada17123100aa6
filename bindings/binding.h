/*
** binding.h: what bindings/ share. bindings/ is the only C that sees both
** Lua and the host (cli/main.c sees Lua and bindings/embed.h only): the
** host calls the vtables implemented here.
*/
#ifndef LOOM_BINDING_H
#define LOOM_BINDING_H

#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "../host/internal.h"
#include "../include/loom.h" /* the luaopen_loom_* functions */

/*
** Lua's light userdata and libuv's spawn options take non-const pointers
** to what they only keep or read; this says so where the const must go.
*/
#define LOOM_UNCONST(p) ((void *)(uintptr_t)(p))

#define LOOM_STATE_KEY "loom.state"

/*
** The Lua side of a host, which owns its loom_state: host/ knows nothing
** of Lua. The loom_state comes first, so the loom_state* the host hands to
** every callback is a loom_lua_host* (core.c makes every state this way).
** (loom.h's public loom_host, api.c, is the embedder's handle on one.)
*/
typedef struct loom_lua_host {
  loom_state st;
  lua_State *L;             /* the thread running the loop; NULL at close */
  int hooks_ref;            /* registry ref of the Lua hook table */
  lua_CFunction current_fn; /* the trampoline in progress (call.c) */
  int closed;               /* closed with its Lua state alive (api.c) */
} loom_lua_host;

#define LOOM_HOST(st) ((loom_lua_host *)(void *)(st))

/*
** A host object's data (its owner's slot) holds the registry ref of its
** box, or NULL when it has none: refs are positive, so one pointer-sized
** slot holds one without an allocation.
*/
static inline int loom__ref(const void *data) {
  return data != NULL ? (int)(intptr_t)data : LUA_NOREF;
}
static inline void *loom__ref_data(int ref) {
  return ref > 0 ? (void *)(intptr_t)ref : NULL;
}
#define LOOM_L(st) (LOOM_HOST(st)->L)

/* box.c: every bound object's box starts with its host object. */
typedef struct loom_box {
  void *p; /* the host object; NULL once closed */
} loom_box;

typedef struct loom_class {
  const char *name;        /* the metatable's name (and __name) */
  const luaL_Reg *methods; /* the __index table, or NULL */
  int nuv;                 /* user values of a box */
  lua_CFunction close;     /* __close: the class's close method */
  /* __gc while the Lua state closes: close p without calling Lua. */
  void (*forget)(void *p);
} loom_class;

void *loom__new_box(lua_State *L, const loom_class *c, size_t size,
                    int *ref);
void loom__box_closed(lua_State *L, int ref, int nuv);
void loom__new_class(lua_State *L, const loom_class *c);

/* User values of a transport box ("UVAL": libuv owns the UV_ prefix). */
#define UVAL_PROTOCOL 1 /* the protocol table (before connecting: the owner) */
#define UVAL_OWNER 2    /* the Lua Port or Connector object */
#define UVAL_PRODUCER 3 /* the registered producer */
#define UVAL_REASON 4   /* the Failure of a hook error, for connectionLost */
#define UVAL_PEER 5     /* getPeer's address, kept from the accept/connect */
#define UVAL_HOST 6     /* getHost's address, likewise */
#define TRANSPORT_NUV 6

typedef struct transport_box {
  loom_stream *p;
} transport_box;

#define LOOM_TCP_TRANSPORT "loom.TCPTransport"
#define LOOM_UNIX_TRANSPORT "loom.UNIXTransport"
/* The metatable field that holds a transport class's loom_transport_class. */
#define LOOM_TRANSPORT_CLASS "__loomclass"

/*
** What a transport class adds to the stream methods (stream.c): the file
** that owns the handle type defines one (tcp.c, unix.c).
*/
typedef struct loom_transport_class {
  /* name, methods of this handle type only (or NULL); the rest is filled
  ** in by LOOM_TRANSPORT_BASE. */
  loom_class base;
  /* Pushes the socket's own (peer = 0) or peer's address: returns 1, or
  ** 3 (loom__push_error). */
  int (*sockname)(lua_State *L, loom_stream *s, int peer);
} loom_transport_class;

/* call.c */
int loom__push_error(lua_State *L, int rc, const char *fmt, ...);
loom_state *loom__get_state(lua_State *L);
int loom__call(loom_state *st, lua_CFunction fn, void *ud);
int loom__push_hook(lua_State *L, loom_state *st, const char *name);
void loom__report_error(loom_state *st, const char *where, int tindex);
void loom__fatal_report(const char *where, const char *msg);
int loom__l_traceback(lua_State *L);
const char *loom__check_cstring(lua_State *L, int idx);
const char *loom__opt_cstring(lua_State *L, int idx, const char *def);

/* stream.c */
extern const loom_stream_vtable loom__lua_stream_vt;
void loom__open_stream(lua_State *L);
void loom__new_transport_class(lua_State *L, const loom_transport_class *c);
int loom__l_transport_abort(lua_State *L);
void loom__transport_forget(void *p);
/* The loom_class of a transport class named name with methods own. */
#define LOOM_TRANSPORT_BASE(name, own) \
  { name, own, TRANSPORT_NUV, loom__l_transport_abort, loom__transport_forget }
transport_box *loom__new_transport(lua_State *L, loom_stream *s);
void loom__push_transport(lua_State *L, loom_stream *s);
/* transport:write(data) from C, on a box known to be a stream transport's
** (a closed one drops it, as the method does). */
void loom__transport_write(lua_State *L, transport_box *box, const char *data,
                           size_t len);
int loom__push_address(lua_State *L, const struct sockaddr *sa);
void loom__set_address_class(lua_State *L);
int loom__keep_sockaddr(lua_State *L, int box, int slot,
                        const struct sockaddr *sa);
void loom__keep_names(lua_State *L, int box, loom_stream *s);
void loom__transport_hook_failed(loom_stream *s, const char *where);

/*
** A hook's arguments, handed through loom__call to the delivery functions
** that every transport with the UVAL_* box layout shares (a stream's and
** standard IO's): the box is found by data, its owner slot.
*/
typedef struct loom_event {
  loom_state *st;
  void *data;       /* the owner slot: the box's registry ref */
  const char *buf;  /* loom__deliver_data: what arrived */
  size_t len;
  const char *hook; /* loom__deliver_optional: the protocol method */
  int status;       /* pause (1) or resume (0); or why the transport ended */
  int result;       /* loom__deliver_optional: 1 if the method was there */
  loom_stream *s;   /* stream.c's own */
  size_t max_write; /* loom__deliver_ended: the write limit a write passed */
  int connected;    /* loom__deliver_ended: connected at some point */
} loom_event;

int loom__deliver_data(lua_State *L);
int loom__deliver_optional(lua_State *L);
int loom__deliver_pause_producer(lua_State *L);
void loom__deliver_ended(loom_event *a, int may_have_producer);
void loom__keep_hook_error(loom_state *st, void *data, const char *where);
int loom__write_sequence(lua_State *L,
                         void (*write_item)(lua_State *L, const char *data,
                                            size_t len));
int loom__register_producer(lua_State *L, loom_stream *out);
int loom__unregister_producer(lua_State *L, loom_stream *out);

/* listener.c */
typedef struct listener_box {
  loom_listener *p;
} listener_box;

listener_box *loom__check_listener(lua_State *L, int idx);
extern const luaL_Reg loom__listener_methods[];
int loom__l_listener_close(lua_State *L);
void loom__listener_forget(void *p);
listener_box *loom__new_listener_box(lua_State *L, const loom_class *c,
                                     int owner, int *ref);
void loom__new_listener_class(lua_State *L, const loom_class *c,
                              lua_CFunction get_host);
void loom__accept_one(loom_listener *l, int status,
                      int (*accept)(loom_listener *, loom_stream *));
void loom__listener_closed(loom_listener *l);

/* One loom__open_* per file; each adds its functions to the core module
** table on the top of the stack (core.c calls them in turn). */
void loom__open_tcp(lua_State *L);
void loom__open_timer(lua_State *L);
void loom__open_signal(lua_State *L);
void loom__open_fsevent(lua_State *L);
void loom__open_lines(lua_State *L);
void loom__open_unix(lua_State *L);
void loom__open_udp(lua_State *L);
void loom__open_process(lua_State *L);
void loom__open_thread(lua_State *L);
void loom__open_resolver(lua_State *L);
void loom__open_pidfile(lua_State *L);
void loom__open_identity(lua_State *L);
void loom__open_stdio(lua_State *L);
loom_state *loom__new_state(lua_State *L, uv_loop_t *loop);
void loom__open_http(lua_State *L);
void loom__open_http_server(lua_State *L);
void loom__open_query(lua_State *L);
void loom__open_websocket(lua_State *L);
void loom__open_fs(lua_State *L);
void loom__open_tls(lua_State *L);

/* query.c: s[0..n) pushed with %XX decoded (+ as a space when plus is
   set); the pairs of a query string added to the args table at args. */
void loom__push_unquoted(lua_State *L, const char *s, size_t n, int plus);
void loom__parse_query(lua_State *L, const char *s, size_t n, int args);

/* A walk up "super" fields longer than this is a cycle, not a class chain
   (class.isinstance stops the same way). */
#define LOOM_MAX_CLASS_DEPTH 100

/* deferred.c: the Deferred class loom.defer bound (nil before); its type. */
int loom__push_deferred_class(lua_State *L);

/* deferred_api.c: a Deferred made and fired from C, under loom.h's
   loom_deferred_* (api.c). They never raise: 0, or minus a Lua status with
   the error message in place of the result (-LUA_ERRMEM, stack untouched,
   when the stack cannot grow). */
int loom__deferred_new(lua_State *L);             /* pushes a new Deferred */
int loom__deferred_callback(lua_State *L, int d); /* pops the result */
int loom__deferred_errback(lua_State *L, int d);  /* pops the error */

#endif
