#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double sq_test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void limit_hit(void *arg)
{
    *(int *)arg = 1;
    sq_loop_stop(sq_loop_current());
}

void *sq_test_run_coro(sq_loop *loop, sq_task_fn fn, void *arg, double limit)
{
    sq_future *f = sq_spawn(loop, fn, arg);
    assert_non_null(f);
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, limit, limit_hit, &timed_out);
    sq_loop_run_until(loop, f);
    if (!timed_out) sq_call_cancel(guard);
    if (timed_out) fail_msg("coroutine did not finish within %.1f s", limit);
    void *v = sq_future_take_value(f);
    sq_future_release(f);
    return v;
}

long sq_test_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

const char *sq_test_build_path(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("SQ_BUILD_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : ".", rel);
    return buf;
}

size_t sq_test_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, rss = 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}
