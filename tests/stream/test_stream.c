/* sq_stream over socketpairs and pipes: reads, writes, closing, re-entrancy. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

typedef struct pair {
    sq_stream *a, *b;
} pair;

static pair make_pair(sq_loop *loop)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pair p = {sq_stream_new(loop, sv[0]), sq_stream_new(loop, sv[1])};
    assert_non_null(p.a);
    assert_non_null(p.b);
    return p;
}

/* --- read_until across many small writes ------------------------------------------------ */

static const char *lines[] = {"a", "hello world", "", "x\r\ny",
                              "a much longer line of text "
                              "that spans many reads"};
#define NLINES (sizeof lines / sizeof lines[0])

static void *dribbler(void *arg)
{
    sq_stream *s = arg;
    for (size_t i = 0; i < NLINES; i++) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, "%s\r\n\r\n", lines[i]);
        /* One byte at a time, with pauses: the delimiter arrives split across reads. */
        for (int j = 0; j < n; j++) {
            assert_int_equal(sq_stream_write(s, buf + j, 1), 0);
            if (j % 3 == 0) sq_sleep(0.001);
        }
    }
    return NULL;
}

static void *until_reader(void *arg)
{
    pair *p = arg;
    sq_future *w = sq_spawn(NULL, dribbler, p->a);
    for (size_t i = 0; i < NLINES; i++) {
        const char *d;
        ssize_t n = sq_stream_read_until(p->b, "\r\n\r\n", 4, 0, &d);
        assert_int_equal(n, strlen(lines[i]) + 4);
        assert_memory_equal(d, lines[i], strlen(lines[i]));
        assert_memory_equal(d + n - 4, "\r\n\r\n", 4);
    }
    sq_await(w, NULL);
    return NULL;
}

static void test_read_until_split(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_test_run_coro(loop, until_reader, &p, 20);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- max_bytes ------------------------------------------------------------------------- */

static void *max_bytes_coro(void *arg)
{
    pair *p = arg;
    char junk[100];
    memset(junk, 'j', sizeof junk);
    assert_int_equal(sq_stream_write(p->a, junk, sizeof junk), 0);
    const char *d;
    /* 100 bytes and no delimiter: a 50-byte limit cannot be met. */
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 50, &d), -EMSGSIZE);
    assert_null(d);
    /* A delimiter that shows up past the limit is no better. */
    assert_int_equal(sq_stream_write(p->a, "\n", 1), 0);
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 50, &d), -EMSGSIZE);
    /* The stream stays usable and the bytes stay buffered. */
    assert_false(sq_stream_closed(p->b));
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 101, &d), 101);
    assert_memory_equal(d, junk, 100);
    return NULL;
}

static void test_read_until_max_bytes(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_test_run_coro(loop, max_bytes_coro, &p, 10);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- read_bytes, zero copy ------------------------------------------------------------- */

static void *bytes_coro(void *arg)
{
    pair *p = arg;
    assert_int_equal(sq_stream_write(p->a, "0123456789", 10), 0);
    const char *d, *first;
    assert_int_equal(sq_stream_read_bytes(p->b, 4, false, &first), 4);
    assert_memory_equal(first, "0123", 4);
    /* partial: whatever is there, at most n */
    assert_int_equal(sq_stream_read_bytes(p->b, 100, true, &d), 6);
    assert_memory_equal(d, "456789", 6);
    assert_int_equal(sq_stream_read_bytes(p->b, 0, false, &d), 0);
    /* exact: waits for all of it, however it trickles in */
    assert_int_equal(sq_stream_write(p->a, "abc", 3), 0);
    sq_future *f = sq_stream_read_bytes_future(p->b, 6, false);
    sq_sleep(0.01);
    assert_false(sq_future_done(f));
    assert_int_equal(sq_stream_write(p->a, "defgh", 5), 0);
    void *v;
    assert_int_equal(sq_await(f, &v), 6);
    assert_memory_equal(v, "abcdef", 6);
    assert_int_equal(sq_stream_read_bytes(p->b, 2, false, &d), 2);
    assert_memory_equal(d, "gh", 2);
    /* A large exact read bigger than any one read() call. */
    static char big[300000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
    f = sq_stream_write_future(p->a, big, sizeof big);
    assert_int_equal(sq_stream_read_bytes(p->b, sizeof big, false, &d), sizeof big);
    assert_memory_equal(d, big, sizeof big);
    assert_int_equal(sq_await(f, NULL), (int64_t)sizeof big);
    return NULL;
}

static void test_read_bytes(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_test_run_coro(loop, bytes_coro, &p, 10);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- read_until_close, reads after close, close callback -------------------------------- */

static int close_calls;
static void count_close(sq_stream *s, void *arg)
{
    close_calls++;
    assert_ptr_equal(arg, &close_calls);
    assert_true(sq_stream_closed(s));
}

static void *until_close_coro(void *arg)
{
    pair *p = arg;
    sq_stream_set_close_callback(p->b, count_close, &close_calls);
    for (int i = 0; i < 3; i++) assert_int_equal(sq_stream_write(p->a, "chunk", 5), 0);
    assert_int_equal(sq_stream_write(p->a, "tail\n", 5), 0);
    sq_stream_close(p->a);
    sq_stream_close(p->a); /* idempotent */
    const char *d;
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 0, &d), 20);
    /* The peer's EOF has not been seen yet: it is seen by the next read. */
    assert_int_equal(sq_stream_read_until_close(p->b, 0, &d), 0);
    assert_true(sq_stream_closed(p->b));
    assert_int_equal(sq_stream_error(p->b), 0);
    assert_int_equal(close_calls, 1);
    assert_int_equal(sq_stream_read_bytes(p->b, 1, true, &d), SQ_ECLOSED);
    assert_null(d);
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 0, &d), SQ_ECLOSED);
    assert_int_equal(sq_stream_write(p->b, "x", 1), SQ_ECLOSED);
    sq_stream_close(p->b);
    assert_int_equal(close_calls, 1);
    return NULL;
}

