/* Regression tests for the compact connection layout (b78db3c): the heap header array across
 * body reads that move the buffer and across pipelined requests, the exact 100/101 header
 * limit also when a head arrives in pieces, the body state kept in the pooled request object
 * (reset between keep-alive requests, freed when the peer goes away mid-body), the peer address
 * formatted per request for every IPv4 octet shape and for IPv4-mapped IPv6, the header
 * timeout still measured from the first bytes of a head while the lazy idle timer runs, a
 * huge idle timeout, and a response completed by the deferred flush call (the request
 * object's flush_call), which must still close the connection or arm its idle timer. */
#include "server_util.h"

static int g_last_read = 1; /* what the last /body-slow read returned */

/* /body: read the whole body; /chunks: stream it; /ignore: leave it unread; /stat: report
 * g_last_read.  Answers "<nheaders> <X-Last> <F50> <body bytes> <remote_ip>". */
static void review_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    char buf[512];
    sq_str p = req->path;
    ssize_t blen = 0;
    if (p.len == 5 && !memcmp(p.ptr, "/body", 5)) {
        const char *d;
        blen = sq_http_read_body(req, &d);
    } else if (p.len == 7 && !memcmp(p.ptr, "/chunks", 7)) {
        const char *d;
        ssize_t n;
        while ((n = sq_http_read_body_chunk(req, &d)) > 0) blen += n;
        if (n < 0) blen = n;
    } else if (p.len == 10 && !memcmp(p.ptr, "/body-slow", 10)) {
        const char *d;
        g_last_read = 1;
        g_last_read = (int)sq_http_read_body(req, &d);
        return;
    } else if (p.len == 5 && !memcmp(p.ptr, "/stat", 5)) {
        int n = snprintf(buf, sizeof buf, "%d", g_last_read);
        sq_http_write(req, buf, (size_t)n);
        return;
    }
    if (blen < 0) return; /* the server answered (413/400) or the peer is gone */
    sq_str last = sq_http_header_get(req, "X-Last");
    sq_str f50 = sq_http_header_get(req, "F50");
    int n = snprintf(buf, sizeof buf, "%zu %.*s %.*s %zd %s", req->nheaders,
                     last.ptr ? (int)last.len : 1, last.ptr ? last.ptr : "-",
                     f50.ptr ? (int)f50.len : 1, f50.ptr ? f50.ptr : "-", blen, req->remote_ip);
    sq_http_write(req, buf, (size_t)n);
}

/* A head of `n` headers: Host, n - 2 fillers "F<i>: v<i>", X-Last: end; plus `extra` lines
 * (framing headers, counted in n). */
static char *head_n(const char *method, const char *path, size_t n, const char *extra)
{
    size_t cap = 256 + n * 32;
    char *s = malloc(cap);
    size_t len = (size_t)snprintf(s, cap, "%s %s HTTP/1.1\r\nHost: x\r\n", method, path);
    size_t nextra = 0;
    for (const char *e = extra; e && *e; e++)
        if (*e == '\n') nextra++;
    for (size_t i = 0; i + 2 + nextra < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "F%zu: v%zu\r\n", i, i);
    snprintf(s + len, cap - len, "%sX-Last: end\r\n\r\n", extra ? extra : "");
    return s;
}

/* Append to a growing request buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_take(sbuf *b, char *s)
{
    sb_add(b, s, strlen(s));
    free(s);
}

static void expect(harness *h, cl *c, int status, const char *body, const char *what)
{
    resp r;
    if (cl_response(c, &r, false) != 0) {
        if (!h->failures++) snprintf(h->failmsg, sizeof h->failmsg, "%s: no response", what);
        return;
    }
    if ((r.status != status || (body && strcmp(r.body, body))) && !h->failures++)
        snprintf(h->failmsg, sizeof h->failmsg, "%s: %d '%.200s'", what, r.status, r.body);
    resp_free(&r);
}

/* One write: a 60-header POST whose 300 KB body is read whole (the buffer is reallocated,
 * moving the heap header slices), a small GET, a 100-header GET, a 40-header chunked POST
 * streamed, a 33-header POST whose body is left unread (drained), a GET, then a 101-header
 * GET: 431 and close. */
