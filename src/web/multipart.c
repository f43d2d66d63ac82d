/* multipart/form-data (RFC 7578 over RFC 2046): the boundary parameter of a Content-Type and
 * a whole-body parser.  Part bodies are found by searching for CRLF "--" boundary followed by
 * optional transport padding and CRLF (or "--" for the last one); the same bytes followed by
 * anything else are content.  Part headers must be "Name: value" lines (no obs-fold). */
#define _GNU_SOURCE /* memmem, memrchr */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httputil_internal.h"

#define MAX_BOUNDARY 70 /* RFC 2046 */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* One parameter of a header value: name [= value]. */
typedef struct param {
    const char *name, *val; /* val: the raw slice (escapes kept when quoted); NULL: no '=' */
    size_t nlen, vlen;
    bool quoted;
} param;

/* Reads the next "; name=value" of s[0..len) from *pos.  Returns 1 with *p set, 0 at the end,
 * -EINVAL when malformed (a quoted-string that does not end, CTLs, junk between params). */
static int next_param(const char *s, size_t len, size_t *pos, param *p)
{
    size_t i = *pos;
    for (;;) {
        while (i < len && is_ws(s[i])) i++;
        if (i == len) return 0;
        if (s[i] != ';') return -EINVAL;
        i++;
        while (i < len && is_ws(s[i])) i++;
        if (i == len) return 0; /* a trailing ';' */
        if (s[i] != ';') break; /* else an empty parameter: ";;" */
    }
    size_t n0 = i;
    while (i < len && sq__is_tchar((unsigned char)s[i])) i++;
    if (i == n0) return -EINVAL;
    p->name = s + n0;
    p->nlen = i - n0;
    p->val = NULL;
    p->vlen = 0;
    p->quoted = false;
    while (i < len && is_ws(s[i])) i++;
    if (i < len && s[i] == '=') {
        i++;
        while (i < len && is_ws(s[i])) i++;
        if (i < len && s[i] == '"') {
            size_t v0 = ++i;
            for (;; i++) {
                if (i == len) return -EINVAL;
                unsigned char c = (unsigned char)s[i];
                if (c == '"') break;
                if (c == '\\') {
                    if (++i == len) return -EINVAL;
                    c = (unsigned char)s[i];
                }
                if (is_ctl(c)) return -EINVAL;
            }
            p->val = s + v0;
            p->vlen = i - v0;
            p->quoted = true;
            i++;
        } else {
            size_t v0 = i;
            while (i < len && !is_ws(s[i]) && s[i] != ';') {
                if (is_ctl((unsigned char)s[i]) || s[i] == '"') return -EINVAL;
                i++;
            }
            p->val = s + v0;
            p->vlen = i - v0;
        }
    }
    *pos = i;
    return 1;
}

/* The value of a parameter with quoted-pair escapes removed, into dst (>= p->vlen bytes). */
static size_t param_value(const param *p, char *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < p->vlen; i++) {
        if (p->quoted && p->val[i] == '\\') i++; /* next_param guarantees a byte follows */
        dst[n++] = p->val[i];
    }
    return n;
}

static bool param_is(const param *p, const char *name)
{
    return p->nlen == strlen(name) && strncasecmp(p->name, name, p->nlen) == 0;
}

/* Reads the leading token (media type or disposition type) of a header value. */
static size_t leading_type(const char *s, size_t len, const char **type, size_t *tlen)
{
    size_t i = 0;
    while (i < len && is_ws(s[i])) i++;
    size_t t0 = i;
    while (i < len && (sq__is_tchar((unsigned char)s[i]) || s[i] == '/')) i++;
    *type = s + t0;
    *tlen = i - t0;
    return i;
}

static bool is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c) != NULL);
}

int sq_multipart_boundary(const char *content_type, size_t len, const char **boundary, size_t *blen)
{
    const char *type;
    size_t tlen, pos = leading_type(content_type, len, &type, &tlen);
    if (tlen != 19 || strncasecmp(type, "multipart/form-data", 19) != 0) return -EINVAL;
    const char *b = NULL;
    size_t bl = 0;
    param p;
    int r;
    while ((r = next_param(content_type, len, &pos, &p)) > 0) {
        if (!param_is(&p, "boundary")) continue;
        if (b || !p.val) return -EINVAL; /* twice, or without a value */
        b = p.val;
        bl = p.vlen;
    }
    if (r < 0 || !b || bl == 0 || bl > MAX_BOUNDARY || b[bl - 1] == ' ') return -EINVAL;
    for (size_t i = 0; i < bl; i++)
        if (!is_bchar((unsigned char)b[i]))
            return -EINVAL; /* also refuses escapes in a quoted boundary */
    *boundary = b;
    *blen = bl;
    return 0;
}

