/* The static file handler: content types, validators (304), ranges (206/416), HEAD, large
 * files, and every way out of the root (403/404). */
#include "webtest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

static char tmpdir[256], rootdir[300];

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/sq_static_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(rootdir, sizeof rootdir, "%s/root", tmpdir);
    mkdir(rootdir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/hello.txt", rootdir);
    write_file(p, "0123456789abcdef", 16);
    snprintf(p, sizeof p, "%s/style.css", rootdir);
    write_file(p, "body{}", 6);
    snprintf(p, sizeof p, "%s/blob.bin", rootdir);
    write_file(p, "\x00\x01\x02", 3);
    snprintf(p, sizeof p, "%s/empty.txt", rootdir);
    write_file(p, "", 0);
    snprintf(p, sizeof p, "%s/sub", rootdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/page.html", rootdir);
    write_file(p, "<p>hi</p>", 9);
    snprintf(p, sizeof p, "%s/secret.txt", tmpdir); /* outside the root */
    write_file(p, "SECRET", 6);
    char link[512];
    snprintf(link, sizeof link, "%s/escape.txt", rootdir);
    if (symlink(p, link) < 0) return -1;
    snprintf(link, sizeof link, "%s/inside.txt", rootdir);
    if (symlink("hello.txt", link) < 0) return -1;
    /* 4 KiB of text: gzipped when the server gzips */
    snprintf(p, sizeof p, "%s/page.txt", rootdir);
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 7);
    write_file(p, text, sizeof text);
    /* a 3 MiB file: sent with sendfile(2) */
    snprintf(p, sizeof p, "%s/big.bin", rootdir);
    size_t big = 3u << 20;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + i % 26);
    write_file(p, data, big);
    free(data);
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const sq_route *routes(void)
{
    static sq_route rs[4];
    rs[0] = (sq_route){"/static/(.*)", &sq_static_file_handler, "static", rootdir};
    rs[1] = (sq_route){"/noroot/(.*)", &sq_static_file_handler, NULL, NULL};
    /* sysfs: regular files that say 4096 bytes and hold fewer (a file that shrank) */
    rs[2] = (sq_route){"/sysfs/(.*)", &sq_static_file_handler, NULL, "/sys/kernel"};
    rs[3] = (sq_route){NULL, NULL, NULL, NULL};
    return rs;
}

static void serve_with(wt_run *run, sq_app_settings st)
{
    sq_loop *loop = wt_loop();
    sq_app *app = sq_app_new(routes(), &st);
    assert_non_null(app);
    sq_log_set_level(SQ_LOG_OFF);
    wt_serve(loop, app, run);
    sq_log_set_level(SQ_LOG_INFO);
    sq_app_free(app);
    sq_loop_free(loop);
}

static void serve(wt_run *run)
{
    serve_with(run, (sq_app_settings){.no_access_log = true});
}

