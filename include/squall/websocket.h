/** @file squall/websocket.h
 * RFC 6455 WebSockets, server and client, with permessage-deflate
 * (RFC 7692).  Tornado's WebSocketHandler and websocket_connect, in C.
 *
 * Server: route a path to sq_websocket_handler with a `sq_ws_class *` as the route's
 * init_arg.  The handshake runs on the request's coroutine (check_origin,
 * select_subprotocol, open); afterwards the connection is driven by the loop and holds no
 * coroutine while idle: each message runs on_message on a pooled coroutine, which may
 * suspend.  Messages on one connection are handled in order — while on_message is
 * suspended, no further frames are read from that connection (backpressure to the peer).
 *
 *   static void echo(sq_ws *ws, const char *msg, size_t len, bool binary) {
 *       sq_ws_send(ws, msg, len, binary);
 *   }
 *   static const sq_ws_class echo_ws = { .on_message = echo };
 *   static const sq_route routes[] = {
 *       { "/ws", &sq_websocket_handler, NULL, (void *)&echo_ws },
 *       { 0 },
 *   };
 *
 * Client: sq_ws_connect() / sq_ws_connect_future(), then sq_ws_read_message() in a loop.
 *
 * Message data handed to callbacks and returned by reads is valid until the callback
 * returns / until the next read.  All calls belong to the loop thread.
 */
#ifndef SQUALL_WEBSOCKET_H
#define SQUALL_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "squall/future.h"
#include "squall/loop.h"
#include "squall/web.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A WebSocket connection, server or client side. */
typedef struct sq_ws sq_ws;

/** Close codes (RFC 6455 section 7.4.1). */
enum {
    SQ_WS_CLOSE_NORMAL = 1000,
    SQ_WS_CLOSE_GOING_AWAY = 1001,
    SQ_WS_CLOSE_PROTOCOL_ERROR = 1002, /**< unmasked client frame, reserved bits, bad opcode … */
    SQ_WS_CLOSE_UNSUPPORTED = 1003,
    SQ_WS_CLOSE_NO_STATUS = 1005,    /**< reported when the peer's close frame had no code */
    SQ_WS_CLOSE_ABNORMAL = 1006,     /**< reported when the connection dropped without a close */
    SQ_WS_CLOSE_INVALID_DATA = 1007, /**< invalid UTF-8 in a text message */
    SQ_WS_CLOSE_POLICY = 1008,
    SQ_WS_CLOSE_TOO_BIG = 1009, /**< message over max_message_size */
    SQ_WS_CLOSE_MANDATORY_EXT = 1010,
    SQ_WS_CLOSE_INTERNAL_ERROR = 1011,
};

#define SQ_WS_DEFAULT_MAX_MESSAGE_SIZE (10u << 20) /**< Tornado's default: 1009 beyond */
#define SQ_WS_DEFAULT_CLOSE_TIMEOUT    5.0         /**< s to wait for the peer's close frame */
#define SQ_WS_DEFAULT_HIGH_WATER       (1u << 20)  /**< sq_ws_write suspends above this */
#define SQ_WS_DEFAULT_WRITE_TIMEOUT    60.0        /**< s without output progress: dropped */

/** Settings shared by the server (in sq_ws_class) and the client (in sq_ws_connect_options).
 * Zero means the default everywhere. */
typedef struct sq_ws_settings {
    size_t max_message_size; /**< 0: SQ_WS_DEFAULT_MAX_MESSAGE_SIZE; larger messages: 1009 */
    double ping_interval;    /**< s between pings sent by us; 0: no pings */
    double ping_timeout;     /**< s without any frame from the peer after a ping before the
                                connection is closed as dead; 0: max(3 * interval, 30) */
    double close_timeout;    /**< 0: SQ_WS_DEFAULT_CLOSE_TIMEOUT */
    /** Backpressure: while more than this many bytes wait to be sent, no frame is read
     * (and so no pong generated), sq_ws_send returns 1 and sq_ws_write suspends; reading
     * resumes once the output drained to half of it.  0: SQ_WS_DEFAULT_HIGH_WATER. */
    size_t high_water;
    /** Pending output that made no progress for this long (the peer stopped reading) drops
     * the connection (close code 1006).  0: SQ_WS_DEFAULT_WRITE_TIMEOUT; negative: none. */
    double write_timeout;
    /** permessage-deflate.  Server: accepted when the client offers it and this is set
     * (off by default, as in Tornado: each compressed connection costs zlib state).
     * Client: offered unless sq_ws_connect_options.no_compression is set. */
    bool compression;
    int compression_level;    /**< zlib level 1-9; 0: 6 */
    bool no_context_takeover; /**< ask for / use *_no_context_takeover for our side: no
                                 zlib state kept between our messages */
    int max_window_bits;      /**< 8-15 for our compressor; 0: 15 */
} sq_ws_settings;

