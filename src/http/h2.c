/* HTTP/2 on a server connection (nghttp2 does the framing, HPACK and flow control).
 *
 * A connection switches to HTTP/2 when TLS chose "h2" by ALPN, or when a plain connection
 * starts with the client preface (h2c by prior knowledge).  From then on its bytes still
 * take the connection's one path — sq__tp_read into nghttp2_session_mem_recv, and
 * nghttp2_session_mem_send into the connection's output buffer, written by
 * sq__http_conn_write with its backpressure and write deadline — and every stream is a
 * request of its own: an sq__http_req embedded in the stream, served by the server's handler
 * on its own coroutine, so the streams of a connection proceed concurrently.  The request
 * API (sq_http_read_body, sq_http_flush, sq_http_sendfile, sq_http_finish) branches here for
 * such requests; headers, status and body buffering are shared with HTTP/1.1.
 *
 * Memory stays bounded: a response body waits in its stream's buffer only up to the write
 * high-water mark (the handler suspends above it, as with HTTP/1.1); a request body waits
 * in its stream's buffer only up to the stream's window (H2_WINDOW), credited back as the
 * handler takes it (the connection's window as the bytes arrive, so that an unread body
 * holds back its own stream only); nothing is read while the output is above the
 * high-water mark; nghttp2 bounds queued control frames (PING and SETTINGS floods),
 * CONTINUATION frames and stream resets (rapid reset). */
#define _GNU_SOURCE
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http/http_internal.h"

#define H2_READ_BUF    (16u * 1024) /* bytes read per call (on the stack) */
#define H2_READS_MAX   8            /* reads per IO callback: others get their turn */
#define H2_FILE_CHUNK  (64u * 1024) /* sq_http_sendfile reads the file this much at a time */
#define H2_WINDOW      (256u * 1024) /* each stream's receive window */
#define H2_CONN_WINDOW (1u << 20)    /* the connection's */
/* Request-body bytes a connection's streams may hold unread before the connection's window
 * stops being credited on arrival: the bound on what a peer can make one connection buffer
 * (this + H2_CONN_WINDOW), which streams x H2_WINDOW (32 MiB at 128 streams) is not. */
#define H2_UNREAD_MAX   (4u << 20)
#define H2_POOL_BUF    (16u * 1024)  /* a finished stream is kept for reuse with buffers up to this */
#define H2_START_BATCH 32            /* handlers started inline after one read (more: woken) */
#define H2_RESETS_BURST 200          /* stream resets allowed at once … */
#define H2_RESETS_RATE  33           /* … and per second after that (nginx/h2o-like) */
#define H2_MAP_MIN      (16u * 1024) /* nghttp2 buffers this big get pages of their own … */
#define H2_MAPS         4            /* … this many at a time per session (more: the heap) */
#define H2_LINGER_TICK  0.05         /* lingering: checking this often whether the peer took all */

typedef struct sq__h2_stream sq__h2_stream;

struct sq__h2 {
    sq_http_conn *c;
    sq_loop *loop;
    nghttp2_session *ng;
    sq__h2_stream *streams; /* every stream object not yet freed */
    unsigned nopen;         /* streams nghttp2 has open */
    unsigned nheads;        /* streams whose header block is not complete yet */
    unsigned max_streams;   /* SETTINGS_MAX_CONCURRENT_STREAMS */
    unsigned ncoros;        /* streams whose handler still runs (or is detached) */
    size_t unread;          /* request-body bytes buffered in streams, not taken yet */
    size_t conn_owed;       /* received, not yet credited back to the connection's window */
    unsigned out_streams;   /* streams with response bytes waiting for the peer's window */
    uint64_t progress_ns;   /* when the last DATA bytes were taken (by any stream) */
    bool in_io;             /* inside the IO callback: it sends when it is done */
    sq_call *send_call;     /* a send at the end of this loop pass (the streams' output) */
    sq_coro *start[H2_START_BATCH]; /* handlers the last read started, run after it */
    unsigned nstart;
    bool goaway;            /* GOAWAY sent: close once the streams are done */
    int32_t last_sid;       /* the last stream the peer opened that we took */
    uint64_t linger_until;  /* lingering before the close (c->lingering): until then at most */
    int linger_unacked;     /* what the peer had not acknowledged at the last look */
    sq__h2_map maps[H2_MAPS]; /* nghttp2's buffers on pages of their own (h2_map) */
};

struct sq__h2_stream {
    sq__http_req r; /* first: a stream is its request */
    sq__h2 *h2;
    sq__h2_stream *prev, *next;
    int32_t id;
    sq_coro *coro;   /* the handler's coroutine (NULL once it returned) */
    sq_coro *waiter; /* the handler, suspended for body bytes or for the window */
    bool waiter_writes;
    bool open;        /* nghttp2 knows the stream */
    bool started;     /* the handler was started */
    bool in_done;     /* the request body is complete */
    bool submitted;   /* the response head is submitted */
    bool out_eof;     /* the response body is complete */
    bool deferred;    /* nghttp2 waits for resume_data */
    bool counted_out; /* counted in h2->out_streams */
    bool counted_head;  /* counted in h2->nheads (its header block is still coming) */
    bool end_sent;      /* the response's last frame (END_STREAM) went out */
    bool rst_after_end; /* then reset the stream: its request body is not wanted */
    bool done;        /* stream_complete ran (the response is over for us) */
    bool holding;     /* inside its on_close callback: not freed under it */
    int in_error;
    int out_error;        /* the write timeout reset it (-ETIMEDOUT): its writes fail so */
    uint64_t progress_ns; /* counted_out: when its output last moved (or began to wait) */
    sq__buf hb; /* the header block: name\0value\0 pairs, pseudo-headers first */
    uint32_t *hoff; /* offsets in hb of each regular header's name (its value follows) */
    size_t nh, hcap;
    size_t hsize; /* header list size (RFC 7541 4.1), for max_header_size */
    int32_t pm, pp, pa; /* offsets of the :method, :path and :authority values (-1) */
    sq__buf in;             /* request body bytes not yet taken */
    size_t in_off;
    size_t unconsumed; /* received, not yet given back to the peer's window */
    sq__buf out;       /* response bytes nghttp2 has not taken yet */
    size_t out_off;
};

static void h2_send(sq__h2 *h2);
static void stream_maybe_free(sq__h2_stream *st);

static inline sq__h2_stream *as_stream(sq__http_req *r)
{
    return (sq__h2_stream *)r;
}

static size_t high_water(const sq__h2 *h2)
{
    return h2->c->srv ? h2->c->srv->s.write_high_water : SQ_HTTP_DEFAULT_WRITE_HIGH_WATER;
}


static void wake(sq__h2_stream *st)
{
    if (!st->waiter) return;
    sq_coro *w = st->waiter;
    st->waiter = NULL;
    sq_coro_wake(w);
}

/* --- stream objects ----------------------------------------------------------------------- */

static void stream_destroy(sq__h2_stream *st)
{
    sq__buf_free(&st->hb);
    free(st->hoff);
    sq__buf_free(&st->in);
    sq__buf_free(&st->out);
    sq__http_req_free_buffers(&st->r);
    free(st);
}

bool sq__h2_pool_trim(sq_http_server *srv, size_t keep, uint64_t until_ns)
{
    while (srv->nh2_pool > keep) stream_destroy(srv->h2_pool[--srv->nh2_pool]);
    while (srv->nh2_maps > keep) { /* a munmap costs tens of µs on a virtual machine */
        if (until_ns && sq__mono_ns() >= until_ns) return false;
        sq__h2_map *m = &srv->h2_maps[--srv->nh2_maps];
        munmap(m->p, m->len);
    }
    return true;
}

