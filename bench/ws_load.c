/* ws_load: a WebSocket load generator for bench/ws_compare.sh (raw sockets and epoll, one
 * thread, so that it costs little beside the server it measures).
 *
 *   echo mode:  ws_load -p PORT [-c CONNS] [-d SECONDS] [-s SIZE] [-P PATH]
 *     CONNS connections each send a SIZE-byte masked text message, wait for the echo, and
 *     repeat for SECONDS; prints "round_trips N seconds S rate R errors E".
 *   idle mode:  ws_load -p PORT -i N [-d SECONDS] [-P PATH]
 *     opens N WebSocket connections (at most 200 handshakes in flight), prints "ready N"
 *     once every one got its 101, then holds them for SECONDS (or until stdin reaches EOF
 *     when -d is 0) and exits without a close handshake.
 * Exit status 1 on a handshake or protocol failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

#define MAX_INFLIGHT_HANDSHAKES 200
#define BUF_SIZE                (64 * 1024)

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN };

typedef struct conn {
    int fd;
    int state;
    size_t sent; /* bytes of the current request written */
    size_t have; /* bytes in buf */
    char *buf;   /* allocated while in use (echo mode, or during the handshake) */
} conn;

static int port, nconns = 100, msg_size = 64, idle_n;
static double duration = 5;
static const char *path = "/";
static char *request; /* the handshake */
static size_t request_len;
static char *frame; /* one masked text frame of msg_size bytes */
static size_t frame_len;
static int ep;
static long round_trips, errors;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void build_messages(void)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, port);
    request = strdup(req);
    request_len = (size_t)n;
    size_t hl = msg_size < 126 ? 2 : msg_size < 65536 ? 4 : 10;
    frame_len = hl + 4 + (size_t)msg_size;
    frame = malloc(frame_len);
    if (!request || !frame) die("malloc");
    unsigned char *f = (unsigned char *)frame;
    f[0] = 0x81;
    if (hl == 2) {
        f[1] = (unsigned char)(0x80 | msg_size);
    } else if (hl == 4) {
        f[1] = 0x80 | 126;
        f[2] = (unsigned char)(msg_size >> 8);
        f[3] = (unsigned char)msg_size;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) f[2 + i] = (unsigned char)((uint64_t)msg_size >> (56 - 8 * i));
    }
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(f + hl, key, 4);
    for (int i = 0; i < msg_size; i++) f[hl + 4 + i] = (unsigned char)('a' + i % 26) ^ key[i % 4];
}

static int open_conn(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        return -errno;
    c->state = ST_CONNECTING;
    c->sent = c->have = 0;
    if (!c->buf) c->buf = malloc(BUF_SIZE);
    if (!c->buf) return -ENOMEM;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) return -errno;
    return 0;
}

/* Write what is left of `data`; true when all of it is out. */
static bool send_rest(conn *c, const char *data, size_t len)
{
    while (c->sent < len) {
        ssize_t n = send(c->fd, data + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n < 0) return false; /* EAGAIN: EPOLLOUT resumes; an error shows up on read */
        c->sent += (size_t)n;
    }
    return true;
}

