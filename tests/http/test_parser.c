/* The HTTP/1.1 request-head parser: every kind of well-formed request with all its fields,
 * the exact status of each kind of malformed one, limits (also on incomplete input),
 * byte-at-a-time feeding and pipelining. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "squall/http_parser.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers" /* short table rows */

#define R(s) s, sizeof(s) - 1 /* a request literal and its length (NULs allowed) */

static int parse(const char *buf, size_t len, size_t prev, sq_http_request_head *h,
                 sq_http_header *hdrs, size_t max, const sq_http_limits *lim)
{
    memset(h, 0xa5, sizeof *h); /* nothing may depend on the caller clearing it */
    return sq_http_parse_request(buf, len, prev, h, hdrs, max, lim);
}

/* "name=value|name=value" for comparison with a table entry. */
static void join_headers(const sq_http_request_head *h, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < h->nheaders; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s=%.*s", i ? "|" : "",
                              (int)h->headers[i].name_len, h->headers[i].name,
                              (int)h->headers[i].value_len, h->headers[i].value);
}

static void assert_slice(const char *p, size_t n, const char *want)
{
    if (!want) {
        assert_null(p);
        return;
    }
    assert_non_null(p);
    if (n != strlen(want) || memcmp(p, want, n) != 0) {
        fail_msg("slice \"%.*s\" != \"%s\"", (int)n, p, want);
    }
}

typedef struct good_case {
    const char *name;
    const char *req;
    const char *method, *target;
    sq_http_target_form form;
    const char *path, *query, *host;
    int minor;
    const char *headers; /* joined, see join_headers */
    int64_t content_length;
    bool chunked, keep_alive, expect_continue, upgrade;
} good_case;