static void stream_unlink_free(sq__h2_stream *st)
{
    sq__h2 *h2 = st->h2;
    sq__inflate_free(&st->r); /* a pooled object is wiped: nothing may stay behind */
    if (st->prev)
        st->prev->next = st->next;
    else
        h2->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    if (st->counted_out) h2->out_streams--;
    if (st->counted_head) h2->nheads--;
    sq_http_server *srv = h2->c->srv;
    /* small enough to keep: the next stream reuses the object and its buffers */
    if (srv && srv->nh2_pool < SQ__HTTP_POOL && st->hb.cap <= H2_POOL_BUF &&
        st->in.cap <= H2_POOL_BUF && st->out.cap <= H2_POOL_BUF && st->r.body.cap <= H2_POOL_BUF &&
        st->r.hdrs.cap <= H2_POOL_BUF) {
        srv->h2_pool[srv->nh2_pool++] = st;
        return;
    }
    stream_destroy(st);
}

/* Free the stream once nghttp2 is done with it and its handler has returned. */
static void stream_maybe_free(sq__h2_stream *st)
{
    if (st->holding || st->open || st->coro || (st->started && !st->done)) return;
    sq_http_conn *c = st->h2->c;
    stream_unlink_free(st);
    /* the last stream of a closed connection: the connection can go */
    if (c->closed) sq__http_conn_release(c);
}

static sq__h2_stream *stream_new(sq__h2 *h2, int32_t id)
{
    sq_http_server *srv = h2->c->srv;
    sq__h2_stream *st;
    if (srv && srv->nh2_pool) {
        /* a pooled one: clean, but with the buffers (emptied) of its last life */
        st = srv->h2_pool[--srv->nh2_pool];
        sq__buf hb = st->hb, in = st->in, out = st->out, hdrs = st->r.hdrs, body = st->r.body,
                 reason = st->r.reason_buf;
        uint32_t *hoff = st->hoff;
        size_t hcap = st->hcap;
        sq_http_header *big = st->r.headers_big;
        memset(st, 0, sizeof *st);
        st->hb = hb;
        st->in = in;
        st->out = out;
        st->r.hdrs = hdrs;
        st->r.body = body;
        st->r.reason_buf = reason;
        st->hb.len = st->in.len = st->out.len = st->r.hdrs.len = st->r.body.len = 0;
        st->r.reason_buf.len = 0;
        st->hoff = hoff;
        st->hcap = hcap;
        st->r.headers_big = big;
    } else {
        st = calloc(1, sizeof *st);
        if (!st) return NULL;
    }
    st->h2 = h2;
    st->id = id;
    st->open = true;
    st->pm = st->pp = st->pa = -1;
    st->r.headers = st->r.headers_inline;
    st->r.h2 = true;
    st->next = h2->streams;
    if (h2->streams) h2->streams->prev = st;
    h2->streams = st;
    return st;
}

/* --- requests ------------------------------------------------------------------------------- */

static const char *hb_at(const sq__h2_stream *st, int32_t off)
{
    return off < 0 ? NULL : st->hb.ptr + off;
}

/* The stream's request from its header block: pseudo-headers into the request line's
 * fields, regular headers into the header array (as HTTP/1.1 requests have them). */
static int build_request(sq__h2_stream *st, bool end_stream)
{
    sq__h2 *h2 = st->h2;
    sq_http_conn *c = h2->c;
    sq_http_server *srv = c->srv;
    sq__http_req *r = &st->r;
    sq_http_request *q = &r->pub;
    const char *m = hb_at(st, st->pm), *p = hb_at(st, st->pp);
    if (!m || !p || !*p) return -EINVAL; /* (CONNECT without :path is not served) */
    if (st->nh > SQ__HTTP_INLINE_HEADERS) {
        if (st->nh > SQ_HTTP_DEFAULT_MAX_HEADERS) return -E2BIG;
        if (!r->headers_big)
            r->headers_big = calloc(SQ_HTTP_DEFAULT_MAX_HEADERS, sizeof *r->headers_big);
        if (!r->headers_big) return -ENOMEM;
        r->headers = r->headers_big;
    }
    int64_t clen = -1;
    for (size_t i = 0; i < st->nh; i++) {
        const char *name = st->hb.ptr + st->hoff[i];
        size_t nl = strlen(name);
        const char *value = name + nl + 1;
        r->headers[i] = (sq_http_header){name, nl, value, strlen(value)};
        if (nl == 14 && !memcmp(name, "content-length", 14)) {
            char *end;
            long long v = strtoll(value, &end, 10);
            if (*end || v < 0) return -EINVAL;
            clen = v;
        }
    }
    q->method = (sq_str){m, strlen(m)};
    q->uri = (sq_str){p, strlen(p)};
    const char *qm = strchr(p, '?');
    q->path = (sq_str){p, qm ? (size_t)(qm - p) : strlen(p)};
    q->query = qm ? (sq_str){qm + 1, strlen(qm + 1)} : (sq_str){p + strlen(p), 0};
    const char *a = hb_at(st, st->pa);
    if (a) {
        q->host = (sq_str){a, strlen(a)};
    } else {
        sq_str h = {NULL, 0};
        for (size_t i = 0; i < st->nh; i++)
            if (r->headers[i].name_len == 4 && !memcmp(r->headers[i].name, "host", 4))
                h = (sq_str){r->headers[i].value, r->headers[i].value_len};
        q->host = h;
    }
    q->version_major = 2;
    q->version_minor = 0;
    q->headers = r->headers;
    q->nheaders = st->nh;
    sq__http_set_remote_ip(c, r);
    q->protocol = c->tp ? "https" : "http";
    q->content_length = clen;
    q->chunked = false;
    q->keep_alive = true;
    q->start_time = sq_loop_time(srv->loop);
    q->conn = c;
    q->server = srv;
    q->data = NULL;
    r->is_head = q->method.len == 4 && !memcmp(m, "HEAD", 4);
    sq__http_resp_reset(r);
    if (srv->s.gzip) {
        sq_str ae = sq_http_header_get(q, "Accept-Encoding");
        r->accept_gzip = ae.ptr && strcasestr(ae.ptr, "gzip");
    }
    if (srv->s.xheaders) sq__http_apply_xheaders(c, r);
    r->has_body = !end_stream;
    r->body_done = end_stream;
    st->in_done = end_stream;
    r->active = true;
    return 0;
}

static void *stream_task(void *arg);
static void stream_gone(sq__h2_stream *st);

static void head_done(sq__h2_stream *st)
{
    if (!st->counted_head) return;
    st->counted_head = false;
    st->h2->nheads--;
}

