/*
** stdio.c: standard input and output as one transport (Twisted's
** stdio.StandardIO). Each direction is a loom_stream (stream.c) over a
** descriptor of our own, so reading, the write queue and producers are the
** ones every socket uses:
** - a terminal is opened again by name, as uv_tty_init does, so that its
**   non-blocking mode stays ours and never reaches the shell;
** - a pipe or a socket is dup'ed; its flags are restored when we end;
** - a regular file (or /dev/null), which epoll cannot watch, is pumped
**   through a socketpair by a thread.
** The transport ends once both directions closed.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define IN 0
#define OUT 1
#define PUMP_BUFSIZE 65536

enum {
  LOOM_IO_DISCONNECTING = 1 << 0, /* loseConnection: flush, then end */
  LOOM_IO_WRITE_LOST = 1 << 1,    /* loseWriteConnection was asked */
  LOOM_IO_ENDING = 1 << 2,        /* one direction ended the transport */
  LOOM_IO_FAILED = 1 << 3         /* open failed: tear down, no events */
};

/* A thread copying between a file and our end of a socketpair. */
struct loom_stdio_pump {
  uv_thread_t tid;
  int file;           /* the caller's fd; never closed here */
  int sock;           /* the thread's socket end; closed when it ends */
  int to_file;        /* output: socket -> file; input: file -> socket */
  int error;          /* errno of the write that stopped the pump */
  char buf[PUMP_BUFSIZE];
};

