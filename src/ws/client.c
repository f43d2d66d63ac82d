/* sq_ws_connect: the client side (Tornado's websocket_connect).  A coroutine resolves the
 * URL and connects with sq_tcp_connect (names are resolved on the executor), takes the
 * socket from the stream, sends the handshake with a random key, reads and checks the 101
 * (at most 64 KiB of head), then hands the socket to the connection core. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "squall/coro.h"
#include "squall/stream.h"
#include "transport/transport.h"
#include "ws/ws_internal.h"

#define DEFAULT_CONNECT_TIMEOUT 20.0

typedef struct connect_op {
    sq_loop *loop;
    sq_future *fut;
    char *host; /* without brackets */
    int port;
    char *request;
    size_t request_len;
    char accept[29];
    char *protocols; /* what we offered, NUL-separated, double NUL at the end */
    bool offered_deflate;
    double timeout;
    double deadline; /* loop time: connect_timeout covers the TCP connect and the handshake */
    bool tls;        /* wss:// */
    sq_tls_context *tls_ctx; /* a reference, or NULL: the system CA store */
    sq_ws_settings settings;
} connect_op;

static void op_free(connect_op *op)
{
    sq_tls_context_free(op->tls_ctx);
    free(op->host);
    free(op->request);
    free(op->protocols);
    free(op);
}

/* ws://host[:port][/path][?query] into host, port and the request target. */
static int parse_url(const char *url, char **host, int *port, char **target, bool *tls)
{
    const char *p;
    *tls = !strncasecmp(url, "wss://", 6);
    if (!*tls && strncasecmp(url, "ws://", 5)) return -EINVAL;
    p = url + (*tls ? 6 : 5);
    const char *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) return -EINVAL;
        p = he + 1;
    } else {
        hs = p;
        while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#') p++;
        he = p;
    }
    if (he == hs) return -EINVAL;
    for (const char *c = hs; c < he; c++)
        if ((unsigned char)*c <= ' ' || *c == '@' || *c == '/') return -EINVAL;
    *port = *tls ? 443 : 80;
    if (*p == ':') {
        p++;
        long v = 0;
        const char *st = p;
        while (*p >= '0' && *p <= '9' && v <= 65535) v = v * 10 + (*p++ - '0');
        if (p == st || v < 1 || v > 65535) return -EINVAL;
        *port = (int)v;
    }
    if (*p && *p != '/' && *p != '?' && *p != '#') return -EINVAL;
    size_t tl = strcspn(p, "#");
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) return -EINVAL;
    *host = strndup(hs, (size_t)(he - hs));
    if (tl == 0 || *p == '?') {
        *target = malloc(tl + 2);
        if (*target) {
            (*target)[0] = '/';
            memcpy(*target + 1, p, tl);
            (*target)[tl + 1] = 0;
        }
    } else {
        *target = strndup(p, tl);
    }
    if (!*host || !*target) {
        free(*host);
        free(*target);
        return -ENOMEM;
    }
    return 0;
}

static bool header_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n') return false;
    return true;
}

static int build_request(connect_op *op, const char *target, const sq_ws_connect_options *o)
{
    char key[25];
    sq__ws_make_key(key);
    sq__ws_accept_key(key, 24, op->accept);
    sq__buf b = {0};
    char line[512];
    bool v6 = strchr(op->host, ':') != NULL;
    /* the target and the host can be longer than `line`: appended as they are */
    sq__buf_append(&b, "GET ", 4);
    sq__buf_append(&b, target, strlen(target));
    sq__buf_append(&b, " HTTP/1.1\r\nHost: ", 17);
    if (v6) sq__buf_append(&b, "[", 1);
    sq__buf_append(&b, op->host, strlen(op->host));
    if (v6) sq__buf_append(&b, "]", 1);
    int n;
    if (op->port != (op->tls ? 443 : 80)) {
        n = snprintf(line, sizeof line, ":%d", op->port);
        sq__buf_append(&b, line, (size_t)n);
    }
    n = snprintf(line, sizeof line,
                 "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n",
                 key);
    if (sq__buf_append(&b, line, (size_t)n) < 0) goto nomem;
    if (o && o->origin) {
        if (!header_ok(o->origin)) goto inval;
        sq__buf_append(&b, "Origin: ", 8);
        sq__buf_append(&b, o->origin, strlen(o->origin));
        sq__buf_append(&b, "\r\n", 2);
    }
    if (o && o->nsubprotocols) {
        size_t total = 1;
        for (size_t i = 0; i < o->nsubprotocols; i++) total += strlen(o->subprotocols[i]) + 1;
        op->protocols = calloc(1, total);
        if (!op->protocols) goto nomem;
        char *q = op->protocols;
        sq__buf_append(&b, "Sec-WebSocket-Protocol: ", 24);
        for (size_t i = 0; i < o->nsubprotocols; i++) {
            const char *s = o->subprotocols[i];
            if (!header_ok(s) || !*s || strchr(s, ',')) goto inval;
            if (i) sq__buf_append(&b, ", ", 2);
            sq__buf_append(&b, s, strlen(s));
            strcpy(q, s);
            q += strlen(s) + 1;
        }
        sq__buf_append(&b, "\r\n", 2);
    }
    if (!(o && o->no_compression)) {
        char offer[128];
        size_t ol = sq__ws_pmd_offer(&op->settings, offer, sizeof offer);
        sq__buf_append(&b, "Sec-WebSocket-Extensions: ", 26);
        sq__buf_append(&b, offer, ol);
        sq__buf_append(&b, "\r\n", 2);
        op->offered_deflate = true;
    }
    for (size_t i = 0; o && i < o->nheaders; i++) {
        const char *hd = o->headers[i];
        if (!header_ok(hd) || !strchr(hd, ':')) goto inval;
        sq__buf_append(&b, hd, strlen(hd));
        sq__buf_append(&b, "\r\n", 2);
    }
    /* a failed append above leaves a short request: check the whole thing once */
    if (sq__buf_append(&b, "\r\n", 2) < 0 || !b.len || !memmem(b.ptr, b.len, "\r\n\r\n", 4))
        goto nomem;
    op->request = b.ptr;
    op->request_len = b.len;
    return 0;
nomem:
    sq__buf_free(&b);
    return -ENOMEM;
inval:
    sq__buf_free(&b);
    return -EINVAL;
}