/* --- the body ------------------------------------------------------------------------------- */

enum { TAIL_NONE, TAIL_NEXT, TAIL_FINAL };

/* What follows "--boundary" at body[i]: "--" (the close delimiter), transport padding and
 * CRLF (another part follows; *next is set after the CRLF), or anything else (not a
 * delimiter). */
static int delim_tail(const char *body, size_t len, size_t i, size_t *next)
{
    if (len - i >= 2 && body[i] == '-' && body[i + 1] == '-') return TAIL_FINAL;
    while (i < len && is_ws(body[i])) i++;
    if (len - i >= 2 && body[i] == '\r' && body[i + 1] == '\n') {
        *next = i + 2;
        return TAIL_NEXT;
    }
    return TAIL_NONE;
}

/* The first CRLF--boundary at or after `from` that is a delimiter; returns its offset (of
 * the CR) and its kind in *kind, or (size_t)-1. */
static size_t find_delim(const char *body, size_t len, size_t from, const char *pat, size_t plen,
                         int *kind, size_t *next)
{
    while (from < len && len - from >= plen) {
        const char *hit = memmem(body + from, len - from, pat, plen);
        if (!hit) break;
        size_t at = (size_t)(hit - body);
        *kind = delim_tail(body, len, at + plen, next);
        if (*kind != TAIL_NONE) return at;
        from = at + 1;
    }
    return (size_t)-1;
}

typedef struct part_headers {
    const char *disp, *ctype; /* values, trimmed; NULL when absent */
    size_t disp_len, ctype_len;
} part_headers;

static void trim(const char **s, size_t *len)
{
    while (*len && is_ws(**s)) (*s)++, (*len)--;
    while (*len && is_ws((*s)[*len - 1])) (*len)--;
}

/* Parses the header lines of h[0..len) (each ending in CRLF). */
static int parse_part_headers(const char *h, size_t len, part_headers *ph)
{
    memset(ph, 0, sizeof *ph);
    size_t i = 0;
    while (i < len) {
        const char *line = h + i;
        const char *crlf = memmem(line, len - i, "\r\n", 2);
        if (!crlf) return -EINVAL;
        size_t llen = (size_t)(crlf - line);
        i += llen + 2;
        size_t c = 0;
        while (c < llen && sq__is_tchar((unsigned char)line[c])) c++;
        if (c == 0 || c == llen || line[c] != ':')
            return -EINVAL; /* no name, no colon, space before the colon, or obs-fold */
        const char *v = line + c + 1;
        size_t vlen = llen - c - 1;
        for (size_t k = 0; k < vlen; k++)
            if (is_ctl((unsigned char)v[k])) return -EINVAL; /* also a bare CR or LF */
        trim(&v, &vlen);
        if (c == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
            if (ph->disp) return -EINVAL;
            ph->disp = v;
            ph->disp_len = vlen;
        } else if (c == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
            if (ph->ctype) return -EINVAL;
            ph->ctype = v;
            ph->ctype_len = vlen;
        }
    }
    return 0;
}

/* RFC 5987 ext-value: charset'language'pct-encoded.  Decodes the two charsets a recipient
 * must support, UTF-8 and ISO-8859-1 (turned into UTF-8), into dst (at least 2 * p->vlen
 * bytes).  Returns the length, -1 for another charset (ignored), -EINVAL. */
static ssize_t ext_value(const param *p, char *dst)
{
    if (p->quoted || !p->val) return -EINVAL;
    const char *q1 = memchr(p->val, '\'', p->vlen);
    if (!q1) return -EINVAL;
    size_t rest = p->vlen - (size_t)(q1 - p->val) - 1;
    const char *q2 = memchr(q1 + 1, '\'', rest);
    if (!q2) return -EINVAL;
    size_t cs = (size_t)(q1 - p->val);
    bool latin1 = cs == 10 && strncasecmp(p->val, "ISO-8859-1", 10) == 0;
    if (!latin1 && !(cs == 5 && strncasecmp(p->val, "UTF-8", 5) == 0)) return -1;
    ssize_t n = sq_url_unescape(dst, q2 + 1, p->vlen - (size_t)(q2 + 1 - p->val), false);
    if (n <= 0 || !latin1) return n;
    size_t hi = 0; /* bytes from 0x80 up: two bytes each in UTF-8 */
    for (ssize_t i = 0; i < n; i++) hi += (unsigned char)dst[i] >= 0x80;
    for (ssize_t i = n - 1, o = n + (ssize_t)hi - 1; i >= 0; i--) {
        unsigned char c = (unsigned char)dst[i];
        if (c < 0x80) {
            dst[o--] = (char)c;
        } else {
            dst[o--] = (char)(0x80 | (c & 0x3f));
            dst[o--] = (char)(0xc0 | c >> 6);
        }
    }
    return n + (ssize_t)hi;
}

