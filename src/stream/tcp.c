/* TCP servers (accept in batches, a coroutine per connection) and clients (non-blocking
 * connect over every resolved address in turn, names resolved on the executor). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MAX_LISTENERS   8
#define ACCEPT_BATCH    256 /* accepts per wake-up; level-triggered epoll brings us back */
#define EMFILE_PAUSE    0.1 /* seconds to stop accepting when out of descriptors */
#define DEFAULT_BACKLOG 4096

/* --- server ---------------------------------------------------------------------------- */

typedef struct listener {
    sq_io io;
    sq_tcp_server *srv;
    int fd;
} listener;

struct sq_tcp_server {
    sq_loop *loop;
    listener ls[MAX_LISTENERS];
    int nls;
    int port;
    sq_stream_handler handler;
    void *arg;
    sq_tcp_options opts;
    sq_timer resume_timer;
    bool paused;      /* out of descriptors: resumed by resume_timer */
    bool user_paused; /* sq_tcp_server_pause() */
    bool emfile_logged;
    bool want_free;
    unsigned depth;
};

typedef struct conn {
    sq_stream *stream;
    sq_stream_handler handler;
    void *arg;
    sq_tls_context *tls; /* a reference, or NULL */
    double tls_timeout;
    struct sockaddr_storage peer;
} conn;

static void *conn_main(void *arg)
{
    conn *c = arg;
    int e = 0;
    if (c->tls) {
        sq_future *f = sq_stream_start_tls_future(c->stream, c->tls, NULL);
        e = f ? (int)sq_await(sq_with_timeout(f, c->tls_timeout), NULL) : -ENOMEM;
        if (e < 0)
            sq_log(SQ_LOG_DEBUG, "tcp server: TLS handshake failed: %s",
                   e == SQ_ETLS ? sq_tls_last_error() : sq_strerror(e));
    }
    if (e == 0) c->handler(c->stream, (const struct sockaddr *)&c->peer, c->arg);
    sq_stream_free(c->stream);
    sq_tls_context_free(c->tls);
    free(c);
    return NULL;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void server_destroy(sq_tcp_server *srv)
{
    sq_timer_stop(&srv->resume_timer);
    for (int i = 0; i < srv->nls; i++) {
        sq_io_stop(srv->loop, &srv->ls[i].io);
        close(srv->ls[i].fd);
    }
    sq_tls_context_free(srv->opts.tls);
    free(srv);
}

/* Watch the listening sockets unless something pauses accepting. */
static void update_listening(sq_tcp_server *srv)
{
    bool on = !srv->paused && !srv->user_paused && !srv->want_free;
    for (int i = 0; i < srv->nls; i++) {
        if (on)
            sq_io_start(srv->loop, &srv->ls[i].io, SQ_READ);
        else
            sq_io_stop(srv->loop, &srv->ls[i].io);
    }
}

static void resume_accepting(sq_loop *loop, sq_timer *t)
{
    sq_tcp_server *srv = t->data;
    srv->paused = false;
    update_listening(srv);
}

void sq_tcp_server_pause(sq_tcp_server *srv)
{
    if (srv->user_paused) return;
    srv->user_paused = true;
    update_listening(srv);
}

void sq_tcp_server_resume(sq_tcp_server *srv)
{
    if (!srv->user_paused) return;
    srv->user_paused = false;
    update_listening(srv);
}

/* Out of descriptors: the pending connection stays in the queue and the listener stays
 * readable, so retrying at once would spin.  Stop listening for a moment instead. */
static void pause_accepting(sq_tcp_server *srv, int err)
{
    if (!srv->emfile_logged) {
        sq_log(SQ_LOG_WARNING, "tcp server on port %d: accept: %s; pausing accepts for %g s",
               srv->port, sq_strerror(err), EMFILE_PAUSE);
        srv->emfile_logged = true;
    }
    srv->paused = true;
    update_listening(srv);
    sq_timer_start(&srv->resume_timer, EMFILE_PAUSE, 0);
}

static void handle_conn(sq_tcp_server *srv, int fd, struct sockaddr_storage *peer, socklen_t plen)
{
    if (!srv->opts.no_nodelay && (peer->ss_family == AF_INET || peer->ss_family == AF_INET6))
        set_nodelay(fd);
    if (srv->opts.on_accept) {
        srv->opts.on_accept(srv, fd, (const struct sockaddr *)peer, plen, srv->arg);
        return;
    }
    conn *c = malloc(sizeof *c);
    sq_stream *s = c ? sq_stream_new(srv->loop, fd) : NULL;
    if (!s) {
        sq_log(SQ_LOG_ERROR, "tcp server: out of memory for a new connection; dropping it");
        free(c);
        close(fd);
        return;
    }
    c->stream = s;
    c->handler = srv->handler;
    c->arg = srv->arg;
    c->tls = sq_tls_context_ref(srv->opts.tls);
    c->tls_timeout = srv->opts.tls_handshake_timeout > 0 ? srv->opts.tls_handshake_timeout : 10.0;
    memcpy(&c->peer, peer, plen < sizeof c->peer ? plen : sizeof c->peer);
    if (sq_go(srv->loop, conn_main, c) < 0) {
        sq_log(SQ_LOG_ERROR, "tcp server: cannot start a coroutine; dropping the connection");
        sq_stream_free(s);
        sq_tls_context_free(c->tls);
        free(c);
    }
}

static void on_accept_ready(sq_loop *loop, sq_io *io, unsigned events)
{
    listener *l = io->data;
    sq_tcp_server *srv = l->srv;
    srv->depth++;
    for (int n = 0; n < ACCEPT_BATCH && !srv->want_free && !srv->paused && !srv->user_paused; n++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK) break;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                pause_accepting(srv, -e);
                break;
            }
            sq_log(SQ_LOG_ERROR, "tcp server: accept: %s", sq_strerror(-e));
            break;
        }
        handle_conn(srv, fd, &peer, plen);
    }
    if (--srv->depth == 0 && srv->want_free) server_destroy(srv);
}

