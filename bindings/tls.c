/*
** tls.c: Lua's face of host/tls.c. core.tlsContext(config) makes a
** context (loom.TLSContext: an SSL_CTX with its SNI alternatives), shared
** by every connection made with it; the TCP transport class gains
** _tlsStart (put the connection under TLS), startTLS (Lua's, bound by
** core.tlsBind), negotiatedProtocol, getPeerCertificate and
** getTLSVersion. The end of a handshake reaches Lua as
** hooks.tlsHandshake; lua/loom/reactor/tls.lua makes listenSSL,
** connectSSL and startTLS from these.
*/
#include <arpa/inet.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "binding.h"
#include "../host/tls.h"

#define CONTEXT "loom.TLSContext"
#define START_TLS_KEY "loom.tls.startTLS"

typedef struct context_box {
  loom_tls_ctx *c;
} context_box;

/* ------------------------------------------------------------ contexts */

static const char *opt_string(lua_State *L, int t, const char *name) {
  const char *v;
  size_t n = 0;
  lua_getfield(L, t, name);
  v = lua_tolstring(L, -1, &n); /* kept alive by the config table */
  if (v != NULL && strlen(v) != n) /* (a path or name cut short) */
    luaL_error(L, "TLS option %s holds a NUL byte", name);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *name) {
  int v;
  lua_getfield(L, t, name);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_int(lua_State *L, int t, const char *name) {
  int v;
  lua_getfield(L, t, name);
  v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* A loom_tls_config from the table at t (checked by reactor/tls.lua). */
static void read_config(lua_State *L, int t, loom_tls_config *cfg) {
  size_t len = 0;
  memset(cfg, 0, sizeof(*cfg));
  cfg->server = opt_bool(L, t, "server");
  cfg->certificate = opt_string(L, t, "certificate");
  cfg->private_key = opt_string(L, t, "privateKey");
  cfg->extra_chain = opt_string(L, t, "extraCertChain");
  cfg->ca_file = opt_string(L, t, "caCerts");
  cfg->verify = opt_bool(L, t, "verify");
  cfg->min_version = opt_int(L, t, "minimumVersion");
  cfg->max_version = opt_int(L, t, "maximumVersion");
  lua_getfield(L, t, "alpn");
  cfg->alpn = (const unsigned char *)lua_tolstring(L, -1, &len);
  cfg->alpn_len = len;
  lua_pop(L, 1);
}

/*
** core.tlsContext(config) -> context, or nil, "ETLSCONFIG", one line
** ("certificate cert.pem: No such file or directory"). config: server,
** certificate, privateKey, extraCertChain, caCerts, verify, alpn (wire
** format), minimumVersion, maximumVersion (OpenSSL's numbers), sni (a list
** of {certificate, privateKey, extraCertChain}).
*/
static int l_tls_context(lua_State *L) {
  loom_tls_config cfg;
  context_box *box;
  char err[512];
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  read_config(L, 1, &cfg);
  box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->c = NULL;
  luaL_setmetatable(L, CONTEXT);
  if ((box->c = loom__tls_ctx_new(&cfg, err, sizeof(err))) == NULL)
    goto fail;
  lua_getfield(L, 1, "sni");
  n = lua_istable(L, -1) ? luaL_len(L, -1) : 0;
  for (i = 1; i <= n; i++) {
    loom_tls_config one;
    lua_geti(L, -1, i);
    read_config(L, lua_gettop(L), &one);
    one.server = 1;
    if (loom__tls_ctx_add_sni(box->c, &one, err, sizeof(err)) < 0)
      goto fail;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
fail:
  lua_pushnil(L);
  lua_pushliteral(L, "ETLSCONFIG");
  lua_pushstring(L, err);
  return 3;
}

static int l_context_gc(lua_State *L) {
  context_box *box = luaL_checkudata(L, 1, CONTEXT);
  if (box->c != NULL)
    loom__tls_ctx_release(box->c);
  box->c = NULL;
  return 0;
}

static loom_tls_ctx *check_context(lua_State *L, int idx) {
  context_box *box = luaL_checkudata(L, idx, CONTEXT);
  if (box->c == NULL)
    luaL_error(L, "TLS context is closed");
  return box->c;
}

/* ----------------------------------------------------------- handshake */

/* hooks.tlsHandshake(transport, owner, code, message) -> Failure or nil:
** code and message are nil when it succeeded. A Failure returned is what
** connectionLost receives. */
static int deliver_handshake(lua_State *L) {
  loom_event *a = lua_touserdata(L, 1);
  int t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loom__ref(a->data));
  t = lua_gettop(L); /* kept below the call for the reason */
  if (loom__push_hook(L, a->st, "tlsHandshake") == LUA_TNIL)
    return 0;
  lua_pushvalue(L, t);
  lua_getiuservalue(L, t, UVAL_OWNER);
  if (a->status) {
    lua_pushnil(L);
    lua_pushnil(L);
  } else {
    const char *code;
    const char *why = loom__tls_failure(a->s, &code);
    lua_pushstring(L, code);
    lua_pushstring(L, why);
  }
  lua_call(L, 4, 1);
  if (!lua_isnil(L, -1))
    lua_setiuservalue(L, t, UVAL_REASON);
  return 0;
}

static void on_handshake(loom_stream *s, int ok) {
  loom_event a;
  if (LOOM_L(s->st) == NULL || s->data == NULL)
    return;
  memset(&a, 0, sizeof(a));
  a.st = s->st;
  a.s = s;
  a.data = s->data;
  a.status = ok;
  if (loom__call(s->st, deliver_handshake, &a) != LUA_OK)
    loom__transport_hook_failed(s, "tlsHandshake");
}

/* ------------------------------------------------------------ methods */

static loom_stream *check_tcp_open(lua_State *L) {
  transport_box *box = luaL_checkudata(L, 1, LOOM_TCP_TRANSPORT);
  if (box->p == NULL)
    luaL_error(L, "transport is closed");
  return box->p;
}

/* The SSL of an open transport under TLS, or NULL. */
static SSL *transport_ssl(lua_State *L) {
  transport_box *box = luaL_checkudata(L, 1, LOOM_TCP_TRANSPORT);
  return box->p != NULL ? loom__tls_ssl(box->p) : NULL;
}

/*
** transport:_tlsStart(context, name) -> true, or nil, "ETLS", message:
** the connection continues under TLS (a client for a client context,
** verifying name, else a server); hooks.tlsHandshake follows.
*/
static int l_tls_start(lua_State *L) {
  loom_stream *s = check_tcp_open(L);
  loom_tls_ctx *c = check_context(L, 2);
  const char *name = loom__opt_cstring(L, 3, NULL);
  char err[256];
  if (loom__stream_closing(s))
    return luaL_error(L, "transport is closed");
  if (loom__tls_start(s, c, name, on_handshake, err, sizeof(err)) < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "ETLS");
    lua_pushstring(L, err);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* transport:startTLS(options, normal): Lua's (reactor/tls.lua). */
static int l_start_tls(lua_State *L) {
  int n = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, START_TLS_KEY) != LUA_TFUNCTION)
    return luaL_error(L, "startTLS: loom.reactor.tls is not loaded");
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* core.tlsBind(startTLS): the function transport:startTLS calls. */
static int l_tls_bind(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, START_TLS_KEY);
  return 0;
}

/* transport:negotiatedProtocol() -> the ALPN protocol, or nil. */
static int l_negotiated_protocol(lua_State *L) {
  SSL *ssl = transport_ssl(L);
  const unsigned char *p = NULL;
  unsigned len = 0;
  if (ssl != NULL)
    SSL_get0_alpn_selected(ssl, &p, &len);
  if (p == NULL || len == 0)
    lua_pushnil(L);
  else
    lua_pushlstring(L, (const char *)p, len);
  return 1;
}

/* transport:getTLSVersion() -> "TLSv1.3", "TLSv1.2", or nil. */
static int l_tls_version(lua_State *L) {
  SSL *ssl = transport_ssl(L);
  if (ssl == NULL || !loom__tls_handshake_done(
                         ((transport_box *)lua_touserdata(L, 1))->p))
    lua_pushnil(L);
  else
    lua_pushstring(L, SSL_get_version(ssl));
  return 1;
}

/* What a BIO holds, pushed as a string; the BIO is freed. */
static void push_bio(lua_State *L, BIO *b) {
  char *p = NULL;
  long n = b != NULL ? BIO_get_mem_data(b, &p) : 0;
  lua_pushlstring(L, p != NULL ? p : "", n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

static void push_name(lua_State *L, const X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b != NULL)
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  push_bio(L, b);
}

/* Seconds since the epoch of an ASN.1 time. */
static void push_time(lua_State *L, const ASN1_TIME *t) {
  struct tm tm;
  int days = 0, secs = 0;
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  if (epoch != NULL && ASN1_TIME_to_tm(t, &tm) &&
      ASN1_TIME_diff(&days, &secs, epoch, t))
    lua_pushinteger(L, (lua_Integer)days * 86400 + secs);
  else
    lua_pushnil(L);
  ASN1_TIME_free(epoch);
}

static void push_serial(lua_State *L, const ASN1_INTEGER *serial) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
  char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
  lua_pushstring(L, hex != NULL ? hex : "");
  OPENSSL_free(hex);
  BN_free(bn);
}

/* subjectAltNames: a list of "DNS:name", "IP:address", "email:...". */
static void push_sans(lua_State *L, X509 *x) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                          NULL);
  int i, n = names != NULL ? sk_GENERAL_NAME_num(names) : 0, k = 0;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    char ip[64];
    if (g->type == GEN_DNS || g->type == GEN_EMAIL) {
      const ASN1_IA5STRING *s = g->d.ia5;
      lua_pushfstring(L, "%s:", g->type == GEN_DNS ? "DNS" : "email");
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(s),
                      (size_t)ASN1_STRING_length(s));
      lua_concat(L, 2);
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING *s = g->d.ip;
      int len = ASN1_STRING_length(s);
      int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (af == 0 || inet_ntop(af, ASN1_STRING_get0_data(s), ip,
                               sizeof(ip)) == NULL)
        continue;
      lua_pushfstring(L, "IP:%s", ip);
    } else {
      continue;
    }
    lua_rawseti(L, -2, ++k);
  }
  GENERAL_NAMES_free(names);
}

