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
#include <sys/stat.h>
#include <sys/un.h>
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

/* "unix:/path" or "unix:@abstract" → the address (abstract names get their leading NUL).
 * Returns 1 for a unix host, 0 for any other, -ENAMETOOLONG / -EINVAL for a bad one. */
static int unix_addr(const char *host, struct sockaddr_un *sa, socklen_t *len)
{
    if (!host || strncmp(host, "unix:", 5) != 0) return 0;
    const char *path = host + 5;
    size_t n = strlen(path);
    if (!n || (path[0] == '@' && n == 1)) return -EINVAL;
    if (n >= sizeof sa->sun_path) return -ENAMETOOLONG;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    if (path[0] == '@') sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
    return 1;
}

int sq_bind_unix_socket(const char *path, int mode, int backlog)
{
    char host[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    if (!path || snprintf(host, sizeof host, "unix:%s", path) >= (int)sizeof host)
        return path ? -ENAMETOOLONG : -EINVAL;
    struct sockaddr_un sa;
    socklen_t len;
    int r = unix_addr(host, &sa, &len);
    if (r <= 0) return r < 0 ? r : -EINVAL;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (path[0] != '@') {
        /* a socket left by an earlier run is replaced; any other file is an error */
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                close(fd);
                return -EADDRINUSE;
            }
            unlink(path);
        }
    }
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 ||
        (path[0] != '@' && chmod(path, (mode_t)(mode > 0 ? mode : 0666)) < 0) ||
        listen(fd, backlog > 0 ? backlog : DEFAULT_BACKLOG) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int sq_listen_fds(int *fds, int max)
{
    const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
    if (!pid || !nfds) return 0;
    char *end;
    long p = strtol(pid, &end, 10), n;
    if (*end || p != (long)getpid()) return 0; /* meant for another process */
    n = strtol(nfds, &end, 10);
    if (*end || n < 0 || n > 1024) return -EINVAL;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    int got = 0;
    for (int fd = 3; fd < 3 + n; fd++) { /* SD_LISTEN_FDS_START */
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0) return -EBADF;
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        if (got < max && fds) fds[got] = fd;
        got++;
    }
    return got;
}

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
    char *unix_path; /* a socket file bound here (removed at close), or NULL */
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
    if (srv->unix_path) { /* the socket file this server made goes with it */
        unlink(srv->unix_path);
        free(srv->unix_path);
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
    if (ss.ss_family == AF_UNIX) return 0;
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

/* The same address (the port aside) */
static bool same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family != AF_INET6) return false;
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) &&
           x->sin6_scope_id == y->sin6_scope_id;
}

/* A listen error that says this host lacks the address family (IPv6 off), not a failure */
static bool family_missing(int e)
{
    return e == -EAFNOSUPPORT || e == -EADDRNOTAVAIL || e == -EPROTONOSUPPORT;
}

/* The resolver of names to bind to (tests: one that gives several addresses) */
static int (*resolve)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **) = getaddrinfo;
static void (*resolve_free)(struct addrinfo *) = freeaddrinfo;