static const good_case good[] = {
    {"origin-form with query",
     "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n", "GET",
     "/a/b?x=1&y=2", SQ_HTTP_ORIGIN_FORM, "/a/b", "x=1&y=2", "example.com", 1,
     "Host=example.com|User-Agent=t", -1, false, true, false, false},
    {"empty query", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/p?", SQ_HTTP_ORIGIN_FORM, "/p",
     "", "h", 1, "Host=h", -1, false, true, false, false},
    {"absolute-form", "GET http://Example.com:8080/p/q?r=1 HTTP/1.1\r\nHost: other\r\n\r\n", "GET",
     "http://Example.com:8080/p/q?r=1", SQ_HTTP_ABSOLUTE_FORM, "/p/q", "r=1", "Example.com:8080", 1,
     "Host=other", -1, false, true, false, false},
    {"absolute-form https, no path", "GET HTTPS://h.example?q HTTP/1.1\r\nHost: h.example\r\n\r\n",
     "GET", "HTTPS://h.example?q", SQ_HTTP_ABSOLUTE_FORM, "/", "q", "h.example", 1,
     "Host=h.example", -1, false, true, false, false},
    {"absolute-form bare", "GET http://[::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "GET",
     "http://[::1]:80", SQ_HTTP_ABSOLUTE_FORM, "/", NULL, "[::1]:80", 1, "Host=[::1]:80", -1, false,
     true, false, false},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", SQ_HTTP_ASTERISK_FORM,
     "*", NULL, "h", 1, "Host=h", -1, false, true, false, false},
    {"CONNECT authority-form",
     "CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n", "CONNECT",
     "www.example.com:443", SQ_HTTP_AUTHORITY_FORM, "", NULL, "www.example.com:443", 1,
     "Host=www.example.com:443", -1, false, true, false, false},
    {"HTTP/1.0 plain", "GET / HTTP/1.0\r\n\r\n", "GET", "/", SQ_HTTP_ORIGIN_FORM, "/", NULL, NULL,
     0, "", -1, false, false, false, false},
    {"HTTP/1.0 keep-alive", "GET /k HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n", "GET",
     "/k", SQ_HTTP_ORIGIN_FORM, "/k", NULL, "h", 0, "Connection=Keep-Alive|Host=h", -1, false, true,
     false, false},
    {"HTTP/1.0 ignores Expect",
     "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", "POST", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, NULL, 0, "Expect=100-continue|Content-Length=1", 1, false,
     false, false, false},
    {"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", "GET", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Connection=CLOSE", -1, false, false, false,
     false},
    {"close wins over keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "GET",
     "/", SQ_HTTP_ORIGIN_FORM, "/", NULL, NULL, 0, "Connection=keep-alive, close", -1, false, false,
     false, false},
    {"Expect 100-continue",
     "PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n", "PUT",
     "/up", SQ_HTTP_ORIGIN_FORM, "/up", NULL, "h", 1,
     "Host=h|Expect=100-Continue|Content-Length=10", 10, false, true, true, false},
    {"Content-Length zero", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "POST", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Content-Length=0", 0, false, true, false,
     false},
    {"Content-Length big",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n", "POST", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Content-Length=999999999999999999",
     999999999999999999LL, false, true, false, false},
    {"Content-Length repeated and list",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", "POST", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Content-Length=5, 5|Content-Length=5", 5,
     false, true, false, false},
    {"chunked", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", "POST", "/c",
     SQ_HTTP_ORIGIN_FORM, "/c", NULL, "h", 1, "Host=h|Transfer-Encoding=Chunked", -1, true, true,
     false, false},
    {"chunked with empty list members",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked ,\r\n\r\n", "POST", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Transfer-Encoding=, chunked ,", -1, true, true,
     false, false},
    {"same name twice", "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\n\r\n", "GET", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Accept=a|accept=b", -1, false, true, false,
     false},
    {"OWS trimmed", "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v  v \t \r\nX-B:\r\nX-C: \t\r\n\r\n",
     "GET", "/", SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|X-A=v  v|X-B=|X-C=", -1, false,
     true, false, false},
    {"bare LF", "GET /lf HTTP/1.1\nHost: h\nX: y\r\n\n", "GET", "/lf", SQ_HTTP_ORIGIN_FORM, "/lf",
     NULL, "h", 1, "Host=h|X=y", -1, false, true, false, false},
    {"leading empty lines", "\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/",
     SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h", -1, false, true, false, false},
    {"upgrade",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
     "GET", "/ws", SQ_HTTP_ORIGIN_FORM, "/ws", NULL, "h", 1,
     "Host=h|Connection=keep-alive, Upgrade|Upgrade=websocket", -1, false, true, false, true},
    {"Upgrade without Connection: upgrade", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n",
     "GET", "/", SQ_HTTP_ORIGIN_FORM, "/", NULL, "h", 1, "Host=h|Upgrade=h2c", -1, false, true,
     false, false},
    {"HTTP/1.9 served as 1.1", "GET / HTTP/1.9\r\nHost: h\r\n\r\n", "GET", "/", SQ_HTTP_ORIGIN_FORM,
     "/", NULL, "h", 1, "Host=h", -1, false, true, false, false},
    {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", SQ_HTTP_ORIGIN_FORM, "/", NULL,
     "", 1, "Host=", -1, false, true, false, false},
    {"odd method token, obs-text",
     "M-SEARCH! /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n", "M-SEARCH!",
     "/\xc3\xa9t\xc3\xa9", SQ_HTTP_ORIGIN_FORM, "/\xc3\xa9t\xc3\xa9", NULL, "h", 1,
     "Host=h|X=caf\xc3\xa9", -1, false, true, false, false},
    {"long values take the fast path",
     "GET /0123456789/0123456789/0123456789?0123456789=0123456789 HTTP/1.1\r\nHost: h\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\r\n",
     "GET", "/0123456789/0123456789/0123456789?0123456789=0123456789", SQ_HTTP_ORIGIN_FORM,
     "/0123456789/0123456789/0123456789", "0123456789=0123456789", "h", 1,
     "Host=h|User-Agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)", -1,
     false, true, false, false},
};

