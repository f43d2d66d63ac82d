/* C10K load client for tests/stream/test_c10k: opens N concurrent TCP connections (in waves,
 * since the server's accept queue is capped by net.core.somaxconn), keeps every one open,
 * sends SIZE bytes on each, reads SIZE bytes back, checks them, then closes them all.
 * Plain epoll, independent of squall, so that it tests the server and nothing else.
 *
 *   c10k_client HOST PORT [N=10000] [SIZE=1024] [WAVE=1000]
 *
 * Exit status 0 and "ok: N connections" on stdout when every byte came back right.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE 120.0

enum { CONNECTING, CONNECTED, SENDING, RECEIVING, DONE };

typedef struct conn {
    int fd;
    int state;
    size_t sent, recvd;
} conn;

static conn *conns;
static size_t size;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char pat(size_t i, size_t j)
{
    return (unsigned char)((i * 31 + j * 7) & 0xff);
}

static int die(const char *what, size_t i, int err)
{
    fprintf(stderr, "c10k_client: %s (connection %zu): %s\n", what, i, strerror(err));
    exit(1);
}

/* Push out what fits of connection i's payload; true once it is all sent. */
static bool try_send(size_t i)
{
    unsigned char buf[4096];
    conn *c = &conns[i];
    while (c->sent < size) {
        size_t n = size - c->sent < sizeof buf ? size - c->sent : sizeof buf;
        for (size_t j = 0; j < n; j++) buf[j] = pat(i, c->sent + j);
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return false;
            die("send", i, errno);
        }
        c->sent += (size_t)w;
    }
    return true;
}

/* Read what is there; true once all `size` bytes are back (and checked). */
static bool try_recv(size_t i)
{
    unsigned char buf[4096];
    conn *c = &conns[i];
    while (c->recvd < size) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r == 0) {
            fprintf(stderr, "c10k_client: connection %zu: EOF after %zu bytes\n", i, c->recvd);
            exit(1);
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return false;
            die("recv", i, errno);
        }
        for (ssize_t j = 0; j < r; j++) {
            if (c->recvd + (size_t)j >= size || buf[j] != pat(i, c->recvd + (size_t)j)) {
                fprintf(stderr, "c10k_client: connection %zu: wrong byte at %zu\n", i,
                        c->recvd + (size_t)j);
                exit(1);
            }
        }
        c->recvd += (size_t)r;
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [N] [SIZE] [WAVE]\n", argv[0]);
        return 2;
    }
    size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 10000;
    size = argc > 4 ? strtoul(argv[4], NULL, 10) : 1024;
    size_t wave = argc > 5 ? strtoul(argv[5], NULL, 10) : 1000;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "c10k_client: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < n + 16) {
        fprintf(stderr, "c10k_client: fd limit %lu is too low for %zu connections\n",
                (unsigned long)rl.rlim_cur, n);
        return 1;
    }
    conns = calloc(n, sizeof *conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *evs = calloc(1024, sizeof *evs);
    if (!conns || ep < 0 || !evs) die("setup", 0, errno);
    double t0 = now();

    /* Phase 1: connect everyone, a wave at a time; all stay open. */
    for (size_t base = 0; base < n; base += wave) {
        size_t end = base + wave < n ? base + wave : n;
        size_t pending = 0;
        for (size_t i = base; i < end; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket", i, errno);
            conns[i].fd = fd;
            if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
                conns[i].state = CONNECTED;
                continue;
            }
            if (errno != EINPROGRESS) die("connect", i, errno);
            conns[i].state = CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl", i, errno);
            pending++;
        }
        while (pending) {
            if (now() - t0 > DEADLINE) die("timed out connecting", base, ETIMEDOUT);
            int k = epoll_wait(ep, evs, 1024, 1000);
            for (int e = 0; e < k; e++) {
                size_t i = evs[e].data.u64;
                int soerr = 0;
                socklen_t len = sizeof soerr;
                getsockopt(conns[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                if (soerr) die("connect", i, soerr);
                conns[i].state = CONNECTED;
                epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
                pending--;
            }
        }
    }
    double t_conn = now() - t0;

    /* Phase 2: everyone sends, then everyone reads its echo. */
    size_t left = n;
    for (size_t i = 0; i < n; i++) {
        bool sent = try_send(i);
        conns[i].state = sent ? RECEIVING : SENDING;
        struct epoll_event ev = {.events = EPOLLIN | (sent ? 0 : EPOLLOUT), .data.u64 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl", i, errno);
    }
    while (left) {
        if (now() - t0 > DEADLINE) die("timed out waiting for echoes", 0, ETIMEDOUT);
        int k = epoll_wait(ep, evs, 1024, 1000);
        for (int e = 0; e < k; e++) {
            size_t i = evs[e].data.u64;
            conn *c = &conns[i];
            if (c->state == SENDING && try_send(i)) {
                c->state = RECEIVING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (c->state != DONE && (evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
                try_recv(i)) {
                if (c->state == SENDING) continue; /* cannot be: echo needs our bytes */
                c->state = DONE;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                left--;
            }
        }
    }
    double t_echo = now() - t0;

    /* Phase 3: close them all. */
    for (size_t i = 0; i < n; i++) close(conns[i].fd);
    close(ep);
    free(evs);
    free(conns);
    printf("ok: %zu connections, %zu bytes each; connected in %.2f s, echoed by %.2f s\n", n, size,
           t_conn, t_echo);
    return 0;
}
