/* HTTP client: libcurl's multi-socket API driven by the squall loop.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one sq_io each; a
 * keep-alive socket stays watched between its transfers, see on_open) and when to call it
 * back (CURLMOPT_TIMERFUNCTION: the client's one sq_timer); we answer with
 * curl_multi_socket_action() and then collect finished transfers with
 * curl_multi_info_read().  Futures are resolved only there, outside libcurl's callbacks, so
 * that done callbacks may start new fetches.  Fetches beyond max_clients wait in a FIFO.
 *
 * Reentrancy.  libcurl refuses its multi calls (add/remove handle) from inside its own
 * callbacks, so while `in_curl` a new fetch is queued and a cancelled active one is removed
 * once libcurl returns.  User code (done callbacks, request callbacks) may free the client
 * at any time: while client code still runs (`busy`), sq_http_client_free only marks it
 * closing and the outermost client frame frees it on the way out.  A fetch's own cleanup
 * is the FIRST done callback of its future, so it runs before any of the caller's.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_internal.h"

/* Idle easy handles kept: max_clients of them, within these bounds. */
#define EASY_POOL_MIN 64
#define EASY_POOL_MAX 1024

/* A socket libcurl asked us to watch. */
typedef struct sockw {
    sq_io io;
    sq_http_client *c;
    struct sockw *prev, *next;
    bool parked; /* libcurl stopped asking (CURL_POLL_REMOVE): kept for its next transfer */
} sockw;

/* What the client knows of a descriptor it opened for libcurl (CURLOPT_OPENSOCKETFUNCTION),
 * until libcurl closes it through CURLOPT_CLOSESOCKETFUNCTION. */
typedef struct fdslot {
    bool ours;
    sockw *parked;
} fdslot;

struct sq_http_client {
    sq_loop *loop;
    CURLM *multi;
    sq_timer timer;
    sq_http_client_settings settings;
    sq_fetch_request defaults;
    bool has_defaults;
    unsigned in_curl;      /* > 0 while inside curl_multi_socket_action */
    unsigned busy;         /* > 0 while client code that uses c after user code runs */
    bool closing;          /* sq_http_client_free was called: freed when busy drops to 0 */
    sq__xfer *active_head; /* added to the multi handle */
    sq__xfer *queue_head, *queue_tail;
    size_t nactive, nqueued;
    sq__xfer *cancels; /* cancelled inside libcurl: removed once it returns */
    sockw *socks;
    fdslot *fds; /* by descriptor */
    size_t nfds;
    uint64_t closes; /* connections' sockets closed (on_close): see xfer_complete */
    /* Idle easy handles by what they are configured for (SQ__EASY_*): pool[k] holds npool[k]
     * of them, at most pool_max in all. */
    CURL **pool[SQ__EASY_KEYS];
    size_t npool[SQ__EASY_KEYS], pool_cap[SQ__EASY_KEYS], pool_max;
    bool is_default;
    sq_http_client *next_default;
};

/* The default client of each loop on this thread (loops are per thread). */
static __thread sq_http_client *default_clients;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- transfers ---------------------------------------------------------------------------------
 */

/* Keep an easy handle for the next fetch: reset unless it has a plain configuration, which
 * the next plain fetch of that key uses as it is. */
static void easy_put(sq_http_client *c, CURL *e, unsigned key)
{
    if (!e) return;
    size_t n = c->npool[SQ__EASY_RESET] + c->npool[SQ__EASY_PLAIN];
    if (n >= c->pool_max) {
        curl_easy_cleanup(e);
        return;
    }
    if (c->npool[key] == c->pool_cap[key]) {
        size_t cap = c->pool_cap[key] ? c->pool_cap[key] * 2 : 16;
        CURL **p = realloc(c->pool[key], cap * sizeof *p);
        if (!p) {
            curl_easy_cleanup(e);
            return;
        }
        c->pool[key] = p;
        c->pool_cap[key] = cap;
    }
    if (key == SQ__EASY_RESET) curl_easy_reset(e);
    c->pool[key][c->npool[key]++] = e;
}

