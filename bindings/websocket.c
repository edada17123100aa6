/*
** websocket.c: WebSocket framing (RFC 6455) for loom.web.websocket over
** Debian's libwslay (1.1). The ONLY file that includes <wslay/wslay.h>.
**
**   f = core.websocketFrames(isServer, maxMessage)
**   core.websocketAccept(key)      -> Sec-WebSocket-Accept for key
**   core.websocketKey()            -> a fresh Sec-WebSocket-Key
**   core.websocketMethods          -> the C methods of the connection class
**
** The framing is not a stream io (docs/architecture.md): it runs on the
** connection's Lua protocol object, whose dataReceived IS the C function
** below, so a read costs one call from the host into C and each message
** one Lua call, messageReceived; the same object is the user protocol's
** transport, whose sendMessage is C too. The object (self below) holds
** `_frames` (this file's box), `transport` (the socket's, or TLS's) and
** `wrappedProtocol`.
**
** Receiving is wslay's event API: it reassembles fragments, checks the
** masking, the opcodes, the UTF-8 of text (across fragments), control
** frames (<= 125 bytes, not fragmented), close codes and the maximum
** message size (maxMessage: close 1009), answers pings and closes. wslay's
** callbacks never call Lua (an error would jump through wslay): a message
** is pushed on the Lua stack, and delivered once wslay_event_recv has
** returned. Control frames wslay sends (pong, close) are gathered in `out`
** by its send callback and written with one transport:write.
**
** Data frames are framed here (a 2..14-byte header and the payload, masked
** by a client) into one string and written with one transport:write, since
** wslay's queue would copy each message once more. wslay's own queue is
** always flushed before a feed or a method returns, so the order on the
** wire is the order of the calls.
*/
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "binding.h"

#define FRAMES_CLASS "loom.WebSocketFrames"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The events a feed leaves on the Lua stack, three values each. */
#define EVENT_SLOTS 3

typedef struct frames_box {
  wslay_event_context_ptr ctx; /* NULL once freed */
  int server;
  /* During a feed: the bytes wslay's recv callback hands over. */
  const uint8_t *in;
  size_t in_len;
  lua_State *L;     /* the state running the feed; NULL otherwise */
  int events;       /* messages pushed by this feed */
  int stack_full;   /* lua_checkstack failed: the rest is refused */
  int bad_close;    /* a close frame with a 1-byte payload (wslay lets it by) */
  /* What wslay_event_send produced (pongs, closes), written at once. */
  uint8_t *out;
  size_t out_len, out_cap;
  int heard;        /* bytes arrived since the last takeHeard */
  int closing;      /* our close is queued or sent: no more data frames */
  int dead;         /* wslay failed: the context may not be used again */
  int failed_code;  /* the close code of a connection we failed */
  uint8_t pool[256]; /* random bytes for the client's masks */
  size_t pool_pos;
} frames_box;

/* --------------------------------------------------------- SHA-1, base64 */

/* The handshake's SHA-1 and base64 are OpenSSL's (TLS links it anyway). */
static void push_base64(lua_State *L, const uint8_t *p, size_t len) {
  unsigned char out[64]; /* 4 * ceil(20 / 3) + 1 at most here */
  int n = EVP_EncodeBlock(out, p, (int)len);
  lua_pushlstring(L, (const char *)out, (size_t)n);
}

/* core.websocketAccept(key): base64(SHA-1(key .. GUID)), RFC 6455 4.2.2. */
static int l_accept(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  uint8_t msg[256], digest[20];
  luaL_argcheck(L, len <= sizeof msg - sizeof WS_GUID, 1, "key too long");
  memcpy(msg, key, len);
  memcpy(msg + len, WS_GUID, sizeof WS_GUID - 1);
  if (EVP_Digest(msg, len + sizeof WS_GUID - 1, digest, NULL, EVP_sha1(),
                 NULL) != 1)
    return luaL_error(L, "websocketAccept: SHA-1 failed");
  push_base64(L, digest, sizeof digest);
  return 1;
}

