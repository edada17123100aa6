/*
** tls.h: TLS as a layer beneath a stream transport (host/tls.c), over
** OpenSSL's memory BIOs. No Lua here: bindings/tls.c is its Lua face.
**
** A context (loom_tls_ctx) is made once from a configuration (PEM files,
** verification, ALPN, SNI alternatives) and shared by every connection
** made with it; loom__tls_start sets the TLS io on a connected stream
** (listenSSL, connectSSL or STARTTLS), which from then on encrypts what
** the transport writes and decrypts what it reads. The protocol sees
** plaintext through the stream's usual vtable.
*/
#ifndef LOOM_TLS_H
#define LOOM_TLS_H

#include <openssl/ssl.h>

#include "internal.h"

typedef struct loom_tls_ctx loom_tls_ctx;

typedef struct loom_tls_config {
  int server;
  const char *certificate;  /* PEM: the certificate (may carry its chain) */
  const char *private_key;  /* PEM */
  const char *extra_chain;  /* PEM: more chain certificates, or NULL */
  const char *ca_file;      /* PEM: trusted CAs; NULL: the system store */
  /* Client: verify the server's chain (and name, see loom__tls_start).
  ** Server: ask for and require a client certificate (ca_file's CAs). */
  int verify;
  const unsigned char *alpn; /* ALPN protocols, wire format, or NULL */
  size_t alpn_len;
  int min_version, max_version; /* TLS1_2_VERSION...; 0: the default */
} loom_tls_config;

/* NULL and a one-line message in err when a file or setting is bad. */
loom_tls_ctx *loom__tls_ctx_new(const loom_tls_config *cfg, char *err,
                                size_t errlen);
/* A server's SNI alternative: used when the name a client asks for
** matches its certificate (X509_check_host). 0 or -1 (err set). */
int loom__tls_ctx_add_sni(loom_tls_ctx *c, const loom_tls_config *cfg,
                          char *err, size_t errlen);
/* Drops the caller's reference; connections keep theirs. */
void loom__tls_ctx_release(loom_tls_ctx *c);
/* Between tls_ctx.c and tls.c: a session's SSL, its side, a reference. */
SSL *loom__tls_ctx_new_ssl(loom_tls_ctx *c);
int loom__tls_ctx_is_server(const loom_tls_ctx *c);
void loom__tls_ctx_retain(loom_tls_ctx *c);
/* One line for the OpenSSL error that just happened; clears the queue. */
const char *loom__tls_reason(void);

/* The handshake finished (ok = 1) or failed (ok = 0: loom__tls_failure
** says why; the stream closes with LOOM_CLOSE_LAYER right after). */
typedef void (*loom_tls_handshake_cb)(loom_stream *s, int ok);

/*
** Puts s (connected, its protocol or owner attached) under TLS: a client
** when c is a client context (name: the host name or IP address to verify
** and, for a name, to send as SNI; NULL: none), else a server. Whatever s
** still had queued goes out in clear first (STARTTLS). 0 or -1 (err set).
*/
int loom__tls_start(loom_stream *s, loom_tls_ctx *c, const char *name,
                    loom_tls_handshake_cb cb, char *err, size_t errlen);
/* Why the handshake failed: a message; *code one of "unknownCA",
** "expired", "notYetValid", "hostnameMismatch", "verifyFailed",
** "handshakeFailure". */
const char *loom__tls_failure(loom_stream *s, const char **code);
/* The stream's SSL (peer certificate, ALPN), or NULL: not under TLS. */
SSL *loom__tls_ssl(loom_stream *s);
int loom__tls_handshake_done(loom_stream *s);

#endif
