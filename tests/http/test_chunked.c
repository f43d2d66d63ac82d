/* The in-place chunked decoder: table cases (extensions, trailers, bare LF, the bytes after the
 * body), malformed framing, overflow, and the same results when fed in any pieces. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "squall/http_parser.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers" /* short table rows */

#define R(s)       s, sizeof(s) - 1
#define INCOMPLETE (-2)
#define MALFORMED  (-1)

typedef struct chunk_case {
    const char *name;
    const char *in;
    size_t len;
    ssize_t result;   /* -2, -1 or the number of bytes after the body */
    const char *body; /* expected decoded body (checked unless MALFORMED) */
    const char *rest; /* expected bytes after the body (when result >= 0) */
    size_t body_len;  /* when the body holds a NUL; else strlen(body) */
} chunk_case;

static const chunk_case cases[] = {
    {"one chunk", R("5\r\nhello\r\n0\r\n\r\n"), 0, "hello", ""},
    {"empty body", R("0\r\n\r\n"), 0, "", ""},
    {"three chunks, hex",
     R("3\r\nabc\r\nA\r\n0123456789\r\n1b\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n0\r\n\r\n"), 0,
     "abc0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ!", ""},
    {"leading zeros", R("0005\r\nhello\r\n000\r\n\r\n"), 0, "hello", ""},
    {"16 digits", R("0000000000000005\r\nhello\r\n0\r\n\r\n"), 0, "hello", ""},
    {"extensions", R("5;foo=bar;baz\r\nhello\r\n6 ; q=\"a b;c\"\r\nworld!\r\n0;last\r\n\r\n"), 0,
     "helloworld!", ""},
    {"trailers", R("5\r\nhello\r\n0\r\nX-Sum: 123\r\nY:\r\n\r\n"), 0, "hello", ""},
    {"bare LF on lines", R("5\nhello\r\n0\nT: v\n\n"), 0, "hello", ""},
    {"next request after the body", R("2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), 16, "hi",
     "GET / HTTP/1.1\r\n"},
    {"binary data with CRLFs inside", R("6\r\n\r\n\0\r\n\n\r\n0\r\n\r\nX"), 1, "\r\n\0\r\n\n", "X",
     6},
    {"incomplete in size", R("5\r\nhello\r\n1"), INCOMPLETE, "hello"},
    {"incomplete in data", R("a\r\nhello"), INCOMPLETE, "hello"},
    {"incomplete in trailers", R("1\r\nx\r\n0\r\nA: b\r\n"), INCOMPLETE, "x"},
    {"incomplete before the last CRLF", R("0\r\n\r"), INCOMPLETE, ""},
    {"huge size, incomplete", R("ffffffffffffffff\r\nabc"), INCOMPLETE, "abc"},
    {"not hex", R("x\r\n"), MALFORMED},
    {"no size", R("\r\n"), MALFORMED},
    {"negative", R("-5\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"plus", R("+5\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"0x prefix", R("0x5\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"17 digits", R("00000000000000005\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"overflow", R("10000000000000000\r\n"), MALFORMED},
    {"way too many digits", R("123456789abcdef0123456789\r\n"), MALFORMED},
    {"space without extension", R("5 \r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"bare CR after size", R("5\rhello\r\n0\r\n\r\n"), MALFORMED},
    {"data too long", R("5\r\nhelloX\r\n0\r\n\r\n"), MALFORMED},
    {"data too short", R("5\r\nhell\r\n0\r\n\r\n"), MALFORMED},
    {"bare LF after data", R("5\r\nhello\n0\r\n\r\n"), MALFORMED},
    {"bare CR after data", R("5\r\nhello\rX0\r\n\r\n"), MALFORMED},
    {"control char in extension", R("5;a=\x01\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"NUL in extension", R("5;a\0\r\nhello\r\n0\r\n\r\n"), MALFORMED},
    {"trailer obs-fold", R("0\r\nX: a\r\n b\r\n\r\n"), MALFORMED},
    {"trailer space in name", R("0\r\nX Y: a\r\n\r\n"), MALFORMED},
    {"trailer without colon", R("0\r\nXY\r\n\r\n"), MALFORMED},
    {"trailer NUL", R("0\r\nX: a\0\r\n\r\n"), MALFORMED},
    {"trailer bare CR", R("0\r\nX: a\rb\r\n\r\n"), MALFORMED},
    {"final line bare CR", R("0\r\n\rX"), MALFORMED},
};

/* One-shot: the whole input in one call, in an exact-size heap buffer. */
static ssize_t decode_all(const char *in, size_t len, char **body, size_t *body_len, char **rest,
                          size_t *rest_len)
{
    sq_http_chunked d;
    sq_http_chunked_init(&d);
    char *buf = malloc(len ? len : 1);
    memcpy(buf, in, len);
    size_t n = len;
    ssize_t r = sq_http_chunked_decode(&d, buf, &n);
    *body = malloc(n + 1);
    memcpy(*body, buf, n);
    *body_len = n;
    *rest_len = r > 0 ? (size_t)r : 0;
    *rest = malloc(*rest_len + 1);
    if (r > 0) memcpy(*rest, buf + n, (size_t)r);
    free(buf);
    return r;
}

/* In pieces of the given sizes (cycled), each piece in its own exact-size buffer.  The output
 * is the concatenated body; after the end, the rest of the piece and all later input. */
static ssize_t decode_pieces(const char *in, size_t len, const size_t *sizes, size_t nsizes,
                             char **body, size_t *body_len, char **rest, size_t *rest_len)
{
    sq_http_chunked d;
    sq_http_chunked_init(&d);
    *body = malloc(len + 1);
    *body_len = 0;
    *rest = malloc(len + 1);
    *rest_len = 0;
    ssize_t r = INCOMPLETE;
    size_t off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t k = sizes[i % nsizes];
        if (k > len - off) k = len - off;
        char *buf = malloc(k);
        memcpy(buf, in + off, k);
        size_t n = k;
        r = sq_http_chunked_decode(&d, buf, &n);
        assert_true(n <= k);
        memcpy(*body + *body_len, buf, n);
        *body_len += n;
        off += k;
        if (r >= 0) {
            memcpy(*rest, buf + n, (size_t)r);
            memcpy(*rest + r, in + off, len - off);
            *rest_len = (size_t)r + len - off;
            r = (ssize_t)*rest_len;
        }
        free(buf);
        if (r != INCOMPLETE) break;
    }
    return r;
}

static void check_case(const chunk_case *c, ssize_t r, const char *body, size_t body_len,
                       const char *rest, size_t rest_len)
{
    assert_int_equal(r, c->result);
    if (r == MALFORMED) return;
    assert_int_equal(body_len, c->body_len ? c->body_len : strlen(c->body));
    assert_memory_equal(body, c->body, body_len);
    if (r >= 0) {
        assert_int_equal(rest_len, strlen(c->rest));
        assert_memory_equal(rest, c->rest, rest_len);
    }
}

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const chunk_case *c = &cases[i];
        char *body, *rest;
        size_t bl, rl;
        print_message("case: %s\n", c->name);
        ssize_t r = decode_all(c->in, c->len, &body, &bl, &rest, &rl);
        check_case(c, r, body, bl, rest, rl);
        free(body);
        free(rest);
    }
}

static void test_pieces_equal_one_shot(void **state)
{
    static const size_t one[] = {1}, two[] = {2}, three[] = {3}, odd[] = {1, 4, 2, 7, 3};
    static const size_t *plans[] = {one, two, three, odd};
    static const size_t plan_len[] = {1, 1, 1, 5};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const chunk_case *c = &cases[i];
        print_message("case: %s\n", c->name);
        for (size_t p = 0; p < 4; p++) {
            char *body, *rest;
            size_t bl, rl;
            ssize_t r = decode_pieces(c->in, c->len, plans[p], plan_len[p], &body, &bl, &rest, &rl);
            check_case(c, r, body, bl, rest, rl);
            free(body);
            free(rest);
        }
    }
}

/* An error is sticky, and the decoder keeps answering after the end. */
static void test_after_error_and_end(void **state)
{
    sq_http_chunked d;
    sq_http_chunked_init(&d);
    char bad[] = "z\r\n";
    size_t n = 3;
    assert_int_equal(sq_http_chunked_decode(&d, bad, &n), MALFORMED);
    char good[] = "0\r\n\r\n";
    n = 5;
    assert_int_equal(sq_http_chunked_decode(&d, good, &n), MALFORMED);

    sq_http_chunked_init(&d);
    n = 5;
    assert_int_equal(sq_http_chunked_decode(&d, good, &n), 0);
    char more[] = "next";
    n = 4;
    assert_int_equal(sq_http_chunked_decode(&d, more, &n), 4);
    assert_int_equal(n, 0);
    assert_memory_equal(more, "next", 4);
    /* An empty call changes nothing. */
    sq_http_chunked_init(&d);
    n = 0;
    assert_int_equal(sq_http_chunked_decode(&d, more, &n), INCOMPLETE);
    assert_int_equal(n, 0);
}

/* The size line and the trailer section are bounded. */
static void test_limits(void **state)
{
    size_t cap = 80 * 1024;
    char *buf = malloc(cap);
    sq_http_chunked d;

    /* A size line of 4 KiB (CRLF included) is fine, one byte more is not. */
    for (int over = 0; over < 2; over++) {
        size_t n = 0;
        buf[n++] = '1';
        buf[n++] = ';';
        size_t target = over ? 4095 : 4094;
        while (n < target) buf[n++] = 'e';
        memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
        n += 10;
        sq_http_chunked_init(&d);
        assert_int_equal(sq_http_chunked_decode(&d, buf, &n), over ? MALFORMED : 0);
    }
    /* Trailers up to 64 KiB (the final CRLF included) pass; one byte more fails. */
    for (int over = 0; over < 2; over++) {
        size_t v = 64 * 1024 - 7 + (size_t)over, n = 0;
        memcpy(buf, "0\r\nX: ", 6);
        n = 6;
        memset(buf + n, 'a', v);
        n += v;
        memcpy(buf + n, "\r\n\r\n", 4);
        n += 4;
        sq_http_chunked_init(&d);
        assert_int_equal(sq_http_chunked_decode(&d, buf, &n), over ? MALFORMED : 0);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_pieces_equal_one_shot),
        cmocka_unit_test(test_after_error_and_end),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
