/* ETags on dynamic responses (Tornado's compute_etag / check_etag_header): a hash of the body
 * on a 200 GET or HEAD finished in one piece, If-None-Match answered 304 without a body. */
#include "webtest.h"

static void page_get(sq_handler *h)
{
    sq_write(h, "the same page every time");
}
static void page_post(sq_handler *h)
{
    sq_write(h, "posted");
}
static void own_get(sq_handler *h)
{
    sq_set_header(h, "ETag", "\"mine\"");
    sq_write(h, "own tag");
}
static void flushed_get(sq_handler *h)
{
    sq_write(h, "part one ");
    sq_flush(h);
    sq_write(h, "part two");
}
static void missing_get(sq_handler *h)
{
    sq_send_error(h, 404, NULL);
}

static void serve(sq_app_settings st, wt_run *run)
{
    sq_loop *loop = wt_loop();
    static const sq_handler_class page = {.get = page_get, .post = page_post},
                                  own = {.get = own_get}, flushed = {.get = flushed_get},
                                  missing = {.get = missing_get};
    const sq_route routes[] = {{"/page", &page, NULL, NULL},
                               {"/own", &own, NULL, NULL},
                               {"/flushed", &flushed, NULL, NULL},
                               {"/missing", &missing, NULL, NULL},
                               {NULL, NULL, NULL, NULL}};
    st.no_access_log = true;
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    wt_serve(loop, app, run);
    sq_app_free(app);
    sq_loop_free(loop);
}

static void test_etag(void **state)
{
    wt_run first = {.n = 1, .reqs = {WT_GET("/page")}};
    serve((sq_app_settings){0}, &first);
    char etag[64];
    assert_int_equal(first.resp[0].status, 200);
    assert_true(wt_header(&first.resp[0], "ETag", etag, sizeof etag));
    assert_int_equal(strlen(etag), 18); /* "<16 hex digits>" */
    static char r1[256], r2[256], r3[256];
    snprintf(r1, sizeof r1, "GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\nConnection: close\r\n\r\n", etag);
    snprintf(r2, sizeof r2, "GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\", W/%s\r\nConnection: close\r\n\r\n", etag);
    snprintf(r3, sizeof r3, "HEAD /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\nConnection: close\r\n\r\n", etag);
    wt_run run = {.n = 8,
                  .reqs = {r1, r2, r3,
                           "GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"stale\"\r\nConnection: close\r\n\r\n",
                           "POST /page HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                           WT_GET("/own"), WT_GET("/flushed"), WT_GET("/missing")}};
    serve((sq_app_settings){0}, &run);
    char v[64];
    assert_int_equal(run.resp[0].status, 304);
    assert_int_equal(run.resp[0].body_len, 0);
    assert_true(wt_header(&run.resp[0], "ETag", v, sizeof v));
    assert_string_equal(v, etag);
    assert_int_equal(run.resp[1].status, 304); /* listed among others, weakly */
    assert_int_equal(run.resp[2].status, 304); /* HEAD too */
    assert_int_equal(run.resp[3].status, 200);
    assert_string_equal(run.resp[3].body, "the same page every time");
    assert_int_equal(run.resp[4].status, 200);
    assert_false(wt_header(&run.resp[4], "ETag", v, sizeof v)); /* not for POST */
    assert_true(wt_header(&run.resp[5], "ETag", v, sizeof v));
    assert_string_equal(v, "\"mine\""); /* the handler's own is kept */
    assert_false(wt_header(&run.resp[6], "ETag", v, sizeof v)); /* sent in pieces: no hash */
    assert_string_equal(run.resp[6].body, "part one part two");
    assert_false(wt_header(&run.resp[7], "ETag", v, sizeof v)); /* not for errors */
    wt_free(&run);
    /* settings.no_etag */
    wt_run off = {.n = 1, .reqs = {r1}};
    serve((sq_app_settings){.no_etag = true}, &off);
    assert_int_equal(off.resp[0].status, 200);
    assert_false(wt_header(&off.resp[0], "ETag", v, sizeof v));
    wt_free(&off);
    wt_free(&first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_etag)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
