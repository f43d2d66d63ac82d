/* The WebSocket connection core, shared by the server and the client: the socket is
 * driven straight from its loop watcher (no sq_stream, no coroutine while idle).
 *
 * Input: each readable event reads into a per-thread scratch buffer and feeds the frame
 * parser, which keeps partial frames in the (small) parser state and the message buffer;
 * nothing is buffered per connection while idle.  When a whole message is ready, the bytes
 * after it are kept in `pend` and reading stops until the message was handled: the server
 * runs on_message on a pooled coroutine (which then goes on with `pend`), the client hands
 * it to sq_ws_read_message().
 *
 * Output: frames are encoded into one buffer and sent as the socket allows; the buffer is
 * freed once empty.  A write future resolves when the end offset of its frame was sent.
 *
 * Lifetime: ws_drop() closes the fd (once); a server connection is freed after on_close,
 * when no callback of ours is on the stack (in_io), no on_message or open() is running
 * (coro) and no deferred release is queued.  A client connection is freed by sq_ws_free();
 * when that is called from inside the connection (a write future's done callback runs
 * while we resolve it) or while a sq_ws_read_message() is suspended, the free is only
 * requested (free_req) and done once the stack has unwound, from a loop callback. */
#define _GNU_SOURCE
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked */
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "squall/coro.h"
#include "transport/transport.h"
#include "ws/ws_internal.h"

#define SCRATCH (64u * 1024)
/* Work per wake-up, so that one busy peer cannot hold the loop: at most READS_MAX reads
 * (256 KiB), and on_message runs for at most MSGS_PER_PASS messages, or PASS_NS of this
 * loop pass, before the coroutine yields to the loop (the others' events run) and goes on
 * at the next pass. */
#define READS_MAX     4
#define MSGS_PER_PASS 32
#define PASS_NS       (2u * 1000 * 1000)

typedef struct ws_wq {
    uint64_t end;
    sq_future *f;
} ws_wq;

typedef struct ws_timers {
    sq_timer close_t;
    sq_timer ping_t;
    sq_timer write_t; /* armed while output is pending: checks for progress */
    uint64_t ping_sent, last_rx;
    uint64_t acked; /* the kernel's count of our bytes the peer acknowledged */
    uint64_t ping_acked; /* the same, at the last ping tick */
    bool progress;  /* output moved since the write timer was last armed (not TCP) */
} ws_timers;

struct sq_ws {
    sq_io io;
    sq_loop *loop;
    const sq_ws_class *cls; /* NULL: client */
    const sq_ws_settings *set;
    sq__ws_rx rx;
    sq__buf out;
    size_t opos;
    uint64_t out_base; /* stream offset of out.ptr[0] */
    ws_wq *wq;
    uint32_t wq_head, wq_len, wq_cap;
    uint32_t pend_off, pend_len;
    uint8_t *pend;   /* input after a ready message, not yet parsed */
    uint8_t *pong;   /* the latest ping's payload (pong[0] = length), answered once per pass */
    sq_coro *coro;   /* server: the coroutine running on_message */
    sq_coro *reader; /* client: suspended in sq_ws_read_message */
    ws_timers *tm;
    sq__ws_tx *tx;
    sq__http_upgraded up; /* server: tracked by the HTTP server (graceful shutdown) */
    sq__tp *tp;           /* the transport: NULL for a plain socket */
    sq_handler *handler;
    void *data;
    char *subprotocol;
    char *close_reason;
    int error;
    uint16_t close_code;
    bool closed : 1;     /* fd closed */
    bool close_sent : 1; /* our close frame is queued */
    bool close_rcvd : 1;
    bool input_done : 1; /* no more frames are parsed (close received or a violation) */
    bool lingering : 1;  /* write side shut: waiting for the peer's EOF */
    bool msg_ready : 1;  /* rx.msg holds a message not yet handed over */
    bool delivered : 1;  /* client: rx.msg was returned by the last read */
    bool in_io : 1;      /* a callback of ours is on the stack: defer flushing and freeing */
    bool in_flush : 1;
    bool cb_pending : 1;  /* a deferred release is queued */
    bool notified : 1;    /* on_close ran */
    bool free_req : 1;    /* client: sq_ws_free() was called; freed once nothing uses it */
    bool reading : 1;     /* client: a sq_ws_read_message() call is on a stack (maybe suspended) */
    bool rpaused : 1;     /* server: more than high_water pending, no frame is read */
    bool abort_close : 1; /* close with a reset (the peer stopped reading) */
    uint8_t burst;        /* messages handled in this loop pass (MSGS_PER_PASS) */
    char remote_ip[46];
    _Alignas(max_align_t) unsigned char state[];
};

static __thread uint8_t scratch[SCRATCH];

static void ws_drop(sq_ws *ws, int err);
static void ws_flush(sq_ws *ws);
static void ws_update_io(sq_ws *ws);
static void ws_release(sq_ws *ws);
static void ws_io(sq_loop *loop, sq_io *io, unsigned events);

/* --- settings ----------------------------------------------------------------------------------
 */

static double close_timeout(const sq_ws *ws)
{
    return ws->set->close_timeout > 0 ? ws->set->close_timeout : SQ_WS_DEFAULT_CLOSE_TIMEOUT;
}

static size_t high_water(const sq_ws *ws)
{
    return ws->set->high_water ? ws->set->high_water : SQ_WS_DEFAULT_HIGH_WATER;
}

static double write_timeout(const sq_ws *ws)
{
    return ws->set->write_timeout == 0 ? SQ_WS_DEFAULT_WRITE_TIMEOUT : ws->set->write_timeout;
}

/* --- the loop's buffer pool ----------------------------------------------------------------- */

