/* `openssl s_client` (a separate process, run on the executor while the loop serves)
 * against squall HTTPS servers (sq_http_server) in this process:
 *  - ALPN: a server configured with {"http/1.1"} answers "ALPN protocol: http/1.1" to
 *    -alpn h2,http/1.1; one with {"h2", "http/1.1"} answers h2;
 *  - SNI: the server's sni callback picks server.pem for a.test and b.pem for b.test (the
 *    subject CN s_client shows, verified against the CA and the name);
 *  - a resumed session: -sess_out after reading a response (the TLS 1.3 ticket has
 *    arrived), then -sess_in shows "Reused, TLSv1.3" (for a.test, and for b.test whose
 *    context SNI chose), and "Reused, TLSv1.2" with -tls1_2; a server with no_tickets
 *    never resumes ("New"), in TLS 1.3 or by session id in TLS 1.2;
 *  - TLS 1.1 refused by default (the client itself willing: -cipher DEFAULT@SECLEVEL=0): a
 *    protocol version alert, and the server goes on serving.
 * Skipped without the openssl command. */
#include "tlstest.h"

static bool have_openssl;

static int setup(void **state)
{
    have_openssl = system("openssl version >/dev/null 2>&1") == 0;
    return tls_fixtures_setup(state);
}

static void hello(sq_http_request *req, void *arg)
{
    (void)arg;
    char body[64];
    int n = snprintf(body, sizeof body, "hello %s\n", req->protocol);
    sq_http_write(req, body, (size_t)n);
}

static sq_tls_context *server_ctx(const char *cert, const char *key, sq_tls_options o)
{
    o.cert_file = fx(cert);
    o.key_file = fx(key);
    int err = 0;
    sq_tls_context *c = sq_tls_server_context_new(&o, &err);
    if (!c) fail_msg("server context %s: %s (%s)", cert, sq_strerror(err), sq_tls_last_error());
    return c;
}

static sq_tls_context *a_ctx, *b_ctx;
static int sni_calls;

static sq_tls_context *pick(const char *name, void *arg)
{
    (void)arg;
    sni_calls++;
    if (strcmp(name, "b.test") == 0) return b_ctx;
    if (strcmp(name, "a.test") == 0) return a_ctx;
    return NULL;
}

static sq_http_server *https_server(sq_loop *loop, sq_tls_context *ctx)
{
    sq_http_settings s = {.tls = ctx, .tls_handshake_timeout = 5};
    sq_http_server *srv = sq_http_server_new(loop, &s, hello, NULL);
    assert_non_null(srv);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    return srv;
}

typedef struct ports {
    int sni, h2, notickets;
} ports;

static const char *GET = "printf 'GET / HTTP/1.0\\r\\nHost: a.test\\r\\n\\r\\n' | ";

/* Run s_client against port with `args`, stdin from `input` ("": /dev/null), print and
 * keep its output in j.  Returns its exit status (sh's). */
static int s_client(cmd_job *j, int port, const char *input, const char *args)
{
    snprintf(j->cmd, sizeof j->cmd,
             "%stimeout 20 openssl s_client -connect 127.0.0.1:%d -CAfile '%s' %s %s 2>&1",
             *input ? input : "", port, fx("ca.pem"), args, *input ? "-ign_eof" : "</dev/null");
    assert_int_equal(run_cmd(j), 0);
    int st = WIFEXITED(j->status) ? WEXITSTATUS(j->status) : 128;
    /* the lines worth reading (the full output is long) */
    fprintf(stderr, "$ openssl s_client -connect :%d %s%s -> exit %d\n", port, args,
            *input ? " (GET /)" : "", st);
    static const char *const keep[] = {"subject=", "ALPN", "Reused", "New,", "Verify return",
                                       "alert", "error", "HTTP/1", "hello", "Cipher is", NULL};
    for (const char *l = j->out; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        for (int k = 0; keep[k]; k++)
            if (memmem(l, n, keep[k], strlen(keep[k]))) {
                fprintf(stderr, "    %.*s\n", (int)n, l);
                break;
            }
        l += n + (e ? 1 : 0);
    }
    return st;
}

static void expect(const cmd_job *j, const char *text)
{
    if (!strstr(j->out, text)) fail_msg("s_client output lacks '%s':\n%s", text, j->out);
}

