/* The HTTP/1.1 server, bodies: chunked requests (raw and curl), chunked responses after
 * sq_http_flush, Expect: 100-continue, streamed uploads in bounded memory, detached
 * requests, gzip. */
#include "server_util.h"

/* Echo the body back; /flush/N sends it back in N flushed pieces (chunked); /stream reads it
 * with sq_http_read_body_chunk and answers with its length and a checksum. */
static void body_handler(sq_http_request *req, void *arg)
{
    if (req->path.len >= 6 && !memcmp(req->path.ptr, "/flush", 6)) {
        int n = atoi(req->path.ptr + 7);
        for (int i = 0; i < n; i++) {
            char piece[32];
            int k = snprintf(piece, sizeof piece, "piece %d;", i);
            sq_http_write(req, piece, (size_t)k);
            assert_int_equal(sq_http_flush(req), 0);
            sq_sleep(0.01);
        }
        return;
    }
    if (req->path.len >= 7 && !memcmp(req->path.ptr, "/stream", 7)) {
        uint64_t total = 0, sum = 0;
        size_t peak = 0;
        size_t rss0 = sq_test_rss();
        const char *d;
        ssize_t n;
        while ((n = sq_http_read_body_chunk(req, &d)) > 0) {
            total += (uint64_t)n;
            for (ssize_t i = 0; i < n; i++) sum += (unsigned char)d[i];
            if ((total & ((64u << 20) - 1)) < (uint64_t)n) {
                size_t r = sq_test_rss();
                if (r > rss0 && r - rss0 > peak) peak = r - rss0;
            }
        }
        char out[128];
        int k = snprintf(out, sizeof out, "%lld %llu %llu %zu", (long long)n,
                         (unsigned long long)total, (unsigned long long)sum, peak);
        sq_http_write(req, out, (size_t)k);
        return;
    }
    const char *body;
    ssize_t n = sq_http_read_body(req, &body);
    if (n < 0) return;
    sq_http_set_header(req, "Content-Type", "application/octet-stream");
    sq_http_write(req, body, (size_t)n);
}

/* --- chunked requests ------------------------------------------------------------------ */

static void chunked_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5\r\nhello\r\n") == 0);
    usleep(30000);
    CHECK(h, cl_sends(&c, "6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
                          "GET /next HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 11 && !strcmp(r.body, "hello world"));
    resp_free(&r);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 0);
    resp_free(&r);
    /* malformed chunk framing: 400 */
    CHECK(h, cl_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "zz\r\nhello\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 400);
    CHECK(h, cl_eof(&c));
    resp_free(&r);
    cl_close(&c);
    /* curl, 200 KiB of chunked upload, echoed back */
    char cmd[512], out[256];
    snprintf(cmd, sizeof cmd,
             "head -c 204800 /dev/urandom > /tmp/sq_chunk_in.$PPID && "
             "curl -sS -H 'Transfer-Encoding: chunked' --data-binary @/tmp/sq_chunk_in.$PPID "
             "-o /tmp/sq_chunk_out.$PPID http://127.0.0.1:%d/e && "
             "cmp /tmp/sq_chunk_in.$PPID /tmp/sq_chunk_out.$PPID && echo same; "
             "rm -f /tmp/sq_chunk_in.$PPID /tmp/sq_chunk_out.$PPID",
             h->port);
    CHECK(h, run_cmd(cmd, out, sizeof out) == 0);
    CHECK(h, strstr(out, "same") != NULL);
}

static void test_chunked_request(void **state)
{
    run_with_client(NULL, body_handler, NULL, chunked_client, NULL, 60);
}

/* --- chunked responses -------------------------------------------------------------------- */

static void flush_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /flush/5 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.chunked);
    CHECK(h, !strcmp(r.body, "piece 0;piece 1;piece 2;piece 3;piece 4;"));
    resp_free(&r);
    /* keep-alive continues after a chunked response */
    CHECK(h, cl_sends(&c, "GET /flush/1 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !strcmp(r.body, "piece 0;"));
    resp_free(&r);
    cl_close(&c);
    /* HTTP/1.0: no chunked, the body ends at close */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /flush/2 HTTP/1.0\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !r.chunked && !strcmp(r.body, "piece 0;piece 1;"));
    resp_free(&r);
    cl_close(&c);
    /* curl decodes it */
    char cmd[256], out[256];
    snprintf(cmd, sizeof cmd, "curl -sS http://127.0.0.1:%d/flush/3", h->port);
    CHECK(h, run_cmd(cmd, out, sizeof out) == 0);
    CHECK(h, !strcmp(out, "piece 0;piece 1;piece 2;"));
}

