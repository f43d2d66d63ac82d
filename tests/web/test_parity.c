/* Web parity features, tested with the user-facing harness (squall/testing.h): the harness
 * itself (checks, timeouts, ExpectLog, WebSockets), key-versioned signed cookies,
 * decompress_request, host-based routing and sq_app_add_handlers, the redirect and fallback
 * classes.  Every request crosses a loopback socket through libcurl. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <zlib.h>

#include "squall/testing.h"

static sq_app_settings quiet(void)
{
    return (sq_app_settings){.no_access_log = true};
}

/* --- the harness --------------------------------------------------------------------------- */

static void hello_get(sq_handler *h)
{
    sq_set_header(h, "X-Test", "yes");
    sq_write(h, "Hello, world");
}

static void warn_get(sq_handler *h)
{
    sq_log(SQ_LOG_WARNING, "something odd about %s", sq_get_argument(h, "what", "?"));
    sq_write(h, "warned");
}

static void echo_ws_message(sq_ws *ws, const char *data, size_t len, bool binary)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "echo: %.*s", (int)len, data);
    sq_ws_send(ws, buf, (size_t)n, binary);
}

static const sq_ws_class echo_ws = {.on_message = echo_ws_message};

static const sq_route hello_routes[] = {
    {"/", &(sq_handler_class){.get = hello_get}, NULL, NULL},
    {"/warn", &(sq_handler_class){.get = warn_get}, NULL, NULL},
    {"/ws", &sq_websocket_handler, NULL, (void *)&echo_ws},
    {NULL, NULL, NULL, NULL},
};

static sq_app *hello_app(void)
{
    sq_app_settings st = quiet();
    return sq_app_new(hello_routes, &st);
}

