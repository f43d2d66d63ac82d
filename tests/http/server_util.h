/* Helpers for the HTTP server tests: the server runs on the test's loop in the main thread,
 * the client is plain blocking sockets in a second thread (or curl/python in a child). */
#ifndef SQ_TEST_SERVER_UTIL_H
#define SQ_TEST_SERVER_UTIL_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "squall/http.h"
#include "../../src/http/http_internal.h"

/* --- client side (runs in the client thread: no cmocka asserts there) ------------------- */

typedef struct cl {
    int fd;
    char *buf;
    size_t len, cap;
} cl;

typedef struct resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
    bool chunked;
} resp;

static int cl_open(cl *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    return 0;
}

static void cl_close(cl *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static int cl_send(cl *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cl_sends(cl *c, const char *s)
{
    return cl_send(c, s, strlen(s));
}

/* Read more bytes; 0 on EOF, -1 on error/timeout. */
static ssize_t cl_fill(cl *c)
{
    if (c->cap - c->len < 4096) {
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0) c->len += (size_t)n;
    return n;
}

static void cl_consume(cl *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Read one response.  `head_req`: the request was HEAD (no body).  0, or -1. */
static int cl_response(cl *c, resp *r, bool head_req)
{
    memset(r, 0, sizeof *r);
    char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end) break;
        if (cl_fill(c) <= 0) return -1;
    }
    size_t hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof r->head) return -1;
    memcpy(r->head, c->buf, hl);
    r->head[hl] = 0;
    cl_consume(c, hl);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    if (r->status < 200 || r->status == 204 || r->status == 304 || head_req) {
        if (r->status == 100) return cl_response(c, r, head_req);
        r->body = calloc(1, 1);
        return 0;
    }
    char *clh = strcasestr(r->head, "\r\nContent-Length:");
    if (clh) {
        size_t n = strtoul(clh + 17, NULL, 10);
        while (c->len < n)
            if (cl_fill(c) <= 0) return -1;
        r->body = malloc(n + 1);
        memcpy(r->body, c->buf, n);
        r->body[n] = 0;
        r->body_len = n;
        cl_consume(c, n);
        return 0;
    }
    if (strcasestr(r->head, "\r\nTransfer-Encoding: chunked")) {
        r->chunked = true;
        size_t cap = 1024, len = 0;
        r->body = malloc(cap);
        for (;;) {
            char *eol;
            while (!(eol = c->len ? memmem(c->buf, c->len, "\r\n", 2) : NULL))
                if (cl_fill(c) <= 0) return -1;
            size_t sz = strtoul(c->buf, NULL, 16);
            cl_consume(c, (size_t)(eol - c->buf) + 2);
            while (c->len < sz + 2)
                if (cl_fill(c) <= 0) return -1;
            if (len + sz + 1 > cap) {
                while (len + sz + 1 > cap) cap *= 2;
                r->body = realloc(r->body, cap);
            }
            memcpy(r->body + len, c->buf, sz);
            len += sz;
            cl_consume(c, sz + 2);
            if (sz == 0) break;
        }
        r->body[len] = 0;
        r->body_len = len;
        return 0;
    }
    /* until close */
    while (cl_fill(c) > 0) {
    }
    r->body = malloc(c->len + 1);
    memcpy(r->body, c->buf, c->len);
    r->body[c->len] = 0;
    r->body_len = c->len;
    c->len = 0;
    return 0;
}

static void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* True when the server has closed the connection (EOF within the receive timeout). */
static bool cl_eof(cl *c)
{
    for (int i = 0; i < 100; i++) {
        ssize_t n = cl_fill(c);
        if (n == 0) return true;
        if (n < 0) return errno == ECONNRESET;
    }
    return false;
}

/* --- harness ------------------------------------------------------------------------------- */

typedef struct harness harness;
typedef void (*client_fn)(harness *h);

struct harness {
    sq_loop *loop;
    sq_http_server *srv;
    int port;
    client_fn client;
    void *ctx;
    /* results reported by the client thread (checked in the main thread) */
    int failures;
    char failmsg[512];
    volatile int done;
    int timed_out;
};

#define CHECK(h, cond)                                                                             \
    do {                                                                                           \
        if (!(cond) && !(h)->failures++)                                                           \
            snprintf((h)->failmsg, sizeof(h)->failmsg, "%s:%d: %s", __FILE__, __LINE__, #cond);    \
    } while (0)

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void *client_main(void *arg)
{
    harness *h = arg;
    h->client(h);
    h->done = 1;
    sq_add_callback_threadsafe(h->loop, stop_loop, h->loop);
    return NULL;
}

static void guard_hit(void *arg)
{
    harness *h = arg;
    h->timed_out = 1;
    sq_loop_stop(h->loop);
}

/* Start a server with `settings`/handler, run `client` in a thread until it returns (at most
 * `limit` seconds), then free everything. */
static void run_with_client(const sq_http_settings *settings, sq_http_handler_fn handler,
                            void *hctx, client_fn client, void *ctx, double limit)
{
    harness h;
    memset(&h, 0, sizeof h);
    h.loop = sq_loop_new(NULL);
    assert_non_null(h.loop);
    h.srv = sq_http_server_new(h.loop, settings, handler, hctx ? hctx : &h);
    assert_non_null(h.srv);
    assert_int_equal(sq_http_server_listen(h.srv, "127.0.0.1", 0), 0);
    h.port = sq_http_server_port(h.srv);
    assert_true(h.port > 0);
    h.client = client;
    h.ctx = ctx;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &h), 0);
    sq_call *guard = sq_call_later(h.loop, limit, guard_hit, &h);
    while (!h.done && !h.timed_out) sq_loop_run(h.loop);
    if (!h.timed_out) sq_call_cancel(guard);
    pthread_join(t, NULL);
    sq_http_server_free(h.srv);
    for (int i = 0; i < 10; i++) sq_loop_run_once(h.loop, false);
    sq_loop_free(h.loop);
    if (h.timed_out) fail_msg("client did not finish within %.1f s", limit);
    if (h.failures) fail_msg("%d client check(s) failed; first: %s", h.failures, h.failmsg);
}

/* Run a shell command line (curl, python3); returns its exit status and its stdout in out. */
static int run_cmd(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
