/* Backpressure: a coroutine pushing 256 MiB at a slow reader keeps at most the high-water
 * mark plus one chunk pending, and every byte arrives intact. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define TOTAL  (256u << 20)
#define CHUNK  (64u << 10)
#define PERIOD 251u /* the byte at stream offset o is o % PERIOD */

static unsigned char pattern[CHUNK + PERIOD];

static void fill_pattern(void)
{
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (unsigned char)(i % PERIOD);
}

/* The slow reader, in a child process: small reads, a pause every MiB, every byte checked.
 * Exit status 0 means all TOTAL bytes arrived in order. */
static void reader_child(int fd)
{
    static unsigned char buf[16384];
    size_t got = 0;
    size_t next_pause = 1u << 20;
    while (got < TOTAL) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) _exit(2);
        if (memcmp(buf, pattern + got % PERIOD, (size_t)n) != 0) _exit(3);
        got += (size_t)n;
        if (got >= next_pause) {
            next_pause += 1u << 20;
            struct timespec ts = {0, 500000}; /* 0.5 ms */
            nanosleep(&ts, NULL);
        }
    }
    char extra;
    if (read(fd, &extra, 1) != 0) _exit(4); /* nothing beyond TOTAL, then EOF */
    _exit(0);
}

typedef struct writer_ctx {
    sq_stream *s;
    size_t max_pending_seen;
} writer_ctx;

static void *writer(void *arg)
{
    writer_ctx *c = arg;
    for (size_t off = 0; off < TOTAL; off += CHUNK) {
        assert_int_equal(sq_stream_write(c->s, pattern + off % PERIOD, CHUNK), 0);
        size_t p = sq_stream_pending(c->s);
        if (p > c->max_pending_seen) c->max_pending_seen = p;
    }
    assert_int_equal(sq_stream_drain(c->s), 0);
    return NULL;
}

static void test_backpressure_bounds_pending(void **state)
{
    fill_pattern();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 64 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        reader_child(sv[1]);
    }
    close(sv[1]);

    sq_loop *loop = sq_loop_new(NULL);
    writer_ctx c = {.s = sq_stream_new(loop, sv[0])};
    assert_non_null(c.s);
    double t0 = sq_test_now();
    sq_test_run_coro(loop, writer, &c, 120);
    double took = sq_test_now() - t0;
    size_t peak = sq_stream_pending_peak(c.s);
    print_message("256 MiB in %.2f s (%.0f MiB/s); pending peak %zu bytes (mark %u)\n", took,
                  256 / took, peak, SQ_STREAM_DEFAULT_HIGH_WATER);
    sq_stream_free(c.s); /* EOF for the reader */
    sq_loop_free(loop);

    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Bounded: the mark plus the one chunk that crossed it. */
    assert_true(peak <= SQ_STREAM_DEFAULT_HIGH_WATER + CHUNK);
    assert_true(c.max_pending_seen <= SQ_STREAM_DEFAULT_HIGH_WATER + CHUNK);
    /* And exercised: the reader was slow enough that writes did queue up to the mark. */
    assert_true(peak > SQ_STREAM_DEFAULT_HIGH_WATER / 2);
}

/* The same with the reader a coroutine on the same loop over TCP, sleeping between reads,
 * and a lower high-water mark. */
typedef struct tcp_ctx {
    int port;
    size_t peak;
    size_t received;
} tcp_ctx;

#define TCP_TOTAL (32u << 20)
#define TCP_MARK  (256u << 10)

static void pusher(sq_stream *s, const struct sockaddr *peer, void *arg)
{
    tcp_ctx *c = arg;
    sq_stream_set_high_water(s, TCP_MARK);
    for (size_t off = 0; off < TCP_TOTAL; off += CHUNK)
        if (sq_stream_write(s, pattern + off % PERIOD, CHUNK) < 0) break;
    sq_stream_drain(s);
    c->peak = sq_stream_pending_peak(s);
}

static void *slow_tcp_reader(void *arg)
{
    tcp_ctx *c = arg;
    int err;
    sq_stream *s = sq_tcp_connect("127.0.0.1", c->port, 5.0, &err);
    assert_non_null(s);
    int small = 32 * 1024;
    setsockopt(sq_stream_fd(s), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    int reads = 0;
    for (;;) {
        const char *d;
        ssize_t n = sq_stream_read_bytes(s, 32768, true, &d);
        if (n < 0) break;
        assert_memory_equal(d, pattern + c->received % PERIOD, (size_t)n);
        c->received += (size_t)n;
        if (++reads % 64 == 0) sq_sleep(0.001);
    }
    sq_stream_free(s);
    return NULL;
}

static void test_backpressure_tcp_coroutines(void **state)
{
    fill_pattern();
    sq_loop *loop = sq_loop_new(NULL);
    tcp_ctx c = {0};
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, NULL, pusher, &c, &err);
    assert_non_null(srv);
    c.port = sq_tcp_server_port(srv);
    sq_test_run_coro(loop, slow_tcp_reader, &c, 60);
    sq_tcp_server_close(srv);
    sq_loop_free(loop); /* runs the pusher's last steps */
    assert_int_equal(c.received, TCP_TOTAL);
    print_message("tcp: pending peak %zu bytes (mark %u)\n", c.peak, TCP_MARK);
    assert_true(c.peak <= TCP_MARK + CHUNK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backpressure_bounds_pending),
        cmocka_unit_test(test_backpressure_tcp_coroutines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
