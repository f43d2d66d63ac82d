/* coro_rss: memory cost of a parked coroutine.
 *
 * Starts N coroutines (default 10,000) that all sleep at once in sq_sleep(), reports the
 * growth of the resident set per coroutine while they are parked (target <= 16 KiB), then
 * lets them wake and checks that every one completed.
 *
 * Usage: coro_rss [--quick | N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <squall.h>

#include "clock.h"

static size_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &pages) != 2) pages = 0;
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static long n, started, completed;
static size_t rss_parked;

static void *sleeper(void *arg)
{
    started++;
    if (sq_sleep(0.5) == 0) completed++;
    return NULL;
}

static void measure(void *arg)
{
    rss_parked = rss();
}

static void check_done(void *arg)
{
    if (completed == n) sq_loop_stop(arg);
}

static void stop(void *arg)
{
    sq_loop_stop(arg);
}

int main(int argc, char **argv)
{
    n = 10000;
    if (argc > 1 && strcmp(argv[1], "--quick") != 0) n = atol(argv[1]);
    if (n <= 0) n = 10000;
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) return 1;
    size_t rss0 = rss();
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (sq_go(loop, sleeper, NULL) < 0) {
            fprintf(stderr, "coro_rss: sq_go failed after %ld coroutines\n", i);
            return 1;
        }
    }
    /* The first loop pass starts them all; they are parked long before 0.2 s. */
    sq_call_later(loop, 0.2, measure, NULL);
    sq_periodic p;
    sq_periodic_init(loop, &p, 0.01, check_done, loop);
    sq_periodic_start(&p);
    sq_call *guard = sq_call_later(loop, 30, stop, loop);
    sq_loop_run(loop);
    sq_periodic_stop(&p);
    sq_call_cancel(guard);
    double took = now() - t0;
    double per = ((double)rss_parked - (double)rss0) / (double)n / 1024.0;
    printf("coro_rss: %.1f KiB RSS per parked coroutine (%ld in sq_sleep, %.1f MiB total, "
           "stack %zu KiB each, target <= 16 KiB) %s\n",
           per, n, ((double)rss_parked - (double)rss0) / 1048576.0, sq_coro_get_stack_size() / 1024,
           per <= 16 ? "OK" : "OVER TARGET");
    printf("coro_rss: %ld of %ld woke and completed in %.2f s\n", completed, n, took);
    sq_loop_free(loop);
    return started == n && completed == n ? 0 : 1;
}
