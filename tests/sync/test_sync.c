/* Event, condition, semaphore, lock and queue: Tornado's tornado.locks / tornado.queues. */
#include "testutil.h"

static sq_loop *loop;

static int setup(void **state)
{
    loop = sq_loop_new(NULL);
    sq_loop_make_current(loop);
    return loop ? 0 : -1;
}

static int teardown(void **state)
{
    sq_loop_free(loop);
    loop = NULL;
    return 0;
}

/* Let every ready coroutine run to its next suspension point. */
static void settle(void)
{
    for (int i = 0; i < 5; i++) sq_yield();
}

/* --- event -------------------------------------------------------------------------------- */

typedef struct ev_ctx {
    sq_event *ev;
    int woken;
    double timeout;
} ev_ctx;

static void *ev_waiter(void *arg)
{
    ev_ctx *c = arg;
    int r = sq_event_wait(c->ev, c->timeout);
    if (r == 0) c->woken++;
    return (void *)(intptr_t)r;
}

static void *event_coro(void *arg)
{
    ev_ctx c = {.ev = sq_event_new(loop), .timeout = SQ_FOREVER};
    assert_false(sq_event_is_set(c.ev));
    sq_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = sq_spawn(loop, ev_waiter, &c);
    settle();
    assert_int_equal(c.woken, 0);
    sq_event_set(c.ev);
    assert_true(sq_event_is_set(c.ev));
    assert_int_equal(sq_gather(fs, 3, NULL, NULL), 0);
    assert_int_equal(c.woken, 3);
    /* Once set, waits return at once. */
    assert_int_equal(sq_event_wait(c.ev, 0), 0);
    sq_event_clear(c.ev);
    assert_false(sq_event_is_set(c.ev));
    double t0 = sq_test_now();
    assert_int_equal(sq_event_wait(c.ev, 0.05), -ETIMEDOUT);
    double took = sq_test_now() - t0;
    assert_true(took >= 0.045 && took < 1.0);
    sq_event_free(c.ev);
    return NULL;
}

static void *ev_cancel_waiter(void *arg)
{
    return (void *)(intptr_t)sq_event_wait(arg, SQ_FOREVER);
}

static void *event_free_coro(void *arg)
{
    sq_event *ev = sq_event_new(loop);
    sq_future *f = sq_spawn(loop, ev_cancel_waiter, ev);
    sq_future *g = sq_spawn(loop, ev_cancel_waiter, ev);
    settle();
    sq_event_free(ev);
    void *v1, *v2;
    sq_await(f, &v1);
    sq_await(g, &v2);
    assert_int_equal((intptr_t)v1, -ECANCELED);
    assert_int_equal((intptr_t)v2, -ECANCELED);
    return NULL;
}

static void test_event(void **state)
{
    sq_test_run_coro(loop, event_coro, NULL, 10);
    sq_test_run_coro(loop, event_free_coro, NULL, 10);
}

static void test_wait_outside_coroutine(void **state)
{
    sq_log_set_level(SQ_LOG_OFF);
    sq_event *ev = sq_event_new(loop);
    assert_int_equal(sq_event_wait(ev, 1.0), SQ_ENOTCORO);
    sq_event_set(ev);
    assert_int_equal(sq_event_wait(ev, 1.0), 0); /* no need to suspend: fine anywhere */
    sq_event_free(ev);
    sq_condition *c = sq_condition_new(loop);
    assert_int_equal(sq_condition_wait(c, 1.0), SQ_ENOTCORO);
    sq_condition_free(c);
    sq_semaphore *s = sq_semaphore_new(loop, 0);
    assert_int_equal(sq_semaphore_acquire(s, 1.0), SQ_ENOTCORO);
    assert_int_equal(sq_semaphore_value(s), 0);
    sq_semaphore_free(s);
    sq_queue *q = sq_queue_new(loop, 1);
    void *item = (void *)1;
    assert_int_equal(sq_queue_get(q, &item, 1.0), SQ_ENOTCORO);
    assert_null(item);
    sq_queue_free(q);
    sq_log_set_level(SQ_LOG_INFO);
}

