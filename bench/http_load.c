/* http_load: a small HTTP/1.1 load client for the benchmarks that wrk cannot do.
 *
 *   http_load [--tls] hold  PORT PATH N  open N keep-alive connections, send one GET on each,
 *                                        read every response, then hold them all open
 *   http_load [--tls] count PORT PATH TOTAL CONNS [DEPTH]
 *                                        exactly TOTAL GETs over CONNS keep-alive connections,
 *                                        DEPTH requests in flight per connection (pipelined
 *                                        when DEPTH > 1), then exit
 *   http_load [--tls] close PORT PATH TOTAL CONNS
 *                                        exactly TOTAL GETs, each on a connection of its own
 *                                        ("Connection: close"; the server closes first, then
 *                                        the client), CONNS connections at a time
 *
 * --tls: HTTPS (TLS 1.2 or 1.3, whatever the server picks; the certificate is not checked).
 * Every connection makes a full handshake: the client keeps no sessions, so it never resumes
 * one (wrk does resume: bench/https_compare.sh uses `close` for full handshakes).  Idle held
 * connections keep their SSL object with its record buffers released.
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clock.h"

#define BUF_SIZE    8192
#define MAX_DEPTH   64
#define CONNECT_MAX 512 /* connections being set up at once */

typedef struct conn {
    int fd;
    bool connected;
    bool hs_done;      /* TLS: the handshake completed */
    SSL *ssl;          /* NULL: plain TCP */
    unsigned inflight; /* requests sent, responses not yet read */
    size_t wpos, wlen; /* pending request bytes in the shared request block */
    size_t rlen;
    char rbuf[BUF_SIZE];
} conn;

static const char *g_req;
static size_t g_req_len;
static unsigned long long g_ok, g_bad, g_done;
static SSL_CTX *g_tls; /* --tls */

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
    c->connected = c->hs_done = false;
    c->inflight = 0;
    c->wpos = c->wlen = c->rlen = 0;
    if (g_tls) {
        c->ssl = SSL_new(g_tls);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            fprintf(stderr, "http_load: SSL_new failed\n");
            exit(2);
        }
        SSL_set_connect_state(c->ssl);
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return 0;
}

/* Close the connection (RST) and free its TLS state. */
static void drop_conn(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
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
        if (c->ssl) {
            /* the first write drives the handshake; a retry passes the same bytes */
            size_t w = 0;
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, block + c->wpos, c->wlen - c->wpos, &w);
            if (r == 1) {
                c->wpos += w;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                want(ep, c, EPOLLIN);
                return 0;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                want(ep, c, EPOLLIN | EPOLLOUT);
                return 0;
            }
            return -1;
        }
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

/* Read what is there; returns responses completed, -1 on error or EOF (*eof set for an
 * orderly end: a FIN, or TLS close_notify). */
