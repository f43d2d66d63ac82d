/* sq_json_format and sq_write_jsonf against jansson's json_pack + json_dumps(JSON_COMPACT |
 * JSON_ENCODE_ANY), with "</" written "<\\/" (Tornado's json_encode): the same bytes for
 * every format kind (s s# s% s+ s? s*, n b i I f, o O o? O? o* O*, nested objects and
 * arrays) with random arguments, including strings
 * jansson refuses (bad UTF-8), and the same failures; a key given twice is our one
 * difference (an error where json_pack keeps the last value).  Then the errors (format,
 * argument), the stolen 'o' references, and sq_write_jsonf through a server. */
#include <math.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "webtest.h"

/* String pieces: plain ASCII, what JSON escapes, good UTF-8, and UTF-8 jansson refuses. */
static const struct {
    const char *s;
    size_t n;
} pieces[] = {
    {"a", 1},
    {"message", 7},
    {"Hello, World!", 13},
    {"k", 1},
    {"\"", 1},
    {"\\", 1},
    {"/", 1},
    {"<", 1}, /* "</", also from "<" then "/", is written "<\\/" */
    {"</", 2},
    {"\n\t\r\b\f", 5},
    {"\x01\x1f", 2},
    {"\x7f", 1},
    {"\0", 1},
    {"\xc3\xa9", 2},
    {"\xe2\x82\xac", 3},
    {"\xf0\x9f\x98\x80", 4},
    {"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF */
    {"\xc3", 1},             /* truncated */
    {"\x80", 1},             /* a lone continuation byte */
    {"\xc0\xaf", 2},         /* overlong '/' */
    {"\xe0\x80\xaf", 3},     /* overlong, three bytes */
    {"\xed\xa0\x80", 3},     /* a surrogate */
    {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
    {"\xff", 1},
};
enum { NPIECES = sizeof pieces / sizeof pieces[0], GOOD_PIECES = 17 };

typedef struct text {
    char s[128];
    size_t n;
} text;

/* A string of a few pieces; mostly valid, one in eight may hold bad UTF-8. */
static text gen_text(rng *r)
{
    text t = {.n = 0};
    unsigned k = rn(r, 5);
    bool bad = rn(r, 8) == 0;
    for (unsigned i = 0; i < k; i++) {
        unsigned p = rn(r, 3) ? rn(r, 4) : rn(r, bad ? NPIECES : GOOD_PIECES);
        memcpy(t.s + t.n, pieces[p].s, pieces[p].n);
        t.n += pieces[p].n;
    }
    t.s[t.n] = 0;
    return t;
}

/* A key from a small set, so that objects sometimes repeat one. */
static const char *gen_key(rng *r)
{
    static const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h", "\xc3\xa9", "q\""};
    return keys[rn(r, sizeof keys / sizeof keys[0])];
}

static int checked, failed_both, dup_keys;

/* got: sq_json_format's answer; want: json_pack's value (NULL on failure); dup: the test
 * gave a key twice in one object. */
static void same(int line, int iter, char *got, size_t got_len, int got_errno, json_t *want,
                 bool dup)
{
    char *w = want ? wt_script_safe(json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY)) : NULL;
    json_decref(want);
    checked++;
    if (dup && want) {
        dup_keys++;
        if (got || got_errno != EINVAL)
            fail_msg("line %d iteration %d: a repeated key gave '%s'", line, iter, got);
    } else if (!w) {
        failed_both++;
        if (got) fail_msg("line %d iteration %d: jansson failed, we wrote '%s'", line, iter, got);
        if (got_errno != EINVAL) fail_msg("line %d iteration %d: errno %d", line, iter, got_errno);
    } else if (!got || strlen(w) != got_len || memcmp(got, w, got_len)) {
        fail_msg("line %d iteration %d: got '%s', jansson '%s'", line, iter, got ? got : "(null)",
                 w);
    }
    free(got);
    free(w);
}

/* Both writers on the same format and arguments (evaluated twice: pass an 'o' argument as
 * json_incref(x) so that each steals one reference). */
