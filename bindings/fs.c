/*
** fs.c: core.stat, core.lstat and core.realpath: a file's type, mode,
** owner, size, modification time and inode (web.File, the manhole's
** permission checks, hot reload's stamps), and the path with every link
** resolved, for web.File to refuse a link that leads out of its directory. Synchronous, as core.listDir: a static file
** server stats before it opens (as twisted.web.static.File does).
*/
#include <string.h>

#include "binding.h"

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFSOCK: return "socket";
  default: return "other";
  }
}

/*
** {type=, mode=, uid=, size=, mtime=, ino=}: mode the permission bits,
** mtime seconds since the epoch with its fraction (math.floor it for
** os.date); what web.File, the manhole's permission checks and hot reload's
** change stamps need, from one place.
*/
static void push_stat(lua_State *L, const uv_stat_t *sb) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, type_name(sb->st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(sb->st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)sb->st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)sb->st_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)sb->st_mtim.tv_sec
                    + (lua_Number)sb->st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)sb->st_ino);
  lua_setfield(L, -2, "ino");
}

static int stat_path(lua_State *L, int follow) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
  uv_fs_t req;
  int rc = follow ? uv_fs_stat(st->loop, &req, path, NULL)
                  : uv_fs_lstat(st->loop, &req, path, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    return loom__push_error(L, rc, "%s: %s", path, uv_strerror(rc));
  }
  push_stat(L, &req.statbuf);
  uv_fs_req_cleanup(&req);
  return 1;
}

/* core.stat(path) -> the table above (links followed) | nil, errname, msg */
static int l_stat(lua_State *L) {
  return stat_path(L, 1);
}

/* core.lstat(path): the same of a last link itself (type "link"). */
static int l_lstat(lua_State *L) {
  return stat_path(L, 0);
}

/* core.realpath(path) -> absolute path without links | nil, errname, msg */
static int l_realpath(lua_State *L) {
  loom_state *st = loom__get_state(L);
  const char *path = loom__check_cstring(L, 1);
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
  lua_pushcfunction(L, l_lstat);
  lua_setfield(L, -2, "lstat");
  lua_pushcfunction(L, l_realpath);
  lua_setfield(L, -2, "realpath");
}
