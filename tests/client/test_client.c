/* The HTTP client (squall/client.h) against squall's own server (in process, same loop) and
 * against nginx started on a loopback port: methods and bodies, streaming both ways,
 * redirects, gzip, timeouts, refused and unresolvable hosts, HTTP errors, connection reuse,
 * the max_clients queue, cancellation, and the blocking sq_fetch_sync; replies no real server
 * sends (a raw socket server); reentrancy: done and request callbacks that free the client,
 * fetch or cancel from inside libcurl.  SQ_TEST_FILTER=<test name> runs one test. */
#include "nginx_util.h"
#include "testutil.h"

/* src/client/client_internal.h: a test's way to make a socket registration fail */
void sq__client_set_io_start(int (*fn)(sq_loop *, sq_io *, unsigned));

#include <dirent.h>
#include <sys/resource.h>
#include <string.h>
#include <zlib.h>

static sq_loop *loop;
static sq_app *app;
static int port; /* squall's */
static ngx_server ngx;
static bool have_nginx;

/* --- squall's routes -------------------------------------------------------------------------- */

static void hello_get(sq_handler *h)
{
    const char *i = sq_get_argument(h, "i", NULL);
    const char *d = sq_get_argument(h, "d", NULL);
    if (d) sq_sleep(atof(d));
    if (i)
        sq_writef(h, "hello %s", i);
    else
        sq_write(h, "Hello");
}

static void echo_any(sq_handler *h)
{
    sq_http_request *r = sq_handler_request(h);
    char m[32];
    snprintf(m, sizeof m, "%.*s", (int)r->method.len, r->method.ptr);
    sq_set_header(h, "X-Method", m);
    sq_str ua = sq_http_header_get(r, "User-Agent");
    char uabuf[128];
    snprintf(uabuf, sizeof uabuf, "%.*s", (int)ua.len, ua.ptr ? ua.ptr : "");
    sq_set_header(h, "X-Agent", uabuf);
    sq_str xt = sq_http_header_get(r, "X-Test");
    if (xt.ptr) {
        char b[64];
        snprintf(b, sizeof b, "%.*s", (int)xt.len, xt.ptr);
        sq_set_header(h, "X-Test-Echo", b);
    }
    sq_str b = sq_get_body(h);
    sq_write_bytes(h, b.ptr, b.len);
}

/* 307: the same method and body, sent again to /upload. */
static void r307_post(sq_handler *h)
{
    sq_set_header(h, "Location", sq_get_query_argument(h, "to", "/upload"));
    sq_set_status(h, atoi(sq_get_query_argument(h, "code", "307")), NULL);
}

static void slow_get(sq_handler *h)
{
    sq_sleep(atof(sq_get_argument(h, "s", "1")));
    sq_write(h, "slow");
}

static void redirect_get(sq_handler *h)
{
    int n = atoi(sq_path_arg(h, 0));
    if (n <= 0) {
        sq_write(h, "done");
        return;
    }
    char to[64];
    snprintf(to, sizeof to, "/redirect/%d", n - 1);
    sq_redirect(h, to, false);
}

static void gzip_text(char *buf, size_t cap)
{
    size_t off = 0;
    for (int i = 0; off + 40 < cap; i++)
        off += (size_t)sprintf(buf + off, "squall gzip line %d\n", i);
    buf[off] = '\0';
}

static char gz_expected[20000];

static void gzip_get(sq_handler *h)
{
    sq_set_header(h, "Content-Type", "text/plain");
    sq_write(h, gz_expected);
}

typedef struct upload_state {
    size_t n;
    uint64_t sum;
} upload_state;

static void upload_data(sq_handler *h, const char *data, size_t len)
{
    upload_state *st = sq_handler_state(h);
    st->n += len;
    for (size_t i = 0; i < len; i++) st->sum += (unsigned char)data[i];
}

static void upload_post(sq_handler *h)
{
    upload_state *st = sq_handler_state(h);
    sq_writef(h, "%zu %llu", st->n, (unsigned long long)st->sum);
}

#define BIG_CHUNK (64 * 1024)
#define BIG_N     64

static void big_get(sq_handler *h)
{
    static char chunk[BIG_CHUNK];
    memset(chunk, 'b', sizeof chunk);
    sq_set_header(h, "Content-Type", "application/octet-stream");
    for (int i = 0; i < BIG_N; i++) {
        sq_write_bytes(h, chunk, sizeof chunk);
        if (sq_flush(h) < 0) return;
    }
}

static void status_get(sq_handler *h)
{
    sq_set_status(h, atoi(sq_path_arg(h, 0)), NULL);
    sq_write(h, "status body");
}

static void auth_get(sq_handler *h)
{
    sq_str a = sq_http_header_get(sq_handler_request(h), "Authorization");
    sq_write_bytes(h, a.ptr ? a.ptr : "", a.len);
}

static const sq_route routes[] = {
    {"/hello", &(sq_handler_class){.get = hello_get}, NULL, NULL},
    {"/echo",
     &(sq_handler_class){.get = echo_any,
                         .post = echo_any,
                         .put = echo_any,
                         .patch = echo_any,
                         .delete_ = echo_any},
     NULL, NULL},
    {"/slow", &(sq_handler_class){.get = slow_get}, NULL, NULL},
    {"/r307",
     &(sq_handler_class){
         .post = r307_post, .put = r307_post, .patch = r307_post, .delete_ = r307_post},
     NULL, NULL},
    {"/redirect/([0-9]+)", &(sq_handler_class){.get = redirect_get}, NULL, NULL},
    {"/gzip", &(sq_handler_class){.get = gzip_get}, NULL, NULL},
    {"/upload",
     &(sq_handler_class){.post = upload_post,
                         .put = upload_post,
                         .data_received = upload_data,
                         .state_size = sizeof(upload_state)},
     NULL, NULL},
    {"/big", &(sq_handler_class){.get = big_get}, NULL, NULL},
    {"/status/([0-9]+)", &(sq_handler_class){.get = status_get}, NULL, NULL},
    {"/auth", &(sq_handler_class){.get = auth_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static char *url(const char *path)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "http://127.0.0.1:%d%s", port, path);
    return b;
}

static char *ngx_url(const char *path)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "http://127.0.0.1:%d%s", ngx.port, path);
    return b;
}

/* Await a fetch: its status; the response (if any) in *out. */
static int fetch(const char *u, const sq_fetch_request *req, sq_fetch_response **out)
{
    sq_fetch_response *r = NULL;
    int64_t st = sq_await(sq_fetch(u, req), (void **)&r);
    *out = r;
    return (int)st;
}

static void run(sq_task_fn fn, double limit)
{
    sq_test_run_coro(loop, fn, NULL, limit);
}

/* --- basics against squall
 * ------------------------------------------------------------------------ */

