/*
** http.c: core.httpParser, HTTP/1.x message parsing for loom.web (server
** and client) over Debian's libhttp-parser (2.9). This is the ONLY file
** that includes <http_parser.h>: everything above it sees the small
** interface below, so llhttp (or another parser) can replace it later
** without touching Lua. docs/architecture.md says why it is a binding and
** not a parsers/ file.
**
**   p = core.httpParser(kind, handler[, limits])   kind "request"/"response"
**   n | nil, errname, msg = p:execute(data[, pos])
**   true | nil, errname, msg = p:finish()          the peer closed
**   p:pause() / p:resume() / p:reset()
**
** The parser calls handler:onHeaders(info) (its true result skips the
** body), handler:onBody(chunk) and handler:onMessageComplete()
** synchronously from execute/finish. The head (URL or reason phrase,
** header names and values) is gathered in one growing C buffer bounded by
** maxHeaderSize, since libhttp-parser hands it over in pieces that may
** span several reads; the info table is built once, when the head is
** complete. errnames: "invalid" (malformed), "incomplete" (finish in the
** middle of a message), "headerTooLarge", "tooManyHeaders", "uriTooLong",
** "handler" (a handler method raised: msg has its traceback).
*/
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "../parsers/chunked.h"
#include "binding.h"
#include "http.h"

#define HTTP_PARSER_CLASS "loom.HTTPParser"

#define DEFAULT_MAX_HEAD (16 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define DEFAULT_MAX_URL (8 * 1024)
/* What a head has beside its URL and fields: the method and version of a
** request line (or the version and status of a status line), the ": " and
** CRLF of each field, the blank line. Counted so that maxHeaderSize bounds
** the bytes a client sent rather than just those kept. */
#define LINE_OVERHEAD 14
#define FIELD_OVERHEAD 4

enum { LAST_NONE, LAST_FIELD, LAST_VALUE };

typedef struct head_field {
  size_t name_off, name_len, value_off, value_len;
} head_field;

typedef struct http_box {
  http_parser parser;
  lua_State *L;      /* the state running execute/finish; NULL otherwise */
  int handler;       /* the handler's stack index during execute/finish */
  char *buf;         /* the head: the URL (or phrase) first, then fields */
  size_t len, cap;
  size_t url_len;
  head_field *fields;
  size_t nfields, fields_cap;
  int last;          /* LAST_*: which kind of piece came last */
  size_t max_head, max_headers, max_url;
  int pause_pending; /* pause once the current message is complete */
  int busy;          /* inside execute/finish (or one raised through) */
  int dead;          /* after an error: errname and msg say which */
  int fast;          /* in loom__http_next_request: no Lua, no bodies */
  int fast_done;     /* a plain request is complete */
  loom_chunked chunks; /* a chunked body's framing, as far as it came */
  int chunks_start;  /* on_headers_complete paused where one starts */
  const char *body;  /* body bytes of this execute not yet given to onBody: */
  size_t body_len;   /* in the data, or in body_buf once a second piece */
  char *body_buf;    /* came (a chunked body's chunks, joined) */
  size_t body_cap;
  const char *errname;
  char msg[256];
} http_box;

/* The methods hold the parser's metatable as their upvalue: comparing it
** costs less than luaL_checkudata's look-up and strcmp of the class name,
** which showed in the cost of a request (three calls each). */
static http_box *check_parser(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  if (p != NULL && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same)
      return p;
  }
  return luaL_checkudata(L, 1, HTTP_PARSER_CLASS); /* raises the error */
}

/* Records a limit's breach (or an allocation failure) for execute. */
static int fail(http_box *b, const char *errname, const char *what,
                size_t n) {
  b->errname = errname;
  snprintf(b->msg, sizeof b->msg, "%s %zu", what, n);
  return -1;
}

