/* httputil: percent-coding, query strings, multipart bodies, cookies, signed cookies and HTTP
 * dates — table tests with every malformed case we know of, limits, rollback on error, and
 * round trips (escape/unescape, sign/verify, format/parse). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "squall/httputil.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers" /* short table rows */

#define R(s) s, sizeof(s) - 1

/* --- percent-encoding ------------------------------------------------------------------ */

typedef struct unesc_case {
    const char *in;
    size_t len;
    bool plus;
    ssize_t r;
    const char *out;
} unesc_case;

static const unesc_case unesc_cases[] = {
    {R(""), false, 0, ""},
    {R("abc"), false, 3, "abc"},
    {R("a%20b"), false, 3, "a b"},
    {R("a+b"), false, 3, "a+b"},
    {R("a+b"), true, 3, "a b"},
    {R("%2B"), true, 1, "+"},
    {R("%e2%82%AC"), false, 3, "\xe2\x82\xac"},
    {R("%00x"), false, 2, "\0x"},
    {R("%%41"), false, -EINVAL},
    {R("%"), false, -EINVAL},
    {R("%4"), false, -EINVAL},
    {R("a%"), false, -EINVAL},
    {R("%zz"), false, -EINVAL},
    {R("%4g"), false, -EINVAL},
    {R("%g4"), false, -EINVAL},
    {R("ok%2"), true, -EINVAL},
    {R("% 41"), false, -EINVAL},
};

static void test_url_unescape(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof unesc_cases / sizeof *unesc_cases; i++) {
        const unesc_case *c = &unesc_cases[i];
        char out[64], inplace[64];
        ssize_t r = sq_url_unescape(out, c->in, c->len, c->plus);
        if (r != c->r) fail_msg("case %zu (%s): got %zd want %zd", i, c->in, r, c->r);
        memcpy(inplace, c->in, c->len);
        assert_int_equal(sq_url_unescape(inplace, inplace, c->len, c->plus), c->r);
        if (r >= 0) {
            assert_memory_equal(out, c->out, (size_t)r);
            assert_memory_equal(inplace, c->out, (size_t)r);
        }
    }
}

static void test_url_escape(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sq_url_escape(out, sizeof out, R("a b&c=d/é~-._"), true), 24);
    assert_string_equal(out, "a+b%26c%3Dd%2F%C3%A9~-._");
    assert_int_equal(sq_url_escape(out, sizeof out, R("a b"), false), 5);
    assert_string_equal(out, "a%20b");
    /* snprintf semantics: truncated, always NUL-terminated, full length returned */
    memset(out, 'X', sizeof out);
    assert_int_equal(sq_url_escape(out, 4, R("a b c"), false), 9);
    assert_string_equal(out, "a%2");
    assert_int_equal(sq_url_escape(NULL, 0, R("a b"), true), 3);
    assert_int_equal(sq_url_escape(out, 1, R("abc"), true), 3);
    assert_string_equal(out, "");

    /* round trip of every byte value, both space modes */
    char all[256], enc[256 * 3 + 1], dec[256 * 3];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    for (int plus = 0; plus < 2; plus++) {
        size_t n = sq_url_escape(enc, sizeof enc, all, sizeof all, plus);
        assert_true(n < sizeof enc);
        assert_int_equal(strlen(enc), n);
        for (size_t k = 0; k < n; k++)
            assert_true(strchr("%+-._~", enc[k]) || (enc[k] >= '0' && enc[k] <= '9') ||
                        ((enc[k] | 0x20) >= 'a' && (enc[k] | 0x20) <= 'z'));
        assert_int_equal(sq_url_unescape(dec, enc, n, plus), 256);
        assert_memory_equal(dec, all, 256);
    }
}

/* --- arguments and query strings -------------------------------------------------------- */

static void test_args(void **state)
{
    (void)state;
    sq_args a;
    sq_args_init(&a);
    assert_null(sq_args_get(&a, "x"));
    for (int i = 0; i < 100; i++) { /* grows past the first allocation */
        char v[16];
        int n = snprintf(v, sizeof v, "%d", i);
        assert_int_equal(sq_args_add(&a, i % 2 ? "odd" : "even", i % 2 ? 3 : 4, v, (size_t)n), 0);
    }
    assert_int_equal(sq_args_add(&a, R("bin"), R("a\0b")), 0);
    assert_string_equal(sq_args_get(&a, "odd")->value, "99");
    assert_string_equal(sq_args_get(&a, "even")->value, "98");
    assert_int_equal(sq_args_get(&a, "bin")->value_len, 3);
    assert_null(sq_args_get(&a, "od"));
    assert_null(sq_args_get(&a, "odd")->filename);
    const sq_arg *all[10];
    assert_int_equal(sq_args_get_all(&a, "even", all, 10), 50);
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", 2 * i);
        assert_string_equal(all[i]->value, v);
    }
    assert_int_equal(sq_args_get_all(&a, "none", all, 10), 0);
    assert_int_equal(sq_args_get_all(&a, "odd", NULL, 0), 50);
    sq_args_free(&a);
    assert_int_equal(a.len, 0);
    sq_args_free(&a); /* twice is fine */
}

typedef struct qs_case {
    const char *in;
    size_t len;
    int r;
    const char *pairs[8][2]; /* expected name, value */
} qs_case;

static const qs_case qs_cases[] = {
    {R(""), 0},
    {R("a=1"), 1, {{"a", "1"}}},
    {R("a=1&b=&c"), 3, {{"a", "1"}, {"b", ""}, {"c", ""}}},
    {R("a=1&a=2&a=3"), 3, {{"a", "1"}, {"a", "2"}, {"a", "3"}}},
    {R("&&a=1&&"), 1, {{"a", "1"}}},
    {R("&"), 0},
    {R("="), 1, {{"", ""}}},
    {R("=x"), 1, {{"", "x"}}},
    {R("a=b=c"), 1, {{"a", "b=c"}}},
    {R("a+b=c+d"), 1, {{"a b", "c d"}}},
    {R("q=%E2%82%AC%2b%26"), 1, {{"q", "\xe2\x82\xac+&"}}},
    {R("a=1;b=2"), 1, {{"a", "1;b=2"}}}, /* ';' is not a separator */
    {R("k%3D=v%26"), 1, {{"k=", "v&"}}},
    /* a malformed escape stays as it is (Python's parse_qs): the other pairs are kept */
    {R("a=%"), 1, {{"a", "%"}}},
    {R("a=1&b=%4"), 2, {{"a", "1"}, {"b", "%4"}}},
    {R("%zz=1"), 1, {{"%zz", "1"}}},
    {R("a=%G0&b=%4%41"), 2, {{"a", "%G0"}, {"b", "%4A"}}},
    {R("id=7&discount=50%"), 2, {{"id", "7"}, {"discount", "50%"}}},
};