/* core.websocketKey(): 16 random bytes in base64 (a client's key). */
static int l_key(lua_State *L) {
  uint8_t raw[16];
  int r = uv_random(NULL, NULL, raw, sizeof raw, 0, NULL);
  if (r != 0)
    return luaL_error(L, "websocketKey: no random bytes: %s", uv_strerror(r));
  push_base64(L, raw, sizeof raw);
  return 1;
}

/* ------------------------------------------------------ wslay's callbacks */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user) {
  frames_box *f = user;
  (void)flags;
  if (f->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > f->in_len)
    len = f->in_len;
  memcpy(buf, f->in, len);
  f->in += len;
  f->in_len -= len;
  return (ssize_t)len;
}

/* Gathers what wslay sends; the caller writes it (never from here). */
static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user) {
  frames_box *f = user;
  (void)flags;
  if (len == 0)
    return 0; /* no memcpy from or to a NULL buffer */
  if (f->out_cap - f->out_len < len) {
    size_t cap = f->out_cap ? f->out_cap : 256;
    uint8_t *p;
    while (cap - f->out_len < len)
      cap *= 2;
    p = realloc(f->out, cap);
    if (p == NULL) {
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
    }
    f->out = p;
    f->out_cap = cap;
  }
  memcpy(f->out + f->out_len, data, len);
  f->out_len += len;
  return (ssize_t)len;
}

/* Masks must be unpredictable (RFC 6455 5.3): from the kernel's
** generator, 256 bytes at a time. */
static int fill_random(frames_box *f, uint8_t *buf, size_t len) {
  while (len > 0) {
    size_t n;
    if (f->pool_pos == sizeof f->pool) {
      if (uv_random(NULL, NULL, f->pool, sizeof f->pool, 0, NULL) != 0)
        return -1;
      f->pool_pos = 0;
    }
    n = sizeof f->pool - f->pool_pos;
    if (n > len)
      n = len;
    memcpy(buf, f->pool + f->pool_pos, n);
    f->pool_pos += n;
    buf += n;
    len -= n;
  }
  return 0;
}

static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                      void *user) {
  if (fill_random(user, buf, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}

/* A complete message or control frame: pushed for the feed to deliver
** (payload, opcode, close code). Pings are answered by wslay. */
static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg,
                   void *user) {
  frames_box *f = user;
  lua_State *L = f->L;
  if (arg->opcode == WSLAY_PING || L == NULL || f->stack_full)
    return;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1) {
    /* RFC 6455 5.5.1: a code is 2 bytes; wslay took it for none. */
    f->bad_close = 1;
    return;
  }
  if (!lua_checkstack(L, EVENT_SLOTS + LUA_MINSTACK)) {
    /* Thousands of messages in one read: fail rather than grow on. */
    f->stack_full = 1;
    wslay_event_shutdown_read(ctx);
    return;
  }
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length >= 2)
    lua_pushlstring(L, (const char *)arg->msg + 2, arg->msg_length - 2);
  else if (arg->opcode == WSLAY_CONNECTION_CLOSE)
    lua_pushliteral(L, "");
  else
    lua_pushlstring(L, (const char *)arg->msg, arg->msg_length);
  lua_pushinteger(L, arg->opcode);
  lua_pushinteger(L, arg->status_code);
  f->events++;
}

static const struct wslay_event_callbacks callbacks = {
  on_recv, on_send, on_genmask, NULL, NULL, NULL, on_msg
};

/* ------------------------------------------------------------------ box */

static frames_box *check_frames(lua_State *L, int idx) {
  frames_box *f = luaL_checkudata(L, idx, FRAMES_CLASS);
  if (f->ctx == NULL)
    luaL_error(L, "WebSocket frames are closed");
  return f;
}

/* The frames of the connection object at 1 (its _frames field). */
static frames_box *self_frames(lua_State *L) {
  frames_box *f;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "_frames");
  f = luaL_testudata(L, -1, FRAMES_CLASS);
  if (f == NULL)
    luaL_error(L, "not a WebSocket connection (no _frames)");
  lua_pop(L, 1);
  return f;
}

