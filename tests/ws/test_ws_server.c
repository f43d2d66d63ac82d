/* The WebSocket server (sq_websocket_handler + the connection core) against the squall
 * client and against a raw-socket client that sends what good clients never do. */
#include "wstest.h"

static const sq_ws_connect_options no_deflate = {.no_compression = true};

static sq_ws *connect_to(wsenv *e, const char *path, const sq_ws_connect_options *o)
{
    char url[192];
    snprintf(url, sizeof url, "%s%s", e->url, path);
    int err = 0;
    sq_ws *ws = sq_ws_connect(url, o, &err);
    if (!ws) fail_msg("connect %s: %s", url, sq_strerror(err));
    return ws;
}

static void echo_check(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    assert_int_equal(sq_ws_send(ws, msg, len, binary), 0);
    const char *d;
    bool bin;
    ssize_t n = sq_ws_read_message(ws, &d, &bin);
    assert_int_equal(n, (ssize_t)len);
    assert_int_equal(bin, binary);
    assert_memory_equal(d, msg, len);
}

/* Close from the client with code and reason; both sides see them. */
static void close_check(sq_ws *ws)
{
    int closes = g_log.closes;
    /* a reason that is not UTF-8 (Latin-1 "café") is refused: peers would fail it (1007) */
    assert_int_equal(sq_ws_close(ws, 4000, "caf\xe9"), -EINVAL);
    assert_int_equal(sq_ws_close(ws, 4000, "done here"), 0);
    assert_int_equal(sq_ws_close(ws, 4000, "again"), -EALREADY);
    const char *d;
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), SQ_ECLOSED);
    assert_int_equal(sq_ws_close_code(ws), 4000); /* the server echoed the code */
    for (int i = 0; i < 100 && g_log.closes == closes; i++) sq_sleep(0.01);
    assert_int_equal(g_log.closes, closes + 1);
    assert_int_equal(g_log.last_code, 4000);
    assert_string_equal(g_log.last_reason, "done here");
    assert_int_equal(g_log.send_after_close, SQ_ECLOSED);
    /* sends after close fail and never crash */
    assert_int_equal(sq_ws_send(ws, "x", 1, false), SQ_ECLOSED);
    sq_future *f = sq_ws_write_message(ws, "x", 1, false);
    assert_non_null(f);
    assert_true(sq_future_done(f));
    assert_int_equal(sq_future_status(f), SQ_ECLOSED);
    sq_future_release(f);
    assert_int_equal(sq_ws_ping(ws, "p", 1), SQ_ECLOSED);
    sq_ws_free(ws);
}

static void *echo_task(void *arg)
{
    wsenv *e = arg;
    sq_ws *ws = connect_to(e, "/echo", &no_deflate);
    assert_false(sq_ws_compressed(ws));
    assert_null(sq_ws_subprotocol(ws));
    echo_check(ws, "hello", 5, false);
    echo_check(ws, "\x00\x01\x02\xff", 4, true);
    echo_check(ws, "", 0, false);
    echo_check(ws, "κόσμε", strlen("κόσμε"), false);
    size_t big = 1u << 20;
    char *m = malloc(big);
    for (size_t i = 0; i < big; i++) m[i] = (char)(i * 7);
    echo_check(ws, m, big, true);
    /* write futures resolve once the frame reached the kernel */
    sq_future *f = sq_ws_write_message(ws, m, 1000, true);
    assert_int_equal(sq_await(f, NULL), 0);
    const char *d;
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 1000);
    assert_int_equal(sq_ws_write(ws, m, big, true), 0);
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), (ssize_t)big);
    assert_memory_equal(d, m, big);
    free(m);
    assert_int_equal(g_log.opens, 1);
    close_check(ws);
    return NULL;
}