static void *basic_coro(void *arg)
{
    sq_fetch_response *r;
    assert_int_equal(fetch(url("/hello"), NULL, &r), 0);
    assert_int_equal(r->code, 200);
    assert_string_equal(r->reason, "OK");
    assert_int_equal(r->body_len, 5);
    assert_string_equal(r->body, "Hello");
    assert_int_equal(r->http_version, 11);
    assert_int_equal(r->error, 0);
    assert_string_equal(r->effective_url, url("/hello"));
    assert_string_equal(r->url, url("/hello"));
    assert_non_null(sq_fetch_response_header(r, "content-length"));
    assert_string_equal(sq_fetch_response_header(r, "Content-Length"), "5");
    assert_null(sq_fetch_response_header(r, "X-Nope"));
    assert_true(r->time.total > 0 && r->time.total < 5);
    assert_true(r->time.starttransfer <= r->time.total);
    assert_true(r->time.connect <= r->time.starttransfer);
    assert_true(r->request_time >= r->time.total);
    sq_fetch_response_free(r);

    /* POST with a body, headers, user agent. */
    const char *hdrs[] = {"X-Test: 42", NULL};
    sq_fetch_request post = {.method = "POST",
                             .body = "a=1&b=\0two",
                             .body_len = 10,
                             .headers = hdrs,
                             .user_agent = "squall-test"};
    assert_int_equal(fetch(url("/echo"), &post, &r), 0);
    assert_int_equal(r->code, 200);
    assert_int_equal(r->body_len, 10);
    assert_memory_equal(r->body, "a=1&b=\0two", 10);
    assert_string_equal(sq_fetch_response_header(r, "X-Method"), "POST");
    assert_string_equal(sq_fetch_response_header(r, "X-Agent"), "squall-test");
    assert_string_equal(sq_fetch_response_header(r, "X-Test-Echo"), "42");
    sq_fetch_response_free(r);

    /* A body alone implies POST; PUT, PATCH, DELETE; default user agent. */
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.body = "x", .body_len = 1}, &r), 0);
    assert_string_equal(sq_fetch_response_header(r, "X-Method"), "POST");
    assert_string_equal(sq_fetch_response_header(r, "X-Agent"), SQ_FETCH_DEFAULT_USER_AGENT);
    sq_fetch_response_free(r);
    const char *methods[] = {"PUT", "PATCH"};
    for (int i = 0; i < 2; i++) {
        sq_fetch_request q = {.method = methods[i], .body = "payload", .body_len = 7};
        assert_int_equal(fetch(url("/echo"), &q, &r), 0);
        assert_string_equal(sq_fetch_response_header(r, "X-Method"), methods[i]);
        assert_string_equal(r->body, "payload");
        sq_fetch_response_free(r);
    }
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.method = "DELETE"}, &r), 0);
    assert_string_equal(sq_fetch_response_header(r, "X-Method"), "DELETE");
    sq_fetch_response_free(r);
    /* An empty POST body is a body. */
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.method = "POST", .body = ""}, &r), 0);
    assert_int_equal(r->body_len, 0);
    sq_fetch_response_free(r);

    /* Tornado's request checks, and their escape hatch. */
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.method = "GET", .body = "x"}, &r),
                     -EINVAL);
    assert_null(r);
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.method = "POST"}, &r), -EINVAL);
    assert_int_equal(fetch(url("/echo"), &(sq_fetch_request){.method = "FROB"}, &r), -EINVAL);
    assert_int_equal(fetch("", NULL, &r), -EINVAL);
    assert_int_equal(fetch("ftp://127.0.0.1/x", NULL, &r), -EINVAL);
    sq_fetch_request odd = {.method = "FROB", .allow_nonstandard_methods = true};
    assert_int_equal(fetch(url("/echo"), &odd, &r), SQ_EHTTP);
    assert_int_equal(r->code, 405);
    sq_fetch_response_free(r);

    /* HTTP errors carry the response; no_raise_error makes them plain responses. */
    assert_int_equal(fetch(url("/status/404"), NULL, &r), SQ_EHTTP);
    assert_non_null(r);
    assert_int_equal(r->code, 404);
    assert_int_equal(r->error, SQ_EHTTP);
    assert_string_equal(r->reason, "Not Found");
    assert_string_equal(r->body, "status body");
    sq_fetch_response_free(r);
    assert_int_equal(fetch(url("/status/503"), &(sq_fetch_request){.no_raise_error = true}, &r), 0);
    assert_int_equal(r->code, 503);
    assert_int_equal(r->error, SQ_EHTTP);
    sq_fetch_response_free(r);
    assert_int_equal(fetch(url("/status/204"), NULL, &r), 0);
    assert_int_equal(r->code, 204);
    assert_int_equal(r->body_len, 0);
    sq_fetch_response_free(r);

    /* HEAD: headers only. */
    assert_int_equal(fetch(url("/hello"), &(sq_fetch_request){.method = "HEAD"}, &r), 0);
    assert_int_equal(r->code, 200);
    assert_int_equal(r->body_len, 0);
    assert_non_null(r->body);
    assert_string_equal(r->body, ""); /* NUL-terminated even when empty */
    sq_fetch_response_free(r);

    /* Through a proxy: squall's server gets the absolute-form request for a host that
     * would not resolve here, and answers it by path. */
    sq_fetch_request px = {.proxy_host = "127.0.0.1", .proxy_port = port};
    assert_int_equal(fetch("http://nonexistent.invalid/hello?i=proxied", &px, &r), 0);
    assert_string_equal(r->body, "hello proxied");
    sq_fetch_response_free(r);
    /* The environment: its no_proxy still exempts a host from a proxy given here (a dead
     * one: the fetch works only if it goes direct), and with no proxy given, http_proxy is
     * not used (squall reads neither from the environment unless a proxy is set). */
    unsetenv("no_proxy"); /* whatever the machine running the tests has */
    unsetenv("NO_PROXY");
    sq_fetch_request dead = {.proxy_host = "127.0.0.1", .proxy_port = ngx_free_port()};
    assert_true(fetch(url("/hello?i=direct"), &dead, &r) < 0); /* through the dead proxy */
    assert_null(r);
    setenv("no_proxy", "127.0.0.1", 1);
    assert_int_equal(fetch(url("/hello?i=direct"), &dead, &r), 0);
    assert_string_equal(r->body, "hello direct");
    sq_fetch_response_free(r);
    unsetenv("no_proxy");
    char env_proxy[64];
    snprintf(env_proxy, sizeof env_proxy, "http://127.0.0.1:%d", dead.proxy_port);
    setenv("http_proxy", env_proxy, 1);
    for (int i = 0; i < 2; i++) { /* a new handle, then the one kept configured */
        assert_int_equal(fetch(url("/hello?i=env"), NULL, &r), 0);
        assert_string_equal(r->body, "hello env");
        sq_fetch_response_free(r);
    }
    unsetenv("http_proxy");

    /* Basic auth reaches the server as an Authorization header. */
    sq_fetch_request au = {.auth_username = "Aladdin", .auth_password = "open sesame"};
    assert_int_equal(fetch(url("/auth"), &au, &r), 0);
    assert_string_equal(r->body, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    sq_fetch_response_free(r);
    return NULL;
}

static void test_basic(void **state)
{
    run(basic_coro, 30);
}

/* --- redirects -----------------------------------------------------------------------------------
 */

static void *redirect_coro(void *arg)
{
    sq_fetch_response *r;
    assert_int_equal(fetch(url("/redirect/3"), NULL, &r), 0);
    assert_int_equal(r->code, 200);
    assert_string_equal(r->body, "done");
    assert_int_equal(r->redirects, 3);
    assert_string_equal(r->effective_url, url("/redirect/0"));
    assert_string_equal(r->url, url("/redirect/3"));
    sq_fetch_response_free(r);
    /* The default limit is 5. */
    assert_int_equal(fetch(url("/redirect/5"), NULL, &r), 0);
    sq_fetch_response_free(r);
    assert_int_equal(fetch(url("/redirect/6"), NULL, &r), SQ_EREDIRECTS);
    assert_null(r);
    assert_int_equal(fetch(url("/redirect/3"), &(sq_fetch_request){.max_redirects = 2}, &r),
                     SQ_EREDIRECTS);
    /* Not followed: the 302 as it is (not an error: it is below 400). */
    assert_int_equal(
        fetch(url("/redirect/3"), &(sq_fetch_request){.no_follow_redirects = true}, &r), 0);
    assert_int_equal(r->code, 302);
    assert_string_equal(sq_fetch_response_header(r, "Location"), "/redirect/2");
    assert_int_equal(r->redirects, 0);
    sq_fetch_response_free(r);
    /* A PUT or PATCH through a 301 or 302 keeps its method and body, as in Tornado (libcurl
     * sent the method without the body); a POST through a 302 becomes a GET. */
    const char *methods[] = {"PUT", "PATCH", "POST"};
    for (int i = 0; i < 3; i++) {
        for (int code = 301; code <= 302; code++) {
            char u[64];
            snprintf(u, sizeof u, "/r307?code=%d&to=/echo", code);
            sq_fetch_request q = {.method = methods[i], .body = "0123456789", .body_len = 10};
            assert_int_equal(fetch(url(u), &q, &r), 0);
            bool post = i == 2;
            assert_string_equal(sq_fetch_response_header(r, "X-Method"), post ? "GET" : methods[i]);
            assert_string_equal(r->body, post ? "" : "0123456789");
            sq_fetch_response_free(r);
        }
    }
    /* A 303 answering a PUT or a DELETE is followed with a GET, without the body, as in
     * Tornado: libcurl sent the same method to the new URL (a DELETE answered "303 ->
     * /collection" deleted that). */
    const char *m303[] = {"PUT", "DELETE"};
    for (int i = 0; i < 2; i++) {
        bool body = i == 0;
        const char *hdrs[] = {"X-Test: kept", "Content-Type: text/plain", NULL};
        sq_fetch_request q = {.method = m303[i],
                              .body = body ? "0123456789" : NULL,
                              .body_len = body ? 10 : 0,
                              .headers = hdrs};
        assert_int_equal(fetch(url("/r307?code=303&to=/echo"), &q, &r), 0);
        assert_int_equal(r->code, 200);
        assert_string_equal(sq_fetch_response_header(r, "X-Method"), "GET");
        assert_string_equal(sq_fetch_response_header(r, "X-Test-Echo"), "kept");
        assert_string_equal(r->body, "");
        assert_int_equal(r->redirects, 1);
        assert_string_equal(r->effective_url, url("/echo"));
        assert_string_equal(r->url, url("/r307?code=303&to=/echo"));
        sq_fetch_response_free(r);
    }
    /* its redirects count against max_redirects with those libcurl followed */
    sq_fetch_request del = {.method = "DELETE", .max_redirects = 3};
    assert_int_equal(fetch(url("/r307?code=303&to=/redirect/3"), &del, &r), SQ_EREDIRECTS);
    del.max_redirects = 4;
    assert_int_equal(fetch(url("/r307?code=303&to=/redirect/3"), &del, &r), 0);
    assert_string_equal(r->body, "done");
    assert_int_equal(r->redirects, 4);
    sq_fetch_response_free(r);
    /* credentials go along to the same origin only */
    char to[128];
    snprintf(to, sizeof to, "/r307?code=303&to=http://localhost:%d/auth", port);
    const char *auth_hdr[] = {"Authorization: Bearer abc", NULL};
    sq_fetch_request creds[] = {{.method = "DELETE", .auth_username = "u", .auth_password = "p"},
                                {.method = "DELETE", .headers = auth_hdr}};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fetch(url("/r307?code=303&to=/auth"), &creds[i], &r), 0);
        assert_string_equal(r->body, i ? "Bearer abc" : "Basic dTpw");
        sq_fetch_response_free(r);
        assert_int_equal(fetch(url(to), &creds[i], &r), 0);
        assert_int_equal(r->code, 200);
        assert_string_equal(r->body, "");
        sq_fetch_response_free(r);
    }
    /* not followed when asked: the 303 as it is */
    sq_fetch_request nf = {.method = "DELETE", .no_follow_redirects = true};
    assert_int_equal(fetch(url("/r307?code=303&to=/echo"), &nf, &r), 0);
    assert_int_equal(r->code, 303);
    assert_string_equal(sq_fetch_response_header(r, "Location"), "/echo");
    sq_fetch_response_free(r);
    /* and a POST answered 303 is still followed with a GET */
    assert_int_equal(fetch(url("/r307?code=303&to=/echo"),
                           &(sq_fetch_request){.method = "POST", .body = "x", .body_len = 1}, &r),
                     0);
    assert_int_equal(r->code, 200);
    assert_string_equal(sq_fetch_response_header(r, "X-Method"), "GET");
    sq_fetch_response_free(r);
    return NULL;
}

static void test_redirects(void **state)
{
    run(redirect_coro, 30);
}

/* --- gzip
 * ----------------------------------------------------------------------------------------- */

