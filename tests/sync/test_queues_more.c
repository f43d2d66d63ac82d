/* LIFO and priority queues (tornado.queues.LifoQueue / PriorityQueue): ordering, blocking
 * put/get with maxsize and timeouts, task_done/join, and that they share sq_queue's waiting
 * rules (FIFO service of waiters, direct hand-over, clean free). */
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

static void settle(void)
{
    for (int i = 0; i < 5; i++) sq_yield();
}

#define P(i) ((void *)(intptr_t)(i))
#define I(p) ((int)(intptr_t)(p))

/* --- ordering ------------------------------------------------------------------------------ */

static void test_lifo_order(void **state)
{
    sq_queue *q = sq_lifo_queue_new(loop, 0);
    void *item;
    for (int i = 1; i <= 5; i++) assert_int_equal(sq_queue_put_nowait(q, P(i)), 0);
    for (int i = 5; i >= 3; i--) {
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        assert_int_equal(I(item), i);
    }
    /* Interleaved: the newest always comes out first, through the ring's growth too. */
    for (int i = 10; i < 40; i++) assert_int_equal(sq_queue_put_nowait(q, P(i)), 0);
    for (int i = 39; i >= 10; i--) {
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        assert_int_equal(I(item), i);
    }
    for (int i = 2; i >= 1; i--) {
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        assert_int_equal(I(item), i);
    }
    assert_int_equal(sq_queue_get_nowait(q, &item), -EAGAIN);
    /* A FIFO queue refuses priorities. */
    assert_int_equal(sq_queue_put_priority_nowait(q, P(1), 3), -EINVAL);
    sq_queue_free(q);
}

static void test_priority_order(void **state)
{
    sq_queue *q = sq_priority_queue_new(loop, 0, NULL);
    /* (priority, id): ids 0..199 with priorities from a fixed shuffle, many ties. */
    enum { N = 200 };
    int64_t prio[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        prio[i] = (int64_t)((seed >> 16) % 7) - 3; /* -3..3: negatives sort first */
        assert_int_equal(sq_queue_put_priority_nowait(q, P(i), prio[i]), 0);
    }
    assert_int_equal(sq_queue_size(q), N);
    int64_t last_prio = INT64_MIN;
    int last_id = -1;
    for (int k = 0; k < N; k++) {
        void *item;
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        int id = I(item);
        assert_true(prio[id] >= last_prio);
        /* Equal priorities come out in insertion order. */
        if (prio[id] == last_prio) assert_true(id > last_id);
        last_prio = prio[id];
        last_id = id;
    }
    assert_true(sq_queue_empty(q));
    /* sq_queue_put is priority 0: FIFO among themselves, after negative, before positive. */
    assert_int_equal(sq_queue_put_nowait(q, P(1)), 0);
    assert_int_equal(sq_queue_put_priority_nowait(q, P(2), 5), 0);
    assert_int_equal(sq_queue_put_nowait(q, P(3)), 0);
    assert_int_equal(sq_queue_put_priority_nowait(q, P(4), -1), 0);
    int want[] = {4, 1, 3, 2};
    for (int k = 0; k < 4; k++) {
        void *item;
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        assert_int_equal(I(item), want[k]);
    }
    sq_queue_free(q);
}

typedef struct job {
    double deadline;
    const char *name;
} job;

static int by_deadline(const void *a, const void *b)
{
    const job *x = a, *y = b;
    return (x->deadline > y->deadline) - (x->deadline < y->deadline);
}

