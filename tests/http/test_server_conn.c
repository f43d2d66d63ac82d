/* The HTTP/1.1 server, connections: concurrency of suspended handlers, timeouts,
 * max_connections, xheaders, the access log, graceful shutdown, examples/hello. */
#include "server_util.h"

#include <signal.h>

static void sleep_handler(sq_http_request *req, void *arg)
{
    if (req->path.len >= 6 && !memcmp(req->path.ptr, "/sleep", 6))
        sq_sleep(atof(req->path.ptr + 7));
    char buf[160];
    int n = snprintf(buf, sizeof buf, "%s %s", req->remote_ip, req->protocol);
    sq_http_write(req, buf, (size_t)n);
}

/* --- 100 concurrent requests to a handler sleeping 1 s ------------------------------------- */

static void concurrent_client(harness *h)
{
    enum { N = 100 };
    static cl cs[N];
    double t0 = sq_test_now();
    for (int i = 0; i < N; i++) {
        CHECK(h, cl_open(&cs[i], h->port) == 0);
        CHECK(h, cl_sends(&cs[i], "GET /sleep/1.0 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        resp r;
        if (cl_response(&cs[i], &r, false) == 0 && r.status == 200) ok++;
        resp_free(&r);
        cl_close(&cs[i]);
    }
    double dt = sq_test_now() - t0;
    CHECK(h, ok == N);
    CHECK(h, dt >= 0.9 && dt < 3.0);
}

static void test_concurrent_sleepers(void **state)
{
    sq_raise_fd_limit();
    run_with_client(NULL, sleep_handler, NULL, concurrent_client, NULL, 30);
}

/* --- a suspended handler holds up only its own connection's pipeline ---------------------- */

static void order_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c,
                      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /sleep/0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    for (int i = 0; i < 4; i++) {
        CHECK(h, cl_response(&c, &r, false) == 0);
        CHECK(h, r.status == 200 && !strcmp(r.body, "127.0.0.1 http"));
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_pipeline_with_suspension(void **state)
{
    run_with_client(NULL, sleep_handler, NULL, order_client, NULL, 30);
}

/* --- timeouts ------------------------------------------------------------------------------ */

static void timeout_client(harness *h)
{
    cl c;
    resp r;
    /* a partial head: 408 after header_timeout */
    CHECK(h, cl_open(&c, h->port) == 0);
    double t0 = sq_test_now();
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost:") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 408);
    CHECK(h, sq_test_now() - t0 >= 0.25);
    CHECK(h, cl_eof(&c));
    resp_free(&r);
    cl_close(&c);
    /* idle keep-alive: closed silently */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    resp_free(&r);
    t0 = sq_test_now();
    CHECK(h, cl_eof(&c) && c.len == 0);
    double dt = sq_test_now() - t0;
    CHECK(h, dt >= 0.3 && dt < 5);
    cl_close(&c);
    /* body stalls: the connection is closed */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab") == 0);
    CHECK(h, cl_eof(&c));
    cl_close(&c);
    /* a silent new connection is closed too */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_eof(&c) && c.len == 0);
    cl_close(&c);
    for (int i = 0; i < 200 && sq_http_server_connections(h->srv) != 0; i++) usleep(10000);
    CHECK(h, sq_http_server_connections(h->srv) == 0);
}

static void body_reader(sq_http_request *req, void *arg)
{
    const char *d;
    ssize_t n = sq_http_read_body(req, &d);
    if (n >= 0) sq_http_write(req, d, (size_t)n);
}

static void test_timeouts(void **state)
{
    sq_http_settings s = {.header_timeout = 0.3, .idle_timeout = 0.4, .body_timeout = 0.3};
    run_with_client(&s, body_reader, NULL, timeout_client, NULL, 30);
}

/* --- max_connections ------------------------------------------------------------------------ */

static void maxconn_client(harness *h)
{
    cl a, b, c;
    resp r;
    CHECK(h, cl_open(&a, h->port) == 0);
    CHECK(h, cl_open(&b, h->port) == 0);
    CHECK(h, cl_sends(&a, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&a, &r, false) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(h, cl_sends(&b, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&b, &r, false) == 0 && r.status == 200);
    resp_free(&r);
    /* the third connects (the kernel's backlog) but is not served yet */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    struct timeval tv = {0, 300000};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(h, cl_fill(&c) < 0 && errno == EAGAIN);
    CHECK(h, sq_http_server_connections(h->srv) == 2);
    tv.tv_sec = 10;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cl_close(&a);
    CHECK(h, cl_response(&c, &r, false) == 0 && r.status == 200);
    resp_free(&r);
    cl_close(&b);
    cl_close(&c);
}

static void test_max_connections(void **state)
{
    sq_http_settings s = {.max_connections = 2};
    run_with_client(&s, sleep_handler, NULL, maxconn_client, NULL, 30);
}

/* --- xheaders -------------------------------------------------------------------------------- */

static void xheaders_client(harness *h)
{
    static const struct {
        const char *hdrs, *want;
    } cases[] = {
        {"X-Real-Ip: 10.0.0.1\r\n", "10.0.0.1 http"},
        {"X-Forwarded-For: 1.2.3.4, 5.6.7.8\r\n", "5.6.7.8 http"},
        {"X-Forwarded-For: 1.2.3.4\r\nX-Real-Ip: 2001:db8::1\r\n", "2001:db8::1 http"},
        {"X-Real-Ip: not-an-ip\r\n", "127.0.0.1 http"},
        {"X-Forwarded-Proto: https\r\n", "127.0.0.1 https"},
        {"X-Forwarded-Proto: gopher\r\n", "127.0.0.1 http"},
        {"X-Scheme: https\r\n", "127.0.0.1 https"},
    };
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[256];
        resp r;
        snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n", cases[i].hdrs);
        CHECK(h, cl_sends(&c, req) == 0);
        CHECK(h, cl_response(&c, &r, false) == 0);
        if (strcmp(r.body, cases[i].want) && !h->failures++)
            snprintf(h->failmsg, sizeof h->failmsg, "case %zu: '%s'", i, r.body);
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_xheaders(void **state)
{
    sq_http_settings s = {.xheaders = true};
    run_with_client(&s, sleep_handler, NULL, xheaders_client, NULL, 30);
}

/* --- access log --------------------------------------------------------------------------------
 */

typedef struct logbuf {
    char lines[8][256];
    int levels[8];
    int n;
} logbuf;

static void capture(int level, const char *msg, void *arg)
{
    logbuf *lb = arg;
    if (lb->n < 8) {
        snprintf(lb->lines[lb->n], sizeof lb->lines[0], "%s", msg);
        lb->levels[lb->n++] = level;
    }
}

static void status_handler(sq_http_request *req, void *arg)
{
    sq_http_set_status(req, atoi(req->path.ptr + 1), NULL);
}

static void log_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h,
          cl_sends(&c, "GET /200?q=1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /404 HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: 0\r\n\r\nGET /503 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(h, cl_response(&c, &r, false) == 0);
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_access_log(void **state)
{
    logbuf lb = {0};
    sq_log_set_handler(capture, &lb);
    sq_http_settings s = {.access_log = true};
    run_with_client(&s, status_handler, NULL, log_client, NULL, 30);
    sq_log_set_handler(NULL, NULL);
    assert_int_equal(lb.n, 3);
    double ms;
    char tail[8];
    assert_int_equal(sscanf(lb.lines[0], "200 GET /200?q=1 (127.0.0.1) %lfm%1s", &ms, tail), 2);
    assert_int_equal(lb.levels[0], SQ_LOG_INFO);
    assert_non_null(strstr(lb.lines[1], "404 POST /404 (127.0.0.1) "));
    assert_int_equal(lb.levels[1], SQ_LOG_WARNING);
    assert_non_null(strstr(lb.lines[2], "503 GET /503 (127.0.0.1) "));
    assert_int_equal(lb.levels[2], SQ_LOG_ERROR);
}

/* --- graceful shutdown ---------------------------------------------------------------------------
 */

typedef struct shut_ctx {
    sq_http_server *srv;
    sq_future *fut;
    int requests_started;
    bool slow_done;
} shut_ctx;

static void shut_handler(sq_http_request *req, void *arg)
{
    shut_ctx *sc = arg;
    sc->requests_started++;
    if (req->path.len > 1 && req->path.ptr[1] == 's') {
        sq_sleep(0.3);
        sc->slow_done = true;
    }
    sq_http_write(req, "done", 4);
}

static void *shut_client_thread(void *arg)
{
    int port = *(int *)arg;
    cl a, b;
    resp r;
    int ok = 0;
    if (cl_open(&a, port) == 0 && cl_open(&b, port) == 0) {
        cl_sends(&b, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"); /* b goes idle after this */
        if (cl_response(&b, &r, false) == 0) ok++;
        resp_free(&r);
        cl_sends(&a, "GET /s HTTP/1.1\r\nHost: x\r\n\r\n");
        if (cl_response(&a, &r, false) == 0 && r.status == 200 &&
            strstr(r.head, "Connection: close"))
            ok++;
        resp_free(&r);
        if (cl_eof(&a)) ok++;
        if (cl_eof(&b)) ok++;
    }
    cl_close(&a);
    cl_close(&b);
    return (void *)(intptr_t)ok;
}

static void start_shutdown(void *arg)
{
    shut_ctx *sc = arg;
    sc->fut = sq_http_server_shutdown(sc->srv, 5.0);
}

static void test_shutdown(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    shut_ctx sc = {0};
    sc.srv = sq_http_server_new(loop, NULL, shut_handler, &sc);
    assert_int_equal(sq_http_server_listen(sc.srv, "127.0.0.1", 0), 0);
    int port = sq_http_server_port(sc.srv);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, shut_client_thread, &port), 0);
    /* wait until the slow request runs, then shut down */
    double t0 = sq_test_now();
    while (sc.requests_started < 2 && sq_test_now() - t0 < 10) sq_loop_run_once(loop, true);
    assert_int_equal(sc.requests_started, 2);
    start_shutdown(&sc);
    assert_non_null(sc.fut);
    assert_false(sq_future_done(sc.fut));
    sq_call *guard = sq_call_later(loop, 10, stop_loop, loop);
    sq_loop_run_until(loop, sc.fut);
    sq_call_cancel(guard);
    assert_true(sq_future_done(sc.fut));
    assert_true(sc.slow_done);
    assert_int_equal(sq_http_server_connections(sc.srv), 0);
    void *ok;
    pthread_join(t, &ok);
    assert_int_equal((int)(intptr_t)ok, 4);
    /* no new connections */
    cl c;
    assert_int_not_equal(cl_open(&c, port), 0);
    cl_close(&c);
    sq_future_release(sc.fut);
    sq_http_server_free(sc.srv);
    sq_loop_free(loop);
}

/* --- examples/hello ------------------------------------------------------------------------------
 */

static void test_hello_example(void **state)
{
    const char *bin = sq_test_build_path("examples/hello");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl(bin, bin, "0", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[64] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t k = read(pfd[0], line + n, 1);
        if (k <= 0 || line[n] == '\n') break;
        n++;
    }
    int port = 0;
    assert_int_equal(sscanf(line, "listening on port %d", &port), 1);
    char cmd[256], out[512];
    snprintf(cmd, sizeof cmd, "curl -sS -i http://127.0.0.1:%d/", port);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(out, "\r\n\r\nHello, World!"));
    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0); /* LeakSanitizer would have made it fail */
    close(pfd[0]);
}

/* --- freeing the server while a handler sleeps: the handler finishes harmlessly ------------- */

typedef struct orphan_ctx {
    int started, finished, write_err, closed_cbs, detach_err;
    bool server_after; /* req->server once the server was freed */
} orphan_ctx;

static void orphan_gone(sq_http_request *req, void *arg)
{
    ((orphan_ctx *)arg)->closed_cbs++;
}

static void orphan_handler(sq_http_request *req, void *arg)
{
    orphan_ctx *oc = arg;
    oc->started++;
    sq_http_on_connection_close(req, orphan_gone, oc);
    sq_sleep(0.2);
    /* the server is gone: so is the request's pointer to it, and what used it fails cleanly
     * (an upgrade, a read of the body) instead of reading freed memory */
    oc->server_after = req->server != NULL;
    sq_stream *s = NULL;
    oc->detach_err = sq_http_detach_stream(req, &s);
    sq_http_write(req, "x", 1);
    oc->write_err = sq_http_flush(req);
    oc->finished++;
}

static void *orphan_client(void *arg)
{
    cl c;
    if (cl_open(&c, *(int *)arg) == 0) {
        cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        cl_eof(&c);
    }
    cl_close(&c);
    return NULL;
}

static void test_free_with_handler_running(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    orphan_ctx oc = {0};
    sq_http_server *srv = sq_http_server_new(loop, NULL, orphan_handler, &oc);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    int port = sq_http_server_port(srv);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, orphan_client, &port), 0);
    double t0 = sq_test_now();
    while (!oc.started && sq_test_now() - t0 < 10) sq_loop_run_once(loop, true);
    assert_int_equal(oc.started, 1);
    sq_http_server_free(srv);
    assert_int_equal(oc.closed_cbs, 1);
    pthread_join(t, NULL);
    t0 = sq_test_now();
    while (!oc.finished && sq_test_now() - t0 < 10) sq_loop_run_once(loop, true);
    assert_int_equal(oc.finished, 1);
    assert_int_equal(oc.write_err, SQ_ECLOSED);
    assert_false(oc.server_after);
    assert_int_equal(oc.detach_err, SQ_ECLOSED);
    sq_loop_free(loop);
}

