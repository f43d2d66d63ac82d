/* floor_ws: the do-nothing WebSocket echo server squall's WebSocket rows are measured
 * against (the "floor" of bench/ws_compare.sh): one thread, level-triggered epoll; the
 * handshake (Sec-WebSocket-Accept through OpenSSL's SHA-1) and then, per readable event, one
 * read, every complete small frame echoed unmasked with its opcode, one write.  No UTF-8
 * check, no fragmentation, no ping timer, no compression: the least an echo costs here.
 *
 *   floor_ws [PORT]      PORT 0 (the default) picks a free one; prints "listening on port N"
 *
 * SIGINT / SIGTERM stop it.  Frames over 64 KiB or fragmented messages close the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "floor.h"

#define MAX_EVENTS 256
#define IN_CAP     (128u << 10)

typedef struct conn {
    int fd;
    bool open; /* the handshake is done */
    size_t in_len;
    char in[IN_CAP];
} conn;


static void conn_close(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* The 101 for a complete request head in c->in; false if it is not an upgrade. */
static bool handshake(conn *c, size_t head_len, char *out, size_t *out_len)
{
    const char *k = memmem(c->in, head_len, "Sec-WebSocket-Key:", 18);
    if (!k) k = memmem(c->in, head_len, "sec-websocket-key:", 18);
    if (!k) return false;
    k += 18;
    while (*k == ' ') k++;
    const char *e = memchr(k, '\r', head_len - (size_t)(k - c->in));
    if (!e || e - k > 64) return false;
    char cat[128];
    int n = snprintf(cat, sizeof cat, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)(e - k), k);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((unsigned char *)cat, (size_t)n, sha);
    char acc[64];
    EVP_EncodeBlock((unsigned char *)acc, sha, SHA_DIGEST_LENGTH);
    *out_len = (size_t)snprintf(out, 256,
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                                acc);
    return true;
}

/* Echo every complete frame of c->in into out; returns the bytes written to out, or -1 to
 * close (a close frame, a fragment, a frame too large). */
static ssize_t echo_frames(conn *c, char *out, size_t cap)
{
    size_t pos = 0, o = 0;
    while (c->in_len - pos >= 2) {
        const unsigned char *p = (const unsigned char *)c->in + pos;
        unsigned op = p[0] & 15;
        if (!(p[0] & 0x80) || op == 0 || op == 8) return -1;
        uint64_t len = p[1] & 127;
        size_t hl = 2;
        if (len == 126) {
            if (c->in_len - pos < 4) break;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            return -1;
        }
        bool masked = p[1] & 0x80;
        size_t total = hl + (masked ? 4 : 0) + (size_t)len;
        if (total > IN_CAP) return -1;
        if (c->in_len - pos < total) break;
        size_t need = 4 + (size_t)len;
        if (o + need > cap) break;
        char *q = out + o;
        q[0] = (char)(0x80 | op);
        if (len < 126) {
            q[1] = (char)len;
            o += 2;
        } else {
            q[1] = 126;
            q[2] = (char)(len >> 8);
            q[3] = (char)len;
            o += 4;
        }
        const unsigned char *m = p + hl, *d = m + (masked ? 4 : 0);
        for (size_t i = 0; i < len; i++) out[o + i] = (char)(d[i] ^ (masked ? m[i & 3] : 0));
        o += (size_t)len;
        pos += total;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return (ssize_t)o;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int ls;
    int ep = floor_start("floor_ws", port, &ls);
    if (ep < 0) return 1;
    static char out[IN_CAP + 1024];
    struct epoll_event evs[MAX_EVENTS];
    while (!floor_stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) { /* the listener */
                floor_accept(ep, ls, sizeof(conn));
                continue;
            }
            ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) {
                conn_close(ep, c);
                continue;
            }
            c->in_len += (size_t)r;
            size_t olen = 0;
            if (!c->open) {
                char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
                if (!end) continue;
                size_t hl = (size_t)(end - c->in) + 4;
                if (!handshake(c, hl, out, &olen)) {
                    conn_close(ep, c);
                    continue;
                }
                c->open = true;
                memmove(c->in, c->in + hl, c->in_len - hl);
                c->in_len -= hl;
            }
            ssize_t e = echo_frames(c, out + olen, sizeof out - olen);
            if (e < 0) {
                conn_close(ep, c);
                continue;
            }
            olen += (size_t)e;
            /* small echoes fit the socket buffer: a full one would mean a client that does not
             * read, which this floor does not serve (it closes) */
            if (olen && send(c->fd, out, olen, MSG_NOSIGNAL) != (ssize_t)olen) conn_close(ep, c);
        }
    }
    close(ep);
    close(ls);
    return 0;
}