static void push_fingerprint(lua_State *L, X509 *x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0, i;
  luaL_Buffer b;
  if (!X509_digest(x, EVP_sha256(), md, &len)) {
    lua_pushnil(L);
    return;
  }
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    char hex[4];
    snprintf(hex, sizeof(hex), i ? ":%02X" : "%02X", md[i]);
    luaL_addstring(&b, hex);
  }
  luaL_pushresult(&b);
}

static void push_common_name(lua_State *L, X509_NAME *name) {
  char cn[256];
  int n = X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn));
  if (n >= 0)
    lua_pushlstring(L, cn, (size_t)n);
  else
    lua_pushnil(L);
}

/*
** transport:getPeerCertificate() -> {subject, issuer, commonName,
** notBefore, notAfter (seconds since the epoch), serial (hex),
** subjectAltNames, sha256, pem}, or nil: no certificate (not under TLS,
** the handshake not done, or a client that sent none).
*/
static int l_get_peer_certificate(lua_State *L) {
  SSL *ssl = transport_ssl(L);
  X509 *x = ssl != NULL ? SSL_get1_peer_certificate(ssl) : NULL;
  BIO *b;
  if (x == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 9);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  push_common_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "commonName");
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "notBefore");
  push_time(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "notAfter");
  push_serial(L, X509_get0_serialNumber(x));
  lua_setfield(L, -2, "serial");
  push_sans(L, x);
  lua_setfield(L, -2, "subjectAltNames");
  push_fingerprint(L, x);
  lua_setfield(L, -2, "sha256");
  b = BIO_new(BIO_s_mem());
  if (b != NULL)
    PEM_write_bio_X509(b, x);
  push_bio(L, b);
  lua_setfield(L, -2, "pem");
  X509_free(x);
  ERR_clear_error();
  return 1;
}