/* --- shutdown asked twice: both futures resolve ------------------------------------------ */

static void twice_handler(sq_http_request *req, void *arg)
{
    sq_http_write(req, "x", 1);
}

static void test_shutdown_twice(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, twice_handler, NULL);
    assert_non_null(srv);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct sockaddr_un {
        sa_family_t f;
    } peer = {AF_UNIX};
    sq__http_conn_new(srv, sv[0], (struct sockaddr *)&peer);
    /* half a head: the connection is busy, so shutdown waits for its deadline */
    assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\n", 16), 16);
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    assert_int_equal(sq_http_server_connections(srv), 1);
    sq_future *f1 = sq_http_server_shutdown(srv, 0.2);
    sq_future *f2 = sq_http_server_shutdown(srv, 0.2);
    assert_non_null(f1);
    assert_non_null(f2);
    double t0 = sq_test_now();
    while (!(sq_future_done(f1) && sq_future_done(f2)) && sq_test_now() - t0 < 2) {
        sq_loop_run_once(loop, false);
        usleep(1000);
    }
    assert_true(sq_future_done(f2));
    assert_true(sq_future_done(f1));
    sq_future_release(f1);
    sq_future_release(f2);
    sq_http_server_free(srv);
    close(sv[1]);
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop);
}

