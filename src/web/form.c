/* Percent-encoding, the argument multimap and query strings / url-encoded bodies
 * (Tornado's parse_qs_bytes with keep_blank_values=True, but a malformed escape is an
 * error instead of being kept as-is). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httputil_internal.h"

/* --- small helpers shared by the web files ------------------------------------------------ */

int sq__hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool sq__is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

sq_form_limits sq__form_limits(const sq_form_limits *l)
{
    sq_form_limits r = {SQ__FORM_MAX_ARGS, SQ__FORM_MAX_PART, SQ__FORM_MAX_HEADER};
    if (l) {
        if (l->max_args) r.max_args = l->max_args;
        if (l->max_part_size) r.max_part_size = l->max_part_size;
        if (l->max_header_size) r.max_header_size = l->max_header_size;
    }
    return r;
}

/* --- percent-encoding ---------------------------------------------------------------------- */

/* strict: -EINVAL for a '%' not followed by two hex digits; else it stays as it is (Python's
 * unquote, which Tornado parses query strings and forms with). */
static ssize_t url_unescape(char *dst, const char *src, size_t len, bool plus_as_space, bool strict)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        int hi = -1, lo = -1;
        if (c == '%' && len - i >= 3) {
            hi = sq__hexval((unsigned char)src[i + 1]);
            lo = sq__hexval((unsigned char)src[i + 2]);
        }
        if (c == '%' && (hi < 0 || lo < 0)) {
            if (strict) return -EINVAL;
            dst[o++] = '%';
        } else if (c == '%') {
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = (char)c;
        }
    }
    return (ssize_t)o;
}

ssize_t sq_url_unescape(char *dst, const char *src, size_t len, bool plus_as_space)
{
    return url_unescape(dst, src, len, plus_as_space, true);
}

static bool is_unreserved(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static size_t url_escape(char *dst, size_t dstlen, const char *src, size_t len, bool plus_for_space,
                         bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char enc[3];
        size_t k;
        if (is_unreserved(c) || (c == '/' && keep_slash)) {
            enc[0] = (char)c;
            k = 1;
        } else if (c == ' ' && plus_for_space) {
            enc[0] = '+';
            k = 1;
        } else {
            enc[0] = '%';
            enc[1] = hex[c >> 4];
            enc[2] = hex[c & 15];
            k = 3;
        }
        for (size_t j = 0; j < k; j++, n++)
            if (n + 1 < dstlen) dst[n] = enc[j];
    }
    if (dstlen) dst[n < dstlen ? n : dstlen - 1] = '\0';
    return n;
}

size_t sq_url_escape(char *dst, size_t dstlen, const char *src, size_t len, bool plus_for_space)
{
    return url_escape(dst, dstlen, src, len, plus_for_space, false);
}

size_t sq__url_escape_path(char *dst, size_t dstlen, const char *src, size_t len)
{
    return url_escape(dst, dstlen, src, len, false, true);
}

/* --- the argument multimap ------------------------------------------------------------------ */

void sq_args_init(sq_args *a)
{
    a->items = NULL;
    a->len = a->cap = 0;
}

/* Each argument is one allocation: name NUL value NUL [filename NUL] [content_type NUL]. */
static void arg_free(sq_arg *it)
{
    free(it->name);
}

void sq__args_truncate(sq_args *a, size_t len)
{
    while (a->len > len) arg_free(&a->items[--a->len]);
}

void sq_args_free(sq_args *a)
{
    if (!a->items) { /* never added to (most requests' query, body and cookie arguments) */
        a->len = a->cap = 0;
        return;
    }
    sq__args_truncate(a, 0);
    free(a->items);
    sq_args_init(a);
}

int sq__args_add_full(sq_args *a, const char *name, size_t name_len, const char *value,
                      size_t value_len, const char *filename, size_t filename_len,
                      const char *content_type, size_t content_type_len)
{
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        sq_arg *items = realloc(a->items, cap * sizeof *items);
        if (!items) return -ENOMEM;
        a->items = items;
        a->cap = cap;
    }
    size_t total = name_len + 1 + value_len + 1;
    if (filename) total += filename_len + 1;
    if (content_type) total += content_type_len + 1;
    char *p = malloc(total);
    if (!p) return -ENOMEM;
    sq_arg *it = &a->items[a->len];
    memset(it, 0, sizeof *it);
    it->name = p;
    it->name_len = name_len;
    if (name_len) memcpy(p, name, name_len);
    p[name_len] = '\0';
    p += name_len + 1;
    it->value = p;
    it->value_len = value_len;
    if (value_len) memcpy(p, value, value_len);
    p[value_len] = '\0';
    p += value_len + 1;
    if (filename) {
        it->filename = p;
        if (filename_len) memcpy(p, filename, filename_len);
        p[filename_len] = '\0';
        p += filename_len + 1;
    }
    if (content_type) {
        it->content_type = p;
        if (content_type_len) memcpy(p, content_type, content_type_len);
        p[content_type_len] = '\0';
    }
    a->len++;
    return 0;
}

int sq_args_add(sq_args *a, const char *name, size_t name_len, const char *value, size_t value_len)
{
    return sq__args_add_full(a, name, name_len, value, value_len, NULL, 0, NULL, 0);
}

