/* sq_websocket_handler: the server side of the opening handshake (Tornado's
 * WebSocketHandler.get).  It runs on the request's coroutine: validate the upgrade, ask
 * check_origin and select_subprotocol, negotiate permessage-deflate, send the 101, take the
 * socket from the HTTP server (sq_http_detach_connection) and run open(); from then on the
 * connection core (conn.c) drives the socket from the loop. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ws/ws_internal.h"

#define MAX_PROTOCOLS 32
#define EXT_MAX       4096 /* joined Sec-WebSocket-Extensions values considered */

static bool header_is(const sq_http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && !strncasecmp(h->name, name, n);
}

/* Whether any header `name` holds `token` in its comma list. */
static bool any_has_token(const sq_http_request *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (header_is(&req->headers[i], name) &&
            sq__ws_has_token(req->headers[i].value, req->headers[i].value_len, token))
            return true;
    return false;
}

/* Tornado's rule: the Origin's host[:port] must equal the Host header. */
static bool same_origin(const sq_http_request *req, const char *origin)
{
    if (!origin) return true;
    const char *p = strstr(origin, "://");
    if (!p) return false;
    p += 3;
    size_t n = strcspn(p, "/?#");
    /* no userinfo in an Origin; compare host[:port] case-insensitively */
    return req->host.ptr && req->host.len == n && !strncasecmp(p, req->host.ptr, n);
}

static void reject(sq_handler *h, int status, const char *why)
{
    sq_http_request *req = sq_handler_request(h);
    sq_log(SQ_LOG_INFO, "websocket: %d for %s: %s", status, req->remote_ip, why);
    sq_send_error(h, status, why);
}

/* Split the Sec-WebSocket-Protocol headers into NUL-terminated names (in buf). */
static size_t parse_protocols(const sq_http_request *req, char *buf, size_t buflen,
                              const char **out, size_t max)
{
    size_t n = 0, used = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sq_http_header *hd = &req->headers[i];
        if (!header_is(hd, "Sec-WebSocket-Protocol")) continue;
        const char *v = hd->value, *end = v + hd->value_len;
        while (v < end && n < max) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
            const char *st = v;
            while (v < end && *v != ',') v++;
            const char *e = v;
            while (e > st && (e[-1] == ' ' || e[-1] == '\t')) e--;
            size_t len = (size_t)(e - st);
            if (!len) continue;
            if (used + len + 1 > buflen) return n;
            memcpy(buf + used, st, len);
            buf[used + len] = 0;
            out[n++] = buf + used;
            used += len + 1;
        }
    }
    return n;
}

