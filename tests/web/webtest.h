/* A blocking HTTP/1.1 test client for the web tests: the app serves on the test's loop in
 * the main thread while a client thread sends raw requests, one connection each, and keeps
 * the raw responses; the assertions run in the main thread afterwards (cmocka is not
 * thread-safe). */
#ifndef SQ_TESTS_WEBTEST_H
#define SQ_TESTS_WEBTEST_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testutil.h"
#include "squall/web.h"

#define WT_MAX 32

typedef struct wt_resp {
    char *raw; /* the whole response, NUL-terminated */
    size_t raw_len;
    int status; /* 0 if nothing parseable came back */
    char *body; /* de-chunked body, NUL-terminated (malloc'ed) */
    size_t body_len;
} wt_resp;

typedef struct wt_run {
    int port;
    const char *reqs[WT_MAX];
    size_t n;
    wt_resp resp[WT_MAX];
    sq_loop *loop;
} wt_run;

/* A seeded xorshift64 for the generated-input tests: the same sequence on every run. */
typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rnd(rng *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

/* 0 .. n-1 */
static inline unsigned rn(rng *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}

static inline int wt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The value of response header `name` copied into out (NUL-terminated); false if absent. */
static inline bool wt_header(const wt_resp *r, const char *name, char *out, size_t outlen)
{
    if (!r->raw) return false;
    const char *end = strstr(r->raw, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *p = strstr(r->raw, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t len = (size_t)(e - v);
            if (len >= outlen) len = outlen - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

/* How many times header `name` occurs. */
static inline int wt_header_count(const wt_resp *r, const char *name)
{
    if (!r->raw) return 0;
    const char *end = strstr(r->raw, "\r\n\r\n");
    size_t n = strlen(name);
    int count = 0;
    for (const char *p = strstr(r->raw, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') count++;
    return count;
}

static inline void wt_parse(wt_resp *r)
{
    r->status = 0;
    r->body = calloc(1, r->raw_len + 1);
    r->body_len = 0;
    if (!r->raw || sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1) return;
    char *hend = strstr(r->raw, "\r\n\r\n");
    if (!hend) return;
    const char *b = hend + 4;
    size_t blen = r->raw_len - (size_t)(b - r->raw);
    char te[64];
    if (wt_header(r, "Transfer-Encoding", te, sizeof te) && strcasecmp(te, "chunked") == 0) {
        const char *p = b, *end = b + blen;
        while (p < end) {
            char *eol;
            unsigned long sz = strtoul(p, &eol, 16);
            if (eol == p) break;
            p = strstr(eol, "\r\n");
            if (!p) break;
            p += 2;
            if (sz == 0 || p + sz > end) break;
            memcpy(r->body + r->body_len, p, sz);
            r->body_len += sz;
            p += sz + 2;
        }
    } else {
        memcpy(r->body, b, blen);
        r->body_len = blen;
    }
}

/* Send raw, read to EOF (the requests say Connection: close). */
static inline void wt_exchange(int port, const char *raw, size_t rawlen, wt_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = wt_connect(port);
    if (fd < 0) return;
    size_t off = 0;
    while (off < rawlen) {
        ssize_t n = send(fd, raw + off, rawlen - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (len == cap) buf = realloc(buf, (cap *= 2) + 1);
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    r->raw = buf;
    r->raw_len = len;
    wt_parse(r);
}

static inline void wt_stop(void *arg)
{
    sq_loop_stop(arg);
}

static void *wt_client(void *arg)
{
    wt_run *run = arg;
    for (size_t i = 0; i < run->n; i++)
        wt_exchange(run->port, run->reqs[i], strlen(run->reqs[i]), &run->resp[i]);
    sq_add_callback_threadsafe(run->loop, wt_stop, run->loop);
    return NULL;
}

static inline void wt_timeout(void *arg)
{
    *(int *)arg = 1, sq_loop_stop(sq_loop_current());
}

/* Serve `app` on an ephemeral port until the client thread has sent every request. */
static inline void wt_serve(sq_loop *loop, sq_app *app, wt_run *run)
{
    if (!sq_app_server(app)) assert_int_equal(sq_app_listen(app, 0, "127.0.0.1"), 0);
    run->port = sq_http_server_port(sq_app_server(app));
    assert_true(run->port > 0);
    run->loop = loop;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wt_client, run), 0);
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, 30.0, wt_timeout, &timed_out);
    sq_loop_run(loop);
    pthread_join(t, NULL);
    if (!timed_out) sq_call_cancel(guard);
    assert_false(timed_out);
}

static inline void wt_free(wt_run *run)
{
    for (size_t i = 0; i < run->n; i++) {
        free(run->resp[i].raw);
        free(run->resp[i].body);
    }
}

/* Build the loop + app, serve the requests, free the app (the loop stays for the caller). */
static inline sq_loop *wt_loop(void)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_non_null(loop);
    sq_loop_make_current(loop);
    return loop;
}

#define WT_GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

/* jansson's output (malloc'ed, NULL passes through) as squall writes JSON: "</" as "<\\/"
 * (Tornado's json_encode), so that it cannot close a <script> it is put in. */
static inline char *wt_script_safe(char *json)
{
    if (!json) return NULL;
    size_t n = strlen(json), k = 0;
    char *out = malloc(2 * n + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        if (json[i] == '/' && i && json[i - 1] == '<') out[k++] = '\\';
        out[k++] = json[i];
    }
    out[k] = 0;
    free(json);
    return out;
}

#endif
