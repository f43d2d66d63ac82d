/** @file squall/http.h
 * The HTTP/1.1 and HTTP/2 server: connections, requests and responses.
 *
 * The server parses requests with squall/http_parser.h and calls one handler function per
 * request, on a pooled coroutine: the handler may suspend (sq_sleep, sq_await, reading the
 * body, sq_http_flush) without holding up other connections.  When the handler returns,
 * the response is finished for it unless it called sq_http_detach().  Requests on one
 * connection are answered in order; responses finished in the same loop pass (pipelining)
 * leave in one writev.  An idle keep-alive connection holds no coroutine.  Over HTTP/2
 * (settings.no_http2, http2_max_concurrent_streams) each stream is a request of its own,
 * served by the same handler on its own coroutine, so the streams of a connection run
 * concurrently; HTTPS is settings.tls (squall/tls.h).
 *
 * This is the layer under squall/web.h (applications, routes, handler classes); use it
 * directly for the lowest overhead.  All calls belong to the loop thread.
 */
#ifndef SQUALL_HTTP_H
#define SQUALL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "squall/future.h"
#include "squall/http_parser.h"
#include "squall/loop.h"
#include "squall/stream.h"
#include "squall/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A byte slice; not NUL-terminated unless said so. */
typedef struct sq_str {
    /** first byte */
    const char *ptr;
    /** number of bytes */
    size_t len;
} sq_str;

/* Defaults (documented limits; every one is configurable in sq_http_settings). */
#define SQ_HTTP_DEFAULT_MAX_BODY_SIZE    (100u << 20) /**< 413 beyond */
#define SQ_HTTP_DEFAULT_HEADER_TIMEOUT   30.0         /**< s to receive a whole head: 408 */
#define SQ_HTTP_DEFAULT_IDLE_TIMEOUT     75.0         /**< s a keep-alive connection may idle */
#define SQ_HTTP_DEFAULT_BODY_TIMEOUT     60.0         /**< s without body bytes: closed */
#define SQ_HTTP_DEFAULT_BODY_MIN_RATE    1024.0       /**< B/s a body must average (see below) */
#define SQ_HTTP_DEFAULT_WRITE_TIMEOUT    60.0         /**< s without output progress: closed */
#define SQ_HTTP_DEFAULT_WRITE_HIGH_WATER (64u << 10)  /**< pending output that pauses reading */
#define SQ_HTTP_DEFAULT_H2_MAX_STREAMS   128          /**< HTTP/2 streams per connection */
#define SQ_HTTP_DEFAULT_MEMORY_TRIM_DELAY 10.0         /**< s after a burst (see below) */
/** connections a server holds at once; it pauses accepting beyond */
#define SQ_HTTP_DEFAULT_MAX_CONNECTIONS  100000
/** with gzip on, smaller bodies are sent uncompressed */
#define SQ_HTTP_GZIP_MIN_LENGTH          1024

