/* Differential tests for the web layer's fast paths (b78db3c):
 *  - sq_write_json against jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY), byte for byte,
 *    on randomly generated documents (fixed seeds, bounded count): objects and arrays nested
 *    past the fast path's depth limit, every integer edge, reals, true/false/null, strings and
 *    keys with quotes, backslashes, slashes, control characters, DEL, UTF-8 and embedded NULs;
 *  - route dispatch (memcmp for literal patterns, PCRE2 for the rest) against matching every
 *    pattern with PCRE2 in order, for patterns with and without metacharacters. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "webtest.h"

/* --- random JSON documents ------------------------------------------------------------------ */

/* String pieces: mostly plain ASCII, then everything jansson escapes or checks. */
static const struct {
    const char *s;
    size_t n;
} pieces[] = {
    {"a", 1},
    {"Zq", 2},
    {"0 9", 3},
    {"~!#$%&'()*+,-.:;<=>?@[]^_`{|}", 29},
    {"\"", 1},
    {"\\", 1},
    {"/", 1},
    {"\n", 1},
    {"\t", 1},
    {"\r", 1},
    {"\b", 1},
    {"\f", 1},
    {"\x01", 1},
    {"\x1f", 1},
    {"\x7f", 1},
    {"\0", 1},
    {"\xc3\xa9", 2},
    {"\xe2\x82\xac", 3},
    {"\xf0\x9f\x98\x80", 4},
    {"\xe2\x80\xa8", 3},
};
enum { NPIECES = sizeof pieces / sizeof pieces[0] };

/* A string of a few pieces; `plain`: printable ASCII only (the fast path's kind). */
static size_t gen_text(rng *r, char *buf, bool plain)
{
    size_t len = 0;
    unsigned k = rn(r, 7);
    for (unsigned i = 0; i < k; i++) {
        unsigned p = plain ? rn(r, 4) : (rn(r, 3) ? rn(r, 4) : rn(r, NPIECES));
        memcpy(buf + len, pieces[p].s, pieces[p].n);
        len += pieces[p].n;
    }
    return len;
}

static json_int_t gen_int(rng *r)
{
    static const json_int_t edge[] = {0,
                                      1,
                                      -1,
                                      9,
                                      10,
                                      -10,
                                      99,
                                      100,
                                      255,
                                      -256,
                                      1000000007,
                                      INT32_MAX,
                                      INT32_MIN,
                                      (json_int_t)INT32_MAX + 1,
                                      INT64_MAX,
                                      INT64_MIN,
                                      INT64_MIN + 1,
                                      INT64_MAX - 1};
    switch (rn(r, 3)) {
    case 0:
        return edge[rn(r, sizeof edge / sizeof edge[0])];
    case 1:
        return (json_int_t)rnd(r); /* any 64-bit value */
    default:
        return (json_int_t)(rnd(r) % 2001) - 1000;
    }
}

static json_t *gen(rng *r, int depth, int chain)
{
    unsigned kind;
    if (chain > 0)
        kind = rn(r, 2); /* a forced nesting chain: containers only */
    else if (depth >= 6)
        kind = 2 + rn(r, 8);
    else
        kind = rn(r, 10);
    switch (kind) {
    case 0: {
        json_t *o = json_object();
        unsigned n = chain > 0 ? 1 + rn(r, 2) : rn(r, 5);
        for (unsigned i = 0; i < n; i++) {
            char key[256];
            size_t kl = gen_text(r, key, rn(r, 4) != 0);
            json_t *v = gen(r, depth + 1, i == 0 ? chain - 1 : 0);
            json_object_setn_new(o, key, kl, v); /* a repeated key replaces the value */
        }
        return o;
    }
    case 1: {
        json_t *a = json_array();
        unsigned n = chain > 0 ? 1 + rn(r, 2) : rn(r, 5);
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(a, gen(r, depth + 1, i == 0 ? chain - 1 : 0));
        return a;
    }
    case 2:
    case 3:
        return json_integer(gen_int(r));
    case 4:
        if (rn(r, 3) == 0) {
            static const double reals[] = {0.0, -0.0, 0.5, 1e300, -1.25e-7, 3.0, 1e17};
            return json_real(reals[rn(r, sizeof reals / sizeof reals[0])]);
        }
        return json_integer(gen_int(r));
    case 5:
    case 6: {
        char s[256];
        size_t n = gen_text(r, s, rn(r, 3) != 0);
        return json_stringn(s, n);
    }
    case 7:
        return json_boolean(rn(r, 2));
    case 8:
        return json_null();
    default: {
        char s[256];
        size_t n = gen_text(r, s, true);
        return json_stringn(s, n);
    }
    }
}

