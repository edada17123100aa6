/*
** box.c: the one way to make a bound object (liolib's pattern). A box is a
** userdata whose first member is the host object (NULL once closed); it is
** made closed before anything can fail, then pinned by one registry ref
** while the host object is open, and emptied and unpinned by the object's
** close callback. Every class gets the same metamethods from one table:
** __gc, __close, __tostring and __name.
*/
#include "binding.h"

/*
** A new closed box of class c (size bytes, c->nuv user values), pinned:
** *ref is its registry ref, which the caller releases if what follows
** fails, and stores in the host object otherwise.
*/
void *loom__new_box(lua_State *L, const loom_class *c, size_t size,
                    int *ref) {
  loom_box *box = lua_newuserdatauv(L, size, c->nuv);
  box->p = NULL;
  luaL_setmetatable(L, c->name);
  lua_pushvalue(L, -1);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return box;
}

/*
** The host object of the box at ref closed: empty the box (it is plain
** garbage now, and a stale reference sees it closed) and unpin it.
*/
void loom__box_closed(lua_State *L, int ref, int nuv) {
  loom_box *box;
  int i;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  box = lua_touserdata(L, -1);
  if (box != NULL) {
    box->p = NULL;
    for (i = 1; i <= nuv; i++) {
      lua_pushnil(L);
      lua_setiuservalue(L, -2, i);
    }
  }
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

static const loom_class *class_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/*
** __gc: an open box is pinned, so this is reached with the host object set
** only while the Lua state closes: close it without calling Lua.
*/
static int box_gc(lua_State *L) {
  loom_box *box = lua_touserdata(L, 1);
  if (box->p != NULL) {
    const loom_class *c = class_of(L);
    void *p = box->p;
    box->p = NULL;
    if (c->forget != NULL)
      c->forget(p);
  }
  return 0;
}

/* __tostring: "loom.Timer (0x...)", or "loom.Timer (closed)". */
static int box_tostring(lua_State *L) {
  loom_box *box = lua_touserdata(L, 1);
  const loom_class *c = class_of(L);
  if (box->p == NULL)
    lua_pushfstring(L, "%s (closed)", c->name);
  else
    lua_pushfstring(L, "%s (%p)", c->name, box->p);
  return 1;
}

/*
** Registers class c: its metatable (__name is c->name) with __index the
** methods table, and the common metamethods; __close is the class's own
** close method, so `local x <close> = ...` closes x as x:close() would.
** A class may then replace __index or __tostring with its own.
*/
void loom__new_class(lua_State *L, const loom_class *c) {
  luaL_newmetatable(L, c->name);
  lua_newtable(L);
  if (c->methods != NULL)
    luaL_setfuncs(L, c->methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, LOOM_UNCONST(c));
  lua_pushcclosure(L, box_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pushlightuserdata(L, LOOM_UNCONST(c));
  lua_pushcclosure(L, box_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, c->close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}