static void *gzip_coro(void *arg)
{
    sq_fetch_response *r;
    assert_int_equal(fetch(url("/gzip"), NULL, &r), 0);
    assert_string_equal(sq_fetch_response_header(r, "Content-Encoding"), "gzip");
    assert_int_equal(r->body_len, strlen(gz_expected));
    assert_string_equal(r->body, gz_expected);
    /* Content-Length is the compressed size. */
    assert_true(atol(sq_fetch_response_header(r, "Content-Length")) < (long)r->body_len / 2);
    sq_fetch_response_free(r);
    /* Without decompression nothing asks for gzip, so the server sends it plain. */
    assert_int_equal(fetch(url("/gzip"), &(sq_fetch_request){.no_decompress = true}, &r), 0);
    assert_null(sq_fetch_response_header(r, "Content-Encoding"));
    assert_string_equal(r->body, gz_expected);
    sq_fetch_response_free(r);
    /* Asked for explicitly but not decoded: the raw gzip bytes. */
    const char *ae[] = {"Accept-Encoding: gzip", NULL};
    sq_fetch_request raw = {.no_decompress = true, .headers = ae};
    assert_int_equal(fetch(url("/gzip"), &raw, &r), 0);
    assert_true(r->body_len > 2 && (unsigned char)r->body[0] == 0x1f &&
                (unsigned char)r->body[1] == 0x8b);
    sq_fetch_response_free(r);
    return NULL;
}

static void test_gzip(void **state)
{
    run(gzip_coro, 30);
}

/* --- streaming
 * ------------------------------------------------------------------------------------ */

typedef struct producer {
    size_t total, sent, piece;
    uint64_t sum;
    int calls;
} producer;

static ssize_t produce(char *buf, size_t len, void *arg)
{
    producer *p = arg;
    size_t n = p->total - p->sent;
    if (n > p->piece) n = p->piece;
    if (n > len) n = len;
    for (size_t i = 0; i < n; i++) {
        buf[i] = (char)('a' + (p->sent + i) % 26);
        p->sum += (unsigned char)buf[i];
    }
    p->sent += n;
    p->calls++;
    return (ssize_t)n;
}

static int rewind_producer(void *arg)
{
    producer *p = arg;
    p->sent = 0;
    p->sum = 0;
    return 0;
}

static ssize_t produce_fail(char *buf, size_t len, void *arg)
{
    producer *p = arg;
    if (p->sent >= 10000) return -EPIPE;
    return produce(buf, len, arg);
}

typedef struct sink {
    size_t bytes;
    int pieces;
    int status_lines;
    bool saw_200;
    size_t abort_after;
} sink;

static int on_piece(const char *data, size_t len, void *arg)
{
    sink *s = arg;
    for (size_t i = 0; i < len; i++)
        if (data[i] != 'b') return -EILSEQ;
    s->bytes += len;
    s->pieces++;
    if (s->abort_after && s->bytes >= s->abort_after) return -ENOSPC;
    return 0;
}

static void on_header_line(const char *line, size_t len, void *arg)
{
    sink *s = arg;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        s->status_lines++;
        if (len >= 12 && memcmp(line + 9, "200", 3) == 0) s->saw_200 = true;
    }
}

static void *stream_coro(void *arg)
{
    sq_fetch_response *r;
    /* Upload of unknown length (chunked), then of a known length. */
    for (int known = 0; known < 2; known++) {
        producer p = {.total = 1 << 20, .piece = 7000};
        sq_fetch_request q = {.method = "POST",
                              .body_producer = produce,
                              .body_producer_arg = &p,
                              .body_len = known ? p.total : 0};
        assert_int_equal(fetch(url("/upload"), &q, &r), 0);
        char expect[64];
        snprintf(expect, sizeof expect, "%zu %llu", p.total, (unsigned long long)p.sum);
        assert_string_equal(r->body, expect);
        assert_true(p.calls > 100);
        sq_fetch_response_free(r);
    }
    /* A streamed upload meeting a 307/308 must send its body again: with body_rewind the
     * producer starts over and the target gets the whole body; without, -ESPIPE. */
    for (int code = 307; code <= 308; code++) {
        char u[64];
        snprintf(u, sizeof u, "/r307?code=%d", code);
        producer p = {.total = 100000, .piece = 7000};
        sq_fetch_request q = {.body_producer = produce, .body_producer_arg = &p};
        assert_int_equal(fetch(url(u), &q, &r), -ESPIPE);
        assert_null(r);
        producer p2 = {.total = 100000, .piece = 7000};
        sq_fetch_request q2 = {
            .body_producer = produce, .body_producer_arg = &p2, .body_rewind = rewind_producer};
        assert_int_equal(fetch(url(u), &q2, &r), 0);
        assert_int_equal(r->code, 200);
        char expect[64];
        snprintf(expect, sizeof expect, "%zu %llu", p2.total, (unsigned long long)p2.sum);
        assert_string_equal(r->body, expect);
        sq_fetch_response_free(r);
    }
    /* A producer's error aborts the fetch with it. */
    producer pf = {.total = 1 << 20, .piece = 1000};
    sq_fetch_request qf = {
        .method = "PUT", .body_producer = produce_fail, .body_producer_arg = &pf};
    assert_int_equal(fetch(url("/upload"), &qf, &r), -EPIPE);
    assert_null(r);
    /* A producer that ends before the length it declared: -EPIPE at once (it waited for the
     * request timeout: the server waited for the rest). */
    producer ps = {.total = 100, .piece = 7000};
    sq_fetch_request qs = {.method = "POST",
                           .body_producer = produce,
                           .body_producer_arg = &ps,
                           .body_len = 1000,
                           .request_timeout = 5};
    double t0 = sq_test_now();
    assert_int_equal(fetch(url("/upload"), &qs, &r), -EPIPE);
    assert_null(r);
    assert_true(sq_test_now() - t0 < 2);
    /* One that produces more than it declared: a clear -EINVAL, not a body cut short. */
    producer pl = {.total = 2000, .piece = 7000};
    sq_fetch_request ql = {.method = "POST",
                           .body_producer = produce,
                           .body_producer_arg = &pl,
                           .body_len = 1000,
                           .request_timeout = 5};
    assert_int_equal(fetch(url("/upload"), &ql, &r), -EINVAL);
    assert_null(r);

    /* Download in pieces: nothing is kept. */
    sink s = {0};
    sq_fetch_request d = {.streaming_callback = on_piece,
                          .streaming_arg = &s,
                          .header_callback = on_header_line,
                          .header_arg = &s};
    assert_int_equal(fetch(url("/big"), &d, &r), 0);
    assert_int_equal(r->code, 200);
    assert_int_equal(r->body_len, 0);
    assert_int_equal(s.bytes, (size_t)BIG_CHUNK * BIG_N);
    assert_true(s.pieces > 1);
    assert_int_equal(s.status_lines, 1);
    assert_true(s.saw_200);
    sq_fetch_response_free(r);
    /* The same body whole. */
    assert_int_equal(fetch(url("/big"), NULL, &r), 0);
    assert_int_equal(r->body_len, (size_t)BIG_CHUNK * BIG_N);
    sq_fetch_response_free(r);
    /* A streaming callback's error aborts the fetch with it. */
    sink s2 = {.abort_after = 100000};
    d.streaming_arg = &s2;
    d.header_callback = NULL;
    assert_int_equal(fetch(url("/big"), &d, &r), -ENOSPC);
    assert_null(r);
    /* Redirects: each response's status line reaches the header callback. */
    sink s3 = {0};
    sq_fetch_request h3 = {.header_callback = on_header_line, .header_arg = &s3};
    assert_int_equal(fetch(url("/redirect/2"), &h3, &r), 0);
    assert_int_equal(s3.status_lines, 3);
    sq_fetch_response_free(r);
    return NULL;
}

static void test_streaming(void **state)
{
    run(stream_coro, 60);
}

/* A producer fed from elsewhere (a timer here: 10,000 bytes every 20 ms): with nothing to
 * send it answers SQ_FETCH_PAUSE, and the feeder wakes the transfer with sq_fetch_resume(). */
typedef struct fed {
    producer p;
    size_t avail; /* bytes the producer may have sent by now */
    int pauses, resumes, resume_err;
    sq_future *f;
    sq_timer t;
} fed;

static ssize_t produce_fed(char *buf, size_t len, void *arg)
{
    fed *d = arg;
    if (d->p.sent == d->avail && d->avail < d->p.total) {
        d->pauses++;
        return SQ_FETCH_PAUSE;
    }
    if (len > d->avail - d->p.sent) len = d->avail - d->p.sent;
    return produce(buf, len, &d->p);
}

static void feed(sq_loop *l, sq_timer *t)
{
    fed *d = t->data;
    d->avail = d->avail + 10000 < d->p.total ? d->avail + 10000 : d->p.total;
    int e = sq_fetch_resume(d->f);
    if (e < 0) d->resume_err = e;
    d->resumes++;
    if (d->avail < d->p.total) sq_timer_start(t, 0.02, 0);
}

