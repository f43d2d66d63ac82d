/* examples/demo (what `make run` starts): every route answers as its page says, and SIGTERM
 * stops it cleanly. */
#include "webtest.h"

#include <signal.h>
#include <sys/wait.h>

static pid_t demo_pid;
static int demo_port;

static int start_demo(void **state)
{
    const char *exe = sq_test_build_path("examples/demo");
    const char *src = getenv("SQ_SOURCE_DIR");
    int pfd[2];
    if (pipe(pfd) < 0) return -1;
    demo_pid = fork();
    if (demo_pid < 0) return -1;
    if (demo_pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl(exe, exe, "0", src ? src : ".", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[128] = "";
    if (!fgets(line, sizeof line, f) || sscanf(line, "listening on port %d", &demo_port) != 1) {
        fprintf(stderr, "demo said: %s\n", line);
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static int stop_demo(void **state)
{
    if (demo_pid <= 0) return 0;
    kill(demo_pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 100; i++) {
        if (waitpid(demo_pid, &st, WNOHANG) == demo_pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
        usleep(50 * 1000);
    }
    kill(demo_pid, SIGKILL);
    waitpid(demo_pid, &st, 0);
    return -1;
}

static void get(const char *raw, wt_resp *r)
{
    wt_exchange(demo_port, raw, strlen(raw), r);
}

static void test_routes(void **state)
{
    wt_resp r;
    get(WT_GET("/"), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Hello, world"));
    assert_non_null(strstr(r.body, "href=\"/user/42\"")); /* built with sq_reverse_url */
    free(r.raw), free(r.body);

    get(WT_GET("/json"), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"framework\":\"squall\""));
    free(r.raw), free(r.body);

    get(WT_GET("/user/7"), &r);
    assert_string_equal(r.body, "{\"id\":\"7\"}");
    free(r.raw), free(r.body);

    get(WT_GET("/offload?n=20"), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "fib(20) = 6765"));
    free(r.raw), free(r.body);

    get(WT_GET("/offload?n=-1"), &r);
    assert_int_equal(r.status, 400);
    free(r.raw), free(r.body);

    get(WT_GET("/static/hello.txt"), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "static file"));
    free(r.raw), free(r.body);

    get(WT_GET("/static/style.css"), &r);
    assert_int_equal(r.status, 200);
    free(r.raw), free(r.body);

    get(WT_GET("/form"), &r);
    assert_non_null(strstr(r.body, "multipart/form-data"));
    free(r.raw), free(r.body);

    const char *mp = "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbob\r\n"
                     "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n12345678\r\n--b--\r\n";
    char req[1024];
    snprintf(req, sizeof req,
             "POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: "
             "multipart/form-data; boundary=b\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(mp), mp);
    get(req, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "name: bob"));
    assert_non_null(strstr(r.body, "x.bin (8 bytes"));
    free(r.raw), free(r.body);
}

static void test_cookie_counter(void **state)
{
    wt_resp r;
    get(WT_GET("/cookie"), &r);
    assert_non_null(strstr(r.body, "here 1 time "));
    char cookie[512];
    assert_true(wt_header(&r, "Set-Cookie", cookie, sizeof cookie));
    cookie[strcspn(cookie, ";")] = 0;
    free(r.raw), free(r.body);
    char req[1024];
    snprintf(req, sizeof req,
             "GET /cookie HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: %s\r\n\r\n", cookie);
    get(req, &r);
    assert_non_null(strstr(r.body, "here 2 times"));
    free(r.raw), free(r.body);
}

static void test_async_vs_sync(void **state)
{
    /* /async: 1 s, and a request sent meanwhile is answered at once. */
    double t0 = sq_test_now();
    int fd = wt_connect(demo_port);
    assert_true(fd >= 0);
    const char *req = WT_GET("/async");
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    usleep(100 * 1000);
    wt_resp r;
    double t1 = sq_test_now();
    get(WT_GET("/json"), &r);
    double fast = sq_test_now() - t1;
    assert_int_equal(r.status, 200);
    free(r.raw), free(r.body);
    char buf[4096];
    ssize_t n, total = 0;
    while ((n = recv(fd, buf + total, sizeof buf - 1 - (size_t)total, 0)) > 0) total += n;
    buf[total] = 0;
    close(fd);
    double took = sq_test_now() - t0;
    assert_non_null(strstr(buf, "without blocking"));
    assert_true(took >= 0.95);
    assert_true(fast < 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_cookie_counter),
        cmocka_unit_test(test_async_vs_sync),
    };
    return cmocka_run_group_tests(tests, start_demo, stop_demo);
}
