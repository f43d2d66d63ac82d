/** @file squall/client.h
 * The asynchronous HTTP client (Tornado's AsyncHTTPClient), on libcurl.
 *
 *   sq_fetch_response *r = NULL;
 *   int64_t rc = sq_await(sq_fetch("http://127.0.0.1:8888/json", NULL), (void **)&r);
 *   if (rc == 0) printf("%d, %zu bytes\n", r->code, r->body_len);
 *   else printf("failed: %s\n", sq_strerror((int)rc));  // r may still be set: SQ_EHTTP
 *   sq_fetch_response_free(r);
 *
 * Transfers run on libcurl's multi-socket API driven by the squall loop (one sq_io per
 * socket libcurl opens and one sq_timer per client), so a fetch never blocks the loop and
 * any number of them proceed at once.  A client keeps one libcurl multi handle, hence one
 * connection cache: keep-alive connections are reused across fetches to the same host, and
 * HTTP/2 (multiplexed) is used for https URLs whose server offers it through ALPN — plain
 * http:// stays HTTP/1.1.
 *
 * Ownership: the response a fetch future carries (also with SQ_EHTTP) belongs to the
 * future until taken — by sq_await/sq_gather with a value pointer or sq_future_take_value —
 * and the taker frees it with sq_fetch_response_free(); sq_future_value() only peeks.  A
 * response nobody takes is freed with the future, so fire-and-forget
 * `sq_future_release(sq_fetch(url, NULL))` and `sq_await(f, NULL)` leak nothing (a fetch
 * released while pending still runs to completion; cancel it to stop it).  Callbacks in a request
 * (streaming, header, body producer) run on the loop thread, inside libcurl; they, like a fetch
 * future's done callbacks, may start fetches, cancel them and free the client. All calls belong to
 * the loop thread, except sq_fetch_sync().
 */
#ifndef SQUALL_CLIENT_H
#define SQUALL_CLIENT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "squall/future.h"
#include "squall/http_parser.h"
#include "squall/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults (Tornado's). */
#define SQ_FETCH_DEFAULT_CONNECT_TIMEOUT 20.0 /**< s to connect (and finish TLS) */
#define SQ_FETCH_DEFAULT_REQUEST_TIMEOUT 20.0 /**< s for the whole transfer */
/** redirects followed at most when max_redirects is 0 */
#define SQ_FETCH_DEFAULT_MAX_REDIRECTS   5
#define SQ_FETCH_DEFAULT_MAX_CLIENTS     10           /**< transfers at once per client */
#define SQ_FETCH_DEFAULT_MAX_BODY_SIZE   (100u << 20) /**< response bodies kept in memory */
/** User-Agent sent when user_agent is NULL */
#define SQ_FETCH_DEFAULT_USER_AGENT      "squall/0.1"

/** An HTTP client: a libcurl multi handle driven by one loop, with its connection cache and its
 * queue of waiting fetches. */
typedef struct sq_http_client sq_http_client;

/** Values of sq_fetch_request.auth_mode: HTTP basic or digest authentication. */
enum { SQ_FETCH_AUTH_BASIC = 0, SQ_FETCH_AUTH_DIGEST = 1 };

/** Streaming upload: fill buf with up to len bytes of the request body and return how many,
 * 0 at the end, SQ_FETCH_PAUSE when no byte is ready yet, or a negative errno to abort the
 * fetch with that error.  Called on the loop thread whenever libcurl can send more; it must
 * not block.  Returning more than len, or more in all than the body_len declared, fails the
 * fetch with -EINVAL. */
typedef ssize_t (*sq_fetch_body_producer)(char *buf, size_t len, void *arg);
/** A body producer's answer when it has nothing to send yet (its bytes come from elsewhere:
 * a request being received, a queue): the transfer pauses, its socket unwatched, until
 * sq_fetch_resume() is called with its future; then the producer is called again.  The
 * request timeout goes on running meanwhile. */
#define SQ_FETCH_PAUSE ((ssize_t)-EAGAIN)
/** Streaming download: one piece of the (decompressed) body; the response's body then stays
 * empty.  Return 0 to go on or a negative errno to abort the fetch with it. */
typedef int (*sq_fetch_streaming_cb)(const char *data, size_t len, void *arg);
/** Each raw header line as received, status lines included ("HTTP/1.1 200 OK\r\n", then
 * "Name: value\r\n" …, then "\r\n"), for every response of a redirect chain. */
typedef void (*sq_fetch_header_cb)(const char *line, size_t len, void *arg);