static void ws_get(sq_handler *h)
{
    sq_http_request *req = sq_handler_request(h);
    const sq_ws_class *cls = sq_handler_init_arg(h);
    if (!cls) {
        reject(h, 500, "sq_websocket_handler needs a sq_ws_class as the route's init_arg");
        return;
    }
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3)) {
        sq_set_header(h, "Allow", "GET");
        reject(h, 405, "a WebSocket handshake must be a GET");
        return;
    }
    if (req->version_minor < 1) {
        reject(h, 400, "a WebSocket handshake needs HTTP/1.1");
        return;
    }
    if (!any_has_token(req, "Upgrade", "websocket")) {
        reject(h, 400, "Can \"Upgrade\" only to \"WebSocket\".");
        return;
    }
    if (!any_has_token(req, "Connection", "upgrade")) {
        reject(h, 400, "\"Connection\" must be \"Upgrade\".");
        return;
    }
    if (req->content_length > 0 || req->chunked) {
        /* its bytes would be taken for frames, or (still unread) make the detach fail after
         * the 101 head was set: the web layer would then send that 101 over HTTP */
        reject(h, 400, "a WebSocket handshake has no body");
        return;
    }
    sq_str ver = sq_http_header_get(req, "Sec-WebSocket-Version");
    if (!ver.ptr || ver.len != 2 || memcmp(ver.ptr, "13", 2)) {
        sq_set_header(h, "Sec-WebSocket-Version", "13");
        reject(h, 426, "unsupported Sec-WebSocket-Version");
        return;
    }
    sq_str key = sq_http_header_get(req, "Sec-WebSocket-Key");
    if (!key.ptr || !sq__ws_key_valid(key.ptr, key.len)) {
        reject(h, 400, "missing or invalid Sec-WebSocket-Key");
        return;
    }
    /* Origin */
    sq_str o = sq_http_header_get(req, "Origin");
    char *origin = o.ptr ? strndup(o.ptr, o.len) : NULL;
    bool ok = cls->check_origin ? cls->check_origin(h, origin) : same_origin(req, origin);
    free(origin);
    if (!ok) {
        reject(h, 403, "Cross origin websockets not allowed");
        return;
    }
    /* subprotocol */
    char *proto = NULL;
    if (cls->select_subprotocol) {
        char buf[1024];
        const char *offered[MAX_PROTOCOLS];
        size_t n = parse_protocols(req, buf, sizeof buf, offered, MAX_PROTOCOLS);
        if (n) {
            const char *pick = cls->select_subprotocol(h, offered, n);
            if (pick) {
                proto = strdup(pick);
                if (!proto) {
                    reject(h, 500, "out of memory");
                    return;
                }
            }
        }
    }
    /* permessage-deflate */
    sq__ws_pmd pmd;
    char ext_resp[256];
    bool deflate = false;
    if (cls->settings.compression) {
        char ext[EXT_MAX];
        size_t el = 0;
        for (size_t i = 0; i < req->nheaders; i++) {
            const sq_http_header *hd = &req->headers[i];
            if (!header_is(hd, "Sec-WebSocket-Extensions")) continue;
            if (el + hd->value_len + 2 > sizeof ext) break;
            if (el) ext[el++] = ',';
            memcpy(ext + el, hd->value, hd->value_len);
            el += hd->value_len;
        }
        deflate =
            el && sq__ws_pmd_accept(ext, el, &cls->settings, &pmd, ext_resp, sizeof ext_resp) == 1;
    }
    char accept[29];
    sq__ws_accept_key(key.ptr, key.len, accept);
    sq_set_status(h, 101, NULL);
    sq_set_header(h, "Upgrade", "websocket");
    sq_set_header(h, "Connection", "Upgrade");
    sq_set_header(h, "Sec-WebSocket-Accept", accept);
    if (proto) sq_set_header(h, "Sec-WebSocket-Protocol", proto);
    if (deflate) sq_set_header(h, "Sec-WebSocket-Extensions", ext_resp);

    int fd;
    sq__tp *tp;
    char *extra;
    size_t extra_len;
    /* counted as an upgrade in flight until registered (a graceful shutdown waits for it) */
    sq__http_upgrade_begin(req);
    int e = sq__http_detach(req, &fd, &tp, &extra, &extra_len);
    if (e < 0) {
        sq__http_upgraded_add(req, NULL, NULL);
        free(proto);
        if (e != -ENOMEM) return; /* the client left: nothing to answer */
        /* the 101 was not sent (detach closes the connection when it was): answer 500 */
        static const char *const hs[] = {"Upgrade", "Connection", "Sec-WebSocket-Accept",
                                         "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"};
        for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) sq_http_clear_header(req, hs[i]);
        reject(h, 500, "out of memory");
        return;
    }
    sq_ws *ws = sq__ws_new(sq_coro_loop(sq_coro_self()), fd, cls, NULL);
    if (ws) sq__ws_set_transport(ws, tp);
    if (!ws || (deflate && sq__ws_set_deflate(ws, &pmd) < 0) ||
        sq__ws_set_initial(ws, extra, extra_len) < 0) {
        sq_log(SQ_LOG_ERROR, "websocket: out of memory for a connection");
        sq__http_upgraded_add(req, NULL, NULL);
        free(extra);
        free(proto);
        if (ws)
            sq__ws_discard(ws, true); /* never opened: no on_close */
        else
            sq__tp_close(fd, tp, false);
        return;
    }
    free(extra);
    sq__ws_set_subprotocol(ws, proto);
    sq__ws_set_remote_ip(ws, req->remote_ip);
    sq__ws_server_start(ws, h);
}

/* Runs before the web layer reads a request body: a handshake never has one, and waiting
 * for it (or for its end) would only delay the 400 that ws_get answers anyway. */
static void ws_initialize(sq_handler *h)
{
    sq_http_request *req = sq_handler_request(h);
    bool get = req->method.len == 3 && !memcmp(req->method.ptr, "GET", 3);
    if (get && (req->content_length > 0 || req->chunked))
        reject(h, 400, "a WebSocket handshake has no body");
}

const sq_handler_class sq_websocket_handler = {
    .get = ws_get,
    .initialize = ws_initialize,
};
