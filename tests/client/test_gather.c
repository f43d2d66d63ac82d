/* The demo's /gather route: three concurrent fetches of its own 1 s /async route answer in
 * about 1 s (the longest), not 3 s (the sum).  Runs $SQ_BUILD_DIR/examples/demo on an
 * ephemeral port and times one GET with the blocking client. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "testutil.h"

static void test_gather(void **state)
{
    const char *demo = sq_test_build_path("examples/demo");
    if (access(demo, X_OK) != 0) skip();
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(demo, "demo", "0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256] = "";
    int port = 0;
    /* The demo prints "listening on port N" once it listens (bounded by the pipe closing). */
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "listening on port %d", &port) == 1) break;
    assert_true(port > 0);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/gather", port);
    sq_fetch_response *r = NULL;
    double t0 = sq_test_now();
    int rc = sq_fetch_sync(url, &(sq_fetch_request){.request_timeout = 10}, &r);
    double dt = sq_test_now() - t0;
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    fclose(f);

    assert_int_equal(rc, 0);
    assert_int_equal(r->code, 200);
    print_message("/gather answered in %.3f s: %.*s\n", dt, (int)r->body_len, r->body);
    assert_true(dt >= 0.95);
    assert_true(dt < 1.5);
    json_error_t err;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &err);
    assert_non_null(doc);
    json_t *results = json_object_get(doc, "results");
    assert_int_equal(json_array_size(results), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_array_get(results, i);
        assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
        assert_non_null(strstr(json_string_value(json_object_get(o, "body")), "slept 1 s"));
    }
    double elapsed = json_real_value(json_object_get(doc, "elapsed"));
    assert_true(elapsed >= 0.95 && elapsed < 1.5);
    json_decref(doc);
    sq_fetch_response_free(r);
    /* The demo shut down cleanly on SIGTERM (and, under ASan, without leaks). */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* examples/fetch against the demo: one line per URL (fetched concurrently), an error line
 * for an unresolvable host, exit status 1 because of it. */
static void test_fetch_example(void **state)
{
    char demo[4096], fetch[4096]; /* sq_test_build_path's buffer is static */
    snprintf(demo, sizeof demo, "%s", sq_test_build_path("examples/demo"));
    snprintf(fetch, sizeof fetch, "%s", sq_test_build_path("examples/fetch"));
    if (access(demo, X_OK) != 0 || access(fetch, X_OK) != 0) skip();
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(demo, "demo", "0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256] = "";
    int port = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "listening on port %d", &port) == 1) break;
    assert_true(port > 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' http://127.0.0.1:%d/async http://127.0.0.1:%d/json "
             "http://127.0.0.1:%d/async http://nonexistent.invalid/ 2>&1",
             fetch, port, port, port);
    double t0 = sq_test_now();
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int st = pclose(p);
    double dt = sq_test_now() - t0;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    fclose(f);
    print_message("%s", buf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char expect[128];
    snprintf(expect, sizeof expect, "200       34 B");
    assert_non_null(strstr(buf, expect));
    assert_non_null(strstr(buf, "/json"));
    assert_non_null(strstr(buf, "nonexistent.invalid/: host name could not be resolved"));
    assert_non_null(strstr(buf, "4 URLs in"));
    assert_true(dt < 1.9); /* the two 1 s fetches ran at the same time */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_gather),
                                       cmocka_unit_test(test_fetch_example)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