/* --- the response ------------------------------------------------------------------------------
 */

static bool exact_offered(const connect_op *op, const char *p, size_t n)
{
    for (const char *q = op->protocols; q && *q; q += strlen(q) + 1)
        if (strlen(q) == n && !memcmp(q, p, n)) return true;
    return false;
}

/* Check the head [buf, buf+len) (ending in CRLFCRLF).  0 with the negotiated parameters. */
static int check_response(connect_op *op, const char *buf, size_t len, sq__ws_pmd *pmd,
                          bool *deflate, char **proto)
{
    const char *end = buf + len;
    const char *eol = memmem(buf, len, "\r\n", 2);
    int status = 0;
    /* "HTTP/1.1 101" then SP or the end of the line; buf is not NUL-terminated (no sscanf) */
    if (eol && eol - buf >= 12 && !memcmp(buf, "HTTP/1.", 7) && buf[7] >= '0' && buf[7] <= '9' &&
        buf[8] == ' ') {
        for (int i = 9; i < 12; i++)
            status = buf[i] >= '0' && buf[i] <= '9' ? status * 10 + (buf[i] - '0') : -1000;
        if (status < 0 || (eol - buf > 12 && buf[12] != ' ')) status = 0;
    }
    if (!eol || status != 101 || buf[7] != '1') {
        sq_log(SQ_LOG_WARNING, "websocket: handshake with %s answered with status %d", op->host,
               status);
        return -EPROTO;
    }
    bool upgrade = false, connection = false, accept = false;
    *deflate = false;
    *proto = NULL;
    for (const char *p = eol + 2; p < end;) {
        const char *le = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!le || le == p) break;
        /* obs-fold (a line starting with SP/HT continues the previous one): a server must
         * not send it (RFC 7230 3.2.4); refused rather than misread as a separate field */
        if (*p == ' ' || *p == '\t') return -EPROTO;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p) return -EPROTO;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vl = (size_t)(ve - v);
#define NAME(s) (nl == sizeof(s) - 1 && !strncasecmp(p, s, nl))
        if (NAME("Upgrade")) {
            upgrade |= sq__ws_has_token(v, vl, "websocket");
        } else if (NAME("Connection")) {
            connection |= sq__ws_has_token(v, vl, "upgrade");
        } else if (NAME("Sec-WebSocket-Accept")) {
            if (accept) return -EPROTO;
            accept = vl == 28 && !memcmp(v, op->accept, 28);
            if (!accept) return -EPROTO;
        } else if (NAME("Sec-WebSocket-Extensions")) {
            if (!op->offered_deflate || *deflate) return -EPROTO;
            if (sq__ws_pmd_response(v, vl, pmd) < 0) return -EPROTO;
            *deflate = true;
        } else if (NAME("Sec-WebSocket-Protocol")) {
            if (*proto || !exact_offered(op, v, vl)) return -EPROTO;
            *proto = strndup(v, vl);
            if (!*proto) return -ENOMEM;
        }
#undef NAME
        p = le + 2;
    }
    if (!upgrade || !connection || !accept) return -EPROTO;
    return 0;
}