/* --- condition ---------------------------------------------------------------------------- */

typedef struct cond_ctx {
    sq_condition *c;
    int woken;
    int order[8];
    int norder;
} cond_ctx;

typedef struct cond_arg {
    cond_ctx *ctx;
    int id;
    double timeout;
} cond_arg;

static void *cond_waiter(void *arg)
{
    cond_arg *a = arg;
    int r = sq_condition_wait(a->ctx->c, a->timeout);
    if (r == 0) {
        a->ctx->woken++;
        a->ctx->order[a->ctx->norder++] = a->id;
    }
    return (void *)(intptr_t)r;
}

static void *condition_coro(void *arg)
{
    cond_ctx ctx = {.c = sq_condition_new(loop)};
    cond_arg args[4];
    sq_future *fs[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (cond_arg){&ctx, i, SQ_FOREVER};
        fs[i] = sq_spawn(loop, cond_waiter, &args[i]);
    }
    settle();
    sq_condition_notify(ctx.c, 1);
    settle();
    assert_int_equal(ctx.woken, 1);
    assert_int_equal(ctx.order[0], 0); /* FIFO */
    sq_condition_notify(ctx.c, 1);
    settle();
    assert_int_equal(ctx.woken, 2);
    assert_int_equal(ctx.order[1], 1);
    sq_condition_notify_all(ctx.c);
    assert_int_equal(sq_gather(fs, 4, NULL, NULL), 0);
    assert_int_equal(ctx.woken, 4);
    /* Notifying nobody is harmless. */
    sq_condition_notify(ctx.c, 3);
    sq_condition_notify_all(ctx.c);

    /* Timeouts: a waiter that timed out is skipped by notify. */
    ctx.woken = 0;
    ctx.norder = 0;
    double t0 = sq_test_now();
    assert_int_equal(sq_condition_wait(ctx.c, 0.05), -ETIMEDOUT);
    assert_true(sq_test_now() - t0 >= 0.045);
    args[0] = (cond_arg){&ctx, 10, 0.02};
    args[1] = (cond_arg){&ctx, 11, SQ_FOREVER};
    fs[0] = sq_spawn(loop, cond_waiter, &args[0]);
    fs[1] = sq_spawn(loop, cond_waiter, &args[1]);
    assert_int_equal(sq_sleep(0.1), 0); /* waiter 10 times out */
    sq_condition_notify(ctx.c, 1);
    void *v0, *v1;
    sq_await(fs[0], &v0);
    sq_await(fs[1], &v1);
    assert_int_equal((intptr_t)v0, -ETIMEDOUT);
    assert_int_equal((intptr_t)v1, 0);
    assert_int_equal(ctx.woken, 1);
    assert_int_equal(ctx.order[0], 11);

    /* Freeing with a waiter cancels it. */
    fs[0] = sq_spawn(loop, cond_waiter, &args[1]);
    settle();
    sq_condition_free(ctx.c);
    sq_await(fs[0], &v0);
    assert_int_equal((intptr_t)v0, -ECANCELED);
    return NULL;
}

static void test_condition(void **state)
{
    sq_test_run_coro(loop, condition_coro, NULL, 10);
}

/* --- semaphore ---------------------------------------------------------------------------- */

typedef struct sem_arg {
    sq_semaphore *s;
    double timeout;
    int got;
} sem_arg;

static void *sem_acquirer(void *arg)
{
    sem_arg *a = arg;
    int r = sq_semaphore_acquire(a->s, a->timeout);
    if (r == 0) a->got = 1;
    return (void *)(intptr_t)r;
}

