/*
** embed.c: finding loom's Lua files and preparing a Lua state to run
** them, for the executable (cli/main.c) and any other embedder.
*/
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "binding.h"
#include "embed.h"

#ifndef LOOM_DATADIR
#define LOOM_DATADIR "/usr/local/share/loom"
#endif

static int readable(const char *dir, const char *rel, char *probe,
                    size_t len) {
  snprintf(probe, len, "%.4000s/%s/lua/loom/init.lua", dir, rel);
  return access(probe, R_OK) == 0;
}

/* Any address in this library: dladdr names the file it was loaded from. */
static const char library_anchor = 0;

/*
** The root is named without a ".." (the executable's directory's parent,
** cut off its path): every chunk name, error message and traceback shows
** /src/loom/lua/loom/x.lua, not /src/loom/build/../lua/loom/x.lua.
** uv_exepath gives the real path, so cutting a component is what ".."
** would do.
*/
static void set_root(char *root, size_t len, const char *exe,
                     const char *rel) {
  const char *slash = strrchr(exe, '/');
  if (strncmp(rel, "..", 2) == 0 && slash != NULL && slash != exe)
    snprintf(root, len, "%.*s%s", (int)(slash - exe), exe, rel + 2);
  else
    snprintf(root, len, "%.4000s/%s", exe, rel);
}

void loom_embed_find_root(char *root, size_t len) {
  static const char *const rels[] = { "..", "../share/loom" };
  char exe[4096], probe[4200];
  size_t n = sizeof(exe), i;
  char *slash;
  Dl_info info;
  if (uv_exepath(exe, &n) == 0 && (slash = strrchr(exe, '/')) != NULL) {
    *slash = '\0';
    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
      if (readable(exe, rels[i], probe, sizeof(probe))) {
        set_root(root, len, exe, rels[i]);
        return;
      }
    }
  }
  /* A program linked with libloom.so: the build tree's (build/..), or an
     installed one's PREFIX/lib/../share/loom, wherever the tree was
     installed or moved. */
  if (dladdr(&library_anchor, &info) != 0 && info.dli_fname != NULL &&
      (slash = strrchr(info.dli_fname, '/')) != NULL) {
    snprintf(exe, sizeof(exe), "%.*s", (int)(slash - info.dli_fname),
             info.dli_fname);
    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
      if (readable(exe, rels[i], probe, sizeof(probe))) {
        set_root(root, len, exe, rels[i]);
        return;
      }
    }
  }
  snprintf(root, len, "%s", LOOM_DATADIR);
}

void loom_embed_setup(lua_State *L, const char *root) {
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", root, root);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_loom_core);
  lua_setfield(L, -2, "loom.core");
  lua_pushcfunction(L, luaopen_loom_json);
  lua_setfield(L, -2, "loom.json");
  lua_pushcfunction(L, luaopen_loom_defer_core);
  lua_setfield(L, -2, "loom.defer.core");
  lua_pop(L, 1);
  /* loom.hostinfo tells the CLI where its plugins live. */
  lua_getfield(L, -1, "loaded");
  lua_createtable(L, 0, 3);
  lua_pushstring(L, root);
  lua_setfield(L, -2, "root");
  lua_pushfstring(L, "%s/plugins", root);
  lua_setfield(L, -2, "plugins");
  lua_pushliteral(L, LOOM_VERSION);
  lua_setfield(L, -2, "version");
  lua_setfield(L, -2, "loom.hostinfo");
  lua_pop(L, 2);
}
