/* h2_test_server: the HTTP server the tests/http2 Python tests drive with curl, h2load and
 * raw frames (Python's h2), over h2c (plain port) and h2 (TLS port, ALPN).
 *
 *   h2_test_server            prints "listening on port N", then "https on port M" when
 *                             H2SRV_CERT and H2SRV_KEY name a certificate and its key
 *
 * Environment: H2SRV_WRITE_TIMEOUT, H2SRV_BODY_TIMEOUT (s), H2SRV_MAX_BODY (bytes),
 * H2SRV_MAX_STREAMS (http2_max_concurrent_streams), H2SRV_TRIM_DELAY (memory_trim_delay, s);
 * unset: the server's defaults.  H2SRV_SHUTDOWN: the shutdown's deadline (s, 5 unset).
 * H2SRV_DEBUG set: squall logs at debug level (why each connection was closed).
 *
 * Routes (both ports, one handler):
 *   /big?n=BYTES  n bytes (10 MiB by default) sent in 64 KiB pieces, sq_http_flush after
 *                 each: piece k is the 64-bit big-endian k followed by bytes 8.. of the
 *                 block made by block_fill() (tests/http2/h2util.py makes the same)
 *   /conns        "conns=<sq_http_server_connections> conn=<req->conn> version=<major>"
 *   /sleep        sleeps 1 s (sq_sleep: only this stream waits), then "slept"
 *   /echo[?sleep=1]  reads the whole body (sq_http_read_body) and sends it back; sleep=1:
 *                 sleeps 0.3 s first
 *   /stats        handlers running now (this one included) and finished, /big outcomes, and
 *                 how many detached requests the client's leaving finished
 *   /detach?n=BYTES[&all=1][&sleep=1]  writes n bytes (unflushed), detaches; finished by
 *                 its sq_http_on_connection_close callback when the client goes (with all=1,
 *                 that callback finishes every detached request there is), else 30 s later;
 *                 sleep=1: sleeps 0.3 s before registering the callback
 *   /stream[?sleep=1]  reads the body in pieces (sq_http_read_body_chunk: max_body_size
 *                 does not apply), then "bytes=<total> end=<last return>"; sleep=1: sleeps
 *                 0.3 s first
 *   /sleepread    sleeps 8 s, then reads the body (sq_http_read_body): what it gets is logged
 *   anything else 404
 *
 * SIGTERM/SIGINT: graceful shutdown of both servers (5 s for the requests in flight),
 * everything freed, "h2srv: exit …" with the counters on stderr, exit status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall.h>
#include <squall/http.h>

#define PIECE (64u * 1024)

static long running, finished, big_ok, big_failed;

static void block_fill(unsigned char *b, size_t n)
{
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (unsigned char)(x >> 16);
    }
}

static bool path_is(const sq_http_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path.len == n && !memcmp(req->path.ptr, p, n);
}

static void text(sq_http_request *req, int status, const char *s)
{
    sq_http_set_status(req, status, NULL);
    sq_http_set_header(req, "Content-Type", "text/plain");
    sq_http_write(req, s, strlen(s));
}

static void big(sq_http_request *req)
{
    static unsigned char block[PIECE];
    static bool filled;
    if (!filled) block_fill(block, PIECE);
    filled = true;
    size_t n = 10u << 20;
    const char *q = memmem(req->query.ptr, req->query.len, "n=", 2);
    if (q) n = strtoull(q + 2, NULL, 10);
    sq_http_set_header(req, "Content-Type", "application/octet-stream");
    unsigned char piece[PIECE];
    memcpy(piece, block, PIECE);
    for (uint64_t k = 0; n > 0; k++) {
        for (int i = 0; i < 8; i++) piece[i] = (unsigned char)(k >> (56 - 8 * i));
        size_t len = n < PIECE ? n : PIECE;
        int e = sq_http_write(req, piece, len);
        if (e == 0) e = sq_http_flush(req);
        if (e < 0) {
            big_failed++;
            fprintf(stderr, "h2srv: /big ended early: %s\n", sq_strerror(e));
            return;
        }
        n -= len;
    }
    big_ok++;
}

/* /detach: requests finished later, by their on_close callback or a timer */
typedef struct held {
    sq_http_request *req;
    sq_timer timer;
    bool all; /* its on_close finishes every held request */
    struct held *prev, *next;
} held;
static held *helds;
static long detach_closed;

