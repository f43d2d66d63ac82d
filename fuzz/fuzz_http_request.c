/* libFuzzer target: the HTTP/1.1 request-head parser.
 *
 * Input layout: [split] [limits] [request bytes].  The bytes are parsed one-shot, then in two
 * calls split at a point taken from the first byte (the second call with prev_len), then (for
 * short inputs) one byte at a time.  Invariants: every way of feeding gives the same answer
 * (0 until decided, then one status or one head); a parsed head is self-contained (parsing
 * exactly its bytes gives the same head); every slice lies inside the head; the fields agree
 * with each other and with the grammar.  The second byte picks default or tiny limits, so
 * that 414 and 431 are reached on short inputs too. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "squall/http_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 64
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static bool is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_slice(const char *p, size_t n, const char *lo, const char *hi)
{
    CHECK(p != NULL);
    CHECK(p >= lo && p + n <= hi);
}

/* Skips the line end at p ((CR) LF); aborts if there is none. */
static const char *eol(const char *p, const char *end)
{
    if (p < end && *p == '\r') p++;
    CHECK(p < end && *p == '\n');
    return p + 1;
}

/* The accepted bytes are exactly: [empty lines] method SP target SP HTTP/1.d EOL, then for
 * each header name ":" OWS value OWS EOL, then EOL -- nothing skipped, nothing in between. */
static void check_layout(const char *buf, const char *end, const sq_http_request_head *h)
{
    const char *p = buf;
    while (p < h->method) p = eol(p, end);
    CHECK(p == h->method);
    p = h->target + h->target_len;
    CHECK(end - p >= 9 && memcmp(p, " HTTP/1.", 8) == 0 && p[8] >= '0' && p[8] <= '9');
    CHECK(h->version_minor == (p[8] == '0' ? 0 : 1));
    p = eol(p + 9, end);
    for (size_t i = 0; i < h->nheaders; i++) {
        const sq_http_header *f = &h->headers[i];
        CHECK(f->name == p);
        p += f->name_len + 1;
        while (p < f->value) {
            CHECK(*p == ' ' || *p == '\t');
            p++;
        }
        CHECK(p == f->value);
        p += f->value_len;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        p = eol(p, end);
    }
    CHECK(eol(p, end) == end);
}

static void check_head(const char *buf, int r, const sq_http_request_head *h, size_t max_headers)
{
    const char *end = buf + r;
    check_slice(h->method, h->method_len, buf, end);
    CHECK(h->method_len > 0);
    for (size_t i = 0; i < h->method_len; i++) CHECK(is_tchar((uint8_t)h->method[i]));
    check_slice(h->target, h->target_len, buf, end);
    CHECK(h->target_len > 0);
    for (size_t i = 0; i < h->target_len; i++) {
        uint8_t c = (uint8_t)h->target[i];
        CHECK(c > 0x20 && c != 0x7f && c != '#');
    }
    CHECK(h->target == h->method + h->method_len + 1);
    const char *tend = h->target + h->target_len;
    switch (h->form) {
    case SQ_HTTP_ORIGIN_FORM:
        CHECK(h->path == h->target && h->path[0] == '/');
        break;
    case SQ_HTTP_ABSOLUTE_FORM:
        CHECK(h->host && h->host_len > 0);
        check_slice(h->host, h->host_len, h->target, tend);
        if (!(h->path_len == 1 && h->path[0] == '/' && (h->path < buf || h->path >= end)))
            check_slice(h->path, h->path_len, h->target, tend);
        CHECK(h->path_len > 0 && h->path[0] == '/');
        break;
    case SQ_HTTP_AUTHORITY_FORM:
        CHECK(h->method_len == 7 && memcmp(h->method, "CONNECT", 7) == 0);
        CHECK(h->path_len == 0 && !h->query);
        break;
    case SQ_HTTP_ASTERISK_FORM:
        CHECK(h->method_len == 7 && memcmp(h->method, "OPTIONS", 7) == 0);
        CHECK(h->target_len == 1 && h->path == h->target && h->path_len == 1 && !h->query);
        break;
    default:
        abort();
    }
    if (h->form == SQ_HTTP_ORIGIN_FORM || h->form == SQ_HTTP_ABSOLUTE_FORM) {
        if (h->path >= buf && h->path < end) CHECK(!memchr(h->path, '?', h->path_len));
        if (h->query) {
            check_slice(h->query, h->query_len, h->target, tend);
            CHECK(h->query[-1] == '?' && h->query + h->query_len == tend);
        } else {
            CHECK(!memchr(h->target, '?', h->target_len));
        }
    }
    if (h->host) check_slice(h->host, h->host_len, buf, end);
    CHECK(h->version_minor == 0 || h->version_minor == 1);
    if (h->version_minor == 1) CHECK(h->host != NULL);
    CHECK(h->nheaders <= max_headers);
    bool has_cl = false, has_te = false, has_upgrade = false;
    for (size_t i = 0; i < h->nheaders; i++) {
        const sq_http_header *f = &h->headers[i];
        check_slice(f->name, f->name_len, h->target, end);
        check_slice(f->value, f->value_len, f->name + f->name_len, end);
        CHECK(f->name_len > 0);
        for (size_t k = 0; k < f->name_len; k++) CHECK(is_tchar((uint8_t)f->name[k]));
        CHECK(f->name[f->name_len] == ':');
        for (size_t k = 0; k < f->value_len; k++) {
            uint8_t c = (uint8_t)f->value[k];
            CHECK((c >= 0x20 && c != 0x7f) || c == '\t');
        }
        if (f->value_len) {
            CHECK(f->value[0] != ' ' && f->value[0] != '\t');
            CHECK(f->value[f->value_len - 1] != ' ' && f->value[f->value_len - 1] != '\t');
        }
        if (i) CHECK(f->name > h->headers[i - 1].value);
        has_cl |= f->name_len == 14 && strncasecmp(f->name, "content-length", 14) == 0;
        has_te |= f->name_len == 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0;
        has_upgrade |= f->name_len == 7 && strncasecmp(f->name, "upgrade", 7) == 0;
    }
    CHECK(has_cl == (h->content_length >= 0));
    CHECK(h->content_length >= -1);
    CHECK(has_te == h->chunked);
    if (h->chunked) CHECK(h->version_minor == 1 && h->content_length == -1);
    if (h->upgrade) CHECK(has_upgrade);
    CHECK(sq_http_find_header(h, "content-length") ? has_cl : !has_cl);
    CHECK(end[-1] == '\n');
    check_layout(buf, end, h);
}

