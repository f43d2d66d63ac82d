/* Cookies: the Cookie request header (lenient, like browsers), Set-Cookie values (strict:
 * refuse rather than mangle) and signed cookie values (written in Tornado's version 2 format;
 * read in it and in squall's former one). */
#define _GNU_SOURCE /* memmem, memrchr */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "httputil_internal.h"

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* --- the Cookie header ---------------------------------------------------------------------- */

static bool is_octal(char c, char max)
{
    return c >= '0' && c <= max;
}

/* The inside of a quoted value unescaped into dst (room for len bytes) the way Python's
 * http.cookies quoted it and Tornado's parse_cookie (_unquote_cookie) reads it back:
 * "\ooo" (first digit 0-3) is an octal byte, a backslash before any other character but a
 * newline stands for that character, and anything else is kept.  Returns the length. */
static size_t unquote_cookie(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\\' && len - i >= 4 && is_octal(src[i + 1], '3') &&
            is_octal(src[i + 2], '7') && is_octal(src[i + 3], '7')) {
            dst[o++] =
                (char)((src[i + 1] - '0') << 6 | (src[i + 2] - '0') << 3 | (src[i + 3] - '0'));
            i += 3;
        } else if (src[i] == '\\' && len - i >= 2 && src[i + 1] != '\n') {
            dst[o++] = src[++i];
        } else {
            dst[o++] = src[i];
        }
    }
    return o;
}

int sq_parse_cookie_header(const char *s, size_t len, sq_args *out, const sq_form_limits *limits)
{
    sq_form_limits lim = sq__form_limits(limits);
    size_t start_len = out->len, added = 0, i = 0;
    char *buf = NULL; /* an unquoted value */
    int r = 0;
    while (i < len) {
        const char *pair = s + i;
        const char *semi = memchr(pair, ';', len - i);
        size_t plen = semi ? (size_t)(semi - pair) : len - i;
        i += plen + 1;
        const char *eq = memchr(pair, '=', plen);
        if (!eq) continue;
        const char *n = pair, *v = eq + 1;
        size_t nlen = (size_t)(eq - pair), vlen = plen - nlen - 1;
        while (nlen && is_ows(*n)) n++, nlen--;
        while (nlen && is_ows(n[nlen - 1])) nlen--;
        while (vlen && is_ows(*v)) v++, vlen--;
        while (vlen && is_ows(v[vlen - 1])) vlen--;
        bool ok = nlen > 0;
        for (size_t k = 0; k < nlen && ok; k++) ok = sq__is_tchar((unsigned char)n[k]);
        if (!ok) continue;
        if (added == lim.max_args) {
            r = -E2BIG;
            goto fail;
        }
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
            char *nb = realloc(buf, vlen);
            if (!nb) {
                r = -ENOMEM;
                goto fail;
            }
            buf = nb;
            vlen = unquote_cookie(buf, v + 1, vlen - 2);
            v = buf;
        }
        r = sq_args_add(out, n, nlen, v, vlen);
        if (r < 0) goto fail;
        added++;
    }
    free(buf);
    return (int)added;
fail:
    free(buf);
    sq__args_truncate(out, start_len);
    return r;
}

/* --- Set-Cookie ------------------------------------------------------------------------------ */

