/* fetch: download several URLs at once with squall's HTTP client and print, for each, its
 * status, size and time.
 *
 *   $ build/release/examples/fetch http://127.0.0.1:8888/async http://127.0.0.1:8888/json
 *   200      34 B   1.003 s  http://127.0.0.1:8888/async
 *   200     122 B   0.001 s  http://127.0.0.1:8888/json
 *   2 URLs in 1.004 s
 *
 * Every URL is fetched concurrently (up to 10 at a time, the client's max_clients), so the
 * whole run takes about as long as the slowest one.  Exit status 1 if any fetch failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <squall.h>

typedef struct job {
    int argc;
    char **argv;
    int failed;
} job;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *main_coro(void *arg)
{
    job *j = arg;
    size_t n = (size_t)j->argc;
    sq_future **fs = calloc(n, sizeof *fs);
    void **values = calloc(n, sizeof *values);
    int64_t *statuses = calloc(n, sizeof *statuses);
    if (!fs || !values || !statuses) {
        j->failed = (int)n;
        goto out;
    }
    /* Start them all, then wait for all: the total is the slowest, not the sum. */
    for (size_t i = 0; i < n; i++) fs[i] = sq_fetch(j->argv[i], NULL);
    sq_gather(fs, n, values, statuses);
    for (size_t i = 0; i < n; i++) {
        sq_fetch_response *r = values[i]; /* also set for HTTP errors (SQ_EHTTP) */
        if (r)
            printf("%3d %8zu B %7.3f s  %s%s\n", r->code, r->body_len, r->request_time, j->argv[i],
                   r->redirects ? " (redirected)" : "");
        else
            printf("ERR %-10s %7s  %s: %s\n", "", "", j->argv[i], sq_strerror((int)statuses[i]));
        if (statuses[i] < 0) j->failed++;
        sq_fetch_response_free(r);
    }
out:
    free(fs);
    free(values);
    free(statuses);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL...\n", argv[0]);
        return 2;
    }
    sq_loop *loop = sq_loop_default();
    job j = {.argc = argc - 1, .argv = argv + 1};
    double t0 = now();
    sq_future *f = sq_spawn(loop, main_coro, &j);
    if (!f || sq_loop_run_until(loop, f) < 0) j.failed = 1;
    sq_future_release(f);
    printf("%d URL%s in %.3f s\n", j.argc, j.argc == 1 ? "" : "s", now() - t0);
    sq_http_client_free(sq_http_client_default(loop));
    sq_loop_free(loop);
    return j.failed ? 1 : 0;
}