static void pipeline_client(harness *h)
{
    enum { BODY = 300000 };
    sbuf b = {0};
    char extra[64];
    snprintf(extra, sizeof extra, "Content-Length: %d\r\n", BODY);
    sb_take(&b, head_n("POST", "/body", 60, extra));
    char *body = malloc(BODY);
    memset(body, 'b', BODY);
    sb_add(&b, body, BODY);
    free(body);
    sb_take(&b, head_n("GET", "/", 2, NULL));
    sb_take(&b, head_n("GET", "/", 100, NULL));
    sb_take(&b, head_n("POST", "/chunks", 40, "Transfer-Encoding: chunked\r\n"));
    sb_add(&b, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 26);
    sb_take(&b, head_n("POST", "/ignore", 33, "Content-Length: 10\r\n"));
    sb_add(&b, "0123456789", 10);
    sb_take(&b, head_n("GET", "/", 3, NULL));
    sb_take(&b, head_n("GET", "/", 101, NULL));
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_send(&c, b.p, b.len) == 0);
    free(b.p);
    expect(h, &c, 200, "60 end v50 300000 127.0.0.1", "60 headers + body");
    expect(h, &c, 200, "2 end - 0 127.0.0.1", "2 headers");
    expect(h, &c, 200, "100 end v50 0 127.0.0.1", "100 headers");
    expect(h, &c, 200, "40 end - 11 127.0.0.1", "40 headers, chunked");
    expect(h, &c, 200, "33 end - 0 127.0.0.1", "33 headers, body unread");
    expect(h, &c, 200, "3 end - 0 127.0.0.1", "3 headers after a drained body");
    expect(h, &c, 431, NULL, "101 headers");
    CHECK(h, cl_eof(&c));
    cl_close(&c);
}

static void test_many_headers_pipeline(void **state)
{
    (void)state;
    run_with_client(NULL, review_handler, NULL, pipeline_client, NULL, 30);
}

/* Heads of 100 and 101 headers arriving a few bytes at a time (the parser sees each piece:
 * the inline parse, then the heap one, with its "already seen" hint). */
static void split_client(harness *h)
{
    static const size_t counts[] = {33, 100, 101};
    for (size_t k = 0; k < 3; k++) {
        cl c;
        CHECK(h, cl_open(&c, h->port) == 0);
        char *req = head_n("GET", "/", counts[k], NULL);
        size_t len = strlen(req), step = len / 7 + 1;
        for (size_t off = 0; off < len; off += step) {
            size_t n = len - off < step ? len - off : step;
            if (cl_send(&c, req + off, n) < 0) break;
            usleep(5000);
        }
        free(req);
        char want[64];
        snprintf(want, sizeof want, "%zu end %s 0 127.0.0.1", counts[k],
                 counts[k] > 52 ? "v50" : "-");
        expect(h, &c, counts[k] <= 100 ? 200 : 431, counts[k] <= 100 ? want : NULL, "split");
        cl_close(&c);
    }
}

static void test_split_heads_limit(void **state)
{
    (void)state;
    run_with_client(NULL, review_handler, NULL, split_client, NULL, 30);
}

/* The body state lives in the request object, which idle connections give back to a pool:
 * two connections alternate so each takes the object the other left, with bodies unread,
 * read whole, streamed, chunked and none. */
