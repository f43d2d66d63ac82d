/* Listening sockets (accept in batches, paused at max_connections) and the server's
 * lifetime: creation, graceful shutdown, free. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#endif
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_internal.h"

/* --- listening
 * ------------------------------------------------------------------------------------ */

/* Accepting is the stream layer's (sq_tcp_server: batches, the EMFILE pause): one accept
 * loop in the project.  What is HTTP's is the connection limit, through pause/resume. */

void sq__http_listeners_start(sq_http_server *srv)
{
    for (int i = 0; i < srv->ntcp; i++) sq_tcp_server_resume(srv->tcp[i]);
}

static void listeners_stop(sq_http_server *srv)
{
    for (int i = 0; i < srv->ntcp; i++) sq_tcp_server_pause(srv->tcp[i]);
}

static void on_accept(sq_tcp_server *t, int fd, const struct sockaddr *peer, socklen_t plen,
                      void *arg)
{
    sq_http_server *srv = arg;
    sq__http_conn_new(srv, fd, peer);
    if (srv->nconns >= srv->s.max_connections && !srv->accept_paused) {
        srv->accept_paused = true; /* resumed as connections close (sq__http_conn_close) */
        listeners_stop(srv);
    }
}

int sq_http_server_listen(sq_http_server *srv, const char *host, int port)
{
    if (port < 0 || port > 65535) return -EINVAL;
    if (srv->closing) return SQ_ECLOSED;
    /* The sockets themselves are the stream layer's (sq_tcp_listen binds the same way); an
     * explicit IPv6 address takes IPv6 only, as in nginx and Tornado. */
    sq_tcp_options o = {.reuseport = srv->s.reuseport,
                        .ipv6_only = host && *host,
                        .backlog = 4096,
                        .on_accept = on_accept};
    int fds[SQ__HTTP_MAX_LISTENERS], bound;
    int n = sq__tcp_listen_fds(host, port, &o, o.backlog, fds, SQ__HTTP_MAX_LISTENERS - srv->nls,
                               &bound);
    if (n < 0) return n;
    int e;
    sq_tcp_server *t = sq__tcp_server_from_fds(srv->loop, fds, n, &o, srv, &e);
    if (!t) return e;
    sq__tcp_server_unlink_at_close(t, host); /* its unix socket file, if any */
    if (srv->accept_paused) sq_tcp_server_pause(t);
    srv->tcp[srv->ntcp++] = t;
    srv->nls += n;
    if (srv->port <= 0) srv->port = bound;
    return 0;
}