static void test_chunked_response(void **state)
{
    run_with_client(NULL, body_handler, NULL, flush_client, NULL, 60);
}

/* --- Expect: 100-continue ------------------------------------------------------------------ */

static void continue_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          "Expect: 100-continue\r\n\r\n") == 0);
    while (c.len < 25 && cl_fill(&c) > 0) {
    }
    CHECK(h, c.len >= 25 && !memcmp(c.buf, "HTTP/1.1 100 Continue\r\n\r\n", 25));
    cl_consume(&c, 25);
    CHECK(h, cl_sends(&c, "abcd") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !strcmp(r.body, "abcd"));
    resp_free(&r);
    cl_close(&c);
    /* curl with a 2 MiB body and an explicit Expect */
    char cmd[512], out[256];
    snprintf(cmd, sizeof cmd,
             "head -c 2097152 /dev/urandom > /tmp/sq_cont_in.$PPID && "
             "curl -sS -v -H 'Expect: 100-continue' --data-binary @/tmp/sq_cont_in.$PPID "
             "-o /tmp/sq_cont_out.$PPID http://127.0.0.1:%d/e 2>&1 | grep -c '100 Continue'; "
             "cmp /tmp/sq_cont_in.$PPID /tmp/sq_cont_out.$PPID && echo same; "
             "rm -f /tmp/sq_cont_in.$PPID /tmp/sq_cont_out.$PPID",
             h->port);
    CHECK(h, run_cmd(cmd, out, sizeof out) == 0);
    CHECK(h, atoi(out) >= 1);
    CHECK(h, strstr(out, "same") != NULL);
}

static void test_100_continue(void **state)
{
    run_with_client(NULL, body_handler, NULL, continue_client, NULL, 60);
}

/* --- streamed upload in bounded memory ----------------------------------------------------- */

#define STREAM_BYTES (1024ull << 20) /* 1 GiB */