static void body_pass(sq_test *t)
{
    sq_fetch_response *r = sq_test_fetch(t, "/", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_HEADER(t, r, "X-Test", "yes");
    SQ_CHECK_HEADER(t, r, "X-Absent", NULL);
    SQ_CHECK_BODY(t, r, "Hello, world");
    SQ_CHECK_BODY_CONTAINS(t, r, "world");
    r = sq_test_fetch(t, "/nowhere", NULL);
    SQ_CHECK_STATUS(t, r, 404); /* an HTTP error is a response, not a failure */
    sq_ws *ws = sq_test_websocket(t, "/ws", NULL);
    SQ_CHECK(t, ws != NULL);
    sq_ws_send(ws, "hi", 2, false);
    const char *m = sq_test_ws_read(t, ws, 5);
    SQ_CHECK(t, m && strcmp(m, "echo: hi") == 0);
    sq_test_expect_log(t, SQ_LOG_WARNING, "something odd about the cat");
    r = sq_test_fetch(t, "/warn?what=the+cat", NULL);
    SQ_CHECK_BODY(t, r, "warned");
    SQ_CHECK(t, sq_test_log_count(t, "something odd") == 1);
    SQ_CHECK(t, sq_test_port(t) > 0);
    SQ_CHECK(t, strncmp(sq_test_url(t, "/x"), "http://127.0.0.1:", 17) == 0);
}

static void body_fails(sq_test *t)
{
    sq_fetch_response *r = sq_test_fetch(t, "/", NULL);
    /* each of these is wrong and must be reported, and the body goes on */
    bool a = SQ_CHECK_STATUS(t, r, 201);
    bool b = SQ_CHECK_BODY(t, r, "Goodbye");
    bool c = SQ_CHECK_HEADER(t, r, "X-Test", "no");
    int *counted = sq_test_arg(t);
    *counted = !a + !b + !c;
}

static void body_hangs(sq_test *t)
{
    int *reached = sq_test_arg(t);
    sq_sleep(30); /* cancelled when the test times out */
    *reached = 1;
}

static void body_unmet_log(sq_test *t)
{
    sq_test_expect_log(t, SQ_LOG_ERROR, "a line nobody writes");
    sq_fetch_response *r = sq_test_fetch(t, "/", NULL);
    SQ_CHECK_STATUS(t, r, 200);
}

static void body_refused(sq_test *t)
{
    int err = 0;
    /* a port nobody listens on (the test has no app) */
    sq_fetch_response *r = sq_test_try_fetch(t, "http://127.0.0.1:1/", NULL, &err);
    SQ_CHECK(t, r == NULL && err < 0);
}

static void test_harness(void **state)
{
    (void)state;
    assert_int_equal(sq_test_run(hello_app(), body_pass, NULL, &(sq_test_options){.name = "pass"}), 0);

    fprintf(stderr, "(the next three tests fail on purpose)\n");
    int counted = 0;
    assert_int_equal(sq_test_run(hello_app(), body_fails, &counted, &(sq_test_options){.name = "fails"}), 1);
    assert_int_equal(counted, 3);

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int reached = 0;
    assert_int_equal(sq_test_run(hello_app(), body_hangs, &reached,
                                 &(sq_test_options){.timeout = 0.3, .name = "hangs"}),
                     1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(took < 5.0); /* the 30 s sleep did not run out */

    assert_int_equal(sq_test_run(hello_app(), body_unmet_log, NULL, &(sq_test_options){.name = "log"}), 1);
    assert_int_equal(sq_test_run(NULL, body_refused, NULL, NULL), 0);
}

/* --- signed cookies with key versions ------------------------------------------------------ */

static void sc_get(sq_handler *h)
{
    const char *set = sq_get_argument(h, "set", NULL);
    if (set) sq_set_signed_cookie(h, "who", set, NULL);
    double days = atof(sq_get_argument(h, "days", "0"));
    const char *v = sq_get_signed_cookie(h, "who", days);
    sq_write(h, v ? v : "(none)");
}

static const sq_route sc_routes[] = {
    {"/c", &(sq_handler_class){.get = sc_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

struct sc_run {
    char cookie[600]; /* "who=…" to send, or "" */
    char got[400];    /* the response's signed value */
    char body[512];
    const char *query;
};

static void sc_body(sq_test *t)
{
    struct sc_run *s = sq_test_arg(t);
    char hdr[700];
    snprintf(hdr, sizeof hdr, "Cookie: %s", s->cookie);
    const char *headers[] = {hdr, NULL};
    sq_fetch_response *r = sq_test_fetch(t, s->query, &(sq_fetch_request){.headers = headers});
    if (!SQ_CHECK_STATUS(t, r, 200)) return;
    snprintf(s->body, sizeof s->body, "%s", r->body);
    const char *sc = sq_fetch_response_header(r, "Set-Cookie");
    s->got[0] = '\0';
    if (sc && !strncmp(sc, "who=", 4)) snprintf(s->got, sizeof s->got, "%.*s", (int)strcspn(sc + 4, ";"), sc + 4);
}

static int sc_run_with(const sq_cookie_secret *keys, int current, const char *legacy, struct sc_run *s)
{
    sq_app_settings st = quiet();
    st.cookie_secrets = keys;
    st.cookie_key_version = current;
    st.cookie_secret = legacy;
    sq_app *app = sq_app_new(sc_routes, &st);
    assert_non_null(app);
    return sq_test_run(app, sc_body, s, NULL);
}

static void test_cookie_key_versions(void **state)
{
    (void)state;
    const sq_cookie_secret v1[] = {{1, "first secret"}, {0, NULL}};
    const sq_cookie_secret v12[] = {{1, "first secret"}, {2, "second secret"}, {0, NULL}};
    const sq_cookie_secret v2[] = {{2, "second secret"}, {0, NULL}};
    struct sc_run s = {.query = "/c?set=alice"};
    /* signed with key 1: the value names its version */
    assert_int_equal(sc_run_with(v1, 1, NULL, &s), 0);
    assert_string_equal(s.body, "(none)"); /* set now, read from the next request on */
    assert_true(strncmp(s.got, "2|1:1|", 6) == 0); /* Tornado's version 2, key_version=1 */
    assert_int_equal(sq_cookie_value_key_version(s.got, strlen(s.got)), 1);
    char k1_cookie[600];
    snprintf(k1_cookie, sizeof k1_cookie, "who=%s", s.got);

    /* key 2 added and made current: the key-1 cookie still reads, new ones carry k2 */
    struct sc_run s2 = {.query = "/c"};
    snprintf(s2.cookie, sizeof s2.cookie, "%s", k1_cookie);
    assert_int_equal(sc_run_with(v12, 2, NULL, &s2), 0);
    assert_string_equal(s2.body, "alice");
    struct sc_run s3 = {.query = "/c?set=bob"};
    assert_int_equal(sc_run_with(v12, 2, NULL, &s3), 0);
    assert_true(strncmp(s3.got, "2|1:2|", 6) == 0);
    char k2_cookie[600];
    snprintf(k2_cookie, sizeof k2_cookie, "who=%s", s3.got);

    /* key 1 retired: its cookies no longer read, key 2's do */
    struct sc_run s4 = {.query = "/c"};
    snprintf(s4.cookie, sizeof s4.cookie, "%s", k1_cookie);
    assert_int_equal(sc_run_with(v2, 2, NULL, &s4), 0);
    assert_string_equal(s4.body, "(none)");
    struct sc_run s5 = {.query = "/c"};
    snprintf(s5.cookie, sizeof s5.cookie, "%s", k2_cookie);
    assert_int_equal(sc_run_with(v2, 2, NULL, &s5), 0);
    assert_string_equal(s5.body, "bob");

    /* a version swapped by the client breaks the MAC (k1's secret is still known here) */
    struct sc_run s6 = {.query = "/c"};
    snprintf(s6.cookie, sizeof s6.cookie, "who=2|1:1|%s", s3.got + 6);
    assert_int_equal(sc_run_with(v12, 2, NULL, &s6), 0);
    assert_string_equal(s6.body, "(none)");

    /* unversioned cookies of an app that had one cookie_secret keep working beside the
     * versioned keys, as long as cookie_secret stays */
    struct sc_run s7 = {.query = "/c?set=carol"};
    assert_int_equal(sc_run_with(NULL, 0, "old single secret", &s7), 0);
    assert_true(strncmp(s7.got, "2|1:0|", 6) == 0); /* what Tornado's str secret writes */
    assert_int_equal(sq_cookie_value_key_version(s7.got, strlen(s7.got)), 0);
    struct sc_run s8 = {.query = "/c"};
    snprintf(s8.cookie, sizeof s8.cookie, "who=%s", s7.got);
    assert_int_equal(sc_run_with(v2, 2, "old single secret", &s8), 0);
    assert_string_equal(s8.body, "carol");

    struct sc_run s8b = {.query = "/c"}; /* without cookie_secret it has no key */
    snprintf(s8b.cookie, sizeof s8b.cookie, "who=%s", s7.got);
    assert_int_equal(sc_run_with(v2, 2, NULL, &s8b), 0);
    assert_string_equal(s8b.body, "(none)");

    /* Which secret a key version means, as Tornado's get_signed_cookie: with cookie_secrets
     * (Tornado's dict) the entry of that version, and for version 0 (which a single secret
     * writes) cookie_secret if no entry has it; with cookie_secret alone (Tornado's str) that
     * secret, whatever the version.  Values from Tornado (create_signed_value, clock
     * 1700000000) and squall's former format, so days=36500. */
    const sq_cookie_secret v02[] = {{0, "zero secret"}, {2, "second secret"}, {0, NULL}};
    /* create_signed_value({1: "first secret"}, "who", "gina", key_version=1) */
    const char *gina = "2|1:1|10:1700000000|3:who|8:Z2luYQ==|"
                       "21a088199e03ce9da4528f1893f659d1faa1e2852f37df94a04f4a1d7b09f869";
    /* create_signed_value("old single secret", "who", "hank") */
    const char *hank = "2|1:0|10:1700000000|3:who|8:aGFuaw==|"
                       "f9ef77afba12b8a69677ed606e9a0c6eb233b39a3e99f57e0790a42d7c96a19d";
    /* create_signed_value({0: "zero secret"}, "who", "ivy", key_version=0) */
    const char *ivy = "2|1:0|10:1700000000|3:who|4:aXZ5|"
                      "08fb9b82eeb6048e436640646f3b580ee441faf9d84ef3dda7692a979611c4ea";
    /* create_signed_value("old single secret", "who", "jack", key_version=7) */
    const char *jack = "2|1:7|10:1700000000|3:who|8:amFjaw==|"
                       "c58d1aa57aa5b5d9f0d1fee307c0af07bc54672815dadfeafd50eb5f35a6ac43";
    /* squall's former format: key 1 "first secret", and unversioned "old single secret" */
    const char *erin = "k1|ZXJpbg|1700000000|"
                       "7ff044d6822abffb9127d026aa3d5e0a828604d92075003d163c1a96572a6da2";
    const char *frank = "ZnJhbms|1700000000|"
                        "5587fbc4020863e5ba2816902f88411722d074bcd9fbd2c5879cb461a8b95b7e";
    const char *single = "old single secret";
    const struct {
        const sq_cookie_secret *keys;
        const char *legacy, *cookie, *want;
    } kcases[] =
        {
            {v12, NULL, gina, "gina"},     {v2, NULL, gina, "(none)"},
            {NULL, single, hank, "hank"},  {v2, single, hank, "hank"},
            {v02, single, hank, "(none)"}, /* a version-0 key takes cookie_secret's place */
            {v02, single, ivy, "ivy"},     {NULL, single, jack, "jack"},
            {v2, single, jack, "(none)"},  {v12, NULL, erin, "erin"},
            {v2, single, frank, "frank"},  {NULL, single, frank, "frank"},
        };
    for (size_t i = 0; i < sizeof kcases / sizeof *kcases; i++) {
        struct sc_run sk = {.query = "/c?days=36500"};
        snprintf(sk.cookie, sizeof sk.cookie, "who=%s", kcases[i].cookie);
        assert_int_equal(sc_run_with(kcases[i].keys, 2, kcases[i].legacy, &sk), 0);
        if (strcmp(sk.body, kcases[i].want))
            fail_msg("key case %zu: read %s, want %s", i, sk.body, kcases[i].want);
    }

    /* max age: a 40-day-old key-2 cookie is refused at 31 days, read at 60 */
    char old[400];
    assert_true(sq_sign_cookie_value_kv(old, sizeof old, "second secret", 2, "who", "dave", 4,
                                        time(NULL) - 40 * 86400) > 0);
    struct sc_run s9 = {.query = "/c?days=31"};
    snprintf(s9.cookie, sizeof s9.cookie, "who=%s", old);
    assert_int_equal(sc_run_with(v2, 2, NULL, &s9), 0);
    assert_string_equal(s9.body, "(none)");
    struct sc_run s10 = {.query = "/c?days=60"};
    snprintf(s10.cookie, sizeof s10.cookie, "who=%s", old);
    assert_int_equal(sc_run_with(v2, 2, NULL, &s10), 0);
    assert_string_equal(s10.body, "dave");

    /* a current version that has no key is a configuration error */
    sq_app_settings st = quiet();
    st.cookie_secrets = v1;
    st.cookie_key_version = 7;
    sq_log_set_level(SQ_LOG_OFF);
    assert_null(sq_app_new(sc_routes, &st));
    sq_log_set_level(SQ_LOG_INFO);
}

/* --- decompress_request -------------------------------------------------------------------- */

static void dz_post(sq_handler *h)
{
    sq_str b = sq_get_body(h);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)b.ptr, (uInt)b.len);
    sq_str ce = sq_http_header_get(sq_handler_request(h), "Content-Encoding");
    sq_writef(h, "%zu bytes crc %08x name=%s ce=%s", b.len, crc, sq_get_body_argument(h, "name", "-"),
              ce.ptr ? "still" : "gone");
}

struct dz_stream {
    size_t total, pieces, biggest;
};

static void dz_data(sq_handler *h, const char *data, size_t len)
{
    struct dz_stream *s = sq_handler_state(h);
    s->total += len;
    s->pieces++;
    if (len > s->biggest) s->biggest = len;
    for (size_t i = 0; i < len; i++)
        if (data[i] != 'z') {
            sq_handler_fail(h, 500, "byte %zu is not 'z'", s->total - len + i);
            return;
        }
}

static void dz_stream_put(sq_handler *h)
{
    struct dz_stream *s = sq_handler_state(h);
    sq_writef(h, "%zu bytes in %zu pieces, biggest %zu", s->total, s->pieces, s->biggest);
}

static const sq_route dz_routes[] = {
    {"/echo", &(sq_handler_class){.post = dz_post}, NULL, NULL},
    {"/stream",
     &(sq_handler_class){.put = dz_stream_put, .data_received = dz_data,
                         .state_size = sizeof(struct dz_stream)},
     NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

/* gzip of n bytes of `fill` (or of `text` when given) into a malloc'd buffer */
static unsigned char *gz(const char *text, size_t n, char fill, size_t *outlen)
{
    unsigned char *in = malloc(n ? n : 1);
    if (text)
        memcpy(in, text, n);
    else
        memset(in, fill, n);
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, n) + 64;
    unsigned char *out = malloc(cap);
    z.next_in = in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    free(in);
    return out;
}

static void dz_body(sq_test *t)
{
    const char *gzh[] = {"Content-Encoding: gzip", "Content-Type: application/x-www-form-urlencoded",
                         NULL};
    size_t n;
    const char *form = "name=squall&x=1";
    unsigned char *g = gz(form, strlen(form), 0, &n);
    sq_fetch_response *r = sq_test_fetch(
        t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh, .body = g, .body_len = n});
    free(g);
    SQ_CHECK_STATUS(t, r, 200);
    char want[128];
    snprintf(want, sizeof want, "%zu bytes crc %08x name=squall ce=gone", strlen(form),
             (unsigned)crc32(0, (const Bytef *)form, (uInt)strlen(form)));
    SQ_CHECK_BODY(t, r, want);

    /* two gzip members back to back are one body (RFC 1952) */
    size_t n1, n2;
    unsigned char *g1 = gz("name=sq", 7, 0, &n1), *g2 = gz("uall", 4, 0, &n2);
    unsigned char *both = malloc(n1 + n2);
    memcpy(both, g1, n1);
    memcpy(both + n1, g2, n2);
    r = sq_test_fetch(t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh, .body = both,
                                                      .body_len = n1 + n2});
    free(g1), free(g2), free(both);
    SQ_CHECK_BODY_CONTAINS(t, r, "name=squall");

    /* a bomb: 16 MiB of zeros in ~16 KB, against a 1 MiB limit: 413, never inflated whole */
    unsigned char *bomb = gz(NULL, 16u << 20, 0, &n);
    r = sq_test_fetch(t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh, .body = bomb,
                                                      .body_len = n});
    free(bomb);
    SQ_CHECK_STATUS(t, r, 413);
    SQ_CHECK_BODY_CONTAINS(t, r, "inflates past 1048576 bytes");

    /* not gzip at all, and gzip cut short: 400 */
    r = sq_test_fetch(t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh,
                                                      .body = "plainly not gzip", .body_len = 16});
    SQ_CHECK_STATUS(t, r, 400);
    SQ_CHECK_BODY_CONTAINS(t, r, "not valid gzip");
    g = gz(form, strlen(form), 0, &n);
    r = sq_test_fetch(t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh, .body = g,
                                                      .body_len = n - 6});
    free(g);
    SQ_CHECK_STATUS(t, r, 400);

    /* the server is still fine, and a plain body is untouched */
    r = sq_test_fetch(t, "/echo", &(sq_fetch_request){.method = "POST", .body = "name=plain",
                                                      .body_len = 10});
    SQ_CHECK_BODY_CONTAINS(t, r, "name=plain ce=gone");

    /* streamed: 5 MiB of 'z' arrive inflated in pieces of at most 64 KiB, past the limit
     * (max_body_size does not bound a streamed body) */
    g = gz(NULL, 5u << 20, 'z', &n);
    r = sq_test_fetch(t, "/stream", &(sq_fetch_request){.method = "PUT", .headers = gzh, .body = g,
                                                        .body_len = n});
    free(g);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_BODY_CONTAINS(t, r, "5242880 bytes in ");
    SQ_CHECK_BODY_CONTAINS(t, r, "biggest 65536");
}

