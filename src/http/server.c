/* The HTTP/1.1 server: listening sockets, connections driven straight from their fd
 * watcher (read into a per-connection buffer, one send per batch of responses), a pooled
 * coroutine per batch of requests, request bodies (Content-Length and chunked, whole or
 * streamed), keep-alive, pipelining, timeouts and graceful shutdown.
 *
 * Flow: the IO callback reads, parses every complete head in the buffer and resumes a
 * coroutine that runs the handler for each request in turn, appending each response to the
 * connection's output buffer.  When the coroutine ends (or suspends), the IO callback sends
 * the whole output with one send().  A handler that suspends stops the pipeline of its
 * connection until it finishes; the same coroutine then carries on with the next request.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_internal.h"

enum {
    T_NONE = SQ__T_NONE,
    T_HEADER = SQ__T_HEADER,
    T_IDLE = SQ__T_IDLE,
    T_BODY = SQ__T_BODY,
    T_LINGER = SQ__T_LINGER,
    T_WRITE = SQ__T_WRITE,
    T_HANDSHAKE = SQ__T_HANDSHAKE,
};

static void conn_io(sq_loop *loop, sq_io *io, unsigned events);
static void conn_timeout(sq_loop *loop, sq_timer *t);
static void conn_process(sq_http_conn *c);
static void conn_after(sq_http_conn *c);

/* --- timers ----------------------------------------------------------------------------------- */

/* How late an idle deadline may fire: 1/16 of its timeout, at most 1 s.  Connections (or
 * pipelines) that go idle within that time of each other are timed out together, and none
 * ever closes early. */
static double idle_slack(double timeout)
{
    return timeout / 16 < 1.0 ? timeout / 16 : 1.0;
}

/* One timer per connection, one purpose at a time; but while output is pending, its write
 * deadline stands: no header, body or idle deadline replaces it (a client that pipelines
 * but never reads would otherwise keep pushing it back forever).  The deadline that was
 * displaced is armed afresh by conn_after() once the output has drained. */
static void arm(sq_http_conn *c, unsigned kind, double seconds)
{
    if (c->tkind == T_WRITE && kind != T_WRITE && sq__http_out_pending(c) && !c->closed) return;
    if (seconds <= 0) {
        if (c->tkind != T_NONE) sq_timer_stop(&c->a->timer);
        c->tkind = T_NONE;
        return;
    }
    if (kind == T_IDLE) {
        /* (An idle keep-alive connection parks instead: see conn_park.)  Lazy, like
         * nginx's timers: a detached response that still flows, an HTTP/2 connection, or a
         * pipeline's coroutine that yielded would otherwise move the timer at every write.
         * It is armed a little late (by 1/16 of the timeout, at most 1 s) and kept as long
         * as its deadline is still at or after now + timeout: the connection then closes
         * between timeout and timeout + slack after its last activity, never early. */
        /* sq__sec_to_ns clamps like sq_timer_start: a huge timeout ("never") must not
         * overflow the conversion */
        uint64_t want = sq_loop_now_ns(c->srv->loop) + sq__sec_to_ns(seconds);
        if (c->tkind == T_IDLE && sq_timer_active(&c->a->timer) && c->a->timer.deadline >= want)
            return;
        c->tkind = T_IDLE;
        sq_timer_start(&c->a->timer, seconds + idle_slack(seconds), 0);
        return;
    }
    c->tkind = (unsigned char)kind;
    sq_timer_start(&c->a->timer, seconds, 0);
}

/* --- connections: lifetime ---------------------------------------------------------------------
 */

void sq__http_shutdown_check(sq_http_server *srv)
{
    if (srv->shutdown_fut && srv->nconns == 0 && !srv->upgraded && !srv->asked && !srv->upgrading &&
        !srv->closing_all) {
        sq_future *f = srv->shutdown_fut;
        srv->shutdown_fut = NULL;
        sq_timer_stop(&srv->shutdown_timer);
        sq_future_set_result(f, NULL);
        sq_future_release(f);
    }
}

void sq__http_req_free_buffers(sq__http_req *r)
{
    sq__inflate_free(r);
    free(r->headers_big);
    sq__buf_free(&r->hdrs);
    sq__buf_free(&r->body);
    sq__buf_free(&r->reason_buf);
}

void sq__http_req_free(sq__http_req *r)
{
    sq__http_req_free_buffers(r);
    free(r);
}

/* --- the active part and the idle list ---------------------------------------------------- */

/* An active part for c: from the pool (with the buffers and request object it kept), or
 * new. */
static sq__http_act *act_get(sq_http_server *srv, sq_http_conn *c)
{
    sq__http_act *a;
    if (srv->nacts) {
        a = srv->acts[--srv->nacts];
    } else {
        a = calloc(1, sizeof *a);
        if (!a) return NULL;
        sq_timer_init(srv->loop, &a->timer, conn_timeout, NULL);
    }
    a->timer.data = c;
    return a;
}

static void act_free(sq__http_act *a)
{
    free(a->rbuf);
    sq__buf_free(&a->out);
    if (a->req) sq__http_req_free(a->req);
    free(a);
}

/* Give c's active part back to the pool (or free it); c keeps none.  Its buffers (if of the
 * standard sizes) and its request object (if not in use) stay with it. */
SQ__HOT static void act_put(sq_http_server *srv, sq_http_conn *c)
{
    sq__http_act *a = c->a;
    sq_timer_stop(&a->timer);
    c->tkind = T_NONE;
    c->parsed = 0;
    if (c->h2_mode) {
        sq__h2_free(c);
    } else if (a->req) {
        if (a->req->flush_call) sq_call_cancel(a->req->flush_call);
        a->req->flush_call = NULL;
        if (a->req->active) { /* a request that never completed: its object is not reused */
            sq__http_req_free(a->req);
            a->req = NULL;
        }
    }
    if (a->opos != a->out.len || a->out.cap > SQ__HTTP_POOL_OUT_MAX) sq__buf_free(&a->out);
    a->out.len = a->opos = 0;
    if (a->rcap != SQ__HTTP_READ_MIN) {
        free(a->rbuf);
        a->rbuf = NULL;
        a->rcap = 0;
    }
    a->rlen = a->rpos = 0;
    a->coro = a->waiter = NULL;
    c->a = NULL;
    if (srv && srv->nacts < SQ__HTTP_POOL)
        srv->acts[srv->nacts++] = a;
    else
        act_free(a);
}

bool sq__http_pools_trim(sq_http_server *srv, size_t keep, uint64_t until_ns)
{
    while (srv->nacts > keep) act_free(srv->acts[--srv->nacts]);
    while (srv->nouts > keep) sq__buf_free(&srv->outs[--srv->nouts]);
    return sq__h2_pool_trim(srv, keep, until_ns);
}

static sq__http_parked *parked_list(sq_http_server *srv, const sq_http_conn *c)
{
    return c->fresh ? &srv->fresh : &srv->idle;
}

