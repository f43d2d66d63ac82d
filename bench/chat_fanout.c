/* chat_fanout: publish-to-delivery latency of the demo's chat across processes
 * (bench/chat_redis.sh).  Raw sockets and epoll on one thread, so that it costs little beside
 * the servers it measures.
 *
 *   chat_fanout -p PORT[,PORT…] [-c CONNS] [-r RATE] [-d SECONDS] [-w WARMUP]
 *
 * Opens CONNS WebSockets to /ws/chat, spread round robin over the ports (the demo
 * processes), waits until every one is open and has drained the history replay, then sends
 * RATE messages per second for SECONDS with POST /chat/send (keep-alive, alternating over
 * the ports).  Each message's text carries its sequence number and the CLOCK_MONOTONIC time
 * it was sent; every delivery's latency is its arrival time minus that.  Prints
 *   deliveries N expected E lost L seconds S rate R p50_ms A p90_ms B p99_ms C max_ms D
 * (lost: deliveries that never came by the end, counted per connection and sequence
 * number).  Exit status 1 on a handshake or protocol failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define BUF_SIZE (256 * 1024)
#define MAX_PORTS 8

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN };

typedef struct conn {
    int fd;
    int state;
    size_t sent, have;
    char *buf;
    uint64_t received; /* messages of this run received */
    int64_t last_seq;  /* to check order */
} conn;

static int ports[MAX_PORTS], nports;
static int nconns = 1000, rate = 100, ep;
static double duration = 10, warmup = 1;
static char *request[MAX_PORTS];
static long out_of_order, bad_frames;
static uint64_t run_id;

static double *lat;
static size_t nlat, caplat;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int tcp_connect(int port, bool block)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (block ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        die("connect");
    return fd;
}

static void want(conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void record(double ms)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 20;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[nlat++] = ms;
}

/* One text frame from the server: {"id":…,"ip":…,"text":"<run> <seq> <sent>",…}. */
static void on_message(conn *c, const char *p, size_t len, double t)
{
    const char *k = memmem(p, len, "\"text\":\"", 8);
    if (!k) return; /* an error frame or an unrelated message */
    k += 8;
    unsigned long long run, seq;
    double sent;
    if (sscanf(k, "%llu %llu %lf", &run, &seq, &sent) != 3 || run != run_id) return; /* history */
    if ((int64_t)seq <= c->last_seq) out_of_order++;
    c->last_seq = (int64_t)seq;
    c->received++;
    record((t - sent) * 1e3);
}

static conn *conns;

static int handle(conn *c, unsigned events)
{
    if (events & EPOLLERR) return -1;
    int idx = (int)(c - conns);
    const char *req = request[idx % nports];
    size_t req_len = strlen(req);
    if (c->state == ST_CONNECTING) {
        c->state = ST_HANDSHAKE;
        c->sent = 0;
    }
    if (c->state == ST_HANDSHAKE && c->sent < req_len) {
        ssize_t n = send(c->fd, req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
        if (n > 0) c->sent += (size_t)n;
        if (c->sent < req_len) return n < 0 && errno != EAGAIN ? -1 : 0;
        want(c, EPOLLIN);
    }
    double t = now();
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, BUF_SIZE - c->have, 0);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->have += (size_t)n;
        size_t off = 0;
        if (c->state == ST_HANDSHAKE) {
            char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
            if (!end) continue;
            if (strncmp(c->buf, "HTTP/1.1 101", 12) != 0) {
                fprintf(stderr, "chat_fanout: handshake answered %.40s\n", c->buf);
                return -1;
            }
            c->state = ST_OPEN;
            off = (size_t)(end + 4 - c->buf);
        }
        const unsigned char *b = (const unsigned char *)c->buf;
        while (c->have - off >= 2) {
            size_t len = b[off + 1] & 0x7F, hl = 2;
            if (len == 126) {
                if (c->have - off < 4) break;
                len = (size_t)b[off + 2] << 8 | b[off + 3];
                hl = 4;
            } else if (len == 127) {
                if (c->have - off < 10) break;
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | b[off + 2 + i];
                hl = 10;
            }
            if (c->have - off < hl + len) break;
            if ((b[off] & 0x0F) == 1)
                on_message(c, c->buf + off + hl, len, t);
            else if ((b[off] & 0x0F) == 8)
                return -1; /* closed by the server */
            else if ((b[off] & 0x0F) != 9 && (b[off] & 0x0F) != 10)
                bad_frames++;
            off += hl + len;
        }
        memmove(c->buf, c->buf + off, c->have - off);
        c->have -= off;
        if (c->have == BUF_SIZE) return -1;
    }
}

/* The publisher: one keep-alive connection per port, a POST each 1/rate s; the answers are
 * read as they come (epoll), so that publishing never delays a delivery's timestamp. */
static int pub_fd[MAX_PORTS];
static conn pub[MAX_PORTS];
static long pub_ok, pub_failed;

