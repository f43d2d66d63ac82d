/* Keep-alive pings drop a dead peer, never a live one that our own side holds up: a server
 * whose on_message is suspended (it reads no frame meanwhile), a client whose user holds a
 * message, and a big message to a slow but healthy reader that the ping waits behind.
 * (That a peer that never answers is dropped: test_ws_server test_ping_pong_timeout.) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "wstest.h"

static int ka_closes, ka_code;

static void ka_close(sq_ws *ws)
{
    ka_closes++;
    ka_code = sq_ws_close_code(ws);
}

static void slow_msg(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    sq_sleep(1.0); /* a slow database call: 3 ping timeouts */
    sq_ws_send(ws, "done", 4, false);
}

static void echo_later(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    sq_ws_send(ws, msg, len, binary);
}

static void big_msg(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    size_t n = 900u << 10; /* below high_water (1 MiB): no backpressure involved */
    char *b = calloc(1, n);
    assert_non_null(b);
    sq_ws_send(ws, b, n, true);
    free(b);
}

static const sq_ws_class slow_c = {.on_message = slow_msg,
                                   .on_close = ka_close,
                                   .settings = {.ping_interval = 0.1, .ping_timeout = 0.3}};
static const sq_ws_class echo_c = {.on_message = echo_later, .on_close = ka_close};
static const sq_ws_class big_c = {.on_message = big_msg,
                                  .on_close = ka_close,
                                  .settings = {.ping_interval = 0.1, .ping_timeout = 0.3}};

static const sq_route ka_routes[] = {
    {"/slow", &sq_websocket_handler, NULL, (void *)&slow_c},
    {"/echo", &sq_websocket_handler, NULL, (void *)&echo_c},
    {"/big", &sq_websocket_handler, NULL, (void *)&big_c},
    {0},
};

typedef struct kaenv {
    sq_loop *loop;
    sq_app *app;
    int port;
} kaenv;

static void ka_start(kaenv *e)
{
    ka_closes = ka_code = 0;
    e->loop = sq_loop_new(NULL);
    sq_loop_make_current(e->loop);
    sq_app_settings quiet = {.no_access_log = true};
    e->app = sq_app_new(ka_routes, &quiet);
    assert_non_null(e->app);
    assert_int_equal(sq_app_listen(e->app, 0, "127.0.0.1"), 0);
    e->port = sq_http_server_port(sq_app_server(e->app));
}

static void ka_stop(kaenv *e)
{
    for (int i = 0; i < 20; i++) sq_loop_run_once(e->loop, false);
    sq_app_free(e->app);
    for (int i = 0; i < 5; i++) sq_loop_run_once(e->loop, false);
    sq_loop_free(e->loop);
}

static sq_ws *ka_connect(kaenv *e, const char *path, const sq_ws_settings *set)
{
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", e->port, path);
    sq_ws_connect_options o = {.no_compression = true};
    if (set) o.settings = *set;
    int err;
    sq_ws *ws = sq_ws_connect(url, &o, &err);
    assert_non_null(ws);
    return ws;
}

/* The server: on_message suspended for 1 s with pings every 0.1 s, timeout 0.3 s.  The client
 * is suspended in a read meanwhile and answers every ping at once. */
static void *server_busy_task(void *arg)
{
    sq_ws *ws = ka_connect(arg, "/slow", NULL);
    assert_int_equal(sq_ws_send(ws, "x", 1, false), 0);
    const char *d;
    ssize_t n = sq_ws_read_message(ws, &d, NULL);
    assert_int_equal(n, 4);
    assert_memory_equal(d, "done", 4);
    assert_int_equal(ka_closes, 0);
    sq_ws_free(ws);
    return NULL;
}

static void test_server_handler_busy(void **st)
{
    kaenv e;
    ka_start(&e);
    sq_test_run_coro(e.loop, server_busy_task, &e, 30);
    ka_stop(&e);
}

/* The client: pings every 0.1 s, timeout 0.3 s; its user holds a message for 1 s. */
static void *client_holds_task(void *arg)
{
    sq_ws_settings set = {.ping_interval = 0.1, .ping_timeout = 0.3};
    sq_ws *ws = ka_connect(arg, "/echo", &set);
    const char *d;
    assert_int_equal(sq_ws_send(ws, "a", 1, false), 0);
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 1);
    sq_sleep(1.0); /* working on the message */
    assert_int_equal(sq_ws_send(ws, "b", 1, false), 0);
    ssize_t n = sq_ws_read_message(ws, &d, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(d[0], 'b');
    assert_false(sq_ws_closed(ws));
    sq_ws_free(ws);
    return NULL;
}

static void test_client_user_holds_message(void **st)
{
    kaenv e;
    ka_start(&e);
    sq_test_run_coro(e.loop, client_holds_task, &e, 30);
    ka_stop(&e);
}

/* --- a slow reader on a blocking socket in a thread ---------------------------------------- */

