/*
** embed_test.c: include/loom.h as an embedder uses it (bindings/api*.c):
** hosts on their own loop and Lua state and on the caller's, loading Lua,
** the log sink, C modules, Deferreds and method calls from C, stepping,
** running and stopping, loom_call_from_thread from other threads, closing;
** and bad input: NULL and closed hosts, missing and broken files, Lua
** errors, calls from inside the loop. Each must give its code and a clear
** message, never a crash; make sanitize runs this under ASan and valgrind.
** Prints "N passed, M failed" like every loom test runner.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "../include/loom.h"

#include "check.h"

static char root[4200];

/* The source tree: this program is BUILD/test/embed_test. */
static void find_root(void) {
  char exe[4096];
  size_t n = sizeof(exe);
  if (uv_exepath(exe, &n) == 0 && strrchr(exe, '/') != NULL) {
    *strrchr(exe, '/') = '\0';
    snprintf(root, sizeof(root), "%s/../..", exe);
  }
}

static loom_host *new_host(uv_loop_t *loop, lua_State *L) {
  loom_config cfg;
  loom_host *h = NULL;
  memset(&cfg, 0, sizeof(cfg));
  cfg.loop = loop;
  cfg.L = L;
  cfg.root = root;
  if (loom_new(&cfg, &h) != LOOM_OK)
    fprintf(stderr, "loom_new: %s\n", loom_errmsg(NULL));
  return h;
}

/* msg contains text (else says what it was). */
static int has(const char *msg, const char *text) {
  if (msg == NULL || strstr(msg, text) == NULL) {
    fprintf(stderr, "message: %s (wanted: %s)\n", msg ? msg : "(NULL)", text);
    return 0;
  }
  return 1;
}

/* The Lua expression's truth in h. */
static int lua_true(loom_host *h, const char *expr) {
  lua_State *L = loom_lua(h);
  char chunk[512];
  int b = 0;
  snprintf(chunk, sizeof(chunk), "return %s", expr);
  if (luaL_dostring(L, chunk) == LUA_OK)
    b = lua_toboolean(L, -1);
  else
    fprintf(stderr, "%s: %s\n", expr, lua_tostring(L, -1));
  lua_pop(L, 1);
  return b;
}

/* Steps h until the Lua expression holds, for at most 5 s. */
static int step_until(loom_host *h, const char *expr) {
  uint64_t deadline = uv_hrtime() + 5000000000u;
  while (!lua_true(h, expr)) {
    if (uv_hrtime() > deadline || loom_step(h) != LOOM_OK)
      return 0;
    uv_sleep(1);
  }
  return 1;
}

static char *temp_file(const char *text) {
  static char path[64];
  FILE *f;
  snprintf(path, sizeof(path), "/tmp/loom-embed-test-XXXXXX");
  if (mkstemp(path) < 0 || (f = fopen(path, "w")) == NULL)
    return NULL;
  fputs(text, f);
  fclose(f);
  return path;
}

/* Versions, codes ---------------------------------------------------------- */

static void test_version_and_codes(void) {
  CHECK(strcmp(loom_version(), LOOM_VERSION) == 0);
  CHECK(strcmp(loom_strerror(LOOM_OK), "LOOM_OK") == 0);
  CHECK(strcmp(loom_strerror(LOOM_ECLOSED), "LOOM_ECLOSED") == 0);
  CHECK(strcmp(loom_strerror(LOOM_ESTATE), "LOOM_ESTATE") == 0);
  CHECK(strcmp(loom_strerror(12345), "LOOM_E?") == 0);
}

/* A NULL host: every call says LOOM_EINVAL (or NULL, 0), nothing crashes. */
static void noop_thread_fn(loom_host *h, void *ud) {
  (void)h;
  (void)ud;
}