/* RFC 6265 cookie-octet. */
static bool is_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
           (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static bool all_cookie_octets(const char *s)
{
    for (; *s; s++)
        if (!is_cookie_octet((unsigned char)*s)) return false;
    return true;
}

/* Appends to a snprintf-style buffer. */
typedef struct sbuf {
    char *dst;
    size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, b->len++)
        if (b->len + 1 < b->cap) b->dst[b->len] = s[i];
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

ssize_t sq_format_set_cookie(char *dst, size_t dstlen, const char *name, const char *value,
                             const sq_cookie_options *opts)
{
    static const sq_cookie_options defaults = {0};
    if (!opts) opts = &defaults;
    if (!name || !*name || !value) return -EINVAL;
    for (const char *p = name; *p; p++)
        if (!sq__is_tchar((unsigned char)*p)) return -EINVAL;
    const char *path = opts->path && *opts->path ? opts->path : "/";
    const char *domain = opts->domain && *opts->domain ? opts->domain : NULL;
    if (!all_cookie_octets(value) || !all_cookie_octets(path) ||
        (domain && !all_cookie_octets(domain)))
        return -EINVAL;
    const char *same_site = NULL;
    if (opts->same_site) {
        static const char *const sites[] = {"Strict", "Lax", "None"};
        for (size_t i = 0; i < 3; i++)
            if (strcasecmp(opts->same_site, sites[i]) == 0) same_site = sites[i];
        if (!same_site) return -EINVAL;
    }
    sbuf b = {dst, dst ? dstlen : 0, 0};
    puts_(&b, name);
    puts_(&b, "=");
    puts_(&b, value);
    if (domain) {
        puts_(&b, "; Domain=");
        puts_(&b, domain);
    }
    if (opts->expires) {
        char date[30];
        sq_http_date(date, opts->expires);
        puts_(&b, "; Expires=");
        puts_(&b, date);
    }
    if (opts->max_age) {
        char num[32];
        snprintf(num, sizeof num, "; Max-Age=%ld", opts->max_age > 0 ? opts->max_age : 0L);
        puts_(&b, num);
    }
    puts_(&b, "; Path=");
    puts_(&b, path);
    if (opts->secure) puts_(&b, "; Secure");
    if (opts->http_only) puts_(&b, "; HttpOnly");
    if (same_site) {
        puts_(&b, "; SameSite=");
        puts_(&b, same_site);
    }
    if (b.cap) b.dst[b.len < b.cap ? b.len : b.cap - 1] = '\0';
    return (ssize_t)b.len;
}

/* --- signed values --------------------------------------------------------------------------- */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Strict (canonical) unpadded base64url decoding; dst may be NULL to only validate.
 * Returns the decoded length or -EINVAL. */
static ssize_t b64_decode(char *dst, const char *src, size_t len)
{
    if (len % 4 == 1) return -EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val((unsigned char)src[i]);
        if (v < 0) return -EINVAL;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (dst) dst[o] = (char)(acc >> bits & 0xff);
            o++;
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -EINVAL; /* non-zero padding bits: not the canonical encoding */
    return (ssize_t)o;
}

#define SIG_HEX 64 /* hex of HMAC-SHA256 */

/* Hex HMAC-SHA256(secret, msg) into hex[SIG_HEX]. */
static int hmac_hex(char hex[SIG_HEX], const char *secret, const char *msg, size_t mlen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char *r = HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg,
                            mlen, mac, &maclen);
    if (!r || maclen != SIG_HEX / 2) return -ENOMEM;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < maclen; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    return 0;
}

/* The MAC of squall's former format: hex HMAC-SHA256(secret, name "|" payload) into
 * hex[SIG_HEX]; payload is ["k<version>|"] "b64url|ts". */
static int sign(char hex[SIG_HEX], const char *secret, const char *name, const char *payload,
                size_t plen)
{
    size_t nlen = strlen(name);
    size_t mlen = nlen + 1 + plen;
    char *msg = malloc(mlen ? mlen : 1);
    if (!msg) return -ENOMEM;
    memcpy(msg, name, nlen);
    msg[nlen] = '|';
    memcpy(msg + nlen + 1, payload, plen);
    int r = hmac_hex(hex, secret, msg, mlen);
    free(msg);
    return r;
}

static bool bad_secret_or_name(const char *secret, const char *name)
{
    if (!secret || !*secret || strlen(secret) > INT32_MAX || !name || !*name) return true;
    for (const char *p = name; *p; p++)
        if (!sq__is_tchar((unsigned char)*p)) return true;
    return false;
}

