/* http_load: a small HTTP/1.1 load client for the benchmarks that wrk cannot do.
 *
 *   http_load hold  PORT PATH N          open N keep-alive connections, send one GET on each,
 *                                        read every response, then hold them all open
 *   http_load count PORT PATH TOTAL CONNS [DEPTH]
 *                                        exactly TOTAL GETs over CONNS keep-alive connections,
 *                                        DEPTH requests in flight per connection (pipelined
 *                                        when DEPTH > 1), then exit
 *
 * hold prints "sent N" once every request is written, then "answered N ok=K bad=B" once every
 * response came back (ok: status 200), then waits for its stdin to close (or SIGTERM) before
 * closing the connections.  The scripts read the server's /proc/<pid>/status in between: with
 * a plain route that is the idle keep-alive cost, with a sleeping route (long polling) the cost
 * of a parked request.  count prints "done TOTAL ok=K bad=B SECONDS s".
 *
 * One thread, epoll, non-blocking sockets; connections close with RST (SO_LINGER 0) so that
 * repeated runs do not pile up TIME_WAIT ports.  Responses must carry Content-Length.
 * Exit status: 0 when every response was a 200, 1 otherwise, 2 on usage or setup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE    8192
#define MAX_DEPTH   64
#define CONNECT_MAX 512 /* connections being set up at once */

typedef struct conn {
    int fd;
    bool connected;
    unsigned inflight; /* requests sent, responses not yet read */
    size_t wpos, wlen; /* pending request bytes in the shared request block */
    size_t rlen;
    char rbuf[BUF_SIZE];
} conn;

static const char *g_req;
static size_t g_req_len;
static unsigned long long g_ok, g_bad, g_done;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "http_load: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int open_conn(int ep, conn *c, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return 0;
}

/* Queue `n` requests on the connection (they go out from the shared block). */
static void queue_requests(conn *c, unsigned n)
{
    c->wpos = 0;
    c->wlen = g_req_len * n;
    c->inflight += n;
}

