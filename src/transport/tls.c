/* TLS on the transport (OpenSSL 3): contexts (squall/tls.h) and the TLS implementation of
 * sq__tp, the slot nginx fills with ngx_ssl_recv/ngx_ssl_send after the handshake.
 *
 * The SSL object reads and writes the socket itself (a socket BIO): a read is one SSL_read
 * per record into the caller's buffer, a batch of responses one SSL_write (one record, one
 * send).  Readiness is level-triggered epoll's, so two things need care:
 *  - a read may wait for the socket to be writable (a handshake message, a key update) and
 *    a write for it to be readable: ops->poll asks the kernel for what the blocked
 *    operation waits for, ops->ready hands the event to the operation that waits;
 *  - bytes OpenSSL already took from the kernel (the rest of a record when the caller's
 *    buffer was full, records read ahead) raise no event: when the caller wants to read
 *    and such bytes wait, the watcher's callback is scheduled with SQ_READ.
 * Idle connections hold no record buffers (SSL_MODE_RELEASE_BUFFERS). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "transport/transport.h"

struct sq_tls_context {
    SSL_CTX *ctx;
    atomic_int refs;
    bool server;
    unsigned char *alpn; /* wire format: length-prefixed names */
    unsigned alpn_len;
    sq_tls_sni_fn sni;
    void *sni_arg;
};

typedef struct sq__tls {
    sq__tp base;
    SSL *ssl;
    sq_tls_context *ctx;
    sq_loop *loop;
    sq_io *io;
    sq_call *feed; /* the watcher's callback, scheduled for bytes OpenSSL holds */
    unsigned char hs_want, rd_want, wr_want;
    bool handshaking : 1;
    bool checked_first : 1; /* server: the first byte was a TLS record */
    bool failed : 1;        /* a fatal error: no close_notify, no further I/O */
    bool http : 1;          /* the HTTP server is above: ALPN follows what it speaks … */
    bool h2 : 1;            /* … and it speaks HTTP/2 */
    int pending;            /* an error to report after the bytes already returned */
    bool wblocked : 1;      /* an SSL_write is incomplete (WANT_WRITE): OpenSSL 3.0 fails a
                               read that must answer a KeyUpdate meanwhile (bad length) */
    bool again : 1;         /* the next read reports an EOF or error already taken from the
                               socket: no kernel event will say so */
    bool starved : 1;       /* the last SSL_read wanted more bytes from the kernel: what
                               OpenSSL holds is an incomplete record, the kernel signals */
} sq__tls;

/* --- errors ------------------------------------------------------------------------------- */

static _Thread_local char last_error[256];

const char *sq_tls_last_error(void)
{
    return last_error;
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

/* Record OpenSSL's reason for the failure at hand (its error queue, and for a certificate
 * check the verifier's word) and clear the queue.  Returns SQ_ETLS. */
static int tls_fail(const SSL *ssl, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (!reason) reason = what;
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (v != X509_V_OK && (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED || !e))
        set_error("%s: %s", reason, X509_verify_cert_error_string(v));
    else
        set_error("%s", reason);
    ERR_clear_error();
    return SQ_ETLS;
}

/* --- contexts ------------------------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    sq_tls_context *c = arg;
    const sq__tls *t = SSL_get_app_data(ssl);
    bool h2 = t && t->http && t->h2;
    /* no list of the context's own: what the server above speaks */
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    const unsigned char *ours = c->alpn ? c->alpn : h2 ? both : both + 3;
    unsigned ours_len = c->alpn ? c->alpn_len : h2 ? sizeof both - 1 : sizeof both - 4;
    unsigned char filtered[256];
    if (c->alpn && t && t->http && !h2 && ours_len <= sizeof filtered) {
        /* an HTTP server without HTTP/2: "h2" is not offered whatever the list says */
        unsigned n = 0;
        for (unsigned i = 0; i < ours_len; i += 1u + ours[i])
            if (!(ours[i] == 2 && !memcmp(ours + i + 1, "h2", 2))) {
                memcpy(filtered + n, ours + i, 1u + ours[i]);
                n += 1u + ours[i];
            }
        ours = filtered;
        ours_len = n;
    }
    unsigned char *o;
    /* server preference order: the first of ours the client offers */
    if (SSL_select_next_proto(&o, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

static int sni_select(SSL *ssl, int *alert, void *arg)
{
    sq_tls_context *c = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !c->sni) return SSL_TLSEXT_ERR_OK;
    sq_tls_context *other = c->sni(name, c->sni_arg);
    if (other && other != c && other->server && SSL_set_SSL_CTX(ssl, other->ctx)) {
        /* SSL_set_SSL_CTX swaps the certificate only: the per-connection settings copied
         * from the first context at SSL_new (client verification, options) follow too */
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(other->ctx),
                       SSL_CTX_get_verify_callback(other->ctx));
        SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(other->ctx));
        SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(other->ctx));
        SSL_set_options(ssl, SSL_CTX_get_options(other->ctx));
        SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(other->ctx));
    }
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_wire(sq_tls_context *c, const sq_tls_options *o)
{
    size_t len = 0;
    for (size_t i = 0; i < o->n_alpn; i++) {
        size_t n = o->alpn[i] ? strlen(o->alpn[i]) : 0;
        if (n == 0 || n > 255) return -EINVAL;
        len += 1 + n;
    }
    if (!len) return 0;
    if (len > 0xffff) return -EINVAL;
    c->alpn = malloc(len);
    if (!c->alpn) return -ENOMEM;
    unsigned char *p = c->alpn;
    for (size_t i = 0; i < o->n_alpn; i++) {
        size_t n = strlen(o->alpn[i]);
        *p++ = (unsigned char)n;
        memcpy(p, o->alpn[i], n);
        p += n;
    }
    c->alpn_len = (unsigned)len;
    return 0;
}

