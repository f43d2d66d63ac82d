/* The HTTP/1.1 request-head parser (RFC 9112 §2-§3, §5-§7; RFC 9110 §5, §7.2, §9.3.6, §10.1.1).
 *
 * One forward pass over the bytes, table lookups per byte and eight bytes at a time over the
 * long runs (request-target, field values), no allocation: every string is a slice of the
 * caller's buffer.
 *
 * Incremental use.  The parser keeps no state between calls; it answers from the bytes alone,
 * and the answer never depends on how they were split between calls:
 *   - the head is "decided" once its end (the empty line) has arrived or a size limit is
 *     certainly exceeded; before that the answer is 0, even if the bytes are already wrong;
 *   - limits win over everything else, and of the two limits the one that becomes certain
 *     after fewer bytes wins (414 after max_request_line + 2 bytes of request line without its
 *     end, 431 after max_header_size + 1 bytes of head without its end);
 *   - otherwise the first error in byte order wins, then the checks that need the whole head.
 * A call with prev_len > 0 first looks for the end of the head among the new bytes only (and
 * checks the limits in O(1)), so feeding a head byte by byte costs O(n); the full parse runs
 * once, when the head is complete (or, on the error path, once more to rank the errors).
 */
#include <string.h>

#include "field_name.h"
#include "internal.h" /* SQ__HOT */
#include "squall/http_parser.h"

#define MAX_LEADING_EMPTY_LINES 8 /* RFC 9112 §2.2: ignore "at least one"; more is an attack */
#define LIMIT_CLAMP             ((size_t)1 << 30) /* keeps every offset an int */

/* tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~" / DIGIT / ALPHA.  Shared with the response
 * side (header names set by handlers), hence not static. */
extern const uint8_t sq__http_tchar[256];
const uint8_t sq__http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* VALUE: what a field value may hold, VCHAR, obs-text (0x21-0x7E, 0x80-0xFF), SP and HTAB.
 * PATH: what a request-target may hold (VCHAR and obs-text) but '?' and '#', which the scan
 * stops at to note them. */
enum { C_VALUE = 1, C_PATH = 2 };
static const uint8_t class_tab[256] = {
    ['\t'] = C_VALUE,
    [' '] = C_VALUE,
    [0x21 ... 0x22] = C_VALUE | C_PATH,
    ['#'] = C_VALUE,
    [0x24 ... 0x3e] = C_VALUE | C_PATH,
    ['?'] = C_VALUE,
    [0x40 ... 0x7e] = C_VALUE | C_PATH,
    [0x80 ... 0xff] = C_VALUE | C_PATH,
};

static inline uint8_t lower(uint8_t c)
{
    return (uint8_t)(c + (((unsigned)c - 'A' < 26u) << 5));
}

/* SWAR over eight bytes loaded in memory order: the index (0-7) of the first byte below
 * `lo` (lo <= 0x80; bytes >= 0x80 never are) or equal to DEL, 8 if there is none.  The
 * lowest flagged byte is exact: a borrow only runs towards higher bytes. */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline uint64_t eq_mask(uint64_t x, uint8_t c)
{
    uint64_t y = x ^ (ONES * c);
    return (y - ONES) & ~y & HIGHS;
}
static inline uint64_t ctl_mask(uint64_t x, uint8_t lo)
{
    return ((x - ONES * lo) & ~x & HIGHS) | eq_mask(x, 0x7f);
}
static inline unsigned first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return m ? (unsigned)__builtin_ctzll(m) >> 3 : 8;
#else
    return m ? 0 : 8; /* the byte loop after it finds the place */
#endif
}
static inline unsigned first_ctl(uint64_t x, uint8_t lo)
{
    return first_flagged(ctl_mask(x, lo));
}

static inline uint64_t load64(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Advance p over bytes that first_ctl() does not flag, eight at a time while eight remain,
 * up to the first flagged one; the byte loop after it does the rest. */
static inline const char *skip_plain(const char *p, const char *end, uint8_t lo)
{
    while (end - p >= 8) {
        unsigned k = first_ctl(load64(p), lo);
        p += k;
        if (k < 8) break;
    }
    return p;
}

static inline uint32_t load32(const char *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}

#define NAME_IS(p, lit) sq__http_name_is((p), lit, sizeof(lit) - 1)

/* The request-target's runs between '?' and '#': first_ctl() with those two flagged too. */
static inline const char *skip_path(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load64(p);
        unsigned k = first_flagged(ctl_mask(x, 0x21) | eq_mask(x, '?') | eq_mask(x, '#'));
        p += k;
        if (k < 8) break;
    }
    while (p < end && (class_tab[(uint8_t)*p] & C_PATH)) p++;
    return p;
}

