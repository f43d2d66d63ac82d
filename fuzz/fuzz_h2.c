/* libFuzzer target: an HTTP/2 server connection (src/http/h2.c over nghttp2), end to end.
 *
 * Input layout: [flags] [split] [bytes sent after the client preface].  A fresh
 * sq_http_server (default or tiny limits, flags bit 3) gets one end of a socketpair as an
 * accepted connection; the preface and the input's first part (split/256 of it) are written
 * to the other end, the loop runs until quiet, then the rest, then (flags bit 6) a graceful
 * server shutdown (GOAWAY), then the client end is closed and the loop runs until every
 * handler has returned and the connection is freed.  The connection starts as plain HTTP and
 * switches by the preface (h2c), so that detection is fuzzed too.
 *
 * The handler does what the request's (flags + path length) % 8 says: read the whole body and
 * echo it, stream it back chunk by chunk with sq_http_flush, a 192 KiB flushed response
 * (beyond the peer's window), a 204/304/404/HEAD-ish response with hop-by-hop headers, a
 * detached request finished from a later callback, sq_http_sendfile, a gzip-able body, or a
 * flushed head then more writes and an explicit finish.  With flags bit 7 the client end is
 * never read while the connection is open and the server's send buffer is small
 * (backpressure: reading pauses above the high-water mark).
 * Invariants: no crash, no sanitizer report, no leak; the loop always gets every handler to
 * return and the connection freed within a bounded number of passes (a hang aborts). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "squall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT    (256u * 1024)
#define QUIET_PASSES 3     /* passes without progress that count as quiet */
#define PHASE_PASSES 400   /* loop passes per phase while the client is connected */
#define END_PASSES   10000 /* passes after the client left: more means a hang */
#define FILE_LEN     70000 /* sq_http_sendfile's file */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static struct {
    sq_loop *loop;
    unsigned flags;
    int memfd;
    int running;  /* handlers not yet returned */
    int detached; /* detached requests not yet finished */
    unsigned long progress;
    char big[16384];
} G;

static void on_close_cb(sq_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    G.progress++;
}

static void finish_later(void *arg)
{
    sq_http_request *req = arg;
    sq_http_write(req, "late\n", 5);
    sq_http_finish(req); /* may free req: a detached request is over once finished */
    G.detached--;
    G.progress++;
}

static void handler(sq_http_request *req, void *arg)
{
    (void)arg;
    G.running++;
    G.progress++;
    unsigned mode = (G.flags + (unsigned)req->path.len) & 7;
#ifdef FUZZ_H2_TRACE
    fprintf(stderr, "handler mode %u %.*s %.*s\n", mode, (int)req->method.len, req->method.ptr,
            (int)req->path.len, req->path.ptr);
#endif
    const char *body;
    ssize_t n;
    if (req->version_major != 2) abort();
    sq_http_on_connection_close(req, on_close_cb, NULL);
    switch (mode) {
    case 0: /* the whole body, echoed */
        n = sq_http_read_body(req, &body);
        if (n >= 0) {
            sq_http_set_header(req, "Content-Type", "application/octet-stream");
            sq_http_write(req, body, (size_t)n);
        }
        break;
    case 1: /* streamed back as it comes */
        while ((n = sq_http_read_body_chunk(req, &body)) > 0) {
            if (sq_http_write(req, body, (size_t)n) < 0 || sq_http_flush(req) < 0) break;
        }
        break;
    case 2: /* more than the peer's window: waits for WINDOW_UPDATE or the end */
        for (int i = 0; i < 12; i++)
            if (sq_http_write(req, G.big, sizeof G.big) < 0 || sq_http_flush(req) < 0) break;
        break;
    case 3: { /* statuses without a body, connection-specific headers dropped */
        static const int codes[] = {204, 304, 404, 200};
        sq_http_set_status(req, codes[req->uri.len & 3], NULL);
        sq_http_set_header(req, "Connection", "close");
        sq_http_set_header(req, "Transfer-Encoding", "chunked");
        sq_http_add_header(req, "X-Multi", "a");
        sq_http_add_header(req, "X-Multi", "b");
        sq_http_write(req, "nope\n", 5);
        break;
    }
    case 4: /* finished later, from a callback, after the handler returned */
        sq_http_detach(req);
        G.detached++;
        if (sq_add_callback(G.loop, finish_later, req) < 0) abort();
        break;
    case 5: /* a file, after a little buffered body */
        sq_http_write(req, "pre", 3);
        sq_http_sendfile(req, G.memfd, (off_t)(req->query.len % 8), FILE_LEN - 8);
        break;
    case 6: /* gzip-able (with the tiny settings' gzip on) */
        sq_http_set_header(req, "Content-Type", "text/plain");
        for (int i = 0; i < 4; i++) sq_http_write(req, G.big, 1024);
        break;
    default: /* body, flushed head, more, explicit finish */
        n = sq_http_read_body(req, &body);
        sq_http_write(req, "a", 1);
        if (sq_http_flush(req) == 0) {
            sq_http_write(req, body, n > 0 ? (size_t)(n < 100 ? n : 100) : 0);
            sq_http_flush(req);
        }
        sq_http_finish(req);
        if (!sq_http_finished(req)) abort();
        break;
    }
    G.running--;
}

