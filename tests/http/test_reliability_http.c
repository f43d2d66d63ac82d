/* HTTP server defects found in the reliability round (issue 17): error responses with a
 * long server_name, a large unread chunked body closed through the lingering drain, and a
 * detached request nobody finishes; and later, user code (on_close callbacks, the shutdown
 * future's callbacks, other coroutines) that finishes or frees what the server was about to
 * touch. */
#include "server_util.h"
#include "squall/coro.h"
#include "squall/future.h"

static void ok_handler(sq_http_request *req, void *arg)
{
    sq_http_write(req, "ok", 2);
}

/* --- a long server_name: error responses still go out ------------------------------------------
 */

static char long_name[2001];

static void long_name_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "BAD\x01 / HTTP/1.1\r\n\r\n") == 0);
    resp r;
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 400);
    CHECK(h, strstr(r.head, "Server: xxxxxxxxxx") != NULL);
    resp_free(&r);
    cl_close(&c);
    /* and a normal response */
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 2);
    resp_free(&r);
    cl_close(&c);
}

static void test_long_server_name(void **state)
{
    memset(long_name, 'x', sizeof long_name - 1);
    sq_http_settings s = {.server_name = long_name};
    run_with_client(&s, ok_handler, NULL, long_name_client, NULL, 30);
    /* a name that would split the head is refused at once, not dropped silently */
    sq_loop *l = sq_loop_new(NULL);
    errno = 0;
    assert_null(sq_http_server_new(l, &(sq_http_settings){.server_name = "a\r\nX-Evil: 1"},
                                   ok_handler, NULL));
    assert_int_equal(errno, EINVAL);
    sq_loop_free(l);
}

/* --- an unread chunked body over 1 MiB: the response survives the close
 * --------------------------- */

static void big_chunked_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") == 0);
    /* 2 MiB in 64 KiB chunks, sent while the handler has already answered without reading */
    static char chunk[65536 + 16];
    int hl = snprintf(chunk, sizeof chunk, "10000\r\n");
    memset(chunk + hl, 'z', 65536);
    memcpy(chunk + hl + 65536, "\r\n", 2);
    size_t clen = (size_t)hl + 65536 + 2;
    bool sent_all = true;
    for (int i = 0; i < 32; i++)
        if (cl_send(&c, chunk, clen) < 0) {
            sent_all = false;
            break;
        }
    if (sent_all) cl_sends(&c, "0\r\n\r\n");
    resp r;
    CHECK(h, cl_response(&c, &r, false) == 0);
    CHECK(h, r.status == 200 && r.body_len == 2 && !memcmp(r.body, "ok", 2));
    /* and the server closes (the rest was too much to drain), without a reset */
    char b[256];
    ssize_t n;
    while ((n = recv(c.fd, b, sizeof b, 0)) > 0) {
    }
    CHECK(h, n == 0);
    resp_free(&r);
    cl_close(&c);
}

static void test_unread_chunked_body_lingers(void **state)
{
    run_with_client(NULL, ok_handler, NULL, big_chunked_client, NULL, 30);
}

/* --- a detached request never finished: the idle timeout closes its connection -------------------
 */

static sq_http_request *parked;
static int closed_cb;

static void on_gone(sq_http_request *req, void *arg)
{
    closed_cb++;
}

static void detach_handler(sq_http_request *req, void *arg)
{
    parked = req;
    sq_http_on_connection_close(req, on_gone, NULL);
    sq_http_detach(req); /* and nobody ever finishes it */
}

static int finished_late;

static void finish_late(void *arg)
{
    sq_http_finish(parked); /* after the close: safe, and it frees the connection */
    __atomic_store_n(&finished_late, 1, __ATOMIC_SEQ_CST);
}

static void detached_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    double t0 = sq_test_now();
    char b[64];
    ssize_t n = recv(c.fd, b, sizeof b, 0); /* blocks until the server closes */
    double took = sq_test_now() - t0;
    CHECK(h, n == 0);
    CHECK(h, took >= 0.4 && took < 5.0);
    cl_close(&c);
    sq_add_callback_threadsafe(h->loop, finish_late, NULL);
    for (int i = 0; i < 500 && !__atomic_load_n(&finished_late, __ATOMIC_SEQ_CST); i++)
        usleep(10000);
    CHECK(h, finished_late);
}

static void test_detached_idle_timeout(void **state)
{
    closed_cb = 0;
    finished_late = 0;
    parked = NULL;
    sq_http_settings s = {.idle_timeout = 0.5};
    run_with_client(&s, detach_handler, NULL, detached_client, NULL, 30);
    assert_int_equal(closed_cb, 1);
}

