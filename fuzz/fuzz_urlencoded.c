/* libFuzzer target: query strings / url-encoded bodies and percent-decoding.
 *
 * Input layout: [flags] [bytes].  flags bit 0 picks tiny limits (max_args 4), the other bits a
 * small buffer size for the escape truncation check.  sq_parse_qs is checked against a
 * straightforward reference decoder (same pairs, a malformed escape kept as it is, rollback
 * past max_args);
 * sq_url_unescape must never grow its input, must agree in place and out of place, and
 * sq_url_escape output must decode back to its input and truncate like snprintf. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "squall/httputil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reference decoder of a query string's names and values: a bad escape stays as it is. */
static void ref_decode(const char *s, size_t len, char *out, size_t *olen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int a = -1, b = -1;
        if (s[i] == '%' && len - i >= 3)
            a = hexval((unsigned char)s[i + 1]), b = hexval((unsigned char)s[i + 2]);
        if (s[i] == '%' && a >= 0 && b >= 0) {
            out[o++] = (char)(a * 16 + b);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    *olen = o;
}

static void check_qs(const char *s, size_t len, bool tiny)
{
    sq_form_limits lim = {.max_args = tiny ? 4 : 0};
    sq_args a;
    sq_args_init(&a);
    int r = sq_parse_qs(s, len, &a, &lim);
    /* the reference */
    size_t nseg = 0, k = 0;
    char *buf = malloc(len + 1);
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '&') continue;
        const char *seg = s + k;
        size_t slen = i - k;
        k = i + 1;
        if (!slen) continue;
        const char *eq = memchr(seg, '=', slen);
        size_t nlen = eq ? (size_t)(eq - seg) : slen, dn, dv;
        ref_decode(seg, nlen, buf, &dn);
        ref_decode(eq ? eq + 1 : seg, eq ? slen - nlen - 1 : 0, buf + dn, &dv);
        size_t limit = tiny ? 4 : 1000;
        if (nseg < limit && r >= 0) {
            CHECK(nseg < a.len);
            const sq_arg *it = &a.items[nseg];
            CHECK(it->name_len == dn && memcmp(it->name, buf, dn) == 0 && it->name[dn] == 0);
            CHECK(it->value_len == dv && memcmp(it->value, buf + dn, dv) == 0 &&
                  it->value[dv] == 0);
            CHECK(dn + dv <= slen);
        }
        nseg++;
    }
    free(buf);
    size_t limit = tiny ? 4 : 1000;
    if (nseg > limit)
        CHECK(r == -E2BIG && a.len == 0);
    else
        CHECK((size_t)r == nseg && a.len == nseg);
    sq_args_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16) return 0;
    uint8_t flags = data[0];
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    check_qs(s, len, flags & 1);

    char *d1 = malloc(len + 1), *d2 = malloc(len + 1), *enc = malloc(3 * len + 1),
         *dec = malloc(3 * len + 1);
    for (int plus = 0; plus < 2; plus++) {
        ssize_t r = sq_url_unescape(d1, s, len, plus);
        memcpy(d2, s, len);
        CHECK(sq_url_unescape(d2, d2, len, plus) == r);
        CHECK(r == -EINVAL || (r >= 0 && (size_t)r <= len));
        if (r >= 0) {
            CHECK(memcmp(d1, d2, (size_t)r) == 0);
            /* escape(decoded) decodes back */
            size_t n = sq_url_escape(enc, 3 * len + 1, d1, (size_t)r, plus);
            CHECK(n <= 3 * (size_t)r && strlen(enc) == n);
            CHECK(sq_url_unescape(dec, enc, n, plus) == r && memcmp(dec, d1, (size_t)r) == 0);
        }
        /* escape(input) decodes back to the input; truncation is a NUL-terminated prefix */
        size_t n = sq_url_escape(enc, 3 * len + 1, s, len, plus);
        CHECK(n <= 3 * len && n >= len && strlen(enc) == n);
        for (size_t i = 0; i < n; i++) CHECK(enc[i] != '&' && enc[i] != '=' && enc[i] != ' ');
        CHECK(sq_url_unescape(dec, enc, n, plus) == (ssize_t)len && memcmp(dec, s, len) == 0);
        size_t small = (size_t)(flags >> 1) % 16;
        char tbuf[16];
        memset(tbuf, 'X', sizeof tbuf);
        CHECK(sq_url_escape(small ? tbuf : NULL, small, s, len, plus) == n);
        if (small) {
            size_t w = n < small - 1 ? n : small - 1;
            CHECK(memcmp(tbuf, enc, w) == 0 && tbuf[w] == 0);
        }
        /* an escaped string parses as one pair (the '=' is added by us) */
        if (len && len < 4096) {
            char *q = malloc(n + 3);
            q[0] = 'k';
            q[1] = '=';
            memcpy(q + 2, enc, n);
            if (plus) {
                sq_args a;
                sq_args_init(&a);
                CHECK(sq_parse_qs(q, n + 2, &a, NULL) == 1);
                CHECK(a.items[0].value_len == len && memcmp(a.items[0].value, s, len) == 0);
                sq_args_free(&a);
            }
            free(q);
        }
    }
    free(d1);
    free(d2);
    free(enc);
    free(dec);
    return 0;
}