static void held_finish(held *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        helds = h->next;
    if (h->next) h->next->prev = h->prev;
    sq_timer_stop(&h->timer);
    sq_http_request *req = h->req;
    free(h);
    sq_http_finish(req);
}

static void held_close(sq_http_request *req, void *arg)
{
    (void)req;
    held *h = arg;
    detach_closed++;
    if (h->all)
        while (helds) held_finish(helds);
    else
        held_finish(h);
}

static void held_timeout(sq_loop *loop, sq_timer *t)
{
    (void)loop;
    held_finish(t->data);
}

static void detach(sq_http_request *req)
{
    static char junk[1 << 20];
    size_t n = 0;
    const char *q = memmem(req->query.ptr, req->query.len, "n=", 2);
    if (q) n = strtoull(q + 2, NULL, 10);
    if (n > sizeof junk) n = sizeof junk;
    held *h = calloc(1, sizeof *h);
    if (!h) {
        text(req, 503, "no memory\n");
        return;
    }
    h->req = req;
    h->all = memmem(req->query.ptr, req->query.len, "all=1", 5) != NULL;
    h->next = helds;
    if (helds) helds->prev = h;
    helds = h;
    sq_timer_init(sq_loop_current(), &h->timer, held_timeout, h);
    sq_timer_start(&h->timer, 30.0, 0);
    memset(junk, 'x', n);
    sq_http_write(req, junk, n);
    /* sleep=1: the client may be gone before the callback is registered */
    if (memmem(req->query.ptr, req->query.len, "sleep=1", 7)) sq_sleep(0.3);
    sq_http_on_connection_close(req, held_close, h);
    sq_http_detach(req);
}

static void handler(sq_http_request *req, void *arg)
{
    char buf[256];
    (void)arg;
    running++;
    if (path_is(req, "/big")) {
        big(req);
    } else if (path_is(req, "/conns")) {
        snprintf(buf, sizeof buf, "conns=%zu conn=%p version=%d\n",
                 sq_http_server_connections(req->server), (void *)req->conn, req->version_major);
        text(req, 200, buf);
    } else if (path_is(req, "/sleep")) {
        int e = sq_sleep(1.0);
        text(req, 200, e < 0 ? "interrupted\n" : "slept\n");
    } else if (path_is(req, "/echo")) {
        const char *data;
        if (memmem(req->query.ptr, req->query.len, "sleep=1", 7)) sq_sleep(0.3);
        ssize_t n = sq_http_read_body(req, &data);
        if (n >= 0) {
            sq_http_set_header(req, "Content-Type", "application/octet-stream");
            sq_http_write(req, data, (size_t)n);
        } else if (n != -E2BIG) {
            fprintf(stderr, "h2srv: /echo: %s\n", sq_strerror((int)n));
        }
    } else if (path_is(req, "/stream")) {
        const char *d;
        ssize_t n;
        size_t total = 0;
        if (memmem(req->query.ptr, req->query.len, "sleep=1", 7)) sq_sleep(0.3);
        while ((n = sq_http_read_body_chunk(req, &d)) > 0) total += (size_t)n;
        snprintf(buf, sizeof buf, "bytes=%zu end=%zd\n", total, n);
        text(req, n == 0 ? 200 : 500, buf);
    } else if (path_is(req, "/detach")) {
        detach(req);
    } else if (path_is(req, "/sleepread")) {
        int e = sq_sleep(8.0);
        const char *data;
        ssize_t n = sq_http_read_body(req, &data);
        fprintf(stderr, "h2srv: /sleepread: sleep %s, body %zd (%s)\n", sq_strerror(e), n,
                n < 0 ? sq_strerror((int)n) : "read");
        if (n >= 0) text(req, 200, "read\n");
    } else if (path_is(req, "/stats")) {
        snprintf(buf, sizeof buf,
                 "running=%ld finished=%ld big_ok=%ld big_failed=%ld detach_closed=%ld\n", running,
                 finished, big_ok, big_failed, detach_closed);
        text(req, 200, buf);
    } else {
        text(req, 404, "not found\n");
    }
    running--;
    finished++;
}

