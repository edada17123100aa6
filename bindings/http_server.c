/*
** http_server.c: the fast lane of loom.web's HTTP server.
**
**   Channel.dataReceived = core.httpChannelReader(Request, findAndRender,
**     failure.handler, PHRASES, fireNotify,
**     {Channel._feed, .onHeaders, .onMessageComplete, .requestDone, ._arm},
**     {Request.init, .process, ._rendered})
**
** A read enters the HTTPChannel (lua/loom/web/server.lua) here. When the
** channel is idle with nothing buffered, each request without a body is
** parsed (bindings/http.c, no Lua), made into its Request here, and
** rendered with ONE Lua call (findAndRender: the resource's look-up and
** render). A string result whose response is the plain case (HTTP/1.1, a
** code with a body, no cookie, no header the server frames itself) is
** answered here as one write, and the request finished and the channel
** made idle again as Request:_rendered, finished and Channel:requestDone
** would. Everything else goes to the Lua path, from the state it expects:
** a request that is not plain is parsed again by Channel:_feed (the
** parser reset to the message's start; a POST, PUT or PATCH, which nearly
** always has a body, goes there unparsed), a result that is not plain
** goes to Request:_processRendered, a connection to close to requestDone.
** So the Lua code stays the definition of the server's behaviour, and this
** file a shortcut through it that specs compare with it.
*/
#include <math.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "binding.h"
#include "http.h"

enum {
  UP_REQUEST = 1, /* loom.web.server_request.Request */
  UP_RENDER,      /* findAndRender(request) -> the render's result */
  UP_MSGH,        /* failure.handler */
  UP_PHRASES,     /* code -> reason phrase */
  UP_NOTIFY,      /* fireNotify(request) */
  /* The methods the fast lane stands in for: a class with others is Lua's */
  UP_FEED, UP_ON_HEADERS, UP_ON_COMPLETE, UP_DONE, UP_ARM, /* Channel's */
  UP_INIT, UP_PROCESS, UP_RENDERED,                        /* Request's */
  UP_PARSER_MT,   /* the metatable of core.httpParser's parsers */
  UP_TCP_MT,      /* the stream transports' metatables: their write is */
  UP_UNIX_MT,     /* called from C, without a Lua string */
  UP_COUNT = UP_UNIX_MT
};

/* l_data_received's stack. */
enum { SELF = 1, DATA, SITE, PARSER, TRANSPORT };

#define FLUSH_AT (64 * 1024) /* as server_request.lua: larger goes apart */
#define OUT_STACK 4096       /* a response this size is made on the C stack */
#define HEAD_MAX 2048        /* a longer head is left to Lua */

/* --------------------------------------------------------------- fields */

/*
** The strings this file uses as keys and values are upvalues of
** dataReceived, made once: a C string key would be looked up in Lua's
** string cache on every use, which missed often enough to cost a fifth
** of a request.
*/
#define KEY_LIST(X) \
  X(K_dead, "dead") \
  X(K_processing, "processing") \
  X(K_feeding, "_feeding") \
  X(K_state, "state") \
  X(K_startedWriting, "startedWriting") \
  X(K_request, "request") \
  X(K_persistent, "persistent") \
  X(K_finished, "finished") \
  X(K_writePaused, "_writePaused") \
  X(K_switchTo, "_switchTo") \
  X(K_transport, "transport") \
  X(K_site, "site") \
  X(K_sentLength, "sentLength") \
  X(K_responseHeaders, "responseHeaders") \
  X(K_idleTimeout, "idleTimeout") \
  X(K_idle, "idle") \
  X(K_args, "args") \
  X(K_direct, "_direct") \
  X(K_deadline, "_deadline") \
  X(K_write, "write") \
  X(K_uri, "uri") \
  X(K_serverName, "serverName") \
  X(K_requestFactory, "requestFactory") \
  X(K_requestDone, "requestDone") \
  X(K_reading, "reading") \
  X(K_rawHeaders, "rawHeaders") \
  X(K_prepath, "prepath") \
  X(K_postpath, "postpath") \
  X(K_phrase, "phrase") \
  X(K_path, "path") \
  X(K_parser, "parser") \
  X(K_method, "method") \
  X(K_log, "log") \
  X(K_init, "init") \
  X(K_host, "host") \
  X(K_headers, "headers") \
  X(K_expect, "expect") \
  X(K_defaultContentType, "defaultContentType") \
  X(K_cookies, "cookies") \
  X(K_code, "code") \
  X(K_clientproto, "clientproto") \
  X(K_channel, "channel") \
  X(K_buffer, "buffer") \
  X(K_accessLog, "accessLog") \
  X(K_wallClock, "_wallClock") \
  X(K_timerAt, "_timerAt") \
  X(K_producer, "_producer") \
  X(K_processRendered, "_processRendered") \
  X(K_out, "_out") \
  X(K_now, "_now") \
  X(K_notify, "_notify") \
  X(K_lostReason, "_lostReason") \
  X(K_feed, "_feed") \
  X(K_checkReading, "_checkReading") \
  X(K_arm, "_arm") \
  X(K_onHeaders, "onHeaders") \
  X(K_onMessageComplete, "onMessageComplete") \
  X(K_process, "process") \
  X(K_rendered, "_rendered") \
  X(K_HTTP11, "HTTP/1.1") \
  X(K_HTTP10, "HTTP/1.0") \
  X(K_EMPTY, "") \
  X(K_SEMI, "; ") \
  X(K_COMMA, ", ")

