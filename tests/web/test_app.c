/* The web framework: routing, dispatch order, methods, errors, arguments, cookies, JSON,
 * redirects, detach, reverse_url — against a real server on an ephemeral port. */
#include "webtest.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

/* --- handlers ------------------------------------------------------------------------------ */

static void hello_get(sq_handler *h)
{
    sq_write(h, "Hello, world");
}

static void user_get(sq_handler *h)
{
    sq_writef(h, "user=%s", sq_path_arg(h, 0));
}

static void kw_get(sq_handler *h)
{
    sq_writef(h, "a=%s b=%s p0=%s p1=%s missing=%s", sq_path_kwarg(h, "a"), sq_path_kwarg(h, "b"),
              sq_path_arg(h, 0), sq_path_arg(h, 1), sq_path_kwarg(h, "zz") ? "yes" : "no");
}

static void enc_get(sq_handler *h)
{
    sq_writef(h, "[%s]", sq_path_arg(h, 0));
}

static void opt_get(sq_handler *h)
{
    sq_writef(h, "x=%s y=%s", sq_path_arg(h, 0) ? sq_path_arg(h, 0) : "(null)",
              sq_path_arg(h, 1) ? sq_path_arg(h, 1) : "(null)");
}

static void esc_get(sq_handler *h)
{
    sq_write_escaped(h, sq_path_arg(h, 0));
}

static const sq_route routing_routes[] = {
    {"/", &(sq_handler_class){.get = hello_get}, NULL, NULL},
    {"/user/([0-9]+)", &(sq_handler_class){.get = user_get}, NULL, NULL},
    {"/kw/(?P<a>[a-z]+)/(?<b>[0-9]+)", &(sq_handler_class){.get = kw_get}, NULL, NULL},
    {"/enc/(.*)", &(sq_handler_class){.get = enc_get}, NULL, NULL},
    {"/esc/(.*)", &(sq_handler_class){.get = esc_get}, NULL, NULL},
    {"/opt/(a)?(b)?", &(sq_handler_class){.get = opt_get}, NULL, NULL},
    {"/user/.*", &(sq_handler_class){.get = hello_get}, NULL, NULL}, /* shadowed for digits */
    {NULL, NULL, NULL, NULL},
};

static void test_routing(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routing_routes, &st);
    assert_non_null(app);
    wt_run run = {.n = 11,
                  .reqs = {
                      WT_GET("/"),
                      WT_GET("/user/42"),
                      WT_GET("/user/42?x=1"),
                      WT_GET("/user/42x"),
                      WT_GET("/kw/abc/7"),
                      WT_GET("/enc/a%20b%2Fc"),
                      WT_GET("/nope"),
                      WT_GET("/opt/b"),
                      WT_GET("/x/"),
                      WT_GET("/enc/a%41%zz"),
                      WT_GET("/esc/%3Cb%3E%26%22x%22%27"),
                  }};
    wt_serve(loop, app, &run);
    wt_resp *r = run.resp;
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "Hello, world");
    assert_string_equal(r[1].body, "user=42");
    assert_string_equal(r[2].body, "user=42"); /* the query is not part of the match */
    /* anchored at the end: the first route does not match, the later catch-all does */
    assert_int_equal(r[3].status, 200);
    assert_string_equal(r[3].body, "Hello, world");
    assert_string_equal(r[4].body, "a=abc b=7 p0=abc p1=7 missing=no");
    assert_string_equal(r[5].body, "[a b/c]");
    assert_int_equal(r[6].status, 404);
    assert_string_equal(r[6].body,
                        "<html><title>404: Not Found</title><body>404: Not Found</body></html>");
    assert_string_equal(r[7].body, "x=(null) y=b");
    assert_int_equal(r[8].status, 404);          /* anchored at the start too */
    assert_string_equal(r[9].body, "[a%41%zz]"); /* malformed escape: the raw bytes */
    assert_string_equal(r[10].body, "&lt;b&gt;&amp;&quot;x&quot;&#39;"); /* sq_write_escaped */
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