static void *until_close_data_coro(void *arg)
{
    pair *p = arg;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(sq_stream_write(p->a, "0123456789", 10), 0);
        if (i % 10 == 0) sq_sleep(0.001);
    }
    sq_stream_close(p->a);
    const char *d;
    assert_int_equal(sq_stream_read_until_close(p->b, 0, &d), 500);
    for (int i = 0; i < 50; i++) assert_memory_equal(d + 10 * i, "0123456789", 10);
    /* Buffered data outlives the close; beyond it, reads fail. */
    assert_int_equal(sq_stream_read_bytes(p->b, 1, false, &d), SQ_ECLOSED);
    return NULL;
}

static void *buffered_after_close_coro(void *arg)
{
    pair *p = arg;
    assert_int_equal(sq_stream_write(p->a, "line1\nline2\n", 12), 0);
    sq_stream_close(p->a);
    const char *d;
    /* Too little for an exact read: the EOF closes the stream, data stays readable. */
    assert_int_equal(sq_stream_read_bytes(p->b, 100, false, &d), SQ_ECLOSED);
    assert_true(sq_stream_closed(p->b));
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 0, &d), 6);
    assert_memory_equal(d, "line1\n", 6);
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 0, &d), 6);
    assert_memory_equal(d, "line2\n", 6);
    assert_int_equal(sq_stream_read_until(p->b, "\n", 1, 0, &d), SQ_ECLOSED);
    return NULL;
}

static void test_read_until_close(void **state)
{
    sq_task_fn fns[] = {until_close_coro, until_close_data_coro, buffered_after_close_coro};
    for (size_t i = 0; i < 3; i++) {
        sq_loop *loop = sq_loop_new(NULL);
        pair p = make_pair(loop);
        close_calls = 0;
        sq_test_run_coro(loop, fns[i], &p, 10);
        sq_stream_free(p.a);
        sq_stream_free(p.b);
        sq_loop_free(loop);
    }
}

