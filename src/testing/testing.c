/* squall/testing.h: run a test body as a coroutine against an app on an ephemeral port. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "squall/coro.h"
#include "squall/error.h"
#include "squall/future.h"
#include "squall/loop.h"
#include "squall/testing.h"

#define SQ__TEST_LOG_KEEP 10000 /* log lines a test remembers for sq_test_log_count */

typedef struct owned {
    struct owned *next;
    enum { OWN_RESPONSE, OWN_WS, OWN_MEM } kind;
    void *p;
} owned;

typedef struct expect {
    struct expect *next;
    int level;
    size_t seen;
    char sub[];
} expect;

typedef struct logline {
    struct logline *next;
    char text[];
} logline;

struct sq_test {
    sq_loop *loop;
    sq_app *app;
    sq_http_client *client;
    sq_test_fn body;
    void *arg;
    const char *name;
    int port;
    char base[64];
    bool failed, timed_out, ending, done;
    owned *owned;
    expect *expects;
    logline *lines, **lines_tail;
    size_t nlines;
};


static const char *level_name(int level)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    return level >= 0 && level < 4 ? names[level] : "LOG";
}

static void test_log(int level, const char *msg, void *arg)
{
    sq_test *t = arg;
    bool swallowed = false;
    for (expect *e = t->expects; e; e = e->next)
        if (e->level == level && strstr(msg, e->sub)) {
            e->seen++;
            swallowed = true;
        }
    if (t->nlines < SQ__TEST_LOG_KEEP) {
        size_t n = strlen(msg);
        logline *l = malloc(sizeof *l + n + 1);
        if (l) {
            memcpy(l->text, msg, n + 1);
            l->next = NULL;
            *t->lines_tail = l;
            t->lines_tail = &l->next;
            t->nlines++;
        }
    }
    if (!swallowed) fprintf(stderr, "squall: %s: %s\n", level_name(level), msg);
}

static void *own(sq_test *t, int kind, void *p)
{
    if (!p) return NULL;
    owned *o = malloc(sizeof *o);
    if (!o) {
        sq_test_fail_at(t, __FILE__, __LINE__, "out of memory");
        if (kind == OWN_RESPONSE) sq_fetch_response_free(p);
        else if (kind == OWN_WS) sq_ws_free(p);
        else free(p);
        return NULL;
    }
    o->kind = kind;
    o->p = p;
    o->next = t->owned;
    t->owned = o;
    return p;
}

bool sq_test_fail_at(sq_test *t, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: %s: ", file, line, t->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    t->failed = true;
    return false;
}

bool sq_test_failed(const sq_test *t)
{
    return t->failed;
}

void *sq_test_arg(sq_test *t)
{
    return t->arg;
}

sq_app *sq_test_app(sq_test *t)
{
    return t->app;
}

int sq_test_port(sq_test *t)
{
    return t->port;
}

const char *sq_test_url(sq_test *t, const char *path)
{
    if (!path) path = "";
    if (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8) ||
        !strncmp(path, "ws://", 5) || !strncmp(path, "wss://", 6))
        return path;
    char *u = NULL;
    if (asprintf(&u, "%s%s%s", t->base, path[0] == '/' || !path[0] ? "" : "/", path) < 0)
        return NULL;
    return own(t, OWN_MEM, u);
}

sq_fetch_response *sq_test_try_fetch(sq_test *t, const char *path, const sq_fetch_request *req,
                                     int *err)
{
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (t->ending || !t->client) {
        *err = -ECANCELED;
        return NULL;
    }
    const char *url = sq_test_url(t, path);
    if (!url) {
        *err = -ENOMEM;
        return NULL;
    }
    sq_fetch_request r = {0};
    if (req) r = *req;
    r.no_raise_error = true;
    sq_future *f = sq_http_client_fetch(t->client, url, &r);
    if (!f) {
        *err = -ENOMEM;
        return NULL;
    }
    void *value = NULL;
    int64_t st = sq_await(f, &value);
    if (st < 0) {
        *err = (int)st;
        return NULL;
    }
    return own(t, OWN_RESPONSE, value);
}

