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

#include "client_load.h"
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
    client_args args;
    int bad = client_args_parse(argc, argv, &args);
    if (bad) return bad;
    url = args.url;
    int conc = args.conc;
    sq_loop *loop = sq_loop_default();
    client = sq_http_client_new(loop, &(sq_http_client_settings){.max_clients = (size_t)conc});
    if (!client) return 1;
    double c0 = cpu_seconds(), t0 = now();
    deadline = t0 + args.secs;
    sq_future *f = sq_spawn(loop, main_coro, &conc);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    double dt = now() - t0, cpu = cpu_seconds() - c0;
    client_report("squall", requests, errors, dt, cpu);
    sq_http_client_free(client);
    sq_loop_free(loop);
    return errors && !requests ? 1 : 0;
}
