/*
** unix.c: core.listenUNIX and core.connectUNIX. Connections are stream
** transports ("loom.UNIXTransport", bindings/stream.c); the listener box
** ("loom.UNIXListener") holds the Lua Port in user value 1, which builds
** protocols through hooks.accept, as for TCP, and hears of the close
** through hooks.unixListenerClosed.
*/
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "binding.h"

static const loom_class unix_listener_class;

#define UNIX_LISTENER "loom.UNIXListener"

/* ------------------------------------------------------------ transport */

/*
** {type="UNIX", name=path}; name is nil for an unnamed (client) end. Asks
** the socket itself: libuv's uv_pipe_getpeername reads past the address
** the kernel returns for an unnamed peer.
*/
static int push_pipe_name(lua_State *L, loom_stream *s, int peer) {
  struct sockaddr_un sun;
  socklen_t len = sizeof(sun);
  uv_os_fd_t fd;
  int rc = uv_fileno(&s->h.handle, &fd);
  memset(&sun, 0, sizeof(sun));
  if (rc == 0 && (peer ? getpeername(fd, (struct sockaddr *)&sun, &len)
                       : getsockname(fd, (struct sockaddr *)&sun, &len)) < 0)
    rc = uv_translate_sys_error(errno);
  if (rc < 0)
    return loom__push_error(L, rc, "%s", uv_strerror(rc));
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "UNIX");
  lua_setfield(L, -2, "type");
  if (len > offsetof(struct sockaddr_un, sun_path) && sun.sun_path[0]) {
    lua_pushlstring(L, sun.sun_path, strnlen(sun.sun_path, len -
                    offsetof(struct sockaddr_un, sun_path)));
    lua_setfield(L, -2, "name");
  }
  loom__set_address_class(L);
  return 1;
}

/* No methods of its own: setTcpNoDelay and the like are absent, as in
** Twisted, rather than handing a pipe to uv_tcp_*. */
static const loom_transport_class unix_transport = {
  LOOM_TRANSPORT_BASE(LOOM_UNIX_TRANSPORT, NULL), push_pipe_name
};

/* ------------------------------------------------------------- listener */

static void on_connection(loom_listener *l, int status) {
  loom__accept_one(l, status, loom__unix_accept);
}

/* hooks.unixListenerClosed(port) */
static int deliver_closed(lua_State *L) {
  loom_listener *l = lua_touserdata(L, 1);
  if (loom__push_hook(L, l->st, "unixListenerClosed") == LUA_TNIL)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(l->data));
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/*
** Runs once host/unix.c removed the socket file and released the lock, so
** the Port's stopListening Deferred fires only when the path is free again
** (Twisted's connectionLost); then the box is emptied as for TCP.
*/
static void on_listener_closed(loom_listener *l) {
  loom_state *st = l->st;
  if (LOOM_L(st) != NULL && l->data != NULL &&
      loom__call(st, deliver_closed, l) != LUA_OK) {
    loom__report_error(st, "stopListening", 0);
    lua_pop(LOOM_L(st), 1);
  }
  loom__listener_closed(l);
}

/*
** core.listenUNIX(path, backlog, mode, wantPID, portObject) -> listener,
** or nil, errname, one line: "/tmp/s: EADDRINUSE: address already in use".
*/
static int l_listen_unix(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
  int backlog = (int)luaL_optinteger(L, 2, 50);
  int mode = (int)luaL_optinteger(L, 3, 0);
  int want_pid = lua_toboolean(L, 4);
  listener_box *box;
  loom_unix_listener *u;
  char err[512];
  int ref, rc;
  box = loom__new_listener_box(L, &unix_listener_class, 5, &ref);
  if ((u = calloc(1, sizeof(*u))) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  u->l.data = NULL;
  u->l.on_connection = on_connection;
  u->l.on_closed = on_listener_closed;
  rc = loom__unix_listen(u, st, path, backlog, mode, want_pid, err,
                         sizeof(err));
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!u->l.closing)
      free(u); /* Never initialised; else the close callback frees it. */
    return loom__push_error(L, rc, "%s", err);
  }
  u->l.data = loom__ref_data(ref);
  box->p = &u->l;
  return 1;
}

static int l_listener_get_host(lua_State *L) {
  listener_box *box = loom__check_listener(L, 1);
  if (box->p == NULL)
    return luaL_error(L, "port is closed");
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "UNIX");
  lua_setfield(L, -2, "type");
  /* The loom_listener is the first member of its loom_unix_listener. */
  lua_pushstring(L, ((loom_unix_listener *)box->p)->path);
  lua_setfield(L, -2, "name");
  loom__set_address_class(L);
  return 1;
}

/*
** core.connectUNIX(path, owner) -> transport, or nil, errname, message.
** A missing or refusing socket is reported later, through hooks.connected.
*/
static int l_connect_unix(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
  transport_box *box;
  loom_stream *s;
  int ref, rc;
  box = loom__new_box(L, &unix_transport.base, sizeof(*box), &ref);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, UVAL_OWNER);
  if ((s = calloc(1, sizeof(*s))) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  s->st = st;
  s->vt = &loom__lua_stream_vt;
  rc = loom__unix_connect(s, path);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!uv_is_closing(&s->h.handle))
      free(s);
    return loom__push_error(L, rc, "%s: %s", path, uv_strerror(rc));
  }
  s->data = loom__ref_data(ref);
  box->p = s;
  return 1;
}

/* core.unixLockHeld(path): a live process holds path .. ".lock". */
static int l_lock_held(lua_State *L) {
  lua_pushboolean(L, loom__unix_lock_held(loom__check_cstring(L, 1)));
  return 1;
}

static const loom_class unix_listener_class = {
  UNIX_LISTENER, loom__listener_methods, 1, loom__l_listener_close,
  loom__listener_forget
};

static const luaL_Reg unix_functions[] = {
  {"listenUNIX", l_listen_unix},
  {"connectUNIX", l_connect_unix},
  {"unixLockHeld", l_lock_held},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_unix(lua_State *L) {
  loom__new_transport_class(L, &unix_transport);
  loom__new_listener_class(L, &unix_listener_class, l_listener_get_host);
  luaL_setfuncs(L, unix_functions, 0);
}
