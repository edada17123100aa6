/*
** loom.h: the public C header of libloom (installed as
** PREFIX/include/loom/loom.h; `pkg-config --cflags --libs loom`).
** Today it holds the Lua C modules an embedder that owns a lua_State puts
** in package.preload (as the loom executable does), so that
** require "loom.reactor" and the rest of lua/loom/ find their C core:
**
**   luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
**   lua_pushcfunction(L, luaopen_loom_core);
**   lua_setfield(L, -2, "loom.core");
**
** The embedding API (a host object, loom_run/loom_step, ...) comes with F8.
** Everything else in host/ and bindings/ is internal.
*/
#ifndef LOOM_H
#define LOOM_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

int luaopen_loom_core(lua_State *L);       /* "loom.core": the reactor's C side */
int luaopen_loom_json(lua_State *L);       /* "loom.json" */
int luaopen_loom_defer_core(lua_State *L); /* "loom.defer.core" */

#ifdef __cplusplus
}
#endif

#endif
