/* Internals of the HTTP/1.1 server shared by server.c (connections, reading, the request
 * coroutine) and response.c (response heads and bodies, gzip, the Date cache). */
#ifndef SQUALL_HTTP_INTERNAL_H
#define SQUALL_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../internal.h"
#include "squall/http.h"
#include "../transport/transport.h"

#define SQ__HTTP_MAX_LISTENERS 8
#define SQ__HTTP_DISCARD_LIMIT (1u << 20) /* unread body bytes drained for keep-alive */
/* Free space wanted before a read: the first read of a request reads into this much (nginx's
 * client_header_buffer_size is 1k too); longer heads grow the buffer.  A request parked in a
 * handler keeps its buffer, so this is most of what a parked request costs beyond its
 * coroutine's stack. */
#define SQ__HTTP_READ_MIN     1024
#define SQ__HTTP_STREAM_BUF   (64u * 1024) /* read buffer while streaming a body */
#define SQ__HTTP_POOL         256 /* active parts, buffers and stream objects kept for reuse */
#define SQ__HTTP_POOL_OUT_MAX (16u * 1024) /* larger output buffers are freed, not pooled */
#define SQ__H2_MAPS_KEPT      1024         /* mapped nghttp2 frame buffers kept for reuse (h2.c) */
#define SQ__HTTP_TRIM_PEAK    256 /* a burst of fewer connections is not worth a trim (listen.c) */
#define SQ__HTTP_TRIM_KEEP    64  /* pooled objects of each kind a trim leaves at least */

/* A block on anonymous pages of its own (h2.c's h2_map). */
typedef struct sq__h2_map {
    void *p;
    size_t len;
} sq__h2_map;
#define SQ__HTTP_BUF_KEEP     (256u * 1024) /* a request's or stream's buffer kept up to this */
/* What a connection's one timer measures. */
enum {
    SQ__T_NONE,
    SQ__T_HEADER,
    SQ__T_IDLE,
    SQ__T_BODY,
    SQ__T_LINGER,
    SQ__T_WRITE,
    SQ__T_HANDSHAKE,
    SQ__T_STALL, /* HTTP/2: response data waits for the peer's flow-control window */
};

/* Header slots inside the request object; past them the head is parsed again into a heap
 * array of the full count.  Browsers send 10 to 20 headers: 24 slots (768 bytes) cover them,
 * and every request parked in a handler holds these. */
#define SQ__HTTP_INLINE_HEADERS 24

/* Connections parked without their active part (sq__http_act), oldest first: all wait
 * for the same timeout, so the list is also in deadline order, and one timer armed for the
 * first serves them all. */
typedef struct sq__http_parked {
    sq_http_conn *head, *tail;
    sq_timer timer;
    double timeout; /* seconds; <= 0: none */
} sq__http_parked;

