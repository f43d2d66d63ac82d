/* sq_wait_iter (tornado.gen.WaitIterator) and sq_future_chain (tornado.concurrent.chain_future):
 * completion order, errors, futures already done, early free, the callback form; chaining a
 * result, an error, an owned value and cancellation either side. */
#include <stdlib.h>
#include <string.h>

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

typedef struct nap {
    double seconds;
    int fail; /* resolve with this error instead of a value */
    intptr_t result;
} nap;

static void *napper(void *arg)
{
    nap *n = arg;
    sq_sleep(n->seconds);
    if (n->fail) return NULL;
    return (void *)n->result;
}

/* A future that resolves after `seconds` with `result` or fails with `err`. */
typedef struct timed {
    sq_future *f;
    int err;
    void *value;
} timed;

static void timed_fire(void *arg)
{
    timed *t = arg;
    if (t->err)
        sq_future_set_error(t->f, t->err);
    else
        sq_future_set_result(t->f, t->value);
    sq_future_release(t->f);
    free(t);
}

static sq_future *timed_future(double seconds, int err, void *value)
{
    sq_future *f = sq_future_new(loop);
    timed *t = malloc(sizeof *t);
    assert_non_null(t);
    t->f = sq_future_retain(f);
    t->err = err;
    t->value = value;
    assert_non_null(sq_call_later(loop, seconds, timed_fire, t));
    return f;
}

/* --- order of completion --------------------------------------------------------------------- */

static void *order_coro(void *arg)
{
    /* Index 0 finishes last, 3 first; 2 fails; 4 is done before the iterator exists. */
    double delays[] = {0.20, 0.10, 0.05, 0.01};
    sq_future *fs[5];
    for (int i = 0; i < 4; i++)
        fs[i] = timed_future(delays[i], i == 2 ? -EIO : 0, (void *)(intptr_t)(100 + i));
    fs[4] = sq_future_new(loop);
    sq_future_set_result(fs[4], (void *)(intptr_t)104);
    sq_wait_iter *it = sq_wait_iter_new(fs, 5);
    assert_non_null(it);
    assert_false(sq_wait_iter_done(it));
    size_t want[] = {4, 3, 2, 1, 0};
    double t0 = sq_test_now();
    size_t k = 0, idx;
    int64_t st;
    void *v;
    int r;
    while ((r = sq_wait_iter_next(it, &idx, &st, &v, 5.0)) > 0) {
        assert_true(k < 5);
        assert_int_equal(idx, want[k]);
        if (idx == 2) {
            assert_int_equal(st, -EIO); /* the error surfaces in its turn */
            assert_null(v);
        } else {
            assert_int_equal(st, 0);
            assert_int_equal((intptr_t)v, 100 + (intptr_t)idx);
        }
        size_t ci;
        assert_non_null(sq_wait_iter_current(it, &ci));
        assert_int_equal(ci, idx);
        k++;
    }
    assert_int_equal(r, 0);
    assert_int_equal(k, 5);
    assert_true(sq_wait_iter_done(it));
    double took = sq_test_now() - t0;
    assert_true(took >= 0.19 && took < 3.0); /* the longest, not the sum */
    /* Exhausted: 0 again, and the future form says -ENOENT. */
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 1.0), 0);
    assert_null(sq_wait_iter_current(it, NULL));
    assert_int_equal(sq_await(sq_wait_iter_next_future(it), NULL), -ENOENT);
    sq_wait_iter_free(it);
    return NULL;
}

static void test_completion_order(void **state)
{
    sq_test_run_coro(loop, order_coro, NULL, 20);
}

/* Coroutines as the futures (sq_spawn), sleeping different lengths. */
static void *spawned_coro(void *arg)
{
    nap naps[4] = {{0.08, 0, 1}, {0.02, 0, 2}, {0.12, 0, 3}, {0.04, 0, 4}};
    sq_future *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = sq_spawn(loop, napper, &naps[i]);
    sq_wait_iter *it = sq_wait_iter_new(fs, 4);
    size_t order[4], k = 0, idx;
    void *v;
    int64_t st;
    while (sq_wait_iter_next(it, &idx, &st, &v, SQ_FOREVER) > 0) {
        assert_int_equal(st, 0);
        assert_int_equal((intptr_t)v, naps[idx].result);
        order[k++] = idx;
    }
    assert_int_equal(k, 4);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 0);
    assert_int_equal(order[3], 2);
    sq_wait_iter_free(it);
    /* No futures at all: done at once. */
    it = sq_wait_iter_new(NULL, 0);
    assert_non_null(it);
    assert_true(sq_wait_iter_done(it));
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 1.0), 0);
    sq_wait_iter_free(it);
    return NULL;
}