/* Advance p over tchar bytes: four table lookups at a time while four remain (their AND is
 * one test), then byte by byte. */
static inline const char *skip_tchar(const char *p, const char *end)
{
    const uint8_t *t = sq__http_tchar;
    while (end - p >= 4 &&
           (t[(uint8_t)p[0]] & t[(uint8_t)p[1]] & t[(uint8_t)p[2]] & t[(uint8_t)p[3]]))
        p += 4;
    while (p < end && t[(uint8_t)*p]) p++;
    return p;
}

static bool ieq(const char *a, size_t alen, const char *lower_lit, size_t litlen)
{
    if (alen != litlen) return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((uint8_t)a[i]) != (uint8_t)lower_lit[i]) return false;
    return true;
}
#define IEQ(p, n, lit) ieq((p), (n), lit, sizeof(lit) - 1)

/* The end of the head: the first LF at or after `from` followed by LF or CR LF.  Returns the
 * offset just past that empty line, or 0. */
static size_t find_head_end(const char *buf, size_t from, size_t len)
{
    const char *p = buf + from, *end = buf + len;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf || lf + 1 >= end) return 0;
        if (lf[1] == '\n') return (size_t)(lf + 2 - buf);
        if (lf[1] == '\r') {
            if (lf + 2 >= end) return 0;
            if (lf[2] == '\n') return (size_t)(lf + 3 - buf);
        }
        p = lf + 1;
    }
    return 0;
}

/* Length of the request line's content (CR LF excluded) given its LF at `lf`. */
static size_t line_content(const char *buf, size_t start, size_t lf)
{
    return lf - start - (lf > start && buf[lf - 1] == '\r');
}

typedef struct limits {
    size_t line; /* max request-line content */
    size_t head; /* max head, request line to empty line included */
} limits;

/* See the file comment: the limit that becomes certain first wins. */
static int limit_error(const limits *lim, bool line_too_long, bool head_too_long)
{
    if (line_too_long && (!head_too_long || lim->line + 2 <= lim->head + 1)) return -414;
    if (head_too_long) return -431;
    return 0;
}

/* Is the request line certainly too long, judging from buf[start..len)?  Looks at no more
 * than max_line + 2 bytes. */
static bool request_line_too_long(const char *buf, size_t start, size_t len, const limits *lim)
{
    size_t window = lim->line + 2;
    if (len - start < window) {
        const char *lf = memchr(buf + start, '\n', len - start);
        return lf && line_content(buf, start, (size_t)(lf - buf)) > lim->line;
    }
    const char *lf = memchr(buf + start, '\n', window);
    return !lf || line_content(buf, start, (size_t)(lf - buf)) > lim->line;
}

/* ---- the request line ---- */

static const char slash[] = "/";

/* Splits an origin-form path at q, its first '?' (NULL: none), which the scan found. */
static void split_query(sq_http_request_head *out, const char *p, size_t n, const char *q)
{
    out->path = p;
    if (q) {
        out->path_len = (size_t)(q - p);
        out->query = q + 1;
        out->query_len = n - out->path_len - 1;
    } else {
        out->path_len = n;
        out->query = NULL;
        out->query_len = 0;
    }
}

/* An authority (RFC 3986 §3.2) as far as a server needs it: non-empty, no userinfo (RFC 9110
 * §4.2.4 says to treat it as an error), none of the delimiters of the other components, no
 * list.  `need_port`: CONNECT's "host:port" (RFC 9110 §9.3.6). */
static bool authority_ok(const char *p, size_t n, bool need_port)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '@' || c == '/' || c == '?' || c == '#' || c == ',' || c == '\\') return false;
    }
    if (!need_port) return true;
    size_t i = n;
    while (i > 0 && p[i - 1] >= '0' && p[i - 1] <= '9') i--;
    return i < n && i >= 2 && p[i - 1] == ':';
}

