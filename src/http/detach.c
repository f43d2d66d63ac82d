/* sq_http_detach_connection: hand a connection's socket to another protocol (WebSocket
 * upgrades), Tornado's HTTP1Connection.detach().
 *
 * The queued response (the 101 head) is finished and written first, the handler coroutine
 * waiting while the socket is full.  Then the connection is marked closed without closing
 * its fd: from the server's point of view it is gone (not watched, not counted, no
 * on_connection_close), and its memory is freed by the usual path once the handler
 * returns (sq__http_conn_release). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

/* Write conn->out completely, suspending the calling coroutine while the socket is full. */
static int detach_drain(sq_http_conn *c)
{
    sq__http_conn_write(c);
    while (!c->closed && c->a->opos < c->a->out.len) {
        sq_coro *self = sq_coro_self();
        c->a->waiter = self; /* woken by sq__http_conn_write as the output drains */
        c->waiter_writes = true;
        sq__http_conn_suspend(c);
        if (c->a->waiter == self) c->a->waiter = NULL;
        sq__http_conn_write(c);
    }
    return c->closed ? (c->error ? c->error : SQ_ECLOSED) : 0;
}

/* Forget the fd: the server stops watching and counting it, and treats the connection as
 * closed (its memory goes when the handler returns). */
static void detach_fd(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (srv) sq_io_stop(srv->loop, &c->io);
    c->io.fd = -1;
    c->closed = true;
    c->error = SQ_ECLOSED;
    c->a->waiter = NULL;
    c->a->req->on_close = NULL;
    sq_timer_stop(&c->a->timer);
    if (c->a->req->flush_call) {
        sq_call_cancel(c->a->req->flush_call);
        c->a->req->flush_call = NULL;
    }
    if (!srv) return;
    srv->nconns--;
    sq__http_conn_uncounted(srv); /* counted again as upgraded (sq__http_upgraded_add) */
    if (srv->accept_paused && !srv->closing && srv->nconns < srv->s.max_connections) {
        srv->accept_paused = false;
        sq__http_listeners_start(srv);
    }
    sq__http_shutdown_check(srv);
}

int sq_http_detach_connection(sq_http_request *req, int *fd, char **extra, size_t *extra_len)
{
    *fd = -1;
    *extra = NULL;
    *extra_len = 0;
    /* a raw fd is no use on a TLS connection (its bytes go through the cipher) nor on an
     * HTTP/2 stream */
    if (req->conn->tp || ((sq__http_req *)req)->h2) return -EOPNOTSUPP;
    sq__tp *tp;
    return sq__http_detach(req, fd, &tp, extra, extra_len);
}

int sq_http_detach_stream(sq_http_request *req, sq_stream **out)
{
    *out = NULL;
    int fd;
    sq__tp *tp;
    char *extra;
    size_t extra_len;
    sq_loop *loop = req->server ? req->server->loop : sq_coro_loop(sq_coro_self());
    int e = sq__http_detach(req, &fd, &tp, &extra, &extra_len);
    if (e < 0) return e;
    *out = sq__stream_adopt(loop, fd, tp, extra, extra_len);
    free(extra);
    if (!*out) {
        sq__tp_close(fd, tp, false); /* the response is out: the client sees the close */
        return -ENOMEM;
    }
    return 0;
}

int sq__http_detach(sq_http_request *req, int *fd, sq__tp **tp, char **extra, size_t *extra_len)
{
    sq__http_req *r = (sq__http_req *)req;
    sq_http_conn *c = req->conn;
    *fd = -1;
    *tp = NULL;
    *extra = NULL;
    *extra_len = 0;
    if (r->h2) return -EOPNOTSUPP; /* a stream of an HTTP/2 connection (RFC 8441 is not here) */
    if (c->closed) return c->error ? c->error : SQ_ECLOSED;
    if (!r->active || r->detached || (r->rflags & RESP_FINISHED)) return -EALREADY;
    if (!sq_in_coro()) return SQ_ENOTCORO;
    if (c->a->req->has_body && !c->a->req->body_done) return -EINVAL;
    int e = sq__http_resp_finish(c, r);
    if (e < 0) return e;
    e = detach_drain(c);
    if (e < 0) return e;
    /* what the client sent after this request (the first frames of the new protocol) */
    size_t from = c->a->req->has_body ? c->a->req->body_end : c->a->req->hdr_end;
    if (c->a->rlen > from) {
        char *p = malloc(c->a->rlen - from);
        if (!p) {
            /* the 101 is out: the connection cannot go back to HTTP */
            sq__http_conn_close(c, -ENOMEM);
            return -ENOMEM;
        }
        memcpy(p, c->a->rbuf + from, c->a->rlen - from);
        *extra = p;
        *extra_len = c->a->rlen - from;
    }
    if (c->srv && c->srv->s.access_log) /* the server logs requests it completes itself */
        sq_log(SQ_LOG_INFO, "%d %.*s %.*s (%s) %.2fms", r->status, (int)req->method.len,
               req->method.ptr, (int)req->uri.len, req->uri.ptr, req->remote_ip,
               ((double)sq__mono_ns() / 1e9 - req->start_time) * 1000.0);
    c->a->rpos = c->a->rlen = c->parsed = 0;
    *fd = c->io.fd;
    *tp = c->tp;
    sq__tp_attach(c->tp, NULL, NULL);
    c->tp = NULL;
    detach_fd(c);
    return 0;
}
