/* Certificate failures, each a distinct readable SQ_ETLS reason from sq_tls_last_error(),
 * against squall HTTPS servers (sq_http_server) in this process that keep serving: right
 * after each failure a correct client gets its 200 from the same server, and from the
 * main one.
 *
 *   wrong host name    sq_stream_start_tls(… "wrong.test") on server.pem, and b.pem reached
 *                      as "localhost":            "certificate verify failed: hostname mismatch"
 *   wrong IP address   b.pem reached as 127.0.0.1: "… IP address mismatch"
 *   self-signed        trusting only the test CA, and the system store:
 *                                                 "… self-signed certificate"
 *   expired            "… certificate has expired"
 *   no client cert     the server requires one (SQ_TLS_VERIFY_REQUIRED + ca_file): the
 *                      client's handshake completes (TLS 1.3), its first read fails with
 *                      "tlsv13 alert certificate required"
 *   untrusted client   a self-signed client certificate: the server's alert reason
 *   SNI and mTLS       a virtual host (SNI b.test) that requires client certificates behind
 *                      a default one that does not: its requirement holds
 * The correct clients: start_tls "b.test" (SNI picks b.pem), a context trusting
 * selfsigned.pem, insecure_no_verify, a CA-signed client certificate.
 *
 * The clients run on their own loop in a second thread: sq_tls_last_error() is per thread,
 * and a server on the same thread fails the same handshake a moment later, recording its own
 * side's reason ("sslv3 alert bad certificate") over the client's.  Each reason is printed,
 * and the servers' (their debug log). */
#include "tlstest.h"

#include <pthread.h>
#include <stdatomic.h>

/* --- the servers (main thread) ------------------------------------------------------------ */

static void hello(sq_http_request *req, void *arg)
{
    (void)arg;
    char body[64];
    int n = snprintf(body, sizeof body, "hello %s", req->protocol);
    sq_http_write(req, body, (size_t)n);
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char server_log[8192];

static void capture_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t len = strlen(server_log);
    snprintf(server_log + len, sizeof server_log - len, "%s\n", msg);
    pthread_mutex_unlock(&log_lock);
}

static sq_tls_context *server_ctx(const char *cert, const char *key, sq_tls_options *extra)
{
    sq_tls_options o = extra ? *extra : (sq_tls_options){0};
    o.cert_file = fx(cert);
    o.key_file = fx(key);
    int err = 0;
    sq_tls_context *c = sq_tls_server_context_new(&o, &err);
    if (!c) fail_msg("server context %s: %s (%s)", cert, sq_strerror(err), sq_tls_last_error());
    return c;
}

static sq_tls_context *client_ctx(sq_tls_options o)
{
    int err = 0;
    sq_tls_context *c = sq_tls_client_context_new(&o, &err);
    if (!c) fail_msg("client context: %s (%s)", sq_strerror(err), sq_tls_last_error());
    return c;
}

static sq_tls_context *b_ctx, *b_mtls_ctx;

static sq_tls_context *pick_b(const char *name, void *arg)
{
    (void)arg;
    return strcmp(name, "b.test") == 0 ? b_ctx : NULL;
}

/* A virtual host that requires client certificates, behind a default one that does not:
 * what SNI picks brings its verification along, not only its certificate. */
static sq_tls_context *pick_b_mtls(const char *name, void *arg)
{
    (void)arg;
    return strcmp(name, "b.test") == 0 ? b_mtls_ctx : NULL;
}

static sq_http_server *https_server(sq_loop *loop, sq_tls_context *ctx)
{
    sq_http_settings s = {.tls = ctx, .tls_handshake_timeout = 5};
    sq_http_server *srv = sq_http_server_new(loop, &s, hello, NULL);
    assert_non_null(srv);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    sq_tls_context_free(ctx); /* the server keeps its reference */
    return srv;
}

/* --- the clients (second thread, own loop; no cmocka asserts there) ---------------------- */

enum { S_GOOD, S_B, S_SELF, S_EXP, S_MTLS, S_SNI_MTLS, NSERVERS };

typedef struct ccase {
    const char *name;
    int server;
    const char *host;    /* sq_tcp_connect_tls(host) … */
    const char *verify;  /* … or, if set, connect to 127.0.0.1 and start_tls(verify) */
    sq_tls_context *ctx; /* NULL: the system store */
    const char *want;    /* a substring of the reason; NULL: must succeed */
} ccase;

typedef struct cres {
    int err;
    char reason[256];
    bool matched;
} cres;

typedef struct run {
    int ports[NSERVERS];
    const ccase *cases;
    cres *res;
    size_t ncases;
    atomic_int done;
    bool client_ok;
} run;

/* GET / over a TLS stream: 0 for "200 … hello https", else a negative error (the reason
 * recorded in `reason` when TLS failed). */