/* Calls self.transport:write(data, len) for the connection at 1. */
static void write_raw(lua_State *L, const char *data, size_t len) {
  lua_getfield(L, 1, "transport");
  lua_getfield(L, -1, "write");
  lua_insert(L, -2);
  lua_pushlstring(L, data, len);
  lua_call(L, 2, 0);
}

/* Lets wslay send what it has queued, then writes it. */
static void flush_control(lua_State *L, frames_box *f) {
  if (f->ctx != NULL && !f->dead && wslay_event_want_write(f->ctx)) {
    if (wslay_event_send(f->ctx) != 0)
      f->dead = 1;
  }
  if (f->out_len > 0) {
    size_t n = f->out_len;
    f->out_len = 0;
    write_raw(L, (const char *)f->out, n);
  }
}

/* A data or close frame's header; returns its length (2..14). */
static size_t frame_header(uint8_t *h, int opcode, size_t len,
                           const uint8_t *mask) {
  size_t n = 2;
  int i;
  h[0] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    h[1] = (uint8_t)len;
  } else if (len <= 0xFFFF) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    n = 4;
  } else {
    h[1] = 127;
    for (i = 0; i < 8; i++)
      h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    n = 10;
  }
  if (mask != NULL) {
    h[1] |= 0x80;
    memcpy(h + n, mask, 4);
    n += 4;
  }
  return n;
}

/* One frame, whole, as a Lua string: header, then the payload (masked
** by a client). */
static void push_frame(lua_State *L, frames_box *f, int opcode,
                       const char *data, size_t len) {
  uint8_t head[14], mask[4];
  const uint8_t *m = NULL;
  size_t hn, i;
  luaL_Buffer b;
  if (!f->server) {
    if (fill_random(f, mask, sizeof mask) != 0)
      luaL_error(L, "sendMessage: no random bytes for the mask");
    m = mask;
  }
  hn = frame_header(head, opcode, len, m);
  char *p = luaL_buffinitsize(L, &b, hn + len);
  memcpy(p, head, hn);
  if (m == NULL) {
    memcpy(p + hn, data, len);
  } else {
    for (i = 0; i < len; i++)
      p[hn + i] = (char)((uint8_t)data[i] ^ m[i & 3]);
  }
  luaL_pushresultsize(&b, hn + len);
}

/* Is s[0..len) UTF-8 (no overlongs, surrogates or code points past
** U+10FFFF)? ASCII is skipped a byte at a time. */
static int valid_utf8(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    size_t n, k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 3, cp = c & 0x07;
    else
      return 0;
    if (len - i <= n)
      return 0;
    for (k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    i += n + 1;
  }
  return 1;
}

/* ------------------------------------------------------------- methods */

/*
** Delivers the events a feed left at base+1..top, in order: a message
** to wrappedProtocol:messageReceived(msg, isBinary), a pong to
** self:_pongReceived(data), a close to self:_closeReceived(code, reason)
** after wslay's answer to it was written.
*/
static void deliver_events(lua_State *L, frames_box *f, int base) {
  int i, n = f->events;
  f->events = 0;
  for (i = 0; i < n; i++) {
    int at = base + 1 + i * EVENT_SLOTS;
    lua_Integer op = lua_tointeger(L, at + 1);
    if (op == WSLAY_TEXT_FRAME || op == WSLAY_BINARY_FRAME) {
      lua_getfield(L, 1, "wrappedProtocol");
      if (lua_getfield(L, -1, "messageReceived") == LUA_TNIL) {
        lua_pop(L, 2); /* no hook: the message is dropped, as Twisted's */
        continue;      /* Protocol drops data without dataReceived */
      }
      lua_insert(L, -2);
      lua_pushvalue(L, at);
      lua_pushboolean(L, op == WSLAY_BINARY_FRAME);
      lua_call(L, 3, 0);
    } else if (op == WSLAY_PONG) {
      lua_getfield(L, 1, "_pongReceived");
      lua_pushvalue(L, 1);
      lua_pushvalue(L, at);
      lua_call(L, 2, 0);
    } else if (op == WSLAY_CONNECTION_CLOSE) {
      flush_control(L, f);
      f->closing = 1;
      lua_getfield(L, 1, "_closeReceived");
      lua_pushvalue(L, 1);
      lua_pushvalue(L, at + 2);
      lua_pushvalue(L, at);
      lua_call(L, 3, 0);
    }
  }
}

