/* The server's memory-saving layout keeps behaviour: the connection object stays small (an
 * idle keep-alive connection costs little more than it), the request object holds 32 header
 * slots and parses a head with more into a heap array of the full count (100, then 431), the
 * peer's address, kept in binary, is formatted for every request (IPv4 and IPv6), and the idle
 * timer, re-armed lazily, still closes no earlier than idle_timeout after the last response;
 * the short copies the response path makes inline equal memcpy, and its numbers snprintf's. */
#include "server_util.h"

/* Answers "<nheaders> <value of X-Last or -> <remote_ip>", after sleeping for /sleep. */
static void echo_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    if (req->path.len == 6 && !memcmp(req->path.ptr, "/sleep", 6)) sq_sleep(0.05);
    sq_str last = sq_http_header_get(req, "X-Last");
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%zu %.*s %s", req->nheaders, last.ptr ? (int)last.len : 1,
                     last.ptr ? last.ptr : "-", req->remote_ip);
    sq_http_write(req, buf, (size_t)n);
}

static void test_conn_is_small(void **state)
{
    (void)state;
    /* 104 bytes is a 112-byte malloc chunk: all a parked connection costs (no timer of its
     * own), <= 128 per idle connection (bench/http_mem.sh measures it) */
    assert_true(sizeof(struct sq_http_conn) <= 104);
}

/* A head of `n` headers (Host, n - 2 fillers, X-Last: end). */
static char *head_with(size_t n, const char *path)
{
    size_t cap = 64 + n * 32;
    char *s = malloc(cap);
    size_t len = (size_t)snprintf(s, cap, "GET %s HTTP/1.1\r\nHost: x\r\n", path);
    for (size_t i = 0; i + 2 < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "F%zu: %zu\r\n", i, i);
    snprintf(s + len, cap - len, "X-Last: end\r\n\r\n");
    return s;
}

static void many_headers_client(harness *h)
{
    static const struct {
        size_t n;
        const char *path;
        int status;
        const char *body;
    } cases[] = {
        {2, "/", 200, "2 end 127.0.0.1"},
        {32, "/", 200, "32 end 127.0.0.1"},
        {33, "/", 200, "33 end 127.0.0.1"},
        {40, "/sleep", 200, "40 end 127.0.0.1"}, /* slices stay valid across a suspension */
        {100, "/", 200, "100 end 127.0.0.1"},
        {3, "/", 200, "3 end 127.0.0.1"}, /* back to the inline slots */
        {101, "/", 431, NULL},
    };
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *req = head_with(cases[i].n, cases[i].path);
        resp r;
        CHECK(h, cl_sends(&c, req) == 0);
        free(req);
        if (cl_response(&c, &r, false) != 0) {
            CHECK(h, !"no response");
            break;
        }
        if ((r.status != cases[i].status || (cases[i].body && strcmp(r.body, cases[i].body))) &&
            !h->failures++)
            snprintf(h->failmsg, sizeof h->failmsg, "case %zu: %d '%s'", i, r.status, r.body);
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_many_headers(void **state)
{
    (void)state;
    run_with_client(NULL, echo_handler, NULL, many_headers_client, NULL, 30);
}

/* Two pipelined requests over IPv6 loopback: the address is formatted each time. */
static void test_ipv6_peer(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof a) < 0) {
        if (probe >= 0) close(probe);
        skip();
    }
    close(probe);
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, echo_handler, NULL);
    assert_int_equal(sq_http_server_listen(srv, "::1", 0), 0);
    a.sin6_port = htons((uint16_t)sq_http_server_port(srv));
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    connect(fd, (struct sockaddr *)&a, sizeof a);
    static const char reqs[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Last: a\r\n\r\n"
                               "GET / HTTP/1.1\r\nHost: x\r\nX-Last: b\r\n\r\n";
    size_t sent = 0;
    char buf[2048];
    size_t len = 0;
    double t0 = sq_test_now();
    while (sq_test_now() - t0 < 10) {
        sq_loop_run_once(loop, false);
        if (sent < sizeof reqs - 1) {
            ssize_t n = send(fd, reqs + sent, sizeof reqs - 1 - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
        }
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n > 0) len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "2 a ::1") && strstr(buf, "2 b ::1")) break;
        usleep(1000);
    }
    close(fd);
    sq_http_server_free(srv);
    for (int i = 0; i < 10; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    assert_non_null(strstr(buf, "2 a ::1"));
    assert_non_null(strstr(buf, "2 b ::1"));
}