static void test_parse_qs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof qs_cases / sizeof *qs_cases; i++) {
        const qs_case *c = &qs_cases[i];
        sq_args a;
        sq_args_init(&a);
        assert_int_equal(sq_args_add(&a, R("pre"), R("existing")), 0);
        int r = sq_parse_qs(c->in, c->len, &a, NULL);
        if (r != c->r) fail_msg("case %zu (%s): got %d want %d", i, c->in, r, c->r);
        assert_int_equal(a.len, 1 + (r > 0 ? (size_t)r : 0)); /* errors roll back */
        assert_string_equal(a.items[0].value, "existing");
        for (int k = 0; k < r; k++) {
            assert_string_equal(a.items[1 + k].name, c->pairs[k][0]);
            assert_string_equal(a.items[1 + k].value, c->pairs[k][1]);
            assert_int_equal(a.items[1 + k].name_len, strlen(c->pairs[k][0]));
        }
        sq_args_free(&a);
    }
    /* a NUL byte survives decoding */
    sq_args a;
    sq_args_init(&a);
    assert_int_equal(sq_parse_qs(R("n=a%00b"), &a, NULL), 1);
    assert_int_equal(a.items[0].value_len, 3);
    assert_memory_equal(a.items[0].value, "a\0b", 4);
    sq_args_free(&a);
}

static void test_parse_qs_limits(void **state)
{
    (void)state;
    sq_args a;
    sq_args_init(&a);
    sq_form_limits lim = {.max_args = 3};
    assert_int_equal(sq_parse_qs(R("a&b&c"), &a, &lim), 3);
    assert_int_equal(sq_parse_qs(R("a&b&&&c&"), &a, &lim), 3); /* empty pairs do not count */
    assert_int_equal(a.len, 6);
    assert_int_equal(sq_parse_qs(R("a&b&c&d"), &a, &lim), -E2BIG);
    assert_int_equal(a.len, 6);
    sq_args_free(&a);

    /* the default: 1,000 pairs */
    size_t n = 1001;
    char *s = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = 'x';
        s[2 * i + 1] = '&';
    }
    assert_int_equal(sq_parse_qs(s, 2 * 1000, &a, NULL), 1000);
    sq_args_free(&a);
    assert_int_equal(sq_parse_qs(s, 2 * n, &a, NULL), -E2BIG);
    assert_int_equal(a.len, 0);
    sq_form_limits zero = {0};
    assert_int_equal(sq_parse_qs(s, 2 * n, &a, &zero), -E2BIG);
    sq_args_free(&a);
    free(s);
}

/* --- multipart ----------------------------------------------------------------------------- */

typedef struct boundary_case {
    const char *ct;
    int r;
    const char *b;
} boundary_case;

static const boundary_case boundary_cases[] = {
    {"multipart/form-data; boundary=abc", 0, "abc"},
    {"Multipart/Form-Data;boundary=abc", 0, "abc"},
    {"multipart/form-data; charset=utf-8; BOUNDARY=\"a b:c\"", 0, "a b:c"},
    {"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", 0,
     "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
    {"multipart/form-data; x=\"q;boundary=no\"; boundary=yes ", 0, "yes"},
    {"multipart/form-data ; boundary=abc;", 0, "abc"},
    {"multipart/form-data", -EINVAL},
    {"multipart/form-data; boundary=", -EINVAL},
    {"multipart/form-data; boundary=\"\"", -EINVAL},
    {"multipart/form-data; boundary", -EINVAL},
    {"multipart/form-data; boundary=a; boundary=b", -EINVAL},
    {"multipart/mixed; boundary=abc", -EINVAL},
    {"text/plain; boundary=abc", -EINVAL},
    {"multipart/form-data; boundary=\"abc", -EINVAL},
    {"multipart/form-data; boundary=\"a\\\"b\"", -EINVAL},
    {"multipart/form-data; boundary=\"ends with space \"", -EINVAL},
    {"multipart/form-data; boundary=a\x01", -EINVAL},
    {"multipart/form-data; boundary=a@b", -EINVAL},
    {"multipart/form-data; boundary="
     "12345678901234567890123456789012345678901234567890123456789012345678901",
     -EINVAL},
    {"multipart/form-data; junk boundary=abc", -EINVAL},
};

static void test_multipart_boundary(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof boundary_cases / sizeof *boundary_cases; i++) {
        const boundary_case *c = &boundary_cases[i];
        const char *b = NULL;
        size_t bl = 0;
        int r = sq_multipart_boundary(c->ct, strlen(c->ct), &b, &bl);
        if (r != c->r) fail_msg("case %zu (%s): got %d want %d", i, c->ct, r, c->r);
        if (r == 0) {
            assert_int_equal(bl, strlen(c->b));
            assert_memory_equal(b, c->b, bl);
            assert_true(b >= c->ct && b + bl <= c->ct + strlen(c->ct));
        }
    }
}

typedef struct mp_part {
    const char *name, *value, *filename, *ctype;
    size_t value_len; /* when the value holds a NUL */
} mp_part;

typedef struct mp_case {
    const char *what;
    const char *body;
    size_t len;
    int r;
    mp_part parts[4];
} mp_case;

#define CD "Content-Disposition: form-data; "

