/*
** internal.h: the host's shared structures and cross-file declarations.
**
** host/ is plain C over libuv: it knows nothing of Lua. Each transport calls
** a small vtable (data, closed, ...) that bindings/ implements by calling
** Lua, so the transports stay testable in C and embeddable.
*/
#ifndef LOOM_INTERNAL_H
#define LOOM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LOOM_READ_BUFSIZE 65536
/* Twisted's abstract.FileDescriptor.bufferSize: producers pause above it. */
#define LOOM_HIGH_WATER 65536
/* max_write of a stream without a write-buffer limit (the default). */
#define LOOM_NO_LIMIT ((size_t)-1)

/* Close statuses beyond libuv's negative error codes. */
#define LOOM_CLOSE_CLEAN 0       /* loseConnection or the peer's EOF */
#define LOOM_CLOSE_ABORTED 1     /* abortConnection */
#define LOOM_CLOSE_HOOK_ERROR 2  /* a hook raised: Lua holds the reason */
#define LOOM_CLOSE_SHUTDOWN 3    /* the host is going away */
#define LOOM_CLOSE_WRITE_FULL 4  /* a write passed max_write */
#define LOOM_CLOSE_LAYER 5       /* the stream's io layer failed: io->error */

typedef struct loom_state loom_state;
typedef struct loom_stream loom_stream;
typedef struct loom_listener loom_listener;
typedef struct loom_timer loom_timer;
typedef struct loom_signal loom_signal;
typedef struct loom_udp loom_udp;
typedef struct loom_process loom_process;
typedef struct loom_pool loom_pool;
typedef struct loom_job loom_job;
typedef struct loom_resolve loom_resolve;
typedef struct loom_stdio loom_stdio;
typedef struct loom_fsevent loom_fsevent;

/*
** The header every host object (stream, listener, timer, signal, UDP
** socket, process) has of its own: its kind's operations, and its place in
** the state's list of open objects, which shutdown and the final close walk
** (libuv's handle->data is not used). Linked when the object opens,
** unlinked when its close begins.
*/
typedef struct loom_object loom_object;

typedef struct loom_object_ops {
  const char *kind;
  /* Shutdown: end gracefully (flush, then close); NULL: stays open. */
  void (*lose)(loom_object *o);
  /* The final close, without the owner (its Lua side is gone). */
  void (*close)(loom_object *o);
} loom_object_ops;

struct loom_object {
  const loom_object_ops *ops;
  loom_object *prev, *next; /* NULL when not linked */
};

/* The host object whose loom_object member `member` is at o. */
#define loom__object_of(o, type, member) \
  ((type *)(void *)((char *)(o) - offsetof(type, member)))

/* One state per host: the loop, the shared read buffer. Its owner (bindings/
** loom_host) embeds it. */
struct loom_state {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int stop_requested;
  int running;
  int nstreams;            /* live streams, for the shutdown drain */
  uv_async_t keepalive;    /* keeps run() blocking when nothing is pending */
  uv_timer_t turn_timer;   /* bounds the wait of one turn (loom__state_turn) */
  int turning;             /* inside loom__state_turn */
  loom_pool *pool;         /* worker threads, made on first use (thread.c) */
  loom_resolve *resolving; /* getaddrinfo requests in flight (resolver.c) */
  loom_object objects;     /* sentinel of the open host objects' list */
  void *tls;               /* host/tls.c's end-of-turn flusher, or NULL */
  int in_timer;            /* inside a timer's callback (timer.c) */
  loom_timer *next_turn;   /* zero-delay timers started there (timer.c), */
  loom_timer *next_turn_last; /* first and last */
  uv_prepare_t next_turn_starter; /* starts them before the poll */
  char readbuf[LOOM_READ_BUFSIZE];
};

/* A growable byte buffer; len bytes from data[0]. */
typedef struct loom_buf {
  char *data;
  size_t len;
  size_t cap;
} loom_buf;