/* Take c out of the list it is in (srv->conns, or a parked list). */
static void conn_unlink(sq_http_server *srv, sq_http_conn *c)
{
    sq__http_parked *l = c->parked ? parked_list(srv, c) : NULL;
    if (c->prev)
        c->prev->next = c->next;
    else if (l)
        l->head = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (l)
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void conn_link_active(sq_http_server *srv, sq_http_conn *c)
{
    c->prev = NULL;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
}

static void conn_free(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (srv) conn_unlink(srv, c);
    if (c->a) act_put(srv, c);
    free(c);
}

/* A parked list's timer: armed for its first connection's deadline, late by idle_slack so
 * that connections parked within that time of each other are closed together.  A connection
 * thus closes between timeout and timeout + slack after it was parked, never early. */
static void parked_arm(sq__http_parked *l)
{
    double t = l->timeout;
    if (!l->head || t <= 0) return;
    double waited = (double)(sq_loop_now_ns(l->timer.loop) - l->head->since) / 1e9;
    double wait = t + idle_slack(t) - waited;
    sq_timer_start(&l->timer, wait > 0 ? wait : 0, 0);
}

static void parked_expire(sq_loop *loop, sq_timer *t)
{
    sq__http_parked *l = t->data;
    uint64_t tmo = sq__sec_to_ns(l->timeout), now = sq_loop_now_ns(loop);
    sq_http_conn *c;
    while ((c = l->head) && now - c->since >= tmo) {
        /* closing the last connection may resolve a shutdown future, whose callback may
         * free the server (and l with it): then c is left to us, and nothing else is */
        c->in_io = true;
        sq__http_conn_close(c, -ETIMEDOUT);
        c->in_io = false;
        bool gone = !c->srv;
        sq__http_conn_release(c); /* frees it: the next one is first */
        if (gone) return;
    }
    parked_arm(l);
}

void sq__http_parked_init(sq_http_server *srv, sq__http_parked *l, double timeout)
{
    sq_timer_init(srv->loop, &l->timer, parked_expire, l);
    l->timeout = timeout;
}

/* Append c, whose active part is gone, to a parked list. */
static void park_in(sq_http_server *srv, sq_http_conn *c, bool fresh)
{
    c->parked = true;
    c->fresh = fresh;
    c->since = sq_loop_now_ns(srv->loop);
    sq__http_parked *l = parked_list(srv, c);
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    if (!sq_timer_active(&l->timer)) parked_arm(l);
}

/* An idle connection (nothing buffered either way, no request, no coroutine) parks: its
 * active part goes back to the pool and it waits in the server's idle list, or in its fresh
 * list if it has not sent a request yet; during a graceful shutdown it closes instead.
 * Returns false when c is not idle in that sense. */
static bool conn_park(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    sq__http_act *a = c->a;
    if (c->h2_mode || c->closed || a->coro || a->waiter || a->holds || a->rlen != a->rpos ||
        a->opos != a->out.len || (a->req && a->req->active))
        return false;
    if (srv->closing) {
        sq__http_conn_close(c, 0);
        return true;
    }
    act_put(srv, c);
    conn_unlink(srv, c);
    park_in(srv, c, !c->served); /* no request yet (a TLS one after its handshake) */
    return true;
}

/* Bring a parked connection back (its socket has something for it).  The list's timer is
 * left as it is: when it fires for a connection that is no longer first, it re-arms.  A new
 * connection's header deadline still counts from its accept. */
static bool conn_unpark(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    conn_unlink(srv, c);
    c->parked = false;
    conn_link_active(srv, c);
    c->a = act_get(srv, c);
    if (!c->a) {
        sq__http_conn_close(c, -ENOMEM);
        return false;
    }
    if (c->fresh && srv->fresh.timeout > 0) {
        double left = srv->fresh.timeout - (double)(sq_loop_now_ns(srv->loop) - c->since) / 1e9;
        arm(c, T_HEADER, left > 1e-3 ? left : 1e-3);
    }
    c->fresh = false;
    return true;
}

/* Free a closed connection once nothing refers to it any more. */
SQ__HOT void sq__http_conn_release(sq_http_conn *c)
{
    if (!c->closed || c->in_io || (c->a && (c->a->coro || c->a->holds))) return;
    if (sq__http_req_active(c) && c->a->req->detached) return; /* sq_http_finish() frees it */
    if (c->h2_mode && sq__h2_busy(c)) return;                  /* streams' handlers still run */
    conn_free(c);
}

/* Tell the handler (once) that its client went away before the response was finished. */
static void notify_close(sq_http_conn *c)
{
    if (!sq__http_req_active(c) || (c->a->req->rflags & RESP_FINISHED) || !c->a->req->on_close)
        return;
    void (*cb)(sq_http_request *, void *) = c->a->req->on_close;
    c->a->req->on_close = NULL;
    cb(&c->a->req->pub, c->a->req->on_close_arg);
}

/* The peer's FIN, for the active request's on_close.  The callback may finish its request,
 * and the next one, read before the FIN, start and register its own: the FIN is news to it
 * too (bounded: a callback that only registers itself again is not called forever). */
static void notify_fin(sq_http_conn *c)
{
    for (int i = 0; i < 64 && !c->closed && sq__http_req_active(c) && c->a->req->on_close &&
                    !(c->a->req->rflags & RESP_FINISHED);
         i++)
        notify_close(c);
}

void sq__http_conn_close(sq_http_conn *c, int err)
{
    if (c->closed) return;
    c->closed = true;
    c->error = (int16_t)(err ? err : SQ_ECLOSED);
    sq_http_server *srv = c->srv;
    if (srv) {
        sq_io_stop(srv->loop, &c->io);
        srv->nconns--; /* before close(): a peer seeing EOF sees the count down too */
        sq__http_conn_uncounted(srv);
    }
    sq__tp_close(c->io.fd, c->tp, c->abort_close);
    c->tp = NULL;
    c->tkind = T_NONE;
    if (c->a) sq_timer_stop(&c->a->timer);
    if (c->h2_mode) {
        sq__h2_conn_closed(c);
    } else if (c->a && c->a->req && c->a->req->flush_call) {
        sq_call_cancel(c->a->req->flush_call);
        c->a->req->flush_call = NULL;
    }
    if (srv) {
        if (srv->accept_paused && !srv->closing && srv->nconns < srv->s.max_connections) {
            srv->accept_paused = false;
            sq__http_listeners_start(srv);
        }
    }
    /* the callback may finish a detached request: the caller releases the connection */
    bool was_io = c->in_io;
    c->in_io = true;
    notify_close(c);
    c->in_io = was_io;
    if (c->a && c->a->waiter) {
        sq_coro *w = c->a->waiter;
        c->a->waiter = NULL;
        sq_coro_wake(w);
    }
    /* (the callback may have freed the server, which forgets its connections: c->srv NULL) */
    if (c->srv) sq__http_shutdown_check(c->srv);
}

/* Keep the peer's address compactly (an IPv4-mapped IPv6 address as IPv4). */
static void store_peer(sq_http_conn *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        c->peer_family = AF_INET;
        memcpy(c->peer_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            c->peer_family = AF_INET;
            memcpy(c->peer_addr, &a->s6_addr[12], 4);
        } else {
            c->peer_family = AF_INET6;
            memcpy(c->peer_addr, a, 16);
        }
    } else {
        c->peer_family = AF_UNIX;
    }
}

/* Format the peer's address into dst (48 bytes): done per request, so IPv4 is done here
 * rather than by inet_ntop (which goes through sprintf). */
void sq__http_format_peer(const sq_http_conn *c, char *dst)
{
    if (c->peer_family == AF_INET) {
        char *p = dst;
        for (int i = 0; i < 4; i++) {
            unsigned v = c->peer_addr[i];
            if (i) *p++ = '.';
            if (v >= 100) *p++ = (char)('0' + v / 100);
            if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
        }
        *p = 0;
    } else if (c->peer_family == AF_INET6) {
        if (!inet_ntop(AF_INET6, c->peer_addr, dst, 48)) dst[0] = 0;
    } else {
        memcpy(dst, "unix", 5);
    }
}

SQ__HOT void sq__http_set_remote_ip(const sq_http_conn *c, sq__http_req *r)
{
    if (r->ip_of_family != c->peer_family || memcmp(r->ip_of, c->peer_addr, sizeof r->ip_of)) {
        sq__http_format_peer(c, r->remote_ip);
        r->ip_of_family = c->peer_family;
        memcpy(r->ip_of, c->peer_addr, sizeof r->ip_of);
    }
    r->pub.remote_ip = r->remote_ip;
}

/* A new plain connection starts parked in srv->fresh until its first bytes come; a TLS one
 * starts its handshake at once. */
void sq__http_conn_new(sq_http_server *srv, int fd, const struct sockaddr *peer)
{
    sq_http_conn *c = calloc(1, sizeof *c);
    if (!c) {
        sq__tp_close(fd, NULL, false);
        return;
    }
    c->srv = srv;
    sq_io_init(&c->io, fd, conn_io, c);
    store_peer(c, peer);
    if (srv->s.tls) {
        int err;
        c->a = act_get(srv, c);
        c->tp = c->a ? sq__tls_new(srv->s.tls, fd, NULL, &err) : NULL;
        if (!c->tp) {
            if (c->a)
                sq_log(SQ_LOG_ERROR, "https: cannot start TLS on a connection: %s",
                       sq_tls_last_error());
            sq__tp_close(fd, NULL, false);
            if (c->a) act_put(srv, c);
            free(c);
            return;
        }
        sq__tp_attach(c->tp, srv->loop, &c->io);
        sq__tls_set_h2(c->tp, !srv->s.no_http2);
        conn_link_active(srv, c);
    } else {
        park_in(srv, c, true);
    }
    srv->nconns++;
    sq__http_conn_counted(srv);
    if (sq_io_start(srv->loop, &c->io, SQ_READ) < 0) {
        sq__http_conn_close(c, -EBADF);
        sq__http_conn_release(c);
        return;
    }
    if (c->tp) arm(c, T_HANDSHAKE, srv->s.tls_handshake_timeout);
}

/* --- output ----------------------------------------------------------------------------------- */

static void update_io(sq_http_conn *c);
static double body_wait_limit(sq_http_conn *c);

/* Write what the output holds; then the interest follows the output, unless `update` is
 * false because the caller calls update_io itself right after (conn_io: conn_after does). */