/* --- a client that never reads its response is dropped after write_timeout ---------------- */

static void flood_handler(sq_http_request *req, void *arg)
{
    static char block[64 * 1024];
    for (int i = 0; i < 256; i++) {
        sq_http_write(req, block, sizeof block);
        if (sq_http_flush(req) < 0) return;
    }
}

static void stalled_reader_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    double t0 = sq_test_now();
    while (sq_http_server_connections(h->srv) == 0 && sq_test_now() - t0 < 10) usleep(1000);
    while (sq_http_server_connections(h->srv) != 0 && sq_test_now() - t0 < 10) usleep(20000);
    CHECK(h, sq_http_server_connections(h->srv) == 0);
    CHECK(h, sq_test_now() - t0 >= 0.3);
    cl_close(&c);
}

static void test_stalled_reader(void **state)
{
    sq_http_settings s = {.write_timeout = 0.4};
    run_with_client(&s, flood_handler, NULL, stalled_reader_client, NULL, 30);
}

/* --- after a burst, the pools and the heap are trimmed -------------------------------------- */

/* sq_http_server_on_trim's callback: how often, and the open connections it was told of */
static int trim_cb_calls;
static size_t trim_cb_open;

static void on_trim(void *arg, size_t open)
{
    harness *h = arg;
    trim_cb_calls++;
    trim_cb_open = open;
    if (open != h->srv->nconns) trim_cb_open = (size_t)-1;
}