/* Requests every 0.1 s for a second with idle_timeout 0.5 s: the lazily re-armed idle timer
 * never closes the connection while it is in use, and closes it no earlier than 0.5 s after
 * the last response (and not much later: the slack is 1/16 of the timeout). */
static void idle_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    double last = 0;
    for (int i = 0; i < 10; i++) {
        resp r;
        CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        if (cl_response(&c, &r, false) != 0) {
            CHECK(h, !"connection closed while in use");
            cl_close(&c);
            return;
        }
        CHECK(h, r.status == 200);
        resp_free(&r);
        last = sq_test_now();
        usleep(100 * 1000);
    }
    bool eof = cl_eof(&c); /* blocks until the server closes (10 s receive timeout) */
    double idle = sq_test_now() - last;
    CHECK(h, eof);
    if ((idle < 0.49 || idle > 3.0) && !h->failures++)
        snprintf(h->failmsg, sizeof h->failmsg, "closed after %.3f s idle", idle);
    cl_close(&c);
}

static void test_lazy_idle_timeout(void **state)
{
    (void)state;
    sq_http_settings s = {.idle_timeout = 0.5};
    run_with_client(&s, echo_handler, NULL, idle_client, NULL, 30);
}

/* Parked connections, without their active part: new ones that have sent nothing wait in
 * the server's fresh list (header_timeout), idle keep-alive ones in its idle list
 * (idle_timeout).  Each list closes its connections none early and not much late; a new
 * connection's header deadline counts from its accept, not from its first byte; one that
 * keeps sending requests leaves and rejoins the idle list and is never closed; the server
 * is freed with connections still parked in both lists (LeakSanitizer checks the rest). */
#define PK_HEADER 1.0
#define PK_IDLE   1.2
#define PK_NIDLE  6

static cl pk_left[3];

/* The time the server first did something on c (data or EOF), or 0 while nothing came. */
static void pk_watch(cl *c, double *when, bool *eof)
{
    char b[256];
    if (*when) return;
    ssize_t n = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        *when = sq_test_now();
        *eof = true;
    } else if (n > 0) {
        *when = sq_test_now();
        *eof = false;
    }
}

