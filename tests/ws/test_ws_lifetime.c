/* Regression tests from the WebSocket review: client connections freed from inside the
 * connection (a write future's done callback, on success and on failure, and during
 * sq_ws_free itself) or while a read is suspended; open() that suspends and sends; long
 * request targets; strict parsing of the client's 101 status line and obs-fold. */
#include "wstest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG (16u << 20) /* more than loopback socket buffers hold: its write stays pending */

/* --- routes of our own ----------------------------------------------------------------------- */

static int lt_messages;
static int lt_live; /* server connections opened and not yet closed */

static int lt_opened;

static void lt_open(sq_ws *ws)
{
    lt_live++;
    lt_opened++;
}

static void lt_close(sq_ws *ws)
{
    lt_live--;
}

static void lt_count(sq_ws *ws, const char *msg, size_t len, bool binary)
{
    lt_messages++;
}

/* open() that does not return for a while: the server reads nothing meanwhile */
static void lt_open_sleep(sq_ws *ws)
{
    lt_live++;
    sq_sleep(1.0);
}

/* open() that sends, writes past high_water (waiting for the kernel) and sleeps */
static void lt_open_send(sq_ws *ws)
{
    lt_live++;
    assert_int_equal(sq_ws_send(ws, "hi", 2, false), 0);
    char *big = calloc(1, 300000);
    assert_int_equal(sq_ws_write(ws, big, 300000, true), 0);
    free(big);
    assert_int_equal(sq_ws_send(ws, "after", 5, false), 0);
    sq_sleep(1.0);
    sq_ws_send(ws, "late", 4, false);
}

/* check_origin that makes the 101 head a few MiB, so that writing it has to wait */
static int lt_padded;

static bool lt_pad_origin(sq_handler *h, const char *origin)
{
    static char pad[64 * 1024];
    memset(pad, 'p', sizeof pad - 1);
    char name[32];
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "X-Pad-%d", i);
        sq_set_header(h, name, pad);
    }
    lt_padded++;
    return true;
}

static const sq_route lt_routes[] = {
    {"/padded", &sq_websocket_handler, NULL,
     (void *)&(const sq_ws_class){
         .check_origin = lt_pad_origin, .open = lt_open, .on_close = lt_close}},
    {"/sink", &sq_websocket_handler, NULL,
     (void *)&(const sq_ws_class){.open = lt_open,
                                  .on_message = lt_count,
                                  .on_close = lt_close,
                                  .settings = {.max_message_size = 64u << 20}}},
    {"/slow_open", &sq_websocket_handler, NULL,
     (void *)&(const sq_ws_class){.open = lt_open_sleep,
                                  .on_message = lt_count,
                                  .on_close = lt_close,
                                  .settings = {.max_message_size = 64u << 20}}},
    {"/open_send", &sq_websocket_handler, NULL,
     (void *)&(const sq_ws_class){
         .open = lt_open_send, .on_close = lt_close, .settings = {.high_water = 4096}}},
    {0},
};

typedef struct lt_env {
    sq_loop *loop;
    sq_app *app;
    int port;
    sq_ws *ws;
    int freed;      /* times the done callback freed the connection */
    int64_t status; /* the future's status seen there */
    bool free_in_cb_only;
} lt_env;

static void lt_start(lt_env *e)
{
    memset(e, 0, sizeof *e);
    lt_messages = 0;
    lt_live = 0;
    lt_opened = 0;
    e->loop = sq_loop_new(NULL);
    assert_non_null(e->loop);
    sq_loop_make_current(e->loop);
    sq_app_settings as = {.no_access_log = true};
    e->app = sq_app_new(lt_routes, &as);
    assert_non_null(e->app);
    assert_int_equal(sq_app_listen(e->app, 0, "127.0.0.1"), 0);
    e->port = sq_http_server_port(sq_app_server(e->app));
}

static void lt_stop(lt_env *e)
{
    /* every server connection closed (handlers that sleep in open() have returned) */
    double t0 = sq_test_now();
    while (lt_live > 0 && sq_test_now() - t0 < 10) sq_loop_run_once(e->loop, true);
    assert_int_equal(lt_live, 0);
    for (int i = 0; i < 20; i++) sq_loop_run_once(e->loop, false);
    sq_app_free(e->app);
    for (int i = 0; i < 5; i++) sq_loop_run_once(e->loop, false);
    sq_loop_free(e->loop);
}

