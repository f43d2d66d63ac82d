/* HTTP responses: status, headers, the body buffer, heads built straight into the
 * connection's output buffer, chunked framing after a flush, gzip, and the Date cache. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "http/field_name.h"
#include "http/http_internal.h"

static inline char *put(char *p, const char *s, size_t n)
{
    sq__copy(p, s, n); /* (a literal's constant length folds its branches away) */
    return p + n;
}
#define PUTS(p, lit) put(p, lit, sizeof(lit) - 1)

static char *put_hex(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* --- reasons ------------------------------------------------------------------------------- */

const char *sq_http_reason(int code)
{
    switch (code) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    case 511:
        return "Network Authentication Required";
    default:
        return "Unknown";
    }
}

/* --- Date ------------------------------------------------------------------------------------ */

SQ__HOT void sq__http_date_refresh(sq_http_server *srv)
{
    int64_t sec = (int64_t)(sq_loop_now_ns(srv->loop) / SQ__NS_PER_SEC);
    if (sec == srv->date_sec && srv->date_len) return;
    srv->date_sec = sec;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int n =
        snprintf(srv->date_line, sizeof srv->date_line,
                 "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday % 7], tm.tm_mday,
                 mons[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_len = n > 0 && (size_t)n < sizeof srv->date_line ? (size_t)n : 0;
    memcpy(srv->head200 + srv->date_at, srv->date_line, srv->date_len);
    srv->head200_len = srv->date_at + srv->date_len;
}

int sq__http_head200_init(sq_http_server *srv)
{
    size_t sn = srv->server_name_len;
    char *h = malloc(SQ__HTTP_STATUS200_LEN + (sn ? 10 + sn : 0) + sizeof srv->date_line);
    if (!h) return -ENOMEM;
    char *p = PUTS(h, "HTTP/1.1 200 OK\r\n");
    if (sn) {
        p = PUTS(p, "Server: ");
        p = put(p, srv->s.server_name, sn);
        p = PUTS(p, "\r\n");
    }
    srv->head200 = h;
    srv->date_at = srv->head200_len = (size_t)(p - h);
    return 0;
}

/* --- request-side API: status and headers ------------------------------------------------- */

/* The response header names that set a flag (special_flag), matched in any case. */
enum { NAME_OTHER, NAME_ETAG, NAME_CONNECTION, NAME_CTYPE, NAME_CLEN, NAME_CENC };

/* Which of them the n bytes at `name` spell, before they are known to be a token:
 * sq__http_name_is also takes a CR for a '-', and a CR is checked for where the three
 * hyphenated names have their one '-'.  A name this matches is therefore a valid one. */
SQ__HOT static int known_name(const char *name, size_t n)
{
    switch (n) {
    case 4:
        return sq__http_name_is(name, "etag", n) ? NAME_ETAG : NAME_OTHER;
    case 10:
        return sq__http_name_is(name, "connection", n) ? NAME_CONNECTION : NAME_OTHER;
    case 12:
        return sq__http_name_is(name, "content-type", n) && name[7] == '-' ? NAME_CTYPE
                                                                           : NAME_OTHER;
    case 14:
        return sq__http_name_is(name, "content-length", n) && name[7] == '-' ? NAME_CLEN
                                                                             : NAME_OTHER;
    case 16:
        return sq__http_name_is(name, "content-encoding", n) && name[7] == '-' ? NAME_CENC
                                                                               : NAME_OTHER;
    }
    return NAME_OTHER;
}

/* The length of a header name, or 0 when it is NULL, empty or holds a byte that is no
 * tchar; *kind gets known_name's answer.  Known names skip the byte-by-byte check. */
static size_t name_len_kind(const char *name, int *kind)
{
    *kind = NAME_OTHER;
    if (!name) return 0;
    size_t n = strlen(name);
    *kind = known_name(name, n);
    if (*kind == NAME_OTHER)
        for (size_t i = 0; i < n; i++)
            if (!sq__http_tchar[(unsigned char)name[i]]) return 0;
    return n;
}

/* The length of a header value or reason phrase, or -1 when it holds CR or LF (it would
 * split the head) or another control byte but HTAB (RFC 9110 field-value; Tornado refuses
 * them too, and an HTTP/2 peer resets the stream for one). */
static const uint8_t value_stop[256] = {[0x00 ... 0x1f] = 1, [0x7f] = 1}; /* NUL, CTLs, DEL */
static ssize_t value_len(const char *v)
{
    if (!v) return -1;
    const uint8_t *p = (const uint8_t *)v;
    for (;;) {
        /* one table test a byte, two bytes a turn; p[1] is read only when p[0] was no NUL */
        while (!value_stop[p[0]] && !value_stop[p[1]]) p += 2;
        if (!value_stop[p[0]]) p++;
        if (*p != '\t') return *p ? -1 : (ssize_t)((const char *)p - v);
        p++;
    }
}

SQ__HOT void sq__http_resp_reset(sq__http_req *r)
{
    r->status = 200;
    r->body_sent = 0;
    r->reason = NULL;
    r->rflags = 0;
    r->hdrs.len = 0;
    r->body.len = 0;
}

int sq_http_set_status(sq_http_request *req, int code, const char *reason)
{
    sq__http_req *r = (sq__http_req *)req;
    if (code < 100 || code > 599) return -EINVAL;
    /* a 1xx is interim, never the final response: sent as one, the client waits on for its
     * final response (or, after a 101 it did not ask for, reads what follows as another
     * protocol).  101 answers an upgrade request, before sq_http_detach_connection/_stream;
     * HTTP/2 has no 101 (RFC 9113 8.6); 100 Continue is the server's own (read_body). */
    if (code < 200 && (code != 101 || r->h2 || !r->upgrade)) return -EINVAL;
    if (reason && value_len(reason) < 0) return -EINVAL;
    if (r->rflags & (RESP_HEAD_SENT | RESP_FINISHED)) return -EALREADY;
    if (reason) {
        r->reason_buf.len = 0;
        if (sq__buf_append(&r->reason_buf, reason, strlen(reason) + 1) < 0) return -ENOMEM;
        r->reason = r->reason_buf.ptr;
    } else {
        r->reason = NULL;
    }
    r->status = code;
    return 0;
}

SQ__HOT int sq_http_get_status(const sq_http_request *req)
{
    return ((const sq__http_req *)req)->status;
}

/* The flag a header of that kind sets with that value. */
static unsigned special_flag(int kind, const char *value)
{
    switch (kind) {
    case NAME_ETAG:
        return RESP_HAS_ETAG;
    case NAME_CONNECTION:
        return value && !strcasecmp(value, "close") ? RESP_CONN_CLOSE : 0;
    case NAME_CTYPE:
        return RESP_HAS_CTYPE;
    case NAME_CLEN:
        return RESP_HAS_CLEN;
    case NAME_CENC:
        return RESP_HAS_CENC;
    }
    return 0;
}

/* The flag a line of that kind may set, whatever its value (Connection's too): what taking
 * every such line away clears. */
static unsigned name_flag(int kind)
{
    return kind == NAME_CONNECTION ? RESP_CONN_CLOSE : special_flag(kind, NULL);
}

/* Remove the headers named `name` (n bytes) whose value `match` accepts (NULL: all of
 * them).  Returns how many. */
static int remove_matching(sq__http_req *r, const char *name, size_t n,
                           bool (*match)(const char *value, size_t len, void *arg), void *arg)
{
    if (!r->hdrs.ptr) return 0;
    int removed = 0;
    char *p = r->hdrs.ptr, *end = p + r->hdrs.len;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        bool hit = (size_t)(next - p) > n && p[n] == ':' && !strncasecmp(p, name, n);
        if (hit && match) {
            const char *v = p + n + 1;
            while (v < next && *v == ' ') v++;
            const char *ve = next;
            while (ve > v && (ve[-1] == '\n' || ve[-1] == '\r')) ve--;
            hit = match(v, (size_t)(ve - v), arg);
        }
        if (hit) {
            memmove(p, next, (size_t)(end - next));
            end -= next - p;
            removed++;
        } else {
            p = next;
        }
    }
    r->hdrs.len = (size_t)(end - r->hdrs.ptr);
    return removed;
}

static void remove_header(sq__http_req *r, const char *name, size_t n)
{
    remove_matching(r, name, n, NULL, NULL);
}

void sq__http_resp_clear(sq_http_request *req)
{
    sq__http_resp_reset((sq__http_req *)req);
}

bool sq__http_resp_has_header(const sq_http_request *req, const char *name)
{
    const sq__buf *b = &((const sq__http_req *)req)->hdrs;
    size_t n = strlen(name);
    for (size_t i = 0; i < b->len;) { /* "Name: value\r\n" lines */
        const char *line = b->ptr + i, *eol = memchr(line, '\n', b->len - i);
        size_t ll = eol ? (size_t)(eol - line) + 1 : b->len - i;
        if (ll > n && line[n] == ':' && !strncasecmp(line, name, n)) return true;
        i += ll;
    }
    return false;
}

SQ__HOT bool sq__http_resp_has_etag(const sq_http_request *req)
{
    return (((const sq__http_req *)req)->rflags & RESP_HAS_ETAG) != 0;
}

/* Append "name: value\r\n" (both already checked) and the flag the header sets. */
static int put_line(sq__http_req *r, const char *name, size_t n, const char *value, size_t v,
                    unsigned flag)
{
    if (sq__buf_reserve(&r->hdrs, n + v + 4) < 0) return -ENOMEM;
    char *p = r->hdrs.ptr + r->hdrs.len;
    p = put(p, name, n);
    p = PUTS(p, ": ");
    p = put(p, value, v);
    p = PUTS(p, "\r\n");
    r->hdrs.len = (size_t)(p - r->hdrs.ptr);
    r->rflags |= flag;
    return 0;
}

SQ__HOT int sq__http_resp_add_etag(sq_http_request *req, const char *etag, size_t len)
{
    sq__http_req *r = (sq__http_req *)req;
    if (r->rflags & (RESP_HEAD_SENT | RESP_FINISHED)) return -EALREADY;
    return put_line(r, "ETag", 4, etag, len, RESP_HAS_ETAG);
}

bool sq__http_resp_has_ctype(const sq_http_request *req)
{
    return (((const sq__http_req *)req)->rflags & RESP_HAS_CTYPE) != 0;
}

int sq__http_remove_headers(sq_http_request *req, const char *name,
                            bool (*match)(const char *value, size_t len, void *arg), void *arg)
{
    sq__http_req *r = (sq__http_req *)req;
    if (r->rflags & (RESP_HEAD_SENT | RESP_FINISHED)) return 0;
    size_t n = strlen(name);
    int removed = remove_matching(r, name, n, match, arg);
    /* the flag a header sets stays only while one of its lines does */
    unsigned f = removed ? name_flag(known_name(name, n)) : 0;
    if (f && !sq__http_resp_has_header(req, name)) r->rflags &= ~f;
    return removed;
}

SQ__HOT static int add_header(sq__http_req *r, const char *name, const char *value, bool replace)
{
    int kind;
    size_t n = name_len_kind(name, &kind);
    ssize_t vl = value_len(value);
    if (!n || vl < 0) return -EINVAL;
    if (r->rflags & (RESP_HEAD_SENT | RESP_FINISHED)) return -EALREADY;
    size_t v = (size_t)vl;
    /* the flag this header sets, and (replacing) the one it clears: Connection clears
     * RESP_CONN_CLOSE whatever its value */
    unsigned set = special_flag(kind, value);
    if (replace) {
        if (r->hdrs.len) remove_header(r, name, n);
        r->rflags &= ~name_flag(kind);
    }
    return put_line(r, name, n, value, v, set);
}

SQ__HOT int sq_http_set_header(sq_http_request *req, const char *name, const char *value)
{
    return add_header((sq__http_req *)req, name, value, true);
}

int sq_http_add_header(sq_http_request *req, const char *name, const char *value)
{
    return add_header((sq__http_req *)req, name, value, false);
}

int sq_http_clear_header(sq_http_request *req, const char *name)
{
    sq__http_req *r = (sq__http_req *)req;
    int kind;
    size_t n = name_len_kind(name, &kind);
    if (!n) return -EINVAL;
    if (r->rflags & (RESP_HEAD_SENT | RESP_FINISHED)) return -EALREADY;
    remove_header(r, name, n);
    r->rflags &= ~name_flag(kind);
    return 0;
}

SQ__HOT int sq_http_write(sq_http_request *req, const void *data, size_t len)
{
    sq__http_req *r = (sq__http_req *)req;
    if (r->rflags & RESP_FINISHED) return -EALREADY;
    return sq__buf_append(&r->body, data, len);
}

bool sq_http_finished(const sq_http_request *req)
{
    return (((const sq__http_req *)req)->rflags & RESP_FINISHED) != 0;
}

/* --- gzip ------------------------------------------------------------------------------------ */

static bool text_like(const char *h, size_t len)
{
    /* the Content-Type line the handler set, if any; else our default (text/html) */
    if (!h) return true;
    const char *p = h;
    const char *end = h + len;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    size_t n = (size_t)(end - p);
#define PFX(s) (n >= sizeof(s) - 1 && !strncasecmp(p, s, sizeof(s) - 1))
    return PFX("text/") || PFX("application/json") || PFX("application/javascript") ||
           PFX("application/xml") || PFX("image/svg+xml");
#undef PFX
}

/* The value of header `name` in the response header buffer, or NULL. */
static const char *resp_header(const sq__http_req *r, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    if (!r->hdrs.ptr) return NULL;
    const char *p = r->hdrs.ptr, *end = p + r->hdrs.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if ((size_t)(next - p) > n && p[n] == ':' && !strncasecmp(p, name, n)) {
            const char *v = p + n + 1;
            *vlen = (size_t)(next - v) - 2;
            return v;
        }
        p = next;
    }
    return NULL;
}

