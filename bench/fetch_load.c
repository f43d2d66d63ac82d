/* fetch_load: squall's HTTP client as a load generator — CONCURRENCY coroutines, each
 * fetching URL again and again for SECONDS on one client with max_clients = CONCURRENCY
 * (keep-alive connections reused).  Prints one line bench/fetch_compare.sh parses:
 *
 *   squall: requests 123456 errors 0 seconds 10.00 rps 12345.6 cpu_us_per_request 45.67
 *
 * Usage: fetch_load URL [SECONDS=10] [CONCURRENCY=100]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <squall.h>

#include "clock.h"

static const char *url;
static double deadline;
static long requests, errors;
static sq_http_client *client;

static void *worker(void *arg)
{
    while (now() < deadline) {
        sq_fetch_response *r = NULL;
        int64_t st = sq_await(sq_http_client_fetch(client, url, NULL), (void **)&r);
        if (st == 0 && r->code == 200)
            requests++;
        else
            errors++;
        sq_fetch_response_free(r);
    }
    return NULL;
}

static void *main_coro(void *arg)
{
    int n = *(int *)arg;
    sq_future **fs = calloc((size_t)n, sizeof *fs);
    if (!fs) return NULL;
    for (int i = 0; i < n; i++) fs[i] = sq_spawn(NULL, worker, NULL);
    sq_gather(fs, (size_t)n, NULL, NULL);
    free(fs);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [SECONDS] [CONCURRENCY]\n", argv[0]);
        return 2;
    }
    url = argv[1];
    double secs = argc > 2 ? atof(argv[2]) : 10;
    int conc = argc > 3 ? atoi(argv[3]) : 100;
    if (conc < 1) conc = 1;
    sq_loop *loop = sq_loop_default();
    client = sq_http_client_new(loop, &(sq_http_client_settings){.max_clients = (size_t)conc});
    if (!client) return 1;
    double c0 = cpu_seconds(), t0 = now();
    deadline = t0 + secs;
    sq_future *f = sq_spawn(loop, main_coro, &conc);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    double dt = now() - t0, cpu = cpu_seconds() - c0;
    printf("squall: requests %ld errors %ld seconds %.2f rps %.1f cpu_us_per_request %.2f\n",
           requests, errors, dt, (double)requests / dt,
           requests ? cpu / (double)requests * 1e6 : 0.0);
    sq_http_client_free(client);
    sq_loop_free(loop);
    return errors && !requests ? 1 : 0;
}
