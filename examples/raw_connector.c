/* The loop's callback API on its own, without coroutines or streams: connect to HOST:PORT,
 * send an HTTP/1.1 GET from a write watcher, collect the reply from a read watcher until the
 * server closes, print it, and stop.
 *
 *   raw_connector HOST [PORT]     PORT defaults to 80.
 *
 * The name is resolved with getaddrinfo before the loop starts (blocking is harmless then).
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <squall.h>

#define TIMEOUT 10.0

typedef struct client {
    sq_io io;
    sq_timer timer;
    char request[512];
    size_t req_len, req_sent;
    char *reply;
    size_t reply_len, reply_cap;
    int status; /* 0 while running or done well; negative errno on failure */
    const char *failed_at;
} client;

static void finish(sq_loop *loop, client *c, int err, const char *where)
{
    if (err < 0 && !c->status) {
        c->status = err;
        c->failed_at = where;
    }
    sq_io_stop(loop, &c->io);
    sq_timer_stop(&c->timer);
    sq_loop_stop(loop);
}

static void on_readable(sq_loop *loop, sq_io *io, unsigned events)
{
    client *c = io->data;
    for (;;) {
        if (c->reply_cap - c->reply_len < 4096) {
            size_t cap = c->reply_cap ? c->reply_cap * 2 : 16384;
            char *nb = realloc(c->reply, cap);
            if (!nb) {
                finish(loop, c, -ENOMEM, "reading the reply");
                return;
            }
            c->reply = nb;
            c->reply_cap = cap;
        }
        ssize_t n = read(io->fd, c->reply + c->reply_len, c->reply_cap - c->reply_len);
        if (n > 0) {
            c->reply_len += (size_t)n;
            continue;
        }
        if (n == 0) {
            finish(loop, c, 0, NULL); /* the server closed: the reply is complete */
            return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) finish(loop, c, -errno, "reading the reply");
        return;
    }
}

static void on_writable(sq_loop *loop, sq_io *io, unsigned events)
{
    client *c = io->data;
    if (c->req_sent == 0) {
        /* First writability after a non-blocking connect: did it succeed? */
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
        if (soerr) {
            finish(loop, c, -soerr, "connecting");
            return;
        }
    }
    while (c->req_sent < c->req_len) {
        ssize_t n = send(io->fd, c->request + c->req_sent, c->req_len - c->req_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return; /* wait for more room */
            finish(loop, c, -errno, "sending the request");
            return;
        }
        c->req_sent += (size_t)n;
    }
    /* Request sent: from now on only the reply matters. */
    sq_io_stop(loop, io);
    sq_io_init(io, io->fd, on_readable, c);
    int r = sq_io_start(loop, io, SQ_READ);
    if (r < 0) finish(loop, c, r, "watching for the reply");
}

static void on_timeout(sq_loop *loop, sq_timer *t)
{
    finish(loop, t->data, -ETIMEDOUT, "waiting for the server");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOST [PORT]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    const char *port = argc > 2 ? argv[2] : "80";

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        fprintf(stderr, "raw_connector: cannot resolve %s:%s: %s\n", host, port, gai_strerror(g));
        return 1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS)) {
        fprintf(stderr, "raw_connector: cannot connect to %s:%s: %s\n", host, port,
                strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return 1;
    }
    freeaddrinfo(res);

    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) {
        perror("raw_connector: sq_loop_new");
        close(fd);
        return 1;
    }
    client c = {0};
    int len = snprintf(c.request, sizeof c.request,
                       "GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", host, port);
    if (len < 0 || (size_t)len >= sizeof c.request) {
        fprintf(stderr, "raw_connector: host name too long\n");
        close(fd);
        sq_loop_free(loop);
        return 1;
    }
    c.req_len = (size_t)len;
    sq_io_init(&c.io, fd, on_writable, &c);
    sq_timer_init(loop, &c.timer, on_timeout, &c);
    sq_timer_start(&c.timer, TIMEOUT, 0);
    int r = sq_io_start(loop, &c.io, SQ_WRITE);
    if (r < 0)
        finish(loop, &c, r, "watching the socket");
    else
        r = sq_loop_run(loop);
    if (r < 0 && !c.status) {
        c.status = r;
        c.failed_at = "running the loop";
    }
    sq_io_stop(loop, &c.io);
    sq_timer_stop(&c.timer);
    close(fd);
    sq_loop_free(loop);

    if (c.status < 0) {
        fprintf(stderr, "raw_connector: error %s %s:%s: %s\n", c.failed_at, host, port,
                sq_strerror(c.status));
        free(c.reply);
        return 1;
    }
    if (c.reply_len == 0) {
        fprintf(stderr, "raw_connector: %s:%s closed the connection without a reply\n", host, port);
        free(c.reply);
        return 1;
    }
    fwrite(c.reply, 1, c.reply_len, stdout);
    free(c.reply);
    return 0;
}