#define SAME(dup, fmt, ...)                                                                        \
    do {                                                                                           \
        size_t len_ = 0;                                                                           \
        errno = 0;                                                                                 \
        char *got_ = sq_json_format(&len_, fmt, __VA_ARGS__);                                      \
        int errno_ = errno;                                                                        \
        json_t *want_ = json_pack(fmt, __VA_ARGS__);                                               \
        same(__LINE__, it, got_, len_, errno_, want_, dup);                                        \
    } while (0)

static json_t *gen_json(rng *r)
{
    switch (rn(r, 6)) {
    case 0:
        return json_pack("{s:i, s:[s, n]}", "x", (int)rn(r, 1000), "y", "z\n");
    case 1:
        return json_integer((json_int_t)rnd(r));
    case 2:
        return json_real(rn(r, 2) ? 0.1 : -2.5e-300);
    case 3: {
        text t = gen_text(r);
        json_t *s = json_stringn(t.s, t.n);
        return s ? s : json_string("valid");
    }
    case 4:
        return json_array();
    default:
        return json_true();
    }
}

static void test_formats_match_json_pack(void **state)
{
    (void)state;
    sq_log_set_level(SQ_LOG_OFF); /* the failures are logged */
    rng r = {0x2545f4914f6cdd1dull};
    for (int it = 0; it < 3000; it++) {
        text a = gen_text(&r), b = gen_text(&r), c = gen_text(&r);
        const char *k1 = gen_key(&r), *k2 = gen_key(&r), *k3 = gen_key(&r);
        int i = (int)rnd(&r);
        json_int_t I = (json_int_t)rnd(&r);
        static const double reals[] = {0.0, -0.0, 0.5, 1e300,         -1.25e-7,
                                       3.0, 1e17, 0.1, 123456789.125, 5e-324};
        double f = reals[rn(&r, sizeof reals / sizeof reals[0])];
        const char *maybe = rn(&r, 2) ? a.s : NULL;
        json_t *o = gen_json(&r), *maybe_o = rn(&r, 2) ? o : NULL;

        SAME(false, "{s:s}", "message", a.s);
        SAME(false, "s", b.s);
        SAME(false, "[s#, s%, s]", a.s, (int)a.n, b.s, b.n, c.s);
        SAME(false, "[s+, s#+%, s++#]", a.s, b.s, a.s, (int)a.n, b.s, b.n, a.s, b.s, c.s, (int)c.n);
        SAME(false, "[s?, s*, s*, n]", maybe, maybe, b.s);
        SAME(k1 == k2 || k1 == k3 || k2 == k3, "{s:i, s:I, s:b}", k1, i, k2, I, k3, i & 1);
        SAME(k1 == k2, "{s:f, s:[f, i]}", k1, f, k2, -f, i);
        SAME(k1 == k2, "{s#:s, s%:s?}", k1, (int)strlen(k1), a.s, k2, strlen(k2), maybe);
        SAME(k1 == k2 && maybe, "{s:s*, s:n}", k1, maybe, k2);
        SAME(k1 == k2 || k1 == k3 || k2 == k3, "{s:o, s:O?, s:[o*, O*, O]}", k1, json_incref(o), k2,
             maybe_o, k3, json_incref(maybe_o), maybe_o, o);
        SAME(false, "[{s:{s:[i, I, f, b]}}, [], {}, [[s]]]", k1, k2, i, I, f, 0, c.s);
        SAME(k1 == k2, "{ s : [ s , s ] ,\n s : { } }", k1, a.s, b.s, k2);
        SAME(false, "{s+:i}", k1, k2, i);
        json_decref(o);
    }
    printf("%d formats compared, %d refused by both, %d with a repeated key\n", checked,
           failed_both, dup_keys);
    /* every kind was reached */
    assert_true(failed_both > 100);
    assert_true(dup_keys > 100);
    sq_log_set_level(SQ_LOG_INFO);
}

