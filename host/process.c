/*
** process.c: child processes. uv_spawn with a uv_pipe per planned child fd;
** each pipe is a loom_stream (stream.c) so stdin gets the same write queue
** as a socket. The process ends (ended) once it exited, its handle closed
** and every pipe closed; the exit callback is what reaps the child.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


/* The last of exit, handle close and pipe closes ends the process. */
static void maybe_end(loom_process *p) {
  if (!p->handle_closed || p->npipes > 0)
    return;
  if (!p->failed)
    p->vt->ended(p);
  free(p);
}

static void pipe_data(loom_stream *s, const char *buf, size_t len) {
  loom_pipe *pp = (loom_pipe *)s;
  if (pp->proc->pipes[pp->fd] == pp && !pp->proc->failed)
    pp->proc->vt->data(pp->proc, pp->fd, buf, len);
}

static int pipe_eof(loom_stream *s) {
  (void)s;
  return 0; /* The child closed its end: close ours. */
}

static void pipe_pause_producer(loom_stream *s, int pause) {
  loom_pipe *pp = (loom_pipe *)s;
  loom_process *p = pp->proc;
  if (pp->fd == 0 && p->pipes[0] == pp && !p->failed && p->vt->pause_producer)
    p->vt->pause_producer(p, pause);
}

static void pipe_connected(loom_stream *s, int status) {
  (void)s;
  (void)status;
}

static void pipe_closed(loom_stream *s, int status) {
  loom_pipe *pp = (loom_pipe *)s;
  loom_process *p = pp->proc;
  p->pipes[pp->fd] = NULL;
  p->npipes--;
  if (!p->failed)
    p->vt->fd_closed(p, pp->fd, status);
  maybe_end(p);
}

static const loom_stream_vtable pipe_vt = {
  pipe_connected, pipe_data, pipe_eof, pipe_pause_producer, pipe_closed
};

static void on_process_closed(uv_handle_t *h) {
  loom_process *p = (loom_process *)h;
  p->handle_closed = 1;
  maybe_end(p);
}

/* The child was reaped: report it, then close the handle. */
static void on_child_exit(uv_process_t *h, int64_t status, int signum) {
  loom_process *p = (loom_process *)h;
  p->exited = 1;
  p->exit_status = status;
  p->term_signal = signum;
  p->vt->exited(p);
  loom__process_close(p);
}

static int make_pipes(loom_process *p, const loom_spawn_opts *o,
                      uv_stdio_container_t *io) {
  int fd, rc;
  for (fd = 0; fd < o->nfds; fd++) {
    int plan = o->fds[fd];
    loom_pipe *pp;
    if (plan == LOOM_FD_CLOSED) {
      io[fd].flags = UV_IGNORE;
      continue;
    }
    if (plan >= 0) {
      io[fd].flags = UV_INHERIT_FD;
      io[fd].data.fd = plan;
      continue;
    }
    if ((pp = calloc(1, sizeof(*pp))) == NULL)
      return UV_ENOMEM;
    if ((rc = uv_pipe_init(p->st->loop, &pp->s.h.pipe, 0)) < 0) {
      free(pp);
      return rc;
    }
    loom__stream_setup(&pp->s, p->st, &pipe_vt);
    pp->proc = p;
    pp->fd = fd;
    pp->to_child = plan == LOOM_FD_WRITE;
    p->pipes[fd] = pp;
    p->npipes++;
    /* A pipe the child reads is readable on our side too, as Twisted's
    ** ProcessWriter: its EOF tells us the child closed it or exited. */
    io[fd].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE |
                   (plan == LOOM_FD_WRITE ? UV_READABLE_PIPE : 0);
    io[fd].data.stream = &pp->s.h.stream;
  }
  return 0;
}

static void close_pipes(loom_process *p, int status) {
  int fd;
  for (fd = 0; fd < LOOM_PROCESS_MAXFD; fd++)
    if (p->pipes[fd] != NULL)
      loom__stream_close(&p->pipes[fd]->s, status);
}

