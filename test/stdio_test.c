/*
** stdio_test.c: host/stdio.c without Lua, over pipes and a regular file
** standing in for the process's stdin and stdout, driven through its
** vtable as bindings/stdio.c would. Prints "N passed, M failed".
*/
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../host/internal.h"
#include "check.h"

static loom_state st;

/* Runs the loop until *flag is set, at most 5 seconds. */
static void run_until(int *flag) {
  uint64_t deadline = uv_hrtime() + 5000000000ULL;
  while (!*flag && uv_hrtime() < deadline)
    uv_run(st.loop, UV_RUN_NOWAIT);
}

static size_t got;     /* bytes received */
static int read_lost, ended, end_status;

/* Echoes input to output, as a protocol on StandardIO would. */
static void t_data(loom_stdio *io, const char *buf, size_t len) {
  got += len;
  loom__stdio_write(io, buf, len);
}
static void t_read_lost(loom_stdio *io) {
  read_lost = 1;
  loom__stdio_lose(io); /* Not half-closeable: flush, then end. */
}
static void t_write_lost(loom_stdio *io) {
  (void)io;
}
static void t_pause_producer(loom_stdio *io, int pause) {
  (void)io;
  (void)pause;
}
static void t_ended(loom_stdio *io, int status) {
  (void)io;
  ended = 1;
  end_status = status;
}
static const loom_stdio_vtable vt = {
  t_data, t_read_lost, t_write_lost, t_pause_producer, t_ended
};

static void reset(void) {
  got = 0;
  read_lost = ended = 0;
  end_status = 12345;
}

static loom_stdio *open_io(int in, int out) {
  loom_stdio *io = calloc(1, sizeof(*io));
  char err[128];
  io->vt = &vt;
  CHECK(loom__stdio_open(io, &st, in, out, err, sizeof(err)) == 0);
  loom__stdio_start(io);
  return io;
}

/* Reads fd until EOF into buf (at most cap bytes); returns the length. */
static size_t slurp(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
    n += (size_t)r;
  return n;
}

/* Pipes in and out: input echoed, EOF ends it cleanly after the flush. */
static void test_pipes_echo_then_eof(void) {
  int in[2], out[2];
  char buf[64];
  reset();
  CHECK(pipe(in) == 0 && pipe(out) == 0);
  open_io(in[0], out[1]);
  CHECK(write(in[1], "hello", 5) == 5);
  close(in[1]);
  run_until(&ended);
  CHECK(read_lost == 1);
  CHECK(end_status == LOOM_CLOSE_CLEAN);
  close(out[1]);
  CHECK(slurp(out[0], buf, sizeof(buf)) == 5 && !memcmp(buf, "hello", 5));
  CHECK((fcntl(in[0], F_GETFL) & O_NONBLOCK) == 0); /* restored */
  close(in[0]);
  close(out[0]);
}

/* A regular file as input is pumped by a thread, whole and in order. */
static void test_regular_file_input(void) {
  char path[] = "/tmp/loom-stdio-XXXXXX", *big, *back;
  size_t size = 3 << 20, i;
  int fd = mkstemp(path), out[2];
  reset();
  big = malloc(size);
  back = malloc(size + 1);
  for (i = 0; i < size; i++)
    big[i] = (char)('a' + i % 23);
  CHECK(fd >= 0 && write(fd, big, size) == (ssize_t)size);
  lseek(fd, 0, SEEK_SET);
  CHECK(pipe(out) == 0);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  open_io(fd, out[1]);
  /* Drain our side as we go: the echo would fill the pipe otherwise. */
  {
    size_t n = 0;
    uint64_t deadline = uv_hrtime() + 5000000000ULL;
    while ((!ended || n < size) && uv_hrtime() < deadline) {
      ssize_t r = read(out[0], back + n, size + 1 - n);
      if (r > 0)
        n += (size_t)r;
      uv_run(st.loop, UV_RUN_NOWAIT);
    }
    CHECK(n == size && memcmp(big, back, size) == 0);
  }
  CHECK(got == size);
  CHECK(ended && end_status == LOOM_CLOSE_CLEAN);
  close(fd);
  close(out[0]);
  close(out[1]);
  unlink(path);
  free(big);
  free(back);
}

/* Output's reader went away: the write fails with EPIPE and ends it. */
static void test_output_reader_gone(void) {
  int in[2], out[2];
  reset();
  CHECK(pipe(in) == 0 && pipe(out) == 0);
  close(out[0]);
  open_io(in[0], out[1]);
  CHECK(write(in[1], "x", 1) == 1);
  run_until(&ended);
  CHECK(end_status == UV_EPIPE);
  close(in[0]);
  close(in[1]);
  close(out[1]);
}

/* A regular file as output: written in order by the pump, whole at end. */
static void test_regular_file_output(void) {
  char path[] = "/tmp/loom-stdio-XXXXXX", buf[64];
  int fd = mkstemp(path), in[2];
  loom_stdio *io;
  reset();
  CHECK(pipe(in) == 0);
  io = open_io(in[0], fd);
  loom__stdio_write(io, "one ", 4);
  loom__stdio_write(io, "two", 3);
  loom__stdio_lose(io);
  run_until(&ended);
  CHECK(end_status == LOOM_CLOSE_CLEAN);
  lseek(fd, 0, SEEK_SET);
  CHECK(slurp(fd, buf, sizeof(buf)) == 7 && !memcmp(buf, "one two", 7));
  close(fd);
  close(in[0]);
  close(in[1]);
  unlink(path);
}

/* A file that fails every write (/dev/full): the pump's error ends it. */
static void test_output_write_error(void) {
  int fd = open("/dev/full", O_WRONLY), in[2];
  loom_stdio *io;
  if (fd < 0)
    return; /* No /dev/full here. */
  reset();
  CHECK(pipe(in) == 0);
  io = open_io(in[0], fd);
  loom__stdio_write(io, "lost", 4);
  run_until(&ended);
  CHECK(end_status == UV_ENOSPC);
  close(fd);
  close(in[0]);
  close(in[1]);
}

static void test_bad_fd(void) {
  loom_stdio *io = calloc(1, sizeof(*io));
  char err[128];
  io->vt = &vt;
  CHECK(loom__stdio_open(io, &st, 200, 1, err, sizeof(err)) == UV_EBADF);
  CHECK(strcmp(err, "fd 200: EBADF: bad file descriptor") == 0);
}

int main(void) {
  CHECK(loom__state_init(&st, NULL) == 0);
  test_pipes_echo_then_eof();
  test_regular_file_input();
  test_output_reader_gone();
  test_regular_file_output();
  test_output_write_error();
  test_bad_fd();
  loom__state_close(&st);
  CHECK(st.nstreams == 0);
  return check_report();
}