static void *pause_coro(void *arg)
{
    sq_fetch_response *r;
    for (int known = 0; known < 2; known++) {
        fed d = {.p = {.total = 100000, .piece = 100000}};
        sq_fetch_request q = {.method = "POST",
                              .body_producer = produce_fed,
                              .body_producer_arg = &d,
                              .body_len = known ? d.p.total : 0};
        sq_timer_init(loop, &d.t, feed, &d);
        double t0 = sq_test_now();
        d.f = sq_fetch(url("/upload"), &q);
        sq_timer_start(&d.t, 0.02, 0);
        int64_t st = sq_await(sq_future_retain(d.f), (void **)&r);
        sq_timer_stop(&d.t);
        assert_int_equal(st, 0);
        char expect[64];
        snprintf(expect, sizeof expect, "%zu %llu", d.p.total, (unsigned long long)d.p.sum);
        assert_string_equal(r->body, expect); /* every byte, in order, once */
        sq_fetch_response_free(r);
        /* it waited for the feeder (10 slices, 20 ms apart), pausing between slices */
        assert_true(sq_test_now() - t0 > 0.15);
        assert_true(d.pauses >= 5);
        assert_true(d.pauses <= d.resumes + 1); /* called again only once woken */
        assert_int_equal(d.resume_err, 0);
        /* the fetch is over: nothing to resume */
        assert_int_equal(sq_fetch_resume(d.f), -EALREADY);
        sq_future_release(d.f);
    }
    /* Paused for good: the request timeout ends it. */
    fed stuck = {.p = {.total = 100000, .piece = 100000}};
    sq_fetch_request qs = {.method = "POST",
                           .body_producer = produce_fed,
                           .body_producer_arg = &stuck,
                           .request_timeout = 0.3};
    double t0 = sq_test_now();
    assert_int_equal(fetch(url("/upload"), &qs, &r), -ETIMEDOUT);
    assert_null(r);
    assert_true(sq_test_now() - t0 < 3);
    assert_int_equal(stuck.pauses, 1);
    /* Paused, then cancelled: the transfer goes at once. */
    fed gone = {.p = {.total = 100000, .piece = 100000}};
    sq_fetch_request qg = {
        .method = "POST", .body_producer = produce_fed, .body_producer_arg = &gone};
    sq_future *fg = sq_fetch(url("/upload"), &qg);
    for (int i = 0; i < 200 && !gone.pauses; i++) sq_sleep(0.01);
    assert_int_equal(gone.pauses, 1);
    assert_int_equal(sq_future_cancel(fg), 0);
    assert_int_equal(sq_fetch_resume(fg), -EALREADY);
    sq_future_release(fg);
    /* Not a fetch's future. */
    sq_future *other = sq_future_new(loop);
    assert_int_equal(sq_fetch_resume(other), -EINVAL);
    sq_future_release(other);
    assert_int_equal(sq_fetch_resume(NULL), -EINVAL);
    return NULL;
}

static void test_producer_pause(void **state)
{
    run(pause_coro, 30);
}

/* --- failures
 * ------------------------------------------------------------------------------------- */

/* A "server" that answers anything with a plain-text line and hangs up. */
static void plain_accept(sq_loop *l, sq_io *io, unsigned events)
{
    int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return;
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    if (write(fd, msg, sizeof msg - 1) < 0) { /* the client will see a TLS failure anyway */
    }
    close(fd);
}

/* A raw "server" that reads one request and answers it with the bytes in `reply`, then
 * closes (after reading, so the close is a FIN, not a reset).  Without a reply it answers the
 * first request on each connection and closes the connection at the second without
 * answering, as a server does when its keep-alive timeout strikes as a request arrives:
 * libcurl resends such a request on a new connection. */
typedef struct raw_conn {
    sq_io io;
    const char *reply;
    int requests;
} raw_conn;

static void raw_read(sq_loop *l, sq_io *io, unsigned events)
{
    raw_conn *rc = io->data;
    char buf[8192];
    ssize_t n = read(io->fd, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN) return;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    if (!rc->reply && n > 0 && ++rc->requests == 1) {
        if (write(io->fd, ok, sizeof ok - 1) == sizeof ok - 1) return; /* keep-alive */
    } else if (n > 0 && rc->reply && write(io->fd, rc->reply, strlen(rc->reply)) < 0) {
    }
    sq_io_stop(l, io);
    close(io->fd);
    free(rc);
}

static void raw_accept(sq_loop *l, sq_io *io, unsigned events)
{
    int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    raw_conn *rc = calloc(1, sizeof *rc);
    rc->reply = io->data;
    sq_io_init(&rc->io, fd, raw_read, rc);
    sq_io_start(l, &rc->io, SQ_READ);
}

/* A listener on a free loopback port whose connections `accept_cb` takes (lio's data:
 * `data`); its URL in u.  Returns the listening descriptor. */
static int raw_listen(sq_io *lio, sq_io_cb accept_cb, void *data, char u[64])
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    sq_io_init(lio, lfd, accept_cb, data);
    sq_io_start(loop, lio, SQ_READ);
    snprintf(u, 64, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    return lfd;
}

/* Fetch once from a raw server answering `reply`; the status, the response in *out. */
static int raw_fetch(const char *reply, sq_fetch_response **out)
{
    sq_io lio;
    char u[64];
    int lfd = raw_listen(&lio, raw_accept, (void *)reply, u);
    /* A fresh client: no connection kept from an earlier raw server on a reused port. */
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    *out = NULL;
    int st = (int)sq_await(sq_http_client_fetch(c, u, &(sq_fetch_request){.request_timeout = 5}),
                           (void **)out);
    sq_http_client_free(c);
    sq_io_stop(loop, &lio);
    close(lfd);
    return st;
}

static void *protocol_coro(void *arg)
{
    sq_fetch_response *r;
    /* Header block parsing: reason with spaces, empty and padded values, no-colon junk,
     * repeated names (the first wins). */
    assert_int_equal(raw_fetch("HTTP/1.1 299 Very  Fine Indeed\r\n"
                               "X-Empty:\r\n"
                               "X-Pad: \t padded value \t\r\n"
                               "X-Twice: one\r\n"
                               "X-Twice: two\r\n"
                               "Content-Length: 3\r\n"
                               "\r\n"
                               "abc",
                               &r),
                     0);
    assert_int_equal(r->code, 299);
    assert_string_equal(r->reason, "Very  Fine Indeed");
    assert_string_equal(sq_fetch_response_header(r, "x-empty"), "");
    assert_string_equal(sq_fetch_response_header(r, "X-Pad"), "padded value");
    assert_string_equal(sq_fetch_response_header(r, "X-Twice"), "one");
    assert_int_equal(r->nheaders, 5);
    assert_int_equal(r->body_len, 3);
    assert_string_equal(r->body, "abc");
    sq_fetch_response_free(r);

    /* Not HTTP at all: a protocol error, not "bad URL" (-EINVAL) as libcurl's code says. */
    assert_int_equal(raw_fetch("SSH-2.0-OpenSSH_9.2\r\n", &r), -EPROTO);
    assert_null(r);
    /* gzip that is not gzip: a protocol error, not the catch-all SQ_ECURL. */
    assert_int_equal(raw_fetch("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                               "Content-Length: 10\r\n\r\nnot gzip!!",
                               &r),
                     -EPROTO);
    /* Closed early: with nothing, and in the middle of the body. */
    assert_int_equal(raw_fetch("", &r), SQ_ECLOSED);
    assert_int_equal(raw_fetch("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", &r),
                     SQ_ECLOSED);
    assert_null(r);
    return NULL;
}

static void test_protocol(void **state)
{
    run(protocol_coro, 30);
}

static void *failure_coro(void *arg)
{
    sq_fetch_response *r;
    /* Request timeout. */
    double t0 = sq_test_now();
    assert_int_equal(fetch(url("/slow?s=1"), &(sq_fetch_request){.request_timeout = 0.3}, &r),
                     -ETIMEDOUT);
    double dt = sq_test_now() - t0;
    assert_null(r);
    assert_true(dt >= 0.25 && dt < 2.0);

    /* Connection refused: a port that was bound and closed. */
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ngx_free_port());
    assert_int_equal(fetch(u, NULL, &r), -ECONNREFUSED);
    assert_null(r);

    /* A name under the reserved .invalid TLD never resolves. */
    assert_int_equal(fetch("http://nonexistent.invalid/", NULL, &r), SQ_ERESOLVE);
    assert_null(r);

    /* TLS to a server that answers in plain text fails as TLS. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    sq_io lio;
    sq_io_init(&lio, lfd, plain_accept, NULL);
    sq_io_start(loop, &lio, SQ_READ);
    snprintf(u, sizeof u, "https://127.0.0.1:%d/hello", ntohs(sa.sin_port));
    assert_int_equal(fetch(u, &(sq_fetch_request){.request_timeout = 5}, &r), SQ_ETLS);
    sq_io_stop(loop, &lio);
    close(lfd);

    /* A body larger than the client's max_body_size. */
    sq_http_client *c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_body_size = 1000});
    assert_non_null(c);
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/big"), NULL), (void **)&r), -E2BIG);
    assert_null(r);
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
    sq_fetch_response_free(r);
    sq_http_client_free(c);
    /* The limit is inclusive: a 5-byte body fits max_body_size 5, not 4. */
    c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_body_size = 5});
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
    assert_string_equal(r->body, "Hello");
    sq_fetch_response_free(r);
    sq_http_client_free(c);
    c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_body_size = 4});
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), -E2BIG);
    assert_null(r);
    sq_http_client_free(c);
    return NULL;
}

static void test_failures(void **state)
{
    run(failure_coro, 30);
}

/* A socket the loop cannot watch fails its fetch at once (not after its timeout), and the
 * client goes on working. */
static int failing_io_start(sq_loop *l, sq_io *io, unsigned events)
{
    return -ENOSPC; /* what epoll_ctl says past max_user_watches */
}

static void *registration_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    sq_fetch_response *r = NULL;
    sq__client_set_io_start(failing_io_start);
    double t0 = sq_test_now();
    int64_t st =
        sq_await(sq_http_client_fetch(c, url("/hello"), &(sq_fetch_request){.request_timeout = 20}),
                 (void **)&r);
    double took = sq_test_now() - t0;
    sq__client_set_io_start(NULL);
    assert_int_equal(st, -ENOSPC);
    assert_null(r);
    assert_true(took < 2.0);
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
    assert_string_equal(r->body, "Hello");
    sq_fetch_response_free(r);
    sq_http_client_free(c);
    return NULL;
}

static void test_socket_registration_fails(void **state)
{
    run(registration_coro, 30);
}

/* Two fetches whose sockets cannot be watched fail in the same pass of libcurl, and the
 * first one's done-callback cancels the other ("one failed: drop its siblings"): the second
 * leaves the client's list of failed transfers as it is freed (it was read after its free). */
static sq_future *sib[2];
static int sib_calls;

static void cancel_sibling(sq_future *f, void *arg)
{
    sib_calls++;
    sq_future_cancel(sib[f == sib[0] ? 1 : 0]);
}