static void test_bad_pattern(void **state)
{
    const sq_route bad[] = {
        {"/ok", &(sq_handler_class){.get = hello_get}, NULL, NULL},
        {"/broken/(unclosed", &(sq_handler_class){.get = hello_get}, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_log_set_level(SQ_LOG_OFF);
    errno = 0;
    assert_null(sq_app_new(bad, NULL));
    assert_int_equal(errno, EINVAL);
    sq_log_set_level(SQ_LOG_INFO);
    /* An empty table is fine: every request is a 404. */
    const sq_route none[] = {{NULL, NULL, NULL, NULL}};
    sq_app *app = sq_app_new(none, NULL);
    assert_non_null(app);
    sq_app_free(app);
}

/* --- methods ------------------------------------------------------------------------------- */

static void post_only(sq_handler *h)
{
    sq_write(h, "posted");
}
static void put_fn(sq_handler *h)
{
    sq_write(h, "put");
}
static void body_get(sq_handler *h)
{
    sq_write(h, "0123456789");
}
static void options_fn(sq_handler *h)
{
    sq_set_status(h, 204, NULL);
}

static const sq_route method_routes[] = {
    {"/post", &(sq_handler_class){.post = post_only}, NULL, NULL},
    {"/getput", &(sq_handler_class){.get = body_get, .put = put_fn, .options = options_fn}, NULL,
     NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_methods(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(method_routes, &st);
    assert_non_null(app);
    wt_run run = {.n = 7,
                  .reqs = {
                      WT_GET("/post"),
                      "POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n",
                      "DELETE /getput HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                      "HEAD /getput HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                      "PUT /getput HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n",
                      "OPTIONS /getput HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                      "BREW /getput HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                  }};
    wt_serve(loop, app, &run);
    wt_resp *r = run.resp;
    char v[128];
    assert_int_equal(r[0].status, 405);
    assert_true(wt_header(&r[0], "Allow", v, sizeof v));
    assert_string_equal(v, "POST");
    assert_int_equal(r[1].status, 200);
    assert_string_equal(r[1].body, "posted");
    assert_int_equal(r[2].status, 405);
    assert_true(wt_header(&r[2], "Allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD, PUT, OPTIONS");
    /* HEAD runs GET: same length, no body */
    assert_int_equal(r[3].status, 200);
    assert_true(wt_header(&r[3], "Content-Length", v, sizeof v));
    assert_string_equal(v, "10");
    assert_int_equal(r[3].body_len, 0);
    assert_string_equal(r[4].body, "put");
    assert_int_equal(r[5].status, 204);
    assert_int_equal(r[6].status, 405);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- lifecycle: order, state, prepare finishing, detach ---------------------------------- */

typedef struct order_state {
    int magic;
    char buf[64];
} order_state;

static char order_log[256];
static int zeroed_ok, zeroed_seen;

static void log_step(const char *s)
{
    strncat(order_log, s, sizeof order_log - strlen(order_log) - 1);
}

static void o_init(sq_handler *h)
{
    order_state *s = sq_handler_state(h);
    zeroed_seen++;
    if (s && s->magic == 0 && s->buf[0] == 0) zeroed_ok++;
    s->magic = 0x5eed;
    memset(s->buf, 'x', sizeof s->buf);
    log_step(sq_handler_init_arg(h) ? (const char *)sq_handler_init_arg(h) : "?");
    log_step("I");
}
static void o_prepare(sq_handler *h)
{
    log_step("P");
    const char *stop = sq_get_query_argument(h, "stop", NULL);
    if (stop) sq_send_error(h, 403, NULL);
}
static void o_get(sq_handler *h)
{
    log_step("G");
    sq_write(h, "ok");
}
static void o_finish(sq_handler *h)
{
    log_step("F;");
}

static const sq_handler_class order_class = {.initialize = o_init,
                                             .prepare = o_prepare,
                                             .get = o_get,
                                             .on_finish = o_finish,
                                             .state_size = sizeof(order_state)};

/* Detached: a timer finishes the request later. */
static void detach_cb(void *arg)
{
    sq_handler *h = arg;
    log_step("T");
    sq_write(h, "late");
    sq_finish(h);
}
static void d_get(sq_handler *h)
{
    log_step("G");
    sq_handler_detach(h);
    sq_call_later(sq_loop_current(), 0.05, detach_cb, h);
}
static const sq_handler_class detach_class = {
    .initialize = o_init, .get = d_get, .on_finish = o_finish, .state_size = sizeof(order_state)};

static const sq_route order_routes[] = {
    {"/order", &order_class, NULL, "A"},
    {"/detach", &detach_class, NULL, "D"},
    {NULL, NULL, NULL, NULL},
};

static void test_lifecycle(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(order_routes, &st);
    assert_non_null(app);
    order_log[0] = 0;
    zeroed_ok = zeroed_seen = 0;
    wt_run run = {
        .n = 4,
        .reqs = {WT_GET("/order"), WT_GET("/order?stop=1"), WT_GET("/detach"), WT_GET("/order")}};
    double t0 = sq_test_now();
    wt_serve(loop, app, &run);
    assert_true(sq_test_now() - t0 >= 0.04);
    wt_resp *r = run.resp;
    assert_string_equal(r[0].body, "ok");
    assert_int_equal(r[1].status, 403); /* prepare finished it: no G */
    assert_int_equal(r[2].status, 200);
    assert_string_equal(r[2].body, "late");
    assert_string_equal(r[3].body, "ok");
    assert_string_equal(order_log, "AIPGF;AIPF;DIGTF;AIPGF;");
    assert_int_equal(zeroed_seen, 4);
    assert_int_equal(zeroed_ok, 4); /* pooled handlers come back zeroed */
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- responses ----------------------------------------------------------------------------- */

static void long_get(sq_handler *h)
{
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    sq_writef(h, "<%s>", big);
    sq_writef(h, "%d", 42);
}
static void json_get(sq_handler *h)
{
    sq_write_json(h, json_pack("{s:i,s:s}", "a", 1, "b", "x"));
}
static void redir_get(sq_handler *h)
{
    bool perm = sq_get_query_argument(h, "p", NULL) != NULL;
    sq_write(h, "discarded");
    sq_redirect(h, "/elsewhere?q=1", perm);
    sq_write(h, "after finish");
}
static void crlf_get(sq_handler *h)
{
    int a = sq_set_header(h, "X-Bad", "a\r\nInjected: 1");
    int b = sq_add_header(h, "X-Bad", "a\nb");
    int c = sq_set_header(h, "Bad Name", "v");
    int d = sq_set_header(h, "X-Good", "fine");
    int e = sq_set_cookie(h, "c", "bad;value", NULL);
    sq_writef(h, "%d %d %d %d %d", a, b, c, d, e);
}
static void err_get(sq_handler *h)
{
    sq_write(h, "partial output that must vanish");
    sq_set_header(h, "Content-Type", "application/octet-stream");
    sq_send_error(h, 418, "secret <detail>");
}
static void fail_get(sq_handler *h)
{
    sq_write(h, "partial");
    const char *s = sq_get_query_argument(h, "s", NULL);
    sq_handler_fail(h, s ? atoi(s) : 0, "database %s is down", "db1");
}
static void custom_error(sq_handler *h, int status, const char *detail)
{
    sq_set_header(h, "Content-Type", "text/plain");
    sq_writef(h, "custom %d %s", status, detail ? detail : "-");
}
static void flush_fail_get(sq_handler *h)
{
    sq_write(h, "first;");
    sq_flush(h);
    sq_handler_fail(h, 500, "too late");
}

static const sq_route resp_routes[] = {
    {"/json", &(sq_handler_class){.get = json_get}, NULL, NULL},
    {"/long", &(sq_handler_class){.get = long_get}, NULL, NULL},
    {"/redir", &(sq_handler_class){.get = redir_get}, NULL, NULL},
    {"/crlf", &(sq_handler_class){.get = crlf_get}, NULL, NULL},
    {"/err", &(sq_handler_class){.get = err_get}, NULL, NULL},
    {"/fail", &(sq_handler_class){.get = fail_get}, NULL, NULL},
    {"/custom", &(sq_handler_class){.get = err_get, .write_error = custom_error}, NULL, NULL},
    {"/flushfail", &(sq_handler_class){.get = flush_fail_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void serve_resp(bool debug, wt_run *run, sq_loop **loopp, sq_app **appp)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true, .debug = debug};
    sq_app *app = sq_app_new(resp_routes, &st);
    assert_non_null(app);
    sq_log_set_level(SQ_LOG_OFF); /* handler_fail logs at ERROR on purpose */
    wt_serve(loop, app, run);
    sq_log_set_level(SQ_LOG_INFO);
    *loopp = loop;
    *appp = app;
}

static void test_responses(void **state)
{
    sq_loop *loop;
    sq_app *app;
    wt_run run = {.n = 11,
                  .reqs = {WT_GET("/json"), WT_GET("/redir"), WT_GET("/redir?p=1"), WT_GET("/crlf"),
                           WT_GET("/err"), WT_GET("/fail"), WT_GET("/fail?s=503"),
                           WT_GET("/custom"), WT_GET("/flushfail"), WT_GET("/nothing"),
                           WT_GET("/long")}};
    serve_resp(false, &run, &loop, &app);
    wt_resp *r = run.resp;
    char v[256];
    assert_int_equal(r[0].status, 200);
    assert_true(wt_header(&r[0], "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_string_equal(r[0].body, "{\"a\":1,\"b\":\"x\"}");

    assert_int_equal(r[1].status, 302);
    assert_true(wt_header(&r[1], "Location", v, sizeof v));
    assert_string_equal(v, "/elsewhere?q=1");
    assert_int_equal(r[1].body_len, 0);
    assert_int_equal(r[2].status, 301);

    assert_string_equal(r[3].body, "-22 -22 -22 0 -22");
    assert_int_equal(wt_header_count(&r[3], "Injected"), 0);
    assert_int_equal(wt_header_count(&r[3], "X-Bad"), 0);
    assert_true(wt_header(&r[3], "X-Good", v, sizeof v));

    assert_int_equal(r[4].status, 418);
    assert_true(wt_header(&r[4], "Content-Type", v, sizeof v));
    assert_true(strncmp(v, "text/html", 9) == 0);
    assert_string_equal(r[4].body, "<html><title>418: I'm a teapot</title><body>418: I'm a teapot"
                                   "</body></html>");

    assert_int_equal(r[5].status, 500);
    assert_null(strstr(r[5].body, "db1"));
    assert_null(strstr(r[5].body, "partial"));
    assert_non_null(strstr(r[5].body, "500: Internal Server Error"));
    assert_int_equal(r[6].status, 503);
    assert_string_equal(r[7].body, "custom 418 -");
    /* flushed before failing: the first part went out, no error page after it */
    assert_int_equal(r[8].status, 200);
    assert_string_equal(r[8].body, "first;");
    assert_int_equal(r[9].status, 404);
    assert_int_equal(r[10].body_len, 3000 + 3);
    assert_true(r[10].body[0] == '<' && r[10].body[2999] == 'z' && r[10].body[3000] == '>');
    assert_string_equal(r[10].body + 3001, "42");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

static void test_responses_debug(void **state)
{
    sq_loop *loop;
    sq_app *app;
    wt_run run = {.n = 3, .reqs = {WT_GET("/err"), WT_GET("/fail"), WT_GET("/custom")}};
    serve_resp(true, &run, &loop, &app);
    wt_resp *r = run.resp;
    assert_int_equal(r[0].status, 418);
    assert_non_null(strstr(r[0].body, "secret &lt;detail&gt;"));
    assert_int_equal(r[1].status, 500);
    assert_non_null(strstr(r[1].body, "database db1 is down"));
    assert_null(strstr(r[1].body, "partial"));
    assert_string_equal(r[2].body, "custom 418 secret <detail>");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- arguments --------------------------------------------------------------------------- */

static void args_handler(sq_handler *h)
{
    const char *vals[8];
    size_t n = sq_get_arguments(h, "a", vals, 8);
    sq_writef(h, "a=%s n=%zu", sq_get_argument(h, "a", "none"), n);
    for (size_t i = 0; i < n && i < 8; i++) sq_writef(h, " [%s]", vals[i]);
    sq_writef(h, " q=%s b=%s d=%s", sq_get_query_argument(h, "a", "-"),
              sq_get_body_argument(h, "a", "-"), sq_get_argument(h, "missing", "dflt"));
    const sq_arg *f = sq_get_file(h, "up");
    if (f)
        sq_writef(h, " file=%s type=%s size=%zu data=%.*s", f->filename,
                  f->content_type ? f->content_type : "-", f->value_len, (int)f->value_len,
                  f->value);
    sq_writef(h, " up-as-arg=%s", sq_get_argument(h, "up", "absent"));
}

static size_t streamed_bytes;
static void st_data(sq_handler *h, const char *data, size_t len)
{
    streamed_bytes += len;
}
static void st_post(sq_handler *h)
{
    sq_writef(h, "streamed=%zu body-arg=%s", streamed_bytes, sq_get_body_argument(h, "a", "-"));
}

static const sq_route arg_routes[] = {
    {"/args", &(sq_handler_class){.get = args_handler, .post = args_handler}, NULL, NULL},
    {"/stream", &(sq_handler_class){.post = st_post, .data_received = st_data}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

#define MP_BODY                                                                                    \
    "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfrom-mp\r\n"                       \
    "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"f.txt\"\r\n"                 \
    "Content-Type: text/plain\r\n\r\nHELLO\r\n--XyZ--\r\n"

static void test_arguments(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(arg_routes, &st);
    assert_non_null(app);
    char mp[512];
    snprintf(mp, sizeof mp,
             "POST /args?a=q1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(MP_BODY), MP_BODY);
    /* a multipart body much larger than the first read: the buffer grows while the handler
     * waits for it */
    size_t big_n = 200000;
    const char *bh = "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"b\"\r\n\r\n";
    const char *bt = "\r\n--XyZ--\r\n";
    size_t blen = strlen(bh) + big_n + strlen(bt);
    char *big = malloc(blen + 512);
    int hl = snprintf(big, 512,
                      "POST /args HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                      "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: %zu"
                      "\r\n\r\n%s",
                      blen, bh);
    memset(big + hl, 'Z', big_n);
    strcpy(big + hl + big_n, bt);
    streamed_bytes = 0;
    wt_run run = {
        .n = 6,
        .reqs = {
            WT_GET("/args?a=1&a=2&b=%20x"),
            "POST /args?a=q HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n"
            "\r\na=b1&a=b%21",
            "POST /args HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\na=1",
            mp,
            "POST /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded"
            "\r\n\r\n3\r\na=1\r\n4\r\n2345\r\n0\r\n\r\n",
            big,
        }};
    wt_serve(loop, app, &run);
    wt_resp *r = run.resp;
    assert_string_equal(r[0].body, "a=2 n=2 [1] [2] q=2 b=- d=dflt up-as-arg=absent");
    assert_string_equal(r[1].body, "a=b! n=3 [q] [b1] [b!] q=q b=b! d=dflt up-as-arg=absent");
    /* not a form content type: no body arguments */
    assert_string_equal(r[2].body, "a=none n=0 q=- b=- d=dflt up-as-arg=absent");
    assert_string_equal(r[3].body, "a=from-mp n=2 [q1] [from-mp] q=q1 b=from-mp d=dflt "
                                   "file=f.txt type=text/plain size=5 data=HELLO "
                                   "up-as-arg=absent");
    assert_string_equal(r[4].body, "streamed=7 body-arg=-");
    assert_int_equal(r[5].status, 200);
    assert_non_null(strstr(r[5].body, "file=b type=- size=200000 data=ZZZ"));
    free(big);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- cookies ------------------------------------------------------------------------------ */

static void cookie_get(sq_handler *h)
{
    const char *set = sq_get_query_argument(h, "set", NULL);
    if (set) {
        sq_cookie_options o = {.path = "/", .http_only = true};
        sq_set_cookie(h, "plain", set, &o);
        sq_set_signed_cookie(h, "signed", set, NULL);
        sq_clear_cookie(h, "old", NULL);
    }
    const char *s = sq_get_signed_cookie(h, "signed", 31);
    sq_writef(h, "plain=%s signed=%s other=%s", sq_get_cookie(h, "plain", "-"), s ? s : "(null)",
              sq_get_cookie(h, "other", "-"));
}

static const sq_route cookie_routes[] = {
    {"/c", &(sq_handler_class){.get = cookie_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_cookies(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true, .cookie_secret = "test-secret"};
    sq_app *app = sq_app_new(cookie_routes, &st);
    assert_non_null(app);
    wt_run run = {.n = 1, .reqs = {WT_GET("/c?set=v1")}};
    wt_serve(loop, app, &run);
    wt_resp *r = run.resp;
    assert_int_equal(wt_header_count(&r[0], "Set-Cookie"), 3);
    /* Find the signed value. */
    char signedv[512] = "";
    const char *p = strstr(r[0].raw, "Set-Cookie: signed=");
    assert_non_null(p);
    p += strlen("Set-Cookie: signed=");
    size_t n = strcspn(p, ";\r");
    assert_true(n < sizeof signedv);
    memcpy(signedv, p, n);
    signedv[n] = 0;
    assert_non_null(strstr(r[0].raw, "Set-Cookie: plain=v1"));
    assert_non_null(strstr(r[0].raw, "HttpOnly"));
    assert_non_null(strstr(r[0].raw, "Set-Cookie: old=;"));
    assert_non_null(strstr(r[0].raw, "Max-Age=0")); /* only the cleared one */
    assert_null(strstr(strstr(r[0].raw, "Max-Age=0") + 1, "Max-Age=0"));
    char plain[256];
    const char *pl = strstr(r[0].raw, "Set-Cookie: plain=");
    snprintf(plain, sizeof plain, "%.*s", (int)strcspn(pl, "\r"), pl);
    assert_null(strstr(plain, "Max-Age")); /* a session cookie */
    assert_string_equal(r[0].body, "plain=- signed=(null) other=-");
    wt_free(&run);

    /* Send it back, then a tampered copy. */
    static char req1[1024], req2[1024];
    snprintf(req1, sizeof req1,
             "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: plain=v1; "
             "signed=%s\r\nCookie: other=\"q\"\r\n\r\n",
             signedv);
    char tampered[512];
    strcpy(tampered, signedv);
    tampered[0] = tampered[0] == 'A' ? 'B' : 'A';
    snprintf(req2, sizeof req2,
             "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: signed=%s\r\n\r\n",
             tampered);
    /* Correctly signed but 40 days old: expired for max_age_days = 31. */
    static char req3[1024];
    char old[512];
    assert_true(sq_sign_cookie_value(old, sizeof old, "test-secret", "signed", "v0", 2,
                                     time(NULL) - 40 * 86400) > 0);
    snprintf(req3, sizeof req3,
             "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: signed=%s\r\n\r\n", old);
    /* The same cookie as a Tornado app with the same secret signs it (create_signed_value,
     * version 2: length-prefixed fields, base64 value, HMAC-SHA256 of all before it). */
    static char req4[1024];
    char tv[512];
    int tn = snprintf(tv, sizeof tv, "2|1:0|10:%lld|6:signed|4:dHY=|", (long long)time(NULL));
    unsigned char mac[32];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), "test-secret", 11, (unsigned char *)tv, (size_t)tn, mac, &maclen);
    for (unsigned i = 0; i < maclen; i++) tn += sprintf(tv + tn, "%02x", mac[i]);
    snprintf(req4, sizeof req4,
             "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: signed=%s\r\n\r\n", tv);
    wt_run run2 = {.n = 4, .reqs = {req1, req2, req3, req4}};
    wt_serve(loop, app, &run2);
    assert_string_equal(run2.resp[0].body, "plain=v1 signed=v1 other=q");
    assert_string_equal(run2.resp[1].body, "plain=- signed=(null) other=-");
    assert_string_equal(run2.resp[2].body, "plain=- signed=(null) other=-");
    assert_string_equal(run2.resp[3].body, "plain=- signed=tv other=-");
    wt_free(&run2);
    sq_app_free(app);

    /* Without a secret signed cookies are refused. */
    sq_app_settings st2 = {.no_access_log = true};
    app = sq_app_new(cookie_routes, &st2);
    wt_run run3 = {.n = 1, .reqs = {WT_GET("/c?set=v2")}};
    sq_log_set_level(SQ_LOG_OFF);
    wt_serve(loop, app, &run3);
    sq_log_set_level(SQ_LOG_INFO);
    assert_int_equal(wt_header_count(&run3.resp[0], "Set-Cookie"), 2);
    assert_null(strstr(run3.resp[0].raw, "Set-Cookie: signed="));
    assert_string_equal(run3.resp[0].body, "plain=- signed=(null) other=-");
    wt_free(&run3);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- default handler ----------------------------------------------------------------------- */

static void dflt_get(sq_handler *h)
{
    sq_set_status(h, 404, NULL);
    sq_writef(h, "custom 404 for %.*s", (int)sq_handler_request(h)->path.len,
              sq_handler_request(h)->path.ptr);
}

static void test_default_handler(void **state)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class dflt = {.get = dflt_get};
    sq_app_settings st = {.no_access_log = true, .default_handler = &dflt};
    sq_app *app = sq_app_new(routing_routes, &st);
    wt_run run = {.n = 2, .reqs = {WT_GET("/zzz"), WT_GET("/")}};
    wt_serve(loop, app, &run);
    assert_int_equal(run.resp[0].status, 404);
    assert_string_equal(run.resp[0].body, "custom 404 for /zzz");
    assert_string_equal(run.resp[1].body, "Hello, world");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- concurrency: a sleeping handler does not hold up others ------------------------------ */

static void slow_get(sq_handler *h)
{
    sq_sleep(0.3);
    sq_write(h, "slow");
}

static void *par_client(void *arg)
{
    wt_run *run = arg;
    wt_exchange(run->port, run->reqs[0], strlen(run->reqs[0]), &run->resp[0]);
    return NULL;
}

static void test_concurrent_sleep(void **state)
{
    const sq_route rs[] = {
        {"/slow", &(sq_handler_class){.get = slow_get}, NULL, NULL},
        {"/", &(sq_handler_class){.get = hello_get}, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(rs, &st);
    wt_run slow = {.n = 1, .reqs = {WT_GET("/slow")}};
    wt_run fast = {.n = 1, .reqs = {WT_GET("/")}};
    assert_int_equal(sq_app_listen(app, 0, "127.0.0.1"), 0);
    slow.port = fast.port = sq_http_server_port(sq_app_server(app));
    pthread_t t1;
    pthread_create(&t1, NULL, par_client, &slow);
    /* The fast request goes through the normal runner while /slow sleeps. */
    double t0 = sq_test_now();
    sq_call *c = sq_call_later(loop, 0.05, wt_stop, loop);
    sq_loop_run(loop); /* let /slow start */
    (void)c;
    double tf = sq_test_now();
    wt_serve(loop, app, &fast);
    double fast_took = sq_test_now() - tf;
    sq_call_later(loop, 0.5, wt_stop, loop);
    sq_loop_run(loop);
    pthread_join(t1, NULL);
    assert_string_equal(fast.resp[0].body, "Hello, world");
    assert_string_equal(slow.resp[0].body, "slow");
    assert_true(fast_took < 0.25);
    assert_true(sq_test_now() - t0 >= 0.3);
    wt_free(&slow);
    wt_free(&fast);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- keep-alive and pipelining: pooled handlers are reused between requests ------------ */

static void echo_get(sq_handler *h)
{
    order_state *s = sq_handler_state(h);
    int was = s->magic;
    s->magic = 7;
    sq_writef(h, "%s:%d;", sq_path_arg(h, 0), was);
}

static void test_pipelining(void **state)
{
    const sq_route rs[] = {
        {"/e/(.*)", &(sq_handler_class){.get = echo_get, .state_size = sizeof(order_state)}, NULL,
         NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(rs, &st);
    wt_run run = {.n = 1,
                  .reqs = {"GET /e/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                           "GET /e/2 HTTP/1.1\r\nHost: t\r\n\r\n"
                           "GET /e/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"}};
    wt_serve(loop, app, &run);
    const char *raw = run.resp[0].raw;
    const char *a = strstr(raw, "1:0;"), *b = strstr(raw, "2:0;"), *c = strstr(raw, "3:0;");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- the client leaves while a detached request is open ---------------------------------- */

static int closed_calls, finish_calls;
static sq_handler *pending;
static void cc_get(sq_handler *h)
{
    sq_handler_detach(h);
    pending = h;
}
static void cc_close(sq_handler *h)
{
    closed_calls++;
    sq_finish(h); /* a no-op on the wire, but it ends the request */
}
static void cc_finish(sq_handler *h)
{
    finish_calls++;
}

static void *leaver(void *arg)
{
    int port = *(int *)arg;
    int fd = wt_connect(port);
    const char *req = "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n";
    if (fd >= 0) {
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        usleep(100 * 1000);
        /* An abortive close (RST): the server treats a plain FIN while a request is open
         * as a half-close and keeps the request. */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    return NULL;
}

static void test_connection_close(void **state)
{
    const sq_route rs[] = {
        {"/wait",
         &(sq_handler_class){
             .get = cc_get, .on_connection_close = cc_close, .on_finish = cc_finish},
         NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(rs, &st);
    assert_int_equal(sq_app_listen(app, 0, "127.0.0.1"), 0);
    int port = sq_http_server_port(sq_app_server(app));
    closed_calls = finish_calls = 0;
    pending = NULL;
    pthread_t t;
    pthread_create(&t, NULL, leaver, &port);
    for (int i = 0; i < 200 && closed_calls == 0; i++) {
        sq_call_later(loop, 0.01, wt_stop, loop);
        sq_loop_run(loop);
    }
    pthread_join(t, NULL);
    assert_non_null(pending);
    assert_int_equal(closed_calls, 1);
    assert_int_equal(finish_calls, 1);
    sq_call_later(loop, 0.02, wt_stop, loop); /* the deferred sq_http_finish */
    sq_loop_run(loop);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- the app is freed while a handler sleeps: the handler finishes harmlessly ------------ */

static int af_started, af_done, af_finish_calls;
static void af_get(sq_handler *h)
{
    af_started++;
    sq_sleep(0.2);
    sq_write(h, "late");
    af_done++;
}
static void af_finish(sq_handler *h)
{
    af_finish_calls++;
}

static void *af_client(void *arg)
{
    int fd = wt_connect(*(int *)arg);
    const char *req = "GET /s HTTP/1.1\r\nHost: t\r\n\r\n";
    if (fd >= 0) {
        char buf[256];
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        while (recv(fd, buf, sizeof buf, 0) > 0) {
        }
        close(fd);
    }
    return NULL;
}

static void test_free_app_with_handler_running(void **state)
{
    const sq_route rs[] = {
        {"/s", &(sq_handler_class){.get = af_get, .on_finish = af_finish}, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(rs, &st);
    assert_int_equal(sq_app_listen(app, 0, "127.0.0.1"), 0);
    int port = sq_http_server_port(sq_app_server(app));
    af_started = af_done = af_finish_calls = 0;
    pthread_t t;
    pthread_create(&t, NULL, af_client, &port);
    double t0 = sq_test_now();
    while (!af_started && sq_test_now() - t0 < 10) sq_loop_run_once(loop, true);
    assert_int_equal(af_started, 1);
    sq_app_free(app);
    pthread_join(t, NULL);
    t0 = sq_test_now();
    while (!af_done && sq_test_now() - t0 < 10) sq_loop_run_once(loop, true);
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    assert_int_equal(af_done, 1);
    assert_int_equal(af_finish_calls, 1);
    sq_loop_free(loop);
}

/* --- reverse_url (no server) ------------------------------------------------------------- */

static void test_reverse_url(void **state)
{
    const sq_route rs[] = {
        {"/", &(sq_handler_class){.get = hello_get}, "home", NULL},
        {"/user/([0-9]+)", &(sq_handler_class){.get = hello_get}, "user", NULL},
        {"/f/(?P<a>[^/]+)/x/(.*)$", &(sq_handler_class){.get = hello_get}, "two", NULL},
        {"/n/((a)b)", &(sq_handler_class){.get = hello_get}, "nested", NULL},
        {"/lit\\.txt", &(sq_handler_class){.get = hello_get}, "lit", NULL},
        {"/q/a+", &(sq_handler_class){.get = hello_get}, "quant", NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_app *app = sq_app_new(rs, NULL);
    assert_non_null(app);
    char buf[64];
    assert_int_equal(sq_reverse_url(app, "home", buf, sizeof buf, NULL, 0), 1);
    assert_string_equal(buf, "/");
    const char *a1[] = {"42"};
    assert_int_equal(sq_reverse_url(app, "user", buf, sizeof buf, a1, 1), 8);
    assert_string_equal(buf, "/user/42");
    const char *a2[] = {"a b/c", "x&y"};
    ssize_t n = sq_reverse_url(app, "two", buf, sizeof buf, a2, 2);
    assert_string_equal(buf, "/f/a%20b/c/x/x%26y"); /* Tornado keeps the slash */
    assert_int_equal(n, (ssize_t)strlen(buf));
    /* snprintf semantics */
    char small[6];
    assert_int_equal(sq_reverse_url(app, "user", small, sizeof small, a1, 1), 8);
    assert_string_equal(small, "/user");
    assert_int_equal(sq_reverse_url(app, "user", NULL, 0, a1, 1), 8);
    assert_int_equal(sq_reverse_url(app, "lit", buf, sizeof buf, NULL, 0), 8);
    assert_string_equal(buf, "/lit.txt");
    assert_int_equal(sq_reverse_url(app, "user", buf, sizeof buf, NULL, 0), -EINVAL);
    assert_int_equal(sq_reverse_url(app, "user", buf, sizeof buf, a2, 2), -EINVAL);
    assert_int_equal(sq_reverse_url(app, "nested", buf, sizeof buf, a1, 1), -EINVAL);
    assert_int_equal(sq_reverse_url(app, "quant", buf, sizeof buf, NULL, 0), -EINVAL);
    assert_int_equal(sq_reverse_url(app, "nosuch", buf, sizeof buf, NULL, 0), -ENOENT);
    sq_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse_url),
        cmocka_unit_test(test_bad_pattern),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_responses_debug),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_default_handler),
        cmocka_unit_test(test_concurrent_sleep),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_free_app_with_handler_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