/** One request.  A zeroed struct (or NULL) means: GET, no extra headers, 20 s connect and
 * request timeouts, redirects followed (at most 5), gzip accepted and decoded, certificates
 * validated, HTTP status >= 400 reported as SQ_EHTTP.  Every field is copied (strings and
 * the body too) by the fetch call, except the callbacks' `arg`s and what they point to. */
typedef struct sq_fetch_request {
    const char *method;                   /**< NULL: "GET" (or "POST" when a body is given) */
    const char *const *headers;           /**< "Name: value" strings, NULL-terminated; "Name:" drops
                                             a header libcurl would add */
    const void *body;                     /**< request body (copied); NULL: none */
    size_t body_len;                      /**< its length; for a producer, the total if known
                                             (0: unknown, sent chunked; a producer that ends
                                             before it fails the fetch with -EPIPE) */
    sq_fetch_body_producer body_producer; /**< instead of body: streamed upload */
    /** argument of body_producer and body_rewind */
    void *body_producer_arg;
    /** With a producer: start the body over (a 307/308 redirect, which must resend it);
     * return 0 when the producer will produce it again from its first byte, a negative
     * errno otherwise.  Without it such a redirect fails the fetch with -ESPIPE. */
    int (*body_rewind)(void *arg);
    double connect_timeout;    /**< s; 0: 20 s; negative: none */
    double request_timeout;    /**< s; 0: 20 s; negative: none */
    /** return 3xx responses as they are.  Followed, a 307/308 keeps the method and body, a
     * 301/302 too except that a POST becomes a GET, and a 303 is followed with a GET
     * whatever the method (as in Tornado), without the body and its Content-* headers, and
     * without credentials (auth_*, Authorization, Cookie) if it leads to another origin. */
    bool no_follow_redirects;
    int max_redirects;         /**< 0: 5; more than that fails with SQ_EREDIRECTS */
    const char *user_agent;    /**< NULL: SQ_FETCH_DEFAULT_USER_AGENT */
    bool no_decompress;        /**< do not send Accept-Encoding: gzip nor decode */
    const char *auth_username; /**< credentials for auth_mode (basic or digest) */
    /** password for auth_username */
    const char *auth_password;
    int auth_mode;          /**< SQ_FETCH_AUTH_BASIC (default) or _DIGEST */
    const char *proxy_host; /**< HTTP proxy; NULL: none (proxy env vars are ignored) */
    /** port of proxy_host */
    int proxy_port;
    /** credentials for the proxy, if it wants them */
    const char *proxy_username;
    /** password for proxy_username */
    const char *proxy_password;
    bool no_validate_cert;   /**< accept any server certificate (tests only) */
    const char *ca_certs;    /**< PEM file of CAs; NULL: the system's */
    const char *client_cert; /**< PEM client certificate, and its key */
    /** PEM private key of client_cert */
    const char *client_key;
    sq_fetch_streaming_cb streaming_callback; /**< body delivered in pieces, not kept */
    /** argument of streaming_callback */
    void *streaming_arg;
    /** called with each response header line as it arrives */
    sq_fetch_header_cb header_callback;
    /** argument of header_callback */
    void *header_arg;
    bool allow_nonstandard_methods; /**< else: known methods only, a body exactly for POST,
                                       PUT and PATCH (-EINVAL otherwise) */
    bool no_raise_error; /**< Tornado's raise_error=False: an HTTP status >= 400 resolves the
                            future with status 0 like any response */
} sq_fetch_request;

/** A response.  Owned by whoever took it from the future; read-only fields, freed whole by
 * sq_fetch_response_free(). */
typedef struct sq_fetch_response {
    int code;                      /**< HTTP status of the last response */
    const char *reason;            /**< its reason phrase ("" if none), NUL-terminated */
    const sq_http_header *headers; /**< headers of the last response (NUL-terminated slices) */
    /** number of headers */
    size_t nheaders;
    const char *body; /**< NUL-terminated (not counted in body_len); empty when
                         streamed */
    /** length of body in bytes */
    size_t body_len;
    const char *url;           /**< as requested */
    const char *effective_url; /**< after redirects */
    int http_version;          /**< 10, 11, 20 or 30 */
    int error;                 /**< 0, or SQ_EHTTP when code >= 400 */
    long redirects;            /**< redirects followed */
    long num_connects;         /**< new connections this fetch made (0: one was reused) */
    /** Timing in seconds.  queue: waiting for a free slot (max_clients); the others are
     * libcurl's, from the start of the transfer: name resolved, connected, TLS done, about
     * to send, first byte received, all done; redirect: time spent in redirects before
     * the last one.  request_time = queue + total (Tornado's). */
    struct {
        double queue, namelookup, connect, appconnect, pretransfer, starttransfer, total, redirect;
    } time;
    /** seconds from the call to the end: time.queue + time.total */
    double request_time;
} sq_fetch_response;

