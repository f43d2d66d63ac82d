/* Cancelled stream futures whose done-callbacks free the stream, the read_into buffer, or
 * start the next read; a timeout whose callback frees the stream it was reading from. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "testutil.h"

typedef struct pair { sq_stream *a, *b; } pair;

static pair make_pair(sq_loop *loop)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pair p = {sq_stream_new(loop, sv[0]), sq_stream_new(loop, sv[1])};
    return p;
}

static void free_stream_cb(sq_future *f, void *arg)
{
    (void)f;
    sq_stream_free(arg);
}

/* 1: a read future's done-callback frees the stream when the read is cancelled. */
static void test_cancel_read_cb_frees_stream(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *r = sq_stream_read_until_future(p.b, "\n", 1, 0);
    sq_future_add_done_callback(r, free_stream_cb, p.b);
    sq_loop_run_once(loop, false);
    sq_future_cancel(r); /* read_cancelled(r, freed stream) */
    sq_future_release(r);
    sq_stream_free(p.a);
    sq_loop_free(loop);
}

/* 2: read_into: the done-callback frees the caller's buffer when the read is cancelled. */
static void free_buf_cb(sq_future *f, void *arg)
{
    (void)f;
    free(arg);
}
static void test_cancel_read_into_cb_frees_buffer(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    char *buf = malloc(10);
    sq_future *r = sq_stream_read_into_future(p.b, buf, 10, false);
    sq_future_add_done_callback(r, free_buf_cb, buf);
    sq_future_release(sq_stream_write_future(p.a, "12345", 5));
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false); /* 5 bytes land in buf */
    assert_false(sq_future_done(r));
    sq_future_cancel(r); /* into_put_back copies from the freed buf */
    sq_future_release(r);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
}

/* 3: sq_with_timeout on a read; the outer future's done-callback frees the stream. */
static void test_timeout_cb_frees_stream(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *t = sq_with_timeout(sq_stream_read_until_future(p.b, "\n", 1, 0), 0.01);
    sq_future_add_done_callback(t, free_stream_cb, p.b);
    for (int i = 0; i < 100 && !sq_future_done(t); i++) sq_loop_run_once(loop, true);
    assert_int_equal(sq_future_status(t), -ETIMEDOUT);
    sq_future_release(t);
    sq_stream_free(p.a);
    sq_loop_free(loop);
}

/* 4: a done-callback of a cancelled read starts the next read: it must be accepted. */
static sq_future *next_read;
static void reread_cb(sq_future *f, void *arg)
{
    (void)f;
    next_read = sq_stream_read_until_future(arg, "\n", 1, 0);
}
static void test_cancel_read_cb_rereads(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    sq_future *r = sq_stream_read_until_future(p.b, "\n", 1, 0);
    sq_future_add_done_callback(r, reread_cb, p.b);
    sq_future_cancel(r);
    sq_future_release(r);
    assert_non_null(next_read);
    int64_t st = sq_future_done(next_read) ? sq_future_status(next_read) : 1;
    fprintf(stderr, "re-read from the cancel callback: %s\n",
            st == 1 ? "pending (ok)" : sq_strerror((int)st));
    sq_future_release(next_read);
    sq_stream_free(p.a);
    sq_stream_free(p.b);
    sq_loop_free(loop);
    assert_int_equal(st, 1);
}

/* 5: start_tls's future: a done-callback frees the stream when the handshake is cancelled. */
static void test_cancel_tls_cb_frees_stream(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    pair p = make_pair(loop);
    int err = 0;
    sq_tls_options o = {.insecure_no_verify = true};
    sq_tls_context *ctx = sq_tls_client_context_new(&o, &err);
    assert_non_null(ctx);
    sq_future *h = sq_stream_start_tls_future(p.b, ctx, "localhost");
    assert_false(sq_future_done(h));
    sq_future_add_done_callback(h, free_stream_cb, p.b);
    sq_future_cancel(h); /* tls_cancelled(h, freed stream) */
    sq_future_release(h);
    sq_stream_free(p.a);
    sq_tls_context_free(ctx);
    sq_loop_free(loop);
}


/* 6: the server closed from its own on_accept callback, with several connections queued. */
static int accepted;
static void close_on_accept(sq_tcp_server *srv, int fd, const struct sockaddr *peer,
                            socklen_t plen, void *arg)
{
    accepted++;
    close(fd);
    sq_tcp_server_close(srv);
    sq_tcp_server_close(srv); /* idempotent? */
}
static void test_server_close_in_accept(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err = 0;
    sq_tcp_options o = {.on_accept = close_on_accept};
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, &o, NULL, NULL, &err);
    assert_non_null(srv);
    int port = sq_tcp_server_port(srv);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(0x7f000001)};
        assert_int_equal(connect(c[i], (struct sockaddr *)&a, sizeof a), 0);
    }
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    assert_int_equal(accepted, 1);
    for (int i = 0; i < 3; i++) close(c[i]);
    sq_loop_free(loop);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_cancel_read_cb_frees_stream),
        cmocka_unit_test(test_cancel_read_into_cb_frees_buffer),
        cmocka_unit_test(test_timeout_cb_frees_stream),
        cmocka_unit_test(test_cancel_read_cb_rereads),
        cmocka_unit_test(test_cancel_tls_cb_frees_stream),
        cmocka_unit_test(test_server_close_in_accept),
    };
    if (argc > 1) {
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (!strcmp(all[i].name, argv[1])) {
                const struct CMUnitTest one[] = {all[i]};
                return _cmocka_run_group_tests(argv[1], one, 1, NULL, NULL);
            }
        return 2;
    }
    return cmocka_run_group_tests(all, NULL, NULL);
}