static void test_null_host(void) {
  luaL_Reg none[] = {{NULL, NULL}};
  CHECK(loom_errmsg(NULL) != NULL);
  CHECK(loom_lua(NULL) == NULL);
  CHECK(loom_loop(NULL) == NULL);
  CHECK_EQ(loom_dofile(NULL, "x.lua"), LOOM_EINVAL);
  CHECK_EQ(loom_dostring(NULL, "return 1", NULL), LOOM_EINVAL);
  CHECK_EQ(loom_load_plugin(NULL, "echo", 0, NULL), LOOM_EINVAL);
  CHECK_EQ(loom_run(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_step(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_start(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_stop(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_running(NULL), 0);
  CHECK_EQ(loom_close(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_set_log(NULL, NULL, NULL), LOOM_EINVAL);
  CHECK_EQ(loom_register_module(NULL, "m", none, NULL), LOOM_EINVAL);
  CHECK_EQ(loom_deferred_new(NULL), LOOM_EINVAL);
  CHECK_EQ(loom_deferred_callback(NULL, 1), LOOM_EINVAL);
  CHECK_EQ(loom_deferred_errback(NULL, 1), LOOM_EINVAL);
  CHECK_EQ(loom_call_method(NULL, 1, "m", 0, 0), LOOM_EINVAL);
  CHECK_EQ(loom_call_from_thread(NULL, noop_thread_fn, NULL), LOOM_EINVAL);
  loom_free(NULL);
}

static void test_new_errors(void) {
  loom_config cfg;
  loom_host *h = (loom_host *)&cfg; /* not NULL: loom_new must clear it */
  CHECK_EQ(loom_new(NULL, NULL), LOOM_EINVAL);
  CHECK(has(loom_errmsg(NULL), "out is NULL"));
  memset(&cfg, 0, sizeof(cfg));
  cfg.root = "/nonexistent/loom";
  CHECK_EQ(loom_new(&cfg, &h), LOOM_ENOENT);
  CHECK(h == NULL);
  CHECK(has(loom_errmsg(NULL), "/nonexistent/loom"));
  /* The caller's state without the package library. */
  cfg.root = root;
  cfg.L = luaL_newstate();
  CHECK_EQ(loom_new(&cfg, &h), LOOM_ELUA);
  CHECK(h == NULL);
  CHECK(has(loom_errmsg(NULL), "no package library"));
  lua_close(cfg.L);
}

/* Loading Lua -------------------------------------------------------------- */

static void test_loading(void) {
  loom_host *h = new_host(NULL, NULL);
  char *path;
  int top;
  CHECK(h != NULL);
  if (h == NULL)
    return;
  top = lua_gettop(loom_lua(h));
  CHECK(loom_loop(h) != NULL);
  CHECK_EQ(loom_dostring(h, "answer = 6 * 7", "=setup"), LOOM_OK);
  CHECK(lua_true(h, "answer == 42"));
  CHECK(lua_true(h, "require('loom.reactor') ~= nil"));

  CHECK_EQ(loom_dostring(h, "x = = 1", "=broken"), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "broken:1:"));
  CHECK_EQ(loom_dostring(h, "\n\nerror('boom')", "=raises"), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "raises:3: boom"));
  CHECK_EQ(loom_dostring(h, "error(setmetatable({}, {__tostring = "
                            "function() return 'an object' end}))", NULL),
           LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "an object"));
  CHECK_EQ(loom_dostring(h, "\x1bLua", "=binary"), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "binary chunk"));
  CHECK_EQ(loom_dostring(h, NULL, NULL), LOOM_EINVAL);

  CHECK_EQ(loom_dofile(h, "/nonexistent/game.lua"), LOOM_ENOENT);
  CHECK(has(loom_errmsg(h), "/nonexistent/game.lua"));
  CHECK_EQ(loom_dofile(h, NULL), LOOM_EINVAL);
  path = temp_file("local x = 1\nlocal y = \n");
  CHECK(path != NULL);
  if (path != NULL) {
    CHECK_EQ(loom_dofile(h, path), LOOM_ELUA);
    CHECK(has(loom_errmsg(h), ":3:")); /* file:line of the syntax error */
    CHECK(has(loom_errmsg(h), path));
    remove(path);
  }
  path = temp_file("loaded = (loaded or 0) + 1\n");
  if (path != NULL) {
    CHECK_EQ(loom_dofile(h, path), LOOM_OK);
    CHECK(lua_true(h, "loaded == 1"));
    remove(path);
  }
  CHECK_EQ(lua_gettop(loom_lua(h)), top); /* nothing left behind */
  loom_free(h);
}

/* The log sink ------------------------------------------------------------- */

typedef struct log_record {
  int count, level;
  char last[2048];
} log_record;

static void record_log(void *ud, int level, const char *line) {
  log_record *r = ud;
  r->count++;
  r->level = level;
  snprintf(r->last, sizeof(r->last), "%s", line);
}

static void test_log_sink(void) {
  loom_host *h = new_host(NULL, NULL);
  log_record r;
  if (h == NULL)
    return;
  memset(&r, 0, sizeof(r));
  CHECK_EQ(loom_set_log(h, record_log, &r), LOOM_OK);
  CHECK_EQ(loom_dostring(h, "require('loom.log').warn('low on %s', 'fuel')",
                         NULL), LOOM_OK);
  CHECK_EQ(r.count, 1);
  CHECK_EQ(r.level, LOOM_LOG_WARN);
  CHECK(has(r.last, "warn: low on fuel"));
  CHECK_EQ(loom_dostring(h, "require('loom.log').debug('hidden')", NULL),
           LOOM_OK);
  CHECK_EQ(r.count, 1); /* below loom.log's level */
  CHECK_EQ(loom_set_log(h, NULL, NULL), LOOM_OK);
  CHECK_EQ(loom_dostring(h, "require('loom.log').debug('to stderr')", NULL),
           LOOM_OK);
  CHECK_EQ(r.count, 1);
  loom_free(h);
}

/* C modules ---------------------------------------------------------------- */

typedef struct world {
  int score;
  loom_host *h;
  int inner_rc[4];
} world;

static int l_add(lua_State *L) {
  world *w = lua_touserdata(L, lua_upvalueindex(1));
  w->score += (int)luaL_checkinteger(L, 1);
  lua_pushinteger(L, w->score);
  return 1;
}

static int l_fail(lua_State *L) {
  return luaL_error(L, "the world refuses");
}

/* Called from Lua: running, stepping or closing from here is refused. */
static int l_reenter(lua_State *L) {
  world *w = lua_touserdata(L, lua_upvalueindex(1));
  w->inner_rc[0] = loom_step(w->h);
  w->inner_rc[1] = loom_run(w->h);
  w->inner_rc[2] = loom_close(w->h);
  return 0;
}

static const luaL_Reg game_funcs[] = {
  {"add", l_add}, {"fail", l_fail}, {"reenter", l_reenter}, {NULL, NULL}
};

static void test_modules(void) {
  loom_host *h = new_host(NULL, NULL);
  luaL_Reg bad[] = {{"f", NULL}, {NULL, NULL}};
  world w;
  if (h == NULL)
    return;
  memset(&w, 0, sizeof(w));
  w.h = h;
  CHECK_EQ(loom_register_module(h, "game", game_funcs, &w), LOOM_OK);
  CHECK_EQ(loom_dostring(h, "game = require 'game'; total = game.add(5) + "
                            "game.add(1)", NULL), LOOM_OK);
  CHECK_EQ(w.score, 6);
  CHECK(lua_true(h, "total == 11"));
  /* A Lua error raised by a C function reaches its Lua caller. */
  CHECK(lua_true(h, "not pcall(game.fail)"));
  CHECK_EQ(loom_dostring(h, "game.fail()", "=caller"), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "the world refuses"));
  /* The loop cannot be run from inside a call from Lua. */
  CHECK_EQ(loom_dostring(h, "require('loom.reactor').callLater(0, "
                            "game.reenter)", NULL), LOOM_OK);
  CHECK_EQ(loom_step(h), LOOM_OK);
  CHECK_EQ(w.inner_rc[0], LOOM_ESTATE);
  CHECK_EQ(w.inner_rc[1], LOOM_ESTATE);
  CHECK_EQ(w.inner_rc[2], LOOM_ESTATE);
  CHECK(has(loom_errmsg(h), "inside the loop"));

  CHECK_EQ(loom_register_module(h, "game", game_funcs, &w), LOOM_ESTATE);
  CHECK(has(loom_errmsg(h), "already loaded"));
  CHECK_EQ(loom_register_module(h, "", game_funcs, &w), LOOM_EINVAL);
  CHECK_EQ(loom_register_module(h, "other", NULL, &w), LOOM_EINVAL);
  CHECK_EQ(loom_register_module(h, "other", bad, &w), LOOM_EINVAL);
  CHECK(has(loom_errmsg(h), "'f' has no function"));
  loom_free(h);
}