/* Adds the part if its Content-Disposition is form-data with a non-empty name.  Returns 1 when
 * added, 0 when skipped, or a negative errno. */
static int add_part(sq_args *out, const part_headers *ph, const char *data, size_t dlen)
{
    if (!ph->disp) return 0;
    const char *type;
    size_t tlen, pos = leading_type(ph->disp, ph->disp_len, &type, &tlen);
    /* buffer for the decoded name and filename (ISO-8859-1 may double it) */
    char *buf = malloc(3 * ph->disp_len + 2);
    if (!buf) return -ENOMEM;
    char *name = buf, *fname = buf + ph->disp_len + 1;
    size_t nlen = 0, flen = 0;
    bool have_name = false, have_fname = false, have_ext = false;
    param p;
    int r;
    while ((r = next_param(ph->disp, ph->disp_len, &pos, &p)) > 0) {
        if (param_is(&p, "name")) {
            if (have_name || !p.val) goto invalid;
            nlen = param_value(&p, name);
            have_name = true;
        } else if (param_is(&p, "filename")) {
            if ((have_fname && !have_ext) || !p.val) goto invalid;
            if (!have_ext) flen = param_value(&p, fname);
            have_fname = true;
        } else if (param_is(&p, "filename*")) {
            if (have_ext) goto invalid;
            ssize_t n = ext_value(&p, fname);
            if (n == -EINVAL) goto invalid;
            if (n >= 0) {
                flen = (size_t)n;
                have_ext = have_fname = true;
            }
        }
    }
    if (r < 0) goto invalid;
    if (tlen != 9 || strncasecmp(type, "form-data", 9) != 0 || !have_name || nlen == 0) {
        free(buf);
        return 0;
    }
    r = sq__args_add_full(out, name, nlen, data, dlen, have_fname ? fname : NULL, flen, ph->ctype,
                          ph->ctype_len);
    free(buf);
    return r < 0 ? r : 1;
invalid:
    free(buf);
    return -EINVAL;
}

int sq_parse_multipart(const char *body, size_t len, const char *boundary, size_t blen,
                       sq_args *out, const sq_form_limits *limits)
{
    if (!boundary || blen == 0 || blen > MAX_BOUNDARY) return -EINVAL;
    sq_form_limits lim = sq__form_limits(limits);
    size_t start_len = out->len, parts = 0, plen = blen + 4;
    int added = 0, rc, kind = TAIL_NONE;
    char pat[MAX_BOUNDARY + 4];
    memcpy(pat, "\r\n--", 4);
    memcpy(pat + 4, boundary, blen);

    /* the first delimiter: at the very start, or after a preamble */
    size_t hs = 0;
    if (len >= plen - 2 && memcmp(body, pat + 2, plen - 2) == 0)
        kind = delim_tail(body, len, plen - 2, &hs);
    if (kind == TAIL_NONE && find_delim(body, len, 0, pat, plen, &kind, &hs) == (size_t)-1)
        return -EINVAL;

    while (kind == TAIL_NEXT) {
        if (++parts > lim.max_args) {
            rc = -E2BIG;
            goto fail;
        }
        /* headers: lines up to an empty line */
        size_t e; /* offset of the CRLF of the empty line */
        if (len - hs >= 2 && body[hs] == '\r' && body[hs + 1] == '\n') {
            e = hs;
        } else {
            size_t win = len - hs;
            if (win > lim.max_header_size + 2) win = lim.max_header_size + 2;
            const char *eoh = memmem(body + hs, win, "\r\n\r\n", 4);
            if (!eoh) {
                rc = len - hs > lim.max_header_size + 2 ? -E2BIG : -EINVAL;
                goto fail;
            }
            e = (size_t)(eoh - body) + 2;
        }
        part_headers ph;
        rc = parse_part_headers(body + hs, e - hs, &ph);
        if (rc < 0) goto fail;
        /* the body: up to the next delimiter (which may share the empty line's CRLF) */
        size_t next = 0;
        size_t end = find_delim(body, len, e, pat, plen, &kind, &next);
        if (end == (size_t)-1) {
            rc = -EINVAL;
            goto fail;
        }
        size_t ds = end == e ? e : e + 2;
        if (end - ds > lim.max_part_size) {
            rc = -E2BIG;
            goto fail;
        }
        rc = add_part(out, &ph, body + ds, end - ds);
        if (rc < 0) goto fail;
        added += rc;
        hs = next;
    }
    return added;
fail:
    sq__args_truncate(out, start_len);
    return rc;
}