/* The errors, and json_pack failing too where it defines the case. */
static void test_errors(void **state)
{
    (void)state;
    sq_log_set_level(SQ_LOG_OFF);
    struct {
        const char *fmt;
        const char *arg;
    } bad[] = {
        {"", "x"},      {"{s:s", "x"},   {"{i:s}", "x"},  {"[s]x", "x"},     {"{s:s}}", "x"},
        {"[s?#]", "x"}, {"{s}", "x"},    {"q", "x"},      {"[s", "x"},       {"s*", NULL},
        {"s", NULL},    {"{s:s}", NULL}, {"[s]", "\xc3"}, {"{s:i}", "\xff"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        errno = 0;
        char *s = sq_json_format(NULL, bad[k].fmt, bad[k].arg, bad[k].arg, 1);
        if (s || errno != EINVAL) fail_msg("format '%s': got '%s', errno %d", bad[k].fmt, s, errno);
        json_t *j = json_pack(bad[k].fmt, bad[k].arg, bad[k].arg, 1);
        if (j) fail_msg("format '%s': json_pack accepts it", bad[k].fmt);
    }
    errno = 0;
    assert_null(sq_json_format(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(sq_json_format(NULL, "[f]", NAN));
    assert_null(sq_json_format(NULL, "[f]", INFINITY));
    assert_null(sq_json_format(NULL, "[o]", (json_t *)NULL));
    assert_null(sq_json_format(NULL, "[s#]", "abc", -1));

    /* a key twice, also far apart and past the inline key table; nested objects have their
     * own keys */
    char fmt[400] = "{";
    const char *keys[40];
    char names[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = names[i];
        strcat(fmt, i ? ",s:{s:i}" : "s:{s:i}");
    }
    strcat(fmt, "}");
#define K40(x)                                                                                     \
    x[0], "a", 0, x[1], "a", 1, x[2], "a", 2, x[3], "a", 3, x[4], "a", 4, x[5], "a", 5, x[6], "a", \
        6, x[7], "a", 7, x[8], "a", 8, x[9], "a", 9, x[10], "a", 10, x[11], "a", 11, x[12], "a",   \
        12, x[13], "a", 13, x[14], "a", 14, x[15], "a", 15, x[16], "a", 16, x[17], "a", 17, x[18], \
        "a", 18, x[19], "a", 19, x[20], "a", 20, x[21], "a", 21, x[22], "a", 22, x[23], "a", 23,   \
        x[24], "a", 24, x[25], "a", 25, x[26], "a", 26, x[27], "a", 27, x[28], "a", 28, x[29],     \
        "a", 29, x[30], "a", 30, x[31], "a", 31, x[32], "a", 32, x[33], "a", 33, x[34], "a", 34,   \
        x[35], "a", 35, x[36], "a", 36, x[37], "a", 37, x[38], "a", 38, x[39], "a", 39
    size_t len = 0;
    char *ok = sq_json_format(&len, fmt, K40(keys));
    assert_non_null(ok);
    json_t *want = json_pack(fmt, K40(keys));
    char *w = json_dumps(want, JSON_COMPACT);
    assert_string_equal(ok, w);
    assert_int_equal(len, strlen(w));
    free(ok);
    free(w);
    json_decref(want);
    keys[39] = "k2";
    errno = 0;
    assert_null(sq_json_format(&len, fmt, K40(keys)));
    assert_int_equal(errno, EINVAL);
    /* an omitted member's key is not a repeat */
    char *s = sq_json_format(NULL, "{s:s*, s:i}", "a", (char *)NULL, "a", 1);
    assert_string_equal(s, "{\"a\":1}");
    free(s);
    s = sq_json_format(NULL, "[s*, i, s*, o*]", (char *)NULL, 7, (char *)NULL, (json_t *)NULL);
    assert_string_equal(s, "[7]");
    free(s);
    s = sq_json_format(NULL, "{s:i, s:s*, s:o*}", "a", 1, "a", (char *)NULL, "a", (json_t *)NULL);
    assert_string_equal(s, "{\"a\":1}"); /* nor is a key whose member is left out */
    free(s);
    /* a NUL in a key: refused (jansson 2.14 would cut the key there) */
    errno = 0;
    assert_null(sq_json_format(NULL, "{s#:i}", "a\0b", 3, 1));
    assert_int_equal(errno, EINVAL);
    s = sq_json_format(NULL, "[s#]", "a\0b", 3); /* in a value it is written as \u0000 */
    assert_string_equal(s, "[\"a\\u0000b\"]");
    free(s);
    /* a length of -1 for s%: out of memory, not a read past the string */
    errno = 0;
    assert_null(sq_json_format(NULL, "[s%]", "abc", (size_t)-1));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(sq_json_format(NULL, "{s%:i}", "abc", (size_t)-1, 1)); /* as a key */
    assert_int_equal(errno, ENOMEM);
    /* a json_t string that is not UTF-8 (made unchecked): refused, as json_dumps refuses it */
    json_t *bad_utf8 = json_stringn_nocheck("\xff", 1);
    errno = 0;
    assert_null(sq_json_format(NULL, "[O]", bad_utf8));
    assert_int_equal(errno, EINVAL);
    assert_null(json_dumps(bad_utf8, JSON_ENCODE_ANY));
    json_decref(bad_utf8);

    /* 'o' is stolen, written or not; 'O' is not */
    json_t *v = json_string("v");
    json_incref(v);
    json_incref(v);
    s = sq_json_format(NULL, "[o, O]", v, v);
    assert_string_equal(s, "[\"v\",\"v\"]");
    free(s);
    assert_int_equal(v->refcount, 2);
    assert_null(sq_json_format(NULL, "[s, o]", (char *)NULL, v)); /* an argument error */
    assert_int_equal(v->refcount, 1);
    json_incref(v);
    assert_null(sq_json_format(NULL, "[o, q]", v)); /* a format error after it */
    assert_int_equal(v->refcount, 1);
    assert_null(sq_json_format(NULL, "[q, o]", v)); /* after a format error nothing is read */
    assert_int_equal(v->refcount, 1);
    json_decref(v);

    /* deeper than 64: refused, not a stack overflow */
    char deep[200] = "";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    for (int i = 0; i < 70; i++) strcat(deep, "]");
    assert_null(sq_json_format(NULL, deep, 0));
    deep[64] = 0;
    memset(deep + 32, ']', 32);
    s = sq_json_format(NULL, deep, 0);
    assert_non_null(s);
    free(s);
    sq_log_set_level(SQ_LOG_INFO);
}

/* --- through a server ------------------------------------------------------------------------ */

static int after_finish_rc, bad_rc;
static char logged[512];

static void capture(int level, const char *msg, void *arg)
{
    (void)arg;
    if (level == SQ_LOG_WARNING && strstr(msg, "json: "))
        snprintf(logged, sizeof logged, "%s", msg);
}
static json_t *stolen;

static void jsonf_get(sq_handler *h)
{
    const char *who = sq_get_query_argument(h, "who", "World");
    bad_rc = sq_write_jsonf(h, "{s:s}", "message", "\xc3"); /* nothing written */
    sq_write_jsonf(h, "{s:s+, s:[i, b]}", "message", "Hello, ", who, "n", 3, 1);
    sq_finish(h);
    after_finish_rc = sq_write_jsonf(h, "[o]", stolen);
}

static void test_write_jsonf_server(void **state)
{
    (void)state;
    sq_loop *loop = wt_loop();
    static const sq_handler_class cls = {.get = jsonf_get};
    const sq_route routes[] = {{"/j", &cls, NULL, NULL}, {NULL, NULL, NULL, NULL}};
    sq_app_settings st = {.no_access_log = true};
    sq_app *app = sq_app_new(routes, &st);
    assert_non_null(app);
    stolen = json_object();
    json_incref(stolen);
    wt_run run = {.n = 1, .reqs = {WT_GET("/j?who=caf%C3%A9%22")}};
    sq_log_set_handler(capture, NULL);
    wt_serve(loop, app, &run);
    assert_string_equal(logged, "json: invalid UTF-8 at offset 3 of the format \"{s:s}\"");
    assert_null(sq_json_format(NULL, "{s:i, s:[i]}", "k", 1, "k", 2));
    assert_string_equal(logged, "json: a key given twice in one object at offset 6 of the format "
                                "\"{s:i, s:[i]}\"");
    sq_log_set_handler(NULL, NULL);
    assert_int_equal(run.resp[0].status, 200);
    assert_string_equal(run.resp[0].body,
                        "{\"message\":\"Hello, caf\xc3\xa9\\\"\",\"n\":[3,true]}");
    char ct[64];
    assert_true(wt_header(&run.resp[0], "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/json");
    assert_int_equal(bad_rc, -EINVAL);
    assert_int_equal(after_finish_rc, -EALREADY);
    assert_int_equal(stolen->refcount, 1);
    json_decref(stolen);
    wt_free(&run);
    sq_app_free(app);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_match_json_pack),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_write_jsonf_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