static void stream_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    char head[128];
    snprintf(head, sizeof head, "PUT /stream HTTP/1.1\r\nHost: x\r\nContent-Length: %llu\r\n\r\n",
             STREAM_BYTES);
    CHECK(h, cl_sends(&c, head) == 0);
    static char block[1 << 20];
    memset(block, 7, sizeof block);
    for (uint64_t sent = 0; sent < STREAM_BYTES && !h->failures; sent += sizeof block)
        CHECK(h, cl_send(&c, block, sizeof block) == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    long long last = -1;
    unsigned long long total = 0, sum = 0;
    size_t peak = 0;
    CHECK(h, sscanf(r.body, "%lld %llu %llu %zu", &last, &total, &sum, &peak) == 4);
    CHECK(h, last == 0 && total == STREAM_BYTES && sum == 7 * STREAM_BYTES);
    if (total != STREAM_BYTES) fprintf(stderr, "stream: %s\n", r.body);
    CHECK(h, peak < (64u << 20));
    resp_free(&r);
    /* chunked, streamed too */
    CHECK(h, cl_sends(
                 &c, "PUT /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") == 0);
    char line[32];
    for (int i = 0; i < 64; i++) {
        int k = snprintf(line, sizeof line, "%x\r\n", (unsigned)sizeof block);
        CHECK(h, cl_send(&c, line, (size_t)k) == 0);
        CHECK(h, cl_send(&c, block, sizeof block) == 0);
        CHECK(h, cl_sends(&c, "\r\n") == 0);
    }
    CHECK(h, cl_sends(&c, "0\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, sscanf(r.body, "%lld %llu", &last, &total) == 2);
    CHECK(h, last == 0 && total == 64ull << 20);
    resp_free(&r);
    cl_close(&c);
}

static void test_streaming_upload(void **state)
{
    run_with_client(NULL, body_handler, NULL, stream_client, NULL, 120);
}

/* --- detach ------------------------------------------------------------------------------------
 */

static void finish_later(void *arg)
{
    sq_http_request *req = arg;
    sq_http_write(req, "later", 5);
    sq_http_finish(req);
}

static void detach_handler(sq_http_request *req, void *arg)
{
    sq_http_detach(req);
    sq_call_later(sq_loop_current(), 0.05, finish_later, req);
}

static void detach_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    /* pipelined: answered in order, each after its own delay */
    CHECK(h, cl_sends(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n") ==
                 0);
    for (int i = 0; i < 2; i++) {
        CHECK(h, cl_response(&c, &r, false) == 0);
        CHECK(h, r.status == 200 && !strcmp(r.body, "later"));
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_detach(void **state)
{
    run_with_client(NULL, detach_handler, NULL, detach_client, NULL, 30);
}

/* A detached request finished from its on_connection_close callback (the client left):
 * the connection must be freed once, after the callback has returned. */
typedef struct gone_ctx {
    int closes, finished;
    sq_http_request *req;
} gone_ctx;

static void gone_finish(sq_http_request *req, void *arg)
{
    gone_ctx *g = arg;
    g->closes++;
    sq_http_finish(req);
    g->finished++;
}

static void detach_gone_handler(sq_http_request *req, void *arg)
{
    harness *h = arg;
    gone_ctx *g = h->ctx;
    sq_http_detach(req);
    sq_http_on_connection_close(req, gone_finish, g);
    if (req->path.len > 1 && req->path.ptr[1] == 's') {
        /* detached, then the client goes away while the handler still sleeps */
        g->req = req;
        sq_sleep(0.2);
    }
}

static void detach_gone_client(harness *h)
{
    cl c;
    for (int i = 0; i < 2; i++) {
        CHECK(h, cl_open(&c, h->port) == 0);
        CHECK(h, cl_sends(&c, i ? "GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
                                : "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        usleep(50000);
        cl_close(&c);
        usleep(300000);
    }
}

static void finish_orphan(void *arg)
{
    gone_ctx *g = arg;
    if (g->req) sq_http_finish(g->req); /* after its handler returned, client long gone */
    g->req = NULL;
}

static void test_detach_finish_on_close(void **state)
{
    gone_ctx g = {0};
    run_with_client(NULL, detach_gone_handler, NULL, detach_gone_client, &g, 30);
    assert_int_equal(g.closes, 2);
    assert_int_equal(g.finished, 2);
}

/* A detached handler whose client leaves while it is still suspended: the request object
 * stays valid for the sq_http_finish() that comes after the handler has returned. */
static void detach_sleep_handler(sq_http_request *req, void *arg)
{
    harness *h = arg;
    gone_ctx *g = h->ctx;
    sq_http_detach(req);
    g->req = req;
    sq_sleep(0.2);
    sq_call_later(sq_loop_current(), 0.05, finish_orphan, g);
    g->finished++;
}

static void detach_sleep_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(50000);
    struct linger lg = {1, 0}; /* reset: the server sees an error, not just EOF */
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    cl_close(&c);
    usleep(400000);
}

static void test_detach_client_gone_while_suspended(void **state)
{
    gone_ctx g = {0};
    run_with_client(NULL, detach_sleep_handler, NULL, detach_sleep_client, &g, 30);
    assert_int_equal(g.finished, 1);
    assert_null(g.req);
}

/* --- gzip
 * ----------------------------------------------------------------------------------------- */

static void gzip_handler(sq_http_request *req, void *arg)
{
    static char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i / 7) % 26);
    if (req->path.len > 1 && req->path.ptr[1] == 'b') {
        sq_http_set_header(req, "Content-Type", "image/png");
    } else if (req->path.len > 1 && req->path.ptr[1] == 's') {
        sq_http_write(req, "short", 5);
        return;
    }
    sq_http_write(req, text, sizeof text);
}

static void gzip_client(harness *h)
{
    char cmd[512], out[8192];
    snprintf(cmd, sizeof cmd,
             "curl -sS --compressed -D - -o /tmp/sq_gz.$PPID http://127.0.0.1:%d/t; "
             "wc -c < /tmp/sq_gz.$PPID; rm -f /tmp/sq_gz.$PPID",
             h->port);
    CHECK(h, run_cmd(cmd, out, sizeof out) == 0);
    CHECK(h, strcasestr(out, "Content-Encoding: gzip\r\n") != NULL);
    CHECK(h, strcasestr(out, "Vary: Accept-Encoding\r\n") != NULL);
    char *cl_ = strcasestr(out, "Content-Length: ");
    CHECK(h, cl_ && atoi(cl_ + 16) < 1000);
    CHECK(h, strstr(out, "\r\n\r\n4096") != NULL); /* decoded size */
    /* not for binary types, short bodies or clients that did not ask */
    snprintf(cmd, sizeof cmd,
             "curl -sS --compressed -D - -o /dev/null http://127.0.0.1:%d/b; "
             "curl -sS --compressed -D - -o /dev/null http://127.0.0.1:%d/s; "
             "curl -sS -D - -o /dev/null http://127.0.0.1:%d/t",
             h->port, h->port, h->port);
    CHECK(h, run_cmd(cmd, out, sizeof out) == 0);
    CHECK(h, strcasestr(out, "Content-Encoding") == NULL);
}

static void test_gzip(void **state)
{
    sq_http_settings s = {.gzip = true};
    run_with_client(&s, gzip_handler, NULL, gzip_client, NULL, 30);
}

/* A Content-Length the handler set must not survive next to another framing: gzip (the
 * length changes) or a flush (chunked). */
static void clen_handler(sq_http_request *req, void *arg)
{
    static char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i / 7) % 26);
    sq_http_set_header(req, "Content-Type", "text/plain");
    sq_http_set_header(req, "Content-Length", "4096");
    if (req->path.len > 1 && req->path.ptr[1] == 'f') {
        sq_http_write(req, text, 2048);
        sq_http_flush(req);
        sq_http_write(req, text + 2048, 2048);
        return;
    }
    sq_http_write(req, text, sizeof text);
}

static int count_hdr(const char *head, const char *name)
{
    int n = 0;
    size_t k = strlen(name);
    for (const char *p = head; (p = strcasestr(p, name)) != NULL; p += k) n++;
    return n;
}

static void clen_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /g HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && strcasestr(r.head, "Content-Encoding: gzip"));
    CHECK(h, count_hdr(r.head, "\r\nContent-Length:") == 1);
    CHECK(h, r.body_len < 4096);
    resp_free(&r);
    CHECK(h, cl_sends(&c, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.chunked && r.body_len == 4096);
    CHECK(h, count_hdr(r.head, "\r\nContent-Length:") == 0);
    resp_free(&r);
    /* the connection is still in step */
    CHECK(h, cl_sends(&c, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 4096);
    resp_free(&r);
    cl_close(&c);
}

static void test_handler_content_length(void **state)
{
    sq_http_settings s = {.gzip = true};
    run_with_client(&s, clen_handler, NULL, clen_client, NULL, 30);
}

/* A handler that finishes, then keeps working (woken by a timer, not by its connection):
 * the response leaves at once, not when the handler returns. */
static volatile int early_done;

static void finish_early_handler(sq_http_request *req, void *arg)
{
    sq_sleep(0.05);
    sq_http_write(req, "early", 5);
    sq_http_finish(req);
    sq_sleep(0.6); /* background work after the response */
    early_done = 1;
}

static void finish_early_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    double t0 = sq_test_now();
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !strcmp(r.body, "early"));
    CHECK(h, sq_test_now() - t0 < 0.4);
    resp_free(&r);
    cl_close(&c);
    for (int i = 0; i < 500 && !early_done; i++) usleep(10000);
    CHECK(h, early_done);
}