/* Document i of a seed: every 8th one nests 28..39 containers deep (around the fast path's
 * limit of 32), the others are small trees. */
static json_t *gen_doc(rng *r, unsigned i)
{
    int chain = i % 8 == 7 ? 28 + (int)rn(r, 12) : 0;
    return gen(r, 0, chain);
}

enum { DOCS_PER_REQ = 250, NREQ = 4 };

/* jansson's output of a document the fast path writes itself: no real, no escape, no byte
 * outside printable ASCII (a rough check, for coverage only). */
static bool fast_kind_doc(const char *s)
{
    if (strchr(s, '.') || strchr(s, '\\') || strstr(s, "e+") || strstr(s, "e-")) return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return false;
    return true;
}

static void json_docs_get(sq_handler *h)
{
    rng r = {0x9e3779b97f4a7c15ull ^ (uint64_t)atoi(sq_get_query_argument(h, "s", "0"))};
    for (unsigned i = 0; i < DOCS_PER_REQ; i++) {
        json_t *j = gen_doc(&r, i);
        if (sq_write_json(h, j) != 0) sq_write(h, "ERROR");
        sq_write(h, "\n");
    }
}

static void test_write_json_differential(void **state)
{
    (void)state;
    sq_loop *loop = wt_loop();
    static const sq_handler_class cls = {.get = json_docs_get};
    const sq_route routes[] = {{"/docs", &cls, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    static char reqs[NREQ][96];
    wt_run run = {.n = NREQ};
    for (int i = 0; i < NREQ; i++) {
        snprintf(reqs[i], sizeof reqs[i], WT_GET("/docs?s=%d"), i + 1);
        run.reqs[i] = reqs[i];
    }
    wt_serve(loop, app, &run);
    size_t checked = 0, fast_kind = 0;
    for (int q = 0; q < NREQ; q++) {
        assert_int_equal(run.resp[q].status, 200);
        rng r = {0x9e3779b97f4a7c15ull ^ (uint64_t)(q + 1)};
        const char *p = run.resp[q].body, *end = p + run.resp[q].body_len;
        for (unsigned i = 0; i < DOCS_PER_REQ; i++) {
            json_t *j = gen_doc(&r, i);
            char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            assert_non_null(want);
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) fail_msg("seed %d doc %u: response ends early", q + 1, i);
            size_t got = (size_t)(nl - p);
            if (got != strlen(want) || memcmp(p, want, got))
                fail_msg("seed %d doc %u:\n got '%.*s'\nwant '%s'", q + 1, i, (int)got, p, want);
            if (fast_kind_doc(want)) fast_kind++;
            free(want);
            p = nl + 1;
            checked++;
        }
        assert_true(p == end);
    }
    assert_int_equal(checked, (size_t)NREQ * DOCS_PER_REQ);
    assert_true(fast_kind > checked / 4); /* the fast path's kind of document is well covered */
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

/* --- literal routes ------------------------------------------------------------------------- */

static const char *const patterns[] = {
    "/",
    "/json",
    "/a.c", /* '.': any byte, so it also takes "/abc" before the literal below */
    "/abc",
    "/x\\.y", /* an escaped dot: only "/x.y" */
    "/x.y/",
    "/Case",
    "/static/app-1_2~3.css",
    "/static/app-1_2~3",
    "/q+",
    "/q",
    "/p?",
    "/(foo|bar)",
    "/foo",
    "/[0-9]{2}",
    "/42x",
    "/end$",
    "/^start",
    "/dir/",
    "/dir",
    "/pct%20x",
    "/a*",
    "/}",
    "/UPPER/lower",
    "/caf\xc3\xa9",
    "/t~i_l-d!e'",
    NULL,
};

static void route_get(sq_handler *h)
{
    sq_writef(h, "%d", (int)(intptr_t)sq_handler_init_arg(h));
}

static const char *const paths[] = {
    "/",
    "/json",
    "/json/",
    "/JSON",
    "/jso",
    "/jsonx",
    "/abc",
    "/aXc",
    "/a.c",
    "/x.y",
    "/xzy",
    "/x.y/",
    "/xzy/",
    "/Case",
    "/case",
    "/static/app-1_2~3.css",
    "/static/app-1_2~3xcss",
    "/static/app-1_2~3",
    "/static/app-1_2~",
    "/q",
    "/qqq",
    "/p",
    "/foo",
    "/bar",
    "/baz",
    "/42",
    "/42x",
    "/4",
    "/end",
    "/start",
    "/^start",
    "/dir/",
    "/dir",
    "/dir//",
    "/pct%20x",
    "/pct%20",
    "/UPPER/lower",
    "/upper/lower",
    "/aaa",
    "/a",
    "//",
    "/}",
    "/caf\xc3\xa9",
    "/caf",
    "/t~i_l-d!e'",
    "/t~i_l-d!e",
    "/json?x=1",
    "/dir/?q",
};
enum { NPATHS = sizeof paths / sizeof paths[0] };

/* The route PCRE2 alone would pick for `path` (the target up to '?'), or -1. */
static int pcre2_pick(const char *target)
{
    size_t len = strcspn(target, "?");
    int pick = -1;
    for (int i = 0; patterns[i] && pick < 0; i++) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                         PCRE2_ANCHORED | PCRE2_ENDANCHORED, &err, &off, NULL);
        assert_non_null(code);
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
        if (pcre2_match(code, (PCRE2_SPTR)target, len, 0, 0, md, NULL) >= 0) pick = i;
        pcre2_match_data_free(md);
        pcre2_code_free(code);
    }
    return pick;
}

