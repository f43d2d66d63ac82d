/* Runs examples/gather_sleep: three 1 s sleeps gathered finish in about one second. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static void test_gather_example_runs(void **state)
{
    const char *path = sq_test_build_path("examples/gather_sleep");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s'", path);
    double t0 = sq_test_now();
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    int status = pclose(p);
    double took = sq_test_now() - t0;
    print_message("%s(took %.2f s)\n", out, took);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(took >= 0.99);
    assert_true(took < 1.5);
    assert_non_null(strstr(out, "worker 1 -> 10\n"));
    assert_non_null(strstr(out, "worker 2 -> 20\n"));
    assert_non_null(strstr(out, "worker 3 -> 30\n"));
    double reported = 0;
    const char *d = strstr(out, "done in ");
    assert_non_null(d);
    assert_int_equal(sscanf(d, "done in %lf s", &reported), 1);
    assert_true(reported >= 0.99 && reported < 1.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_example_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