/* An easy handle for a fetch of `key`: one configured for it if there is one (*configured
 * set), else a reset or new one. */
static CURL *easy_get(sq_http_client *c, unsigned key, bool *configured)
{
    *configured = false;
    if (key != SQ__EASY_RESET && c->npool[key]) {
        *configured = true;
        return c->pool[key][--c->npool[key]];
    }
    if (c->npool[SQ__EASY_RESET]) return c->pool[SQ__EASY_RESET][--c->npool[SQ__EASY_RESET]];
    if (c->npool[SQ__EASY_PLAIN]) {
        CURL *e = c->pool[SQ__EASY_PLAIN][--c->npool[SQ__EASY_PLAIN]];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void xfer_free(sq__xfer *x)
{
    easy_put(x->client, x->easy, x->easy_key);
    curl_slist_free_all(x->hdrs);
    sq__buf_free(&x->body);
    sq__buf_free(&x->head);
    free(x->url);
    free(x);
}

static void list_unlink(sq__xfer **head, sq__xfer **tail, sq__xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        *head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else if (tail)
        *tail = x->prev;
    x->prev = x->next = NULL;
}

/* Take x out of the client (multi handle or queue); it is then ours alone. */
static void xfer_detach(sq__xfer *x)
{
    sq_http_client *c = x->client;
    if (x->cancel_pending) { /* still on c->cancels: a callback cancelled it before collect */
        x->cancel_pending = false;
        for (sq__xfer **p = &c->cancels; *p; p = &(*p)->next_cancel)
            if (*p == x) {
                *p = x->next_cancel;
                break;
            }
    }
    if (x->state == SQ__X_ACTIVE) {
        curl_multi_remove_handle(c->multi, x->easy);
        list_unlink(&c->active_head, NULL, x);
        c->nactive--;
    } else if (x->state == SQ__X_QUEUED) {
        sq_timer_stop(&x->queue_timer);
        list_unlink(&c->queue_head, &c->queue_tail, x);
        c->nqueued--;
    }
    x->state = SQ__X_NEW;
}

/* Resolve x's future with err (and response r), then free x.  A future already resolved
 * (cancelled) gives the response back. */
static void on_fut_done(sq_future *f, void *arg);

static void response_value_free(void *r)
{
    sq_fetch_response_free(r);
}

static void xfer_complete(sq__xfer *x, int err, sq_fetch_response *r)
{
    /* A reused handle keeps what curl_easy_reset alone clears, and one thing of it matters:
     * libcurl's count of requests resent after a reused connection died unanswered
     * (state.retrycount; at its sixth a request fails at once).  A resend closes that
     * connection during the transfer, so a handle goes back reset when any connection of
     * the client closed meanwhile, and after a failure. */
    if (err || x->client->closes != x->closes_at_start) x->easy_key = SQ__EASY_RESET;
    sq_future *f = x->fut;
    x->fut = NULL;
    sq_future_remove_done_callback(f, on_fut_done, x); /* gone already if it ran */
    xfer_free(x);
    if (sq_future_resolve(f, err, r) < 0) sq_fetch_response_free(r);
    sq_future_release(f);
}

static void client_destroy(sq_http_client *c);

static void client_enter(sq_http_client *c)
{
    c->busy++;
}

/* Leave a client frame; the outermost one frees a client that was freed meanwhile. */
static void client_leave(sq_http_client *c)
{
    if (--c->busy == 0 && c->closing) client_destroy(c);
}

static int xfer_start(sq__xfer *x)
{
    sq_http_client *c = x->client;
    sq_loop_update_time(c->loop);
    x->started_ns = sq_loop_now_ns(c->loop);
    x->closes_at_start = c->closes;
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) return SQ_ECURL;
    x->state = SQ__X_ACTIVE;
    x->prev = NULL;
    x->next = c->active_head;
    if (c->active_head) c->active_head->prev = x;
    c->active_head = x;
    c->nactive++;
    return 0;
}

/* Start queued fetches while there are free slots (not from inside libcurl, which refuses
 * curl_multi_add_handle there: drive() pumps once it returns).  Call it inside a client
 * frame: a failed start resolves a future, whose callbacks may free the client. */
static void pump(sq_http_client *c)
{
    while (!c->in_curl && !c->closing && c->nactive < c->settings.max_clients && c->queue_head) {
        sq__xfer *x = c->queue_head;
        xfer_detach(x);
        int r = xfer_start(x);
        if (r < 0) xfer_complete(x, r, NULL);
    }
}

static void queue_timed_out(sq_loop *loop, sq_timer *t)
{
    sq__xfer *x = t->data;
    sq_http_client *c = x->client;
    client_enter(c);
    xfer_detach(x);
    xfer_complete(x, SQ_EQUEUE_TIMEOUT, NULL);
    pump(c); /* only if a fetch queued from inside libcurl found free slots */
    client_leave(c);
}

/* Fail x with err once libcurl has returned (it may not be removed from inside libcurl): its
 * callbacks fail from now on, and collect() completes it. */
static void defer_cancel(sq_http_client *c, sq__xfer *x, int err)
{
    if (x->cancel_pending) return;
    x->cancel_pending = true;
    x->abort_err = err;
    x->next_cancel = c->cancels;
    c->cancels = x;
}

/* The fetch's future was resolved by someone else than xfer_complete: it was cancelled
 * (sq_future_cancel, sq_with_timeout …).  This is the future's first done callback, so the
 * transfer is gone before the caller's callbacks run (they may free the client). */
static void on_fut_done(sq_future *f, void *arg)
{
    sq__xfer *x = arg;
    sq_http_client *c = x->client;
    if (c->in_curl && x->state == SQ__X_ACTIVE) {
        /* Inside libcurl (a streaming callback cancelled it): libcurl forbids removing a
         * handle from there, so fail its callbacks now and remove it once libcurl returns. */
        defer_cancel(c, x, -ECANCELED);
        return;
    }
    client_enter(c);
    xfer_detach(x);
    xfer_complete(x, -ECANCELED, NULL); /* the future is already resolved: just frees */
    pump(c);
    client_leave(c);
}

/* After libcurl returned: deferred cancels first, then every finished transfer. */
static void collect(sq_http_client *c)
{
    while (c->cancels) {
        sq__xfer *x = c->cancels;
        c->cancels = x->next_cancel;
        x->cancel_pending = false; /* off the list */
        xfer_detach(x); /* also drops a pending "done" message of its handle */
        xfer_complete(x, x->abort_err ? x->abort_err : -ECANCELED, NULL);
    }
    CURLMsg *m;
    int left;
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        sq__xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = m->data.result;
        int err = x->see_other ? 0 : sq__xfer_error(x, rc);
        if (x->see_other && (err = sq__xfer_follow_303(x)) <= 0) {
            xfer_detach(x);
            uint64_t started = x->started_ns; /* (the queue time is the first transfer's) */
            if (err == 0 && (err = xfer_start(x)) == 0) {
                x->started_ns = started;
                continue;
            }
            xfer_complete(x, err, NULL);
            continue;
        }
        err = err == 1 ? 0 : err;
        sq_fetch_response *r = NULL;
        if (err == 0) {
            r = sq__response_build(x);
            if (!r) {
                err = -ENOMEM;
            } else if (r->code >= 400) {
                r->error = SQ_EHTTP;
                if (x->raise_error) err = SQ_EHTTP;
            }
        }
        xfer_detach(x);
        xfer_complete(x, err, r);
    }
    pump(c);
}