static void *sibling_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    sib_calls = 0;
    sq__client_set_io_start(failing_io_start);
    for (int i = 0; i < 2; i++)
        sib[i] = sq_http_client_fetch(c, url("/hello"), &(sq_fetch_request){.request_timeout = 20});
    for (int i = 0; i < 2; i++) sq_future_add_done_callback(sib[i], cancel_sibling, NULL);
    for (int i = 0; i < 200 && !(sq_future_done(sib[0]) && sq_future_done(sib[1])); i++)
        sq_sleep(0.01);
    sq__client_set_io_start(NULL);
    assert_true(sq_future_done(sib[0]) && sq_future_done(sib[1]));
    assert_int_equal(sib_calls, 2);
    for (int i = 0; i < 2; i++) {
        int64_t st = sq_future_status(sib[i]);
        assert_true(st == -ENOSPC || st == -ECANCELED);
        sq_future_release(sib[i]);
    }
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
    assert_string_equal(r->body, "Hello");
    sq_fetch_response_free(r);
    sq_http_client_free(c);
    return NULL;
}

static void test_registration_fails_cancel_sibling(void **state)
{
    run(sibling_coro, 30);
}

/* The default client belongs to its loop: a loop freed with it still allocated (and a fetch
 * still pending on it) frees it; LeakSanitizer checks at exit. */
static void *default_client_coro(void *arg)
{
    int *p = arg;
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/hello", *p);
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_fetch(u, NULL), (void **)&r), 0);
    assert_string_equal(r->body, "Hello");
    sq_fetch_response_free(r);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/slow?s=30", *p);
    sq_future_release(sq_fetch(u, NULL)); /* still running when the loop goes */
    return NULL;
}

static void test_default_client_freed_with_loop(void **state)
{
    sq_loop *l = sq_loop_new(NULL);
    sq_loop *prev = sq_loop_current();
    sq_loop_make_current(l);
    sq_app *a = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    assert_int_equal(sq_app_listen(a, 0, "127.0.0.1"), 0);
    int p = sq_http_server_port(sq_app_server(a));
    sq_test_run_coro(l, default_client_coro, &p, 20);
    for (int i = 0; i < 10; i++) sq_loop_run_once(l, false);
    sq_app_free(a);
    sq_loop_free(l); /* the default client and its pending fetch go with it */
    sq_loop_make_current(prev);
}

/* --- reuse, queue, cancellation
 * --------------------------------------------------------------------- */

static void *reuse_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    long conns = 0;
    size_t before = sq_http_server_connections(sq_app_server(app));
    for (int i = 0; i < 100; i++) {
        sq_fetch_response *r = NULL;
        assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
        assert_string_equal(r->body, "Hello");
        conns += r->num_connects;
        if (i == 50) assert_int_equal(sq_http_server_connections(sq_app_server(app)), before + 1);
        sq_fetch_response_free(r);
    }
    assert_int_equal(conns, 1);
    sq_http_client_free(c);
    return NULL;
}

static void test_reuse(void **state)
{
    run(reuse_coro, 30);
}

/* One client reuses its easy handles: a plain fetch (no options of its own) takes a handle
 * configured by an earlier plain fetch as it is, any other is set up from a reset handle.
 * Nothing of one fetch's method, body, headers or callbacks may reach the next. */
static size_t counted;

static int count_piece(const char *data, size_t len, void *arg)
{
    counted += len;
    return 0;
}

/* One fetch of /echo on c: the response's X-Method, X-Agent, X-Test-Echo and body. */
static void echo_fetch(sq_http_client *c, const sq_fetch_request *req, const char *method,
                       const char *agent, const char *xtest, const char *body)
{
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/echo"), req), (void **)&r), 0);
    assert_string_equal(sq_fetch_response_header(r, "X-Method"), method);
    assert_string_equal(sq_fetch_response_header(r, "X-Agent"), agent);
    const char *x = sq_fetch_response_header(r, "X-Test-Echo");
    if (xtest)
        assert_string_equal(x ? x : "(none)", xtest);
    else
        assert_null(x);
    assert_string_equal(r->body, body);
    sq_fetch_response_free(r);
}

static void *easy_reuse_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    const char *ua = SQ_FETCH_DEFAULT_USER_AGENT;
    const char *hdrs[] = {"X-Test: mine", NULL};
    for (int round = 0; round < 3; round++) {
        echo_fetch(c, NULL, "GET", ua, NULL, "");
        echo_fetch(c, NULL, "GET", ua, NULL, "");
        echo_fetch(c,
                   &(sq_fetch_request){.method = "PUT",
                                       .body = "put body",
                                       .body_len = 8,
                                       .headers = hdrs,
                                       .user_agent = "agent-x"},
                   "PUT", "agent-x", "mine", "put body");
        echo_fetch(c, NULL, "GET", ua, NULL, "");
        echo_fetch(c, &(sq_fetch_request){.body = "abc", .body_len = 3}, "POST", ua, NULL, "abc");
        /* Plain but streamed: the body goes to the callback, and only this once. */
        counted = 0;
        echo_fetch(c,
                   &(sq_fetch_request){.method = "POST",
                                       .body = "streamed",
                                       .body_len = 8,
                                       .streaming_callback = count_piece},
                   "POST", ua, NULL, "");
        assert_int_equal(counted, 8);
        counted = 0;
        echo_fetch(c, &(sq_fetch_request){.streaming_callback = count_piece}, "GET", ua, NULL, "");
        echo_fetch(c, NULL, "GET", ua, NULL, "");
        assert_int_equal(counted, 0);
        /* HEAD leaves no "no body" behind. */
        sq_fetch_response *r = NULL;
        assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello?i=h"),
                                                       &(sq_fetch_request){.method = "HEAD"}),
                                  (void **)&r),
                         0);
        assert_string_equal(r->body, "");
        sq_fetch_response_free(r);
        assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello?i=g"), NULL), (void **)&r),
                         0);
        assert_string_equal(r->body, "hello g");
        sq_fetch_response_free(r);
        /* A failed set-up (a GET with a body) does not leave its options on a handle. */
        assert_int_equal(
            sq_await(sq_http_client_fetch(
                         c, url("/echo"),
                         &(sq_fetch_request){.method = "GET", .body = "x", .body_len = 1}),
                     NULL),
            -EINVAL);
        echo_fetch(c, NULL, "GET", ua, NULL, "");
    }
    sq_http_client_free(c);
    return NULL;
}

static void test_easy_reuse(void **state)
{
    run(easy_reuse_coro, 30);
}

/* Keep-alive sockets stay in the epoll set between transfers (parked), and come back for the
 * next transfer on their connection without a system call. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Fetch u on c, expect `body`; the response's num_connects. */
static long fetch_body(sq_http_client *c, const char *u, const char *body)
{
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_http_client_fetch(c, u, NULL), (void **)&r), 0);
    assert_string_equal(r->body, body);
    long n = r->num_connects;
    sq_fetch_response_free(r);
    return n;
}

static void *parked_coro(void *arg)
{
    /* A second server that closes idle connections after 0.2 s. */
    sq_app *a2 = sq_app_new(
        routes, &(sq_app_settings){.no_access_log = true, .http = {.idle_timeout = 0.2}});
    assert_non_null(a2);
    assert_true(sq_app_listen(a2, 0, "127.0.0.1") >= 0);
    char u2[128];
    snprintf(u2, sizeof u2, "http://127.0.0.1:%d/hello?i=2",
             sq_http_server_port(sq_app_server(a2)));
    sq_http_client *c = sq_http_client_new(NULL, NULL);

    /* Fetches in a row share one connection. */
    long conns = 0;
    for (int i = 0; i < 20; i++) conns += fetch_body(c, url("/hello?i=1"), "hello 1");
    assert_int_equal(conns, 1);

    /* The server closes the connection while its socket is parked: the hang-up ends the
     * watch (no loop spinning on it), and the next fetch connects again. */
    assert_int_equal(fetch_body(c, u2, "hello 2"), 1);
    double cpu0 = cpu_seconds(), t0 = sq_test_now();
    sq_sleep(0.6);
    double cpu = cpu_seconds() - cpu0, dt = sq_test_now() - t0;
    print_message("0.6 s beside a parked socket closed by its server: %.3f s of CPU\n", cpu);
    assert_true(cpu < dt / 2);
    assert_int_equal(fetch_body(c, u2, "hello 2"), 1);
    assert_int_equal(fetch_body(c, url("/hello?i=1"), "hello 1"), 0);
    sq_http_client_free(c);

    /* One connection kept (max_clients 1): alternating between the servers makes libcurl close
     * a connection just parked, through the client's close callback, at least once a round;
     * the new socket often gets the same descriptor. */
    c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1});
    conns = 0;
    for (int i = 0; i < 10; i++) {
        conns += fetch_body(c, url("/hello?i=1"), "hello 1");
        conns += fetch_body(c, u2, "hello 2");
    }
    assert_true(conns >= 10 && conns <= 20);
    sq_http_client_free(c);
    sq_app_free(a2);
    return NULL;
}

static void test_parked_sockets(void **state)
{
    run(parked_coro, 30);
}

/* libcurl counts such resends in the easy handle (at the sixth it gives up at once), and only
 * curl_easy_reset zeroes the count: a handle reused as it is must not carry it on. */
static void *resend_coro(void *arg)
{
    sq_io lio;
    char u[64];
    int lfd = raw_listen(&lio, raw_accept, NULL, u); /* answers once per connection */
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    long conns = 0;
    for (int i = 0; i < 12; i++) conns += fetch_body(c, u, "ok");
    assert_int_equal(conns, 12); /* each fetch after the first was resent once */
    sq_http_client_free(c);
    sq_io_stop(loop, &lio);
    close(lfd);
    return NULL;
}

static void test_resend_count(void **state)
{
    run(resend_coro, 30);
}

#define NCONC 1000

static int ticks;

static void tick(void *arg)
{
    ticks++;
}