struct sq_http_server {
    sq_loop *loop;
    sq_http_settings s; /* defaults resolved */
    sq_http_handler_fn handler;
    void *arg;
    /* the accept loops: the stream layer's TCP servers, one per listen call */
    sq_tcp_server *tcp[SQ__HTTP_MAX_LISTENERS];
    int ntcp;
    int nls; /* listening sockets in all of them (at most SQ__HTTP_MAX_LISTENERS) */
    int port;
    bool accept_paused;          /* max_connections reached */
    bool closing;                /* shutting down: no new connections, no keep-alive */
    size_t nconns;               /* open connections */
    sq_http_conn *conns;         /* every connection not yet freed, doubly linked */
    sq__http_upgraded *upgraded; /* upgraded connections (WebSockets), doubly linked */
    sq__http_upgraded *asked;    /* those a graceful shutdown asked to close */
    size_t upgrading;            /* detached for an upgrade, not yet registered */
    unsigned closing_all;        /* the shutdown's deadline or the server's free is
                                    closing everything: the shutdown future resolves after,
                                    not in between (its callbacks may free the server), and a
                                    free from user code (on_close) waits for its end */
    bool free_pending;           /* sq_http_server_free was called meanwhile */
    size_t nupgraded;            /* on the upgraded and asked lists */
    size_t server_name_len;
    /* the Date header, formatted once a second */
    int64_t date_sec;
    char date_line[48]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_len;
    /* "HTTP/1.1 200 OK\r\n", the Server line (if any) and date_line, kept together so that a
     * plain 200 starts with one copy; after the first SQ__HTTP_STATUS200_LEN bytes, the lines
     * every other status shares.  date_at: where date_line goes in it. */
    char *head200;
    size_t head200_len, date_at;
    /* graceful shutdown */
    sq_future *shutdown_fut;
    sq_timer shutdown_timer;
    uint64_t writes; /* write/writev calls on sockets (tests check batching) */
    /* Parked connections: idle keep-alive ones (idle_timeout), and new ones that have not
     * sent a request yet (header_timeout, from the accept for a plain connection, from the
     * end of its handshake for a TLS one). */
    sq__http_parked idle, fresh;
    /* A parked connection gives its active part back here, with its read buffer and
     * request object (sq__http_act); the next request takes them again in one step.  The
     * count first: the pool's top, which every request touches, is then near the fields
     * above rather than 2 KiB further on. */
    size_t nacts;
    struct sq__http_act *acts[SQ__HTTP_POOL];
    /* output buffers given back by idle HTTP/2 connections, taken by any connection that
     * has none */
    sq__buf outs[SQ__HTTP_POOL];
    size_t nouts;
    struct sq__h2_stream *h2_pool[SQ__HTTP_POOL]; /* HTTP/2 stream objects, likewise */
    size_t nh2_pool;
    /* nghttp2 frame buffers on pages of their own, given back by closed HTTP/2 connections
     * (h2.c's h2_map) */
    sq__h2_map h2_maps[SQ__H2_MAPS_KEPT];
    size_t nh2_maps;
    /* After a burst (listen.c): the most connections open since the last trim, the timer
     * that trims once they have stayed at a quarter of that or fewer for memory_trim_delay,
     * and how many trims there were (the tests read it). */
    size_t conns_peak;
    sq_timer trim_timer;
    bool trim_begun;  /* the trim's first slice ran (it frees 1 ms's worth a loop turn) */
    uint64_t trim_ns; /* its slices' time so far */
    uint64_t trims;
    void (*on_trim)(void *arg, size_t open); /* sq_http_server_on_trim */
    void *on_trim_arg;
};

enum {
    RESP_HEAD_SENT = 1u << 0, /* flushed: the rest goes out chunked */
    RESP_FINISHED = 1u << 1,
    RESP_HAS_CTYPE = 1u << 2,
    RESP_HAS_CLEN = 1u << 3,
    RESP_HAS_CENC = 1u << 4,
    RESP_CONN_CLOSE = 1u << 5, /* the handler set Connection: close */
    RESP_CHUNKED = 1u << 6,
    RESP_BODY_DONE = 1u << 7, /* the whole Content-Length body went out (sendfile) */
    RESP_HAS_ETAG = 1u << 8,
};