/* The certificate chain and key, from files or PEM text. */
static int load_identity(SSL_CTX *ctx, const sq_tls_options *o)
{
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1)
            return tls_fail(NULL, "cannot load the certificate");
    } else if (o->cert_pem) {
        BIO *b = BIO_new_mem_buf(o->cert_pem, -1);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
        X509_free(x);
        while (ok) { /* the rest of the chain */
            X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
            if (!ca) break;
            if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
                X509_free(ca);
                ok = 0;
            }
        }
        BIO_free(b);
        if (!ok) return tls_fail(NULL, "cannot load the certificate");
        ERR_clear_error(); /* the end of the PEM text */
    }
    if (o->key_file) {
        if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1)
            return tls_fail(NULL, "cannot load the private key");
    } else if (o->key_pem) {
        BIO *b = BIO_new_mem_buf(o->key_pem, -1);
        EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
        EVP_PKEY_free(k);
        BIO_free(b);
        if (!ok) return tls_fail(NULL, "cannot load the private key");
    }
    if ((o->cert_file || o->cert_pem) && SSL_CTX_check_private_key(ctx) != 1)
        return tls_fail(NULL, "the private key does not match the certificate");
    return 0;
}

/* CAs to verify peers against (and, for a server, to name in its certificate request). */
static int load_cas(SSL_CTX *ctx, const sq_tls_options *o, bool server)
{
    if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1)
            return tls_fail(NULL, "cannot load the CA file");
        if (server) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names) SSL_CTX_set_client_CA_list(ctx, names);
        }
    }
    if (o->ca_pem) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        BIO *b = BIO_new_mem_buf(o->ca_pem, -1);
        int n = 0;
        X509 *x;
        while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            if (X509_STORE_add_cert(st, x) == 1) n++;
            if (server) SSL_CTX_add_client_CA(ctx, x);
            X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (!n) {
            set_error("no certificate in the CA PEM text");
            return SQ_ETLS;
        }
    }
    return 0;
}

