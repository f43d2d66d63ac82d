/* timers: what a timer costs on the loop (a timing wheel, and a sorted run of the due ones).
 *
 *   schedule+fire:   N sq_call_later() with random delays up to 100 ms, then run the loop
 *                    until every one has fired; ns per timer (schedule and fire apart too),
 *                    cold (fresh handles) and warm (handles reused from the loop's pool).
 *   schedule+cancel: N sq_call_later() then sq_call_cancel() of each, in random order.
 *
 * Usage: timers [--quick | N]   (default N = 1,000,000; --quick: 200,000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <squall.h>

#include "clock.h"

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Minor page faults of this process so far: the cold round's first touches of fresh memory,
 * which a virtual machine makes expensive (each one exits to the hypervisor). */
static long minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

static long fired, target;
static void on_fire(void *arg)
{
    if (++fired == target) sq_loop_stop(arg);
}

int main(int argc, char **argv)
{
    long n = 1000000;
    if (argc > 1) n = strcmp(argv[1], "--quick") == 0 ? 200000 : atol(argv[1]);
    if (n <= 0) n = 1000000;
    sq_loop *loop = sq_loop_new(NULL);
    sq_call **calls = malloc(sizeof *calls * (size_t)n);
    double *delays = malloc(sizeof *delays * (size_t)n);
    long *order = malloc(sizeof *order * (size_t)n);
    if (!loop || !calls || !delays || !order) return 1;
    for (long i = 0; i < n; i++) delays[i] = (double)(rng() % 100001) / 1e6;

    /* schedule + fire: the deadlines are waited out with the clock stopped, so that the
     * figure is CPU time on the timers, not time spent idle until the last deadline.  Twice:
     * cold (every sq_call handle and wheel block is carved fresh from new slabs, page faults
     * included) and then warm (the handles and blocks come back from the loop's pools, as in
     * a server that has been running). */
    for (int round = 0; round < 2; round++) {
        fired = 0;
        target = n;
        long f0 = minor_faults();
        double t0 = now();
        for (long i = 0; i < n; i++) {
            if (!sq_call_later(loop, delays[i], on_fire, loop)) return 1;
        }
        double t1 = now();
        struct timespec idle = {0, 110 * 1000 * 1000};
        nanosleep(&idle, NULL);
        double t2 = now();
        sq_loop_run(loop);
        double t3 = now();
        if (fired != n) {
            fprintf(stderr, "timers: only %ld of %ld fired\n", fired, n);
            return 1;
        }
        long faults = minor_faults() - f0;
        printf("timers schedule+fire%s: %.0f ns per timer (schedule %.0f ns, fire %.0f ns; %ld "
               "timers with random delays of 0-100 ms; %ld page faults)\n",
               round ? " (warm)" : "", ((t1 - t0) + (t3 - t2)) * 1e9 / (double)n,
               (t1 - t0) * 1e9 / (double)n, (t3 - t2) * 1e9 / (double)n, n, faults);
    }
    double t0, t1;

    /* schedule + cancel (handles now come from the loop's pool, as in steady state) */
    for (long i = 0; i < n; i++) order[i] = i;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(rng() % (uint32_t)(i + 1));
        long t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    t0 = now();
    for (long i = 0; i < n; i++) calls[i] = sq_call_later(loop, delays[i], on_fire, loop);
    for (long i = 0; i < n; i++) sq_call_cancel(calls[order[i]]);
    t1 = now();
    printf("timers schedule+cancel: %.0f ns per timer (%ld timers, cancelled in random order)\n",
           (t1 - t0) * 1e9 / (double)n, n);
    /* and the common case: a short timeout armed and cancelled before anything else */
    t0 = now();
    for (long i = 0; i < n; i++) sq_call_cancel(sq_call_later(loop, 30.0, on_fire, loop));
    t1 = now();
    printf("timers schedule+cancel (one at a time): %.1f ns per timer\n",
           (t1 - t0) * 1e9 / (double)n);
    free(calls);
    free(delays);
    free(order);
    sq_loop_free(loop);
    return 0;
}
