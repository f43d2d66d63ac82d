/* sq_write_json writes the same bytes as jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY),
 * but for "</" written "<\\/" as Tornado's json_encode does, for every kind of document: the
 * ones its fast path serializes itself (objects, arrays, integers, literals, plain ASCII
 * strings) and the ones it hands to jansson (reals, escapes, UTF-8, NUL in keys, deep
 * nesting). */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>

#include "webtest.h"

/* The documents, built fresh by index (sq_write_json takes the reference). */
static json_t *doc(int i)
{
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int d = 0; d < 40; d++) {
        json_t *a = json_array();
        json_array_append_new(cur, a);
        cur = a;
    }
    json_t *nul_key = json_object();
    json_object_setn_new(nul_key, "a\0b", 3, json_integer(1));
    json_t *docs[] = {
        json_pack("{s:s}", "message", "Hello, World!"),
        json_pack("{s:i,s:I,s:I,s:b,s:b,s:n}", "a", 0, "min", (json_int_t)INT64_MIN, "max",
                  (json_int_t)INT64_MAX, "t", 1, "f", 0, "z"),
        json_pack("[i,[],{},s,[i,i,{s:[]}]]", -42, "", 1, 2, "k"),
        json_pack("{s:f}", "pi", 3.25),
        json_pack("{s:s}", "esc", "quote\" back\\ tab\t nl\n ctl\x01 del\x7f"),
        json_pack("{s:s}", "utf8", "caf\xc3\xa9 \xe2\x82\xac"),
        json_pack("{s:s}", "k\"ey", "v"),
        json_string("top-level string"),
        json_integer(7),
        json_null(),
        deep,
        nul_key,
        json_pack("{s:s,s:i,s:s}", "z", "first", "a", 2, "m", "insertion order"),
        /* "</" escaped (in keys too), on the fast path and through jansson (a real) */
        json_pack("{s:s,s:[s,s]}", "<//>", "</script><script>alert(1)</script>", "</", "a/b</",
                  "<\\/"),
        json_pack("{s:f,s:s}", "r", 0.5, "x", "</script>"),
    };
    int n = (int)(sizeof docs / sizeof docs[0]);
    for (int k = 0; k < n; k++)
        if (k != i) json_decref(docs[k]);
    return i < n ? docs[i] : NULL;
}
enum { NDOCS = 15 };

static void json_doc_get(sq_handler *h)
{
    int i = atoi(sq_get_query_argument(h, "i", "0"));
    json_t *j = doc(i);
    if (!j) {
        sq_send_error(h, 404, NULL);
        return;
    }
    sq_write_json(h, j);
}

static void test_write_json_matches_jansson(void **state)
{
    (void)state;
    sq_loop *loop = wt_loop();
    static const sq_handler_class cls = {.get = json_doc_get};
    const sq_route routes[] = {{"/j", &cls, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    static char reqs[NDOCS][96];
    wt_run run = {.n = NDOCS};
    for (int i = 0; i < NDOCS; i++) {
        snprintf(reqs[i], sizeof reqs[i], WT_GET("/j?i=%d"), i);
        run.reqs[i] = reqs[i];
    }
    wt_serve(loop, app, &run);
    for (int i = 0; i < NDOCS; i++) {
        json_t *j = doc(i);
        char *want = wt_script_safe(json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY));
        json_decref(j);
        assert_non_null(want);
        assert_int_equal(run.resp[i].status, 200);
        if (run.resp[i].body_len != strlen(want) || memcmp(run.resp[i].body, want, strlen(want)))
            fail_msg("doc %d: got '%s', jansson '%s'", i, run.resp[i].body, want);
        char ct[64];
        assert_true(wt_header(&run.resp[i], "Content-Type", ct, sizeof ct));
        assert_string_equal(ct, "application/json");
        free(want);
    }
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_json_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