static sq_tls_context *context_new(const sq_tls_options *o, bool server, int *err)
{
    static const sq_tls_options none;
    if (!o) o = &none;
    int e = 0;
    sq_tls_context *c = calloc(1, sizeof *c);
    if (!c) {
        e = -ENOMEM;
        goto fail;
    }
    atomic_init(&c->refs, 1);
    c->server = server;
    c->sni = o->sni;
    c->sni_arg = o->sni_arg;
    if (server && !(o->cert_file || o->cert_pem) ) {
        set_error("a server context needs a certificate and a key");
        e = -EINVAL;
        goto fail;
    }
    if ((o->min_version && o->min_version != SQ_TLS_1_2 && o->min_version != SQ_TLS_1_3) ||
        (e = alpn_wire(c, o)) < 0) {
        if (!e) e = -EINVAL;
        set_error("bad TLS options (min_version or ALPN names)");
        goto fail;
    }
    ERR_clear_error();
    c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c->ctx) {
        e = tls_fail(NULL, "cannot create an SSL_CTX");
        goto fail;
    }
    SSL_CTX *x = c->ctx;
    SSL_CTX_set_min_proto_version(x, o->min_version ? o->min_version : TLS1_2_VERSION);
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF |
                               (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0) |
                               (o->no_tickets ? SSL_OP_NO_TICKET : 0));
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* one read(2) takes whatever has arrived, not a record header and then its body */
    SSL_CTX_set_read_ahead(x, 1);
    /* TLS 1.3: AES-128-GCM first (as Mozilla's and most clients' order has it): as safe
     * in practice and cheaper than OpenSSL's default AES-256 first, which a server that
     * prefers its own order would otherwise pick */
    const char *suites = o->ciphersuites ? o->ciphersuites
                                         : "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                           "TLS_CHACHA20_POLY1305_SHA256";
    if ((o->ciphers && SSL_CTX_set_cipher_list(x, o->ciphers) != 1) ||
        SSL_CTX_set_ciphersuites(x, suites) != 1) {
        e = tls_fail(NULL, "bad cipher list");
        goto fail;
    }
    if ((e = load_identity(x, o)) < 0 || (e = load_cas(x, o, server)) < 0) goto fail;
    if (server) {
        /* resumption with or without client certificates needs a session id context */
        SSL_CTX_set_session_id_context(x, (const unsigned char *)"squall", 6);
        SSL_CTX_set_num_tickets(x, o->no_tickets ? 0 : 1);
        /* no_tickets means no resumption: TLS 1.2 would otherwise resume by session id */
        if (o->no_tickets) SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_alpn_select_cb(x, alpn_select, c);
        SSL_CTX_set_tlsext_servername_callback(x, sni_select);
        SSL_CTX_set_tlsext_servername_arg(x, c);
        if (o->verify_client) {
            if (!o->ca_file && !o->ca_pem) {
                set_error("verify_client needs ca_file or ca_pem");
                e = -EINVAL;
                goto fail;
            }
            int mode = SSL_VERIFY_PEER;
            if (o->verify_client == SQ_TLS_VERIFY_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            SSL_CTX_set_verify(x, mode, NULL);
        }
    } else {
        if (o->insecure_no_verify) {
            SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
        } else {
            if (!o->ca_file && !o->ca_pem && SSL_CTX_set_default_verify_paths(x) != 1) {
                e = tls_fail(NULL, "cannot load the system CA store");
                goto fail;
            }
            SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
        }
        if (c->alpn && SSL_CTX_set_alpn_protos(x, c->alpn, c->alpn_len) != 0) {
            e = tls_fail(NULL, "cannot set ALPN");
            goto fail;
        }
    }
    return c;
fail:
    if (c) {
        SSL_CTX_free(c->ctx);
        free(c->alpn);
        free(c);
    }
    if (e == -ENOMEM) set_error("out of memory");
    if (err) *err = e;
    return NULL;
}

sq_tls_context *sq_tls_server_context_new(const sq_tls_options *opts, int *err)
{
    return context_new(opts, true, err);
}

sq_tls_context *sq_tls_client_context_new(const sq_tls_options *opts, int *err)
{
    return context_new(opts, false, err);
}

sq_tls_context *sq_tls_context_ref(sq_tls_context *c)
{
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sq_tls_context_free(sq_tls_context *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    SSL_CTX_free(c->ctx);
    free(c->alpn);
    free(c);
}

bool sq_tls_context_is_server(const sq_tls_context *c)
{
    return c && c->server;
}

/* --- the transport ------------------------------------------------------------------------- */

static void feed_cb(void *arg)
{
    sq__tls *t = arg;
    t->feed = NULL;
    sq_io *io = t->io;
    if (io && (io->events & SQ_READ) && (t->again || (!t->starved && SSL_has_pending(t->ssl))))
        sq__io_dispatch(t->loop, io, SQ_READ);
}

/* The caller wants to read: if OpenSSL holds bytes the kernel will not signal, make sure the
 * watcher's callback runs. */
static void feed_if_pending(sq__tls *t)
{
    if (t->feed || !t->io) return;
    if (!t->again && (t->failed || t->starved || t->wblocked || !SSL_has_pending(t->ssl))) return;
    t->feed = sq_call_later(t->loop, 0, feed_cb, t);
}

/* A read or write that did not complete: what it waits for, or the error it is. */
static ssize_t io_error(sq__tls *t, int r, unsigned char *want)
{
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = SQ_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = SQ_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify (or, with IGNORE_UNEXPECTED_EOF, a plain EOF) */
    case SSL_ERROR_SYSCALL:
        if (!ERR_peek_error() && !errno) return 0; /* EOF */
        t->failed = true;
        if (!ERR_peek_error()) return -errno;
        return tls_fail(t->ssl, "TLS I/O failed");
    default:
        t->failed = true;
        return tls_fail(t->ssl, "TLS protocol error");
    }
}

