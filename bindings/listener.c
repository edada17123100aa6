/*
** listener.c: the Lua face of listeners, shared by TCP ("loom.Listener")
** and Unix sockets ("loom.UNIXListener"): the box, its methods (close,
** pauseAccepting, resumeAccepting, getHost per kind), accepting a
** connection into a new stream, and the close callback.
*/
#include <stdlib.h>
#include <string.h>

#include "binding.h"

static const char *const listener_names[] = { "loom.Listener",
                                              "loom.UNIXListener", NULL };

listener_box *loom__check_listener(lua_State *L, int idx) {
  int i;
  for (i = 0; listener_names[i] != NULL; i++) {
    void *u = luaL_testudata(L, idx, listener_names[i]);
    if (u != NULL)
      return u;
  }
  luaL_typeerror(L, idx, listener_names[0]);
  return NULL;
}

/*
** A box of class c for a listener, with the Lua Port (at owner) in user
** value 1, pinned by a ref returned in *ref. The caller then allocates and
** listens, and on success stores the ref and the pointer.
*/
listener_box *loom__new_listener_box(lua_State *L, const loom_class *c,
                                     int owner, int *ref) {
  listener_box *box;
  owner = lua_absindex(L, owner);
  box = loom__new_box(L, c, sizeof(*box), ref);
  lua_pushvalue(L, owner);
  lua_setiuservalue(L, -2, 1);
  return box;
}

typedef struct failed_args {
  loom_listener *l;
  int status;
} failed_args;

/* hooks.acceptFailed(port, errname, message, dropped) */
static int deliver_accept_failed(lua_State *L) {
  failed_args *a = lua_touserdata(L, 1);
  loom_listener *l = a->l;
  int status = a->status;
  if (loom__push_hook(L, l->st, "acceptFailed") == LUA_TNIL)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(l->data));
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  lua_pushstring(L, uv_err_name(status));
  lua_pushstring(L, uv_strerror(status));
  lua_pushinteger(L, l->dropped);
  lua_call(L, 4, 0);
  return 0;
}

/* accept(2) failed (out of descriptors, most likely): the Port logs it. */
static void accept_failed(loom_listener *l, int status) {
  failed_args a;
  if (l->data == NULL)
    return;
  a.l = l;
  a.status = status;
  if (loom__call(l->st, deliver_accept_failed, &a) != LUA_OK) {
    loom__report_error(l->st, "acceptFailed", 0);
    lua_pop(LOOM_L(l->st), 1);
  }
}

typedef struct accept_args {
  loom_listener *l;
  loom_stream *s;
} accept_args;

/* hooks.accept(port, transport): builds and attaches the protocol. */
static int deliver_accept(lua_State *L) {
  accept_args *a = lua_touserdata(L, 1);
  int t;
  if (loom__push_hook(L, a->l->st, "accept") == LUA_TNIL)
    return luaL_error(L, "no accept hook installed");
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->l->data));
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  loom__new_transport(L, a->s);
  t = lua_gettop(L);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, t, UVAL_OWNER);
  /* The address accept(2) gave: known even if the peer reset since. */
  if (a->l->peer != NULL && a->s->h.handle.type == UV_TCP)
    loom__keep_sockaddr(L, t, UVAL_PEER, a->l->peer);
  loom__keep_names(L, t, a->s);
  lua_call(L, 2, 0);
  return 0;
}

/*
** A listener (TCP or Unix) accepted s: box it, let the Lua Port build and
** attach the protocol, then start reading. If that raised, the error is
** logged and only s is aborted, with the error as its reason.
*/
static void accepted(loom_listener *l, loom_stream *s) {
  accept_args a;
  a.l = l;
  a.s = s;
  /* Connected from makeConnection on (Twisted's Server is): a hook error
  ** or a close inside connectionMade (abort, write limit) still delivers
  ** connectionLost, which may release what connectionMade took. */
  loom__stream_mark_accepted(s);
  if (loom__call(l->st, deliver_accept, &a) == LUA_OK) {
    if (!loom__stream_closing(s))
      loom__stream_start(s);
  } else if (s->data == NULL) { /* No box yet: out of memory. */
    lua_pop(LOOM_L(l->st), 1);
    loom__stream_close(s, LOOM_CLOSE_SHUTDOWN);
  } else {
    loom__transport_hook_failed(s, "makeConnection");
  }
}

/* A listener's on_connection: accept into a new stream, then attach it. */
void loom__accept_one(loom_listener *l, int status,
                      int (*accept)(loom_listener *, loom_stream *)) {
  loom_stream *s;
  if (LOOM_L(l->st) == NULL)
    return;
  if (status < 0) {
    accept_failed(l, status);
    return;
  }
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return;
  s->vt = &loom__lua_stream_vt;
  if (accept(l, s) < 0) {
    if (!uv_is_closing(&s->h.handle))
      free(s); /* Never initialised; else the close callback frees it. */
    return;
  }
  accepted(l, s);
}

/* A listener's close callback: empty its box, release the ref, free it. */
void loom__listener_closed(loom_listener *l) {
  lua_State *L = LOOM_L(l->st);
  if (L != NULL && l->data != NULL)
    loom__box_closed(L, loom__ref(l->data), 1);
  free(l);
}

int loom__l_listener_close(lua_State *L) {
  listener_box *box = loom__check_listener(L, 1);
  if (box->p != NULL)
    loom__listener_close(box->p);
  return 0;
}

static int l_listener_pause(lua_State *L) {
  listener_box *box = loom__check_listener(L, 1);
  if (box->p != NULL)
    loom__listener_pause(box->p);
  return 0;
}

static int l_listener_resume(lua_State *L) {
  listener_box *box = loom__check_listener(L, 1);
  if (box->p != NULL)
    loom__listener_resume(box->p);
  return 0;
}

/* __gc of a listener still open: the Lua state is closing. */
void loom__listener_forget(void *p) {
  loom_listener *l = p;
  l->data = NULL;
  loom__listener_close(l);
}

const luaL_Reg loom__listener_methods[] = {
  {"close", loom__l_listener_close},
  {"pauseAccepting", l_listener_pause},
  {"resumeAccepting", l_listener_resume},
  {NULL, NULL}
};

/* Registers listener class c (loom__listener_methods); getHost is the
** one method per kind. */
void loom__new_listener_class(lua_State *L, const loom_class *c,
                              lua_CFunction get_host) {
  loom__new_class(L, c);
  luaL_getmetatable(L, c->name);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, get_host);
  lua_setfield(L, -2, "getHost");
  lua_pop(L, 2);
}