static const mp_case mp_cases[] = {
    {"two fields",
     R("--B\r\n" CD "name=\"a\"\r\n\r\n1\r\n--B\r\n" CD "name=b\r\n\r\n22\r\n--B--\r\n"),
     2,
     {{"a", "1"}, {"b", "22"}}},
    {"file",
     R("--B\r\n" CD "name=\"f\"; filename=\"a \\\"q\\\".txt\"\r\n"
       "Content-Type: text/plain\r\n\r\nline1\r\nline2\r\n\r\n--B--"),
     1,
     {{"f", "line1\r\nline2\r\n", "a \"q\".txt", "text/plain"}}},
    {"binary with boundary-like text",
     R("--B\r\n" CD "name=x\r\n\r\n\0\r\n--\r\n--Bx\r\n--B \r\r\n-B\n--B\r\n--B--"),
     1,
     {{"x", "\0\r\n--\r\n--Bx\r\n--B \r\r\n-B\n--B", NULL, NULL, 26}}},
    {"preamble and epilogue",
     R("This is the preamble\r\n--B\r\n" CD "name=a\r\n\r\nv\r\n--B--\r\nepilogue --B\r\n"),
     1,
     {{"a", "v"}}},
    {"transport padding",
     R("--B  \t\r\n" CD "name=a\r\n\r\nv\r\n--B \r\n" CD "name=b\r\n\r\nw\r\n--B--"),
     2,
     {{"a", "v"}, {"b", "w"}}},
    {"filename* wins",
     R("--B\r\n" CD "name=f; filename=\"plain.txt\"; "
       "filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\nx\r\n--B--"),
     1,
     {{"f", "x", "\xe2\x82\xac rates.txt"}}},
    {"filename* before filename",
     R("--B\r\n" CD "name=f; filename*=utf-8''a%2Fb; "
       "filename=\"plain\"\r\n\r\nx\r\n--B--"),
     1,
     {{"f", "x", "a/b"}}},
    {"filename* in ISO-8859-1, as UTF-8",
     R("--B\r\n" CD "name=f; filename=\"p\"; "
       "filename*=ISO-8859-1'en'%A3\r\n\r\nx\r\n--B--"),
     1,
     {{"f", "x", "\xc2\xa3"}}},
    {"filename* in ISO-8859-1 alone is still a file",
     R("--B\r\n" CD "name=f; filename*=iso-8859-1''caf%E9\xe9\xe9.txt\r\n\r\nx\r\n--B--"),
     1,
     {{"f", "x", "caf\xc3\xa9\xc3\xa9\xc3\xa9.txt"}}},
    {"filename* other charset ignored",
     R("--B\r\n" CD "name=f; filename=\"p\"; "
       "filename*=KOI8-R'en'%A3\r\n\r\nx\r\n--B--"),
     1,
     {{"f", "x", "p"}}},
    {"empty filename",
     R("--B\r\n" CD "name=f; filename=\"\"\r\nContent-Type: "
       "application/octet-stream\r\n\r\n\r\n--B--"),
     1,
     {{"f", "", "", "application/octet-stream"}}},
    {"empty values",
     R("--B\r\n" CD "name=a\r\n\r\n\r\n--B\r\n" CD "name=b\r\n\r\n--B--"),
     2,
     {{"a", ""}, {"b", ""}}},
    {"case-insensitive headers, other headers",
     R("--B\r\ncontent-disposition:FORM-DATA;NAME=\"a\"\r\nX-Other: y\r\n"
       "content-type:  text/x  \r\n\r\nv\r\n--B--"),
     1,
     {{"a", "v", NULL, "text/x"}}},
    {"skipped parts",
     R("--B\r\n\r\nno headers\r\n--B\r\nContent-Type: a/b\r\n\r\nx\r\n--B\r\n"
       "Content-Disposition: attachment; name=a\r\n\r\nx\r\n--B\r\n" CD
       "filename=f\r\n\r\nx\r\n--B\r\n" CD "name=\"\"\r\n\r\nx\r\n--B\r\n"
       "\r\n--B\r\n" CD "name=kept\r\n\r\nk\r\n--B--"),
     1,
     {{"kept", "k"}}},
    {"only the final boundary", R("--B--"), 0},
    {"a NUL-free name with UTF-8",
     R("--B\r\n" CD "name=\"\xc3\xa9t\xc3\xa9\"\r\n\r\nv\r\n--B--"),
     1,
     {{"\xc3\xa9t\xc3\xa9", "v"}}},
    /* malformed */
    {"empty body", R(""), -EINVAL},
    {"no boundary at all", R("hello"), -EINVAL},
    {"no final boundary", R("--B\r\n" CD "name=a\r\n\r\nv\r\n"), -EINVAL},
    {"truncated final", R("--B\r\n" CD "name=a\r\n\r\nv\r\n--B"), -EINVAL},
    {"truncated final 2", R("--B\r\n" CD "name=a\r\n\r\nv\r\n--B-"), -EINVAL},
    {"boundary not followed by CRLF", R("--Bx\r\n" CD "name=a\r\n\r\nv\r\n--B--"), 0},
    {"junk after the first boundary makes it preamble",
     R("--B junk\r\n" CD "name=a\r\n\r\nv\r\n--B--"), 0},
    {"headers without end", R("--B\r\n" CD "name=a\r\n"), -EINVAL},
    {"header without colon", R("--B\r\nbogus\r\n\r\nv\r\n--B--"), -EINVAL},
    {"space before colon", R("--B\r\nContent-Disposition : form-data; name=a\r\n\r\nv\r\n--B--"),
     -EINVAL},
    {"obs-fold", R("--B\r\n" CD "\r\n name=a\r\n\r\nv\r\n--B--"), -EINVAL},
    {"bare LF in header", R("--B\r\n" CD "name=a\nX: y\r\n\r\nv\r\n--B--"), -EINVAL},
    {"NUL in header", R("--B\r\n" CD "name=a\0\r\n\r\nv\r\n--B--"), -EINVAL},
    {"unterminated quote", R("--B\r\n" CD "name=\"a\r\n\r\nv\r\n--B--"), -EINVAL},
    {"junk in disposition", R("--B\r\n" CD "name=a b\r\n\r\nv\r\n--B--"), -EINVAL},
    {"name twice", R("--B\r\n" CD "name=a; name=b\r\n\r\nv\r\n--B--"), -EINVAL},
    {"name without value", R("--B\r\n" CD "name\r\n\r\nv\r\n--B--"), -EINVAL},
    {"filename twice", R("--B\r\n" CD "name=a; filename=x; filename=y\r\n\r\nv\r\n--B--"), -EINVAL},
    {"bad filename*", R("--B\r\n" CD "name=a; filename*=UTF-8%41\r\n\r\nv\r\n--B--"), -EINVAL},
    {"bad filename* escape", R("--B\r\n" CD "name=a; filename*=UTF-8''%4\r\n\r\nv\r\n--B--"),
     -EINVAL},
    {"two dispositions", R("--B\r\n" CD "name=a\r\n" CD "name=b\r\n\r\nv\r\n--B--"), -EINVAL},
    {"two content types",
     R("--B\r\n" CD "name=a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n"
       "\r\nv\r\n--B--"),
     -EINVAL},
    {"error after a good part", R("--B\r\n" CD "name=a\r\n\r\nv\r\n--B\r\nbad\r\n\r\n\r\n--B--"),
     -EINVAL},
};