/* "/stats" answers what the trim after a burst did: trims, pooled active parts, the peak,
 * whether the trim is armed, and the on_trim callback's calls and count of open connections;
 * anything else sleeps 0.2 s (so that a burst's requests are all in flight at once, each
 * with its active part) and answers "ok". */
static sq_http_server *g_srv2; /* test_memory_trim_shared_stacks' second server */

static void trim_handler(sq_http_request *req, void *arg)
{
    harness *h = arg;
    if (!h->srv->on_trim) sq_http_server_on_trim(h->srv, on_trim, h);
    if (req->path.len == 5 && !memcmp(req->path.ptr, "/srv2", 5)) {
        /* a second server on the loop, which never trims: its port */
        if (!g_srv2) {
            sq_http_settings s2 = {.memory_trim_delay = -1};
            g_srv2 = sq_http_server_new(h->loop, &s2, trim_handler, h);
            if (!g_srv2 || sq_http_server_listen(g_srv2, "127.0.0.1", 0) < 0) return;
        }
        char port[16];
        int n = snprintf(port, sizeof port, "%d", sq_http_server_port(g_srv2));
        sq_http_write(req, port, (size_t)n);
        return;
    }
    if (req->path.len == 9 && !memcmp(req->path.ptr, "/srv2free", 9)) {
        sq_http_server_free(g_srv2);
        g_srv2 = NULL;
        sq_http_write(req, "ok", 2);
        return;
    }
    if (req->path.len != 6 || memcmp(req->path.ptr, "/stats", 6)) {
        sq_sleep(0.2);
        sq_http_write(req, "ok", 2);
        return;
    }
    char buf[192];
    int n = snprintf(buf, sizeof buf,
                     "trims=%llu nacts=%zu peak=%zu armed=%d cb=%d open=%zu stacks=%zu heap=%u",
                     (unsigned long long)h->srv->trims, h->srv->nacts, h->srv->conns_peak,
                     (int)sq_timer_active(&h->srv->trim_timer), trim_cb_calls, trim_cb_open,
                     sq__coro_pool_len(), sq__http_heap_trims());
    sq_http_write(req, buf, (size_t)n);
}