static void test_spawned_order(void **state)
{
    sq_test_run_coro(loop, spawned_coro, NULL, 20);
}

/* --- timeouts, owned values, NULL inputs --------------------------------------------------- */

static int owned_freed;
static void owned_free(void *p)
{
    owned_freed++;
    free(p);
}

static void *timeout_coro(void *arg)
{
    sq_future *fs[3];
    fs[0] = timed_future(0.15, 0, NULL);
    fs[1] = sq_future_new(loop); /* owned value, resolved below */
    sq_future_set_value_free(fs[1], owned_free);
    sq_future *keep = sq_future_retain(fs[1]);
    fs[2] = NULL;
    sq_wait_iter *it = sq_wait_iter_new(fs, 3);
    size_t idx;
    int64_t st;
    void *v;
    /* The NULL entry first, as an -ENOMEM failure. */
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 1.0), 1);
    assert_int_equal(idx, 2);
    assert_int_equal(st, -ENOMEM);
    assert_null(sq_wait_iter_current(it, NULL));
    /* Nothing finishes within 30 ms: -ETIMEDOUT, and nothing is lost. */
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 0.03), -ETIMEDOUT);
    char *mem = strdup("owned");
    sq_future_set_result(keep, mem);
    sq_future_release(keep);
    /* The owned value is taken by next(): ours to free. */
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 1.0), 1);
    assert_int_equal(idx, 1);
    assert_ptr_equal(v, mem);
    assert_null(sq_future_value(sq_wait_iter_current(it, NULL)));
    free(v);
    /* A timeout in the future form gives nothing up either. */
    sq_future *nf = sq_with_timeout(sq_wait_iter_next_future(it), 0.02);
    assert_int_equal(sq_await(nf, NULL), -ETIMEDOUT);
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 5.0), 1);
    assert_int_equal(idx, 0);
    assert_int_equal(sq_wait_iter_next(it, &idx, &st, &v, 5.0), 0);
    sq_wait_iter_free(it);
    assert_int_equal(owned_freed, 0);
    return NULL;
}

static void test_timeout_and_owned(void **state)
{
    owned_freed = 0;
    sq_test_run_coro(loop, timeout_coro, NULL, 20);
}

/* --- freeing early -------------------------------------------------------------------------- */

static void *free_early_coro(void *arg)
{
    /* Freed with futures still pending, one with an owned value: no dangling callback fires
     * into freed memory when they finish later (ASan would say), the owned value is freed
     * with its future. */
    sq_future *fs[3];
    fs[0] = timed_future(0.01, 0, NULL);
    fs[1] = timed_future(0.05, -EIO, NULL);
    fs[2] = sq_future_new(loop);
    sq_future_set_value_free(fs[2], owned_free);
    sq_future *producer = sq_future_retain(fs[2]);
    sq_wait_iter *it = sq_wait_iter_new(fs, 3);
    size_t idx;
    assert_int_equal(sq_wait_iter_next(it, &idx, NULL, NULL, 1.0), 1);
    assert_int_equal(idx, 0);
    sq_wait_iter_free(it);
    assert_false(sq_future_done(producer)); /* not cancelled by the free */
    sq_sleep(0.1);                          /* fs[1] finishes with nobody listening */
    sq_future_set_result(producer, strdup("late"));
    sq_future_release(producer);
    assert_int_equal(owned_freed, 1);
    return NULL;
}

static void test_free_early(void **state)
{
    owned_freed = 0;
    sq_test_run_coro(loop, free_early_coro, NULL, 20);
}

typedef struct waiting {
    sq_wait_iter *it;
    int r;
} waiting;

static void *iter_waiter(void *arg)
{
    waiting *w = arg;
    size_t idx;
    w->r = sq_wait_iter_next(w->it, &idx, NULL, NULL, SQ_FOREVER);
    return NULL;
}