/* Open, configure, bind and listen one socket.  Returns the fd or a negative errno. */
static int open_listener(const struct sockaddr *sa, socklen_t salen, const sq_tcp_options *o,
                         int backlog)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (sa->sa_family == AF_INET6) {
        int v6only = o->ipv6_only ? 1 : 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, sa, salen) < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static void set_port(struct sockaddr *sa, int port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

/* Parse a numeric IPv4 or IPv6 address ("[::1]" accepted).  Returns false for names. */
static bool parse_numeric(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = 0;
        host = buf;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return true;
    }
    return false;
}

/* Open one listening socket and record it; with port 0 and several addresses, every socket
 * takes the port the first one got. */
static int listen_one(struct sockaddr *sa, socklen_t len, const sq_tcp_options *o, int backlog,
                      int *fds, int *n, int *port)
{
    if (*n && *port > 0) set_port(sa, *port);
    int fd = open_listener(sa, len, o, backlog);
    if (fd < 0) return fd;
    fds[(*n)++] = fd;
    if (*port <= 0) *port = bound_port(fd);
    return 0;
}

int sq__tcp_listen_fds(const char *host, int port, const sq_tcp_options *o, int backlog, int *fds,
                       int max, int *bound)
{
    int n = 0, e = 0;
    *bound = port;
    struct sockaddr_storage ss;
    socklen_t len;
    if (max <= 0) return -ENFILE;
    if (!host || !*host) {
        /* Every address: one dual-stack IPv6 socket, or IPv4 where IPv6 is unavailable. */
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                                  .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = IN6ADDR_ANY_INIT};
        e = listen_one((struct sockaddr *)&a6, sizeof a6, o, backlog, fds, &n, bound);
        if (e == -EAFNOSUPPORT || e == -EADDRNOTAVAIL || e == -EPROTONOSUPPORT) {
            struct sockaddr_in a4 = {.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)port),
                                     .sin_addr.s_addr = htonl(INADDR_ANY)};
            e = listen_one((struct sockaddr *)&a4, sizeof a4, o, backlog, fds, &n, bound);
        }
    } else if (parse_numeric(host, port, &ss, &len)) {
        e = listen_one((struct sockaddr *)&ss, len, o, backlog, fds, &n, bound);
    } else {
        /* A name to bind to: resolved here, once, at start-up (Tornado's bind_sockets does
         * the same); only connections resolve on the executor. */
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
        struct addrinfo *res = NULL;
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", port);
        if (getaddrinfo(host, portstr, &hints, &res) != 0) return SQ_ERESOLVE;
        /* The IPv6 sockets must not also claim the IPv4 port the name gave us. */
        sq_tcp_options v6only = *o;
        v6only.ipv6_only = true;
        int first_err = 0;
        for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
            int r = listen_one(ai->ai_addr, ai->ai_addrlen, &v6only, backlog, fds, &n, bound);
            if (r < 0 && !first_err) first_err = r;
        }
        freeaddrinfo(res);
        e = n ? 0 : first_err ? first_err : SQ_ERESOLVE;
    }
    if (e == 0 && *bound < 0) e = *bound;
    if (e < 0) {
        while (n) close(fds[--n]);
        return e;
    }
    return n;
}

