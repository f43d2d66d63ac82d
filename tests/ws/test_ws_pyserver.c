/* squall's WebSocket client (sq_ws_connect) against a real server: Python's websockets
 * (tests/ws/py_ws_server.py, started here on ephemeral ports).
 *
 * Proves: text, binary and 1 MiB echoes; permessage-deflate negotiated with a server that
 * offers it (and not with one that does not, or when the client declines); a subprotocol;
 * a fragmented message from the server arrives whole; a server ping is answered; a close
 * with code and reason is seen by the server (client-initiated) and by the client
 * (server-initiated).  Skipped when python3-websockets is not installed.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squall/websocket.h>

extern char **environ;

static const char *python = "/usr/bin/python3";
static pid_t server_pid;
static int server_stdin = -1;
static int port_deflate, port_plain;

static int start_server(void **state)
{
    (void)state;
    if (access(python, X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0)
        return 0; /* tests skip */
    const char *src = getenv("SQ_SOURCE_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/ws/py_ws_server.py", src ? src : "../..");
    int out[2], in[2];
    if (pipe(out) < 0 || pipe(in) < 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    char *argv[] = {(char *)python, script, NULL};
    int rc = posix_spawn(&server_pid, python, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(in[0]);
    server_stdin = in[1]; /* closed at teardown: the server also stops on stdin EOF */
    if (rc != 0) return -1;
    FILE *f = fdopen(out[0], "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f) ||
        sscanf(line, "ports %d %d", &port_deflate, &port_plain) != 2) {
        fprintf(stderr, "py_ws_server.py did not start: %s\n", line);
        if (f) fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        int st;
        waitpid(server_pid, &st, 0);
        server_pid = 0;
    }
    if (server_stdin >= 0) close(server_stdin);
    server_stdin = -1;
    return 0;
}

static void skip_without_server(void)
{
    if (server_pid <= 0) {
        fprintf(stderr, "python3-websockets not installed: skipped\n");
        skip();
    }
}

typedef struct {
    int port;
    bool no_compression;
} conn_args;

static sq_ws *connect_to(int port, bool no_compression)
{
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    static const char *const protos[] = {"chat"};
    sq_ws_connect_options o = {
        .subprotocols = protos,
        .nsubprotocols = 1,
        .connect_timeout = 10,
        .no_compression = no_compression,
        .settings = {.max_message_size = 16u << 20},
    };
    int err = 0;
    sq_ws *ws = sq_ws_connect(url, &o, &err);
    if (!ws) fail_msg("sq_ws_connect(%s): %s", url, sq_strerror(err));
    return ws;
}

/* Send and read the echo: same bytes, same type. */
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

static ssize_t read_text(sq_ws *ws, const char **data)
{
    bool binary = true;
    ssize_t n = sq_ws_read_message(ws, data, &binary);
    if (n >= 0) assert_false(binary);
    return n;
}

static void *exchanges_coro(void *arg)
{
    conn_args *a = arg;
    sq_ws *ws = connect_to(a->port, a->no_compression);
    bool want = a->port == port_deflate && !a->no_compression;
    assert_true(sq_ws_compressed(ws) == want);
    assert_non_null(sq_ws_subprotocol(ws));
    assert_string_equal(sq_ws_subprotocol(ws), "chat");

    echo(ws, "hello", 5, false);
    echo(ws, "", 0, false);
    const char *uni = "\xc3\xbc"
                      "n"
                      "\xc3\xaf"
                      "c"
                      "\xc3\xb6"
                      "d"
                      "\xc3\xa9"
                      " \xe2\x9c\x93";
    echo(ws, uni, strlen(uni), false);
    unsigned char bin[1024];
    for (size_t i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)i;
    echo(ws, bin, sizeof bin, true);
    size_t big = 1u << 20;
    char *text = malloc(big);
    unsigned char *rnd = malloc(big);
    assert_non_null(text);
    assert_non_null(rnd);
    for (size_t i = 0; i < big; i++) text[i] = "squall websocket "[i % 17];
    uint32_t x = 12345;
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (unsigned char)(x >> 16);
    }
    echo(ws, text, big, false);
    echo(ws, rnd, big, true);
    free(text);
    free(rnd);

    /* Several in flight: answered in order. */
    for (int i = 0; i < 20; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "m%d", i);
        assert_int_equal(sq_ws_send(ws, m, (size_t)n, false), 0);
    }
    for (int i = 0; i < 20; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "m%d", i);
        const char *got;
        assert_int_equal(read_text(ws, &got), n);
        assert_memory_equal(got, m, (size_t)n);
    }

    /* A fragmented message from the server arrives whole. */
    assert_int_equal(sq_ws_send(ws, "!frag", 5, false), 0);
    const char *got;
    assert_int_equal(read_text(ws, &got), 10);
    assert_memory_equal(got, "fragmented", 10);

    /* The server pings; our pong is automatic and not surfaced as a message. */
    assert_int_equal(sq_ws_send(ws, "!ping", 5, false), 0);
    assert_int_equal(read_text(ws, &got), 7);
    assert_memory_equal(got, "pong ok", 7);

    /* Client-initiated close: code and reason reach the server. */
    assert_int_equal(sq_ws_close(ws, 4002, "client done"), 0);
    assert_int_equal(sq_ws_close(ws, 4002, "again"), -EALREADY);
    assert_int_equal(read_text(ws, &got), SQ_ECLOSED);
    assert_true(sq_ws_closed(ws));
    assert_int_equal(sq_ws_close_code(ws), 4002); /* websockets echoes our close frame */
    sq_ws_free(ws);

    ws = connect_to(a->port, a->no_compression);
    assert_int_equal(sq_ws_send(ws, "!lastclose", 10, false), 0);
    ssize_t n = read_text(ws, &got);
    assert_int_equal(n, 16);
    assert_memory_equal(got, "4002 client done", 16);

    /* Server-initiated close: we see its code and reason. */
    const char *cmd = "!close 4001 server says bye";
    assert_int_equal(sq_ws_send(ws, cmd, strlen(cmd), false), 0);
    assert_int_equal(read_text(ws, &got), SQ_ECLOSED);
    assert_int_equal(sq_ws_close_code(ws), 4001);
    assert_string_equal(sq_ws_close_reason(ws), "server says bye");
    /* Writes on a closed connection fail cleanly. */
    assert_int_equal(sq_ws_send(ws, "x", 1, false), SQ_ECLOSED);
    sq_future *f = sq_ws_write_message(ws, "x", 1, false);
    assert_non_null(f);
    assert_true(sq_await(f, NULL) < 0);
    sq_ws_free(ws);
    return NULL;
}