/* The per-connection request: the public part first. */
typedef struct sq__http_req {
    sq_http_request pub;
    sq_http_header *headers;     /* headers_inline or headers_big */
    sq_http_header *headers_big; /* SQ_HTTP_DEFAULT_MAX_HEADERS slots, made on first need */
    sq_http_header headers_inline[SQ__HTTP_INLINE_HEADERS];
    char remote_ip[48];
    /* the peer remote_ip was formatted from (family 0: none, or X-Real-Ip's), so that the
     * next request from the same address (a keep-alive connection, a proxy) skips it */
    unsigned char ip_of_family;
    unsigned char ip_of[16];
    /* response */
    int status;
    uint64_t body_sent; /* response body bytes handed to the output (the access log's) */
    const char *reason; /* NULL: the standard phrase; else reason_buf.ptr */
    unsigned rflags;
    sq__buf hdrs;       /* "Name: value\r\n" lines set by the handler */
    sq__buf body;       /* buffered body not yet sent */
    sq__buf reason_buf; /* a custom reason phrase, NUL-terminated */
    bool detached;
    bool h2;      /* a stream of an HTTP/2 connection (h2.c), not the connection's request */
    bool active;  /* between the head being parsed and the response being done */
    bool is_head; /* HEAD request */
    bool expect_continue;
    bool upgrade; /* an HTTP/1.1 request asking for another protocol (Connection: upgrade) */
    bool continue_sent;
    bool body_read; /* sq_http_read_body returned the whole body */
    bool streaming; /* sq_http_read_body_chunk in use */
    bool accept_gzip;
    void (*on_close)(sq_http_request *, void *);
    void *on_close_arg;
    sq_call *flush_call; /* a write of the output on the next loop pass (cancelled when the
                            connection gives this object back) */
    /* the request body, in the connection's read buffer (this object stays with the
     * connection until the body is read or drained) */
    size_t hdr_end;      /* offset where the body starts */
    size_t body_off;     /* first decoded body byte not yet handed out (streaming) */
    size_t body_end;     /* end of the decoded body bytes in rbuf */
    uint64_t body_left;  /* Content-Length bytes not yet received */
    uint64_t body_total; /* decoded body bytes so far (chunked limit) */
    sq_http_chunked dec;
    bool has_body, body_done;
    bool want_whole;             /* sq_http_read_body waiting: the buffer may grow to the body */
    bool body_logged;            /* the access log told why the body read failed */
    double body_t0;              /* loop time of the first wait for body bytes (body_min_rate) */
    int body_error;              /* -EINVAL malformed chunked, -E2BIG too large, SQ_ECLOSED */
    struct sq__inflate *inflate; /* decompress_request: inflating a gzip body (inflate.c) */
} sq__http_req;

/* What a connection needs only while it has something to do: its buffers, its timer, the
 * coroutine running its handlers and the request.  An idle keep-alive connection gives this
 * back to the server's pool (with its standard-size buffers and request object still
 * attached, so that the next request takes everything back in one step) and keeps only its
 * sq_http_conn. */
typedef struct sq__http_act {
    /* input: [rpos, rlen) is unprocessed; a request's slices point at rbuf + head_off */
    char *rbuf;
    size_t rlen, rcap, rpos;
    /* output */
    sq__buf out;
    size_t opos;
    sq_timer timer;  /* one purpose at a time: sq_http_conn.tkind */
    sq_coro *coro;   /* the coroutine running this connection's handlers */
    sq_coro *waiter; /* suspended in a body read or a flush, woken by the IO callback */
    unsigned holds;  /* coroutines suspended on the connection (sq__http_conn_suspend) */
    union {
        sq__http_req *req; /* HTTP/1.1: the request being served (or a pooled object) */
        struct sq__h2 *h2; /* HTTP/2 (h2_mode): the session; each stream has its request */
    };
} sq__http_act;

/* A connection.  Small on purpose: an idle keep-alive connection, or a new one that has
 * sent nothing yet, is only this ("parked"), in one of the server's parked lists, which
 * time it out without a timer of its own; every field counts. */
