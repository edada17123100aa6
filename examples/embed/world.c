/*
** world.c: the game world (world.h). Plain C with fixed-size tables: a
** peer can fill them, never grow them.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

enum slot_state { SLOT_FREE, SLOT_ACTIVE, SLOT_LEAVING };

typedef struct player {
  enum slot_state state;
  unsigned id;
  char name[WORLD_MAX_NAME + 1];
  int x, y;
  int announced;  /* its join went out in a tick's updates */
  int moved;      /* its position changed since the last tick */
} player;

typedef struct chat_line {
  char name[WORLD_MAX_NAME + 1];
  char text[WORLD_MAX_SAY + 1];
} chat_line;

/* look and tick both write into out, whichever needs more. */
#define WORLD_OUT_MAX \
  (WORLD_TICK_MAX > WORLD_LOOK_MAX ? WORLD_TICK_MAX : WORLD_LOOK_MAX)

struct world {
  player players[WORLD_MAX_PLAYERS];
  int count;                       /* slots ACTIVE */
  unsigned next_id;
  unsigned long long tick;
  /* Chat line n (from 0) is chat[n % WORLD_CHAT_RING]; lines from
     chat_sent to chat_total are not in a tick's updates yet. */
  chat_line chat[WORLD_CHAT_RING];
  unsigned long long chat_total, chat_sent;
  char out[WORLD_OUT_MAX];
};

world *world_new(void) {
  world *w = calloc(1, sizeof(*w));
  if (w != NULL)
    w->next_id = 1;
  return w;
}

void world_free(world *w) {
  free(w);
}

static player *find_active(world *w, unsigned id) {
  int i;
  for (i = 0; i < WORLD_MAX_PLAYERS; i++)
    if (w->players[i].state == SLOT_ACTIVE && w->players[i].id == id)
      return &w->players[i];
  return NULL;
}