static void start_stream(sq__h2_stream *st)
{
    sq__h2 *h2 = st->h2;
    sq_coro *co = sq_coro_create(h2->c->srv->loop, stream_task, st);
    if (!co) {
        nghttp2_submit_rst_stream(h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
        return;
    }
    sq_coro_set_name(co, "http2 stream");
    st->coro = co;
    st->started = true;
    h2->ncoros++;
    /* Never inside nghttp2's callbacks: the IO callback starts it right after this read
     * (run_started), so that the answers of every stream the read started go out in one
     * write; elsewhere it waits for its turn on the loop. */
    if (h2->in_io && h2->nstart < H2_START_BATCH) {
        h2->start[h2->nstart++] = co;
        return;
    }
    sq_coro_wake(co);
}

/* --- responses ------------------------------------------------------------------------------- */


/* Connection-specific headers have no place in HTTP/2 (RFC 9113 8.2.2). */
static bool hop_by_hop(const char *name, size_t n)
{
    return (n == 10 && !strncasecmp(name, "connection", n)) ||
           (n == 10 && !strncasecmp(name, "keep-alive", n)) ||
           (n == 17 && !strncasecmp(name, "transfer-encoding", n)) ||
           (n == 7 && !strncasecmp(name, "upgrade", n)) ||
           (n == 16 && !strncasecmp(name, "proxy-connection", n));
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    sq__h2_stream *st = src->ptr;
    sq__h2 *h2 = st->h2;
    size_t avail = st->out.len - st->out_off;
    size_t n = avail < length ? avail : length;
    if (n) {
        memcpy(buf, st->out.ptr + st->out_off, n);
        st->out_off += n;
        st->progress_ns = h2->progress_ns = sq_loop_now_ns(h2->loop);
        if (st->out_off == st->out.len) {
            st->out_off = st->out.len = 0;
            if (st->out.cap > SQ__HTTP_BUF_KEEP) sq__buf_free(&st->out);
        }
    }
    size_t left = st->out.len - st->out_off;
    if (!left && st->counted_out) {
        st->counted_out = false;
        h2->out_streams--;
    }
    if (st->waiter && st->waiter_writes && left <= high_water(h2) / 2) wake(st);
    if (!left && st->out_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (!n) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* The stream has response bytes waiting for nghttp2 (and so for the peer's window). */
static void count_out(sq__h2_stream *st)
{
    if (st->counted_out) return;
    st->counted_out = true;
    st->progress_ns = sq_loop_now_ns(st->h2->loop);
    st->h2->out_streams++;
}

/* Move what the handler wrote (r->body) to the stream's output, for nghttp2 to take. */
static int take_body(sq__h2_stream *st)
{
    sq__http_req *r = &st->r;
    if (!r->body.len) return 0;
    r->body_sent += r->body.len;
    if (!st->out.len) {
        sq__buf t = st->out; /* swap: no copy */
        st->out = r->body;
        r->body = t;
        r->body.len = 0;
        st->out_off = 0;
    } else {
        if (sq__buf_append(&st->out, r->body.ptr, r->body.len) < 0) return -ENOMEM;
        r->body.len = 0;
    }
    count_out(st);
    return 0;
}

static void nv_add(nghttp2_nv *nv, size_t *n, const char *name, size_t nl, const char *value,
                   size_t vl)
{
    nv[*n] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
    (*n)++;
}

/* Submit the response head.  `clen` >= 0: a content-length; -1: none (the end of the
 * stream ends the body). */
static int submit_head(sq__h2_stream *st, int64_t clen, bool gz, bool no_body)
{
    sq__h2 *h2 = st->h2;
    sq_http_server *srv = h2->c->srv;
    sq__http_req *r = &st->r;
    sq__http_date_refresh(srv);
    /* header lines "Name: value\r\n" -> lowercase name / value pairs */
    size_t lines = 0;
    for (size_t i = 0; i < r->hdrs.len; i++) lines += r->hdrs.ptr[i] == '\n';
    nghttp2_nv nvs[16], *nv = nvs;
    size_t cap = lines + 8, n = 0;
    if (cap > 16 && !(nv = malloc(cap * sizeof *nv))) return -ENOMEM;
    char lower_stack[1024];
    char *lower = r->hdrs.len <= sizeof lower_stack ? lower_stack
                  : r->hdrs.len                     ? malloc(r->hdrs.len)
                                                    : NULL;
    if (r->hdrs.len && !lower) {
        if (nv != nvs) free(nv);
        return -ENOMEM;
    }
    unsigned code = (unsigned)r->status % 1000u;
    char status[3] = {(char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10)};
    nv_add(nv, &n, ":status", 7, status, 3);
    if (srv->server_name_len)
        nv_add(nv, &n, "server", 6, srv->s.server_name, srv->server_name_len);
    nv_add(nv, &n, "date", 4, srv->date_line + 6, srv->date_len - 8); /* "Date: " … "\r\n" */
    if (r->hdrs.len) memcpy(lower, r->hdrs.ptr, r->hdrs.len);
    char *end = lower ? lower + r->hdrs.len : NULL; /* (NULL + 0 is undefined) */
    for (char *p = lower; p && p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        char *colon = memchr(p, ':', (size_t)(next - p));
        if (colon) {
            size_t nl = (size_t)(colon - p);
            for (size_t i = 0; i < nl; i++) p[i] |= (char)(p[i] >= 'A' && p[i] <= 'Z') << 5;
            const char *v = colon + 1;
            while (v < next && *v == ' ') v++;
            const char *ve = next;
            while (ve > v && (ve[-1] == '\n' || ve[-1] == '\r')) ve--;
            if (!hop_by_hop(p, nl) && !(gz && nl == 14 && !memcmp(p, "content-length", 14)))
                nv_add(nv, &n, p, nl, v, (size_t)(ve - v));
        }
        p = next;
    }
    bool body_allowed = sq__http_status_has_body(r->status);
    if (body_allowed && !(r->rflags & RESP_HAS_CTYPE) && (clen != 0 || r->is_head))
        nv_add(nv, &n, "content-type", 12, "text/html; charset=UTF-8", 24);
    if (gz) {
        nv_add(nv, &n, "content-encoding", 16, "gzip", 4);
        nv_add(nv, &n, "vary", 4, "Accept-Encoding", 15);
    }
    char lenbuf[24];
    if (clen >= 0 && body_allowed && (!(r->rflags & RESP_HAS_CLEN) || gz)) {
        nv_add(nv, &n, "content-length", 14, lenbuf,
               (size_t)(sq__put_u64(lenbuf, (uint64_t)clen) - lenbuf));
    }
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
    int rv = nghttp2_submit_response(h2->ng, st->id, nv, n, no_body ? NULL : &prd);
    if (nv != nvs) free(nv);
    if (lower != lower_stack) free(lower);
    if (rv != 0) return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
    st->submitted = true;
    r->rflags |= RESP_HEAD_SENT;
    if (no_body) st->out_eof = true;
    return 0;
}

static void resume(sq__h2_stream *st)
{
    if (st->deferred && st->open) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h2->ng, st->id);
    }
}


int sq__h2_finish(sq__http_req *r)
{
    sq__h2_stream *st = as_stream(r);
    if (r->rflags & RESP_FINISHED) return 0;
    r->rflags |= RESP_FINISHED;
    if (!st->open || st->h2->c->closed) return 0;
    int e = 0;
    if (!st->submitted) {
        bool nb = sq__http_resp_no_body(r);
        bool gz = !nb && sq__http_maybe_gzip(st->h2->c, r);
        int64_t clen = (int64_t)r->body.len;
        if (nb) r->body.len = 0;
        e = take_body(st);
        st->out_eof = true;
        if (e == 0) e = submit_head(st, clen, gz, nb || clen == 0);
    } else {
        if (!sq__http_resp_no_body(r) && !(r->rflags & RESP_BODY_DONE)) e = take_body(st);
        r->body.len = 0;
        st->out_eof = true;
        resume(st);
    }
    h2_send(st->h2);
    return e;
}

/* A wait of the handler's coroutine, bounded by a timer on its own stack. */
typedef struct wait_ctx {
    sq_timer t;
    sq__h2_stream *st;
    bool fired;
} wait_ctx;

static void wait_timeout(sq_loop *loop, sq_timer *t)
{
    wait_ctx *w = t->data;
    w->fired = true;
    wake(w->st);
}

/* Suspend until woken (progress) or `seconds` pass (-ETIMEDOUT; <= 0: no limit). */
static int suspend_for(sq__h2_stream *st, bool writes, double seconds)
{
    if (!sq_in_coro()) return SQ_ENOTCORO;
    wait_ctx w = {.st = st};
    sq_timer_init(st->h2->loop, &w.t, wait_timeout, &w);
    if (seconds > 0) sq_timer_start(&w.t, seconds, 0);
    st->waiter = sq_coro_self();
    st->waiter_writes = writes;
    sq_coro_suspend();
    st->waiter = NULL;
    sq_timer_stop(&w.t);
    return w.fired ? -ETIMEDOUT : 0;
}

static int stream_error(const sq__h2_stream *st)
{
    if (st->h2->c->closed) return st->h2->c->error ? st->h2->c->error : SQ_ECLOSED;
    if (st->out_error) return st->out_error; /* reset by the write timeout (h2_stall) */
    return SQ_ECLOSED;                       /* reset by the peer */
}

/* Wait until the stream's output is below the high-water mark.  No deadline of its own: the
 * connection's stall timer (h2_stall) resets a stream whose output does not move for
 * write_timeout, which wakes this wait to -ETIMEDOUT. */
static int wait_window(sq__h2_stream *st)
{
    sq__h2 *h2 = st->h2;
    while (st->open && !h2->c->closed && !st->out_error &&
           st->out.len - st->out_off > high_water(h2)) {
        int e = suspend_for(st, true, 0);
        if (e < 0) return e;
    }
    return st->open && !h2->c->closed && !st->out_error ? 0 : stream_error(st);
}

int sq__h2_flush(sq__http_req *r)
{
    sq__h2_stream *st = as_stream(r);
    if (!st->open || st->h2->c->closed) return stream_error(st);
    if (r->rflags & RESP_FINISHED) return -EALREADY;
    int e = 0;
    bool nb = sq__http_resp_no_body(r) || (r->rflags & RESP_BODY_DONE);
    if (!st->submitted) e = submit_head(st, -1, false, false);
    if (e == 0 && !nb) e = take_body(st);
    r->body.len = 0;
    if (e < 0) return e;
    resume(st);
    h2_send(st->h2);
    return wait_window(st);
}

int sq__h2_sendfile(sq__http_req *r, int fd, off_t offset, size_t len)
{
    sq__h2_stream *st = as_stream(r);
    if (!st->open || st->h2->c->closed) return stream_error(st);
    if (r->rflags & (RESP_FINISHED | RESP_BODY_DONE)) return -EALREADY;
    if (!sq_in_coro()) return SQ_ENOTCORO;
    if (fd < 0 || offset < 0) return -EINVAL;
    int e = 0;
    bool nb = sq__http_resp_no_body(r);
    if (!st->submitted) {
        e = submit_head(st, (int64_t)(r->body.len + len), false, false);
        r->rflags |= RESP_BODY_DONE; /* the length is told: nothing more after the file */
    }
    if (e == 0 && !nb) e = take_body(st);
    r->body.len = 0;
    if (e < 0) return e;
    if (nb) return 0;
    while (len > 0) {
        size_t want = len < H2_FILE_CHUNK ? len : H2_FILE_CHUNK;
        if (sq__buf_reserve(&st->out, want) < 0) return -ENOMEM;
        ssize_t n = pread(fd, st->out.ptr + st->out.len, want, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            /* the file is shorter than told (or unreadable): the response cannot end well */
            nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id,
                                      NGHTTP2_INTERNAL_ERROR);
            h2_send(st->h2);
            return n < 0 ? -errno : -EIO;
        }
        st->out.len += (size_t)n;
        r->body_sent += (uint64_t)n;
        count_out(st);
        offset += n;
        len -= (size_t)n;
        resume(st);
        h2_send(st->h2);
        e = wait_window(st);
        if (e < 0) return e;
    }
    return 0;
}

/* --- request bodies ------------------------------------------------------------------------ */

/* The connection's window gets back what arrived, as nginx and h2o credit it, unless the
 * streams already hold H2_UNREAD_MAX unread: then only as handlers take their bytes.  True
 * when it credited something. */
static bool conn_credit(sq__h2 *h2)
{
    if (!h2->conn_owed || h2->unread > H2_UNREAD_MAX) return false;
    nghttp2_session_consume_connection(h2->ng, h2->conn_owed);
    h2->conn_owed = 0;
    return true;
}

/* Give `n` received bytes the handler took back to the stream's window (the connection's
 * had them back on arrival, or gets them now: conn_credit). */
static void consume(sq__h2_stream *st, size_t n)
{
    if (!n) return;
    if (n > st->unconsumed) n = st->unconsumed;
    st->unconsumed -= n;
    sq__h2 *h2 = st->h2;
    h2->unread -= n;
    bool credited = conn_credit(h2);
    if (st->open) nghttp2_session_consume_stream(h2->ng, st->id, n);
    if (st->open || credited) h2_send(h2); /* the WINDOW_UPDATEs */
}

/* Wait for body bytes: body_timeout, cut to what is left of the whole body's deadline
 * (body_min_rate), as for HTTP/1.1. */
static int body_wait(sq__h2_stream *st)
{
    sq_http_server *srv = st->h2->c->srv;
    if (!srv) return SQ_ECLOSED;
    double wait = sq__http_body_wait(&srv->s, &st->r, sq_loop_time(st->h2->loop));
    int e = srv->s.body_timeout > 0 && wait == 0 ? -ETIMEDOUT : suspend_for(st, false, wait);
    if (e == -ETIMEDOUT) {
        nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        h2_send(st->h2);
    }
    return e;
}

/* The response is complete but the request body is still coming: tell the client to stop
 * sending (RST_STREAM NO_ERROR, RFC 9113 8.1) — once the response's last frame is out,
 * since a reset sent before it would cut the response short (on_frame_send). */
static void stop_request_body(sq__h2_stream *st)
{
    if (!st->open || st->in_done) return;
    if (st->end_sent)
        nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    else
        st->rst_after_end = true;
}

static ssize_t body_fail(sq__h2_stream *st, int err)
{
    sq__http_req *r = &st->r;
    if (err == -E2BIG && !(r->rflags & (RESP_HEAD_SENT | RESP_FINISHED))) {
        sq__http_resp_reset(r);
        r->status = 413;
        sq_http_set_header(&r->pub, "Content-Type", "text/plain; charset=UTF-8");
        sq_http_write(&r->pub, "413 Payload Too Large\n", 22);
        sq_http_finish(&r->pub);
    }
    if (err == -E2BIG)
        stop_request_body(st); /* after the 413 */
    else if (st->open && !st->in_done)
        nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    h2_send(st->h2);
    return err;
}

ssize_t sq__h2_read_body(sq__http_req *r, const char **data)
{
    sq__h2_stream *st = as_stream(r);
    sq_http_server *srv = st->h2->c->srv;
    *data = "";
    if (r->body_read) {
        *data = st->in.ptr ? st->in.ptr : "";
        return (ssize_t)st->in.len;
    }
    if (!r->has_body) {
        r->body_read = true;
        return 0;
    }
    if (r->streaming) return -EINVAL;
    if (!srv) return stream_error(st); /* the server was freed (its connections closed) */
    if (r->pub.content_length > (int64_t)srv->s.max_body_size || st->in.len > srv->s.max_body_size)
        return body_fail(st, -E2BIG);
    r->want_whole = true;
    consume(st, st->unconsumed); /* the whole body is wanted: open the window for it */
    while (!st->in_done && !st->in_error) {
        if (!st->open || st->h2->c->closed) return stream_error(st);
        int e = body_wait(st);
        if (e < 0) return e;
    }
    r->want_whole = false;
    if (st->in_error) return body_fail(st, st->in_error);
    r->body_read = true;
    *data = st->in.ptr ? st->in.ptr : "";
    return (ssize_t)st->in.len;
}

ssize_t sq__h2_read_body_chunk(sq__http_req *r, const char **data)
{
    sq__h2_stream *st = as_stream(r);
    *data = "";
    if (!r->has_body || r->body_read) return 0;
    r->streaming = true;
    for (;;) {
        if (st->in_off < st->in.len) {
            *data = st->in.ptr + st->in_off;
            size_t n = st->in.len - st->in_off;
            st->in_off = st->in.len;
            consume(st, n);
            return (ssize_t)n;
        }
        st->in_off = st->in.len = 0;
        if (st->in_error && st->in_error != -E2BIG) return body_fail(st, st->in_error);
        if (st->in_done) return 0;
        if (!st->open || st->h2->c->closed) return stream_error(st);
        int e = body_wait(st);
        if (e < 0) return e;
    }
}

/* --- the handler's coroutine ------------------------------------------------------------------ */

/* The response is done (the handler returned, or a detached request finished). */
static void stream_complete(sq__h2_stream *st)
{
    sq__h2 *h2 = st->h2;
    sq__http_req *r = &st->r;
    /* logged first: finishing the last stream after a GOAWAY may close the connection */
    if (!h2->c->closed && h2->c->srv && h2->c->srv->s.access_log) sq__http_access_log(&st->r);
    if (!(r->rflags & RESP_FINISHED)) sq__h2_finish(r);
    r->active = false;
    if (!h2->c->closed && st->open && !st->in_done) {
        stop_request_body(st); /* the body was not read to its end */
        h2_send(h2);
    }
    st->done = true; /* from now on stream_maybe_free may free it (not from inside h2_send) */
}

static void *stream_task(void *arg)
{
    sq__h2_stream *st = arg;
    sq__h2 *h2 = st->h2;
    sq_http_conn *c = h2->c;
    if (!c->closed && st->open && c->srv) c->srv->handler(&st->r.pub, c->srv->arg);
    /* The stream ended while the handler ran, before it registered its on_close (stream_gone
     * found none): the callback is told now, while st->coro still marks the handler's (a
     * finish from it completes below, not under us). */
    if ((!st->open || c->closed) && st->r.detached) stream_gone(st);
    st->coro = NULL;
    if (st->r.detached && !(st->r.rflags & RESP_FINISHED)) return NULL; /* sq_http_finish ends it */
    h2->ncoros--;
    stream_complete(st);
    stream_maybe_free(st);
    return NULL;
}

void sq__h2_detached_finished(sq__http_req *r)
{
    sq__h2_stream *st = as_stream(r);
    if (st->coro) return; /* the handler still runs: it completes the request */
    st->h2->ncoros--;
    stream_complete(st);
    stream_maybe_free(st);
}

/* --- nghttp2 callbacks ------------------------------------------------------------------------ */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    sq__h2 *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    /* handlers still running for streams the peer already reset count too: resetting is
     * no way around the limit (the rapid-reset attack) */
    if (h2->goaway || !h2->c->srv || h2->c->srv->closing || h2->ncoros >= h2->max_streams) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    sq__h2_stream *st = stream_new(h2, frame->hd.stream_id);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    /* (the peer's stream ids only grow) */
    h2->last_sid = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    h2->nopen++;
    h2->nheads++; /* until the header block is complete: header_timeout */
    st->counted_head = true;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
    sq__h2 *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    sq__h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || st->started) return 0; /* trailers: ignored */
    st->hsize += nl + vl + 32;
    if (st->hsize > h2->c->srv->s.max_header_size || st->nh >= SQ_HTTP_DEFAULT_MAX_HEADERS)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* too big: the stream is reset */
    int32_t off = (int32_t)st->hb.len;
    if (sq__buf_reserve(&st->hb, nl + vl + 2) < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    char *p = st->hb.ptr + st->hb.len;
    memcpy(p, name, nl);
    p[nl] = 0;
    memcpy(p + nl + 1, value, vl);
    p[nl + 1 + vl] = 0;
    st->hb.len += nl + vl + 2;
    if (nl && name[0] == ':') {
        int32_t voff = off + (int32_t)nl + 1;
        if (nl == 7 && !memcmp(name, ":method", 7)) st->pm = voff;
        else if (nl == 5 && !memcmp(name, ":path", 5)) st->pp = voff;
        else if (nl == 10 && !memcmp(name, ":authority", 10)) st->pa = voff;
        return 0;
    }
    if (st->nh == st->hcap) {
        size_t cap = st->hcap ? st->hcap * 2 : 16;
        uint32_t *h = realloc(st->hoff, cap * sizeof *h);
        if (!h) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->hoff = h;
        st->hcap = cap;
    }
    st->hoff[st->nh++] = (uint32_t)off;
    return 0;
}

