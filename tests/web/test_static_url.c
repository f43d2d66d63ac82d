/* sq_static_url (a content hash in the URL, a year of caching for it), static_max_age for
 * unversioned requests and static_default_filename for directories.  Written with the
 * user-facing harness (squall/testing.h). */
#include "webtest.h"
#include "squall/testing.h"

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

static void static_urls(sq_test *t)
{
    /* the two bad calls of page_get are logged (and swallowed here) */
    sq_test_expect_log(t, SQ_LOG_ERROR, "sq_static_url(nope.css): not a file");
    sq_test_expect_log(t, SQ_LOG_ERROR, "sq_static_url(../etc/passwd): no route");
    sq_fetch_response *r = sq_test_fetch(t, "/page", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    const char *bar = r ? strchr(r->body, '|') : NULL;
    if (!SQ_CHECK(t, bar != NULL)) return;
    snprintf(url1, sizeof url1, "%.*s", (int)(bar - r->body), r->body);
    SQ_CHECK(t, strncmp(url1, "/static/style.css?v=", 20) == 0 && strlen(url1) == 20 + 16);
    SQ_CHECK(t, strcmp(bar, "|NULL|NULL") == 0);

    r = sq_test_fetch(t, "/static/style.css", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_HEADER(t, r, "Cache-Control", "max-age=60, public"); /* unversioned */
    r = sq_test_fetch(t, "/static/sub/", NULL);
    SQ_CHECK_BODY(t, r, "<p>sub index</p>");
    SQ_CHECK_HEADER(t, r, "Content-Type", "text/html; charset=UTF-8");
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/static/", NULL), "<p>root index</p>");
    /* a directory without its slash: to its own URL first, as Tornado and nginx do */
    SQ_CHECK_BODY(t, sq_test_fetch(t, "/static/sub", NULL), "<p>sub index</p>");
    sq_fetch_request nofollow = {.no_follow_redirects = true};
    r = sq_test_fetch(t, "/static/sub?x=1", &nofollow);
    SQ_CHECK_STATUS(t, r, 301);
    SQ_CHECK_HEADER(t, r, "Location", "/static/sub/?x=1");
    r = sq_test_fetch(t, "/static/sub", &nofollow);
    SQ_CHECK_HEADER(t, r, "Location", "/static/sub/");

    r = sq_test_fetch(t, url1, NULL);
    SQ_CHECK_BODY(t, r, "body { color: red }");
    SQ_CHECK_HEADER(t, r, "Cache-Control", "max-age=31536000, public"); /* versioned: a year */

    /* the file changes: debug gives it a new version */
    sq_test_write_file(dir, "style.css", "body { color: blue }", 5);
    r = sq_test_fetch(t, "/page", NULL);
    bar = r ? strchr(r->body, '|') : NULL;
    if (!SQ_CHECK(t, bar != NULL)) return;
    snprintf(url2, sizeof url2, "%.*s", (int)(bar - r->body), r->body);
    SQ_CHECK(t, strncmp(url2, "/static/style.css?v=", 20) == 0);
    SQ_CHECK(t, strcmp(url1, url2) != 0);
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
    sq_app *app = make(true);
    assert_non_null(app);
    assert_int_equal(sq_test_run(app, static_urls, NULL, NULL), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_static_url)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