void sq__tcp_set_resolver(int (*fn)(const char *, const char *, const struct addrinfo *,
                                    struct addrinfo **),
                          void (*free_fn)(struct addrinfo *))
{
    resolve = fn ? fn : getaddrinfo;
    resolve_free = fn ? free_fn : freeaddrinfo;
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
    struct sockaddr_un su;
    int unix_host = unix_addr(host, &su, &len);
    if (unix_host < 0) return unix_host;
    if (unix_host) {
        int fd = sq_bind_unix_socket(host + 5, o->unix_mode, backlog);
        if (fd < 0) return fd;
        fds[0] = fd;
        *bound = 0;
        return 1;
    }
    if (!host || !*host) {
        /* Every address: one dual-stack IPv6 socket, or IPv4 where IPv6 is unavailable. */
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                                  .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = IN6ADDR_ANY_INIT};
        e = listen_one((struct sockaddr *)&a6, sizeof a6, o, backlog, fds, &n, bound);
        if (family_missing(e)) {
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
        if (resolve(host, portstr, &hints, &res) != 0) return SQ_ERESOLVE;
        /* The IPv6 sockets must not also claim the IPv4 port the name gave us. */
        sq_tcp_options v6only = *o;
        v6only.ipv6_only = true;
        int skipped = 0;
        for (struct addrinfo *ai = res; ai && n < max && !e; ai = ai->ai_next) {
            bool again = false; /* an address the name gave twice: bound already */
            for (struct addrinfo *p = res; p != ai && !again; p = p->ai_next)
                again = same_host(p->ai_addr, ai->ai_addr);
            if (again) continue;
            e = listen_one(ai->ai_addr, ai->ai_addrlen, &v6only, backlog, fds, &n, bound);
            /* A family this host lacks (::1 without IPv6) is skipped, as Tornado does; any
             * other failure (the port taken on one of the addresses) fails the whole: a
             * server listening on some of a name's addresses only, without a word, would
             * leave the others to whoever holds them. */
            if (family_missing(e)) {
                if (!skipped) skipped = e;
                e = 0;
            }
        }
        resolve_free(res);
        if (!e && !n) e = skipped ? skipped : SQ_ERESOLVE;
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
        if (e > 0 && host && !strncmp(host, "unix:/", 6) && !(srv->unix_path = strdup(host + 5))) {
            while (e > 0) close(fds[--e]);
            e = -ENOMEM;
        }
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

int sq__tcp_adopt_check(const int *fds, int n)
{
    if (!fds || n <= 0 || n > MAX_LISTENERS) return -EINVAL;
    for (int i = 0; i < n; i++) {
        int acc = 0, type = 0;
        socklen_t l = sizeof acc, tl = sizeof type;
        if (getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 ||
            getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
            return errno == ENOTSOCK ? -ENOTSOCK : -EBADF;
        if (!acc || type != SOCK_STREAM) return -EINVAL; /* not a listening stream socket */
    }
    for (int i = 0; i < n; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
        fl = fcntl(fds[i], F_GETFD);
        if (fl >= 0) fcntl(fds[i], F_SETFD, fl | FD_CLOEXEC);
    }
    return 0;
}

sq_tcp_server *sq_tcp_server_from_fds(sq_loop *loop, const int *fds, int n,
                                      const sq_tcp_options *opts, sq_stream_handler handler,
                                      void *arg, int *err)
{
    int e = sq__tcp_adopt_check(fds, n);
    if (e < 0) {
        if (err) *err = e;
        return NULL;
    }
    return server_new(loop, NULL, 0, fds, n, opts, handler, arg, err);
}

int sq__tcp_server_unlink_at_close(sq_tcp_server *srv, const char *host)
{
    if (!host || strncmp(host, "unix:/", 6) != 0) return 0;
    free(srv->unix_path);
    srv->unix_path = strdup(host + 5);
    return srv->unix_path ? 0 : -ENOMEM;
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

/* Connecting (RFC 8305, happy eyeballs): the resolved addresses are ordered IPv6 first and
 * then alternating families; the first attempt starts at once, each next one when the
 * previous failed or `delay` passed without an answer, whichever comes first; the first
 * connection up wins and every other attempt is closed.  An optional source address is bound
 * before each connect (addresses of the other family are skipped).  The overall timeout
 * covers resolution and every attempt. */

#define MAX_ATTEMPTS 8 /* attempts in flight at once */

typedef struct connect_op connect_op;

typedef struct attempt {
    sq_io io;
    connect_op *op;
    int fd; /* -1: slot free */
} attempt;

struct connect_op {
    sq_loop *loop;
    sq_future *fut; /* the operation's reference to the caller's future */
    char *host;
    int port;
    double delay; /* happy eyeballs: seconds before the next attempt starts */
    struct sockaddr_storage src;
    socklen_t srclen; /* 0: no source address */
    /* addresses to try, in order */
    struct sockaddr_storage *addrs;
    socklen_t *lens;
    size_t naddrs, next;
    attempt at[MAX_ATTEMPTS];
    int inflight;
    int last_err;
    sq_timer timer;    /* the overall timeout */
    sq_timer he_timer; /* the next attempt's start */
    bool resolving;    /* a job on the executor still writes into this struct */
    bool finished;     /* the caller's future is resolved: only clean-up remains */
    /* written by the resolver job */
    struct addrinfo *res;
    int gai_err;
};

static void op_maybe_free(connect_op *op)
{
    if (!op->finished || op->resolving) return;
    if (op->res) freeaddrinfo(op->res);
    free(op->addrs);
    free(op->lens);
    free(op->host);
    free(op);
}

static void attempt_close(attempt *a)
{
    if (a->fd < 0) return;
    sq_io_stop(a->op->loop, &a->io);
    close(a->fd);
    a->fd = -1;
    a->op->inflight--;
}

/* Resolve the caller's future (first call wins) and close every attempt in progress. */
static void op_finish(connect_op *op, int err, sq_stream *s)
{
    if (op->finished) return;
    op->finished = true;
    sq_timer_stop(&op->timer);
    sq_timer_stop(&op->he_timer);
    for (int i = 0; i < MAX_ATTEMPTS; i++) attempt_close(&op->at[i]);
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

static void start_next(connect_op *op);

static void on_connected(sq_loop *loop, sq_io *io, unsigned events)
{
    attempt *a = io->data;
    connect_op *op = a->op;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr == 0 && !(events & SQ_WRITE)) return; /* not yet */
    if (soerr) {
        attempt_close(a);
        op->last_err = -soerr;
        start_next(op); /* a failure starts the next address at once */
        return;
    }
    int fd = a->fd;
    sq_io_stop(loop, &a->io);
    a->fd = -1;
    op->inflight--;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&peer, &plen) == 0 && peer.ss_family != AF_UNIX)
        set_nodelay(fd);
    sq_stream *s = sq_stream_new(op->loop, fd);
    if (!s) {
        int e = -errno;
        close(fd);
        op_finish(op, e ? e : -ENOMEM, NULL);
        return;
    }
    op_finish(op, 0, s); /* closes the other attempts */
}

static void on_he_timer(sq_loop *loop, sq_timer *t)
{
    start_next(t->data);
}

/* Start the next address's attempt (if any), and arm the timer for the one after it. */
static void start_next(connect_op *op)
{
    while (!op->finished && op->next < op->naddrs && op->inflight < MAX_ATTEMPTS) {
        size_t i = op->next++;
        struct sockaddr *sa = (struct sockaddr *)&op->addrs[i];
        if (op->srclen && ((struct sockaddr *)&op->src)->sa_family != sa->sa_family) {
            if (!op->last_err) op->last_err = -EAFNOSUPPORT; /* no address of the source's family */
            continue;
        }
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            op->last_err = -errno;
            continue;
        }
        if (op->srclen) {
            int one = 1;
            if (((struct sockaddr_in *)&op->src)->sin_port == 0)
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            else
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&op->src, op->srclen) < 0) {
                op->last_err = -errno;
                close(fd);
                continue;
            }
        }
        int r;
        do r = connect(fd, sa, op->lens[i]);
        while (r < 0 && errno == EINTR);
        if (r < 0 && errno != EINPROGRESS) {
            op->last_err = -errno; /* refused at once (unix sockets, local ports): next */
            close(fd);
            continue;
        }
        attempt *a = NULL;
        for (int k = 0; k < MAX_ATTEMPTS && !a; k++)
            if (op->at[k].fd < 0) a = &op->at[k];
        a->fd = fd;
        a->op = op;
        sq_io_init(&a->io, fd, on_connected, a);
        int e = sq_io_start(op->loop, &a->io, SQ_WRITE);
        if (e < 0) {
            a->fd = -1;
            op->last_err = e;
            close(fd);
            continue;
        }
        op->inflight++;
        if (op->next < op->naddrs) sq_timer_start(&op->he_timer, op->delay, 0);
        return;
    }
    if (!op->finished && op->inflight == 0 && op->next >= op->naddrs)
        op_finish(op, op->last_err ? op->last_err : SQ_ERESOLVE, NULL);
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

