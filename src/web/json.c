/* JSON output: a jansson value serialized into a buffer (sq_write_json), and JSON written
 * straight from a json_pack() format and its arguments without building a tree first
 * (sq_write_jsonf, sq_json_format).
 *
 * Both produce exactly what jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) would: the
 * same escapes (\" \\ \b \f \n \r \t, \u00XX for other control bytes, nothing else, '/' and
 * DEL as they are), UTF-8 checked as jansson checks it, reals formatted by jansson itself;
 * but for one more escape, Tornado's json_encode's: "</" is written "<\/", so that JSON put
 * in a <script> cannot end it.
 * A handler's json_pack("{s:s}", ...) plus its json_decref cost about 1,800 instructions on
 * the /json benchmark (five malloc/free pairs, the key's hash); the format writer costs the
 * format walk and the copies.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "squall/error.h"
#include "internal.h"
#include "web/web_internal.h"

/* Is s[0..n) printable ASCII without '"', '\\' and '<', bytes that go into JSON as they
 * are ('<' for the "</" escape)?
 * Eight at a time: a word flags a byte below 0x20, from 0x7f up, or equal to '"', '\\' or '<';
 * a flag is set only where such a byte is, or above one (the borrow), so "any" is exact. */
static bool json_plain(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = ones << 7;
#define EQ(x, c) ((((x) ^ (ones * (c))) - ones) & ~((x) ^ (ones * (c))))
#define BAD(x)                                                                                     \
    ((((x)-ones * 0x20) & ~(x)) | (x) | EQ(x, 0x7f) | EQ(x, '"') | EQ(x, '\\') | EQ(x, '<'))
    uint64_t m = 0, x;
    size_t i = 0;
    if (n >= 8) {
        for (; i + 8 <= n; i += 8) {
            memcpy(&x, s + i, 8);
            m |= BAD(x);
        }
        if (i < n) { /* the last eight, overlapping ones already seen */
            memcpy(&x, s + n - 8, 8);
            m |= BAD(x);
        }
        return !(m & highs);
    }
    if (n >= 4) { /* the first four and the last four in one word */
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + n - 4, 4);
        x = lo | (uint64_t)hi << 32;
        return !(BAD(x) & highs);
    }
#undef EQ
#undef BAD
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<') return false;
    }
    return true;
}

/* The length of the well-formed UTF-8 sequence at p (n > 0 bytes left, p[0] >= 0x80), or 0:
 * what jansson accepts (no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t k;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        v = c & 0x07;
    } else {
        return 0; /* a continuation byte, 0xc0/0xc1 (overlong ASCII) or 0xf5 and up */
    }
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    if ((k == 3 && v < 0x800) || (k == 4 && v < 0x10000)) return 0; /* overlong */
    return k;
}

/* s[0..n) as a JSON string, quotes included.  0, -EILSEQ (not UTF-8), -ENOMEM. */
static int put_string(sq__buf *b, const char *s, size_t n)
{
    /* room first: an absurd length (a -1 passed for s%) fails here, before any byte is read */
    if (n > SIZE_MAX - 2 || sq__buf_reserve(b, n + 2) < 0) return -ENOMEM;
    if (json_plain(s, n)) {
        char *p = b->ptr + b->len;
        *p++ = '"';
        memcpy(p, s, n);
        p[n] = '"';
        b->len += n + 2;
        return 0;
    }
    /* runs of bytes that go as they are (checked UTF-8 included), then one escape */
    const unsigned char *in = (const unsigned char *)s;
    size_t i = 0, run = 0;
    if (sq__buf_append(b, "\"", 1)) return -ENOMEM;
    while (i < n) {
        unsigned c = in[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(in + i, n - i);
            if (!k) return -EILSEQ;
            i += k;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && !(c == '/' && i && in[i - 1] == '<')) {
            i++;
            continue;
        }
        char esc[6] = {'\\', (char)c};
        size_t el = 2;
        switch (c) {
        case '"':
        case '\\':
        case '/': /* after '<': Tornado's "<\/" */
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default: /* jansson's "\\u%04X" */
            memcpy(esc + 1, "u00", 3);
            esc[4] = "0123456789ABCDEF"[c >> 4];
            esc[5] = "0123456789ABCDEF"[c & 15];
            el = 6;
        }
        if (sq__buf_append(b, s + run, i - run) || sq__buf_append(b, esc, el)) return -ENOMEM;
        run = ++i;
    }
    return sq__buf_append(b, s + run, n - run) || sq__buf_append(b, "\"", 1) ? -ENOMEM : 0;
}