/** A WebSocket handler class (server side).  Every callback is optional. */
typedef struct sq_ws_class {
    /** Decide whether a handshake from `origin` (NULL: no Origin header) is accepted.
     * Default: accept when there is no Origin, or when its host[:port] equals the request's
     * Host header; otherwise 403 (Tornado's same-origin rule). */
    bool (*check_origin)(sq_handler *h, const char *origin);
    /** Pick one of the n subprotocols the client offered (in its order): return one of the
     * given pointers, or NULL for none (then no Sec-WebSocket-Protocol is sent). */
    const char *(*select_subprotocol)(sq_handler *h, const char *const *offered, size_t n);
    /** After the 101 went out.  sq_ws_handler(ws) is valid here (path args, cookies,
     * headers): copy what later callbacks need into the state.  May suspend and send. */
    void (*open)(sq_ws *ws);
    /** One whole message (fragments joined, inflated, UTF-8 checked for text).  May
     * suspend; the next message waits for it to return. */
    void (*on_message)(sq_ws *ws, const char *data, size_t len, bool binary);
    /** A ping arrived (answered with a pong by the library, on its next write: the latest
     * ping only, as RFC 6455 allows) / a pong arrived. */
    void (*on_ping)(sq_ws *ws, const char *data, size_t len);
    /** see on_ping */
    void (*on_pong)(sq_ws *ws, const char *data, size_t len);
    /** Once, when the connection is closed for any reason (sq_ws_close_code/_reason tell
     * why).  Must not suspend.  The sq_ws is freed after it returns. */
    void (*on_close)(sq_ws *ws);
    size_t state_size; /**< bytes of zeroed per-connection state: sq_ws_state() */
    /** limits, compression, keep-alive pings */
    sq_ws_settings settings;
    void *arg; /**< for the user: sq_ws_class_arg() */
} sq_ws_class;

/** The web handler class that performs the handshake for the route's `sq_ws_class`
 * (init_arg).  A request that is not a valid upgrade gets 400 (426 with
 * Sec-WebSocket-Version: 13 for another version, 403 from check_origin, 405 for a
 * method other than GET). */
extern const sq_handler_class sq_websocket_handler;

/* --- both sides ------------------------------------------------------------------------------ */

/** Queue a message (text must be valid UTF-8; it is not checked on send).  The future
 * resolves with status 0 when the whole frame has been handed to the kernel, or with
 * SQ_ECLOSED (or the socket's error) if the connection closed first.  The caller owns the
 * future; NULL on -ENOMEM.  Never crashes on a closed connection: the future fails. */
sq_future *sq_ws_write_message(sq_ws *ws, const void *data, size_t len, bool binary);
/** Fire-and-forget form: 0 when queued; 1 when queued but more than high_water bytes are now
 * waiting for this peer (Node's write() returning false): stop sending to it, drop it or
 * close it (a coroutine can use sq_ws_write instead, which waits).  SQ_ECLOSED once
 * closing/closed, -ENOMEM. */
int sq_ws_send(sq_ws *ws, const void *data, size_t len, bool binary);
/** Coroutine form: queue it and, while more than high_water bytes are pending, suspend
 * until it reaches the kernel.  0 or a negative error (SQ_ECLOSED …). */
int sq_ws_write(sq_ws *ws, const void *data, size_t len, bool binary);
/** Send a ping (payload at most 125 bytes: -EINVAL beyond).  0, SQ_ECLOSED. */
int sq_ws_ping(sq_ws *ws, const void *data, size_t len);
/** Start the close handshake with `code` (0: 1000 / no code) and `reason` (NULL: none; at
 * most 123 bytes of UTF-8, -EINVAL otherwise).  The connection drops when the peer answers or after
 * close_timeout.  Idempotent: later calls return -EALREADY. */
