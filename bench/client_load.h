/* What the HTTP client load programs (bench/floor_client.c, bench/fetch_load.c,
 * bench/fetch_curl.c) share: their arguments, URL [SECONDS=10] [CONCURRENCY=100], and the
 * line bench/fetch_compare.sh parses from each:
 *
 *   NAME: requests 123456 errors 0 seconds 10.00 rps 12345.6 cpu_us_per_request 45.67
 */
#ifndef SQ_BENCH_CLIENT_LOAD_H
#define SQ_BENCH_CLIENT_LOAD_H

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *url;
    double secs;
    int conc;
} client_args;

/* 0, or the exit status (2) once the usage is said. */
static inline int client_args_parse(int argc, char **argv, client_args *a)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [SECONDS] [CONCURRENCY]\n", argv[0]);
        return 2;
    }
    a->url = argv[1];
    a->secs = argc > 2 ? atof(argv[2]) : 10;
    a->conc = argc > 3 ? atoi(argv[3]) : 100;
    if (a->conc < 1) a->conc = 1;
    if (!(a->secs > 0)) {
        fprintf(stderr, "%s: SECONDS must be positive\n", argv[0]);
        return 2;
    }
    return 0;
}

static inline void client_report(const char *name, long requests, long errors, double seconds,
                                 double cpu_seconds)
{
    printf("%s: requests %ld errors %ld seconds %.2f rps %.1f cpu_us_per_request %.2f\n", name,
           requests, errors, seconds, seconds > 0 ? (double)requests / seconds : 0.0,
           requests ? cpu_seconds / (double)requests * 1e6 : 0.0);
}

#endif