#define POOL_MAX 64 /* buffers kept per loop: the connections busy at once, roughly */

struct sq__ws_pool {
    sq_loop *loop;
    sq__ws_pool *next; /* every loop's pool; looked up once per connection */
    size_t refs;       /* connections holding it (each drops it when freed) */
    bool gone;         /* its loop was freed: buffers go back to malloc */
    size_t n;
    char *bufs[POOL_MAX]; /* used by the loop's thread only */
};

static sq__ws_pool *pools;
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;

/* The loop is being freed: its pool empties now, and goes with its last connection. */
static void pool_free(void *arg)
{
    sq__ws_pool *p = arg;
    pthread_mutex_lock(&pools_lock);
    for (sq__ws_pool **q = &pools; *q; q = &(*q)->next)
        if (*q == p) {
            *q = p->next;
            break;
        }
    p->gone = true;
    bool last = p->refs == 0;
    pthread_mutex_unlock(&pools_lock);
    while (p->n) free(p->bufs[--p->n]);
    if (last) free(p);
}

sq__ws_pool *sq__ws_pool_for(sq_loop *loop)
{
    pthread_mutex_lock(&pools_lock);
    sq__ws_pool *p = pools;
    while (p && p->loop != loop) p = p->next;
    if (!p && (p = calloc(1, sizeof *p)) != NULL) {
        p->loop = loop;
        if (sq__loop_at_free(loop, pool_free, p) < 0) {
            free(p);
            p = NULL;
        } else {
            p->next = pools;
            pools = p;
        }
    }
    if (p) p->refs++;
    pthread_mutex_unlock(&pools_lock);
    return p;
}

/* A connection that held the pool is freed. */
static void pool_drop(sq__ws_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&pools_lock);
    bool last = --p->refs == 0 && p->gone;
    pthread_mutex_unlock(&pools_lock);
    if (last) free(p);
}

bool sq__ws_pool_take(sq__ws_pool *p, sq__buf *b)
{
    if (!p || !p->n) return false;
    b->ptr = p->bufs[--p->n];
    b->cap = SQ__WS_POOL_BUF;
    b->len = 0;
    return true;
}

void sq__ws_pool_give(sq__ws_pool *p, sq__buf *b)
{
    if (p && !p->gone && b->ptr && b->cap == SQ__WS_POOL_BUF && p->n < POOL_MAX) {
        p->bufs[p->n++] = b->ptr;
        *b = (sq__buf){0};
        return;
    }
    sq__buf_free(b);
}

/* --- lifetime ------------------------------------------------------------------------------------
 */

sq_ws *sq__ws_new(sq_loop *loop, int fd, const sq_ws_class *cls, const sq_ws_settings *client_s)
{
    size_t extra = cls ? cls->state_size : sizeof(sq_ws_settings);
    sq_ws *ws = calloc(1, sizeof *ws + extra);
    if (!ws) return NULL;
    ws->loop = loop;
    ws->cls = cls;
    if (cls) {
        ws->set = &cls->settings;
    } else {
        if (client_s) memcpy(ws->state, client_s, sizeof *client_s);
        ws->set = (const sq_ws_settings *)ws->state;
    }
    sq__ws_rx_init(&ws->rx, !cls, ws->set->max_message_size);
    ws->rx.pool = sq__ws_pool_for(loop);
    sq_io_init(&ws->io, fd, ws_io, ws);
    return ws;
}

void sq__ws_set_transport(sq_ws *ws, sq__tp *tp)
{
    ws->tp = tp;
    sq__tp_attach(tp, ws->loop, &ws->io);
}

static void timers_stop(sq_ws *ws)
{
    if (!ws->tm) return;
    sq_timer_stop(&ws->tm->close_t);
    sq_timer_stop(&ws->tm->ping_t);
    sq_timer_stop(&ws->tm->write_t);
}

static void ws_free(sq_ws *ws)
{
    timers_stop(ws);
    free(ws->tm);
    sq__ws_rx_free(&ws->rx);
    sq__ws_pool_give(ws->rx.pool, &ws->out);
    pool_drop(ws->rx.pool);
    free(ws->wq);
    free(ws->pend);
    free(ws->pong);
    if (ws->tx) {
        sq__ws_tx_free(ws->tx);
        free(ws->tx);
    }
    free(ws->subprotocol);
    free(ws->close_reason);
    free(ws);
}

void sq__ws_discard(sq_ws *ws, bool close_fd)
{
    if (close_fd)
        sq__tp_close(ws->io.fd, ws->tp, false);
    else
        sq__tp_free(ws->tp, true); /* the caller closes the fd */
    ws_free(ws);
}

static void release_cb(void *arg)
{
    sq_ws *ws = arg;
    ws->cb_pending = false;
    ws_release(ws);
}

/* Run ws_release from the loop (once queued, nothing frees the connection before it ran). */
static void defer_release(sq_ws *ws)
{
    if (!ws->cb_pending && sq_add_callback(ws->loop, release_cb, ws) == 0) ws->cb_pending = true;
}

/* Free a closed server connection once nothing of ours is using it, after on_close; free a
 * client connection whose sq_ws_free() had to be deferred. */
static void ws_release(sq_ws *ws)
{
    if (!ws->closed || ws->in_io || ws->coro || ws->cb_pending || ws->in_flush || ws->reading)
        return;
    if (!ws->cls) {
        if (ws->free_req) ws_free(ws);
        return;
    }
    if (!ws->notified) {
        ws->notified = true;
        if (ws->cls->on_close) {
            ws->in_io = true;
            ws->cls->on_close(ws);
            ws->in_io = false;
        }
    }
    ws_free(ws);
}

