/* sq_loop_free with work still pending: sleep futures, suspended coroutines (unwound by
 * cancellation, or discarded when they will not finish), the per-thread stack pool at
 * thread exit.  Run under LeakSanitizer, which reports whatever the loop failed to free. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Whether the page holding `addr` is still mapped (msync fails with ENOMEM if not). */
static bool mapped(const void *addr)
{
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    void *page = (void *)((uintptr_t)addr & ~(ps - 1));
    return msync(page, ps, MS_ASYNC) == 0 || errno != ENOMEM;
}

/* --- pending calls whose dispose functions cancel each other -------------------------------- */

/* src/internal.h */
void sq__call_set_dispose(sq_call *c, sq_callback_fn dispose);

static sq_call *pair[2];
static int disposed[2], fired;

static void never(void *arg)
{
    fired++;
}

/* Call i's dispose function cancels the other call: at loop teardown that one is freed with
 * the rest, neither disposed nor freed twice. */
static void dispose_cancel(void *arg)
{
    int i = (int)(intptr_t)arg;
    disposed[i]++;
    sq_call_cancel(pair[1 - i]);
}

static void test_dispose_cancels_pending_call(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    for (int i = 0; i < 2; i++) {
        pair[i] = sq_call_later(loop, 10.0 + i, never, (void *)(intptr_t)i);
        assert_non_null(pair[i]);
        sq__call_set_dispose(pair[i], dispose_cancel);
    }
    sq_loop_free(loop); /* LeakSanitizer and ASan: nothing leaked, nothing freed twice */
    assert_int_equal(disposed[0] + disposed[1], 1);
    assert_int_equal(fired, 0);
}

/* --- (a) pending sleep futures ------------------------------------------------------------ */

static void test_pending_sleep_future(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    /* The caller lets go of its reference; the pending timer still holds one. */
    sq_future_release(sq_sleep_future(loop, 30.0));
    /* A timeout around a sleep: two timers, three futures. */
    sq_future_release(sq_with_timeout(sq_sleep_future(loop, 30.0), 20.0));
    /* One kept by the caller until after the free would be a use after free: not done. */
    sq_loop_free(loop); /* LeakSanitizer: nothing left */
}

/* --- (b) suspended coroutines ---------------------------------------------------------------- */

typedef struct sleeper {
    int64_t rc;       /* what sq_sleep returned */
    bool returned;    /* the coroutine ran to its end */
    const void *self; /* an address inside its stack mapping */
    void *heap;       /* freed by the coroutine once it is unwound */
} sleeper;

static void *sleep_long(void *arg)
{
    sleeper *s = arg;
    s->self = sq_coro_self();
    s->heap = malloc(100);
    s->rc = sq_sleep(60.0);
    free(s->heap);
    s->returned = true;
    return NULL;
}

static void test_suspended_coroutine_unwound(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sleeper s[3] = {{0}};
    for (int i = 0; i < 3; i++) assert_int_equal(sq_go(loop, sleep_long, &s[i]), 0);
    sq_future *spawned = sq_spawn(loop, sleep_long, &(sleeper){0});
    sq_future_release(spawned); /* the coroutine's own reference keeps it */
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    for (int i = 0; i < 3; i++) {
        assert_non_null(s[i].self);
        assert_false(s[i].returned);
        assert_true(mapped(s[i].self));
    }
    sq_loop_free(loop);
    for (int i = 0; i < 3; i++) {
        assert_true(s[i].returned); /* its sleep was cancelled and it returned */
        assert_int_equal(s[i].rc, -ECANCELED);
        assert_false(mapped(s[i].self)); /* the last loop of this thread: stacks unmapped */
    }
}

static int stubborn_rounds;

/* A coroutine that will not finish: every cancellation is ignored. */
static void *stubborn(void *arg)
{
    *(const void **)arg = sq_coro_self();
    for (;;) {
        sq_sleep(60.0);
        stubborn_rounds++;
    }
    return NULL;
}

/* Awaits one never-resolved future after another: a cancelled await is simply repeated. */
static void *awaits_forever(void *arg)
{
    *(const void **)arg = sq_coro_self();
    for (;;) sq_await(sq_future_new(NULL), NULL);
    return NULL;
}

/* Suspended without a future: nothing will ever wake it. */
static void *raw_suspend(void *arg)
{
    *(const void **)arg = sq_coro_self();
    for (;;) sq_coro_suspend();
    return NULL;
}

static void test_stubborn_coroutine_discarded(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    const void *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(sq_go(loop, stubborn, &a), 0);
    assert_int_equal(sq_go(loop, awaits_forever, &b), 0);
    assert_int_equal(sq_go(loop, raw_suspend, &c), 0);
    for (int i = 0; i < 3; i++) sq_loop_run_once(loop, false);
    assert_true(mapped(a) && mapped(b) && mapped(c));
    double t0 = sq_test_now();
    sq_loop_free(loop); /* bounded: gives up on all three and frees their stacks */
    assert_true(sq_test_now() - t0 < 5.0);
    assert_true(stubborn_rounds >= 1 && stubborn_rounds < 1000);
    assert_false(mapped(a));
    assert_false(mapped(b));
    assert_false(mapped(c));
}