static void test_decompress_request(void **state)
{
    (void)state;
    sq_app_settings st = quiet();
    st.http.decompress_request = true;
    st.http.max_body_size = 1u << 20;
    assert_int_equal(sq_test_run(sq_app_new(dz_routes, &st), dz_body, NULL,
                                 &(sq_test_options){.timeout = 60}),
                     0);
}

static void dz_off_body(sq_test *t)
{
    const char *gzh[] = {"Content-Encoding: gzip", NULL};
    size_t n;
    unsigned char *g = gz("abc", 3, 0, &n);
    sq_fetch_response *r = sq_test_fetch(
        t, "/echo", &(sq_fetch_request){.method = "POST", .headers = gzh, .body = g, .body_len = n});
    char want[64];
    snprintf(want, sizeof want, "%zu bytes", n); /* off: the handler gets the gzip bytes */
    free(g);
    SQ_CHECK_BODY_CONTAINS(t, r, want);
    SQ_CHECK_BODY_CONTAINS(t, r, "ce=still");
}

static void test_decompress_off(void **state)
{
    (void)state;
    sq_app_settings st = quiet();
    assert_int_equal(sq_test_run(sq_app_new(dz_routes, &st), dz_off_body, NULL, NULL), 0);
}

/* --- host routing, add_handlers, redirect, fallback ------------------------------------------ */