int sq_ws_close(sq_ws *ws, int code, const char *reason);
/** The close code and reason received from the peer (or the code we closed with after a
 * protocol violation; SQ_WS_CLOSE_ABNORMAL for a dropped connection); 0 / "" while open. */
int sq_ws_close_code(const sq_ws *ws);
/** The close reason received ("" if none), valid while the sq_ws lives. */
const char *sq_ws_close_reason(const sq_ws *ws);
/** Whether the connection is closed or closing. */
bool sq_ws_closed(const sq_ws *ws);
/** The negotiated subprotocol, or NULL. */
const char *sq_ws_subprotocol(const sq_ws *ws);
/** Whether permessage-deflate was negotiated. */
bool sq_ws_compressed(const sq_ws *ws);
/** Bytes queued but not yet handed to the kernel. */
size_t sq_ws_pending(const sq_ws *ws);
/** The loop the connection belongs to. */
sq_loop *sq_ws_loop(const sq_ws *ws);

/* --- server side ------------------------------------------------------------------------------ */

/** The per-connection state (class state_size bytes, zeroed), or NULL if state_size is 0. */
void *sq_ws_state(sq_ws *ws);
/** The class's arg. */
void *sq_ws_class_arg(const sq_ws *ws);
/** The handshake request's handler: valid only inside check_origin, select_subprotocol and
 * open (NULL afterwards and on the client side). */
sq_handler *sq_ws_handler(sq_ws *ws);
/** The peer's IP address (NUL-terminated). */
const char *sq_ws_remote_ip(const sq_ws *ws);

/* --- client side ------------------------------------------------------------------------------ */

/** Options of sq_ws_connect(); zeroed: the defaults. */
typedef struct sq_ws_connect_options {
    const char *const *subprotocols; /**< offered, in order of preference */
    /** how many subprotocols */
    size_t nsubprotocols;
    const char *origin;         /**< Origin header to send; NULL: none */
    const char *const *headers; /**< extra "Name: value" lines, nheaders of them */
    /** how many headers */
    size_t nheaders;
    double connect_timeout;  /**< s for TCP connect + handshake; 0: 20 s */
    bool no_compression;     /**< do not offer permessage-deflate */
    sq_ws_settings settings; /**< .compression is ignored here (see no_compression) */
    /** wss://: the client context (a CA file, a client certificate, no verification); NULL:
     * verify the server against the system CA store. */
    sq_tls_context *tls;
} sq_ws_connect_options;

/** Connect to a ws:// or wss:// URL and perform the handshake.  The future's value is a new sq_ws owned by the future until taken (sq_await/
 * sq_gather with a value pointer, sq_future_take_value; the taker frees it with
 * sq_ws_free()); sq_future_value() only peeks, and a connection nobody takes is freed with
 * the future.  Errors: -EINVAL for a bad URL, SQ_ERESOLVE, -ECONNREFUSED, -ETIMEDOUT,
 * -EPROTO when the server answers with anything but a valid 101 (the status is logged),
 * SQ_ETLS when the TLS handshake or the server's certificate fails (sq_tls_last_error()).
 * opts may be NULL. */
sq_future *sq_ws_connect_future(sq_loop *loop, const char *url, const sq_ws_connect_options *opts);
/** Coroutine form: the connection, or NULL with *err set. */
sq_ws *sq_ws_connect(const char *url, const sq_ws_connect_options *opts, int *err);
/** Suspend until the next whole message: returns its length (>= 0) and sets *data (valid
 * until the next read) and *binary; returns SQ_ECLOSED once the connection has closed
 * (sq_ws_close_code tells how), or another negative error.  Pings are answered and pongs
 * consumed without surfacing here.  One reader at a time (SQ_EBUSY_READ). */
ssize_t sq_ws_read_message(sq_ws *ws, const char **data, bool *binary);
/** Close (if open, with 1000) without waiting, and free a client connection.  Also safe from
 * a write future's done callback and while another coroutine waits in sq_ws_read_message
 * (which then returns SQ_ECLOSED): the memory then goes on a later loop pass.  Pending write
 * futures fail with SQ_ECLOSED.  ws must not be used after this call. */
void sq_ws_free(sq_ws *ws);
/** The user pointer set with sq_ws_set_data() (NULL by default). */
void *sq_ws_get_data(const sq_ws *ws);
/** Attach a user pointer to the connection. */
void sq_ws_set_data(sq_ws *ws, void *data);

#ifdef __cplusplus
}
#endif
#endif