static int put_int(sq__buf *b, json_int_t v)
{
    char num[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char *p = num + sizeof num;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    return sq__buf_append(b, p, (size_t)(num + sizeof num - p));
}

/* A real as jansson writes it (its shortest round-trip form, ".0" on integral values):
 * the linked jansson formats it, so the bytes cannot drift from its version's. */
static int put_real(sq__buf *b, double d)
{
    json_t *r = json_real(d);
    if (!r) return isfinite(d) ? -ENOMEM : -EINVAL;
    char tmp[64];
    size_t n = json_dumpb(r, tmp, sizeof tmp, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(r);
    if (!n || n > sizeof tmp) return -ENOMEM;
    return sq__buf_append(b, tmp, n);
}

/* Compact JSON of a jansson value straight into b.  1: a value this does not write itself
 * (a real, deep nesting, a string jansson would refuse) and b may hold part of it: the
 * caller cuts b back and asks jansson.  Writing it here saves jansson's dump, which costs
 * several thousand instructions even for a one-key object (a loop-detection table keyed by
 * snprintf("%p") per container, a callback per token), as the profile of /json showed. */
static int json_fast(sq__buf *b, json_t *j, int depth)
{
    if (depth > 32) return 1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (sq__buf_append(b, "{", 1)) return -ENOMEM;
        bool first = true;
        /* (the iterator itself: json_object_foreach goes from key to iterator and back,
         * seven calls into jansson per member where four do) */
        for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
            if (!first && sq__buf_append(b, ",", 1)) return -ENOMEM;
            first = false;
            int rc = put_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
            if (!rc) rc = sq__buf_append(b, ":", 1);
            if (!rc) rc = json_fast(b, json_object_iter_value(it), depth + 1);
            if (rc) return rc == -EILSEQ ? 1 : rc;
        }
        return sq__buf_append(b, "}", 1);
    }
    case JSON_ARRAY: {
        if (sq__buf_append(b, "[", 1)) return -ENOMEM;
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n; i++) {
            if (i && sq__buf_append(b, ",", 1)) return -ENOMEM;
            int rc = json_fast(b, json_array_get(j, i), depth + 1);
            if (rc) return rc;
        }
        return sq__buf_append(b, "]", 1);
    }
    case JSON_STRING: {
        int rc = put_string(b, json_string_value(j), json_string_length(j));
        return rc == -EILSEQ ? 1 : rc;
    }
    case JSON_INTEGER:
        return put_int(b, json_integer_value(j));
    case JSON_TRUE:
        return sq__buf_append(b, "true", 4);
    case JSON_FALSE:
        return sq__buf_append(b, "false", 5);
    case JSON_NULL:
        return sq__buf_append(b, "null", 4);
    default:
        return 1; /* reals: jansson's formatting */
    }
}

typedef struct dump_to {
    sq__buf *b;
    bool oom;
} dump_to;

static int dump_out(const char *buf, size_t size, void *data)
{
    dump_to *d = data;
    if (sq__buf_append(d->b, buf, size) == 0) return 0;
    d->oom = true;
    return -1;
}

/* "</" in b[from..) as "<\/" (Tornado's json_encode).  A '<' is only ever inside a string
 * and no escape ends with it, so every "</" is one in a string, where "\/" reads as '/'.
 * For what jansson's dump wrote; put_string writes the escape itself. */
static int escape_script_end(sq__buf *b, size_t from)
{
    size_t n = 0;
    for (size_t i = from + 1; i < b->len; i++) {
        const char *p = memchr(b->ptr + i, '/', b->len - i);
        if (!p) break;
        i = (size_t)(p - b->ptr);
        n += b->ptr[i - 1] == '<';
    }
    if (!n) return 0;
    if (sq__buf_reserve(b, n) < 0) return -ENOMEM;
    /* from the end, each byte moved by the escapes before it (left: the ones not yet written) */
    size_t len = b->len;
    for (size_t i = len, o = len + n, left = n; left;) {
        char c = b->ptr[--i];
        b->ptr[--o] = c;
        if (c == '/' && b->ptr[i - 1] == '<') b->ptr[--o] = '\\', left--;
    }
    b->len = len + n;
    return 0;
}

