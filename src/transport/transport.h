/* The transport: the one place where a connection's bytes meet the kernel.  The HTTP server,
 * WebSocket connections (both roles) and sq_stream do all their connection I/O through these
 * calls; no read/recv/send/writev/sendfile/shutdown on a connection fd remains outside
 * src/transport/ (tests/source_checks.sh checks it).
 *
 * A connection holds an `sq__tp *`: NULL for a plain socket (the fast path: the calls below
 * are inlined to one system call), or a transport object whose ops implement the same calls
 * another way (TLS: the bytes go through the cipher; the slot nginx fills with its
 * ssl_recv/ssl_send after the handshake).
 *
 * Conventions: every call returns a count or a negative errno, never -1 with errno;
 * -EAGAIN means "not now, wait for the events sq__tp_poll() names"; EINTR is retried
 * inside. */
#ifndef SQUALL_TRANSPORT_H
#define SQUALL_TRANSPORT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "squall/loop.h"
#include "squall/tls.h"

typedef struct sq__tp sq__tp;

typedef struct sq__tp_ops {
    ssize_t (*read)(sq__tp *t, void *buf, size_t len);
    ssize_t (*writev)(sq__tp *t, const struct iovec *iov, int n);
    /* -EOPNOTSUPP when the file cannot go to the kernel as is (the caller reads it and
     * writes it instead). */
    ssize_t (*sendfile)(sq__tp *t, int in_fd, off_t *off, size_t len);
    int (*shutdown)(sq__tp *t);
    /* Free the transport (the caller closes the fd); `reset`: an abortive close, nothing
     * more is written (no TLS close_notify). */
    void (*free)(sq__tp *t, bool reset);
    /* The handshake: 0 once done, -EAGAIN (wait for sq__tp_poll's events), -EPROTO when the
     * peer's first bytes are no handshake at all (plain HTTP on a TLS port), SQ_ETLS with the
     * reason in sq_tls_last_error(), or -errno. */
    int (*handshake)(sq__tp *t);
    /* The kernel events to wait for when the caller wants `ev` (SQ_READ to read, SQ_WRITE to
     * write): a read may wait for the socket to take bytes (and a write for bytes to come)
     * while the transport is mid-handshake or mid-record.  When the caller wants to read and
     * the transport already holds decrypted bytes the kernel will not signal, it schedules
     * the watcher's callback with SQ_READ (see sq__tp_attach). */
    unsigned (*poll)(sq__tp *t, unsigned ev);
    /* The readiness the kernel reported, as the caller's reads and writes see it. */
    unsigned (*ready)(const sq__tp *t, unsigned ev);
    /* The watcher whose callback runs when the transport holds bytes to read. */
    void (*attach)(sq__tp *t, sq_loop *loop, sq_io *io);
    bool (*handshaking)(const sq__tp *t);
} sq__tp_ops;

struct sq__tp {
    const sq__tp_ops *ops;
    int fd;
};

/* --- the plain socket ------------------------------------------------------------------------- */

ssize_t sq__tp_plain_sendfile(int fd, int in_fd, off_t *off, size_t len);

/* Read up to len bytes: > 0, 0 at the peer's end of stream, -EAGAIN, or -errno. */
static inline ssize_t sq__tp_read(int fd, sq__tp *tp, void *buf, size_t len)
{
    if (tp) return tp->ops->read(tp, buf, len);
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0) return n;
        if (errno != EINTR) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Write up to len bytes (a socket: no SIGPIPE; `is_socket` false: a pipe or a file, with
 * write(2)): how many went, -EAGAIN, or -errno. */
static inline ssize_t sq__tp_write(int fd, sq__tp *tp, const void *buf, size_t len, bool is_socket)
{
    if (tp) {
        struct iovec v = {(void *)buf, len};
        return tp->ops->writev(tp, &v, 1);
    }
    for (;;) {
        ssize_t n = is_socket ? send(fd, buf, len, MSG_NOSIGNAL) : write(fd, buf, len);
        if (n >= 0) return n;
        if (errno != EINTR) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Send len bytes of in_fd from *off (advanced): how many went, -EAGAIN, -EOPNOTSUPP when this
 * transport or this file cannot (read and write it instead), or -errno. */
static inline ssize_t sq__tp_sendfile(int fd, sq__tp *tp, int in_fd, off_t *off, size_t len)
{
    if (tp) return tp->ops->sendfile ? tp->ops->sendfile(tp, in_fd, off, len) : -EOPNOTSUPP;
    return sq__tp_plain_sendfile(fd, in_fd, off, len);
}

/* End our side of the stream (the peer reads EOF once what was sent arrived). */
static inline int sq__tp_shutdown(int fd, sq__tp *tp)
{
    if (tp) return tp->ops->shutdown(tp);
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

/* The kernel events to wait for, given those the caller wants (see sq__tp_ops.poll). */
static inline unsigned sq__tp_poll(sq__tp *tp, unsigned ev)
{
    return tp ? tp->ops->poll(tp, ev) : ev;
}

/* Kernel readiness translated for the caller (see sq__tp_ops.ready). */
static inline unsigned sq__tp_ready(const sq__tp *tp, unsigned ev)
{
    return tp ? tp->ops->ready(tp, ev) : ev;
}

/* True while a handshake is in progress: drive it with sq__tp_handshake. */
static inline bool sq__tp_handshaking(const sq__tp *tp)
{
    return tp && tp->ops->handshaking(tp);
}

static inline int sq__tp_handshake(sq__tp *tp)
{
    return tp ? tp->ops->handshake(tp) : 0;
}

static inline void sq__tp_attach(sq__tp *tp, sq_loop *loop, sq_io *io)
{
    if (tp) tp->ops->attach(tp, loop, io);
}

/* --- TLS (tls.c) ---------------------------------------------------------------------------- */

/* A TLS transport over the connected socket fd, as the context's role (server: accepting;
 * client: connecting to `hostname`, which is checked against the certificate and sent as
 * SNI unless NULL).  The handshake starts at the first sq__tp_handshake, read or write.
 * NULL with *err: -ENOMEM, SQ_ETLS. */
sq__tp *sq__tls_new(sq_tls_context *ctx, int fd, const char *hostname, int *err);
/* The HTTP server is above this transport, speaking HTTP/2 or not: ALPN chooses "h2" only
 * if it does (other servers answer from the context's list as it is). */
void sq__tls_set_h2(sq__tp *tp, bool on);
/* The ALPN protocol the handshake chose ("h2", "http/1.1"), or NULL. */
const char *sq__tls_alpn(const sq__tp *tp, size_t *len);
bool sq__tp_is_tls(const sq__tp *tp);

/* Free the transport, leaving the fd open (a connection going on in plain text). */
static inline void sq__tp_free(sq__tp *tp, bool reset)
{
    if (tp) tp->ops->free(tp, reset);
}

/* Close the connection and free the transport.  `reset`: an abortive close (SO_LINGER 0),
 * for a peer dropped because it stopped reading: the kernel frees what it never took. */
void sq__tp_close(int fd, sq__tp *tp, bool reset);
/* Whether the peer of an idle connection has gone, without reading anything: 1 at its end
 * of stream, a negative errno after a reset, 0 when bytes wait (or it cannot tell: a TLS
 * connection, whose bytes are records, or not a socket). */
int sq__tp_peer_gone(int fd, const sq__tp *tp);
/* Bytes handed to the kernel that the peer has not acknowledged yet (0 when it cannot tell:
 * not a TCP socket). */
int sq__tp_unacked(int fd);

#endif
