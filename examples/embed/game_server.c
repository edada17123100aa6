/*
** game_server.c: the world as the Lua module "game", players.lua on a
** port, and the 30 Hz tick (game_server.h).
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "game_server.h"

/* ------------------------------------------------ the "game" module */

/*
** players.lua calls these. Bad input from a player (a taken name, a step
** too long) is `nil, message`, which the protocol sends back as one line;
** a wrong argument type is a bug in the caller and raises.
*/

static world *world_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

static unsigned check_id(lua_State *L, int arg) {
  lua_Integer id = luaL_checkinteger(L, arg);
  luaL_argcheck(L, id > 0 && (lua_Unsigned)id <= UINT_MAX, arg,
                "not a player id");
  return (unsigned)id;
}

/* game.join(name) -> id | nil, err */
static int l_join(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len), *err;
  unsigned id;
  if (world_join(world_of(L), name, len, &id, &err) != 0)
    return fail(L, err);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* game.leave(id) -> true | nil, err */
static int l_leave(lua_State *L) {
  const char *err;
  if (world_leave(world_of(L), check_id(L, 1), &err) != 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* game.move(id, dx, dy) -> x, y | nil, err */
static int l_move(lua_State *L) {
  unsigned id = check_id(L, 1);
  lua_Integer dx = luaL_checkinteger(L, 2), dy = luaL_checkinteger(L, 3);
  const char *err;
  int x, y;
  if (world_move(world_of(L), id, dx, dy, &x, &y, &err) != 0)
    return fail(L, err);
  lua_pushinteger(L, x);
  lua_pushinteger(L, y);
  return 2;
}

/* game.say(id, text) -> true | nil, err */
static int l_say(lua_State *L) {
  unsigned id = check_id(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len), *err;
  if (world_say(world_of(L), id, text, len, &err) != 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* game.look(id) -> string | nil, err */
static int l_look(lua_State *L) {
  size_t len;
  const char *err, *view = world_look(world_of(L), check_id(L, 1), &len, &err);
  if (view == NULL)
    return fail(L, err);
  lua_pushlstring(L, view, len);
  return 1;
}

static const luaL_Reg game_funcs[] = {
  {"join", l_join},
  {"leave", l_leave},
  {"move", l_move},
  {"say", l_say},
  {"look", l_look},
  {NULL, NULL}
};

/* ------------------------------------------------------- the tick */

#define TICK_NS (1000000000u / GAME_TICK_HZ)
/* Further behind than this (a stopped process, a very slow machine), the
   world skips ahead instead of running the missed ticks at once. */
#define MAX_CATCH_UP 5

/* One tick's updates to lobby:broadcast(text). An error there is logged
   by loom (with its traceback) and costs this tick's updates only. */
static void push_updates(game_server *gs, const char *text, size_t len) {
  lua_State *L = loom_lua(gs->h);
  int top;
  if (L == NULL || gs->lobby == LUA_NOREF)
    return;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, gs->lobby);
  lua_pushlstring(L, text, len);
  loom_call_method(gs->h, top + 1, "broadcast", 1, 0);
  lua_settop(L, top);
}

static void advance(game_server *gs) {
  size_t len;
  const char *text = world_tick(gs->w, &len);
  if (len > 0)
    push_updates(gs, text, len);
}

/*
** A fixed rate: ticks are due at fixed times (next_tick), not 33 ms after
** the previous callback ran, so lateness does not add up. libuv's timers
** count milliseconds; the next one is set for the rest of the period.
*/
static void on_tick(uv_timer_t *t) {
  game_server *gs = t->data;
  uint64_t now = uv_hrtime();
  int n = 0;
  while (now >= gs->next_tick && n < MAX_CATCH_UP) {
    advance(gs);
    gs->next_tick += TICK_NS;
    n++;
  }
  if (now >= gs->next_tick) {
    fprintf(stderr, "game: %d ticks late, skipping ahead\n",
            (int)((now - gs->next_tick) / TICK_NS) + 1);
    gs->next_tick = now + TICK_NS;
  }
  if (gs->tick_open) {
    int rc = uv_timer_start(t, on_tick,
                            (gs->next_tick - now + 999999) / 1000000, 0);
    if (rc != 0)
      fprintf(stderr, "game: the tick stopped: uv_timer_start: %s\n",
              uv_strerror(rc));
  }
}

static int start_tick(game_server *gs, uv_loop_t *loop) {
  int rc = uv_timer_init(loop, &gs->tick);
  if (rc != 0) {
    fprintf(stderr, "game: uv_timer_init: %s\n", uv_strerror(rc));
    return -1;
  }
  gs->tick_open = 1;
  gs->tick.data = gs;
  gs->next_tick = uv_hrtime() + TICK_NS;
  rc = uv_timer_start(&gs->tick, on_tick, TICK_NS / 1000000, 0);
  if (rc != 0) {
    fprintf(stderr, "game: uv_timer_start: %s\n", uv_strerror(rc));
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------ players.lua */

/*
** In a protected call: the script directory first on package.path, then
** require "players" (which requires "game"); returns players.Lobby.
*/
static int load_players(lua_State *L) {
  const char *dir = lua_touserdata(L, 1);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;", dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "players");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "Lobby");
  return 1;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

/*
** Lobby:new{idleTimeout=} then lobby:listen(port, interface), both
** through loom_call_method, which logs a Lua error the loom way (e.g.
** "listenTCP: ... address already in use"). Leaves the lobby in the
** registry (gs->lobby).
*/
static int open_lobby(game_server *gs, const game_options *o) {
  lua_State *L = loom_lua(gs->h);
  int top = lua_gettop(L), ok = -1;
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, load_players);
  lua_pushlightuserdata(L, (void *)(uintptr_t)o->script_dir);
  if (lua_pcall(L, 1, 1, top + 1) != LUA_OK) {
    fprintf(stderr, "game: cannot load %s/players.lua: %s\n", o->script_dir,
            lua_tostring(L, -1));
    goto done;
  }
  lua_createtable(L, 0, 1);
  if (o->idle_timeout >= 0) {
    lua_pushinteger(L, o->idle_timeout);
    lua_setfield(L, -2, "idleTimeout");
  }
  if (loom_call_method(gs->h, top + 2, "new", 1, 1) != LOOM_OK) {
    fprintf(stderr, "game: players.Lobby:new failed (logged above)\n");
    goto done;
  }
  lua_pushvalue(L, -1);
  gs->lobby = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushinteger(L, o->port);
  lua_pushstring(L, o->interface);
  if (loom_call_method(gs->h, top + 3, "listen", 2, 1) != LOOM_OK) {
    fprintf(stderr, "game: cannot listen on %s:%d (logged above)\n",
            o->interface, o->port);
    goto done;
  }
  gs->port = (int)lua_tointeger(L, -1);
  ok = 0;
done:
  lua_settop(L, top);
  return ok;
}

/* --------------------------------------------------------- public */

int game_parse_args(int argc, char **argv, game_options *o) {
  int i = 1, pos = 0;
  for (; i < argc; i++) {
    char *end;
    long v;
    if (strcmp(argv[i], "--idle-timeout") == 0 && i + 1 < argc) {
      v = strtol(argv[++i], &end, 10);
      if (*end != '\0' || end == argv[i] || v < 0 || v > 86400)
        goto usage;
      o->idle_timeout = (int)v;
    } else if (argv[i][0] == '-') {
      goto usage;
    } else if (pos == 0) {
      v = strtol(argv[i], &end, 10);
      if (*end != '\0' || end == argv[i] || v < 0 || v > 65535)
        goto usage;
      o->port = (int)v;
      pos++;
    } else if (pos == 1) {
      o->interface = argv[i];
      pos++;
    } else {
      goto usage;
    }
  }
  return 0;
usage:
  fprintf(stderr, "usage: %s [--idle-timeout SECONDS] [PORT [INTERFACE]]\n"
          "  PORT 0-65535 (default %d; 0: any free port), INTERFACE"
          " default %s\n", argv[0], o->port, o->interface);
  return -1;
}

int game_server_start(game_server *gs, loom_host *h, const game_options *o) {
  int rc;
  memset(gs, 0, sizeof(*gs));
  gs->h = h;
  gs->lobby = LUA_NOREF;
  gs->w = world_new();
  if (gs->w == NULL) {
    fprintf(stderr, "game: out of memory\n");
    return -1;
  }
  rc = loom_register_module(h, "game", game_funcs, gs->w);
  if (rc != LOOM_OK) {
    fprintf(stderr, "game: loom_register_module: %s\n", loom_errmsg(h));
    return -1;
  }
  if (open_lobby(gs, o) != 0)
    return -1;
  return start_tick(gs, loom_loop(h));
}

void game_server_stop(game_server *gs) {
  lua_State *L = loom_lua(gs->h);
  if (gs->tick_open) {
    gs->tick_open = 0;
    uv_close((uv_handle_t *)&gs->tick, NULL);
  }
  if (L != NULL && gs->lobby != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, gs->lobby);
  gs->lobby = LUA_NOREF;
}

void game_server_free(game_server *gs) {
  world_free(gs->w);
  gs->w = NULL;
}