typedef struct slow_reader {
    int port;
    size_t got;      /* bytes of the big message's payload read */
    int pings;       /* answered */
    int close_code;  /* of the server's close frame; -1: the connection ended without one */
    double msg_secs; /* how long the message took to read */
} slow_reader;

static bool recv_all(int fd, uint8_t *b, size_t n)
{
    for (size_t k = 0; k < n;) {
        ssize_t r = recv(fd, b + k, n - k, 0);
        if (r <= 0) return false;
        k += (size_t)r;
    }
    return true;
}

static void send_frame(int fd, uint8_t op, const uint8_t *p, size_t n)
{
    uint8_t f[2 + 4 + 125] = {(uint8_t)(0x80 | op), (uint8_t)(0x80 | n), 1, 2, 3, 4};
    for (size_t i = 0; i < n; i++) f[6 + i] = p[i] ^ f[2 + (i & 3)];
    assert_true(send(fd, f, 6 + n, MSG_NOSIGNAL) == (ssize_t)(6 + n));
}

/* One frame: its opcode (-1 at the end), the payload read `chunk` bytes every 20 ms; a
 * ping's payload is kept in ctl (at most 125 bytes). */
static int read_frame(int fd, size_t chunk, size_t *len, uint8_t *ctl, size_t *ctl_len)
{
    uint8_t h[10];
    if (!recv_all(fd, h, 2)) return -1;
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        if (!recv_all(fd, h + 2, 2)) return -1;
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (n == 127) {
        if (!recv_all(fd, h + 2, 8)) return -1;
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | h[2 + i];
    }
    *len = (size_t)n;
    *ctl_len = 0;
    static uint8_t buf[8192];
    for (uint64_t k = 0; k < n;) {
        size_t want = n - k < chunk ? (size_t)(n - k) : chunk;
        if (want > sizeof buf) want = sizeof buf;
        if (chunk < n) usleep(20000);
        ssize_t r = recv(fd, buf, want, 0);
        if (r <= 0) return -1;
        if ((h[0] & 0x08) && *ctl_len + (size_t)r <= 125) {
            memcpy(ctl + *ctl_len, buf, (size_t)r);
            *ctl_len += (size_t)r;
        }
        k += (uint64_t)r;
    }
    return h[0] & 0x0f;
}

static void *slow_reader_main(void *arg)
{
    slow_reader *sr = arg;
    sr->close_code = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sr->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) goto out;
    char req[256];
    int rl = snprintf(
        req, sizeof req,
        "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    send(fd, req, (size_t)rl, MSG_NOSIGNAL);
    char head[1024];
    size_t hl = 0;
    while (hl < sizeof head - 1 &&
           (hl < 4 || memcmp(head + hl - 4, "\r\n\r\n", 4))) /* byte by byte */
        if (recv(fd, head + hl, 1, 0) == 1)
            hl++;
        else
            goto out;
    send_frame(fd, 0x2, (const uint8_t *)"go", 2);
    double t0 = sq_test_now();
    bool closing = false;
    for (int i = 0; i < 1000; i++) {
        size_t len, cl;
        uint8_t ctl[125];
        int op = read_frame(fd, 8192, &len, ctl, &cl);
        if (op < 0) break;
        if (op == 0x2) {
            sr->got = len;
            sr->msg_secs = sq_test_now() - t0;
            /* answer pings for a while more, then close */
        } else if (op == 0x9) {
            send_frame(fd, 0xA, ctl, cl);
            sr->pings++;
        } else if (op == 0x8) {
            sr->close_code = cl >= 2 ? ctl[0] << 8 | ctl[1] : 0;
            break;
        }
        if (sr->got && !closing && sq_test_now() - t0 > sr->msg_secs + 0.5) {
            send_frame(fd, 0x8, (const uint8_t *)"\x03\xe8", 2);
            closing = true;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *slow_reader_task(void *arg)
{
    slow_reader *sr = arg;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_reader_main, sr), 0);
    /* the loop keeps serving while the thread reads; joined once it is done */
    for (int i = 0; i < 3000 && !(sr->close_code != -1 || ka_closes); i++) sq_sleep(0.01);
    for (int i = 0; i < 300 && !ka_closes; i++) sq_sleep(0.01);
    pthread_join(t, NULL);
    return NULL;
}

static void test_slow_reader_behind_big_message(void **st)
{
    kaenv e;
    ka_start(&e);
    slow_reader sr = {.port = e.port};
    sq_test_run_coro(e.loop, slow_reader_task, &sr, 60);
    ka_stop(&e);
    /* 900 KiB at about 8 KiB per 20 ms: over a second, several ping timeouts */
    assert_int_equal(sr.got, 900u << 10);
    assert_true(sr.msg_secs > 0.6);
    assert_int_equal(sr.close_code, 1000); /* closed by us, cleanly, not dropped */
    assert_int_equal(ka_code, 1000);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_handler_busy),
        cmocka_unit_test(test_client_user_holds_message),
        cmocka_unit_test(test_slow_reader_behind_big_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