static void want(int ep, conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; -1 on a socket error. */
static int flush_out(int ep, conn *c, const char *block)
{
    while (c->wpos < c->wlen) {
        ssize_t n = send(c->fd, block + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);
        if (n > 0) {
            c->wpos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            want(ep, c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        return -1;
    }
    want(ep, c, EPOLLIN);
    return 0;
}

/* Consume complete responses from the read buffer; returns how many, -1 on garbage. */
static int take_responses(conn *c)
{
    int got = 0;
    for (;;) {
        char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!end) {
            if (c->rlen == BUF_SIZE) return -1;
            return got;
        }
        size_t head = (size_t)(end - c->rbuf) + 4;
        if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.", 7)) return -1;
        int status = atoi(c->rbuf + 9);
        long clen = -1;
        for (char *p = c->rbuf; p < end; p++) {
            if (*p == '\n' && !strncasecmp(p + 1, "Content-Length:", 15)) {
                clen = strtol(p + 16, NULL, 10);
                break;
            }
        }
        if (clen < 0 || head + (size_t)clen > BUF_SIZE) return -1;
        if (c->rlen < head + (size_t)clen) return got;
        size_t used = head + (size_t)clen;
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
        if (status == 200)
            g_ok++;
        else
            g_bad++;
        g_done++;
        c->inflight--;
        got++;
    }
}

/* Read what is there; returns responses completed, -1 on error or EOF. */
static int read_in(conn *c)
{
    int total = 0;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, BUF_SIZE - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            int r = take_responses(c);
            if (r < 0) return -1;
            total += r;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return total;
        return -1;
    }
}

static volatile sig_atomic_t g_stop;
static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: http_load hold PORT PATH N\n"
                    "       http_load count PORT PATH TOTAL CONNS [DEPTH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 5) usage();
    bool hold = !strcmp(argv[1], "hold");
    if (!hold && strcmp(argv[1], "count")) usage();
    int port = atoi(argv[2]);
    const char *path = argv[3];
    unsigned long long total = strtoull(argv[4], NULL, 10);
    size_t nconns = hold ? (size_t)total : (argc > 5 ? (size_t)atol(argv[5]) : 1);
    unsigned depth = (!hold && argc > 6) ? (unsigned)atoi(argv[6]) : 1;
    if (port <= 0 || !total || !nconns || depth < 1 || depth > MAX_DEPTH) usage();
    if (!hold && nconns > total) nconns = (size_t)total;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);

    static char one[512];
    int rl = snprintf(one, sizeof one, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    if (rl <= 0 || (size_t)rl >= sizeof one) usage();
    g_req_len = (size_t)rl;
    char *block = malloc(g_req_len * depth);
    if (!block) die("malloc");
    for (unsigned i = 0; i < depth; i++) memcpy(block + i * g_req_len, one, g_req_len);
    g_req = block;

    conn *cs = calloc(nconns, sizeof *cs);
    if (!cs) die("calloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    unsigned long long sent = 0; /* requests queued */
    size_t opened = 0, pending_connect = 0, errors = 0;
    bool sent_reported = false;
    double t0 = now(), last_progress = t0;
    struct epoll_event evs[256];
    while (g_done + errors < total) {
        /* open more connections, a few hundred at a time */
        while (opened < nconns && pending_connect < CONNECT_MAX) {
            if (open_conn(ep, &cs[opened], port) < 0) {
                fprintf(stderr, "http_load: connect: %s\n", strerror(errno));
                errors += hold ? 1 : 0;
                if (!hold) exit(2);
            } else {
                pending_connect++;
            }
            opened++;
        }
        if (hold && !sent_reported && sent + errors >= total && pending_connect == 0) {
            bool all_written = true;
            for (size_t i = 0; i < nconns && all_written; i++)
                if (cs[i].wpos < cs[i].wlen) all_written = false;
            if (all_written) {
                printf("sent %llu\n", sent);
                fflush(stdout);
                sent_reported = true;
            }
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno == EINTR) {
            if (g_stop) break;
            continue;
        }
        if (n < 0) die("epoll_wait");
        if (n == 0 && now() - last_progress > 60) {
            fprintf(stderr, "http_load: no progress for 60 s (%llu/%llu done)\n", g_done, total);
            break;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c->connected) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    fprintf(stderr, "http_load: connect: %s\n", strerror(err));
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = -1;
                    pending_connect--;
                    errors++;
                    continue;
                }
                c->connected = true;
                pending_connect--;
                unsigned k = depth;
                if (sent + k > total) k = (unsigned)(total - sent);
                if (hold) k = 1;
                if (k) {
                    queue_requests(c, k);
                    sent += k;
                }
                if (flush_out(ep, c, block) < 0) goto broken;
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(ep, c, block) < 0) goto broken;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int r = read_in(c);
                if (r < 0) goto broken;
                if (r > 0) last_progress = now();
                if (!hold && c->inflight == 0 && sent < total) {
                    unsigned k = depth;
                    if (sent + k > total) k = (unsigned)(total - sent);
                    queue_requests(c, k);
                    sent += k;
                    if (flush_out(ep, c, block) < 0) goto broken;
                }
            }
            continue;
        broken:
            fprintf(stderr, "http_load: connection lost with %u responses outstanding\n",
                    c->inflight);
            errors += c->inflight;
            g_bad += c->inflight;
            c->inflight = 0;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
        }
    }
    double secs = now() - t0;
    if (hold) {
        if (!sent_reported) printf("sent %llu\n", sent);
        printf("answered %llu ok=%llu bad=%llu in %.2f s\n", g_done, g_ok, g_bad, secs);
        fflush(stdout);
        /* hold until stdin closes or SIGTERM */
        while (!g_stop) {
            struct pollfd p = {.fd = 0, .events = POLLIN};
            int r = poll(&p, 1, 1000);
            if (r > 0) {
                char b[64];
                if (read(0, b, sizeof b) <= 0) break;
            }
        }
    } else {
        printf("done %llu ok=%llu bad=%llu %.3f s\n", g_done, g_ok, g_bad, secs);
    }
    for (size_t i = 0; i < opened; i++)
        if (cs[i].fd > 0) close(cs[i].fd);
    free(cs);
    free(block);
    close(ep);
    return g_ok == total ? 0 : 1;
}