static void drive(sq_http_client *c, curl_socket_t fd, int flags)
{
    int running;
    client_enter(c);
    c->in_curl++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_curl--;
    collect(c);
    client_leave(c);
}

/* --- libcurl's socket and timer callbacks ------------------------------------------------------
 */

static void on_io(sq_loop *loop, sq_io *io, unsigned events)
{
    sockw *w = io->data;
    sq_http_client *c = w->c; /* w may be freed inside drive() */
    /* A parked socket is nobody's: the peer closed, or sent what nobody asked for. */
    if (w->parked) {
        sq_io_stop(loop, io);
        return;
    }
    int flags = 0;
    if (events & (SQ_READ | SQ_HUP)) flags |= CURL_CSELECT_IN;
    if (events & SQ_WRITE) flags |= CURL_CSELECT_OUT;
    if (events & SQ_ERROR) flags |= CURL_CSELECT_ERR;
    drive(c, io->fd, flags);
}

/* Free a watcher; `closed`: its descriptor is closed already (no epoll_ctl on its number). */
static void sockw_drop(sq_http_client *c, sockw *w, bool closed)
{
    if (closed)
        sq__io_forget(c->loop, &w->io);
    else
        sq_io_stop(c->loop, &w->io);
    if (w->parked)
        c->fds[w->io.fd].parked = NULL;
    else if (w->io.fd >= 0 && (size_t)w->io.fd < c->nfds)
        c->fds[w->io.fd].ours = false; /* libcurl may close it without on_close */
    if (w->prev)
        w->prev->next = w->next;
    else
        c->socks = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
}