ssize_t sq_sign_cookie_value_kv(char *dst, size_t dstlen, const char *secret, int key_version,
                                const char *name, const char *value, size_t value_len, time_t now)
{
    if (bad_secret_or_name(secret, name) || (!value && value_len) || now <= 0 ||
        value_len > (size_t)INT_MAX / 4 * 3) /* EVP_EncodeBlock's int */
        return -EINVAL;
    /* Tornado's create_signed_value(version=2) writes key_version or 0: a single secret's */
    char kv[16], ts[24];
    int kvlen = snprintf(kv, sizeof kv, "%d", key_version < 0 ? 0 : key_version);
    int tslen = snprintf(ts, sizeof ts, "%lld", (long long)now);
    size_t blen = (value_len + 2) / 3 * 4; /* padded standard base64, as Python's b64encode */
    static const char fields[] = "2|%d:%s|%d:%s|%zu:%s|%zu:"; /* all but the value's bytes */
    int hlen = snprintf(NULL, 0, fields, kvlen, kv, tslen, ts, strlen(name), name, blen);
    if (hlen < 0) return -EINVAL;
    size_t signed_len = (size_t)hlen + blen + 1;
    size_t total = signed_len + SIG_HEX;
    char *buf = malloc(total + 1);
    if (!buf) return -ENOMEM;
    snprintf(buf, total + 1, fields, kvlen, kv, tslen, ts, strlen(name), name, blen);
    EVP_EncodeBlock((unsigned char *)buf + hlen, (const unsigned char *)(value ? value : ""),
                    (int)value_len);
    buf[signed_len - 1] = '|';
    /* the MAC covers every field, the key version too: it cannot be swapped for another */
    int r = hmac_hex(buf + signed_len, secret, buf, signed_len);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[total] = '\0';
    if (dstlen) {
        size_t n = total < dstlen ? total : dstlen - 1;
        memcpy(dst, buf, n);
        dst[n] = '\0';
    }
    free(buf);
    return (ssize_t)total;
}

ssize_t sq_sign_cookie_value(char *dst, size_t dstlen, const char *secret, const char *name,
                             const char *value, size_t value_len, time_t now)
{
    return sq_sign_cookie_value_kv(dst, dstlen, secret, -1, name, value, value_len, now);
}

/* --- reading Tornado's version 2 signed values -------------------------------------------
 * "2|" then four fields, each "<length>:<bytes>|": key version, timestamp, name and value
 * (standard base64), then the hex HMAC-SHA256 of everything before it (create_signed_value).
 * What sq_sign_cookie_value_kv() writes, and what a Tornado app with the same secret does. */

typedef struct tv2 {
    const char *f[4]; /* key version, timestamp, name, value */
    size_t flen[4];
    size_t signed_len; /* the bytes the MAC covers */
} tv2;

static bool parse_tv2(const char *v, size_t len, tv2 *t)
{
    if (len < 2 || memcmp(v, "2|", 2) != 0) return false;
    size_t i = 2;
    for (int k = 0; k < 4; k++) {
        size_t n = 0, d = 0;
        for (; i < len && v[i] >= '0' && v[i] <= '9' && d < 9; i++, d++)
            n = n * 10 + (size_t)(v[i] - '0');
        if (!d || i == len || v[i] != ':' || len - i - 1 < n + 1 || v[i + 1 + n] != '|')
            return false;
        t->f[k] = v + i + 1;
        t->flen[k] = n;
        i += n + 2;
    }
    t->signed_len = i;
    return len - i == SIG_HEX;
}

/* Decimal digits of a field (no sign, no leading zero, at most LLONG_MAX: any time_t the
 * signer takes) or -1. */
static long long tv2_num(const char *s, size_t n)
{
    if (n == 0 || n > 19 || (s[0] == '0' && n > 1)) return -1;
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || x > (LLONG_MAX - (s[i] - '0')) / 10) return -1;
        x = x * 10 + (s[i] - '0');
    }
    return x;
}

/* Padded standard base64 (Python's b64encode) into dst (NULL: measure); length or -EINVAL. */
static ssize_t b64std_decode(char *dst, const char *src, size_t len)
{
    if (len % 4) return -EINVAL;
    size_t pad = len && src[len - 1] == '=' ? 1 + (len > 1 && src[len - 2] == '=') : 0;
    char *tmp = malloc(len + 1);
    if (!tmp) return -ENOMEM;
    for (size_t i = 0; i < len - pad; i++)
        tmp[i] = src[i] == '+'                    ? '-'
                 : src[i] == '/'                  ? '_'
                 : src[i] == '-' || src[i] == '_' ? '!'
                                                  : src[i];
    ssize_t n = b64_decode(dst, tmp, len - pad);
    free(tmp);
    return n;
}

/* --- reading squall's former format: ["k<version>|"] base64url "|" ts "|" hex HMAC-SHA256
 * over name "|" and the rest; signed before squall wrote Tornado's and valid until they expire */

/* The "k<digits>|" field of a versioned value: its version, or -1 when the value has none
 * (b64 never holds '|', so an unversioned "b64|ts|sig" has exactly two bars). */