/* Writes our own close frame with code, when none was sent yet. */
static void send_close_frame(lua_State *L, frames_box *f, int code) {
  uint8_t payload[2];
  if (f->closing)
    return;
  f->closing = 1;
  payload[0] = (uint8_t)(code >> 8);
  payload[1] = (uint8_t)code;
  push_frame(L, f, WSLAY_CONNECTION_CLOSE, (const char *)payload, 2);
  lua_getfield(L, 1, "transport");
  lua_getfield(L, -1, "write");
  lua_insert(L, -2);
  lua_rotate(L, -3, -1); /* write, transport, frame */
  lua_call(L, 2, 0);
}

/*
** After a feed's events: if wslay failed the connection (bad framing,
** masking, UTF-8, size: wslay queued the close itself, or the frame
** parser gave up and we send 1002), write the close and tell Lua with
** self:_failed(code).
*/
static void check_failed(lua_State *L, frames_box *f, int r) {
  int code = 0;
  if (r != 0 || f->stack_full) {
    f->dead = 1;
    f->out_len = 0; /* wslay's close (if any) has no code: ours has */
    code = f->stack_full ? WSLAY_CODE_POLICY_VIOLATION
                         : WSLAY_CODE_PROTOCOL_ERROR;
    send_close_frame(L, f, code);
  } else if (!f->closing && wslay_event_get_close_sent(f->ctx) &&
             !wslay_event_get_close_received(f->ctx)) {
    f->closing = 1;
    code = wslay_event_get_status_code_sent(f->ctx);
  }
  if (code != 0 && f->failed_code == 0) {
    f->failed_code = code;
    lua_getfield(L, 1, "_failed");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, code);
    lua_call(L, 2, 0);
  }
}