static void test_finish_sends_now(void **state)
{
    run_with_client(NULL, finish_early_handler, NULL, finish_early_client, NULL, 30);
}

/* --- flush backpressure and streaming echo -------------------------------------------------- */

static size_t peak_pending;

static void big_flush_handler(sq_http_request *req, void *arg)
{
    static char block[64 * 1024];
    if (req->path.len > 1 && req->path.ptr[1] == 'e') { /* stream the body back as it comes */
        const char *d;
        ssize_t n;
        while ((n = sq_http_read_body_chunk(req, &d)) > 0) {
            sq_http_write(req, d, (size_t)n);
            if (sq_http_flush(req) < 0) return;
        }
        return;
    }
    memset(block, 'q', sizeof block);
    for (int i = 0; i < 512; i++) { /* 32 MiB */
        sq_http_write(req, block, sizeof block);
        if (sq_http_flush(req) < 0) return;
        sq_http_conn *c = req->conn;
        if (sq__http_out_pending(c) > peak_pending) peak_pending = sq__http_out_pending(c);
    }
}

static void big_flush_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(300000); /* let the server fill the socket and wait */
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.chunked && r.body_len == 32u << 20);
    resp_free(&r);
    /* 8 MiB echoed while it is being sent: reading and writing interleave */
    size_t total = 8u << 20;
    char head[128];
    snprintf(head, sizeof head, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             total);
    CHECK(h, cl_sends(&c, head) == 0);
    static char block[1 << 20];
    for (size_t i = 0; i < sizeof block; i++) block[i] = (char)(i % 251);
    /* send and receive at once: a child process writes */
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t sent = 0; sent < total; sent += sizeof block)
            if (cl_send(&c, block, sizeof block) < 0) _exit(1);
        _exit(0);
    }
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == total);
    for (size_t off = 0; off + sizeof block <= r.body_len; off += sizeof block)
        CHECK(h, !memcmp(r.body + off, block, sizeof block));
    resp_free(&r);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(h, WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cl_close(&c);
}