/* qmark: the target's first '?' (NULL: none); hash: it holds a '#'. */
static int classify_target(sq_http_request_head *out, const char *qmark, bool hash)
{
    const char *t = out->target;
    size_t n = out->target_len;
    bool connect = out->method_len == 7 && memcmp(out->method, "CONNECT", 7) == 0;
    out->host = NULL;
    out->host_len = 0;
    if (connect) {
        if (!authority_ok(t, n, true)) return -400;
        out->form = SQ_HTTP_AUTHORITY_FORM;
        out->path = t + n;
        out->path_len = 0;
        out->query = NULL;
        out->query_len = 0;
        return 0;
    }
    if (hash) return -400; /* a fragment is never part of a request-target */
    if (t[0] == '/') {
        out->form = SQ_HTTP_ORIGIN_FORM;
        split_query(out, t, n, qmark);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (!(out->method_len == 7 && memcmp(out->method, "OPTIONS", 7) == 0)) return -400;
        out->form = SQ_HTTP_ASTERISK_FORM;
        out->path = t;
        out->path_len = 1;
        out->query = NULL;
        out->query_len = 0;
        return 0;
    }
    size_t skip;
    if (n > 7 && IEQ(t, 7, "http://"))
        skip = 7;
    else if (n > 8 && IEQ(t, 8, "https://"))
        skip = 8;
    else
        return -400;
    const char *a = t + skip, *end = t + n, *e = a;
    while (e < end && *e != '/' && *e != '?' && *e != '#') e++;
    if (!authority_ok(a, (size_t)(e - a), false)) return -400;
    out->form = SQ_HTTP_ABSOLUTE_FORM;
    out->host = a;
    out->host_len = (size_t)(e - a);
    /* (the authority holds no '?': the target's first is the path's) */
    if (e < end && *e == '/') {
        split_query(out, e, (size_t)(end - e), qmark);
    } else {
        split_query(out, e, (size_t)(end - e), qmark); /* "" or "?query" */
        out->path = slash;
        out->path_len = 1;
    }
    return 0;
}

/* "HTTP/" 1*DIGIT [ "." 1*DIGIT ]: HTTP/1.<digit> is HTTP/1.x (above 1 served as 1.1, RFC 9110
 * §6.2); any other well-formed major gets 505, anything else 400.  *pp is left after the
 * version.  Returns 1 when the bytes ran out. */
static int parse_version(const char **pp, const char *end, int *minor)
{
    const char *p = *pp;
    /* "HTTP/1.1" or "HTTP/1.0" and the line's end: all but every request */
    if (end - p >= 9 && !memcmp(p, "HTTP/1.", 7) && (p[7] == '1' || p[7] == '0') &&
        (p[8] == '\r' || p[8] == '\n')) {
        *minor = p[7] - '0';
        *pp = p + 8;
        return 0;
    }
    static const char http[] = "HTTP/";
    for (int i = 0; i < 5; i++, p++) {
        if (p == end) return 1;
        if (*p != http[i]) return -400;
    }
    const char *maj = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    if (p == end) return 1;
    if (p == maj) return -400;
    size_t majlen = (size_t)(p - maj);
    if (*p != '.') {
        if (*p != '\r' && *p != '\n') return -400;
        *pp = p;
        return majlen == 1 && *maj == '1' ? -400 : -505; /* "HTTP/1" lacks its minor */
    }
    p++;
    const char *min = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    if (p == end) return 1;
    if (p == min || (*p != '\r' && *p != '\n')) return -400;
    if (majlen != 1 || *maj != '1') return -505;
    if (p - min != 1) return -400;
    *minor = *min == '0' ? 0 : 1;
    *pp = p;
    return 0;
}

/* ---- header fields ---- */

typedef struct derived {
    int hosts;
    int te_headers;
    int chunked_seen; /* "chunked" codings */
    bool te_other;    /* a coding other than chunked */
    bool te_bad;      /* malformed list member or a duplicated chunked */
    bool te_last_chunked;
    bool cl_bad;
    bool conn_close, conn_keep_alive, conn_upgrade, upgrade_header;
    int64_t content_length;
} derived;

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Calls fn on each non-empty, OWS-trimmed member of a comma-separated list. */
#define FOR_EACH_MEMBER(v, vlen, m, mlen, body)                                                    \
    do {                                                                                           \
        const char *it_ = (v), *end_ = (v) + (vlen);                                               \
        while (it_ <= end_) {                                                                      \
            const char *c_ = memchr(it_, ',', (size_t)(end_ - it_));                               \
            if (!c_) c_ = end_;                                                                    \
            const char *m = it_, *e_ = c_;                                                         \
            while (m < e_ && is_ows(*m)) m++;                                                      \
            while (e_ > m && is_ows(e_[-1])) e_--;                                                 \
            size_t mlen = (size_t)(e_ - m);                                                        \
            if (mlen) {                                                                            \
                body;                                                                              \
            }                                                                                      \
            it_ = c_ + 1;                                                                          \
        }                                                                                          \
    } while (0)