static sq_ws *lt_connect(lt_env *e, const char *path, const sq_ws_connect_options *o)
{
    char url[4200];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", e->port, path);
    int err;
    sq_ws *ws = sq_ws_connect(url, o, &err);
    assert_non_null(ws);
    return ws;
}

/* A plain done callback (not a coroutine) that frees the client connection. */
static void free_in_cb(sq_future *f, void *arg)
{
    lt_env *e = arg;
    e->status = sq_future_status(f);
    e->freed++;
    sq_ws_free(e->ws);
}

static void wait_freed(lt_env *e, double limit)
{
    double t0 = sq_test_now();
    while (!e->freed && sq_test_now() - t0 < limit) sq_sleep(0.01);
    assert_int_equal(e->freed, 1);
    sq_sleep(0.05); /* the deferred free runs */
}

/* --- a done callback frees the connection while it resolves the future ---------------------- */

/* Success: the IO callback's send path resolves the future; the callback frees. */
static void *free_on_success_task(void *arg)
{
    lt_env *e = arg;
    e->ws = lt_connect(e, "/sink", &(sq_ws_connect_options){.no_compression = true});
    char *big = calloc(1, BIG);
    sq_future *f = sq_ws_write_message(e->ws, big, BIG, true);
    free(big);
    assert_non_null(f);
    assert_false(sq_future_done(f)); /* else the test proves nothing */
    assert_int_equal(sq_future_add_done_callback(f, free_in_cb, e), 0);
    sq_future_release(f);
    wait_freed(e, 20);
    assert_int_equal(e->status, 0);
    return NULL;
}

static void test_free_in_done_callback_on_success(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, free_on_success_task, &e, 40);
    /* the server got the whole message */
    double t0 = sq_test_now();
    while (lt_messages < 1 && sq_test_now() - t0 < 10) sq_loop_run_once(e.loop, true);
    assert_int_equal(lt_messages, 1);
    lt_stop(&e);
    (void)st;
}

/* Failure from a timer: the close timeout drops the connection while a write is pending
 * (the server is still in open() and reads nothing); the callback frees. */
static void *free_on_timeout_task(void *arg)
{
    lt_env *e = arg;
    sq_ws_connect_options o = {.no_compression = true, .settings = {.close_timeout = 0.2}};
    e->ws = lt_connect(e, "/slow_open", &o);
    char *big = calloc(1, BIG);
    sq_future *f = sq_ws_write_message(e->ws, big, BIG, true);
    free(big);
    assert_false(sq_future_done(f));
    assert_int_equal(sq_future_add_done_callback(f, free_in_cb, e), 0);
    sq_future_release(f);
    assert_int_equal(sq_ws_close(e->ws, 1000, NULL), 0);
    wait_freed(e, 10);
    assert_int_equal(e->status, SQ_ECLOSED);
    return NULL;
}

static void test_free_in_done_callback_on_timeout(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, free_on_timeout_task, &e, 30);
    lt_stop(&e);
    (void)st;
}

/* sq_ws_free fails the pending write; its callback calls sq_ws_free again. */
static void *free_twice_task(void *arg)
{
    lt_env *e = arg;
    e->ws = lt_connect(e, "/sink", &(sq_ws_connect_options){.no_compression = true});
    char *big = calloc(1, BIG);
    sq_future *f = sq_ws_write_message(e->ws, big, BIG, true);
    free(big);
    assert_false(sq_future_done(f));
    assert_int_equal(sq_future_add_done_callback(f, free_in_cb, e), 0);
    sq_ws_free(e->ws); /* the callback's free is then a no-op, not a double free */
    assert_true(sq_future_done(f));
    assert_int_equal(sq_future_status(f), SQ_ECLOSED);
    assert_int_equal(e->freed, 1);
    sq_future_release(f);
    sq_sleep(0.05);
    return NULL;
}

static void test_free_in_done_callback_during_free(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, free_twice_task, &e, 30);
    lt_stop(&e);
    (void)st;
}

/* Several writes resolved in one pass: the first callback frees, the others still see
 * their futures resolved (failed), nothing touches freed memory. */
static void *free_among_many_task(void *arg)
{
    lt_env *e = arg;
    e->ws = lt_connect(e, "/sink", &(sq_ws_connect_options){.no_compression = true});
    char *big = calloc(1, BIG);
    sq_future *f[3];
    for (int i = 0; i < 3; i++) f[i] = sq_ws_write_message(e->ws, big, i == 0 ? BIG : 10, true);
    free(big);
    assert_int_equal(sq_future_add_done_callback(f[0], free_in_cb, e), 0);
    wait_freed(e, 20);
    for (int i = 0; i < 3; i++) {
        assert_true(sq_future_done(f[i]));
        sq_future_release(f[i]);
    }
    return NULL;
}

