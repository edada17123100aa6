/*
** world.h: the game world of the embed examples, in plain C (no Lua, no
** libuv): players on a bounded grid, a chat log, and the updates of each
** tick. game.c and game_uvloop.c share it through game_server.c, which
** makes it the Lua module "game".
**
** Everything a peer can make it hold is bounded: WORLD_MAX_PLAYERS slots,
** names of WORLD_MAX_NAME bytes, chat lines of WORLD_MAX_SAY bytes in a
** ring of WORLD_CHAT_RING lines, and a tick's update text of at most
** WORLD_TICK_MAX bytes (the worst case of all of them together).
*/
#ifndef WORLD_H
#define WORLD_H

#include <stddef.h>

#define WORLD_WIDTH 100      /* x runs 0..WORLD_WIDTH-1 */
#define WORLD_HEIGHT 100     /* y runs 0..WORLD_HEIGHT-1 */
#define WORLD_MAX_STEP 5     /* |dx| and |dy| of one move */
#define WORLD_MAX_PLAYERS 64
#define WORLD_MAX_NAME 16    /* letters, digits, '_' and '-' */
#define WORLD_MAX_SAY 200    /* bytes of one chat line */
#define WORLD_CHAT_RING 32   /* chat lines kept (look shows the last few) */
#define WORLD_LOOK_CHAT 8    /* chat lines look shows */

/* One update line: "@TICK say NAME TEXT\r\n" is the longest. */
#define WORLD_LINE_MAX (32 + WORLD_MAX_NAME + WORLD_MAX_SAY)
/* Per tick: each slot joins, moves or leaves once, plus a full chat ring. */
#define WORLD_TICK_MAX (WORLD_LINE_MAX * (WORLD_MAX_PLAYERS + WORLD_CHAT_RING))
/* look: the player, every other player, WORLD_LOOK_CHAT chat lines. */
#define WORLD_LOOK_MAX (WORLD_LINE_MAX * (WORLD_MAX_PLAYERS + WORLD_LOOK_CHAT + 1))

typedef struct world world;

world *world_new(void);          /* NULL when out of memory */
void world_free(world *w);       /* NULL is a no-op */

/*
** Each of these returns 0 on success, or -1 with *err set to a one-line
** message for the player ("name 'x' is taken", ...).
*/
int world_join(world *w, const char *name, size_t len, unsigned *id,
               const char **err);
int world_leave(world *w, unsigned id, const char **err);
int world_move(world *w, unsigned id, long long dx, long long dy, int *x,
               int *y, const char **err);
int world_say(world *w, unsigned id, const char *text, size_t len,
              const char **err);

/* The world as player id sees it, lines separated by "\n"; its length in
   *len. Valid until the next call on w. NULL (and *err) for an unknown id. */
const char *world_look(world *w, unsigned id, size_t *len, const char **err);

/*
** Advances the world by one tick: returns the updates since the previous
** tick as "\r\n"-terminated lines ("@TICK join NAME X Y", "@TICK pos NAME
** X Y", "@TICK say NAME TEXT", "@TICK leave NAME"), at most WORLD_TICK_MAX
** bytes, and their length in *len (0 when nothing happened). Valid until
** the next call on w.
*/
const char *world_tick(world *w, size_t *len);

unsigned long long world_ticks(const world *w);   /* ticks so far */
int world_players(const world *w);                 /* players in the world */

#endif
