/* The test harness survives a failed assertion inside a coroutine: cmocka's failure jumps
 * (longjmp) out of the coroutine's stack, and the tests after it in the same binary must
 * still run and pass.  The binary re-runs itself with --child, where a failing and a passing
 * test alternate, and checks cmocka's summary. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- the child's tests ----------------------------------------------------------------- */

static void *fails_after_sleep(void *arg)
{
    sq_sleep(0.01);
    assert_int_equal(1, 2); /* deliberately: leaves the coroutine by longjmp */
    return NULL;
}

static void *inner_fails(void *arg)
{
    sq_yield();
    fail_msg("deliberate failure two coroutines deep");
    return NULL;
}

static void *awaits_failing(void *arg)
{
    sq_await(sq_spawn(NULL, inner_fails, NULL), NULL);
    return NULL;
}

static void test_fails_in_coro(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, fails_after_sleep, NULL, 5.0);
    fail_msg("not reached");
}

static void test_fails_in_nested_coro(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(loop, awaits_failing, NULL);
    sq_loop_run_until(loop, f); /* a plain run, not through the harness */
    fail_msg("not reached");
}

static void *child_task(void *arg)
{
    assert_true(sq_in_coro());
    assert_int_equal(sq_sleep(0.01), 0);
    return (void *)((intptr_t)arg + 1);
}

static void *parent_task(void *arg)
{
    /* NULL: the current loop, which must be this test's, not the failed test's */
    sq_future *f = sq_spawn(NULL, child_task, arg);
    void *v = NULL;
    assert_int_equal(sq_await(f, &v), 0);
    return v;
}

static void test_passes_after(void **state)
{
    assert_false(sq_in_coro());
    sq_loop *loop = sq_loop_new(NULL);
    assert_ptr_equal(sq_loop_current(), loop);
    void *v = sq_test_run_coro(loop, parent_task, (void *)(intptr_t)41, 5.0);
    assert_int_equal((intptr_t)v, 42);
    assert_false(sq_in_coro());
    sq_loop_free(loop);
}

static int child_main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fails_in_coro),
        cmocka_unit_test(test_passes_after),
        cmocka_unit_test(test_fails_in_nested_coro),
        cmocka_unit_test(test_passes_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* --- the parent ------------------------------------------------------------------------- */

static void test_failure_in_coroutine_aborts_only_that_test(void **state)
{
    static char out[65536];
    double t0 = sq_test_now();
    /* the failed tests never reach their sq_loop_free: their loops leak by design */
    int status = sq_test_run_self("--child", true, true, out, sizeof out);
    print_message("child output:\n%s\n", out);
    assert_true(sq_test_now() - t0 < 60.0);
    assert_true(WIFEXITED(status)); /* no crash, no hang */
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_non_null(strstr(out, "[  FAILED  ] 2 test(s)"));
    assert_non_null(strstr(out, "[  PASSED  ] 2 test(s)"));
    assert_non_null(strstr(out, "[  FAILED  ] test_fails_in_coro"));
    assert_non_null(strstr(out, "[  FAILED  ] test_fails_in_nested_coro"));
    assert_non_null(strstr(out, "left by a non-local jump"));
    /* both passing runs come after a failure */
    const char *ok = strstr(out, "[       OK ] test_passes_after");
    assert_non_null(ok);
    assert_non_null(strstr(ok + 1, "[       OK ] test_passes_after"));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child_main();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_in_coroutine_aborts_only_that_test),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
