/* The access log: one line per finished request, for HTTP/1.x and HTTP/2 alike, in the
 * format chosen with sq_log_set_access_format (text, combined, JSON lines).  Fields that come
 * from the client (the URI, Referer, User-Agent) are escaped so that no byte of theirs can
 * end the line, forge a field or break the JSON; each is capped so that a line stays under
 * LINE_MAX_LEN. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"
#include "internal.h"

#define LINE_MAX_LEN 8192
#define FIELD_CAP    2048 /* bytes of one client field logged (then "...") */

typedef struct line {
    char buf[LINE_MAX_LEN];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (n > sizeof l->buf - 1 - l->len) n = sizeof l->buf - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

static void putf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
    va_end(ap);
    if (n > 0) l->len += (size_t)n < sizeof l->buf - l->len ? (size_t)n : sizeof l->buf - 1 - l->len;
}

/* nginx's escaping for combined lines: '"', '\\', control bytes and bytes >= 0x7f as \xHH. */
static void put_nginx(line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    bool cut = n > FIELD_CAP;
    if (cut) n = FIELD_CAP;
    for (size_t i = 0; i < n && l->len + 5 < sizeof l->buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(l, e, 4);
        } else {
            l->buf[l->len++] = (char)c;
            l->buf[l->len] = '\0';
        }
    }
    if (cut) put(l, "...", 3);
}

/* A JSON string (with its quotes).  Bytes >= 0x80 are escaped as \u00XX (read as Latin-1),
 * so the line is valid JSON (and ASCII) whatever the client sent. */
static void put_json(line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bool cut = n > FIELD_CAP;
    if (cut) n = FIELD_CAP;
    put(l, "\"", 1);
    for (size_t i = 0; i < n && l->len + 8 < sizeof l->buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(l, e, 6);
        } else {
            l->buf[l->len++] = (char)c;
            l->buf[l->len] = '\0';
        }
    }
    if (cut) put(l, "...", 3);
    put(l, "\"", 1);
}

static sq_str header(const sq_http_request *req, const char *name)
{
    sq_str v = sq_http_header_get((sq_http_request *)req, name);
    return v.ptr ? v : (sq_str){"", 0};
}

/* One line's fields.  method, uri and version come from the client: escaped on output
 * (the text format prints the method as it is: a token, checked by the parser or by
 * request_line()). */
typedef struct entry {
    int status, level;
    sq_str method, uri, version; /* {NULL, 0}: no request line ("-") */
    const char *remote;
    uint64_t bytes;
    double ms;
    sq_str ref, ua;
    bool h2;
} entry;