static void init(void)
{
    sq_log_set_level(SQ_LOG_OFF);
    G.loop = sq_loop_new(NULL);
    if (!G.loop) abort();
    for (size_t i = 0; i < sizeof G.big; i++) G.big[i] = (char)('a' + i % 26);
    G.memfd = memfd_create("fuzz_h2", 0);
    if (G.memfd < 0) abort();
    for (size_t off = 0; off < FILE_LEN; off += sizeof G.big) {
        size_t k = FILE_LEN - off < sizeof G.big ? FILE_LEN - off : sizeof G.big;
        if (write(G.memfd, G.big, k) != (ssize_t)k) abort();
    }
}

/* Read what the server sent (the client never answers). */
static void drain(int fd)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) G.progress++;
}

/* Write all of p to the client end (its send buffer holds MAX_INPUT; should it be full,
 * the server reads meanwhile). */
static void send_all(int fd, sq_http_server *srv, const uint8_t *p, size_t len)
{
    for (int spins = 0; len && spins < 1000;) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN) return; /* the server closed: the rest is moot */
        if (!sq_http_server_connections(srv)) return;
        sq_loop_run_once(G.loop, false); /* paused by backpressure: gives up after a while */
        drain(fd);
        spins++;
    }
}

/* Run the loop until nothing happens for a few passes (or the bound). */
static void run_quiet(int cfd, int sfd, bool read_output)
{
    int quiet = 0;
    for (int i = 0; i < PHASE_PASSES && quiet < QUIET_PASSES; i++) {
        unsigned long before = G.progress;
        int running = G.running, detached = G.detached;
        sq_loop_run_once(G.loop, false);
        if (read_output) drain(cfd);
        int pending = 0;
        ioctl(sfd, FIONREAD, &pending);
        bool moved =
            G.progress != before || G.running != running || G.detached != detached || pending > 0;
        quiet = moved ? 0 : quiet + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.loop) init();
    if (size < 2 || size > MAX_INPUT) return 0;
    G.flags = data[0];
    size_t len = size - 2, split = (size_t)data[1] * len / 256;
    const uint8_t *in = data + 2;
    bool tiny = G.flags & 8, goaway = G.flags & 64, stall = G.flags & 128;

    sq_http_settings s = {0};
    if (tiny) {
        s.max_header_size = 256;
        s.max_body_size = 100;
        s.write_high_water = 512;
        s.http2_max_concurrent_streams = 3;
        s.gzip = true;
        s.xheaders = true;
        s.access_log = true;
        s.server_name = "";
    }
    sq_http_server *srv = sq_http_server_new(G.loop, &s, handler, NULL);
    if (!srv) abort();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    int big = 1 << 20, small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (stall) setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct sockaddr_un peer = {.sun_family = AF_UNIX};
    sq__http_conn_new(srv, sv[1], (struct sockaddr *)&peer);
    int cfd = sv[0], sfd = sv[1];

    send_all(cfd, srv, (const uint8_t *)preface, 24);
    send_all(cfd, srv, in, split);
    run_quiet(cfd, sfd, !stall);
    send_all(cfd, srv, in + split, len - split);
    run_quiet(cfd, sfd, !stall);
    sq_future *shut = NULL;
    if (goaway) {
        shut = sq_http_server_shutdown(srv, 60);
        if (!shut) abort();
        run_quiet(cfd, sfd, !stall);
    }

    /* the client leaves: every handler must return and the connection be freed */
    close(cfd);
    int i = 0;
    for (; i < END_PASSES; i++) {
        if (!srv->conns && !srv->idle.head && !srv->fresh.head && !G.running && !G.detached)
            break;
        sq_loop_run_once(G.loop, false);
    }
    if (i == END_PASSES) {
        fprintf(stderr, "fuzz_h2: still %d handlers, %d detached, conns %p after %d passes\n",
                G.running, G.detached, (void *)srv->conns, END_PASSES);
        sq_http_conn *c = srv->conns;
        if (c)
            fprintf(stderr,
                    "closed %d h2 %d rpaused %d peer_eof %d events %u reg %d tkind %d out %zu/%zu "
                    "in_io %d\n",
                    c->closed, c->h2_mode, c->rpaused, c->peer_eof, c->io.events,
                    c->io.sq__registered, c->tkind, c->a ? c->a->opos : 0,
                    c->a ? c->a->out.len : 0, c->in_io);
        abort();
    }
    if (sq_http_server_connections(srv) != 0) abort();
    if (shut) {
        if (!sq_future_done(shut)) abort(); /* the last connection resolves it */
        sq_future_release(shut);
    }
    sq_http_server_free(srv);
    /* pending callbacks (none expected) and coroutine returns */
    sq_loop_run_once(G.loop, false);
    return 0;
}