/** Client settings.  Zeroed: the defaults. */
typedef struct sq_http_client_settings {
    size_t max_clients;   /**< 0: 10; further fetches wait in a FIFO queue */
    double queue_timeout; /**< s a fetch may wait in that queue (then it fails with
                             SQ_EQUEUE_TIMEOUT); 0: the smaller of the request's
                             connect and request timeouts; negative: none */
    size_t max_body_size; /**< 0: 100 MiB; larger bodies fail with -E2BIG (not
                             applied to streamed bodies) */
    /** Fields a request leaves zero come from here.  The struct is copied by
     * sq_http_client_new, the strings it points to are not (they must outlive the client);
     * body and callbacks are not inherited. */
    const sq_fetch_request *defaults;
} sq_http_client_settings;

/** A client on `loop` (NULL: the current loop).  NULL with errno set (ENOMEM, or EIO if
 * libcurl cannot be initialised). */
sq_http_client *sq_http_client_new(sq_loop *loop, const sq_http_client_settings *settings);
/** Cancel every pending fetch (-ECANCELED), close the connections, free the client.  Call it
 * before freeing its loop; safe for the default client too (the next sq_fetch makes a new
 * one).  Called from a callback that runs inside the client (a request callback, a fetch
 * future's done callback), the client is freed when that returns; meanwhile its transfers
 * stop and a fetch on it fails at once with -ECANCELED.  A second call is a no-op. */
void sq_http_client_free(sq_http_client *c);
/** The loop's default client (the one sq_fetch uses), created on first use with the default
 * settings.  It belongs to the loop: sq_loop_free frees it (its pending fetches fail with
 * -ECANCELED); freeing it earlier is fine too.  NULL on -ENOMEM. */
sq_http_client *sq_http_client_default(sq_loop *loop);
/** Fetches running / waiting in the queue. */
size_t sq_http_client_active(const sq_http_client *c);
/** Fetches waiting in the queue for a free slot (max_clients). */
size_t sq_http_client_queued(const sq_http_client *c);

/** Fetch `url` (http:// or https://) with request `req` (NULL: a plain GET) on client `c`.
 * The caller owns the returned future; it resolves with status 0 and a sq_fetch_response
 * as value, or a negative error: SQ_ERESOLVE (host name not resolved), -ECONNREFUSED,
 * -ETIMEDOUT (connect or request timeout), SQ_EQUEUE_TIMEOUT, SQ_ETLS (handshake or
 * certificate), SQ_EREDIRECTS, SQ_ECLOSED (server closed without answering),
 * -ECONNRESET, -EPROTO (the reply is not valid HTTP, or its gzip is broken), -E2BIG (body
 * over max_body_size, or over 256 KiB of headers), -EINVAL (bad URL or request),
 * -ECANCELED, SQ_ECURL (another libcurl failure, logged at debug level) — or SQ_EHTTP for
 * a status >= 400, in which case the value IS a response as well.  The response is owned
 * by the future until taken (see "Ownership" above).
 * Cancelling the future stops the transfer.  NULL only on -ENOMEM. */
sq_future *sq_http_client_fetch(sq_http_client *c, const char *url, const sq_fetch_request *req);
/** sq_http_client_fetch on the current loop's default client. */
sq_future *sq_fetch(const char *url, const sq_fetch_request *req);
/** Wake the transfer of `fetch` (a future of sq_fetch or sq_http_client_fetch) whose body
 * producer returned SQ_FETCH_PAUSE: the producer is called again soon, on the loop.  0 (also
 * when it was not paused), -EALREADY when the fetch is done, -EINVAL when `fetch` is no
 * fetch's future.  Call it on the loop thread, from anywhere there (a callback of the same
 * or another fetch included). */
int sq_fetch_resume(sq_future *fetch);
/** Blocking fetch for scripts and tests: runs a private loop and client until done (the
 * calling thread's current loop is left as it was; a default client that callbacks made
 * for the private loop is freed with it).  Returns the future's status as above;
 * *out receives the response (also for SQ_EHTTP; NULL otherwise) for the caller to free. */
int sq_fetch_sync(const char *url, const sq_fetch_request *req, sq_fetch_response **out);

/** The value of the first header `name` (case-insensitive) of the response, or NULL. */
const char *sq_fetch_response_header(const sq_fetch_response *r, const char *name);
/** Free a response; NULL is fine. */
void sq_fetch_response_free(sq_fetch_response *r);

#ifdef __cplusplus
}
#endif
#endif
