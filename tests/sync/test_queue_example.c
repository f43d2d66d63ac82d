/* Runs examples/queue_workers with N=20 and checks its output: every item produced once and
 * consumed once, all three workers busy, and "all 20 items done" as the last line. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define N 20

static void test_queue_workers_output(void **state)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' %d", sq_test_build_path("examples/queue_workers"), N);
    double t0 = sq_test_now();
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int produced[N] = {0}, consumed[N] = {0}, by_worker[3] = {0};
    int lines = 0, done_line = -1;
    char line[256];
    while (fgets(line, sizeof line, p)) {
        int k, i;
        lines++;
        if (sscanf(line, "produced item %d", &i) == 1) {
            assert_true(i >= 0 && i < N);
            produced[i]++;
        } else if (sscanf(line, "worker %d consumed item %d", &k, &i) == 2) {
            assert_true(i >= 0 && i < N);
            assert_true(k >= 0 && k < 3);
            assert_true(done_line < 0);
            consumed[i]++;
            by_worker[k]++;
        } else if (strcmp(line, "all 20 items done\n") == 0) {
            done_line = lines;
        } else {
            fail_msg("unexpected output line: %s", line);
        }
    }
    int status = pclose(p);
    double took = sq_test_now() - t0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(done_line, lines); /* the last line */
    assert_int_equal(lines, 2 * N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(produced[i], 1);
        assert_int_equal(consumed[i], 1);
    }
    for (int k = 0; k < 3; k++) assert_true(by_worker[k] > 0);
    /* 20 items of 10 ms over 3 workers: about 70 ms, not 200 ms of serial work. */
    print_message("queue_workers %d took %.3f s\n", N, took);
    assert_true(took < 5.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_workers_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
