/* Futures, await, gather, with_timeout, sleep, cancellation. */
#include <stdlib.h>

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

/* A callback that removes a later one (the owner of which it frees) while the future
 * resolves: the removed one does not run, inline or in the overflow list. */
typedef struct remover {
    sq_future_cb victim;
    void *victim_arg;
} remover;

static void removing_cb(sq_future *f, void *arg)
{
    remover *r = arg;
    assert_int_equal(sq_future_remove_done_callback(f, r->victim, r->victim_arg), 0);
    cb_calls += 1000;
}

static void test_callback_removes_later_one(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    /* inline: [remover, victim] */
    cb_calls = 0;
    sq_future *f = sq_future_new(loop);
    remover r = {count_cb, (void *)(intptr_t)1};
    sq_future_add_done_callback(f, removing_cb, &r);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)1);
    sq_future_set_result(f, NULL);
    assert_int_equal(cb_calls, 1000);
    sq_future_release(f);
    /* overflow: [remover, 10, 1, victim 100, 10000] */
    cb_calls = 0;
    f = sq_future_new(loop);
    remover r2 = {count_cb, (void *)(intptr_t)100};
    sq_future_add_done_callback(f, removing_cb, &r2);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)10);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)1);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)100);
    sq_future_add_done_callback(f, count_cb, (void *)(intptr_t)10000);
    sq_future_set_result(f, NULL);
    assert_int_equal(cb_calls, 11011);
    /* One that ran already is gone: removing it again finds nothing. */
    assert_int_equal(sq_future_remove_done_callback(f, count_cb, (void *)(intptr_t)1), -ENOENT);
    sq_future_release(f);
    sq_loop_free(loop);
}

/* The loop is freed while a coroutine gathers 40 sleeps.  The teardown cancels what a
 * coroutine awaits, one future a round for a limited number of rounds: the gather cancels
 * the rest itself, returns, and nothing is left unreleased (LeakSanitizer). */
static void *gather_many(void *arg)
{
    sq_future *fs[40];
    for (int i = 0; i < 40; i++) fs[i] = sq_sleep_future(NULL, 100);
    int64_t st[40];
    *(int *)arg = sq_gather(fs, 40, NULL, st);
    for (int i = 0; i < 40; i++) assert_int_equal(st[i], -ECANCELED);
    return NULL;
}