int sq__json_dump(sq__buf *b, void *json)
{
    size_t before = b->len;
    int rc = json_fast(b, json, 0);
    if (rc > 0) {
        b->len = before;
        dump_to d = {b, false};
        if (json_dump_callback(json, dump_out, &d, JSON_COMPACT | JSON_ENCODE_ANY))
            rc = d.oom ? -ENOMEM : -EINVAL; /* else a string jansson will not write (bad UTF-8) */
        else
            rc = escape_script_end(b, before); /* (put_string escapes what json_fast writes) */
    }
    if (rc) b->len = before;
    return rc;
}

/* --- JSON from a json_pack() format ---------------------------------------------------------- */

enum { JF_DEPTH = 64, JF_KEYS_INLINE = 16 };

typedef struct jf_key {
    size_t off, len; /* an object key as written (escaped, with its quotes) */
} jf_key;

typedef struct jf {
    const char *start, *fmt; /* the format, and the next byte to scan */
    const char *tok;         /* the last token read: where an error is reported */
    va_list *ap;
    sq__buf *b;
    int err;          /* 0, -EINVAL or -ENOMEM: once set, arguments are only taken */
    const char *what; /* the first error */
    size_t where;     /* its offset in the format */
    int depth;
    bool nul_free; /* the last string jf_string read was measured by strlen: no NUL in it */
    jf_key *keys; /* the keys of the objects open, innermost last */
    size_t nkeys, capkeys;
    jf_key keys_inline[JF_KEYS_INLINE];
} jf;

static void jf_fail(jf *s, int err, const char *what)
{
    if (s->err) return;
    s->err = err;
    s->what = what;
    s->where = (size_t)(s->tok - s->start);
}

/* Skip what json_pack skips between tokens: blanks, newlines, ':' and ','. */
static inline char jf_peek(jf *s)
{
    char c;
    while ((c = *s->fmt) <= ':' && (c == ' ' || c == '\t' || c == '\n' || c == ',' || c == ':'))
        s->fmt++;
    return c;
}

static char jf_next(jf *s)
{
    char t = jf_peek(s);
    s->tok = s->fmt;
    if (t) s->fmt++;
    return t;
}

static void jf_emit(jf *s, int rc)
{
    if (rc == -ENOMEM)
        jf_fail(s, -ENOMEM, "out of memory");
    else if (rc)
        jf_fail(s, -EINVAL, "invalid UTF-8");
}

static inline void jf_lit(jf *s, const char *text, size_t n)
{
    if (!s->err && sq__buf_append(s->b, text, n)) jf_fail(s, -ENOMEM, "out of memory");
}

/* A string argument: s, s#, s%, s+... (json_pack's read_string).  1 with *p and *n set (a
 * concatenation is collected in *tmp), 0 for a NULL the caller may accept (`optional`),
 * -1 on a format error. */
static int jf_string(jf *s, bool optional, const char **p, size_t *n, sq__buf *tmp)
{
    char t = jf_peek(s);
    if (t != '#' && t != '%' && t != '+') {
        const char *str = va_arg(*s->ap, const char *);
        if (!str) {
            if (!optional) jf_fail(s, -EINVAL, "NULL string");
            return 0;
        }
        *p = str;
        *n = s->err ? 0 : strlen(str);
        s->nul_free = true;
        return 1;
    }
    s->nul_free = false;
    if (optional) {
        jf_fail(s, -EINVAL, "'#', '%' or '+' on an optional string");
        return -1;
    }
    for (bool first = true;; first = false) {
        const char *str = va_arg(*s->ap, const char *);
        if (!str) jf_fail(s, -EINVAL, "NULL string");
        size_t len = 0;
        t = jf_peek(s);
        if (t == '#') {
            jf_next(s);
            int l = va_arg(*s->ap, int);
            if (l < 0) jf_fail(s, -EINVAL, "negative string length");
            len = l < 0 ? 0 : (size_t)l;
        } else if (t == '%') {
            jf_next(s);
            len = va_arg(*s->ap, size_t);
        } else if (!s->err) {
            len = strlen(str);
        }
        if (jf_peek(s) != '+' && first) { /* one piece: no copy */
            *p = str;
            *n = len;
            return 1;
        }
        if (!s->err && len && sq__buf_append(tmp, str, len) < 0)
            jf_fail(s, -ENOMEM, "out of memory");
        if (jf_peek(s) != '+') break;
        jf_next(s);
    }
    *p = tmp->ptr ? tmp->ptr : "";
    *n = tmp->len;
    return 1;
}