/* Leave a section entered with in_io set: send what was queued, update the watcher, and
 * free the connection if it closed meanwhile.  ws may be gone afterwards. */
static void ws_leave(sq_ws *ws, bool was)
{
    ws->in_io = was;
    if (was) return;
    if (!ws->closed) ws_flush(ws);
    ws_update_io(ws);
    ws_release(ws);
}

static void fail_writes(sq_ws *ws, int err)
{
    while (ws->wq_len) {
        sq_future *f = ws->wq[ws->wq_head].f;
        ws->wq_head++;
        ws->wq_len--;
        sq_future_set_error(f, err);
        sq_future_release(f);
    }
    ws->wq_head = 0;
}

/* Close the socket now (once).  The close code stays what the close handshake set, else
 * 1006. */
static void ws_drop(sq_ws *ws, int err)
{
    if (ws->closed) return;
    ws->closed = true;
    ws->error = err ? err : SQ_ECLOSED;
    if (!ws->close_code) ws->close_code = SQ_WS_CLOSE_ABNORMAL;
    sq__http_upgraded_remove(&ws->up);
    sq_io_stop(ws->loop, &ws->io);
    sq__tp_close(ws->io.fd, ws->tp, ws->abort_close);
    ws->tp = NULL;
    ws->io.fd = -1;
    timers_stop(ws);
    sq__ws_pool_give(ws->rx.pool, &ws->out);
    ws->opos = 0;
    free(ws->pend);
    ws->pend = NULL;
    ws->pend_off = ws->pend_len = 0;
    free(ws->pong);
    ws->pong = NULL;
    if (ws->tx) sq__ws_tx_free(ws->tx);
    /* done callbacks run here: one may free a client connection (sq_ws_free sees in_io and
     * defers) */
    bool was = ws->in_io;
    ws->in_io = true;
    fail_writes(ws, SQ_ECLOSED);
    ws->in_io = was;
    if (ws->reader) {
        sq_coro *r = ws->reader;
        ws->reader = NULL;
        sq_coro_wake(r);
    }
    /* on_close never runs inside a caller's send (a broadcast loop would see its list
     * change under it): from a plain call it runs on the next loop pass */
    if (!ws->in_io && !ws->coro && !ws->in_flush && (ws->cls || ws->free_req)) defer_release(ws);
}

/* --- timers ------------------------------------------------------------------------------------
 */

static int timers_get(sq_ws *ws);

static void close_timer_cb(sq_loop *loop, sq_timer *t)
{
    sq_ws *ws = t->data;
    bool was = ws->in_io;
    ws->in_io = true;
    ws_drop(ws, -ETIMEDOUT);
    ws_leave(ws, was);
}

static void arm_close_timer(sq_ws *ws, double seconds)
{
    if (timers_get(ws) < 0) return;
    sq_timer_start(&ws->tm->close_t, seconds, 0);
}

static int queue_frame(sq_ws *ws, unsigned op, const void *data, size_t len, bool compress);
static int64_t acked_bytes(const sq_ws *ws);
static bool output_outstanding(const sq_ws *ws);

/* No frame is read by our own doing: a message waits for its handler (on_message is
 * running, the client's user holds the last one, input after it is not parsed yet), or our
 * backpressure (rpaused). */
static bool rx_held(const sq_ws *ws)
{
    return ws->coro || ws->msg_ready || ws->delivered || ws->pend_off < ws->pend_len || ws->rpaused;
}

static void ping_timer_cb(sq_loop *loop, sq_timer *t)
{
    sq_ws *ws = t->data;
    ws_timers *tm = ws->tm;
    if (ws->closed || ws->close_sent) return;
    double interval = ws->set->ping_interval;
    double timeout = ws->set->ping_timeout > 0 ? ws->set->ping_timeout
                     : 3 * interval > 30       ? 3 * interval
                                               : 30;
    uint64_t now = sq_loop_now_ns(loop), to_ns = sq__sec_to_ns(timeout);
    bool was = ws->in_io;
    ws->in_io = true;
    double next = interval;
    /* While we do not read (a handler busy with a message, our backpressure), the peer's
     * pong may sit unread: not its fault.  And our ping may wait behind our own output: a
     * peer still taking it is alive.  Whether it takes our bytes at all is the write
     * deadline's business. */
    if (rx_held(ws)) tm->last_rx = now;
    if (output_outstanding(ws)) {
        int64_t a = acked_bytes(ws);
        if (a >= 0 && (uint64_t)a != tm->ping_acked) tm->last_rx = now;
        if (a >= 0) tm->ping_acked = (uint64_t)a;
    }
    if (tm->ping_sent && tm->last_rx < tm->ping_sent) {
        if (now - tm->ping_sent >= to_ns) {
            sq_log(SQ_LOG_INFO, "websocket: no answer to a ping from %s for %.1f s: closing",
                   ws->remote_ip[0] ? ws->remote_ip : "the server", timeout);
            ws_drop(ws, -ETIMEDOUT);
            ws_leave(ws, was);
            return;
        }
    } else {
        queue_frame(ws, SQ__WS_OP_PING, NULL, 0, false);
        tm->ping_sent = now;
    }
    double left = (double)(tm->ping_sent + to_ns - now) / 1e9;
    if (left < next) next = left > 0.001 ? left : 0.001;
    sq_timer_start(&tm->ping_t, next, 0);
    ws_leave(ws, was);
}

/* Bytes of ours the peer has acknowledged, from the kernel (TCP); -1 for other sockets. */
static int64_t acked_bytes(const sq_ws *ws)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(ws->io.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked)
        return -1;
    return (int64_t)ti.tcpi_bytes_acked;
}

