/*
** binding.h: what bindings/ share. This is the only C besides host/main.c
** that includes lua.h: the host calls the vtables implemented here.
*/
#ifndef LOOM_BINDING_H
#define LOOM_BINDING_H

#include <lua.h>
#include <lauxlib.h>

#include "../host/internal.h"

#define LOOM_STATE_KEY "loom.state"

/* User values of a transport box. */
#define UV_PROTOCOL 1 /* the protocol table (before connecting: the owner) */
#define UV_OWNER 2    /* the Lua Port or Connector object */
#define UV_PRODUCER 3 /* the registered producer */
#define UV_REASON 4   /* the Failure of a hook error, for connectionLost */
#define UV_PEER 5     /* getPeer's address, kept from the accept/connect */
#define UV_HOST 6     /* getHost's address, likewise */
#define TRANSPORT_NUV 6

typedef struct transport_box {
  loom_stream *p;
} transport_box;

/* call.c */
loom_state *loom__get_state(lua_State *L);
int loom__call(loom_state *st, lua_CFunction fn, void *ud);
int loom__push_hook(lua_State *L, loom_state *st, const char *name);
void loom__report_error(loom_state *st, const char *where, int tindex);
void loom__fatal_report(const char *where, const char *msg);
int loom__l_traceback(lua_State *L);

/* stream.c */
extern const loom_stream_vtable loom__lua_stream_vt;
void loom__open_stream(lua_State *L);
transport_box *loom__new_transport(lua_State *L, loom_stream *s);
void loom__push_transport(lua_State *L, loom_stream *s);
int loom__push_address(lua_State *L, const struct sockaddr *sa);
void loom__set_address_class(lua_State *L);
void loom__accepted(loom_listener *l, loom_stream *s);

/* listener.c */
typedef struct listener_box {
  loom_listener *p;
} listener_box;

listener_box *loom__check_listener(lua_State *L, int idx);
listener_box *loom__new_listener_box(lua_State *L, const char *mt, int owner,
                                     int *ref);
void loom__new_listener_class(lua_State *L, const char *name,
                              lua_CFunction get_host);
void loom__accept_one(loom_listener *l, int status,
                      int (*accept)(loom_listener *, loom_stream *));
void loom__listener_closed(loom_listener *l);

/* tcp.c, timer.c, json.c, core.c */
void loom__open_tcp(lua_State *L);
void loom__open_timer(lua_State *L);
void loom__open_signal(lua_State *L);
void loom__open_lines(lua_State *L);
void loom__open_unix(lua_State *L);
void loom__open_udp(lua_State *L);
void loom__open_process(lua_State *L);
void loom__open_thread(lua_State *L);
void loom__open_resolver(lua_State *L);
void loom__open_pidfile(lua_State *L);
void loom__open_identity(lua_State *L);
void loom__open_stdio(lua_State *L);
int luaopen_loom_core(lua_State *L);
int luaopen_loom_json(lua_State *L);
int luaopen_loom_defer_core(lua_State *L);

/* deferred.c: a Deferred made and fired from C (docs/defer.md). They never
   raise: 0, or minus a Lua status with the error message in place of the
   result (-LUA_ERRMEM, stack untouched, when the stack cannot grow). */
int loom_deferred_new(lua_State *L);             /* pushes a new Deferred */
int loom_deferred_callback(lua_State *L, int d); /* pops the result */
int loom_deferred_errback(lua_State *L, int d);  /* pops the error */

#endif