SQ__HOT static void conn_write(sq_http_conn *c, bool update)
{
    if (c->closed) return;
    bool progress = false;
    while (c->a->opos < c->a->out.len) {
        if (c->srv) c->srv->writes++;
        ssize_t n = sq__tp_write(c->io.fd, c->tp, c->a->out.ptr + c->a->opos,
                                 c->a->out.len - c->a->opos, true);
        if (n > 0) {
            c->a->opos += (size_t)n;
            progress = true;
            continue;
        }
        if (n == -EAGAIN) break;
        sq__http_conn_close(c, n < 0 ? (int)n : -EPIPE);
        return;
    }
    if (c->a->opos == c->a->out.len) {
        c->a->opos = c->a->out.len = 0;
        if (c->a->out.cap > SQ__HTTP_BUF_KEEP) sq__buf_free(&c->a->out);
        if (c->tkind == T_WRITE) {
            c->tkind = T_NONE;
            sq_timer_stop(&c->a->timer);
            /* the write deadline displaced a handler's wait for body bytes: its own deadline
             * again (conn_after re-arms the others) */
            if (c->a->waiter && !c->waiter_writes && c->srv) {
                double w = body_wait_limit(c);
                if (w == 0) {
                    sq__http_conn_close(c, -ETIMEDOUT);
                    return;
                }
                arm(c, T_BODY, w);
            }
        }
    } else if (c->srv && (c->tkind != T_WRITE || progress)) {
        /* a client that stops reading is dropped after write_timeout without progress */
        arm(c, T_WRITE, c->srv->s.write_timeout);
    }
    if (progress && c->tkind == T_IDLE && c->srv && sq__http_req_active(c) && c->a->req->detached)
        arm(c, T_IDLE, c->srv->s.idle_timeout); /* a detached response still flowing */
    size_t hw = c->srv ? c->srv->s.write_high_water : SQ_HTTP_DEFAULT_WRITE_HIGH_WATER;
    if (sq__http_out_pending(c) > hw)
        c->rpaused = true;
    else if (c->rpaused && sq__http_out_pending(c) <= hw / 2)
        c->rpaused = false; /* conn_after() goes on with the requests already read */
    if (c->a->waiter && c->waiter_writes && sq__http_out_pending(c) <= hw / 2) {
        /* a flush waiting for the output to drain */
        sq_coro *w = c->a->waiter;
        c->a->waiter = NULL;
        sq_coro_wake(w);
    }
    if (update) update_io(c);
}

void sq__http_conn_write(sq_http_conn *c)
{
    conn_write(c, true);
}

static void flush_cb(void *arg)
{
    sq_http_conn *c = arg;
    if (c->a->req) c->a->req->flush_call = NULL;
    c->in_io = true;
    if (c->peer_eof) notify_fin(c); /* an on_close registered after the FIN was read */
    if (!c->closed) sq__http_conn_write(c);
    /* This write may be the one that completes the output (the socket made room after the
     * poll): then nothing else would close, linger or arm the idle timer. */
    conn_after(c);
    c->in_io = false;
    sq__http_conn_release(c);
}

/* --- input -------------------------------------------------------------------------------------
 */

static size_t head_cap(const sq_http_server *srv)
{
    size_t a = srv->s.max_header_size, b = srv->s.max_request_line;
    return (a > b ? a : b) + 64 + SQ__HTTP_READ_MIN;
}

/* After rbuf moved: move every slice of the active request with it.  The old address is
 * kept as an integer: after realloc() the old pointer may not be used, even to compare. */
static void rebase(sq_http_conn *c, uintptr_t old, size_t oldcap)
{
    if (!sq__http_req_active(c)) return;
    sq__http_req *r = c->a->req;
#define MV(p)                                                                                      \
    do {                                                                                           \
        uintptr_t u_ = (uintptr_t)(p);                                                             \
        if (u_ >= old && u_ < old + oldcap) (p) = c->a->rbuf + (u_ - old);                         \
    } while (0)
    MV(r->pub.method.ptr);
    MV(r->pub.uri.ptr);
    MV(r->pub.path.ptr);
    MV(r->pub.query.ptr);
    MV(r->pub.host.ptr);
    for (size_t i = 0; i < r->pub.nheaders; i++) {
        MV(r->headers[i].name);
        MV(r->headers[i].value);
    }
#undef MV
}

static int grow(sq_http_conn *c, size_t cap)
{
    if (cap <= c->a->rcap) return 0;
    uintptr_t old = (uintptr_t)c->a->rbuf;
    char *p = realloc(c->a->rbuf, cap);
    if (!p) return -ENOMEM;
    c->a->rbuf = p;
    if (old && (uintptr_t)p != old) rebase(c, old, c->a->rcap);
    c->a->rcap = cap;
    return 0;
}

/* Free space to read into, growing or compacting the buffer as the state allows; 0 means
 * do not read now. */
static size_t read_space(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (!sq__http_req_active(c)) {
        if (c->a->rpos && c->a->rpos == c->a->rlen) c->a->rpos = c->a->rlen = 0;
        if (c->a->rcap - c->a->rlen < SQ__HTTP_READ_MIN && c->a->rpos) {
            memmove(c->a->rbuf, c->a->rbuf + c->a->rpos, c->a->rlen - c->a->rpos);
            c->a->rlen -= c->a->rpos;
            c->a->rpos = 0;
        }
        if (c->a->rcap - c->a->rlen < SQ__HTTP_READ_MIN) {
            size_t cap = c->a->rcap ? c->a->rcap * 2 : SQ__HTTP_READ_MIN;
            size_t hc = head_cap(srv);
            if (cap > hc) cap = hc;
            if (cap < c->a->rlen + 1) cap = c->a->rlen + 1;
            if (c->discarding && cap < 65536) cap = 65536;
            grow(c, cap);
        }
        return c->a->rcap - c->a->rlen;
    }
    sq__http_req *r = c->a->req;
    if (r->has_body && !r->body_done) {
        size_t want = 0;
        if (r->want_whole) {
            if (r->pub.content_length >= 0)
                want = r->body_end + (size_t)r->body_left + SQ__HTTP_READ_MIN;
            else if (c->a->rcap - c->a->rlen < SQ__HTTP_READ_MIN)
                want = c->a->rcap * 2 < c->a->rlen + 65536 ? c->a->rlen + 65536 : c->a->rcap * 2;
        } else if (r->streaming || (c->a->waiter && !c->waiter_writes)) {
            want = r->hdr_end + SQ__HTTP_STREAM_BUF;
        }
        if (want > c->a->rcap && grow(c, want) < 0) return 0;
    }
    return c->a->rcap - c->a->rlen;
}

/* Take in the body bytes that arrived at [body_end, rlen): count Content-Length bytes,
 * decode chunked ones in place. */
SQ__HOT static void body_ingest(sq_http_conn *c)
{
    if (!c->a->req->has_body || c->a->req->body_done || c->a->req->body_error) return;
    if (c->a->rlen <= c->a->req->body_end) return;
    sq__http_req *r = c->a->req;
    if (!r->pub.chunked) {
        size_t n = c->a->rlen - c->a->req->body_end;
        if (n > c->a->req->body_left) n = (size_t)c->a->req->body_left;
        c->a->req->body_end += n;
        c->a->req->body_left -= n;
        c->a->req->body_total += n;
        if (c->a->req->body_left == 0) c->a->req->body_done = true;
        return;
    }
    size_t len = c->a->rlen - c->a->req->body_end;
    ssize_t rest = sq_http_chunked_decode(&c->a->req->dec, c->a->rbuf + c->a->req->body_end, &len);
    if (rest == -1) {
        c->a->req->body_error = -EINVAL;
        c->a->rlen = c->a->req->body_end;
        return;
    }
    c->a->req->body_end += len;
    c->a->req->body_total += len;
    if (rest == -2) {
        c->a->rlen = c->a->req->body_end;
    } else {
        c->a->rlen = c->a->req->body_end + (size_t)rest;
        c->a->req->body_done = true;
    }
    if (c->a->req->want_whole && c->a->req->body_total > c->srv->s.max_body_size)
        c->a->req->body_error = -E2BIG;
}