static void sockw_free(sq_http_client *c, sockw *w)
{
    sockw_drop(c, w, false);
}

/* Keep-alive sockets stay watched between transfers.  When a transfer ends, libcurl says
 * CURL_POLL_REMOVE for its connection's socket, and the next transfer on that connection
 * asks for it again: an epoll_ctl DEL and ADD (and a watcher freed and allocated) per
 * request, the costliest system calls of a small fetch.  A socket the client opened itself
 * (on_open) and watched for reading is parked instead, still in the epoll set, and the next
 * request for the same descriptor takes the watcher back with one epoll_ctl MOD.
 *
 * That MOD is not skipped even though the registration is most likely still there: libcurl
 * closes a connection's socket through on_close, which drops a parked watcher first, but it
 * closes some descriptors itself (a connection attempt that never connected, the threaded
 * resolver's socketpair), and a number closed behind our back and reused by the next socket
 * would otherwise look registered while the kernel dropped that registration with the old
 * file.  The MOD then fails with ENOENT and the loop adds the new file instead.  For the same
 * reason a parked watcher whose number on_open hands out again, and every parked watcher
 * left once libcurl has closed all its sockets, is forgotten without an epoll_ctl.
 *
 * Data or a hang-up on a parked socket (the server closing an idle connection) stops the
 * watch; libcurl finds the connection dead on its next use. */
static curl_socket_t on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    sq_http_client *c = arg;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    if ((size_t)fd >= c->nfds) {
        size_t n = c->nfds ? c->nfds : 64;
        while (n <= (size_t)fd) n *= 2;
        fdslot *p = realloc(c->fds, n * sizeof *p);
        if (!p) return fd; /* not parked, only watched and unwatched */
        memset(p + c->nfds, 0, (n - c->nfds) * sizeof *p);
        c->fds = p;
        c->nfds = n;
    }
    if (c->fds[fd].parked) sockw_drop(c, c->fds[fd].parked, true); /* closed behind our back */
    c->fds[fd] = (fdslot){.ours = true};
    return fd;
}

static int on_close(void *arg, curl_socket_t fd)
{
    sq_http_client *c = arg;
    c->closes++;
    if (fd >= 0 && (size_t)fd < c->nfds) {
        if (c->fds[fd].parked) sockw_free(c, c->fds[fd].parked);
        c->fds[fd].ours = false;
    }
    return close(fd);
}

/* The handle's connections open and close their sockets through the client. */
static int easy_own_sockets(sq_http_client *c, CURL *e)
{
    if (curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c) != CURLE_OK)
        return -EINVAL;
    return 0;
}

/* CURL_POLL_REMOVE: park w, or free it. */
static void sockw_remove(sq_http_client *c, sockw *w)
{
    int fd = w->io.fd;
    if (fd >= 0 && (size_t)fd < c->nfds && c->fds[fd].ours && !c->fds[fd].parked &&
        w->io.events == SQ_READ) {
        w->parked = true;
        c->fds[fd].parked = w;
        return;
    }
    sockw_free(c, w);
}