static int fail_msg(http_box *b, const char *errname, const char *msg) {
  b->errname = errname;
  snprintf(b->msg, sizeof b->msg, "%s", msg);
  return -1;
}

/* The bytes of the head a peer has sent so far, as counted for the limit. */
static size_t head_bytes(const http_box *b) {
  return b->len + LINE_OVERHEAD + b->nfields * FIELD_OVERHEAD;
}

/* Appends a piece of the head, or fails when the head grows too large. */
static int append(http_box *b, const char *at, size_t n) {
  if (n == 0) /* an empty piece: nothing to copy, maybe no buffer yet */
    return 0;
  if (head_bytes(b) + n > b->max_head)
    return fail(b, "headerTooLarge", "header section too large, limit",
                b->max_head);
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *nb;
    while (cap < b->len + n)
      cap *= 2;
    if ((nb = realloc(b->buf, cap)) == NULL)
      return fail(b, "invalid", "out of memory for a head of",
                  b->len + n);
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, at, n);
  b->len += n;
  return 0;
}

static int on_message_begin(http_parser *p) {
  http_box *b = p->data;
  b->len = b->url_len = b->nfields = 0;
  b->last = LAST_NONE;
  return 0;
}

/* The request's URL, or the response's reason phrase. */
static int on_url(http_parser *p, const char *at, size_t n) {
  http_box *b = p->data;
  size_t i;
  if (b->url_len + n > b->max_url)
    return fail(b, "uriTooLong", "URI too long, limit", b->max_url);
  for (i = 0; i < n; i++) /* the library lets a tab or form feed in */
    if ((unsigned char)at[i] <= ' ' || at[i] == 0x7f)
      return fail_msg(b, "invalid", "a control byte in the request target");
  b->url_len += n;
  return append(b, at, n);
}

/* A response's reason phrase: bounded by maxHeaderSize, as the fields. */
static int on_status(http_parser *p, const char *at, size_t n) {
  http_box *b = p->data;
  b->url_len += n;
  return append(b, at, n);
}

static int new_field(http_box *b) {
  head_field *f;
  if (b->nfields == b->max_headers)
    return fail(b, "tooManyHeaders", "too many header fields, limit",
                b->max_headers);
  if (b->nfields == b->fields_cap) {
    size_t cap = b->fields_cap ? b->fields_cap * 2 : 16;
    head_field *nf = realloc(b->fields, cap * sizeof *nf);
    if (nf == NULL)
      return fail(b, "invalid", "out of memory for header fields:", cap);
    b->fields = nf;
    b->fields_cap = cap;
  }
  f = &b->fields[b->nfields++];
  f->name_off = b->len;
  f->name_len = f->value_off = f->value_len = 0;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  http_box *b = p->data;
  if (b->last != LAST_FIELD && new_field(b) != 0)
    return -1;
  b->last = LAST_FIELD;
  b->fields[b->nfields - 1].name_len += n;
  return append(b, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  http_box *b = p->data;
  head_field *f = &b->fields[b->nfields - 1];
  if (b->last != LAST_VALUE)
    f->value_off = b->len;
  b->last = LAST_VALUE;
  f->value_len += n;
  return append(b, at, n);
}

/*
** Calls handler[name](handler, nargs arguments on the top) with a
** traceback; keeps its first result on the stack. On an error, records it
** (errname "handler") and returns -1.
*/
static int call_handler(http_box *b, const char *name, int nargs) {
  lua_State *L = b->L;
  int base = lua_gettop(L) - nargs;
  if (lua_getfield(L, b->handler, name) == LUA_TNIL) {
    lua_settop(L, base);
    lua_pushnil(L); /* an absent method is one that does nothing */
    return 0;
  }
  lua_pushcfunction(L, loom__l_traceback);
  lua_insert(L, -2);
  lua_pushvalue(L, b->handler);
  lua_rotate(L, base + 1, 3); /* msgh, method, handler, args... */
  if (lua_pcall(L, nargs + 1, 1, base + 1) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    b->errname = "handler";
    snprintf(b->msg, sizeof b->msg, "%s: %s", name,
             msg ? msg : "(error object is not a string)");
    lua_settop(L, base);
    return -1;
  }
  lua_remove(L, base + 1);
  return 0;
}

static void push_lstr(lua_State *L, const char *s, size_t n, const char *k) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

static void push_headers(lua_State *L, const http_box *b) {
  size_t i, nlen, vlen;
  const char *name, *value;
  lua_createtable(L, (int)b->nfields, 0);
  for (i = 0; i < b->nfields; i++) {
    loom__http_field(b, i, &name, &nlen, &value, &vlen);
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, name, nlen);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, value, vlen);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "headers");
}

