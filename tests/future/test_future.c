/* Futures, await, gather, with_timeout, sleep, cancellation. */
#include "testutil.h"

static void *sleeper(void *arg)
{
    int r = sq_sleep(*(double *)arg);
    return (void *)(intptr_t)(r == 0 ? 1 : r);
}

static void *gather_ten(void *arg)
{
    static double one = 1.0;
    sq_future *fs[10];
    for (int i = 0; i < 10; i++) fs[i] = sq_spawn(NULL, sleeper, &one);
    void *vals[10];
    int r = sq_gather(fs, 10, vals, NULL);
    assert_int_equal(r, 0);
    for (int i = 0; i < 10; i++) assert_int_equal((intptr_t)vals[i], 1);
    return NULL;
}

static void test_gather_sleeps(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    double t0 = sq_test_now();
    sq_test_run_coro(loop, gather_ten, NULL, 10);
    double took = sq_test_now() - t0;
    assert_true(took >= 0.99);
    assert_true(took < 1.5);
    sq_loop_free(loop);
}

static void *timeout_coro(void *arg)
{
    sq_loop *loop = sq_loop_current();
    double t0 = sq_test_now();
    int64_t r = sq_await(sq_with_timeout(sq_sleep_future(loop, 5.0), 0.1), NULL);
    double took = sq_test_now() - t0;
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(took < 0.5);
    assert_true(took >= 0.09);
    /* A future that finishes in time passes its result through. */
    r = sq_await(sq_with_timeout(sq_sleep_future(loop, 0.01), 1.0), NULL);
    assert_int_equal(r, 0);
    return NULL;
}

static void test_with_timeout(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, timeout_coro, NULL, 10);
    sq_loop_free(loop);
}

static void test_await_outside_coroutine(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_log_set_level(SQ_LOG_OFF);
    sq_future *f = sq_future_new(loop);
    assert_int_equal(sq_await(f, NULL), SQ_ENOTCORO);
    assert_int_equal(sq_sleep(0.1), SQ_ENOTCORO);
    sq_log_set_level(SQ_LOG_INFO);
    sq_loop_free(loop);
}

static int cb_calls;
static void count_cb(sq_future *f, void *arg)
{
    cb_calls += (int)(intptr_t)arg;
}

static void test_done_callbacks_and_cancel(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    cb_calls = 0;
    sq_future *f = sq_future_new(loop);
    for (int i = 0; i < 5; i++) sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)1);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)100);
    assert_int_equal(sq_future_remove_done_callback(f, count_cb, (void *)(intptr_t)100), 0);
    assert_int_equal(sq_future_set_result(f, (void *)"x"), 0);
    assert_int_equal(sq_future_set_error(f, -EIO), -EALREADY);
    assert_int_equal(cb_calls, 5);
    assert_string_equal(sq_future_value(f), "x");
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)10); /* already done: now */
    assert_int_equal(cb_calls, 15);
    sq_future_release(f);

    /* Cancelling a sleep drops its timer: the loop has nothing left to wait for. */
    sq_future *s = sq_sleep_future(loop, 100.0);
    assert_int_equal(sq_future_cancel(s), 0);
    assert_true(sq_future_cancelled(s));
    assert_int_equal(sq_future_status(s), -ECANCELED);
    assert_int_equal(sq_future_cancel(s), -EALREADY);
    sq_future_release(s);
    sq_future *short_sleep = sq_sleep_future(loop, 0.05);
    double t0 = sq_test_now();
    sq_loop_run_until(loop, short_sleep); /* wakes for the 50 ms timer, not the 100 s one */
    assert_true(sq_test_now() - t0 < 1.0);
    sq_future_release(short_sleep);
    sq_loop_free(loop);
}

/* A done callback that removes itself while the future resolves (common in tear-down code)
 * must not make the resolution skip another callback. */
static void self_removing_cb(sq_future *f, void *arg)
{
    sq_future_remove_done_callback(f, self_removing_cb, arg);
    cb_calls += 1000;
}

static void test_callback_removed_during_resolve(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    cb_calls = 0;
    sq_future *f = sq_future_new(loop);
    assert_int_equal(sq_future_add_done_callback(f, self_removing_cb, NULL), 0);
    assert_int_equal(sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)1), 0);
    assert_int_equal(sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)10), 0);
    assert_int_equal(sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)100), 0);
    assert_int_equal(sq_future_set_result(f, NULL), 0);
    assert_int_equal(cb_calls, 1111);
    sq_future_release(f);
    sq_loop_free(loop);
}

static void *returns_arg(void *arg)
{
    return arg;
}

static void test_spawn_result(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    void *v = sq_test_run_coro(loop, returns_arg, (void *)"hello", 5);
    assert_string_equal(v, "hello");
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_sleeps),
        cmocka_unit_test(test_with_timeout),
        cmocka_unit_test(test_await_outside_coroutine),
        cmocka_unit_test(test_done_callbacks_and_cancel),
        cmocka_unit_test(test_callback_removed_during_resolve),
        cmocka_unit_test(test_spawn_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