/* The parked watcher of fd, taken back for libcurl; NULL if there is none. */
static sockw *sockw_unpark(sq_http_client *c, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= c->nfds || !c->fds[fd].parked) return NULL;
    sockw *w = c->fds[fd].parked;
    c->fds[fd].parked = NULL;
    w->parked = false;
    curl_multi_assign(c->multi, fd, w);
    return w;
}

/* The loop's sq_io_start (a test replaces it to make a registration fail). */
static int (*io_start)(sq_loop *, sq_io *, unsigned) = sq_io_start;

void sq__client_set_io_start(int (*fn)(sq_loop *, sq_io *, unsigned))
{
    io_start = fn ? fn : sq_io_start;
}

/* A socket of this transfer cannot be watched: nothing would ever wake it before its
 * timeout.  Fail it as soon as libcurl returns (it may not be removed from in here); the
 * other transfers go on (returning -1 would make libcurl abort them all). */
static int socket_failed(sq_http_client *c, CURL *e, int err)
{
    sq__xfer *x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    sq_log(SQ_LOG_WARNING, "http client: cannot watch a socket of %s: %s",
           x && x->url ? x->url : "a fetch", sq_strerror(err));
    if (x) defer_cancel(c, x, err);
    return 0;
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
    sq_http_client *c = arg;
    sockw *w = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (w) sockw_remove(c, w);
        return 0;
    }
    bool parked = !w && (w = sockw_unpark(c, s));
    if (!w) {
        if (!(w = calloc(1, sizeof *w))) return socket_failed(c, e, -ENOMEM);
        sq_io_init(&w->io, s, on_io, w);
        w->c = c;
        w->next = c->socks;
        if (c->socks) c->socks->prev = w;
        c->socks = w;
        curl_multi_assign(c->multi, s, w);
    }
    unsigned ev = ((what & CURL_POLL_IN) ? SQ_READ : 0) | ((what & CURL_POLL_OUT) ? SQ_WRITE : 0);
    int r = parked ? sq__io_rearm(c->loop, &w->io, ev) : io_start(c->loop, &w->io, ev);
    return r < 0 ? socket_failed(c, e, r) : 0;
}

static void timer_fired(sq_loop *loop, sq_timer *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* timeout_ms 0 means "call socket_action(TIMEOUT) soon": a zero-delay timer does it on the
 * loop's next pass rather than recursively from inside libcurl, and unlike a queued
 * callback it can be cancelled when the client is freed. */
static int on_curl_timer(CURLM *m, long timeout_ms, void *arg)
{
    sq_http_client *c = arg;
    if (timeout_ms < 0)
        sq_timer_stop(&c->timer);
    else
        sq_timer_start(&c->timer, (double)timeout_ms / 1000.0, 0);
    return 0;
}

/* --- the client ------------------------------------------------------------------------------ */

sq_http_client *sq_http_client_new(sq_loop *loop, const sq_http_client_settings *settings)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        errno = EIO;
        return NULL;
    }
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_http_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    if (settings) c->settings = *settings;
    if (!c->settings.max_clients) c->settings.max_clients = SQ_FETCH_DEFAULT_MAX_CLIENTS;
    if (!c->settings.max_body_size) c->settings.max_body_size = SQ_FETCH_DEFAULT_MAX_BODY_SIZE;
    c->pool_max = c->settings.max_clients < EASY_POOL_MIN   ? EASY_POOL_MIN
                  : c->settings.max_clients > EASY_POOL_MAX ? EASY_POOL_MAX
                                                            : c->settings.max_clients;
    if (c->settings.defaults) {
        /* Strings stay the caller's (documented); callbacks are per request. */
        c->defaults = *c->settings.defaults;
        c->defaults.body = NULL;
        c->defaults.body_len = 0;
        c->defaults.body_producer = NULL;
        c->defaults.streaming_callback = NULL;
        c->defaults.header_callback = NULL;
        c->has_defaults = true;
        c->settings.defaults = &c->defaults;
    }
    if (!(c->multi = curl_multi_init())) {
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    sq_timer_init(loop, &c->timer, timer_fired, c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* Keep enough idle connections for every slot to find its own again. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->settings.max_clients);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return c;
}

