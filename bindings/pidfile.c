/*
** pidfile.c: core.takePidfile(path) -> a held pidfile, or nil, message;
** pidfile:release() removes the file if it is still ours.
**
** Checking for a live holder and then writing raced (two hosts started
** together both ran) and io.open followed a symlink to its target. So the
** file is opened without following links (O_NOFOLLOW) and loom holds a
** write lock (fcntl) on it while it runs: only one host can take the lock,
** and a holder that died leaves the file free again. As in Twisted, a file
** that names another live process (a pidfile written without the lock)
** is refused too.
** core.pidfileHolder(path) -> the pid of the loom process holding the
** file's lock, or false and the pid written in it (0: none): a stale file;
** nil, errname, message when it cannot be opened (`loom reload PIDFILE`).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binding.h"

#define PIDFILE "loom.Pidfile"
#define TAKE_TRIES 3 /* A holder releasing as we open makes us retry. */

typedef struct pidfile_box {
  int fd; /* -1 once released */
} pidfile_box;

static int lock_whole(int fd) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  return fcntl(fd, F_SETLK, &fl);
}

/* The pid written in the file, or 0. */
static long read_pid(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return strtol(buf, NULL, 10);
}

/* The process holding the lock (F_GETLK says, even before it wrote its
** pid), else the pid written in the file, or 0. */
static long holder_pid(int fd) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
    return (long)fl.l_pid;
  return read_pid(fd);
}

static int alive(long pid) {
  return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* Whether path still names the file open on fd (a releasing holder may
** have removed it between our open and our lock). */
static int same_file(int fd, const char *path) {
  struct stat a, b;
  return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev
         && a.st_ino == b.st_ino;
}

static int is_regular(int fd) {
  struct stat a;
  return fstat(fd, &a) == 0 && S_ISREG(a.st_mode);
}

static int write_pid(int fd) {
  char buf[32];
  int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
    return -1;
  return 0;
}

static void close_box(pidfile_box *box) {
  if (box->fd >= 0)
    close(box->fd);
  box->fd = -1;
}

static int refuse_held(lua_State *L, pidfile_box *box, const char *path,
                       long pid) {
  close_box(box);
  if (pid > 0)
    return loom__push_error(L, UV_EBUSY, "pidfile %s is held by running "
                            "process %I", path, (lua_Integer)pid);
  return loom__push_error(L, UV_EBUSY, "pidfile %s is held by another "
                          "running process", path);
}

/* rc: the libuv error that names why (bindings/call.c's convention). */
static int refuse(lua_State *L, pidfile_box *box, const char *path, int rc,
                  const char *why) {
  close_box(box);
  return loom__push_error(L, rc, "pidfile %s %s", path, why);
}

/* One attempt: 1 taken (box on top), 3 refused (nil, errname, message), 0
** retry. */
static int try_take(lua_State *L, pidfile_box *box, const char *path) {
  long pid;
  box->fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (box->fd < 0 && errno == ELOOP)
    return refuse(L, box, path, UV_ELOOP,
                  "is a symbolic link (not followed)");
  if (box->fd < 0)
    return refuse(L, box, path, uv_translate_sys_error(errno),
                  strerror(errno));
  if (!is_regular(box->fd))
    return refuse(L, box, path, UV_EINVAL, "is not a regular file");
  if (lock_whole(box->fd) < 0) {
    if (errno != EACCES && errno != EAGAIN)
      return refuse(L, box, path, uv_translate_sys_error(errno),
                  strerror(errno));
    return refuse_held(L, box, path, holder_pid(box->fd));
  }
  if (!same_file(box->fd, path)) {
    close_box(box);
    return 0;
  }
  pid = read_pid(box->fd);
  if (pid != (long)getpid() && alive(pid))
    return refuse_held(L, box, path, pid);
  if (write_pid(box->fd) < 0) {
    int e = errno;
    unlink(path);
    return refuse(L, box, path, uv_translate_sys_error(e), strerror(e));
  }
  return 1;
}

static int l_take_pidfile(lua_State *L) {
  const char *path = loom__check_cstring(L, 1);
  pidfile_box *box;
  int i, rc = 0;
  /* The box first: the fd is in it before anything else can raise. */
  box = lua_newuserdatauv(L, sizeof(*box), 1);
  box->fd = -1;
  luaL_setmetatable(L, PIDFILE);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  for (i = 0; i < TAKE_TRIES && rc == 0; i++)
    rc = try_take(L, box, path);
  if (rc == 0)
    return refuse_held(L, box, path, 0);
  return rc;
}

/* Removes the file only while it is still ours, then drops the lock. */
static int l_pidfile_release(lua_State *L) {
  pidfile_box *box = luaL_checkudata(L, 1, PIDFILE);
  const char *path;
  if (box->fd < 0)
    return 0;
  lua_getiuservalue(L, 1, 1);
  path = lua_tostring(L, -1);
  if (path != NULL && same_file(box->fd, path)
      && read_pid(box->fd) == (long)getpid())
    unlink(path);
  close_box(box);
  return 0;
}

static int l_pidfile_holder(lua_State *L) {
  const char *path = loom__check_cstring(L, 1);
  struct flock fl;
  long pid;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return loom__push_error(L, uv_translate_sys_error(e), "%s: %s", path,
                            strerror(e));
  }
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0) {
    close(fd);
    lua_pushinteger(L, (lua_Integer)fl.l_pid);
    return 1;
  }
  pid = read_pid(fd);
  close(fd);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, (lua_Integer)pid);
  return 2;
}

/* A safety net: the lock goes, the file stays (its holder is gone). */
static int l_pidfile_gc(lua_State *L) {
  close_box(luaL_checkudata(L, 1, PIDFILE));
  return 0;
}

static const luaL_Reg pidfile_methods[] = {
  {"release", l_pidfile_release},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_pidfile(lua_State *L) {
  luaL_newmetatable(L, PIDFILE);
  luaL_newlib(L, pidfile_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_pidfile_gc);
  lua_setfield(L, -2, "__gc");
  /* Not a host object (a descriptor), so not a box.c class; __close as
  ** every class has it. */
  lua_pushcfunction(L, l_pidfile_release);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_take_pidfile);
  lua_setfield(L, -2, "takePidfile");
  lua_pushcfunction(L, l_pidfile_holder);
  lua_setfield(L, -2, "pidfileHolder");
}