static int get(sq_stream *s, char *reason, size_t rlen)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int e = sq_stream_write(s, req, sizeof req - 1);
    const char *d = NULL;
    ssize_t n = e < 0 ? e : sq_stream_read_until_close(s, 1 << 16, &d);
    if (n < 0 && sq_stream_error(s) < 0) n = sq_stream_error(s);
    if (n == SQ_ETLS) snprintf(reason, rlen, "%s", sq_tls_last_error());
    if (n < 0) return (int)n;
    if (n < 12 || memcmp(d, "HTTP/1.1 200", 12) != 0 || !memmem(d, (size_t)n, "hello https", 11))
        return -EPROTO;
    return 0;
}

static int attempt(run *r, const ccase *c, cres *o)
{
    int port = r->ports[c->server];
    int err = 0;
    sq_stream *s;
    o->reason[0] = 0;
    if (c->verify) {
        s = sq_tcp_connect("127.0.0.1", port, 5, &err);
        if (s) {
            err = sq_stream_start_tls(s, c->ctx, c->verify);
            if (err < 0) {
                sq_stream_free(s);
                s = NULL;
            }
        }
    } else {
        s = sq_tcp_connect_tls(c->host, port, 5, c->ctx, &err);
    }
    if (!s && err == SQ_ETLS) snprintf(o->reason, sizeof o->reason, "%s", sq_tls_last_error());
    if (s) {
        err = get(s, o->reason, sizeof o->reason);
        sq_stream_free(s);
    }
    o->err = err;
    o->matched = c->want ? err == SQ_ETLS && strstr(o->reason, c->want) : err == 0;
    return err;
}