static int read_in(int ep, conn *c, bool *eof)
{
    int total = 0;
    *eof = false;
    for (;;) {
        if (c->ssl) {
            size_t got = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, c->rbuf + c->rlen, BUF_SIZE - c->rlen, &got);
            if (r == 1) {
                c->rlen += got;
                int k = take_responses(c);
                if (k < 0) return -1;
                total += k;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) return total;
            if (e == SSL_ERROR_WANT_WRITE) {
                want(ep, c, EPOLLIN | EPOLLOUT);
                return total;
            }
            *eof = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error());
            return -1;
        }
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
        *eof = n == 0;
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
    fprintf(stderr, "usage: http_load [--tls] hold PORT PATH N\n"
                    "       http_load [--tls] count PORT PATH TOTAL CONNS [DEPTH]\n"
                    "       http_load [--tls] close PORT PATH TOTAL CONNS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--tls")) {
        g_tls = SSL_CTX_new(TLS_client_method());
        if (!g_tls) die("SSL_CTX_new");
        SSL_CTX_set_min_proto_version(g_tls, TLS1_2_VERSION);
        SSL_CTX_set_verify(g_tls, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(g_tls, SSL_SESS_CACHE_OFF); /* no resumption */
        SSL_CTX_set_mode(g_tls, SSL_MODE_RELEASE_BUFFERS);
        argc--;
        argv++;
    }
    if (argc < 5) usage();
    bool hold = !strcmp(argv[1], "hold");
    bool closing = !strcmp(argv[1], "close"); /* one request per connection */
    if (!hold && !closing && strcmp(argv[1], "count")) usage();
    int port = atoi(argv[2]);
    const char *path = argv[3];
    unsigned long long total = strtoull(argv[4], NULL, 10);
    size_t nconns = hold ? (size_t)total : (argc > 5 ? (size_t)atol(argv[5]) : 1);
    unsigned depth = (!hold && !closing && argc > 6) ? (unsigned)atoi(argv[6]) : 1;
    if (port <= 0 || !total || !nconns || depth < 1 || depth > MAX_DEPTH) usage();
    if (!hold && nconns > total) nconns = (size_t)total;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);

    static char one[512];
    int rl = snprintf(one, sizeof one, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n", path,
                      port, closing ? "Connection: close\r\n" : "");
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

    unsigned long long sent = 0;    /* requests queued */
    unsigned long long started = 0; /* close: connections opened so far (one request each) */
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
            started++;
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
            bool eof = false;
            if (c->fd < 0) continue; /* dropped by an earlier event of this batch */
            if (!c->connected) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    fprintf(stderr, "http_load: connect: %s\n", strerror(err));
                    drop_conn(ep, c);
                    pending_connect--;
                    errors++;
                    if (closing) {
                        g_bad++;
                        goto next_conn;
                    }
                    continue;
                }
                c->connected = true;
                if (!c->ssl) pending_connect--; /* TLS: once the handshake is done */
                unsigned k = depth;
                if (sent + k > total) k = (unsigned)(total - sent);
                if (hold) k = 1;
                if (k) {
                    queue_requests(c, k);
                    sent += k;
                }
                if (flush_out(ep, c, block) < 0) goto broken;
                goto handshake;
            }
            /* TLS: a write waiting for the handshake goes on at any event */
            if ((evs[i].events & EPOLLOUT) || (c->ssl && c->wpos < c->wlen)) {
                if (flush_out(ep, c, block) < 0) goto broken;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int r = read_in(ep, c, &eof);
                if (r < 0) goto broken;
                if (r > 0) last_progress = now();
                if (!hold && !closing && c->inflight == 0 && sent < total) {
                    unsigned k = depth;
                    if (sent + k > total) k = (unsigned)(total - sent);
                    queue_requests(c, k);
                    sent += k;
                    if (flush_out(ep, c, block) < 0) goto broken;
                }
            }
        handshake:
            if (c->ssl && !c->hs_done && SSL_is_init_finished(c->ssl)) {
                c->hs_done = true;
                pending_connect--;
            }
            continue;
        broken:
            if (c->ssl && !c->hs_done) pending_connect--;
            if (closing && eof && c->inflight == 0) {
                /* its one response came, then the server's close */
                last_progress = now();
            } else {
                fprintf(stderr, "http_load: connection lost with %u responses outstanding%s\n",
                        c->inflight, c->ssl && !c->hs_done ? " (in the TLS handshake)" : "");
                errors += c->inflight;
                g_bad += c->inflight;
                c->inflight = 0;
            }
            drop_conn(ep, c);
        next_conn:
            /* close: the slot goes on with the next connection */
            if (closing && started < total) {
                if (open_conn(ep, c, port) < 0) die("connect");
                pending_connect++;
                started++;
            }
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
        if (cs[i].fd > 0) {
            if (cs[i].ssl) SSL_free(cs[i].ssl);
            close(cs[i].fd);
        }
    if (g_tls) SSL_CTX_free(g_tls);
    free(cs);
    free(block);
    close(ep);
    return g_ok == total ? 0 : 1;
}