static int jf_value(jf *s, char t);

static void jf_put_string(jf *s, const char *p, size_t n)
{
    if (!s->err) jf_emit(s, put_string(s->b, p, n));
}

/* Whether the key just written at off (len bytes) repeats one of the open object's keys
 * (from index `first`), and keep it. */
static bool jf_key_seen(jf *s, size_t first, size_t off, size_t len)
{
    for (size_t i = first; i < s->nkeys; i++)
        if (s->keys[i].len == len && !memcmp(s->b->ptr + s->keys[i].off, s->b->ptr + off, len))
            return true;
    if (s->nkeys == s->capkeys) {
        size_t cap = s->capkeys * 2;
        jf_key *k =
            s->keys == s->keys_inline ? malloc(cap * sizeof *k) : realloc(s->keys, cap * sizeof *k);
        if (!k) {
            jf_fail(s, -ENOMEM, "out of memory");
            return false;
        }
        if (s->keys == s->keys_inline) memcpy(k, s->keys_inline, sizeof s->keys_inline);
        s->keys = k;
        s->capkeys = cap;
    }
    s->keys[s->nkeys++] = (jf_key){off, len};
    return false;
}

static int jf_object(jf *s)
{
    jf_lit(s, "{", 1);
    size_t first_key = s->nkeys;
    bool first = true;
    for (;;) {
        char t = jf_next(s);
        if (t == '}') break;
        if (!t) {
            jf_fail(s, -EINVAL, "unexpected end of format");
            return -1;
        }
        if (t != 's') {
            jf_fail(s, -EINVAL, "expected 's' for an object key");
            return -1;
        }
        sq__buf tmp = {0};
        const char *k = NULL;
        size_t kn = 0;
        int r = jf_string(s, false, &k, &kn, &tmp);
        if (r < 0) {
            free(tmp.ptr);
            return -1;
        }
        size_t mark = s->b->len;
        if (!s->err && !first) jf_lit(s, ",", 1);
        size_t key_off = s->b->len;
        if (!s->err) jf_put_string(s, k, kn);
        /* jansson 2.14 cuts a key at its first NUL (later versions keep it whole): refused,
         * rather than cut or written differently (checked once put_string read it whole) */
        if (!s->err && !s->nul_free && memchr(k, 0, kn))
            jf_fail(s, -EINVAL, "a NUL byte in an object key");
        size_t key_len = s->b->len - key_off;
        const char *key_tok = s->tok;
        if (tmp.ptr) free(tmp.ptr);
        jf_lit(s, ":", 1);
        t = jf_next(s);
        r = jf_value(s, t);
        if (r < 0) return -1;
        if (r == 0) { /* an omitted member ('*' and NULL): take its key back */
            if (!s->err) s->b->len = mark;
            continue;
        }
        /* a member written: its key must be new in this object */
        if (!s->err && jf_key_seen(s, first_key, key_off, key_len)) {
            s->tok = key_tok;
            jf_fail(s, -EINVAL, "a key given twice in one object");
        }
        first = false;
    }
    s->nkeys = first_key;
    jf_lit(s, "}", 1);
    return 1;
}

static int jf_array(jf *s)
{
    jf_lit(s, "[", 1);
    bool first = true;
    for (;;) {
        char t = jf_next(s);
        if (t == ']') break;
        if (!t) {
            jf_fail(s, -EINVAL, "unexpected end of format");
            return -1;
        }
        size_t mark = s->b->len;
        if (!first) jf_lit(s, ",", 1);
        int r = jf_value(s, t);
        if (r < 0) return -1;
        if (r == 0) {
            if (!s->err) s->b->len = mark;
            continue;
        }
        first = false;
    }
    jf_lit(s, "]", 1);
    return 1;
}

/* The value whose first format character t was just read: 1 written, 0 left out ('*' with
 * a NULL argument), -1 on a format error (arguments can no longer be matched to it). */
