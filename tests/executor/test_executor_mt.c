/* Thread pool: blocking jobs run in parallel without stalling the loop, results arrive on the
 * loop thread, queued jobs can be cancelled, and freeing a pool fails what it never ran. */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0) {
    }
}

static void *block_200ms(void *arg)
{
    sleep_ms(200);
    return arg;
}

/* --- 8 blocking jobs in parallel while the loop keeps ticking ------------------------------ */

typedef struct par_state {
    int done;
    int ticks;
    int bad_thread;
    pthread_t loop_thread;
    sq_loop *loop;
} par_state;

static void tick(void *arg)
{
    ((par_state *)arg)->ticks++;
}

static void job_done(sq_future *f, void *arg)
{
    par_state *st = arg;
    if (!pthread_equal(pthread_self(), st->loop_thread)) st->bad_thread++;
    assert_int_equal(sq_future_status(f), 0);
    if (++st->done == 8) sq_loop_stop(st->loop);
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void test_parallel_jobs_loop_keeps_ticking(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(8);
    assert_non_null(ex);
    assert_int_equal(sq_executor_threads(ex), 8);
    par_state st = {.loop_thread = pthread_self(), .loop = loop};

    sq_periodic p;
    sq_periodic_init(loop, &p, 0.01, tick, &st);
    sq_periodic_start(&p);
    sq_call *guard = sq_call_later(loop, 10.0, stop_loop, loop);

    sq_future *fs[8];
    double t0 = sq_test_now();
    for (intptr_t i = 0; i < 8; i++) {
        fs[i] = sq_executor_submit(ex, loop, block_200ms, (void *)(i + 1));
        assert_non_null(fs[i]);
        sq_future_add_done_callback(fs[i], job_done, &st);
    }
    sq_loop_run(loop);
    double took = sq_test_now() - t0;
    sq_call_cancel(guard);
    sq_periodic_stop(&p);

    assert_int_equal(st.done, 8);
    assert_int_equal(st.bad_thread, 0);
    print_message("8 x 200 ms jobs took %.3f s, %d ticks of 10 ms meanwhile\n", took, st.ticks);
    assert_true(took >= 0.19);
    assert_true(took < 0.5);
    assert_true(st.ticks >= 10);
    for (intptr_t i = 0; i < 8; i++) {
        assert_true(sq_future_done(fs[i]));
        assert_int_equal((intptr_t)sq_future_value(fs[i]), i + 1);
        sq_future_release(fs[i]);
    }
    sq_executor_free(ex);
    sq_loop_free(loop);
}

/* --- cancelling a job that has not started ----------------------------------------------- */

static atomic_int second_ran;

static void *mark_ran(void *arg)
{
    atomic_store(&second_ran, 1);
    return NULL;
}

static void test_cancel_queued_job(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(1);
    atomic_store(&second_ran, 0);
    sq_future *first = sq_executor_submit(ex, loop, block_200ms, (void *)"first");
    sq_future *second = sq_executor_submit(ex, loop, mark_ran, NULL);
    assert_int_equal(sq_future_cancel(second), 0);
    assert_true(sq_future_done(second));
    assert_true(sq_future_cancelled(second));
    assert_int_equal(sq_future_status(second), -ECANCELED);
    assert_int_equal(sq_future_cancel(second), -EALREADY);

    sq_loop_run_until(loop, first);
    assert_int_equal(sq_future_status(first), 0);
    assert_string_equal(sq_future_value(first), "first");
    /* A third job runs after the skipped one: the worker is not stuck on it. */
    sq_future *third = sq_executor_submit(ex, loop, block_200ms, (void *)"third");
    sq_loop_run_until(loop, third);
    assert_string_equal(sq_future_value(third), "third");
    assert_int_equal(atomic_load(&second_ran), 0);
    assert_int_equal(sq_future_status(second), -ECANCELED);

    sq_future_release(first);
    sq_future_release(second);
    sq_future_release(third);
    sq_executor_free(ex);
    sq_loop_free(loop);
}

/* Cancelling a running job does not stop it, but its future is -ECANCELED and nothing leaks. */
static void test_cancel_running_job(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(1);
    sq_future *f = sq_executor_submit(ex, loop, block_200ms, (void *)"x");
    sleep_ms(50); /* let the worker start it */
    assert_int_equal(sq_future_cancel(f), 0);
    assert_int_equal(sq_future_status(f), -ECANCELED);
    sq_future_release(f);
    sq_executor_free(ex); /* waits for the running job */
    sq_loop_free(loop);   /* runs the hand-back, which frees the job */
}

/* --- from a coroutine ----------------------------------------------------------------------- */

static void *square(void *arg)
{
    intptr_t v = (intptr_t)arg;
    sleep_ms(20);
    return (void *)(v * v);
}

static void *coro_uses_executor(void *arg)
{
    void *v = NULL;
    int64_t r = sq_await(sq_run_in_executor(square, (void *)(intptr_t)7), &v);
    assert_int_equal(r, 0);
    assert_int_equal((intptr_t)v, 49);
    /* Several at once, gathered. */
    sq_future *fs[4];
    for (intptr_t i = 0; i < 4; i++) fs[i] = sq_run_in_executor(square, (void *)i);
    void *vals[4];
    assert_int_equal(sq_gather(fs, 4, vals, NULL), 0);
    for (intptr_t i = 0; i < 4; i++) assert_int_equal((intptr_t)vals[i], i * i);
    return (void *)"ok";
}

static void test_run_in_executor_from_coroutine(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_loop_make_current(loop);
    assert_true(sq_executor_threads(sq_executor_default()) >= 4);
    void *v = sq_test_run_coro(loop, coro_uses_executor, NULL, 10);
    assert_string_equal(v, "ok");
    sq_loop_free(loop);
}

/* --- freeing a pool with queued jobs ------------------------------------------------------ */

static atomic_int ran_count;

static void *count_and_block(void *arg)
{
    atomic_fetch_add(&ran_count, 1);
    sleep_ms(100);
    return arg;
}

static void test_free_with_queued_jobs(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_loop_make_current(loop);
    sq_executor *ex = sq_executor_new(2);
    atomic_store(&ran_count, 0);
    sq_future *fs[10];
    for (intptr_t i = 0; i < 10; i++) fs[i] = sq_executor_submit(ex, loop, count_and_block, NULL);
    sleep_ms(30); /* both workers are now busy with the first two */
    double t0 = sq_test_now();
    sq_executor_free(ex);
    double took = sq_test_now() - t0;
    assert_true(took < 1.0); /* waited for 2 running jobs, not for all 10 */
    assert_int_equal(atomic_load(&ran_count), 2);
    /* Queued jobs of this thread's loop were failed inside sq_executor_free. */
    int cancelled = 0;
    for (int i = 0; i < 10; i++) {
        if (sq_future_done(fs[i]) && sq_future_status(fs[i]) == -ECANCELED) cancelled++;
    }
    assert_int_equal(cancelled, 8);
    /* The two that ran complete on the loop. */
    for (int i = 0; i < 10; i++) sq_loop_run_until(loop, fs[i]);
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        if (sq_future_status(fs[i]) == 0) ok++;
        sq_future_release(fs[i]);
    }
    assert_int_equal(ok, 2);
    sq_loop_free(loop);
}