/* Same head, possibly in another copy of the same bytes (pointers compared as offsets). */
static void check_same(const char *a, const sq_http_request_head *x, const char *b,
                       const sq_http_request_head *y)
{
#define SAME_SLICE(f, n)                                                                           \
    CHECK(x->n == y->n && (x->f == NULL) == (y->f == NULL) &&                                      \
          (!x->f || (x->f - a == y->f - b) || (x->n == 1 && *x->f == '/' && *y->f == '/')))
    SAME_SLICE(method, method_len);
    SAME_SLICE(target, target_len);
    SAME_SLICE(path, path_len);
    SAME_SLICE(query, query_len);
    SAME_SLICE(host, host_len);
    CHECK(x->form == y->form && x->version_minor == y->version_minor);
    CHECK(x->nheaders == y->nheaders);
    for (size_t i = 0; i < x->nheaders; i++) {
        CHECK(x->headers[i].name - a == y->headers[i].name - b);
        CHECK(x->headers[i].name_len == y->headers[i].name_len);
        CHECK(x->headers[i].value - a == y->headers[i].value - b);
        CHECK(x->headers[i].value_len == y->headers[i].value_len);
    }
    CHECK(x->content_length == y->content_length && x->chunked == y->chunked);
    CHECK(x->keep_alive == y->keep_alive && x->expect_continue == y->expect_continue);
    CHECK(x->upgrade == y->upgrade);
}

static char *copy(const uint8_t *p, size_t n)
{
    char *b = malloc(n ? n : 1);
    if (n) memcpy(b, p, n);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t split = data[0], lb = data[1];
    data += 2;
    size -= 2;
    sq_http_limits lim = {0, 0};
    size_t max_headers = MAX_HEADERS;
    if (lb & 0x80) {
        lim.max_request_line = 4 + (lb & 0x0f) * 6;
        lim.max_header_size = 8 + ((lb >> 4) & 0x07) * 24;
        max_headers = lb & 0x07;
    }
    static sq_http_header h1[MAX_HEADERS], h2[MAX_HEADERS], h3[MAX_HEADERS];
    sq_http_request_head o1, o2, o3;

    /* One shot. */
    char *buf = copy(data, size);
    int r1 = sq_http_parse_request(buf, size, 0, &o1, h1, max_headers, &lim);
    CHECK(r1 >= 0 || r1 == -400 || r1 == -414 || r1 == -431 || r1 == -501 || r1 == -505);
    CHECK(r1 <= (int)size);
    if (r1 > 0) {
        check_head(buf, r1, &o1, max_headers);
        /* The head alone parses the same. */
        char *head = copy(data, (size_t)r1);
        CHECK(sq_http_parse_request(head, (size_t)r1, 0, &o2, h2, max_headers, &lim) == r1);
        check_same(buf, &o1, head, &o2);
        free(head);
    }

    /* Two calls, the first on an exact-size copy of the prefix. */
    size_t k = size * split / 255;
    char *pre = copy(data, k);
    int ra = sq_http_parse_request(pre, k, 0, &o2, h2, max_headers, &lim);
    if (ra != 0) {
        CHECK(ra == r1);
        if (r1 > 0) check_same(buf, &o1, pre, &o2);
    } else {
        int rb = sq_http_parse_request(buf, size, k, &o2, h2, max_headers, &lim);
        CHECK(rb == r1);
        if (r1 > 0) check_same(buf, &o1, buf, &o2);
    }
    free(pre);

    /* One byte at a time (the input length is bounded by -max_len anyway). */
    if (size <= 4096) {
        int r = 0;
        for (size_t i = 1; i <= size && r == 0; i++)
            r = sq_http_parse_request(buf, i, i - 1, &o3, h3, max_headers, &lim);
        CHECK(r == r1);
        if (r1 > 0) check_same(buf, &o1, buf, &o3);
    }
    free(buf);
    return 0;
}