static void *semaphore_coro(void *arg)
{
    sq_semaphore *s = sq_semaphore_new(loop, 2);
    assert_int_equal(sq_semaphore_value(s), 2);
    assert_int_equal(sq_semaphore_acquire(s, SQ_FOREVER), 0);
    assert_int_equal(sq_semaphore_acquire(s, SQ_FOREVER), 0);
    assert_int_equal(sq_semaphore_value(s), 0);
    sem_arg a = {s, SQ_FOREVER, 0};
    sq_future *f = sq_spawn(loop, sem_acquirer, &a);
    settle();
    assert_int_equal(a.got, 0); /* blocked */
    assert_int_equal(sq_semaphore_release(s), 0);
    assert_int_equal(sq_semaphore_value(s), 0); /* the permit went to the waiter */
    assert_int_equal(sq_await(f, NULL), 0);
    assert_int_equal(a.got, 1);
    assert_int_equal(sq_semaphore_release(s), 0);
    assert_int_equal(sq_semaphore_release(s), 0);
    assert_int_equal(sq_semaphore_release(s), 0); /* unbounded: may exceed the start */
    assert_int_equal(sq_semaphore_value(s), 3);
    sq_semaphore_free(s);

    /* A waiter that timed out does not eat a permit. */
    s = sq_semaphore_new(loop, 0);
    double t0 = sq_test_now();
    assert_int_equal(sq_semaphore_acquire(s, 0.05), -ETIMEDOUT);
    assert_true(sq_test_now() - t0 >= 0.045);
    sem_arg shortw = {s, 0.02, 0}, longw = {s, SQ_FOREVER, 0};
    sq_future *fa = sq_spawn(loop, sem_acquirer, &shortw);
    sq_future *fb = sq_spawn(loop, sem_acquirer, &longw);
    assert_int_equal(sq_sleep(0.1), 0);
    assert_int_equal(sq_semaphore_release(s), 0);
    void *va, *vb;
    sq_await(fa, &va);
    sq_await(fb, &vb);
    assert_int_equal((intptr_t)va, -ETIMEDOUT);
    assert_int_equal((intptr_t)vb, 0);
    assert_int_equal(shortw.got, 0);
    assert_int_equal(longw.got, 1);
    assert_int_equal(sq_semaphore_value(s), 0);
    /* With only timed-out waiters behind it, a release raises the count. */
    assert_int_equal(sq_semaphore_acquire(s, 0.01), -ETIMEDOUT);
    assert_int_equal(sq_semaphore_release(s), 0);
    assert_int_equal(sq_semaphore_value(s), 1);
    /* Freeing with a waiter cancels it. */
    assert_int_equal(sq_semaphore_acquire(s, 0), 0);
    longw.got = 0;
    fb = sq_spawn(loop, sem_acquirer, &longw);
    settle();
    sq_semaphore_free(s);
    sq_await(fb, &vb);
    assert_int_equal((intptr_t)vb, -ECANCELED);

    /* Bounded: releasing beyond the initial value is an error. */
    s = sq_bounded_semaphore_new(loop, 2);
    assert_int_equal(sq_semaphore_release(s), -EOVERFLOW);
    assert_int_equal(sq_semaphore_value(s), 2);
    assert_int_equal(sq_semaphore_acquire(s, 0), 0);
    assert_int_equal(sq_semaphore_release(s), 0);
    assert_int_equal(sq_semaphore_release(s), -EOVERFLOW);
    assert_int_equal(sq_semaphore_value(s), 2);
    sq_semaphore_free(s);
    return NULL;
}

static void test_semaphore(void **state)
{
    sq_test_run_coro(loop, semaphore_coro, NULL, 10);
}

/* --- lock --------------------------------------------------------------------------------- */

typedef struct lock_ctx {
    sq_lock *l;
    int inside, max_inside;
    int order[8];
    int norder;
} lock_ctx;

typedef struct lock_arg {
    lock_ctx *ctx;
    int id;
} lock_arg;

static void *lock_user(void *arg)
{
    lock_arg *a = arg;
    lock_ctx *c = a->ctx;
    assert_int_equal(sq_lock_acquire(c->l, SQ_FOREVER), 0);
    c->order[c->norder++] = a->id;
    if (++c->inside > c->max_inside) c->max_inside = c->inside;
    sq_sleep(0.01); /* others run meanwhile, and must not get in */
    assert_true(sq_lock_locked(c->l));
    c->inside--;
    assert_int_equal(sq_lock_release(c->l), 0);
    return NULL;
}