static void check_parts(const sq_args *a, size_t base, const mp_case *c)
{
    for (int k = 0; k < c->r; k++) {
        const mp_part *p = &c->parts[k];
        const sq_arg *it = &a->items[base + (size_t)k];
        size_t vlen = p->value_len ? p->value_len : strlen(p->value);
        assert_string_equal(it->name, p->name);
        assert_int_equal(it->value_len, vlen);
        assert_memory_equal(it->value, p->value, vlen);
        assert_int_equal(it->value[vlen], '\0');
        if (p->filename)
            assert_string_equal(it->filename, p->filename);
        else
            assert_null(it->filename);
        if (p->ctype)
            assert_string_equal(it->content_type, p->ctype);
        else
            assert_null(it->content_type);
    }
}

static void test_parse_multipart(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mp_cases / sizeof *mp_cases; i++) {
        const mp_case *c = &mp_cases[i];
        sq_args a;
        sq_args_init(&a);
        assert_int_equal(sq_args_add(&a, R("pre"), R("x")), 0);
        /* an exact-size heap copy, so ASan sees any read past the end */
        char *body = malloc(c->len ? c->len : 1);
        memcpy(body, c->body, c->len);
        int r = sq_parse_multipart(body, c->len, "B", 1, &a, NULL);
        if (r != c->r) fail_msg("case %zu (%s): got %d want %d", i, c->what, r, c->r);
        assert_int_equal(a.len, 1 + (r > 0 ? (size_t)r : 0));
        check_parts(&a, 1, c);
        sq_args_free(&a);
        free(body);
    }
    /* bad boundaries */
    sq_args a;
    sq_args_init(&a);
    assert_int_equal(sq_parse_multipart(R("--B--"), "", 0, &a, NULL), -EINVAL);
    assert_int_equal(sq_parse_multipart(R("--B--"), NULL, 1, &a, NULL), -EINVAL);
    char big[72];
    memset(big, 'b', sizeof big);
    assert_int_equal(sq_parse_multipart(R("--B--"), big, 71, &a, NULL), -EINVAL);
    sq_args_free(&a);
}

/* A body of n parts "--B\r\nCD name=pK\r\n\r\n<size bytes>\r\n" and the close delimiter. */
static char *make_body(size_t n, size_t size, size_t *len)
{
    size_t cap = n * (size + 64) + 16, o = 0;
    char *b = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(b + o, cap - o, "--B\r\n" CD "name=p%zu\r\n\r\n", i);
        memset(b + o, 'v', size);
        o += size;
        memcpy(b + o, "\r\n", 2);
        o += 2;
    }
    memcpy(b + o, "--B--", 5);
    *len = o + 5;
    return b;
}

static void test_multipart_limits(void **state)
{
    (void)state;
    sq_args a;
    sq_args_init(&a);
    size_t len;
    char *b = make_body(3, 10, &len);
    sq_form_limits lim = {.max_args = 3, .max_part_size = 10};
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, &lim), 3);
    sq_args_free(&a);
    lim.max_args = 2;
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, &lim), -E2BIG);
    assert_int_equal(a.len, 0);
    lim = (sq_form_limits){.max_part_size = 9};
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, &lim), -E2BIG);
    assert_int_equal(a.len, 0);
    /* header limit: "Content-Disposition: form-data; name=p0\r\n" is 41 bytes */
    lim = (sq_form_limits){.max_header_size = 41};
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, &lim), 3);
    sq_args_free(&a);
    lim.max_header_size = 40;
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, &lim), -E2BIG);
    free(b);

    /* default part count 1,000 */
    b = make_body(1001, 1, &len);
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, NULL), -E2BIG);
    assert_int_equal(a.len, 0);
    free(b);
    b = make_body(1000, 1, &len);
    assert_int_equal(sq_parse_multipart(b, len, "B", 1, &a, NULL), 1000);
    assert_string_equal(a.items[999].name, "p999");
    sq_args_free(&a);
    free(b);

    /* the default header limit, 16 KiB */
    size_t hl = 20000, o = 0;
    b = malloc(hl + 100);
    o += (size_t)sprintf(b, "--B\r\nX: ");
    memset(b + o, 'h', hl);
    o += hl;
    o += (size_t)sprintf(b + o, "\r\n" CD "name=a\r\n\r\nv\r\n--B--");
    assert_int_equal(sq_parse_multipart(b, o, "B", 1, &a, NULL), -E2BIG);
    lim = (sq_form_limits){.max_header_size = 32 << 10};
    assert_int_equal(sq_parse_multipart(b, o, "B", 1, &a, &lim), 1);
    sq_args_free(&a);
    free(b);
}

/* --- cookies ---------------------------------------------------------------------------- */

typedef struct cookie_case {
    const char *in;
    int r;
    const char *pairs[6][2];
} cookie_case;