/* self:dataReceived(data): the connection's bytes, from the transport. */
static int l_data_received(lua_State *L) {
  frames_box *f = self_frames(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int base, r;
  if (f->ctx == NULL || f->dead || f->L != NULL)
    return 0;
  f->heard = 1;
  lua_settop(L, 2);
  base = lua_gettop(L);
  f->in = (const uint8_t *)data;
  f->in_len = len;
  f->L = L;
  f->events = 0;
  r = wslay_event_recv(f->ctx);
  f->L = NULL;
  f->in_len = 0;
  if (f->bad_close)
    r = WSLAY_ERR_PROTO;
  if (r != 0)
    f->dead = 1; /* wslay's context may not be used again */
  deliver_events(L, f, base);
  lua_settop(L, base);
  if (f->ctx == NULL)
    return 0;
  flush_control(L, f); /* pongs; a close wslay queued on bad input */
  check_failed(L, f, r);
  return 0;
}

/* self:sendMessage(data, isBinary) -> true, or false once closing. */
static int l_send_message(lua_State *L) {
  frames_box *f = self_frames(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int binary = lua_toboolean(L, 3);
  if (f->closing || f->dead || f->ctx == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!binary && !valid_utf8((const uint8_t *)data, len))
    return luaL_error(L, "sendMessage: a text message must be UTF-8 "
                         "(send bytes with isBinary = true)");
  lua_getfield(L, 1, "transport");
  lua_getfield(L, -1, "write");
  lua_insert(L, -2);
  push_frame(L, f, binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len);
  lua_call(L, 2, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* self:_sendPing(data): a ping (data <= 125 bytes); false once closing. */
static int l_send_ping(lua_State *L) {
  frames_box *f = self_frames(L);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  struct wslay_event_msg msg;
  luaL_argcheck(L, len <= 125, 2, "a ping carries at most 125 bytes");
  if (f->closing || f->dead || f->ctx == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  msg.opcode = WSLAY_PING;
  msg.msg = (const uint8_t *)data;
  msg.msg_length = len;
  if (wslay_event_queue_msg(f->ctx, &msg) != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  flush_control(L, f);
  lua_pushboolean(L, 1);
  return 1;
}

/* self:_sendClose(code, reason): our close frame; false when one was
** already sent. code 0: a close without a code. */
static int l_send_close(lua_State *L) {
  frames_box *f = self_frames(L);
  lua_Integer code = luaL_checkinteger(L, 2);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  int r;
  luaL_argcheck(L, len <= 123, 3, "a close reason is at most 123 bytes");
  luaL_argcheck(L, valid_utf8((const uint8_t *)reason, len), 3,
                "a close reason must be UTF-8");
  if (f->closing || f->dead || f->ctx == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  r = wslay_event_queue_close(f->ctx, (uint16_t)code,
                              (const uint8_t *)reason, len);
  if (r == WSLAY_ERR_INVALID_ARGUMENT)
    return luaL_error(L, "loseConnection: invalid close code %d", (int)code);
  f->closing = 1;
  if (r != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  flush_control(L, f);
  lua_pushboolean(L, 1);
  return 1;
}

/* self:_takeHeard() -> did bytes arrive since the last call? */
static int l_take_heard(lua_State *L) {
  frames_box *f = self_frames(L);
  lua_pushboolean(L, f->heard);
  f->heard = 0;
  return 1;
}

static const luaL_Reg connection_methods[] = {
  {"dataReceived", l_data_received},
  {"sendMessage", l_send_message},
  {"_sendPing", l_send_ping},
  {"_sendClose", l_send_close},
  {"_takeHeard", l_take_heard},
  {NULL, NULL}
};

/* core.websocketFrames(isServer, maxMessage) */
static int l_frames(lua_State *L) {
  int server = lua_toboolean(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  frames_box *f;
  int r;
  luaL_argcheck(L, max >= 1, 2, "maxMessage must be a positive integer");
  f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  f->server = server;
  f->pool_pos = sizeof f->pool;
  luaL_setmetatable(L, FRAMES_CLASS);
  r = server ? wslay_event_context_server_init(&f->ctx, &callbacks, f)
             : wslay_event_context_client_init(&f->ctx, &callbacks, f);
  if (r != 0) {
    f->ctx = NULL;
    return luaL_error(L, "websocketFrames: out of memory");
  }
  wslay_event_config_set_max_recv_msg_length(f->ctx, (uint64_t)max);
  return 1;
}

/* f:free(): releases wslay's context now (else the GC does). */
static int l_free(lua_State *L) {
  frames_box *f = luaL_checkudata(L, 1, FRAMES_CLASS);
  if (f->L != NULL)
    return luaL_error(L, "WebSocket frames in use (free from a hook?)");
  if (f->ctx != NULL)
    wslay_event_context_free(f->ctx);
  f->ctx = NULL;
  free(f->out);
  f->out = NULL;
  f->out_len = f->out_cap = 0;
  return 0;
}

/* f:closeCode() -> the close code wslay sent, or nil. */
static int l_close_code(lua_State *L) {
  frames_box *f = check_frames(L, 1);
  if (f->failed_code != 0)
    lua_pushinteger(L, f->failed_code);
  else if (wslay_event_get_close_sent(f->ctx))
    lua_pushinteger(L, wslay_event_get_status_code_sent(f->ctx));
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg frames_methods[] = {
  {"free", l_free},
  {"closeCode", l_close_code},
  {NULL, NULL}
};

/* Expects the core module table on the top of the stack. */
void loom__open_websocket(lua_State *L) {
  if (luaL_newmetatable(L, FRAMES_CLASS)) {
    luaL_newlib(L, frames_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_free);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_frames);
  lua_setfield(L, -2, "websocketFrames");
  lua_pushcfunction(L, l_accept);
  lua_setfield(L, -2, "websocketAccept");
  lua_pushcfunction(L, l_key);
  lua_setfield(L, -2, "websocketKey");
  luaL_newlib(L, connection_methods);
  lua_setfield(L, -2, "websocketMethods");
}