/* Jobs for a loop of another thread are failed on that thread, through its loop. */
typedef struct other_loop {
    sq_loop *loop;
    sq_future *fs[4];
    atomic_int ready;
    int cancelled;
    int wrong_thread;
    pthread_t thread;
} other_loop;

static void count_cancelled(sq_future *f, void *arg)
{
    other_loop *o = arg;
    if (!pthread_equal(pthread_self(), o->thread)) o->wrong_thread++;
    if (sq_future_status(f) == -ECANCELED) o->cancelled++;
}

static void *other_thread_main(void *arg)
{
    other_loop *o = arg;
    o->thread = pthread_self();
    o->loop = sq_loop_new(NULL);
    atomic_store(&o->ready, 1);
    while (atomic_load(&o->ready) != 2) sleep_ms(1);
    for (int i = 0; i < 4; i++) sq_future_add_done_callback(o->fs[i], count_cancelled, o);
    atomic_store(&o->ready, 3);
    for (int i = 0; i < 4; i++) sq_loop_run_until(o->loop, o->fs[i]);
    for (int i = 0; i < 4; i++) sq_future_release(o->fs[i]);
    sq_loop_free(o->loop);
    return NULL;
}

static void test_free_fails_other_loops_jobs_on_their_thread(void **state)
{
    other_loop o = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread_main, &o), 0);
    while (atomic_load(&o.ready) != 1) sleep_ms(1);
    sq_executor *ex = sq_executor_new(1);
    /* The first job blocks the single worker; the rest stay queued.  Submitting for another
     * thread's loop is allowed: only that loop's thread touches the futures afterwards (the
     * other thread is parked until ready == 2). */
    for (int i = 0; i < 4; i++) o.fs[i] = sq_executor_submit(ex, o.loop, block_200ms, NULL);
    sleep_ms(30);
    atomic_store(&o.ready, 2);
    while (atomic_load(&o.ready) != 3) sleep_ms(1);
    sq_executor_free(ex);
    pthread_join(t, NULL);
    assert_int_equal(o.cancelled, 3);
    assert_int_equal(o.wrong_thread, 0);
}