/* Content-Length = 1*DIGIT, or a list of equal values ("5, 5", RFC 9110 §8.6); empty members,
 * signs and values of more than 18 digits are errors. */
static void content_length(derived *d, const char *v, size_t vlen)
{
    const char *p = v, *end = v + vlen;
    for (;;) {
        while (p < end && is_ows(*p)) p++;
        int64_t n = 0;
        const char *digits = p;
        while (p < end && *p >= '0' && *p <= '9') {
            if (n > (INT64_MAX - 9) / 10) goto bad;
            n = n * 10 + (*p++ - '0');
        }
        if (p == digits || (d->content_length >= 0 && d->content_length != n)) goto bad;
        d->content_length = n;
        while (p < end && is_ows(*p)) p++;
        if (p == end) return;
        if (*p++ != ',') goto bad;
    }
bad:
    d->cl_bad = true;
}

static void transfer_encoding(derived *d, const char *v, size_t vlen)
{
    d->te_headers++;
    FOR_EACH_MEMBER(v, vlen, m, mlen, {
        if (IEQ(m, mlen, "chunked")) {
            if (d->chunked_seen++) d->te_bad = true;
            d->te_last_chunked = true;
        } else {
            /* transfer-coding = token *( OWS ";" OWS transfer-parameter ): we implement no
             * other coding, so only the token's validity matters (501 vs 400). */
            size_t i = 0;
            while (i < mlen && sq__http_tchar[(uint8_t)m[i]]) i++;
            if (i == 0 || (i < mlen && m[i] != ';' && !is_ows(m[i]))) d->te_bad = true;
            d->te_other = true;
            d->te_last_chunked = false;
        }
    });
}

static void connection(derived *d, const char *v, size_t vlen)
{
    FOR_EACH_MEMBER(v, vlen, m, mlen, {
        if (IEQ(m, mlen, "close"))
            d->conn_close = true;
        else if (IEQ(m, mlen, "keep-alive"))
            d->conn_keep_alive = true;
        else if (IEQ(m, mlen, "upgrade"))
            d->conn_upgrade = true;
    });
}

/* Host = uri-host [ ":" port ]; empty is allowed (RFC 9110 §7.2). */
static const uint8_t not_host_tab[256] = {
    ['@'] = 1, ['/'] = 1, ['?'] = 1, ['#'] = 1, [','] = 1, ['\\'] = 1, [' '] = 1, ['\t'] = 1,
};
static bool host_ok(const char *v, size_t vlen)
{
    const uint8_t *u = (const uint8_t *)v;
    uint8_t bad = 0;
#define HOST_BAD4(i)                                                                               \
    (not_host_tab[u[(i)]] | not_host_tab[u[(i) + 1]] | not_host_tab[u[(i) + 2]] |                  \
     not_host_tab[u[(i) + 3]])
    if (vlen < 8) {
        for (size_t i = 0; i < vlen; i++) bad |= not_host_tab[u[i]];
        return !bad;
    }
    /* eight at a time, the last eight overlapping the ones before rather than a byte loop */
    size_t i = 0;
    for (; i + 8 <= vlen; i += 8) bad |= HOST_BAD4(i) | HOST_BAD4(i + 4);
    if (i < vlen) bad |= HOST_BAD4(vlen - 8) | HOST_BAD4(vlen - 4);
#undef HOST_BAD4
    return !bad;
}

/* Looks at the fields that shape the message.  Names are compared on length first, so the
 * common headers that matter to nobody here cost one switch. */