/** HTTP server settings: limits, timeouts, features.  Zeroed fields take the defaults above. */
typedef struct sq_http_settings {
    size_t max_request_line; /**< 0: SQ_HTTP_DEFAULT_MAX_REQUEST_LINE (8 KiB), 414 */
    size_t max_header_size;  /**< 0: SQ_HTTP_DEFAULT_MAX_HEADER_SIZE (64 KiB), 431 */
    size_t max_body_size;    /**< 0: SQ_HTTP_DEFAULT_MAX_BODY_SIZE (100 MiB), 413 */
    size_t max_connections;  /**< 0: SQ_HTTP_DEFAULT_MAX_CONNECTIONS; past it, accepting pauses */
    /** A request head must arrive within this: a new connection's first from its accept (a
     * TLS one's from the end of its handshake), later ones from their first byte; a partial
     * head gets 408, a connection that sent nothing is closed.  0: default; negative: none */
    double header_timeout;
    /** A keep-alive connection with nothing in flight is closed after this long (late by at
     * most 1/16 of it, and at most 1 s; never early).  0: default; negative: none */
    double idle_timeout;
    double body_timeout; /**< 0: default; negative: none */
    /** The whole body must arrive within body_timeout + received / body_min_rate seconds of
     * the head (Apache's MinRate): a client trickling a byte every few seconds is closed
     * even though each gap is shorter than body_timeout.  0: default; negative: no bound. */
    double body_min_rate;
    /** Pending output that made no progress (the client stopped reading) for this long
     * closes the connection, whatever other deadline it has.  Over HTTP/2 the same holds
     * when the client keeps the connection's flow-control window shut; a stream whose own
     * window it keeps shut this long (reading the other streams meanwhile) is reset
     * (RST_STREAM CANCEL) instead: that stream's writes (sq_http_flush, sq_http_sendfile)
     * fail with -ETIMEDOUT and the connection and its other streams go on.  0: default;
     * negative: none. */
    double write_timeout;
    /** Backpressure: while more than this many bytes of output wait for the client, the
     * connection reads and parses no further request and sq_http_flush suspends; both
     * resume once it drained to half of it.  Bounds the memory of a client that sends
     * (pipelines) but never reads.  0: SQ_HTTP_DEFAULT_WRITE_HIGH_WATER. */
    size_t write_high_water;
    bool xheaders;           /**< trust X-Real-Ip / X-Forwarded-For / X-Forwarded-Proto */
    bool gzip;               /**< gzip text-like bodies >= 1 KiB when the client accepts it
                                (not responses sent in pieces with sq_http_flush) */
    /** Inflate request bodies sent with Content-Encoding: gzip before the handler reads
     *  them (Tornado's decompress_request).  max_body_size bounds the inflated size: a gzip
     *  bomb is answered 413 as soon as its output passes it, never held; bytes that are not
     *  gzip get 400.  The header is then renamed X-Consumed-Content-Encoding and
     *  content_length is the inflated length once the whole body has been read (before,
     *  and for a body streamed in pieces, the length sent).  Streamed bodies come inflated,
     *  in pieces of at most 64 KiB. */
    bool decompress_request;
    bool no_keep_alive;      /**< close every connection after one response */
    const char *server_name; /**< Server header; NULL: "squall", "": no Server header; any
                                length; CR or LF: sq_http_server_new fails with EINVAL */
    bool reuseport;          /**< SO_REUSEPORT on listening sockets (sq_fork_processes) */
    /** One line per request through sq_log (see squall/web.h), also for the requests the
     * server answers itself, as nginx does: a head the parser refused (400, 414, 431), the
     * header timeout's 408, plain HTTP on the TLS port; their request line is logged when
     * it came whole, else "-". */
    bool access_log;
    /** HTTPS (Tornado's ssl_options): every connection starts with a TLS handshake, which
     * must complete within tls_handshake_timeout (0: header_timeout).  The server keeps a
     * reference to the context.  Requests then say protocol "https"; a plain-HTTP request
     * on the port gets a cleartext 400, as nginx answers it. */
    sq_tls_context *tls;
    /** s to complete the TLS handshake; 0: the header timeout */
    double tls_handshake_timeout;
    /** HTTP/2 (nghttp2) is on by default: "h2" is offered by ALPN on TLS (before
     * "http/1.1"), and a plain connection that starts with the HTTP/2 preface speaks h2c
     * (prior knowledge).  The same handler serves every stream, each on its own coroutine. */
    bool no_http2;
    unsigned http2_max_concurrent_streams; /**< 0: SQ_HTTP_DEFAULT_H2_MAX_STREAMS (128) */
    /** After a burst: once the open connections (WebSockets upgraded from them included)
     * have stayed at a quarter or less of their peak (a peak of 256 or more) for this
     * long, the server frees the request objects, buffers, HTTP/2 stream objects and
     * coroutine stacks it pooled beyond what the open connections can use (64 of each at
     * least; the stacks, which a thread's servers share, beyond what all their connections
     * can use), and gives the heap's free pages back to the system (glibc's malloc_trim,
     * on a thread of its own), so a spike does not stay resident.  Connections coming back
     * before then cancel it.  0: SQ_HTTP_DEFAULT_MEMORY_TRIM_DELAY; negative: never. */
    double memory_trim_delay;
} sq_http_settings;