static void test_flush_backpressure(void **state)
{
    peak_pending = 0;
    run_with_client(NULL, big_flush_handler, NULL, big_flush_client, NULL, 60);
    assert_true(peak_pending <= SQ_HTTP_DEFAULT_WRITE_HIGH_WATER + (128u << 10));
}

/* --- byte at a time: incremental parsing and body decoding across reads ------------------ */

static void trickle_client(harness *h)
{
    static const char reqs[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                               "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nbody-cl"
                               "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nchu\r\nA;x=y\r\nnked-body!\r\n0\r\n\r\n"
                               "GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char *want[] = {"", "body-cl", "chunked-body!", ""};
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (size_t i = 0; i < sizeof reqs - 1; i++) {
        CHECK(h, cl_send(&c, reqs + i, 1) == 0);
        usleep(300);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(h, cl_response(&c, &r, false) == 0);
        CHECK(h, r.status == 200 && !strcmp(r.body, want[i]));
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_byte_at_a_time(void **state)
{
    run_with_client(NULL, body_handler, NULL, trickle_client, NULL, 30);
}

/* --- random garbage on many connections: every one answered or closed, server fine ------- */

static void garbage_client(harness *h)
{
    unsigned seed = 12345;
    char buf[2048];
    for (int k = 0; k < 200; k++) {
        cl c;
        CHECK(h, cl_open(&c, h->port) == 0);
        size_t n = 1 + (size_t)(rand_r(&seed) % sizeof buf);
        int mode = rand_r(&seed) % 3;
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)rand_r(&seed);
            /* sometimes start like a request, sometimes with structure, sometimes noise */
            buf[i] = mode == 0   ? (char)v
                     : mode == 1 ? "GET /\r\n: H1.T0x"[v % 16]
                                 : (char)(32 + v % 95);
        }
        if (mode == 1 && n > 16) memcpy(buf, "POST / HTTP/1.1\r\n", 17);
        cl_send(&c, buf, n);
        shutdown(c.fd, SHUT_WR);
        struct timeval tv = {3, 0};
        setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (cl_fill(&c) > 0) {
        }
        cl_close(&c);
    }
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && !strcmp(r.body, "ok"));
    resp_free(&r);
    cl_close(&c);
}

static void test_garbage(void **state)
{
    sq_http_settings s = {.header_timeout = 1.0, .body_timeout = 1.0};
    run_with_client(&s, body_handler, NULL, garbage_client, NULL, 120);
}

/* --- max_body_size meaning "no limit" ----------------------------------------------------- */

/* SIZE_MAX ("no limit") used to turn into -1 in the Content-Length check (every body got
 * 413) and to overflow the inflate limit (a valid gzip body got 400). */
static void nolimit_client(harness *h)
{
    cl c;
    resp r;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 5 && !strcmp(r.body, "hello"));
    resp_free(&r);
    /* gzip("hello") with decompress_request */
    static const unsigned char gz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                       0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x86,
                                       0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00};
    char head[160];
    snprintf(head, sizeof head,
             "POST /e HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
             sizeof gz);
    CHECK(h, cl_sends(&c, head) == 0);
    CHECK(h, cl_send(&c, gz, sizeof gz) == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 5 && !strcmp(r.body, "hello"));
    resp_free(&r);
    cl_close(&c);
}

static void test_max_body_size_unlimited(void **state)
{
    (void)state;
    sq_http_settings s = {.max_body_size = SIZE_MAX, .decompress_request = true};
    run_with_client(&s, body_handler, NULL, nolimit_client, NULL, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_chunked_response),
        cmocka_unit_test(test_100_continue),
        cmocka_unit_test(test_streaming_upload),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_detach_finish_on_close),
        cmocka_unit_test(test_detach_client_gone_while_suspended),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_finish_sends_now),
        cmocka_unit_test(test_handler_content_length),
        cmocka_unit_test(test_flush_backpressure),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_max_body_size_unlimited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