/* Deferreds from C --------------------------------------------------------- */

static void test_deferreds(void) {
  loom_host *h = new_host(NULL, NULL);
  lua_State *L;
  int top;
  if (h == NULL)
    return;
  L = loom_lua(h);
  top = lua_gettop(L);
  CHECK_EQ(loom_deferred_new(h), LOOM_OK);
  CHECK_EQ(lua_gettop(L), top + 1);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "d");
  CHECK_EQ(loom_dostring(h, "d:addCallback(function(v) got = v * 2 end)",
                         NULL), LOOM_OK);
  lua_pushinteger(L, 21);
  CHECK_EQ(loom_deferred_callback(h, -2), LOOM_OK);
  CHECK_EQ(lua_gettop(L), top + 1);
  CHECK(lua_true(h, "got == 42"));
  lua_pushinteger(L, 1);
  CHECK_EQ(loom_deferred_callback(h, -2), LOOM_ELUA); /* twice */
  CHECK(has(loom_errmsg(h), "AlreadyCalled"));
  CHECK_EQ(lua_gettop(L), top + 1);
  lua_settop(L, top);

  CHECK_EQ(loom_deferred_new(h), LOOM_OK);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "e");
  CHECK_EQ(loom_dostring(h, "e:addErrback(function(f) why = f.value end)",
                         NULL), LOOM_OK);
  lua_pushliteral(L, "lost");
  CHECK_EQ(loom_deferred_errback(h, top + 1), LOOM_OK);
  CHECK(lua_true(h, "why == 'lost'"));
  lua_settop(L, top);

  lua_pushinteger(L, 5);
  lua_pushinteger(L, 6);
  CHECK_EQ(loom_deferred_callback(h, -2), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "not a Deferred"));
  CHECK_EQ(lua_gettop(L), top + 1);
  lua_pushinteger(L, 7);
  CHECK_EQ(loom_deferred_callback(h, 99), LOOM_EINVAL);
  CHECK_EQ(lua_gettop(L), top + 1);
  lua_settop(L, top);
  CHECK_EQ(loom_deferred_callback(h, 1), top == 0 ? LOOM_EINVAL : LOOM_ELUA);
  lua_settop(L, top);
  loom_free(h);
}

