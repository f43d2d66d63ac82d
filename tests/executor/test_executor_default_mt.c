/* sq_executor_set_default: sq_run_in_executor submits to the pool set, the previous one is
 * handed back to the caller (the built-in one included), NULL restores a built-in pool. */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>

static void *whoami(void *arg)
{
    pthread_t *out = arg;
    *out = pthread_self();
    return arg;
}

/* A pool of one thread: we learn its thread id by submitting to it directly. */
static pthread_t pool_thread(sq_loop *loop, sq_executor *ex)
{
    pthread_t t;
    sq_future *f = sq_executor_submit(ex, loop, whoami, &t);
    sq_loop_run_until(loop, f);
    assert_true(sq_future_done(f));
    sq_future_release(f);
    return t;
}

static void test_set_default(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_loop_make_current(loop);

    /* The built-in pool exists once asked for. */
    sq_executor *builtin = sq_executor_default();
    assert_non_null(builtin);

    sq_executor *mine = sq_executor_new(1);
    assert_non_null(mine);
    pthread_t mine_thread = pool_thread(loop, mine);

    /* Swap: the old default comes back to us. */
    assert_ptr_equal(sq_executor_set_default(mine), builtin);
    assert_ptr_equal(sq_executor_default(), mine);
    for (int i = 0; i < 3; i++) {
        pthread_t t;
        sq_future *f = sq_run_in_executor(whoami, &t);
        assert_non_null(f);
        sq_loop_run_until(loop, f);
        assert_int_equal(sq_future_status(f), 0);
        assert_ptr_equal(sq_future_value(f), &t);
        sq_future_release(f);
        assert_false(pthread_equal(t, pthread_self()));
        assert_true(pthread_equal(t, mine_thread)); /* the one thread of our pool */
    }
    /* We own the replaced built-in pool now: free it. */
    sq_executor_free(builtin);

    /* NULL: back to a fresh built-in pool on next use; ours is returned, still ours. */
    assert_ptr_equal(sq_executor_set_default(NULL), mine);
    sq_executor *again = sq_executor_default();
    assert_non_null(again);
    assert_ptr_not_equal(again, mine);
    pthread_t t;
    sq_future *f = sq_run_in_executor(whoami, &t);
    sq_loop_run_until(loop, f);
    assert_int_equal(sq_future_status(f), 0);
    sq_future_release(f);
    assert_false(pthread_equal(t, mine_thread));
    sq_executor_free(mine);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
