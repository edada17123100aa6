/*
** lineedit.c: loom.lineedit, the line editing of `loom console`, over
** libedit's readline interface (BSD licensed; Debian's lua5.4 has no
** readline binding). Linked into the loom executable only: cli/main.c
** puts it in package.preload, and a plain lua5.4 without it reads plain
** lines (lua/loom/console.lua).
**
**   lineedit.isatty(fd)          is fd (0, 1, 2) a terminal?
**   lineedit.readline(prompt)    an edited line, or nil at Ctrl-D
**   lineedit.addHistory(line)    kept for the arrow keys
**   lineedit.loadHistory(path)   true, or nil and a message
**   lineedit.saveHistory(path)   true, or nil and a message
**   lineedit.getpass(prompt)     a line read from the terminal with echo
**                                off, or nil at end of input
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

#include <lua.h>
#include <lauxlib.h>

#include "lineedit.h"

/* Lines of history kept in memory and in the history file. */
#define HISTORY_MAX 1000
/* The longest password getpass reads; longer input is cut. */
#define PASS_MAX 1024

static int l_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "0, 1 or 2");
  lua_pushboolean(L, isatty((int)fd));
  return 1;
}

static int l_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "");
  char *line = readline(prompt);
  if (line == NULL)
    return 0;
  lua_pushstring(L, line); /* May raise: free first would lose the line. */
  free(line);
  return 1;
}

static int l_add_history(lua_State *L) {
  const char *line = luaL_checkstring(L, 1);
  if (line[0] != '\0')
    add_history(line);
  return 0;
}

static int push_result(lua_State *L, int rc, const char *path) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(errno != 0 ? errno : EIO));
  return 2;
}

static int l_load_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  stifle_history(HISTORY_MAX);
  errno = 0;
  return push_result(L, read_history(path), path);
}

static int l_save_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  errno = 0;
  return push_result(L, write_history(path), path);
}

/* Reads one line from stdin into buf (the newline dropped); 0 at EOF. */
static int read_secret(char *buf, size_t len) {
  size_t n;
  if (fgets(buf, (int)len, stdin) == NULL)
    return 0;
  n = strcspn(buf, "\r\n");
  if (buf[n] == '\0' && n == len - 1) { /* cut: drop the rest of the line */
    int c;
    while ((c = getchar()) != EOF && c != '\n')
      ;
  }
  buf[n] = '\0';
  return 1;
}

/*
** getpass(prompt): the prompt on stdout, then a line from stdin, with the
** terminal's echo off while it is read (when stdin is a terminal).
*/
static int l_getpass(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "password: ");
  char buf[PASS_MAX];
  struct termios saved, quiet;
  int tty = isatty(0) && tcgetattr(0, &saved) == 0, ok;
  fputs(prompt, stdout);
  fflush(stdout);
  if (tty) {
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr(0, TCSAFLUSH, &quiet);
  }
  ok = read_secret(buf, sizeof(buf));
  if (tty)
    tcsetattr(0, TCSAFLUSH, &saved);
  if (!ok)
    return 0;
  lua_pushstring(L, buf);
  memset(buf, 0, sizeof(buf));
  return 1;
}

static const luaL_Reg lineedit_functions[] = {
  {"isatty", l_isatty},
  {"readline", l_readline},
  {"addHistory", l_add_history},
  {"loadHistory", l_load_history},
  {"saveHistory", l_save_history},
  {"getpass", l_getpass},
  {NULL, NULL}
};

int luaopen_loom_lineedit(lua_State *L) {
  luaL_newlib(L, lineedit_functions);
  return 1;
}