/* loom_call_method --------------------------------------------------------- */

static void test_call_method(void) {
  loom_host *h = new_host(NULL, NULL);
  log_record r;
  lua_State *L;
  int top;
  if (h == NULL)
    return;
  memset(&r, 0, sizeof(r));
  loom_set_log(h, record_log, &r);
  L = loom_lua(h);
  top = lua_gettop(L);
  CHECK_EQ(loom_dostring(h,
                         "local Player = require('loom.class').Object:extend("
                         "{__name = 'Player'})\n"
                         "function Player:move(dx, dy)\n"
                         "  self.x = (self.x or 0) + dx\n"
                         "  return self.x, dy\n"
                         "end\n"
                         "function Player:boom()\n"
                         "  error('kaboom')\n"
                         "end\n"
                         "player = Player()", "=player.lua"), LOOM_OK);
  lua_getglobal(L, "player");
  lua_pushinteger(L, 3);
  lua_pushinteger(L, 4);
  CHECK_EQ(loom_call_method(h, top + 1, "move", 2, 2), LOOM_OK);
  CHECK_EQ(lua_gettop(L), top + 3);
  CHECK_EQ(lua_tointeger(L, -2), 3);
  CHECK_EQ(lua_tointeger(L, -1), 4);
  lua_settop(L, top + 1);
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 0);
  CHECK_EQ(loom_call_method(h, -3, "move", 2, LUA_MULTRET), LOOM_OK);
  CHECK_EQ(lua_gettop(L), top + 3);
  lua_settop(L, top + 1);

  /* An error: returned, logged with its traceback, the stack balanced. */
  CHECK_EQ(loom_call_method(h, -1, "boom", 0, 1), LOOM_ELUA);
  CHECK_EQ(lua_gettop(L), top + 1);
  CHECK(has(loom_errmsg(h), "error in Player.boom: player.lua:7: kaboom"));
  CHECK_EQ(r.count, 1);
  CHECK_EQ(r.level, LOOM_LOG_ERROR);
  CHECK(has(r.last, "error in Player.boom"));
  CHECK(has(r.last, "stack traceback"));
  CHECK(has(r.last, "player.lua:7"));

  lua_pushinteger(L, 1);
  CHECK_EQ(loom_call_method(h, top + 1, "fly", 1, 0), LOOM_ELUA);
  CHECK(has(loom_errmsg(h), "no method 'fly'"));
  CHECK_EQ(lua_gettop(L), top + 1);
  lua_pushinteger(L, 1);
  CHECK_EQ(loom_call_method(h, top + 2, "move", 1, 0), LOOM_EINVAL);
  CHECK_EQ(lua_gettop(L), top + 1);
  CHECK_EQ(loom_call_method(h, top + 1, NULL, 0, 0), LOOM_EINVAL);
  CHECK_EQ(loom_call_method(h, top + 1, "move", 5, 0), LOOM_EINVAL);
  /* Not a table: indexing a number raises, protected. */
  lua_pushinteger(L, 9);
  CHECK_EQ(loom_call_method(h, -1, "move", 0, 0), LOOM_ELUA);
  lua_settop(L, top);
  loom_free(h);
}