/* Drain the unread body of a finished request.  Keeps what follows it. */
static void discard_ingest(sq_http_conn *c)
{
    body_ingest(c);
    if (c->a->req->body_error) {
        c->close_after = true;
        c->discarding = false;
        c->a->rpos = c->a->rlen = 0;
        return;
    }
    if (c->a->req->body_total > SQ__HTTP_DISCARD_LIMIT) {
        /* Too much to drain for keep-alive: close, but through the lingering close (the
         * response may still be in flight, and closing with unread input sends a reset
         * that can destroy it). */
        c->close_after = true;
        c->discarding = false;
        c->lingering = true;
        c->a->rpos = c->a->rlen = 0;
        return;
    }
    /* drop [hdr_end, body_end): the decoded body */
    size_t keep = c->a->rlen - c->a->req->body_end;
    memmove(c->a->rbuf + c->a->req->hdr_end, c->a->rbuf + c->a->req->body_end, keep);
    c->a->rlen = c->a->req->hdr_end + keep;
    c->a->req->body_end = c->a->req->hdr_end;
    if (c->a->req->body_done) {
        c->discarding = false;
        c->a->req->has_body = false;
    }
}

/* --- requests
 * ------------------------------------------------------------------------------------- */

static bool icase_has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(s + i, needle, k)) return true;
    return false;
}

static sq_str last_item(sq_str v)
{
    const char *end = v.ptr + v.len;
    const char *p = end;
    while (p > v.ptr && p[-1] != ',') p--;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
    return (sq_str){p, (size_t)(end - p)};
}

void sq__http_apply_xheaders(sq_http_conn *c, sq__http_req *r)
{
    sq_str ip = sq_http_header_get(&r->pub, "X-Real-Ip");
    if (!ip.ptr) {
        ip = sq_http_header_get(&r->pub, "X-Forwarded-For");
        if (ip.ptr) ip = last_item(ip);
    }
    if (ip.ptr && ip.len && ip.len < sizeof r->remote_ip) {
        char tmp[48];
        unsigned char bin[16];
        memcpy(tmp, ip.ptr, ip.len);
        tmp[ip.len] = 0;
        if (inet_pton(AF_INET, tmp, bin) == 1 || inet_pton(AF_INET6, tmp, bin) == 1) {
            memcpy(r->remote_ip, tmp, ip.len + 1);
            r->ip_of_family = 0; /* no longer the peer's address */
            r->pub.remote_ip = r->remote_ip;
        }
    }
    sq_str proto = sq_http_header_get(&r->pub, "X-Scheme");
    if (!proto.ptr) proto = sq_http_header_get(&r->pub, "X-Forwarded-Proto");
    if (proto.ptr) {
        proto = last_item(proto);
        if (proto.len == 4 && !strncasecmp(proto.ptr, "http", 4)) r->pub.protocol = "http";
        if (proto.len == 5 && !strncasecmp(proto.ptr, "https", 5)) r->pub.protocol = "https";
    }
}

/* Parse the next request in the buffer.  1: a request is ready (c->a->req active); 0: more
 * bytes needed; -1: a malformed request (an error response is queued). */
SQ__HOT static int parse_next(sq_http_conn *c)
{
    sq_http_server *srv = c->srv;
    if (c->a->rpos == c->a->rlen) {
        c->a->rpos = c->a->rlen = c->parsed = 0;
        return 0;
    }
    if (!c->a->req) {
        c->a->req = calloc(1, sizeof *c->a->req);
        if (!c->a->req) {
            sq__http_conn_close(c, -ENOMEM);
            return -1;
        }
    }
    sq__http_req *r = c->a->req;
    sq_http_request_head h;
    sq_http_limits lim = {srv->s.max_request_line, srv->s.max_header_size};
    r->headers = r->headers_inline;
    int n = sq_http_parse_request(c->a->rbuf + c->a->rpos, c->a->rlen - c->a->rpos, c->parsed, &h,
                                  r->headers, SQ__HTTP_INLINE_HEADERS, &lim);
    if (n == -431 && SQ__HTTP_INLINE_HEADERS < SQ_HTTP_DEFAULT_MAX_HEADERS) {
        /* more headers than the request object holds (or a head too large: the full count
         * gives the final answer) */
        if (!r->headers_big)
            r->headers_big = malloc(SQ_HTTP_DEFAULT_MAX_HEADERS * sizeof *r->headers_big);
        if (r->headers_big) {
            r->headers = r->headers_big;
            n = sq_http_parse_request(c->a->rbuf + c->a->rpos, c->a->rlen - c->a->rpos, c->parsed,
                                      &h, r->headers, SQ_HTTP_DEFAULT_MAX_HEADERS, &lim);
        }
    }
    if (n == 0) {
        size_t seen = c->a->rlen - c->a->rpos;
        c->parsed = seen > UINT16_MAX ? UINT16_MAX : (uint16_t)seen;
        return 0;
    }
    c->parsed = 0;
    if (n < 0) {
        sq__http_error_response(c, -n);
        c->a->rpos = c->a->rlen = 0;
        c->lingering = true; /* the rest of the input is never read: drain it before close */
        return -1;
    }
    sq_http_request *q = &r->pub;
    q->method = (sq_str){h.method, h.method_len};
    q->uri = (sq_str){h.target, h.target_len};
    q->path = (sq_str){h.path, h.path_len};
    q->query = h.query ? (sq_str){h.query, h.query_len} : (sq_str){h.target + h.target_len, 0};
    q->host = (sq_str){h.host, h.host ? h.host_len : 0};
    q->version_minor = h.version_minor;
    q->version_major = 1;
    q->headers = r->headers;
    q->nheaders = h.nheaders;
    sq__http_set_remote_ip(c, r);
    q->protocol = c->tp ? "https" : "http";
    q->content_length = h.content_length;
    q->chunked = h.chunked;
    q->keep_alive = h.keep_alive;
    q->start_time = sq_loop_time(srv->loop);
    q->conn = c;
    q->server = srv;
    q->data = NULL;
    r->detached = false;
    r->is_head = h.method_len == 4 && !memcmp(h.method, "HEAD", 4);
    r->expect_continue = h.expect_continue;
    /* HTTP/1.0 has no 1xx, so no 101: its Upgrade is ignored (RFC 9110 7.8) */
    r->upgrade = h.upgrade && h.version_minor >= 1;
    r->continue_sent = false;
    r->body_read = false;
    r->streaming = false;
    r->accept_gzip = false;
    r->on_close = NULL;
    r->on_close_arg = NULL;
    sq__http_resp_reset(r);
    if (srv->s.gzip) {
        sq_str ae = sq_http_header_get(q, "Accept-Encoding");
        r->accept_gzip = ae.ptr && icase_has(ae.ptr, ae.len, "gzip");
    }
    if (srv->s.xheaders) sq__http_apply_xheaders(c, r);
    r->hdr_end = r->body_off = r->body_end = c->a->rpos + (size_t)n;
    r->body_total = 0;
    r->body_error = 0;
    r->body_logged = false;
    r->body_t0 = 0;
    r->want_whole = false;
    if (h.chunked) {
        r->has_body = true;
        r->body_done = false;
        sq_http_chunked_init(&r->dec);
    } else if (h.content_length > 0) {
        r->has_body = true;
        r->body_done = false;
        r->body_left = (uint64_t)h.content_length;
    } else {
        r->has_body = false;
        r->body_done = true;
        r->body_left = 0;
    }
    r->active = true;
    c->served = true;
    body_ingest(c);
    return 1;
}

SQ__HOT bool sq__http_want_close(sq_http_conn *c, sq__http_req *r)
{
    sq_http_server *srv = c->srv;
    if (c->close_after) return true;
    /* the client finished sending: this is its last answer, unless more requests it sent
     * before its end of stream are still waiting in the buffer */
    bool last = c->peer_eof && !(r->body_done && c->a->rlen > r->body_end);
    bool close = !r->pub.keep_alive || !srv || srv->s.no_keep_alive || srv->closing || last ||
                 (r->rflags & RESP_CONN_CLOSE) || r->body_error;
    if (!close && r->has_body && !r->body_done) {
        /* The rest of the body must be read past before the next request. */
        if (r->expect_continue && !r->continue_sent)
            close = true; /* the client waits for our go-ahead: never sends it */
        else if (!r->pub.chunked && r->body_left > SQ__HTTP_DISCARD_LIMIT)
            close = true;
    }
    if (close) c->close_after = true;
    return close;
}

/* The response is finished: advance the buffer to the next request. */
SQ__HOT static void request_complete(sq_http_conn *c)
{
    sq__http_req *r = c->a->req;
    if (!c->closed) {
        if (!(r->rflags & RESP_FINISHED)) sq__http_resp_finish(c, r);
        if (c->srv->s.access_log) sq__http_access_log(r);
    }
    r->rflags |= RESP_FINISHED;
    r->active = false;
    sq__inflate_free(r);
    if (c->closed) return;
    /* a 101 the handler did not follow with a detach: the client now speaks the protocol it
     * asked for, this connection has no more HTTP in it */
    if (r->status == 101) c->close_after = true;
    if (c->close_after) {
        /* unread input (the body, pipelined requests): drain it before closing, since
         * closing with unread bytes sends an RST that can destroy the response in flight */
        if (!r->body_done || c->a->rlen > r->body_end) c->lingering = true;
        c->a->rpos = c->a->rlen = 0;
        return;
    }
    if (r->body_done) {
        c->a->rpos = r->body_end;
        r->has_body = false;
    } else {
        /* unread body: everything buffered past the head is body; drain the rest */
        c->discarding = true;
        r->hdr_end = r->body_off = r->body_end = c->a->rpos = 0;
        c->a->rlen = 0;
        r->body_total = 0;
        r->want_whole = false;
    }
    if (c->a->rpos == c->a->rlen) c->a->rpos = c->a->rlen = 0;
    c->parsed = 0;
}