enum {
#define KEY_ENUM(k, s) k,
  KEY_LIST(KEY_ENUM)
#undef KEY_ENUM
  KEY_COUNT
};

static const char *const key_strings[] = {
#define KEY_STRING(k, s) s,
  KEY_LIST(KEY_STRING)
#undef KEY_STRING
};

#define KEY(k) lua_upvalueindex(UP_COUNT + 1 + (k))

static int raw(lua_State *L, int t, int k) {
  lua_pushvalue(L, KEY(k));
  return lua_rawget(L, t);
}

/* t[k] with metamethods (a class's default, a userdata's method). */
static int get(lua_State *L, int t, int k) {
  lua_pushvalue(L, KEY(k));
  return lua_gettable(L, t);
}

/* t[k] = the value on the top (popped); t is an instance (no __newindex). */
static void set(lua_State *L, int t, int k) {
  lua_pushvalue(L, KEY(k));
  lua_insert(L, -2);
  lua_rawset(L, t);
}

static int raw_truthy(lua_State *L, int t, int k) {
  int r;
  raw(L, t, k);
  r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* t[k] = the value at idx */
static void set_value(lua_State *L, int t, int k, int idx) {
  lua_pushvalue(L, KEY(k));
  lua_pushvalue(L, idx);
  lua_rawset(L, t);
}

static void set_bool(lua_State *L, int t, int k, int v) {
  lua_pushvalue(L, KEY(k));
  lua_pushboolean(L, v);
  lua_rawset(L, t);
}

/* t[k] == the string of key v */
static int raw_is(lua_State *L, int t, int k, int v) {
  int r;
  raw(L, t, k);
  r = lua_rawequal(L, -1, KEY(v));
  lua_pop(L, 1);
  return r;
}

/* Calls self:name(args on the top) with nargs arguments. */
static void call_method(lua_State *L, int name, int nargs) {
  get(L, SELF, name);
  lua_pushvalue(L, SELF);
  lua_rotate(L, -2 - nargs, 2);
  lua_call(L, nargs + 1, 0);
}

/* The Lua path: self:_feed(data[pos..]). */
static void feed_lua(lua_State *L, const char *data, size_t len, size_t pos) {
  set_bool(L, SELF, K_feeding, 0);
  if (pos == 0)
    lua_pushvalue(L, DATA);
  else
    lua_pushlstring(L, data + pos, len - pos);
  call_method(L, K_feed, 1);
}

/*
** Whether the channel is where Channel:_feed would parse at once: idle,
** nothing buffered, not feeding or processing, the peer reading its
** answers, the wall clock (a Site with a clock of its own is Lua's).
** Pushes the site, the parser and the transport when it is.
*/
/* Whether cls (a class: t at cls) has the methods of the upvalues. */
static int same_methods(lua_State *L, int cls, const int *keys,
                        const int *ups, int n) {
  int i, same = 1;
  for (i = 0; same && i < n; i++) {
    get(L, cls, keys[i]);
    same = lua_rawequal(L, -1, lua_upvalueindex(ups[i]));
    lua_pop(L, 1);
  }
  return same;
}

static const int channel_keys[] = {K_feed, K_onHeaders, K_onMessageComplete,
                                   K_requestDone, K_arm};
static const int channel_ups[] = {UP_FEED, UP_ON_HEADERS, UP_ON_COMPLETE,
                                  UP_DONE, UP_ARM};
static const int request_keys[] = {K_init, K_process, K_rendered};
static const int request_ups[] = {UP_INIT, UP_PROCESS, UP_RENDERED};

static loom_http_parser *channel_plain(lua_State *L) {
  loom_http_parser *p;
  size_t n;
  int same;
  if (raw_truthy(L, SELF, K_feeding) || /* (idle: not processing) */
      raw_truthy(L, SELF, K_writePaused) ||
      !raw_truthy(L, SELF, K_wallClock) || /* (_switchTo: dead) */
      !raw_is(L, SELF, K_state, K_idle))
    return 0;
  if (raw(L, SELF, K_buffer) != LUA_TSTRING || (lua_tolstring(L, -1, &n), n))
    return 0;
  lua_pop(L, 1);
  if (!lua_getmetatable(L, SELF))
    return 0;
  same = same_methods(L, lua_gettop(L), channel_keys, channel_ups, 5);
  lua_pop(L, 1);
  if (!same)
    return 0;
  if (raw(L, SELF, K_site) != LUA_TTABLE)
    return 0;
  raw(L, SELF, K_parser);
  p = loom__http_to_parser(L, PARSER, lua_upvalueindex(UP_PARSER_MT));
  if (p != NULL)
    raw(L, SELF, K_transport);
  return p;
}

/* ------------------------------------------------------------- requests */

/* postpath: the path's segments after its leading "/", decoded. */
static void push_postpath(lua_State *L, const char *path, size_t n) {
  const char *p = path + 1, *end = path + n;
  lua_Integer i = 0;
  lua_createtable(L, 4, 0);
  for (;;) {
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *stop = slash ? slash : end;
    loom__push_unquoted(L, p, (size_t)(stop - p), 0);
    lua_rawseti(L, -2, ++i);
    if (slash == NULL)
      break;
    p = slash + 1;
  }
}

/*
** headers[lower(name)] = value, a repeated field joined as Lua does; the
** name and the value are the strings at -2 and -1 (popped). Returns which
** of the fields onHeaders checks this one is.
*/
enum { FIELD_OTHER, FIELD_HOST, FIELD_EXPECT };

static int add_header(lua_State *L, int headers, const char *name,
                      size_t nlen) {
  char small[128];
  char *lower = small;
  size_t i;
  int upper = 0, which = FIELD_OTHER, cookie = 0;
  int name_idx = lua_gettop(L) - 1;
  if (nlen > sizeof small)
    lower = lua_newuserdatauv(L, nlen, 0); /* (a rare long name) */
  for (i = 0; i < nlen; i++) {
    unsigned char c = (unsigned char)name[i];
    upper |= c >= 'A' && c <= 'Z';
    lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  if (nlen == 4 && memcmp(lower, "host", 4) == 0)
    which = FIELD_HOST;
  else if (nlen == 6 && memcmp(lower, "expect", 6) == 0)
    which = FIELD_EXPECT;
  else if (nlen == 6 && memcmp(lower, "cookie", 6) == 0)
    cookie = 1;
  if (!upper) /* the name is its own lower case */
    lua_pushvalue(L, name_idx);
  else
    lua_pushlstring(L, lower, nlen);
  if (lower != small)
    lua_remove(L, name_idx + 2);
  lua_replace(L, name_idx); /* lname, value */
  lua_pushvalue(L, -2);
  if (lua_rawget(L, headers) != LUA_TNIL) { /* lname, value, old */
    lua_pushvalue(L, KEY(cookie ? K_SEMI : K_COMMA));
    lua_rotate(L, -3, -1); /* lname, old, sep, value */
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  lua_rawset(L, headers);
  return which;
}

/*
** The request checks of Channel:onHeaders the fast lane passes on to Lua:
** HTTP/1.1 without exactly one Host field, any Expect. Pushes headers and
** rawHeaders (in that order) when the request is the fast lane's.
*/
static int push_headers(lua_State *L, loom_http_parser *p,
                        const loom_http_head *h) {
  size_t i, nlen, vlen;
  const char *name, *value;
  int headers, raws, hosts = 0, host_ok = 1;
  lua_createtable(L, 0, (int)h->nfields);
  headers = lua_gettop(L);
  lua_createtable(L, (int)h->nfields, 0);
  raws = headers + 1;
  for (i = 0; i < h->nfields; i++) {
    loom__http_field(p, i, &name, &nlen, &value, &vlen);
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, name, nlen);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, 1);
    lua_pushlstring(L, value, vlen);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, 2);
    lua_rotate(L, -3, -1); /* name, value, pair */
    lua_rawseti(L, raws, (lua_Integer)i + 1);
    switch (add_header(L, headers, name, nlen)) {
    case FIELD_EXPECT:
      return 0;
    case FIELD_HOST: /* two Host fields arrive joined with ", " */
      hosts++;
      host_ok = host_ok && memchr(value, ',', vlen) == NULL;
      break;
    }
  }
  return h->minor == 0 || (hosts == 1 && host_ok);
}