/* Running ------------------------------------------------------------------ */

static void test_step_run_stop(void) {
  loom_host *h = new_host(NULL, NULL);
  if (h == NULL)
    return;
  CHECK_EQ(loom_stop(h), LOOM_ESTATE); /* not started */
  CHECK(has(loom_errmsg(h), "not running"));
  CHECK_EQ(loom_running(h), 0);
  CHECK_EQ(loom_dostring(h,
                         "reactor = require 'loom.reactor'\n"
                         "events = {}\n"
                         "reactor.callWhenRunning(function() "
                         "events[#events + 1] = 'running' end)\n"
                         "reactor.addSystemEventTrigger('during', 'shutdown',"
                         " function() events[#events + 1] = 'shutdown' end)\n"
                         "reactor.callLater(0.01, function() ticked = true "
                         "end)", NULL), LOOM_OK);
  CHECK_EQ(loom_step(h), LOOM_OK);
  CHECK_EQ(loom_running(h), 1);
  CHECK(lua_true(h, "events[1] == 'running'"));
  CHECK(step_until(h, "ticked"));
  CHECK_EQ(loom_start(h), LOOM_ESTATE);
  CHECK_EQ(loom_stop(h), LOOM_OK);
  CHECK_EQ(loom_stop(h), LOOM_OK); /* already stopping */
  CHECK(step_until(h, "not reactor._started"));
  CHECK_EQ(loom_running(h), 0);
  CHECK(lua_true(h, "events[2] == 'shutdown'"));

  /* loom_run until reactor.stop() from Lua; then again, stopped from C. */
  CHECK_EQ(loom_dostring(h, "reactor.callLater(0.01, reactor.stop)", NULL),
           LOOM_OK);
  CHECK_EQ(loom_run(h), LOOM_OK);
  CHECK_EQ(loom_running(h), 0);
  CHECK_EQ(loom_dostring(h, "reactor.callWhenRunning(function() "
                            "startup_ran = true end)", NULL), LOOM_OK);
  CHECK_EQ(loom_start(h), LOOM_OK);
  CHECK(lua_true(h, "startup_ran"));
  CHECK_EQ(loom_stop(h), LOOM_OK);
  CHECK_EQ(loom_run(h), LOOM_OK); /* runs the started reactor's shutdown */
  CHECK_EQ(loom_running(h), 0);
  /* A Lua error escaping the reactor's run is LOOM_ELUA. */
  CHECK_EQ(loom_dostring(h, "reactor.addSystemEventTrigger('before', "
                            "'startup', function() end)", NULL), LOOM_OK);
  loom_free(h);
}

/* TCP served and used by Lua, driven by loom_step alone. */
static void test_tcp_by_steps(void) {
  loom_host *h = new_host(NULL, NULL);
  if (h == NULL)
    return;
  CHECK_EQ(loom_dostring(h,
    "local reactor = require 'loom.reactor'\n"
    "local protocol = require 'loom.protocol'\n"
    "local Echo = protocol.Protocol:extend({})\n"
    "function Echo:dataReceived(d) self.transport:write(d:upper()) end\n"
    "local Client = protocol.Protocol:extend({})\n"
    "function Client:connectionMade() self.transport:write('ping') end\n"
    "function Client:dataReceived(d) reply = (reply or '') .. d end\n"
    "port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),\n"
    "  { interface = '127.0.0.1' })\n"
    "reactor.connectTCP('127.0.0.1', port:getHost().port,\n"
    "  protocol.ClientFactory.forProtocol(Client))", "=tcp"), LOOM_OK);
  CHECK(step_until(h, "reply == 'PING'"));
  /* Closed with the connection and the listener still open. */
  loom_free(h);
}

/* loom_call_from_thread ---------------------------------------------------- */

#define THREADS 4
#define CALLS 200

typedef struct thread_state {
  loom_host *h;
  int id;
  int last[THREADS]; /* per thread: the last sequence number run */
  int ran, out_of_order, refused;
} thread_state;

typedef struct posted {
  thread_state *ts;
  int thread, seq;
} posted;

