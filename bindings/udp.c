/*
** udp.c: core.listenUDP and the "loom.UDPSocket" box behind reactor.lua's
** UDP Port. User value 1 is the Lua Port (told of the close through
** hooks.udpClosed), user value 2 the DatagramProtocol, whose
** datagramReceived is called directly for each datagram.
*/
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define UDP_SOCKET "loom.UDPSocket"
#define UDP_PORT 1
#define UDP_PROTOCOL 2

/* The largest payload of one datagram: 65535 less the IP and UDP headers. */
#define MAX_DGRAM_V4 65507
#define MAX_DGRAM_V6 65527

typedef struct udp_box {
  loom_udp *p; /* first, as in every box (box.c) */
  int family;
} udp_box;

static const loom_class udp_class;

static udp_box *check_box(lua_State *L) {
  return luaL_checkudata(L, 1, UDP_SOCKET);
}

static loom_udp *check_open(lua_State *L) {
  udp_box *box = check_box(L);
  if (box->p == NULL)
    luaL_error(L, "port is closed");
  return box->p;
}

typedef struct dgram_args {
  loom_udp *u;
  const char *buf;
  size_t len;
  const struct sockaddr *from;
} dgram_args;

/* Pushes the protocol's method `name` and the protocol; 0 when missing. */
static int push_method(lua_State *L, loom_udp *u, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(u->data));
  lua_getiuservalue(L, -1, UDP_PROTOCOL);
  if (lua_isnil(L, -1) || lua_getfield(L, -1, name) == LUA_TNIL)
    return 0;
  lua_insert(L, -2);
  return 1;
}

static int deliver_datagram(lua_State *L) {
  dgram_args *a = lua_touserdata(L, 1);
  if (!push_method(L, a->u, "datagramReceived"))
    return 0;
  lua_pushlstring(L, a->buf, a->len);
  loom__push_address(L, a->from);
  lua_pushliteral(L, "UDP");
  lua_setfield(L, -2, "type");
  lua_call(L, 3, 0);
  return 0;
}

/* Logs the caught error (named after the port's protocol) and pops it. */
static void call_failed(loom_udp *u, const char *where) {
  lua_State *L = LOOM_L(u->st);
  int port;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(u->data));
  lua_getiuservalue(L, -1, UDP_PORT);
  lua_remove(L, -2);
  lua_insert(L, -2); /* port, caught */
  port = lua_gettop(L) - 1;
  loom__report_error(u->st, where, port);
  lua_pop(L, 2); /* The port keeps serving. */
}

static void on_datagram(loom_udp *u, const char *buf, size_t len,
                        const struct sockaddr *from) {
  dgram_args a;
  if (LOOM_L(u->st) == NULL || u->data == NULL)
    return;
  a.u = u;
  a.buf = buf;
  a.len = len;
  a.from = from;
  if (loom__call(u->st, deliver_datagram, &a) != LUA_OK)
    call_failed(u, "datagramReceived");
}

static int deliver_refused(lua_State *L) {
  loom_udp *u = lua_touserdata(L, 1);
  if (push_method(L, u, "connectionRefused"))
    lua_call(L, 1, 0);
  return 0;
}

static void on_refused(loom_udp *u) {
  if (LOOM_L(u->st) == NULL || u->data == NULL)
    return;
  if (loom__call(u->st, deliver_refused, u) != LUA_OK)
    call_failed(u, "connectionRefused");
}

/* hooks.udpClosed(port) */
static int deliver_closed(lua_State *L) {
  loom_udp *u = lua_touserdata(L, 1);
  if (loom__push_hook(L, u->st, "udpClosed") == LUA_TNIL)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(u->data));
  lua_getiuservalue(L, -1, UDP_PORT);
  lua_remove(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* Tells Lua, then empties the box and releases its one ref. */
static void on_closed(loom_udp *u) {
  lua_State *L = LOOM_L(u->st);
  if (L == NULL || u->data == NULL)
    return;
  if (loom__call(u->st, deliver_closed, u) != LUA_OK)
    call_failed(u, "stopProtocol");
  loom__box_closed(L, loom__ref(u->data), 2);
  u->data = NULL;
}

static const loom_udp_vtable udp_vt = { on_datagram, on_refused, on_closed };

/*
** core.listenUDP(host, port, portObject, protocol) -> socket, or nil and
** one line: "127.0.0.1:53: EACCES: permission denied".
*/
static int l_listen_udp(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *host = loom__check_cstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  udp_box *box;
  loom_udp *u;
  char err[256];
  int ref, rc;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  box = loom__new_box(L, &udp_class, sizeof(*box), &ref);
  box->family = strchr(host, ':') != NULL ? AF_INET6 : AF_INET;
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, UDP_PORT);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, -2, UDP_PROTOCOL);
  if ((u = calloc(1, sizeof(*u))) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  u->data = NULL;
  u->vt = &udp_vt;
  rc = loom__udp_bind(u, st, host, port, err, sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!u->closing)
      free(u); /* Never initialised; else the close callback frees it. */
    return loom__push_error(L, rc, "%s", err);
  }
  u->data = loom__ref_data(ref);
  box->p = u;
  return 1;
}

