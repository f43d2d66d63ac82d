/* Stream semantics a Tornado IOStream user relies on: write futures resolve in the order the
 * writes were made (also when a done callback writes or closes), a close callback learns
 * that the peer of an idle stream left, and read_until copies its delimiter before anything
 * of the previous result can be freed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

typedef struct pair {
    sq_stream *a, *b;
    int fa, fb;
} pair;

static pair make_pair(sq_loop *loop)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pair p = {sq_stream_new(loop, sv[0]), sq_stream_new(loop, sv[1]), sv[0], sv[1]};
    return p;
}

/* --- write futures resolve in order, also when a done callback writes again -------------- */
typedef struct wctx {
    sq_stream *s;
    int order[8];
    int n;
    sq_future *w3;
} wctx;

static void w_done(sq_future *f, void *arg);
static wctx *gw;
static void w1_done(sq_future *f, void *arg)
{
    gw->order[gw->n++] = 1;
    /* a new small write from W1's callback: nothing is pending, it goes straight out */
    gw->w3 = sq_stream_write_future(gw->s, "x", 1);
    sq_future_add_done_callback(gw->w3, w_done, (void *)(intptr_t)3);
}
static void w_done(sq_future *f, void *arg)
{
    gw->order[gw->n++] = (int)(intptr_t)arg;
}

static void test_write_order(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    int sz = 4096;
    setsockopt(p.fa, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    wctx c = {.s = p.a};
    gw = &c;
    static char big[1 << 20];
    sq_future *w1 = sq_stream_write_future(p.a, big, sizeof big);
    sq_future *w2 = sq_stream_write_future(p.a, "y", 1);
    assert_false(sq_future_done(w1));
    sq_future_add_done_callback(w1, w1_done, NULL);
    sq_future_add_done_callback(w2, w_done, (void *)(intptr_t)2);
    /* drain the peer */
    size_t total = 0;
    double t0 = sq_test_now();
    while (c.n < 3 && sq_test_now() - t0 < 5) {
        sq_future *r = sq_stream_read_bytes_future(p.b, 65536, true);
        while (!sq_future_done(r) && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
        if (sq_future_status(r) > 0) total += (size_t)sq_future_status(r);
        sq_future_release(r);
    }
    assert_int_equal(c.n, 3);
    sq_future_release(w1);
    sq_future_release(w2);
    sq_future_release(c.w3);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
    assert_int_equal(c.order[0], 1);
    assert_int_equal(c.order[1], 2); /* W2 was queued before W3 */
    assert_int_equal(c.order[2], 3);
}

/* --- W1's callback closes the stream: W2, already handed to the kernel, still succeeds --- */
static void w1_close(sq_future *f, void *arg)
{
    sq_stream_close(arg);
}
static void test_written_then_failed(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    int sz = 4096;
    setsockopt(p.fa, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    static char big[1 << 20];
    sq_future *w1 = sq_stream_write_future(p.a, big, sizeof big);
    sq_future *w2 = sq_stream_write_future(p.a, "y", 1);
    sq_future_add_done_callback(w1, w1_close, p.a);
    size_t total = 0;
    double t0 = sq_test_now();
    while (!sq_future_done(w2) && sq_test_now() - t0 < 5) {
        sq_future *r = sq_stream_read_bytes_future(p.b, 65536, true);
        while (!sq_future_done(r) && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
        if (sq_future_status(r) > 0) total += (size_t)sq_future_status(r);
        sq_future_release(r);
    }
    /* drain what is left so we can count what the peer got */
    for (;;) {
        sq_future *r = sq_stream_read_bytes_future(p.b, 65536, true);
        while (!sq_future_done(r) && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
        int64_t st = sq_future_status(r);
        sq_future_release(r);
        if (st <= 0) break;
        total += (size_t)st;
    }
    int64_t st2 = sq_future_status(w2);
    sq_future_release(w1);
    sq_future_release(w2);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
    assert_int_equal(total, sizeof big + 1);
    assert_int_equal(st2, 1); /* its byte reached the peer */
}

/* --- the close callback runs when the peer of an idle stream closes: after a round trip,
 * and on a stream that never read --------------------------------------------------------- */
static void on_close(sq_stream *s, void *arg)
{
    (*(int *)arg)++;
}

static void test_idle_close_callback(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    int closed = 0;
    sq_stream_set_close_callback(p.b, on_close, &closed);
    /* one request/response round, as a server would do */
    sq_future_release(sq_stream_write_future(p.a, "req\n", 4));
    sq_future *r = sq_stream_read_until_future(p.b, "\n", 1, 0);
    while (!sq_future_done(r)) sq_loop_run_once(loop, true);
    assert_int_equal(sq_future_status(r), 4);
    sq_future_release(r);
    /* now idle; the peer goes away */
    sq_stream_free(p.a);
    double t0 = sq_test_now();
    while (!closed && sq_test_now() - t0 < 0.5) sq_loop_run_once(loop, false), usleep(1000);
    int seen = closed;
    sq_stream_free(p.b);
    assert_int_equal(seen, 1);
    /* a stream that never read: the callback alone has it listen */
    p = make_pair(loop);
    closed = 0;
    sq_stream_set_close_callback(p.b, on_close, &closed);
    sq_loop_run_once(loop, false);
    sq_stream_free(p.a);
    t0 = sq_test_now();
    while (!closed && sq_test_now() - t0 < 0.5) sq_loop_run_once(loop, false), usleep(1000);
    seen = closed;
    sq_stream_free(p.b);
    sq_loop_free(loop);
    assert_int_equal(seen, 1);
}

/* --- read_until with the delimiter taken from the previous read's result (a multipart
 * boundary): the previous result may be freed as the read begins ------------------------- */
static void test_delim_from_previous_result(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    /* a first big read (> 128 KiB) whose tail is the boundary the next read waits for */
    size_t big = 200000;
    char *msg = malloc(big);
    memset(msg, 'a', big);
    memcpy(msg + big - 10, "--BOUNDARY", 10);
    sq_future *w = sq_stream_write_future(p.a, msg, big);
    sq_future *r = sq_stream_read_bytes_future(p.b, big, false);
    double t0 = sq_test_now();
    while (!sq_future_done(r) && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
    assert_int_equal(sq_future_status(r), (int64_t)big);
    const char *d = sq_future_value(r);
    const char *boundary = d + big - 10; /* valid "until the next read" */
    sq_future *r2 = sq_stream_read_until_future(p.b, boundary, 10, 0);
    sq_future_release(sq_stream_write_future(p.a, "xyz--BOUNDARY", 13));
    t0 = sq_test_now();
    while (!sq_future_done(r2) && sq_test_now() - t0 < 2) sq_loop_run_once(loop, true);
    assert_int_equal(sq_future_status(r2), 13);
    sq_future_release(r);
    sq_future_release(r2);
    sq_future_release(w);
    free(msg);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_order),
        cmocka_unit_test(test_written_then_failed),
        cmocka_unit_test(test_idle_close_callback),
        cmocka_unit_test(test_delim_from_previous_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