/* Pipelined requests answered in one go (or time this connection's pass has taken) before
 * the coroutine yields to the loop, so that one connection's deep pipeline cannot hold
 * everyone else up.  The time is the pass's own, from its 8th request on (the clock is read
 * every 8th request only): measured from the loop iteration's start instead, every
 * connection served late in a busy iteration (100 connections with 16 pipelined requests
 * each take longer than PASS_NS) split its batch into two writes for nobody's benefit. */
#define REQS_PER_PASS 64
#define PASS_NS       (2u * 1000 * 1000)

SQ__HOT static void *conn_task(void *arg)
{
    sq_http_conn *c = arg;
    uint64_t pass_t0 = 0; /* 0: not read yet in this pass */
    for (unsigned n = 1;; n++) {
        sq__http_req *r = c->a->req;
        c->srv->handler(&r->pub, c->srv->arg);
        /* The connection went while the handler ran, before it registered its on_close: the
         * callback is told now (it may finish the request: it completes below). */
        if (c->closed && r->detached) notify_close(c);
        /* detached: sq_http_finish() completes it, also on a closed connection (the
         * request object must outlive the handler until then) */
        if (r->detached && !(r->rflags & RESP_FINISHED)) {
            /* finished later by someone else; if never, the idle timeout ends it (pushed
             * back by every write that makes progress: a stream that still flows lives) */
            if (!c->closed && c->srv) arm(c, T_IDLE, c->srv->s.idle_timeout);
            break;
        }
        request_complete(c);
        if (c->closed || c->close_after || c->discarding) break;
        if (!c->in_batch && c->a->out.len > c->a->opos && !r->flush_call)
            r->flush_call = sq_call_later(c->srv->loop, 0, flush_cb, c);
        if (sq__http_out_pending(c) > c->srv->s.write_high_water) {
            /* backpressure: the next requests wait (unparsed, unread) for the output */
            c->rpaused = true;
            break;
        }
        if (c->a->rlen > c->a->rpos && (n & 7) == 0) { /* the clock every 8th request: cheap */
            uint64_t t = sq__mono_ns();
            /* a loop iteration begun since the clock started: a handler suspended in between,
             * and the time it waited was nobody's; this pass starts again */
            if (pass_t0 && sq_loop_now_ns(c->srv->loop) > pass_t0) pass_t0 = 0;
            if (n % REQS_PER_PASS == 0 || (pass_t0 && t - pass_t0 > PASS_NS)) {
                sq_yield(); /* the output so far goes out meanwhile (the IO callback writes) */
                if (c->closed || c->close_after) break;
                pass_t0 = 0; /* a new pass: its clock starts at its 8th request */
            } else if (!pass_t0) {
                pass_t0 = t;
            }
        }
        if (parse_next(c) <= 0) break;
    }
    c->a->coro = NULL;
    if (!c->in_batch && !c->in_io) {
        c->in_io = true;
        sq__http_conn_write(c);
        conn_after(c);
        c->in_io = false;
        sq__http_conn_release(c);
    }
    return NULL;
}

/* Start the coroutine for the requests waiting in the buffer (if it is not running). */
/* A plain connection that starts with the HTTP/2 client preface speaks h2c (prior
 * knowledge).  Returns true when the connection switched (or waits for the rest of the
 * preface). */
static bool h2c_preface(sq_http_conn *c)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (c->srv->s.no_http2 || c->tp || c->a->rpos != 0 || !c->a->rlen || c->a->rbuf[0] != 'P')
        return false;
    size_t n = c->a->rlen < 24 ? c->a->rlen : 24;
    if (memcmp(c->a->rbuf, preface, n) != 0) return false;
    if (c->a->rlen < 24) return true; /* the rest of the preface is on its way */
    char *buf = c->a->rbuf;
    size_t len = c->a->rlen;
    c->a->rbuf = NULL;
    c->a->rlen = c->a->rcap = c->a->rpos = c->parsed = 0;
    int e = sq__h2_start(c, buf, len);
    free(buf);
    if (e < 0) sq__http_conn_close(c, e);
    return true;
}

static void conn_process(sq_http_conn *c)
{
    if (c->closed || c->a->coro || sq__http_req_active(c) || c->discarding || c->close_after)
        return;
    if (sq__http_out_pending(c) > c->srv->s.write_high_water) c->rpaused = true;
    if (c->rpaused) return;
    if (SQ__UNLIKELY(c->a->rlen > c->a->rpos && c->a->rbuf[c->a->rpos] == 'P') && h2c_preface(c))
        return;
    int p = parse_next(c);
    if (p <= 0) return;
    sq_coro *co = sq_coro_create(c->srv->loop, conn_task, c);
    if (!co) {
        c->a->req->active = false;
        sq__http_error_response(c, 503);
        return;
    }
    sq_coro_set_name(co, "http request");
    c->a->coro = co;
    if (sq_in_coro()) {
        sq_coro_wake(co);
        return;
    }
    bool was = c->in_batch;
    c->in_batch = true;
    sq_coro_resume(co);
    c->in_batch = was;
}

void sq__http_arm(sq_http_conn *c, unsigned kind, double seconds)
{
    arm(c, kind, seconds);
}

void sq__http_update_io(sq_http_conn *c)
{
    update_io(c);
}

void sq__http_linger(sq_http_conn *c, double seconds)
{
    sq__tp_shutdown(c->io.fd, c->tp);
    c->lingering = true;
    c->discarding = false;
    c->rpaused = false;
    c->parsed = 0; /* counts the KiB drained from now on */
    arm(c, T_LINGER, seconds);
    update_io(c);
}

void sq__http_linger_drain(sq_http_conn *c)
{
    uint8_t buf[16 * 1024];
    size_t got = 0;
    int e = -EAGAIN;
    for (int i = 0; i < 8; i++) { /* at most this much per event: others get their turn */
        ssize_t n = sq__tp_read(c->io.fd, c->tp, buf, sizeof buf);
        if (n <= 0) {
            e = (int)n;
            break;
        }
        got += (size_t)n;
    }
    size_t kib = c->parsed + (got + 1023) / 1024;
    c->parsed = kib > UINT16_MAX ? UINT16_MAX : (uint16_t)kib;
    if (e == -EAGAIN && kib < SQ__HTTP_LINGER_MAX / 1024) return;
    if (e == 0) c->peer_eof = true;
    if (e == -EAGAIN) /* a peer that would send forever: dropped, as at the deadline */
        sq_log(SQ_LOG_DEBUG,
               "http: lingering: the peer sent %u KiB more after the response: closing",
               SQ__HTTP_LINGER_MAX / 1024);
    sq__http_conn_close(c, e == -EAGAIN ? 0 : e);
}

SQ__HOT static void update_io(sq_http_conn *c)
{
    if (c->closed) return;
    unsigned ev = 0;
    if (c->h2_mode) { /* HTTP/2: read unless the output is above the high-water mark */
        if (c->a->opos < c->a->out.len) ev |= SQ_WRITE;
        if (!c->peer_eof && !c->rpaused) ev |= SQ_READ;
        ev = sq__tp_poll(c->tp, ev);
        if (ev != c->io.events || !c->io.sq__registered) {
            if (ev)
                sq_io_start(c->srv->loop, &c->io, ev);
            else
                sq_io_stop(c->srv->loop, &c->io);
        }
        return;
    }
    if (c->parked) {
        if (!c->peer_eof) ev = SQ_READ;
    } else {
        sq__http_act *a = c->a;
        if (a->opos < a->out.len || c->sendfile_wait) ev |= SQ_WRITE;
        if (!c->peer_eof) {
            bool body_wait = a->waiter && !c->waiter_writes;
            if (c->lingering) {
                /* an error response (400 …) goes out first: until then nothing is read */
                if (a->opos == a->out.len) ev |= SQ_READ;
            } else if (body_wait ||
                       (!c->rpaused && (!sq__http_req_active(c) || a->rcap > a->rlen))) {
                ev |= SQ_READ;
            }
        }
    }
    ev = sq__tp_poll(c->tp, ev); /* TLS: a handshake, a record half written */
    if (ev != c->io.events || !c->io.sq__registered) {
        if (ev)
            sq_io_start(c->srv->loop, &c->io, ev);
        else
            sq_io_stop(c->srv->loop, &c->io);
    }
}