typedef struct loom_stream_vtable {
  /* An outgoing connection finished: status 0 or a libuv error. */
  void (*connected)(loom_stream *s, int status);
  void (*data)(loom_stream *s, const char *buf, size_t len);
  /* The peer half-closed; return nonzero to keep the stream open. */
  int (*eof)(loom_stream *s);
  /* Tell the registered producer to pause (pause=1: the write queue passed
  ** the high-water mark) or to resume (pause=0: it drained to half, or for
  ** a pull producer, emptied). */
  void (*pause_producer)(loom_stream *s, int pause);
  /* After the handle closed; the stream is freed right after this. */
  void (*closed)(loom_stream *s, int status);
} loom_stream_vtable;

enum {
  LOOM_S_READING = 1 << 0,       /* uv_read_start is in effect */
  LOOM_S_PAUSED = 1 << 1,        /* the protocol paused reading */
  LOOM_S_DISCONNECTING = 1 << 2, /* loseConnection: close when flushed */
  LOOM_S_WRITE_SHUT = 1 << 3,    /* loseWriteConnection was asked */
  LOOM_S_SHUT_SENT = 1 << 4,     /* uv_shutdown issued */
  LOOM_S_CLOSING = 1 << 5,       /* uv_close issued */
  LOOM_S_PRODUCER_PAUSED = 1 << 6,
  LOOM_S_CONNECTING = 1 << 7,
  LOOM_S_CONNECTED = 1 << 8,
  LOOM_S_PULL_PRODUCER = 1 << 9, /* asked for more whenever the queue empties */
  LOOM_S_HAS_PRODUCER = 1 << 10,
  LOOM_S_ACCEPTED = 1 << 11      /* from a listener: a server-side stream */
};

/*
** The bytes of a stream in and out: every read, write and shutdown goes
** through its stream's io. loom__socket_io, the plain socket, is the
** default; a layer between the socket and the protocol (TLS, WebSocket
** framing) is another implementation set with loom__stream_set_io, which
** calls loom__socket_io beneath (whose reads come to the layer's received)
** and reports back through the loom__stream_* functions named below, as
** the socket does. One indirect call per read or write; no allocation or
** copy on the plain path.
*/
typedef struct loom_stream_io {
  const char *name;
  /* Writes what the transport takes now: bytes taken, UV_EAGAIN, or an
  ** error. Never queues. */
  int (*try_write)(loom_stream *s, const char *data, size_t len);
  /* Starts writing data (stable until done; one write in flight), then
  ** calls loom__stream_written(s, status). 0 or an error. */
  int (*write)(loom_stream *s, const char *data, size_t len);
  /* Half-closes the write side after what was written, then calls
  ** loom__stream_shutdown_done(s, status). 0 or an error. */
  int (*shutdown)(loom_stream *s);
  /* Delivers what arrives through loom__stream_received until read_stop. */
  int (*read_start)(loom_stream *s);
  void (*read_stop)(loom_stream *s);
  /* What the socket read (nread bytes, UV_EOF or an error) goes here: a
  ** layer turns it into what the protocol reads and calls
  ** loom__stream_received; the socket's own is loom__stream_received. */
  void (*received)(loom_stream *s, ssize_t nread, const char *data);
  /* A layer's own ending; NULL for the socket. finish: loseConnection's
  ** queue drained; return 1 to say the layer writes its last bytes (TLS
  ** close_notify) and calls loom__stream_close itself, 0 to close now.
  ** error: why the layer closed the stream with LOOM_CLOSE_LAYER (*kind
  ** set to an error name, e.g. "ETLS"). closed: the stream is being freed
  ** (after the vtable's closed). */
  int (*finish)(loom_stream *s);
  const char *(*error)(loom_stream *s, const char **kind);
  void (*closed)(loom_stream *s);
} loom_stream_io;

extern const loom_stream_io loom__socket_io;

