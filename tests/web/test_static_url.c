/* sq_static_url (a content hash in the URL, a year of caching for it), static_max_age for
 * unversioned requests and static_default_filename for directories. */
#include "webtest.h"

#include <sys/stat.h>

static char dir[64];
static char url1[128], url2[128];

static void page_get(sq_handler *h)
{
    const char *u = sq_static_url(h, "style.css");
    const char *missing = sq_static_url(h, "nope.css");
    const char *bad = sq_static_url(h, "../etc/passwd");
    sq_writef(h, "%s|%s|%s", u ? u : "NULL", missing ? missing : "NULL", bad ? bad : "NULL");
}

static sq_app *make(bool debug)
{
    static sq_route routes[] = {{"/page", NULL, NULL, NULL},
                                {"/static/(.*)", &sq_static_file_handler, "static", NULL},
                                {NULL, NULL, NULL, NULL}};
    static const sq_handler_class page = {.get = page_get};
    routes[0].cls = &page;
    routes[1].init_arg = dir;
    sq_app_settings st = {.no_access_log = true, .debug = debug, .static_max_age = 60,
                          .static_default_filename = "index.html"};
    return sq_app_new(routes, &st);
}

static void test_static_url(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/squall-static-url-%d", (int)getpid());
    mkdir(dir, 0755);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    sq_test_write_file(dir, "style.css", "body { color: red }", 0);
    sq_test_write_file(dir, "index.html", "<p>root index</p>", 0);
    sq_test_write_file(sub, "index.html", "<p>sub index</p>", 0);

    sq_loop *loop = wt_loop();
    sq_app *app = make(true);
    assert_non_null(app);
    wt_run run = {.n = 5,
                  .reqs = {WT_GET("/page"), WT_GET("/static/style.css"), WT_GET("/static/sub/"),
                           WT_GET("/static/"), WT_GET("/static/sub")}};
    wt_serve(loop, app, &run);
    char v[64];
    assert_int_equal(run.resp[0].status, 200);
    char *bar = strchr(run.resp[0].body, '|');
    assert_non_null(bar);
    snprintf(url1, sizeof url1, "%.*s", (int)(bar - run.resp[0].body), run.resp[0].body);
    assert_int_equal(strncmp(url1, "/static/style.css?v=", 20), 0);
    assert_int_equal(strlen(url1), 20 + 16);
    assert_string_equal(bar, "|NULL|NULL");
    assert_int_equal(run.resp[1].status, 200); /* unversioned: static_max_age */
    assert_true(wt_header(&run.resp[1], "Cache-Control", v, sizeof v));
    assert_string_equal(v, "max-age=60, public");
    assert_int_equal(run.resp[2].status, 200);
    assert_string_equal(run.resp[2].body, "<p>sub index</p>");
    assert_true(wt_header(&run.resp[2], "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/html; charset=UTF-8");
    assert_string_equal(run.resp[3].body, "<p>root index</p>");
    assert_string_equal(run.resp[4].body, "<p>sub index</p>");
    wt_free(&run);

    static char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", url1);
    wt_run run2 = {.n = 1, .reqs = {req}};
    wt_serve(loop, app, &run2);
    assert_int_equal(run2.resp[0].status, 200);
    assert_string_equal(run2.resp[0].body, "body { color: red }");
    assert_true(wt_header(&run2.resp[0], "Cache-Control", v, sizeof v));
    assert_string_equal(v, "max-age=31536000, public"); /* versioned: a year */
    wt_free(&run2);

    /* the file changes: debug gives it a new version */
    sq_test_write_file(dir, "style.css", "body { color: blue }", 5);
    wt_run run3 = {.n = 1, .reqs = {WT_GET("/page")}};
    wt_serve(loop, app, &run3);
    bar = strchr(run3.resp[0].body, '|');
    snprintf(url2, sizeof url2, "%.*s", (int)(bar - run3.resp[0].body), run3.resp[0].body);
    assert_int_equal(strncmp(url2, "/static/style.css?v=", 20), 0);
    assert_string_not_equal(url1, url2);
    wt_free(&run3);
    sq_app_free(app);
    sq_loop_free(loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_static_url)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
