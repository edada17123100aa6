/*
** game_uvloop.c: the game server of game.c, in a program that owns its
** libuv loop, as an engine or tool server that already has one does. The
** program makes the loop, makes loom on it (loom_config.loop), runs it
** with uv_run, handles its own signals, and closes the loop last; loom
** only adds its handles to it.
**
**   make -C examples/embed
**   examples/embed/build/game_uvloop [--idle-timeout SECONDS] [PORT [INTERFACE]]
**
** Stopping (SIGINT, SIGTERM): loom_stop runs loom's shutdown on the
** program's loop (the players are told, their connections closed), the
** tick stops, and uv_run returns once nothing is left on the loop.
*/
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "game_server.h"

#ifndef GAME_SCRIPT_DIR
#define GAME_SCRIPT_DIR "."
#endif

typedef struct program {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  int signals_open;
  int stopping;
  loom_host *h;
  game_server gs;
} program;

static void on_signal(uv_signal_t *s, int signum) {
  program *p = s->data;
  int rc;
  if (p->stopping)
    return;
  p->stopping = 1;
  fprintf(stderr, "game_uvloop: received %s, stopping\n",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  rc = loom_stop(p->h);
  if (rc != LOOM_OK)
    fprintf(stderr, "game_uvloop: loom_stop: %s: %s\n", loom_strerror(rc),
            loom_errmsg(p->h));
  /* Nothing of the program's own keeps the loop running now. */
  game_server_stop(&p->gs);
}

/* The signal watchers do not keep the loop alive (uv_unref): uv_run ends
   when loom and the tick are done. */
static int watch_signals(program *p) {
  int rc;
  if ((rc = uv_signal_init(&p->loop, &p->sigint)) != 0)
    goto fail;
  if ((rc = uv_signal_init(&p->loop, &p->sigterm)) != 0) {
    uv_close((uv_handle_t *)&p->sigint, NULL);
    goto fail;
  }
  p->signals_open = 1;
  p->sigint.data = p->sigterm.data = p;
  uv_unref((uv_handle_t *)&p->sigint);
  uv_unref((uv_handle_t *)&p->sigterm);
  if ((rc = uv_signal_start(&p->sigint, on_signal, SIGINT)) != 0 ||
      (rc = uv_signal_start(&p->sigterm, on_signal, SIGTERM)) != 0)
    goto fail;
  return 0;
fail:
  fprintf(stderr, "game_uvloop: signals: %s\n", uv_strerror(rc));
  return -1;
}

static void close_signals(program *p) {
  if (p->signals_open) {
    p->signals_open = 0;
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
  }
}

/* Starts loom and the game on the program's loop, runs the loop until
   both are done. 0 on a clean stop. */
static int serve(program *p, const game_options *o) {
  int rc;
  if (game_server_start(&p->gs, p->h, o) != 0 || watch_signals(p) != 0)
    return -1;
  rc = loom_start(p->h);   /* startup triggers; loom_stop works from now */
  if (rc != LOOM_OK) {
    fprintf(stderr, "game_uvloop: loom_start: %s: %s\n", loom_strerror(rc),
            loom_errmsg(p->h));
    return -1;
  }
  if (printf("listening on %s:%d\n", o->interface, p->gs.port) < 0 ||
      fflush(stdout) != 0) {
    fprintf(stderr, "game_uvloop: cannot write to stdout\n");
    return -1;
  }
  uv_run(&p->loop, UV_RUN_DEFAULT);
  /* loom's shutdown may stop the loop (uv_stop) before its last turns. */
  while (loom_running(p->h))
    uv_run(&p->loop, UV_RUN_ONCE);
  return 0;
}

int main(int argc, char **argv) {
  game_options o = { "127.0.0.1", 8010, -1, GAME_SCRIPT_DIR };
  program p;
  loom_config cfg;
  int rc, status = 1;
  if (game_parse_args(argc, argv, &o) != 0)
    return 2;
  memset(&p, 0, sizeof(p));
  rc = uv_loop_init(&p.loop);
  if (rc != 0) {
    fprintf(stderr, "game_uvloop: uv_loop_init: %s\n", uv_strerror(rc));
    return 1;
  }
  memset(&cfg, 0, sizeof(cfg));
  cfg.loop = &p.loop;      /* loom runs on this loop and never closes it */
  rc = loom_new(&cfg, &p.h);
  if (rc != LOOM_OK) {
    fprintf(stderr, "game_uvloop: loom_new: %s: %s\n", loom_strerror(rc),
            loom_errmsg(NULL));
  } else {
    if (serve(&p, &o) == 0)
      status = 0;
    game_server_stop(&p.gs);
    close_signals(&p);
    rc = loom_close(p.h);  /* every handle loom opened on the loop */
    if (rc != LOOM_OK)
      fprintf(stderr, "game_uvloop: loom_close: %s: %s\n", loom_strerror(rc),
              loom_errmsg(p.h));
    uv_run(&p.loop, UV_RUN_DEFAULT);   /* lets the closes finish */
    loom_free(p.h);
    game_server_free(&p.gs);
  }
  /* EBUSY here would mean a handle left open, by loom or by us. */
  rc = uv_loop_close(&p.loop);
  if (rc != 0) {
    fprintf(stderr, "game_uvloop: uv_loop_close: %s\n", uv_strerror(rc));
    status = 1;
  }
  fprintf(stderr, "game_uvloop: stopped\n");
  return status;
}