/** An HTTP/1.1 and HTTP/2 server: listening sockets, connections, settings, a handler. */
typedef struct sq_http_server sq_http_server;
/** A request and its response in progress (struct sq_http_request). */
typedef struct sq_http_request sq_http_request;
/** A client connection of the server (opaque). */
typedef struct sq_http_conn sq_http_conn;

/** Called once per request, on its own coroutine. */
typedef void (*sq_http_handler_fn)(sq_http_request *req, void *arg);

/** The request as parsed.  Slices point into the connection's buffer and stay valid until
 * the response is finished.  Treat every field as read-only. */
struct sq_http_request {
    /** the method as sent ("GET" …) */
    sq_str method;
    sq_str uri;        /**< the request-target as sent */
    sq_str path;       /**< without the query; not percent-decoded */
    sq_str query;      /**< after '?', empty if none */
    sq_str host;       /**< Host header or absolute-form authority */
    int version_minor; /**< HTTP/1.minor (0 for HTTP/2) */
    int version_major; /**< 1, or 2 for a request on an HTTP/2 stream */
    /** the request headers, in order */
    const sq_http_header *headers;
    /** number of headers */
    size_t nheaders;
    const char *remote_ip;  /**< NUL-terminated; X-Real-Ip / X-Forwarded-For with xheaders */
    const char *protocol;   /**< "http" or "https" (X-Forwarded-Proto with xheaders) */
    int64_t content_length; /**< -1 when absent (chunked or no body) */
    /** the body comes with Transfer-Encoding: chunked */
    bool chunked;
    /** the connection stays open after this request */
    bool keep_alive;
    double start_time; /**< loop time when the head was complete */
    /** the connection the request came on */
    sq_http_conn *conn;
    /** the server that accepted it; NULL once sq_http_server_free freed it while the
     * handler was suspended (the handler runs on, on a closed connection) */
    sq_http_server *server;
    void *data; /**< for the layer above (squall/web.h) or the user */
};

/* --- server ---------------------------------------------------------------------------- */

/** A server calling handler(req, arg) for each request.  settings may be NULL (defaults).
 * NULL with errno set on failure. */
sq_http_server *sq_http_server_new(sq_loop *loop, const sq_http_settings *settings,
                                   sq_http_handler_fn handler, void *arg);
/** Listen on host:port (host NULL: every address; port 0: ephemeral).  May be called more
 * than once.  Returns 0 or a negative errno (-EADDRINUSE …).  host "unix:/path" (or
 * "unix:@name", abstract) listens on a unix-domain socket, port ignored: requests from it
 * have remote_ip "unix" (a proxy's X-Real-IP still applies with xheaders). */
int sq_http_server_listen(sq_http_server *srv, const char *host, int port);
/** Serve already-bound listening sockets too (Tornado's add_sockets): the caller's, or from
 *  systemd socket activation (sq_listen_fds()).  They belong to the server from now on.
 *  @return 0, -EINVAL (not listening stream sockets, more than 8 listening sockets in all),
 *  -ENOTSOCK, -EBADF, SQ_ECLOSED (the server is shutting down) or -ENOMEM. */
int sq_http_server_add_sockets(sq_http_server *srv, const int *fds, int n);
/** The port of the first listening socket. */
int sq_http_server_port(const sq_http_server *srv);
/** Graceful shutdown: stop accepting, close idle connections, let requests in flight finish
 * for up to `deadline` seconds, then close the rest.  WebSockets upgraded from the server
 * are sent a close with 1001 (going away) and count as connections until their peers
 * answer (or the deadline drops them).  The future resolves when every connection is gone.
 * The caller owns it. */
sq_future *sq_http_server_shutdown(sq_http_server *srv, double deadline);
/** Close everything now and free the server (after shutdown, or at exit); open WebSockets
 * are dropped without a close frame (their on_close sees 1006).  Handlers still
 * suspended run on when woken, on a closed connection (writes fail with SQ_ECLOSED); the
 * loop must run until they return for their memory to be freed. */
