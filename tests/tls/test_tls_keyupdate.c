/* A TLS 1.3 KeyUpdate that asks for ours, while our write is blocked, does not end the
 * connection.  OpenSSL 3.0 fails such a read fatally ("bad length": it must answer the
 * KeyUpdate while a record of ours is half written), so the transport finishes the write
 * before it reads again.
 *
 * The server: squall's HTTPS with HTTP/2, a handler sending 8 MiB in 64 KiB pieces with
 * sq_http_flush after each.  The client (a thread, OpenSSL and HTTP/2 frames by hand, a
 * small receive buffer): requests the body with a 16 KiB stream window, then for 2 s opens
 * the windows 16 KiB at a time, each time followed by a KeyUpdate requesting the server's,
 * without reading, so the server's socket is full; then it reads everything, opening the
 * windows as it goes.  Every byte arrives and the handler's flushes all succeed. */
#include "tlstest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define TOTAL ((size_t)8 << 20)

static int big_ok, big_failed;
static char big_err[128];

static void big(sq_http_request *req, void *arg)
{
    (void)arg;
    static char piece[65536];
    for (size_t sent = 0; sent < TOTAL; sent += sizeof piece) {
        sq_http_write(req, piece, sizeof piece);
        int e = sq_http_flush(req);
        if (e < 0) {
            big_failed++;
            snprintf(big_err, sizeof big_err, "%s", sq_strerror(e));
            return;
        }
    }
    big_ok++;
}

/* --- the client (its own thread; no cmocka asserts there) ---------------------------------- */

typedef struct client {
    int port;
    size_t data;     /* DATA payload bytes received */
    bool end_stream; /* the last DATA frame came */
    char error[256]; /* what failed, if anything */
    atomic_int done;
} client;

static bool put(SSL *ssl, client *c, const void *p, size_t n)
{
    size_t w;
    if (SSL_write_ex(ssl, p, n, &w) == 1 && w == n) return true;
    snprintf(c->error, sizeof c->error, "write failed: %s",
             ERR_error_string(ERR_get_error(), NULL));
    return false;
}

static bool frame(SSL *ssl, client *c, int type, int flags, uint32_t sid, const void *p, size_t n)
{
    unsigned char buf[9 + 256] = {
        (unsigned char)(n >> 16),   (unsigned char)(n >> 8),   (unsigned char)n,
        (unsigned char)type,        (unsigned char)flags,      (unsigned char)(sid >> 24),
        (unsigned char)(sid >> 16), (unsigned char)(sid >> 8), (unsigned char)sid};
    memcpy(buf + 9, p, n);
    return put(ssl, c, buf, 9 + n);
}

static bool window(SSL *ssl, client *c, uint32_t inc)
{
    unsigned char p[4] = {(unsigned char)(inc >> 24), (unsigned char)(inc >> 16),
                          (unsigned char)(inc >> 8), (unsigned char)inc};
    return frame(ssl, c, 8, 0, 0, p, 4) && frame(ssl, c, 8, 0, 1, p, 4);
}

/* an HPACK literal without indexing, names and values raw */
static size_t literal(unsigned char *o, const char *n, const char *v)
{
    size_t a = strlen(n), b = strlen(v), k = 0;
    o[k++] = 0;
    o[k++] = (unsigned char)a;
    memcpy(o + k, n, a);
    k += a;
    o[k++] = (unsigned char)b;
    memcpy(o + k, v, b);
    return k + b;
}