static void test_close_callback_once(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    close_calls = 0;
    sq_stream_set_close_callback(p.a, count_close, &close_calls);
    sq_future *r = sq_stream_read_bytes_future(p.a, 10, false);
    assert_false(sq_future_done(r));
    sq_stream_close(p.a);
    assert_true(sq_future_done(r));
    assert_int_equal(sq_future_status(r), SQ_ECLOSED);
    sq_future_release(r);
    assert_int_equal(close_calls, 1);
    sq_stream_close(p.a);
    assert_int_equal(sq_stream_fd(p.a), -1);
    sq_stream_free(p.a);
    assert_int_equal(close_calls, 1);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- one read at a time ---------------------------------------------------------------- */

static void test_second_read_busy(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *r1 = sq_stream_read_bytes_future(p.b, 5, false);
    assert_false(sq_future_done(r1));
    sq_future *r2 = sq_stream_read_until_future(p.b, "\n", 1, 0);
    assert_true(sq_future_done(r2));
    assert_int_equal(sq_future_status(r2), SQ_EBUSY_READ);
    sq_future_release(r2);
    sq_future *r3 = sq_stream_read_until_close_future(p.b, 0);
    assert_int_equal(sq_future_status(r3), SQ_EBUSY_READ);
    sq_future_release(r3);
    /* The first read is unaffected. */
    sq_future *w = sq_stream_write_future(p.a, "hello", 5);
    assert_true(sq_future_done(w)); /* fast path: straight into the kernel */
    assert_int_equal(sq_future_status(w), 5);
    sq_future_release(w);
    sq_loop_run_until(loop, r1);
    assert_int_equal(sq_future_status(r1), 5);
    assert_memory_equal(sq_future_value(r1), "hello", 5);
    sq_future_release(r1);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- write futures --------------------------------------------------------------------- */

#define BIG (8u << 20)

static void *drain_reader(void *arg)
{
    sq_stream *s = arg;
    size_t got = 0;
    while (got < BIG) {
        const char *d;
        ssize_t n = sq_stream_read_bytes(s, 65536, true, &d);
        assert_true(n > 0);
        for (ssize_t i = 0; i < n; i++) assert_int_equal((unsigned char)d[i], (got + i) & 0xff);
        got += (size_t)n;
    }
    return (void *)(uintptr_t)got;
}

static void test_write_future_resolution(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    char *big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++) big[i] = (char)i;
    /* Far more than a socketpair holds: most of it stays pending. */
    sq_future *w1 = sq_stream_write_future(p.a, big, BIG / 2);
    sq_future *w2 = sq_stream_write_future(p.a, big + BIG / 2, BIG / 2);
    free(big); /* the stream copied what it could not write */
    assert_false(sq_future_done(w1));
    assert_false(sq_future_done(w2));
    assert_true(sq_stream_pending(p.a) > 0);
    assert_true(sq_stream_pending_peak(p.a) >= sq_stream_pending(p.a));
    sq_future *r = sq_spawn(loop, drain_reader, p.b);
    sq_loop_run_until(loop, w1);
    assert_int_equal(sq_future_status(w1), BIG / 2);
    sq_loop_run_until(loop, w2);
    assert_int_equal(sq_future_status(w2), BIG / 2);
    assert_int_equal(sq_stream_pending(p.a), 0);
    sq_loop_run_until(loop, r);
    assert_int_equal((uintptr_t)sq_future_value(r), BIG);
    sq_future_release(w1);
    sq_future_release(w2);
    sq_future_release(r);

    /* Pending writes fail when the stream closes. */
    big = calloc(1, BIG);
    w1 = sq_stream_write_future(p.a, big, BIG);
    free(big);
    assert_false(sq_future_done(w1));
    sq_stream_close(p.a);
    assert_int_equal(sq_future_status(w1), SQ_ECLOSED);
    assert_int_equal(sq_stream_pending(p.a), 0);
    sq_future_release(w1);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

static void *drain_coro(void *arg)
{
    pair *p = arg;
    static char buf[1 << 20];
    assert_int_equal(sq_stream_drain(p->a), 0); /* nothing pending */
    sq_future *r = sq_spawn(NULL, drain_reader, p->b);
    size_t sent = 0;
    while (sent < BIG) {
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(sent + i);
        assert_int_equal(sq_stream_write(p->a, buf, sizeof buf), 0);
        sent += sizeof buf;
    }
    assert_int_equal(sq_stream_drain(p->a), 0);
    assert_int_equal(sq_stream_pending(p->a), 0);
    assert_int_equal(sq_await(r, NULL), 0);
    return NULL;
}

static void test_write_and_drain(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_stream_set_high_water(p.a, 256 * 1024);
    sq_test_run_coro(loop, drain_coro, &p, 20);
    /* One write may overshoot the mark by its own size, no more. */
    assert_true(sq_stream_pending_peak(p.a) <= 256 * 1024 + (1 << 20));
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- re-entrancy: done callbacks that read again, or free the stream ------------------- */

static int chain_count;
static void chain_cb(sq_future *f, void *arg)
{
    sq_stream *s = arg;
    if (sq_future_status(f) <= 0) return;
    chain_count++;
    if (chain_count == 5) {
        sq_stream_free(s); /* freed from inside its own read completion */
        return;
    }
    sq_future *next = sq_stream_read_until_future(s, "\n", 1, 0);
    sq_future_add_done_callback(next, chain_cb, s);
    sq_future_release(next);
}

static void test_callbacks_reenter(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *w = sq_stream_write_future(p.a, "1\n2\n3\n4\n5\n6\n", 12);
    sq_future_release(w);
    chain_count = 0;
    sq_future *r = sq_stream_read_until_future(p.b, "\n", 1, 0);
    sq_future_add_done_callback(r, chain_cb, p.b);
    sq_future_release(r);
    for (int i = 0; i < 100 && chain_count < 5; i++) sq_loop_run_once(loop, true);
    assert_int_equal(chain_count, 5);
    sq_stream_free(p.a);
    sq_loop_free(loop);
}

/* --- pipes: not sockets, and SIGPIPE must not kill us ---------------------------------- */

static void test_pipe_epipe(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    sq_stream *w = sq_stream_new(loop, fds[1]);
    sq_stream *r = sq_stream_new(loop, fds[0]);
    sq_future *f = sq_stream_write_future(w, "ping", 4);
    assert_int_equal(sq_future_status(f), 4);
    sq_future_release(f);
    f = sq_stream_read_bytes_future(r, 4, false);
    sq_loop_run_until(loop, f);
    assert_int_equal(sq_future_status(f), 4);
    sq_future_release(f);
    sq_stream_free(r);
    f = sq_stream_write_future(w, "pong", 4);
    assert_int_equal(sq_future_status(f), -EPIPE);
    sq_future_release(f);
    assert_true(sq_stream_closed(w));
    assert_int_equal(sq_stream_error(w), -EPIPE);
    sq_stream_free(w);
    sq_loop_free(loop);
}

static void test_outside_coroutine(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    const char *d = "x";
    sq_log_set_level(SQ_LOG_OFF);
    assert_int_equal(sq_stream_read_bytes(p.a, 1, true, &d), SQ_ENOTCORO);
    assert_null(d);
    sq_log_set_level(SQ_LOG_INFO);
    /* No read was left pending behind. */
    sq_future *f = sq_stream_read_bytes_future(p.a, 1, true);
    assert_false(sq_future_done(f));
    sq_future_release(f);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- cancelled reads -------------------------------------------------------------------- */

/* Cancelling a pending read (what sq_with_timeout does when it times out) gives the stream
 * back: the next read is accepted and receives the bytes that arrive afterwards. */
static void test_cancelled_read_releases_stream(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *r1 = sq_stream_read_until_future(p.b, "\n", 1, 0);
    assert_false(sq_future_done(r1));
    sq_loop_run_once(loop, false);
    assert_int_equal(sq_future_cancel(r1), 0);
    assert_int_equal(sq_future_status(r1), -ECANCELED);
    sq_future_release(r1);

    sq_future *r2 = sq_stream_read_until_future(p.b, "\n", 1, 0);
    assert_false(sq_future_done(r2)); /* not SQ_EBUSY_READ */
    sq_future_release(sq_stream_write_future(p.a, "hi\n", 3));
    for (int i = 0; i < 100 && !sq_future_done(r2); i++) sq_loop_run_once(loop, false);
    assert_true(sq_future_done(r2));
    assert_int_equal(sq_future_status(r2), 3);
    assert_memory_equal(sq_future_value(r2), "hi\n", 3);
    sq_future_release(r2);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

static void *timed_out_reader(void *arg)
{
    pair *p = arg;
    int64_t r = sq_await(sq_with_timeout(sq_stream_read_bytes_future(p->b, 4, false), 0.02), NULL);
    assert_int_equal(r, -ETIMEDOUT);
    assert_int_equal(sq_stream_write(p->a, "late", 4), 0);
    const char *d = NULL;
    assert_int_equal(sq_stream_read_bytes(p->b, 4, false, &d), 4);
    assert_memory_equal(d, "late", 4);
    return NULL;
}

static void test_read_after_timeout(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_test_run_coro(loop, timed_out_reader, &p, 10);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* --- an fd epoll refuses --------------------------------------------------------------- */

/* epoll rejects /dev/null with -EPERM.  Every read must say so; none may hang because the
 * first failed registration was remembered as if it had succeeded. */
static void test_unpollable_fd_reads_fail(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    sq_stream *s = sq_stream_new(loop, fd);
    assert_non_null(s);
    for (int i = 0; i < 2; i++) {
        sq_future *f = sq_stream_read_bytes_future(s, 1, true);
        assert_true(sq_future_done(f));
        assert_int_equal(sq_future_status(f), -EPERM);
        sq_future_release(f);
    }
    sq_stream_free(s);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_until_split),
        cmocka_unit_test(test_read_until_max_bytes),
        cmocka_unit_test(test_read_bytes),
        cmocka_unit_test(test_read_until_close),
        cmocka_unit_test(test_close_callback_once),
        cmocka_unit_test(test_second_read_busy),
        cmocka_unit_test(test_write_future_resolution),
        cmocka_unit_test(test_write_and_drain),
        cmocka_unit_test(test_callbacks_reenter),
        cmocka_unit_test(test_pipe_epipe),
        cmocka_unit_test(test_outside_coroutine),
        cmocka_unit_test(test_cancelled_read_releases_stream),
        cmocka_unit_test(test_read_after_timeout),
        cmocka_unit_test(test_unpollable_fd_reads_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