void sq_http_server_free(sq_http_server *srv);
/** HTTP connections currently open (the WebSockets upgraded from them no longer count). */
size_t sq_http_server_connections(const sq_http_server *srv);
/** Called when the server trims its memory after a burst (settings.memory_trim_delay), with
 * the connections still open (upgraded ones included), before the heap is trimmed: free
 * what your own pools and caches hold beyond what that many connections need, and those
 * pages go back to the system too.  The web layer's apps trim their pooled handlers this
 * way.  One callback per server; fn NULL removes it.  It runs on the server's loop and must
 * not free the server. */
void sq_http_server_on_trim(sq_http_server *srv, void (*fn)(void *arg, size_t open), void *arg);

/* --- request ------------------------------------------------------------------------------ */

/** First header named `name` (case-insensitive); {NULL, 0} when absent.  The slice is a copy
 * of a pointer into the read buffer, which reading the body may move: call it again after
 * sq_http_read_body*() rather than keeping it (the request's own fields are kept current). */
sq_str sq_http_header_get(const sq_http_request *req, const char *name);

/** Read the whole body (Content-Length or chunked).  Suspends the handler until it has
 * arrived; the result stays valid until the response is finished.  Returns its length, or
 * -E2BIG when it exceeds max_body_size (a 413 has then been queued and the connection will
 * close), SQ_ECLOSED / -ETIMEDOUT if the client went away, -EINVAL on a malformed chunked
 * body (400).  Sends "100 Continue" first when the client asked for it.  Repeated calls
 * return the same body. */
ssize_t sq_http_read_body(sq_http_request *req, const char **data);
/** Streaming alternative (Tornado's stream_request_body): the next piece of the body, valid
 * until the next call; 0 at the end.  The body is never held whole in memory, so
 * max_body_size does not apply.  Errors as above. */
ssize_t sq_http_read_body_chunk(sq_http_request *req, const char **data);

/* --- response ------------------------------------------------------------------------------ */

/** Status code and reason (NULL: the standard phrase).  -EINVAL for a code outside
 * 100-599 or a reason with a control byte (CR, LF …); -EALREADY once headers were sent.
 * A 1xx is an interim response, never a final one, so -EINVAL for 100-199 (unlike Tornado,
 * whose set_status takes them and leaves the client waiting for a final response), except
 * 101 Switching Protocols on an HTTP/1.1 request that asked for an upgrade (Connection:
 * upgrade and an Upgrade header), to be followed by sq_http_detach_connection or
 * sq_http_detach_stream; a handler that returns without detaching sends that 101, and the
 * connection is closed after it.  100 Continue is sent by the server itself
 * (sq_http_read_body); HTTP/2 has no 101. */
int sq_http_set_status(sq_http_request *req, int code, const char *reason);
/** The response status set so far (200 unless changed). */
int sq_http_get_status(const sq_http_request *req);
/** Replace / append / remove a response header.  -EINVAL when the name is not a token or
 * the value holds a control byte but HTAB (CR, LF, NUL, DEL …; nothing is sent); -EALREADY once
 * headers were sent. */
int sq_http_set_header(sq_http_request *req, const char *name, const char *value);
/** Append a response header (repeated names are kept); errors as sq_http_set_header(). */
int sq_http_add_header(sq_http_request *req, const char *name, const char *value);
/** Remove every response header of that name; errors as sq_http_set_header(). */
int sq_http_clear_header(sq_http_request *req, const char *name);
/** Append to the response body buffer.  -EALREADY after finish. */
int sq_http_write(sq_http_request *req, const void *data, size_t len);
/** Send what is buffered: the headers first (Transfer-Encoding: chunked, since the length
 * is not known yet) then the body so far.  Suspends while the connection's output is above
 * its high-water mark.  Returns 0 or the connection's error.
 * One coroutine at a time may be suspended on a request (in this call, the body reads or
 * sq_http_sendfile): a second one waiting at the same time is not supported (one reading
 * the body while another streams the response must take turns). */
