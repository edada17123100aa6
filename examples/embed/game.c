/*
** game.c: a C game server with loom as its scriptable network core, on
** loom's own loop. The world is C (world.c); the players' line protocol is
** Lua (players.lua), which acts on the world through the module "game"
** (game_server.c); a 30 Hz tick on loom's loop advances the world and
** pushes each tick's updates to the players.
**
**   make -C examples/embed           (installs loom in a temporary prefix)
**   examples/embed/build/game [--idle-timeout SECONDS] [PORT [INTERFACE]]
**   nc 127.0.0.1 PORT
**
** PORT 0 takes any free port; the one taken is printed. SIGINT (Ctrl-C)
** or SIGTERM stops it: loom's shutdown tells the players and closes their
** connections, then everything is freed.
*/
#include <stdio.h>
#include <string.h>

#include "game_server.h"

/* Where players.lua is (the Makefile sets it). loom finds its own Lua
   files (cfg.root NULL): next to libloom, in PREFIX/share/loom. */
#ifndef GAME_SCRIPT_DIR
#define GAME_SCRIPT_DIR "."
#endif

/* Closes what the program itself opened on loom's loop (the tick), and
   lets the loop finish those closes before loom closes it. */
static void stop_server(loom_host *h, game_server *gs) {
  uv_loop_t *loop = loom_loop(h);
  game_server_stop(gs);
  if (loop != NULL)
    uv_run(loop, UV_RUN_NOWAIT);
}

int main(int argc, char **argv) {
  game_options o = { "127.0.0.1", 8010, -1, GAME_SCRIPT_DIR };
  loom_config cfg;
  loom_host *h = NULL;
  game_server gs;
  int rc, status = 1;
  if (game_parse_args(argc, argv, &o) != 0)
    return 2;
  memset(&cfg, 0, sizeof(cfg));
  /* SIGINT and SIGTERM stop loom_run (reactor.stop()). */
  cfg.install_signal_handlers = 1;
  rc = loom_new(&cfg, &h);
  if (rc != LOOM_OK) {
    fprintf(stderr, "game: loom_new: %s: %s\n", loom_strerror(rc),
            loom_errmsg(NULL));
    return 1;
  }
  if (game_server_start(&gs, h, &o) == 0) {
    /* The spec (and a user) reads the port from this line. */
    if (printf("listening on %s:%d\n", o.interface, gs.port) < 0 ||
        fflush(stdout) != 0) {
      fprintf(stderr, "game: cannot write to stdout\n");
    } else {
      rc = loom_run(h);
      if (rc == LOOM_OK)
        status = 0;
      else
        fprintf(stderr, "game: loom_run: %s: %s\n", loom_strerror(rc),
                loom_errmsg(h));
    }
  }
  stop_server(h, &gs);
  loom_free(h);             /* closes every handle and connection loom opened */
  game_server_free(&gs);    /* the world, once no Lua can call into it */
  fprintf(stderr, "game: stopped\n");
  return status;
}