static void default_client_free(void *arg)
{
    sq_http_client_free(arg);
}

void sq_http_client_free(sq_http_client *c)
{
    if (!c || c->closing) return;
    c->closing = true;
    if (c->is_default) { /* the next sq_fetch makes a new one */
        sq__loop_at_free_cancel(c->loop, default_client_free, c);
        for (sq_http_client **p = &default_clients; *p; p = &(*p)->next_default) {
            if (*p == c) {
                *p = c->next_default;
                break;
            }
        }
        c->is_default = false;
    }
    if (!c->busy) {
        client_destroy(c);
        return;
    }
    /* Freed from user code that runs inside the client (a done or request callback): the
     * outermost client frame frees it.  Meanwhile the transfers' callbacks stop at once. */
    for (sq__xfer *x = c->active_head; x; x = x->next)
        if (!x->abort_err) x->abort_err = -ECANCELED;
}

static void client_destroy(sq_http_client *c)
{
    c->busy++; /* done callbacks below may call sq_http_client_free again: a no-op */
    c->cancels = NULL;
    while (c->active_head || c->queue_head) {
        sq__xfer *x = c->active_head ? c->active_head : c->queue_head;
        xfer_detach(x);
        xfer_complete(x, -ECANCELED, NULL);
    }
    curl_multi_cleanup(c->multi);
    /* Any libcurl did not report removed; a parked one left is a descriptor libcurl closed
     * itself (on_close would have freed it): its number may be another file's by now. */
    while (c->socks) sockw_drop(c, c->socks, c->socks->parked);
    free(c->fds);
    sq_timer_stop(&c->timer);
    for (unsigned k = 0; k < SQ__EASY_KEYS; k++) {
        for (size_t i = 0; i < c->npool[k]; i++) curl_easy_cleanup(c->pool[k][i]);
        free(c->pool[k]);
    }
    free(c);
}

static sq_http_client *default_for(sq_loop *loop)
{
    for (sq_http_client *c = default_clients; c; c = c->next_default)
        if (c->loop == loop) return c;
    return NULL;
}

sq_http_client *sq_http_client_default(sq_loop *loop)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_http_client *d = default_for(loop);
    if (d) return d;
    if (loop->freeing) { /* no new default client for a loop being freed: it would outlive it */
        errno = ESHUTDOWN;
        return NULL;
    }
    sq_http_client *c = sq_http_client_new(loop, NULL);
    if (!c) return NULL;
    if (sq__loop_at_free(loop, default_client_free, c) < 0) { /* freed with its loop */
        sq_http_client_free(c);
        return NULL;
    }
    c->is_default = true;
    c->next_default = default_clients;
    default_clients = c;
    return c;
}

size_t sq_http_client_active(const sq_http_client *c)
{
    return c->nactive;
}
size_t sq_http_client_queued(const sq_http_client *c)
{
    return c->nqueued;
}