static void request_ended(sq__h2_stream *st)
{
    st->in_done = true;
    st->r.body_done = true;
    wake(st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    sq__h2 *h2 = user;
    sq__h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st) return 0;
        if (!st->started && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            head_done(st);
            int e = build_request(st, end);
            if (e < 0) {
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id,
                                          e == -ENOMEM ? NGHTTP2_INTERNAL_ERROR
                                                       : NGHTTP2_PROTOCOL_ERROR);
                return 0;
            }
            start_stream(st);
        } else if (end) {
            request_ended(st); /* trailers end the body */
        }
        break;
    case NGHTTP2_DATA:
        if (st && end) request_ended(st);
        break;
    default:
        break;
    }
    (void)h2;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    sq__h2 *h2 = user;
    sq__h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || !st->started || st->in_error || st->r.rflags & RESP_FINISHED) {
        nghttp2_session_consume(ng, id, len); /* nobody will read it */
        return 0;
    }
    /* max_body_size bounds a body read whole (sq_http_read_body); before the handler chose
     * how to read, the stream's window bounds what waits here (read_body checks it then),
     * and a body read in pieces has no limit: nothing may be dropped for it */
    if (st->r.want_whole && st->in.len + len > h2->c->srv->s.max_body_size) {
        st->in_error = -E2BIG;
        nghttp2_session_consume(ng, id, len);
        wake(st);
        return 0;
    }
    if (sq__buf_append(&st->in, data, len) < 0) {
        st->in_error = -ENOMEM;
        nghttp2_session_consume(ng, id, len);
        wake(st);
        return 0;
    }
    st->r.body_total += len;
    /* Buffered: the connection's window has the bytes back at once (up to H2_UNREAD_MAX
     * unread in all), the stream's only as the handler takes them (consume), as nginx and
     * h2o do.  A handler that does not read holds back its own stream, its buffer bounded
     * by the stream's window, never the uploads of the connection's other streams. */
    st->unconsumed += len;
    h2->unread += len;
    h2->conn_owed += len;
    conn_credit(h2);
    if (st->r.want_whole) consume(st, len); /* reading it all: keep the window open */
    wake(st);
    return 0;
}

