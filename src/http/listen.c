/* Listening sockets (accept in batches, paused at max_connections) and the server's
 * lifetime: creation, graceful shutdown, free. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_internal.h"

#define ACCEPT_BATCH 256
#define EMFILE_PAUSE 0.1

/* --- listening
 * ------------------------------------------------------------------------------------ */

void sq__http_listeners_start(sq_http_server *srv)
{
    for (int i = 0; i < srv->nls; i++) sq_io_start(srv->loop, &srv->ls[i].io, SQ_READ);
}

static void listeners_stop(sq_http_server *srv)
{
    for (int i = 0; i < srv->nls; i++) sq_io_stop(srv->loop, &srv->ls[i].io);
}

static void accept_resume(sq_loop *loop, sq_timer *t)
{
    sq_http_server *srv = t->data;
    if (!srv->closing && srv->nconns < srv->s.max_connections) {
        srv->accept_paused = false;
        sq__http_listeners_start(srv);
    }
}

static void on_accept(sq_loop *loop, sq_io *io, unsigned events)
{
    sq__http_listener *l = io->data;
    sq_http_server *srv = l->srv;
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        if (srv->nconns >= srv->s.max_connections) {
            srv->accept_paused = true;
            listeners_stop(srv);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK) return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                sq_log(SQ_LOG_WARNING, "http server: accept: %s; pausing accepts", sq_strerror(-e));
                listeners_stop(srv);
                sq_timer_start(&srv->accept_timer, EMFILE_PAUSE, 0);
                return;
            }
            sq_log(SQ_LOG_ERROR, "http server: accept: %s", sq_strerror(-e));
            return;
        }
        if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        sq__http_conn_new(srv, fd, (struct sockaddr *)&peer);
    }
}

int sq_http_server_listen(sq_http_server *srv, const char *host, int port)
{
    if (port < 0 || port > 65535) return -EINVAL;
    if (srv->closing) return SQ_ECLOSED;
    /* The sockets themselves are the stream layer's (sq_tcp_listen binds the same way); an
     * explicit IPv6 address takes IPv6 only, as in nginx and Tornado. */
    sq_tcp_options o = {.reuseport = srv->s.reuseport, .ipv6_only = host && *host};
    int fds[SQ__HTTP_MAX_LISTENERS], bound;
    int n =
        sq__tcp_listen_fds(host, port, &o, 4096, fds, SQ__HTTP_MAX_LISTENERS - srv->nls, &bound);
    if (n < 0) return n;
    for (int i = 0; i < n; i++) {
        sq__http_listener *l = &srv->ls[srv->nls];
        l->srv = srv;
        sq_io_init(&l->io, fds[i], on_accept, l);
        if (!srv->closing && !srv->accept_paused) {
            int e = sq_io_start(srv->loop, &l->io, SQ_READ);
            if (e < 0) {
                while (i < n) close(fds[i++]);
                return e;
            }
        }
        srv->nls++;
    }
    if (srv->port <= 0) srv->port = bound;
    return 0;
}

int sq_http_server_port(const sq_http_server *srv)
{
    return srv->port;
}
size_t sq_http_server_connections(const sq_http_server *srv)
{
    return srv->nconns;
}

/* --- server lifetime
 * -------------------------------------------------------------------------------- */