static void test_free_in_done_callback_among_many(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, free_among_many_task, &e, 40);
    lt_stop(&e);
    (void)st;
}

/* --- freed while another coroutine is suspended in sq_ws_read_message ----------------------- */

static void *reader_task(void *arg)
{
    sq_ws *ws = arg;
    const char *d;
    return (void *)(intptr_t)sq_ws_read_message(ws, &d, NULL); /* must not touch ws after */
}

static void *free_while_reading_task(void *arg)
{
    lt_env *e = arg;
    sq_ws *ws = lt_connect(e, "/sink", NULL);
    sq_future *r = sq_spawn(NULL, reader_task, ws);
    sq_sleep(0.05);
    assert_false(sq_future_done(r));
    sq_ws_free(ws);
    void *v = NULL;
    assert_int_equal(sq_await(r, &v), 0);
    assert_int_equal((intptr_t)v, SQ_ECLOSED);
    sq_sleep(0.05);
    return NULL;
}

static void test_free_while_reading(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, free_while_reading_task, &e, 20);
    lt_stop(&e);
    (void)st;
}

/* --- open() may suspend and send -----------------------------------------------------------------
 */

static void *open_send_task(void *arg)
{
    lt_env *e = arg;
    double t0 = sq_test_now();
    sq_ws *ws = lt_connect(e, "/open_send", NULL);
    const char *d;
    /* before open() returns (it sleeps 1 s): what it sent, including the write above
     * high_water that waited for the kernel */
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 2);
    assert_memory_equal(d, "hi", 2);
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 300000);
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 5);
    assert_memory_equal(d, "after", 5);
    assert_true(sq_test_now() - t0 < 0.9);
    assert_int_equal(sq_ws_read_message(ws, &d, NULL), 4);
    assert_memory_equal(d, "late", 4);
    sq_ws_free(ws);
    return NULL;
}

static void test_open_suspends_and_sends(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, open_send_task, &e, 20);
    lt_stop(&e);
    (void)st;
}

/* --- client handshake: long targets; the 101 parsed strictly -------------------------------------
 */

static void *long_target_task(void *arg)
{
    lt_env *e = arg;
    char path[3000] = "/sink?q=";
    memset(path + 8, 'x', 2000);
    path[2008] = 0;
    sq_ws *ws = lt_connect(e, path, NULL);
    assert_int_equal(sq_ws_send(ws, "ok", 2, false), 0);
    sq_ws_free(ws);
    return NULL;
}

static void test_long_target(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, long_target_task, &e, 20);
    lt_stop(&e);
    (void)st;
}

/* A raw server: answers each connection's handshake with `fmt` (one %s: the accept key). */
typedef struct raw_srv {
    int lfd, port;
    const char *fmt;
} raw_srv;

static void *raw_srv_task(void *arg)
{
    raw_srv *r = arg;
    int fd = -1;
    for (int i = 0; i < 500 && fd < 0; i++) {
        fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) sq_sleep(0.01);
    }
    assert_true(fd >= 0);
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 500 && !memmem(buf, n, "\r\n\r\n", 4); i++) {
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, MSG_DONTWAIT);
        if (k > 0)
            n += (size_t)k;
        else
            sq_sleep(0.01);
    }
    buf[n] = 0;
    char *k = strcasestr(buf, "Sec-WebSocket-Key: ");
    assert_non_null(k);
    extern void sq__ws_accept_key(const char *key, size_t len, char out[29]);
    char accept_key[29];
    sq__ws_accept_key(k + 19, 24, accept_key);
    char resp[1024];
    int len = snprintf(resp, sizeof resp, r->fmt, accept_key);
    assert_int_equal(send(fd, resp, (size_t)len, MSG_NOSIGNAL), len);
    sq_sleep(0.1);
    close(fd);
    return NULL;
}