/* The stream ended under its handler (reset, or the connection closed): its
 * sq_http_on_connection_close callback runs (once, unless the response was finished) and a
 * wait for the body or the window wakes to an error. */
static void stream_gone(sq__h2_stream *st)
{
    sq__http_req *r = &st->r;
    wake(st);
    if (st->started && !(r->rflags & RESP_FINISHED) && r->on_close) {
        void (*cb)(sq_http_request *, void *) = r->on_close;
        r->on_close = NULL;
        st->holding = true; /* the callback may finish a detached request: freed by our caller */
        cb(&r->pub, r->on_close_arg);
        st->holding = false;
    }
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) return 0;
    sq__h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st) return 0;
    st->end_sent = true;
    if (st->rst_after_end && !st->in_done) {
        st->rst_after_end = false;
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    sq__h2 *h2 = user;
    sq__h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st->open = false;
    h2->nopen--;
    head_done(st);
    h2->unread -= st->unconsumed; /* never to be read: it no longer counts */
    st->unconsumed = 0;
    conn_credit(h2);
    if (st->counted_out) {
        st->counted_out = false;
        h2->out_streams--;
    }
    stream_gone(st);
    stream_maybe_free(st);
    return 0;
}

/* --- nghttp2's memory ---------------------------------------------------------------------- */

