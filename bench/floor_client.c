/* floor_client: the HTTP client floor for bench/fetch_compare.sh — the least a keep-alive
 * HTTP/1.1 client can cost on this machine.  CONCURRENCY connections to URL (http://IP:PORT/
 * PATH, IPv4 literal only), each sending a GET and reading its response (head up to the blank
 * line, then Content-Length bytes of body) again and again for SECONDS, on one epoll set:
 * one write per request, one read per response that arrives whole.  No URL parsing beyond
 * that, no header parsing but Content-Length, no allocation per request.  Prints the line
 * fetch_compare.sh parses, as bench/fetch_load does:
 *
 *   floor: requests 123456 errors 0 seconds 10.00 rps 12345.6 cpu_us_per_request 4.56
 *
 * Usage: floor_client URL [SECONDS=10] [CONCURRENCY=100]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_load.h"
#include "clock.h"

typedef struct {
    int fd;
    size_t len;  /* bytes of the current response read so far */
    size_t need; /* its whole length once the head is in, else 0 */
    char buf[4096];
} conn;

static char req[512];
static size_t req_len;
static long requests, errors;

/* The response's whole length once its head is complete, else 0; -1 if it has no
 * Content-Length (the floor does not read chunked or close-delimited bodies). */
static long response_length(conn *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    for (char *p = c->buf; p < end; p++) {
        if (*p == '\n' && strncasecmp(p + 1, "content-length:", 15) == 0)
            return (long)(head + strtoul(p + 16, NULL, 10));
    }
    return -1;
}

static int send_request(conn *c)
{
    c->len = c->need = 0;
    return write(c->fd, req, req_len) == (ssize_t)req_len ? 0 : -1;
}

/* Read what arrived; 1 when a response is complete (the next request is sent), 0 when more
 * is to come, -1 on an error or a response the floor cannot read. */
static int on_readable(conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        if (n == 0) return -1;
        c->len += (size_t)n;
        if (!c->need) {
            long l = response_length(c);
            if (l < 0 || (size_t)l > sizeof c->buf) return -1;
            c->need = (size_t)l;
        }
        if (c->need && c->len >= c->need) {
            if (c->len > c->need) return -1; /* nothing was asked for beyond this response */
            requests++;
            return send_request(c) < 0 ? -1 : 1;
        }
        if (c->len == sizeof c->buf) return -1;
    }
}

int main(int argc, char **argv)
{
    client_args args;
    int bad = client_args_parse(argc, argv, &args);
    if (bad) return bad;
    char host[64], path[256] = "/";
    int port = 80;
    if (sscanf(args.url, "http://%63[0-9.]:%d%255s", host, &port, path) < 2) {
        fprintf(stderr, "floor_client: URL must be http://IPv4:PORT[/PATH]\n");
        return 2;
    }
    double secs = args.secs;
    int conc = args.conc;
    req_len = (size_t)snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
                               host, port);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "floor_client: bad address %s\n", host);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a server that goes away is an error counted, not a kill */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn *cs = calloc((size_t)conc, sizeof *cs);
    if (ep < 0 || !cs) return 1;
    double c0 = cpu_seconds(), t0 = now(), deadline = t0 + secs;
    int one = 1, live = 0;
    for (int i = 0; i < conc; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            perror("floor_client: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (send_request(&cs[i]) < 0) return 1;
        live++;
    }
    struct epoll_event evs[256];
    while (live > 0 && now() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (on_readable(c) < 0) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                live--;
            }
        }
    }
    double dt = now() - t0, cpu = cpu_seconds() - c0;
    client_report("floor", requests, errors, dt, cpu);
    for (int i = 0; i < conc; i++) close(cs[i].fd);
    free(cs);
    close(ep);
    return errors && !requests ? 1 : 0;
}