int sq_http_server_add_sockets(sq_http_server *srv, const int *fds, int n)
{
    if (!srv || n > SQ__HTTP_MAX_LISTENERS - srv->nls) return -EINVAL;
    if (srv->closing) return SQ_ECLOSED;
    int e = sq__tcp_adopt_check(fds, n);
    if (e < 0) return e;
    sq_tcp_options o = {.backlog = 4096, .on_accept = on_accept};
    sq_tcp_server *t = sq__tcp_server_from_fds(srv->loop, fds, n, &o, srv, &e);
    if (!t) return e;
    if (srv->accept_paused) sq_tcp_server_pause(t);
    srv->tcp[srv->ntcp++] = t;
    srv->nls += n;
    if (srv->port <= 0) srv->port = sq_tcp_server_port(t);
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

/* --- memory after a burst ------------------------------------------------------------------ */

/* A spike of connections leaves the server's pools full and glibc's heap holding the freed
 * blocks of thousands of connections: 4,000 HTTP/2 connections left 58-61 MB resident after
 * the last one closed, because glibc gives pages back only from the top of the heap (and a
 * few pooled blocks scattered through it pin the pages around them).  Once the count has
 * stayed at a quarter of its peak or less for memory_trim_delay, the pools (the server's,
 * the thread's coroutine stacks, the loop's futures, and through on_trim the layers above)
 * keep only what the open connections can use, 64 of each at least, and malloc_trim hands
 * the free pages back.  The delay keeps waves of connections (a load test, a crowd of
 * browsers) from paying the trim and the page faults after it on every wave. */
#define TRIM_SLICE_NS 1000000 /* unmapping a loop turn may do */

#ifdef __GLIBC__
/* malloc_trim walks the heap's free chunks and madvises their pages away: 10-15 ms after a
 * burst of thousands of connections, too long to hold the loop for.  It runs on a thread of
 * its own (all signals blocked there), and the loop serves on meanwhile.  The trim holds
 * each arena's lock while it walks that arena (here the main one, where the burst's memory
 * lived), so a malloc or free of the loop's that the thread cache cannot serve (a new
 * connection's) waits for it, once per burst; a keep-alive request allocates nothing.  One
 * such thread at a time: a trim asked for while one runs is left to that one.  Inline if
 * the thread cannot be made. */
static atomic_uint heap_trims;    /* finished, for the tests */
static atomic_bool heap_trimming; /* a trim thread runs */

static void *heap_trim_main(void *arg)
{
    (void)arg;
    malloc_trim(0);
    atomic_fetch_add_explicit(&heap_trims, 1, memory_order_release);
    atomic_store_explicit(&heap_trimming, false, memory_order_release);
    return NULL;
}

/* A detached thread with all signals blocked; a small stack unless that cannot be had (the
 * platform's minimum is larger, or a large static TLS leaves no room in 64 KiB). */
static int trim_thread(bool small_stack)
{
    pthread_attr_t at;
    int e = pthread_attr_init(&at);
    if (e) return e;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (small_stack) e = pthread_attr_setstacksize(&at, 64 * 1024);
    if (!e) {
        pthread_t th;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        e = pthread_create(&th, &at, heap_trim_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_attr_destroy(&at);
    return e;
}

static void heap_trim(void)
{
    if (atomic_exchange_explicit(&heap_trimming, true, memory_order_acq_rel)) return;
    int e = trim_thread(true);
    if (e) e = trim_thread(false);
    if (e) {
        static atomic_bool said;
        if (!atomic_exchange(&said, true))
            sq_log(SQ_LOG_WARNING, "http: no thread for the heap trim (%s): it runs on the loop",
                   strerror(e));
        heap_trim_main(NULL);
    }
}

unsigned sq__http_heap_trims(void)
{
    return atomic_load_explicit(&heap_trims, memory_order_acquire);
}
#else
static void heap_trim(void) {} /* no malloc_trim outside glibc */

unsigned sq__http_heap_trims(void)
{
    return 0;
}
#endif

_Thread_local size_t sq__http_thread_open;

static void trim_now(sq_loop *loop, sq_timer *t)
{
    (void)loop;
    sq_http_server *srv = t->data;
    uint64_t t0 = sq__mono_ns();
    size_t nopen = sq__http_open(srv);
    /* a few of each kind stay (a new stack costs an mmap); the coroutine stacks are the
     * thread's, which other servers on it use too: enough for all their connections */
    size_t keep = nopen > SQ__HTTP_TRIM_KEEP ? nopen : SQ__HTTP_TRIM_KEEP;
    size_t keep_stacks = sq__http_thread_open > keep ? sq__http_thread_open : keep;
    if (!srv->trim_begun) {
        srv->trim_begun = true;
        srv->trim_ns = 0;
        if (srv->on_trim) srv->on_trim(srv->on_trim_arg, nopen);
        sq__future_pool_trim(srv->loop, keep);
        sq__loop_slabs_trim(srv->loop);
    }
    /* Unmapping a pooled stack or frame buffer takes tens of µs here, and a 10,000-request
     * burst leaves 1,024 stacks: at most TRIM_SLICE_NS of it a turn, connections served in
     * between (a connection coming back cancels the rest). */
    bool done = sq__http_pools_trim(srv, keep, t0 + TRIM_SLICE_NS) &&
                sq__coro_pool_trim(keep_stacks, t0 + TRIM_SLICE_NS);
    if (!done) {
        srv->trim_ns += sq__mono_ns() - t0;
        sq_timer_start(t, 0, 0);
        return;
    }
    heap_trim();
    srv->trim_ns += sq__mono_ns() - t0;
    sq_log(SQ_LOG_DEBUG,
           "http: %zu connections open, down from %zu: memory trimmed in %.1f ms of the loop's "
           "time (the heap's free pages on a thread of their own)",
           nopen, srv->conns_peak, (double)srv->trim_ns / 1e6);
    srv->conns_peak = nopen;
    srv->trim_begun = false;
    srv->trims++;
}

void sq_http_server_on_trim(sq_http_server *srv, void (*fn)(void *arg, size_t open), void *arg)
{
    srv->on_trim = fn;
    srv->on_trim_arg = arg;
}

void sq__http_trim_arm(sq_http_server *srv)
{
    srv->trim_begun = false;
    if (srv->s.memory_trim_delay > 0 && !srv->closing)
        sq_timer_start(&srv->trim_timer, srv->s.memory_trim_delay, 0);
}

/* --- server lifetime ------------------------------------------------------------------------ */

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
    /* "no limit" (SIZE_MAX): compared as int64_t against Content-Length, and the inflate
     * limit adds one to it */
    if (s->max_body_size > SIZE_MAX / 2) s->max_body_size = SIZE_MAX / 2;
    if (!s->max_connections) s->max_connections = SQ_HTTP_DEFAULT_MAX_CONNECTIONS;
    if (s->header_timeout == 0) s->header_timeout = SQ_HTTP_DEFAULT_HEADER_TIMEOUT;
    if (s->idle_timeout == 0) s->idle_timeout = SQ_HTTP_DEFAULT_IDLE_TIMEOUT;
    if (s->body_timeout == 0) s->body_timeout = SQ_HTTP_DEFAULT_BODY_TIMEOUT;
    if (s->body_min_rate == 0) s->body_min_rate = SQ_HTTP_DEFAULT_BODY_MIN_RATE;
    if (s->write_timeout == 0) s->write_timeout = SQ_HTTP_DEFAULT_WRITE_TIMEOUT;
    if (!s->write_high_water) s->write_high_water = SQ_HTTP_DEFAULT_WRITE_HIGH_WATER;
    if (s->tls_handshake_timeout == 0) s->tls_handshake_timeout = s->header_timeout;
    if (s->memory_trim_delay == 0) s->memory_trim_delay = SQ_HTTP_DEFAULT_MEMORY_TRIM_DELAY;
    if (!s->server_name) s->server_name = "squall";
    srv->server_name_len = strlen(s->server_name);
    /* a header value with CR/LF would split the response: refused, not silently dropped */
    if (strpbrk(s->server_name, "\r\n")) {
        free(srv);
        errno = EINVAL;
        return NULL;
    }
    srv->port = -1;
    srv->date_sec = -1;
    if (s->tls && !sq_tls_context_is_server(s->tls)) {
        free(srv);
        errno = EINVAL; /* a client context has no certificate to present */
        return NULL;
    }
    if (sq__http_head200_init(srv) < 0) {
        free(srv);
        errno = ENOMEM;
        return NULL;
    }
    sq_tls_context_ref(s->tls);
    sq_timer_init(loop, &srv->shutdown_timer, NULL, srv);
    sq_timer_init(loop, &srv->trim_timer, trim_now, srv);
    sq__http_parked_init(srv, &srv->idle, srv->s.idle_timeout);
    sq__http_parked_init(srv, &srv->fresh, srv->s.header_timeout);
    return srv;
}

static void close_listeners(sq_http_server *srv)
{
    for (int i = 0; i < srv->ntcp; i++) sq_tcp_server_close(srv->tcp[i]);
    srv->ntcp = srv->nls = 0;
}

static void close_all(sq_http_server *srv, bool idle_only)
{
    /* parked connections are idle by definition */
    sq__http_parked *lists[] = {&srv->idle, &srv->fresh};
    for (int i = 0; i < 2; i++) {
        for (sq_http_conn *c = lists[i]->head, *next; c; c = next) {
            next = c->next;
            sq__http_conn_close(c, SQ_ECLOSED);
            sq__http_conn_release(c);
        }
        sq_timer_stop(&lists[i]->timer);
    }
    /* A request's on_close callback may finish detached requests of other connections, which
     * frees those already closed: the next connection is held (in_io) while this one closes,
     * and released when its turn comes. */
    sq_http_conn *c = srv->conns;
    bool c_held = c && c->in_io;
    if (c) c->in_io = true;
    while (c) {
        sq_http_conn *next = c->next;
        bool next_held = next && next->in_io;
        if (next) next->in_io = true;
        if (c->closed) {
            /* closed before, kept for a handler or a detached request */
        } else if (c->h2_mode && idle_only) {
            sq__h2_goaway(c); /* no new streams; closes once those in flight are done */
        } else if (!idle_only || (!sq__http_req_active(c) && !c->a->coro &&
                                  c->a->rlen == c->a->rpos && c->a->opos == c->a->out.len)) {
            sq__http_conn_close(c, SQ_ECLOSED);
        }
        c->in_io = c_held;
        sq__http_conn_release(c);
        c = next;
        c_held = next_held;
    }
}

/* --- upgraded connections ---------------------------------------------------------------- */

void sq__http_upgrade_begin(sq_http_request *req)
{
    if (req->server) req->server->upgrading++;
}

void sq__http_upgraded_add(sq_http_request *req, sq__http_upgraded *u,
                           const sq__http_upgraded_ops *ops)
{
    sq_http_server *srv = req->server;
    if (srv && srv->upgrading) srv->upgrading--; /* counted since sq_http_detach_connection */
    if (!u) {                                    /* the upgrade failed after the detach */
        if (srv) sq__http_shutdown_check(srv);
        return;
    }
    u->ops = ops;
    u->prev = NULL;
    u->srv = srv;
    if (!srv) return;
    srv->nupgraded++;
    sq__http_conn_counted(srv);
    if (srv->closing && ops->shutdown) { /* upgraded while shutting down: asked at once */
        u->next = srv->asked;
        if (srv->asked) srv->asked->prev = u;
        srv->asked = u;
        ops->shutdown(u);
        return;
    }
    u->next = srv->upgraded;
    if (srv->upgraded) srv->upgraded->prev = u;
    srv->upgraded = u;
}

void sq__http_upgraded_remove(sq__http_upgraded *u)
{
    sq_http_server *srv = u->srv;
    if (!srv) return;
    if (u->prev)
        u->prev->next = u->next;
    else if (srv->upgraded == u)
        srv->upgraded = u->next;
    else if (srv->asked == u)
        srv->asked = u->next;
    if (u->next) u->next->prev = u->prev;
    u->prev = u->next = NULL;
    u->srv = NULL;
    srv->nupgraded--;
    sq__http_conn_uncounted(srv);
    sq__http_shutdown_check(srv);
}

/* Graceful: each connection moves to the `asked` list, then is asked to close; the callback
 * may remove any entry (its own or others, through user code), so the next one is always
 * taken afresh from the head. */
static void upgraded_shutdown(sq_http_server *srv)
{
    sq__http_upgraded *u;
    while ((u = srv->upgraded)) {
        srv->upgraded = u->next;
        if (u->next) u->next->prev = NULL;
        u->next = srv->asked;
        u->prev = NULL;
        if (srv->asked) srv->asked->prev = u;
        srv->asked = u;
        if (u->ops->shutdown) u->ops->shutdown(u);
    }
}

/* Forced: drop every one, the head each time (an abort removes its own entry; one that did
 * not is unlinked here, so this ends). */
static void upgraded_abort(sq_http_server *srv)
{
    sq__http_upgraded *u;
    while ((u = srv->upgraded ? srv->upgraded : srv->asked)) {
        if (u->ops->abort) u->ops->abort(u);
        if (u == srv->upgraded || u == srv->asked) sq__http_upgraded_remove(u);
    }
}

static void shutdown_deadline(sq_loop *loop, sq_timer *t)
{
    sq_http_server *srv = t->data;
    srv->closing_all++;
    close_all(srv, false);
    upgraded_abort(srv);
    srv->closing_all--;
    if (srv->free_pending) { /* an on_close callback freed the server: now it is done */
        sq_http_server_free(srv);
        return;
    }
    sq__http_shutdown_check(srv); /* last: the future's callbacks may free the server */
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
    upgraded_shutdown(srv); /* WebSockets: close 1001, answered within the deadline */
    sq__http_shutdown_check(srv);
    if (srv->shutdown_fut) sq_timer_start(&srv->shutdown_timer, deadline > 0 ? deadline : 0, 0);
    return f;
}

void sq_http_server_free(sq_http_server *srv)
{
    if (!srv) return;
    if (srv->closing_all) {
        /* From user code (an on_close callback) while the server closes every connection:
         * the free happens when that ends, the connections left closed first. */
        srv->free_pending = true;
        return;
    }
    srv->closing = true;
    srv->closing_all++; /* a pending shutdown future resolves once the server is gone */
    close_listeners(srv);
    close_all(srv, false);
    upgraded_abort(srv);
    /* Connections whose handlers are still suspended live on until those return (and a
     * parked one being closed by its list's timer, which frees it); their requests forget
     * the server too (req->server NULL), which their handlers may still read. */
    sq_http_conn *lists[] = {srv->conns, srv->idle.head, srv->fresh.head};
    for (int i = 0; i < 3; i++) {
        for (sq_http_conn *c = lists[i], *next; c; c = next) {
            next = c->next;
            if (c->h2_mode && c->a && c->a->h2)
                sq__h2_forget_server(c);
            else if (c->a && c->a->req)
                c->a->req->pub.server = NULL;
            c->srv = NULL;
            c->prev = c->next = NULL;
            c->parked = false;
        }
    }
    sq_timer_stop(&srv->shutdown_timer);
    sq_future *down = srv->shutdown_fut;
    sq_timer_stop(&srv->trim_timer);
    sq__http_pools_trim(srv, 0, 0);
    sq_tls_context_free(srv->s.tls);
    free(srv->head200);
    free(srv);
    if (down) {
        sq_future_set_result(down, NULL);
        sq_future_release(down);
    }
}