/* A strong ETag the handler set no longer names these bytes once they are gzipped: weak
 * from then on (as nginx does), else an If-Range with it would splice identity bytes into
 * the gzip ones. */
static void weaken_etag(sq__http_req *r)
{
    size_t vlen = 0;
    const char *v = resp_header(r, "ETag", &vlen);
    while (v && vlen && *v == ' ') v++, vlen--;
    if (!v || !vlen || *v != '"') return;
    size_t at = (size_t)(v - r->hdrs.ptr);
    if (sq__buf_reserve(&r->hdrs, 2) < 0) return;
    memmove(r->hdrs.ptr + at + 2, r->hdrs.ptr + at, r->hdrs.len - at);
    memcpy(r->hdrs.ptr + at, "W/", 2);
    r->hdrs.len += 2;
}

/* Replace r->body with its gzip encoding when worth it.  Returns true if it did. */
bool sq__http_gzip_body(sq_http_conn *c, sq__http_req *r)
{
    if (!c->srv->s.gzip || !r->accept_gzip || r->body.len < SQ_HTTP_GZIP_MIN_LENGTH) return false;
    if (r->rflags & RESP_HAS_CENC) return false;
    if (r->status == 206) return false;
    size_t vlen = 0;
    const char *ct = (r->rflags & RESP_HAS_CTYPE) ? resp_header(r, "Content-Type", &vlen) : NULL;
    if ((r->rflags & RESP_HAS_CTYPE) && !ct) return false;
    if (!text_like(ct, vlen)) return false;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
    sq__buf out = {0};
    size_t bound = deflateBound(&z, (uLong)r->body.len);
    if (sq__buf_reserve(&out, bound) < 0) {
        deflateEnd(&z);
        return false;
    }
    z.next_in = (Bytef *)r->body.ptr;
    z.avail_in = (uInt)r->body.len;
    z.next_out = (Bytef *)out.ptr;
    z.avail_out = (uInt)bound;
    int zr = deflate(&z, Z_FINISH);
    out.len = bound - z.avail_out;
    deflateEnd(&z);
    if (zr != Z_STREAM_END) {
        sq__buf_free(&out);
        return false;
    }
    sq__buf_free(&r->body);
    r->body = out;
    if (r->rflags & RESP_HAS_ETAG) weaken_etag(r);
    return true;
}