struct sq_http_conn {
    sq_io io;
    sq_http_server *srv;
    /* in srv->conns, or in srv->idle or srv->fresh while parked */
    sq_http_conn *prev, *next;
    sq__http_act *a;     /* NULL while parked */
    sq__tp *tp;          /* the transport: NULL for a plain socket */
    uint64_t since;      /* parked: loop time (ns) it was parked (or accepted) */
    uint16_t parsed;     /* bytes of a->rbuf + rpos the parser already saw (a hint: may be less);
                            while lingering (both protocols), the KiB drained */
    int16_t error;       /* the error that closed the connection (errno or a squall code) */
    unsigned char tkind; /* what the timer measures */
    unsigned char peer_family; /* AF_INET, AF_INET6 (peer_addr) or AF_UNIX */
    bool waiter_writes : 1;    /* the waiter is a flush waiting for the output to drain */
    bool sendfile_wait : 1;    /* the waiter is sq_http_sendfile waiting for SQ_WRITE */
    bool closed : 1;           /* fd closed; memory freed once nothing refers to it */
    bool close_after : 1;      /* close once the output is written */
    bool peer_eof : 1;
    bool in_batch : 1; /* inside the IO callback's resume: it writes the output after */
    bool discarding : 1;
    bool in_io : 1;       /* inside a callback of ours (defer freeing) */
    bool lingering : 1;   /* response sent, write side shut: draining input before close */
    bool rpaused : 1;     /* output above write_high_water: no new request is read or parsed */
    bool abort_close : 1; /* close with a reset (the client stopped reading) */
    bool h2_mode : 1;     /* the connection speaks HTTP/2 (c->a->h2) */
    bool parked : 1;      /* in srv->idle or srv->fresh, without its sq__http_act */
    bool fresh : 1;       /* parked in srv->fresh (no request yet), not srv->idle */
    bool served : 1;      /* a request head was parsed: parks in srv->idle from now on */
    unsigned char peer_addr[16]; /* the peer's address (4 bytes for IPv4), formatted on use */
};

/* Suspend the calling coroutine (the handler's or another, e.g. one streaming a detached
 * request) until the IO callback or the close wakes it.  Meanwhile the connection is neither
 * parked nor freed, even once it is closed and its request finished (by an on_close callback
 * or another coroutine): the public call that waited releases it on its way out when it
 * fails (sq__http_conn_release). */
static inline void sq__http_conn_suspend(sq_http_conn *c)
{
    sq__http_act *a = c->a;
    a->holds++;
    sq_coro_suspend();
    a->holds--;
}

/* Bytes of the connection's output not yet written. */
static inline size_t sq__http_out_pending(const sq_http_conn *c)
{
    return c->a->out.len - c->a->opos;
}

/* A response with this status has no body (1xx, 204, 304); nor has one to a HEAD. */
static inline bool sq__http_status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}
static inline bool sq__http_resp_no_body(const sq__http_req *r)
{
    return r->is_head || !sq__http_status_has_body(r->status);
}

/* parser.c: the bytes a token (a header name) may hold, RFC 9110 §5.6.2 */
extern const uint8_t sq__http_tchar[256];

/* response.c */
void sq__http_resp_reset(sq__http_req *r);
/* One access-log line for a finished request, in the format sq_log_set_access_format chose
 * (HTTP/1.x and HTTP/2 alike). */
void sq__http_access_log(const sq__http_req *r);
/* The line for a response the server made without a request it took (sq__http_error_text:
 * a head the parser refused, the header timeout's 408 …): the status, `bytes` of body, and
 * the request line when the buffered head starts with a whole one, else "-". */
void sq__http_access_log_refused(const sq_http_conn *c, int status, size_t bytes);
/* Append the response (head and buffered body) to c->a->out, and mark it finished. */
int sq__http_resp_finish(sq_http_conn *c, sq__http_req *r);
/* Append the head for a chunked response and the body so far as a chunk. */
int sq__http_resp_flush(sq_http_conn *c, sq__http_req *r);
/* Append the head for a body of body.len + extra bytes with Content-Length (no gzip) and
 * the buffered body; the response is then RESP_HEAD_SENT | RESP_BODY_DONE. */
int sq__http_resp_head_len(sq_http_conn *c, sq__http_req *r, uint64_t extra);
/* Append a chunk header ("hex\r\n") for `len` bytes; the caller sends them and "\r\n". */
int sq__http_put_chunk_header(sq_http_conn *c, size_t len);
/* Give the connection an output buffer from the server's pool if it has none. */
void sq__http_out_acquire(sq_http_conn *c);
/* Give an empty output buffer back to the pool (an idle HTTP/2 connection keeps none). */
void sq__http_out_release(sq_http_conn *c);
/* A short error response with Connection: close. */
void sq__http_error_response(sq_http_conn *c, int status);
/* The same with a text of our own as the body (a constant, under 160 bytes). */
void sq__http_error_text(sq_http_conn *c, int status, const char *text);
/* Format the Date line (and head200's copy of it) if the second changed. */
void sq__http_date_refresh(sq_http_server *srv);
/* Allocate srv->head200 for srv->s.server_name (date_line follows on the first refresh). */
int sq__http_head200_init(sq_http_server *srv);
#define SQ__HTTP_STATUS200_LEN 17 /* "HTTP/1.1 200 OK\r\n" */

