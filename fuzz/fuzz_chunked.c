/* libFuzzer target: the in-place chunked decoder.
 *
 * Input layout: [seed] [body bytes].  The bytes are decoded one-shot, then in pieces whose
 * sizes come from a PRNG seeded by the first byte, then (for short inputs) one byte at a time.
 * Invariants: every way of feeding gives the same verdict, the same decoded body and the same
 * bytes after it; the body is never longer than the input; an error is sticky. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "squall/http_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

typedef struct result {
    ssize_t r; /* -2, -1, or the count of bytes after the body */
    char *body;
    size_t body_len;
    char *rest;
    size_t rest_len;
} result;

static uint32_t next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* pieces == 0: one shot; else pieces of 1..pieces bytes (1: byte by byte). */
static void decode(const uint8_t *in, size_t len, uint32_t seed, size_t pieces, result *res)
{
    sq_http_chunked d;
    sq_http_chunked_init(&d);
    res->body = malloc(len + 1);
    res->rest = malloc(len + 1);
    res->body_len = res->rest_len = 0;
    res->r = -2;
    size_t off = 0;
    while (off < len) {
        size_t k = len - off;
        if (pieces == 1)
            k = 1;
        else if (pieces && k > 1)
            k = 1 + next(&seed) % (k < pieces ? k : pieces);
        char *buf = malloc(k);
        memcpy(buf, in + off, k);
        size_t n = k;
        ssize_t r = sq_http_chunked_decode(&d, buf, &n);
        CHECK(n <= k);
        CHECK(r == -2 || r == -1 || (r >= 0 && n + (size_t)r <= k));
        memcpy(res->body + res->body_len, buf, n);
        res->body_len += n;
        off += k;
        if (r >= 0) {
            memcpy(res->rest, buf + n, (size_t)r);
            memcpy(res->rest + r, in + off, len - off);
            res->rest_len = (size_t)r + len - off;
        }
        free(buf);
        res->r = r;
        if (r == -1) {
            /* sticky */
            char again[] = "0\r\n\r\n";
            size_t m = 5;
            CHECK(sq_http_chunked_decode(&d, again, &m) == -1);
        }
        if (r != -2) break;
    }
    if (res->r >= 0) res->r = (ssize_t)res->rest_len;
}

/* ---- a reference: the whole input at once, written straight from the grammar ---- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool vchar(uint8_t c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

#define SIZE_LINE_MAX 4096
#define TRAILERS_MAX  65536

/* Parses one size line at *pp; 1 done, -2 more input needed, -1 malformed. */
static int size_line(const uint8_t *in, size_t len, size_t *pp, uint64_t *size)
{
    size_t p = *pp, start = p;
    int digits = 0;
    *size = 0;
    while (p < len && hexval(in[p]) >= 0) {
        if (++digits > 16) return -1;
        *size = *size * 16 + (uint64_t)hexval(in[p++]);
    }
    if (p == len) return -2;
    if (digits == 0) return -1;
    if (in[p] == ' ' || in[p] == '\t' || in[p] == ';') {
        while (p < len && (in[p] == ' ' || in[p] == '\t')) p++;
        if (p < len && in[p] != ';') return -1;
        while (p < len && in[p] != '\r' && in[p] != '\n') {
            if (!vchar(in[p])) return -1;
            if (++p - start > SIZE_LINE_MAX) return -1;
        }
    }
    if (p < len && in[p] == '\r') {
        p++;
        if (p < len && in[p] != '\n') return -1;
    }
    /* the line, CR LF included, may hold SIZE_LINE_MAX bytes */
    if (p == len) return p - start > SIZE_LINE_MAX ? -1 : -2;
    if (in[p] != '\n' || p - start >= SIZE_LINE_MAX) return -1;
    *pp = p + 1;
    return 1;
}

static ssize_t reference(const uint8_t *in, size_t len, char *body, size_t *blen)
{
    size_t p = 0;
    *blen = 0;
    for (;;) {
        uint64_t size;
        int r = size_line(in, len, &p, &size);
        if (r != 1) return r;
        if (size == 0) break;
        if (len - p < size) {
            memcpy(body + *blen, in + p, len - p);
            *blen += len - p;
            return -2;
        }
        memcpy(body + *blen, in + p, (size_t)size);
        *blen += (size_t)size;
        p += (size_t)size;
        if (p == len) return -2;
        if (in[p++] != '\r') return -1;
        if (p == len) return -2;
        if (in[p++] != '\n') return -1;
    }
    /* trailer-section CRLF, counted from here */
    size_t t = p;
    for (;;) {
#define TR_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (p - t > TRAILERS_MAX) return -1;                                                       \
        if (cond) return p == len ? -2 : -1;                                                       \
    } while (0)
        TR_CHECK(p == len);
        if (in[p] == '\n' || in[p] == '\r') {
            if (in[p] == '\r') {
                p++;
                TR_CHECK(p == len || in[p] != '\n');
            }
            p++;
            TR_CHECK(false);
            return (ssize_t)(len - p);
        }
        size_t name = p;
        while (p < len && tchar(in[p])) p++;
        TR_CHECK(p == len || in[p] != ':' || p == name);
        p++;
        while (p < len && vchar(in[p])) p++;
        if (p < len && in[p] == '\r') p++;
        TR_CHECK(p == len || in[p] != '\n');
        p++;
        TR_CHECK(false);
    }
}

static void same(const result *a, const result *b)
{
    CHECK(a->r == b->r);
    if (a->r == -1) return; /* how much body came out before the error is not specified */
    CHECK(a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0);
    CHECK(a->rest_len == b->rest_len && memcmp(a->rest, b->rest, a->rest_len) == 0);
}

static void drop(result *r)
{
    free(r->body);
    free(r->rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t seed = data[0] * 2654435761u | 1;
    data++;
    size--;
    result one, pieces, bytes;
    decode(data, size, seed, 0, &one);
    CHECK(one.body_len <= size);
    /* The reference agrees. */
    char *ref = malloc(size + 1);
    size_t ref_len;
    ssize_t rr = reference(data, size, ref, &ref_len);
    CHECK(rr == one.r);
    if (rr != -1) CHECK(ref_len == one.body_len && memcmp(ref, one.body, ref_len) == 0);
    free(ref);
    decode(data, size, seed, 1 + (size ? data[0] : 0) % 16u, &pieces);
    same(&one, &pieces);
    if (size <= 8192) {
        decode(data, size, seed, 1, &bytes);
        same(&one, &bytes);
        drop(&bytes);
    }
    drop(&one);
    drop(&pieces);
    return 0;
}