SQ__HOT void sq__http_out_acquire(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (!c->a->out.ptr && srv && srv->nouts) c->a->out = srv->outs[--srv->nouts];
}

void sq__http_out_release(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (!c->a->out.ptr || c->a->opos != c->a->out.len) return;
    c->a->out.len = 0;
    if (srv && c->a->out.cap <= SQ__HTTP_POOL_OUT_MAX && srv->nouts < SQ__HTTP_POOL)
        srv->outs[srv->nouts++] = c->a->out;
    else
        sq__buf_free(&c->a->out);
    c->a->out = (sq__buf){0};
    c->a->opos = 0;
}

/* --- heads ------------------------------------------------------------------------------------ */

/* Append the status line and headers.  `clen` >= 0: Content-Length; -1: chunked (or, for
 * HTTP/1.0, no framing: the body ends at close); -2: no length header at all. */
SQ__HOT static int put_head(sq_http_conn *c, sq__http_req *r, int64_t clen, bool gz, bool close)
{
    sq_http_server *srv = c->srv;
    bool plain_ok = r->status == 200 && !r->reason;
    /* a plain 200's status line is in srv->head200 */
    const char *reason = plain_ok ? NULL : r->reason ? r->reason : sq_http_reason(r->status);
    size_t rlen = reason ? strlen(reason) : 0;
    size_t need = 64 + rlen + srv->server_name_len + 48 + r->hdrs.len + 160;
    sq__http_out_acquire(c);
    if (sq__buf_reserve(&c->a->out, need) < 0) return -ENOMEM;
    sq__http_date_refresh(srv);
    char *p = c->a->out.ptr + c->a->out.len;
    if (plain_ok) {
        p = put(p, srv->head200, srv->head200_len); /* status, Server and Date lines */
    } else {
        p = PUTS(p, "HTTP/1.1 ");
        p = sq__put_u64(p, (uint64_t)r->status);
        *p++ = ' ';
        p = put(p, reason, rlen);
        p = PUTS(p, "\r\n");
        p = put(p, srv->head200 + SQ__HTTP_STATUS200_LEN,
                srv->head200_len - SQ__HTTP_STATUS200_LEN);
    }
    if (r->hdrs.len) p = put(p, r->hdrs.ptr, r->hdrs.len);
    bool body_allowed = sq__http_status_has_body(r->status);
    if (body_allowed && !(r->rflags & RESP_HAS_CTYPE) && (clen != 0 || r->is_head))
        p = PUTS(p, "Content-Type: text/html; charset=UTF-8\r\n");
    if (gz) p = PUTS(p, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
    if (clen >= 0 && body_allowed && (!(r->rflags & RESP_HAS_CLEN) || gz)) {
        p = PUTS(p, "Content-Length: ");
        p = sq__put_u64(p, (uint64_t)clen);
        p = PUTS(p, "\r\n");
    } else if (clen == -1 && body_allowed && r->pub.version_minor >= 1) {
        p = PUTS(p, "Transfer-Encoding: chunked\r\n");
    }
    if (!(r->rflags & RESP_CONN_CLOSE)) {
        if (close)
            p = PUTS(p, "Connection: close\r\n");
        else if (r->pub.version_minor == 0)
            p = PUTS(p, "Connection: keep-alive\r\n");
    }
    p = PUTS(p, "\r\n");
    c->a->out.len = (size_t)(p - c->a->out.ptr);
    return 0;
}

SQ__HOT static int put_chunk(sq_http_conn *c, const char *data, size_t len, bool chunked)
{
    if (!len) return 0;
    sq__http_out_acquire(c);
    if (sq__buf_reserve(&c->a->out, len + 32) < 0) return -ENOMEM;
    char *p = c->a->out.ptr + c->a->out.len;
    if (chunked) {
        p = put_hex(p, len);
        p = PUTS(p, "\r\n");
    }
    p = put(p, data, len);
    if (chunked) p = PUTS(p, "\r\n");
    c->a->out.len = (size_t)(p - c->a->out.ptr);
    return 0;
}

/* A body goes out: its framing is ours (the real length, or chunked), never a Content-Length
 * the handler set, which would disagree with it (gzip) or conflict with chunked. */
static void drop_handler_clen(sq__http_req *r)
{
    if (!(r->rflags & RESP_HAS_CLEN)) return;
    remove_header(r, "Content-Length", 14);
    r->rflags &= ~RESP_HAS_CLEN;
}

int sq__http_resp_flush(sq_http_conn *c, sq__http_req *r)
{
    /* after a Content-Length body went out whole (sendfile), later writes are dropped */
    bool no_body = sq__http_resp_no_body(r) || (r->rflags & RESP_BODY_DONE);
    if (!(r->rflags & RESP_HEAD_SENT)) {
        if (!no_body) drop_handler_clen(r);
        bool close = sq__http_want_close(c, r);
        if (r->pub.version_minor == 0) close = c->close_after = true; /* no chunked in 1.0 */
        int e = put_head(c, r, -1, false, close);
        if (e < 0) return e;
        r->rflags |= RESP_HEAD_SENT;
        if (r->pub.version_minor >= 1 && !no_body) r->rflags |= RESP_CHUNKED;
    }
    if (!no_body && put_chunk(c, r->body.ptr, r->body.len, r->rflags & RESP_CHUNKED) < 0)
        return -ENOMEM;
    if (!no_body) r->body_sent += r->body.len;
    r->body.len = 0;
    return 0;
}

int sq__http_resp_head_len(sq_http_conn *c, sq__http_req *r, uint64_t extra)
{
    bool no_body = sq__http_resp_no_body(r);
    if (!no_body) drop_handler_clen(r);
    bool close = sq__http_want_close(c, r);
    int e = put_head(c, r, (int64_t)(r->body.len + extra), false, close);
    if (e == 0 && !no_body) e = put_chunk(c, r->body.ptr, r->body.len, false);
    if (e < 0) return e;
    if (!no_body) r->body_sent += r->body.len;
    r->rflags |= RESP_HEAD_SENT | RESP_BODY_DONE;
    r->body.len = 0;
    return 0;
}

int sq__http_put_chunk_header(sq_http_conn *c, size_t len)
{
    sq__http_out_acquire(c);
    if (sq__buf_reserve(&c->a->out, 24) < 0) return -ENOMEM;
    char *p = put_hex(c->a->out.ptr + c->a->out.len, len);
    p = PUTS(p, "\r\n");
    c->a->out.len = (size_t)(p - c->a->out.ptr);
    return 0;
}

SQ__HOT int sq__http_resp_finish(sq_http_conn *c, sq__http_req *r)
{
    if (r->rflags & RESP_FINISHED) return 0;
    int e = 0;
    if (r->rflags & RESP_HEAD_SENT) {
        e = sq__http_resp_flush(c, r);
        if (e == 0 && (r->rflags & RESP_CHUNKED)) e = sq__buf_append(&c->a->out, "0\r\n\r\n", 5);
    } else {
        bool no_body = sq__http_resp_no_body(r);
        if (!no_body) drop_handler_clen(r);
        bool gz = !no_body && sq__http_maybe_gzip(c, r);
        bool close = sq__http_want_close(c, r);
        e = put_head(c, r, (int64_t)r->body.len, gz, close);
        if (e == 0 && !no_body) e = put_chunk(c, r->body.ptr, r->body.len, false);
        if (e == 0 && !no_body) r->body_sent += r->body.len;
    }
    r->rflags |= RESP_FINISHED;
    r->body.len = 0;
    if (r->body.cap > SQ__HTTP_BUF_KEEP) sq__buf_free(&r->body); /* don't keep a big body around */
    return e;
}

void sq__http_error_response(sq_http_conn *c, int status)
{
    sq__http_error_text(c, status, NULL);
}

void sq__http_error_text(sq_http_conn *c, int status, const char *text)
{
    sq__http_date_refresh(c->srv);
    const char *reason = sq_http_reason(status);
    /* Built piece by piece: a long server_name (any length is allowed) must not make the
     * head overflow a fixed buffer and the response silently vanish. */
    char tail[256];
    int tn = text ? snprintf(tail, sizeof tail,
                             "Content-Type: text/plain; charset=UTF-8\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s",
                             strlen(text), text)
                  : snprintf(tail, sizeof tail,
                             "Content-Type: text/plain; charset=UTF-8\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%d %s\n",
                             strlen(reason) + 5, status, reason);
    if (tn >= (int)sizeof tail) tn = -1; /* a text too long for the error page: no page */
    char first[64];
    int fn = snprintf(first, sizeof first, "HTTP/1.1 %d %s\r\n", status, reason);
    sq__http_out_acquire(c);
    sq__buf *o = &c->a->out;
    /* the Server and Date lines every status shares */
    const char *common = c->srv->head200 + SQ__HTTP_STATUS200_LEN;
    size_t cn = c->srv->head200_len - SQ__HTTP_STATUS200_LEN;
    if (fn > 0 && tn > 0 && sq__buf_reserve(o, (size_t)fn + cn + (size_t)tn) == 0) {
        sq__buf_append(o, first, (size_t)fn);
        sq__buf_append(o, common, cn);
        sq__buf_append(o, tail, (size_t)tn);
        /* no request reaches request_complete's log line: logged here, as nginx does */
        if (c->srv->s.access_log)
            sq__http_access_log_refused(c, status, text ? strlen(text) : strlen(reason) + 5);
    }
    c->close_after = true;
}