static int valid_name(const char *name, size_t len) {
  size_t i;
  if (len == 0 || len > WORLD_MAX_NAME)
    return 0;
  for (i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static int name_taken(world *w, const char *name, size_t len) {
  int i;
  for (i = 0; i < WORLD_MAX_PLAYERS; i++) {
    player *p = &w->players[i];
    if (p->state == SLOT_ACTIVE && strlen(p->name) == len &&
        memcmp(p->name, name, len) == 0)
      return 1;
  }
  return 0;
}

/* A fresh id, never 0 and never one in use (after 2^32 joins it wraps). */
static unsigned new_id(world *w) {
  unsigned id;
  do {
    id = w->next_id++;
  } while (id == 0 || find_active(w, id) != NULL);
  return id;
}

int world_join(world *w, const char *name, size_t len, unsigned *id,
               const char **err) {
  int i;
  player *p = NULL;
  if (!valid_name(name, len)) {
    *err = "a name is 1 to 16 letters, digits, '_' or '-'";
    return -1;
  }
  if (name_taken(w, name, len)) {
    *err = "that name is taken";
    return -1;
  }
  /* A LEAVING slot is freed by the next tick, after its "leave" update. */
  for (i = 0; i < WORLD_MAX_PLAYERS && p == NULL; i++)
    if (w->players[i].state == SLOT_FREE)
      p = &w->players[i];
  if (p == NULL) {
    *err = "the world is full";
    return -1;
  }
  memset(p, 0, sizeof(*p));
  p->state = SLOT_ACTIVE;
  p->id = new_id(w);
  memcpy(p->name, name, len);
  p->name[len] = '\0';
  /* Spread newcomers over the grid, the same way every run. */
  p->x = (int)((p->id * 37u) % WORLD_WIDTH);
  p->y = (int)((p->id * 61u) % WORLD_HEIGHT);
  w->count++;
  *id = p->id;
  return 0;
}

int world_leave(world *w, unsigned id, const char **err) {
  player *p = find_active(w, id);
  if (p == NULL) {
    *err = "no such player";
    return -1;
  }
  /* Never announced: nobody needs to hear that it left. */
  p->state = p->announced ? SLOT_LEAVING : SLOT_FREE;
  w->count--;
  return 0;
}

static int clamp(long long v, int hi) {
  return v < 0 ? 0 : v > hi ? hi : (int)v;
}

int world_move(world *w, unsigned id, long long dx, long long dy, int *x,
               int *y, const char **err) {
  player *p = find_active(w, id);
  int nx, ny;
  if (p == NULL) {
    *err = "no such player";
    return -1;
  }
  if (dx < -WORLD_MAX_STEP || dx > WORLD_MAX_STEP || dy < -WORLD_MAX_STEP ||
      dy > WORLD_MAX_STEP) {
    *err = "a step is at most 5 in x and in y";
    return -1;
  }
  /* The world's edges stop a player (dx, dy are small: no overflow). */
  nx = clamp(p->x + dx, WORLD_WIDTH - 1);
  ny = clamp(p->y + dy, WORLD_HEIGHT - 1);
  if (nx != p->x || ny != p->y) {
    p->x = nx;
    p->y = ny;
    p->moved = 1;
  }
  *x = nx;
  *y = ny;
  return 0;
}

int world_say(world *w, unsigned id, const char *text, size_t len,
              const char **err) {
  player *p = find_active(w, id);
  chat_line *c;
  size_t i;
  if (p == NULL) {
    *err = "no such player";
    return -1;
  }
  if (len == 0) {
    *err = "say what? (say TEXT)";
    return -1;
  }
  if (len > WORLD_MAX_SAY) {
    *err = "a chat line is at most 200 bytes";
    return -1;
  }
  if (w->chat_total - w->chat_sent >= WORLD_CHAT_RING) {
    *err = "too much chat this tick, say it again";
    return -1;
  }
  c = &w->chat[w->chat_total % WORLD_CHAT_RING];
  memcpy(c->name, p->name, sizeof(c->name));
  /* What others' terminals show: no control bytes (escape sequences). */
  for (i = 0; i < len; i++) {
    unsigned char b = (unsigned char)text[i];
    c->text[i] = (char)(b < 0x20 || b == 0x7f ? '?' : b);
  }
  c->text[len] = '\0';
  w->chat_total++;
  return 0;
}

/* Appends a formatted line to w->out at *at; the sizes in world.h make
   it always fit, which the check keeps true if they change. */
static void put(world *w, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put(world *w, size_t *at, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(w->out + *at, sizeof(w->out) - *at, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(w->out) - *at) {
    fprintf(stderr, "world.c: update buffer too small (WORLD_*_MAX)\n");
    abort();
  }
  *at += (size_t)n;
}

const char *world_look(world *w, unsigned id, size_t *len, const char **err) {
  player *me = find_active(w, id);
  size_t at = 0;
  unsigned long long n, first;
  int i;
  if (me == NULL) {
    *err = "no such player";
    return NULL;
  }
  put(w, &at, "you %s %d %d", me->name, me->x, me->y);
  for (i = 0; i < WORLD_MAX_PLAYERS; i++) {
    player *p = &w->players[i];
    if (p->state == SLOT_ACTIVE && p != me)
      put(w, &at, "\nplayer %s %d %d", p->name, p->x, p->y);
  }
  first = w->chat_total > WORLD_LOOK_CHAT ? w->chat_total - WORLD_LOOK_CHAT : 0;
  for (n = first; n < w->chat_total; n++) {
    chat_line *c = &w->chat[n % WORLD_CHAT_RING];
    put(w, &at, "\nchat %s %s", c->name, c->text);
  }
  *len = at;
  return w->out;
}

const char *world_tick(world *w, size_t *len) {
  size_t at = 0;
  unsigned long long t = ++w->tick;
  int i;
  /* Leaves first, so a name freed and taken again in one tick reads in
     order: "leave bob", then "join bob". */
  for (i = 0; i < WORLD_MAX_PLAYERS; i++) {
    player *p = &w->players[i];
    if (p->state == SLOT_LEAVING) {
      put(w, &at, "@%llu leave %s\r\n", t, p->name);
      p->state = SLOT_FREE;
    }
  }
  for (i = 0; i < WORLD_MAX_PLAYERS; i++) {
    player *p = &w->players[i];
    if (p->state != SLOT_ACTIVE)
      continue;
    if (!p->announced)
      put(w, &at, "@%llu join %s %d %d\r\n", t, p->name, p->x, p->y);
    else if (p->moved)
      put(w, &at, "@%llu pos %s %d %d\r\n", t, p->name, p->x, p->y);
    p->announced = 1;
    p->moved = 0;
  }
  for (; w->chat_sent < w->chat_total; w->chat_sent++) {
    chat_line *c = &w->chat[w->chat_sent % WORLD_CHAT_RING];
    put(w, &at, "@%llu say %s %s\r\n", t, c->name, c->text);
  }
  *len = at;
  return w->out;
}

unsigned long long world_ticks(const world *w) {
  return w->tick;
}

int world_players(const world *w) {
  return w->count;
}