/* Output still on its way: in our buffer or in the kernel's (sent, not yet acknowledged). */
static bool output_outstanding(const sq_ws *ws)
{
    if (ws->opos < ws->out.len) return true;
    int q = 0;
    return ioctl(ws->io.fd, SIOCOUTQ, &q) == 0 && q > 0;
}

/* Every write_timeout while output is outstanding: has the peer taken any of it?  On TCP
 * the measure is the kernel's count of acknowledged bytes, not our buffer: a peer that
 * makes us answer (pings) without reading fills the kernel's buffer (megabytes on a fast
 * link) long before ours, and would otherwise look busy for as long. */
static void write_timer_cb(sq_loop *loop, sq_timer *t)
{
    sq_ws *ws = t->data;
    if (ws->closed || !output_outstanding(ws)) return; /* all delivered: idle again */
    int64_t acked = acked_bytes(ws);
    bool moved = acked >= 0 ? (uint64_t)acked != ws->tm->acked : ws->tm->progress;
    if (acked >= 0) ws->tm->acked = (uint64_t)acked;
    ws->tm->progress = false;
    double to = write_timeout(ws);
    if (moved) {
        sq_timer_start(&ws->tm->write_t, to, 0);
        return;
    }
    sq_log(SQ_LOG_DEBUG, "websocket: %s took none of our output for %.1f s: dropping it",
           ws->remote_ip[0] ? ws->remote_ip : "the peer", to);
    bool was = ws->in_io;
    ws->in_io = true;
    ws->abort_close = true; /* the kernel drops what the peer never took */
    ws_drop(ws, -ETIMEDOUT);
    ws_leave(ws, was);
}

static int timers_get(sq_ws *ws)
{
    if (ws->tm) return 0;
    ws->tm = calloc(1, sizeof *ws->tm);
    if (!ws->tm) return -ENOMEM;
    sq_timer_init(ws->loop, &ws->tm->close_t, close_timer_cb, ws);
    sq_timer_init(ws->loop, &ws->tm->ping_t, ping_timer_cb, ws);
    sq_timer_init(ws->loop, &ws->tm->write_t, write_timer_cb, ws);
    return 0;
}

/* After a flush that sent or left something: make sure the write timer runs.  Lazily: it
 * is armed once and only looks at progress when it fires, so a busy connection costs no
 * timer work per message. */
static void write_deadline(sq_ws *ws, bool progress)
{
    if (!progress && ws->opos == ws->out.len) return;
    if (!(write_timeout(ws) > 0) || timers_get(ws) < 0) return;
    if (progress) ws->tm->progress = true;
    if (!sq_timer_active(&ws->tm->write_t)) {
        int64_t acked = acked_bytes(ws);
        ws->tm->acked = acked >= 0 ? (uint64_t)acked : 0;
        ws->tm->progress = false;
        sq_timer_start(&ws->tm->write_t, write_timeout(ws), 0);
    }
}

static void start_pings(sq_ws *ws)
{
    if (!(ws->set->ping_interval > 0) || timers_get(ws) < 0) return;
    ws->tm->last_rx = sq_loop_now_ns(ws->loop);
    sq_timer_start(&ws->tm->ping_t, ws->set->ping_interval, 0);
}

/* --- output ---------------------------------------------------------------------------------- */

static void ws_update_io(sq_ws *ws)
{
    if (ws->closed) return;
    unsigned ev = 0;
    if (ws->lingering || (!ws->input_done && !rx_held(ws))) ev |= SQ_READ;
    if (ws->opos < ws->out.len) ev |= SQ_WRITE;
    ev = sq__tp_poll(ws->tp, ev); /* TLS: a record half written, bytes OpenSSL holds */
    if (ev == ws->io.events && ws->io.sq__registered) return;
    if (ev)
        sq_io_start(ws->loop, &ws->io, ev);
    else
        sq_io_stop(ws->loop, &ws->io);
}

/* The close handshake is over on our side: shut the write side once the close frame is
 * out, then wait (bounded) for the peer's EOF, so that no unread input turns our close
 * into a reset that could destroy the close frame in flight. */
static void maybe_linger(sq_ws *ws)
{
    if (ws->closed || ws->lingering || !ws->input_done || !ws->close_sent) return;
    if (ws->opos < ws->out.len) return;
    ws->lingering = true;
    sq__tp_shutdown(ws->io.fd, ws->tp);
    double t = close_timeout(ws);
    if (ws->close_rcvd && t > 2.0) t = 2.0;
    arm_close_timer(ws, t);
    ws_update_io(ws);
}

/* Queue one pong for the latest of the pings read since the last one (RFC 6455 5.5.3
 * allows it): a ping flood cannot queue a pong per ping.  Done before a message is handed
 * over (so a pong is not queued behind the answer to a later message) and before a send. */
static void queue_pong(sq_ws *ws)
{
    if (!ws->pong) return;
    if (!ws->close_sent && !ws->closed)
        queue_frame(ws, SQ__WS_OP_PONG, ws->pong + 1, ws->pong[0], false);
    free(ws->pong);
    ws->pong = NULL;
}