static void check_good(const good_case *c, const sq_http_request_head *h)
{
    char joined[1024];
    assert_slice(h->method, h->method_len, c->method);
    assert_slice(h->target, h->target_len, c->target);
    assert_int_equal(h->form, c->form);
    assert_slice(h->path, h->path_len, c->path);
    assert_slice(h->query, h->query_len, c->query);
    assert_slice(h->host, h->host_len, c->host);
    assert_int_equal(h->version_minor, c->minor);
    join_headers(h, joined, sizeof joined);
    assert_string_equal(joined, c->headers);
    assert_int_equal(h->content_length, c->content_length);
    assert_int_equal(h->chunked, c->chunked);
    assert_int_equal(h->keep_alive, c->keep_alive);
    assert_int_equal(h->expect_continue, c->expect_continue);
    assert_int_equal(h->upgrade, c->upgrade);
}

static void test_good_requests(void **state)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const good_case *c = &good[i];
        sq_http_request_head h;
        sq_http_header hdrs[16];
        size_t n = strlen(c->req);
        print_message("case: %s\n", c->name);
        /* An exact-size heap copy, so that ASan sees any read past the end. */
        char *buf = malloc(n);
        memcpy(buf, c->req, n);
        assert_int_equal(parse(buf, n, 0, &h, hdrs, 16, NULL), (int)n);
        check_good(c, &h);
        /* Bytes after the head (a body, the next request) change nothing. */
        char *more = malloc(n + 5);
        memcpy(more, c->req, n);
        memcpy(more + n, "XYZ\r\n", 5);
        assert_int_equal(parse(more, n + 5, 0, &h, hdrs, 16, NULL), (int)n);
        check_good(c, &h);
        free(more);
        free(buf);
    }
}

/* Fed one byte at a time, with prev_len: 0 until the last byte, then the one-shot result. */
static void test_good_byte_at_a_time(void **state)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const good_case *c = &good[i];
        sq_http_request_head h;
        sq_http_header hdrs[16];
        size_t n = strlen(c->req);
        print_message("case: %s\n", c->name);
        for (size_t k = 1; k <= n; k++) {
            char *buf = malloc(k);
            memcpy(buf, c->req, k);
            int r = parse(buf, k, k - 1, &h, hdrs, 16, NULL);
            if (k < n) {
                assert_int_equal(r, 0);
            } else {
                assert_int_equal(r, (int)n);
                check_good(c, &h);
            }
            free(buf);
        }
        /* And in two pieces at every split point. */
        for (size_t k = 1; k < n; k++) {
            assert_int_equal(parse(c->req, k, 0, &h, hdrs, 16, NULL), 0);
            assert_int_equal(parse(c->req, n, k, &h, hdrs, 16, NULL), (int)n);
            check_good(c, &h);
        }
    }
}

typedef struct bad_case {
    const char *name;
    const char *req;
    size_t len;
    int status;
    size_t max_line, max_head, max_headers; /* 0: defaults / 16 */
} bad_case;