static int write_all(loom_stdio_pump *p, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = p->to_file ? write(p->file, data, len)
                           : send(p->sock, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/*
** Copies until the end of the source or a failed write. Closing its socket
** end is how the loop learns it stopped: an EOF for input, an EOF or EPIPE
** for output. The input pump is detached and frees itself (a read may
** block on a device), the output pump is joined so no byte is lost.
*/
static void run_pump(void *arg) {
  loom_stdio_pump *p = arg;
  int from = p->to_file ? p->sock : p->file, to_file = p->to_file;
  for (;;) {
    ssize_t n = read(from, p->buf, sizeof(p->buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || (p->error = write_all(p, p->buf, (size_t)n)) != 0)
      break;
  }
  close(p->sock);
  if (!to_file)
    free(p);
}

/* The input pump's socket end becomes ours to read. */
static int start_pump(loom_stdio *io, int which, int sock) {
  loom_stdio_pump *p = calloc(1, sizeof(*p));
  uv_thread_t tid;
  int rc;
  if (p == NULL)
    return UV_ENOMEM;
  p->file = io->fd[which];
  p->sock = sock;
  p->to_file = which == OUT;
  /* Not &p->tid for input: the thread may free p before this returns. */
  rc = uv_thread_create(which == OUT ? &p->tid : &tid, run_pump, p);
  if (rc < 0) {
    free(p);
    return rc;
  }
  if (which == OUT)
    io->pump = p;
  else
    pthread_detach(tid);
  return 0;
}

/* fd moved to >= 3 (libuv's uv_close leaves 0-2 open), close-on-exec. */
static int above_stdio(int fd) {
  int nfd;
  if (fd > STDERR_FILENO)
    return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  nfd = nfd < 0 ? uv_translate_sys_error(errno) : nfd;
  close(fd);
  return nfd;
}

/* A terminal's own file description (not a pty master), or an error. */
static int reopen_tty(int fd, int which) {
  char path[256];
  int nfd;
  if (ttyname_r(fd, path, sizeof(path)) != 0 || !strcmp(path, "/dev/ptmx"))
    return UV_ENOTTY;
  nfd = open(path, (which == IN ? O_RDONLY : O_WRONLY) | O_NOCTTY |
                   O_CLOEXEC);
  return nfd < 0 ? uv_translate_sys_error(errno) : above_stdio(nfd);
}

/* A dup of fd sharing its file description: its flags are restored. */
static int dup_shared(loom_stdio *io, int which) {
  int fd = io->fd[which], nfd;
  io->saved_flags[which] = fcntl(fd, F_GETFL);
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  return nfd < 0 ? uv_translate_sys_error(errno) : nfd;
}

/* Our end of a socketpair whose other end a pump thread will serve. */
static int make_socketpair(int *theirs) {
  uv_os_sock_t sv[2];
  int rc = uv_socketpair(SOCK_STREAM, 0, sv, 0, 0);
  if (rc < 0)
    return rc;
  *theirs = sv[1];
  return above_stdio(sv[0]);
}

/*
** A descriptor for one direction (>= 0), or a libuv error. *pump_sock is
** set when a pump thread must serve the other end of a socketpair.
*/
static int own_descriptor(loom_stdio *io, int which, int *pump_sock) {
  int fd = io->fd[which], nfd;
  switch (uv_guess_handle(fd)) {
  case UV_TTY:
    nfd = reopen_tty(fd, which);
    if (nfd >= 0) {
      io->tty[which] = 1;
      return nfd;
    }
    return dup_shared(io, which);
  case UV_NAMED_PIPE:
  case UV_TCP:
  case UV_UDP:
    return dup_shared(io, which);
  case UV_FILE:
    return make_socketpair(pump_sock);
  default:
    return fcntl(fd, F_GETFL) < 0 ? UV_EBADF : UV_EINVAL;
  }
}

static void in_data(loom_stream *s, const char *buf, size_t len) {
  loom_stdio *io = ((loom_stdio_end *)s)->io;
  if (!(io->flags & LOOM_IO_FAILED))
    io->vt->data(io, buf, len);
}

static int end_eof(loom_stream *s) {
  ((loom_stdio_end *)s)->eof = 1;
  return 0; /* Close this direction; the other decides for itself. */
}

static void end_pause_producer(loom_stream *s, int pause) {
  loom_stdio *io = ((loom_stdio_end *)s)->io;
  if (!(io->flags & LOOM_IO_FAILED))
    io->vt->pause_producer(io, pause);
}

static void ignore_data(loom_stream *s, const char *buf, size_t len) {
  (void)s;
  (void)buf;
  (void)len;
}

static void never_connects(loom_stream *s, int status) {
  (void)s;
  (void)status;
}

/* Puts the caller's descriptors back as we found them. */
static void restore_fds(loom_stdio *io) {
  int which;
  for (which = OUT; which >= IN; which--) {
    if (io->saved_flags[which] >= 0)
      fcntl(io->fd[which], F_SETFL, io->saved_flags[which]);
    if (io->tty[which])
      uv_tty_reset_mode();
  }
}

static void maybe_end(loom_stdio *io) {
  if (io->in != NULL || io->out != NULL)
    return;
  restore_fds(io);
  if (!(io->flags & LOOM_IO_FAILED))
    io->vt->ended(io, io->status);
  free(io);
}

/*
** One direction closed in a way that ends the transport: the other follows,
** flushing its output on a clean close, dropping it otherwise.
*/
static void finish(loom_stdio *io, int status) {
  loom_stdio_end *other = io->in != NULL ? io->in : io->out;
  io->flags |= LOOM_IO_ENDING;
  if (io->status == LOOM_CLOSE_CLEAN)
    io->status = status;
  if (other == NULL)
    return;
  if (status == LOOM_CLOSE_CLEAN)
    loom__stream_lose(&other->s);
  else
    loom__stream_close(&other->s, status);
}

static int keeps_going(loom_stdio *io, int status) {
  return status == LOOM_CLOSE_CLEAN &&
         !(io->flags & (LOOM_IO_DISCONNECTING | LOOM_IO_ENDING |
                        LOOM_IO_FAILED));
}

/* Input's end leaves the output open: the binding decides what next. */
static void in_closed(loom_stream *s, int status) {
  loom_stdio_end *e = (loom_stdio_end *)s;
  loom_stdio *io = e->io;
  io->in = NULL;
  if (e->eof && keeps_going(io, status))
    io->vt->read_lost(io);
  else
    finish(io, status);
  maybe_end(io);
}

/* The pump's write error, if it stopped on one, is the reason. */
static int join_pump(loom_stdio *io, int status) {
  loom_stdio_pump *p = io->pump;
  if (p == NULL)
    return status;
  io->pump = NULL;
  uv_thread_join(&p->tid);
  if (p->error != 0)
    status = uv_translate_sys_error(p->error);
  free(p);
  return status;
}

static void out_closed(loom_stream *s, int status) {
  loom_stdio_end *e = (loom_stdio_end *)s;
  loom_stdio *io = e->io;
  io->out = NULL;
  status = join_pump(io, status);
  if (e->eof && status == LOOM_CLOSE_CLEAN)
    status = UV_EPIPE; /* The pump stopped: nothing reads our output. */
  if ((io->flags & LOOM_IO_WRITE_LOST) && keeps_going(io, status))
    io->vt->write_lost(io);
  else
    finish(io, status);
  maybe_end(io);
}

static const loom_stream_vtable in_vt = {
  never_connects, in_data, end_eof, end_pause_producer, in_closed
};

static const loom_stream_vtable out_vt = {
  never_connects, ignore_data, end_eof, end_pause_producer, out_closed
};

static int fail(int rc, int fd, char *err, size_t errlen) {
  snprintf(err, errlen, "fd %d: %s: %s", fd, uv_err_name(rc),
           rc == UV_EINVAL ? "not a terminal, pipe, socket or file"
                           : uv_strerror(rc));
  return rc;
}

/* Sets up one direction; on failure its stream (if any) is closed later. */
static int open_end(loom_stdio *io, int which, char *err, size_t errlen) {
  loom_stdio_end *e;
  int pump_sock = -1, fd, rc;
  if ((e = calloc(1, sizeof(*e))) == NULL)
    return fail(UV_ENOMEM, io->fd[which], err, errlen);
  if ((rc = uv_pipe_init(io->st->loop, &e->s.h.pipe, 0)) < 0) {
    free(e);
    return fail(rc, io->fd[which], err, errlen);
  }
  loom__stream_setup(&e->s, io->st, which == IN ? &in_vt : &out_vt);
  e->io = io;
  if (which == IN)
    io->in = e;
  else
    io->out = e;
  fd = rc = own_descriptor(io, which, &pump_sock);
  if (rc >= 0 && (rc = uv_pipe_open(&e->s.h.pipe, fd)) < 0)
    close(fd);
  if (rc >= 0 && pump_sock >= 0 && (rc = start_pump(io, which, pump_sock)) == 0)
    pump_sock = -1;
  if (pump_sock >= 0)
    close(pump_sock);
  return rc < 0 ? fail(rc, io->fd[which], err, errlen) : 0;
}

/*
** Opens in_fd for reading and out_fd for writing. On failure returns a
** libuv error with the reason in err; io (calloc'd, vt set) is then freed
** here or by the close callbacks with no event: do not touch it again.
*/
int loom__stdio_open(loom_stdio *io, loom_state *st, int in_fd, int out_fd,
                     char *err, size_t errlen) {
  int rc;
  io->st = st;
  io->fd[IN] = in_fd;
  io->fd[OUT] = out_fd;
  io->saved_flags[IN] = io->saved_flags[OUT] = -1;
  rc = open_end(io, IN, err, errlen);
  if (rc == 0)
    rc = open_end(io, OUT, err, errlen);
  if (rc == 0)
    return 0;
  io->flags |= LOOM_IO_FAILED;
  if (io->in == NULL && io->out == NULL) {
    restore_fds(io);
    free(io);
  } else {
    loom__stdio_close(io, rc);
  }
  return rc;
}

/*
** Called once the protocol is attached. Output is not read (a terminal's
** output would steal keystrokes), except a pump's socket: its EOF says
** the file behind it failed.
*/
void loom__stdio_start(loom_stdio *io) {
  if (io->out != NULL && !(io->out->s.flags & LOOM_S_CLOSING)) {
    if (io->pump == NULL)
      loom__stream_pause(&io->out->s);
    loom__stream_start(&io->out->s);
  }
  if (io->in != NULL && !(io->in->s.flags & LOOM_S_CLOSING))
    loom__stream_start(&io->in->s);
}

/*
** Twisted drops writes once the output is gone; 0 or a libuv error. A
** failed write (EPIPE: nobody reads our output) ends the input at once, so
** no more input is delivered to a transport that can never answer.
*/
int loom__stdio_write(loom_stdio *io, const char *data, size_t len) {
  int rc;
  if (io->out == NULL)
    return 0;
  rc = loom__stream_write(&io->out->s, data, len);
  if (rc < 0)
    loom__stdio_close(io, rc);
  return rc;
}

/* loseConnection: stop reading, flush the output, then end. */
void loom__stdio_lose(loom_stdio *io) {
  if (io->flags & LOOM_IO_DISCONNECTING)
    return;
  io->flags |= LOOM_IO_DISCONNECTING;
  if (io->in != NULL)
    loom__stream_lose(&io->in->s);
  if (io->out != NULL)
    loom__stream_lose(&io->out->s);
}

/* loseWriteConnection: flush and close the output; keep reading. */
void loom__stdio_lose_write(loom_stdio *io) {
  io->flags |= LOOM_IO_WRITE_LOST;
  if (io->out != NULL)
    loom__stream_lose(&io->out->s);
}

/* Closes both directions now, queued output dropped (stream.c's close
** runs once per direction). */
void loom__stdio_close(loom_stdio *io, int status) {
  io->flags |= LOOM_IO_ENDING;
  if (io->status == LOOM_CLOSE_CLEAN)
    io->status = status;
  if (io->in != NULL)
    loom__stream_close(&io->in->s, status);
  if (io->out != NULL)
    loom__stream_close(&io->out->s, status);
}

void loom__stdio_pause(loom_stdio *io) {
  if (io->in != NULL)
    loom__stream_pause(&io->in->s);
}

void loom__stdio_resume(loom_stdio *io) {
  if (io->in != NULL)
    loom__stream_resume(&io->in->s);
}

int loom__stdio_disconnecting(const loom_stdio *io) {
  return (io->flags & (LOOM_IO_DISCONNECTING | LOOM_IO_ENDING)) != 0;
}
