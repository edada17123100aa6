/*
** embed.h: what a program that embeds loom in its own Lua state needs
** (cli/main.c is one such program; a C embedding API builds on it): where
** loom's Lua files are, and a Lua state set up to require them.
*/
#ifndef LOOM_EMBED_H
#define LOOM_EMBED_H

#include <stddef.h>

#include <lua.h>

/*
** Sets root to the directory holding lua/ and plugins/: the source tree
** when the executable runs from build/, else PREFIX/share/loom next to
** PREFIX/bin (so an installed tree can be moved), else the same two
** places next to the libloom.so the program loaded (build/.., or
** PREFIX/lib/../share/loom), else LOOM_DATADIR.
*/
void loom_embed_find_root(char *root, size_t len);

/*
** Prepares L (its standard libraries open) to run loom from root: root's
** lua/ on package.path, loom's C modules (loom.core, loom.json,
** loom.defer.core) in package.preload, and loom.hostinfo (root, plugins,
** version) in package.loaded. May raise.
*/
void loom_embed_setup(lua_State *L, const char *root);

#endif