/* Await f, giving up at the connect deadline. */
static int64_t await_deadline(connect_op *op, sq_future *f, void **value)
{
    double left = op->deadline - sq_loop_time(op->loop);
    if (!f) return -ENOMEM;
    f = sq_with_timeout(f, left > 0.001 ? left : 0.001);
    return f ? sq_await(f, value) : -ENOMEM;
}

/* Send the upgrade request on the connected stream, read the 101, and hand the socket (and
 * its TLS transport) to the connection core. */
static int handshake(connect_op *op, sq_stream *s, sq_ws **out)
{
    int64_t st = await_deadline(op, sq_stream_write_future(s, op->request, op->request_len), NULL);
    if (st < 0) return (int)st;
    void *v = NULL;
    st = await_deadline(op, sq_stream_read_until_future(s, "\r\n\r\n", 4, SQ__WS_MAX_HANDSHAKE),
                        &v);
    if (st == -EMSGSIZE || st == SQ_ECLOSED) return -EPROTO; /* no valid answer */
    if (st < 0) return (int)st;
    sq__ws_pmd pmd;
    bool deflate;
    char *proto = NULL;
    int e = check_response(op, v, (size_t)st, &pmd, &deflate, &proto);
    if (e < 0) {
        free(proto);
        return e;
    }
    int fd;
    sq__tp *tp;
    char *extra;
    size_t extra_len;
    e = sq__stream_release(s, &fd, &tp, &extra, &extra_len);
    if (e < 0) {
        free(proto);
        return e;
    }
    sq_ws *ws = sq__ws_new(op->loop, fd, NULL, &op->settings);
    if (ws) sq__ws_set_transport(ws, tp);
    if (!ws || (deflate && sq__ws_set_deflate(ws, &pmd) < 0) ||
        sq__ws_set_initial(ws, extra, extra_len) < 0) {
        free(proto);
        free(extra);
        if (ws)
            sq__ws_discard(ws, true);
        else
            sq__tp_close(fd, tp, false);
        return -ENOMEM;
    }
    free(extra);
    sq__ws_set_subprotocol(ws, proto);
    sq__ws_set_remote_ip(ws, op->host);
    sq__ws_client_start(ws);
    *out = ws;
    return 0;
}

static void *connect_task(void *arg)
{
    connect_op *op = arg;
    int err = 0;
    sq_ws *ws = NULL;
    op->deadline = sq_loop_time(op->loop) + op->timeout;
    sq_stream *s = op->tls ? sq_tcp_connect_tls(op->host, op->port, op->timeout, op->tls_ctx, &err)
                           : sq_tcp_connect(op->host, op->port, op->timeout, &err);
    if (s) {
        err = handshake(op, s, &ws);
        sq_stream_free(s); /* its socket went to ws, or is closed with it */
    }
    if (sq_future_done(op->fut)) {
        sq_ws_free(ws); /* cancelled meanwhile */
    } else if (ws) {
        sq_future_set_result(op->fut, ws);
    } else {
        sq_future_set_error(op->fut, err ? err : -EPROTO);
    }
    sq_future_release(op->fut);
    op_free(op);
    return NULL;
}

static void ws_value_free(void *ws)
{
    sq_ws_free(ws);
}

sq_future *sq_ws_connect_future(sq_loop *loop, const char *url, const sq_ws_connect_options *opts)
{
    if (!loop) loop = sq_loop_current();
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    sq_future_set_value_free(f, ws_value_free); /* a connection nobody takes is freed */
    connect_op *op = calloc(1, sizeof *op);
    char *target = NULL;
    int e = op ? parse_url(url, &op->host, &op->port, &target, &op->tls) : -ENOMEM;
    if (e == 0) {
        op->loop = loop;
        if (opts && opts->tls) {
            if (sq_tls_context_is_server(opts->tls)) e = -EINVAL;
            op->tls_ctx = sq_tls_context_ref(opts->tls);
        }
    }
    if (e == 0) {
        op->timeout =
            opts && opts->connect_timeout > 0 ? opts->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
        if (opts) op->settings = opts->settings;
        e = build_request(op, target, opts);
    }
    free(target);
    if (e == 0) {
        op->fut = sq_future_retain(f);
        if (sq_go(loop, connect_task, op) < 0) {
            sq_future_release(f);
            e = -ENOMEM;
        }
    }
    if (e < 0) {
        if (op) op_free(op);
        sq_future_set_error(f, e);
    }
    return f;
}

sq_ws *sq_ws_connect(const char *url, const sq_ws_connect_options *opts, int *err)
{
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (!sq_in_coro()) {
        *err = SQ_ENOTCORO;
        return NULL;
    }
    sq_future *f = sq_ws_connect_future(sq_coro_loop(sq_coro_self()), url, opts);
    if (!f) {
        *err = -ENOMEM;
        return NULL;
    }
    void *v = NULL;
    int64_t st = sq_await(f, &v);
    if (st < 0) {
        *err = (int)st;
        return NULL;
    }
    return v;
}