sq_future *sq_http_client_fetch(sq_http_client *c, const char *url, const sq_fetch_request *req)
{
    sq_future *f = sq_future_new(c->loop);
    if (!f) return NULL;
    sq_future_set_value_free(f, response_value_free); /* a response nobody takes */
    if (c->closing) { /* from a done callback while the client is being freed */
        sq_future_set_error(f, -ECANCELED);
        return f;
    }
    sq__xfer *x = calloc(1, sizeof *x);
    if (!x) {
        sq_future_release(f);
        return NULL;
    }
    x->client = c;
    bool configured;
    unsigned key = sq__xfer_config_key(url, req, c->settings.defaults);
    x->easy = easy_get(c, key, &configured);
    int r = x->easy ? sq__xfer_setup(x, url, req, c->settings.defaults, &c->settings, configured)
                    : -ENOMEM;
    if (r == 0 && !configured) r = easy_own_sockets(c, x->easy);
    /* A failed setup may have left some options set: the handle goes back reset. */
    x->easy_key = r < 0 ? SQ__EASY_RESET : key;
    if (r < 0) {
        xfer_free(x);
        sq_future_set_error(f, r);
        return f;
    }
    /* Our cleanup is the future's first done callback (see on_fut_done). */
    if (sq_future_add_done_callback(f, on_fut_done, x) < 0) {
        xfer_free(x);
        sq_future_release(f);
        return NULL;
    }
    x->fut = sq_future_retain(f);
    /* Inside libcurl (a request callback fetches) it waits in the queue: drive() starts it
     * as soon as libcurl returns. */
    if (!c->in_curl && c->nactive < c->settings.max_clients && !c->queue_head) {
        r = xfer_start(x); /* reads the clock: enqueued and started at once */
        x->enqueued_ns = x->started_ns;
        if (r < 0) xfer_complete(x, r, NULL);
        return f;
    }
    sq_loop_update_time(c->loop); /* the cached clock may be a long callback old */
    x->enqueued_ns = sq_loop_now_ns(c->loop);
    /* Queue (FIFO) with its own timeout, distinct from the request's. */
    x->state = SQ__X_QUEUED;
    x->prev = c->queue_tail;
    x->next = NULL;
    if (c->queue_tail)
        c->queue_tail->next = x;
    else
        c->queue_head = x;
    c->queue_tail = x;
    c->nqueued++;
    sq_timer_init(c->loop, &x->queue_timer, queue_timed_out, x);
    if (x->queue_timeout > 0) sq_timer_start(&x->queue_timer, x->queue_timeout, 0);
    return f;
}

sq_future *sq_fetch(const char *url, const sq_fetch_request *req)
{
    sq_http_client *c = sq_http_client_default(NULL);
    if (!c) return NULL;
    return sq_http_client_fetch(c, url, req);
}

int sq_fetch_resume(sq_future *fetch)
{
    sq__xfer *x = fetch ? sq__future_first_arg(fetch, on_fut_done) : NULL;
    if (!x) return fetch && sq_future_done(fetch) ? -EALREADY : -EINVAL;
    if (!x->paused || x->cancel_pending) return 0;
    x->paused = false;
    sq_http_client *c = x->client;
    client_enter(c);
    /* libcurl may call the producer (and this transfer's other callbacks) from in here */
    c->in_curl++;
    CURLcode rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    c->in_curl--;
    if (rc != CURLE_OK) defer_cancel(c, x, SQ_ECURL);
    if (!c->in_curl) collect(c); /* else the libcurl call this is inside collects */
    client_leave(c);
    return 0;
}

int sq_fetch_sync(const char *url, const sq_fetch_request *req, sq_fetch_response **out)
{
    if (out) *out = NULL;
    sq_loop *prev = sq_loop_current();
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) return errno ? -errno : -ENOMEM;
    sq_loop_make_current(loop);
    sq_http_client *c = sq_http_client_new(loop, NULL);
    int rc = c ? -ENOMEM : errno ? -errno : -ENOMEM;
    sq_future *f = c ? sq_http_client_fetch(c, url, req) : NULL;
    if (f) {
        int lr = sq_loop_run_until(loop, f);
        if (!sq_future_done(f)) sq_future_cancel(f);
        rc = lr < 0 && !sq_future_status(f) ? lr : (int)sq_future_status(f);
        if (out) *out = sq_future_take_value(f); /* else it is freed with f */
        sq_future_release(f);
    }
    sq_http_client_free(c);
    /* A request callback that called sq_fetch() made a default client for this private
     * loop: it must not outlive the loop (nor be found by a later loop at its address). */
    sq_http_client *d;
    while ((d = default_for(loop))) sq_http_client_free(d);
    sq_loop_make_current(prev);
    sq_loop_free(loop);
    return rc;
}
