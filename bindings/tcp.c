/*
** tcp.c: the TCP transport class (loom.TCPTransport: setTcpNoDelay,
** setTcpKeepAlive, TCP addresses), core.listenTCP and core.connectTCP, and
** the TCP listener class. The Lua Port object (user value 1 of the
** listener) builds protocols through hooks.accept; reactor/tcp.lua makes
** the Twisted API from these. Failures follow bindings/call.c's convention.
*/
#include <stdlib.h>
#include <string.h>

#include "binding.h"

static const loom_class listener_class;

#define LISTENER "loom.Listener"

/* ------------------------------------------------------------ transport */

static int push_tcp_name(lua_State *L, loom_stream *s, int peer) {
  struct sockaddr_storage ss;
  int len = sizeof(ss), rc;
  if (peer)
    rc = uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len);
  else
    rc = uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len);
  if (rc < 0)
    return loom__push_error(L, rc, "%s", uv_strerror(rc));
  return loom__push_address(L, (struct sockaddr *)&ss);
}

static loom_stream *check_tcp(lua_State *L) {
  transport_box *box = luaL_checkudata(L, 1, LOOM_TCP_TRANSPORT);
  if (box->p == NULL)
    luaL_error(L, "transport is closed");
  return box->p;
}

static int l_set_tcp_no_delay(lua_State *L) {
  loom_stream *s = check_tcp(L);
  int rc = uv_tcp_nodelay(&s->h.tcp, lua_toboolean(L, 2));
  if (rc < 0)
    return luaL_error(L, "setTcpNoDelay: %s", uv_strerror(rc));
  return 0;
}

static int l_set_tcp_keep_alive(lua_State *L) {
  loom_stream *s = check_tcp(L);
  int delay = (int)luaL_optinteger(L, 3, 60);
  int rc = uv_tcp_keepalive(&s->h.tcp, lua_toboolean(L, 2), delay);
  if (rc < 0)
    return luaL_error(L, "setTcpKeepAlive: %s", uv_strerror(rc));
  return 0;
}

static const luaL_Reg tcp_transport_methods[] = {
  {"setTcpNoDelay", l_set_tcp_no_delay},
  {"setTcpKeepAlive", l_set_tcp_keep_alive},
  {NULL, NULL}
};

static const loom_transport_class tcp_transport = {
  LOOM_TRANSPORT_BASE(LOOM_TCP_TRANSPORT, tcp_transport_methods),
  push_tcp_name
};

/* ------------------------------------------------------------- listener */

static void on_connection(loom_listener *l, int status) {
  loom__accept_one(l, status, loom__tcp_accept);
}

/*
** core.listenTCP(host, port, backlog, portObject) -> listener, or nil,
** errname, one actionable line: "127.0.0.1:80: EACCES: ...".
*/
static int l_listen_tcp(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *host = loom__check_cstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 50);
  listener_box *box;
  loom_listener *l;
  char err[256];
  int ref, rc;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  box = loom__new_listener_box(L, &listener_class, 4, &ref);
  l = calloc(1, sizeof(*l));
  if (l == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  l->data = NULL;
  l->on_connection = on_connection;
  l->on_closed = loom__listener_closed;
  rc = loom__tcp_listen(l, st, host, port, backlog, err, sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!l->closing)
      free(l); /* Never initialised; else the close callback frees it. */
    return loom__push_error(L, rc, "%s", err);
  }
  l->data = loom__ref_data(ref);
  box->p = l;
  return 1;
}

static int l_listener_get_host(lua_State *L) {
  listener_box *box = loom__check_listener(L, 1);
  struct sockaddr_storage ss;
  int rc;
  if (box->p == NULL)
    return luaL_error(L, "port is closed");
  rc = loom__listener_sockname(box->p, &ss);
  if (rc < 0)
    return luaL_error(L, "getHost: %s", uv_strerror(rc));
  return loom__push_address(L, (struct sockaddr *)&ss);
}

/*
** core.connectTCP(host, port, bindHost, bindPort, owner) -> transport, or
** nil, errname, message for a failure known at once.
*/
static int l_connect_tcp(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *host = loom__check_cstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  const char *bind_host = loom__opt_cstring(L, 3, NULL);
  int bind_port = (int)luaL_optinteger(L, 4, 0);
  transport_box *box;
  loom_stream *s;
  char err[256];
  int ref, rc;
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port out of range");
  box = loom__new_box(L, &tcp_transport.base, sizeof(*box), &ref);
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, -2, UVAL_OWNER);
  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  s->st = st;
  s->vt = &loom__lua_stream_vt;
  rc = loom__tcp_connect(s, host, port, bind_host, bind_port, err,
                         sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!uv_is_closing(&s->h.handle))
      free(s);
    return loom__push_error(L, rc, "%s", err);
  }
  s->data = loom__ref_data(ref);
  box->p = s;
  return 1;
}

static const loom_class listener_class = {
  LISTENER, loom__listener_methods, 1, loom__l_listener_close,
  loom__listener_forget
};

static const luaL_Reg tcp_functions[] = {
  {"listenTCP", l_listen_tcp},
  {"connectTCP", l_connect_tcp},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_tcp(lua_State *L) {
  loom__new_transport_class(L, &tcp_transport);
  loom__new_listener_class(L, &listener_class, l_listener_get_host);
  luaL_setfuncs(L, tcp_functions, 0);
}