static void parked_client(harness *h)
{
    cl silent, slow, busy, idle[PK_NIDLE], left_fresh, left_idle;
    double opened = sq_test_now(), t_idle[PK_NIDLE];
    CHECK(h, cl_open(&silent, h->port) == 0);
    CHECK(h, cl_open(&slow, h->port) == 0);
    CHECK(h, cl_open(&busy, h->port) == 0);
    for (int i = 0; i < PK_NIDLE; i++) { /* answered 50 ms apart: parked in that order */
        resp r;
        CHECK(h, cl_open(&idle[i], h->port) == 0);
        CHECK(h, cl_sends(&idle[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        CHECK(h, cl_response(&idle[i], &r, false) == 0 && r.status == 200);
        resp_free(&r);
        t_idle[i] = sq_test_now();
        usleep(50 * 1000);
    }
    double w_silent = 0, w_slow = 0, w_idle[PK_NIDLE] = {0};
    bool e_silent = false, e_slow = false, e_idle[PK_NIDLE] = {false};
    bool slow_sent = false;
    int busy_ok = 0, busy_bad = 0;
    /* until every idle connection is past its deadline: busy sends a request every 20 ms */
    while (sq_test_now() - t_idle[PK_NIDLE - 1] < PK_IDLE + 0.8) {
        if (!slow_sent && sq_test_now() - opened >= 0.7) {
            CHECK(h, cl_sends(&slow, "GET / HTTP/1.1\r\nHo") == 0);
            slow_sent = true;
        }
        resp r;
        if (cl_sends(&busy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0 &&
            cl_response(&busy, &r, false) == 0) {
            if (r.status == 200)
                busy_ok++;
            else
                busy_bad++;
            resp_free(&r);
        } else {
            busy_bad++;
            break;
        }
        pk_watch(&silent, &w_silent, &e_silent);
        pk_watch(&slow, &w_slow, &e_slow);
        for (int i = 0; i < PK_NIDLE; i++) pk_watch(&idle[i], &w_idle[i], &e_idle[i]);
        usleep(20 * 1000);
    }
    CHECK(h, busy_bad == 0 && busy_ok > 50);
    /* the silent one: closed without a word after header_timeout */
    CHECK(h, w_silent && e_silent);
    CHECK(h, w_silent - opened >= PK_HEADER - 0.01 && w_silent - opened < PK_HEADER + 0.5);
    /* the slow one: a 408 after header_timeout from its accept (from its first byte it would
     * have come at 1.7 s) */
    CHECK(h, w_slow && !e_slow);
    CHECK(h, w_slow - opened >= PK_HEADER - 0.01 && w_slow - opened < PK_HEADER + 0.5);
    for (int i = 0; i < PK_NIDLE; i++) {
        double dt = w_idle[i] - t_idle[i];
        if ((!w_idle[i] || !e_idle[i] || dt < PK_IDLE - 0.01 || dt > PK_IDLE + 0.5) &&
            !h->failures++)
            snprintf(h->failmsg, sizeof h->failmsg,
                     "idle connection %d: closed %.3f s after "
                     "its response (eof %d)",
                     i, w_idle[i] ? dt : -1.0, e_idle[i]);
    }
    /* left parked when the server is freed: one fresh, one idle (and busy) */
    CHECK(h, cl_open(&left_fresh, h->port) == 0);
    CHECK(h, cl_open(&left_idle, h->port) == 0);
    resp r;
    CHECK(h, cl_sends(&left_idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&left_idle, &r, false) == 0 && r.status == 200);
    resp_free(&r);
    for (int i = 0; i < 100 && sq_http_server_connections(h->srv) != 3; i++) usleep(10000);
    CHECK(h, sq_http_server_connections(h->srv) == 3);
    cl_close(&silent);
    cl_close(&slow);
    for (int i = 0; i < PK_NIDLE; i++) cl_close(&idle[i]);
    /* the server is freed while these are still open (closed by the test afterwards) */
    pk_left[0] = busy;
    pk_left[1] = left_fresh;
    pk_left[2] = left_idle;
}

static void test_parked_lists(void **state)
{
    (void)state;
    sq_http_settings s = {.header_timeout = PK_HEADER, .idle_timeout = PK_IDLE};
    run_with_client(&s, echo_handler, NULL, parked_client, NULL, 30);
    for (int i = 0; i < 3; i++) cl_close(&pk_left[i]);
}

/* A detached request whose body another coroutine reads and then finishes: the finish runs
 * inside the IO callback that resumed the reader, and must not park the connection under
 * it (the callback goes on with c->a); the connection then serves the next request. */
static void *pk_body_reader(void *arg)
{
    sq_http_request *req = arg;
    const char *d;
    ssize_t n = sq_http_read_body(req, &d);
    if (n >= 0) sq_http_write(req, d, (size_t)n);
    sq_http_finish(req);
    return NULL;
}

static void pk_detach_handler(sq_http_request *req, void *arg)
{
    harness *h = arg;
    if (req->content_length > 0) {
        sq_http_detach(req);
        sq_go(h->loop, pk_body_reader, req);
        return;
    }
    sq_http_write(req, "next", 4);
}

static void pk_detach_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(h, cl_sends(&c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n") == 0);
        usleep(50 * 1000); /* the reader waits for the body */
        CHECK(h, cl_sends(&c, "hello") == 0);
        CHECK(h, cl_response(&c, &r, false) == 0 && r.status == 200 && !strcmp(r.body, "hello"));
        resp_free(&r);
        usleep(50 * 1000); /* parked meanwhile */
        CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        CHECK(h, cl_response(&c, &r, false) == 0 && r.status == 200 && !strcmp(r.body, "next"));
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_detached_finish_in_io(void **state)
{
    (void)state;
    run_with_client(NULL, pk_detach_handler, NULL, pk_detach_client, NULL, 30);
}

/* A connection whose keep-alive response is still being written when a graceful shutdown
 * begins closes once it is written, rather than parking for idle_timeout. */
static void big_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    static char block[1 << 16];
    for (int i = 0; i < 128; i++) sq_http_write(req, block, sizeof block); /* 8 MiB */
}

static void start_shutdown(void *arg)
{
    harness *h = arg;
    sq_future *f = sq_http_server_shutdown(h->srv, 30);
    if (f) sq_future_release(f);
}

static void shutdown_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(300 * 1000); /* the response fills the socket buffers and waits */
    sq_add_callback_threadsafe(h->loop, start_shutdown, h);
    usleep(100 * 1000);
    resp r;
    CHECK(h, cl_response(&c, &r, false) == 0 && r.status == 200 && r.body_len == (8u << 20));
    resp_free(&r);
    double t0 = sq_test_now();
    CHECK(h, cl_eof(&c));
    CHECK(h, sq_test_now() - t0 < 3.0);
    cl_close(&c);
}

static void test_shutdown_while_writing(void **state)
{
    (void)state;
    sq_http_settings s = {.idle_timeout = 60};
    run_with_client(&s, big_handler, NULL, shutdown_client, NULL, 40);
}

/* The response path's short copies (sq__copy, inline up to 32 bytes by overlapping word
 * moves) give memcpy's bytes for every length and alignment, and write nothing around them. */
static void test_short_copy(void **state)
{
    (void)state;
    char src[160], dst[160], want[160];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (char)(i * 37 + 11);
    for (size_t n = 0; n <= 96; n++)
        for (size_t so = 0; so < 8; so++)
            for (size_t doff = 0; doff < 8; doff++) {
                memset(dst, 0x5a, sizeof dst);
                memset(want, 0x5a, sizeof want);
                memcpy(want + 16 + doff, src + so, n);
                sq__copy(dst + 16 + doff, src + so, n);
                assert_memory_equal(dst, want, sizeof dst);
            }
}

/* The response head's numbers (sq__put_u64, shared with the templates' integers) give
 * snprintf's digits at every length, each power of ten and its neighbours included, and
 * write nothing past them. */
static void check_put_u64(uint64_t v)
{
    char want[32], got[32];
    memset(got, 0x5a, sizeof got);
    int n = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
    char *e = sq__put_u64(got, v);
    assert_int_equal(e - got, n);
    assert_memory_equal(got, want, (size_t)n);
    assert_int_equal((unsigned char)got[n], 0x5a);
}

static void test_put_u64(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 2000; v++) check_put_u64(v);
    for (uint64_t p = 1000;; p *= 10) {
        check_put_u64(p - 1), check_put_u64(p), check_put_u64(p + 1);
        if (p > UINT64_MAX / 10) break;
    }
    check_put_u64(123456789012345ull);
    check_put_u64(UINT64_MAX);
}

int main(void)
{
    (void)run_cmd; /* a helper of server_util.h this file does not need */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_is_small),
        cmocka_unit_test(test_many_headers),
        cmocka_unit_test(test_ipv6_peer),
        cmocka_unit_test(test_lazy_idle_timeout),
        cmocka_unit_test(test_parked_lists),
        cmocka_unit_test(test_detached_finish_in_io),
        cmocka_unit_test(test_shutdown_while_writing),
        cmocka_unit_test(test_short_copy),
        cmocka_unit_test(test_put_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