/* Starts reading every pipe (stdin too: its EOF tells the child closed it). */
static void start_pipes(loom_process *p) {
  int fd;
  for (fd = 0; fd < LOOM_PROCESS_MAXFD; fd++)
    if (p->pipes[fd] != NULL)
      loom__stream_start(&p->pipes[fd]->s);
}

/*
** Spawns o->file. On failure returns a libuv error with the reason in err;
** p (calloc'd, vt set) is then freed here or by the close callbacks, with
** no events delivered: the caller must not touch it again.
*/
static void close_op(loom_object *o) {
  loom__process_close(loom__object_of(o, loom_process, obj)); /* No kill. */
}

/* Shutdown leaves a child running, as Twisted does. */
static const loom_object_ops process_ops = { "process", NULL, close_op };

int loom__process_spawn(loom_process *p, loom_state *st,
                        const loom_spawn_opts *o, char *err, size_t errlen) {
  uv_process_options_t opts;
  uv_stdio_container_t io[LOOM_PROCESS_MAXFD];
  int rc;
  p->st = st;
  memset(&opts, 0, sizeof(opts));
  memset(io, 0, sizeof(io));
  rc = make_pipes(p, o, io);
  opts.file = o->file;
  opts.args = o->args;
  opts.env = o->env;
  opts.cwd = o->cwd;
  opts.exit_cb = on_child_exit;
  opts.stdio = io;
  opts.stdio_count = o->nfds;
  opts.flags = (o->set_uid ? UV_PROCESS_SETUID : 0) |
               (o->set_gid ? UV_PROCESS_SETGID : 0);
  opts.uid = (uv_uid_t)o->uid;
  opts.gid = (uv_gid_t)o->gid;
  if (rc == 0)
    rc = uv_spawn(st->loop, &p->h, &opts);
  else
    p->handle_closed = 1; /* uv_spawn never saw the handle. */
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s: %s", o->file, uv_err_name(rc),
             uv_strerror(rc));
    p->failed = 1;
    close_pipes(p, rc);
    if (!p->handle_closed)
      uv_close((uv_handle_t *)&p->h, on_process_closed); /* Still inited. */
    else if (p->npipes == 0)
      free(p);
    return rc;
  }
  loom__object_link(st, &p->obj, &process_ops);
  p->pid = p->h.pid;
  start_pipes(p);
  return 0;
}

/* Writes to the child's fd (a pipe it reads); 0 or a libuv error. */
int loom__process_write(loom_process *p, int fd, const char *data,
                        size_t len) {
  if (fd < 0 || fd >= LOOM_PROCESS_MAXFD || p->pipes[fd] == NULL)
    return UV_EBADF;
  return loom__stream_write(&p->pipes[fd]->s, data, len);
}

/* Closes our end of one pipe; a pipe to the child is flushed first. */
void loom__process_close_fd(loom_process *p, int fd) {
  if (fd >= 0 && fd < LOOM_PROCESS_MAXFD && p->pipes[fd] != NULL)
    loom__stream_lose(&p->pipes[fd]->s);
}

/*
** Stops (pause 1) or restarts reading what the child writes, as Twisted's
** Process.pauseProducing: its pipes fill and the child blocks on them.
** The pipes it reads stay read, for their EOF.
*/
void loom__process_pause_reading(loom_process *p, int pause) {
  int fd;
  for (fd = 0; fd < LOOM_PROCESS_MAXFD; fd++) {
    loom_pipe *pp = p->pipes[fd];
    if (pp == NULL || pp->to_child)
      continue;
    if (pause)
      loom__stream_pause(&pp->s);
    else
      loom__stream_resume(&pp->s);
  }
}

/* The pipe of the child's fd, or NULL. */
loom_stream *loom__process_stream(loom_process *p, int fd) {
  if (fd < 0 || fd >= LOOM_PROCESS_MAXFD || p->pipes[fd] == NULL)
    return NULL;
  return &p->pipes[fd]->s;
}

/* Closes the process handle (after exit, or at shutdown: no kill). */
void loom__process_close(loom_process *p) {
  uv_handle_t *h = (uv_handle_t *)&p->h;
  loom__object_unlink(&p->obj);
  if (!uv_is_closing(h))
    uv_close(h, on_process_closed);
}