static void test_echo(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, echo_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *deflate_task(void *arg)
{
    wsenv *e = arg;
    static const char *paths[] = {"/deflate", "/deflate_nctx"};
    size_t big = 300000;
    char *m = malloc(big);
    for (size_t i = 0; i < big; i++) m[i] = "squall websocket "[i % 17];
    for (int p = 0; p < 2; p++) {
        for (int nctx = 0; nctx < 2; nctx++) {
            sq_ws_connect_options o = {.settings = {.no_context_takeover = nctx}};
            sq_ws *ws = connect_to(e, paths[p], &o);
            assert_true(sq_ws_compressed(ws));
            for (int k = 0; k < 3; k++) {
                echo_check(ws, "Hello, compressed world", 23, false);
                echo_check(ws, m, big, k == 1);
                echo_check(ws, "", 0, true);
            }
            close_check(ws);
        }
    }
    /* the server without compression ignores the offer */
    sq_ws *ws = connect_to(e, "/echo", NULL);
    assert_false(sq_ws_compressed(ws));
    echo_check(ws, m, 1000, false);
    close_check(ws);
    free(m);
    return NULL;
}

static void test_deflate(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, deflate_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *proto_task(void *arg)
{
    wsenv *e = arg;
    const char *offer[] = {"chat.v1", "chat.v2"};
    sq_ws_connect_options o = {.subprotocols = offer, .nsubprotocols = 2};
    sq_ws *ws = connect_to(e, "/proto", &o);
    assert_non_null(sq_ws_subprotocol(ws));
    assert_string_equal(sq_ws_subprotocol(ws), "chat.v2");
    echo_check(ws, "hi", 2, false);
    /* a close started by the server, with its code and reason */
    assert_int_equal(sq_ws_send(ws, "close me", 8, false), 0);
    const char *d;
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), SQ_ECLOSED);
    assert_int_equal(sq_ws_close_code(ws), 4001);
    assert_string_equal(sq_ws_close_reason(ws), "bye now");
    sq_ws_free(ws);
    const char *offer1[] = {"chat.v1"};
    o.subprotocols = offer1;
    o.nsubprotocols = 1;
    ws = connect_to(e, "/proto", &o);
    assert_null(sq_ws_subprotocol(ws));
    sq_ws_free(ws);
    return NULL;
}

static void test_subprotocol_and_server_close(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, proto_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *ping_task(void *arg)
{
    wsenv *e = arg;
    /* the client answers the server's pings: the connection stays */
    sq_ws *ws = connect_to(e, "/ping", NULL);
    assert_int_equal(sq_ws_ping(ws, "abc", 3), 0);
    assert_int_equal(sq_ws_ping(ws, NULL, 126), -EINVAL);
    /* reading serves pongs meanwhile: use a timer to end the read with a message */
    double t0 = sq_test_now();
    while (sq_test_now() - t0 < 0.6) {
        echo_check(ws, "tick", 4, false);
        sq_sleep(0.05);
    }
    assert_false(sq_ws_closed(ws));
    assert_true(g_log.pings >= 1);
    assert_string_equal(g_log.last_ping, "abc");
    assert_true(g_log.pongs >= 2);
    sq_ws_free(ws);
    /* a raw peer that never answers is dropped after ping_timeout */
    int status;
    sq_stream *s = raw_open(e->port, "/ping", NULL, &status, NULL, 0);
    assert_int_equal(status, 101);
    int closes = g_log.closes;
    t0 = sq_test_now();
    const char *d;
    ssize_t n = sq_stream_read_until_close(s, 0, &d); /* the pings, then EOF */
    double dt = sq_test_now() - t0;
    assert_true(n >= 2);
    assert_int_equal((uint8_t)d[0], 0x89);
    assert_true(dt >= 0.25 && dt < 3.0);
    sq_stream_free(s);
    for (int i = 0; i < 100 && g_log.closes == closes; i++) sq_sleep(0.01);
    assert_int_equal(g_log.last_code, SQ_WS_CLOSE_ABNORMAL);
    return NULL;
}

static void test_ping_pong_timeout(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, ping_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *ctimeout_task(void *arg)
{
    wsenv *e = arg;
    int status;
    sq_stream *s = raw_open(e->port, "/ctimeout", NULL, &status, NULL, 0);
    assert_int_equal(status, 101);
    raw_frame(s, 0x81, "close me", 8, false);
    double t0 = sq_test_now();
    assert_int_equal(raw_expect_close(s), 4001);
    /* we never answer: the server drops us after close_timeout (0.3 s) */
    const char *d;
    sq_stream_read_until_close(s, 0, &d);
    double dt = sq_test_now() - t0;
    assert_true(dt >= 0.2 && dt < 3.0);
    sq_stream_free(s);
    assert_true(SQ_WS_DEFAULT_CLOSE_TIMEOUT == 5.0);
    return NULL;
}

static void test_close_timeout(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, ctimeout_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *frag_task(void *arg)
{
    wsenv *e = arg;
    int status;
    char head[1024];
    sq_stream *s = raw_open(e->port, "/echo", NULL, &status, head, sizeof head);
    assert_int_equal(status, 101);
    assert_non_null(strcasestr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    raw_frame(s, 0x01, "Hel", 3, false);
    raw_frame(s, 0x89, "ping!", 5, false);
    raw_frame(s, 0x00, "l", 1, false);
    raw_frame(s, 0x80, "o", 1, false);
    char buf[256];
    size_t n;
    assert_int_equal(raw_read(s, buf, sizeof buf, &n), 0x8a); /* the pong comes first */
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "ping!", 5);
    assert_int_equal(raw_read(s, buf, sizeof buf, &n), 0x81);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "Hello", 5);
    /* a close without a code is echoed without one; the server then closes */
    raw_frame(s, 0x88, NULL, 0, false);
    assert_int_equal(raw_expect_close(s), 0);
    const char *d;
    assert_int_equal(sq_stream_read_until_close(s, 0, &d), 0);
    sq_stream_free(s);
    for (int i = 0; i < 100 && g_log.closes == 0; i++) sq_sleep(0.01);
    assert_int_equal(g_log.last_code, SQ_WS_CLOSE_NO_STATUS);
    /* frames sent together with the handshake are not lost */
    int err;
    s = sq_tcp_connect("127.0.0.1", e->port, 5, &err);
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n"
                      "\x81\x82\x01\x01\x01\x01ih",
                      e->port);
    sq_stream_write(s, req, (size_t)rl);
    assert_true(sq_stream_read_until(s, "\r\n\r\n", 4, 65536, &d) > 0);
    assert_int_equal(raw_read(s, buf, sizeof buf, &n), 0x81);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "hi", 2);
    sq_stream_free(s);
    return NULL;
}