/* After a batch: close, linger, or wait for the next request. */
SQ__HOT static void conn_after(sq_http_conn *c)
{
    if (c->closed || c->h2_mode) return;
    sq_http_server *srv = c->srv;
    /* The output drained below the low-water mark: go on with the requests that were read
     * before reading paused.  No event would come for them (they are in our buffer, not
     * the socket's), so batch after batch until they are done, the output is above the
     * mark again, or a handler suspends. */
    while (!c->rpaused && !c->a->coro && !sq__http_req_active(c) && c->a->rlen > c->a->rpos &&
           !c->discarding && !c->close_after && !c->lingering) {
        size_t before = c->a->rpos;
        bool was = c->in_batch;
        c->in_batch = true;
        conn_process(c);
        c->in_batch = was;
        if (c->closed) return;
        if (c->a->coro) break;
        bool moved = c->a->rpos != before || c->a->rlen == 0;
        sq__http_conn_write(c);
        if (c->closed) return;
        if (!moved) break; /* an incomplete head: wait for its bytes */
    }
    if (c->peer_eof && !c->rpaused && !c->a->coro && !sq__http_req_active(c) &&
        c->a->rlen > c->a->rpos && !c->close_after && !c->lingering) {
        /* an incomplete head, and the client has finished sending: it will never complete */
        c->a->rpos = c->a->rlen = 0;
        c->close_after = true;
    }
    if (c->close_after && !sq__http_req_active(c) && c->a->opos == c->a->out.len) {
        if (!c->lingering && !c->discarding) {
            sq__http_conn_close(c, 0);
            return;
        }
        if (c->tkind != T_LINGER) sq__http_linger(c, SQ__HTTP_LINGER_SECONDS);
    } else if (!sq__http_req_active(c) && !c->close_after) {
        /* (not while a coroutine that yielded goes on with the pipeline: it is no slow head) */
        if ((c->a->rlen > c->a->rpos && !c->a->coro) || c->discarding) {
            if (c->tkind != T_HEADER) arm(c, T_HEADER, srv->s.header_timeout);
        } else if (c->a->opos == c->a->out.len && !conn_park(c)) {
            /* a coroutine that yielded between pipelined requests: it goes on soon */
            arm(c, T_IDLE, srv->s.idle_timeout);
        }
    }
    update_io(c);
}

SQ__HOT static void on_input(sq_http_conn *c)
{
    if (c->discarding) {
        discard_ingest(c);
        if (c->closed || c->discarding) return;
        c->a->rpos = c->a->req->hdr_end;
    }
    if (sq__http_req_active(c)) {
        body_ingest(c);
        if (c->a->waiter && !c->waiter_writes &&
            (c->a->req->body_done || c->a->req->body_error ||
             c->a->req->body_end > c->a->req->body_off)) {
            sq_coro *w = c->a->waiter;
            c->a->waiter = NULL;
            bool was = c->in_batch;
            c->in_batch = true;
            sq_coro_resume(w);
            c->in_batch = was;
        }
        return;
    }
    conn_process(c);
}

static void on_readable(sq_http_conn *c)
{
    bool got = false;
    for (int i = 0; i < 8 && !c->closed; i++) {
        if (c->lingering) { /* (maybe since the last input: an error response) */
            sq__http_linger_drain(c);
            return;
        }
        size_t space = read_space(c);
        if (!space) break;
        ssize_t n = sq__tp_read(c->io.fd, c->tp, c->a->rbuf + c->a->rlen, space);
        if (n > 0) {
            got = true;
            c->a->rlen += (size_t)n;
            if ((size_t)n < space) break;
            if (sq__http_req_active(c) || c->discarding) {
                on_input(c); /* make room: the body may be consumed or dropped */
                got = false;
            }
            continue;
        }
        if (n == 0) {
            c->peer_eof = true;
            break;
        }
        if (n == -EAGAIN) break;
        sq__http_conn_close(c, (int)n);
        return;
    }
    if (c->lingering) {
        if (c->peer_eof) sq__http_conn_close(c, 0);
        return;
    }
    if (got) on_input(c);
    if (c->closed || !c->peer_eof || c->h2_mode) return;
    /* The peer finished sending. */
    if (sq__http_req_active(c)) {
        if (c->a->req->has_body && !c->a->req->body_done && !c->a->req->body_error)
            c->a->req->body_error = SQ_ECLOSED;
        notify_fin(c);
        if (c->closed) return;
        if (c->a->waiter) {
            sq_coro *w = c->a->waiter;
            c->a->waiter = NULL;
            sq_coro_wake(w);
        }
        /* requests sent before the end of stream, after this one, are still answered
         * (sq__http_want_close makes the last of them close) */
        sq__http_req *r = c->a->req;
        if (!(r->body_done && c->a->rlen > r->body_end)) c->close_after = true;
    } else if (!c->a->coro) {
        if (c->a->rlen > c->a->rpos && !c->discarding) {
            /* requests read before the end of stream (pipelined, maybe paused by
             * backpressure): conn_after answers them, then the connection closes */
        } else if (c->a->opos == c->a->out.len) {
            sq__http_conn_close(c, 0);
        } else {
            c->close_after = true;
        }
    }
}

/* A TLS handshake step.  Returns true when the connection may go on to HTTP. */
static bool conn_handshake(sq_http_conn *c)
{
    int e = sq__tp_handshake(c->tp);
    if (e == -EAGAIN) return false;
    if (e == 0) {
        size_t n;
        const char *alpn = sq__tls_alpn(c->tp, &n);
        if (alpn && n == 2 && !memcmp(alpn, "h2", 2) && !c->srv->s.no_http2) {
            e = sq__h2_start(c, NULL, 0);
            if (e < 0) sq__http_conn_close(c, e);
            return !c->closed;
        }
        arm(c, T_HEADER, c->srv->s.header_timeout);
        return true;
    }
    if (e == -EPROTO) {
        /* plain HTTP on the TLS port: answer it in clear text, as nginx does */
        sq__tp_free(c->tp, true);
        c->tp = NULL;
        sq__http_error_text(c, 400, "The plain HTTP request was sent to HTTPS port\n");
        c->lingering = true;
        sq__http_conn_write(c);
        return false;
    }
    /* a failed handshake concerns this client only: debug level, once */
    char ip[48];
    sq__http_format_peer(c, ip);
    sq_log(SQ_LOG_DEBUG, "https: TLS handshake with %s failed: %s", ip,
           e == SQ_ETLS ? sq_tls_last_error() : sq_strerror(e));
    sq__http_conn_close(c, e);
    return false;
}

SQ__HOT static void conn_io(sq_loop *loop, sq_io *io, unsigned events)
{
    sq_http_conn *c = io->data;
    if (c->parked && !conn_unpark(c)) {
        sq__http_conn_release(c);
        return;
    }
    c->in_io = true;
    if (SQ__UNLIKELY(c->tp != NULL)) {
        events = sq__tp_ready(c->tp, events);
        if (sq__tp_handshaking(c->tp) && !conn_handshake(c)) {
            /* still handshaking: only the handshake's events and deadline (conn_after
             * would park it); plain HTTP answered: linger as after any 400 */
            if (!c->closed) c->tp ? update_io(c) : conn_after(c);
            c->in_io = false;
            sq__http_conn_release(c);
            return;
        }
    }
    if (c->h2_mode) {
        sq__h2_io(c, events);
        c->in_io = false;
        sq__http_conn_release(c);
        return;
    }
    if (events & SQ_WRITE) sq__http_conn_write(c);
    if (!c->closed && (events & (SQ_READ | SQ_HUP | SQ_ERROR))) {
        bool was = c->in_batch;
        c->in_batch = true;
        on_readable(c);
        c->in_batch = was;
    }
    /* (conn_after ends in update_io, except for a connection that switched to HTTP/2) */
    if (!c->closed && c->a->opos < c->a->out.len) conn_write(c, c->h2_mode);
    conn_after(c);
    c->in_io = false;
    sq__http_conn_release(c);
}