static int parse_key_version(const char *v, size_t len, size_t *skip)
{
    *skip = 0;
    const char *bar = memchr(v, '|', len);
    if (!bar || !memchr(bar + 1, '|', len - (size_t)(bar - v) - 1)) return -1;
    const char *third = len > SIG_HEX + 1 ? memrchr(v, '|', len - SIG_HEX - 1) : NULL;
    if (!third || third == bar) return -1; /* only "b64|ts": no version field */
    size_t n = (size_t)(bar - v);
    if (n < 2 || n > 10 || v[0] != 'k' || (v[1] == '0' && n > 2)) return -2;
    long long k = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -2;
        k = k * 10 + (v[i] - '0');
    }
    if (k > INT_MAX) return -2;
    *skip = n + 1;
    return (int)k;
}

int sq_cookie_value_key_version(const char *signed_value, size_t len)
{
    size_t skip;
    tv2 t;
    if (!signed_value) return -1;
    if (parse_tv2(signed_value, len, &t)) {
        long long v = tv2_num(t.f[0], t.flen[0]);
        return v < 0 || v > INT_MAX ? -1 : (int)v;
    }
    int k = parse_key_version(signed_value, len, &skip);
    return k < 0 ? -1 : k;
}

/* The end of a verification, once the MAC matched (either format): the age (max_age_days;
 * <= 0: 31), then the value decoded into dst. */
static ssize_t verified_value(char *dst, size_t dstlen, double t, time_t now, double max_age_days,
                              ssize_t (*decode)(char *, const char *, size_t), const char *enc,
                              size_t elen)
{
    ssize_t vlen = decode(NULL, enc, elen);
    if (vlen < 0) return vlen == -ENOMEM ? -ENOMEM : -EINVAL;
    if (!(max_age_days > 0)) max_age_days = 31;
    double age = (double)now - t;
    if (age > max_age_days * 86400.0 || age < -86400.0) return -ETIMEDOUT;
    if ((size_t)vlen >= dstlen) return -E2BIG;
    decode(dst, enc, elen);
    dst[vlen] = '\0';
    return vlen;
}

ssize_t sq_verify_cookie_value(char *dst, size_t dstlen, const char *secret, const char *name,
                               const char *signed_value, size_t len, double max_age_days,
                               time_t now)
{
    if (bad_secret_or_name(secret, name) || (!signed_value && len)) return -EINVAL;
    tv2 tv;
    if (parse_tv2(signed_value, len, &tv)) { /* a value Tornado signed */
        char want[SIG_HEX];
        int r = hmac_hex(want, secret, signed_value, tv.signed_len);
        if (r < 0) return r;
        if (CRYPTO_memcmp(want, signed_value + tv.signed_len, SIG_HEX) != 0) return -EINVAL;
        long long t = tv2_num(tv.f[1], tv.flen[1]);
        if (tv.flen[2] != strlen(name) || memcmp(tv.f[2], name, tv.flen[2]) || t <= 0)
            return -EINVAL;
        return verified_value(dst, dstlen, (double)t, now, max_age_days, b64std_decode, tv.f[3],
                              tv.flen[3]);
    }
    /* b64 "|" ts "|" sig: the last two fields have fixed forms, so split from the right */
    if (len < SIG_HEX + 3 || signed_value[len - SIG_HEX - 1] != '|') return -EINVAL;
    size_t plen = len - SIG_HEX - 1; /* ["k<version>|"] "b64|ts" */
    size_t skip;
    if (parse_key_version(signed_value, len, &skip) == -2) return -EINVAL;
    const char *bar = memrchr(signed_value, '|', plen);
    if (!bar || (size_t)(bar - signed_value) < skip) return -EINVAL;
    const char *b64 = signed_value + skip;
    size_t blen = (size_t)(bar - b64);
    const char *ts = bar + 1;
    size_t tslen = plen - skip - blen - 1;
    if (tslen == 0 || tslen > 19 || ts[0] == '0') return -EINVAL;
    unsigned long long t = 0; /* 19 digits cannot overflow it */
    for (size_t i = 0; i < tslen; i++) {
        if (ts[i] < '0' || ts[i] > '9') return -EINVAL;
        t = t * 10 + (unsigned)(ts[i] - '0');
    }
    char want[SIG_HEX];
    int r = sign(want, secret, name, signed_value, plen);
    if (r < 0) return r;
    if (CRYPTO_memcmp(want, signed_value + plen + 1, SIG_HEX) != 0) return -EINVAL;
    return verified_value(dst, dstlen, (double)t, now, max_age_days, b64_decode, b64, blen);
}