static void *lock_coro(void *arg)
{
    lock_ctx ctx = {.l = sq_lock_new(loop)};
    assert_false(sq_lock_locked(ctx.l));
    assert_int_equal(sq_lock_release(ctx.l), -EPERM);
    lock_arg args[6];
    sq_future *fs[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (lock_arg){&ctx, i};
        fs[i] = sq_spawn(loop, lock_user, &args[i]);
    }
    double t0 = sq_test_now();
    assert_int_equal(sq_gather(fs, 6, NULL, NULL), 0);
    assert_true(sq_test_now() - t0 >= 0.055); /* serialised: 6 x 10 ms */
    assert_int_equal(ctx.max_inside, 1);
    assert_int_equal(ctx.norder, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(ctx.order[i], i); /* FIFO */
    assert_false(sq_lock_locked(ctx.l));
    assert_int_equal(sq_lock_release(ctx.l), -EPERM);

    /* Timeout while held; the timed-out waiter does not end up owning the lock. */
    assert_int_equal(sq_lock_acquire(ctx.l, 0), 0);
    assert_true(sq_lock_locked(ctx.l));
    assert_int_equal(sq_lock_acquire(ctx.l, 0.03), -ETIMEDOUT);
    assert_int_equal(sq_lock_release(ctx.l), 0);
    assert_false(sq_lock_locked(ctx.l));
    assert_int_equal(sq_lock_release(ctx.l), -EPERM);
    sq_lock_free(ctx.l);
    return NULL;
}

static void test_lock(void **state)
{
    sq_test_run_coro(loop, lock_coro, NULL, 10);
}

/* --- queue -------------------------------------------------------------------------------- */

static void *queue_nowait_coro(void *arg)
{
    sq_queue *q = sq_queue_new(loop, 2);
    void *item = (void *)1;
    assert_true(sq_queue_empty(q));
    assert_int_equal(sq_queue_get_nowait(q, &item), -EAGAIN);
    assert_int_equal(sq_queue_put_nowait(q, (void *)"a"), 0);
    assert_int_equal(sq_queue_put_nowait(q, (void *)"b"), 0);
    assert_true(sq_queue_full(q));
    assert_int_equal(sq_queue_put_nowait(q, (void *)"c"), -EAGAIN);
    assert_int_equal(sq_queue_size(q), 2);
    assert_int_equal(sq_queue_get_nowait(q, &item), 0);
    assert_string_equal(item, "a");
    assert_int_equal(sq_queue_put_nowait(q, (void *)"c"), 0);
    assert_int_equal(sq_queue_get(q, &item, SQ_FOREVER), 0);
    assert_string_equal(item, "b");
    assert_int_equal(sq_queue_get(q, &item, 0), 0);
    assert_string_equal(item, "c");
    assert_true(sq_queue_empty(q));
    sq_queue_free(q);

    /* Unbounded: grows past its first ring and keeps FIFO order across wrap-arounds. */
    q = sq_queue_new(loop, 0);
    intptr_t next_in = 0, next_out = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 7; i++) assert_int_equal(sq_queue_put_nowait(q, (void *)next_in++), 0);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(sq_queue_get_nowait(q, &item), 0);
            assert_int_equal((intptr_t)item, next_out++);
        }
        assert_false(sq_queue_full(q));
    }
    assert_int_equal(sq_queue_size(q), 100);
    while (sq_queue_get_nowait(q, &item) == 0) assert_int_equal((intptr_t)item, next_out++);
    assert_int_equal(next_out, next_in);
    sq_queue_free(q);
    return NULL;
}

typedef struct q_ctx {
    sq_queue *q;
    int puts_done;
    int got;
    void *items[8];
    double timeout;
    int last_status;
} q_ctx;

static void *q_putter(void *arg)
{
    q_ctx *c = arg;
    for (intptr_t i = 1; i <= 4; i++) {
        int r = sq_queue_put(c->q, (void *)i, c->timeout);
        if (r < 0) return (void *)(intptr_t)r;
        c->puts_done++;
    }
    return NULL;
}