/*
** A stream transport shared by TCP, Unix sockets and pipes. The libuv
** handle comes first so a uv_handle_t* is also a loom_stream*.
*/
struct loom_stream {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  loom_state *st;
  loom_object obj;
  const loom_stream_vtable *vt;
  const loom_stream_io *io; /* loom__socket_io unless a layer is set */
  void *layer;             /* the io layer's own state (NULL: none) */
  void *data;              /* the owner's (NULL: none) */
  unsigned flags;
  int close_status;
  size_t high_water;
  size_t max_write;        /* queued bytes past which the stream aborts */
  loom_buf pending;        /* bytes not yet handed to libuv */
  loom_buf inflight;       /* bytes of the one uv_write in flight */
  /* Requests are allocated when first needed, not per connection: most
  ** writes complete in uv_try_write, and an idle connection costs less. */
  uv_write_t *wreq;        /* reused; freed with the stream */
};

typedef void (*loom_listener_cb)(loom_listener *l, int status);
typedef void (*loom_listener_closed_cb)(loom_listener *l);

/*
** A TCP or Unix listener: a poll handle on a listening socket it owns; it
** accepts itself (listener.c). While on_connection runs with status 0,
** accepted_fd is the new connection (the accept function takes it) and
** peer its address; with UV_EMFILE/UV_ENFILE, dropped counts the waiting
** connections closed to shed load.
*/
struct loom_listener {
  union {
    uv_handle_t handle;
    uv_poll_t poll;
  } h;
  loom_state *st;
  loom_object obj;
  loom_listener_cb on_connection;
  loom_listener_closed_cb on_closed;
  uv_close_cb close_cb;  /* set by loom__listener_open */
  void *data;        /* the owner's (NULL: none) */
  int closing;
  int paused;    /* not accepting: connections wait in the kernel backlog */
  int fd;        /* the listening socket */
  int reserve_fd; /* kept open to free when out of descriptors */
  int accepted_fd;
  const struct sockaddr *peer;
  int dropped;
};

typedef void (*loom_timer_cb)(loom_timer *t);

struct loom_timer {
  uv_timer_t h;
  loom_state *st;
  loom_object obj;
  loom_timer_cb cb;
  void (*on_closed)(loom_timer *t);
  void *data;        /* the owner's (NULL: none) */
  int closing;
  loom_timer *next, *prev; /* in st->next_turn while waiting to start */
  int waiting;
};

typedef void (*loom_signal_cb)(loom_signal *g);

struct loom_signal {
  uv_signal_t h;
  loom_state *st;        /* set once the handle is initialised */
  loom_object obj;
  loom_signal_cb cb;
  void (*on_closed)(loom_signal *g);
  void *data;        /* the owner's (NULL: none) */
  int closing;
};

/* A file-system watcher: cb(w, filename, UV_RENAME|UV_CHANGE, status). */
typedef void (*loom_fsevent_cb)(loom_fsevent *w, const char *filename,
                                int events, int status);

struct loom_fsevent {
  uv_fs_event_t h;
  loom_state *st;        /* set once the handle is initialised */
  loom_object obj;
  loom_fsevent_cb cb;
  void (*on_closed)(loom_fsevent *w);
  void *data;        /* the owner's (NULL: none) */
  int closing;
};

/* A Unix-socket listener: the socket file is unlinked when it closes. */
typedef struct loom_unix_listener {
  loom_listener l;  /* first: a loom_listener* is a loom_unix_listener* */
  char *path;
  char *lockpath;   /* path .. ".lock" while we hold it (wantPID) */
  int bound;        /* we created the socket file */
} loom_unix_listener;

typedef struct loom_udp_vtable {
  void (*datagram)(loom_udp *u, const char *buf, size_t len,
                   const struct sockaddr *from);
  /* ICMP port unreachable on a connected socket (ECONNREFUSED). */
  void (*refused)(loom_udp *u);
  void (*closed)(loom_udp *u);  /* u is freed right after */
} loom_udp_vtable;

struct loom_udp {
  uv_udp_t h;
  loom_state *st;
  loom_object obj;
  const loom_udp_vtable *vt;
  void *data;        /* the owner's (NULL: none) */
  int closing;
  int connected;
};

