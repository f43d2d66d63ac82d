/* Where the web layer does what Tornado and Jinja2 do for the same thing: a relative redirect
 * stays on the site, escaping is lexical across include and blocks, numbers print as
 * Python's repr, static_url keeps a folder's '/', `authenticated` is checked after prepare,
 * a handler finishing itself gets an ETag, and a stray '%' does not cost the other query
 * arguments. */
#include <sys/stat.h>

#include "webtest.h"
#include "squall/template.h"
#include "squall/testing.h"

/* --- redirects ------------------------------------------------------------------------------ */

static void next_get(sq_handler *h)
{
    sq_redirect(h, "next", false); /* relative: a wizard's next step */
}

static void page2_get(sq_handler *h)
{
    sq_redirect(h, "?page=2", false); /* the same document, another query */
}

static const sq_route redirect_routes[] = {
    {"/docs/(.*)", &(sq_handler_class){.get = next_get}, NULL, NULL},
    {"/(.*)", &(sq_handler_class){.get = page2_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_relative_redirect_stays_on_site(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(redirect_routes, &st);
    assert_non_null(app);
    wt_run run = {.n = 5,
                  .reqs = {WT_GET("/docs/a/b"), WT_GET("/docs/..//evil.com/x"),
                           WT_GET("//evil.com/"), WT_GET("/docs/..%2f/evil.com/x"),
                           WT_GET("/\\evil.com/")}};
    wt_serve(loop, app, &run);
    const char *want[] = {"/docs/a/next", "/.//evil.com/next", "/.//evil.com/?page=2", NULL,
                          "/./\\evil.com/?page=2"};
    for (size_t i = 0; i < run.n; i++) {
        char loc[256] = "";
        assert_int_equal(run.resp[i].status, 302);
        assert_true(wt_header(&run.resp[i], "Location", loc, sizeof loc));
        /* never "//host" or "/\host": a browser would go to another site */
        if (loc[0] == '/' && (loc[1] == '/' || loc[1] == '\\'))
            fail_msg("[%zu] Location: %s", i, loc);
        if (want[i]) assert_string_equal(loc, want[i]);
    }
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- templates ------------------------------------------------------------------------------ */

static char *render(sq_templates *L, const char *name, const char *src, json_t *ctx)
{
    char err[256];
    sq_template *own = src ? sq_template_compile(L, "s", src, strlen(src), err, sizeof err) : NULL;
    sq_template *t = src ? own : sq_templates_get(L, name, err, sizeof err);
    if (!t) fail_msg("%s", err);
    char *out = NULL;
    size_t len;
    assert_int_equal(sq_template_render(t, ctx, &out, &len, err, sizeof err), 0);
    sq_template_free(own);
    return out;
}

/* The expected strings are what Jinja2 3.1 prints for the same templates (autoescape on). */
static void test_template_jinja2_parity(void **state)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sq-tpl-sem-%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0755), 0);
    sq_test_write_file(dir, "inc.html", "{{ h }}", 0);
    sq_test_write_file(
        dir, "page.html",
        "{% autoescape false %}{{ h }}|{% include \"inc.html\" %}{% endautoescape %}", 0);
    sq_test_write_file(
        dir, "base.html",
        "{% autoescape false %}[{% block b %}{{ h }}{% endblock %}]{% endautoescape %}"
        "({% block c %}{% endblock %})",
        0);
    sq_test_write_file(
        dir, "child.html",
        "{% extends \"base.html\" %}{% block b %}{{ h }}{% endblock %}"
        "{% block c %}{% autoescape false %}{{ h }}{% endautoescape %}{{ h }}{% endblock %}",
        0);
    sq_test_write_file(dir, "super.html",
                       "{% extends \"base.html\" %}{% block b %}{{ super() }}{{ h }}{% endblock %}",
                       0);
    sq_templates *L = sq_templates_new(dir, NULL);
    assert_non_null(L);
    json_t *ctx = json_pack("{s:s,s:f,s:f,s:f,s:f}", "h", "<b>", "price", 19.99, "w",
                            5.2017999999999995, "n", -0.5, "big", 41911.45);
    struct {
        const char *name, *src, *want;
    } c[] = {
        /* escaping follows where a tag is written: an include and a child's block escape */
        {"page.html", NULL, "<b>|&lt;b&gt;"},
        {"child.html", NULL, "[&lt;b&gt;](<b>&lt;b&gt;)"},
        {"super.html", NULL, "[<b>&lt;b&gt;]()"},
        {"base.html", NULL, "[<b>]()"},
        /* numbers as Python's repr */
        {NULL, "{{ price }} {{ w }} {{ n }} {{ big }} {{ price|string }}",
         "19.99 5.2017999999999995 -0.5 41911.45 19.99"},
        /* |int truncates; past the range of an integer it stops at its end (Jinja2 makes a
         * big integer; a C cast was undefined) */
        {NULL, "{{ price|int }} {{ n|int }} {{ (big * 1e300)|int }}", "19 0 9223372036854775807"},
        /* a value marked safe stays safe through set */
        {NULL, "{% set x = h|safe %}{{ x }}{% set y = h %}{{ y }}", "<b>&lt;b&gt;"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *got = render(L, c[i].name, c[i].src, ctx);
        if (strcmp(got, c[i].want)) fail_msg("[%zu] got %s want %s", i, got, c[i].want);
        free(got);
    }
    json_decref(ctx);
    sq_templates_free(L);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* --- static_url of a file in a folder ------------------------------------------------------- */

static void static_page_get(sq_handler *h)
{
    const char *u = sq_static_url(h, "css/app.css");
    sq_write(h, u ? u : "NULL");
}

static void static_url_body(sq_test *t)
{
    sq_fetch_response *r = sq_test_fetch(t, "/page", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK(t, r && strncmp(r->body, "/static/css/app.css?v=", 22) == 0);
    /* and the URL serves the file */
    sq_fetch_response *f = r ? sq_test_fetch(t, r->body, NULL) : NULL;
    SQ_CHECK_STATUS(t, f, 200);
    SQ_CHECK(t, f && !strcmp(f->body, "body{}"));
}

static void test_static_url_keeps_slash(void **state)
{
    char dir[64], sub[128];
    snprintf(dir, sizeof dir, "/tmp/sq-static-sem-%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(sub, sizeof sub, "%s/css", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    sq_test_write_file(sub, "app.css", "body{}", 0);
    static const sq_handler_class page = {.get = static_page_get};
    sq_route routes[] = {{"/page", &page, NULL, NULL},
                         {"/static/(.*)", &sq_static_file_handler, "static", dir},
                         {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    int rc = sq_test_run(app, static_url_body, NULL, NULL);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rc, 0);
}

/* --- authenticated after prepare; ETag from sq_finish; a stray '%' -------------------------- */

typedef struct auth_state {
    const char *user;
    bool prepared;
} auth_state;

static void auth_prepare(sq_handler *h)
{
    auth_state *s = sq_handler_state(h);
    s->prepared = true;
    if (sq_get_cookie(h, "session", NULL)) s->user = "alice"; /* a session looked up */
}

static void *auth_user(sq_handler *h)
{
    auth_state *s = sq_handler_state(h);
    if (!s->prepared) return "asked before prepare";
    return (void *)s->user;
}

static void auth_get(sq_handler *h)
{
    sq_writef(h, "hello %s", (const char *)sq_current_user(h));
}

static void fin_get(sq_handler *h)
{
    sq_write(h, "same body");
    sq_finish(h); /* Tornado's self.finish() sets the ETag */
}

static void nofin_get(sq_handler *h)
{
    sq_write(h, "same body");
}

static void q_get(sq_handler *h)
{
    sq_writef(h, "id=%s d=%s", sq_get_query_argument(h, "id", "-"),
              sq_get_query_argument(h, "d", "-"));
}

static const sq_route misc_routes[] = {
    {"/me",
     &(sq_handler_class){.get = auth_get,
                         .prepare = auth_prepare,
                         .get_current_user = auth_user,
                         .authenticated = true,
                         .state_size = sizeof(auth_state)},
     NULL, NULL},
    {"/fin", &(sq_handler_class){.get = fin_get}, NULL, NULL},
    {"/nofin", &(sq_handler_class){.get = nofin_get}, NULL, NULL},
    {"/q", &(sq_handler_class){.get = q_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_tornado_order_and_defaults(void **state)
{
    sq_loop *loop = wt_loop();
    sq_app_settings st = {.no_access_log = true, .login_url = "/login"};
    sq_app *app = sq_app_new(misc_routes, &st);
    assert_non_null(app);
    wt_run run = {
        .n = 6,
        .reqs = {"GET /me HTTP/1.1\r\nHost: t\r\nCookie: session=1\r\nConnection: close\r\n\r\n",
                 WT_GET("/me"), WT_GET("/fin"), WT_GET("/nofin"),
                 "GET /fin HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"f3c7e1ac5e8b4e4e\", "
                 "*\r\nConnection: close\r\n\r\n",
                 WT_GET("/q?id=7&d=50%")}};
    wt_serve(loop, app, &run);
    assert_int_equal(run.resp[0].status, 200);
    assert_string_equal(run.resp[0].body, "hello alice");
    char loc[128] = "";
    assert_int_equal(run.resp[1].status, 302);
    assert_true(wt_header(&run.resp[1], "Location", loc, sizeof loc));
    assert_string_equal(loc, "/login?next=%2Fme");
    char e1[64] = "", e2[64] = "";
    assert_true(wt_header(&run.resp[2], "ETag", e1, sizeof e1));
    assert_true(wt_header(&run.resp[3], "ETag", e2, sizeof e2));
    assert_string_equal(e1, e2);
    assert_int_equal(run.resp[4].status, 304); /* "*" matches: the check runs in sq_finish too */
    assert_int_equal(run.resp[4].body_len, 0);
    assert_int_equal(run.resp[5].status, 200);
    assert_string_equal(run.resp[5].body, "id=7 d=50%");
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* Tornado's login redirect: an absolute login_url (a login site of its own) gets the full URL
 * as next, one with a query of its own gets no next at all. */
static void test_login_url_forms(void **state)
{
    (void)state;
    static const struct {
        const char *login, *want;
    } cases[] = {
        {"https://auth.example/login",
         "https://auth.example/login?next=http%3A%2F%2Ft%2Fme%3Fa%3D1"},
        {"/login?app=7", "/login?app=7"},
        {"/login", "/login?next=%2Fme%3Fa%3D1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sq_loop *loop = wt_loop();
        sq_app_settings st = {.no_access_log = true, .login_url = cases[i].login};
        sq_app *app = sq_app_new(misc_routes, &st);
        assert_non_null(app);
        wt_run run = {.n = 1, .reqs = {WT_GET("/me?a=1")}};
        wt_serve(loop, app, &run);
        char loc[160] = "";
        assert_int_equal(run.resp[0].status, 302);
        assert_true(wt_header(&run.resp[0], "Location", loc, sizeof loc));
        assert_string_equal(loc, cases[i].want);
        wt_free(&run);
        sq_app_free(app);
        sq_loop_free(loop);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_redirect_stays_on_site),
        cmocka_unit_test(test_template_jinja2_parity),
        cmocka_unit_test(test_static_url_keeps_slash),
        cmocka_unit_test(test_tornado_order_and_defaults),
        cmocka_unit_test(test_login_url_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