static void *sclient_coro(void *arg)
{
    ports *p = arg;
    cmd_job *j = malloc(sizeof *j);
    assert_non_null(j);

    /* ALPN: the server's own list decides */
    assert_int_equal(s_client(j, p->sni, "", "-alpn h2,http/1.1 -servername a.test"), 0);
    expect(j, "ALPN protocol: http/1.1");
    assert_int_equal(s_client(j, p->h2, "", "-alpn h2,http/1.1"), 0);
    expect(j, "ALPN protocol: h2");
    assert_int_equal(s_client(j, p->h2, "", "-alpn http/1.1,h2"), 0);
    expect(j, "ALPN protocol: h2"); /* server preference, whatever the client's order */
    assert_int_equal(s_client(j, p->h2, "", "-alpn spdy/3"), 0);
    expect(j, "No ALPN negotiated");

    /* SNI: the certificate for the name asked for, verified for it */
    assert_int_equal(s_client(j, p->sni, GET,
                              "-servername a.test -verify_hostname a.test -verify_return_error"), 0);
    expect(j, "subject=CN = a.test");
    expect(j, "Verify return code: 0 (ok)");
    expect(j, "hello https");
    assert_int_equal(s_client(j, p->sni, GET,
                              "-servername b.test -verify_hostname b.test -verify_return_error"), 0);
    expect(j, "subject=CN = b.test");
    expect(j, "Verify return code: 0 (ok)");
    expect(j, "hello https");
    assert_int_equal(s_client(j, p->sni, "", "-noservername"), 0);
    expect(j, "subject=CN = a.test"); /* no name: the default certificate */

    /* resumption: the ticket arrives with the response */
    char sess[4096], args[8192];
    snprintf(sess, sizeof sess, "%s", sq_test_build_path("tls-sclient-XXXXXX"));
    int fd = mkstemp(sess);
    assert_true(fd >= 0);
    close(fd);
    snprintf(args, sizeof args, "-servername a.test -sess_out '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "New, TLSv1.3");
    expect(j, "hello https");
    snprintf(args, sizeof args, "-servername a.test -sess_in '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "Reused, TLSv1.3");
    expect(j, "hello https");
    /* the same for b.test (the context SNI switched to) and for TLS 1.2 */
    snprintf(args, sizeof args, "-servername b.test -sess_out '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "subject=CN = b.test");
    snprintf(args, sizeof args, "-servername b.test -sess_in '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "Reused, TLSv1.3");
    expect(j, "hello https");
    snprintf(args, sizeof args, "-tls1_2 -servername a.test -sess_out '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "New, TLSv1.2");
    expect(j, "hello https");
    snprintf(args, sizeof args, "-tls1_2 -servername a.test -sess_in '%s'", sess);
    assert_int_equal(s_client(j, p->sni, GET, args), 0);
    expect(j, "Reused, TLSv1.2");
    expect(j, "hello https");
    /* a server without tickets: nothing to resume */
    snprintf(args, sizeof args, "-sess_out '%s'", sess);
    assert_int_equal(s_client(j, p->notickets, GET, args), 0);
    expect(j, "New, TLSv1.3");
    snprintf(args, sizeof args, "-sess_in '%s'", sess);
    assert_int_equal(s_client(j, p->notickets, GET, args), 0);
    expect(j, "New, TLSv1.3");
    assert_null(strstr(j->out, "Reused"));
    snprintf(args, sizeof args, "-tls1_2 -sess_out '%s'", sess);
    assert_int_equal(s_client(j, p->notickets, GET, args), 0);
    snprintf(args, sizeof args, "-tls1_2 -sess_in '%s'", sess);
    assert_int_equal(s_client(j, p->notickets, GET, args), 0);
    expect(j, "New, TLSv1.2"); /* nor by session id */
    assert_null(strstr(j->out, "Reused"));
    unlink(sess);

    /* TLS 1.1: the client is willing (security level 0), the server is not */
    int st = s_client(j, p->sni, "", "-tls1_1 -cipher DEFAULT@SECLEVEL=0 -servername a.test");
    assert_int_not_equal(st, 0);
    expect(j, "alert protocol version"); /* the server's answer, not the client refusing */
    assert_null(strstr(j->out, "no protocols available"));
    /* … and the server still serves */
    assert_int_equal(s_client(j, p->sni, GET, "-servername a.test"), 0);
    expect(j, "hello https");
    free(j);
    return NULL;
}

static void test_openssl_s_client(void **state)
{
    if (!have_openssl) {
        fprintf(stderr, "openssl command not available: skipped\n");
        skip();
    }
    sq_loop *loop = sq_loop_new(NULL);
    static const char *const http11[] = {"http/1.1"};
    static const char *const h2[] = {"h2", "http/1.1"};
    a_ctx = server_ctx("server.pem", "server.key", (sq_tls_options){.alpn = http11, .n_alpn = 1});
    b_ctx = server_ctx("b.pem", "b.key", (sq_tls_options){.alpn = http11, .n_alpn = 1});
    sq_tls_context *main_ctx = server_ctx(
        "server.pem", "server.key", (sq_tls_options){.alpn = http11, .n_alpn = 1, .sni = pick});
    sq_tls_context *h2_ctx = server_ctx("server.pem", "server.key",
                                        (sq_tls_options){.alpn = h2, .n_alpn = 2});
    sq_tls_context *nt_ctx = server_ctx("server.pem", "server.key",
                                        (sq_tls_options){.no_tickets = true});
    sq_http_server *sni = https_server(loop, main_ctx);
    sq_http_server *h2s = https_server(loop, h2_ctx);
    sq_http_server *nts = https_server(loop, nt_ctx);
    sq_tls_context_free(main_ctx);
    sq_tls_context_free(h2_ctx);
    sq_tls_context_free(nt_ctx);
    ports p = {sq_http_server_port(sni), sq_http_server_port(h2s), sq_http_server_port(nts)};
    sq_test_run_coro(loop, sclient_coro, &p, 60);
    assert_true(sni_calls >= 5);
    sq_http_server_free(sni);
    sq_http_server_free(h2s);
    sq_http_server_free(nts);
    sq_tls_context_free(a_ctx);
    sq_tls_context_free(b_ctx);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_s_client),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
