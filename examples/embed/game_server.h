/*
** game_server.h: what game.c and game_uvloop.c share: the world (world.h)
** made the Lua module "game", the player protocol (players.lua) listening
** on a port, and the fixed 30 Hz tick that advances the world and pushes
** each tick's updates to the players through loom. The two programs differ
** only in who owns the loop.
*/
#ifndef GAME_SERVER_H
#define GAME_SERVER_H

#include <stdint.h>

#include <uv.h>
#include <loom.h>

#include "world.h"

#define GAME_TICK_HZ 30

typedef struct game_options {
  const char *interface;    /* default "127.0.0.1" */
  int port;                 /* 0: any free port (printed) */
  int idle_timeout;         /* seconds; -1: players.lua's default */
  const char *script_dir;   /* the directory of players.lua */
} game_options;

typedef struct game_server {
  loom_host *h;
  world *w;
  uv_timer_t tick;
  uint64_t next_tick;       /* uv_hrtime() at which the next tick is due */
  int tick_open;            /* tick initialized and not yet closed */
  int lobby;                /* registry ref of players.lua's Lobby */
  int port;                 /* the port it listens on */
} game_server;

/*
** Reads `PROG [--idle-timeout SECONDS] [PORT [INTERFACE]]` into o (which
** holds the defaults). Returns 0, or -1 after printing the usage.
*/
int game_parse_args(int argc, char **argv, game_options *o);

/*
** Makes the world, registers "game", loads players.lua, listens and
** starts the tick, all on loom_loop(h). Returns 0, or -1 after printing
** why to stderr (gs is then ready for game_server_stop/free all the same).
*/
int game_server_start(game_server *gs, loom_host *h, const game_options *o);

/* Stops the tick (its handle closes in the loop's next turn) and lets
   go of the Lobby. Idempotent. */
void game_server_stop(game_server *gs);

/* Frees the world: after loom_free(h), since Lua's connectionLost calls
   into it until loom has closed every connection. */
void game_server_free(game_server *gs);

#endif