/* Child fd plans for loom__process_spawn (else >= 0: inherit that fd). */
#define LOOM_FD_CLOSED (-1)
#define LOOM_FD_READ (-2)   /* a pipe the parent reads (child's output) */
#define LOOM_FD_WRITE (-3)  /* a pipe the parent writes (child's input) */
#define LOOM_PROCESS_MAXFD 8

typedef struct loom_process_vtable {
  void (*data)(loom_process *p, int fd, const char *buf, size_t len);
  void (*fd_closed)(loom_process *p, int fd, int status);
  void (*exited)(loom_process *p);  /* exit_status / term_signal are set */
  /* Exited and every pipe closed; p is freed right after. */
  void (*ended)(loom_process *p);
  /* The child's stdin queue passed its high-water mark (pause 1) or
  ** drained to half (0), as loom_stream_vtable's pause_producer. */
  void (*pause_producer)(loom_process *p, int pause);
} loom_process_vtable;

/* One pipe to a child: a stream (first) that knows its process and fd. */
typedef struct loom_pipe {
  loom_stream s;
  loom_process *proc;
  int fd;
  int to_child;      /* the child reads it (we write; read for its EOF) */
} loom_pipe;

struct loom_process {
  uv_process_t h;
  loom_state *st;
  loom_object obj;
  const loom_process_vtable *vt;
  void *data;        /* the owner's (NULL: none) */
  int pid;
  int failed;         /* uv_spawn failed: tear down without events */
  int exited;
  int handle_closed;
  int npipes;         /* pipes not yet closed */
  int64_t exit_status;
  int term_signal;
  loom_pipe *pipes[LOOM_PROCESS_MAXFD];
};

typedef struct loom_spawn_opts {
  const char *file;
  char **args;        /* NULL-terminated; args[0] is argv[0] */
  char **env;         /* NULL-terminated */
  const char *cwd;    /* or NULL */
  int set_uid, set_gid;
  int uid, gid;
  int nfds;
  int fds[LOOM_PROCESS_MAXFD]; /* LOOM_FD_* or a parent fd to inherit */
} loom_spawn_opts;

/* Standard input and output as one transport (stdio.c). */
typedef struct loom_stdio_vtable {
  void (*data)(loom_stdio *io, const char *buf, size_t len);
  /* Input reached its end; output is still open. */
  void (*read_lost)(loom_stdio *io);
  /* Output closed after loom__stdio_lose_write; input is still open. */
  void (*write_lost)(loom_stdio *io);
  /* As loom_stream_vtable's: pause (1) or resume (0) the producer. */
  void (*pause_producer)(loom_stdio *io, int pause);
  /* Both directions closed; io is freed right after this. */
  void (*ended)(loom_stdio *io, int status);
} loom_stdio_vtable;

/* One direction: a stream over a descriptor of our own (first member). */
typedef struct loom_stdio_end {
  loom_stream s;
  loom_stdio *io;
  int eof;            /* the stream read its end */
} loom_stdio_end;

typedef struct loom_stdio_pump loom_stdio_pump;

struct loom_stdio {
  loom_state *st;
  const loom_stdio_vtable *vt;
  void *data;        /* the owner's (NULL: none) */
  unsigned flags;          /* LOOM_IO_* (stdio.c) */
  int status;              /* why it ends: the first close that was not clean */
  loom_stdio_end *in, *out;  /* NULL once closed */
  int fd[2];               /* the caller's input and output fds */
  int saved_flags[2];      /* their fcntl flags to restore, or -1 */
  int tty[2];              /* reopened terminals */
  loom_stdio_pump *pump;   /* the thread writing output to a file */
};

/* A unit of work for the state's thread pool (thread.c). */
struct loom_job {
  loom_job *next;
  /* On a worker thread, with that worker's context (NULL: no work). */
  void (*work)(loom_job *j, void *worker);
  /* Back on the loop thread; must free j. cancelled: shutting down. */
  void (*done)(loom_job *j, int cancelled);
};

