/* sq_add_callback_threadsafe from several threads at once: every callback runs exactly once,
 * on the loop thread. */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>

#define THREADS    4
#define PER_THREAD 10000

typedef struct ts_state {
    sq_loop *loop;
    pthread_t loop_thread;
    unsigned char counts[THREADS][PER_THREAD]; /* touched only on the loop thread */
    long total;
    long wrong_thread;
    int timed_out;
} ts_state;

typedef struct call {
    ts_state *st;
    int thread, i;
} call;

typedef struct producer {
    ts_state *st;
    int thread;
    call *calls;
    int failures;
} producer;

static void on_loop(void *arg)
{
    call *c = arg;
    ts_state *st = c->st;
    if (!pthread_equal(pthread_self(), st->loop_thread)) st->wrong_thread++;
    if (st->counts[c->thread][c->i] < 255) st->counts[c->thread][c->i]++;
    if (++st->total == (long)THREADS * PER_THREAD) sq_loop_stop(st->loop);
}

static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        p->calls[i] = (call){p->st, p->thread, i};
        if (sq_add_callback_threadsafe(p->st->loop, on_loop, &p->calls[i]) < 0) p->failures++;
    }
    return NULL;
}

static void time_limit(void *arg)
{
    ts_state *st = arg;
    st->timed_out = 1;
    sq_loop_stop(st->loop);
}

static void test_threadsafe_from_four_threads(void **state)
{
    ts_state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    st->loop = sq_loop_new(NULL);
    st->loop_thread = pthread_self();
    producer prods[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        prods[t] = (producer){st, t, calloc(PER_THREAD, sizeof(call)), 0};
        assert_non_null(prods[t].calls);
    }
    sq_call *guard = sq_call_later(st->loop, 30.0, time_limit, st);
    double t0 = sq_test_now();
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_create(&threads[t], NULL, produce, &prods[t]), 0);
    }
    sq_loop_run(st->loop);
    double took = sq_test_now() - t0;
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    assert_false(st->timed_out);
    sq_call_cancel(guard);

    print_message("%d threadsafe callbacks delivered in %.3f s\n", THREADS * PER_THREAD, took);
    assert_int_equal(st->total, (long)THREADS * PER_THREAD);
    assert_int_equal(st->wrong_thread, 0);
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(prods[t].failures, 0);
        for (int i = 0; i < PER_THREAD; i++) {
            if (st->counts[t][i] != 1)
                fail_msg("callback (%d, %d) ran %d times", t, i, st->counts[t][i]);
        }
    }
    /* Nothing further is pending: one more non-blocking iteration delivers nothing. */
    sq_loop_run_once(st->loop, false);
    assert_int_equal(st->total, (long)THREADS * PER_THREAD);

    sq_loop_free(st->loop);
    for (int t = 0; t < THREADS; t++) free(prods[t].calls);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threadsafe_from_four_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