static void emit(const entry *e)
{
    line l = {.len = 0};
    l.buf[0] = '\0';
    bool known = e->method.ptr != NULL;
    int fmt = sq_log_get_access_format();
    if (fmt == SQ_ACCESS_LOG_TEXT) {
        if (known) {
            putf(&l, "%d %.*s ", e->status, (int)e->method.len, e->method.ptr);
            put_nginx(&l, e->uri.ptr, e->uri.len);
        } else {
            putf(&l, "%d - -", e->status);
        }
        putf(&l, " (%s) %.2fms%s", e->remote, e->ms, e->h2 ? " h2" : "");
        sq__log_line(e->level, l.buf);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char date[40];
    if (fmt == SQ_ACCESS_LOG_COMBINED) {
        strftime(date, sizeof date, "%d/%b/%Y:%H:%M:%S +0000", &tm);
        putf(&l, "%s - - [%s] \"", e->remote, date);
        if (known) {
            put_nginx(&l, e->method.ptr, e->method.len);
            put(&l, " ", 1);
            put_nginx(&l, e->uri.ptr, e->uri.len);
            put(&l, " ", 1);
            put_nginx(&l, e->version.ptr, e->version.len);
        } else {
            put(&l, "-", 1); /* nginx's "$request" when there was none */
        }
        putf(&l, "\" %d %llu \"", e->status, (unsigned long long)e->bytes);
        put_nginx(&l, e->ref.ptr, e->ref.len);
        put(&l, "\" \"", 3);
        put_nginx(&l, e->ua.ptr, e->ua.len);
        put(&l, "\"", 1);
    } else {
        static const sq_str none = {"-", 1};
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
        putf(&l, "{\"time\":\"%s.%03ldZ\",\"remote\":", date, ts.tv_nsec / 1000000);
        put_json(&l, e->remote, strlen(e->remote));
        sq_str m = known ? e->method : none, u = known ? e->uri : none,
               v = known ? e->version : none;
        put(&l, ",\"method\":", 10);
        put_json(&l, m.ptr, m.len);
        put(&l, ",\"uri\":", 7);
        put_json(&l, u.ptr, u.len);
        put(&l, ",\"version\":", 11);
        put_json(&l, v.ptr, v.len);
        putf(&l, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"referer\":", e->status,
             (unsigned long long)e->bytes, e->ms);
        put_json(&l, e->ref.ptr, e->ref.len);
        put(&l, ",\"user_agent\":", 14);
        put_json(&l, e->ua.ptr, e->ua.len);
        put(&l, "}", 1);
    }
    sq__log_line(e->level, l.buf);
}

static int level_of(int status)
{
    return status < 400 ? SQ_LOG_INFO : status < 500 ? SQ_LOG_WARNING : SQ_LOG_ERROR;
}

void sq__http_access_log(const sq__http_req *r)
{
    entry e = {.status = r->status, .level = level_of(r->status)};
    if (!sq__log_enabled(e.level)) return;
    const sq_http_request *q = &r->pub;
    char version[16];
    if (q->version_major == 2)
        snprintf(version, sizeof version, "HTTP/2.0");
    else
        snprintf(version, sizeof version, "HTTP/1.%d", q->version_minor);
    e.method = q->method;
    e.uri = q->uri;
    e.version = (sq_str){version, strlen(version)};
    e.remote = r->remote_ip;
    e.bytes = r->body_sent;
    /* The real clock: the loop's cached one would hide a handler that blocked the loop. */
    e.ms = ((double)sq__mono_ns() / 1e9 - q->start_time) * 1000.0;
    e.ref = header(q, "Referer");
    e.ua = header(q, "User-Agent");
    e.h2 = r->h2;
    emit(&e);
}

/* The request line at the start of a head the server refused, if it came whole and is one
 * ("METHOD SP target SP HTTP/d.d", the method a token, the target without spaces or
 * control bytes). */
static bool request_line(const char *p, size_t n, entry *e)
{
    const char *eol = memchr(p, '\n', n);
    if (!eol) return false;
    size_t len = (size_t)(eol - p);
    if (len && p[len - 1] == '\r') len--;
    const char *sp1 = memchr(p, ' ', len);
    if (!sp1 || sp1 == p || len - (size_t)(sp1 - p) < 10) return false;
    const char *v = p + len - 8, *sp2 = v - 1;
    if (*sp2 != ' ' || sp2 <= sp1 + 1 || memcmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return false;
    for (const char *s = p; s < sp1; s++)
        if (!sq__http_tchar[(unsigned char)*s]) return false;
    for (const char *s = sp1 + 1; s < sp2; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return false;
    e->method = (sq_str){p, (size_t)(sp1 - p)};
    e->uri = (sq_str){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    e->version = (sq_str){v, 8};
    return true;
}

void sq__http_access_log_refused(const sq_http_conn *c, int status, size_t bytes)
{
    entry e = {.status = status, .level = level_of(status), .bytes = bytes};
    if (!sq__log_enabled(e.level)) return;
    char ip[48];
    sq__http_format_peer(c, ip);
    e.remote = ip;
    if (c->a->rbuf && c->a->rlen > c->a->rpos)
        request_line(c->a->rbuf + c->a->rpos, c->a->rlen - c->a->rpos, &e);
    e.ref = e.ua = (sq_str){"", 0}; /* (the headers were not taken) */
    emit(&e);
}
