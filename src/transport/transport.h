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
 * -EAGAIN means "not now, wait for the events sq__tp_want() names"; EINTR is retried
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

typedef struct sq__tp sq__tp;

typedef struct sq__tp_ops {
    ssize_t (*read)(sq__tp *t, void *buf, size_t len);
    ssize_t (*writev)(sq__tp *t, const struct iovec *iov, int n);
    /* -EOPNOTSUPP when the file cannot go to the kernel as is (the caller reads it and
     * writes it instead). */
    ssize_t (*sendfile)(sq__tp *t, int in_fd, off_t *off, size_t len);
    int (*shutdown)(sq__tp *t);
    void (*free)(sq__tp *t);
    /* SQ_READ/SQ_WRITE the transport itself waits for (a handshake in progress), or 0. */
    unsigned (*want)(const sq__tp *t);
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

/* What the transport itself waits for before the caller's own I/O can go on. */
static inline unsigned sq__tp_want(const sq__tp *tp)
{
    return tp && tp->ops->want ? tp->ops->want(tp) : 0;
}

/* Close the connection and free the transport.  `reset`: an abortive close (SO_LINGER 0),
 * for a peer dropped because it stopped reading: the kernel frees what it never took. */
void sq__tp_close(int fd, sq__tp *tp, bool reset);

#endif