/* --- an on_close callback that finishes other detached requests, while the server closes
 * every connection ------------------------------------------------------------------------ */

/* B's request is detached and its client gone (B closed, kept for the request); A's request
 * is detached too, and A's on_close finishes every held request, B's included, which frees
 * B: the walk over the connections that closes A must not step on B afterwards. */
static sq_http_request *held[2];
static int nheld, gone_calls, all_calls;
static cl a_cl; /* A's client, closed after the server was freed */
static bool a_open;

static void gone_noop(sq_http_request *req, void *arg)
{
    gone_calls++;
}

static void finish_all(sq_http_request *req, void *arg)
{
    all_calls++;
    for (int i = 0; i < nheld; i++) sq_http_finish(held[i]);
    nheld = 0;
}

static void hold_handler(sq_http_request *req, void *arg)
{
    bool all = req->path.len == 4 && !memcmp(req->path.ptr, "/all", 4);
    held[nheld++] = req;
    sq_http_on_connection_close(req, all ? finish_all : gone_noop, NULL);
    sq_http_detach(req);
}

static void hold_client(harness *h)
{
    cl b;
    CHECK(h, cl_open(&b, h->port) == 0);
    CHECK(h, cl_sends(&b, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(200 * 1000);
    cl_close(&b); /* B's client goes: B closes, its request stays held */
    for (int i = 0; i < 200 && !__atomic_load_n(&gone_calls, __ATOMIC_SEQ_CST); i++)
        usleep(10 * 1000);
    CHECK(h, __atomic_load_n(&gone_calls, __ATOMIC_SEQ_CST) == 1);
    CHECK(h, cl_open(&a_cl, h->port) == 0);
    a_open = true; /* and stays open: sq_http_server_free closes A, after this returns */
    CHECK(h, cl_sends(&a_cl, "GET /all HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(200 * 1000);
}

static void test_on_close_finishes_others(void **state)
{
    nheld = gone_calls = all_calls = 0;
    run_with_client(NULL, hold_handler, NULL, hold_client, NULL, 30);
    assert_int_equal(gone_calls, 1);
    assert_int_equal(all_calls, 1);
    assert_int_equal(nheld, 0);
    if (a_open) cl_close(&a_cl);
    a_open = false;
}

/* --- user code that frees what the server was about to touch (a helper review's probes) --- */

/* The shutdown future's done-callback frees the server; the deadline closed the last
 * connection (a handler asleep), which resolved the future in the middle of the deadline's
 * work. */
static int down_calls;

static void free_on_down(sq_future *f, void *arg)
{
    harness *h = arg;
    down_calls++;
    sq_http_server_free(h->srv);
    h->srv = NULL;
}

static void shutdown_sleep_handler(sq_http_request *req, void *arg)
{
    harness *h = arg;
    sq_future *f = sq_http_server_shutdown(h->srv, 0.2);
    sq_future_add_done_callback(f, free_on_down, h);
    sq_future_release(f);
    sq_sleep(1.0);
}

static void one_get_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    char b[64];
    recv(c.fd, b, sizeof b, 0); /* until the server closes */
    cl_close(&c);
}

static void test_shutdown_callback_frees_server(void **state)
{
    down_calls = 0;
    run_with_client(NULL, shutdown_sleep_handler, NULL, one_get_client, NULL, 30);
    assert_int_equal(down_calls, 1);
}

/* An on_close callback that finishes its request and frees the server (the idle timeout
 * closes a detached request's connection). */
static harness *gone_h;
static int free_calls;

static void finish_and_free(sq_http_request *req, void *arg)
{
    free_calls++;
    sq_http_finish(req);
    sq_http_server_free(gone_h->srv);
    gone_h->srv = NULL;
}

static void detach_free_handler(sq_http_request *req, void *arg)
{
    gone_h = arg;
    sq_http_on_connection_close(req, finish_and_free, NULL);
    sq_http_detach(req);
}

static void test_on_close_frees_server(void **state)
{
    free_calls = 0;
    sq_http_settings s = {.idle_timeout = 0.3};
    run_with_client(&s, detach_free_handler, NULL, one_get_client, NULL, 30);
    assert_int_equal(free_calls, 1);
}

/* The same from the shutdown's deadline: it closes every connection, and the first on_close
 * frees the server while the deadline still walks the others. */
static int deadline_detached;

static void finish_and_free_once(sq_http_request *req, void *arg)
{
    free_calls++;
    sq_http_finish(req);
    if (gone_h->srv) sq_http_server_free(gone_h->srv); /* from the first callback only */
    gone_h->srv = NULL;
}

static void detach_then_shutdown_handler(sq_http_request *req, void *arg)
{
    gone_h = arg;
    sq_http_on_connection_close(req, finish_and_free_once, NULL);
    sq_http_detach(req);
    if (++deadline_detached == 3) sq_future_release(sq_http_server_shutdown(gone_h->srv, 0.2));
}

static void three_gets_client(harness *h)
{
    cl c[3];
    for (int i = 0; i < 3; i++) {
        CHECK(h, cl_open(&c[i], h->port) == 0);
        CHECK(h, cl_sends(&c[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        usleep(50 * 1000); /* in order */
    }
    for (int i = 0; i < 3; i++) {
        char b[256];
        while (recv(c[i].fd, b, sizeof b, 0) > 0) { /* until the server closes */
        }
        cl_close(&c[i]);
    }
}

static void test_deadline_on_close_frees_server(void **state)
{
    free_calls = deadline_detached = 0;
    run_with_client(NULL, detach_then_shutdown_handler, NULL, three_gets_client, NULL, 30);
    assert_int_equal(deadline_detached, 3);
    assert_int_equal(free_calls, 3);
}

/* The server's own free closes the connections, and their on_close callbacks free it again:
 * those calls wait for the free in progress. */
static cl kept[2];

static void detach_only_handler(sq_http_request *req, void *arg)
{
    gone_h = arg;
    sq_http_on_connection_close(req, finish_and_free_once, NULL);
    sq_http_detach(req);
    deadline_detached++;
}

static void two_kept_client(harness *h)
{
    for (int i = 0; i < 2; i++) {
        CHECK(h, cl_open(&kept[i], h->port) == 0);
        CHECK(h, cl_sends(&kept[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    }
    usleep(200 * 1000); /* both detached; they stay open until the server is freed */
}

static void test_free_from_on_close_during_free(void **state)
{
    free_calls = deadline_detached = 0;
    run_with_client(NULL, detach_only_handler, NULL, two_kept_client, NULL, 30);
    for (int i = 0; i < 2; i++) cl_close(&kept[i]);
    assert_int_equal(deadline_detached, 2);
    assert_int_equal(free_calls, 2);
}

/* Two requests pipelined, then the client's FIN: the first is detached and its on_close
 * (the FIN) finishes it, which starts the second inside that callback; the second detaches
 * too and must be told of the FIN as well (it never was: it waited forever). */
static int piped_closed;

static void piped_on_close(sq_http_request *req, void *arg)
{
    piped_closed++;
    sq_http_write(req, "bye", 3);
    sq_http_finish(req);
}

static void piped_handler(sq_http_request *req, void *arg)
{
    sq_http_on_connection_close(req, piped_on_close, NULL);
    sq_http_detach(req);
}

/* Sends `n` requests (1 or 2, pipelined), then its FIN: each gets its "bye", then EOF. */
static void fin_client(harness *h, int n)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    for (int i = 0; i < n; i++) CHECK(h, cl_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    if (n > 1) usleep(100 * 1000); /* both in before the FIN */
    shutdown(c.fd, SHUT_WR);
    for (int i = 0; i < n; i++) {
        resp r;
        CHECK(h, cl_response(&c, &r, false) == 0);
        CHECK(h, r.status == 200 && r.body_len == 3);
        resp_free(&r);
    }
    CHECK(h, cl_eof(&c));
    cl_close(&c);
}

static void piped_fin_client(harness *h)
{
    fin_client(h, 2);
}

static void test_pipelined_behind_detached_fin(void **state)
{
    piped_closed = 0;
    run_with_client(NULL, piped_handler, NULL, piped_fin_client, NULL, 20);
    assert_int_equal(piped_closed, 2);
}

/* The FIN read before the handler registers its on_close (it suspended first): it is told
 * on the next pass, not never. */
static void late_register_handler(sq_http_request *req, void *arg)
{
    sq_sleep(0.1); /* the request and the FIN are in by now */
    sq_http_on_connection_close(req, piped_on_close, NULL);
    sq_http_detach(req);
}

static void request_fin_client(harness *h)
{
    fin_client(h, 1);
}

static void test_on_close_registered_after_fin(void **state)
{
    piped_closed = 0;
    run_with_client(NULL, late_register_handler, NULL, request_fin_client, NULL, 20);
    assert_int_equal(piped_closed, 1);
}

static void reset_or_close(cl *c, bool reset)
{
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    cl_close(c);
}

/* The client resets the connection while the handler sleeps, before it registers its
 * on_close: the callback is told when the handler returns. */
static void reset_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(20 * 1000);
    reset_or_close(&c, true);
    for (int i = 0; i < 300 && !__atomic_load_n(&piped_closed, __ATOMIC_SEQ_CST); i++)
        usleep(10 * 1000);
}

static void test_on_close_registered_after_reset(void **state)
{
    piped_closed = 0;
    run_with_client(NULL, late_register_handler, NULL, reset_client, NULL, 20);
    assert_int_equal(piped_closed, 1);
}

/* A detached request served by another coroutine (sq_go), suspended in sq_http_flush above
 * the high-water mark or in sq_http_read_body, when the client goes (a reset, or a close)
 * and the on_close callback finishes the request: the coroutine wakes to an error on a
 * connection still there, which is freed after. */
static int other_closed, other_rc, other_listed;

static void finish_on_close(sq_http_request *req, void *arg)
{
    other_closed++;
    sq_http_finish(req);
}

static void *streamer(void *arg)
{
    static char junk[256 * 1024];
    memset(junk, 'x', sizeof junk);
    for (int i = 0; i < 400; i++) {
        sq_http_write(arg, junk, sizeof junk);
        int e = sq_http_flush(arg);
        if (e < 0) {
            other_rc = e;
            return NULL;
        }
    }
    sq_http_finish(arg);
    return NULL;
}

static void *reader(void *arg)
{
    const char *d;
    other_rc = (int)sq_http_read_body(arg, &d);
    return NULL;
}

static void other_coro_handler(sq_http_request *req, void *arg)
{
    sq_http_on_connection_close(req, finish_on_close, NULL);
    sq_http_detach(req);
    bool post = req->method.len == 4 && !memcmp(req->method.ptr, "POST", 4);
    sq_go(NULL, post ? reader : streamer, req);
}

static void count_listed(void *arg)
{
    harness *h = arg;
    int n = 0;
    for (sq_http_conn *c = h->srv->conns; c; c = c->next) n++;
    __atomic_store_n(&other_listed, n, __ATOMIC_SEQ_CST);
}

/* the server's list of connections empties (the one closed was freed), within 5 s */
static bool conns_freed(harness *h)
{
    for (int i = 0; i < 50; i++) {
        __atomic_store_n(&other_listed, -1, __ATOMIC_SEQ_CST);
        sq_add_callback_threadsafe(h->loop, count_listed, h);
        while (__atomic_load_n(&other_listed, __ATOMIC_SEQ_CST) < 0) usleep(1000);
        if (__atomic_load_n(&other_listed, __ATOMIC_SEQ_CST) == 0) return true;
        usleep(100 * 1000);
    }
    return false;
}

static void streamer_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    int sz = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    CHECK(h, cl_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    char b[1024];
    CHECK(h, recv(c.fd, b, sizeof b, 0) > 0); /* the stream began; the rest waits */
    usleep(300 * 1000);
    reset_or_close(&c, true);
    CHECK(h, conns_freed(h));
}

static void reader_client(harness *h, bool reset)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h,
          cl_sends(&c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789") == 0);
    usleep(300 * 1000);
    reset_or_close(&c, reset);
    CHECK(h, conns_freed(h));
}

static void reader_reset_client(harness *h)
{
    reader_client(h, true);
}

static void reader_close_client(harness *h)
{
    reader_client(h, false);
}

static void test_other_coroutine_waits(void **state)
{
    client_fn clients[] = {streamer_client, reader_reset_client, reader_close_client};
    for (int i = 0; i < 3; i++) {
        other_closed = other_rc = 0;
        run_with_client(NULL, other_coro_handler, NULL, clients[i], NULL, 30);
        assert_int_equal(other_closed, 1);
        assert_true(other_rc < 0);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_server_name),
        cmocka_unit_test(test_unread_chunked_body_lingers),
        cmocka_unit_test(test_detached_idle_timeout),
        cmocka_unit_test(test_on_close_finishes_others),
        cmocka_unit_test(test_shutdown_callback_frees_server),
        cmocka_unit_test(test_on_close_frees_server),
        cmocka_unit_test(test_deadline_on_close_frees_server),
        cmocka_unit_test(test_free_from_on_close_during_free),
        cmocka_unit_test(test_pipelined_behind_detached_fin),
        cmocka_unit_test(test_on_close_registered_after_fin),
        cmocka_unit_test(test_on_close_registered_after_reset),
        cmocka_unit_test(test_other_coroutine_waits),
    };
    (void)run_cmd;
    (void)cl_eof;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