static void run_client(client *c, SSL_CTX *ctx)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rcv = 8192;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        snprintf(c->error, sizeof c->error, "connect: %s", strerror(errno));
        close(fd);
        return;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    if (SSL_connect(ssl) == 1) SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2)) {
        snprintf(c->error, sizeof c->error, "no h2 over TLS: %s",
                 ERR_error_string(ERR_get_error(), NULL));
        goto out;
    }
    unsigned char settings[6] = {0, 4, 0, 0, 0x40, 0}; /* INITIAL_WINDOW_SIZE 16384 */
    unsigned char hb[256];
    size_t k = literal(hb, ":method", "GET");
    k += literal(hb + k, ":scheme", "https");
    k += literal(hb + k, ":path", "/big");
    k += literal(hb + k, ":authority", "localhost");
    if (!put(ssl, c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) ||
        !frame(ssl, c, 4, 0, 0, settings, 6) || !frame(ssl, c, 1, 0x4 | 0x1, 1, hb, k))
        goto out;
    struct timespec ts = {0, 5 * 1000 * 1000};
    for (int i = 0; i < 400; i++) { /* 2 s, not reading */
        nanosleep(&ts, NULL);
        if (!window(ssl, c, 16384)) goto out;
        if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1) {
            snprintf(c->error, sizeof c->error, "KeyUpdate %d: %s", i,
                     ERR_error_string(ERR_get_error(), NULL));
            goto out;
        }
    }
    static unsigned char buf[1 << 20];
    size_t have = 0;
    double t0 = sq_test_now();
    while (!c->end_stream && sq_test_now() - t0 < 30) {
        size_t n = 0;
        if (SSL_read_ex(ssl, buf + have, sizeof buf - have, &n) != 1) {
            snprintf(c->error, sizeof c->error, "read ended after %zu bytes: SSL error %d %s",
                     c->data, SSL_get_error(ssl, 0), ERR_error_string(ERR_get_error(), NULL));
            goto out;
        }
        have += n;
        size_t off = 0;
        while (have - off >= 9) {
            size_t len = (size_t)buf[off] << 16 | (size_t)buf[off + 1] << 8 | buf[off + 2];
            if (have - off < 9 + len) break;
            int type = buf[off + 3], flags = buf[off + 4];
            if (type == 0) {
                c->data += len;
                if (flags & 1) c->end_stream = true;
                if (len && !window(ssl, c, (uint32_t)len)) goto out;
            } else if (type == 7 || type == 3) {
                snprintf(c->error, sizeof c->error, "%s from the server",
                         type == 7 ? "GOAWAY" : "RST_STREAM");
                goto out;
            }
            off += 9 + len;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
out:
    SSL_free(ssl);
    close(fd);
}

static void *client_main(void *arg)
{
    client *c = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    run_client(c, ctx);
    SSL_CTX_free(ctx);
    atomic_store(&c->done, 1);
    return NULL;
}

static void *serve_coro(void *arg)
{
    client *c = arg;
    double t0 = sq_test_now();
    while (!atomic_load(&c->done) && sq_test_now() - t0 < 50) sq_sleep(0.01);
    for (int i = 0; i < 100 && !big_ok && !big_failed; i++) sq_sleep(0.01);
    return NULL;
}

static void test_keyupdate_while_write_blocked(void **state)
{
    (void)state;
    sq_loop *loop = sq_loop_new(NULL);
    int err = 0;
    sq_tls_context *tls = sq_tls_server_context_new(
        &(sq_tls_options){.cert_file = fx("server.pem"), .key_file = fx("server.key")}, &err);
    assert_non_null(tls);
    sq_http_settings s = {.tls = tls};
    sq_http_server *srv = sq_http_server_new(loop, &s, big, NULL);
    assert_non_null(srv);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    sq_tls_context_free(tls);
    client c = {.port = sq_http_server_port(srv)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &c), 0);
    sq_test_run_coro(loop, serve_coro, &c, 60);
    pthread_join(t, NULL);
    fprintf(stderr, "client: %zu bytes%s %s; handler: ok %d failed %d %s\n", c.data,
            c.end_stream ? " (end of stream)" : "", c.error, big_ok, big_failed, big_err);
    sq_http_server_free(srv);
    sq_loop_free(loop);
    assert_string_equal(c.error, "");
    assert_int_equal(c.data, TOTAL);
    assert_true(c.end_stream);
    assert_int_equal(big_ok, 1);
    assert_int_equal(big_failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyupdate_while_write_blocked),
    };
    return cmocka_run_group_tests(tests, tls_fixtures_setup, NULL);
}