static void want(conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Length of the complete frame at the start of buf, 0 if incomplete. */
static size_t frame_complete(const unsigned char *b, size_t have)
{
    if (have < 2) return 0;
    size_t len = b[1] & 0x7F, hl = 2;
    if (len == 126) {
        if (have < 4) return 0;
        len = (size_t)b[2] << 8 | b[3];
        hl = 4;
    } else if (len == 127) {
        if (have < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | b[2 + i];
        hl = 10;
    }
    if (b[1] & 0x80) hl += 4;
    return have >= hl + len ? hl + len : 0;
}

static int handshakes_done, handshakes_inflight;

/* Handle readiness; returns -1 when the connection failed. */
static int on_event(conn *c, unsigned events, bool echo)
{
    if (events & (EPOLLERR | EPOLLHUP) && c->state != ST_OPEN) return -1;
    if (c->state == ST_CONNECTING) {
        c->state = ST_HANDSHAKE;
        c->sent = 0;
    }
    if (c->state == ST_HANDSHAKE) {
        if (c->sent < request_len && !send_rest(c, request, request_len)) return 0;
        ssize_t n = recv(c->fd, c->buf + c->have, BUF_SIZE - 1 - c->have, 0);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN) {
                want(c, EPOLLIN);
                return 0;
            }
            return -1;
        }
        c->have += (size_t)n;
        c->buf[c->have] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end) return c->have >= BUF_SIZE - 1 ? -1 : 0;
        if (strncmp(c->buf, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "ws_load: handshake answered: %.*s\n", (int)(end - c->buf), c->buf);
            return -1;
        }
        size_t extra = c->have - (size_t)(end + 4 - c->buf);
        if (extra) return -1; /* nothing may follow before we speak */
        c->state = ST_OPEN;
        c->have = 0;
        handshakes_done++;
        handshakes_inflight--;
        if (!echo) {
            free(c->buf);
            c->buf = NULL;
            want(c, EPOLLIN); /* EOF or unexpected data shows up as readable */
            return 0;
        }
        c->sent = 0;
        if (!send_rest(c, frame, frame_len))
            want(c, EPOLLIN | EPOLLOUT);
        else
            want(c, EPOLLIN);
        return 0;
    }
    /* ST_OPEN */
    if (!echo) {
        char tmp[256];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) return -1;
        return 0;
    }
    if (c->sent < frame_len) {
        if (!send_rest(c, frame, frame_len)) return 0;
        want(c, EPOLLIN);
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, BUF_SIZE - c->have, 0);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->have += (size_t)n;
        size_t fl;
        while ((fl = frame_complete((unsigned char *)c->buf, c->have)) > 0) {
            unsigned op = (unsigned char)c->buf[0] & 0x0F;
            if (op == 8) return -1;
            if (op == 1 || op == 2) {
                if (fl - 2 - (msg_size >= 126 ? (msg_size >= 65536 ? 8 : 2) : 0) !=
                    (size_t)msg_size) {
                    fprintf(stderr, "ws_load: echo of the wrong size\n");
                    return -1;
                }
                round_trips++;
                c->sent = 0;
                if (!send_rest(c, frame, frame_len)) want(c, EPOLLIN | EPOLLOUT);
            }
            memmove(c->buf, c->buf + fl, c->have - fl);
            c->have -= fl;
        }
        if (c->have == BUF_SIZE) return -1;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: ws_load -p PORT [-c CONNS] [-d SECONDS] [-s SIZE] [-P PATH] "
                    "[-i IDLE_CONNS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:c:d:s:P:i:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 's':
            msg_size = atoi(optarg);
            break;
        case 'P':
            path = optarg;
            break;
        case 'i':
            idle_n = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || nconns <= 0 || msg_size < 0 || msg_size > BUF_SIZE - 16) usage();
    bool echo = idle_n == 0;
    int total = echo ? nconns : idle_n;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    build_messages();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    conn *conns = calloc((size_t)total, sizeof *conns);
    if (!conns) die("calloc");
    struct epoll_event evs[256];
    int opened = 0;
    double t0 = now(), deadline = 0;
    /* Open the connections, a bounded number of handshakes at a time. */
    while (handshakes_done < total) {
        while (opened < total && handshakes_inflight < MAX_INFLIGHT_HANDSHAKES) {
            int rc = open_conn(&conns[opened]);
            if (rc < 0) {
                fprintf(stderr, "ws_load: connection %d: %s\n", opened, strerror(-rc));
                return 1;
            }
            opened++;
            handshakes_inflight++;
        }
        if (now() - t0 > 60) {
            fprintf(stderr, "ws_load: only %d of %d handshakes in 60 s\n", handshakes_done, total);
            return 1;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (on_event(c, evs[i].events, echo) < 0) {
                fprintf(stderr, "ws_load: connection failed during setup\n");
                return 1;
            }
        }
    }
    if (!echo) {
        printf("ready %d\n", total);
        fflush(stdout);
        deadline = now() + duration;
        for (;;) {
            double left = deadline - now();
            if (duration > 0 && left <= 0) break;
            struct pollfd p = {.fd = 0, .events = POLLIN};
            if (duration <= 0 && poll(&p, 1, 1000) > 0) {
                char tmp[64];
                if (read(0, tmp, sizeof tmp) <= 0) break;
            }
            int n = epoll_wait(ep, evs, 256, duration > 0 ? (int)(left * 1000) + 1 : 0);
            for (int i = 0; i < n; i++) {
                if (on_event(evs[i].data.ptr, evs[i].events, false) < 0) {
                    fprintf(stderr, "ws_load: an idle connection was closed by the server\n");
                    return 1;
                }
            }
        }
    } else {
        /* Measure from here: every connection is open and has its first message out. */
        round_trips = 0;
        t0 = now();
        deadline = t0 + duration;
        double t;
        while ((t = now()) < deadline) {
            int n = epoll_wait(ep, evs, 256, (int)((deadline - t) * 1000) + 1);
            for (int i = 0; i < n; i++) {
                conn *c = evs[i].data.ptr;
                if (c->fd >= 0 && on_event(c, evs[i].events, true) < 0) {
                    errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = -1;
                }
            }
        }
        double secs = now() - t0;
        printf("round_trips %ld seconds %.3f rate %.0f errors %ld\n", round_trips, secs,
               round_trips / secs, errors);
    }
    for (int i = 0; i < opened; i++) {
        if (conns[i].fd >= 0) close(conns[i].fd);
        free(conns[i].buf);
    }
    free(conns);
    free(request);
    free(frame);
    close(ep);
    return errors ? 1 : 0;
}