static const cookie_case cookie_cases[] = {
    {"", 0},
    {"a=1", 1, {{"a", "1"}}},
    {"a=1; b=2", 2, {{"a", "1"}, {"b", "2"}}},
    {"  a = 1 ;b=2;  c=  ", 3, {{"a", "1"}, {"b", "2"}, {"c", ""}}},
    {"a=\"quoted value\"; b=\"\"; c=\"", 3, {{"a", "quoted value"}, {"b", ""}, {"c", "\""}}},
    {"novalue; a=1; =x; ;; bad name=2; b(=3; ok=4", 2, {{"a", "1"}, {"ok", "4"}}},
    {"a=1=2; a=%20", 2, {{"a", "1=2"}, {"a", "%20"}}},
    {"tok!#$%&'*+-.^_`|~=v", 1, {{"tok!#$%&'*+-.^_`|~", "v"}}},
    {";;;", 0},
    {"\t x=\ty\t", 1, {{"x", "y"}}},
    /* quoted values are unquoted like Tornado's parse_cookie (_unquote_cookie): backslash
     * escapes one character, \ooo (first digit 0-3) is an octal byte */
    {"a=\"x\\\"y\\073z\"; b=\"\\\\q\"; c=\"\\12\"",
     3,
     {{"a", "x\"y;z"}, {"b", "\\q"}, {"c", "12"}}},
    {"d=\"\\400\"; e=\"abc\\\"; f=x\\\"y; g=\"\\101\\102\"",
     4,
     {{"d", "400"}, {"e", "abc\\"}, {"f", "x\\\"y"}, {"g", "AB"}}},
};

static void test_parse_cookie_header(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cookie_cases / sizeof *cookie_cases; i++) {
        const cookie_case *c = &cookie_cases[i];
        sq_args a;
        sq_args_init(&a);
        int r = sq_parse_cookie_header(c->in, strlen(c->in), &a, NULL);
        if (r != c->r) fail_msg("case %zu (%s): got %d want %d", i, c->in, r, c->r);
        assert_int_equal(a.len, (size_t)r);
        for (int k = 0; k < r; k++) {
            assert_string_equal(a.items[k].name, c->pairs[k][0]);
            assert_string_equal(a.items[k].value, c->pairs[k][1]);
        }
        sq_args_free(&a);
    }
    sq_args a;
    sq_args_init(&a);
    sq_form_limits lim = {.max_args = 2};
    assert_int_equal(sq_parse_cookie_header(R("a=1; junk; b=2"), &a, &lim), 2);
    assert_int_equal(sq_parse_cookie_header(R("a=1; b=2; c=3"), &a, &lim), -E2BIG);
    assert_int_equal(a.len, 2);
    sq_args_free(&a);
}