static void publish(uint64_t seq)
{
    int i = (int)(seq % (uint64_t)nports);
    char body[160], req[512];
    int bl = snprintf(body, sizeof body, "text=%llu+%llu+%.9f", (unsigned long long)run_id,
                      (unsigned long long)seq, now());
    int n = snprintf(req, sizeof req,
                     "POST /chat/send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     bl, body);
    if (send(pub_fd[i], req, (size_t)n, MSG_NOSIGNAL) != n) die("publish send");
}

/* Count the answers (each starts "HTTP/1.1 NNN"); the bodies are small and ignored. */
static int pub_read(conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, BUF_SIZE - 1 - c->have, MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->have += (size_t)n;
        c->buf[c->have] = 0;
        char *p = c->buf, *last = c->buf;
        while ((p = strstr(p, "HTTP/1.1 ")) && (size_t)(p - c->buf) + 12 <= c->have) {
            if (strncmp(p + 9, "200", 3) == 0)
                pub_ok++;
            else
                pub_failed++;
            p += 12;
            last = p;
        }
        size_t keep = c->have - (size_t)(last - c->buf);
        if (keep > 64) { /* keep only a tail that may hold a split status line */
            memmove(c->buf, c->buf + c->have - 64, 64);
            c->have = 64;
        } else {
            memmove(c->buf, last, keep);
            c->have = keep;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_loop(double until, uint64_t *seq, bool publishing, double start)
{
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        if (t >= until) return;
        double next = publishing ? start + (double)*seq / rate : until;
        if (publishing && t >= next) {
            publish((*seq)++);
            continue;
        }
        double wait = (next < until ? next : until) - t;
        int n = epoll_wait(ep, evs, 256, (int)(wait * 1000) + 1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c >= pub && c < pub + MAX_PORTS) {
                if (pub_read(c) < 0) die("publisher connection closed");
                continue;
            }
            if (handle(c, evs[i].events) < 0) {
                fprintf(stderr, "chat_fanout: connection %d failed\n", (int)(c - conns));
                exit(1);
            }
        }
    }
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:c:r:d:w:")) != -1) {
        switch (opt) {
        case 'p':
            for (char *s = optarg, *tok; (tok = strsep(&s, ",")) && nports < MAX_PORTS;)
                ports[nports++] = atoi(tok);
            break;
        case 'c': nconns = atoi(optarg); break;
        case 'r': rate = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        default:
            fprintf(stderr, "usage: chat_fanout -p PORT[,PORT…] [-c CONNS] [-r RATE] [-d SECONDS]\n");
            return 2;
        }
    }
    if (!nports || nconns <= 0 || rate <= 0) return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    run_id = (uint64_t)getpid() * 1000003u + (uint64_t)time(NULL);
    for (int i = 0; i < nports; i++) {
        if (asprintf(&request[i],
                     "GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     ports[i]) < 0)
            die("asprintf");
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nports; i++) {
        pub_fd[i] = tcp_connect(ports[i], true); /* blocking sends: a POST is small */
        pub[i].fd = pub_fd[i];
        pub[i].buf = malloc(BUF_SIZE);
        if (!pub[i].buf) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &pub[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, pub_fd[i], &ev) < 0) die("epoll_ctl");
    }
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        c->fd = tcp_connect(ports[i % nports], false);
        c->buf = malloc(BUF_SIZE);
        c->last_seq = -1;
        if (!c->buf) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
        if (i % 200 == 199) { /* pace the handshakes a little */
            uint64_t s = 0;
            run_loop(now() + 0.02, &s, false, 0);
        }
    }
    /* every connection open and the history replayed */
    uint64_t seq = 0;
    double until = now() + 30;
    for (;;) {
        run_loop(now() + 0.1, &seq, false, 0);
        int open = 0;
        for (int i = 0; i < nconns; i++) open += conns[i].state == ST_OPEN;
        if (open == nconns) break;
        if (now() > until) {
            fprintf(stderr, "chat_fanout: only %d of %d connections opened\n", open, nconns);
            return 1;
        }
    }
    run_loop(now() + warmup, &seq, false, 0);
    double start = now();
    run_loop(start + duration, &seq, true, start);
    double sent_end = now();
    run_loop(sent_end + 2, &seq, false, 0); /* stragglers */
    uint64_t expected = seq * (uint64_t)nconns, got = 0;
    for (int i = 0; i < nconns; i++) got += conns[i].received;
    qsort(lat, nlat, sizeof *lat, cmp_double);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] : 0.0)
    if (pub_failed || pub_ok != (long)seq)
        fprintf(stderr, "chat_fanout: %ld of %llu POSTs answered 200, %ld failed\n", pub_ok,
                (unsigned long long)seq, pub_failed);
    printf("published %llu deliveries %llu expected %llu lost %llu out_of_order %ld seconds %.2f "
           "rate %.0f p50_ms %.2f p90_ms %.2f p99_ms %.2f max_ms %.2f\n",
           (unsigned long long)seq, (unsigned long long)got, (unsigned long long)expected,
           (unsigned long long)(expected - got), out_of_order, sent_end - start,
           (double)got / (sent_end - start), PCT(0.5), PCT(0.9), PCT(0.99),
           nlat ? lat[nlat - 1] : 0.0);
    return bad_frames || pub_failed ? 1 : 0;
}