/* A server over listening sockets: bound here (fds NULL) or handed in (owned from then). */
static sq_tcp_server *server_new(sq_loop *loop, const char *host, int port, const int *fds_in,
                                 int nfds_in, const sq_tcp_options *opts, sq_stream_handler handler,
                                 void *arg, int *err)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    if (port < 0 || port > 65535 || nfds_in > MAX_LISTENERS ||
        (!handler && !(opts && opts->on_accept))) {
        for (int i = 0; fds_in && i < nfds_in; i++) close(fds_in[i]);
        if (err) *err = -EINVAL;
        return NULL;
    }
    sq_tcp_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        for (int i = 0; fds_in && i < nfds_in; i++) close(fds_in[i]);
        if (err) *err = -ENOMEM;
        return NULL;
    }
    srv->loop = loop;
    srv->handler = handler;
    srv->arg = arg;
    if (opts) srv->opts = *opts;
    sq_tls_context_ref(srv->opts.tls);
    sq_timer_init(loop, &srv->resume_timer, resume_accepting, srv);
    int backlog = srv->opts.backlog > 0 ? srv->opts.backlog : DEFAULT_BACKLOG;
    int fds[MAX_LISTENERS];
    int e;
    if (fds_in) {
        memcpy(fds, fds_in, (size_t)nfds_in * sizeof *fds);
        e = nfds_in;
        srv->port = nfds_in ? bound_port(fds[0]) : -1;
    } else {
        e = sq__tcp_listen_fds(host, port, &srv->opts, backlog, fds, MAX_LISTENERS, &srv->port);
    }
    for (int i = 0; i < e; i++) {
        listener *l = &srv->ls[srv->nls++];
        l->fd = fds[i];
        l->srv = srv;
        sq_io_init(&l->io, fds[i], on_accept_ready, l);
    }
    if (e > 0) e = 0;
    for (int i = 0; e == 0 && i < srv->nls; i++) e = sq_io_start(loop, &srv->ls[i].io, SQ_READ);
    if (e < 0) {
        server_destroy(srv);
        if (err) *err = e;
        return NULL;
    }
    if (err) *err = 0;
    return srv;
}

sq_tcp_server *sq_tcp_listen(sq_loop *loop, const char *host, int port, const sq_tcp_options *opts,
                             sq_stream_handler handler, void *arg, int *err)
{
    return server_new(loop, host, port, NULL, 0, opts, handler, arg, err);
}

sq_tcp_server *sq__tcp_server_from_fds(sq_loop *loop, const int *fds, int n,
                                       const sq_tcp_options *opts, void *arg, int *err)
{
    return server_new(loop, NULL, 0, fds, n, opts, NULL, arg, err);
}

int sq__tcp_server_nfds(const sq_tcp_server *srv)
{
    return srv->nls;
}

int sq_tcp_server_port(const sq_tcp_server *srv)
{
    return srv->port;
}

void sq_tcp_server_close(sq_tcp_server *srv)
{
    if (!srv) return;
    if (srv->depth) { /* called from on_accept: finish the batch first */
        srv->want_free = true;
        for (int i = 0; i < srv->nls; i++) sq_io_stop(srv->loop, &srv->ls[i].io);
        sq_timer_stop(&srv->resume_timer);
        return;
    }
    server_destroy(srv);
}

/* --- client ---------------------------------------------------------------------------- */

typedef struct connect_op {
    sq_loop *loop;
    sq_future *fut; /* the operation's reference to the caller's future */
    char *host;
    int port;
    /* addresses to try, in order */
    struct sockaddr_storage *addrs;
    socklen_t *lens;
    size_t naddrs, next;
    int fd;
    int last_err;
    sq_io io;
    sq_timer timer;
    bool resolving; /* a job on the executor still writes into this struct */
    bool finished;  /* the caller's future is resolved: only clean-up remains */
    /* written by the resolver job */
    struct addrinfo *res;
    int gai_err;
} connect_op;