sq_fetch_response *sq_test_fetch(sq_test *t, const char *path, const sq_fetch_request *req)
{
    int err;
    sq_fetch_response *r = sq_test_try_fetch(t, path, req, &err);
    if (!r && !t->ending)
        sq_test_fail_at(t, __FILE__, __LINE__, "fetch %s: %s", path ? path : "", sq_strerror(err));
    return r;
}

sq_ws *sq_test_websocket(sq_test *t, const char *path, const sq_ws_connect_options *opts)
{
    if (t->ending || !t->port) return NULL;
    char *u = NULL;
    if (asprintf(&u, "ws://%s%s%s", t->base + strlen("http://"), path && path[0] == '/' ? "" : "/",
                 path ? path : "") < 0)
        return NULL;
    int err = 0;
    sq_ws *ws = sq_ws_connect(u, opts, &err);
    if (!ws && !t->ending)
        sq_test_fail_at(t, __FILE__, __LINE__, "websocket %s: %s", u, sq_strerror(err));
    free(u);
    return own(t, OWN_WS, ws);
}

struct ws_deadline {
    sq_ws *ws;
    bool fired;
};

static void ws_deadline_hit(void *arg)
{
    struct ws_deadline *d = arg;
    d->fired = true;
    sq_ws_close(d->ws, 1000, "test read timed out"); /* the read then returns SQ_ECLOSED */
}

