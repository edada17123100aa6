/*
** tls_ctx.c: TLS contexts for host/tls.c: an SSL_CTX made from PEM files
** (certificate, key, extra chain, CAs), verification, ALPN and TLS versions,
** with a server's SNI alternatives, shared by every connection made with
** it (reference counted: a connection keeps its context alive).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls.h"

struct loom_tls_ctx {
  SSL_CTX *ctx;
  int refs;              /* the owner's and one per connection */
  int server;
  int nalt;
  SSL_CTX **alt;         /* SNI alternatives (servers) */
  unsigned char *alpn;   /* a server's protocols, preferred first */
  size_t alpn_len;
};

/* One line for the OpenSSL error that just happened, then clears them. */
const char *loom__tls_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r ? r : "unknown error";
}

/* A readable file, or err says why not (OpenSSL's own message is vague). */
static int check_file(const char *what, const char *path, char *err,
                      size_t errlen) {
  struct stat st;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return -1;
  }
  if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
    fclose(f);
    snprintf(err, errlen, "%s %s: not a regular file", what, path);
    return -1;
  }
  fclose(f);
  return 0;
}

/* OpenSSL's reason, or what it means when it is only "PEM lib" (the file
** holds no PEM block of that kind: another kind, garbage, cut short). */
static const char *pem_reason(const char *kind) {
  const char *r = loom__tls_reason(); /* (it clears the queue) */
  if (strcmp(r, "PEM lib") == 0 || strstr(r, "no start line") != NULL)
    return kind;
  return r;
}

static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  loom_tls_ctx *c = arg;
  unsigned char *sel = NULL;
  (void)ssl;
  if (SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned)c->alpn_len,
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no protocol in common: go on without */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* SNI: the first alternative whose certificate matches the asked name. */
static int servername(SSL *ssl, int *alert, void *arg) {
  loom_tls_ctx *c = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  int i;
  (void)alert;
  if (name == NULL)
    return SSL_TLSEXT_ERR_OK;
  for (i = 0; i < c->nalt; i++) {
    X509 *cert = SSL_CTX_get0_certificate(c->alt[i]);
    if (cert != NULL && X509_check_host(cert, name, 0, 0, NULL) == 1) {
      SSL_set_SSL_CTX(ssl, c->alt[i]);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

static int load_chain(SSL_CTX *ctx, const char *path, char *err,
                      size_t errlen) {
  FILE *f;
  X509 *x;
  int n = 0;
  if (check_file("extraCertChain", path, err, errlen) < 0)
    return -1;
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
    if (!SSL_CTX_add0_chain_cert(ctx, x)) {
      X509_free(x);
      fclose(f);
      snprintf(err, errlen, "extraCertChain %s: %s", path, loom__tls_reason());
      return -1;
    }
    n++;
  }
  fclose(f);
  ERR_clear_error(); /* the end of the file */
  if (n == 0) {
    snprintf(err, errlen, "extraCertChain %s: no PEM certificate in it",
             path);
    return -1;
  }
  return 0;
}

/*
** A key that asks for a passphrase: OpenSSL's default would prompt on the
** terminal, holding the reactor until someone types; no passphrase is
** given instead, and asked is set so the error can say why.
*/
static int refuse_passphrase(char *buf, int size, int rwflag, void *asked) {
  (void)buf;
  (void)size;
  (void)rwflag;
  if (asked != NULL)
    *(int *)asked = 1;
  return -1;
}

static int load_identity(SSL_CTX *ctx, const loom_tls_config *cfg,
                         char *err, size_t errlen) {
  int asked = 0;
  if (cfg->certificate == NULL && cfg->private_key == NULL)
    return 0;
  if (cfg->certificate == NULL || cfg->private_key == NULL) {
    snprintf(err, errlen, "a certificate needs its privateKey, and a"
             " privateKey its certificate");
    return -1;
  }
  if (check_file("certificate", cfg->certificate, err, errlen) < 0 ||
      check_file("privateKey", cfg->private_key, err, errlen) < 0)
    return -1;
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certificate) != 1) {
    snprintf(err, errlen, "certificate %s: %s", cfg->certificate,
             pem_reason("no PEM certificate in it (or one cut short)"));
    return -1;
  }
  SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
  if (SSL_CTX_use_PrivateKey_file(ctx, cfg->private_key,
                                  SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL); /* (asked: ours) */
    if (asked) {
      ERR_clear_error();
      snprintf(err, errlen, "privateKey %s is protected by a passphrase,"
               " which loom does not support (decrypt it: openssl pkey -in"
               " KEY -out PLAIN)", cfg->private_key);
      return -1;
    }
    if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
      snprintf(err, errlen, "privateKey %s: %s", cfg->private_key,
               pem_reason("no PEM private key in it (or one cut short)"));
      return -1;
    }
  }
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "privateKey %s does not match certificate %s",
             cfg->private_key, cfg->certificate);
    return -1;
  }
  if (cfg->extra_chain != NULL &&
      load_chain(ctx, cfg->extra_chain, err, errlen) < 0)
    return -1;
  return 0;
}