static void test_format_set_cookie(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(sq_format_set_cookie(out, sizeof out, "sid", "abc", NULL), 15);
    assert_string_equal(out, "sid=abc; Path=/");
    sq_cookie_options o = {.domain = "example.com",
                           .path = "/app",
                           .expires = 784111777,
                           .max_age = 3600,
                           .secure = true,
                           .http_only = true,
                           .same_site = "lax"};
    ssize_t n = sq_format_set_cookie(out, sizeof out, "sid", "a.b-c", &o);
    const char *want = "sid=a.b-c; Domain=example.com; Expires=Sun, 06 Nov 1994 08:49:37 GMT; "
                       "Max-Age=3600; Path=/app; Secure; HttpOnly; SameSite=Lax";
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    /* snprintf semantics */
    memset(out, 'X', sizeof out);
    assert_int_equal(sq_format_set_cookie(out, 5, "sid", "a.b-c", &o), n);
    assert_string_equal(out, "sid=");
    assert_int_equal(sq_format_set_cookie(NULL, 0, "sid", "a.b-c", &o), n);
    /* empty value, empty domain/path, deletion */
    o = (sq_cookie_options){.domain = "", .path = "", .max_age = -1, .expires = 1};
    sq_format_set_cookie(out, sizeof out, "x", "", &o);
    assert_string_equal(out, "x=; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; Path=/");
    o = (sq_cookie_options){.same_site = "None", .secure = true};
    sq_format_set_cookie(out, sizeof out, "x", "1", &o);
    assert_string_equal(out, "x=1; Path=/; Secure; SameSite=None");

    /* refused: bad names, bad bytes anywhere, unknown SameSite */
    const char *bad_names[] = {"", "a b", "a;b", "a=b", "a\r\nb", "a,b", "a\"", "\x01", "é", "(x)"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_int_equal(sq_format_set_cookie(out, sizeof out, bad_names[i], "v", NULL), -EINVAL);
    assert_int_equal(sq_format_set_cookie(out, sizeof out, NULL, "v", NULL), -EINVAL);
    assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", NULL, NULL), -EINVAL);
    o = (sq_cookie_options){.same_site = "strictly"};
    assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", "v", &o), -EINVAL);
    for (int c = 1; c < 256; c++) {
        char v[4] = {'a', (char)c, 'b', 0};
        bool ok = c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
                  (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
        memset(out, 0, sizeof out);
        ssize_t r = sq_format_set_cookie(out, sizeof out, "n", v, NULL);
        if (ok != (r > 0)) fail_msg("value byte 0x%02x: %zd", c, r);
        if (!ok) assert_int_equal(out[0], '\0'); /* nothing written */
        o = (sq_cookie_options){.domain = v};
        assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", "v", &o) > 0, ok);
        o = (sq_cookie_options){.path = v};
        assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", "v", &o) > 0, ok);
    }
    const char *crlf[] = {"a\r\nSet-Cookie: evil=1", "a\rb", "a\nb", "a b", "a;b", "a,b", "\"a\""};
    for (size_t i = 0; i < sizeof crlf / sizeof *crlf; i++) {
        o = (sq_cookie_options){.domain = crlf[i]};
        assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", crlf[i], NULL), -EINVAL);
        assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", "v", &o), -EINVAL);
        o = (sq_cookie_options){.path = crlf[i]};
        assert_int_equal(sq_format_set_cookie(out, sizeof out, "n", "v", &o), -EINVAL);
    }
}

/* --- signed cookies ----------------------------------------------------------------------- */

#define SECRET "s3cret key"
#define NOW    ((time_t)1700000000)

static void test_signed_cookie_round_trip(void **state)
{
    (void)state;
    char s[512], v[256];
    const char *values[] = {"", "a", "ab", "abc", "abcd", "hello world|with|bars", "\xff\xfe\0z"};
    size_t lens[] = {0, 1, 2, 3, 4, 21, 4};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        ssize_t n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", values[i], lens[i], NOW);
        assert_true(n > 0);
        assert_int_equal(strlen(s), n);
        /* the output is a valid cookie value */
        assert_int_equal(sq_format_set_cookie(NULL, 0, "sid", s, NULL) > 0, true);
        assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, (size_t)n, 31, NOW),
                         lens[i]);
        assert_memory_equal(v, values[i], lens[i]);
        assert_int_equal(v[lens[i]], '\0');
        /* snprintf semantics for the signer */
        char small[8];
        assert_int_equal(
            sq_sign_cookie_value(small, sizeof small, SECRET, "sid", values[i], lens[i], NOW), n);
        assert_int_equal(strlen(small), 7);
        assert_int_equal(sq_sign_cookie_value(NULL, 0, SECRET, "sid", values[i], lens[i], NOW), n);
    }
    /* the shortest signed value (empty value, one-digit time) and the longest time */
    ssize_t n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", "", 0, 5);
    assert_string_equal(s, "2|1:0|1:5|3:sid|0:|"
                           "6cb57accacfd3102d9ee2fa1cddeedb7eb20983f559e31b0910469b51721a2d4");
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, (size_t)n, 0, 5), 0);
    n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("x"), INT64_MAX);
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, (size_t)n, 0, INT64_MAX),
                     1);
    n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("value"), NOW);
    /* the wrong name, secret, and every bad-argument case */
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sie", s, (size_t)n, 0, NOW),
                     -EINVAL);
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, "s3cret kez", "sid", s, (size_t)n, 0, NOW),
                     -EINVAL);
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, "", "sid", s, (size_t)n, 0, NOW), -EINVAL);
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "", s, (size_t)n, 0, NOW),
                     -EINVAL);
    assert_int_equal(sq_sign_cookie_value(s, sizeof s, "", "sid", R("v"), NOW), -EINVAL);
    assert_int_equal(sq_sign_cookie_value(s, sizeof s, NULL, "sid", R("v"), NOW), -EINVAL);
    assert_int_equal(sq_sign_cookie_value(s, sizeof s, SECRET, "a b", R("v"), NOW), -EINVAL);
    assert_int_equal(sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("v"), 0), -EINVAL);
    assert_int_equal(sq_sign_cookie_value(s, sizeof s, SECRET, "sid", NULL, 1, NOW), -EINVAL);
    /* dst too small for the value */
    n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("value"), NOW);
    assert_int_equal(sq_verify_cookie_value(v, 5, SECRET, "sid", s, (size_t)n, 0, NOW), -E2BIG);
    assert_int_equal(sq_verify_cookie_value(v, 6, SECRET, "sid", s, (size_t)n, 0, NOW), 5);
    /* truncations and extensions */
    for (size_t k = 0; k < (size_t)n; k++)
        assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, k, 0, NOW), -EINVAL);
    s[n] = 'x';
    assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, (size_t)n + 1, 0, NOW),
                     -EINVAL);
    /* garbage */
    const char *junk[] = {"", "|", "||", "a|1|", "YQ|1700000000|" /* no MAC */};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
        assert_int_equal(
            sq_verify_cookie_value(v, sizeof v, SECRET, "sid", junk[i], strlen(junk[i]), 0, NOW),
            -EINVAL);
}

static void test_signed_cookie_tampering(void **state)
{
    (void)state;
    char s[256], t[256], v[64];
    ssize_t n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("user=42;admin=0"), NOW);
    assert_true(n > 64);
    static const unsigned char subst[] = {0,   '0', '1', '9', 'a', 'f',  'A',  'z',
                                          '-', '_', '|', '=', ' ', '\r', 0x80, 0xff};
    size_t tried = 0;
    for (ssize_t pos = 0; pos < n; pos++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(t, s, (size_t)n);
            if (t[pos] == (char)subst[k]) continue;
            t[pos] = (char)subst[k];
            assert_int_equal(
                sq_verify_cookie_value(v, sizeof v, SECRET, "sid", t, (size_t)n, 0, NOW), -EINVAL);
            tried++;
        }
        for (int bit = 0; bit < 8; bit++) {
            memcpy(t, s, (size_t)n);
            t[pos] ^= (char)(1 << bit);
            assert_int_equal(
                sq_verify_cookie_value(v, sizeof v, SECRET, "sid", t, (size_t)n, 0, NOW), -EINVAL);
            tried++;
        }
        /* a deleted byte */
        memcpy(t, s, (size_t)pos);
        memcpy(t + pos, s + pos + 1, (size_t)(n - pos - 1));
        assert_int_equal(
            sq_verify_cookie_value(v, sizeof v, SECRET, "sid", t, (size_t)n - 1, 0, NOW), -EINVAL);
    }
    assert_true(tried > (size_t)n * 8);
}

static void test_signed_cookie_expiry(void **state)
{
    (void)state;
    char s[256], v[64];
    ssize_t n = sq_sign_cookie_value(s, sizeof s, SECRET, "sid", R("v"), NOW);
    const struct {
        double days;
        time_t now;
        ssize_t r;
    } cases[] = {
        {31, NOW, 1},
        {31, NOW + 31 * 86400, 1},
        {31, NOW + 31 * 86400 + 1, -ETIMEDOUT},
        {0, NOW + 31 * 86400, 1}, /* <= 0 means 31 */
        {0, NOW + 31 * 86400 + 1, -ETIMEDOUT},
        {-5, NOW + 32 * 86400, -ETIMEDOUT},
        {1, NOW + 86401, -ETIMEDOUT},
        {0.5, NOW + 43200, 1},
        {0.5, NOW + 43201, -ETIMEDOUT},
        {365, NOW + 364 * 86400, 1},
        {31, NOW - 86400, 1}, /* clocks a day apart */
        {31, NOW - 86401, -ETIMEDOUT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ssize_t r = sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, (size_t)n, cases[i].days,
                                           cases[i].now);
        if (r != cases[i].r) fail_msg("case %zu: got %zd want %zd", i, r, cases[i].r);
    }
}