static void *q_getter(void *arg)
{
    q_ctx *c = arg;
    void *item = NULL;
    c->last_status = sq_queue_get(c->q, &item, c->timeout);
    if (c->last_status == 0) c->items[c->got++] = item;
    return (void *)(intptr_t)c->last_status;
}

static void *queue_blocking_coro(void *arg)
{
    q_ctx c = {.q = sq_queue_new(loop, 2), .timeout = SQ_FOREVER};
    void *item;
    /* put blocks while full */
    sq_future *pf = sq_spawn(loop, q_putter, &c);
    settle();
    assert_int_equal(c.puts_done, 2);
    assert_true(sq_queue_full(c.q));
    assert_int_equal(sq_queue_get(c.q, &item, SQ_FOREVER), 0);
    assert_int_equal((intptr_t)item, 1);
    assert_int_equal(sq_queue_size(c.q), 2); /* the waiting putter moved its item in */
    settle();
    assert_int_equal(c.puts_done, 3);
    for (intptr_t want = 2; want <= 4; want++) {
        assert_int_equal(sq_queue_get(c.q, &item, 1.0), 0);
        assert_int_equal((intptr_t)item, want);
    }
    void *pv = (void *)1;
    assert_int_equal(sq_await(pf, &pv), 0);
    assert_null(pv);
    assert_int_equal(c.puts_done, 4);
    assert_true(sq_queue_empty(c.q));

    /* get blocks while empty; getters are served in FIFO order */
    c.got = 0;
    sq_future *g1 = sq_spawn(loop, q_getter, &c);
    sq_future *g2 = sq_spawn(loop, q_getter, &c);
    settle();
    assert_int_equal(c.got, 0);
    double t0 = sq_test_now();
    assert_int_equal(sq_sleep(0.03), 0);
    assert_int_equal(sq_queue_put(c.q, (void *)"x", SQ_FOREVER), 0);
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"y"), 0);
    assert_true(sq_queue_empty(c.q)); /* both went straight to the waiting getters */
    sq_await(g1, NULL);
    sq_await(g2, NULL);
    assert_true(sq_test_now() - t0 >= 0.025);
    assert_int_equal(c.got, 2);
    assert_string_equal(c.items[0], "x");
    assert_string_equal(c.items[1], "y");

    /* timeouts */
    item = (void *)1;
    t0 = sq_test_now();
    assert_int_equal(sq_queue_get(c.q, &item, 0.05), -ETIMEDOUT);
    assert_true(sq_test_now() - t0 >= 0.045);
    assert_null(item);
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"p"), 0);
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"q"), 0);
    assert_int_equal(sq_queue_put(c.q, (void *)"r", 0.05), -ETIMEDOUT);
    assert_int_equal(sq_queue_size(c.q), 2);
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_string_equal(item, "p");
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_string_equal(item, "q");
    assert_int_equal(sq_queue_get_nowait(c.q, &item), -EAGAIN); /* "r" never got in */

    /* A getter that timed out does not swallow the next item. */
    c.got = 0;
    c.timeout = 0.02;
    g1 = sq_spawn(loop, q_getter, &c);
    assert_int_equal(sq_sleep(0.08), 0);
    assert_int_equal(c.last_status, -ETIMEDOUT);
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"kept"), 0);
    assert_int_equal(sq_queue_size(c.q), 1);
    sq_await(g1, NULL);
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_string_equal(item, "kept");
    assert_int_equal(sq_queue_task_done(c.q), 0);
    assert_int_equal(c.got, 0);

    /* A putter that timed out does not slip its item in later. */
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"1"), 0);
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"2"), 0);
    c.puts_done = 0;
    pf = sq_spawn(loop, q_putter, &c); /* timeout 0.02 */
    assert_int_equal(sq_sleep(0.08), 0);
    sq_await(pf, &pv);
    assert_int_equal((intptr_t)pv, -ETIMEDOUT);
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_string_equal(item, "2");
    assert_int_equal(sq_queue_get_nowait(c.q, &item), -EAGAIN);

    /* Freeing wakes waiters with -ECANCELED. */
    c.timeout = SQ_FOREVER;
    g1 = sq_spawn(loop, q_getter, &c);
    settle();
    sq_queue_free(c.q);
    sq_await(g1, &pv);
    assert_int_equal((intptr_t)pv, -ECANCELED);
    return NULL;
}