static void run_posted(loom_host *h, void *ud) {
  posted *p = ud;
  (void)h;
  if (p->seq != p->ts->last[p->thread] + 1)
    p->ts->out_of_order++;
  p->ts->last[p->thread] = p->seq;
  p->ts->ran++;
  free(p);
}

typedef struct poster {
  thread_state *ts;
  int thread;
} poster;

static void post_all(void *arg) {
  poster *ps = arg;
  int i;
  for (i = 1; i <= CALLS; i++) {
    posted *p = malloc(sizeof(*p));
    if (p == NULL)
      return;
    p->ts = ps->ts;
    p->thread = ps->thread;
    p->seq = i;
    if (loom_call_from_thread(ps->ts->h, run_posted, p) != LOOM_OK) {
      free(p);
      ps->ts->refused++; /* not expected before the close */
    }
  }
}

static void count_close_run(loom_host *h, void *ud) {
  int *n = ud;
  (*n)++;
  /* Queued work runs at close with Lua still there. */
  if (loom_lua(h) != NULL && loom_dostring(h, "seen_at_close = true",
                                           NULL) == LOOM_OK)
    (*n) += 100;
}

static void test_call_from_thread(void) {
  loom_host *h = new_host(NULL, NULL);
  thread_state ts;
  poster ps[THREADS];
  uv_thread_t threads[THREADS];
  uint64_t deadline;
  int step_failed;
  int i, at_close = 0;
  if (h == NULL)
    return;
  memset(&ts, 0, sizeof(ts));
  ts.h = h;
  for (i = 0; i < THREADS; i++) {
    ps[i].ts = &ts;
    ps[i].thread = i;
    CHECK_EQ(uv_thread_create(&threads[i], post_all, &ps[i]), 0);
  }
  deadline = uv_hrtime() + 5000000000u;
  /* (one check for all the steps: the test's count stays the same however
  ** many steps the threads take) */
  step_failed = 0;
  while (ts.ran < THREADS * CALLS && uv_hrtime() < deadline) {
    step_failed |= loom_step(h) != LOOM_OK;
    uv_sleep(1);
  }
  CHECK_EQ(step_failed, 0);
  for (i = 0; i < THREADS; i++)
    uv_thread_join(&threads[i]);
  while (ts.ran < THREADS * CALLS && uv_hrtime() < deadline)
    loom_step(h);
  CHECK_EQ(ts.ran, THREADS * CALLS);
  CHECK_EQ(ts.out_of_order, 0);
  CHECK_EQ(ts.refused, 0);

  /* Queued, never stepped: runs at loom_close; after it, refused. */
  CHECK_EQ(loom_call_from_thread(h, count_close_run, &at_close), LOOM_OK);
  CHECK_EQ(loom_call_from_thread(h, count_close_run, &at_close), LOOM_OK);
  CHECK_EQ(loom_close(h), LOOM_OK);
  CHECK_EQ(at_close, 202);
  CHECK_EQ(loom_call_from_thread(h, count_close_run, &at_close),
           LOOM_ECLOSED);
  CHECK_EQ(loom_call_from_thread(h, NULL, NULL), LOOM_EINVAL);
  loom_free(h);
}

/* Closing ------------------------------------------------------------------ */

static void test_closed_host(void) {
  loom_host *h = new_host(NULL, NULL);
  luaL_Reg none[] = {{NULL, NULL}};
  if (h == NULL)
    return;
  CHECK_EQ(loom_close(h), LOOM_OK);
  CHECK_EQ(loom_close(h), LOOM_ECLOSED);
  CHECK_EQ(loom_step(h), LOOM_ECLOSED);
  CHECK(has(loom_errmsg(h), "loom_step: the host is closed"));
  CHECK_EQ(loom_run(h), LOOM_ECLOSED);
  CHECK_EQ(loom_start(h), LOOM_ECLOSED);
  CHECK_EQ(loom_stop(h), LOOM_ECLOSED);
  CHECK_EQ(loom_running(h), 0);
  CHECK_EQ(loom_dofile(h, "x.lua"), LOOM_ECLOSED);
  CHECK_EQ(loom_dostring(h, "return 1", NULL), LOOM_ECLOSED);
  CHECK_EQ(loom_load_plugin(h, "echo", 0, NULL), LOOM_ECLOSED);
  CHECK_EQ(loom_set_log(h, NULL, NULL), LOOM_ECLOSED);
  CHECK_EQ(loom_register_module(h, "m", none, NULL), LOOM_ECLOSED);
  CHECK_EQ(loom_deferred_new(h), LOOM_ECLOSED);
  CHECK_EQ(loom_deferred_callback(h, 1), LOOM_ECLOSED);
  CHECK_EQ(loom_call_method(h, 1, "m", 0, 0), LOOM_ECLOSED);
  CHECK(loom_lua(h) == NULL);
  CHECK(loom_loop(h) == NULL);
  loom_free(h);
}