typedef struct signed_case {
    const char *signed_value, *value;
    size_t len;
    int key_version;
} signed_case;

/* Each signed value (secret SECRET, name "sid", clock NOW) names its key version, verifies
 * into its value, and fails with another name or secret, once expired, with any byte
 * changed and when truncated. */
static void check_signed_cases(const signed_case *cases, size_t ncases)
{
    char v[64], t[256];
    for (size_t i = 0; i < ncases; i++) {
        const char *s = cases[i].signed_value;
        size_t n = strlen(s);
        assert_int_equal(sq_cookie_value_key_version(s, n), cases[i].key_version);
        ssize_t r = sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, n, 31, NOW);
        if (r != (ssize_t)cases[i].len) fail_msg("case %zu: got %zd", i, r);
        assert_memory_equal(v, cases[i].value, cases[i].len);
        assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sie", s, n, 31, NOW),
                         -EINVAL);
        assert_int_equal(sq_verify_cookie_value(v, sizeof v, "other", "sid", s, n, 31, NOW),
                         -EINVAL);
        assert_int_equal(
            sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, n, 31, NOW + 32 * 86400),
            -ETIMEDOUT);
        for (size_t k = 0; k < n; k++) { /* every byte changed, every truncation */
            memcpy(t, s, n);
            t[k] ^= 1;
            assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", t, n, 31, NOW),
                             -EINVAL);
            assert_int_equal(sq_verify_cookie_value(v, sizeof v, SECRET, "sid", s, k, 31, NOW),
                             -EINVAL);
        }
    }
}

/* Values Tornado's create_signed_value made (version 2, secret SECRET, clock NOW) verify, and
 * squall signs the same value into the same bytes, so that Tornado reads squall's too. */
static void test_signed_cookie_from_tornado(void **state)
{
    (void)state;
    static const signed_case cases[] = {
        {"2|1:0|10:1700000000|3:sid|20:dXNlcj00MjthZG1pbj0w|"
         "6e7d3d59fc39df0039ecfabc98ba0e57d33ce54fcb8e2250683f52a0f917c1ba",
         R("user=42;admin=0"), 0},
        {"2|1:0|10:1700000000|3:sid|0:|"
         "41b2261cfc8254f655715143f0baaec75d348f5116baa7bc3a7a8808e7bec9d6",
         R(""), 0},
        {"2|1:0|10:1700000000|3:sid|8://4+Pw==|"
         "5f5b1d622d594c8ba783b5fcccc009e3051ae11795e0f75472bc5e545d8b371a",
         R("\xff\xfe>?"), 0},
        {"2|1:5|10:1700000000|3:sid|4:djU=|" /* key_version=5 */
         "2dd84f10d1fe88ad230ead00504df158bbbc9cf88401b8d78e30d32233a80fc8",
         R("v5"), 5},
    };
    check_signed_cases(cases, sizeof cases / sizeof *cases);
    char t[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *s = cases[i].signed_value;
        ssize_t n = (ssize_t)strlen(s);
        assert_int_equal(sq_sign_cookie_value_kv(t, sizeof t, SECRET, cases[i].key_version, "sid",
                                                 cases[i].value, cases[i].len, NOW),
                         n);
        assert_string_equal(t, s);
        if (cases[i].key_version == 0) { /* no version: what Tornado's str secret writes */
            assert_int_equal(
                sq_sign_cookie_value(t, sizeof t, SECRET, "sid", cases[i].value, cases[i].len, NOW),
                n);
            assert_string_equal(t, s);
            assert_int_equal(sq_sign_cookie_value_kv(t, sizeof t, SECRET, -1, "sid", cases[i].value,
                                                     cases[i].len, NOW),
                             n);
            assert_string_equal(t, s);
        }
    }
}

/* Values squall signed before it wrote Tornado's format ("[k<version>|]b64url|ts|hexsig",
 * secret SECRET, clock NOW) still verify until they expire. */
static void test_signed_cookie_old_format(void **state)
{
    (void)state;
    static const signed_case cases[] = {
        {"dXNlcj00MjthZG1pbj0w|1700000000|"
         "7070b29148c387e8e7405cfcc1b9cf6e2e36806053b6db5c78d1875d5bbfce80",
         R("user=42;admin=0"), -1},
        {"|1700000000|bf08f4edd4183b6a19aa4724a6260e20d2a6c093ba7ca156bf429284044f8778", R(""), -1},
        {"__4-Pw|1700000000|486e9905547e4deef95bf9b148332d0d2352db202a63ca4d9b930b626d87b11e",
         R("\xff\xfe>?"), -1},
        {"k5|djU|1700000000|34f05df09ba0a428607b66252c3e9fbb357d5f066f4985e5f41c19ad41ccec2c",
         R("v5"), 5},
    };
    check_signed_cases(cases, sizeof cases / sizeof *cases);
}

/* --- dates --------------------------------------------------------------------------------- */