/* The info table of API: docs/web.md and the comment at the top. */
static void push_info(lua_State *L, const http_box *b) {
  const http_parser *p = &b->parser;
  /* Eight fields, nine with contentLength: sized exactly, so a GET's head
  ** is an 8-slot table (this is made once per message). */
  lua_createtable(L, 0, (p->flags & F_CONTENTLENGTH) ? 9 : 8);
  if (p->type == HTTP_REQUEST) {
    lua_pushstring(L, http_method_str((enum http_method)p->method));
    lua_setfield(L, -2, "method");
    push_lstr(L, b->buf, b->url_len, "url");
  } else {
    lua_pushinteger(L, p->status_code);
    lua_setfield(L, -2, "status");
    push_lstr(L, b->buf, b->url_len, "phrase");
  }
  lua_pushinteger(L, p->http_major);
  lua_setfield(L, -2, "versionMajor");
  lua_pushinteger(L, p->http_minor);
  lua_setfield(L, -2, "versionMinor");
  lua_pushboolean(L, http_should_keep_alive(p));
  lua_setfield(L, -2, "keepAlive");
  lua_pushboolean(L, p->upgrade);
  lua_setfield(L, -2, "upgrade");
  /* The library keeps a validated Content-Length only in this field. */
  if (p->flags & F_CONTENTLENGTH) {
    if (p->content_length <= (uint64_t)LUA_MAXINTEGER)
      lua_pushinteger(L, (lua_Integer)p->content_length);
    else
      lua_pushnumber(L, (lua_Number)p->content_length);
    lua_setfield(L, -2, "contentLength");
  }
  lua_pushboolean(L, (p->flags & F_CHUNKED) != 0);
  lua_setfield(L, -2, "chunked");
  push_headers(L, b);
}

/*
** RFC 9110's tchar, what a field name may hold, as a bit a byte below 128:
** "!#$%&'*+-.^_`|~", digits and letters (every byte of every name is
** checked, so a bit test rather than a strchr).
*/
static const uint32_t tchar_bits[4] = {0x00000000, 0x03ff6cfa, 0xc7fffffe,
                                       0x57ffffff};

static int is_tchar(unsigned char c) {
  return c < 128 && (tchar_bits[c >> 5] >> (c & 31)) & 1;
}