static void pool_client(harness *h)
{
    cl a, b;
    CHECK(h, cl_open(&a, h->port) == 0);
    CHECK(h, cl_open(&b, h->port) == 0);
    for (int round = 0; round < 3; round++) {
        /* a: a chunked body left unread, then a GET reading "its" body: nothing */
        CHECK(h, cl_sends(&a, "POST /ignore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\n3\r\nabc\r\n") == 0);
        expect(h, &a, 200, "2 - - 0 127.0.0.1", "a: unread chunked");
        CHECK(h, cl_sends(&a, "0\r\n\r\nPOST /body HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        expect(h, &a, 200, "1 - - 0 127.0.0.1", "a: no body after a drained one");
        /* b: a Content-Length body read whole, then a chunked one streamed */
        CHECK(h,
              cl_sends(&b, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwxyz") == 0);
        expect(h, &b, 200, "2 - - 4 127.0.0.1", "b: whole body");
        CHECK(h, cl_sends(&b, "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\n2\r\nhi\r\n0\r\n\r\n") == 0);
        expect(h, &b, 200, "2 - - 2 127.0.0.1", "b: streamed body");
        /* a: a Content-Length body half sent, unread (drained), then a GET */
        CHECK(h, cl_sends(
                     &a, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n1234") == 0);
        expect(h, &a, 200, "2 - - 0 127.0.0.1", "a: unread length body");
        CHECK(h, cl_sends(&a, "5678GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        expect(h, &a, 200, "1 - - 0 127.0.0.1", "a: GET after a drained body");
        usleep(20000); /* both idle: their request objects go back to the pool */
    }
    cl_close(&a);
    cl_close(&b);
}

static void test_body_state_pooled(void **state)
{
    (void)state;
    run_with_client(NULL, review_handler, NULL, pool_client, NULL, 30);
}

/* The peer closes while the handler waits in sq_http_read_body (a 40-header head: the heap
 * header array goes with the connection); the handler sees the close, the server goes on. */
static void close_client(harness *h)
{
    for (int i = 0; i < 3; i++) {
        cl c;
        CHECK(h, cl_open(&c, h->port) == 0);
        char *req = head_n("POST", "/body-slow", 40, "Content-Length: 100000\r\n");
        CHECK(h, cl_sends(&c, req) == 0);
        free(req);
        CHECK(h, cl_sends(&c, "partial body") == 0);
        usleep(50000);
        cl_close(&c);
        char want[32];
        snprintf(want, sizeof want, "%d", SQ_ECLOSED);
        bool seen = false;
        for (int k = 0; k < 100 && !seen; k++) { /* up to ~5 s for the server to notice */
            usleep(50000);
            cl d;
            CHECK(h, cl_open(&d, h->port) == 0);
            CHECK(h, cl_sends(&d, "GET /stat HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
            resp r;
            if (cl_response(&d, &r, false) == 0) {
                seen = r.status == 200 && !strcmp(r.body, want);
                resp_free(&r);
            }
            cl_close(&d);
        }
        CHECK(h, seen);
    }
}

static void test_close_while_reading_body(void **state)
{
    (void)state;
    run_with_client(NULL, review_handler, NULL, close_client, NULL, 30);
}

/* Idle for a while (the lazy idle timer keeps its deadline), then part of a head: the header
 * timeout runs from those bytes (408), not the idle deadline. */
static void header_after_idle_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    expect(h, &c, 200, "1 - - 0 127.0.0.1", "first request");
    usleep(400 * 1000);
    double t1 = sq_test_now();
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHo") == 0);
    resp r;
    int e = cl_response(&c, &r, false);
    double dt = sq_test_now() - t1;
    CHECK(h, e == 0);
    if (e == 0) {
        CHECK(h, r.status == 408);
        resp_free(&r);
    }
    if ((dt < 0.29 || dt > 2.0) && !h->failures++)
        snprintf(h->failmsg, sizeof h->failmsg, "408 after %.3f s", dt);
    cl_close(&c);
}

static void test_header_timeout_after_idle(void **state)
{
    (void)state;
    sq_http_settings s = {.idle_timeout = 1.0, .header_timeout = 0.3};
    run_with_client(&s, review_handler, NULL, header_after_idle_client, NULL, 30);
}

/* A huge idle timeout means "never": the lazy re-arm converts it without overflow (it used
 * a plain double-to-integer cast; GCC's UBSan does not check those, so this test only shows
 * the behaviour: the connection stays usable across pauses). */
static void huge_idle_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        expect(h, &c, 200, "1 - - 0 127.0.0.1", "huge idle timeout");
        usleep(30000);
    }
    cl_close(&c);
}

static void test_huge_idle_timeout(void **state)
{
    (void)state;
    sq_http_settings s = {.idle_timeout = 1e300, .header_timeout = 1e12};
    run_with_client(&s, review_handler, NULL, huge_idle_client, NULL, 30);
}

/* --- peer addresses: the loop driven here, the client a non-blocking socket ------------- */

/* GET / over a client socket bound to `local` connecting to `dst`; the server's reply body
 * (its remote_ip is the last word) into out. */
static void remote_ip_via(sq_loop *loop, const struct sockaddr *local, const struct sockaddr *dst,
                          socklen_t slen, char *out, size_t outlen)
{
    out[0] = 0;
    int fd = socket(dst->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    if (local) assert_int_equal(bind(fd, local, slen), 0);
    connect(fd, dst, slen);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t sent = 0, len = 0;
    char buf[2048];
    double t0 = sq_test_now();
    while (sq_test_now() - t0 < 10) {
        sq_loop_run_once(loop, false);
        if (sent < sizeof req - 1) {
            ssize_t n = send(fd, req + sent, sizeof req - 1 - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
        }
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n > 0) len += (size_t)n;
        if (n == 0) break;
        usleep(500);
    }
    close(fd);
    buf[len] = 0;
    const char *body = strstr(buf, "\r\n\r\n");
    const char *sp = body ? strrchr(body, ' ') : NULL;
    if (sp) snprintf(out, outlen, "%s", sp + 1);
}

static void test_peer_ipv4_octets(void **state)
{
    (void)state;
    /* every digit count in every position (Linux routes all of 127/8 to loopback) */
    static const char *addrs[] = {"127.0.0.1",     "127.1.2.3",     "127.10.99.100", "127.100.10.0",
                                  "127.255.250.9", "127.9.200.255", "127.199.109.90"};
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, review_handler, NULL);
    assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sq_http_server_port(srv))};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char got[8][64];
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        struct sockaddr_in local = {.sin_family = AF_INET};
        assert_int_equal(inet_pton(AF_INET, addrs[i], &local.sin_addr), 1);
        remote_ip_via(loop, (struct sockaddr *)&local, (struct sockaddr *)&dst, sizeof dst, got[i],
                      sizeof got[i]);
    }
    sq_http_server_free(srv);
    for (int i = 0; i < 10; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        assert_string_equal(got[i], addrs[i]);
}

/* A dual-stack listener: IPv4 clients arrive as ::ffff:a.b.c.d and show as a.b.c.d; IPv6 ones
 * in inet_ntop's form. */
static void test_peer_v4_mapped(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&a6, sizeof a6) < 0) {
        if (probe >= 0) close(probe);
        skip();
    }
    close(probe);
    sq_loop *loop = sq_loop_new(NULL);
    sq_http_server *srv = sq_http_server_new(loop, NULL, review_handler, NULL);
    assert_int_equal(sq_http_server_listen(srv, NULL, 0), 0);
    int port = sq_http_server_port(srv);
    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    d4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in l4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.20.3.201", &l4.sin_addr);
    char v4[64], v4b[64], v6[64];
    remote_ip_via(loop, (struct sockaddr *)&l4, (struct sockaddr *)&d4, sizeof d4, v4, sizeof v4);
    remote_ip_via(loop, NULL, (struct sockaddr *)&d4, sizeof d4, v4b, sizeof v4b);
    a6.sin6_port = htons((uint16_t)port);
    remote_ip_via(loop, NULL, (struct sockaddr *)&a6, sizeof a6, v6, sizeof v6);
    sq_http_server_free(srv);
    for (int i = 0; i < 10; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    assert_string_equal(v4, "127.20.3.201");
    assert_string_equal(v4b, "127.0.0.1");
    assert_string_equal(v6, "::1");
}

/* --- the flush call: a response finished by it still leads to the idle timer ----------- */

static int g_drain_fd = -1;
static size_t g_drained;

/* Runs in the timer pass just before the server's flush call: the client reads what it can,
 * which makes room in the server's socket without the poll having seen it writable. */
static void drain_cb(void *arg)
{
    (void)arg;
    char buf[65536];
    for (int spins = 0; spins < 50; spins++) {
        ssize_t n = recv(g_drain_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            g_drained += (size_t)n;
            spins = 0;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) break;
        usleep(200);
    }
}

static size_t g_big_len;

/* After a sleep (so it runs outside the IO callback: the server schedules a flush call), a
 * response larger than the socket buffers; the client drains just before that call. */
static void big_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    int sb = 16384;
    setsockopt(req->conn->io.fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    sq_sleep(0.01);
    char *body = malloc(g_big_len);
    memset(body, 'z', g_big_len);
    sq_http_write(req, body, g_big_len);
    free(body);
    sq_call_later(sq_loop_current(), 0, drain_cb, NULL);
}

static void test_flush_call_then_idle(void **state)
{
    (void)state;
    static const size_t sizes[] = {40000, 60000, 80000, 100000, 120000, 160000};
    for (size_t k = 0; k < 2 * sizeof sizes / sizeof sizes[0]; k++) {
        /* keep-alive (closed by the idle timeout) and Connection: close (closed at once) */
        bool close_req = k % 2;
        g_big_len = sizes[k / 2];
        g_drained = 0;
        sq_loop *loop = sq_loop_new(NULL);
        sq_http_settings st = {.idle_timeout = 0.3};
        sq_http_server *srv = sq_http_server_new(loop, &st, big_handler, NULL);
        assert_int_equal(sq_http_server_listen(srv, "127.0.0.1", 0), 0);
        struct sockaddr_in dst = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)sq_http_server_port(srv))};
        dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int rb = 16384;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
        assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof dst), 0);
        g_drain_fd = fd;
        const char *req = close_req ? "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                    : "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
        /* run until the connection closes (the idle timeout), at most 3 s */
        bool eof = false;
        double t0 = sq_test_now(), done_at = 0;
        char buf[65536];
        while (!eof && sq_test_now() - t0 < 3) {
            sq_loop_run_once(loop, false);
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) g_drained += (size_t)n;
            if (n == 0) eof = true;
            if (!done_at && g_drained >= g_big_len) done_at = sq_test_now();
            usleep(1000);
        }
        double idle = done_at ? sq_test_now() - done_at : -1;
        close(fd);
        sq_http_server_free(srv);
        for (int i = 0; i < 10; i++) sq_loop_run_once(loop, false);
        sq_loop_free(loop);
        if (!eof || idle > (close_req ? 0.25 : 2.0) || (!close_req && idle < 0.25))
            fail_msg("%zu-byte response%s: closed %s after %.2f s", g_big_len,
                     close_req ? " with Connection: close" : "", eof ? "" : "never", idle);
    }
}