static void *concurrent_coro(void *arg)
{
    sq_raise_fd_limit();
    sq_http_client *c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 100});
    static sq_future *fs[NCONC];
    static void *vals[NCONC];
    static int64_t sts[NCONC];
    char path[64];
    for (int i = 0; i < NCONC; i++) {
        /* Each takes >= 20 ms on the server: ten waves of 100, so >= 0.2 s in all. */
        snprintf(path, sizeof path, "/hello?i=%d&d=0.02", i);
        fs[i] = sq_http_client_fetch(c, url(path), NULL);
    }
    assert_int_equal(sq_http_client_active(c), 100);
    assert_int_equal(sq_http_client_queued(c), NCONC - 100);
    sq_periodic p;
    ticks = 0;
    sq_periodic_init(loop, &p, 0.01, tick, NULL);
    sq_periodic_start(&p);
    double t0 = sq_test_now();
    assert_int_equal(sq_gather(fs, NCONC, vals, sts), 0);
    double dt = sq_test_now() - t0;
    sq_periodic_stop(&p);
    long conns = 0;
    char expect[64];
    for (int i = 0; i < NCONC; i++) {
        sq_fetch_response *r = vals[i];
        assert_int_equal(sts[i], 0);
        snprintf(expect, sizeof expect, "hello %d", i);
        assert_string_equal(r->body, expect);
        conns += r->num_connects;
        sq_fetch_response_free(r);
    }
    /* Slots are reused: at most one connection per slot (plus a few re-opened). */
    assert_true(conns >= 100 && conns <= 200);
    /* The loop kept ticking while the fetches ran: about one tick per 10 ms. */
    print_message("1000 fetches in %.2f s, %d ticks, %ld connections\n", dt, ticks, conns);
    assert_true(dt >= 0.2);
    assert_true(ticks >= (int)(dt / 0.01 / 4));
    assert_true(ticks >= 5);
    assert_int_equal(sq_http_client_active(c), 0);
    assert_int_equal(sq_http_client_queued(c), 0);
    sq_http_client_free(c);
    return NULL;
}

static void test_concurrent(void **state)
{
    run(concurrent_coro, 60);
}

static void *queue_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(
        NULL, &(sq_http_client_settings){.max_clients = 1, .queue_timeout = 0.2});
    sq_future *slow = sq_http_client_fetch(c, url("/slow?s=0.6"), NULL);
    sq_future *waits = sq_http_client_fetch(c, url("/hello"), NULL);
    assert_int_equal(sq_http_client_queued(c), 1);
    sq_fetch_response *r = NULL;
    double t0 = sq_test_now();
    assert_int_equal(sq_await(waits, (void **)&r), SQ_EQUEUE_TIMEOUT);
    assert_true(sq_test_now() - t0 < 0.5);
    assert_null(r);
    assert_int_equal(sq_await(slow, (void **)&r), 0);
    assert_string_equal(r->body, "slow");
    assert_true(r->time.queue < 0.05);
    sq_fetch_response_free(r);

    /* Without a queue timeout a queued fetch waits its turn; time.queue says how long. */
    sq_http_client_free(c);
    c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1, .queue_timeout = -1});
    slow = sq_http_client_fetch(c, url("/slow?s=0.3"), NULL);
    waits = sq_http_client_fetch(c, url("/hello"), NULL);
    assert_int_equal(sq_await(waits, (void **)&r), 0);
    assert_true(r->time.queue >= 0.25);
    assert_true(r->request_time >= r->time.queue);
    sq_fetch_response_free(r);
    assert_int_equal(sq_await(slow, (void **)&r), 0);
    sq_fetch_response_free(r);
    sq_http_client_free(c);
    return NULL;
}

static void test_queue(void **state)
{
    run(queue_coro, 30);
}

static int cancel_from_cb(const char *data, size_t len, void *arg)
{
    sq_future_cancel(*(sq_future **)arg);
    return 0;
}

static void *cancel_coro(void *arg)
{
    sq_http_client *c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1});
    /* An active fetch and a queued one, both cancelled. */
    sq_future *a = sq_http_client_fetch(c, url("/slow?s=1"), NULL);
    sq_future *b = sq_http_client_fetch(c, url("/slow?s=1"), NULL);
    sq_sleep(0.1);
    assert_int_equal(sq_http_client_active(c), 1);
    assert_int_equal(sq_http_client_queued(c), 1);
    double t0 = sq_test_now();
    assert_int_equal(sq_future_cancel(b), 0);
    assert_int_equal(sq_http_client_queued(c), 0);
    assert_int_equal(sq_future_cancel(a), 0);
    assert_int_equal(sq_http_client_active(c), 0);
    assert_int_equal(sq_await(a, NULL), -ECANCELED);
    assert_int_equal(sq_await(b, NULL), -ECANCELED);
    assert_true(sq_test_now() - t0 < 0.5);
    /* Cancelled from inside libcurl (a streaming callback): deferred, then removed. */
    sq_future *f = NULL;
    sq_fetch_request q = {.streaming_callback = cancel_from_cb, .streaming_arg = &f};
    f = sq_http_client_fetch(c, url("/big"), &q);
    sq_future_retain(f);
    assert_int_equal(sq_await(f, NULL), -ECANCELED);
    sq_sleep(0.05);
    assert_int_equal(sq_http_client_active(c), 0);
    sq_future_release(f);
    /* The client still works, and sq_with_timeout cancels a fetch. */
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_with_timeout(sq_http_client_fetch(c, url("/slow?s=1"), NULL), 0.1),
                              (void **)&r),
                     -ETIMEDOUT);
    assert_int_equal(sq_http_client_active(c), 0);
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/hello"), NULL), (void **)&r), 0);
    sq_fetch_response_free(r);
    /* Freeing a client with fetches in flight cancels them. */
    a = sq_http_client_fetch(c, url("/slow?s=1"), NULL);
    b = sq_http_client_fetch(c, url("/slow?s=1"), NULL);
    sq_http_client_free(c);
    assert_int_equal(sq_await(a, NULL), -ECANCELED);
    assert_int_equal(sq_await(b, NULL), -ECANCELED);
    return NULL;
}

static void test_cancel(void **state)
{
    run(cancel_coro, 30);
}

/* --- ownership: a response nobody takes is freed with its future (LSan checks) ---------- */

typedef struct seen {
    int calls;
    int64_t status;
    bool had_response;
} seen;

static void seen_cb(sq_future *f, void *arg)
{
    seen *s = arg;
    s->calls++;
    s->status = sq_future_status(f);
    s->had_response = sq_future_value(f) != NULL; /* a peek: the future keeps it */
}

static void *fire_and_forget_coro(void *arg)
{
    /* Completed, peeked at, dropped. */
    sq_future *f = sq_fetch(url("/hello"), NULL);
    assert_int_equal(sq_await(sq_future_retain(f), NULL), 0);
    sq_fetch_response *r = sq_future_value(f);
    assert_non_null(r);
    assert_int_equal(r->code, 200);
    sq_future_release(f);
    /* Released while pending: it completes later and the response goes with the future. */
    seen s = {0};
    f = sq_fetch(url("/hello?d=0.05"), NULL);
    assert_int_equal(sq_future_add_done_callback(f, seen_cb, &s), 0);
    sq_future_release(f);
    for (int i = 0; i < 200 && !s.calls; i++) sq_sleep(0.01);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, 0);
    assert_true(s.had_response);
    /* Pure fire and forget: the teardown's leak check covers it. */
    sq_future_release(sq_fetch(url("/hello"), NULL));
    /* Awaited without a value pointer, also with SQ_EHTTP (which carries a response). */
    assert_int_equal(sq_await(sq_fetch(url("/hello"), NULL), NULL), 0);
    assert_int_equal(sq_await(sq_fetch(url("/status/404"), NULL), NULL), SQ_EHTTP);
    /* Through sq_with_timeout and sq_gather without values. */
    assert_int_equal(sq_await(sq_with_timeout(sq_fetch(url("/hello"), NULL), 5.0), NULL), 0);
    sq_future *fs[2] = {sq_fetch(url("/hello"), NULL), sq_fetch(url("/status/500"), NULL)};
    assert_int_equal(sq_gather(fs, 2, NULL, NULL), SQ_EHTTP);
    /* Taken through sq_with_timeout: the caller owns it, the futures do not free it. */
    r = NULL;
    assert_int_equal(sq_await(sq_with_timeout(sq_fetch(url("/hello"), NULL), 5.0), (void **)&r), 0);
    assert_int_equal(r->code, 200);
    sq_fetch_response_free(r);
    sq_sleep(0.1); /* let the fire-and-forget fetch finish */
    return NULL;
}

static void test_fire_and_forget(void **state)
{
    run(fire_and_forget_coro, 30);
}

/* --- reentrancy: user code that frees the client or fetches from inside the client ---------- */

typedef struct reentry {
    sq_http_client *c;
    sq_future *inner; /* a fetch started from a callback */
    int calls;
    int64_t status; /* of the future a done callback saw */
} reentry;

static void free_client_cb(sq_future *f, void *arg)
{
    reentry *re = arg;
    re->calls++;
    re->status = sq_future_status(f);
    sq_fetch_response_free(sq_future_take_value(f));
    sq_http_client_free(re->c);
}

static void refetch_cb(sq_future *f, void *arg)
{
    reentry *re = arg;
    if (!re->calls++) re->inner = sq_http_client_fetch(re->c, url("/hello"), NULL);
}

/* Fetches once from inside libcurl (a streaming callback): the fetch must start once libcurl
 * returns, not fail because libcurl refuses curl_multi_add_handle from its callbacks. */
static int fetch_from_cb(const char *data, size_t len, void *arg)
{
    reentry *re = arg;
    if (!re->calls++) re->inner = sq_http_client_fetch(re->c, url("/hello?i=inner"), NULL);
    return 0;
}

/* Cancels re->inner from inside libcurl: its done callbacks then run inside libcurl too. */
static int cancel_inner_cb(const char *data, size_t len, void *arg)
{
    reentry *re = arg;
    if (!re->calls) sq_future_cancel(re->inner);
    return 0;
}

/* Frees the client from inside libcurl: deferred until libcurl has returned. */
static int free_from_cb(const char *data, size_t len, void *arg)
{
    reentry *re = arg;
    if (!re->calls++) sq_http_client_free(re->c);
    return 0;
}