static void ws_flush(sq_ws *ws)
{
    if (ws->closed || ws->in_flush) return;
    ws->in_flush = true;
    queue_pong(ws);
    bool progress = false;
    for (;;) {
        while (ws->opos < ws->out.len) {
            ssize_t n = sq__tp_write(ws->io.fd, ws->tp, ws->out.ptr + ws->opos,
                                     ws->out.len - ws->opos, true);
            if (n > 0) {
                ws->opos += (size_t)n;
                progress = true;
                continue;
            }
            if (n == -EAGAIN) break;
            ws->in_flush = false;
            ws_drop(ws, n < 0 ? (int)n : -EPIPE);
            return;
        }
        uint64_t done = ws->out_base + ws->opos;
        if (ws->opos == ws->out.len) {
            ws->out_base += ws->out.len;
            sq__ws_pool_give(ws->rx.pool, &ws->out); /* idle connections keep no buffer */
            ws->opos = 0;
        }
        bool resolved = false;
        while (ws->wq_len && ws->wq[ws->wq_head].end <= done && !ws->closed) {
            sq_future *f = ws->wq[ws->wq_head].f;
            ws->wq_head++;
            if (--ws->wq_len == 0) ws->wq_head = 0;
            sq_future_set_result(f, NULL); /* callbacks may queue more */
            sq_future_release(f);
            resolved = true;
        }
        if (ws->closed) {
            ws->in_flush = false;
            if (!ws->in_io && !ws->coro && (ws->cls || ws->free_req)) defer_release(ws);
            return;
        }
        if (!resolved || ws->opos == ws->out.len) break;
    }
    ws->in_flush = false;
    /* A server stops reading a peer it cannot write to; a client does not (it is the one
     * waiting for answers: pausing both ends could deadlock them). */
    size_t pending = ws->out.len - ws->opos, hw = high_water(ws);
    if (pending > hw && ws->cls)
        ws->rpaused = true;
    else if (pending <= hw / 2)
        ws->rpaused = false;
    write_deadline(ws, progress);
    maybe_linger(ws);
    ws_update_io(ws);
}

static void kick_flush(sq_ws *ws)
{
    if (!ws->in_io && !ws->in_flush) ws_flush(ws);
}

static int queue_frame(sq_ws *ws, unsigned op, const void *data, size_t len, bool compress)
{
    uint8_t mask[4], *mp = NULL;
    if (ws->rx.client) {
        uint32_t r = (uint32_t)sq__ws_rand();
        memcpy(mask, &r, 4);
        mp = mask;
    }
    /* a pooled buffer, or one of the pooled size (so that it can go back there) */
    if (!ws->out.ptr && !sq__ws_pool_take(ws->rx.pool, &ws->out))
        sq__buf_reserve(&ws->out, SQ__WS_POOL_BUF);
    if (compress && ws->tx && ws->tx->bits >= 9) {
        sq__buf z = {0};
        int e = sq__ws_tx_compress(ws->tx, data, len, &z);
        if (e == 0) e = sq__ws_encode(&ws->out, op, true, true, z.ptr, z.len, mp);
        sq__buf_free(&z);
        return e;
    }
    return sq__ws_encode(&ws->out, op, true, false, data, len, mp);
}

static int push_future(sq_ws *ws, sq_future *f)
{
    if (ws->wq_head + ws->wq_len == ws->wq_cap) {
        if (ws->wq_head) {
            memmove(ws->wq, ws->wq + ws->wq_head, ws->wq_len * sizeof *ws->wq);
            ws->wq_head = 0;
        } else {
            uint32_t cap = ws->wq_cap ? ws->wq_cap * 2 : 4;
            ws_wq *p = realloc(ws->wq, cap * sizeof *p);
            if (!p) return -ENOMEM;
            ws->wq = p;
            ws->wq_cap = cap;
        }
    }
    ws->wq[ws->wq_head + ws->wq_len++] = (ws_wq){ws->out_base + ws->out.len, f};
    return 0;
}

int sq_ws_send(sq_ws *ws, const void *data, size_t len, bool binary)
{
    if (ws->closed || ws->close_sent) return SQ_ECLOSED;
    int e = queue_frame(ws, binary ? SQ__WS_OP_BINARY : SQ__WS_OP_TEXT, data, len, true);
    if (e < 0) return e;
    kick_flush(ws);
    if (ws->closed) return 0; /* sent what it could; the drop is reported elsewhere */
    if (sq_ws_pending(ws) > high_water(ws)) {
        if (ws->cls) ws->rpaused = true; /* read no more until it drains (in_io may defer) */
        return 1;
    }
    return 0;
}

sq_future *sq_ws_write_message(sq_ws *ws, const void *data, size_t len, bool binary)
{
    sq_future *f = sq_future_new(ws->loop);
    if (!f) return NULL;
    int e = ws->closed || ws->close_sent
                ? SQ_ECLOSED
                : queue_frame(ws, binary ? SQ__WS_OP_BINARY : SQ__WS_OP_TEXT, data, len, true);
    if (e == 0) {
        e = push_future(ws, sq_future_retain(f));
        if (e < 0) sq_future_release(f); /* the queue's reference */
    }
    if (e < 0) {
        sq_future_set_error(f, e);
        return f;
    }
    kick_flush(ws);
    return f;
}

int sq_ws_write(sq_ws *ws, const void *data, size_t len, bool binary)
{
    int e = sq_ws_send(ws, data, len, binary);
    if (e < 0) return e;
    if (e == 0 || !sq_in_coro()) return 0;
    /* over high_water: wait until everything queued so far reached the kernel */
    sq_future *f = sq_future_new(ws->loop);
    if (!f) return -ENOMEM;
    if (push_future(ws, sq_future_retain(f)) < 0) {
        sq_future_release(f);
        sq_future_release(f);
        return -ENOMEM;
    }
    return (int)sq_await(f, NULL);
}

int sq_ws_ping(sq_ws *ws, const void *data, size_t len)
{
    if (len > 125) return -EINVAL;
    if (ws->closed || ws->close_sent) return SQ_ECLOSED;
    int e = queue_frame(ws, SQ__WS_OP_PING, data, len, false);
    if (e < 0) return e;
    kick_flush(ws);
    return 0;
}

