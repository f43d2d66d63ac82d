/* What bench/floor_http.c and bench/floor_ws.c share: the listener on 127.0.0.1 (port 0: a
 * free one, printed as "listening on port N" for bench/lib.sh), SIGINT/SIGTERM setting
 * floor_stop, and accepting connections onto the epoll set. */
#ifndef SQ_BENCH_FLOOR_H
#define SQ_BENCH_FLOOR_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t floor_stop;

static void floor_on_signal(int s)
{
    (void)s;
    floor_stop = 1;
}

/* The listener, and an epoll set watching it (data.ptr NULL); -1 on failure (said). */
static int floor_start(const char *name, int port, int *listener)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, floor_on_signal);
    signal(SIGTERM, floor_on_signal);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        fprintf(stderr, "%s: bind/listen: ", name);
        perror(NULL);
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("listening on port %d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    *listener = ls;
    return ep;
}

/* Accept every pending connection: TCP_NODELAY, a zeroed connection object of `size` bytes
 * whose first member is its int fd, watched for EPOLLIN with the object as data.ptr. */
static void floor_accept(int ep, int ls, size_t size)
{
    int one = 1;
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int *c = calloc(1, size);
        if (!c) {
            close(fd);
            continue;
        }
        *c = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

#endif