/* Take n addresses in RFC 8305 order: IPv6 first, then the families alternating (each
 * family keeps the resolver's order); other families (unix) after them. */
static int set_addrs(connect_op *op, const struct sockaddr_storage *in, const socklen_t *lens,
                     size_t n)
{
    op->addrs = calloc(n ? n : 1, sizeof *op->addrs);
    op->lens = calloc(n ? n : 1, sizeof *op->lens);
    if (!op->addrs || !op->lens) return -ENOMEM;
    size_t i6 = 0, i4 = 0;
    for (bool six = true;; six = !six) {
        size_t *ip = six ? &i6 : &i4, *other = six ? &i4 : &i6;
        int fam = six ? AF_INET6 : AF_INET, ofam = six ? AF_INET : AF_INET6;
        while (*ip < n && in[*ip].ss_family != fam) (*ip)++;
        if (*ip >= n) {
            while (*other < n && in[*other].ss_family != ofam) (*other)++;
            if (*other >= n) break;
            continue; /* this family is done: the other one goes on alone */
        }
        op->addrs[op->naddrs] = in[*ip];
        op->lens[op->naddrs++] = lens[*ip];
        (*ip)++;
    }
    for (size_t k = 0; k < n; k++) {
        if (in[k].ss_family == AF_INET6 || in[k].ss_family == AF_INET) continue;
        op->addrs[op->naddrs] = in[k];
        op->lens[op->naddrs++] = lens[k];
    }
    return 0;
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
    struct sockaddr_storage *tmp = calloc(n, sizeof *tmp);
    socklen_t *tl = calloc(n, sizeof *tl);
    size_t k = 0;
    for (struct addrinfo *ai = op->res; tmp && tl && ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof *tmp) continue;
        memcpy(&tmp[k], ai->ai_addr, ai->ai_addrlen);
        tl[k++] = ai->ai_addrlen;
    }
    freeaddrinfo(op->res);
    op->res = NULL;
    int e = tmp && tl ? set_addrs(op, tmp, tl, k) : -ENOMEM;
    free(tmp);
    free(tl);
    if (e < 0) {
        op_finish(op, e, NULL);
        return;
    }
    start_next(op);
}