static int jf_value(jf *s, char t)
{
    switch (t) {
    case '{':
    case '[': {
        if (++s->depth > JF_DEPTH) {
            jf_fail(s, -EINVAL, "format nested too deeply");
            return -1;
        }
        int r = t == '{' ? jf_object(s) : jf_array(s);
        s->depth--;
        return r;
    }
    case 's': {
        char o = jf_peek(s);
        bool optional = o == '?' || o == '*';
        if (optional) jf_next(s);
        sq__buf tmp = {0};
        const char *p = NULL;
        size_t n = 0;
        int r = jf_string(s, optional, &p, &n, &tmp);
        if (r == 1) jf_put_string(s, p, n);
        if (tmp.ptr) free(tmp.ptr);
        if (r < 0) return -1;
        if (r == 0 && o == '?') jf_lit(s, "null", 4);
        return r == 0 && o == '*' ? 0 : 1;
    }
    case 'n':
        jf_lit(s, "null", 4);
        return 1;
    case 'b':
        if (va_arg(*s->ap, int))
            jf_lit(s, "true", 4);
        else
            jf_lit(s, "false", 5);
        return 1;
    case 'i': {
        int v = va_arg(*s->ap, int);
        if (!s->err) jf_emit(s, put_int(s->b, v));
        return 1;
    }
    case 'I': {
        json_int_t v = va_arg(*s->ap, json_int_t);
        if (!s->err) jf_emit(s, put_int(s->b, v));
        return 1;
    }
    case 'f': {
        double v = va_arg(*s->ap, double);
        if (!isfinite(v)) jf_fail(s, -EINVAL, "a real that is not finite");
        if (!s->err) jf_emit(s, put_real(s->b, v));
        return 1;
    }
    case 'o':
    case 'O': {
        char o = jf_peek(s);
        if (o == '?' || o == '*') jf_next(s);
        json_t *j = va_arg(*s->ap, json_t *);
        if (!j) {
            if (o == '?')
                jf_lit(s, "null", 4);
            else if (o != '*')
                jf_fail(s, -EINVAL, "NULL json_t");
            return o == '*' ? 0 : 1;
        }
        if (!s->err) jf_emit(s, sq__json_dump(s->b, j));
        if (t == 'o') json_decref(j); /* stolen, as json_pack steals it, error or not */
        return 1;
    }
    case 0:
        jf_fail(s, -EINVAL, "unexpected end of format");
        return -1;
    default:
        jf_fail(s, -EINVAL, "unexpected format character");
        return -1;
    }
}

int sq__json_vpack(sq__buf *b, const char *fmt, va_list ap)
{
    size_t before = b->len;
    jf s; /* (keys_inline left as it is: filled before it is read) */
    s.start = s.fmt = s.tok = fmt;
    s.b = b;
    s.err = 0;
    s.what = NULL;
    s.where = 0;
    s.depth = 0;
    s.keys = s.keys_inline;
    s.nkeys = 0;
    s.capkeys = JF_KEYS_INLINE;
    va_list aq;
    va_copy(aq, ap);
    s.ap = &aq;
    if (!fmt || !*fmt) {
        s.fmt = s.start = s.tok = "";
        jf_fail(&s, -EINVAL, "NULL or empty format");
    } else {
        int r = jf_value(&s, jf_next(&s));
        if (r == 0) jf_fail(&s, -EINVAL, "the whole value left out");
        if (r >= 0 && jf_next(&s)) jf_fail(&s, -EINVAL, "more format after the value");
    }
    va_end(aq);
    if (s.keys != s.keys_inline) free(s.keys);
    if (s.err) {
        b->len = before;
        if (s.err == -EINVAL)
            sq_log(SQ_LOG_WARNING, "json: %s at offset %zu of the format \"%.80s\"", s.what,
                   s.where, s.start);
    }
    return s.err;
}

char *sq_json_vformat(size_t *len, const char *fmt, va_list ap)
{
    sq__buf b = {0};
    int rc = sq__json_vpack(&b, fmt, ap);
    if (!rc) rc = sq__buf_append(&b, "", 1); /* the terminating NUL */
    if (rc) {
        free(b.ptr);
        errno = -rc;
        return NULL;
    }
    if (len) *len = b.len - 1;
    return b.ptr;
}

char *sq_json_format(size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sq_json_vformat(len, fmt, ap);
    va_end(ap);
    return s;
}