static void *free_in_done_coro(void *arg)
{
    sq_fetch_response *r = NULL;
    /* A done callback of a completed fetch frees the client while another fetch waits in
     * the queue: the client must not touch its multi handle (or pump its queue) after. */
    reentry re = {.c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1})};
    sq_future *a = sq_http_client_fetch(re.c, url("/hello"), NULL);
    sq_future *b = sq_http_client_fetch(re.c, url("/hello"), NULL);
    assert_int_equal(sq_future_add_done_callback(a, free_client_cb, &re), 0);
    assert_int_equal(sq_await(b, (void **)&r), -ECANCELED);
    assert_null(r);
    assert_int_equal(re.calls, 1);
    assert_int_equal(re.status, 0);
    sq_future_release(a);
    return NULL;
}

static void *free_in_cancel_coro(void *arg)
{
    /* A done callback of a CANCELLED fetch frees the client: the fetch's own cleanup must
     * not run after it on freed memory. */
    reentry re = {.c = sq_http_client_new(NULL, NULL)};
    sq_future *a = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    sq_future *b = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    sq_sleep(0.05);
    assert_int_equal(sq_future_add_done_callback(a, free_client_cb, &re), 0);
    assert_int_equal(sq_future_cancel(a), 0);
    assert_int_equal(re.calls, 1);
    assert_int_equal(re.status, -ECANCELED);
    assert_int_equal(sq_await(b, NULL), -ECANCELED); /* freeing the client cancelled it */
    sq_future_release(a);

    /* Same through sq_with_timeout, on a queued fetch. */
    re = (reentry){.c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1})};
    a = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    b = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    assert_int_equal(sq_future_add_done_callback(b, free_client_cb, &re), 0);
    assert_int_equal(sq_await(sq_with_timeout(b, 0.1), NULL), -ETIMEDOUT);
    assert_int_equal(re.calls, 1);
    assert_int_equal(sq_await(a, NULL), -ECANCELED);
    return NULL;
}

static void *fetch_in_cb_coro(void *arg)
{
    sq_fetch_response *r = NULL;
    /* A fetch started from inside a streaming callback runs (it used to fail with
     * SQ_ECURL: libcurl refuses curl_multi_add_handle from its callbacks). */
    reentry re = {.c = sq_http_client_new(NULL, NULL)};
    sq_fetch_request q = {.streaming_callback = fetch_from_cb, .streaming_arg = &re};
    assert_int_equal(sq_await(sq_http_client_fetch(re.c, url("/big"), &q), (void **)&r), 0);
    sq_fetch_response_free(r);
    assert_non_null(re.inner);
    assert_int_equal(sq_await(re.inner, (void **)&r), 0);
    assert_string_equal(r->body, "hello inner");
    sq_fetch_response_free(r);
    /* …even with every slot taken: it queues and starts in turn. */
    sq_http_client_free(re.c);
    re = (reentry){.c = sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 1})};
    assert_int_equal(sq_await(sq_http_client_fetch(re.c, url("/big"), &q), (void **)&r), 0);
    sq_fetch_response_free(r);
    assert_int_equal(sq_await(re.inner, (void **)&r), 0);
    assert_string_equal(r->body, "hello inner");
    sq_fetch_response_free(r);
    sq_http_client_free(re.c);
    return NULL;
}

static void *free_in_cb_coro(void *arg)
{
    sq_fetch_response *r = NULL;
    /* The client freed from inside libcurl: its fetch ends cancelled, nothing crashes. */
    reentry re = {.c = sq_http_client_new(NULL, NULL)};
    sq_fetch_request qf = {.streaming_callback = free_from_cb, .streaming_arg = &re};
    sq_future *a = sq_http_client_fetch(re.c, url("/big"), &qf);
    sq_future *b = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    assert_int_equal(sq_await(a, (void **)&r), -ECANCELED);
    assert_null(r);
    assert_int_equal(sq_await(b, NULL), -ECANCELED);
    assert_int_equal(re.calls, 1);

    /* A streaming callback cancels another fetch whose done callback frees the client: all
     * of it inside libcurl. */
    re = (reentry){.c = sq_http_client_new(NULL, NULL)};
    sq_fetch_request qc = {.streaming_callback = cancel_inner_cb, .streaming_arg = &re};
    re.inner = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    assert_int_equal(sq_future_add_done_callback(re.inner, free_client_cb, &re), 0);
    a = sq_http_client_fetch(re.c, url("/big"), &qc);
    assert_int_equal(sq_await(a, (void **)&r), -ECANCELED);
    assert_null(r);
    assert_int_equal(re.calls, 1);
    assert_int_equal(re.status, -ECANCELED);
    assert_int_equal(sq_await(re.inner, NULL), -ECANCELED);
    return NULL;
}

static void *fetch_while_freeing_coro(void *arg)
{
    /* A fetch on a client being freed (from a done callback) fails at once, cancelled. */
    reentry re = {.c = sq_http_client_new(NULL, NULL)};
    sq_future *a = sq_http_client_fetch(re.c, url("/slow?s=1"), NULL);
    assert_int_equal(sq_future_add_done_callback(a, refetch_cb, &re), 0);
    sq_http_client_free(re.c);
    assert_int_equal(re.calls, 1);
    assert_non_null(re.inner);
    assert_true(sq_future_done(re.inner));
    assert_int_equal(sq_future_status(re.inner), -ECANCELED);
    sq_future_release(re.inner);
    assert_int_equal(sq_await(a, NULL), -ECANCELED);
    return NULL;
}

static void test_free_in_done(void **state)
{
    run(free_in_done_coro, 30);
}
static void test_free_in_cancel(void **state)
{
    run(free_in_cancel_coro, 30);
}
static void test_fetch_in_cb(void **state)
{
    run(fetch_in_cb_coro, 30);
}
static void test_free_in_cb(void **state)
{
    run(free_in_cb_coro, 30);
}
static void test_fetch_while_freeing(void **state)
{
    run(fetch_while_freeing_coro, 30);
}

static void fetch_in_header_cb(const char *line, size_t len, void *arg)
{
    int *n = arg;
    if ((*n)++ == 0) sq_future_release(sq_fetch(ngx_url("/small.txt"), NULL));
}

/* sq_fetch_sync's private loop must not leave a default client behind (a request callback
 * that used sq_fetch made one): LeakSanitizer would report it, and a later loop allocated
 * at the same address would pick up a client bound to the freed loop. */
static void test_sync_default_client(void **state)
{
    /* Against nginx: squall's server runs on `loop`, which a blocking fetch does not run. */
    if (!have_nginx) skip();
    int n = 0;
    sq_fetch_response *r = NULL;
    sq_fetch_request q = {.header_callback = fetch_in_header_cb, .header_arg = &n};
    int fds = sq_test_count_fds();
    assert_int_equal(sq_fetch_sync(ngx_url("/small.txt"), &q, &r), 0);
    assert_true(n > 0);
    assert_string_equal(r->body, "small file\n");
    sq_fetch_response_free(r);
    /* The inner fetch's client (and its connection) went with the private loop. */
    assert_int_equal(sq_test_count_fds(), fds);
    assert_ptr_equal(sq_loop_current(), loop);
    /* This thread's own default client is still the one of `loop`. */
    sq_http_client *d = sq_http_client_default(NULL);
    assert_non_null(d);
    assert_ptr_equal(d, sq_http_client_default(loop));
}

/* --- client defaults ----------------------------------------------------------------------------
 */

static void *defaults_coro(void *arg)
{
    const char *hdrs[] = {"X-Test: from-defaults", NULL};
    sq_fetch_request defs = {
        .user_agent = "defaults-agent", .headers = hdrs, .no_raise_error = true};
    sq_http_client *c = sq_http_client_new(NULL, &(sq_http_client_settings){.defaults = &defs});
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/echo"), NULL), (void **)&r), 0);
    assert_string_equal(sq_fetch_response_header(r, "X-Agent"), "defaults-agent");
    assert_string_equal(sq_fetch_response_header(r, "X-Test-Echo"), "from-defaults");
    sq_fetch_response_free(r);
    sq_fetch_request own = {.user_agent = "own"};
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/echo"), &own), (void **)&r), 0);
    assert_string_equal(sq_fetch_response_header(r, "X-Agent"), "own");
    sq_fetch_response_free(r);
    assert_int_equal(sq_await(sq_http_client_fetch(c, url("/status/500"), NULL), (void **)&r), 0);
    assert_int_equal(r->code, 500);
    sq_fetch_response_free(r);
    /* Plain fetches in a row share a configured handle; the defaults' header list is each
     * transfer's own (a handle pointing at the previous one's would be a use after free). */
    for (int i = 0; i < 3; i++) echo_fetch(c, NULL, "GET", "defaults-agent", "from-defaults", "");
    sq_http_client_free(c);
    return NULL;
}

static void test_defaults(void **state)
{
    run(defaults_coro, 30);
}

/* --- against nginx -------------------------------------------------------------------------------
 */

#define NGX_BIG (8u << 20)

static const char ngx_locations[] =
    "    location = /r1 { return 302 /r2; }\n"
    "    location = /r2 { return 301 /small.txt; }\n"
    "    location = /loop { return 302 /loop; }\n"
    "    location = /post { client_body_in_single_buffer on; return 200 \"posted\\n\"; }\n"
    "    location = /text.txt { gzip on; gzip_min_length 1000; gzip_types text/plain; }\n";

static char ngx_text[20000];