static void conn_timeout(sq_loop *loop, sq_timer *t)
{
    sq_http_conn *c = t->data;
    unsigned kind = c->tkind;
    c->tkind = T_NONE;
    c->in_io = true;
    if (c->h2_mode && kind != T_WRITE) {
        sq__h2_timeout(c, kind);
        kind = T_NONE;
    }
    switch (kind) {
    case T_HEADER:
        if (sq__http_req_active(c)) break;
        if (c->a->rlen > c->a->rpos) {
            sq__http_error_response(c, 408);
            c->lingering = true;
            sq__http_conn_write(c);
            conn_after(c);
        } else {
            sq__http_conn_close(c, -ETIMEDOUT);
        }
        break;
    case T_HANDSHAKE:
        sq__http_conn_close(c, -ETIMEDOUT); /* a TLS handshake that never completed */
        break;
    case T_IDLE:
        if (!sq__http_req_active(c) && !c->a->coro) {
            sq__http_conn_close(c, -ETIMEDOUT);
        } else if (sq__http_req_active(c) && c->a->req->detached && !c->a->coro &&
                   !(c->a->req->rflags & RESP_FINISHED)) {
            /* a detached request nobody finished: the connection goes (its on_close runs;
             * a late sq_http_finish() is still safe and frees it) */
            sq_log(SQ_LOG_WARNING,
                   "http: a detached request (%.*s %.*s) was not finished within "
                   "the idle timeout: closing its connection",
                   (int)c->a->req->pub.method.len, c->a->req->pub.method.ptr,
                   (int)c->a->req->pub.uri.len, c->a->req->pub.uri.ptr);
            sq__http_conn_close(c, -ETIMEDOUT);
        }
        break;
    case T_BODY:
        if (c->a->waiter && !c->waiter_writes) sq__http_conn_close(c, -ETIMEDOUT);
        break;
    case T_WRITE:
        c->abort_close = true; /* the kernel drops what the client never took */
        sq__http_conn_close(c, -ETIMEDOUT);
        break;
    case T_LINGER:
        sq__http_conn_close(c, 0);
        break;
    }
    c->in_io = false;
    sq__http_conn_release(c);
}

/* --- request API ---------------------------------------------------------------------------------
 */

SQ__HOT sq_str sq_http_header_get(const sq_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const sq_http_header *h = &req->headers[i];
        if (h->name_len == n && !strncasecmp(h->name, name, n))
            return (sq_str){h->value, h->value_len};
    }
    return (sq_str){NULL, 0};
}

static void send_continue(sq_http_conn *c, sq__http_req *r)
{
    if (!r->expect_continue || r->continue_sent || (r->rflags & RESP_HEAD_SENT)) return;
    r->continue_sent = true;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    sq__http_out_acquire(c);
    sq__buf_append(&c->a->out, cont, sizeof cont - 1);
    sq__http_conn_write(c);
}

/* How long the next wait for body bytes may last: body_timeout, cut to what is left of the
 * whole body's deadline (body_timeout + received / body_min_rate after the head); 0 when
 * that deadline has passed, negative for no limit. */
double sq__http_body_wait(const sq_http_settings *s, sq__http_req *r, double now)
{
    double wait = s->body_timeout;
    if (s->body_timeout > 0 && s->body_min_rate > 0) {
        /* from the first wait for body bytes: the handler's own work before it reads, or the
         * client's wait for 100 Continue, does not count against the client */
        if (r->body_t0 == 0) r->body_t0 = now;
        double left = r->body_t0 + s->body_timeout + (double)r->body_total / s->body_min_rate - now;
        if (left <= 0) return 0;
        if (left < wait) wait = left;
    }
    return wait;
}

static double body_wait_limit(sq_http_conn *c)
{
    return sq__http_body_wait(&c->srv->s, c->a->req, sq_loop_time(c->srv->loop));
}

/* Suspend the handler until the IO callback has body bytes (or an error) for it. */
static int wait_body(sq_http_conn *c)
{
    if (c->closed) return c->error;
    if (c->peer_eof) return SQ_ECLOSED;
    if (!sq_in_coro()) return SQ_ENOTCORO;
    double wait = body_wait_limit(c);
    if (wait == 0) {
        sq__http_conn_close(c, -ETIMEDOUT);
        return -ETIMEDOUT;
    }
    c->a->waiter = sq_coro_self();
    c->waiter_writes = false;
    arm(c, T_BODY, wait);
    update_io(c);
    sq__http_conn_suspend(c);
    if (c->tkind == T_BODY) arm(c, T_NONE, 0);
    if (c->closed) return c->error == SQ_ECLOSED || !c->error ? SQ_ECLOSED : c->error;
    return 0;
}

static ssize_t body_fail(sq_http_conn *c, sq__http_req *r, int err)
{
    if (err == -E2BIG || err == -EINVAL) {
        int code = err == -E2BIG ? 413 : 400;
        if (!(r->rflags & (RESP_HEAD_SENT | RESP_FINISHED))) {
            sq__http_resp_reset(r);
            r->status = code;
            const char *reason = sq_http_reason(code);
            sq_http_set_header(&r->pub, "Content-Type", "text/plain; charset=UTF-8");
            char msg[64];
            int n = snprintf(msg, sizeof msg, "%d %s\n", code, reason);
            sq_http_write(&r->pub, msg, (size_t)n);
        }
        c->close_after = true;
        sq_http_finish(&r->pub);
        return err;
    }
    /* The client left, or sent too slowly: there is nobody to answer.  The request is over
     * (the connection closes without a response, never a 200 for half a body); the access
     * log says what happened. */
    if (!r->body_logged && c->srv && c->srv->s.access_log) {
        r->body_logged = true;
        double ms = ((double)sq__mono_ns() / 1e9 - r->pub.start_time) * 1000.0;
        char of[32] = "";
        if (r->pub.content_length >= 0)
            snprintf(of, sizeof of, " of %lld", (long long)r->pub.content_length);
        sq_log(SQ_LOG_WARNING, "%d %.*s %.*s (%s) %.2fms: %s (%llu%s body bytes received)",
               err == -ETIMEDOUT ? 408 : 400, (int)r->pub.method.len, r->pub.method.ptr,
               (int)r->pub.uri.len, r->pub.uri.ptr, r->pub.remote_ip, ms,
               err == -ETIMEDOUT ? "the body came too slowly: connection closed"
                                 : "the client left before the body was complete",
               (unsigned long long)r->body_total, of);
    }
    sq__http_conn_close(c, err);
    return err;
}

static ssize_t read_body_raw(sq__http_req *r, const char **data)
{
    if (r->h2) return sq__h2_read_body(r, data);
    sq_http_request *req = &r->pub;
    sq_http_conn *c = req->conn;
    *data = "";
    if (r->body_read) {
        *data = c->a->rbuf + r->hdr_end;
        return (ssize_t)(r->body_end - r->hdr_end);
    }
    if (!r->has_body) {
        r->body_read = true;
        return 0;
    }
    if (r->streaming) return -EINVAL;
    if (c->closed) return c->error;
    if (req->content_length > (int64_t)c->srv->s.max_body_size ||
        (r->body_total > c->srv->s.max_body_size))
        return body_fail(c, r, -E2BIG);
    send_continue(c, r);
    r->want_whole = true;
    while (!r->body_done && !r->body_error) {
        int e = wait_body(c);
        if (e < 0) {
            r->want_whole = false;
            if (e == SQ_ENOTCORO) return e; /* the caller's mistake, not the client's */
            return body_fail(c, r, e);
        }
    }
    r->want_whole = false;
    if (r->body_error) return body_fail(c, r, r->body_error);
    r->body_read = true;
    *data = c->a->rbuf + r->hdr_end;
    return (ssize_t)(r->body_end - r->hdr_end);
}

/* The end of a public call that may have waited on the connection (sq__http_conn_suspend):
 * a failure on a closed connection whose request was finished meanwhile by someone else
 * (its on_close callback) frees it now that nobody waits on it. */
static long wait_end(sq_http_conn *c, long rc)
{
    if (rc < 0 && c && c->closed) sq__http_conn_release(c);
    return rc;
}

ssize_t sq_http_read_body(sq_http_request *req, const char **data)
{
    sq__http_req *r = (sq__http_req *)req;
    sq_http_conn *c = r->h2 ? NULL : req->conn;
    if (!sq__inflate_wanted(r)) return wait_end(c, read_body_raw(r, data));
    const char *raw = "";
    ssize_t n = read_body_raw(r, &raw);
    *data = "";
    return wait_end(c, sq__inflate_whole(r, raw, n, data));
}