/* server.c */
/* Write what c->a->out holds; may close the connection on errors. */
void sq__http_conn_write(sq_http_conn *c);
bool sq__http_want_close(sq_http_conn *c, sq__http_req *r);
/* An HTTP/1.1 request of c is between its head and the end of its response. */
static inline bool sq__http_req_active(const sq_http_conn *c)
{
    return c->a && !c->h2_mode && c->a->req && c->a->req->active;
}
/* A new connection on an accepted, non-blocking fd (owned from now on). */
void sq__http_conn_new(sq_http_server *srv, int fd, const struct sockaddr *peer);
/* Close the fd now (on_connection_close runs, a waiting handler wakes); idempotent. */
void sq__http_conn_close(sq_http_conn *c, int err);
/* Free a closed connection once nothing refers to it. */
void sq__http_conn_release(sq_http_conn *c);
/* Set up a parked list and its timer. */
void sq__http_parked_init(sq_http_server *srv, sq__http_parked *l, double timeout);
/* Free pooled active parts, output buffers and HTTP/2 stream objects and frame buffers
 * beyond `keep` of each (0: all of them, at sq_http_server_free).  With until_ns
 * (sq__mono_ns time) the frame buffers' unmapping stops there: false while some are left. */
bool sq__http_pools_trim(sq_http_server *srv, size_t keep, uint64_t until_ns);
/* The trim after a burst (listen.c) counts open connections: nconns and the upgraded ones
 * (a WebSocket holds its buffers, and a coroutine while a message is handled), per server
 * for its peak, and per thread for the coroutine stacks the thread's servers share. */
extern _Thread_local size_t sq__http_thread_open;
static inline size_t sq__http_open(const sq_http_server *srv)
{
    return srv->nconns + srv->nupgraded;
}
/* Count a connection in (after nconns++ or nupgraded++) or out (after nconns-- or
 * nupgraded--): the peak, and the trim after a burst, armed when the count falls to a
 * quarter of the peak and disarmed when it rises above that again before the trim. */
void sq__http_trim_arm(sq_http_server *srv);
static inline void sq__http_conn_counted(sq_http_server *srv)
{
    size_t open = sq__http_open(srv);
    sq__http_thread_open++;
    if (open > srv->conns_peak)
        srv->conns_peak = open;
    else if (open > srv->conns_peak / 4 && sq_timer_active(&srv->trim_timer))
        sq_timer_stop(&srv->trim_timer);
}
static inline void sq__http_conn_uncounted(sq_http_server *srv)
{
    sq__http_thread_open--;
    if (srv->conns_peak >= SQ__HTTP_TRIM_PEAK && sq__http_open(srv) <= srv->conns_peak / 4 &&
        !sq_timer_active(&srv->trim_timer))
        sq__http_trim_arm(srv);
}
/* The trims of the heap (malloc_trim, on a thread of their own) finished so far (tests). */
unsigned sq__http_heap_trims(void);
/* Resolve the shutdown future once the last connection is gone. */
void sq__http_shutdown_check(sq_http_server *srv);

/* Free a request object and its buffers; or only the buffers (an object embedded elsewhere:
 * an HTTP/2 stream). */