#define HOST "Host: h\r\n"
static const bad_case bad[] = {
    {"bad method token", R("GE(T / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"method with @", R("G@T / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"empty method", R(" / HTTP/1.1\r\n" HOST "\r\n"), -400},
    /* Bytes that cannot start a request are refused at once: a TLS ClientHello sent to a
     * plain port never brings a CRLF, and must not wait out the header timeout. */
    {"TLS ClientHello", R("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), -400},
    {"NUL first byte", R("\0GET / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"two spaces after method", R("GET  / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"two spaces before version", R("GET /  HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"tab separator", R("GET\t/ HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"no version", R("GET /\r\n" HOST "\r\n"), -400},
    {"target not a form", R("GET index.html HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"target other scheme", R("GET ftp://h/x HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"absolute-form without authority", R("GET http:///x HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"absolute-form with userinfo", R("GET http://u:p@h/x HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"asterisk with GET", R("GET * HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"CONNECT with origin-form", R("CONNECT /x HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"CONNECT without port", R("CONNECT h HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"authority-form with GET", R("GET h:80 HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"fragment in target", R("GET /a#b HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"DEL in target", R("GET /a\x7f HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"control char in target", R("GET /a\x01 HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"NUL in target", R("GET /a\0b HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"NUL in method", R("G\0T / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"bad header name", R("GET / HTTP/1.1\r\n" HOST "X(y): z\r\n\r\n"), -400},
    {"empty header name", R("GET / HTTP/1.1\r\n" HOST ": z\r\n\r\n"), -400},
    {"header without colon", R("GET / HTTP/1.1\r\n" HOST "Xyz\r\n\r\n"), -400},
    {"space before colon", R("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), -400},
    {"tab before colon", R("GET / HTTP/1.1\r\n" HOST "X\t: y\r\n\r\n"), -400},
    {"bare CR in value", R("GET / HTTP/1.1\r\n" HOST "X: a\rb\r\n\r\n"), -400},
    {"bare CR ends request line", R("GET / HTTP/1.1\rHost: h\r\n\r\n"), -400},
    {"bare CR ends header", R("GET / HTTP/1.1\r\n" HOST "X: a\r\r\n\r\n"), -400},
    {"bare CR in blank line", R("GET / HTTP/1.1\r\n" HOST "\rX\r\n\r\n"), -400},
    {"NUL in value", R("GET / HTTP/1.1\r\n" HOST "X: a\0b\r\n\r\n"), -400},
    {"NUL in name", R("GET / HTTP/1.1\r\n" HOST "X\0: b\r\n\r\n"), -400},
    {"DEL in value", R("GET / HTTP/1.1\r\n" HOST "X: a\x7f\r\n\r\n"), -400},
    {"control char in value", R("GET / HTTP/1.1\r\n" HOST "X: a\x1b[0m\r\n\r\n"), -400},
    {"obs-fold", R("GET / HTTP/1.1\r\n" HOST "X: a\r\n b\r\n\r\n"), -400},
    {"obs-fold with tab", R("GET / HTTP/1.1\r\n" HOST "X: a\r\n\tb\r\n\r\n"), -400},
    {"space before first header", R("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), -400},
    {"CL and TE",
     R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), -400},
    {"TE and CL",
     R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), -400},
    {"CL and TE gzip",
     R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n"), -400},
    {"differing CLs",
     R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), -400},
    {"differing CL list", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 6\r\n\r\n"), -400},
    {"CL list with empty member", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5,,5\r\n\r\n"),
     -400},
    {"negative CL", R("POST / HTTP/1.1\r\n" HOST "Content-Length: -5\r\n\r\n"), -400},
    {"CL with plus", R("POST / HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\n"), -400},
    {"CL with letters", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 5a\r\n\r\n"), -400},
    {"CL hex", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 0x10\r\n\r\n"), -400},
    {"CL empty", R("POST / HTTP/1.1\r\n" HOST "Content-Length:\r\n\r\n"), -400},
    {"CL inner space", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 1 2\r\n\r\n"), -400},
    {"CL overflow", R("POST / HTTP/1.1\r\n" HOST "Content-Length: 99999999999999999999\r\n\r\n"),
     -400},
    {"TE gzip", R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n"), -501},
    {"TE unknown", R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: foo\r\n\r\n"), -501},
    {"TE gzip, chunked", R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n"),
     -501},
    {"TE chunked not last",
     R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
     -501},
    {"TE chunked twice",
     R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n\r\n"), -400},
    {"TE chunked in two headers",
     R("POST / HTTP/1.1\r\n" HOST
       "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     -400},
    {"TE empty", R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n\r\n"), -400},
    {"TE not a token", R("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \"chunked\"\r\n\r\n"),
     -400},
    {"TE with HTTP/1.0", R("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400},
    {"HTTP/2.0", R("GET / HTTP/2.0\r\n" HOST "\r\n"), -505},
    {"HTTP/3", R("GET / HTTP/3\r\n" HOST "\r\n"), -505},
    {"HTTP/0.9", R("GET / HTTP/0.9\r\n" HOST "\r\n"), -505},
    {"HTTP/1 without minor", R("GET / HTTP/1\r\n" HOST "\r\n"), -400},
    {"HTTP/1.10", R("GET / HTTP/1.10\r\n" HOST "\r\n"), -400},
    {"lowercase version", R("GET / http/1.1\r\n" HOST "\r\n"), -400},
    {"garbage version", R("GET / HTTX/1.1\r\n" HOST "\r\n"), -400},
    {"version trailing junk", R("GET / HTTP/1.1x\r\n" HOST "\r\n"), -400},
    {"version trailing space", R("GET / HTTP/1.1 \r\n" HOST "\r\n"), -400},
    {"version no digits", R("GET / HTTP/.1\r\n" HOST "\r\n"), -400},
    {"missing Host in 1.1", R("GET / HTTP/1.1\r\nX: y\r\n\r\n"), -400},
    {"two Hosts", R("GET / HTTP/1.1\r\n" HOST HOST "\r\n"), -400},
    {"Host list", R("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), -400},
    {"Host with userinfo", R("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n"), -400},
    {"too many empty lines first",
     R("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" HOST "\r\n"), -400},
    {"bare CR first", R("\rGET / HTTP/1.1\r\n" HOST "\r\n"), -400},
    /* limits: a request line of 33 bytes against 32 */
    {"request line too long", R("GET /0123456789012345678 HTTP/1.1\r\n" HOST "\r\n"), -414, 32},
    {"request line too long, LF only", R("GET /0123456789012345678 HTTP/1.1\n" HOST "\n"), -414,
     32},
    {"request line too long, incomplete", R("GET /01234567890123456789012345678901234"), -414, 32},
    {"request line too long and bad", R("G(T /0123456789012345678901234567890"), -414, 32},
    {"header section too large", R("GET / HTTP/1.1\r\n" HOST "X: 0123456789\r\n\r\n"), -431, 0, 40},
    {"header section too large, incomplete", R("GET / HTTP/1.1\r\n" HOST "X: 0123456789012345"),
     -431, 0, 40},
    {"header section too large, bad byte after the limit",
     R("GET / HTTP/1.1\r\n" HOST "X: 0123456789012345\x01"), -431, 0, 40},
    {"header section too large, bad byte before the limit",
     R("GET / HTTP/1.1\r\n" HOST "X: 0\x01"
       "123456789012345"),
     -431, 0, 40},
    {"too many headers", R("GET / HTTP/1.1\r\n" HOST "A: 1\r\nB: 2\r\nC: 3\r\n\r\n"), -431, 0, 0,
     3},
    {"no room for headers", R("GET / HTTP/1.0\r\nA: 1\r\n\r\n"), -431, 0, 0, SIZE_MAX},
};

static int parse_bad(const bad_case *c, const char *buf, size_t len, size_t prev,
                     sq_http_request_head *h, sq_http_header *hdrs)
{
    sq_http_limits lim = {c->max_line, c->max_head};
    size_t max = c->max_headers == SIZE_MAX ? 0 : c->max_headers ? c->max_headers : 16;
    return parse(buf, len, prev, h, max ? hdrs : NULL, max, &lim);
}

static void test_bad_requests(void **state)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const bad_case *c = &bad[i];
        sq_http_request_head h;
        sq_http_header hdrs[16];
        print_message("case: %s\n", c->name);
        char *buf = malloc(c->len);
        memcpy(buf, c->req, c->len);
        assert_int_equal(parse_bad(c, buf, c->len, 0, &h, hdrs), c->status);
        free(buf);
    }
}

/* Byte at a time, with prev_len: 0 until the error is decided, then the one-shot status,
 * and every split into two pieces agrees. */
static void test_bad_byte_at_a_time(void **state)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const bad_case *c = &bad[i];
        sq_http_request_head h;
        sq_http_header hdrs[16];
        print_message("case: %s\n", c->name);
        int r = 0;
        size_t k;
        for (k = 1; k <= c->len && r == 0; k++) {
            char *buf = malloc(k);
            memcpy(buf, c->req, k);
            r = parse_bad(c, buf, k, k - 1, &h, hdrs);
            free(buf);
        }
        assert_int_equal(r, c->status);
        for (k = 1; k < c->len; k++) {
            r = parse_bad(c, c->req, k, 0, &h, hdrs);
            if (r == 0) r = parse_bad(c, c->req, c->len, k, &h, hdrs);
            assert_int_equal(r, c->status);
        }
    }
}

/* The limits trigger exactly at their documented size, also before the line ends. */
static void test_limit_boundaries(void **state)
{
    sq_http_request_head h;
    sq_http_header hdrs[16];
    sq_http_limits lim = {32, 64};
    char line[128];
    /* A request line of exactly 32 bytes passes; 33 does not. */
    const char *ok = "GET /012345678901234567 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(strchr(ok, '\r') - ok, 32);
    assert_int_equal(parse(ok, strlen(ok), 0, &h, hdrs, 16, &lim), (int)strlen(ok));
    /* Without its end: 33 bytes might still be 32 + CR, 34 cannot. */
    memset(line, 'a', sizeof line);
    memcpy(line, "GET /", 5);
    assert_int_equal(parse(line, 33, 0, &h, hdrs, 16, &lim), 0);
    assert_int_equal(parse(line, 34, 0, &h, hdrs, 16, &lim), -414);
    assert_int_equal(parse(line, 34, 33, &h, hdrs, 16, &lim), -414);
    /* 32 + CR, then the LF: fine. */
    memcpy(line, "GET /012345678901234567 HTTP/1.1\r\n", 34);
    assert_int_equal(parse(line, 33, 0, &h, hdrs, 16, &lim), 0);
    assert_int_equal(parse(line, 34, 33, &h, hdrs, 16, &lim), 0);

    /* A head of exactly 64 bytes passes, 65 gets 431, without its end after 65. */
    char head[128];
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    size_t pl = strlen(pre);
    memcpy(head, pre, pl);
    memset(head + pl, 'v', 64 - pl - 4);
    memcpy(head + 60, "\r\n\r\n", 4);
    assert_int_equal(parse(head, 64, 0, &h, hdrs, 16, &lim), 64);
    memset(head + pl, 'v', 65 - pl - 4);
    memcpy(head + 61, "\r\n\r\n", 4);
    assert_int_equal(parse(head, 65, 0, &h, hdrs, 16, &lim), -431);
    memset(head, 'v', sizeof head);
    memcpy(head, pre, pl);
    assert_int_equal(parse(head, 64, 0, &h, hdrs, 16, &lim), 0);
    assert_int_equal(parse(head, 65, 0, &h, hdrs, 16, &lim), -431);
    assert_int_equal(parse(head, 65, 64, &h, hdrs, 16, &lim), -431);
    /* Leading empty lines do not count. */
    char lead[140];
    memcpy(lead, "\r\n\r\n", 4);
    memcpy(lead + 4, ok, strlen(ok));
    assert_int_equal(parse(lead, 4 + strlen(ok), 0, &h, hdrs, 16, &lim), (int)(4 + strlen(ok)));

    /* Exactly max_headers headers pass. */
    const char *three = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_int_equal(parse(three, strlen(three), 0, &h, hdrs, 3, NULL), (int)strlen(three));
    assert_int_equal(h.nheaders, 3);
    assert_int_equal(parse(three, strlen(three), 0, &h, hdrs, 2, NULL), -431);
}

/* A big head under the default limits, fed in 1-byte steps, must stay cheap (O(n)). */
static void test_incremental_is_linear(void **state)
{
    size_t cap = 60 * 1024;
    char *buf = malloc(cap);
    size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    while (n + 100 < cap) n += (size_t)snprintf(buf + n, cap - n, "X-Filler: %080d\r\n", 7);
    memcpy(buf + n, "\r\n", 2);
    n += 2;
    sq_http_request_head h;
    sq_http_header *hdrs = malloc(1000 * sizeof *hdrs);
    double t0 = sq_test_now();
    int r = 0;
    for (size_t k = 1; k <= n && r == 0; k++) r = parse(buf, k, k - 1, &h, hdrs, 1000, NULL);
    double took = sq_test_now() - t0;
    assert_int_equal(r, (int)n);
    assert_true(h.nheaders > 500);
    /* Quadratic would be ~1e9 byte visits: seconds, even without ASan. */
    assert_true(took < 2.0);
    free(hdrs);
    free(buf);
}

static void test_pipelined(void **state)
{
    const char *reqs = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                       "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                       "\r\nGET /3?x HTTP/1.1\nHost: h\nConnection: close\n\n"
                       "GET /4 HT";
    const char *paths[] = {"/1", "/2", "/3"};
    size_t len = strlen(reqs), off = 0;
    sq_http_request_head h;
    sq_http_header hdrs[8];
    for (int i = 0; i < 3; i++) {
        int r = parse(reqs + off, len - off, 0, &h, hdrs, 8, NULL);
        assert_true(r > 0);
        assert_slice(h.path, h.path_len, paths[i]);
        off += (size_t)r;
        if (i == 1) {
            assert_int_equal(h.content_length, 3);
            assert_memory_equal(reqs + off, "abc", 3);
            off += 3; /* the body; a stray CRLF after it is skipped as a leading empty line */
        }
    }
    assert_false(h.keep_alive);
    assert_slice(h.query, h.query_len, "x");
    assert_int_equal(parse(reqs + off, len - off, 0, &h, hdrs, 8, NULL), 0);
}

static void test_find_header(void **state)
{
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\n";
    sq_http_request_head h;
    sq_http_header hdrs[8];
    assert_true(parse(req, strlen(req), 0, &h, hdrs, 8, NULL) > 0);
    const sq_http_header *f = sq_http_find_header(&h, "X-THING");
    assert_non_null(f);
    assert_slice(f->value, f->value_len, "1");
    assert_non_null(sq_http_find_header(&h, "host"));
    assert_null(sq_http_find_header(&h, "X-Thin"));
    assert_null(sq_http_find_header(&h, "Content-Length"));
}

/* Truncations of a valid request never fail and never read past `len`. */
static void test_every_prefix(void **state)
{
    const char *req =
        "\r\nPOST http://h:1/p?q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
        "Connection: upgrade\r\nUpgrade: x\r\n\r\n";
    size_t n = strlen(req);
    sq_http_request_head h;
    sq_http_header hdrs[8];
    for (size_t k = 0; k < n; k++) {
        char *buf = malloc(k ? k : 1);
        memcpy(buf, req, k);
        assert_int_equal(parse(buf, k, 0, &h, hdrs, 8, NULL), 0);
        free(buf);
    }
    assert_int_equal(parse(req, n, 0, &h, hdrs, 8, NULL), (int)n);
    assert_true(h.chunked && h.upgrade && h.keep_alive);
    assert_slice(h.host, h.host_len, "h:1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_requests),    cmocka_unit_test(test_good_byte_at_a_time),
        cmocka_unit_test(test_bad_requests),     cmocka_unit_test(test_bad_byte_at_a_time),
        cmocka_unit_test(test_limit_boundaries), cmocka_unit_test(test_incremental_is_linear),
        cmocka_unit_test(test_pipelined),        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_every_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