static ssize_t read_chunk_raw(sq__http_req *r, const char **data)
{
    if (r->h2) return sq__h2_read_body_chunk(r, data);
    sq_http_request *req = &r->pub;
    sq_http_conn *c = req->conn;
    *data = "";
    if (!r->has_body || r->body_read) return 0;
    r->streaming = true;
    if (c->closed) return c->error;
    send_continue(c, r);
    for (;;) {
        if (r->body_off < r->body_end) {
            *data = c->a->rbuf + r->body_off;
            size_t n = r->body_end - r->body_off;
            r->body_off = r->body_end;
            return (ssize_t)n;
        }
        if (r->body_error) {
            if (r->body_error == -E2BIG)
                r->body_error = 0; /* no limit when streaming */
            else
                return body_fail(c, r, r->body_error);
        }
        if (r->body_done) return 0;
        if (r->body_end == c->a->rlen) c->a->rlen = r->body_off = r->body_end = r->hdr_end;
        int e = wait_body(c);
        if (e < 0) return e == SQ_ENOTCORO ? e : body_fail(c, r, e);
    }
}

ssize_t sq_http_read_body_chunk(sq_http_request *req, const char **data)
{
    sq__http_req *r = (sq__http_req *)req;
    sq_http_conn *c = r->h2 ? NULL : req->conn;
    if (!sq__inflate_wanted(r)) return wait_end(c, read_chunk_raw(r, data));
    return wait_end(c, sq__inflate_chunk(r, read_chunk_raw, data));
}

int sq_http_flush(sq_http_request *req)
{
    sq__http_req *r = (sq__http_req *)req;
    if (r->h2) return sq__h2_flush(r);
    sq_http_conn *c = req->conn;
    if (c->closed) return c->error;
    if (r->rflags & RESP_FINISHED) return -EALREADY;
    int e = sq__http_resp_flush(c, r);
    if (e < 0) return e;
    sq__http_conn_write(c);
    while (!c->closed && sq__http_out_pending(c) > c->srv->s.write_high_water && sq_in_coro()) {
        c->a->waiter = sq_coro_self();
        c->waiter_writes = true;
        update_io(c);
        sq__http_conn_suspend(c);
    }
    return (int)wait_end(c, c->closed ? c->error : 0);
}

/* Write conn->out completely, suspending the handler while the socket is full. */
static int drain_out(sq_http_conn *c)
{
    sq__http_conn_write(c);
    while (!c->closed && c->a->opos < c->a->out.len) {
        sq_coro *self = sq_coro_self();
        c->a->waiter = self;
        c->waiter_writes = true;
        update_io(c);
        sq__http_conn_suspend(c);
        if (c->a->waiter == self) c->a->waiter = NULL;
    }
    return c->closed ? c->error : 0;
}

/* An error in the middle of a body: the response can only be cut short. */
static int sendfile_fail(sq_http_conn *c, int err)
{
    if (err == -EPIPE || err == -ECONNRESET) err = SQ_ECLOSED;
    sq__http_conn_close(c, err);
    return err;
}

#define SENDFILE_FALLBACK_CHUNK (64u * 1024)

static int sendfile_h1(sq__http_req *r, int fd, off_t offset, size_t len);

int sq_http_sendfile(sq_http_request *req, int fd, off_t offset, size_t len)
{
    sq__http_req *r = (sq__http_req *)req;
    if (r->h2) return sq__h2_sendfile(r, fd, offset, len);
    return (int)wait_end(req->conn, sendfile_h1(r, fd, offset, len));
}

static int sendfile_h1(sq__http_req *r, int fd, off_t offset, size_t len)
{
    sq_http_request *req = &r->pub;
    sq_http_conn *c = req->conn;
    if (c->closed) return c->error;
    if (r->rflags & (RESP_FINISHED | RESP_BODY_DONE)) return -EALREADY;
    if (!sq_in_coro()) return SQ_ENOTCORO;
    if (fd < 0 || offset < 0) return -EINVAL;
    bool no_body = sq__http_resp_no_body(r);
    bool chunked = false;
    int e;
    if (!(r->rflags & RESP_HEAD_SENT)) {
        e = sq__http_resp_head_len(c, r, len); /* Content-Length: buffered + len */
    } else {
        e = sq__http_resp_flush(c, r); /* what was buffered since the last flush */
        chunked = (r->rflags & RESP_CHUNKED) && !no_body;
        if (e == 0 && chunked && len) e = sq__http_put_chunk_header(c, len);
    }
    if (e < 0) return e;
    e = drain_out(c);
    if (e < 0) return e;
    if (no_body || !len) return 0;

    off_t off = offset;
    size_t left = len;
    bool fallback = false, sent = false;
    while (left > 0) {
        if (c->closed) return c->error;
        if (fallback) {
            /* a file sendfile() cannot read: through the output buffer, a piece at a time */
            size_t want = left < SENDFILE_FALLBACK_CHUNK ? left : SENDFILE_FALLBACK_CHUNK;
            sq__http_out_acquire(c);
            if (sq__buf_reserve(&c->a->out, want) < 0) return sendfile_fail(c, -ENOMEM);
            ssize_t n = pread(fd, c->a->out.ptr + c->a->out.len, want, off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return sendfile_fail(c, -errno);
            if (n == 0) return sendfile_fail(c, -EIO); /* the file is shorter than len */
            c->a->out.len += (size_t)n;
            off += n;
            left -= (size_t)n;
            e = drain_out(c);
            if (e < 0) return e;
            continue;
        }
        if (c->srv) c->srv->writes++;
        ssize_t n = sq__tp_sendfile(c->io.fd, c->tp, fd, &off, left);
        if (n > 0) {
            left -= (size_t)n;
            sent = true;
            continue;
        }
        if (n == 0) return sendfile_fail(c, -EIO); /* the file is shorter than len */
        if (n == -EAGAIN) {
            /* wait for the socket like a flush above the high-water mark; a client that
             * takes nothing for body_timeout is dropped (T_WRITE closes the connection) */
            sq_coro *self = sq_coro_self();
            c->a->waiter = self;
            c->waiter_writes = true;
            c->sendfile_wait = true;
            arm(c, T_WRITE, c->srv->s.write_timeout);
            update_io(c);
            sq__http_conn_suspend(c);
            c->sendfile_wait = false;
            if (c->a->waiter == self) c->a->waiter = NULL;
            continue;
        }
        if (n == -EOPNOTSUPP && !sent) { /* this file or this transport: copy it */
            fallback = true;
            continue;
        }
        return sendfile_fail(c, (int)n);
    }
    if (c->tkind == T_WRITE) arm(c, T_NONE, 0);
    update_io(c);
    r->body_sent += len;
    if (chunked && sq__buf_append(&c->a->out, "\r\n", 2) < 0) return sendfile_fail(c, -ENOMEM);
    return 0;
}

SQ__HOT int sq_http_finish(sq_http_request *req)
{
    sq__http_req *r = (sq__http_req *)req;
    sq_http_conn *c = req->conn;
    if (r->rflags & RESP_FINISHED) return 0;
    if (r->h2) {
        int e = sq__h2_finish(r);
        if (r->detached) sq__h2_detached_finished(r); /* after its handler returned */
        return e;
    }
    int e = 0;
    if (!c->closed) e = sq__http_resp_finish(c, r);
    r->rflags |= RESP_FINISHED;
    if (r->detached && r->active && !c->a->coro) {
        /* finishing a detached request after its handler returned; maybe from inside one of
         * our callbacks (on_connection_close), which then frees the connection itself */
        bool was_io = c->in_io;
        c->in_io = true;
        request_complete(c);
        if (!c->closed) {
            if (c->close_after) c->a->rpos = c->a->rlen;
            conn_process(c);
            if (!c->a->coro || !sq_in_coro()) sq__http_conn_write(c);
            /* Inside the IO callback (a body reader it resumed finished the request), that
             * callback ends with conn_after itself; here it could park the connection and
             * take c->a away from under it. */
            if (was_io)
                update_io(c);
            else
                conn_after(c);
        }
        c->in_io = was_io;
        sq__http_conn_release(c);
    } else if (!c->closed && !c->in_batch && c->a->out.len > c->a->opos && !r->flush_call) {
        /* the handler may run on for long: send the response now, not when it returns */
        r->flush_call = sq_call_later(c->srv->loop, 0, flush_cb, c);
    }
    return e;
}

void sq_http_detach(sq_http_request *req)
{
    ((sq__http_req *)req)->detached = true;
}

void sq_http_on_connection_close(sq_http_request *req, void (*cb)(sq_http_request *, void *),
                                 void *arg)
{
    sq__http_req *r = (sq__http_req *)req;
    r->on_close = cb;
    r->on_close_arg = arg;
    /* Registered after the FIN was read (a handler that suspended first): told on the next
     * pass, through the request's flush call (cancelled if the connection goes first). */
    sq_http_conn *c = req->conn;
    if (cb && !r->h2 && c && c->peer_eof && !c->closed && c->srv && r->active &&
        !(r->rflags & RESP_FINISHED) && !r->flush_call)
        r->flush_call = sq_call_later(c->srv->loop, 0, flush_cb, c);
}