static int send_close(sq_ws *ws, unsigned code, const char *reason, size_t rlen)
{
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (rlen) memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    ws->close_sent = true;
    return queue_frame(ws, SQ__WS_OP_CLOSE, p, n, false);
}

int sq_ws_close(sq_ws *ws, int code, const char *reason)
{
    if (ws->closed || ws->close_sent) return -EALREADY;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123 || !sq__utf8_valid(reason, rlen)) return -EINVAL; /* peers fail it (1007) */
    if (code && (code < 0 || !sq__ws_close_code_valid((unsigned)code))) return -EINVAL;
    if (!code && reason) code = SQ_WS_CLOSE_NORMAL;
    int e = send_close(ws, (unsigned)code, reason, rlen);
    if (e < 0) return e;
    arm_close_timer(ws, close_timeout(ws));
    kick_flush(ws);
    return 0;
}

/* --- input ------------------------------------------------------------------------------------ */

/* A peer's protocol violation is its problem, not the server's: at debug level, and at
 * most one line a second per thread (with the count of those not logged), so a flood of
 * bad frames cannot flood the log. */
static void log_violation(const sq_ws *ws, unsigned code)
{
    static __thread uint64_t last_ns;
    static __thread unsigned suppressed;
    uint64_t now = sq_loop_now_ns(ws->loop);
    if (last_ns && now - last_ns < 1000000000u) {
        suppressed++;
        return;
    }
    last_ns = now;
    if (suppressed)
        sq_log(SQ_LOG_DEBUG, "websocket: closing %s with %u (protocol violation; %u more since)",
               ws->remote_ip[0] ? ws->remote_ip : "the connection", code, suppressed);
    else
        sq_log(SQ_LOG_DEBUG, "websocket: closing %s with %u (protocol violation)",
               ws->remote_ip[0] ? ws->remote_ip : "the connection", code);
    suppressed = 0;
}

/* Handle a parser event other than a message. */
static void on_event(sq_ws *ws, int ev)
{
    sq__ws_rx *rx = &ws->rx;
    switch (ev) {
    case SQ__WS_EV_PING:
        if (!ws->close_sent) {
            if (!ws->pong) ws->pong = malloc(1 + sizeof rx->ctrl);
            if (!ws->pong) {
                ws_drop(ws, -ENOMEM);
                return;
            }
            ws->pong[0] = rx->clen;
            memcpy(ws->pong + 1, rx->ctrl, rx->clen);
        }
        if (ws->cls && ws->cls->on_ping) ws->cls->on_ping(ws, (const char *)rx->ctrl, rx->clen);
        break;
    case SQ__WS_EV_PONG:
        if (ws->cls && ws->cls->on_pong) ws->cls->on_pong(ws, (const char *)rx->ctrl, rx->clen);
        break;
    case SQ__WS_EV_CLOSE:
        ws->close_rcvd = true;
        ws->input_done = true;
        ws->close_code = rx->close_code;
        free(ws->close_reason);
        ws->close_reason = rx->clen > 2 ? strndup((const char *)rx->ctrl + 2, rx->clen - 2u) : NULL;
        if (!ws->close_sent) {
            /* echo the code (none for 1005) */
            unsigned code = rx->close_code == SQ_WS_CLOSE_NO_STATUS ? 0 : rx->close_code;
            send_close(ws, code, NULL, 0);
        }
        maybe_linger(ws);
        break;
    case SQ__WS_EV_ERROR:
        ws->input_done = true;
        if (!ws->close_sent) {
            ws->close_code = rx->error;
            send_close(ws, rx->error, NULL, 0);
        }
        log_violation(ws, rx->error);
        maybe_linger(ws);
        break;
    }
}

/* Feed bytes to the parser until a whole message is ready (then true; what follows it is
 * kept in pend unless it already comes from there). */
static bool feed(sq_ws *ws, uint8_t *data, size_t len, bool from_pend)
{
    size_t off = 0;
    while (off < len && !ws->closed && !ws->input_done) {
        size_t used = 0;
        int ev = sq__ws_rx_feed(&ws->rx, data + off, len - off, &used);
        off += used;
        if (ev == SQ__WS_EV_NONE) continue;
        if (ev == SQ__WS_EV_MESSAGE) {
            if (ws->cls && !ws->cls->on_message) {
                sq__ws_rx_msg_done(&ws->rx);
                continue;
            }
            ws->msg_ready = true;
            break;
        }
        on_event(ws, ev);
    }
    if (from_pend) {
        ws->pend_off += (uint32_t)off;
        if (ws->pend_off >= ws->pend_len || ws->closed || ws->input_done) {
            free(ws->pend);
            ws->pend = NULL;
            ws->pend_off = ws->pend_len = 0;
        }
    } else if (off < len && ws->msg_ready && !ws->closed) {
        uint8_t *p = malloc(len - off);
        if (!p) {
            ws_drop(ws, -ENOMEM);
            return false;
        }
        memcpy(p, data + off, len - off);
        ws->pend = p;
        ws->pend_off = 0;
        ws->pend_len = (uint32_t)(len - off);
    }
    return ws->msg_ready;
}

static bool feed_pend(sq_ws *ws)
{
    if (ws->msg_ready) return true;
    if (!ws->pend) return false;
    return feed(ws, ws->pend + ws->pend_off, ws->pend_len - ws->pend_off, true);
}