static void run_exchanges(int port, bool no_compression)
{
    skip_without_server();
    sq_loop *loop = sq_loop_new(NULL);
    assert_non_null(loop);
    conn_args a = {.port = port, .no_compression = no_compression};
    sq_test_run_coro(loop, exchanges_coro, &a, 40);
    sq_loop_free(loop);
}

static void test_deflate_server(void **state)
{
    run_exchanges(port_deflate, false);
}

static void test_deflate_server_client_declines(void **state)
{
    run_exchanges(port_deflate, true);
}

static void test_plain_server(void **state)
{
    run_exchanges(port_plain, false);
}

static void *refused_coro(void *arg)
{
    int err = 0;
    /* A port nobody listens on: the server's, once we know it is closed, is not certain;
     * port 1 on loopback is refused on any sane machine. */
    sq_ws *ws = sq_ws_connect("ws://127.0.0.1:1/", NULL, &err);
    assert_null(ws);
    assert_int_equal(err, -ECONNREFUSED);
    ws = sq_ws_connect("wss://127.0.0.1:1/", NULL, &err); /* wss:// connects first */
    assert_null(ws);
    assert_int_equal(err, -ECONNREFUSED);
    ws = sq_ws_connect("http://127.0.0.1/", NULL, &err);
    assert_null(ws);
    assert_int_equal(err, -EINVAL);
    return NULL;
}

static void test_connect_errors(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_non_null(loop);
    sq_test_run_coro(loop, refused_coro, NULL, 20);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deflate_server),
        cmocka_unit_test(test_deflate_server_client_declines),
        cmocka_unit_test(test_plain_server),
        cmocka_unit_test(test_connect_errors),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