/*
** libhttp-parser accepts names with spaces ("Content-Length : 5", which
** it takes as a Content-Length): a name that is not a token is refused,
** so that nothing above can read a field differently from the library.
*/
static int check_names(http_box *b) {
  size_t i, j;
  for (i = 0; i < b->nfields; i++) {
    const head_field *f = &b->fields[i];
    if (f->name_len == 0)
      return fail(b, "invalid", "empty header name in field", i + 1);
    for (j = 0; j < f->name_len; j++)
      if (!is_tchar((unsigned char)b->buf[f->name_off + j]))
        return fail(b, "invalid", "invalid character in the name of header field",
                    i + 1);
  }
  return 0;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/*
** Transfer-Encoding: libhttp-parser takes any codings ending in chunked
** ("gzip, chunked" is de-chunked and handed up still gzipped) and two
** "chunked" fields as one. loom decodes chunked alone, so the field must
** be present once and be exactly that (as twisted.web: 400 otherwise); a
** proxy in front that reads the codings differently cannot smuggle.
*/
static int check_transfer_encoding(http_box *b) {
  size_t i, seen = 0;
  for (i = 0; i < b->nfields; i++) {
    const head_field *f = &b->fields[i];
    const char *v = b->buf + f->value_off;
    size_t n = f->value_len;
    if (f->name_len != 17 ||
        strncasecmp(b->buf + f->name_off, "transfer-encoding", 17) != 0)
      continue;
    if (++seen > 1)
      return fail_msg(b, "invalid", "more than one Transfer-Encoding field");
    while (n > 0 && is_ows(v[n - 1]))
      n--;
    while (n > 0 && is_ows(*v))
      v++, n--;
    if (n != 7 || strncasecmp(v, "chunked", 7) != 0)
      return fail_msg(b, "invalid",
                      "Transfer-Encoding other than chunked (unsupported)");
  }
  return 0;
}

/* A request the fast lane takes: HTTP/1.x, no body, no upgrade. */
static int plain_request(const http_parser *p) {
  return p->http_major == 1 && !p->upgrade && !(p->flags & F_CHUNKED) &&
         (!(p->flags & F_CONTENTLENGTH) || p->content_length == 0);
}

/* 1 tells the library to expect no body (a HEAD's response, a 304). */
static int on_headers_complete(http_parser *p) {
  http_box *b = p->data;
  int skip;
  if (head_bytes(b) > b->max_head)
    return fail(b, "headerTooLarge", "header section too large, limit",
                b->max_head);
  if (check_names(b) != 0 || check_transfer_encoding(b) != 0)
    return -1;
  if (b->fast) /* the fast lane takes requests without a body only */
    return plain_request(p) ? 0 : -1;
  push_info(b->L, b);
  if (call_handler(b, "onHeaders", 1) != 0)
    return -1;
  skip = lua_toboolean(b->L, -1);
  lua_pop(b->L, 1);
  if (!skip && (p->flags & F_CHUNKED)) {
    /* execute returns at the head's last LF: run checks the body from
    ** the byte after it, then resumes the library there. */
    b->chunks_start = 1;
    http_parser_pause(p, 1);
  }
  return skip ? 1 : 0;
}

/*
** libhttp-parser, built without HTTP_PARSER_STRICT as Debian builds it, is
** lax about a chunked body's framing: any two bytes after a chunk's data
** pass for its CRLF ("5\r\nhelloXX0"), as does "5 junk" or a bare LF in
** an extension. A front end reading those bytes another way is how
** requests are smuggled ("funky chunks"), so parsers/chunked.c checks the
** framing over the same bytes, before the library parses them.
*/
static int check_chunks(http_box *b, const char *data, size_t len) {
  const char *why;
  if (!loom_chunked_active(&b->chunks))
    return 0;
  loom_chunked_check(&b->chunks, data, len, &why);
  return why != NULL ? fail_msg(b, "invalid", why) : 0;
}

/*
** Body bytes wait to be given to onBody once per execute (and before
** onMessageComplete): a chunked body of one-byte chunks would otherwise be
** one Lua call and one string per byte, 40 times its size in memory.
*/
static int add_body(http_box *b, const char *at, size_t n) {
  size_t need = b->body_len + n;
  if (b->body_len == 0) {
    b->body = at; /* the data's own bytes, while there is one piece */
    b->body_len = n;
    return 0;
  }
  if (need > b->body_cap) {
    size_t cap = b->body_cap ? b->body_cap : 4096;
    char *nb;
    while (cap < need)
      cap *= 2;
    if ((nb = malloc(cap)) == NULL)
      return fail(b, "invalid", "out of memory for a body piece of", need);
    memcpy(nb, b->body, b->body_len);
    free(b->body_buf);
    b->body_buf = nb;
    b->body_cap = cap;
  } else if (b->body != b->body_buf) {
    memmove(b->body_buf, b->body, b->body_len);
  }
  memcpy(b->body_buf + b->body_len, at, n);
  b->body = b->body_buf;
  b->body_len = need;
  return 0;
}

/* Gives the waiting body bytes to onBody. */
static int flush_body(http_box *b) {
  size_t n = b->body_len;
  if (n == 0)
    return 0;
  b->body_len = 0;
  lua_pushlstring(b->L, b->body, n);
  if (b->body_cap > 64 * 1024) { /* (a large read's: not kept) */
    free(b->body_buf);
    b->body_buf = NULL;
    b->body_cap = 0;
  }
  if (call_handler(b, "onBody", 1) != 0)
    return -1;
  lua_pop(b->L, 1);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  http_box *b = p->data;
  if (b->fast)
    return -1;
  return n > 0 ? add_body(b, at, n) : 0;
}

static int on_message_complete(http_parser *p) {
  http_box *b = p->data;
  if (b->fast) {
    b->fast_done = 1;
    http_parser_pause(p, 1); /* execute returns after this message */
    return 0;
  }
  if (flush_body(b) != 0 || call_handler(b, "onMessageComplete", 0) != 0)
    return -1;
  lua_pop(b->L, 1);
  if (b->pause_pending)
    http_parser_pause(p, 1); /* execute returns after this message */
  return 0;
}

static const http_parser_settings settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_status = on_status,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* Records the library's error unless a callback recorded its own. */
static void record_error(http_box *b) {
  enum http_errno e = HTTP_PARSER_ERRNO(&b->parser);
  b->dead = 1;
  if (e >= HPE_CB_message_begin && e <= HPE_CB_chunk_complete &&
      b->errname != NULL)
    return;
  b->errname = e == HPE_HEADER_OVERFLOW ? "headerTooLarge"
               : e == HPE_INVALID_EOF_STATE ? "incomplete"
                                            : "invalid";
  snprintf(b->msg, sizeof b->msg, "%s (%s)", http_errno_description(e),
           http_errno_name(e));
}

static int push_failure(lua_State *L, const http_box *b) {
  lua_pushnil(L);
  lua_pushstring(L, b->errname);
  lua_pushstring(L, b->msg);
  return 3;
}

/* Runs the library over data (len 0: end of input) with the handler at
** the top of L's stack; returns the bytes consumed. A failure of this
** file's own (a chunked body's framing, onBody after the library) leaves
** b dead. */
static size_t run(lua_State *L, http_box *b, const char *data, size_t len) {
  size_t n = 0;
  enum http_errno e;
  lua_getiuservalue(L, 1, 1);
  b->L = L;
  b->handler = lua_gettop(L);
  b->busy = 1;
  b->errname = NULL;
  if (len > 0 && check_chunks(b, data, len) != 0) { /* a body begun before */
    b->dead = 1;
  } else {
    for (;;) { /* (data is NULL at the end of input: no offset to it) */
      n += http_parser_execute(&b->parser, &settings, len ? data + n : data,
                               len - n);
      if (!b->chunks_start)
        break;
      b->chunks_start = 0; /* n is at the head's last LF */
      http_parser_pause(&b->parser, 0);
      loom_chunked_start(&b->chunks);
      if (n + 1 < len && check_chunks(b, data + n + 1, len - n - 1) != 0) {
        b->dead = 1;
        break;
      }
    }
    e = HTTP_PARSER_ERRNO(&b->parser);
    if (b->dead || (e != HPE_OK && e != HPE_PAUSED))
      b->body_len = 0; /* (a broken message's: the error says why) */
    else if (flush_body(b) != 0)
      b->dead = 1;
  }
  b->busy = 0;
  b->L = NULL;
  lua_settop(L, b->handler - 1);
  return n;
}

/* ------------------------------------------- the fast lane's interface */

static void init_parser(http_box *b, enum http_parser_type type);

void loom__http_push_class(lua_State *L) {
  luaL_getmetatable(L, HTTP_PARSER_CLASS);
}

loom_http_parser *loom__http_to_parser(lua_State *L, int idx, int mt) {
  http_box *b = lua_touserdata(L, idx);
  int same;
  if (b == NULL || !lua_getmetatable(L, idx))
    return NULL;
  same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  if (!same || b->busy || b->dead || b->parser.type != HTTP_REQUEST ||
      b->pause_pending || HTTP_PARSER_ERRNO(&b->parser) != HPE_OK)
    return NULL;
  return b;
}

int loom__http_next_request(loom_http_parser *b, const char *data,
                            size_t len, size_t *used, loom_http_head *head) {
  size_t n;
  b->fast = 1;
  b->fast_done = 0;
  b->busy = 1;
  b->errname = NULL;
  n = http_parser_execute(&b->parser, &settings, data, len);
  b->busy = 0;
  b->fast = 0;
  if (!b->fast_done || HTTP_PARSER_ERRNO(&b->parser) != HPE_PAUSED)
    return LOOM_HTTP_OTHER; /* (the caller resets the parser) */
  http_parser_pause(&b->parser, 0);
  *used = n;
  head->method = http_method_str((enum http_method)b->parser.method);
  head->url = b->buf;
  head->url_len = b->url_len;
  head->major = b->parser.http_major;
  head->minor = b->parser.http_minor;
  head->keep_alive = http_should_keep_alive(&b->parser);
  head->nfields = b->nfields;
  return LOOM_HTTP_PLAIN;
}

/* The value without its trailing whitespace (RFC 9110's OWS). */
void loom__http_field(const loom_http_parser *b, size_t i, const char **name,
                      size_t *name_len, const char **value,
                      size_t *value_len) {
  const head_field *f = &b->fields[i];
  size_t vlen = f->value_len;
  while (vlen > 0 && (b->buf[f->value_off + vlen - 1] == ' ' ||
                      b->buf[f->value_off + vlen - 1] == '\t'))
    vlen--;
  *name = b->buf + f->name_off;
  *name_len = f->name_len;
  *value = b->buf + f->value_off;
  *value_len = vlen;
}

void loom__http_reset(loom_http_parser *b) {
  init_parser(b, (enum http_parser_type)b->parser.type);
}

static int check_usable(lua_State *L, http_box *b) {
  if (b->busy)
    return luaL_error(L, "HTTP parser in use (called from its handler?)");
  return 0;
}

/* p:execute(data[, pos]) -> bytes consumed from pos (1-based, default 1)
** | nil, errname, msg */
static int l_execute(lua_State *L) {
  http_box *b = check_parser(L);
  size_t len, n;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer pos = luaL_optinteger(L, 3, 1);
  enum http_errno e;
  luaL_argcheck(L, pos >= 1 && (lua_Unsigned)pos - 1 <= len, 3,
                "out of range");
  /* From pos: pipelined messages are taken without copying the rest. */
  data += pos - 1;
  len -= (size_t)pos - 1;
  check_usable(L, b);
  if (b->dead)
    return push_failure(L, b);
  /* Paused, or after an upgrade: the rest is not this parser's. */
  if (len == 0 || HTTP_PARSER_ERRNO(&b->parser) == HPE_PAUSED ||
      b->parser.upgrade) {
    lua_pushinteger(L, 0);
    return 1;
  }
  n = run(L, b, data, len);
  if (b->dead)
    return push_failure(L, b);
  e = HTTP_PARSER_ERRNO(&b->parser);
  if (e != HPE_OK && e != HPE_PAUSED) {
    record_error(b);
    return push_failure(L, b);
  }
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* p:finish() -> true | nil, errname, msg: the peer closed. */
static int l_finish(lua_State *L) {
  http_box *b = check_parser(L);
  enum http_errno e;
  check_usable(L, b);
  if (b->dead)
    return push_failure(L, b);
  if (HTTP_PARSER_ERRNO(&b->parser) == HPE_PAUSED || b->parser.upgrade) {
    lua_pushboolean(L, 1);
    return 1;
  }
  run(L, b, NULL, 0);
  if (b->dead)
    return push_failure(L, b);
  e = HTTP_PARSER_ERRNO(&b->parser);
  if (e != HPE_OK && e != HPE_PAUSED) {
    record_error(b);
    return push_failure(L, b);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_pause(lua_State *L) {
  http_box *b = check_parser(L);
  b->pause_pending = 1;
  return 0;
}

static int l_resume(lua_State *L) {
  http_box *b = check_parser(L);
  b->pause_pending = 0;
  if (!b->dead && HTTP_PARSER_ERRNO(&b->parser) == HPE_PAUSED)
    http_parser_pause(&b->parser, 0);
  return 0;
}

static void init_parser(http_box *b, enum http_parser_type type) {
  http_parser_init(&b->parser, type);
  b->parser.data = b;
  b->len = b->url_len = b->nfields = 0;
  b->last = LAST_NONE;
  b->pause_pending = b->dead = b->chunks_start = 0;
  b->chunks.state = 0;
  b->body_len = 0;
  b->errname = NULL;
  b->msg[0] = '\0';
}

static int l_reset(lua_State *L) {
  http_box *b = check_parser(L);
  check_usable(L, b);
  init_parser(b, (enum http_parser_type)b->parser.type);
  return 0;
}

static int l_gc(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_PARSER_CLASS);
  free(b->buf);
  free(b->fields);
  free(b->body_buf);
  b->buf = b->body_buf = NULL;
  b->fields = NULL;
  b->cap = b->fields_cap = b->body_cap = 0;
  return 0;
}

static size_t limit_field(lua_State *L, int idx, const char *k, size_t dflt) {
  lua_Integer v;
  size_t r = dflt;
  if (lua_getfield(L, idx, k) != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 1)
      luaL_error(L, "limits.%s must be a positive integer", k);
    r = (size_t)v;
  }
  lua_pop(L, 1);
  return r;
}

static const char *const kinds[] = {"request", "response", NULL};

/* core.httpParser(kind, handler[, limits]) */
static int l_http_parser(lua_State *L) {
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  http_box *b;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TTABLE);
  b = lua_newuserdatauv(L, sizeof *b, 1);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, HTTP_PARSER_CLASS);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  init_parser(b, kind == 0 ? HTTP_REQUEST : HTTP_RESPONSE);
  b->max_head = b->max_headers = b->max_url = 0;
  if (lua_istable(L, 3)) {
    b->max_head = limit_field(L, 3, "maxHeaderSize", DEFAULT_MAX_HEAD);
    b->max_headers = limit_field(L, 3, "maxHeaders", DEFAULT_MAX_HEADERS);
    b->max_url = limit_field(L, 3, "maxUrl", DEFAULT_MAX_URL);
  } else {
    b->max_head = DEFAULT_MAX_HEAD;
    b->max_headers = DEFAULT_MAX_HEADERS;
    b->max_url = DEFAULT_MAX_URL;
  }
  return 1;
}

static const luaL_Reg parser_methods[] = {
  {"execute", l_execute},
  {"finish", l_finish},
  {"pause", l_pause},
  {"resume", l_resume},
  {"reset", l_reset},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_http(lua_State *L) {
  if (luaL_newmetatable(L, HTTP_PARSER_CLASS)) {
    luaL_newlibtable(L, parser_methods);
    lua_pushvalue(L, -2); /* the metatable, check_parser's upvalue */
    luaL_setfuncs(L, parser_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_http_parser);
  lua_setfield(L, -2, "httpParser");
}
