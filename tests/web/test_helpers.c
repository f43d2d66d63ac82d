/* Request helpers: plural arguments, a required argument (400 "missing argument x"), the body
 * as JSON (400 when malformed), redirects with 303/307/308 and relative Locations;
 * set_default_headers and sq_clear; xhtml escape/unescape and url_concat as strings. */
#include "webtest.h"

#include <jansson.h>

static void args_get(sq_handler *h)
{
    const char *v[8];
    size_t n = sq_get_query_arguments(h, "tag", v, 8);
    sq_writef(h, "%zu:", n);
    for (size_t i = 0; i < n && i < 8; i++) sq_writef(h, "%s,", v[i]);
}

static void args_post(sq_handler *h)
{
    const char *v[2];
    size_t n = sq_get_body_arguments(h, "x", v, 2); /* more than max: the count is all of them */
    const char *q[2];
    size_t nq = sq_get_query_arguments(h, "x", q, 2);
    sq_writef(h, "%zu:%s,%s|%zu", n, v[0], v[1], nq);
}

static void required_get(sq_handler *h)
{
    const char *name = sq_get_required_argument(h, "name");
    if (!name) return;
    sq_writef(h, "hello %s", name);
}

static void json_post(sq_handler *h)
{
    json_t *j = sq_json_body(h);
    if (!j) return;
    sq_writef(h, "n=%lld", (long long)json_integer_value(json_object_get(j, "n")));
    json_decref(j);
}

static void redirect_post(sq_handler *h)
{
    int st = atoi(sq_get_query_argument(h, "status", "303"));
    if (sq_redirect_status(h, "done?x=1", st) == -EINVAL) sq_write(h, "not a redirect status");
}

/* The value as the handler sees it, and how many "v" the query has. */
static void ctl_any(sq_handler *h)
{
    const char *v[4];
    sq_writef(h, "[%s] %zu", sq_get_argument(h, "v", "-"), sq_get_query_arguments(h, "v", v, 4));
}

static void path_get(sq_handler *h)
{
    sq_writef(h, "[%s]", sq_path_arg(h, 0));
}

static void defaults(sq_handler *h)
{
    sq_set_header(h, "X-Frame-Options", "DENY");
    sq_set_header(h, "Server", "custom");
}

static void clear_get(sq_handler *h)
{
    sq_set_status(h, 404, NULL);
    sq_set_header(h, "X-Temp", "1");
    sq_set_header(h, "X-Frame-Options", "SAMEORIGIN");
    sq_write(h, "discarded");
    assert_int_equal(sq_clear(h), 0); /* back to 200 and the defaults */
    sq_write(h, "fresh");
}