/* Requests pipelined before the client's FIN (a half-close) are all answered, also when the
 * first one's handler suspends and the FIN is read meanwhile: the remaining ones used to be
 * dropped (the connection closed after the first response). */
static void sleepy_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    if (req->path.len == 6 && !memcmp(req->path.ptr, "/sleep", 6)) sq_sleep(0.2);
    sq_http_write(req, req->path.ptr, req->path.len);
}

static void half_close_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
                          "POST /third HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc") == 0);
    shutdown(c.fd, SHUT_WR);
    expect(h, &c, 200, "/sleep", "first (suspends)");
    expect(h, &c, 200, "/second", "second, sent before the FIN");
    expect(h, &c, 200, "/third", "third, sent before the FIN");
    CHECK(h, cl_eof(&c));
    cl_close(&c);
}

static void test_pipelined_before_fin(void **state)
{
    (void)state;
    run_with_client(NULL, sleepy_handler, NULL, half_close_client, NULL, 10);
}

/* /status?c=N: sq_http_set_status(N), then "rc=<its return>" as the body (none for a 101
 * that was accepted: it has no body) */
static void status_handler(sq_http_request *req, void *arg)
{
    (void)arg;
    int code = (int)strtol(req->query.ptr + 2, NULL, 10);
    int rc = sq_http_set_status(req, code, NULL);
    if (rc == 0 && code == 101) return; /* an upgrade the handler does not take: no detach */
    char buf[32];
    int n = snprintf(buf, sizeof buf, "rc=%d", rc);
    sq_http_write(req, buf, (size_t)n);
}

