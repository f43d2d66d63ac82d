/* The plain socket transport's out-of-line parts (the rest is inline in transport.h), and
 * closing any transport. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "transport/transport.h"

ssize_t sq__tp_plain_sendfile(int fd, int in_fd, off_t *off, size_t len)
{
    /* sendfile() has no MSG_NOSIGNAL: a vanished client must not kill the server. */
    sq__ignore_sigpipe_once();
    if (len > 0x7ffff000u) len = 0x7ffff000u; /* what Linux sends at most in one call */
    for (;;) {
        ssize_t n = sendfile(fd, in_fd, off, len);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        /* a file sendfile cannot read (a pipe, some file systems): the caller copies */
        if (errno == EINVAL || errno == ENOSYS) return -EOPNOTSUPP;
        return -errno;
    }
}

void sq__tp_close(int fd, sq__tp *tp, bool reset)
{
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (tp) tp->ops->free(tp, reset);
    close(fd);
}

int sq__tp_peer_gone(int fd, const sq__tp *tp)
{
    if (tp) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1;
    if (n > 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOTSOCK)
        return 0;
    return -errno;
}

int sq__tp_unacked(int fd)
{
    int q = 0;
    return ioctl(fd, SIOCOUTQ, &q) == 0 && q > 0 ? q : 0;
}