typedef struct loom_pool_config {
  void *(*worker_open)(void *arg);   /* per worker thread, on that thread */
  void (*worker_close)(void *worker);
  void *arg;
  int size;
} loom_pool_config;

struct loom_resolve {
  uv_getaddrinfo_t req;
  loom_state *st;
  loom_resolve *prev, *next;
  void (*cb)(loom_resolve *r, int status, struct addrinfo *res);
};

/* state.c */
int loom__state_init(loom_state *st, uv_loop_t *loop);
int loom__state_run(loom_state *st);
int loom__state_turn(loom_state *st, uint64_t timeout_ms);
void loom__state_stop(loom_state *st);
void loom__state_close(loom_state *st);
void loom__close_all(loom_state *st);
int loom__open_handles(loom_state *st, int counts[UV_HANDLE_TYPE_MAX]);
void loom__object_link(loom_state *st, loom_object *o,
                       const loom_object_ops *ops);
void loom__object_unlink(loom_object *o);
double loom__now(loom_state *st);

/*
** uv_buf_t's base is not const, though libuv's writes and sends only read
** it; going through uintptr_t says so once instead of casting const away.
*/
static inline uv_buf_t loom__write_buf(const char *data, size_t len) {
  return uv_buf_init((char *)(uintptr_t)data, (unsigned int)len);
}

/* buf.c */
int loom__buf_append(loom_buf *b, const char *data, size_t len);
void loom__buf_free(loom_buf *b);

/* stream.c */
void loom__stream_setup(loom_stream *s, loom_state *st,
                        const loom_stream_vtable *vt);
int loom__stream_start(loom_stream *s);
int loom__stream_write(loom_stream *s, const char *data, size_t len);
void loom__stream_lose(loom_stream *s);
void loom__stream_lose_write(loom_stream *s);
void loom__stream_close(loom_stream *s, int status);
void loom__stream_pause(loom_stream *s);
void loom__stream_resume(loom_stream *s);
size_t loom__stream_buffered(const loom_stream *s);
void loom__stream_set_io(loom_stream *s, const loom_stream_io *io);
/* What an io reports back (the socket's libuv callbacks call these). */
void loom__stream_received(loom_stream *s, ssize_t nread, const char *data);
void loom__stream_written(loom_stream *s, int status);
void loom__stream_shutdown_done(loom_stream *s, int status);
/* The producer registered on s: LOOM_PRODUCER_*. Returns 1 when a
** streaming producer must be paused at once (the queue is past the mark). */
enum { LOOM_PRODUCER_NONE, LOOM_PRODUCER_STREAMING, LOOM_PRODUCER_PULL };
int loom__stream_set_producer(loom_stream *s, int kind);
void loom__stream_mark_accepted(loom_stream *s);
int loom__stream_accept(loom_listener *l, loom_stream *s,
                        int (*init)(uv_loop_t *loop, loom_stream *s),
                        int (*open_fd)(loom_stream *s, int fd));
void loom__stream_on_connect(uv_connect_t *req, int status);

/* The stream's state, as its owner may read it (inline: `disconnecting`
** is read after every line a LineReceiver delivers). */
static inline int loom__stream_closing(const loom_stream *s) {
  return (s->flags & LOOM_S_CLOSING) != 0;
}
static inline int loom__stream_disconnecting(const loom_stream *s) {
  return (s->flags & (LOOM_S_DISCONNECTING | LOOM_S_CLOSING)) != 0;
}
/* Connected at some point (a connect that succeeded, or an accept). */
static inline int loom__stream_was_connected(const loom_stream *s) {
  return (s->flags & LOOM_S_CONNECTED) != 0;
}
static inline int loom__stream_is_accepted(const loom_stream *s) {
  return (s->flags & LOOM_S_ACCEPTED) != 0;
}
static inline int loom__stream_has_producer(const loom_stream *s) {
  return (s->flags & LOOM_S_HAS_PRODUCER) != 0;
}