/* Every session holds an outbound frame buffer of 16 KiB and 10 bytes for its whole life, of
 * which small frames touch the first page only.  From the heap it often lands on pages that
 * another buffer has already touched (OpenSSL hands an idle TLS connection's record buffers
 * back to the heap), and then all of it stays resident while the connection idles.  So the
 * blocks nghttp2 makes by growing a buffer from nothing (realloc of NULL: its frame buffers)
 * get anonymous pages of their own when they are H2_MAP_MIN or more, where only the pages
 * written count.  Everything else, header values of any size included, stays on the heap:
 * a peer cannot make the server map and unmap pages per request.
 *
 * A closed connection's buffer goes to its server's pool (srv->h2_maps, up to
 * SQ__H2_MAPS_KEPT) and the next session takes it from there, without mmap or munmap:
 * mapping and unmapping one per connection cost tens of µs a connection on a virtual
 * machine (h2load, waves of 1,000 new h2c connections of 2 requests each: 51-54 µs of server
 * CPU a request instead of 36-39).  The pages a kept buffer had touched stay resident, 4 KiB
 * after small responses, 20 KiB at most; the server unmaps them when it is freed. */
static void *h2_map(sq__h2 *h2, size_t size)
{
    sq_http_server *srv = h2->c->srv;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - ps) return NULL;
    size_t len = (size + ps - 1) / ps * ps;
    for (size_t i = 0; i < H2_MAPS; i++) {
        if (h2->maps[i].p) continue;
        if (srv && srv->nh2_maps && srv->h2_maps[srv->nh2_maps - 1].len == len) {
            h2->maps[i] = srv->h2_maps[--srv->nh2_maps];
            return h2->maps[i].p;
        }
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        h2->maps[i] = (sq__h2_map){p, len};
        return p;
    }
    return NULL;
}

/* The slot of a block h2_map made, or -1 for a heap block. */
static int map_slot(const sq__h2 *h2, const void *p)
{
    if (p)
        for (int i = 0; i < H2_MAPS; i++)
            if (h2->maps[i].p == p) return i;
    return -1;
}

/* Give slot i back: to the server's pool, or unmapped (a connection that outlived its
 * server); a failed munmap (no room to split the mapping, at vm.max_map_count) keeps the
 * slot, and sq__h2_free tries again. */
static void map_drop(sq__h2 *h2, int i)
{
    sq_http_server *srv = h2->c->srv;
    if (srv && srv->nh2_maps < SQ__H2_MAPS_KEPT) {
        srv->h2_maps[srv->nh2_maps++] = h2->maps[i];
        h2->maps[i].p = NULL;
    } else if (munmap(h2->maps[i].p, h2->maps[i].len) == 0) {
        h2->maps[i].p = NULL;
    }
}

static void *h2_malloc(size_t size, void *arg)
{
    return malloc(size);
}

static void h2_free(void *p, void *arg)
{
    sq__h2 *h2 = arg;
    int i = map_slot(h2, p);
    if (i >= 0)
        map_drop(h2, i);
    else
        free(p);
}

static void *h2_calloc(size_t n, size_t size, void *arg)
{
    return calloc(n, size);
}

static void *h2_realloc(void *p, size_t size, void *arg)
{
    sq__h2 *h2 = arg;
    if (!p) { /* how nghttp2 makes its buffers */
        void *q = size >= H2_MAP_MIN ? h2_map(h2, size) : NULL;
        return q ? q : malloc(size);
    }
    int i = map_slot(h2, p);
    if (i < 0) return realloc(p, size); /* a heap block stays on the heap */
    if (size <= h2->maps[i].len) return p;
    void *q = malloc(size);
    if (!q) return NULL;
    memcpy(q, p, h2->maps[i].len);
    map_drop(h2, i);
    return q;
}

/* --- the connection --------------------------------------------------------------------------- */

static void h2_arm(sq__h2 *h2)
{
    sq_http_conn *c = h2->c;
    if (c->closed || !c->srv) return;
    if (sq__http_out_pending(c)) return; /* conn_write keeps the write deadline */
    if (h2->out_streams) {
        /* data waits for the peer's window: each stream's must move within write_timeout
         * (h2_stall), the timer set for the first of them to run out */
        if (c->tkind != SQ__T_STALL) {
            uint64_t first = UINT64_MAX;
            for (sq__h2_stream *st = h2->streams; st; st = st->next)
                if (st->counted_out && !st->out_error && st->progress_ns < first)
                    first = st->progress_ns;
            if (first == UINT64_MAX) return; /* only streams being reset */
            uint64_t now = sq_loop_now_ns(h2->loop);
            double left = c->srv->s.write_timeout - (double)(now - first) / 1e9;
            if (c->srv->s.write_timeout > 0) /* (negative: no deadline) */
                sq__http_arm(c, SQ__T_STALL, left > 1e-3 ? left : 1e-3);
        }
    } else if (h2->nheads) {
        /* a header block begun and not finished (a slow or stalled client): header_timeout
         * from when it began, not pushed back by what else the connection does */
        if (c->tkind != SQ__T_HEADER) sq__http_arm(c, SQ__T_HEADER, c->srv->s.header_timeout);
    } else if (!h2->nopen && !h2->ncoros) {
        sq__http_arm(c, SQ__T_IDLE, c->srv->s.idle_timeout);
        sq__http_out_release(c); /* idle: no output buffer held */
    } else if (c->tkind == SQ__T_STALL || c->tkind == SQ__T_IDLE || c->tkind == SQ__T_HEADER) {
        sq__http_arm(c, SQ__T_NONE, 0);
    }
}

static void h2_send_now(sq__h2 *h2);

