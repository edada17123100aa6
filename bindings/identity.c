/*
** identity.c: core.switchIdentity(user, group), twistd's switchUID for
** `loom --uid/--gid` and Application(name, {uid=, gid=}). A host started
** as root opens its privileged ports, then becomes USER:GROUP for good
** (real, effective and saved ids, supplementary groups too).
*/
#define _DEFAULT_SOURCE /* initgroups, setgroups */
#include <errno.h>
#include <stdarg.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "binding.h"

/*
** A number given as an integer or as a string of digits (else a name),
** below (uid_t)-1 and (gid_t)-1, which mean "no change" to the kernel.
*/
static int number_arg(lua_State *L, int idx, unsigned long *n) {
  const char *s;
  char *end;
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    *n = (unsigned long)i;
    return i >= 0 && *n < (unsigned long)(uid_t)-1;
  }
  s = lua_tostring(L, idx);
  if (s[0] < '0' || s[0] > '9')
    return 0;
  errno = 0;
  *n = strtoul(s, &end, 10);
  return *end == '\0' && errno == 0 && *n < (unsigned long)(uid_t)-1;
}

static int check_id_arg(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx))
    return 0;
  if (!lua_isinteger(L, idx) && lua_type(L, idx) != LUA_TSTRING)
    luaL_typeerror(L, idx, "user or group name or number");
  return 1;
}

/*
** The user at idx: its uid, primary gid and name (NULL for a number with
** no passwd entry). Returns 0 with a message pushed when it is unknown.
*/
static int find_user(lua_State *L, int idx, uid_t *uid, gid_t *gid,
                     const char **name) {
  unsigned long n;
  struct passwd *pw;
  int numeric = number_arg(L, idx, &n);
  pw = numeric ? getpwuid((uid_t)n) : getpwnam(lua_tostring(L, idx));
  if (pw == NULL && !numeric) {
    lua_pushfstring(L, "no such user '%s'", lua_tostring(L, idx));
    return 0;
  }
  *uid = pw ? pw->pw_uid : (uid_t)n;
  *gid = pw ? pw->pw_gid : (gid_t)-1;
  *name = pw ? lua_pushstring(L, pw->pw_name) : NULL; /* Kept on the stack. */
  return 1;
}

static int find_group(lua_State *L, int idx, gid_t *gid) {
  unsigned long n;
  struct group *gr;
  if (number_arg(L, idx, &n)) {
    *gid = (gid_t)n;
    return 1;
  }
  gr = getgrnam(lua_tostring(L, idx));
  if (gr == NULL) {
    lua_pushfstring(L, "no such group '%s'", lua_tostring(L, idx));
    return 0;
  }
  *gid = gr->gr_gid;
  return 1;
}

/*
** Groups first (they need root), then the uid last: setuid as root sets
** the real, effective and saved uid, so there is no way back.
*/
static int switch_ids(int has_uid, uid_t uid, const char *name, gid_t gid) {
  if (name != NULL ? initgroups(name, gid) : setgroups(1, &gid))
    return -1;
  if (setgid(gid) != 0)
    return -1;
  if (has_uid && setuid(uid) != 0)
    return -1;
  return 0;
}


/*
** core.switchIdentity(user, group) -> true, "uid/gid U/G", or nil,
** errname, one-line message. Either may be nil; a user without a group
** takes its primary group, as twistd does.
*/
static int l_switch_identity(lua_State *L) {
  int has_uid = check_id_arg(L, 1), has_gid = check_id_arg(L, 2);
  uid_t uid = getuid();
  gid_t gid = (gid_t)-1;
  const char *name = NULL;
  lua_settop(L, 2);
  if (!has_uid && !has_gid)
    return luaL_error(L, "switchIdentity: give a user, a group or both");
  if (has_uid && !find_user(L, 1, &uid, &gid, &name))
    return loom__push_error(L, UV_ENOENT, "%s", lua_tostring(L, -1));
  if (has_gid && !find_group(L, 2, &gid))
    return loom__push_error(L, UV_ENOENT, "%s", lua_tostring(L, -1));
  if (gid == (gid_t)-1)
    return loom__push_error(L, UV_ENOENT, "uid %d has no passwd entry: give "
                            "a group too", (int)uid);
  if (uid == getuid() && geteuid() == uid && gid == getgid()
      && getegid() == gid) {
    lua_pushboolean(L, 1);
    lua_pushfstring(L, "uid/gid %d/%d (already)", (int)uid, (int)gid);
    return 2;
  }
  if (switch_ids(has_uid, uid, name, gid) != 0)
    return loom__push_error(L, uv_translate_sys_error(errno),
                            "cannot switch to uid/gid %d/%d: %s%s", (int)uid,
                            (int)gid, strerror(errno),
                            errno == EPERM ? " (are you root?)" : "");
  lua_pushboolean(L, 1);
  lua_pushfstring(L, "uid/gid %d/%d", (int)uid, (int)gid);
  return 2;
}

void loom__open_identity(lua_State *L) {
  lua_pushcfunction(L, l_switch_identity);
  lua_setfield(L, -2, "switchIdentity");
}