static void op_maybe_free(connect_op *op)
{
    if (!op->finished || op->resolving) return;
    if (op->res) freeaddrinfo(op->res);
    free(op->addrs);
    free(op->lens);
    free(op->host);
    free(op);
}

/* Resolve the caller's future (first call wins) and tear down the attempt in progress. */
static void op_finish(connect_op *op, int err, sq_stream *s)
{
    if (op->finished) return;
    op->finished = true;
    sq_timer_stop(&op->timer);
    if (op->fd >= 0) {
        sq_io_stop(op->loop, &op->io);
        close(op->fd);
        op->fd = -1;
    }
    sq_future *f = op->fut;
    op->fut = NULL;
    sq_future_set_cancel_hook(f, NULL, NULL);
    if (err < 0)
        sq_future_set_error(f, err);
    else if (sq_future_resolve(f, 0, s) < 0)
        sq_stream_free(s); /* nobody can take it any more */
    sq_future_release(f);
    op_maybe_free(op);
}

static void try_next(connect_op *op);

static void on_connected(sq_loop *loop, sq_io *io, unsigned events)
{
    connect_op *op = io->data;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr == 0 && !(events & SQ_WRITE)) return; /* not yet */
    sq_io_stop(loop, &op->io);
    if (soerr) {
        close(op->fd);
        op->fd = -1;
        op->last_err = -soerr;
        try_next(op);
        return;
    }
    int fd = op->fd;
    op->fd = -1;
    set_nodelay(fd);
    sq_stream *s = sq_stream_new(op->loop, fd);
    if (!s) {
        int e = -errno;
        close(fd);
        op_finish(op, e ? e : -ENOMEM, NULL);
        return;
    }
    op_finish(op, 0, s);
}

static void try_next(connect_op *op)
{
    while (!op->finished && op->next < op->naddrs) {
        size_t i = op->next++;
        struct sockaddr *sa = (struct sockaddr *)&op->addrs[i];
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            op->last_err = -errno;
            continue;
        }
        int r;
        do r = connect(fd, sa, op->lens[i]);
        while (r < 0 && errno == EINTR);
        if (r == 0 || errno == EINPROGRESS) {
            op->fd = fd;
            sq_io_init(&op->io, fd, on_connected, op);
            int e = sq_io_start(op->loop, &op->io, SQ_WRITE);
            if (e == 0) return;
            op->fd = -1;
            op->last_err = e;
            close(fd);
            continue;
        }
        op->last_err = -errno;
        close(fd);
    }
    if (!op->finished) op_finish(op, op->last_err ? op->last_err : SQ_ERESOLVE, NULL);
}

static void on_timeout(sq_loop *loop, sq_timer *t)
{
    op_finish(t->data, -ETIMEDOUT, NULL);
}

static void on_cancel(sq_future *f, void *arg)
{
    /* The future is already resolved with -ECANCELED: just tear down. */
    op_finish(arg, -ECANCELED, NULL);
}

/* Runs on a worker thread: touches only the op's resolver fields. */
static void *resolve_job(void *arg)
{
    connect_op *op = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", op->port);
    op->gai_err = getaddrinfo(op->host, portstr, &hints, &op->res);
    return NULL;
}

static void resolved(sq_future *f, void *arg)
{
    connect_op *op = arg;
    op->resolving = false;
    int64_t st = sq_future_status(f);
    sq_future_release(f);
    if (op->finished) {
        op_maybe_free(op);
        return;
    }
    if (st < 0 || op->gai_err || !op->res) {
        op_finish(op, st < 0 && st != -ECANCELED ? (int)st : SQ_ERESOLVE, NULL);
        return;
    }
    size_t n = 0;
    for (struct addrinfo *ai = op->res; ai; ai = ai->ai_next) n++;
    op->addrs = calloc(n, sizeof *op->addrs);
    op->lens = calloc(n, sizeof *op->lens);
    if (!op->addrs || !op->lens) {
        op_finish(op, -ENOMEM, NULL);
        return;
    }
    for (struct addrinfo *ai = op->res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof op->addrs[0]) continue;
        memcpy(&op->addrs[op->naddrs], ai->ai_addr, ai->ai_addrlen);
        op->lens[op->naddrs++] = ai->ai_addrlen;
    }
    freeaddrinfo(op->res);
    op->res = NULL;
    try_next(op);
}