static void status_1xx_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    /* a 1xx is no final response: the client would wait for one (or, for a 101 it never
     * asked for, take the next responses for another protocol) */
    static const int codes[] = {101, 100, 102, 103, 199};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char rq[128], what[64];
        snprintf(rq, sizeof rq, "GET /status?c=%d HTTP/1.1\r\nHost: x\r\n\r\n", codes[i]);
        snprintf(what, sizeof what, "set_status(%d) refused", codes[i]);
        CHECK(h, cl_sends(&c, rq) == 0);
        expect(h, &c, 200, "rc=-22", what);
    }
    cl_close(&c);
    /* a request that asked for an upgrade: 101 is accepted (the step before
     * sq_http_detach_connection); a handler that then returns without detaching sends the
     * 101 and the connection closes (it cannot go on as HTTP after it) */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /status?c=101 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          "Upgrade: x-test\r\n\r\n") == 0);
    while (!memmem(c.buf, c.len, "\r\n\r\n", 4) && cl_fill(&c) > 0) continue;
    CHECK(h, c.len >= 12 && !memcmp(c.buf, "HTTP/1.1 101", 12));
    CHECK(h, cl_eof(&c));
    cl_close(&c);
    /* the same from HTTP/1.0, which has no 1xx: a server ignores its Upgrade (RFC 9110
     * 7.8, 15.2), so 101 is refused as for any request */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /status?c=101 HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\n"
                          "Upgrade: x-test\r\n\r\n") == 0);
    while (!memmem(c.buf, c.len, "rc=", 3) && cl_fill(&c) > 0) continue;
    CHECK(h, c.len >= 12 && !memcmp(c.buf, "HTTP/1.1 200", 12));
    CHECK(h, memmem(c.buf, c.len, "rc=-22", 6) != NULL);
    cl_close(&c);
}

