/* libFuzzer target: multipart/form-data bodies (and the Content-Type boundary parameter).
 *
 * Input layout: [k] [flags] [boundary: 1 + k % 16 bytes] [body].  Boundary bytes that are
 * not RFC 2046 bchars are mapped onto letters; flags bit 0 picks tiny limits.  Checks: the
 * verdict is a count or -EINVAL/-E2BIG with nothing left appended; every part respects the
 * limits, has a non-empty NUL-terminated name and a value that is a slice of the body, and
 * no content type holds a control byte; a body re-serialized from the parts parses to the
 * same parts; the boundary extracted from "multipart/form-data; boundary=<b>" is <b>. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squall/httputil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static bool is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=?", c) != NULL); /* (no space: it may not end one) */
}

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2;
        o->p = realloc(o->p, o->cap);
        CHECK(o->p);
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_quoted(out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') put(o, "\\", 1);
        put(o, s + i, 1);
    }
    put(o, "\"", 1);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Re-serializes the parts and checks they parse back the same. */
static void round_trip(const sq_args *a, const char *b, size_t blen)
{
    char pat[80] = "\r\n--";
    memcpy(pat + 4, b, blen);
    out o = {0};
    for (size_t i = 0; i < a->len; i++) {
        const sq_arg *it = &a->items[i];
        if (memmem(it->value, it->value_len, pat, blen + 4) || memchr(it->name, 0, it->name_len))
            goto out; /* cannot be written as is */
        puts_(&o, "--");
        put(&o, b, blen);
        puts_(&o, "\r\nContent-Disposition: form-data; name=");
        put_quoted(&o, it->name, it->name_len);
        if (it->filename) {
            size_t fl = strlen(it->filename);
            char *enc = malloc(3 * fl + 1);
            size_t n = sq_url_escape(enc, 3 * fl + 1, it->filename, fl, false);
            puts_(&o, "; filename*=UTF-8''");
            put(&o, enc, n);
            free(enc);
        }
        puts_(&o, "\r\n");
        if (it->content_type) {
            puts_(&o, "Content-Type: ");
            puts_(&o, it->content_type);
            puts_(&o, "\r\n");
        }
        puts_(&o, "\r\n");
        put(&o, it->value, it->value_len);
        puts_(&o, "\r\n");
    }
    puts_(&o, "--");
    put(&o, b, blen);
    puts_(&o, "--");
    sq_form_limits big = {.max_header_size = 1 << 20};
    sq_args a2;
    sq_args_init(&a2);
    int r = sq_parse_multipart(o.p, o.len, b, blen, &a2, &big);
    CHECK(r >= 0 && (size_t)r == a->len);
    for (size_t i = 0; i < a->len; i++) {
        const sq_arg *x = &a->items[i], *y = &a2.items[i];
        CHECK(x->name_len == y->name_len && memcmp(x->name, y->name, x->name_len) == 0);
        CHECK(x->value_len == y->value_len && memcmp(x->value, y->value, x->value_len) == 0);
        CHECK(same_str(x->filename, y->filename));
        CHECK(same_str(x->content_type, y->content_type));
    }
    sq_args_free(&a2);
out:
    free(o.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 1 << 16) return 0;
    size_t blen = 1 + data[0] % 16;
    bool tiny = data[1] & 1;
    if (size - 2 < blen) return 0;
    char b[17];
    for (size_t i = 0; i < blen; i++)
        b[i] = is_bchar(data[2 + i]) ? (char)data[2 + i] : (char)('a' + data[2 + i] % 26);
    const char *body = (const char *)data + 2 + blen;
    size_t len = size - 2 - blen;

    sq_form_limits lim = {0};
    if (tiny) lim = (sq_form_limits){.max_args = 3, .max_part_size = 64, .max_header_size = 64};
    sq_args a;
    sq_args_init(&a);
    int r = sq_parse_multipart(body, len, b, blen, &a, &lim);
    CHECK(r == -EINVAL || r == -E2BIG || r >= 0);
    if (r < 0) {
        CHECK(a.len == 0);
    } else {
        CHECK((size_t)r == a.len && a.len <= (tiny ? 3 : 1000));
        for (size_t i = 0; i < a.len; i++) {
            const sq_arg *it = &a.items[i];
            CHECK(it->name_len > 0 && it->name[it->name_len] == 0);
            CHECK(it->value_len <= (tiny ? 64 : 100u << 20) && it->value[it->value_len] == 0);
            CHECK(!it->value_len || memmem(body, len, it->value, it->value_len));
            if (it->content_type)
                for (const char *p = it->content_type; *p; p++)
                    CHECK((unsigned char)*p >= 0x20 || *p == '\t');
            if (it->content_type && tiny) CHECK(strlen(it->content_type) <= 64);
        }
        round_trip(&a, b, blen);
    }
    sq_args_free(&a);

    /* the boundary parameter, plain and quoted */
    char ct[64];
    const char *got;
    size_t glen;
    int n = snprintf(ct, sizeof ct, "multipart/form-data; boundary=%.*s", (int)blen, b);
    CHECK(sq_multipart_boundary(ct, (size_t)n, &got, &glen) == 0 && glen == blen &&
          memcmp(got, b, blen) == 0);
    n = snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%.*s\"", (int)blen, b);
    CHECK(sq_multipart_boundary(ct, (size_t)n, &got, &glen) == 0 && glen == blen &&
          memcmp(got, b, blen) == 0);
    /* and on the body bytes as a Content-Type: a slice inside them, or an error */
    if (sq_multipart_boundary(body, len, &got, &glen) == 0)
        CHECK(got >= body && got + glen <= body + len && glen >= 1 && glen <= 70);
    return 0;
}