/* After a read or write that could not complete: a handshake in progress goes on.  Never set
 * again once done: a post-handshake message (a KeyUpdate) leaves OpenSSL "in init" for a
 * moment, and the layers above would redo their start. */
static void handshake_check(sq__tls *t)
{
    t->handshaking = t->handshaking && !SSL_is_init_finished(t->ssl);
}

static ssize_t tls_read(sq__tp *tp, void *buf, size_t len)
{
    sq__tls *t = (sq__tls *)tp;
    t->again = false;
    t->starved = false;
    if (t->pending) {
        int e = t->pending;
        t->pending = 0;
        return e;
    }
    if (t->failed) return SQ_ETLS;
    if (t->wblocked) { /* finish the write first: its retry comes with the write event */
        t->rd_want = SQ_WRITE;
        return -EAGAIN;
    }
    size_t got = 0;
    /* Record after record while OpenSSL holds more (decrypted bytes, or raw ones it read
     * ahead) and the caller's buffer has room.  Then stop without asking the kernel again:
     * if the socket has more, level-triggered epoll says so, as after a short plain read. */
    while (got < len) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n);
        if (r == 1) {
            got += n;
            if (!SSL_has_pending(t->ssl)) break;
            continue;
        }
        ssize_t e = io_error(t, r, &t->rd_want);
        if (e == -EAGAIN) {
            if (t->rd_want == SQ_READ) {
                t->rd_want = 0;
                t->starved = true;
            }
            handshake_check(t);
        }
        if (got) {
            if (e != -EAGAIN && e != 0) t->pending = (int)e;
            if (e == 0) t->pending = 0; /* the EOF repeats on the next call */
            if (e != -EAGAIN) t->again = true; /* which must come without a kernel event */
            break;
        }
        return e;
    }
    t->rd_want = 0;
    t->handshaking = false;
    return (ssize_t)got;
}

static ssize_t tls_writev(sq__tp *tp, const struct iovec *iov, int n)
{
    sq__tls *t = (sq__tls *)tp;
    if (t->failed) return SQ_ETLS;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            size_t w = 0;
            ERR_clear_error();
            int r = SSL_write_ex(t->ssl, (const char *)iov[i].iov_base + off, iov[i].iov_len - off, &w);
            if (r == 1) {
                off += w;
                t->wblocked = false;
                continue;
            }
            ssize_t e = io_error(t, r, &t->wr_want);
            t->wblocked = e == -EAGAIN && t->wr_want == SQ_WRITE && !t->handshaking;
            if (e == -EAGAIN) {
                if (t->wr_want == SQ_WRITE) t->wr_want = 0;
                handshake_check(t);
            } else if (e == 0) {
                e = -EPIPE; /* writing after the peer's close_notify */
            }
            total += off;
            return total ? (ssize_t)total : e;
        }
        total += off;
    }
    t->wr_want = 0;
    t->handshaking = false;
    return (ssize_t)total;
}