static void note_header(sq_http_request_head *out, derived *d, const sq_http_header *h)
{
    const char *n = h->name;
    switch (h->name_len) {
    case 4:
        if (NAME_IS(n, "host")) {
            /* An absolute-form target's authority wins over Host (RFC 9112 §3.2.2). */
            if (d->hosts++ == 0 && out->form != SQ_HTTP_ABSOLUTE_FORM) {
                out->host = h->value;
                out->host_len = h->value_len;
            }
            if (!host_ok(h->value, h->value_len)) d->hosts = 2; /* invalid: 400 like a list */
        }
        break;
    case 6:
        if (NAME_IS(n, "expect") && IEQ(h->value, h->value_len, "100-continue"))
            out->expect_continue = true;
        break;
    case 7:
        if (NAME_IS(n, "upgrade")) d->upgrade_header = true;
        break;
    case 10:
        if (NAME_IS(n, "connection")) connection(d, h->value, h->value_len);
        break;
    case 14:
        if (NAME_IS(n, "content-length")) content_length(d, h->value, h->value_len);
        break;
    case 17:
        if (NAME_IS(n, "transfer-encoding")) transfer_encoding(d, h->value, h->value_len);
        break;
    default:
        break;
    }
}

/* Message framing and the other checks that need the whole head (RFC 9112 §3.2, §6). */
static int finish(sq_http_request_head *out, derived *d)
{
    bool http11 = out->version_minor == 1;
    if (d->hosts > 1 || (http11 && d->hosts == 0)) return -400;
    if (d->cl_bad) return -400;
    if (d->te_headers) {
        if (!http11) return -400;
        if (d->content_length >= 0) return -400; /* the smuggling vector */
        if (d->te_bad || d->chunked_seen + (int)d->te_other == 0) return -400;
        if (d->te_other || !d->te_last_chunked) return -501;
        out->chunked = true;
    }
    out->content_length = d->content_length;
    out->keep_alive = http11 ? !d->conn_close : (d->conn_keep_alive && !d->conn_close);
    if (!http11) out->expect_continue = false; /* RFC 9110 §10.1.1: ignored from 1.0 */
    out->upgrade = d->conn_upgrade && d->upgrade_header;
    return 0;
}

/* ---- the scan ---- */

enum { SCAN_MORE = 0 };

/* Parses from `start` (the first byte of the request line).  Returns the head's end offset,
 * SCAN_MORE when the bytes ran out before the end, or a negative status.  *line_len gets the
 * request line's content length once it is known (else stays SIZE_MAX). */
static int scan(const char *buf, size_t start, size_t len, sq_http_request_head *out,
                sq_http_header *headers, size_t max_headers, size_t *line_len, size_t *head_end)
{
    const char *p = buf + start, *end = buf + len, *q;

    /* method SP ("GET " is most of them) */
    q = p;
    if (end - p >= 4 && load32(p) == load32("GET "))
        p += 3;
    else
        while (p < end && sq__http_tchar[(uint8_t)*p]) p++;
    if (p == end) return SCAN_MORE;
    if (*p != ' ' || p == q) return -400;
    out->method = q;
    out->method_len = (size_t)(p - q);
    p++;

    /* request-target SP, noting its first '?' and whether it has a '#' on the way */
    q = p;
    const char *qmark = NULL;
    bool hash = false;
    for (;;) {
        p = skip_path(p, end);
        if (p == end) return SCAN_MORE;
        if (*p == '?') {
            if (!qmark) qmark = p;
        } else if (*p == '#') {
            hash = true;
        } else {
            break;
        }
        p++;
    }
    if (*p != ' ' || p == q) return -400;
    out->target = q;
    out->target_len = (size_t)(p - q);
    p++;

    /* HTTP-version CRLF */
    int r = parse_version(&p, end, &out->version_minor);
    if (r == 1) return SCAN_MORE;
    if (r < 0) return r;
    if (*p == '\r') {
        if (++p == end) return SCAN_MORE;
        if (*p != '\n') return -400;
    }
    *line_len = (size_t)(p - (buf + start)) - (p[-1] == '\r');
    p++;
    if ((r = classify_target(out, qmark, hash)) < 0) return r;

    /* field lines, up to the empty line */
    derived d = {.content_length = -1};
    size_t n = 0;
    out->content_length = -1;
    out->chunked = out->keep_alive = out->expect_continue = out->upgrade = false;
    for (;;) {
        if (p == end) return SCAN_MORE;
        if (*p == '\r') {
            if (p + 1 == end) return SCAN_MORE;
            if (p[1] != '\n') return -400;
            p += 2;
            break;
        }
        if (*p == '\n') {
            p++;
            break;
        }
        /* field-name ":" (a leading SP/HTAB is obs-fold, or whitespace after the start line) */
        q = p;
        p = skip_tchar(p, end);
        if (p == end) return SCAN_MORE;
        if (*p != ':' || p == q) return -400;
        const char *name = q;
        size_t name_len = (size_t)(p - q);
        p++;
        /* OWS field-value OWS */
        while (p < end && is_ows(*p)) p++;
        q = p;
        p = skip_plain(p, end, 0x20);
        while (p < end && (class_tab[(uint8_t)*p] & C_VALUE)) p++;
        if (p == end) return SCAN_MORE;
        const char *eol = p;
        if (*p == '\r') {
            if (p + 1 == end) return SCAN_MORE;
            if (p[1] != '\n') return -400;
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            return -400; /* NUL, DEL or another control character */
        }
        while (eol > q && is_ows(eol[-1])) eol--;
        if (n == max_headers) return -431;
        sq_http_header *h = &headers[n++];
        h->name = name;
        h->name_len = name_len;
        h->value = q;
        h->value_len = (size_t)(eol - q);
        note_header(out, &d, h);
    }
    out->headers = headers;
    out->nheaders = n;
    *head_end = (size_t)(p - buf);
    if ((r = finish(out, &d)) < 0) return r;
    return (int)*head_end;
}