static void stream_value_free(void *s)
{
    sq_stream_free(s);
}

/* The operation and its future; NULL op: the future already failed (returned as is). */
static connect_op *op_new(sq_loop *loop, const sq_connect_options *o, sq_future **fp)
{
    sq_future *f = sq_future_new(loop);
    *fp = f;
    if (!f) return NULL;
    sq_future_set_value_free(f, stream_value_free); /* a stream nobody takes is closed */
    connect_op *op = calloc(1, sizeof *op);
    if (!op) {
        sq_future_set_error(f, -ENOMEM);
        return NULL;
    }
    op->loop = loop;
    op->fut = sq_future_retain(f);
    for (int i = 0; i < MAX_ATTEMPTS; i++) op->at[i].fd = -1;
    op->delay = o && o->happy_eyeballs_delay > 0 ? o->happy_eyeballs_delay : SQ_HAPPY_EYEBALLS_DELAY;
    sq_timer_init(loop, &op->timer, on_timeout, op);
    sq_timer_init(loop, &op->he_timer, on_he_timer, op);
    sq_future_set_cancel_hook(f, on_cancel, op);
    if (o && o->timeout > 0) sq_timer_start(&op->timer, o->timeout, 0);
    if (o && o->source_address && *o->source_address) {
        if (!parse_numeric(o->source_address, o->source_port, &op->src, &op->srclen)) {
            op_finish(op, -EINVAL, NULL); /* a source must be a numeric address */
            return NULL;
        }
    } else if (o && o->source_port > 0) {
        op_finish(op, -EINVAL, NULL);
        return NULL;
    }
    return op;
}