static void test_priority_cmp(void **state)
{
    sq_queue *q = sq_priority_queue_new(loop, 0, by_deadline);
    job jobs[] = {{3.0, "c"}, {1.0, "a1"}, {2.0, "b"}, {1.0, "a2"}, {0.5, "z"}, {1.0, "a3"}};
    for (size_t i = 0; i < 6; i++) assert_int_equal(sq_queue_put_nowait(q, &jobs[i]), 0);
    /* The comparison decides first, the integer priority breaks its ties, then insertion. */
    job late = {1.0, "a0"};
    assert_int_equal(sq_queue_put_priority_nowait(q, &late, -1), 0);
    const char *want[] = {"z", "a0", "a1", "a2", "a3", "b", "c"};
    for (size_t k = 0; k < 7; k++) {
        void *item;
        assert_int_equal(sq_queue_get_nowait(q, &item), 0);
        assert_string_equal(((job *)item)->name, want[k]);
    }
    sq_queue_free(q);
}

/* --- blocking put/get, maxsize, timeouts --------------------------------------------------- */

typedef struct pctx {
    sq_queue *q;
    int id;
    int64_t prio;
    int result;
} pctx;

static void *putter(void *arg)
{
    pctx *c = arg;
    c->result = sq_queue_put_priority(c->q, P(c->id), c->prio, 5.0);
    return NULL;
}

static void *getter(void *arg)
{
    pctx *c = arg;
    void *item = NULL;
    c->result = sq_queue_get(c->q, &item, 5.0);
    c->id = I(item);
    return NULL;
}

static void *blocking_priority_coro(void *arg)
{
    sq_queue *q = sq_priority_queue_new(loop, 2, NULL);
    assert_int_equal(sq_queue_put_priority(q, P(10), 10, 1.0), 0);
    assert_int_equal(sq_queue_put_priority(q, P(20), 20, 1.0), 0);
    assert_true(sq_queue_full(q));
    /* Full: a put times out after its timeout and leaves nothing behind. */
    double t0 = sq_test_now();
    assert_int_equal(sq_queue_put_priority(q, P(99), 0, 0.05), -ETIMEDOUT);
    double took = sq_test_now() - t0;
    assert_true(took >= 0.045 && took < 2.0);
    assert_int_equal(sq_queue_size(q), 2);

    /* Two putters wait on the full queue; they are served in the order they came, whatever
     * their priorities, and each get lets one in. */
    pctx p1 = {q, 1, 1, 1}, p2 = {q, 2, 0, 1};
    sq_future *f1 = sq_spawn(loop, putter, &p1);
    settle();
    sq_future *f2 = sq_spawn(loop, putter, &p2);
    settle();
    assert_int_equal(p1.result, 1); /* still waiting */
    void *item;
    assert_int_equal(sq_queue_get(q, &item, 1.0), 0);
    assert_int_equal(I(item), 10);
    settle();
    assert_int_equal(p1.result, 0); /* the oldest putter moved in */
    assert_int_equal(p2.result, 1);
    assert_int_equal(sq_queue_get(q, &item, 1.0), 0);
    assert_int_equal(I(item), 1); /* priority 1 beats 20 */
    settle();
    assert_int_equal(p2.result, 0);
    assert_int_equal(sq_queue_get(q, &item, 1.0), 0);
    assert_int_equal(I(item), 2); /* priority 0 */
    assert_int_equal(sq_queue_get(q, &item, 1.0), 0);
    assert_int_equal(I(item), 20);
    sq_await(f1, NULL);
    sq_await(f2, NULL);

    /* Empty: a get times out; then waiting getters are served FIFO by direct hand-over. */
    t0 = sq_test_now();
    assert_int_equal(sq_queue_get(q, &item, 0.05), -ETIMEDOUT);
    assert_null(item);
    assert_true(sq_test_now() - t0 >= 0.045);
    pctx g1 = {q, 0, 0, 1}, g2 = {q, 0, 0, 1};
    sq_future *h1 = sq_spawn(loop, getter, &g1);
    settle();
    sq_future *h2 = sq_spawn(loop, getter, &g2);
    settle();
    assert_int_equal(sq_queue_put_priority_nowait(q, P(7), 100), 0);
    assert_int_equal(sq_queue_put_priority_nowait(q, P(8), -100), 0);
    sq_await(h1, NULL);
    sq_await(h2, NULL);
    assert_int_equal(g1.result, 0);
    assert_int_equal(g1.id, 7);
    assert_int_equal(g2.result, 0);
    assert_int_equal(g2.id, 8);

    /* join: four items were handed out by get; join waits for their task_done calls. */
    for (int i = 0; i < 6; i++) assert_int_equal(sq_queue_task_done(q), 0);
    assert_int_equal(sq_queue_task_done(q), -EINVAL);
    assert_int_equal(sq_queue_join(q, 0.5), 0);
    sq_queue_free(q);
    return NULL;
}