/* Both sides are done (after a GOAWAY).  Closing while the end of the responses is still in
 * the kernel's buffer, with bytes of the peer unread or still coming (its WINDOW_UPDATEs and
 * PINGs, a request that crossed the GOAWAY), sends a reset instead, and the kernel drops
 * what it had not sent: the responses arrive cut short.  So HTTP/1.1's lingering close
 * (sq__http_linger: our side shut, the input drained, SQ__HTTP_LINGER_MAX bytes at most),
 * closed once the peer closed or acknowledged everything (or took nothing for
 * SQ__HTTP_LINGER_SECONDS). */
static void h2_close(sq__h2 *h2)
{
    sq_http_conn *c = h2->c;
    if (!(h2->linger_unacked = sq__tp_unacked(c->io.fd))) {
        sq__http_conn_close(c, 0);
        return;
    }
    h2->linger_until = sq_loop_now_ns(h2->loop) + sq__sec_to_ns(SQ__HTTP_LINGER_SECONDS);
    sq__http_linger(c, H2_LINGER_TICK);
}

static void send_cb(void *arg)
{
    sq__h2 *h2 = arg;
    sq_http_conn *c = h2->c;
    h2->send_call = NULL;
    c->in_io = true;
    h2_send_now(h2);
    c->in_io = false;
    sq__http_conn_release(c);
}

/* Ask for nghttp2's frames to be sent: by the IO callback when inside it, else once at the
 * end of this loop pass, so that the responses of every stream that finished in the pass
 * (and their TLS records) go out in one write. */
static void h2_send(sq__h2 *h2)
{
    if (h2->c->closed || h2->in_io || h2->send_call) return;
    h2->send_call = sq_call_later(h2->loop, 0, send_cb, h2);
    if (!h2->send_call) h2_send_now(h2); /* no memory for the call: now, then */
}

/* Hand nghttp2's frames to the connection's output and write it; close when both sides
 * are done (after a GOAWAY). */
static void h2_send_now(sq__h2 *h2)
{
    sq_http_conn *c = h2->c;
    if (c->closed || c->lingering) return;
    size_t hw = high_water(h2);
    for (;;) {
        while (sq__http_out_pending(c) < hw) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h2->ng, &data);
            if (n < 0) {
                sq__http_conn_close(c, -EPROTO);
                return;
            }
            if (n == 0) break;
            sq__http_out_acquire(c);
            if (sq__buf_append(&c->a->out, data, (size_t)n) < 0) {
                sq__http_conn_close(c, -ENOMEM);
                return;
            }
        }
        if (!sq__http_out_pending(c)) break; /* nghttp2 has nothing more */
        sq__http_conn_write(c);
        if (c->closed) return;
        if (sq__http_out_pending(c)) break; /* the socket is full: its write event comes back here */
        /* the socket took it all: nghttp2 may hold more (pulling stopped at the high-water
         * mark, or the output was above it on entry), and with the output empty no write
         * event would come to ask for it */
    }
    if (!nghttp2_session_want_read(h2->ng) && !nghttp2_session_want_write(h2->ng) &&
        !sq__http_out_pending(c)) {
        h2_close(h2);
        return;
    }
    if (h2->goaway && !h2->nopen && !h2->ncoros && !sq__http_out_pending(c) &&
        !nghttp2_session_want_write(h2->ng)) {
        h2_close(h2);
        return;
    }
    h2_arm(h2);
    sq__http_update_io(c);
}

static ssize_t mem_recv(sq__h2 *h2, const uint8_t *data, size_t len)
{
    bool was = h2->in_io;
    h2->in_io = true; /* no mem_send inside nghttp2's callbacks */
    ssize_t rv = nghttp2_session_mem_recv(h2->ng, data, len);
    h2->in_io = was;
    return rv;
}

static void fatal(sq__h2 *h2, ssize_t rv)
{
    sq_http_conn *c = h2->c;
    sq_log(SQ_LOG_DEBUG, "http2: closing a connection: %s", nghttp2_strerror((int)rv));
    /* nghttp2 queued no GOAWAY for these errors, and its session may no longer be used but to
     * free it (h2->goaway: nothing calls it any more).  So the GOAWAY with the reason
     * (RFC 9113 5.4.1) is made here, after the whole frames already in the output, and goes
     * out through the lingering close: closed at once, with the peer's bytes unread, the
     * connection would be reset under it. */
    h2->goaway = true;
    if (h2->send_call) {
        sq_call_cancel(h2->send_call);
        h2->send_call = NULL;
    }
    uint32_t code = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                        ? NGHTTP2_ENHANCE_YOUR_CALM
                    : rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? NGHTTP2_PROTOCOL_ERROR
                                                         : NGHTTP2_INTERNAL_ERROR;
    uint8_t f[17] = {0, 0, 8, NGHTTP2_GOAWAY}; /* length 8, no flags, stream 0 */
    for (int i = 0; i < 4; i++) {
        f[9 + i] = (uint8_t)((uint32_t)h2->last_sid >> (24 - 8 * i));
        f[13 + i] = (uint8_t)(code >> (24 - 8 * i));
    }
    sq__http_out_acquire(c);
    if (sq__buf_append(&c->a->out, f, sizeof f) == 0) sq__http_conn_write(c);
    if (c->closed) return;
    /* a peer that does not take the output now (a flood: it is not reading), or handlers
     * still running: no waiting for it */
    if (sq__http_out_pending(c) || h2->ncoros) {
        sq__http_conn_close(c, rv == NGHTTP2_ERR_FLOODED ? -EMSGSIZE : -EPROTO);
        return;
    }
    h2_close(h2);
}

/* Run the handlers the last read started, still inside the IO callback (h2->in_io): what
 * they send waits for the one write at its end.  One that suspends goes on later. */
static void run_started(sq__h2 *h2)
{
    for (unsigned i = 0; i < h2->nstart; i++) {
        sq_coro *co = h2->start[i];
        if (h2->c->closed)
            sq_coro_wake(co); /* runs to its end on a closed connection */
        else
            sq_coro_resume(co);
    }
    h2->nstart = 0;
}

void sq__h2_io(sq_http_conn *c, unsigned events)
{
    sq__h2 *h2 = c->a->h2;
    if (events & SQ_WRITE) {
        sq__http_conn_write(c);
        if (c->closed) return;
    }
    if (c->lingering) {
        if (events & (SQ_READ | SQ_HUP | SQ_ERROR)) sq__http_linger_drain(c);
        return;
    }
    h2->in_io = true;
    if ((events & (SQ_READ | SQ_HUP | SQ_ERROR)) && !c->rpaused) {
        uint8_t buf[H2_READ_BUF];
        for (int i = 0; i < H2_READS_MAX && !c->closed && !c->rpaused; i++) {
            ssize_t n = sq__tp_read(c->io.fd, c->tp, buf, sizeof buf);
            if (n > 0) {
                ssize_t rv = mem_recv(h2, buf, (size_t)n);
                run_started(h2);
                if (rv < 0) {
                    h2->in_io = false;
                    fatal(h2, rv);
                    return;
                }
                if ((size_t)n < sizeof buf) break;
                continue;
            }
            if (n == 0) {
                c->peer_eof = true;
                /* the client is gone (HTTP/2 has no half-close of the connection) */
                sq__http_conn_close(c, 0);
                return;
            }
            if (n == -EAGAIN) break;
            sq__http_conn_close(c, (int)n);
            return;
        }
    }
    h2->in_io = false;
    h2_send_now(h2); /* what the frames read call for (SETTINGS ack, WINDOW_UPDATE …) */
}