/* A coroutine created and never started. */
static void *never_run(void *arg)
{
    fail_msg("never started, so never run");
    return NULL;
}

static void test_unstarted_coroutine(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_coro *c = sq_coro_create(loop, never_run, NULL);
    assert_non_null(c);
    assert_true(mapped(c));
    sq_loop_free(loop);
    assert_false(mapped(c));
}

/* --- (c) the per-thread stack pool ------------------------------------------------------- */

static void *note_self(void *arg)
{
    *(const void **)arg = sq_coro_self();
    return NULL;
}

typedef struct thread_run {
    bool free_loop; /* free the loop on the thread, or leave it to the main thread */
    sq_loop *loop;
    const void *stack;
    bool pooled; /* the finished coroutine's stack was still mapped (pooled) on the thread */
} thread_run;

static void *thread_main(void *arg)
{
    thread_run *t = arg;
    t->loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(t->loop, note_self, &t->stack);
    sq_loop_run_until(t->loop, f);
    sq_future_release(f);
    t->pooled = t->stack && mapped(t->stack);
    if (t->free_loop) {
        sq_loop_free(t->loop);
        t->loop = NULL;
    }
    return NULL;
}

static void test_thread_pool_released(void **state)
{
    for (int free_on_thread = 0; free_on_thread < 2; free_on_thread++) {
        thread_run t = {.free_loop = free_on_thread};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, thread_main, &t), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_true(t.pooled);
        /* released at the thread's last loop free, or at the latest when the thread ended */
        assert_false(mapped(t.stack));
        if (t.loop) sq_loop_free(t.loop); /* a loop outliving its thread: freed from here */
    }
}

/* --- (d) callbacks queued while the loop is being freed ------------------------------------ */

/* Each callback owns a heap block and frees it: one that never ran shows as a leak. */
static int late_ran;

static void late_cb(void *arg)
{
    free(arg);
    late_ran++;
}

/* Cleanup code that hands work back to the loop, through the thread-safe queue (as a result
 * posted from a helper would be) and the plain one, once its sleep is cancelled. */
static void *queue_on_cancel(void *arg)
{
    sq_loop *loop = arg;
    if (sq_sleep(60.0) == -ECANCELED) {
        assert_int_equal(sq_add_callback_threadsafe(loop, late_cb, malloc(16)), 0);
        assert_int_equal(sq_add_callback(loop, late_cb, malloc(16)), 0);
    }
    return NULL;
}

/* A pending call's dispose function (run once the loop is closed) trying to queue a callback,
 * a call and a timer: refused, so the caller keeps what it offered; nothing is left behind. */
static sq_loop *dispose_loop;
static sq_timer late_timer;

static void late_timer_cb(sq_loop *loop, sq_timer *t)
{
    late_ran++;
}

static void dispose_queue(void *arg)
{
    free(arg);
    void *p = malloc(16);
    assert_int_equal(sq_add_callback(dispose_loop, late_cb, p), SQ_ELOOPCLOSED);
    assert_int_equal(sq_add_callback_threadsafe(dispose_loop, late_cb, p), SQ_ELOOPCLOSED);
    errno = 0;
    assert_null(sq_call_later(dispose_loop, 5.0, late_cb, p));
    assert_int_equal(errno, ESHUTDOWN);
    free(p);
    /* a timeout that cannot be armed fails its future with that reason, not -ENOMEM */
    sq_future *t = sq_with_timeout(sq_future_new(dispose_loop), 5.0);
    assert_non_null(t);
    assert_int_equal(sq_future_status(t), -ESHUTDOWN);
    sq_future_release(t);
    sq_timer_init(dispose_loop, &late_timer, late_timer_cb, NULL);
    sq_timer_start(&late_timer, 5.0, 0);
    assert_false(sq_timer_active(&late_timer));
}

static void test_callbacks_queued_during_free(void **state)
{
    late_ran = 0;
    sq_loop *loop = sq_loop_new(NULL);
    assert_int_equal(sq_go(loop, queue_on_cancel, loop), 0);
    for (int i = 0; i < 3; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop); /* LeakSanitizer: each block freed by its callback */
    assert_int_equal(late_ran, 2);
}

static void test_dispose_queues_during_free(void **state)
{
    late_ran = 0;
    dispose_loop = sq_loop_new(NULL);
    sq_call *c = sq_call_later(dispose_loop, 10.0, never, malloc(16));
    sq__call_set_dispose(c, dispose_queue);
    sq_loop_free(dispose_loop); /* LeakSanitizer: nothing left (no timer storage either) */
    assert_int_equal(late_ran, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispose_cancels_pending_call),
        cmocka_unit_test(test_pending_sleep_future),
        cmocka_unit_test(test_suspended_coroutine_unwound),
        cmocka_unit_test(test_stubborn_coroutine_discarded),
        cmocka_unit_test(test_unstarted_coroutine),
        cmocka_unit_test(test_thread_pool_released),
        cmocka_unit_test(test_callbacks_queued_during_free),
        cmocka_unit_test(test_dispose_queues_during_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