static int raw_try(lt_env *e, const char *fmt)
{
    raw_srv r = {.fmt = fmt};
    r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(r.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(r.lfd, (struct sockaddr *)&sa, &sl);
    listen(r.lfd, 4);
    sq_future *sf = sq_spawn(NULL, raw_srv_task, &r);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", ntohs(sa.sin_port));
    int err = 0;
    sq_ws *ws = sq_ws_connect(url, &(sq_ws_connect_options){.connect_timeout = 5}, &err);
    sq_ws_free(ws);
    sq_await(sf, NULL);
    close(r.lfd);
    return ws ? 0 : err;
}

#define HDRS "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"

static void *status_line_task(void *arg)
{
    lt_env *e = arg;
    assert_int_equal(raw_try(e, "HTTP/1.1 101 Switching Protocols\r\n" HDRS "\r\n"), 0);
    assert_int_equal(raw_try(e, "HTTP/1.1 101\r\n" HDRS "\r\n"), 0);
    assert_int_equal(raw_try(e, "HTTP/1.1 1010 Switching\r\n" HDRS "\r\n"), -EPROTO);
    assert_int_equal(raw_try(e, "HTTP/1.1 10 \r\n" HDRS "\r\n"), -EPROTO);
    assert_int_equal(raw_try(e, "HTTP/1.0 101 Switching\r\n" HDRS "\r\n"), -EPROTO);
    assert_int_equal(raw_try(e, "HTTP/1.1 +101 x\r\n" HDRS "\r\n"), -EPROTO);
    /* obs-fold: refused, not read as a header of its own */
    assert_int_equal(raw_try(e, "HTTP/1.1 101 OK\r\n" HDRS "X-A: 1\r\n Upgrade: x\r\n\r\n"),
                     -EPROTO);
    assert_int_equal(raw_try(e, "HTTP/1.1 101 OK\r\n" HDRS ": empty-name\r\n\r\n"), -EPROTO);
    return NULL;
}

static void test_status_line(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, status_line_task, &e, 30);
    lt_stop(&e);
    (void)st;
}

/* --- an upgrade request with a body: 400, never a 101 over HTTP ----------------------------- */

static void *body_task(void *arg)
{
    lt_env *e = arg;
    char req[512], head[1024];
    static const char *const bodies[] = {"Content-Length: 5\r\n\r\n", /* body still unsent */
                                         "Content-Length: 5\r\n\r\nhello",
                                         "Transfer-Encoding: chunked\r\n\r\n"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(req, sizeof req,
                 "GET /sink HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s",
                 e->port, bodies[i]);
        assert_int_equal(raw_http(e->port, req, head, sizeof head), 400);
        assert_null(strcasestr(head, "Sec-WebSocket-Accept"));
    }
    assert_int_equal(lt_live, 0);
    return NULL;
}

static void test_handshake_with_body(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, body_task, &e, 20);
    lt_stop(&e);
    (void)st;
}

/* --- the client leaves while the 101 is being written --------------------------------------- */

static void *leave_during_101_task(void *arg)
{
    lt_env *e = arg;
    for (int k = 0; k < 3; k++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET /padded HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n\x81\x80\x01\x02\x03\x04",
                         e->port);
        assert_int_equal(send(fd, req, (size_t)n, 0), n);
        int padded = lt_padded;
        for (int i = 0; i < 300 && lt_padded == padded; i++) sq_sleep(0.01);
        assert_int_equal(lt_padded, padded + 1);
        sq_sleep(0.05); /* the server is stuck writing the 101 */
        if (k == 1) {   /* an RST rather than a FIN */
            struct linger l = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(fd);
    }
    /* the server let go of them and still works */
    sq_http_server *srv = sq_app_server(e->app);
    for (int i = 0; i < 500 && sq_http_server_connections(srv) > 0; i++) sq_sleep(0.01);
    assert_int_equal(sq_http_server_connections(srv), 0);
    assert_int_equal(lt_opened, 0); /* the 101 never got out: no WebSocket */
    sq_ws *ws = lt_connect(e, "/sink", NULL);
    assert_int_equal(sq_ws_send(ws, "ok", 2, false), 0);
    sq_ws_free(ws);
    return NULL;
}

static void test_client_leaves_during_101(void **st)
{
    lt_env e;
    lt_start(&e);
    sq_test_run_coro(e.loop, leave_during_101_task, &e, 30);
    lt_stop(&e);
    (void)st;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_in_done_callback_on_success),
        cmocka_unit_test(test_free_in_done_callback_on_timeout),
        cmocka_unit_test(test_free_in_done_callback_during_free),
        cmocka_unit_test(test_free_in_done_callback_among_many),
        cmocka_unit_test(test_free_while_reading),
        cmocka_unit_test(test_open_suspends_and_sends),
        cmocka_unit_test(test_long_target),
        cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_handshake_with_body),
        cmocka_unit_test(test_client_leaves_during_101),
    };
    if (getenv("SQ_TEST_FILTER")) cmocka_set_test_filter(getenv("SQ_TEST_FILTER")); /* one */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