static void *free_while_waiting_coro(void *arg)
{
    sq_future *fs[1] = {timed_future(0.05, 0, NULL)};
    waiting w = {sq_wait_iter_new(fs, 1), 1};
    sq_future *wf = sq_spawn(loop, iter_waiter, &w);
    for (int i = 0; i < 3; i++) sq_yield();
    assert_int_equal(w.r, 1); /* still waiting */
    /* A second concurrent next is refused. */
    assert_int_equal(sq_wait_iter_next(w.it, NULL, NULL, NULL, 1.0), -EBUSY);
    sq_wait_iter_free(w.it);
    sq_await(wf, NULL);
    assert_int_equal(w.r, -ECANCELED);
    sq_sleep(0.08); /* the timed future fires into nothing */
    return NULL;
}

static void test_free_while_waiting(void **state)
{
    sq_test_run_coro(loop, free_while_waiting_coro, NULL, 20);
}

/* A done callback of one of its futures, added before the iterator took it, frees the
 * iterator: the iterator's own callback on that future must not run on the freed slot. */
static void free_iter_cb(sq_future *f, void *arg)
{
    sq_wait_iter **it = arg;
    sq_wait_iter_free(*it);
    *it = NULL;
}

static void test_freed_by_earlier_callback(void **state)
{
    sq_future *f = sq_future_new(loop);
    sq_wait_iter *it = NULL;
    sq_future_add_done_callback(f, free_iter_cb, &it);
    sq_future *fs[1] = {sq_future_retain(f)};
    it = sq_wait_iter_new(fs, 1);
    assert_non_null(it);
    sq_future_set_result(f, NULL);
    assert_null(it);
    sq_future_release(f);
}

/* --- callback form, no coroutine ----------------------------------------------------------- */

typedef struct cb_state {
    sq_wait_iter *it;
    size_t order[4];
    int64_t status[4];
    size_t n;
    bool finished;
} cb_state;

static void on_next(sq_future *f, void *arg);

static void ask_next(cb_state *c)
{
    sq_future *nf = sq_wait_iter_next_future(c->it);
    assert_non_null(nf);
    assert_int_equal(sq_future_add_done_callback(nf, on_next, c), 0);
    sq_future_release(nf);
}

static void on_next(sq_future *f, void *arg)
{
    cb_state *c = arg;
    int64_t r = sq_future_status(f);
    if (r == -ENOENT) {
        c->finished = true;
        sq_wait_iter_free(c->it); /* from inside its own callback */
        c->it = NULL;
        sq_loop_stop(loop);
        return;
    }
    assert_true(r >= 0);
    size_t idx;
    sq_future *done = sq_wait_iter_current(c->it, &idx);
    assert_non_null(done);
    assert_int_equal(idx, (size_t)r);
    c->order[c->n] = idx;
    c->status[c->n] = sq_future_status(done);
    c->n++;
    ask_next(c);
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void test_callback_form(void **state)
{
    sq_future *fs[4] = {timed_future(0.06, 0, NULL), timed_future(0.02, -EPIPE, NULL),
                        timed_future(0.04, 0, NULL), sq_future_new(loop)};
    sq_future_set_error(fs[3], -EINVAL);
    cb_state c = {.it = sq_wait_iter_new(fs, 4)};
    ask_next(&c);
    sq_call *guard = sq_call_later(loop, 10, stop_loop, loop);
    sq_loop_run(loop);
    sq_call_cancel(guard);
    assert_true(c.finished);
    assert_int_equal(c.n, 4);
    size_t want[] = {3, 1, 2, 0};
    int64_t want_st[] = {-EINVAL, -EPIPE, 0, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c.order[i], want[i]);
        assert_int_equal(c.status[i], want_st[i]);
    }
}

/* --- chain ------------------------------------------------------------------------------------ */

