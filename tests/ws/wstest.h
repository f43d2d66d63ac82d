/* Helpers for the WebSocket tests: a squall app with test routes on the test's loop, and a
 * "raw" client (an sq_stream in a coroutine) that speaks frames byte by byte, for what a
 * well-behaved client never sends. */
#ifndef SQ_TESTS_WSTEST_H
#define SQ_TESTS_WSTEST_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "testutil.h"
#include "squall.h"

/* --- what the server saw ------------------------------------------------------------------ */

typedef struct ws_log {
    int opens, closes, pings, pongs, messages;
    int last_code;
    char last_reason[128];
    char last_ping[128];
    int send_after_close; /* sq_ws_send's result inside on_close */
} ws_log;

static ws_log g_log;

static void t_open(sq_ws *ws)
{
    g_log.opens++;
}

static void t_close(sq_ws *ws)
{
    g_log.closes++;
    g_log.last_code = sq_ws_close_code(ws);
    snprintf(g_log.last_reason, sizeof g_log.last_reason, "%s", sq_ws_close_reason(ws));
    g_log.send_after_close = sq_ws_send(ws, "x", 1, false);
}

static void t_echo(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    g_log.messages++;
    if (len == 8 && !memcmp(msg, "close me", 8)) {
        sq_ws_close(ws, 4001, "bye now");
        return;
    }
    sq_ws_send(ws, msg, len, binary);
}

static void t_ping(sq_ws *ws, const char *d, size_t n)
{
    g_log.pings++;
    snprintf(g_log.last_ping, sizeof g_log.last_ping, "%.*s", (int)n, d);
}

static void t_pong(sq_ws *ws, const char *d, size_t n)
{
    g_log.pongs++;
}

static void t_slow(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    /* copy first: the data stays valid across the sleep, but check that too */
    char copy[64];
    size_t n = len < sizeof copy ? len : sizeof copy;
    memcpy(copy, msg, n);
    sq_sleep(0.001 * (double)(rand() % 5));
    if (memcmp(copy, msg, n)) g_log.last_code = -1;
    sq_ws_send(ws, msg, len, binary);
}

static const char *t_pick(sq_handler *h, const char *const *offered, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(offered[i], "chat.v2")) return offered[i];
    return NULL;
}

#define T_CLASS(...)                                                                               \
    ((void *)&(const sq_ws_class){.open = t_open,                                                  \
                                  .on_message = t_echo,                                            \
                                  .on_close = t_close,                                             \
                                  .on_ping = t_ping,                                               \
                                  .on_pong = t_pong,                                               \
                                  __VA_ARGS__})

static void t_plain(sq_handler *h)
{
    sq_write(h, "plain ok");
}

static const sq_route ws_routes[] = {
    {"/echo", &sq_websocket_handler, NULL, T_CLASS(.settings = {.max_message_size = 4u << 20})},
    {"/small", &sq_websocket_handler, NULL,
     T_CLASS(.settings = {.max_message_size = 1024, .compression = true})},
    {"/deflate", &sq_websocket_handler, NULL, T_CLASS(.settings = {.compression = true})},
    {"/deflate_nctx", &sq_websocket_handler, NULL,
     T_CLASS(.settings = {.compression = true,
                          .no_context_takeover = true,
                          .max_window_bits = 10})},
    {"/proto", &sq_websocket_handler, NULL, T_CLASS(.select_subprotocol = t_pick)},
    {"/ping", &sq_websocket_handler, NULL,
     T_CLASS(.settings = {.ping_interval = 0.1, .ping_timeout = 0.3})},
    {"/ctimeout", &sq_websocket_handler, NULL, T_CLASS(.settings = {.close_timeout = 0.3})},
    {"/slow", &sq_websocket_handler, NULL,
     ((void *)&(const sq_ws_class){.on_message = t_slow, .on_close = t_close})},
    {"/plain", &(sq_handler_class){.get = t_plain}, NULL, NULL},
    {0},
};

typedef struct wsenv {
    sq_loop *loop;
    sq_app *app;
    int port;
    char url[128];
} wsenv;

/* The app on a new loop, listening on an ephemeral port; `as` NULL: no access log. */
static inline void wsenv_start_with(wsenv *e, const sq_app_settings *as)
{
    memset(&g_log, 0, sizeof g_log);
    e->loop = sq_loop_new(NULL);
    assert_non_null(e->loop);
    sq_loop_make_current(e->loop);
    sq_app_settings quiet = {.no_access_log = true};
    e->app = sq_app_new(ws_routes, as ? as : &quiet);
    assert_non_null(e->app);
    assert_int_equal(sq_app_listen(e->app, 0, "127.0.0.1"), 0);
    e->port = sq_http_server_port(sq_app_server(e->app));
    snprintf(e->url, sizeof e->url, "ws://127.0.0.1:%d", e->port);
}