const char *sq_test_ws_read(sq_test *t, sq_ws *ws, double timeout)
{
    if (!ws || t->ending) return NULL;
    struct ws_deadline d = {ws, false};
    sq_call *c = sq_call_later(t->loop, timeout > 0 ? timeout : 5.0, ws_deadline_hit, &d);
    const char *data;
    bool binary;
    ssize_t n = sq_ws_read_message(ws, &data, &binary);
    if (!d.fired && c && !t->ending) sq_call_cancel(c); /* (freed with the loop when ending) */
    if (n < 0) {
        if (d.fired)
            sq_test_fail_at(t, __FILE__, __LINE__, "websocket read: nothing within %.3g s",
                            timeout > 0 ? timeout : 5.0);
        else if (!t->ending)
            sq_test_fail_at(t, __FILE__, __LINE__, "websocket read: %s (close code %d)",
                            sq_strerror((int)n), sq_ws_close_code(ws));
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return own(t, OWN_MEM, s);
}

int sq_test_expect_log(sq_test *t, int level, const char *substring)
{
    if (!substring) return -EINVAL;
    size_t n = strlen(substring);
    expect *e = calloc(1, sizeof *e + n + 1);
    if (!e) return -ENOMEM;
    e->level = level;
    memcpy(e->sub, substring, n + 1);
    e->next = t->expects;
    t->expects = e;
    return 0;
}

size_t sq_test_log_count(sq_test *t, const char *substring)
{
    size_t n = 0;
    for (logline *l = t->lines; l; l = l->next)
        if (strstr(l->text, substring)) n++;
    return n;
}

/* --- checks ---------------------------------------------------------------------------------- */

bool sq__test_check_status(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                           int status)
{
    if (!r) return sq_test_fail_at(t, file, line, "expected status %d, got no response", status);
    if (r->code != status)
        return sq_test_fail_at(t, file, line, "expected status %d, got %d (%s)", status, r->code,
                               r->effective_url ? r->effective_url : "");
    return true;
}

bool sq__test_check_header(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                           const char *name, const char *value)
{
    if (!r) return sq_test_fail_at(t, file, line, "header %s: no response", name);
    const char *v = sq_fetch_response_header(r, name);
    if (!value && v) return sq_test_fail_at(t, file, line, "header %s: expected none, got \"%s\"", name, v);
    if (value && !v)
        return sq_test_fail_at(t, file, line, "header %s: expected \"%s\", got none", name, value);
    if (value && strcmp(v, value) != 0)
        return sq_test_fail_at(t, file, line, "header %s: expected \"%s\", got \"%s\"", name, value,
                               v);
    return true;
}

bool sq__test_check_body(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                         const char *text, bool whole)
{
    if (!r) return sq_test_fail_at(t, file, line, "body: no response");
    bool ok = whole ? (r->body_len == strlen(text) && memcmp(r->body, text, r->body_len) == 0)
                    : memmem(r->body, r->body_len, text, strlen(text)) != NULL;
    if (!ok)
        return sq_test_fail_at(t, file, line, "body: expected %s \"%s\", got (%zu bytes) \"%.*s%s\"",
                               whole ? "exactly" : "to contain", text, r->body_len,
                               r->body_len > 400 ? 400 : (int)r->body_len, r->body,
                               r->body_len > 400 ? "…" : "");
    return true;
}

/* --- running ----------------------------------------------------------------------------------- */

static void *run_body(void *arg)
{
    sq_test *t = arg;
    t->body(t);
    t->done = true;
    return NULL;
}

static void on_timeout(void *arg)
{
    sq_test *t = arg;
    t->timed_out = true;
    sq_loop_stop(t->loop);
}

static void teardown(sq_test *t)
{
    t->ending = true;
    while (t->owned) {
        owned *o = t->owned;
        t->owned = o->next;
        if (o->kind == OWN_RESPONSE) sq_fetch_response_free(o->p);
        else if (o->kind == OWN_WS) sq_ws_free(o->p);
        else free(o->p);
        free(o);
    }
    if (t->client) sq_http_client_free(t->client);
    t->client = NULL;
    if (t->app) sq_app_free(t->app);
    t->app = NULL;
}

int sq_test_run(sq_app *app, sq_test_fn body, void *arg, const sq_test_options *opts)
{
    sq_test_options o = {0};
    if (opts) o = *opts;
    double timeout = o.timeout > 0 ? o.timeout : 10.0;
    sq_test tt = {0}, *t = &tt;
    t->body = body;
    t->arg = arg;
    t->app = app;
    t->name = o.name ? o.name : "test";
    t->lines_tail = &t->lines;
    sq_loop *prev = sq_loop_current();
    t->loop = sq_loop_new(NULL);
    if (!t->loop) {
        fprintf(stderr, "%s: cannot make a loop: %s\n", t->name, strerror(errno));
        sq_app_free(app);
        return 1;
    }
    sq_loop_make_current(t->loop);
    sq_log_set_handler(test_log, t);
    const char *host = o.ipv6 ? "::1" : "127.0.0.1";
    if (app) {
        int e = sq_app_listen(app, 0, host);
        sq_http_server *srv = sq_app_server(app);
        t->port = e == 0 && srv ? sq_http_server_port(srv) : 0;
        if (t->port <= 0) {
            sq_test_fail_at(t, __FILE__, __LINE__, "the app cannot listen on %s: %s", host,
                            sq_strerror(e < 0 ? e : -EADDRNOTAVAIL));
        }
    }
    snprintf(t->base, sizeof t->base, o.ipv6 ? "http://[%s]:%d" : "http://%s:%d", host, t->port);
    t->client = sq_http_client_new(t->loop, NULL);
    if (!t->client) sq_test_fail_at(t, __FILE__, __LINE__, "cannot make an HTTP client");
    if (!t->failed) {
        sq_future *f = sq_spawn(t->loop, run_body, t);
        sq_call *timer = sq_call_later(t->loop, timeout, on_timeout, t);
        if (f) sq_loop_run_until(t->loop, f);
        if (!t->done && t->timed_out)
            sq_test_fail_at(t, __FILE__, __LINE__, "timed out after %.3g s", timeout);
        else if (!t->done)
            sq_test_fail_at(t, __FILE__, __LINE__, "the test body did not run to its end");
        if (timer && !t->timed_out) sq_call_cancel(timer);
        if (f) sq_future_release(f);
    }
    teardown(t);
    /* the body may still be suspended (a timeout): freeing the loop cancels what it awaits,
     * so it runs to its end without the app, the client or anything the test owned */
    sq_loop_free(t->loop);
    teardown(t); /* what the body made while it was being cancelled */
    sq_log_set_handler(NULL, NULL);
    for (expect *e = t->expects; e;) {
        expect *next = e->next;
        if (!e->seen)
            sq_test_fail_at(t, __FILE__, __LINE__, "expected a log line at %s containing \"%s\"",
                            level_name(e->level), e->sub);
        free(e);
        e = next;
    }
    while (t->lines) {
        logline *l = t->lines;
        t->lines = l->next;
        free(l);
    }
    sq_loop_make_current(prev);
    return t->failed ? 1 : 0;
}