sq_future *sq__tcp_connect_addrs_future(sq_loop *loop, const struct sockaddr_storage *addrs,
                                        const socklen_t *lens, size_t n,
                                        const sq_connect_options *o)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_future *f;
    connect_op *op = op_new(loop, o, &f);
    if (!op) return f;
    int e = set_addrs(op, addrs, lens, n);
    if (e < 0)
        op_finish(op, e, NULL);
    else
        start_next(op);
    return f;
}

sq_future *sq_tcp_connect_opts_future(sq_loop *loop, const char *host, int port,
                                      const sq_connect_options *o)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    struct sockaddr_un su;
    socklen_t len;
    int unix_host = unix_addr(host, &su, &len);
    if (unix_host < 0 || !host || !*host || (!unix_host && (port <= 0 || port > 65535))) {
        sq_future *f = sq_future_new(loop);
        if (f) sq_future_set_error(f, unix_host < 0 ? unix_host : -EINVAL);
        return f;
    }
    struct sockaddr_storage ss;
    if (unix_host) {
        memset(&ss, 0, sizeof ss);
        memcpy(&ss, &su, len);
        return sq__tcp_connect_addrs_future(loop, &ss, &len, 1, o);
    }
    if (parse_numeric(host, port, &ss, &len)) return sq__tcp_connect_addrs_future(loop, &ss, &len, 1, o);
    sq_future *f;
    connect_op *op = op_new(loop, o, &f);
    if (!op) return f;
    op->port = port;
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

sq_future *sq_tcp_connect_future(sq_loop *loop, const char *host, int port, double timeout)
{
    return sq_tcp_connect_opts_future(loop, host, port, &(sq_connect_options){.timeout = timeout});
}

sq_stream *sq_tcp_connect(const char *host, int port, double timeout, int *err)
{
    return sq_tcp_connect_opts(host, port, &(sq_connect_options){.timeout = timeout}, err);
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
    return sq_tcp_connect_opts(host, port,
                               &(sq_connect_options){.timeout = timeout, .tls = ctx, .use_tls = true},
                               err);
}

sq_stream *sq_tcp_connect_opts(const char *host, int port, const sq_connect_options *o, int *err)
{
    sq_coro *self = sq_coro_self();
    if (!self) {
        sq_log(SQ_LOG_ERROR, "sq_tcp_connect: called outside a coroutine "
                             "(use sq_tcp_connect_opts_future)");
        if (err) *err = SQ_ENOTCORO;
        return NULL;
    }
    sq_loop *loop = sq_coro_loop(self);
    sq_tls_context *ctx = o ? o->tls : NULL;
    bool tls = o && (o->use_tls || o->tls);
    if (tls && !ctx) {
        pthread_once(&default_client_once, default_client_init);
        ctx = default_client;
        if (!ctx) {
            if (err) *err = default_client_err;
            return NULL;
        }
    }
    if (tls && (!host || sq_tls_context_is_server(ctx))) {
        if (err) *err = -EINVAL;
        return NULL;
    }
    double timeout = o ? o->timeout : 0;
    double t0 = sq_loop_time(loop);
    void *v = NULL;
    int64_t st = sq_await(sq_tcp_connect_opts_future(loop, host, port, o), &v);
    if (st < 0) {
        if (err) *err = (int)st;
        return NULL;
    }
    sq_stream *s = v;
    if (!tls) {
        if (err) *err = 0;
        return s;
    }
    /* the name the certificate must carry: "[::1]" is checked as ::1 */
    char name[256];
    const char *h = o->server_hostname ? o->server_hostname : host;
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    snprintf(name, sizeof name, "%.*s", (int)n, h);
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
