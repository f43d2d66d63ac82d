/* sq_http_detach_stream: a 101 upgrade hands the connection over as a stream, plain or TLS,
 * with the bytes the client sent right after its request already in the stream's buffer;
 * sq_http_detach_connection refuses a TLS connection (a raw fd would bypass the cipher). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static sq_tls_context *server_ctx, *client_ctx;

/* Upgrade to a line echo: each line comes back; "bye" ends it. */
static void echo_handler(sq_http_request *req, void *arg)
{
    int *detach_fd_err = arg;
    if (req->conn && strncmp(req->path.ptr, "/fd", 3) == 0) {
        int fd;
        char *extra;
        size_t n;
        *detach_fd_err = sq_http_detach_connection(req, &fd, &extra, &n);
        if (*detach_fd_err == 0) { /* plain: the (empty 200) response went out, the fd is ours */
            free(extra);
            close(fd);
            return;
        }
        sq_http_set_status(req, 400, NULL); /* TLS: refused, the connection is still HTTP */
        sq_http_finish(req);
        return;
    }
    sq_http_set_status(req, 101, NULL);
    sq_http_set_header(req, "Upgrade", "echo");
    sq_http_set_header(req, "Connection", "Upgrade");
    sq_stream *s;
    if (sq_http_detach_stream(req, &s) < 0) return;
    for (int i = 0; i < 100; i++) {
        const char *line;
        ssize_t n = sq_stream_read_until(s, "\n", 1, 4096, &line);
        if (n <= 0) break;
        bool bye = n == 4 && !memcmp(line, "bye\n", 4);
        char copy[4096];
        memcpy(copy, line, (size_t)n);
        if (sq_stream_write(s, copy, (size_t)n) < 0 || bye) break;
    }
    sq_stream_drain(s);
    sq_stream_free(s);
}

typedef struct client_arg {
    int port;
    bool tls;
    int fd_err;
    char got[512];
} client_arg;

static void *client_task(void *arg)
{
    client_arg *a = arg;
    int err;
    sq_stream *s = a->tls ? sq_tcp_connect_tls("127.0.0.1", a->port, 5, client_ctx, &err)
                          : sq_tcp_connect("127.0.0.1", a->port, 5, &err);
    assert_non_null(s);
    /* the request and the first line of the new protocol in one write */
    static const char req[] = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n"
                              "Connection: Upgrade\r\n\r\nfirst\n";
    assert_int_equal(sq_stream_write(s, req, sizeof req - 1), 0);
    const char *data;
    ssize_t n = sq_stream_read_until(s, "\r\n\r\n", 4, 0, &data);
    assert_true(n > 12);
    assert_memory_equal(data, "HTTP/1.1 101", 12);
    assert_int_equal(sq_stream_write(s, "second\nbye\n", 11), 0);
    size_t got = 0;
    while (got < 17) {
        n = sq_stream_read_bytes(s, 17 - got, true, &data);
        if (n <= 0) break;
        memcpy(a->got + got, data, (size_t)n);
        got += (size_t)n;
    }
    a->got[got] = 0;
    sq_stream_free(s);

    /* the fd form on the same server */
    s = a->tls ? sq_tcp_connect_tls("127.0.0.1", a->port, 5, client_ctx, &err)
               : sq_tcp_connect("127.0.0.1", a->port, 5, &err);
    assert_non_null(s);
    static const char req2[] = "GET /fd HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(sq_stream_write(s, req2, sizeof req2 - 1), 0);
    n = sq_stream_read_until(s, "\r\n\r\n", 4, 0, &data);
    assert_true(n > 12);
    sq_stream_free(s);
    return NULL;
}

static void run(bool tls)
{
    sq_loop *loop = sq_loop_new(NULL);
    client_arg a = {.tls = tls, .fd_err = 1};
    sq_http_settings st = {.tls = tls ? server_ctx : NULL};
    sq_http_server *srv = sq_http_server_new(loop, &st, echo_handler, &a.fd_err);
    assert_non_null(srv);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    a.port = sq_http_server_port(srv);
    sq_test_run_coro(loop, client_task, &a, 20);
    assert_string_equal(a.got, "first\nsecond\nbye\n");
    if (tls)
        assert_int_equal(a.fd_err, -EOPNOTSUPP);
    else
        assert_int_equal(a.fd_err, 0);
    sq_http_server_free(srv);
    sq_loop_free(loop);
}

static void test_plain(void **state)
{
    run(false);
}

static void test_tls(void **state)
{
    run(true);
}

static int setup(void **state)
{
    const char *src = getenv("SQ_SOURCE_DIR"), *build = getenv("SQ_BUILD_DIR");
    if (!src || !build) return -1;
    char cmd[4096], cert[2048], key[2048], ca[2048];
    snprintf(cmd, sizeof cmd, "sh '%s/tests/tls/mkcerts.sh' '%s/tls-fixtures'", src, build);
    if (system(cmd) != 0) return -1;
    snprintf(cert, sizeof cert, "%s/tls-fixtures/server.pem", build);
    snprintf(key, sizeof key, "%s/tls-fixtures/server.key", build);
    snprintf(ca, sizeof ca, "%s/tls-fixtures/ca.pem", build);
    int err;
    server_ctx = sq_tls_server_context_new(&(sq_tls_options){.cert_file = cert, .key_file = key},
                                           &err);
    client_ctx = sq_tls_client_context_new(&(sq_tls_options){.ca_file = ca}, &err);
    return server_ctx && client_ctx ? 0 : -1;
}

static int teardown(void **state)
{
    sq_tls_context_free(server_ctx);
    sq_tls_context_free(client_ctx);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
