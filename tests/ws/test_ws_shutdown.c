/* WebSockets and the HTTP server's end: a graceful shutdown sends every open WebSocket a
 * close frame with 1001 (going away) and waits for the close handshakes (within its
 * deadline, then drops the rest); freeing the app drops them at once.  Before, both left
 * the WebSocket connections running on their own. */
#include "testutil.h"
#include "wstest.h"

typedef struct sd_ctx {
    wsenv *e;
    int answered_code; /* close code seen by the client that answers */
    int silent_code;   /* close code seen by the client that never answers */
    bool silent_eof;   /* the silent client then saw the connection end */
    double resolved_after;
    bool resolved;
} sd_ctx;

static void *answering_client(void *arg)
{
    sd_ctx *c = arg;
    int status;
    sq_stream *s = raw_open(c->e->port, "/echo", NULL, &status, NULL, 0);
    assert_int_equal(status, 101);
    c->answered_code = raw_expect_close(s);
    uint8_t code[2] = {0x03, 0xe9}; /* 1001 */
    raw_frame(s, 0x88, code, 2, false);
    const char *d;
    sq_stream_read_until_close(s, 0, &d);
    sq_stream_free(s);
    return NULL;
}

static void *silent_client(void *arg)
{
    sd_ctx *c = arg;
    int status;
    sq_stream *s = raw_open(c->e->port, "/echo", NULL, &status, NULL, 0);
    assert_int_equal(status, 101);
    c->silent_code = raw_expect_close(s); /* and never answers */
    const char *d;
    ssize_t n = sq_stream_read_until_close(s, 0, &d);
    c->silent_eof = n >= 0 || n == SQ_ECLOSED || n == -ECONNRESET;
    sq_stream_free(s);
    return NULL;
}

static void *shutdown_task(void *arg)
{
    sd_ctx *c = arg;
    sq_future *a = sq_spawn(c->e->loop, answering_client, c);
    sq_future *b = sq_spawn(c->e->loop, silent_client, c);
    for (int i = 0; i < 200 && g_log.opens < 2; i++) sq_sleep(0.01);
    assert_int_equal(g_log.opens, 2);
    double t0 = sq_test_now();
    sq_future *down = sq_http_server_shutdown(sq_app_server(c->e->app), 1.0);
    assert_int_equal(sq_await(down, NULL), 0);
    c->resolved_after = sq_test_now() - t0;
    c->resolved = true;
    sq_await(a, NULL);
    sq_await(b, NULL);
    return NULL;
}

static void test_graceful_shutdown_sends_1001(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sd_ctx c = {.e = &e};
    sq_test_run_coro(e.loop, shutdown_task, &c, 30);
    assert_int_equal(c.answered_code, 1001);
    assert_int_equal(c.silent_code, 1001);
    assert_true(c.silent_eof);
    /* the silent peer held the shutdown to its deadline (1 s), not longer */
    assert_true(c.resolved && c.resolved_after >= 0.8 && c.resolved_after < 3.0);
    assert_int_equal(g_log.closes, 2);
    wsenv_stop(&e);
    (void)st;
}

/* sq_app_free with a WebSocket open: dropped at once, on_close runs, nothing leaks. */
static void *free_task(void *arg)
{
    sd_ctx *c = arg;
    int status;
    sq_stream *s = raw_open(c->e->port, "/echo", NULL, &status, NULL, 0);
    assert_int_equal(status, 101);
    for (int i = 0; i < 200 && g_log.opens < 1; i++) sq_sleep(0.01);
    sq_app_free(c->e->app);
    c->e->app = NULL;
    const char *d;
    double t0 = sq_test_now();
    sq_stream_read_until_close(s, 0, &d); /* the server side is gone */
    c->resolved_after = sq_test_now() - t0;
    sq_stream_free(s);
    return NULL;
}

static void test_app_free_drops_websockets(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sd_ctx c = {.e = &e};
    sq_test_run_coro(e.loop, free_task, &c, 30);
    assert_true(c.resolved_after < 2.0);
    for (int i = 0; i < 20; i++) sq_loop_run_once(e.loop, false);
    assert_int_equal(g_log.closes, 1);
    assert_int_equal(g_log.last_code, 1006);
    sq_loop_free(e.loop);
    (void)st;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graceful_shutdown_sends_1001),
        cmocka_unit_test(test_app_free_drops_websockets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
