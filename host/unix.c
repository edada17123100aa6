/*
** unix.c: Unix stream sockets: listen (with Twisted's optional pid lock
** file), accept and connect. The connection itself is a loom_stream over a
** uv_pipe_t (stream.c); the listener unlinks its socket file on close.
*/
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

static void on_listener_closed(uv_handle_t *h);

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/*
** Twisted's lockfile.FilesystemLock: a symlink whose target is our pid.
** Returns 1 when taken (*stale set when a dead holder's lock was broken),
** 0 when a live process holds it, or a negative errno-style libuv error.
*/
static int take_lock(const char *lockpath, int *stale) {
  char me[32], target[32];
  int tries;
  snprintf(me, sizeof(me), "%ld", (long)uv_os_getpid());
  for (tries = 0; tries < 3; tries++) {
    ssize_t n;
    long pid;
    if (symlink(me, lockpath) == 0)
      return 1;
    if (errno != EEXIST)
      return uv_translate_sys_error(errno);
    n = readlink(lockpath, target, sizeof(target) - 1);
    if (n < 0) {
      if (errno == ENOENT)
        continue; /* Released meanwhile: try again. */
      return uv_translate_sys_error(errno);
    }
    target[n] = '\0';
    pid = strtol(target, NULL, 10);
    if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
      return 0;
    *stale = 1; /* The holder is gone: break its lock. */
    if (unlink(lockpath) < 0 && errno != ENOENT)
      return uv_translate_sys_error(errno);
  }
  return UV_EBUSY;
}

/* Is path .. ".lock" held by a live process (connectUNIX checkPID)? */
int loom__unix_lock_held(const char *path) {
  char lockpath[1100], target[32];
  ssize_t n;
  long pid;
  snprintf(lockpath, sizeof(lockpath), "%s.lock", path);
  n = readlink(lockpath, target, sizeof(target) - 1);
  if (n < 0)
    return 0;
  target[n] = '\0';
  pid = strtol(target, NULL, 10);
  return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* With the lock held, a socket file left at path is a dead server's. */
static void remove_stale_socket(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
    unlink(path);
}

static int lock_path(loom_unix_listener *u, const char *path, char *err,
                     size_t errlen) {
  size_t n = strlen(path);
  int stale = 0, rc;
  u->lockpath = malloc(n + 6);
  if (u->lockpath == NULL)
    return UV_ENOMEM;
  memcpy(u->lockpath, path, n);
  memcpy(u->lockpath + n, ".lock", 6);
  rc = take_lock(u->lockpath, &stale);
  if (rc <= 0) {
    free(u->lockpath);
    u->lockpath = NULL;
    if (rc == 0) {
      snprintf(err, errlen, "%s: in use by a live process (lock %s.lock)",
               path, path);
      return UV_EADDRINUSE;
    }
    snprintf(err, errlen, "%s.lock: %s: %s", path, uv_err_name(rc),
             uv_strerror(rc));
    return rc;
  }
  remove_stale_socket(path);
  return 0;
}

/* A non-blocking Unix stream socket bound to path. */
static int bind_path(const char *path, int *fdp) {
  struct sockaddr_un sun;
  int fd, rc;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sun.sun_path))
    return UV_ENAMETOOLONG;
  memcpy(sun.sun_path, path, strlen(path));
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
    rc = uv_translate_sys_error(errno);
    close(fd);
    return rc;
  }
  *fdp = fd;
  return 0;
}

/* Undoes a listen that failed before its handle existed. */
static void unlisten(loom_unix_listener *u) {
  if (u->bound)
    unlink(u->path);
  if (u->lockpath != NULL)
    unlink(u->lockpath);
  free(u->lockpath);
  free(u->path);
  u->lockpath = u->path = NULL;
  u->bound = 0;
}

/*
** Binds and listens on path; mode (when nonzero) is chmod'ed onto the
** socket file. On failure returns a libuv error with a one-line reason in
** err; if u->l.closing is then set, the handle is closing and u must stay
** allocated until on_closed runs.
*/
int loom__unix_listen(loom_unix_listener *u, loom_state *st,
                      const char *path, int backlog, int mode, int want_pid,
                      char *err, size_t errlen) {
  int rc, fd = -1;
  u->l.st = st;
  if ((u->path = dup_string(path)) == NULL)
    return UV_ENOMEM;
  if (want_pid && (rc = lock_path(u, path, err, errlen)) < 0) {
    free(u->path);
    u->path = NULL;
    return rc;
  }
  rc = bind_path(path, &fd);
  if (rc == 0) {
    u->bound = 1;
    if (mode != 0 && chmod(path, (mode_t)mode) < 0) {
      rc = uv_translate_sys_error(errno);
      close(fd);
    }
  }
  if (rc == 0)
    rc = loom__listener_open(&u->l, st, fd, backlog, on_listener_closed);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s: %s", path, uv_err_name(rc),
             uv_strerror(rc));
    if (!u->l.closing)
      unlisten(u);
  }
  return rc;
}

static int unix_init(uv_loop_t *loop, loom_stream *s) {
  return uv_pipe_init(loop, &s->h.pipe, 0);
}

static int unix_open(loom_stream *s, int fd) {
  return uv_pipe_open(&s->h.pipe, fd);
}

/* The listener's accepted connection into s, whose vt the caller set. */
int loom__unix_accept(loom_listener *l, loom_stream *s) {
  return loom__stream_accept(l, s, unix_init, unix_open);
}

/*
** Starts connecting s (st and vt set) to path. libuv reports every failure
** (ENOENT, ECONNREFUSED) through the connect callback.
*/
int loom__unix_connect(loom_stream *s, const char *path) {
  uv_connect_t *req;
  int rc = uv_pipe_init(s->st->loop, &s->h.pipe, 0);
  if (rc < 0)
    return rc;
  loom__stream_setup(s, s->st, s->vt);
  s->flags |= LOOM_S_CONNECTING;
  if ((req = malloc(sizeof(*req))) == NULL) {
    loom__stream_close(s, UV_ENOMEM);
    return UV_ENOMEM;
  }
  req->data = s;
  uv_pipe_connect(req, &s->h.pipe, path, loom__stream_on_connect);
  return 0;
}

/* Removes the socket file (only one we bound) and releases the lock. */
static void on_listener_closed(uv_handle_t *h) {
  loom_unix_listener *u = (loom_unix_listener *)h;
  unlisten(u);
  u->l.on_closed(&u->l);
}