static void test_http_date_format(void **state)
{
    (void)state;
    char d[30];
    const struct {
        time_t t;
        const char *s;
    } cases[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"},
        {1709251199, "Thu, 29 Feb 2024 23:59:59 GMT"},
        {4102444800, "Fri, 01 Jan 2100 00:00:00 GMT"},
        {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {-86400, "Wed, 31 Dec 1969 00:00:00 GMT"},
        {-2208988800, "Mon, 01 Jan 1900 00:00:00 GMT"},
        {253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"},
        {(time_t)1 << 62, "Fri, 31 Dec 9999 23:59:59 GMT"}, /* clamped */
        {-((time_t)1 << 62), "Mon, 01 Jan 0001 00:00:00 GMT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(d, 'X', sizeof d);
        sq_http_date(d, cases[i].t);
        assert_string_equal(d, cases[i].s);
        time_t back;
        assert_int_equal(sq_parse_http_date(d, strlen(d), &back), 0);
        if (i < 9) assert_int_equal(back, cases[i].t);
    }
}

typedef struct date_case {
    const char *s;
    int r;
    time_t t;
} date_case;

static const date_case date_cases[] = {
    {"Sun, 06 Nov 1994 08:49:37 GMT", 0, 784111777},
    {"Sunday, 06-Nov-94 08:49:37 GMT", 0, 784111777},
    {"Sun Nov  6 08:49:37 1994", 0, 784111777},
    {"Sun Nov 06 08:49:37 1994", 0, 784111777},
    {"  Sun, 06 Nov 1994 08:49:37 GMT\t", 0, 784111777},
    {"sun, 06 nov 1994 08:49:37 GMT", 0, 784111777},
    {"sun, 06 nov 1994 08:49:37 gmt", 0, 784111777}, /* like Python's parsedate */
    {"SUNDAY, 06-NOV-94 08:49:37 Gmt", 0, 784111777},
    {"sun nov  6 08:49:37 1994", 0, 784111777},
    {"Mon, 06 Nov 1994 08:49:37 GMT", 0, 784111777}, /* the weekday is not checked */
    {"Thursday, 01-Jan-70 00:00:00 GMT", 0, 0},
    {"Saturday, 01-Jan-00 00:00:00 GMT", 0, 946684800},
    {"Wednesday, 31-Dec-69 23:59:59 GMT", 0, 3155759999},
    {"Thu, 29 Feb 2024 23:59:59 GMT", 0, 1709251199},
    {"Thu, 01 Jan 1970 00:00:60 GMT", 0, 60},
    {"Thu Feb 29 12:00:00 2024", 0, 1709208000},
    {"", -EINVAL},
    {"Sun", -EINVAL},
    {"Sun,", -EINVAL},
    {"Xyz, 06 Nov 1994 08:49:37 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 08:49:37 UTC", -EINVAL},
    {"Sun, 06 Nov 1994 08:49:37", -EINVAL},
    {"Sun, 06 Nov 1994 08:49:37 GMT junk", -EINVAL},
    {"Sun, 6 Nov 1994 08:49:37 GMT", -EINVAL},
    {"Sun, 06 Nov 94 08:49:37 GMT", -EINVAL},
    {"Sun, 06 Foo 1994 08:49:37 GMT", -EINVAL},
    {"Sun, 00 Nov 1994 08:49:37 GMT", -EINVAL},
    {"Sun, 31 Nov 1994 08:49:37 GMT", -EINVAL},
    {"Fri, 29 Feb 2023 00:00:00 GMT", -EINVAL},
    {"Tue, 29 Feb 2100 00:00:00 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 24:00:00 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 23:60:00 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 23:59:61 GMT", -EINVAL},
    {"Sun, 06 Nov 0000 00:00:00 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 8:49:37 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 08-49-37 GMT", -EINVAL},
    {"Sun, 06 Nov 1994 08:49:3a GMT", -EINVAL},
    {"Sun, 06 Nov +994 08:49:37 GMT", -EINVAL},
    {"Sun,  06 Nov 1994 08:49:37 GMT", -EINVAL},
    {"Sunday, 06-Nov-1994 08:49:37 GMT", -EINVAL},
    {"Sunday 06-Nov-94 08:49:37 GMT", -EINVAL},
    {"Monday, 06-Nov-94 08:49:37", -EINVAL},
    {"Sunny, 06-Nov-94 08:49:37 GMT", -EINVAL},
    {"Sun Nov 6 08:49:37 1994", -EINVAL},
    {"Sun Nov  6 08:49:37 94", -EINVAL},
    {"Sun Nov  6 08:49:37 1994 GMT", -EINVAL},
    {"Sun Nov   6 08:49:37 1994", -EINVAL},
};

static void test_parse_http_date(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof date_cases / sizeof *date_cases; i++) {
        const date_case *c = &date_cases[i];
        size_t len = strlen(c->s);
        char *copy = malloc(len ? len : 1); /* exact size: ASan catches over-reads */
        memcpy(copy, c->s, len);
        time_t t = 12345;
        int r = sq_parse_http_date(copy, len, &t);
        if (r != c->r || (r == 0 && t != c->t))
            fail_msg("case %zu (%s): got %d/%lld want %d/%lld", i, c->s, r, (long long)t, c->r,
                     (long long)c->t);
        if (r < 0) assert_int_equal(t, 12345);
        free(copy);
    }
}

static void test_http_date_round_trip(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char d[30];
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        time_t t = (time_t)(x % (253402300799ull + 62135596800ull)) - (time_t)62135596800ll;
        if (i < 1000) t = (time_t)i * 86399 * 37; /* dense near the epoch */
        sq_http_date(d, t);
        assert_int_equal(strlen(d), 29);
        time_t back;
        assert_int_equal(sq_parse_http_date(d, 29, &back), 0);
        assert_int_equal(back, t);
        if (t >= 0 && t < ((time_t)1 << 40)) { /* agrees with the C library */
            struct tm tm;
            char want[64];
            gmtime_r(&t, &tm);
            static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
            static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
            snprintf(want, sizeof want, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
                     tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
            assert_string_equal(d, want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_unescape),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_parse_qs),
        cmocka_unit_test(test_parse_qs_limits),
        cmocka_unit_test(test_multipart_boundary),
        cmocka_unit_test(test_parse_multipart),
        cmocka_unit_test(test_multipart_limits),
        cmocka_unit_test(test_parse_cookie_header),
        cmocka_unit_test(test_format_set_cookie),
        cmocka_unit_test(test_signed_cookie_round_trip),
        cmocka_unit_test(test_signed_cookie_tampering),
        cmocka_unit_test(test_signed_cookie_expiry),
        cmocka_unit_test(test_signed_cookie_from_tornado),
        cmocka_unit_test(test_signed_cookie_old_format),
        cmocka_unit_test(test_http_date_format),
        cmocka_unit_test(test_parse_http_date),
        cmocka_unit_test(test_http_date_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
