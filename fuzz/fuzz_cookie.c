/* libFuzzer target: Cookie headers, signed cookie values, Set-Cookie formatting, HTTP dates.
 *
 * Input layout: [flags] [bytes].  The bytes are parsed as a Cookie header (flags bit 0: tiny
 * limits): every cookie has a token name that is a slice of the input, and a value that is
 * one too, or the unquoting of one in double quotes (no longer, and holding a ';' only if
 * the input has a backslash: \073).
 * They are verified as a signed value: never accepted unless they are exactly a value we
 * signed.  They are used as (pos, byte) edits of a signed value: the result verifies only if
 * it is the original.  They are formatted as a Set-Cookie value, domain and path: accepted
 * only without CTLs, and the output never holds a CTL.  They are parsed as an HTTP date: a
 * date that parses formats and parses back to the same time. */
#define _GNU_SOURCE /* memmem */
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

#define SECRET "fuzz secret"
#define NOW    ((time_t)1700000000)
#define VALUE  "hello|world"
/* VALUE signed at NOW in squall's former format (corpus "signed"), which still verifies */
#define OLD_GOOD                                                                                   \
    "aGVsbG98d29ybGQ|1700000000|a0d3c27d8e18955531dc7ce09118bf74072a95d0cd2dbaa336eccd296104ccb1"

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_cookie_header(const char *s, size_t len, bool tiny)
{
    sq_form_limits lim = {.max_args = tiny ? 2 : 0};
    sq_args a;
    sq_args_init(&a);
    int r = sq_parse_cookie_header(s, len, &a, &lim);
    CHECK(r >= 0 || r == -E2BIG);
    if (r < 0) {
        CHECK(a.len == 0);
    } else {
        CHECK((size_t)r == a.len && a.len <= (tiny ? 2 : 1000));
        for (size_t i = 0; i < a.len; i++) {
            const sq_arg *it = &a.items[i];
            CHECK(it->name_len > 0 && it->name[it->name_len] == 0);
            for (size_t k = 0; k < it->name_len; k++) CHECK(is_tchar((unsigned char)it->name[k]));
            CHECK(memmem(s, len, it->name, it->name_len));
            CHECK(it->value[it->value_len] == 0);
            /* an unquoted value is shorter than the quoted one it came from */
            bool quoted = memchr(s, '"', len) != NULL, escaped = memchr(s, '\\', len) != NULL;
            CHECK(!it->value_len || memmem(s, len, it->value, it->value_len) || quoted);
            CHECK(it->value_len + (quoted ? 2 : 0) <= len);
            CHECK(!memchr(it->value, ';', it->value_len) || escaped);
        }
    }
    sq_args_free(&a);
}

static void check_signed(const char *s, size_t len)
{
    static char good[256];
    static ssize_t glen;
    if (!glen)
        glen = sq_sign_cookie_value(good, sizeof good, SECRET, "n", VALUE, strlen(VALUE), NOW);
    CHECK(glen > 0 && (size_t)glen < sizeof good);
    char v[256];
    /* the input itself */
    ssize_t r = sq_verify_cookie_value(v, sizeof v, SECRET, "n", s, len, 0, NOW);
    CHECK(r == -EINVAL || r == -E2BIG || r == -ETIMEDOUT || r >= 0);
    if (r >= 0 || r == -ETIMEDOUT || r == -E2BIG)
        CHECK((len == (size_t)glen && memcmp(s, good, len) == 0) ||
              (len == strlen(OLD_GOOD) && memcmp(s, OLD_GOOD, len) == 0));
    /* edits of a signed value: (pos, byte) pairs, then maybe a new length */
    char t[256];
    memcpy(t, good, (size_t)glen);
    size_t tlen = (size_t)glen;
    for (size_t i = 0; i + 1 < len; i += 2) {
        if ((unsigned char)s[i] == 0xff) { /* a length change */
            tlen = (unsigned char)s[i + 1] % (sizeof t);
            if (tlen > (size_t)glen) memset(t + glen, 'a', tlen - (size_t)glen);
            continue;
        }
        if (tlen) t[(unsigned char)s[i] % tlen] = s[i + 1];
    }
    r = sq_verify_cookie_value(v, sizeof v, SECRET, "n", t, tlen, 0, NOW);
    if (r >= 0) {
        CHECK(tlen == (size_t)glen && memcmp(t, good, tlen) == 0);
        CHECK((size_t)r == strlen(VALUE) && memcmp(v, VALUE, (size_t)r) == 0);
    } else {
        CHECK(r == -EINVAL);
    }
    /* a different name or secret never verifies */
    CHECK(sq_verify_cookie_value(v, sizeof v, SECRET, "m", good, (size_t)glen, 0, NOW) == -EINVAL);
    CHECK(sq_verify_cookie_value(v, sizeof v, "other", "n", good, (size_t)glen, 0, NOW) == -EINVAL);

    /* key versions: the input's claimed version is parsed safely, and a versioned value
     * verifies only as itself (the version is under the MAC) */
    int kv = sq_cookie_value_key_version(s, len);
    CHECK(kv >= -1);
    static char kgood[256];
    static ssize_t klen;
    if (!klen)
        klen = sq_sign_cookie_value_kv(kgood, sizeof kgood, SECRET, 7, "n", VALUE, strlen(VALUE), NOW);
    CHECK(klen > 0 && sq_cookie_value_key_version(kgood, (size_t)klen) == 7);
    r = sq_verify_cookie_value(v, sizeof v, SECRET, "n", s, len, 0, NOW);
    if (r >= 0 && len == (size_t)klen) CHECK(memcmp(s, kgood, len) == 0 || memcmp(s, good, len) == 0);
    CHECK(sq_verify_cookie_value(v, sizeof v, SECRET, "n", kgood, (size_t)klen, 0, NOW) ==
          (ssize_t)strlen(VALUE));
}

static void check_set_cookie(const char *s, size_t len)
{
    char *z = malloc(len + 1);
    memcpy(z, s, len);
    z[len] = 0;
    char out[512];
    const sq_cookie_options opts[3] = {
        {0}, {.domain = z, .max_age = -1}, {.path = z, .expires = 1}};
    for (int k = 0; k < 3; k++) {
        ssize_t r = sq_format_set_cookie(out, sizeof out, "n", k ? "v" : z, &opts[k]);
        bool clean = true;
        for (const char *p = z; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\')
                clean = false;
        }
        if (k && !*z) clean = true; /* empty domain/path: the default */
        CHECK((r >= 0) == clean);
        if (r >= 0) {
            size_t w = (size_t)r < sizeof out ? (size_t)r : sizeof out - 1;
            CHECK(strlen(out) == w);
            for (size_t i = 0; i < w; i++)
                CHECK((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f);
        }
    }
    /* the input as a cookie name */
    ssize_t r = sq_format_set_cookie(out, sizeof out, z, "v", NULL);
    if (r >= 0)
        for (const char *p = z; *p; p++) CHECK(is_tchar((unsigned char)*p));
    free(z);
}

static void check_date(const char *s, size_t len)
{
    time_t t;
    if (sq_parse_http_date(s, len, &t) < 0) return;
    char d[30], d2[30];
    sq_http_date(d, t);
    time_t t2;
    CHECK(sq_parse_http_date(d, strlen(d), &t2) == 0 && t2 == t);
    sq_http_date(d2, t2);
    CHECK(strcmp(d, d2) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 14) return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    check_cookie_header(s, len, data[0] & 1);
    check_signed(s, len);
    check_set_cookie(s, len);
    check_date(s, len);
    return 0;
}
