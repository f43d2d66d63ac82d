/* An app whose loop is stopped and freed (no sq_http_server_shutdown) while a handler is
 * suspended: sq_app_free + sq_loop_free unwind that handler and free it, its request, its
 * connection and the app (LeakSanitizer checks), for handlers suspended in a sleep and in an
 * await of a future nobody resolves. */
#include "webtest.h"

#include <errno.h>

typedef struct probe {
    int entered;
    int64_t rc;
    int returned;
} probe;

static probe p;

static void sleepy_get(sq_handler *h)
{
    p.entered = 1;
    p.rc = sq_sleep(30.0);
    sq_write(h, "late"); /* on a closed connection: dropped */
    p.returned = 1;
}

static void awaiting_get(sq_handler *h)
{
    p.entered = 1;
    void *v = malloc(64); /* the handler frees it after its await, as it would normally */
    p.rc = sq_await(sq_future_new(NULL), NULL);
    free(v);
    p.returned = 1;
}

static void run_until_entered(sq_loop *loop)
{
    double t0 = sq_test_now();
    while (!p.entered && sq_test_now() - t0 < 10.0) sq_loop_run_once(loop, true);
    assert_true(p.entered);
    /* a few more passes: the handler is suspended, nothing else is pending */
    for (int i = 0; i < 3; i++) sq_loop_run_once(loop, false);
    assert_false(p.returned);
}

static const sq_route routes[] = {
    {"/sleep", &(sq_handler_class){.get = sleepy_get}, NULL, NULL},
    {"/await", &(sq_handler_class){.get = awaiting_get}, NULL, NULL},
    {0},
};

static void check(const char *path, const char *req)
{
    memset(&p, 0, sizeof p);
    sq_loop *loop = wt_loop();
    sq_app *app = sq_app_new(routes, NULL);
    assert_non_null(app);
    assert_int_equal(sq_app_listen(app, 0, "127.0.0.1"), 0);
    int fd = wt_connect(sq_http_server_port(sq_app_server(app)));
    assert_true(fd >= 0);
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    run_until_entered(loop);
    print_message("%s: handler suspended; freeing the app and the loop\n", path);
    sq_app_free(app);
    sq_loop_free(loop);
    close(fd);
    assert_true(p.returned); /* unwound: it returned, so everything it held was given back */
    assert_true(p.rc < 0);
}

static void test_free_with_handler_sleeping(void **state)
{
    check("/sleep", WT_GET("/sleep"));
    assert_int_equal(p.rc, -ECANCELED);
}

static void test_free_with_handler_awaiting(void **state)
{
    check("/await", WT_GET("/await"));
    assert_int_equal(p.rc, -ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_with_handler_sleeping),
        cmocka_unit_test(test_free_with_handler_awaiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