static bool name_is(const sq_arg *it, const char *name, size_t len)
{
    return it->name_len == len && memcmp(it->name, name, len) == 0;
}

const sq_arg *sq_args_get(const sq_args *a, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = a->len; i-- > 0;)
        if (name_is(&a->items[i], name, len)) return &a->items[i];
    return NULL;
}

size_t sq_args_get_all(const sq_args *a, const char *name, const sq_arg **out, size_t max)
{
    size_t len = strlen(name), n = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (!name_is(&a->items[i], name, len)) continue;
        if (n < max) out[n] = &a->items[i];
        n++;
    }
    return n;
}

/* --- query strings --------------------------------------------------------------------------- */

int sq_parse_qs(const char *s, size_t len, sq_args *out, const sq_form_limits *limits)
{
    sq_form_limits lim = sq__form_limits(limits);
    size_t start_len = out->len, added = 0;
    char *buf = NULL;
    int rc = 0;
    size_t i = 0;
    while (i < len) {
        const char *pair = s + i;
        const char *amp = memchr(pair, '&', len - i);
        size_t plen = amp ? (size_t)(amp - pair) : len - i;
        i += plen + 1;
        if (plen == 0) continue;
        if (added == lim.max_args) {
            rc = -E2BIG;
            goto fail;
        }
        const char *eq = memchr(pair, '=', plen);
        size_t nlen = eq ? (size_t)(eq - pair) : plen;
        size_t vlen = eq ? plen - nlen - 1 : 0;
        char *nb = realloc(buf, plen ? plen : 1);
        if (!nb) {
            rc = -ENOMEM;
            goto fail;
        }
        buf = nb;
        /* a malformed escape stays as it is: one stray '%' does not cost the other pairs */
        ssize_t dn = url_unescape(buf, pair, nlen, true, false);
        ssize_t dv = url_unescape(buf + dn, eq ? eq + 1 : pair, vlen, true, false);
        rc = sq_args_add(out, buf, (size_t)dn, buf + dn, (size_t)dv);
        if (rc < 0) goto fail;
        added++;
    }
    free(buf);
    return (int)added;
fail:
    free(buf);
    sq__args_truncate(out, start_len);
    return rc;
}

char *sq_xhtml_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++) n += *p == '&' ? 5 : *p == '<' || *p == '>' ? 4 : *p == '"' ? 6 : *p == '\'' ? 5 : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s; *p; p++) {
        const char *e = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '"' ? "&quot;"
                      : *p == '\'' ? "&#39;" : NULL;
        if (e) {
            size_t k = strlen(e);
            memcpy(o, e, k);
            o += k;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

size_t sq__put_utf8(char *o, unsigned long cp)
{
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)),
               o[2] = (char)(0x80 | (cp & 63)), 3;
    return o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63)),
           o[2] = (char)(0x80 | (cp >> 6 & 63)), o[3] = (char)(0x80 | (cp & 63)), 4;
}

char *sq_xhtml_unescape(const char *s)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    char *out = malloc(strlen(s) + 1), *o = out; /* never longer than the input */
    if (!out) return NULL;
    for (const char *p = s; *p;) {
        /* a reference is short: look for its ';' near the '&' only, not to the end of the
         * string for every '&' (quadratic) */
        const char *semi = *p == '&' ? memchr(p, ';', strnlen(p, 11)) : NULL;
        if (semi) {
            size_t len = (size_t)(semi - p - 1);
            const char *name = p + 1;
            bool done = false;
            for (size_t i = 0; i < sizeof named / sizeof named[0] && !done; i++)
                if (strlen(named[i].name) == len && !strncmp(name, named[i].name, len)) {
                    *o++ = named[i].c;
                    done = true;
                }
            if (!done && len >= 2 && name[0] == '#') {
                bool hex = name[1] == 'x' || name[1] == 'X';
                const char *d = name + 1 + hex;
                char *end = NULL;
                unsigned long cp = 0;
                /* digits only: strtoul would also take blanks and a sign before them */
                if (hex ? sq__hexval((unsigned char)*d) >= 0 : (*d >= '0' && *d <= '9'))
                    cp = strtoul(d, &end, hex ? 16 : 10);
                size_t k = end == semi ? sq__put_utf8(o, cp) : 0;
                if (k) o += k, done = true;
            }
            if (done) {
                p = semi + 1;
                continue;
            }
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

char *sq_url_concat(const char *url, const char *const *args)
{
    size_t n = strlen(url) + 1, count = 0;
    for (; args && args[count]; count++) n += 3 * strlen(args[count]) + 2;
    if (count % 2) return NULL;
    char *out = malloc(n), *o = out;
    if (!out) return NULL;
    size_t ul = strlen(url);
    memcpy(o, url, ul);
    o += ul;
    const char *q = strchr(url, '?');
    char sep = !q ? '?' : (ul && (url[ul - 1] == '?' || url[ul - 1] == '&')) ? 0 : '&';
    for (size_t i = 0; i < count; i += 2) {
        if (sep) *o++ = sep;
        sep = '&';
        o += sq_url_escape(o, n - (size_t)(o - out), args[i], strlen(args[i]), true);
        *o++ = '=';
        o += sq_url_escape(o, n - (size_t)(o - out), args[i + 1], strlen(args[i + 1]), true);
    }
    *o = '\0';
    return out;
}
