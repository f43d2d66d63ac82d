/* sq_http_server_listen binds through the stream layer's listening code (the same as
 * sq_tcp_listen) and keeps the HTTP server's rules: every address is one dual-stack socket,
 * an explicit IPv6 address is IPv6 only, a name binds each address it resolves to on one
 * port, listeners add up across calls, and failures come back as errors with nothing bound. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "squall/http.h"
#include "../../src/http/http_internal.h"

static void hello(sq_http_request *req, void *arg)
{
    (void)arg;
    sq_http_write(req, "hi", 2);
}

static bool ipv6_available(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = probe >= 0 && bind(probe, (struct sockaddr *)&a, sizeof a) == 0;
    if (probe >= 0) close(probe);
    return ok;
}

/* Whether a blocking connect to addr:port succeeds (the listen backlog accepts it without
 * the loop running). */
static bool connects(int family, int port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    bool ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

static void test_every_address_is_dual_stack(void **state)
{
    (void)state;
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, NULL);
    assert_int_equal(sq_http_server_listen(srv, NULL, 0), 0);
    int port = sq_http_server_port(srv);
    assert_true(port > 0);
    assert_true(connects(AF_INET, port));
    if (ipv6_available()) assert_true(connects(AF_INET6, port));
    sq_http_server_free(srv);
    sq_loop_free(loop);
}

static void test_explicit_ipv6_is_v6only(void **state)
{
    (void)state;
    if (!ipv6_available()) skip();
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, NULL);
    assert_int_equal(sq_http_server_listen(srv, "::", 0), 0);
    int port = sq_http_server_port(srv);
    assert_true(connects(AF_INET6, port));
    assert_false(connects(AF_INET, port));
    sq_http_server_free(srv);
    sq_loop_free(loop);
}

static void test_names_brackets_and_errors(void **state)
{
    (void)state;
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, NULL);
    /* "localhost" may resolve to 127.0.0.1 and ::1: both on the port the first one got */
    assert_int_equal(sq_http_server_listen(srv, "localhost", 0), 0);
    int port = sq_http_server_port(srv);
    assert_true(connects(AF_INET, port) || connects(AF_INET6, port));
    /* a second call adds listeners; the server keeps the first port */
    if (ipv6_available()) assert_int_equal(sq_http_server_listen(srv, "[::1]", 0), 0);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    assert_int_equal(sq_http_server_port(srv), port);
    /* the same address and port again: in use, and the server keeps serving */
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", port), -EADDRINUSE);
    assert_int_equal(sq_http_server_listen(srv, "nonexistent.invalid", 0), SQ_ERESOLVE);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 70000), -EINVAL);
    assert_true(connects(AF_INET, port));
    sq_http_server_free(srv);
    sq_loop_free(loop);
}

static void test_listener_limit(void **state)
{
    (void)state;
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, NULL);
    for (int i = 0; i < SQ__HTTP_MAX_LISTENERS; i++)
        assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), -ENFILE);
    sq_http_server_free(srv);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_address_is_dual_stack),
        cmocka_unit_test(test_explicit_ipv6_is_v6only),
        cmocka_unit_test(test_names_brackets_and_errors),
        cmocka_unit_test(test_listener_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