/* Server: run on_message for the ready message and then for every whole message in pend. */
static void *msg_task(void *arg)
{
    sq_ws *ws = arg;
    while (!ws->closed && feed_pend(ws)) {
        ws->msg_ready = false;
        ws->cls->on_message(ws, ws->rx.msg.ptr, ws->rx.msg.len, ws->rx.msg_binary);
        sq__ws_rx_msg_done(&ws->rx);
        bool more = !ws->closed && (ws->pend || ws->msg_ready);
        /* (the clock only every 8th message: cheap) */
        if (more &&
            (++ws->burst >= MSGS_PER_PASS ||
             ((ws->burst & 7) == 0 && sq__mono_ns() - sq_loop_now_ns(ws->loop) > PASS_NS))) {
            sq_yield(); /* the rest of this peer's messages at the next loop pass */
            ws->burst = 0;
        }
    }
    ws->msg_ready = false;
    ws->coro = NULL;
    if (!ws->in_io) {
        ws->in_io = true;
        ws_leave(ws, false);
    }
    return NULL;
}

static void start_task(sq_ws *ws)
{
    sq_coro *c = sq_coro_create(ws->loop, msg_task, ws);
    if (!c) {
        ws->msg_ready = false;
        sq__ws_rx_msg_done(&ws->rx);
        ws->input_done = true;
        if (!ws->close_sent) {
            ws->close_code = SQ_WS_CLOSE_INTERNAL_ERROR;
            send_close(ws, SQ_WS_CLOSE_INTERNAL_ERROR, NULL, 0);
        }
        maybe_linger(ws);
        return;
    }
    sq_coro_set_name(c, "websocket message");
    ws->coro = c;
    if (sq_in_coro())
        sq_coro_wake(c);
    else
        sq_coro_resume(c);
}

/* A message is ready (or pend holds input): hand it over. */
static void dispatch(sq_ws *ws)
{
    if (ws->closed || ws->coro) return;
    queue_pong(ws);
    if (ws->cls) {
        if (ws->msg_ready || (ws->pend && !ws->input_done)) start_task(ws);
    } else if (ws->msg_ready && ws->reader) {
        sq_coro *r = ws->reader;
        ws->reader = NULL;
        sq_coro_wake(r);
    }
}

static void on_readable(sq_ws *ws)
{
    ws->burst = 0;
    for (int i = 0; i < READS_MAX && !ws->closed; i++) {
        if (!ws->lingering && (ws->input_done || ws->coro || ws->msg_ready || ws->delivered ||
                               ws->pend || ws->rpaused))
            break;
        ssize_t n = sq__tp_read(ws->io.fd, ws->tp, scratch, SCRATCH);
        if (n > 0) {
            if (ws->tm) ws->tm->last_rx = sq_loop_now_ns(ws->loop);
            if (ws->lingering) continue; /* discarded */
            if (feed(ws, scratch, (size_t)n, false)) dispatch(ws);
            if ((size_t)n < SCRATCH) break;
            continue;
        }
        if (n == 0) {
            ws_drop(ws, ws->lingering || ws->close_rcvd ? 0 : SQ_ECLOSED);
            return;
        }
        if (n != -EAGAIN) ws_drop(ws, (int)n);
        return;
    }
}

static void ws_io(sq_loop *loop, sq_io *io, unsigned events)
{
    sq_ws *ws = io->data;
    bool was = ws->in_io;
    ws->in_io = true;
    events = sq__tp_ready(ws->tp, events);
    if (events & SQ_WRITE) ws_flush(ws);
    if (!ws->closed && (events & (SQ_READ | SQ_HUP | SQ_ERROR))) on_readable(ws);
    ws_leave(ws, was);
}

/* --- setup -------------------------------------------------------------------------------------
 */

int sq__ws_set_deflate(sq_ws *ws, const sq__ws_pmd *pmd)
{
    sq__ws_tx *tx = calloc(1, sizeof *tx);
    if (!tx) return -ENOMEM;
    bool server = ws->cls != NULL;
    uint8_t mine = server ? pmd->server_bits : pmd->client_bits;
    int want = ws->set->max_window_bits >= 8 && ws->set->max_window_bits < 15
                   ? ws->set->max_window_bits
                   : 15;
    if (want == 8) want = 9; /* zlib has no 8-bit raw window */
    if (want < mine) mine = (uint8_t)want;
    /* an 8-bit window is beyond zlib: such a side sends its messages uncompressed */
    tx->bits = mine >= 9 ? mine : 0;
    tx->level = ws->set->compression_level;
    tx->no_ctx = (server ? pmd->server_no_ctx : pmd->client_no_ctx) || ws->set->no_context_takeover;
    ws->tx = tx;
    ws->rx.deflate = true;
    ws->rx.inflate_bits = server ? pmd->client_bits : pmd->server_bits;
    ws->rx.inflate_no_ctx = server ? pmd->client_no_ctx : pmd->server_no_ctx;
    return 0;
}

void sq__ws_set_subprotocol(sq_ws *ws, char *proto)
{
    free(ws->subprotocol);
    ws->subprotocol = proto;
}

void sq__ws_set_remote_ip(sq_ws *ws, const char *ip)
{
    snprintf(ws->remote_ip, sizeof ws->remote_ip, "%s", ip ? ip : "");
}

int sq__ws_set_initial(sq_ws *ws, const char *data, size_t len)
{
    if (!len) return 0;
    uint8_t *p = malloc(len);
    if (!p) return -ENOMEM;
    memcpy(p, data, len);
    free(ws->pend);
    ws->pend = p;
    ws->pend_off = 0;
    ws->pend_len = (uint32_t)len;
    return 0;
}

/* The HTTP server shuts down gracefully: the close handshake with 1001 (going away); the
 * server waits for it up to its deadline, then aborts. */