static void test_fragments_raw(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, frag_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

/* After each violation: the right close code, and the server serves others. */
static void still_serving(wsenv *e)
{
    assert_int_equal(raw_http(e->port, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 200);
    sq_ws *ws = connect_to(e, "/echo", NULL);
    echo_check(ws, "still here", 10, false);
    sq_ws_free(ws);
}

static int violation(wsenv *e, const char *path, const char *extra, const uint8_t *frame,
                     size_t len, bool raw_bytes)
{
    int status;
    sq_stream *s = raw_open(e->port, path, extra, &status, NULL, 0);
    assert_int_equal(status, 101);
    if (raw_bytes) sq_stream_write(s, frame, len);
    int code = raw_expect_close(s);
    sq_stream_free(s);
    return code;
}

static void *violations_task(void *arg)
{
    wsenv *e = arg;
    int status;
    /* unmasked frame from a client */
    const uint8_t unmasked[] = {0x81, 0x02, 'h', 'i'};
    assert_int_equal(violation(e, "/echo", NULL, unmasked, sizeof unmasked, true), 1002);
    still_serving(e);
    /* reserved bits */
    const uint8_t rsv[] = {0xa1, 0x80, 0, 0, 0, 0};
    assert_int_equal(violation(e, "/echo", NULL, rsv, sizeof rsv, true), 1002);
    /* RSV1 without negotiated compression */
    const uint8_t rsv1[] = {0xc1, 0x80, 0, 0, 0, 0};
    assert_int_equal(violation(e, "/echo", NULL, rsv1, sizeof rsv1, true), 1002);
    /* unknown opcode */
    const uint8_t op[] = {0x83, 0x80, 0, 0, 0, 0};
    assert_int_equal(violation(e, "/echo", NULL, op, sizeof op, true), 1002);
    still_serving(e);
    /* invalid UTF-8 */
    const uint8_t bad[] = {0x81, 0x82, 0, 0, 0, 0, 0xc0, 0x80};
    assert_int_equal(violation(e, "/echo", NULL, bad, sizeof bad, true), 1007);
    still_serving(e);
    /* over max_message_size (1024): the declared length is enough */
    const uint8_t big[] = {0x82, 0xfe, 0x07, 0xd0, 0, 0, 0, 0};
    assert_int_equal(violation(e, "/small", NULL, big, sizeof big, true), 1009);
    still_serving(e);
    /* a deflate bomb: 10 MB of zeros in a few KiB, limit 1024 */
    size_t zn = 10u << 20;
    char *zeros = calloc(1, zn);
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
    uint8_t *comp = malloc(64 * 1024);
    z.next_in = (Bytef *)zeros;
    z.avail_in = (uInt)zn;
    z.next_out = comp;
    z.avail_out = 64 * 1024;
    deflate(&z, Z_SYNC_FLUSH);
    size_t clen = 64 * 1024 - z.avail_out - 4;
    deflateEnd(&z);
    free(zeros);
    sq_stream *s = raw_open(e->port, "/small",
                            "Sec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                            &status, NULL, 0);
    assert_int_equal(status, 101);
    raw_frame(s, 0xc2, comp, clen, false);
    free(comp);
    assert_int_equal(raw_expect_close(s), 1009);
    sq_stream_free(s);
    still_serving(e);
    return NULL;
}

/* Protocol violations are the peer's problem: logged at debug level, at most one line a
 * second (a flood of bad frames cannot flood the log). */
static int viol_info, viol_debug;

static void viol_log(int level, const char *msg, void *arg)
{
    if (!strstr(msg, "protocol violation")) return;
    if (level >= SQ_LOG_INFO) viol_info++;
    if (level == SQ_LOG_DEBUG) viol_debug++;
}

static void test_violations(void **st)
{
    wsenv e;
    wsenv_start(&e);
    viol_info = viol_debug = 0;
    int level = sq_log_get_level();
    sq_log_set_level(SQ_LOG_DEBUG);
    sq_log_set_handler(viol_log, NULL);
    double t0 = sq_test_now();
    sq_test_run_coro(e.loop, violations_task, &e, 40);
    double took = sq_test_now() - t0;
    sq_log_set_handler(NULL, NULL);
    sq_log_set_level(level);
    wsenv_stop(&e);
    assert_int_equal(viol_info, 0); /* eight violations above, none at info level */
    assert_true(viol_debug >= 1 && viol_debug <= (int)took + 2);
    (void)st;
}

static void *handshake_task(void *arg)
{
    wsenv *e = arg;
    char req[1024], head[2048];
    const char *key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
#define REQ(method, path, extra)                                                                   \
    snprintf(req, sizeof req,                                                                      \
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"                      \
             "Connection: Upgrade\r\n%s\r\n",                                                      \
             method, path, e->port, extra)
    char extra[512];
    snprintf(extra, sizeof extra, "%sSec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n",
             key);
    REQ("GET", "/echo", extra);
    assert_int_equal(raw_http(e->port, req, NULL, 0), 403);
    /* same origin passes (case-insensitive) */
    snprintf(extra, sizeof extra, "%sSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:%d\r\n",
             key, e->port);
    REQ("GET", "/echo", extra);
    assert_int_equal(raw_http(e->port, req, NULL, 0), 101);
    snprintf(extra, sizeof extra, "%sSec-WebSocket-Version: 8\r\n", key);
    REQ("GET", "/echo", extra);
    assert_int_equal(raw_http(e->port, req, head, sizeof head), 426);
    assert_non_null(strcasestr(head, "Sec-WebSocket-Version: 13"));
    snprintf(extra, sizeof extra, "%sSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n", key);
    REQ("POST", "/echo", extra);
    assert_int_equal(raw_http(e->port, req, NULL, 0), 405);
    REQ("GET", "/echo", "Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n");
    assert_int_equal(raw_http(e->port, req, NULL, 0), 400);
    snprintf(req, sizeof req,
             "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n%s"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(raw_http(e->port, req, NULL, 0), 400); /* no Upgrade: websocket */
    snprintf(req, sizeof req,
             "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n%s"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(raw_http(e->port, req, NULL, 0), 400); /* Connection lacks upgrade */
    still_serving(e);
#undef REQ
    return NULL;
}

static void test_handshake_errors(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, handshake_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

static void *order_task(void *arg)
{
    wsenv *e = arg;
    sq_ws *ws = connect_to(e, "/slow", NULL);
    char msg[32];
    for (int i = 0; i < 50; i++) {
        int n = snprintf(msg, sizeof msg, "message %d", i);
        assert_int_equal(sq_ws_send(ws, msg, (size_t)n, false), 0);
    }
    for (int i = 0; i < 50; i++) {
        const char *d;
        ssize_t n = sq_ws_read_message(ws, &d, NULL);
        int m = snprintf(msg, sizeof msg, "message %d", i);
        assert_int_equal(n, m);
        assert_memory_equal(d, msg, (size_t)m);
    }
    assert_int_equal(g_log.last_code, 0); /* the data stayed valid across on_message's sleep */
    sq_ws_free(ws);
    return NULL;
}

static void test_order_with_suspending_handler(void **st)
{
    wsenv e;
    wsenv_start(&e);
    sq_test_run_coro(e.loop, order_task, &e, 30);
    wsenv_stop(&e);
    (void)st;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_deflate),
        cmocka_unit_test(test_subprotocol_and_server_close),
        cmocka_unit_test(test_ping_pong_timeout),
        cmocka_unit_test(test_close_timeout),
        cmocka_unit_test(test_fragments_raw),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_handshake_errors),
        cmocka_unit_test(test_order_with_suspending_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