/* The caller's loop: loom closes its own handles and leaves the caller's. */
static void on_caller_timer(uv_timer_t *t) {
  int *fired = t->data;
  (*fired)++;
}

static void test_callers_loop(void) {
  uv_loop_t loop;
  uv_timer_t timer;
  loom_host *h;
  uint64_t deadline;
  int fired = 0;
  CHECK_EQ(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &timer);
  timer.data = &fired;
  uv_timer_start(&timer, on_caller_timer, 1, 1);
  h = new_host(&loop, NULL);
  if (h == NULL)
    return;
  CHECK(loom_loop(h) == &loop);
  CHECK_EQ(loom_start(h), LOOM_OK);
  CHECK_EQ(loom_dostring(h,
    "local reactor = require 'loom.reactor'\n"
    "local protocol = require 'loom.protocol'\n"
    "local Echo = protocol.Protocol:extend({})\n"
    "function Echo:dataReceived(d) self.transport:write(d) end\n"
    "local Client = protocol.Protocol:extend({})\n"
    "function Client:connectionMade() self.transport:write('hi') end\n"
    "function Client:dataReceived(d) reply = d end\n"
    "port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),\n"
    "  { interface = '127.0.0.1' })\n"
    "reactor.connectTCP('127.0.0.1', port:getHost().port,\n"
    "  protocol.ClientFactory.forProtocol(Client))", "=tcp"), LOOM_OK);
  /* The caller runs its loop; loom's connections are served in it. */
  deadline = uv_hrtime() + 5000000000u;
  while (!lua_true(h, "reply == 'hi'") && uv_hrtime() < deadline)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(lua_true(h, "reply == 'hi'"));
  CHECK(fired > 0);
  /* loom_stop: shutdown in the caller's turns, then loom is done. */
  CHECK_EQ(loom_stop(h), LOOM_OK);
  while (loom_running(h) && uv_hrtime() < deadline)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK_EQ(loom_running(h), 0);
  CHECK_EQ(loom_close(h), LOOM_OK);
  /* The caller's timer still runs; its loop closes with nothing of loom's
     left (uv_loop_close fails on any open handle). */
  fired = 0;
  uv_run(&loop, UV_RUN_ONCE);
  CHECK(fired > 0);
  CHECK(uv_is_active((uv_handle_t *)&timer));
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
  loom_free(h);

  /* Closed with connections open, the caller's loop left to run. */
  CHECK_EQ(uv_loop_init(&loop), 0);
  h = new_host(&loop, NULL);
  if (h == NULL)
    return;
  CHECK_EQ(loom_dostring(h, "port = require('loom.reactor').listenTCP(0, "
                            "require('loom.protocol').Factory(), "
                            "{ interface = '127.0.0.1' })", NULL), LOOM_OK);
  loom_free(h);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* The caller's Lua state: stays open, and what Lua still holds is closed. */
static void test_callers_state(void) {
  lua_State *L = luaL_newstate();
  loom_host *h;
  luaL_openlibs(L);
  lua_pushinteger(L, 7); /* the caller's own value on its stack */
  h = new_host(NULL, L);
  if (h == NULL) {
    lua_close(L);
    return;
  }
  CHECK(loom_lua(h) == L);
  CHECK_EQ(loom_dostring(h,
    "reactor = require 'loom.reactor'\n"
    "local protocol = require 'loom.protocol'\n"
    "local Client = protocol.Protocol:extend({})\n"
    "function Client:connectionMade() connected = self end\n"
    "function Client:connectionLost() lost = true end\n"
    "port = reactor.listenTCP(0, protocol.Factory.forProtocol(\n"
    "  protocol.Protocol),\n"
    "  { interface = '127.0.0.1' })\n"
    "reactor.connectTCP('127.0.0.1', port:getHost().port,\n"
    "  protocol.ClientFactory.forProtocol(Client))\n"
    "timer = reactor.callLater(60, print)", "=state"), LOOM_OK);
  CHECK(step_until(h, "connected ~= nil"));
  CHECK_EQ(loom_close(h), LOOM_OK);
  /* Lua goes on; loom's objects say they are closed. */
  CHECK_EQ(luaL_dostring(L, "return lost == true"), LUA_OK);
  CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);
  CHECK_EQ(luaL_dostring(L,
    "local ok1, e1 = pcall(reactor.callLater, 0, print)\n"
    "local ok2 = pcall(function() connected.transport:write('x') end)\n"
    "local ok3 = pcall(function() return port:getHost() end)\n"
    "timer:cancel()\n"
    "return not ok1 and tostring(e1)"), LUA_OK);
  CHECK(has(lua_tostring(L, -1), "closed"));
  lua_pop(L, 1);
  CHECK_EQ(lua_tointeger(L, -1), 7);
  loom_free(h);
  /* A second host in the same state is refused, clearly. */
  {
    loom_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.L = L;
    cfg.root = root;
    CHECK_EQ(loom_new(&cfg, &h), LOOM_ESTATE);
    CHECK(h == NULL);
    CHECK(has(loom_errmsg(NULL), "already has loom loaded"));
  }
  lua_close(L);
}