void sq__http_req_free(struct sq__http_req *r);
void sq__http_req_free_buffers(struct sq__http_req *r);
/* The connection's timer: `kind` for `seconds` (see server.c's arm()). */
void sq__http_arm(sq_http_conn *c, unsigned kind, double seconds);
/* Register the events the connection's state calls for. */
void sq__http_update_io(sq_http_conn *c);
/* The lingering close, HTTP/1.1's and HTTP/2's (as nginx's lingering_close): the responses
 * are out, our side is shut, and what the peer still sends is read and dropped, so that the
 * close does not reset the connection under the end of the responses.  It lasts
 * SQ__HTTP_LINGER_SECONDS (HTTP/2: without the peer taking a byte) and SQ__HTTP_LINGER_MAX
 * bytes drained at most.  sq__http_linger() starts it (the connection's timer armed for
 * `seconds`: its T_LINGER); sq__http_linger_drain() reads and drops, and closes the
 * connection at the peer's end, an error or the byte cap. */
#define SQ__HTTP_LINGER_SECONDS 2.0
#define SQ__HTTP_LINGER_MAX     (4u << 20)
void sq__http_linger(sq_http_conn *c, double seconds);
void sq__http_linger_drain(sq_http_conn *c);
/* The peer's address as text (48 bytes), X-Real-Ip and friends applied to a request. */
void sq__http_format_peer(const sq_http_conn *c, char *dst);
/* r->pub.remote_ip: c's peer, formatted unless r already holds it. */
void sq__http_set_remote_ip(const sq_http_conn *c, sq__http_req *r);
void sq__http_apply_xheaders(sq_http_conn *c, sq__http_req *r);
/* response.c: replace r->body by its gzip encoding when the settings and the client allow
 * and it is worth it; true if it did.  The first two checks are inline: most responses go
 * no further. */
bool sq__http_gzip_body(sq_http_conn *c, sq__http_req *r);
static inline bool sq__http_maybe_gzip(sq_http_conn *c, sq__http_req *r)
{
    return c->srv->s.gzip && r->accept_gzip && sq__http_gzip_body(c, r);
}

/* h2.c: HTTP/2 connections (see there) */
typedef struct sq__h2 sq__h2;
int sq__h2_start(sq_http_conn *c, const char *data, size_t len);
void sq__h2_io(sq_http_conn *c, unsigned events);
void sq__h2_timeout(sq_http_conn *c, unsigned kind);
void sq__h2_goaway(sq_http_conn *c);
void sq__h2_conn_closed(sq_http_conn *c);
/* sq_http_server_free: the connection's streams forget the server (req->server NULL). */
void sq__h2_forget_server(sq_http_conn *c);
bool sq__h2_busy(const sq_http_conn *c);
bool sq__h2_idle(const sq_http_conn *c);
void sq__h2_free(sq_http_conn *c);
bool sq__h2_pool_trim(sq_http_server *srv, size_t keep, uint64_t until_ns);
ssize_t sq__h2_read_body(sq__http_req *r, const char **data);
/* decompress_request (inflate.c): whether r's body is gzip to inflate; the whole body
 * inflated (from the raw one, or the raw read's error); the next inflated piece, reading
 * raw pieces with raw_chunk; the state freed (at the end of the request). */
bool sq__inflate_wanted(sq__http_req *r);
ssize_t sq__inflate_whole(sq__http_req *r, const char *raw, ssize_t len, const char **data);
ssize_t sq__inflate_chunk(sq__http_req *r, ssize_t (*raw_chunk)(sq__http_req *, const char **),
                          const char **data);
void sq__inflate_release(sq__http_req *r);
static inline void sq__inflate_free(sq__http_req *r)
{
    if (r->inflate) sq__inflate_release(r);
}
ssize_t sq__h2_read_body_chunk(sq__http_req *r, const char **data);
int sq__h2_flush(sq__http_req *r);
int sq__h2_sendfile(sq__http_req *r, int fd, off_t offset, size_t len);
int sq__h2_finish(sq__http_req *r);
void sq__h2_detached_finished(sq__http_req *r);

/* listen.c */
void sq__http_listeners_start(sq_http_server *srv);

/* How long a handler may wait for more of r's body now: body_timeout, cut to what is left of
 * the whole body's deadline (body_timeout + bytes so far / body_min_rate from the first
 * wait); 0: that deadline has passed.  HTTP/1.1 and HTTP/2 alike. */
double sq__http_body_wait(const sq_http_settings *s, sq__http_req *r, double now);

#endif