static void *nginx_coro(void *arg)
{
    sq_fetch_response *r;
    assert_int_equal(fetch(ngx_url("/small.txt"), NULL, &r), 0);
    assert_int_equal(r->code, 200);
    assert_string_equal(r->body, "small file\n");
    assert_non_null(strstr(sq_fetch_response_header(r, "Server"), "nginx"));
    sq_fetch_response_free(r);

    /* Redirect chain 302 -> 301 -> file. */
    assert_int_equal(fetch(ngx_url("/r1"), NULL, &r), 0);
    assert_int_equal(r->redirects, 2);
    assert_string_equal(r->body, "small file\n");
    assert_string_equal(r->effective_url, ngx_url("/small.txt"));
    sq_fetch_response_free(r);
    assert_int_equal(fetch(ngx_url("/r1"), &(sq_fetch_request){.max_redirects = 1}, &r),
                     SQ_EREDIRECTS);
    assert_int_equal(fetch(ngx_url("/loop"), NULL, &r), SQ_EREDIRECTS);
    assert_int_equal(fetch(ngx_url("/r1"), &(sq_fetch_request){.no_follow_redirects = true}, &r),
                     0);
    assert_int_equal(r->code, 302);
    assert_string_equal(r->reason, "Moved Temporarily");
    sq_fetch_response_free(r);

    /* gzip. */
    assert_int_equal(fetch(ngx_url("/text.txt"), NULL, &r), 0);
    assert_string_equal(sq_fetch_response_header(r, "Content-Encoding"), "gzip");
    assert_int_equal(r->body_len, strlen(ngx_text));
    assert_string_equal(r->body, ngx_text);
    sq_fetch_response_free(r);

    /* A large file streamed. */
    sink s = {0};
    sq_fetch_request d = {.streaming_callback = on_piece, .streaming_arg = &s};
    assert_int_equal(fetch(ngx_url("/big.bin"), &d, &r), 0);
    assert_int_equal(s.bytes, NGX_BIG);
    sq_fetch_response_free(r);

    /* POST, plain and streamed. */
    assert_int_equal(fetch(ngx_url("/post"), &(sq_fetch_request){.body = "hi", .body_len = 2}, &r),
                     0);
    assert_string_equal(r->body, "posted\n");
    sq_fetch_response_free(r);
    producer p = {.total = 300000, .piece = 5000};
    sq_fetch_request up = {.method = "POST", .body_producer = produce, .body_producer_arg = &p};
    assert_int_equal(fetch(ngx_url("/post"), &up, &r), 0);
    assert_string_equal(r->body, "posted\n");
    assert_int_equal(p.sent, p.total);
    sq_fetch_response_free(r);

    /* Errors. */
    assert_int_equal(fetch(ngx_url("/missing"), NULL, &r), SQ_EHTTP);
    assert_int_equal(r->code, 404);
    sq_fetch_response_free(r);
    assert_int_equal(fetch(ngx_url("/small.txt"), &(sq_fetch_request){.method = "DELETE"}, &r),
                     SQ_EHTTP);
    assert_int_equal(r->code, 405);
    sq_fetch_response_free(r);

    /* 100 sequential fetches, one connection. */
    sq_http_client *c = sq_http_client_new(NULL, NULL);
    long conns = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(
            sq_await(sq_http_client_fetch(c, ngx_url("/small.txt"), NULL), (void **)&r), 0);
        conns += r->num_connects;
        sq_fetch_response_free(r);
    }
    assert_int_equal(conns, 1);
    sq_http_client_free(c);
    return NULL;
}

static void test_nginx(void **state)
{
    if (!have_nginx) skip();
    run(nginx_coro, 60);
}

/* https: certificate validation, HTTP/2 through ALPN, multiplexing on one connection. */
static void *tls_coro(void *arg)
{
    char u[128];
    snprintf(u, sizeof u, "https://127.0.0.1:%d/small.txt", ngx.tls_port);
    sq_fetch_response *r = NULL;
    /* Self-signed: not trusted by the system's CAs. */
    assert_int_equal(fetch(u, NULL, &r), SQ_ETLS);
    assert_null(r);
    assert_int_equal(fetch(u, &(sq_fetch_request){.no_validate_cert = true}, &r), 0);
    assert_string_equal(r->body, "small file\n");
    sq_fetch_response_free(r);
    sq_fetch_request ca = {.ca_certs = ngx.cert};
    assert_int_equal(fetch(u, &ca, &r), 0);
    assert_int_equal(r->http_version, 20);
    assert_true(r->time.appconnect > 0);
    assert_string_equal(r->body, "small file\n");
    sq_fetch_response_free(r);

    /* 20 at once on a fresh client: HTTP/2 carries them all on one connection. */
    sq_http_client *c =
        sq_http_client_new(NULL, &(sq_http_client_settings){.max_clients = 20, .defaults = &ca});
    sq_future *fs[20];
    void *vals[20];
    int64_t sts[20];
    for (int i = 0; i < 20; i++) fs[i] = sq_http_client_fetch(c, u, NULL);
    assert_int_equal(sq_gather(fs, 20, vals, sts), 0);
    long conns = 0;
    for (int i = 0; i < 20; i++) {
        r = vals[i];
        assert_int_equal(r->http_version, 20);
        assert_string_equal(r->body, "small file\n");
        conns += r->num_connects;
        sq_fetch_response_free(r);
    }
    assert_int_equal(conns, 1);
    sq_http_client_free(c);

    /* A paused upload on an HTTP/2 stream (nginx hands the body to the app's /upload). */
    snprintf(u, sizeof u, "https://127.0.0.1:%d/upload", ngx.tls_port);
    fed d = {.p = {.total = 100000, .piece = 100000}};
    sq_fetch_request q = {.method = "POST",
                          .body_producer = produce_fed,
                          .body_producer_arg = &d,
                          .ca_certs = ngx.cert};
    sq_timer_init(loop, &d.t, feed, &d);
    d.f = sq_fetch(u, &q);
    sq_timer_start(&d.t, 0.02, 0);
    assert_int_equal(sq_await(sq_future_retain(d.f), (void **)&r), 0);
    sq_timer_stop(&d.t);
    sq_future_release(d.f);
    assert_int_equal(r->http_version, 20);
    char expect[64];
    snprintf(expect, sizeof expect, "%zu %llu", d.p.total, (unsigned long long)d.p.sum);
    assert_string_equal(r->body, expect);
    assert_true(d.pauses >= 5 && d.pauses <= d.resumes + 1);
    sq_fetch_response_free(r);
    return NULL;
}

static void test_tls(void **state)
{
    if (!have_nginx || !ngx.tls_port) skip();
    run(tls_coro, 30);
}

/* The blocking form, from plain code (no coroutine), on its own private loop. */
static void test_sync(void **state)
{
    sq_fetch_response *r = NULL;
    assert_int_equal(sq_fetch_sync("http://nonexistent.invalid/", NULL, &r), SQ_ERESOLVE);
    assert_null(r);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ngx_free_port());
    assert_int_equal(sq_fetch_sync(u, NULL, NULL), -ECONNREFUSED);
    assert_ptr_equal(sq_loop_current(), loop); /* left as it was */
    if (!have_nginx) skip();
    assert_int_equal(sq_fetch_sync(ngx_url("/small.txt"), NULL, &r), 0);
    assert_string_equal(r->body, "small file\n");
    sq_fetch_response_free(r);
    assert_int_equal(sq_fetch_sync(ngx_url("/missing"), NULL, &r), SQ_EHTTP);
    assert_int_equal(r->code, 404);
    sq_fetch_response_free(r);
    assert_int_equal(sq_fetch_sync(ngx_url("/missing"), NULL, NULL), SQ_EHTTP);
    assert_ptr_equal(sq_loop_current(), loop);
}

/* --- fixture
 * --------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    loop = sq_loop_default();
    gzip_text(gz_expected, sizeof gz_expected);
    sq_app_settings st = {.no_access_log = true, .http = {.gzip = true}};
    app = sq_app_new(routes, &st);
    if (!app || sq_app_listen(app, 0, "127.0.0.1") < 0) return -1;
    port = sq_http_server_port(sq_app_server(app));

    const char *skip_nginx = getenv("SQ_TEST_NO_NGINX");
    /* /upload through nginx (HTTP/2 over TLS on its side) to the squall app's */
    char locations[sizeof ngx_locations + 128];
    snprintf(locations, sizeof locations,
             "%s    location = /upload { proxy_pass http://127.0.0.1:%d; }\n", ngx_locations, port);
    if (!(skip_nginx && *skip_nginx) && ngx_start(&ngx, locations)) {
        char html[300];
        snprintf(html, sizeof html, "%s/html", ngx.dir);
        ngx_write_file(html, "small.txt", "small file\n", 11);
        gzip_text(ngx_text, sizeof ngx_text);
        ngx_write_file(html, "text.txt", ngx_text, strlen(ngx_text));
        char *big = malloc(NGX_BIG);
        memset(big, 'b', NGX_BIG);
        ngx_write_file(html, "big.bin", big, NGX_BIG);
        free(big);
        have_nginx = true;
    } else {
        print_message("nginx not available: its half of the tests is skipped\n");
    }
    return 0;
}

static int teardown(void **state)
{
    ngx_stop(&ngx);
    sq_http_client_free(sq_http_client_default(loop));
    sq_future *f = sq_http_server_shutdown(sq_app_server(app), 1.0);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    /* Handlers of fetches that were cancelled or timed out still sleep (at most 1 s): let
     * them finish so that their memory is freed. */
    f = sq_sleep_future(loop, 1.1);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    sq_app_free(app);
    for (int i = 0; i < 10; i++) sq_loop_run_once(loop, false);
    sq_loop_free(loop);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_producer_pause),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_socket_registration_fails),
        cmocka_unit_test(test_registration_fails_cancel_sibling),
        cmocka_unit_test(test_default_client_freed_with_loop),
        cmocka_unit_test(test_protocol),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_easy_reuse),
        cmocka_unit_test(test_parked_sockets),
        cmocka_unit_test(test_resend_count),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_fire_and_forget),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nginx),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_sync),
        /* Regressions: reentrancy (each crashed under ASan or failed before its fix). */
        cmocka_unit_test(test_free_in_done),
        cmocka_unit_test(test_free_in_cancel),
        cmocka_unit_test(test_fetch_in_cb),
        cmocka_unit_test(test_free_in_cb),
        cmocka_unit_test(test_fetch_while_freeing),
        cmocka_unit_test(test_sync_default_client),
    };
    if (getenv("SQ_TEST_FILTER")) cmocka_set_test_filter(getenv("SQ_TEST_FILTER")); /* one */
    return cmocka_run_group_tests(tests, setup, teardown);
}
