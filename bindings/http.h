/*
** http.h: the C interface of bindings/http.c for the HTTP server's fast
** lane (bindings/http_server.c). http.c stays the only file that sees
** <http_parser.h>: this interface speaks of heads and fields, not of the
** library, so another parser (llhttp) can stand behind it.
*/
#ifndef LOOM_HTTP_H
#define LOOM_HTTP_H

#include <stddef.h>

#include <lua.h>

typedef struct http_box loom_http_parser;

/* What loom__http_next_request found at the start of the data. */
enum {
  LOOM_HTTP_PLAIN, /* a whole request without a body: its head is ready */
  LOOM_HTTP_OTHER  /* anything else: a body, an upgrade, HTTP/2, bad or
                   ** incomplete input; the parser must be reset and the
                   ** bytes handed to the handler-driven path */
};

typedef struct loom_http_head {
  const char *method;
  const char *url;
  size_t url_len;
  int major, minor;
  int keep_alive;
  size_t nfields;
} loom_http_head;

/* Pushes the metatable of core.httpParser's parsers. */
void loom__http_push_class(lua_State *L);

/* The parser at idx (a userdata whose metatable is at mt: a request
** parser, idle between messages), or NULL. */
loom_http_parser *loom__http_to_parser(lua_State *L, int idx, int mt);

/* Parses one request from data; on LOOM_HTTP_PLAIN, *used is its size and
** head describes it until the next call. Calls no Lua. */
int loom__http_next_request(loom_http_parser *p, const char *data,
                            size_t len, size_t *used, loom_http_head *head);

/* Field i (0-based) of the last head: the value without trailing OWS. */
void loom__http_field(const loom_http_parser *p, size_t i, const char **name,
                      size_t *name_len, const char **value,
                      size_t *value_len);

/* Back to the start of a message, as core.httpParser's p:reset(). */
void loom__http_reset(loom_http_parser *p);

#endif