static void say(sq_handler *h)
{
    sq_writef(h, "%s:%s", (const char *)sq_handler_init_arg(h),
              sq_path_arg(h, 0) ? sq_path_arg(h, 0) : "");
}

static const sq_handler_class say_class = {.get = say};

static const sq_route api_routes[] = {
    {"/", &say_class, NULL, "api-root"},
    {"/v1/(.*)", &say_class, "api_v1", "api-v1"},
    {NULL, NULL, NULL, NULL},
};

/* a class whose state is bigger than any before it: pooled handlers are too small for it */
static void big_get(sq_handler *h)
{
    memset(sq_handler_state(h), 'b', 8192); /* ASan: every byte must be there */
    sq_write(h, "big");
}

static const sq_route late_routes[] = {
    {"/late", &say_class, NULL, "late"},
    {"/big", &(sq_handler_class){.get = big_get, .state_size = 8192}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void add_get(sq_handler *h)
{
    int e = sq_app_add_handlers(sq_handler_app(h), NULL, late_routes);
    sq_writef(h, "added %d", e);
}

static void raw_handler(sq_http_request *req, void *arg)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "raw %s %.*s %.*s", (const char *)arg, (int)req->method.len,
                     req->method.ptr, (int)req->path.len, req->path.ptr);
    sq_http_set_status(req, 203, NULL);
    sq_http_set_header(req, "Content-Type", "text/plain");
    sq_http_write(req, buf, (size_t)n);
}

