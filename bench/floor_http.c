/* floor_http: the do-nothing HTTP server squall's HTTP rows are measured against (the "floor"
 * of bench/http_compare.sh): one thread, level-triggered epoll, per readable event one read,
 * a count of the request heads ("\r\n\r\n", also across reads) and one write of that many
 * canned responses — byte for byte the size of examples/hello's answer (same headers, a Date
 * refreshed once a second).  No parsing, no routing, no allocation per request: what is left
 * is the kernel's TCP work and the system calls, the least any server on this machine pays.
 *
 *   floor_http [PORT]      PORT 0 (the default) picks a free one; prints "listening on port N"
 *
 * SIGINT / SIGTERM stop it.  Not a server: it answers whatever it is sent with 200.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "floor.h"

#define MAX_EVENTS 256
#define BATCH      64 /* responses one write can carry (pipelined requests beyond wait a read) */

typedef struct conn {
    int fd;
    unsigned match;  /* how much of "\r\n\r\n" the last read ended in */
    size_t owed;     /* response bytes owed but not yet written (the socket was full) */
} conn;

static char resp[BATCH * 160];
static size_t resp_len; /* one response */

/* The canned response, with the current Date (the same 130-odd bytes as examples/hello's). */
static void make_response(void)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char one[160];
    int n = snprintf(one, sizeof one,
                     "HTTP/1.1 200 OK\r\nServer: squall\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 13\r\n\r\nHello, World!",
                     date);
    resp_len = (size_t)n;
    for (int i = 0; i < BATCH; i++) memcpy(resp + (size_t)i * resp_len, one, resp_len);
}

/* Request heads ended in buf[0..n), continuing a partial match of "\r\n\r\n". */
static size_t count_heads(const char *buf, size_t n, unsigned *match)
{
    static const char end[4] = {'\r', '\n', '\r', '\n'};
    size_t heads = 0;
    unsigned m = *match;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == end[m]) {
            if (++m == 4) {
                heads++;
                m = 0;
            }
        } else {
            m = c == '\r' ? 1 : 0;
        }
    }
    *match = m;
    return heads;
}

static void conn_close(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Write what is owed; false when the connection died.  The responses are all alike, so the
 * owed bytes are a tail of the repeated canned response: start where the last write ended. */
static bool flush_owed(int ep, conn *c)
{
    while (c->owed) {
        size_t start = (resp_len - c->owed % resp_len) % resp_len;
        size_t k = BATCH * resp_len - start;
        if (k > c->owed) k = c->owed;
        ssize_t w = send(c->fd, resp + start, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) return false;
        c->owed -= (size_t)w;
        if ((size_t)w < k) break;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->owed ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return true;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int ls;
    int ep = floor_start("floor_http", port, &ls);
    if (ep < 0) return 1;
    make_response();
    time_t last = time(NULL);
    static char buf[65536];
    struct epoll_event evs[MAX_EVENTS];
    while (!floor_stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);
        time_t now = time(NULL);
        if (now != last) {
            last = now;
            make_response();
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) { /* the listener */
                floor_accept(ep, ls, sizeof(conn));
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (!flush_owed(ep, c)) {
                    conn_close(ep, c);
                    continue;
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) {
                conn_close(ep, c);
                continue;
            }
            size_t heads = count_heads(buf, (size_t)r, &c->match);
            if (!heads) continue;
            if (!c->owed && heads <= BATCH) {
                /* the common case: one write of whole responses, no epoll_ctl */
                ssize_t w = send(c->fd, resp, heads * resp_len, MSG_NOSIGNAL);
                if (w == (ssize_t)(heads * resp_len)) continue;
                if (w < 0 && errno != EAGAIN) {
                    conn_close(ep, c);
                    continue;
                }
                c->owed = heads * resp_len - (size_t)(w > 0 ? w : 0);
            } else {
                c->owed += heads * resp_len;
            }
            if (!flush_owed(ep, c)) conn_close(ep, c);
        }
    }
    close(ep);
    close(ls);
    return 0;
}