static void test_chain_result_and_error(void **state)
{
    sq_future *a = sq_future_new(loop), *b = sq_future_new(loop);
    assert_int_equal(sq_future_chain(a, b), 0);
    assert_false(sq_future_done(b));
    static int x;
    sq_future_set_result(a, &x);
    assert_true(sq_future_done(b));
    assert_int_equal(sq_future_status(b), 0);
    assert_ptr_equal(sq_future_value(b), &x); /* a plain value is shared */
    assert_ptr_equal(sq_future_value(a), &x);
    sq_future_release(a);
    sq_future_release(b);

    /* An error, with a already done when chained: b resolves at once. */
    a = sq_future_new(loop);
    b = sq_future_new(loop);
    sq_future_set_error(a, -ECONNRESET);
    assert_int_equal(sq_future_chain(a, b), 0);
    assert_int_equal(sq_future_status(b), -ECONNRESET);
    assert_false(sq_future_cancelled(b));
    assert_int_equal(sq_future_chain(a, a), -EINVAL);
    assert_int_equal(sq_future_chain(NULL, b), -EINVAL);
    sq_future_release(a);
    sq_future_release(b);
}

static void test_chain_owned_value(void **state)
{
    owned_freed = 0;
    /* The owned value moves to b with its free function: one owner. */
    sq_future *a = sq_future_new(loop), *b = sq_future_new(loop);
    sq_future_set_value_free(a, owned_free);
    assert_int_equal(sq_future_chain(a, b), 0);
    char *mem = strdup("x");
    sq_future_set_result(a, mem);
    assert_null(sq_future_value(a));
    assert_ptr_equal(sq_future_value(b), mem);
    sq_future_release(a);
    assert_int_equal(owned_freed, 0);
    sq_future_release(b); /* untaken: freed with b */
    assert_int_equal(owned_freed, 1);

    /* Dropped by everyone but the chain while pending: nothing leaks when a resolves. */
    a = sq_future_new(loop);
    b = sq_future_new(loop);
    sq_future_set_value_free(a, owned_free);
    assert_int_equal(sq_future_chain(a, b), 0);
    sq_future *producer = sq_future_retain(a);
    sq_future_release(a);
    sq_future_release(b);
    sq_future_set_result(producer, strdup("y"));
    sq_future_release(producer);
    assert_int_equal(owned_freed, 2);
}

static int hook_ran;
static void count_hook(sq_future *f, void *arg)
{
    hook_ran++;
}

static void test_chain_cancel(void **state)
{
    owned_freed = 0;
    hook_ran = 0;
    /* Cancelling b leaves a running (one way, as in Tornado); a's later result is dropped,
     * its owned value freed with a. */
    sq_future *a = sq_future_new(loop), *b = sq_future_new(loop);
    sq_future_set_cancel_hook(a, count_hook, NULL);
    sq_future_set_value_free(a, owned_free);
    assert_int_equal(sq_future_chain(a, b), 0);
    assert_int_equal(sq_future_cancel(b), 0);
    assert_false(sq_future_done(a));
    assert_int_equal(hook_ran, 0);
    sq_future_set_result(a, strdup("z"));
    assert_true(sq_future_cancelled(b));
    assert_int_equal(sq_future_status(b), -ECANCELED);
    assert_null(sq_future_value(b));
    assert_int_equal(owned_freed, 0);
    sq_future_release(a);
    assert_int_equal(owned_freed, 1);
    sq_future_release(b);

    /* Cancelling a cancels b, running b's own cancel hook. */
    a = sq_future_new(loop);
    b = sq_future_new(loop);
    sq_future_set_cancel_hook(b, count_hook, NULL);
    assert_int_equal(sq_future_chain(a, b), 0);
    sq_future_cancel(a);
    assert_true(sq_future_cancelled(b));
    assert_int_equal(sq_future_status(b), -ECANCELED);
    assert_int_equal(hook_ran, 1);
    sq_future_release(a);
    sq_future_release(b);
}

/* A chain feeding an awaiting coroutine: b is what the coroutine waits on. */
static void *chain_await_coro(void *arg)
{
    sq_future *a = timed_future(0.02, 0, (void *)(intptr_t)7);
    sq_future *b = sq_future_new(loop);
    assert_int_equal(sq_future_chain(a, b), 0);
    sq_future_release(a);
    void *v;
    assert_int_equal(sq_await(b, &v), 0);
    assert_int_equal((intptr_t)v, 7);
    return NULL;
}

static void test_chain_await(void **state)
{
    sq_test_run_coro(loop, chain_await_coro, NULL, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_completion_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawned_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_owned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_by_earlier_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_result_and_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_owned_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_await, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