/*
** Pushes the Request of the head as Request.new would make it (its fields
** as server_request.lua's requestFields), or returns 0 (and leaves the
** stack as it found it) for one the Lua path must make: an absolute-form
** target, an HTTP version other than 1.0 and 1.1, a factory with its own
** init, a request onHeaders would refuse.
*/
static int push_request(lua_State *L, loom_http_parser *p,
                        const loom_http_head *h) {
  int top = lua_gettop(L), cls = top + 1, req = top + 4;
  const char *q;
  size_t path_len;
  if (h->url_len == 0 || h->url[0] != '/' || h->major != 1 || h->minor > 1)
    return 0;
  get(L, SITE, K_requestFactory);
  if (!lua_istable(L, cls) ||
      !same_methods(L, cls, request_keys, request_ups, 3)) {
    lua_settop(L, top);
    return 0;
  }
  if (!push_headers(L, p, h)) { /* headers at top + 2, rawHeaders + 3 */
    lua_settop(L, top);
    return 0;
  }
  lua_createtable(L, 0, 16); /* 16 fields: a 16-slot table, no rehash */
  set_value(L, req, K_headers, top + 2);
  set_value(L, req, K_rawHeaders, top + 3);
  set_value(L, req, K_channel, SELF);
  set_value(L, req, K_site, SITE);
  set_value(L, req, K_transport, TRANSPORT);
  lua_pushvalue(L, KEY(K_method));
  lua_pushstring(L, h->method);
  lua_rawset(L, req);
  lua_pushvalue(L, KEY(K_clientproto));
  lua_pushvalue(L, KEY(h->minor == 1 ? K_HTTP11 : K_HTTP10));
  lua_rawset(L, req);
  lua_pushvalue(L, KEY(K_args));
  lua_createtable(L, 0, 0);
  lua_rawset(L, req);
  lua_pushlstring(L, h->url, h->url_len);
  lua_pushvalue(L, -1);
  set(L, req, K_uri);
  q = memchr(h->url, '?', h->url_len);
  path_len = q ? (size_t)(q - h->url) : h->url_len;
  if (q != NULL) { /* the path, and the query's pairs in args */
    lua_pop(L, 1);
    lua_pushlstring(L, h->url, path_len);
    raw(L, req, K_args);
    loom__parse_query(L, q + 1, h->url_len - path_len - 1, lua_gettop(L));
    lua_pop(L, 1);
  }
  set(L, req, K_path);
  if (path_len == 1) { /* "/" */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, KEY(K_EMPTY));
    lua_rawseti(L, -2, 1);
  } else {
    push_postpath(L, h->url, path_len);
  }
  set(L, req, K_postpath);
  lua_pushvalue(L, KEY(K_prepath));
  lua_createtable(L, 4, 0); /* (room for a traversal 4 deep) */
  lua_rawset(L, req);
  lua_pushvalue(L, KEY(K_responseHeaders));
  lua_createtable(L, 6, 2); /* (room for setHeader's first two headers) */
  lua_rawset(L, req);
  /* startedWriting, finished and sentLength are the class's false, false
  ** and 0 until the response sets them (the table has room for them). */
  lua_pushvalue(L, cls);
  lua_setmetatable(L, req);
  lua_copy(L, req, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

/* ------------------------------------------------------------ responses */

typedef struct out_buf {
  char *p;
  size_t len, cap;
} out_buf;

static int out_add(out_buf *o, const char *s, size_t n) {
  if (o->len + n > o->cap)
    return 0;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  return 1;
}

static int out_str(out_buf *o, const char *s) { return out_add(o, s, strlen(s)); }

/* n in decimal (snprintf's format parsing was a twentieth of a request). */
static int out_uint(out_buf *o, size_t n) {
  char digits[24];
  size_t i = sizeof digits;
  do {
    digits[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  return out_add(o, digits + i, sizeof digits - i);
}

/* The Date line, made once a second (as Request's httpDate). */
static _Thread_local struct {
  time_t second;
  char line[64];
  size_t len;
} date_cache = {-1, "", 0};

static int out_date(out_buf *o, double now) {
  time_t t = (time_t)floor(now);
  if (t != date_cache.second) {
    struct tm tm;
    gmtime_r(&t, &tm);
    date_cache.len = strftime(date_cache.line, sizeof date_cache.line,
                              "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    date_cache.second = t;
  }
  return out_add(o, date_cache.line, date_cache.len);
}

/* A header the server frames or adds itself: such a response is Lua's. */
static int server_header(const char *l, size_t n) {
  switch (n) {
  case 4: return memcmp(l, "date", 4) == 0;
  case 6: return memcmp(l, "server", 6) == 0;
  case 10: return memcmp(l, "connection", 10) == 0;
  case 14: return memcmp(l, "content-length", 14) == 0;
  case 17: return memcmp(l, "transfer-encoding", 17) == 0;
  default: return 0;
  }
}

/*
** The head Request's headOf makes for a string body of len bytes, in o,
** when the response is the fast lane's: HTTP/1.1, not HEAD, a code with a
** body and the standard phrase, no cookie, nothing held back, no header
** the server frames itself. Returns 0 otherwise, having changed nothing.
*/
static int make_head(lua_State *L, int req, const loom_http_head *h,
                     size_t len, int persistent, double now, out_buf *o) {
  int top = lua_gettop(L), rh, has_type = 0, ok = 0;
  lua_Integer code = 200, i, n;
  if (h->minor != 1 || strcmp(h->method, "HEAD") == 0 || len >= FLUSH_AT ||
      raw_truthy(L, req, K_startedWriting) || raw_truthy(L, req, K_finished) ||
      raw_truthy(L, req, K_lostReason) || raw_truthy(L, req, K_phrase) ||
      raw_truthy(L, req, K_cookies) || raw_truthy(L, SELF, K_out))
    return 0;
  if (raw(L, req, K_code) != LUA_TNIL) {
    int isnum;
    code = lua_tointegerx(L, -1, &isnum);
    if (!isnum)
      goto done;
  }
  if (code < 200 || code == 204 || code == 304 || code > 999)
    goto done;
  if (lua_rawgeti(L, lua_upvalueindex(UP_PHRASES), code) != LUA_TSTRING)
    goto done;
  if (!out_add(o, "HTTP/1.1 ", 9) || !out_uint(o, (size_t)code) ||
      !out_add(o, " ", 1) || !out_str(o, lua_tostring(L, -1)) ||
      !out_add(o, "\r\nContent-Length: ", 18) || !out_uint(o, len) ||
      !out_add(o, "\r\n", 2))
    goto done;
  if (raw(L, req, K_responseHeaders) != LUA_TTABLE)
    goto done;
  rh = lua_gettop(L); /* name, value, lname from 1; lname -> number */
  n = (lua_Integer)lua_rawlen(L, rh);
  for (i = 3; i <= n; i += 3) {
    size_t ln, nn, vn;
    const char *lname, *name, *value;
    int still;
    lua_rawgeti(L, rh, i);
    lua_pushvalue(L, -1);
    still = lua_rawget(L, rh) == LUA_TNUMBER && lua_tointeger(L, -1) == i / 3;
    lua_pop(L, 1);
    if (!still) { /* removed since it was set */
      lua_pop(L, 1);
      continue;
    }
    lname = lua_tolstring(L, -1, &ln);
    if (lname == NULL || server_header(lname, ln))
      goto done;
    if (ln == 12 && memcmp(lname, "content-type", 12) == 0)
      has_type = 1;
    lua_rawgeti(L, rh, i - 2);
    lua_rawgeti(L, rh, i - 1);
    name = lua_tolstring(L, -2, &nn);
    value = lua_tolstring(L, -1, &vn);
    if (name == NULL || value == NULL || !out_add(o, name, nn) ||
        !out_add(o, ": ", 2) || !out_add(o, value, vn) ||
        !out_add(o, "\r\n", 2))
      goto done;
    lua_pop(L, 3);
  }
  if (!has_type) {
    if (get(L, SITE, K_defaultContentType) != LUA_TSTRING ||
        !out_add(o, "Content-Type: ", 14) ||
        !out_str(o, lua_tostring(L, -1)) || !out_add(o, "\r\n", 2))
      goto done;
  }
  if (!out_date(o, now))
    goto done;
  if (get(L, SITE, K_serverName) == LUA_TSTRING) {
    if (!out_add(o, "Server: ", 8) || !out_str(o, lua_tostring(L, -1)) ||
        !out_add(o, "\r\n", 2))
      goto done;
  } else if (lua_toboolean(L, -1)) {
    goto done; /* (a serverName that is not a string: Lua says how) */
  }
  if (!persistent && !out_str(o, "Connection: close\r\n"))
    goto done;
  ok = out_add(o, "\r\n", 2);
done:
  lua_settop(L, top);
  return ok;
}

/* The transport's box when it is a stream transport's, else NULL. */
static transport_box *stream_box(lua_State *L) {
  transport_box *box = lua_touserdata(L, TRANSPORT);
  int mine = 0;
  if (box != NULL && lua_getmetatable(L, TRANSPORT)) {
    mine = lua_rawequal(L, -1, lua_upvalueindex(UP_TCP_MT)) ||
           lua_rawequal(L, -1, lua_upvalueindex(UP_UNIX_MT));
    lua_pop(L, 1);
  }
  return mine ? box : NULL;
}

/*
** Writes head (in out, which has room for OUT_STACK bytes) and the body
** (s, len: the string at index body) as one write: from the C stack to a
** stream transport, else as one Lua string to transport:write.
*/
static void send_response(lua_State *L, char *out, size_t head, const char *s,
                 size_t len, int body) {
  transport_box *box;
  if (raw_truthy(L, SELF, K_dead))
    return;
  box = stream_box(L);
  if (head + len <= OUT_STACK) {
    memcpy(out + head, s, len);
    if (box != NULL) {
      loom__transport_write(L, box, out, head + len);
      return;
    }
    get(L, TRANSPORT, K_write);
    lua_pushvalue(L, TRANSPORT);
    lua_pushlstring(L, out, head + len);
  } else {
    get(L, TRANSPORT, K_write);
    lua_pushvalue(L, TRANSPORT);
    lua_pushlstring(L, out, head);
    lua_pushvalue(L, body);
    lua_concat(L, 2);
  }
  lua_call(L, 2, 0);
}

/*
** Sends the string at body as req's whole response and finishes req as
** Request:_rendered and finished do (the access log, notifyFinish).
** Returns 0, having changed nothing, when the response is not the fast
** lane's, else whether the connection stays open.
*/
enum { RESPONDED_KEEP = 1, RESPONDED_CLOSE };

static int respond(lua_State *L, int req, int body, const loom_http_head *h,
                   double now) {
  char stack[OUT_STACK];
  out_buf o = {stack, 0, HEAD_MAX};
  size_t len;
  const char *s = lua_tolstring(L, body, &len);
  int persistent = raw_truthy(L, SELF, K_persistent);
  if (!make_head(L, req, h, len, persistent, now, &o))
    return 0;
  set_bool(L, req, K_startedWriting, 1);
  lua_pushvalue(L, KEY(K_sentLength));
  lua_pushinteger(L, (lua_Integer)len);
  lua_rawset(L, req);
  send_response(L, stack, o.len, s, len, body);
  set_bool(L, req, K_finished, 1);
  get(L, SITE, K_accessLog);
  if (lua_toboolean(L, -1)) {
    get(L, SITE, K_log);
    lua_pushvalue(L, SITE);
    lua_pushvalue(L, req);
    lua_call(L, 2, 0);
  }
  lua_pop(L, 1);
  if (raw(L, req, K_notify) != LUA_TNIL) {
    lua_pushvalue(L, lua_upvalueindex(UP_NOTIFY));
    lua_pushvalue(L, req);
    lua_call(L, 1, 0);
  }
  lua_pop(L, 1);
  return persistent ? RESPONDED_KEEP : RESPONDED_CLOSE;
}

/*
** Channel:requestDone(req) for a finished request on a kept-alive
** connection: idle again, the idle timeout's deadline set. Returns 0 when
** the channel is to go on with the next request of the read.
*/
static int request_done(lua_State *L, int req, int persistent, double now) {
  double idle;
  if (raw(L, SELF, K_request) == LUA_TNIL || !lua_rawequal(L, -1, req)) {
    lua_pop(L, 1);
    return 1; /* (not the channel's request: Lua's requestDone ignores it) */
  }
  lua_pop(L, 1);
  if (!persistent || raw_truthy(L, SELF, K_dead) ||
      raw_truthy(L, SELF, K_switchTo)) {
    lua_pushvalue(L, req);
    call_method(L, K_requestDone, 1);
    return 1;
  }
  /* (state is still "idle": process leaves it for the Lua path to set) */
  set_bool(L, SELF, K_request, 0);
  set_bool(L, SELF, K_producer, 0);
  set_bool(L, SELF, K_processing, 0);
  get(L, SITE, K_idleTimeout);
  idle = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (raw(L, SELF, K_timerAt) == LUA_TNUMBER && idle != HUGE_VAL &&
      now + idle >= lua_tonumber(L, -1)) {
    lua_pushvalue(L, KEY(K_deadline));
    lua_pushnumber(L, now + idle); /* the timer fires first: it will see */
    lua_rawset(L, SELF);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    get(L, SITE, K_idleTimeout);
    lua_pushnumber(L, now);
    call_method(L, K_arm, 2);
  }
  return 0;
}

/* ------------------------------------------------------------- the read */

/*
** The request at the top, parsed from the read: rendered, and answered
** here when it can be. Returns 1 when the loop must stop (the request goes
** on in Lua, or the channel closes).
*/
static int process(lua_State *L, const loom_http_head *h, double now) {
  int req = lua_gettop(L), ok, persistent;
  set_value(L, SELF, K_request, req);
  lua_pushvalue(L, KEY(K_persistent));
  lua_pushboolean(L, h->keep_alive);
  lua_rawset(L, SELF);
  set_bool(L, SELF, K_processing, 1);
  set_bool(L, SELF, K_direct, 1);
  /* The state stays "idle" and the idle deadline set while the render
  ** runs: nothing reads them before it returns (no timer fires, no read
  ** is parsed: _feeding). A request left to Lua gets them below. */
  lua_pushvalue(L, lua_upvalueindex(UP_MSGH));
  lua_pushvalue(L, lua_upvalueindex(UP_RENDER));
  lua_pushvalue(L, req);
  ok = lua_pcall(L, 1, 1, req + 1) == LUA_OK;
  lua_remove(L, req + 1); /* the handler; the result (or Failure) at +1 */
  if (ok && lua_type(L, req + 1) == LUA_TSTRING &&
      (persistent = respond(L, req, req + 1, h, now)) != 0) {
    set_bool(L, SELF, K_direct, 0);
    ok = request_done(L, req, persistent == RESPONDED_KEEP, now);
    lua_settop(L, req - 1);
    return ok;
  }
  if (raw(L, SELF, K_request) != LUA_TNIL && lua_rawequal(L, -1, req)) {
    /* still the channel's: processing, as onMessageComplete leaves it */
    lua_pushvalue(L, KEY(K_state));
    lua_pushvalue(L, KEY(K_processing));
    lua_rawset(L, SELF);
    set_bool(L, SELF, K_deadline, 0);
  }
  lua_pop(L, 1);
  /* Request:_processRendered(ok, result): the rest of Request:process */
  get(L, req, K_processRendered);
  lua_pushvalue(L, req);
  lua_pushboolean(L, ok);
  lua_pushvalue(L, req + 1);
  lua_call(L, 3, 0);
  lua_settop(L, req - 1);
  return 1;
}

/* self:dataReceived(data) */
static int l_data_received(lua_State *L) {
  size_t len, pos = 0, used;
  const char *data = luaL_checklstring(L, DATA, &len);
  loom_http_parser *p;
  loom_http_head h;
  uv_timeval64_t tv;
  double now;
  lua_settop(L, DATA);
  luaL_checkstack(L, 40, "HTTP channel"); /* (past LUA_MINSTACK's 20) */
  if (raw_truthy(L, SELF, K_dead))
    return 0;
  if ((p = channel_plain(L)) == NULL) {
    lua_settop(L, DATA);
    feed_lua(L, data, len, 0);
    return 0;
  }
  uv_gettimeofday(&tv); /* one clock read for the requests of a read */
  now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  lua_pushvalue(L, KEY(K_now));
  lua_pushnumber(L, now);
  lua_rawset(L, SELF);
  set_bool(L, SELF, K_feeding, 1);
  while (pos < len) {
    /* POST, PUT and PATCH nearly always carry a body, which is the Lua
    ** path's: their head parsed here first would be parsed twice. */
    if (data[pos] == 'P' ||
        loom__http_next_request(p, data + pos, len - pos, &used, &h) !=
            LOOM_HTTP_PLAIN ||
        !push_request(L, p, &h)) {
      loom__http_reset(p); /* Channel:_feed parses it again, with handlers */
      feed_lua(L, data, len, pos);
      return 0;
    }
    pos += used;
    if (process(L, &h, now) || raw_truthy(L, SELF, K_dead) ||
        raw_truthy(L, SELF, K_writePaused))
      break;
  }
  set_bool(L, SELF, K_feeding, 0);
  if (pos < len) {
    feed_lua(L, data, len, pos); /* buffers it, or hands it over */
  } else if (raw_truthy(L, SELF, K_dead)) {
    if (raw_truthy(L, SELF, K_switchTo))
      feed_lua(L, data, len, pos); /* (_feed hands the connection over) */
  } else if (raw_truthy(L, SELF, K_writePaused) ||
             !raw_truthy(L, SELF, K_reading)) {
    call_method(L, K_checkReading, 0);
  }
  return 0;
}

/* Pushes the n functions of the list at idx. */
static void push_functions(lua_State *L, int idx, int n) {
  int i;
  luaL_checktype(L, idx, LUA_TTABLE);
  for (i = 1; i <= n; i++)
    if (lua_rawgeti(L, idx, i) != LUA_TFUNCTION)
      luaL_error(L, "httpChannelReader: method %d of argument %d is not a "
                    "function", i, idx);
}

/* core.httpChannelReader(Request, findAndRender, failure.handler,
** PHRASES, fireNotify, channelMethods, requestMethods) -> dataReceived
** (the comment at the top) */
static int l_channel_reader(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  lua_settop(L, 7);
  push_functions(L, 6, 5);
  push_functions(L, 7, 3);
  lua_remove(L, 6);
  lua_remove(L, 6); /* Request .. fireNotify, the 5 and the 3: UP_ order */
  loom__http_push_class(L);
  luaL_getmetatable(L, LOOM_TCP_TRANSPORT);
  luaL_getmetatable(L, LOOM_UNIX_TRANSPORT);
  luaL_checkstack(L, KEY_COUNT, "httpChannelReader");
  for (int k = 0; k < KEY_COUNT; k++)
    lua_pushstring(L, key_strings[k]);
  lua_pushcclosure(L, l_data_received, UP_COUNT + KEY_COUNT);
  return 1;
}

/* Expects the core module table on the top of the stack. */
void loom__open_http_server(lua_State *L) {
  lua_pushcfunction(L, l_channel_reader);
  lua_setfield(L, -2, "httpChannelReader");
}