static void up_shutdown(sq__http_upgraded *u)
{
    sq_ws *ws = (sq_ws *)((char *)u - offsetof(sq_ws, up));
    if (!ws->closed && !ws->close_sent) sq_ws_close(ws, SQ_WS_CLOSE_GOING_AWAY, "server shutdown");
}

static void up_abort(sq__http_upgraded *u)
{
    sq_ws *ws = (sq_ws *)((char *)u - offsetof(sq_ws, up));
    bool was = ws->in_io;
    ws->in_io = true;
    ws_drop(ws, SQ_ECLOSED);
    ws_leave(ws, was);
}

static const sq__http_upgraded_ops up_ops = {.shutdown = up_shutdown, .abort = up_abort};

void sq__ws_server_start(sq_ws *ws, sq_handler *h)
{
    sq__http_upgraded_add(sq_handler_request(h), &ws->up, &up_ops);
    ws->handler = h;
    /* open() may suspend and send: while it runs, the handshake coroutine stands where a
     * running on_message would (no frames are read, the connection is not freed), but the
     * output is flushed as usual (with in_io held, a sq_ws_write above high_water would
     * wait forever for a flush that never came) */
    ws->coro = sq_coro_self();
    start_pings(ws);
    if (ws->cls->open) ws->cls->open(ws);
    ws->handler = NULL;
    ws->coro = NULL;
    ws->in_io = true;
    if (!ws->closed && ws->pend && !ws->input_done)
        dispatch(ws); /* bytes sent with the handshake */
    ws_leave(ws, false);
}

void sq__ws_client_start(sq_ws *ws)
{
    start_pings(ws);
    ws_update_io(ws);
}

/* --- client reads ---------------------------------------------------------------------------- */

static ssize_t read_message(sq_ws *ws, const char **data, bool *binary)
{
    if (ws->delivered) {
        ws->delivered = false;
        sq__ws_rx_msg_done(&ws->rx);
    }
    bool was = ws->in_io;
    ws->in_io = true;
    if (!ws->closed) feed_pend(ws);
    ws_leave(ws, was); /* pongs out, reading on */
    while (!ws->msg_ready) {
        if (ws->closed) return SQ_ECLOSED;
        if (!sq_in_coro()) return SQ_ENOTCORO;
        ws->reader = sq_coro_self();
        ws_update_io(ws);
        sq_coro_suspend();
        if (ws->reader == sq_coro_self()) ws->reader = NULL;
    }
    ws->msg_ready = false;
    ws->delivered = true;
    *data = ws->rx.msg.ptr;
    if (binary) *binary = ws->rx.msg_binary;
    return (ssize_t)ws->rx.msg.len;
}

ssize_t sq_ws_read_message(sq_ws *ws, const char **data, bool *binary)
{
    *data = "";
    if (binary) *binary = false;
    if (ws->cls) return -EINVAL;
    if (ws->reader || ws->reading) return SQ_EBUSY_READ;
    if (ws->free_req) return SQ_ECLOSED;
    ws->reading = true; /* sq_ws_free meanwhile (another coroutine, a callback) is deferred */
    ssize_t r = read_message(ws, data, binary);
    ws->reading = false;
    if (ws->free_req) {
        /* freed while we were suspended: the caller must not touch ws any more */
        *data = "";
        if (binary) *binary = false;
        defer_release(ws);
        return SQ_ECLOSED;
    }
    return r;
}

void sq_ws_free(sq_ws *ws)
{
    if (!ws) return;
    if (ws->cls) return;      /* server connections free themselves after on_close */
    if (ws->free_req) return; /* again from a done callback run by this very call */
    ws->free_req = true;
    bool was = ws->in_io;
    ws->in_io = true;
    if (!ws->closed) {
        if (!ws->close_sent) send_close(ws, SQ_WS_CLOSE_NORMAL, NULL, 0);
        ws_flush(ws);
        ws_drop(ws, 0);
    }
    ws->in_io = was;
    /* called from inside the connection (a done callback while we resolve futures) or
     * while a read is suspended: free it once that has unwound */
    if (ws->in_io || ws->in_flush || ws->reading || ws->cb_pending) {
        defer_release(ws);
        return;
    }
    ws_free(ws);
}

/* --- accessors ----------------------------------------------------------------------------------
 */

int sq_ws_close_code(const sq_ws *ws)
{
    return ws->closed || ws->close_rcvd || ws->input_done ? ws->close_code : 0;
}

const char *sq_ws_close_reason(const sq_ws *ws)
{
    return ws->close_reason ? ws->close_reason : "";
}

bool sq_ws_closed(const sq_ws *ws)
{
    return ws->closed;
}

const char *sq_ws_subprotocol(const sq_ws *ws)
{
    return ws->subprotocol;
}

bool sq_ws_compressed(const sq_ws *ws)
{
    return ws->tx != NULL;
}

size_t sq_ws_pending(const sq_ws *ws)
{
    return ws->out.len - ws->opos;
}

sq_loop *sq_ws_loop(const sq_ws *ws)
{
    return ws->loop;
}

void *sq_ws_state(sq_ws *ws)
{
    return ws->cls && ws->cls->state_size ? ws->state : NULL;
}

void *sq_ws_class_arg(const sq_ws *ws)
{
    return ws->cls ? ws->cls->arg : NULL;
}

sq_handler *sq_ws_handler(sq_ws *ws)
{
    return ws->handler;
}

const char *sq_ws_remote_ip(const sq_ws *ws)
{
    return ws->remote_ip;
}

void *sq_ws_get_data(const sq_ws *ws)
{
    return ws->data;
}

void sq_ws_set_data(sq_ws *ws, void *data)
{
    ws->data = data;
}

size_t sq__ws_sizeof(void)
{
    return sizeof(struct sq_ws);
}