static void *client_coro(void *arg)
{
    run *r = arg;
    r->client_ok = true;
    for (size_t i = 0; i < r->ncases; i++) {
        attempt(r, &r->cases[i], &r->res[i]);
        if (!r->res[i].matched) r->client_ok = false;
    }
    return NULL;
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void *client_thread(void *arg)
{
    run *r = arg;
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(loop, client_coro, r);
    sq_call *guard = sq_call_later(loop, 20, stop_loop, loop);
    sq_loop_run_until(loop, f);
    if (sq_future_done(f)) sq_call_cancel(guard);
    sq_future_release(f);
    sq_loop_free(loop);
    atomic_store(&r->done, 1);
    return NULL;
}

/* The main loop serves until the client thread is through. */
static void *serve_coro(void *arg)
{
    run *r = arg;
    double t0 = sq_test_now();
    while (!atomic_load(&r->done) && sq_test_now() - t0 < 25) sq_sleep(0.005);
    return NULL;
}

/* Let the servers see their last clients go (bounded). */
static void *settle_coro(void *arg)
{
    sq_http_server **srv = arg;
    double t0 = sq_test_now();
    for (;;) {
        size_t open = 0;
        for (int i = 0; i < NSERVERS; i++) open += sq_http_server_connections(srv[i]);
        if (!open || sq_test_now() - t0 > 5) break;
        sq_sleep(0.01);
    }
    return NULL;
}

static void test_verify_failures(void **state)
{
    (void)state;
    sq_log_set_handler(capture_log, NULL);
    sq_log_set_level(SQ_LOG_DEBUG);
    sq_loop *loop = sq_loop_new(NULL);
    b_ctx = server_ctx("b.pem", "b.key", NULL);
    b_mtls_ctx = server_ctx(
        "b.pem", "b.key",
        &(sq_tls_options){.ca_file = fx("ca.pem"), .verify_client = SQ_TLS_VERIFY_REQUIRED});
    sq_http_server *srv[NSERVERS];
    srv[S_GOOD] = https_server(loop, server_ctx("server.pem", "server.key",
                                                &(sq_tls_options){.sni = pick_b}));
    srv[S_B] = https_server(loop, sq_tls_context_ref(b_ctx));
    srv[S_SELF] = https_server(loop, server_ctx("selfsigned.pem", "selfsigned.key", NULL));
    srv[S_EXP] = https_server(loop, server_ctx("expired.pem", "expired.key", NULL));
    srv[S_MTLS] = https_server(loop, server_ctx("server.pem", "server.key",
                                                &(sq_tls_options){.ca_file = fx("ca.pem"),
                                                                  .verify_client = SQ_TLS_VERIFY_REQUIRED}));
    srv[S_SNI_MTLS] = https_server(
        loop, server_ctx("server.pem", "server.key", &(sq_tls_options){.sni = pick_b_mtls}));

    sq_tls_context *ca = client_ctx((sq_tls_options){.ca_file = fx("ca.pem")});
    sq_tls_context *trust_self = client_ctx((sq_tls_options){.ca_file = fx("selfsigned.pem")});
    sq_tls_context *insecure = client_ctx((sq_tls_options){.insecure_no_verify = true});
    sq_tls_context *with_cert = client_ctx((sq_tls_options){
        .ca_file = fx("ca.pem"), .cert_file = fx("client.pem"), .key_file = fx("client.key")});
    sq_tls_context *self_cert = client_ctx((sq_tls_options){
        .ca_file = fx("ca.pem"), .cert_file = fx("selfsigned.pem"), .key_file = fx("selfsigned.key")});

#define GOOD {"main server, correct client", S_GOOD, "localhost", NULL, ca, NULL}
    const ccase cases[] = {
        GOOD,
        {"start_tls as wrong.test", S_GOOD, NULL, "wrong.test", ca,
         "certificate verify failed: hostname mismatch"},
        {"start_tls as b.test (SNI: b.pem)", S_GOOD, NULL, "b.test", ca, NULL},
        GOOD,
        {"b.pem reached as localhost", S_B, "localhost", NULL, ca,
         "certificate verify failed: hostname mismatch"},
        {"b.pem reached as b.test", S_B, NULL, "b.test", ca, NULL},
        {"b.pem reached as 127.0.0.1", S_B, "127.0.0.1", NULL, ca,
         "certificate verify failed: IP address mismatch"},
        {"b.pem reached as b.test", S_B, NULL, "b.test", ca, NULL},
        GOOD,
        {"self-signed, the test CA", S_SELF, "127.0.0.1", NULL, ca,
         "certificate verify failed: self-signed certificate"},
        {"self-signed, trusted itself", S_SELF, "localhost", NULL, trust_self, NULL},
        {"self-signed, the system store", S_SELF, "localhost", NULL, NULL,
         "certificate verify failed: self-signed certificate"},
        {"self-signed, trusted itself", S_SELF, "127.0.0.1", NULL, trust_self, NULL},
        GOOD,
        {"expired", S_EXP, "localhost", NULL, ca,
         "certificate verify failed: certificate has expired"},
        {"expired, no verification", S_EXP, "localhost", NULL, insecure, NULL},
        GOOD,
        {"client certificate missing", S_MTLS, "localhost", NULL, ca,
         "tlsv13 alert certificate required"},
        {"client certificate CA-signed", S_MTLS, "localhost", NULL, with_cert, NULL},
        {"client certificate self-signed", S_MTLS, "localhost", NULL, self_cert,
         "tlsv1 alert unknown ca"},
        {"client certificate CA-signed", S_MTLS, "127.0.0.1", NULL, with_cert, NULL},
        GOOD,
        {"SNI b.test requires one, missing", S_SNI_MTLS, NULL, "b.test", ca,
         "tlsv13 alert certificate required"},
        {"SNI b.test requires one, CA-signed", S_SNI_MTLS, NULL, "b.test", with_cert, NULL},
        {"default host of it, no certificate", S_SNI_MTLS, "localhost", NULL, ca, NULL},
        GOOD,
    };
#undef GOOD
    enum { NCASES = sizeof cases / sizeof cases[0] };
    cres res[NCASES];
    memset(res, 0, sizeof res);
    run r = {.cases = cases, .res = res, .ncases = NCASES};
    for (int i = 0; i < NSERVERS; i++) r.ports[i] = sq_http_server_port(srv[i]);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_thread, &r), 0);
    sq_test_run_coro(loop, serve_coro, &r, 30);
    pthread_join(t, NULL);
    sq_log_set_handler(NULL, NULL);
    sq_log_set_level(SQ_LOG_INFO);

    for (size_t i = 0; i < r.ncases; i++) {
        fprintf(stderr, "%-36s %s  %s%s%s\n", cases[i].name,
                res[i].matched ? "as expected" : "UNEXPECTED",
                res[i].err ? sq_strerror(res[i].err) : "200 hello https",
                res[i].reason[0] ? ": " : "", res[i].reason);
    }
    fprintf(stderr, "server log:\n%s", server_log);
    for (size_t i = 0; i < r.ncases; i++) assert_true(res[i].matched);
    assert_true(r.client_ok);
    /* the two hostname failures say the same thing; the other reasons differ */
    assert_string_equal(res[1].reason, res[4].reason);

    /* every connection gone */
    sq_test_run_coro(loop, settle_coro, srv, 10);
    for (int i = 0; i < NSERVERS; i++) assert_int_equal(sq_http_server_connections(srv[i]), 0);
    for (int i = 0; i < NSERVERS; i++) sq_http_server_free(srv[i]);
    sq_tls_context_free(b_ctx);
    sq_tls_context_free(b_mtls_ctx);
    sq_tls_context_free(ca);
    sq_tls_context_free(trust_self);
    sq_tls_context_free(insecure);
    sq_tls_context_free(with_cert);
    sq_tls_context_free(self_cert);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_failures),
    };
    return cmocka_run_group_tests(tests, tls_fixtures_setup, NULL);
}