static double env_num(const char *name)
{
    const char *s = getenv(name);
    return s ? strtod(s, NULL) : 0;
}

int main(void)
{
    if (getenv("H2SRV_DEBUG")) sq_log_set_level(SQ_LOG_DEBUG);
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) return 1;
    sq_http_settings s = {
        .write_timeout = env_num("H2SRV_WRITE_TIMEOUT"),
        .body_timeout = env_num("H2SRV_BODY_TIMEOUT"),
        .max_body_size = (size_t)env_num("H2SRV_MAX_BODY"),
        .http2_max_concurrent_streams = (unsigned)env_num("H2SRV_MAX_STREAMS"),
        .header_timeout = env_num("H2SRV_HEADER_TIMEOUT"),
        .idle_timeout = env_num("H2SRV_IDLE_TIMEOUT"),
        .memory_trim_delay = env_num("H2SRV_TRIM_DELAY"),
    };
    sq_http_server *srv[2] = {NULL, NULL};
    srv[0] = sq_http_server_new(loop, &s, handler, NULL);
    int e = srv[0] ? sq_http_server_listen(srv[0], "127.0.0.1", 0) : -errno;
    if (e < 0) {
        fprintf(stderr, "h2srv: cannot listen: %s\n", sq_strerror(e));
        return 1;
    }
    printf("listening on port %d\n", sq_http_server_port(srv[0]));
    const char *cert = getenv("H2SRV_CERT"), *key = getenv("H2SRV_KEY");
    if (cert && key) {
        int err = 0;
        s.tls =
            sq_tls_server_context_new(&(sq_tls_options){.cert_file = cert, .key_file = key}, &err);
        if (!s.tls) {
            fprintf(stderr, "h2srv: no TLS: %s (%s)\n", sq_strerror(err), sq_tls_last_error());
            return 1;
        }
        srv[1] = sq_http_server_new(loop, &s, handler, NULL);
        sq_tls_context_free(s.tls); /* the server keeps its reference */
        e = srv[1] ? sq_http_server_listen(srv[1], "127.0.0.1", 0) : -errno;
        if (e < 0) {
            fprintf(stderr, "h2srv: cannot listen (TLS): %s\n", sq_strerror(e));
            return 1;
        }
        printf("https on port %d\n", sq_http_server_port(srv[1]));
    }
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    int rc = sq_loop_run(loop);
    sq_future *down[2] = {NULL, NULL};
    double grace = env_num("H2SRV_SHUTDOWN");
    for (int i = 0; i < 2; i++)
        if (srv[i]) down[i] = sq_http_server_shutdown(srv[i], grace > 0 ? grace : 5.0);
    for (int i = 0; i < 2; i++) {
        if (!down[i]) continue;
        sq_loop_run_until(loop, down[i]);
        sq_future_release(down[i]);
    }
    for (int i = 0; i < 2; i++) sq_http_server_free(srv[i]);
    sq_loop_free(loop);
    fprintf(stderr, "h2srv: exit running=%ld finished=%ld big_ok=%ld big_failed=%ld\n", running,
            finished, big_ok, big_failed);
    return rc < 0 ? 1 : 0;
}