/* The write timeout of the streams whose output waits for the peer's window.  A stream whose
 * own window the peer kept shut for write_timeout (while it may well read the others) is
 * reset, CANCEL, and its handler's writes fail with -ETIMEDOUT, as an HTTP/1.1 write timeout
 * fails them; the connection and its other streams go on.  One whose own window is open
 * waits for the connection's: once no stream at all moved for write_timeout, the connection
 * is closed, as HTTP/1.1's write timeout closes it. */
static void h2_stall(sq__h2 *h2)
{
    sq_http_conn *c = h2->c;
    uint64_t now = sq_loop_now_ns(h2->loop);
    uint64_t limit = sq__sec_to_ns(c->srv->s.write_timeout);
    for (sq__h2_stream *st = h2->streams; st; st = st->next) {
        if (!st->counted_out || st->out_error || now - st->progress_ns < limit) continue;
        if (nghttp2_session_get_stream_remote_window_size(h2->ng, st->id) > 0) {
            if (now - h2->progress_ns < limit) {
                /* the connection moved since (other streams took its window): this one
                 * waits on it, from then on */
                st->progress_ns = h2->progress_ns;
                continue;
            }
            sq_log(SQ_LOG_DEBUG,
                   "http2: the peer kept the connection's window shut for %g s: closing",
                   c->srv->s.write_timeout);
            c->abort_close = true;
            sq__http_conn_close(c, -ETIMEDOUT);
            return;
        }
        sq_log(SQ_LOG_DEBUG, "http2: the peer kept stream %d's window shut for %g s: reset",
               (int)st->id, c->srv->s.write_timeout);
        st->out_error = -ETIMEDOUT;
        nghttp2_submit_rst_stream(h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        wake(st);
    }
    h2_send(h2);
}

void sq__h2_timeout(sq_http_conn *c, unsigned kind)
{
    sq__h2 *h2 = c->a->h2;
    if (kind == SQ__T_LINGER) {
        int left = sq__tp_unacked(c->io.fd);
        uint64_t now = sq_loop_now_ns(h2->loop);
        if (left < h2->linger_unacked)
            h2->linger_until = now + sq__sec_to_ns(SQ__HTTP_LINGER_SECONDS);
        h2->linger_unacked = left;
        if (!left || now >= h2->linger_until)
            sq__http_conn_close(c, 0);
        else
            sq__http_arm(c, SQ__T_LINGER, H2_LINGER_TICK);
        return;
    }
    if (kind == SQ__T_STALL && h2->out_streams) {
        h2_stall(h2);
        if (c->closed) return;
    }
    if (kind == SQ__T_IDLE && !h2->nopen && !h2->ncoros) {
        sq__h2_goaway(c);
        return;
    }
    if (kind == SQ__T_HEADER && h2->nheads) {
        sq_log(SQ_LOG_DEBUG, "http2: a header block was not complete within %g s: closing",
               c->srv->s.header_timeout);
        sq__http_conn_close(c, -ETIMEDOUT);
        return;
    }
    h2_arm(h2);
}

void sq__h2_goaway(sq_http_conn *c)
{
    sq__h2 *h2 = c->a->h2;
    if (c->closed || h2->goaway) return;
    h2->goaway = true;
    nghttp2_submit_goaway(h2->ng, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->ng), NGHTTP2_NO_ERROR,
                          NULL, 0);
    h2_send(h2);
    /* an idle connection closes at once: from sq_http_server_shutdown (not a callback of
     * the connection's own, which releases it on return) nothing else would free it */
    if (!c->in_io) sq__http_conn_release(c);
}

bool sq__h2_busy(const sq_http_conn *c)
{
    return c->a->h2 && c->a->h2->streams;
}

bool sq__h2_idle(const sq_http_conn *c)
{
    return !c->a->h2->nopen && !c->a->h2->ncoros && !sq__http_out_pending(c);
}

void sq__h2_forget_server(sq_http_conn *c)
{
    for (sq__h2_stream *st = c->a->h2->streams; st; st = st->next) st->r.pub.server = NULL;
}

void sq__h2_conn_closed(sq_http_conn *c)
{
    sq__h2 *h2 = c->a->h2;
    if (h2->send_call) {
        sq_call_cancel(h2->send_call);
        h2->send_call = NULL;
    }
    /* every stream is over: handlers waiting for the body or the window wake to an error.
     * An on_close callback may finish (and so free) any detached stream, so the walk starts
     * over after each; nor may it free the connection under us (the caller releases it). */
    bool was = c->in_io;
    c->in_io = true;
    for (sq__h2_stream *st = h2->streams; st;) {
        if (!st->open) {
            st = st->next;
            continue;
        }
        st->open = false;
        h2->nopen--;
        stream_gone(st);
        st = h2->streams;
    }
    c->in_io = was;
    for (sq__h2_stream *st = h2->streams, *next; st; st = next) {
        next = st->next;
        if (!st->coro && (!st->started || st->done)) stream_unlink_free(st);
    }
}

void sq__h2_free(sq_http_conn *c)
{
    sq__h2 *h2 = c->a->h2;
    if (!h2) return;
    while (h2->streams) stream_unlink_free(h2->streams);
    nghttp2_session_del(h2->ng);
    for (int i = 0; i < H2_MAPS; i++) /* a block whose munmap failed */
        if (h2->maps[i].p) munmap(h2->maps[i].p, h2->maps[i].len);
    free(h2);
    c->a->h2 = NULL;
}

int sq__h2_start(sq_http_conn *c, const char *data, size_t len)
{
    sq_http_server *srv = c->srv;
    sq__h2 *h2 = calloc(1, sizeof *h2);
    if (!h2) return -ENOMEM;
    h2->c = c;
    h2->loop = srv->loop;
    h2->max_streams = srv->s.http2_max_concurrent_streams ? srv->s.http2_max_concurrent_streams
                                                           : SQ_HTTP_DEFAULT_H2_MAX_STREAMS;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        free(h2);
        return -ENOMEM;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        free(h2);
        return -ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* streams: as the handler reads */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);   /* PING/SETTINGS floods */
    nghttp2_option_set_max_continuations(opt, 8);     /* CONTINUATION floods */
    nghttp2_option_set_stream_reset_rate_limit(opt, H2_RESETS_BURST, H2_RESETS_RATE);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_mem mem = {h2, h2_malloc, h2_free, h2_calloc, h2_realloc};
    int rv = nghttp2_session_server_new3(&h2->ng, cbs, h2, opt, &mem);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        free(h2);
        return -ENOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h2->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->s.max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 0},
    };
    nghttp2_submit_settings(h2->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    /* the connection's receive window: room for several uploads at once (credited back as
     * the bytes arrive; each stream's as its handler takes them) */
    nghttp2_session_set_local_window_size(h2->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    if (c->a->req) { /* a pooled HTTP/1.1 request object: streams bring their own */
        sq__http_req_free(c->a->req);
        c->a->req = NULL;
    }
    free(c->a->rbuf); /* nor is the HTTP/1.1 read buffer of use (the session reads its own) */
    c->a->rbuf = NULL;
    c->a->rcap = c->a->rlen = c->a->rpos = 0;
    c->a->h2 = h2;
    c->h2_mode = true;
    sq__http_arm(c, SQ__T_HEADER, srv->s.header_timeout); /* the preface and first frames */
    if (len) {
        ssize_t r = mem_recv(h2, (const uint8_t *)data, len);
        run_started(h2);
        if (r < 0) {
            fatal(h2, r);
            return 0;
        }
    }
    h2_send(h2);
    return 0;
}
