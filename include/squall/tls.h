/** @file squall/tls.h
 * TLS contexts (OpenSSL 3): what a server presents and a client trusts.
 *
 * A context is built once and shared: set it on sq_http_settings.tls (and so on
 * sq_app_settings.http.tls) or sq_tcp_options.tls for a server — Tornado's ssl_options —
 * and hand it to sq_tcp_connect_tls, sq_stream_start_tls or sq_ws_connect_options.tls for a
 * client.  Contexts are reference counted: sq_tls_context_free drops the caller's
 * reference, and the servers and connections that use it keep theirs.
 *
 *     sq_tls_options o = {.cert_file = "cert.pem", .key_file = "key.pem"};
 *     sq_tls_context *tls = sq_tls_server_context_new(&o, &err);
 *     sq_app_settings s = {.http = {.tls = tls}};
 *
 * Failures (a handshake, a certificate check) are SQ_ETLS; sq_tls_last_error() says why in
 * OpenSSL's words, e.g. "certificate verify failed: self-signed certificate".
 *
 * A peer that closes without close_notify reads as an end of stream, as with plain TCP (as
 * browsers and most HTTP stacks take it): where the end matters, the protocol's framing
 * (Content-Length, chunked, WebSocket close) tells a cut-off stream, not the TLS layer.
 * sq_stream_read_until_close therefore cannot tell a truncated TLS stream from a whole one. */
#ifndef SQUALL_TLS_H
#define SQUALL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A TLS context (an OpenSSL SSL_CTX with squall's settings), reference-counted. */
typedef struct sq_tls_context sq_tls_context;

/** TLS protocol versions, for sq_tls_options.min_version. */
enum { SQ_TLS_1_2 = 0x0303, SQ_TLS_1_3 = 0x0304 };

enum {
    SQ_TLS_VERIFY_NONE = 0,     /**< a server does not ask for a client certificate */
    SQ_TLS_VERIFY_OPTIONAL = 1, /**< asked for and checked when sent */
    SQ_TLS_VERIFY_REQUIRED = 2, /**< the handshake fails without a valid one */
};

/** SNI: return the context for `server_name` (the host name the client asked for), or NULL
 * to keep the one the connection started with.  Runs on the loop, inside the handshake.
 * The context returned brings its certificate, client verification (verify_client,
 * ca_file), options and session tickets; not its min_version: the protocol version is
 * settled, by the first context, before SNI is seen. */
typedef sq_tls_context *(*sq_tls_sni_fn)(const char *server_name, void *arg);

/** What a TLS context is built from; zeroed fields take the defaults. */
typedef struct sq_tls_options {
    /** The certificate chain (leaf first) and its private key, as files or as PEM text in
     * memory.  A server needs them; a client sends them when the server asks. */
    /** @{ */
    const char *cert_file, *key_file;
    /** @} */
    /** the same as PEM text */
    /** @{ */
    const char *cert_pem, *key_pem;
    /** @} */
    /** Server: verify client certificates against these CAs (see verify_client).  Client:
     * trust these CAs instead of the system store. */
    const char *ca_file;
    /** the same as PEM text */
    const char *ca_pem;
    int min_version;          /**< SQ_TLS_1_2 (default) or SQ_TLS_1_3 */
    const char *ciphers;      /**< TLS 1.2 cipher list, OpenSSL syntax; NULL: OpenSSL's default */
    const char *ciphersuites; /**< TLS 1.3 suites, OpenSSL syntax; NULL: OpenSSL's default */
    /** ALPN protocols in order of preference ("h2", "http/1.1"), n_alpn of them.  A server
     * picks the first of its own the client offers; without one in common it goes on
     * without ALPN.  A server given none answers "http/1.1" when the client offers it. */
    const char *const *alpn;
    /** how many alpn entries */
    size_t n_alpn;
    int verify_client; /**< server: SQ_TLS_VERIFY_* (needs ca_file or ca_pem) */
    /** Client: skip the certificate and host-name checks (tests, private networks). */
    bool insecure_no_verify;
    bool no_tickets;       /**< server: no session resumption (tickets are on by default) */
    sq_tls_sni_fn sni;     /**< server: choose a context per host name */
    /** argument of sni */
    void *sni_arg;
} sq_tls_options;

/** Build a server context (a certificate and key are required) or a client one (verifying
 * against the system CA store unless told otherwise).  NULL with *err set (if given):
 * SQ_ETLS with the reason in sq_tls_last_error(), -EINVAL for bad options, -ENOMEM. */
sq_tls_context *sq_tls_server_context_new(const sq_tls_options *opts, int *err);
/** Build a client context; as sq_tls_server_context_new(), no certificate needed. */
sq_tls_context *sq_tls_client_context_new(const sq_tls_options *opts, int *err);
/** Drop a reference (the one the constructor gave).  NULL is ignored. */
void sq_tls_context_free(sq_tls_context *ctx);
/** Take another reference. */
sq_tls_context *sq_tls_context_ref(sq_tls_context *ctx);
/** Whether the context was built for the server side. */
bool sq_tls_context_is_server(const sq_tls_context *ctx);

/** The reason for this thread's most recent SQ_ETLS (a handshake, a certificate check, a
 * context that could not be built), or "" if there was none.  Valid until the next TLS
 * failure on this thread. */
const char *sq_tls_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