static void stream_value_free(void *s)
{
    sq_stream_free(s);
}

sq_future *sq_tcp_connect_future(sq_loop *loop, const char *host, int port, double timeout)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    sq_future_set_value_free(f, stream_value_free); /* a stream nobody takes is closed */
    if (!host || !*host || port <= 0 || port > 65535) {
        sq_future_set_error(f, -EINVAL);
        return f;
    }
    connect_op *op = calloc(1, sizeof *op);
    if (!op) {
        sq_future_set_error(f, -ENOMEM);
        return f;
    }
    op->loop = loop;
    op->fut = sq_future_retain(f);
    op->port = port;
    op->fd = -1;
    sq_timer_init(loop, &op->timer, on_timeout, op);
    sq_future_set_cancel_hook(f, on_cancel, op);
    if (timeout > 0) sq_timer_start(&op->timer, timeout, 0);

    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_numeric(host, port, &ss, &len)) {
        op->addrs = malloc(sizeof ss);
        op->lens = malloc(sizeof len);
        if (!op->addrs || !op->lens) {
            op_finish(op, -ENOMEM, NULL);
            return f;
        }
        op->addrs[0] = ss;
        op->lens[0] = len;
        op->naddrs = 1;
        try_next(op);
        return f;
    }
    op->host = strdup(host);
    sq_executor *ex = op->host ? sq_executor_default() : NULL;
    sq_future *rf = ex ? sq_executor_submit(ex, loop, resolve_job, op) : NULL;
    if (!rf) {
        op_finish(op, -ENOMEM, NULL);
        return f;
    }
    op->resolving = true;
    sq_future_add_done_callback(rf, resolved, op);
    return f;
}

sq_stream *sq_tcp_connect(const char *host, int port, double timeout, int *err)
{
    sq_coro *self = sq_coro_self();
    if (!self) {
        sq_log(SQ_LOG_ERROR, "sq_tcp_connect: called outside a coroutine "
                             "(use sq_tcp_connect_future)");
        if (err) *err = SQ_ENOTCORO;
        return NULL;
    }
    void *v = NULL;
    int64_t st = sq_await(sq_tcp_connect_future(sq_coro_loop(self), host, port, timeout), &v);
    if (err) *err = st < 0 ? (int)st : 0;
    return st < 0 ? NULL : v;
}

/* The client context sq_tcp_connect_tls uses when given none: the system CA store. */
static sq_tls_context *default_client;
static pthread_once_t default_client_once = PTHREAD_ONCE_INIT;
static int default_client_err;

static void default_client_init(void)
{
    default_client = sq_tls_client_context_new(NULL, &default_client_err);
}

sq_stream *sq_tcp_connect_tls(const char *host, int port, double timeout, sq_tls_context *ctx,
                              int *err)
{
    sq_coro *self = sq_coro_self();
    if (!self) {
        sq_log(SQ_LOG_ERROR, "sq_tcp_connect_tls: called outside a coroutine");
        if (err) *err = SQ_ENOTCORO;
        return NULL;
    }
    sq_loop *loop = sq_coro_loop(self);
    if (!ctx) {
        pthread_once(&default_client_once, default_client_init);
        ctx = default_client;
        if (!ctx) {
            if (err) *err = default_client_err;
            return NULL;
        }
    }
    if (!host || sq_tls_context_is_server(ctx)) {
        if (err) *err = -EINVAL;
        return NULL;
    }
    double t0 = sq_loop_time(loop);
    sq_stream *s = sq_tcp_connect(host, port, timeout, err);
    if (!s) return NULL;
    /* the name the certificate must carry: "[::1]" is checked as ::1 */
    char name[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    snprintf(name, sizeof name, "%.*s", (int)n, host);
    sq_future *f = sq_stream_start_tls_future(s, ctx, name);
    if (f && timeout > 0) {
        double left = timeout - (sq_loop_time(loop) - t0);
        f = sq_with_timeout(f, left > 0.001 ? left : 0.001);
    }
    int e = f ? (int)sq_await(f, NULL) : -ENOMEM;
    if (e == -ECANCELED) e = -ETIMEDOUT;
    if (e < 0) {
        sq_stream_free(s);
        s = NULL;
    }
    if (err) *err = e;
    return s;
}