static const sq_fallback raw_fb = {raw_handler, "fb"};

static const sq_route main_routes[] = {
    {"/", &say_class, NULL, "main-root"},
    {"/only-main", &say_class, NULL, "main-only"},
    {"/add", &(sq_handler_class){.get = add_get}, NULL, NULL},
    {"/old/(.*)", &sq_redirect_handler, NULL, &(sq_redirect_target){"/new/{0}", 0}},
    {"/tmp/(?<id>[0-9]+)", &sq_redirect_handler, NULL, &(sq_redirect_target){"/item?id={id}", 307}},
    {"/bad/(.*)", &sq_redirect_handler, NULL, &(sq_redirect_target){"/x/{5}", 0}},
    {"/raw/.*", &sq_fallback_handler, NULL, (void *)&raw_fb},
    {NULL, NULL, NULL, NULL},
};

static sq_fetch_response *get_host(sq_test *t, const char *path, const char *host)
{
    char h[128];
    snprintf(h, sizeof h, "Host: %s", host);
    const char *hs[] = {h, NULL};
    return sq_test_fetch(t, path, &(sq_fetch_request){.headers = hs, .no_follow_redirects = true});
}

static void routing_body(sq_test *t)
{
    /* the api host's table first; another host gets the main routes */
    SQ_CHECK_BODY(t, get_host(t, "/", "api.example.com"), "api-root:");
    SQ_CHECK_BODY(t, get_host(t, "/", "API.Example.com:8080"), "api-root:"); /* case, port */
    SQ_CHECK_BODY(t, get_host(t, "/v1/users", "api.example.com"), "api-v1:users");
    SQ_CHECK_BODY(t, get_host(t, "/", "www.example.com"), "main-root:");
    SQ_CHECK_BODY(t, get_host(t, "/", "example.com.evil"), "main-root:"); /* anchored */
    /* a host whose table has no such path goes on to the next table */
    SQ_CHECK_BODY(t, get_host(t, "/only-main", "api.example.com"), "main-only:");
    SQ_CHECK_STATUS(t, get_host(t, "/v1/x", "www.example.com"), 404);

    /* routes added while serving */
    SQ_CHECK_STATUS(t, sq_test_fetch(t, "/late", NULL), 404);
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/add", NULL), "added 0");
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/late", NULL), "late:");
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/big", NULL), "big");
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/big", NULL), "big");
    char url[64];
    SQ_CHECK(t, sq_reverse_url(sq_test_app(t), "api_v1", url, sizeof url,
                               (const char *[]){"a b"}, 1) > 0 && !strcmp(url, "/v1/a%20b"));

    /* redirects: permanent by default, groups and the query string carried over */
    sq_fetch_response *r = get_host(t, "/old/a/b%20c?x=1&y=2", "localhost");
    SQ_CHECK_STATUS(t, r, 301);
    SQ_CHECK_HEADER(t, r, "Location", "/new/a/b%20c?x=1&y=2");
    r = get_host(t, "/tmp/42", "localhost");
    SQ_CHECK_STATUS(t, r, 307);
    SQ_CHECK_HEADER(t, r, "Location", "/item?id=42");
    sq_test_expect_log(t, SQ_LOG_ERROR, "names a group the route does not have");
    SQ_CHECK_STATUS(t, get_host(t, "/bad/x", "localhost"), 500);
    r = sq_test_fetch(t, "/old/here", NULL); /* followed by the client: lands on a 404 */
    SQ_CHECK_STATUS(t, r, 404);
    SQ_CHECK(t, r && r->redirects == 1);

    /* the fallback gets any method, as a plain HTTP handler */
    r = sq_test_fetch(t, "/raw/x/y", NULL);
    SQ_CHECK_STATUS(t, r, 203);
    SQ_CHECK_BODY(t, r, "raw fb GET /raw/x/y");
    r = sq_test_fetch(t, "/raw/dav",
                      &(sq_fetch_request){.method = "PROPFIND", .allow_nonstandard_methods = true});
    SQ_CHECK_BODY(t, r, "raw fb PROPFIND /raw/dav");
    r = sq_test_fetch(t, "/raw/post", &(sq_fetch_request){.method = "POST", .body = "k=v", .body_len = 3});
    SQ_CHECK_BODY(t, r, "raw fb POST /raw/post");
}

static void test_routing(void **state)
{
    (void)state;
    sq_app_settings st = quiet();
    sq_app *app = sq_app_new(main_routes, &st);
    assert_non_null(app);
    assert_int_equal(sq_app_add_handlers(app, "api\\.example\\.com", api_routes), 0);
    sq_log_set_level(SQ_LOG_OFF);
    assert_int_equal(sq_app_add_handlers(app, "bad(", api_routes), -EINVAL);
    sq_log_set_level(SQ_LOG_INFO);
    assert_int_equal(sq_test_run(app, routing_body, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_harness),
        cmocka_unit_test(test_cookie_key_versions),
        cmocka_unit_test(test_decompress_request),
        cmocka_unit_test(test_decompress_off),
        cmocka_unit_test(test_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
