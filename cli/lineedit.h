/*
** lineedit.h: loom.lineedit, the executable's own Lua module (line
** editing for `loom console`; cli/lineedit.c).
*/
#ifndef LOOM_LINEEDIT_H
#define LOOM_LINEEDIT_H

#include <lua.h>

int luaopen_loom_lineedit(lua_State *L);

#endif