static void test_literal_routes_match_pcre2(void **state)
{
    (void)state;
    static const sq_handler_class cls = {.get = route_get};
    sq_route routes[sizeof patterns / sizeof patterns[0]];
    for (int i = 0; patterns[i]; i++)
        routes[i] = (sq_route){patterns[i], &cls, NULL, (void *)(intptr_t)i};
    routes[sizeof patterns / sizeof patterns[0] - 1] = (sq_route){NULL, NULL, NULL, NULL};
    static char reqs[NPATHS][160];
    for (int base = 0; base < NPATHS; base += WT_MAX) {
        sq_loop *loop = wt_loop();
        sq_app_settings st = {.no_access_log = true};
        sq_app *app = sq_app_new(routes, &st);
        assert_non_null(app);
        wt_run run = {.n = NPATHS - base < WT_MAX ? (size_t)(NPATHS - base) : WT_MAX};
        for (size_t k = 0; k < run.n; k++) {
            snprintf(reqs[base + k], sizeof reqs[base + k],
                     "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", paths[base + k]);
            run.reqs[k] = reqs[base + k];
        }
        wt_serve(loop, app, &run);
        for (size_t k = 0; k < run.n; k++) {
            const char *path = paths[base + k];
            int want = pcre2_pick(path);
            const wt_resp *r = &run.resp[k];
            if (want < 0) {
                if (r->status != 404) fail_msg("%s: %d, want 404", path, r->status);
            } else if (r->status != 200 || atoi(r->body) != want) {
                fail_msg("%s: %d '%s', want route %d (%s)", path, r->status, r->body, want,
                         patterns[want]);
            }
        }
        wt_free(&run);
        sq_app_free(app);
        sq_loop_free(loop);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_json_differential),
        cmocka_unit_test(test_literal_routes_match_pcre2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