static void test_priority_blocking(void **state)
{
    sq_test_run_coro(loop, blocking_priority_coro, NULL, 20);
}

typedef struct worker_ctx {
    sq_queue *q;
    int got[16];
    int n;
} worker_ctx;

static void *lifo_worker(void *arg)
{
    worker_ctx *w = arg;
    for (;;) {
        void *item;
        if (sq_queue_get(w->q, &item, 5.0) < 0) break;
        if (I(item) < 0) {
            sq_queue_task_done(w->q);
            break;
        }
        sq_sleep(0.002);
        w->got[w->n++] = I(item);
        sq_queue_task_done(w->q);
    }
    return NULL;
}

static void *lifo_blocking_coro(void *arg)
{
    sq_queue *q = sq_lifo_queue_new(loop, 3);
    worker_ctx w = {.q = q};
    /* Fill before the worker starts: it then takes them newest first. */
    for (int i = 1; i <= 3; i++) assert_int_equal(sq_queue_put(q, P(i), 1.0), 0);
    assert_int_equal(sq_queue_put(q, P(4), 0.02), -ETIMEDOUT);
    sq_future *wf = sq_spawn(loop, lifo_worker, &w);
    /* This put waits for room, then goes on top of the stack. */
    assert_int_equal(sq_queue_put(q, P(4), 5.0), 0);
    double t0 = sq_test_now();
    assert_int_equal(sq_queue_join(q, 5.0), 0);
    assert_true(sq_test_now() - t0 < 5.0);
    assert_int_equal(w.n, 4);
    /* The worker took 3 at once (the newest), which made room for 4, then 4, 2, 1. */
    int want[] = {3, 4, 2, 1};
    for (int i = 0; i < 4; i++) assert_int_equal(w.got[i], want[i]);
    assert_int_equal(sq_queue_put(q, P(-1), 1.0), 0);
    sq_await(wf, NULL);
    assert_int_equal(sq_queue_join(q, 0), 0);
    sq_queue_free(q);
    return NULL;
}

static void test_lifo_blocking_join(void **state)
{
    sq_test_run_coro(loop, lifo_blocking_coro, NULL, 20);
}

/* Freeing a priority queue with waiters wakes them with -ECANCELED and frees the heap. */
static void *free_waiters_coro(void *arg)
{
    sq_queue *q = sq_priority_queue_new(loop, 1, NULL);
    assert_int_equal(sq_queue_put_priority_nowait(q, P(1), 1), 0);
    pctx p = {q, 2, 2, 1};
    sq_future *f = sq_spawn(loop, putter, &p);
    sq_queue *q2 = sq_lifo_queue_new(loop, 0);
    pctx g = {q2, 0, 0, 1};
    sq_future *h = sq_spawn(loop, getter, &g);
    settle();
    sq_queue_free(q);
    sq_queue_free(q2);
    sq_await(f, NULL);
    sq_await(h, NULL);
    assert_int_equal(p.result, -ECANCELED);
    assert_int_equal(g.result, -ECANCELED);
    return NULL;
}

static void test_free_with_waiters(void **state)
{
    sq_test_run_coro(loop, free_waiters_coro, NULL, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifo_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_cmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifo_blocking_join, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_waiters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