typedef struct trim_stats {
    unsigned long long trims;
    size_t nacts, peak;
    int armed, cb;
    size_t open, stacks;
    unsigned heap; /* malloc_trims finished (on their thread) */
} trim_stats;

static bool trim_query(harness *h, cl *c, trim_stats *st)
{
    resp r;
    memset(st, 0, sizeof *st);
    if (cl_sends(c, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n") < 0 || cl_response(c, &r, false) < 0)
        return false;
    int n = sscanf(
        r.body, "trims=%llu nacts=%zu peak=%zu armed=%d cb=%d open=%zu stacks=%zu heap=%u",
        &st->trims, &st->nacts, &st->peak, &st->armed, &st->cb, &st->open, &st->stacks, &st->heap);
    resp_free(&r);
    CHECK(h, n == 8);
    return n == 8;
}

/* Open connections [from, to) of cs with a request each, all in flight at once, and read
 * the answers (so the server has counted every connection). */
static void trim_open(harness *h, int port, cl *cs, int from, int to)
{
    for (int i = from; i < to; i++) {
        CHECK(h, cl_open(&cs[i], port) == 0);
        CHECK(h, cl_sends(&cs[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    }
    for (int i = from; i < to; i++) {
        resp r;
        CHECK(h, cl_response(&cs[i], &r, false) == 0 && r.status == 200);
        resp_free(&r);
    }
}

/* Wait (at most 5 s) until /stats on c says the trim is armed (1) or not (0). */
static bool trim_wait_armed(harness *h, cl *c, int armed, trim_stats *st)
{
    for (int i = 0; i < 250; i++) {
        if (!trim_query(h, c, st)) return false;
        if (st->armed == armed) return true;
        usleep(20 * 1000);
    }
    return false;
}

enum { TRIM_N = 300 };

static void trim_client(harness *h)
{
    static cl cs[TRIM_N];
    trim_stats st;
    /* 300 connections, then 200 of them closed: 100 stay open, more than a quarter */
    trim_open(h, h->port, cs, 0, TRIM_N);
    for (int i = 100; i < TRIM_N; i++) cl_close(&cs[i]);
    usleep(1500 * 1000); /* 1.5 x the delay */
    CHECK(h, trim_query(h, &cs[0], &st) && st.trims == 0 && st.peak == TRIM_N);
    CHECK(h, st.nacts >= 200); /* the burst's active parts wait in the pool */
    /* all but one closed: armed, and 1 s later the pools keep one part, the peak is reset */
    unsigned heap0 = st.heap;
    for (int i = 1; i < 100; i++) cl_close(&cs[i]);
    CHECK(h, trim_wait_armed(h, &cs[0], 1, &st));
    usleep(1500 * 1000);
    CHECK(h, trim_query(h, &cs[0], &st) && st.trims == 1 && st.peak == 1 && !st.armed);
#ifdef __GLIBC__
    /* and malloc_trim ran, on a thread of its own (glibc only) */
    for (int i = 0; i < 250 && st.heap == heap0 && trim_query(h, &cs[0], &st); i++)
        usleep(20 * 1000);
    CHECK(h, st.heap > heap0);
#else
    (void)heap0;
#endif
    CHECK(h, st.nacts <= 64);             /* SQ__HTTP_TRIM_KEEP */
    CHECK(h, st.cb == 1 && st.open == 1); /* on_trim told of the one open connection */
    /* a second burst whose connections come back before the delay: no trim */
    trim_open(h, h->port, cs, 1, TRIM_N);
    for (int i = 1; i < TRIM_N; i++) cl_close(&cs[i]);
    CHECK(h, trim_wait_armed(h, &cs[0], 1, &st) && st.peak == TRIM_N);
    trim_open(h, h->port, cs, 1, 100); /* 100 open: more than a quarter of the peak again */
    CHECK(h, trim_query(h, &cs[0], &st) && !st.armed);
    usleep(1500 * 1000);
    CHECK(h, trim_query(h, &cs[0], &st) && st.trims == 1 && st.cb == 1);
    for (int i = 0; i < 100; i++) cl_close(&cs[i]);
}

static void test_memory_trim(void **state)
{
    sq_raise_fd_limit();
    trim_cb_calls = 0;
    sq_http_settings s = {.memory_trim_delay = 1.0};
    run_with_client(&s, trim_handler, NULL, trim_client, NULL, 60);
}

/* The coroutine stacks are the thread's: a server's trim keeps enough of them for the
 * connections of every server on the thread, not only for its own. */
static void shared_stacks_client(harness *h)
{
    enum { OTHERS = 150 };
    static cl cs[TRIM_N], others[OTHERS];
    cl ctl;
    resp r;
    trim_stats st;
    CHECK(h, cl_open(&ctl, h->port) == 0);
    CHECK(h, cl_sends(&ctl, "GET /srv2 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&ctl, &r, false) == 0 && r.status == 200);
    int port2 = atoi(r.body);
    resp_free(&r);
    CHECK(h, port2 > 0);
    /* 150 connections held open on the second server, then a burst of 300 on the first */
    trim_open(h, port2, others, 0, OTHERS);
    trim_open(h, h->port, cs, 0, TRIM_N);
    /* more stacks pooled than either keep (the burst's, or earlier tests' on this thread) */
    CHECK(h, trim_query(h, &ctl, &st) && st.stacks > OTHERS + SQ__HTTP_TRIM_KEEP);
    for (int i = 0; i < TRIM_N; i++) cl_close(&cs[i]);
    CHECK(h, trim_wait_armed(h, &ctl, 1, &st));
    usleep(1500 * 1000);
    /* the first server trimmed to its one connection, but kept a stack for each of the 151
     * connections on the thread (one of them is serving this query) */
    CHECK(h, trim_query(h, &ctl, &st) && st.trims == 1 && st.open == 1);
    CHECK(h, st.stacks >= OTHERS && st.stacks <= OTHERS + 1);
    for (int i = 0; i < OTHERS; i++) cl_close(&others[i]);
    CHECK(h, cl_sends(&ctl, "GET /srv2free HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&ctl, &r, false) == 0 && r.status == 200);
    resp_free(&r);
    cl_close(&ctl);
}

static void test_memory_trim_shared_stacks(void **state)
{
    sq_raise_fd_limit();
    trim_cb_calls = 0;
    sq_http_settings s = {.memory_trim_delay = 1.0};
    run_with_client(&s, trim_handler, NULL, shared_stacks_client, NULL, 60);
    assert_null(g_srv2);
}

/* memory_trim_delay < 0: never armed, never trimmed */
static void no_trim_client(harness *h)
{
    static cl cs[TRIM_N];
    trim_stats st;
    trim_open(h, h->port, cs, 0, TRIM_N);
    for (int i = 1; i < TRIM_N; i++) cl_close(&cs[i]);
    usleep(300 * 1000);
    CHECK(h, trim_query(h, &cs[0], &st) && st.trims == 0 && !st.armed && st.peak == TRIM_N);
    CHECK(h, st.cb == 0);
    cl_close(&cs[0]);
}

static void test_memory_trim_off(void **state)
{
    sq_raise_fd_limit();
    trim_cb_calls = 0;
    sq_http_settings s = {.memory_trim_delay = -1};
    run_with_client(&s, trim_handler, NULL, no_trim_client, NULL, 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_sleepers),
        cmocka_unit_test(test_pipeline_with_suspension),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_xheaders),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_shutdown_twice),
        cmocka_unit_test(test_hello_example),
        cmocka_unit_test(test_free_with_handler_running),
        cmocka_unit_test(test_stalled_reader),
        cmocka_unit_test(test_memory_trim),
        cmocka_unit_test(test_memory_trim_off),
        cmocka_unit_test(test_memory_trim_shared_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