/* Reads host (at idx) and port (idx + 1) into ss, or raises. */
static void check_addr(lua_State *L, const char *what, int idx,
                       struct sockaddr_storage *ss) {
  const char *host = loom__check_cstring(L, idx);
  lua_Integer port = luaL_checkinteger(L, idx + 1);
  if (port < 0 || port > 65535)
    luaL_error(L, "%s: port %d out of range", what, (int)port);
  if (loom__sockaddr_parse(host, (int)port, ss) < 0)
    luaL_error(L, "%s: %s is not an IP address", what, host);
}

/*
** socket:write(data, host?, port?) -> true, or nil, errname, message (an
** error the kernel reported, e.g. ECONNREFUSED on a connected socket).
*/
static int l_udp_write(lua_State *L) {
  udp_box *box = check_box(L);
  size_t len, max;
  const char *data = luaL_checklstring(L, 2, &len);
  struct sockaddr_storage ss;
  int rc;
  if (box->p == NULL)
    return luaL_error(L, "write: port is closed");
  max = box->family == AF_INET6 ? MAX_DGRAM_V6 : MAX_DGRAM_V4;
  if (len > max)
    return luaL_error(L, "write: datagram of %d bytes is too large (max %d)",
                      (int)len, (int)max);
  if (lua_isnoneornil(L, 3)) {
    if (!box->p->connected)
      return luaL_error(L, "write: no address given and not connected");
    rc = loom__udp_send(box->p, data, len, NULL);
  } else {
    check_addr(L, "write", 3, &ss);
    rc = loom__udp_send(box->p, data, len, (struct sockaddr *)&ss);
  }
  if (rc < 0)
    return loom__push_error(L, rc, "%s", uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int fail(lua_State *L, const char *what, int rc) {
  return luaL_error(L, "%s: %s: %s", what, uv_err_name(rc), uv_strerror(rc));
}

static int l_udp_connect(lua_State *L) {
  loom_udp *u = check_open(L);
  struct sockaddr_storage ss;
  int rc;
  check_addr(L, "connect", 2, &ss);
  rc = loom__udp_connect(u, (struct sockaddr *)&ss);
  return rc < 0 ? fail(L, "connect", rc) : 0;
}

static int l_udp_get_host(lua_State *L) {
  loom_udp *u = check_open(L);
  struct sockaddr_storage ss;
  int len = sizeof(ss), rc;
  rc = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len);
  if (rc < 0)
    return fail(L, "getHost", rc);
  loom__push_address(L, (struct sockaddr *)&ss);
  lua_pushliteral(L, "UDP");
  lua_setfield(L, -2, "type");
  return 1;
}

/* socket:membership(group, iface?, join) */
static int l_udp_membership(lua_State *L) {
  loom_udp *u = check_open(L);
  const char *group = loom__check_cstring(L, 2);
  const char *iface = loom__opt_cstring(L, 3, NULL);
  int join = lua_toboolean(L, 4);
  int rc = uv_udp_set_membership(&u->h, group, iface,
                                 join ? UV_JOIN_GROUP : UV_LEAVE_GROUP);
  if (rc < 0)
    return loom__push_error(L, rc, "%s: %s: %s", group, uv_err_name(rc),
                            uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_udp_set_ttl(lua_State *L) {
  loom_udp *u = check_open(L);
  int rc = uv_udp_set_multicast_ttl(&u->h, (int)luaL_checkinteger(L, 2));
  return rc < 0 ? fail(L, "setTTL", rc) : 0;
}

static int l_udp_set_loopback(lua_State *L) {
  loom_udp *u = check_open(L);
  int rc = uv_udp_set_multicast_loop(&u->h, lua_toboolean(L, 2));
  return rc < 0 ? fail(L, "setLoopbackMode", rc) : 0;
}

static int l_udp_set_broadcast(lua_State *L) {
  loom_udp *u = check_open(L);
  int rc = uv_udp_set_broadcast(&u->h, lua_toboolean(L, 2));
  return rc < 0 ? fail(L, "setBroadcastAllowed", rc) : 0;
}

static int l_udp_close(lua_State *L) {
  udp_box *box = check_box(L);
  if (box->p != NULL)
    loom__udp_close(box->p);
  return 0;
}

static void udp_forget(void *p) {
  loom_udp *u = p;
  u->data = NULL;
  loom__udp_close(u);
}

static const luaL_Reg udp_methods[] = {
  {"write", l_udp_write},
  {"connect", l_udp_connect},
  {"getHost", l_udp_get_host},
  {"membership", l_udp_membership},
  {"setTTL", l_udp_set_ttl},
  {"setLoopbackMode", l_udp_set_loopback},
  {"setBroadcastAllowed", l_udp_set_broadcast},
  {"close", l_udp_close},
  {NULL, NULL}
};

static const loom_class udp_class = {
  UDP_SOCKET, udp_methods, 2, l_udp_close, udp_forget
};

/* Expects the core module table on the top of the stack. */
void loom__open_udp(lua_State *L) {
  loom__new_class(L, &udp_class);
  lua_pushcfunction(L, l_listen_udp);
  lua_setfield(L, -2, "listenUDP");
}
