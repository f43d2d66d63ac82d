/* sq_render / sq_render_string in a web app: templates from settings.template_path (the ones
 * tests/web/templates/ shares with the Jinja2 comparison), Content-Type, a 500 for a broken
 * template, debug reloading. */
#include "webtest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

static char dir[64];

static void page_get(sq_handler *h)
{
    json_t *rows = json_array();
    for (int i = 1; i <= 3; i++)
        json_array_append_new(rows, json_pack("{s:i, s:s, s:f, s:[s]}", "id", i, "name", i == 2 ? "<b>" : "x",
                                              "price", i + 0.5, "tags", "t"));
    sq_render(h, "table.html",
              json_pack("{s:s, s:o, s:{s:s, s:i}}", "title", "T&C", "rows", rows, "site", "name", "s", "year", 1));
}

static void string_get(sq_handler *h)
{
    sq_set_header(h, "Content-Type", "text/plain");
    sq_render_string(h, "{{ a }}+{{ b }}={{ a + b }}", json_pack("{s:i, s:i}", "a", 2, "b", 3));
}

static void broken_get(sq_handler *h)
{
    sq_render(h, "broken.html", NULL);
}

static void missing_get(sq_handler *h)
{
    sq_render(h, "missing.html", NULL);
}

static void live_get(sq_handler *h)
{
    sq_render(h, "live.html", json_pack("{s:s}", "v", "value"));
}

static void test_render(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/squall-render-%d", (int)getpid());
    mkdir(dir, 0755);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp %s/tests/web/templates/*.html %s/", getenv("SQ_SOURCE_DIR"), dir);
    assert_int_equal(system(cmd), 0);
    sq_test_write_file(dir, "broken.html", "line one\n{% if x %}never closed\n", 0);
    sq_test_write_file(dir, "live.html", "v1 {{ v }}", 0);

    sq_loop *loop = wt_loop();
    static const sq_handler_class page = {.get = page_get}, str = {.get = string_get},
                                  broken = {.get = broken_get}, missing = {.get = missing_get},
                                  live = {.get = live_get};
    const sq_route routes[] = {{"/page", &page, NULL, NULL},       {"/string", &str, NULL, NULL},
                               {"/broken", &broken, NULL, NULL},   {"/missing", &missing, NULL, NULL},
                               {"/live", &live, NULL, NULL},       {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true, .template_path = dir, .debug = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    assert_non_null(sq_app_templates(app));
    wt_run run = {.n = 5,
                  .reqs = {WT_GET("/page"), WT_GET("/string"), WT_GET("/broken"), WT_GET("/missing"),
                           WT_GET("/live")}};
    wt_serve(loop, app, &run);
    char ct[64];
    assert_int_equal(run.resp[0].status, 200);
    assert_true(wt_header(&run.resp[0], "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "text/html; charset=UTF-8");
    assert_non_null(strstr(run.resp[0].body, "<title>T&amp;C - squall</title>"));
    assert_non_null(strstr(run.resp[0].body, "<td>&lt;b&gt;</td>"));
    assert_non_null(strstr(run.resp[0].body, "<footer>S &middot; 1</footer>"));
    assert_int_equal(run.resp[1].status, 200);
    assert_string_equal(run.resp[1].body, "2+3=5");
    assert_true(wt_header(&run.resp[1], "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "text/plain");
    assert_int_equal(run.resp[2].status, 500);
    assert_non_null(strstr(run.resp[2].body, "broken.html:2:1: &#39;if&#39; without &#39;endif&#39;")); /* debug */
    assert_int_equal(run.resp[3].status, 500);
    assert_int_equal(run.resp[4].status, 200);
    assert_string_equal(run.resp[4].body, "v1 value");
    wt_free(&run);

    /* debug: the changed file is compiled again */
    sq_test_write_file(dir, "live.html", "v2 {{ v | upper }}", 5);
    wt_run run2 = {.n = 1, .reqs = {WT_GET("/live")}};
    wt_serve(loop, app, &run2);
    assert_string_equal(run2.resp[0].body, "v2 VALUE");
    wt_free(&run2);
    sq_app_free(app);
    sq_loop_free(loop);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
