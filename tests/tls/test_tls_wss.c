/* squall's WebSocket client over wss:// against Python's websockets (10.x) serving TLS
 * (websockets.serve(ssl=context), a separate process), with sq_ws_connect_options.tls a
 * client context trusting the fixtures' CA:
 *  - by name (wss://localhost, permessage-deflate) and by IP (wss://127.0.0.1, no
 *    compression): text, UTF-8, empty, binary, 1 MiB text and 1 MiB random binary echoes,
 *    20 messages in flight answered in order; the path and query reach the server;
 *  - the close handshake both ways: the client's 4002 "client done" is what the server
 *    sees, the server's 4001 "server says bye" is what the client sees;
 *  - without the CA (the system store) the connection fails with SQ_ETLS and a certificate
 *    reason, and the server goes on serving.
 * Skipped without /usr/bin/python3 and its websockets module. */
#include "tlstest.h"

#include <squall/websocket.h>

static const char *py_server =
    "import asyncio, os, ssl, sys, websockets\n"
    "d = sys.argv[1]\n"
    "def out(*a): print(*a, flush=True)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(os.path.join(d, 'server.pem'), os.path.join(d, 'server.key'))\n"
    "async def handler(ws, path=None):\n"
    "    out('open', ws.path)\n"
    "    try:\n"
    "        async for m in ws:\n"
    "            if m == '!close':\n"
    "                await ws.close(4001, 'server says bye')\n"
    "            else:\n"
    "                await ws.send(m)\n"
    "    except websockets.ConnectionClosed:\n"
    "        pass\n"
    "    await ws.wait_closed()\n"
    "    out('closed', ws.close_code, ws.close_reason or '-')\n"
    "async def main():\n"
    "    async with websockets.serve(handler, '127.0.0.1', 0, ssl=ctx, max_size=16 << 20,\n"
    "                                close_timeout=5) as srv:\n"
    "        out('port', srv.sockets[0].getsockname()[1])\n"
    "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
    "asyncio.run(main())\n";

static bool have_websockets;

static int setup(void **state)
{
    have_websockets = have_python_module("websockets");
    return tls_fixtures_setup(state);
}

static const char *expect_line(peer *p, const char *prefix)
{
    static char line[512];
    ssize_t n = peer_line(p, line, sizeof line, 20);
    if (n < 0) fail_msg("python peer: no line (%s) while waiting for '%s'", sq_strerror((int)n), prefix);
    fprintf(stderr, "python: %s\n", line);
    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("python peer said '%s', expected '%s…'", line, prefix);
    return line;
}

static sq_ws *connect_wss(const char *url, sq_tls_context *ctx, bool no_compression, int *err)
{
    sq_ws_connect_options o = {
        .connect_timeout = 10,
        .no_compression = no_compression,
        .settings = {.max_message_size = 16u << 20},
        .tls = ctx,
    };
    return sq_ws_connect(url, &o, err);
}

static void echo(sq_ws *ws, const void *data, size_t len, bool binary)
{
    assert_int_equal(sq_ws_write(ws, data, len, binary), 0);
    const char *got;
    bool gbin = !binary;
    ssize_t n = sq_ws_read_message(ws, &got, &gbin);
    assert_int_equal(n, (ssize_t)len);
    assert_true(gbin == binary);
    assert_memory_equal(got, data, len);
}

static void exchanges(sq_ws *ws)
{
    echo(ws, "hello over wss", 14, false);
    echo(ws, "", 0, false);
    const char *uni = "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 \xe2\x9c\x93";
    echo(ws, uni, strlen(uni), false);
    unsigned char bin[1024];
    for (size_t i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)i;
    echo(ws, bin, sizeof bin, true);
    size_t big = 1u << 20;
    char *text = malloc(big);
    unsigned char *rnd = malloc(big);
    assert_non_null(text);
    assert_non_null(rnd);
    for (size_t i = 0; i < big; i++) text[i] = "squall over TLS "[i % 16];
    uint32_t x = 12345;
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (unsigned char)(x >> 16);
    }
    echo(ws, text, big, false);
    echo(ws, rnd, big, true);
    free(text);
    free(rnd);
    for (int i = 0; i < 20; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "m%d", i);
        assert_int_equal(sq_ws_send(ws, m, (size_t)n, false), 0);
    }
    for (int i = 0; i < 20; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "m%d", i);
        const char *got;
        bool binary = true;
        assert_int_equal(sq_ws_read_message(ws, &got, &binary), n);
        assert_false(binary);
        assert_memory_equal(got, m, (size_t)n);
    }
}

static void *wss_coro(void *arg)
{
    (void)arg;
    peer p;
    assert_int_equal(peer_python(&p, py_server, fx(""), NULL), 0);
    int port = atoi(expect_line(&p, "port ") + 5);
    sq_tls_options o = {.ca_file = fx("ca.pem")};
    int err = 0;
    sq_tls_context *ctx = sq_tls_client_context_new(&o, &err);
    assert_non_null(ctx);
    char url[128];

    /* by name, compressed; the client closes */
    snprintf(url, sizeof url, "wss://localhost:%d/chat?room=1", port);
    sq_ws *ws = connect_wss(url, ctx, false, &err);
    if (!ws) fail_msg("%s: %s (%s)", url, sq_strerror(err), sq_tls_last_error());
    assert_string_equal(expect_line(&p, "open "), "open /chat?room=1");
    assert_true(sq_ws_compressed(ws));
    exchanges(ws);
    assert_int_equal(sq_ws_close(ws, 4002, "client done"), 0);
    const char *got;
    bool binary;
    assert_int_equal(sq_ws_read_message(ws, &got, &binary), SQ_ECLOSED);
    assert_int_equal(sq_ws_close_code(ws), 4002); /* websockets echoes our close frame */
    sq_ws_free(ws);
    assert_string_equal(expect_line(&p, "closed "), "closed 4002 client done");

    /* without the CA: the system store does not know it */
    snprintf(url, sizeof url, "wss://localhost:%d/", port);
    ws = connect_wss(url, NULL, false, &err);
    assert_null(ws);
    assert_int_equal(err, SQ_ETLS);
    fprintf(stderr, "wss:// without the CA: %s\n", sq_tls_last_error());
    assert_non_null(strstr(sq_tls_last_error(), "certificate verify failed"));
    assert_non_null(strstr(sq_tls_last_error(), "unable to get local issuer certificate"));

    /* by IP address, uncompressed; the server closes */
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/", port);
    ws = connect_wss(url, ctx, true, &err);
    if (!ws) fail_msg("%s: %s (%s)", url, sq_strerror(err), sq_tls_last_error());
    assert_string_equal(expect_line(&p, "open "), "open /");
    assert_false(sq_ws_compressed(ws));
    exchanges(ws);
    assert_int_equal(sq_ws_send(ws, "!close", 6, false), 0);
    assert_int_equal(sq_ws_read_message(ws, &got, &binary), SQ_ECLOSED);
    assert_int_equal(sq_ws_close_code(ws), 4001);
    assert_string_equal(sq_ws_close_reason(ws), "server says bye");
    assert_int_equal(sq_ws_send(ws, "x", 1, false), SQ_ECLOSED);
    sq_ws_free(ws);
    /* squall's answering close frame echoes the code (without the reason) */
    expect_line(&p, "closed 4001 ");

    sq_tls_context_free(ctx);
    int st = peer_finish(&p, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

static void test_wss_python_server(void **state)
{
    if (!have_websockets) {
        fprintf(stderr, "/usr/bin/python3 with websockets not available: skipped\n");
        skip();
    }
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, wss_coro, NULL, 25);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wss_python_server),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