SQ__HOT int sq_http_parse_request(const char *buf, size_t len, size_t prev_len,
                                  sq_http_request_head *out, sq_http_header *headers,
                                  size_t max_headers, const sq_http_limits *limits_in)
{
    limits lim = {SQ_HTTP_DEFAULT_MAX_REQUEST_LINE, SQ_HTTP_DEFAULT_MAX_HEADER_SIZE};
    if (limits_in && limits_in->max_request_line) lim.line = limits_in->max_request_line;
    if (limits_in && limits_in->max_header_size) lim.head = limits_in->max_header_size;
    if (lim.line > LIMIT_CLAMP) lim.line = LIMIT_CLAMP;
    if (lim.head > LIMIT_CLAMP) lim.head = LIMIT_CLAMP;
    if (len > INT32_MAX) len = INT32_MAX; /* the return type; the limits stop far earlier */
    if (prev_len > len) prev_len = len;

    /* Empty lines before the request line are ignored, a few of them. */
    size_t start = 0;
    for (int i = 0;; i++) {
        if (start == len) return 0;
        char c = buf[start];
        if (c != '\r' && c != '\n') break;
        if (i == MAX_LEADING_EMPTY_LINES) return -400;
        if (c == '\r') {
            if (start + 1 == len) return 0;
            if (buf[start + 1] != '\n') return -400;
            start++;
        }
        start++;
    }

    /* A first byte that cannot start a method (a TLS ClientHello, binary junk) can never
     * become a request, whatever follows: answer 400 now rather than wait for a head end
     * that may never come (nginx does the same).  Deciding on one byte keeps the result
     * independent of how the input was split. */
    if (!sq__http_tchar[(uint8_t)buf[start]]) return -400;

    /* Seen part of this head before: unless its end has arrived now, only the limits can
     * decide anything, and they cost O(1) (O(max_request_line) once, crossing that size). */
    if (prev_len > start) {
        size_t from = prev_len > start + 3 ? prev_len - 3 : start;
        if (!find_head_end(buf, from, len)) {
            size_t c414 = start + lim.line + 2;
            bool line_long =
                prev_len < c414 && len >= c414 && request_line_too_long(buf, start, len, &lim);
            return limit_error(&lim, line_long, len - start > lim.head);
        }
    }

    size_t line_len = SIZE_MAX, end = 0;
    int r = scan(buf, start, len, out, headers, max_headers, &line_len, &end);
    if (r > 0) {
        int e = limit_error(&lim, line_len > lim.line, end - start > lim.head);
        return e ? e : r;
    }
    if (r == SCAN_MORE) {
        bool line_long = line_len != SIZE_MAX ? line_len > lim.line : len - start >= lim.line + 2;
        return limit_error(&lim, line_long, len - start > lim.head);
    }
    /* An error.  It stands only once the head is decided, and limits outrank it. */
    size_t head_end = end ? end : find_head_end(buf, start, len);
    int e = limit_error(&lim, request_line_too_long(buf, start, len, &lim),
                        (head_end ? head_end : len) - start > lim.head);
    if (e) return e;
    return head_end ? r : 0;
}

const sq_http_header *sq_http_find_header(const sq_http_request_head *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const sq_http_header *h = &req->headers[i];
        if (h->name_len != n) continue;
        size_t k = 0;
        while (k < n && lower((uint8_t)h->name[k]) == lower((uint8_t)name[k])) k++;
        if (k == n) return h;
    }
    return NULL;
}