/* listener.c (shared by TCP and Unix listeners) */
int loom__listener_open(loom_listener *l, loom_state *st, int fd, int backlog,
                        uv_close_cb close_cb);
int loom__listener_sockname(loom_listener *l, struct sockaddr_storage *ss);
void loom__listener_close(loom_listener *l);
void loom__listener_pause(loom_listener *l);
void loom__listener_resume(loom_listener *l);

/* tcp.c */
int loom__tcp_listen(loom_listener *l, loom_state *st, const char *host,
                     int port, int backlog, char *err, size_t errlen);
int loom__tcp_accept(loom_listener *l, loom_stream *s);
int loom__tcp_connect(loom_stream *s, const char *host, int port,
                      const char *bind_host, int bind_port,
                      char *err, size_t errlen);
int loom__sockaddr_parse(const char *host, int port,
                         struct sockaddr_storage *ss);
int loom__sockaddr_format(const struct sockaddr *sa, char *host,
                          size_t hostlen, int *port);



/* timer.c */
int loom__timer_init(loom_timer *t, loom_state *st, loom_timer_cb cb);
int loom__timer_start(loom_timer *t, double secs);
void loom__timer_stop(loom_timer *t);
void loom__timer_close(loom_timer *t);
int loom__timers_init(loom_state *st);

/* signal.c */
int loom__signal_start(loom_signal *g, loom_state *st, int signum,
                       loom_signal_cb cb);
void loom__signal_close(loom_signal *g);

/* fsevent.c */
int loom__fsevent_start(loom_fsevent *w, loom_state *st, const char *path,
                        loom_fsevent_cb cb);
void loom__fsevent_close(loom_fsevent *w);

/* unix.c */
int loom__unix_listen(loom_unix_listener *u, loom_state *st,
                      const char *path, int backlog, int mode, int want_pid,
                      char *err, size_t errlen);
int loom__unix_accept(loom_listener *l, loom_stream *s);
int loom__unix_connect(loom_stream *s, const char *path);
int loom__unix_lock_held(const char *path);

/* udp.c */
int loom__udp_bind(loom_udp *u, loom_state *st, const char *host, int port,
                   char *err, size_t errlen);
int loom__udp_send(loom_udp *u, const char *data, size_t len,
                   const struct sockaddr *to);
int loom__udp_connect(loom_udp *u, const struct sockaddr *to);
void loom__udp_close(loom_udp *u);

/* process.c */
int loom__process_spawn(loom_process *p, loom_state *st,
                        const loom_spawn_opts *o, char *err, size_t errlen);
int loom__process_write(loom_process *p, int fd, const char *data,
                        size_t len);
void loom__process_close_fd(loom_process *p, int fd);
void loom__process_pause_reading(loom_process *p, int pause);
loom_stream *loom__process_stream(loom_process *p, int fd);
void loom__process_close(loom_process *p);

/* thread.c */
int loom__pool_start(loom_state *st, const loom_pool_config *cfg);
int loom__pool_submit(loom_pool *pool, loom_job *j);
int loom__pool_post(loom_pool *pool, loom_job *j);
void loom__pool_set_size(loom_pool *pool, int size);
void loom__pool_shutdown(loom_state *st);

/* resolver.c */
int loom__resolve_start(loom_resolve *r, loom_state *st, const char *name);
void loom__resolve_cancel_all(loom_state *st);

/* stdio.c */
int loom__stdio_open(loom_stdio *io, loom_state *st, int in_fd, int out_fd,
                     char *err, size_t errlen);
void loom__stdio_start(loom_stdio *io);
int loom__stdio_write(loom_stdio *io, const char *data, size_t len);
void loom__stdio_lose(loom_stdio *io);
void loom__stdio_lose_write(loom_stdio *io);
void loom__stdio_close(loom_stdio *io, int status);
void loom__stdio_pause(loom_stdio *io);
void loom__stdio_resume(loom_stdio *io);
int loom__stdio_disconnecting(const loom_stdio *io);

#endif