/* --- lifetimes: the pool freed first, the loop freed first --------------------------------- */

/* The pool is freed while a finished job's result waits in the loop's queue; the job's
 * future is cancelled after that: the cancellation touches the pool, which lives on until
 * the job's completion has run. */
static void test_cancel_after_pool_freed(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(1);
    sq_future *f = sq_executor_submit(ex, loop, block_200ms, NULL);
    sleep_ms(50);         /* running */
    sq_executor_free(ex); /* joins the worker: the completion is queued on the loop */
    assert_false(sq_future_done(f));
    assert_int_equal(sq_future_cancel(f), 0);
    assert_int_equal(sq_future_status(f), -ECANCELED);
    sq_future_release(f);
    sq_loop_run_once(loop, false); /* the completion: frees the job, then the pool */
    sq_loop_free(loop);
}

static atomic_int slow_finished;

static void *slow_job(void *arg)
{
    sleep_ms(300);
    atomic_store(&slow_finished, 1);
    return arg;
}

typedef struct co_job {
    sq_executor *ex;
    sq_job_fn fn;
    int64_t before; /* what an sq_sleep(100) first returned (0: none asked) */
    int64_t status; /* what awaiting the job returned (1: never returned) */
} co_job;

/* Awaits a job of co->ex, or first sleeps (before != 0) and submits it in its cleanup. */
static void *awaits_job(void *arg)
{
    co_job *co = arg;
    if (co->before) co->before = sq_sleep(100); /* cancelled by the loop's free */
    co->status = sq_await(sq_executor_submit(co->ex, NULL, co->fn, NULL), NULL);
    return NULL;
}

/* The loop is freed while its jobs are out: one running (awaited by a coroutine), one queued
 * behind it whose future only the job holds.  The queued one is cancelled and never runs; the
 * free waits for the running one, whose return would otherwise touch the freed loop. */
static void test_loop_freed_with_jobs_out(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(1);
    atomic_store(&slow_finished, 0);
    atomic_store(&second_ran, 0);
    co_job co = {.ex = ex, .fn = slow_job, .status = 1};
    sq_go(loop, awaits_job, &co);
    sq_loop_run_once(loop, false);
    sq_future_release(sq_executor_submit(ex, loop, mark_ran, NULL));
    sleep_ms(50); /* the first is running */
    double t0 = sq_test_now();
    sq_loop_free(loop);
    assert_int_equal(co.status, -ECANCELED);
    assert_int_equal(atomic_load(&slow_finished), 1);
    assert_true(sq_test_now() - t0 > 0.1);
    sq_executor_free(ex);
    assert_int_equal(atomic_load(&second_ran), 0);
}

/* Submitting while the loop is being freed (from a coroutine's cleanup) is refused. */
static void test_submit_while_loop_frees(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_executor *ex = sq_executor_new(1);
    atomic_store(&second_ran, 0);
    co_job co = {.ex = ex, .fn = mark_ran, .before = 1, .status = 1};
    sq_go(loop, awaits_job, &co);
    sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    assert_int_equal(co.before, -ECANCELED);
    assert_int_equal(co.status, SQ_ELOOPCLOSED);
    sq_executor_free(ex);
    assert_int_equal(atomic_load(&second_ran), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_jobs_loop_keeps_ticking),
        cmocka_unit_test(test_cancel_queued_job),
        cmocka_unit_test(test_cancel_running_job),
        cmocka_unit_test(test_run_in_executor_from_coroutine),
        cmocka_unit_test(test_free_with_queued_jobs),
        cmocka_unit_test(test_free_fails_other_loops_jobs_on_their_thread),
        cmocka_unit_test(test_cancel_after_pool_freed),
        cmocka_unit_test(test_loop_freed_with_jobs_out),
        cmocka_unit_test(test_submit_while_loop_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