static void test_defaults_and_clear(void **state)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class cls = {.get = clear_get, .set_default_headers = defaults};
    const sq_route routes[] = {{"/c", &cls, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app *app = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    wt_run run = {.n = 1, .reqs = {WT_GET("/c")}};
    wt_serve(loop, app, &run);
    char v[64];
    assert_int_equal(run.resp[0].status, 200);
    assert_string_equal(run.resp[0].body, "fresh");
    assert_true(wt_header(&run.resp[0], "X-Frame-Options", v, sizeof v));
    assert_string_equal(v, "DENY");
    assert_false(wt_header(&run.resp[0], "X-Temp", v, sizeof v));
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

static void test_strings(void **state)
{
    char *e = sq_xhtml_escape("<a href=\"x\">Tom & 'Jerry'</a>");
    assert_string_equal(e, "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
    char *u = sq_xhtml_unescape(e);
    assert_string_equal(u, "<a href=\"x\">Tom & 'Jerry'</a>");
    free(e);
    free(u);
    u = sq_xhtml_unescape("&#233;t&#xE9; &apos;&unknown; & &#0; &#x110000; &amp");
    assert_string_equal(u, "\xc3\xa9t\xc3\xa9 '&unknown; & &#0; &#x110000; &amp");
    free(u);
    /* a character reference is '#', an optional 'x' and digits: no blank or sign before
     * them (strtoul would take them), as Tornado's &(#?)(\w+?); */
    u = sq_xhtml_unescape("&# 65; &#+65; &#x 41; &#x+41; &#\t65; &#x-41; &#65;");
    assert_string_equal(u, "&# 65; &#+65; &#x 41; &#x+41; &#\t65; &#x-41; A");
    free(u);
    /* many '&' and no ';': linear time (each '&' used to scan to the end for a ';') */
    size_t big = (size_t)1 << 20;
    char *amps = malloc(big + 2);
    assert_non_null(amps);
    memset(amps, '&', big);
    memcpy(amps + big, ";", 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    u = sq_xhtml_unescape(amps);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(u, amps);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 2.0) fail_msg("1 MiB of '&' took %.1f s", secs);
    free(u);
    free(amps);
    const char *args[] = {"q", "a b&c", "page", "2", NULL};
    char *c = sq_url_concat("http://x/search", args);
    assert_string_equal(c, "http://x/search?q=a+b%26c&page=2");
    free(c);
    c = sq_url_concat("/s?x=1", args);
    assert_string_equal(c, "/s?x=1&q=a+b%26c&page=2");
    free(c);
    c = sq_url_concat("/s?", args);
    assert_string_equal(c, "/s?q=a+b%26c&page=2");
    free(c);
    const char *odd[] = {"q", NULL};
    assert_null(sq_url_concat("/s", odd));
}

static void test_helpers(void **state)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class args = {.get = args_get, .post = args_post},
                                  required = {.get = required_get}, json = {.post = json_post},
                                  redirect = {.post = redirect_post};
    const sq_route routes[] = {{"/args", &args, NULL, NULL},       {"/required", &required, NULL, NULL},
                               {"/json", &json, NULL, NULL},       {"/a/redirect", &redirect, NULL, NULL},
                               {NULL, NULL, NULL, NULL}};
    sq_app *app = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    assert_non_null(app);
    wt_run run = {.n = 10,
                  .reqs = {WT_GET("/args?tag=a&tag=b%20c&other=1&tag="),
                           "POST /args?x=q HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                           "Content-Length: 11\r\nConnection: close\r\n\r\nx=1&x=2&x=3",
                           WT_GET("/required?name=ann"), WT_GET("/required"),
                           "POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n"
                           "Connection: close\r\n\r\n{\"n\": 5}",
                           "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{\"n\": 5,",
                           "POST /a/redirect?status=303 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                           "POST /a/redirect?status=307 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                           "POST /a/redirect?status=308 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                           "POST /a/redirect?status=200 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"}};
    wt_serve(loop, app, &run);
    assert_string_equal(run.resp[0].body, "3:a,b c,,");
    assert_string_equal(run.resp[1].body, "3:1,2|1");
    assert_string_equal(run.resp[2].body, "hello ann");
    assert_int_equal(run.resp[3].status, 400);
    assert_string_equal(run.resp[3].body, "missing argument name");
    assert_string_equal(run.resp[4].body, "n=5");
    assert_int_equal(run.resp[5].status, 400);
    assert_non_null(strstr(run.resp[5].body, "malformed JSON body: "));
    char loc[128];
    int want[] = {303, 307, 308};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run.resp[6 + i].status, want[i]);
        assert_true(wt_header(&run.resp[6 + i], "Location", loc, sizeof loc));
        assert_string_equal(loc, "/a/done?x=1"); /* relative: resolved against the request */
    }
    assert_int_equal(run.resp[9].status, 200);
    assert_string_equal(run.resp[9].body, "not a redirect status");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* An argument with a control byte, %00 above all: as Tornado's get_argument does, the bytes
 * 0x00-0x08 and 0x0e-0x1f of a value become spaces (tab, CR, LF … stay), so a C string holds
 * the whole value instead of ending at the first NUL ("admin%00x" must not read as "admin"),
 * and a name with a NUL in it is another name, not its prefix. */
static void test_control_bytes(void **state)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class ctl = {.get = ctl_any, .post = ctl_any};
    const sq_route routes[] = {{"/ctl", &ctl, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app *app = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    assert_non_null(app);
    wt_run run = {
        .n = 4,
        .reqs = {
            WT_GET("/ctl?v=admin%00x%01y%1fz%09t"), WT_GET("/ctl?v=ok&v%00evil=bad"),
            "POST /ctl HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 9\r\nConnection: close\r\n\r\nv=a%00%0b",
            "POST /ctl HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            "Content-Length: 61\r\nConnection: close\r\n\r\n"
            "--B\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\nm\x01n\r\n--B--\r\n"}};
    wt_serve(loop, app, &run);
    assert_string_equal(run.resp[0].body, "[admin x y z\tt] 1");
    assert_string_equal(run.resp[1].body, "[ok] 1");
    assert_string_equal(run.resp[2].body,
                        "[a \v] 0"); /* 0x0b (vertical tab) stays, as in Tornado */
    assert_string_equal(run.resp[3].body, "[m n] 0");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* A path group is a C string too: one that decodes to a NUL is refused with 400 (as nginx
 * refuses %00 in a URI) rather than handed to the method cut short ("a%00b" as "a"). */
static void test_nul_in_path(void **state)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class path = {.get = path_get};
    const sq_route routes[] = {{"/p/(.*)", &path, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app *app = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    assert_non_null(app);
    wt_run run = {.n = 3, .reqs = {WT_GET("/p/a%00b"), WT_GET("/p/a%20b%01"), WT_GET("/p/%00")}};
    wt_serve(loop, app, &run);
    assert_int_equal(run.resp[0].status, 400);
    assert_null(strstr(run.resp[0].body, "[a]"));
    assert_int_equal(run.resp[1].status, 200);
    assert_string_equal(run.resp[1].body, "[a b\x01]"); /* other bytes are the path's own */
    assert_int_equal(run.resp[2].status, 400);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helpers), cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_nul_in_path), cmocka_unit_test(test_defaults_and_clear),
        cmocka_unit_test(test_strings)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
