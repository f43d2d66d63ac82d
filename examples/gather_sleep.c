/* gather_sleep: three coroutines each sleep one second, gathered from a main coroutine.
 * They sleep at the same time, so the whole thing takes one second, not three.
 *
 *   $ build/release/examples/gather_sleep
 *   worker 1 -> 10
 *   worker 2 -> 20
 *   worker 3 -> 30
 *   done in 1.00 s
 */
#include <stdio.h>
#include <time.h>

#include <squall.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A worker: sleeps without blocking the loop, then returns its result. */
static void *worker(void *arg)
{
    intptr_t id = (intptr_t)arg;
    int r = sq_sleep(1.0);
    if (r < 0) return NULL;
    return (void *)(id * 10);
}

static void *main_coro(void *arg)
{
    sq_future *fs[3];
    void *values[3];
    int64_t statuses[3];
    for (intptr_t i = 0; i < 3; i++) fs[i] = sq_spawn(NULL, worker, (void *)(i + 1));
    /* sq_gather consumes the three futures and waits for all of them. */
    int r = sq_gather(fs, 3, values, statuses);
    for (int i = 0; i < 3; i++) {
        if (statuses[i] < 0)
            printf("worker %d failed: %s\n", i + 1, sq_strerror((int)statuses[i]));
        else
            printf("worker %d -> %ld\n", i + 1, (long)(intptr_t)values[i]);
    }
    *(int *)arg = r;
    return NULL;
}

int main(void)
{
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) {
        perror("sq_loop_new");
        return 1;
    }
    int r = -1;
    double t0 = now();
    sq_future *f = sq_spawn(loop, main_coro, &r);
    if (!f || sq_loop_run_until(loop, f) < 0) r = -1;
    sq_future_release(f);
    sq_loop_free(loop);
    printf("done in %.2f s\n", now() - t0);
    return r == 0 ? 0 : 1;
}