sq_http_server *sq_http_server_new(sq_loop *loop, const sq_http_settings *settings,
                                   sq_http_handler_fn handler, void *arg)
{
    if (!handler) {
        errno = EINVAL;
        return NULL;
    }
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->handler = handler;
    srv->arg = arg;
    if (settings) srv->s = *settings;
    sq_http_settings *s = &srv->s;
    if (!s->max_request_line) s->max_request_line = SQ_HTTP_DEFAULT_MAX_REQUEST_LINE;
    if (!s->max_header_size) s->max_header_size = SQ_HTTP_DEFAULT_MAX_HEADER_SIZE;
    if (!s->max_body_size) s->max_body_size = SQ_HTTP_DEFAULT_MAX_BODY_SIZE;
    if (!s->max_connections) s->max_connections = SQ_HTTP_DEFAULT_MAX_CONNECTIONS;
    if (s->header_timeout == 0) s->header_timeout = SQ_HTTP_DEFAULT_HEADER_TIMEOUT;
    if (s->idle_timeout == 0) s->idle_timeout = SQ_HTTP_DEFAULT_IDLE_TIMEOUT;
    if (s->body_timeout == 0) s->body_timeout = SQ_HTTP_DEFAULT_BODY_TIMEOUT;
    if (s->body_min_rate == 0) s->body_min_rate = SQ_HTTP_DEFAULT_BODY_MIN_RATE;
    if (s->write_timeout == 0) s->write_timeout = SQ_HTTP_DEFAULT_WRITE_TIMEOUT;
    if (!s->write_high_water) s->write_high_water = SQ_HTTP_DEFAULT_WRITE_HIGH_WATER;
    if (!s->server_name) s->server_name = "squall";
    srv->server_name_len = strlen(s->server_name);
    for (size_t i = 0; i < srv->server_name_len; i++)
        if (s->server_name[i] == '\r' || s->server_name[i] == '\n') srv->server_name_len = 0;
    srv->port = -1;
    srv->date_sec = -1;
    sq_timer_init(loop, &srv->shutdown_timer, NULL, srv);
    sq_timer_init(loop, &srv->accept_timer, accept_resume, srv);
    return srv;
}

static void close_listeners(sq_http_server *srv)
{
    for (int i = 0; i < srv->nls; i++) {
        sq_io_stop(srv->loop, &srv->ls[i].io);
        close(srv->ls[i].io.fd);
    }
    srv->nls = 0;
    sq_timer_stop(&srv->accept_timer);
}

static void close_all(sq_http_server *srv, bool idle_only)
{
    sq_http_conn *c = srv->conns;
    while (c) {
        sq_http_conn *next = c->next;
        bool idle =
            !sq__http_req_active(c) && !c->coro && c->rlen == c->rpos && c->opos == c->out.len;
        if (!c->closed && (!idle_only || idle)) {
            sq__http_conn_close(c, SQ_ECLOSED);
            sq__http_conn_release(c);
        }
        c = next;
    }
}

static void shutdown_deadline(sq_loop *loop, sq_timer *t)
{
    sq_http_server *srv = t->data;
    close_all(srv, false);
}

sq_future *sq_http_server_shutdown(sq_http_server *srv, double deadline)
{
    if (srv->shutdown_fut) {
        /* already shutting down: the same future (the earlier caller's must resolve too),
         * with the new deadline */
        sq_timer_start(&srv->shutdown_timer, deadline > 0 ? deadline : 0, 0);
        return sq_future_retain(srv->shutdown_fut);
    }
    sq_future *f = sq_future_new(srv->loop);
    if (!f) return NULL;
    srv->closing = true;
    close_listeners(srv);
    srv->shutdown_fut = sq_future_retain(f);
    srv->shutdown_timer.cb = shutdown_deadline;
    close_all(srv, true);
    sq__http_shutdown_check(srv);
    if (srv->shutdown_fut) sq_timer_start(&srv->shutdown_timer, deadline > 0 ? deadline : 0, 0);
    return f;
}

void sq_http_server_free(sq_http_server *srv)
{
    if (!srv) return;
    srv->closing = true;
    close_listeners(srv);
    close_all(srv, false);
    /* Connections whose handlers are still suspended live on until those return. */
    for (sq_http_conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        c->srv = NULL;
        c->prev = c->next = NULL;
    }
    sq_timer_stop(&srv->shutdown_timer);
    if (srv->shutdown_fut) {
        sq_future_set_result(srv->shutdown_fut, NULL);
        sq_future_release(srv->shutdown_fut);
    }
    while (srv->nrbufs) free(srv->rbufs[--srv->nrbufs]);
    while (srv->nouts) sq__buf_free(&srv->outs[--srv->nouts]);
    while (srv->nreqs) sq__http_req_free(srv->reqs[--srv->nreqs]);
    free(srv);
}