/* Both the caller's: loom leaves the loop and the state as it found them,
   and its log sink (which points at the freed host) is gone. */
static void test_callers_loop_and_state(void) {
  uv_loop_t loop;
  lua_State *L = luaL_newstate();
  loom_host *h;
  log_record r;
  luaL_openlibs(L);
  memset(&r, 0, sizeof(r));
  CHECK_EQ(uv_loop_init(&loop), 0);
  h = new_host(&loop, L);
  if (h == NULL) {
    lua_close(L);
    return;
  }
  CHECK_EQ(loom_set_log(h, record_log, &r), LOOM_OK);
  CHECK_EQ(loom_dostring(h, "port = require('loom.reactor').listenTCP(0, "
                            "require('loom.protocol').Factory(), "
                            "{ interface = '127.0.0.1' })\n"
                            "require('loom.log').error('before')", NULL),
           LOOM_OK);
  CHECK_EQ(r.count, 1);
  loom_free(h);
  CHECK_EQ(uv_loop_close(&loop), 0);
  CHECK_EQ(luaL_dostring(L, "local log = require('loom.log')\n"
                            "log.toFile('/dev/null')\n"
                            "log.error('after')\n"
                            "pcall(port.getHost, port)"), LUA_OK);
  CHECK_EQ(r.count, 1);
  lua_close(L);
}

/* Plugins ------------------------------------------------------------------ */

static void test_plugins(void) {
  loom_host *h = new_host(NULL, NULL);
  const char *good[] = {"--port", "tcp:0:interface=127.0.0.1"};
  const char *bad[] = {"--nope"};
  const char *missing[] = {"--port"};
  if (h == NULL)
    return;
  CHECK_EQ(loom_load_plugin(h, "no-such-plugin", 0, NULL), LOOM_ENOENT);
  CHECK(has(loom_errmsg(h), "no plugin named 'no-such-plugin'"));
  CHECK_EQ(loom_load_plugin(h, "../etc/passwd", 0, NULL), LOOM_ENOENT);
  CHECK_EQ(loom_load_plugin(h, "echo", 1, bad), LOOM_EINVAL);
  CHECK(has(loom_errmsg(h), "unknown option '--nope'"));
  CHECK_EQ(loom_load_plugin(h, "echo", 1, missing), LOOM_EINVAL);
  CHECK_EQ(loom_load_plugin(h, "echo", 1, NULL), LOOM_EINVAL);
  CHECK_EQ(loom_load_plugin(h, "echo", 2, good), LOOM_OK);
  CHECK(lua_true(h, "require('loom.core').openHandles().poll == 1"));
  CHECK_EQ(loom_step(h), LOOM_OK);
  CHECK_EQ(loom_stop(h), LOOM_OK);
  CHECK(step_until(h, "not require('loom.reactor')._started"));
  CHECK(lua_true(h, "next(require('loom.core').openHandles()) == nil"));
  loom_free(h);
}

int main(void) {
  find_root();
  test_version_and_codes();
  test_null_host();
  test_new_errors();
  test_loading();
  test_log_sink();
  test_modules();
  test_deferreds();
  test_call_method();
  test_step_run_stop();
  test_tcp_by_steps();
  test_call_from_thread();
  test_closed_host();
  test_callers_loop();
  test_callers_state();
  test_callers_loop_and_state();
  test_plugins();
  return check_report();
}