static const luaL_Reg transport_methods[] = {
  {"_tlsStart", l_tls_start},
  {"startTLS", l_start_tls},
  {"negotiatedProtocol", l_negotiated_protocol},
  {"getPeerCertificate", l_get_peer_certificate},
  {"getTLSVersion", l_tls_version},
  {NULL, NULL}
};

static const luaL_Reg tls_functions[] = {
  {"tlsContext", l_tls_context},
  {"tlsBind", l_tls_bind},
  {NULL, NULL}
};

/*
** Adds the TLS methods to the TCP transport class: its __index (stream.c)
** is a closure over the class's method table, upvalue 1.
*/
static void add_transport_methods(lua_State *L) {
  luaL_getmetatable(L, LOOM_TCP_TRANSPORT);
  lua_getfield(L, -1, "__index");
  if (lua_getupvalue(L, -1, 1) != NULL && lua_istable(L, -1))
    luaL_setfuncs(L, transport_methods, 0);
  lua_pop(L, 3);
}

/* Expects the core module table on the top of the stack; after tcp's. */
void loom__open_tls(lua_State *L) {
  luaL_newmetatable(L, CONTEXT);
  lua_pushcfunction(L, l_context_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, CONTEXT);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  add_transport_methods(L);
  luaL_setfuncs(L, tls_functions, 0);
}
