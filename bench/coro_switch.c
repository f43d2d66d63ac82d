/* coro_switch: what a coroutine switch costs.
 *
 *   raw:   sq_coro_resume() into a coroutine that sq_coro_suspend()s straight back, from the
 *          plain thread stack: two switches per round trip (target <= 20 ns per switch).
 *   yield: two coroutines ping-ponging with sq_yield() through the loop's ready queue: the
 *          whole path a woken coroutine takes (queue, loop iteration, switch in and out).
 *
 * Usage: coro_switch [--quick | SECONDS]   (default 1 s per measurement)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall.h>

#include "clock.h"

static double parse_seconds(int argc, char **argv)
{
    if (argc < 2) return 1.0;
    if (strcmp(argv[1], "--quick") == 0) return 0.2;
    double s = atof(argv[1]);
    return s > 0 ? s : 1.0;
}

/* --- raw resume/suspend ----------------------------------------------------------------- */

static volatile int raw_stop;

static void *bouncer(void *arg)
{
    while (!raw_stop) sq_coro_suspend();
    return NULL;
}

static double bench_raw(sq_loop *loop, double seconds, long *trips_out)
{
    raw_stop = 0;
    sq_coro *c = sq_coro_create(loop, bouncer, NULL);
    if (!c) return -1;
    sq_coro_resume(c); /* first entry: boots the coroutine */
    long trips = 0;
    const long chunk = 100000;
    double t0 = now(), t;
    do {
        for (long i = 0; i < chunk; i++) sq_coro_resume(c);
        trips += chunk;
    } while ((t = now()) - t0 < seconds);
    raw_stop = 1;
    while (sq_coro_resume(c)) {
    }
    *trips_out = trips;
    return (t - t0) * 1e9 / (2.0 * (double)trips);
}

/* --- sq_yield ping-pong through the loop -------------------------------------------------- */

static long yield_target;

static void *ponger(void *arg)
{
    long *count = arg;
    while (*count < yield_target) {
        (*count)++;
        sq_yield();
    }
    return NULL;
}

static double bench_yield(sq_loop *loop, long n, long *total)
{
    long a = 0, b = 0;
    yield_target = n;
    double t0 = now();
    sq_future *fa = sq_spawn(loop, ponger, &a);
    sq_future *fb = sq_spawn(loop, ponger, &b);
    sq_loop_run_until(loop, fa);
    sq_loop_run_until(loop, fb);
    double t = now() - t0;
    sq_future_release(fa);
    sq_future_release(fb);
    *total = a + b;
    return t * 1e9 / (double)(a + b);
}

int main(int argc, char **argv)
{
    double seconds = parse_seconds(argc, argv);
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) return 1;
    long trips = 0;
    bench_raw(loop, seconds / 10, &trips); /* warm up */
    double raw = bench_raw(loop, seconds, &trips);
    printf("coro_switch raw: %.1f ns per switch (%ld resume/suspend round trips, target <= 20 ns)"
           " %s\n",
           raw, trips, raw <= 20 ? "OK" : "OVER TARGET");

    /* Calibrate the yield run to about `seconds`. */
    long total = 0;
    double per = bench_yield(loop, 10000, &total);
    long n = (long)(seconds * 1e9 / per / 2);
    if (n < 1000) n = 1000;
    per = bench_yield(loop, n, &total);
    printf("coro_switch yield: %.1f ns per sq_yield (2 coroutines ping-ponging through the loop, "
           "%ld yields)\n",
           per, total);
    sq_loop_free(loop);
    return 0;
}