static inline void wsenv_start(wsenv *e)
{
    wsenv_start_with(e, NULL);
}

/* Let pending closes and frees run, then free everything. */
static inline void wsenv_stop(wsenv *e)
{
    for (int i = 0; i < 20; i++) sq_loop_run_once(e->loop, false);
    sq_app_free(e->app);
    for (int i = 0; i < 5; i++) sq_loop_run_once(e->loop, false);
    sq_loop_free(e->loop);
}

static inline void wt_guard_stop(void *arg)
{
    sq_loop_stop(arg);
}

/* --- the raw client --------------------------------------------------------------------------- */

/* Connect and send a handshake with `extra` header lines; returns the stream and the
 * status of the response (its head copied into head). */
static inline sq_stream *raw_open(int port, const char *path, const char *extra, int *status,
                                  char *head, size_t headlen)
{
    int err;
    sq_stream *s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: keep-alive, Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                     path, port, extra ? extra : "Sec-WebSocket-Version: 13\r\n");
    assert_int_equal(sq_stream_write(s, req, (size_t)n), 0);
    const char *d;
    ssize_t r = sq_stream_read_until(s, "\r\n\r\n", 4, 65536, &d);
    assert_true(r > 0);
    *status = 0;
    sscanf(d, "HTTP/1.1 %d", status);
    if (head) snprintf(head, headlen, "%.*s", (int)r, d);
    return s;
}

/* A frame from the raw client (masked with a fixed key unless `unmasked`). */
static inline void raw_frame(sq_stream *s, uint8_t b0, const void *data, size_t len, bool unmasked)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = b0;
    uint8_t m = unmasked ? 0 : 0x80;
    if (len < 126) {
        h[hl++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = m | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    if (!unmasked) {
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    uint8_t *buf = malloc(hl + len + 1);
    memcpy(buf, h, hl);
    for (size_t i = 0; i < len; i++)
        buf[hl + i] = ((const uint8_t *)data)[i] ^ (unmasked ? 0 : key[i & 3]);
    sq_stream_write(s, buf, hl + len);
    free(buf);
}

/* Read one frame from the server: its first byte (-1 on EOF/error), payload into out. */
static inline int raw_read(sq_stream *s, char *out, size_t outcap, size_t *outlen)
{
    const char *d;
    if (sq_stream_read_bytes(s, 2, false, &d) != 2) return -1;
    uint8_t b0 = (uint8_t)d[0], b1 = (uint8_t)d[1];
    if (b1 & 0x80) return -2; /* the server never masks */
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
        if (sq_stream_read_bytes(s, 2, false, &d) != 2) return -1;
        len = ((uint64_t)(uint8_t)d[0] << 8) | (uint8_t)d[1];
    } else if (len == 127) {
        if (sq_stream_read_bytes(s, 8, false, &d) != 8) return -1;
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | (uint8_t)d[i];
    }
    *outlen = (size_t)len;
    if (len) {
        if (sq_stream_read_bytes(s, (size_t)len, false, &d) != (ssize_t)len) return -1;
        memcpy(out, d, len < outcap ? len : outcap);
    }
    return b0;
}

/* Read frames until a close frame: its code (0 if none), or -1 if the connection ended. */
static inline int raw_expect_close(sq_stream *s)
{
    char buf[256];
    size_t n;
    for (int i = 0; i < 100; i++) {
        int b0 = raw_read(s, buf, sizeof buf, &n);
        if (b0 < 0) return -1;
        if ((b0 & 0x0f) == 8) return n >= 2 ? ((uint8_t)buf[0] << 8) | (uint8_t)buf[1] : 0;
    }
    return -1;
}

/* A plain GET on a new connection: the status. */
static inline int raw_http(int port, const char *raw, char *head, size_t headlen)
{
    int err;
    sq_stream *s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    assert_int_equal(sq_stream_write(s, raw, strlen(raw)), 0);
    const char *d;
    ssize_t r = sq_stream_read_until(s, "\r\n\r\n", 4, 65536, &d);
    int status = 0;
    if (r > 0) sscanf(d, "HTTP/1.1 %d", &status);
    if (head && r > 0) snprintf(head, headlen, "%.*s", (int)r, d);
    sq_stream_free(s);
    return status;
}

#endif
