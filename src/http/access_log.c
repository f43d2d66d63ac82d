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

void sq__http_access_log(const sq__http_req *r)
{
    int st = r->status;
    int level = st < 400 ? SQ_LOG_INFO : st < 500 ? SQ_LOG_WARNING : SQ_LOG_ERROR;
    if (!sq__log_enabled(level)) return;
    const sq_http_request *q = &r->pub;
    /* The real clock: the loop's cached one would hide a handler that blocked the loop. */
    double ms = ((double)sq__mono_ns() / 1e9 - q->start_time) * 1000.0;
    line l = {.len = 0};
    l.buf[0] = '\0';
    int fmt = sq_log_get_access_format();
    if (fmt == SQ_ACCESS_LOG_TEXT) {
        putf(&l, "%d %.*s ", st, (int)q->method.len, q->method.ptr);
        put_nginx(&l, q->uri.ptr, q->uri.len);
        putf(&l, " (%s) %.2fms%s", r->remote_ip, ms, r->h2 ? " h2" : "");
        sq__log_line(level, l.buf);
        return;
    }
    char version[16];
    if (q->version_major == 2)
        snprintf(version, sizeof version, "HTTP/2.0");
    else
        snprintf(version, sizeof version, "HTTP/1.%d", q->version_minor);
    sq_str ref = header(q, "Referer"), ua = header(q, "User-Agent");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char date[40];
    if (fmt == SQ_ACCESS_LOG_COMBINED) {
        strftime(date, sizeof date, "%d/%b/%Y:%H:%M:%S +0000", &tm);
        putf(&l, "%s - - [%s] \"", r->remote_ip, date);
        put_nginx(&l, q->method.ptr, q->method.len);
        put(&l, " ", 1);
        put_nginx(&l, q->uri.ptr, q->uri.len);
        putf(&l, " %s\" %d %llu \"", version, st, (unsigned long long)r->body_sent);
        put_nginx(&l, ref.ptr, ref.len);
        put(&l, "\" \"", 3);
        put_nginx(&l, ua.ptr, ua.len);
        put(&l, "\"", 1);
    } else {
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
        putf(&l, "{\"time\":\"%s.%03ldZ\",\"remote\":", date, ts.tv_nsec / 1000000);
        put_json(&l, r->remote_ip, strlen(r->remote_ip));
        put(&l, ",\"method\":", 10);
        put_json(&l, q->method.ptr, q->method.len);
        put(&l, ",\"uri\":", 7);
        put_json(&l, q->uri.ptr, q->uri.len);
        putf(&l, ",\"version\":\"%s\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"referer\":",
             version, st, (unsigned long long)r->body_sent, ms);
        put_json(&l, ref.ptr, ref.len);
        put(&l, ",\"user_agent\":", 14);
        put_json(&l, ua.ptr, ua.len);
        put(&l, "}", 1);
    }
    sq__log_line(level, l.buf);
}