typedef struct join_ctx {
    sq_queue *q;
    bool last_done_flag;
    int processed;
} join_ctx;

static void *join_worker(void *arg)
{
    join_ctx *c = arg;
    for (int i = 0; i < 3; i++) {
        void *item;
        if (sq_queue_get(c->q, &item, SQ_FOREVER) < 0) return (void *)1;
        sq_sleep(0.01);
        c->processed++;
        if (i == 2) c->last_done_flag = true;
        assert_int_equal(sq_queue_task_done(c->q), 0);
    }
    return NULL;
}

static void *queue_join_coro(void *arg)
{
    join_ctx c = {.q = sq_queue_new(loop, 0)};
    /* Nothing ever put: join returns at once. */
    assert_int_equal(sq_queue_join(c.q, 0), 0);
    assert_int_equal(sq_queue_task_done(c.q), -EINVAL);
    for (intptr_t i = 0; i < 3; i++) assert_int_equal(sq_queue_put_nowait(c.q, (void *)i), 0);
    assert_int_equal(sq_queue_join(c.q, 0.02), -ETIMEDOUT);
    sq_future *w = sq_spawn(loop, join_worker, &c);
    assert_int_equal(sq_queue_join(c.q, SQ_FOREVER), 0);
    assert_true(c.last_done_flag);
    assert_int_equal(c.processed, 3);
    assert_true(sq_queue_empty(c.q));
    assert_int_equal(sq_await(w, NULL), 0);
    assert_int_equal(sq_queue_task_done(c.q), -EINVAL);
    /* get() counts, not size: an item still in the queue keeps join waiting. */
    assert_int_equal(sq_queue_put_nowait(c.q, (void *)"z"), 0);
    void *item;
    assert_int_equal(sq_queue_join(c.q, 0.02), -ETIMEDOUT);
    assert_int_equal(sq_queue_get_nowait(c.q, &item), 0);
    assert_int_equal(sq_queue_join(c.q, 0.02), -ETIMEDOUT);
    assert_int_equal(sq_queue_task_done(c.q), 0);
    assert_int_equal(sq_queue_join(c.q, 0.02), 0);
    assert_int_equal(sq_queue_task_done(c.q), -EINVAL);
    sq_queue_free(c.q);
    return NULL;
}

static void test_queue(void **state)
{
    sq_test_run_coro(loop, queue_nowait_coro, NULL, 10);
    sq_test_run_coro(loop, queue_blocking_coro, NULL, 10);
    sq_test_run_coro(loop, queue_join_coro, NULL, 10);
}

/* --- a coroutine that keeps waiting through sq_loop_free's cancellation rounds ------------ */

static int rounds;

static void *stubborn(void *arg)
{
    sq_condition *c = arg;
    /* cleanup that waits again (here: a retry loop) — more than the 16 rounds */
    while (sq_condition_wait(c, SQ_FOREVER) != 0) rounds++;
    return NULL;
}

static void test_discarded_waiter(void **state)
{
    sq_loop *l = sq_loop_new(NULL);
    sq_condition *c = sq_condition_new(l);
    sq_go(l, stubborn, c);
    sq_loop_run_once(l, false);
    sq_loop_free(l); /* cancels 16 times, then discards the coroutine and its stack */
    assert_true(rounds >= 10);
    /* The condition outlives the loop: its list no longer holds the waiter's node, which
     * was on the unmapped stack (the waiter's future was resolved before the discard). */
    sq_condition_notify_all(c);
    sq_condition_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_outside_coroutine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_semaphore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue, setup, teardown),
        cmocka_unit_test(test_discarded_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