static void test_gather_at_loop_free(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int r = 1;
    sq_go(loop, gather_many, &r);
    sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    assert_int_equal(r, -ECANCELED);
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

/* --- owned values: freed with the future unless taken ----------------------------------- */

static int freed; /* values freed by owned_free */

static void owned_free(void *v)
{
    freed++;
    free(v);
}

static sq_future *owned_future(sq_loop *loop)
{
    sq_future *f = sq_future_new(loop);
    assert_non_null(f);
    sq_future_set_value_free(f, owned_free);
    return f;
}

static void test_owned_value_freed_untaken(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    freed = 0;
    /* Resolved and dropped: the future frees it (also with an error status, like SQ_EHTTP). */
    sq_future *f = owned_future(loop);
    assert_int_equal(sq_future_set_result(f, malloc(16)), 0);
    assert_non_null(sq_future_value(f)); /* a peek does not take it */
    sq_future_release(f);
    assert_int_equal(freed, 1);
    f = owned_future(loop);
    assert_int_equal(sq_future_resolve(f, -EIO, malloc(16)), 0);
    sq_future_release(f);
    assert_int_equal(freed, 2);
    /* Released while pending (a producer holds the other reference), completed later. */
    f = owned_future(loop);
    sq_future *producer = sq_future_retain(f);
    sq_future_release(f);
    assert_int_equal(freed, 2);
    sq_future_set_result(producer, malloc(16));
    assert_int_equal(freed, 2); /* still referenced */
    sq_future_release(producer);
    assert_int_equal(freed, 3);
    /* Never resolved, or resolved with NULL: nothing to free. */
    sq_future_release(owned_future(loop));
    f = owned_future(loop);
    sq_future_set_result(f, NULL);
    sq_future_release(f);
    assert_int_equal(freed, 3);
    /* Awaited with NULL (done already, so no coroutine is needed). */
    f = owned_future(loop);
    sq_future_set_result(f, malloc(16));
    assert_int_equal(sq_await(f, NULL), 0);
    assert_int_equal(freed, 4);
    sq_loop_free(loop);
}

static void test_owned_value_taken(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    freed = 0;
    sq_future *f = owned_future(loop);
    assert_null(sq_future_take_value(f)); /* pending */
    void *mem = malloc(16);
    sq_future_set_result(f, mem);
    assert_ptr_equal(sq_future_take_value(f), mem);
    assert_null(sq_future_value(f)); /* forgotten */
    assert_null(sq_future_take_value(f));
    sq_future_release(f);
    assert_int_equal(freed, 0);
    free(mem);
    /* sq_await with a value pointer takes it. */
    f = owned_future(loop);
    mem = malloc(16);
    sq_future_set_result(f, mem);
    void *v = NULL;
    assert_int_equal(sq_await(f, &v), 0);
    assert_ptr_equal(v, mem);
    assert_int_equal(freed, 0);
    owned_free(v);
    /* sq_gather takes with values, frees with NULL. */
    sq_future *fs[3];
    void *vals[3];
    for (int i = 0; i < 3; i++) {
        fs[i] = owned_future(loop);
        sq_future_set_result(fs[i], malloc(8));
    }
    assert_int_equal(sq_gather(fs, 3, vals, NULL), 0);
    assert_int_equal(freed, 1);
    for (int i = 0; i < 3; i++) owned_free(vals[i]);
    for (int i = 0; i < 3; i++) {
        fs[i] = owned_future(loop);
        sq_future_set_result(fs[i], malloc(8));
    }
    assert_int_equal(sq_gather(fs, 3, NULL, NULL), 0);
    assert_int_equal(freed, 7);
    /* A plain value (no free function) is only read by sq_await: other holders see it. */
    f = sq_future_new(loop);
    sq_future_set_result(f, (void *)"plain");
    assert_int_equal(sq_await(sq_future_retain(f), &v), 0);
    assert_string_equal(v, "plain");
    assert_string_equal(sq_future_value(f), "plain");
    sq_future_release(f);
    sq_loop_free(loop);
}

static void test_owned_value_cancelled(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    freed = 0;
    sq_future *f = owned_future(loop);
    sq_future *producer = sq_future_retain(f);
    assert_int_equal(sq_future_cancel(f), 0);
    assert_null(sq_future_value(f));
    sq_future_release(f);
    /* The producer's late result is refused: it keeps (and frees) its value. */
    void *mem = malloc(16);
    assert_int_equal(sq_future_set_result(producer, mem), -EALREADY);
    free(mem);
    sq_future_release(producer);
    assert_int_equal(freed, 0);
    sq_loop_free(loop);
}

static void test_owned_value_through_timeout(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    freed = 0;
    /* Inner wins, outer dropped untaken: freed once, by the outer. */
    sq_future *inner = owned_future(loop);
    sq_future *producer = sq_future_retain(inner);
    sq_future *out = sq_with_timeout(inner, 10.0);
    void *mem = malloc(16);
    sq_future_set_result(producer, mem);
    assert_true(sq_future_done(out));
    assert_ptr_equal(sq_future_value(out), mem);
    assert_null(sq_future_value(producer)); /* moved out of the inner future */
    sq_future_release(producer);
    assert_int_equal(freed, 0);
    sq_future_release(out);
    assert_int_equal(freed, 1);
    /* Inner wins, outer taken: never freed by the futures. */
    inner = owned_future(loop);
    producer = sq_future_retain(inner);
    out = sq_with_timeout(inner, 10.0);
    mem = malloc(16);
    sq_future_set_result(producer, mem);
    sq_future_release(producer);
    void *v = NULL;
    assert_int_equal(sq_await(out, &v), 0);
    assert_ptr_equal(v, mem);
    assert_int_equal(freed, 1);
    free(v);
    /* Inner done before sq_with_timeout: same. */
    inner = owned_future(loop);
    sq_future_set_result(inner, malloc(16));
    out = sq_with_timeout(inner, 10.0);
    assert_non_null(sq_future_value(out));
    sq_future_release(out);
    assert_int_equal(freed, 2);
    /* The timeout wins: the inner future is cancelled, so the producer's later result is
     * refused and stays the producer's; the outer has no value. */
    inner = owned_future(loop);
    producer = sq_future_retain(inner);
    out = sq_with_timeout(inner, 0.02);
    sq_loop_run_until(loop, out);
    assert_int_equal(sq_future_status(out), -ETIMEDOUT);
    assert_null(sq_future_value(out));
    assert_true(sq_future_cancelled(producer));
    mem = malloc(16);
    assert_int_equal(sq_future_set_result(producer, mem), -EALREADY);
    free(mem);
    sq_future_release(producer);
    sq_future_release(out);
    assert_int_equal(freed, 2);
    /* Outer cancelled: the inner is cancelled too, nothing is freed twice. */
    inner = owned_future(loop);
    producer = sq_future_retain(inner);
    out = sq_with_timeout(inner, 10.0);
    assert_int_equal(sq_future_cancel(out), 0);
    assert_true(sq_future_cancelled(producer));
    sq_future_release(out);
    sq_future_release(producer);
    assert_int_equal(freed, 2);
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
        cmocka_unit_test(test_callback_removes_later_one),
        cmocka_unit_test(test_gather_at_loop_free),
        cmocka_unit_test(test_spawn_result),
        cmocka_unit_test(test_owned_value_freed_untaken),
        cmocka_unit_test(test_owned_value_taken),
        cmocka_unit_test(test_owned_value_cancelled),
        cmocka_unit_test(test_owned_value_through_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