static void test_basic(void **state)
{
    wt_run run = {
        .n = 6,
        .reqs = {WT_GET("/static/hello.txt"), WT_GET("/static/style.css"),
                 WT_GET("/static/blob.bin"), WT_GET("/static/sub/page.html"),
                 WT_GET("/static/empty.txt"),
                 "HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"}};
    serve(&run);
    wt_resp *r = run.resp;
    char v[128];
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "0123456789abcdef");
    assert_true(wt_header(&r[0], "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/plain; charset=UTF-8");
    assert_true(wt_header(&r[0], "Content-Length", v, sizeof v));
    assert_string_equal(v, "16");
    assert_true(wt_header(&r[0], "ETag", v, sizeof v));
    assert_true(v[0] == '"');
    assert_true(wt_header(&r[0], "Last-Modified", v, sizeof v));
    assert_true(strstr(v, "GMT") != NULL);
    assert_true(wt_header(&r[1], "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/css; charset=UTF-8");
    assert_true(wt_header(&r[2], "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/octet-stream");
    assert_int_equal(r[2].body_len, 3);
    assert_memory_equal(r[2].body, "\x00\x01\x02", 3);
    assert_string_equal(r[3].body, "<p>hi</p>");
    assert_true(wt_header(&r[3], "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/html; charset=UTF-8");
    assert_int_equal(r[4].status, 200);
    assert_int_equal(r[4].body_len, 0);
    assert_int_equal(r[5].status, 200);
    assert_true(wt_header(&r[5], "Content-Length", v, sizeof v));
    assert_string_equal(v, "16");
    assert_int_equal(r[5].body_len, 0);
    wt_free(&run);
}

static void test_conditional(void **state)
{
    /* First learn the validators. */
    wt_run run = {.n = 1, .reqs = {WT_GET("/static/hello.txt")}};
    serve(&run);
    char etag[128], lm[64];
    assert_true(wt_header(&run.resp[0], "ETag", etag, sizeof etag));
    assert_true(wt_header(&run.resp[0], "Last-Modified", lm, sizeof lm));
    wt_free(&run);

    static char q[7][512];
    snprintf(q[0], sizeof q[0],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-None-Match: %s\r\n\r\n",
             etag);
    snprintf(q[1], sizeof q[1],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-None-Match: \"nope\", W/%s\r\n\r\n",
             etag);
    snprintf(q[2], sizeof q[2],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-None-Match: \"nope\"\r\n\r\n");
    snprintf(q[3], sizeof q[3],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-Modified-Since: %s\r\n\r\n",
             lm);
    snprintf(q[4], sizeof q[4],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n");
    /* If-None-Match wins over If-Modified-Since */
    snprintf(q[5], sizeof q[5],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-None-Match: \"nope\"\r\nIf-Modified-Since: %s\r\n\r\n",
             lm);
    /* a list over two lines (RFC 9110 5.3: one list); only the first was read */
    snprintf(q[6], sizeof q[6],
             "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "If-None-Match: \"nope\"\r\nIf-None-Match: %s\r\n\r\n",
             etag);
    wt_run run2 = {.n = 7, .reqs = {q[0], q[1], q[2], q[3], q[4], q[5], q[6]}};
    serve(&run2);
    wt_resp *r = run2.resp;
    char v[128];
    assert_int_equal(r[0].status, 304);
    assert_int_equal(r[0].body_len, 0);
    assert_true(wt_header(&r[0], "ETag", v, sizeof v));
    assert_string_equal(v, etag);
    assert_int_equal(r[1].status, 304);
    assert_int_equal(r[2].status, 200);
    assert_int_equal(r[3].status, 304);
    assert_int_equal(r[4].status, 200);
    assert_int_equal(r[5].status, 200);
    assert_int_equal(r[6].status, 304);
    wt_free(&run2);
}

#define RANGE(spec)                                                                                \
    "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: " spec "\r\n\r\n"

static void test_ranges(void **state)
{
    wt_run run = {.n = 9,
                  .reqs = {RANGE("bytes=2-5"), RANGE("bytes=10-"), RANGE("bytes=-3"),
                           RANGE("bytes=4-100"), RANGE("bytes=16-"), RANGE("bytes=-0"),
                           RANGE("bytes=0-1,4-5"), RANGE("chars=1-2"),
                           "GET /static/empty.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           "Range: bytes=0-\r\n\r\n"}};
    serve(&run);
    wt_resp *r = run.resp;
    char v[128];
    assert_int_equal(r[0].status, 206);
    assert_string_equal(r[0].body, "2345");
    assert_true(wt_header(&r[0], "Content-Range", v, sizeof v));
    assert_string_equal(v, "bytes 2-5/16");
    assert_true(wt_header(&r[0], "Content-Length", v, sizeof v));
    assert_string_equal(v, "4");
    assert_int_equal(r[1].status, 206);
    assert_string_equal(r[1].body, "abcdef");
    assert_int_equal(r[2].status, 206);
    assert_string_equal(r[2].body, "def");
    assert_int_equal(r[3].status, 206);
    assert_string_equal(r[3].body, "456789abcdef");
    assert_true(wt_header(&r[3], "Content-Range", v, sizeof v));
    assert_string_equal(v, "bytes 4-15/16");
    assert_int_equal(r[4].status, 416);
    assert_true(wt_header(&r[4], "Content-Range", v, sizeof v));
    assert_string_equal(v, "bytes */16");
    assert_int_equal(r[5].status, 416);
    /* several ranges or another unit: the whole file */
    assert_int_equal(r[6].status, 200);
    assert_string_equal(r[6].body, "0123456789abcdef");
    assert_int_equal(r[7].status, 200);
    assert_int_equal(r[8].status, 416);
    wt_free(&run);
}

/* Positions past 2^64 are still positions (RFC 9110 14.1.1, 14.1.2): a last-pos at or past
 * the length means "to the end", a suffix longer than the file is all of it, a first-pos
 * past the end is unsatisfiable.  (Tornado agrees; nginx answers 416 past 2^63.) */
static void test_range_overflow(void **state)
{
    wt_run run = {
        .n = 6,
        .reqs = {RANGE("bytes=0-99999999999999999999999"), RANGE("bytes=3-18446744073709551615"),
                 RANGE("bytes=-999999999999999999999"), RANGE("bytes=99999999999999999999999-"),
                 RANGE("bytes=18446744073709551616-18446744073709551617"),
                 RANGE("bytes=000000000000000000000000000002-5")}};
    serve(&run);
    wt_resp *r = run.resp;
    char v[128];
    static const char *const want[] = {"bytes 0-15/16", "bytes 3-15/16", "bytes 0-15/16",
                                       "bytes */16",    "bytes */16",    "bytes 2-5/16"};
    static const int status[] = {206, 206, 206, 416, 416, 206};
    for (int i = 0; i < 6; i++) {
        if (r[i].status != status[i]) fail_msg("request %d: status %d", i, r[i].status);
        assert_true(wt_header(&r[i], "Content-Range", v, sizeof v));
        assert_string_equal(v, want[i]);
    }
    assert_string_equal(r[0].body, "0123456789abcdef");
    assert_string_equal(r[1].body, "3456789abcdef");
    assert_string_equal(r[5].body, "2345");
    wt_free(&run);
}

static void test_traversal(void **state)
{
    wt_run run = {.n = 12,
                  .reqs = {WT_GET("/static/../secret.txt"), WT_GET("/static/%2e%2e/secret.txt"),
                           WT_GET("/static/sub/%2E%2E/%2e%2e/secret.txt"),
                           WT_GET("/static/%2fetc%2fpasswd"), WT_GET("/static//etc/passwd"),
                           WT_GET("/static/escape.txt"), WT_GET("/static/hello.txt%00.css"),
                           WT_GET("/static/"), WT_GET("/static/sub"), WT_GET("/static/missing.txt"),
                           WT_GET("/static/inside.txt"), WT_GET("/noroot/hello.txt")}};
    serve(&run);
    wt_resp *r = run.resp;
    for (int i = 0; i < 7; i++) {
        assert_true(r[i].status == 403 || r[i].status == 404 || r[i].status == 400);
        assert_null(strstr(r[i].raw, "SECRET"));
        assert_null(strstr(r[i].raw, "root:"));
    }
    assert_int_equal(r[0].status, 403);
    assert_int_equal(r[1].status, 403);
    assert_int_equal(r[5].status, 403); /* a symlink leading outside */
    assert_int_equal(r[7].status, 403); /* the root directory itself */
    assert_int_equal(r[8].status, 403); /* a directory */
    assert_int_equal(r[9].status, 404);
    assert_int_equal(r[10].status, 200); /* a symlink staying inside is fine */
    assert_string_equal(r[10].body, "0123456789abcdef");
    assert_int_equal(r[11].status, 500); /* misconfigured route */
    wt_free(&run);
}

static void test_big_file(void **state)
{
    /* large bodies go out with sendfile(2): one Content-Length response, never chunked */
    wt_run run = {
        .n = 4,
        .reqs = {WT_GET("/static/big.bin"),
                 RANGE("bytes=0-0") /* keeps the run honest: small after big */,
                 "GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                 "Range: bytes=1000000-2100000\r\n\r\n",
                 "HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"}};
    serve(&run);
    wt_resp *r = run.resp;
    char v[128];
    assert_int_equal(r[0].status, 200);
    assert_true(wt_header(&r[0], "Content-Length", v, sizeof v));
    assert_string_equal(v, "3145728");
    assert_int_equal(wt_header_count(&r[0], "Transfer-Encoding"), 0);
    assert_int_equal(r[0].body_len, 3u << 20);
    bool ok = true;
    for (size_t i = 0; i < r[0].body_len && ok; i++) ok = r[0].body[i] == (char)('a' + i % 26);
    assert_true(ok);
    assert_int_equal(r[1].status, 206);
    assert_string_equal(r[1].body, "0");
    assert_int_equal(r[2].status, 206);
    assert_true(wt_header(&r[2], "Content-Range", v, sizeof v));
    assert_string_equal(v, "bytes 1000000-2100000/3145728");
    assert_true(wt_header(&r[2], "Content-Length", v, sizeof v));
    assert_string_equal(v, "1100001");
    assert_int_equal(wt_header_count(&r[2], "Transfer-Encoding"), 0);
    assert_int_equal(r[2].body_len, 1100001);
    for (size_t i = 0; i < r[2].body_len && ok; i++)
        ok = r[2].body[i] == (char)('a' + (1000000 + i) % 26);
    assert_true(ok);
    assert_int_equal(r[3].status, 200);
    assert_true(wt_header(&r[3], "Content-Length", v, sizeof v));
    assert_string_equal(v, "3145728");
    assert_int_equal(r[3].body_len, 0);
    wt_free(&run);
}

static void test_short_read(void **state)
{
    /* the file is shorter than its size said: a 500, which must not be cached like the file
     * would have been (a year, for a versioned URL) */
    struct stat st;
    if (stat("/sys/kernel/uevent_seqnum", &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 64)
        skip();
    wt_run run = {.n = 1, .reqs = {WT_GET("/sysfs/uevent_seqnum?v=1")}};
    serve(&run);
    char v[128];
    assert_int_equal(run.resp[0].status, 500);
    assert_false(wt_header(&run.resp[0], "Cache-Control", v, sizeof v));
    wt_free(&run);
}

static void test_gzip_etag(void **state)
{
    /* the gzip bytes are another representation than the file's: their ETag cannot be the
     * file's strong one, else an If-Range with it gets a 206 of the file's own bytes */
    wt_run run = {.n = 1,
                  .reqs = {"GET /static/page.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           "Accept-Encoding: gzip\r\n\r\n"}};
    sq_app_settings st = {.no_access_log = true, .http = {.gzip = true}};
    serve_with(&run, st);
    char etag[128], v[128];
    assert_int_equal(run.resp[0].status, 200);
    assert_true(wt_header(&run.resp[0], "Content-Encoding", v, sizeof v));
    assert_string_equal(v, "gzip");
    assert_true(wt_header(&run.resp[0], "ETag", etag, sizeof etag));
    wt_free(&run);

    static char q[3][512];
    snprintf(q[0], sizeof q[0],
             "GET /static/page.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Accept-Encoding: gzip\r\nRange: bytes=10-\r\nIf-Range: %s\r\n\r\n",
             etag);
    snprintf(q[1], sizeof q[1], /* weak comparison: still not modified */
             "GET /static/page.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Accept-Encoding: gzip\r\nIf-None-Match: %s\r\n\r\n",
             etag);
    snprintf(q[2], sizeof q[2], /* the identity response keeps the strong one */
             "GET /static/page.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    wt_run run2 = {.n = 3, .reqs = {q[0], q[1], q[2]}};
    serve_with(&run2, st);
    wt_resp *r = run2.resp;
    assert_int_equal(r[0].status, 200); /* not a 206 of the identity bytes */
    assert_true(wt_header(&r[0], "Content-Encoding", v, sizeof v));
    assert_int_equal(r[1].status, 304);
    assert_int_equal(r[2].status, 200);
    assert_int_equal(r[2].body_len, 4096);
    assert_true(wt_header(&r[2], "ETag", v, sizeof v));
    assert_true(v[0] == '"');
    wt_free(&run2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),      cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_ranges),     cmocka_unit_test(test_range_overflow),
        cmocka_unit_test(test_traversal),  cmocka_unit_test(test_big_file),
        cmocka_unit_test(test_short_read), cmocka_unit_test(test_gzip_etag),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