static int load_trust(SSL_CTX *ctx, const loom_tls_config *cfg, char *err,
                      size_t errlen) {
  if (cfg->ca_file != NULL) {
    if (check_file("caCerts", cfg->ca_file, err, errlen) < 0)
      return -1;
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
      snprintf(err, errlen, "caCerts %s: %s", cfg->ca_file, loom__tls_reason());
      return -1;
    }
    if (cfg->server && cfg->verify) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
      if (names != NULL)
        SSL_CTX_set_client_CA_list(ctx, names);
    }
  } else if (!cfg->server && cfg->verify &&
             SSL_CTX_set_default_verify_paths(ctx) != 1) {
    snprintf(err, errlen, "the system CA store: %s", loom__tls_reason());
    return -1;
  }
  return 0;
}

static SSL_CTX *make_ctx(const loom_tls_config *cfg, loom_tls_ctx *owner,
                         char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(cfg->server ? TLS_server_method()
                                         : TLS_client_method());
  if (ctx == NULL) {
    snprintf(err, errlen, "SSL_CTX_new: %s", loom__tls_reason());
    return NULL;
  }
  /* Below TLS 1.2 is broken; 1.2 and 1.3 by default. */
  SSL_CTX_set_min_proto_version(ctx, cfg->min_version ? cfg->min_version
                                                      : TLS1_2_VERSION);
  if (cfg->max_version)
    SSL_CTX_set_max_proto_version(ctx, cfg->max_version);
  /* An idle connection keeps no 34 KiB of record buffers. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (load_identity(ctx, cfg, err, errlen) < 0 ||
      load_trust(ctx, cfg, err, errlen) < 0) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  if (cfg->server)
    SSL_CTX_set_verify(ctx, cfg->verify ? SSL_VERIFY_PEER |
                       SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
                       NULL);
  else
    SSL_CTX_set_verify(ctx, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
  if (cfg->alpn != NULL) {
    if (cfg->server)
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select, owner);
    else if (SSL_CTX_set_alpn_protos(ctx, cfg->alpn,
                                     (unsigned)cfg->alpn_len) != 0) {
      snprintf(err, errlen, "acceptableProtocols: %s", loom__tls_reason());
      SSL_CTX_free(ctx);
      return NULL;
    }
  }
  return ctx;
}

loom_tls_ctx *loom__tls_ctx_new(const loom_tls_config *cfg, char *err,
                                size_t errlen) {
  loom_tls_ctx *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->refs = 1;
  c->server = cfg->server;
  if (cfg->server && cfg->certificate == NULL) {
    snprintf(err, errlen, "a TLS server needs a certificate and privateKey");
    free(c);
    return NULL;
  }
  if (cfg->alpn != NULL) {
    if ((c->alpn = malloc(cfg->alpn_len)) == NULL) {
      free(c);
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
    memcpy(c->alpn, cfg->alpn, cfg->alpn_len);
    c->alpn_len = cfg->alpn_len;
  }
  if ((c->ctx = make_ctx(cfg, c, err, errlen)) == NULL) {
    free(c->alpn);
    free(c);
    return NULL;
  }
  if (cfg->server) {
    SSL_CTX_set_tlsext_servername_callback(c->ctx, servername);
    SSL_CTX_set_tlsext_servername_arg(c->ctx, c);
  }
  return c;
}

int loom__tls_ctx_add_sni(loom_tls_ctx *c, const loom_tls_config *cfg,
                          char *err, size_t errlen) {
  SSL_CTX **alt;
  SSL_CTX *ctx;
  loom_tls_config one = *cfg;
  one.server = 1;
  if (one.certificate == NULL) {
    snprintf(err, errlen, "an SNI entry needs a certificate and privateKey");
    return -1;
  }
  if (one.alpn == NULL && c->alpn != NULL) {
    one.alpn = c->alpn;
    one.alpn_len = c->alpn_len;
  }
  if ((ctx = make_ctx(&one, c, err, errlen)) == NULL)
    return -1;
  alt = realloc(c->alt, sizeof(*alt) * (size_t)(c->nalt + 1));
  if (alt == NULL) {
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  alt[c->nalt++] = ctx;
  c->alt = alt;
  return 0;
}

void loom__tls_ctx_release(loom_tls_ctx *c) {
  int i;
  if (--c->refs > 0)
    return;
  for (i = 0; i < c->nalt; i++)
    SSL_CTX_free(c->alt[i]);
  free(c->alt);
  SSL_CTX_free(c->ctx);
  free(c->alpn);
  free(c);
}

/* What a session needs of its context (host/tls.c). */
SSL *loom__tls_ctx_new_ssl(loom_tls_ctx *c) {
  return SSL_new(c->ctx);
}

int loom__tls_ctx_is_server(const loom_tls_ctx *c) {
  return c->server;
}

void loom__tls_ctx_retain(loom_tls_ctx *c) {
  c->refs++;
}