int sq_http_flush(sq_http_request *req);
/** Send `len` bytes of `fd` from `offset` as (the rest of) the response body with
 * sendfile(2), suspending the calling coroutine while the socket is full (a client that
 * takes nothing for body_timeout is dropped).  When nothing was flushed yet and the
 * response has no other body, it gets Content-Length: len + the bytes buffered with
 * sq_http_write (not chunked) and is then complete: later writes are dropped.  After an
 * sq_http_flush it goes out as one more chunk.  For HEAD (and 204/304) only the head with
 * the length is sent.  The caller keeps ownership of fd (its file offset is not moved).
 * Returns 0 or a negative errno: SQ_ECLOSED (or the connection's error) if the client
 * left, -EIO when the file is shorter than offset + len, -EALREADY after finish,
 * SQ_ENOTCORO outside a coroutine.  After an error mid-body the connection is closed, never
 * finished as if complete.  Must be called from the request's handler coroutine. */
int sq_http_sendfile(sq_http_request *req, int fd, off_t offset, size_t len);
/** Finish the response: Content-Length when nothing was flushed, else the last chunk.  No
 * body is sent for HEAD, 1xx, 204 and 304.  Idempotent. */
int sq_http_finish(sq_http_request *req);
/** Whether the response has been finished (sq_http_finish()). */
bool sq_http_finished(const sq_http_request *req);
/** Keep the request open after the handler returns (Tornado's \@asynchronous): finish it
 * later with sq_http_finish() from a callback or another coroutine — also when the client
 * has gone meanwhile, since that call is what frees the connection.  Once a detached
 * request is finished, req is not to be used again: a coroutine that was streaming it (in
 * sq_http_flush, sq_http_read_body …) when an on_close callback finished it gets an error
 * from that call, and must then leave req alone. */
void sq_http_detach(sq_http_request *req);
/** Take the connection away from the HTTP server, for a protocol upgrade (Tornado's
 * HTTP1Connection.detach): send the response queued so far (e.g. a 101 head set with
 * sq_http_set_status/sq_http_set_header; it is finished here), suspending the calling
 * handler coroutine until it reached the kernel, then hand the socket over.  *fd is the
 * caller's from now on (the server no longer watches or counts it); the bytes already
 * received after this request are copied into a malloc'd *extra (NULL/0 when none; the
 * caller frees it).  The request counts as finished; its memory is released when the
 * handler returns.  Returns 0, SQ_ECLOSED (or the connection's error) if the client left,
 * -EALREADY if the request was already finished or detached, -EINVAL while a request body
 * is still unread, -ENOMEM, SQ_ENOTCORO outside the handler's coroutine; -EOPNOTSUPP on
 * an HTTPS connection (its bytes go through the cipher: use sq_http_detach_stream). */
int sq_http_detach_connection(sq_http_request *req, int *fd, char **extra, size_t *extra_len);
/** The same, handing over a stream (Tornado's detach() returns an IOStream): plain or TLS,
 * with the bytes received after this request already in its read buffer.  The caller frees
 * it with sq_stream_free.  Errors as sq_http_detach_connection (never -EOPNOTSUPP). */
int sq_http_detach_stream(sq_http_request *req, sq_stream **out);
/** Called (once) if the client goes before the response is finished: it closes or resets
 * the connection, sends its FIN (HTTP/1), or resets the stream (HTTP/2).  Registered after
 * that happened (a handler that suspended first), it is called on the next loop pass, or
 * when the handler returns detached. */
void sq_http_on_connection_close(sq_http_request *req, void (*cb)(sq_http_request *, void *),
                                 void *arg);

/** The standard reason phrase for a status code ("Unknown" if none). */
const char *sq_http_reason(int code);

/* --- several processes ------------------------------------------------------------------- */

/** Tornado's fork_processes: fork `n` workers (0: one per CPU) and return, in each worker,
 * its id in [0, n).  Call it before creating loops or threads; each worker then listens
 * with settings.reuseport (or on a socket bound before the fork).  The parent never
 * returns: it restarts a worker that dies from a signal or exits non-zero, up to
 * `max_restarts` times in all (then it stops the others and exits 1), forwards each SIGINT
 * and SIGTERM to the workers, and exits 0 once every worker has exited (1 if one could not
 * be restarted).  Workers start with the signal mask and dispositions the process had.
 * Returns a negative errno only if the first fork fails. */
int sq_fork_processes(int n, int max_restarts);

#ifdef __cplusplus
}
#endif
#endif
