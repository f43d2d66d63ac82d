/* Web-layer defects found in the reliability round (issue 17): relative redirects are
 * resolved against the request's path, setting a cookie twice sends one Set-Cookie, and
 * the static handler opens files beneath its root in one step (a symlink that leads out,
 * absolute or swapped in, is refused). */
#include "testutil.h"
#include "webtest.h"

#include <fcntl.h>
#include <sys/stat.h>

static void redirect_get(sq_handler *h)
{
    sq_redirect(h, sq_get_query_argument(h, "to", ""), false);
}

static void cookie_get(sq_handler *h)
{
    sq_set_cookie(h, "a", "1", NULL);
    sq_set_cookie(h, "b", "1", NULL);
    sq_set_cookie(h, "a", "2", NULL);                                   /* replaces a=1 */
    sq_set_cookie(h, "b", "2", &(sq_cookie_options){.path = "/other"}); /* another cookie */
    sq_write(h, "ok");
}

static const sq_route routes[] = {
    {"/dir/page", &(sq_handler_class){.get = redirect_get}, NULL, NULL},
    {"/cookies", &(sq_handler_class){.get = cookie_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_relative_redirects(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    wt_run run = {.n = 9,
                  .reqs = {
                      WT_GET("/dir/page?to=other"),
                      WT_GET("/dir/page?to=../up"),
                      WT_GET("/dir/page?to=./x/../y"),
                      WT_GET("/dir/page?to=%3Fq%3D1"),
                      WT_GET("/dir/page?to=/abs/./a/../b"),
                      WT_GET("/dir/page?to=http://example.com/x"),
                      WT_GET("/dir/page?to=//cdn.example.com/x"),
                      WT_GET("/dir/page?to=../../../../etc"),
                      WT_GET("/dir/page?to=sub/"),
                  }};
    wt_serve(loop, app, &run);
    const char *want[] = {"/dir/other",          "/up",    "/dir/y",
                          "/dir/page?q=1",       "/abs/b", "http://example.com/x",
                          "//cdn.example.com/x", "/etc",   "/dir/sub/"};
    for (size_t i = 0; i < run.n; i++) {
        char loc[256] = "";
        assert_int_equal(run.resp[i].status, 302);
        assert_true(wt_header(&run.resp[i], "Location", loc, sizeof loc));
        if (strcmp(loc, want[i])) fail_msg("redirect %zu: Location %s, want %s", i, loc, want[i]);
    }
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
    (void)state;
}

static void test_cookie_set_twice(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    wt_run run = {.n = 1, .reqs = {WT_GET("/cookies")}};
    wt_serve(loop, app, &run);
    wt_resp *r = &run.resp[0];
    assert_int_equal(r->status, 200);
    assert_int_equal(wt_header_count(r, "Set-Cookie"), 3);
    assert_non_null(strstr(r->raw, "Set-Cookie: a=2; Path=/\r\n"));
    assert_null(strstr(r->raw, "a=1"));
    assert_non_null(strstr(r->raw, "Set-Cookie: b=1; Path=/\r\n"));
    assert_non_null(strstr(r->raw, "Set-Cookie: b=2; Path=/other\r\n"));
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
    (void)state;
}

/* --- static files beneath the root ----------------------------------------------------------- */

static char tmpdir[256], rootdir[300];

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
}

static void test_static_beneath_root(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sq_static_beneath_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(rootdir, sizeof rootdir, "%s/root", tmpdir);
    assert_int_equal(mkdir(rootdir, 0755), 0);
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/secret.txt", tmpdir);
    write_file(p, "SECRET");
    snprintf(p, sizeof p, "%s/ok.txt", rootdir);
    write_file(p, "fine");
    snprintf(p, sizeof p, "%s/sub", rootdir);
    assert_int_equal(mkdir(p, 0755), 0);
    /* a directory symlink leading out, and a relative one that climbs out */
    snprintf(p, sizeof p, "%s/outdir", rootdir);
    assert_int_equal(symlink(tmpdir, p), 0);
    snprintf(p, sizeof p, "%s/sub/climb.txt", rootdir);
    assert_int_equal(symlink("../../secret.txt", p), 0);
    /* an absolute symlink to a file inside the root: refused too (it resolves from /) */
    snprintf(p, sizeof p, "%s/abs_inside.txt", rootdir);
    snprintf(q, sizeof q, "%s/ok.txt", rootdir);
    assert_int_equal(symlink(q, p), 0);
    /* a relative symlink that stays inside: fine */
    snprintf(p, sizeof p, "%s/sub/rel_inside.txt", rootdir);
    assert_int_equal(symlink("../ok.txt", p), 0);
    /* a FIFO: never opened in a way that could block the loop, and refused */
    snprintf(p, sizeof p, "%s/fifo", rootdir);
    assert_int_equal(mkfifo(p, 0644), 0);

    sq_loop *loop = wt_loop();
    sq_route r2[] = {{"/static/(.*)", &sq_static_file_handler, NULL, rootdir},
                     {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(r2, &st);
    wt_run run = {.n = 6,
                  .reqs = {
                      WT_GET("/static/ok.txt"),
                      WT_GET("/static/outdir/secret.txt"),
                      WT_GET("/static/sub/climb.txt"),
                      WT_GET("/static/abs_inside.txt"),
                      WT_GET("/static/sub/rel_inside.txt"),
                      WT_GET("/static/fifo"),
                  }};
    wt_serve(loop, app, &run);
    wt_resp *r = run.resp;
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "fine");
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(r[i].status, 403);
        assert_null(strstr(r[i].raw, "SECRET"));
    }
    assert_int_equal(r[4].status, 200);
    assert_string_equal(r[4].body, "fine");
    assert_int_equal(r[5].status, 403);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_redirects),
        cmocka_unit_test(test_cookie_set_twice),
        cmocka_unit_test(test_static_beneath_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