static void test_status_1xx(void **state)
{
    (void)state;
    run_with_client(NULL, status_handler, NULL, status_1xx_client, NULL, 10);
}

/* The access log's lines, captured (the server logs on the loop's thread, checked after). */
static char g_log[16384];
static size_t g_log_len;

static void capture_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    int n = snprintf(g_log + g_log_len, sizeof g_log - g_log_len, "%s\n", msg);
    if (n > 0 && (size_t)n < sizeof g_log - g_log_len) g_log_len += (size_t)n;
}

static void refused_client(harness *h)
{
    static const struct {
        const char *send;
        int status;
    } cases[] = {
        {"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 200},
        {"GET /bad-header HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400},
        {"GET /too-long-", 414}, /* (the line is made longer below) */
        {"GET /many-headers HTTP/1.1\r\nHost: x\r\nX-Big: ", 431},
        {"GET /slow HTTP/1.1\r\nHost: x\r\n", 408}, /* and then nothing: header_timeout */
        {"\x16\x03\x01 garbage\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cl c;
        CHECK(h, cl_open(&c, h->port) == 0);
        CHECK(h, cl_sends(&c, cases[i].send) == 0);
        if (cases[i].status == 414 || cases[i].status == 431) {
            char fill[2048]; /* past max_request_line; and max_header_size */
            memset(fill, 'a', sizeof fill);
            CHECK(h, cl_send(&c, fill, cases[i].status == 414 ? 1024 : 2048) == 0);
            CHECK(h, cl_sends(&c, cases[i].status == 414 ? " HTTP/1.1\r\n\r\n" : "\r\n\r\n") == 0);
        }
        resp r;
        int got = cl_response(&c, &r, false) == 0 ? r.status : -1;
        if (got != cases[i].status && !h->failures++)
            snprintf(h->failmsg, sizeof h->failmsg, "case %zu: %d, not %d", i, got,
                     cases[i].status);
        resp_free(&r);
        cl_close(&c);
    }
}

/* Requests the server refuses before a handler runs (the parser's 400, 414, 431; the header
 * timeout's 408) are in the access log, as nginx and Tornado log them: the status, the
 * request line when it was whole, else "-". */
static void test_access_log_refused(void **state)
{
    (void)state;
    sq_http_settings s = {.access_log = true,
                          .max_request_line = 512,
                          .max_header_size = 1536,
                          .header_timeout = 0.3};
    g_log_len = 0;
    g_log[0] = 0;
    sq_log_set_handler(capture_log, NULL);
    run_with_client(&s, sleepy_handler, NULL, refused_client, NULL, 10);
    sq_log_set_handler(NULL, NULL);
    static const char *const want[] = {
        "200 GET /ok (127.0.0.1)",   "400 GET /bad-header (127.0.0.1)",
        "414 GET /too-long-aaaa",    "431 GET /many-headers (127.0.0.1)",
        "408 GET /slow (127.0.0.1)", "400 - - (127.0.0.1)",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(g_log, want[i])) fail_msg("no \"%s\" in the access log:\n%s", want[i], g_log);
}

int main(void)
{
    (void)run_cmd;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_headers_pipeline),
        cmocka_unit_test(test_split_heads_limit),
        cmocka_unit_test(test_body_state_pooled),
        cmocka_unit_test(test_close_while_reading_body),
        cmocka_unit_test(test_header_timeout_after_idle),
        cmocka_unit_test(test_huge_idle_timeout),
        cmocka_unit_test(test_peer_ipv4_octets),
        cmocka_unit_test(test_peer_v4_mapped),
        cmocka_unit_test(test_flush_call_then_idle),
        cmocka_unit_test(test_pipelined_before_fin),
        cmocka_unit_test(test_status_1xx),
        cmocka_unit_test(test_access_log_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