/* Our close_notify, once, best effort: not after a fatal error or mid-handshake. */
static void close_notify(sq__tls *t)
{
    if (t->failed || t->handshaking || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

static int tls_shutdown(sq__tp *tp)
{
    close_notify((sq__tls *)tp);
    return shutdown(tp->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void tls_free(sq__tp *tp, bool reset)
{
    sq__tls *t = (sq__tls *)tp;
    if (!reset) close_notify(t);
    if (t->feed) sq_call_cancel(t->feed);
    SSL_free(t->ssl);
    sq_tls_context_free(t->ctx);
    free(t);
}

/* A server's first look: a TLS connection starts with a handshake record (0x16); anything
 * else (an HTTP request line) is no TLS at all. */
static int check_first_byte(sq__tls *t)
{
    unsigned char b;
    for (;;) {
        ssize_t n = recv(t->base.fd, &b, 1, MSG_PEEK);
        if (n == 1) break;
        if (n == 0) {
            set_error("the peer closed the connection before the handshake");
            return SQ_ETLS;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->hs_want = SQ_READ;
            return -EAGAIN;
        }
        return -errno;
    }
    t->checked_first = true;
    if (b != 0x16) {
        set_error("not a TLS handshake (plain HTTP on a TLS port?)");
        return -EPROTO;
    }
    return 0;
}

static int tls_handshake(sq__tp *tp)
{
    sq__tls *t = (sq__tls *)tp;
    if (!t->handshaking) return 0;
    if (t->failed) return SQ_ETLS;
    if (t->ctx->server && !t->checked_first) {
        int e = check_first_byte(t);
        if (e < 0) {
            if (e != -EAGAIN) t->failed = true;
            return e;
        }
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->handshaking = false;
        t->hs_want = 0;
        return 0;
    }
    ssize_t e = io_error(t, r, &t->hs_want);
    if (e == -EAGAIN) return -EAGAIN;
    t->failed = true;
    if (e == 0) {
        set_error("the peer closed the connection during the handshake");
        return SQ_ETLS;
    }
    if (e != SQ_ETLS) set_error("%s during the handshake", strerror((int)-e));
    return (int)e;
}

static unsigned tls_poll(sq__tp *tp, unsigned ev)
{
    sq__tls *t = (sq__tls *)tp;
    if (t->handshaking) return t->hs_want ? t->hs_want : SQ_READ;
    unsigned k = 0;
    if (ev & SQ_READ) {
        k |= t->rd_want ? t->rd_want : SQ_READ;
        feed_if_pending(t);
    }
    if (ev & SQ_WRITE) k |= t->wr_want ? t->wr_want : SQ_WRITE;
    return k;
}

static unsigned tls_ready(const sq__tp *tp, unsigned ev)
{
    const sq__tls *t = (const sq__tls *)tp;
    if ((ev & SQ_WRITE) && t->rd_want == SQ_WRITE) ev |= SQ_READ;
    if ((ev & SQ_READ) && t->wr_want == SQ_READ) ev |= SQ_WRITE;
    if (t->handshaking && (ev & (SQ_READ | SQ_WRITE))) ev |= SQ_READ | SQ_WRITE;
    return ev;
}

static void tls_attach(sq__tp *tp, sq_loop *loop, sq_io *io)
{
    sq__tls *t = (sq__tls *)tp;
    if (t->feed) {
        sq_call_cancel(t->feed);
        t->feed = NULL;
    }
    t->loop = loop;
    t->io = io;
}

static bool tls_handshaking(const sq__tp *tp)
{
    return ((const sq__tls *)tp)->handshaking;
}

static const sq__tp_ops tls_ops = {
    .read = tls_read,
    .writev = tls_writev,
    .sendfile = NULL, /* through the cipher: the caller reads the file and writes it */
    .shutdown = tls_shutdown,
    .free = tls_free,
    .handshake = tls_handshake,
    .poll = tls_poll,
    .ready = tls_ready,
    .attach = tls_attach,
    .handshaking = tls_handshaking,
};

bool sq__tp_is_tls(const sq__tp *tp)
{
    return tp && tp->ops == &tls_ops;
}

sq__tp *sq__tls_new(sq_tls_context *ctx, int fd, const char *hostname, int *err)
{
    sq__tls *t = calloc(1, sizeof *t);
    if (!t) {
        *err = -ENOMEM;
        return NULL;
    }
    /* OpenSSL writes with write(2): a vanished peer must not kill the process */
    sq__ignore_sigpipe_once();
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        *err = tls_fail(NULL, "cannot create the TLS connection");
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    t->base.ops = &tls_ops;
    t->base.fd = fd;
    SSL_set_app_data(t->ssl, t);
    t->ctx = sq_tls_context_ref(ctx);
    t->handshaking = true;
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (hostname && *hostname) {
            struct in6_addr a6;
            bool is_ip = strchr(hostname, ':') || inet_pton(AF_INET, hostname, &a6) == 1;
            int ok = 1;
            if (!is_ip) ok = SSL_set_tlsext_host_name(t->ssl, hostname); /* SNI: names only */
            if (ok == 1 && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE)
                ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), hostname)
                           : SSL_set1_host(t->ssl, hostname);
            if (ok != 1) {
                *err = tls_fail(NULL, "cannot set the host name to verify");
                tls_free(&t->base, true);
                return NULL;
            }
        }
    }
    return &t->base;
}

const char *sq__tls_alpn(const sq__tp *tp, size_t *len)
{
    if (!sq__tp_is_tls(tp)) return NULL;
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(((const sq__tls *)tp)->ssl, &p, &n);
    if (!n) return NULL;
    if (len) *len = n;
    return (const char *)p;
}

void sq__tls_set_h2(sq__tp *tp, bool on)
{
    if (!sq__tp_is_tls(tp)) return;
    ((sq__tls *)tp)->http = true;
    ((sq__tls *)tp)->h2 = on;
}
