/* The epoll backend: level-triggered, one epoll_ctl per interest change. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

#define MAX_EVENTS 1024

typedef struct epoll_data_s {
    int epfd;
    int nready; /* events of the batch being dispatched */
    int cursor; /* index of the one being dispatched */
    struct epoll_event events[MAX_EVENTS];
} epoll_state;

static int ep_init(sq_loop *loop)
{
    epoll_state *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int e = -errno;
        free(st);
        return e;
    }
    loop->backend_data = st;
    return 0;
}

static void ep_destroy(sq_loop *loop)
{
    epoll_state *st = loop->backend_data;
    close(st->epfd);
    free(st);
    loop->backend_data = NULL;
}

static int ep_ctl(sq_loop *loop, sq_io *io, unsigned events)
{
    epoll_state *st = loop->backend_data;
    struct epoll_event ev = {0};
    ev.data.ptr = io;
    if (events & SQ_READ) ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & SQ_WRITE) ev.events |= EPOLLOUT;
    int op = !events ? EPOLL_CTL_DEL : io->sq__registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(st->epfd, op, io->fd, &ev) == 0) return 0;
    /* The fd may have been closed and reused behind our back; fix up rather than fail. */
    if (errno == ENOENT && op == EPOLL_CTL_MOD)
        op = EPOLL_CTL_ADD;
    else if (errno == EEXIST && op == EPOLL_CTL_ADD)
        op = EPOLL_CTL_MOD;
    else if (errno == ENOENT || errno == EBADF) /* deleting something already gone */
        return op == EPOLL_CTL_DEL ? 0 : -errno;
    else
        return -errno;
    return epoll_ctl(st->epfd, op, io->fd, &ev) == 0 ? 0 : -errno;
}

SQ__HOT static int ep_poll(sq_loop *loop, int timeout_ms)
{
    epoll_state *st = loop->backend_data;
    int n = epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    if (n > 0) loop->now_ns = sq__mono_ns();
    st->nready = n;
    uint64_t t = 0; /* the end of the previous event's callback: the next one's start */
    for (st->cursor = 0; st->cursor < st->nready; st->cursor++) {
        struct epoll_event *e = &st->events[st->cursor];
        sq_io *io = e->data.ptr;
        if (!io) continue; /* stopped earlier in this batch */
        unsigned ev = 0;
        if (e->events & EPOLLIN) ev |= SQ_READ;
        if (e->events & EPOLLOUT) ev |= SQ_WRITE;
        if (e->events & (EPOLLHUP | EPOLLRDHUP)) ev |= SQ_HUP;
        if (e->events & EPOLLERR) ev |= SQ_ERROR;
        /* Errors and hang-ups also wake the side that is listening, so it sees them. */
        if (ev & (SQ_HUP | SQ_ERROR)) ev |= io->events;
        t = sq__io_dispatch_at(loop, io, ev, t);
    }
    st->nready = 0;
    return n;
}

static void ep_invalidate(sq_loop *loop, sq_io *io)
{
    epoll_state *st = loop->backend_data;
    for (int i = st->cursor + 1; i < st->nready; i++)
        if (st->events[i].data.ptr == io) st->events[i].data.ptr = NULL;
}

const sq__backend sq__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .ctl = ep_ctl,
    .poll = ep_poll,
    .invalidate = ep_invalidate,
};
