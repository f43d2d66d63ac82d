/* The epoll backend: level-triggered, one epoll_ctl per interest change. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

#define MAX_EVENTS 1024
#define GONE_MAX   MAX_EVENTS /* stopped ios remembered a batch; past that, ep_invalidate scans */
#define GONE_SLOTS 4096       /* the set's table: a power of two, at most a quarter full */

/* The ios stopped while a batch is dispatched (ep_invalidate): their events later in the
 * batch are dropped, since their memory may be freed or reused by then.  A set of pointers,
 * open addressing, emptied after the batch.  Before it, each stop scanned the rest of the
 * batch: with 1,000 connections closing in one batch, a quarter of a short connection's
 * user-space instructions.  A batch without stops pays one test an event. */
typedef struct epoll_data_s {
    int epfd;
    int nready; /* events of the batch being dispatched */
    int cursor; /* index of the one being dispatched */
    int ngone;
    struct epoll_event events[MAX_EVENTS];
    const sq_io *gone[GONE_SLOTS];
    unsigned short gone_at[GONE_MAX]; /* the slots taken, to empty them */
} epoll_state;

static unsigned gone_slot(const sq_io *io)
{
    uint64_t h = (uint64_t)(uintptr_t)io * 0x9E3779B97F4A7C15u;
    return (unsigned)(h >> 52) & (GONE_SLOTS - 1); /* the top 12 bits */
}

/* io's slot in the set, or the empty slot where it would go */
static unsigned gone_find(const epoll_state *st, const sq_io *io)
{
    unsigned i = gone_slot(io);
    while (st->gone[i] && st->gone[i] != io) i = (i + 1) & (GONE_SLOTS - 1);
    return i;
}

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
        if (!io || (st->ngone && st->gone[gone_find(st, io)]))
            continue; /* stopped earlier in this batch */
        unsigned ev = 0;
        if (e->events & EPOLLIN) ev |= SQ_READ;
        if (e->events & EPOLLOUT) ev |= SQ_WRITE;
        if (e->events & (EPOLLHUP | EPOLLRDHUP)) ev |= SQ_HUP;
        if (e->events & EPOLLERR) ev |= SQ_ERROR;
        /* Errors and hang-ups also wake the side that is listening, so it sees them. */
        if (ev & (SQ_HUP | SQ_ERROR)) ev |= io->events;
        /* Only what is still asked for: an earlier callback of this batch may have narrowed
         * the interest (sq_io_start), as libuv masks with the current interest too. */
        ev &= io->events | SQ_HUP | SQ_ERROR;
        if (!ev) continue;
        t = sq__io_dispatch_at(loop, io, ev, t);
    }
    st->nready = 0;
    while (st->ngone) st->gone[st->gone_at[--st->ngone]] = NULL;
    return n;
}

static void ep_invalidate(sq_loop *loop, sq_io *io)
{
    epoll_state *st = loop->backend_data;
    if (st->cursor + 1 >= st->nready) return; /* no event of this batch is left */
    if (st->ngone == GONE_MAX) {              /* the set is full: find its event the long way */
        for (int i = st->cursor + 1; i < st->nready; i++)
            if (st->events[i].data.ptr == io) st->events[i].data.ptr = NULL;
        return;
    }
    unsigned i = gone_find(st, io);
    if (st->gone[i]) return; /* already in */
    st->gone[i] = io;
    st->gone_at[st->ngone++] = (unsigned short)i;
}

const sq__backend sq__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .ctl = ep_ctl,
    .poll = ep_poll,
    .invalidate = ep_invalidate,
};
