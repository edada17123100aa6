/*
** fs.c: core.stat and core.realpath, what web.File (lua/loom/web/static.lua)
** needs beyond Lua's io: a file's type, size and modification time, and
** the path with every link resolved, to refuse a link that leads out of
** the served directory. Synchronous, as core.listDir: a static file
** server stats before it opens (as twisted.web.static.File does).
*/
#include <string.h>

#include "binding.h"

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  default: return "other";
  }
}

/* core.stat(path) -> {type=, size=, mtime=} | nil, errname, msg
** (links followed; mtime in seconds since the epoch). */
static int l_stat(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  int rc = uv_fs_stat(st->loop, &req, path, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    return loom__push_error(L, rc, "%s: %s", path, uv_strerror(rc));
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, type_name(req.statbuf.st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)req.statbuf.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)req.statbuf.st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
  uv_fs_req_cleanup(&req);
  return 1;
}

/* core.realpath(path) -> absolute path without links | nil, errname, msg */
static int l_realpath(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  int rc = uv_fs_realpath(st->loop, &req, path, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    return loom__push_error(L, rc, "%s: %s", path, uv_strerror(rc));
  }
  lua_pushstring(L, req.ptr); /* May raise: the request leaks only then. */
  uv_fs_req_cleanup(&req);
  return 1;
}

/* Expects the core module table on the top of the stack. */
void loom__open_fs(lua_State *L) {
  lua_pushcfunction(L, l_stat);
  lua_setfield(L, -2, "stat");
  lua_pushcfunction(L, l_realpath);
  lua_setfield(L, -2, "realpath");
}
