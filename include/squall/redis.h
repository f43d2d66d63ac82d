/** @file squall/redis.h
 * A Redis client on the squall loop (issue 15).
 *
 * The connection is an ordinary squall stream (sq_tcp_connect: non-blocking resolution,
 * happy eyeballs; TLS for rediss:// with sq_stream_start_tls), so its bytes take the one
 * transport path every other protocol takes.  hiredis (Debian libhiredis-dev) formats
 * commands (redisFormatCommand / redisFormatCommandArgv) and parses replies (redisReader).
 * One reader coroutine per connection feeds the parser and resolves the pending command
 * futures in FIFO order, so any number of commands are in flight on one connection
 * (pipelined); commands issued in one loop iteration leave in one write.  The reader goes
 * back to the loop every 128 replies (or pub/sub messages), so a read holding thousands of
 * pipelined replies does not hold the other connections and timers up while it is parsed.
 *
 *   sq_redis *r = sq_redis_connect("redis://127.0.0.1:6379/0", NULL, &err);
 *   sq_redis_reply *rep = sq_redis_cmd(r, &err, "INCR %s", "counter");
 *   if (rep && !err) printf("%lld\n", rep->integer);
 *   sq_redis_reply_free(rep);
 *
 * Ownership: the reply a command future carries belongs to the future until taken (sq_await
 * with a value pointer, sq_future_take_value); the taker frees it with sq_redis_reply_free().
 * An error reply ("-ERR …") resolves the future with SQ_EREDIS and still carries the reply
 * (type SQ_REDIS_REPLY_ERROR, its text in str) — the same rule as SQ_EHTTP for fetches.
 * A reply nobody takes is freed with its future, so `sq_future_release(sq_redis_cmd_future(…))`
 * is a fire-and-forget command that leaks nothing.
 *
 * Connection state: the client connects once (sq_redis_connect*: failure is reported), then
 * reconnects by itself with backoff whenever the server goes away (unless no_reconnect),
 * sending AUTH and SELECT again each time.  While it is down, commands fail at once with
 * -ENOTCONN — nothing is queued for later, so nothing is silently replayed; on_state says
 * when it is back.  Commands pending when the connection drops fail with -ECONNRESET (or
 * the socket's own error; -ETIMEDOUT when socket_timeout gave a silent server up).
 *
 * Do not send SUBSCRIBE, MONITOR or other commands that change the reply protocol on an
 * sq_redis: pub/sub lives on a connection of its own, sq_redis_sub.
 *
 * All calls belong to the loop thread.  Callbacks (on_state, the message callback, a
 * command future's done callbacks) may issue commands and may free the client.  They run on
 * the connection's own coroutine, the one that reads the replies, so they send to that client
 * with the future forms: its coroutine forms fail there with -EDEADLK.
 */
#ifndef SQUALL_REDIS_H
#define SQUALL_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squall/future.h"
#include "squall/loop.h"
#include "squall/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/** hiredis's reply type, exposed as is: type (SQ_REDIS_REPLY_*), integer, str/len (STRING,
 *  STATUS, ERROR; str is NUL-terminated and binary-safe with len), elements/element
 *  (ARRAY; each element is an sq_redis_reply owned by its array). */
typedef struct redisReply sq_redis_reply;

/** Reply types, equal to hiredis's REDIS_REPLY_*. */
enum {
    SQ_REDIS_REPLY_STRING = 1,
    SQ_REDIS_REPLY_ARRAY = 2,
    SQ_REDIS_REPLY_INTEGER = 3,
    SQ_REDIS_REPLY_NIL = 4,
    SQ_REDIS_REPLY_STATUS = 5,
    SQ_REDIS_REPLY_ERROR = 6,
};

/** Default connect timeout (TCP, TLS, AUTH and SELECT together), in seconds. */
#define SQ_REDIS_DEFAULT_CONNECT_TIMEOUT 5.0
/** Default first reconnect delay; it doubles after each failed attempt... */
#define SQ_REDIS_DEFAULT_RECONNECT_MIN 0.1
/** ...up to this many seconds. */
#define SQ_REDIS_DEFAULT_RECONNECT_MAX 2.0

/** A command connection (opaque). */
typedef struct sq_redis sq_redis;

/** Connection options; a zeroed struct (or NULL) takes every default. */
typedef struct sq_redis_options {
    double connect_timeout; /**< s for TCP + TLS + AUTH + SELECT; 0: 5 s */
    double command_timeout; /**< s a command may wait for its reply (-ETIMEDOUT); 0: none */
    /** s the connection may stay silent while commands wait for replies (redis-py's
     *  socket_timeout): when nothing at all arrives for this long, the server is taken for
     *  dead (frozen, or its host gone without a reset), every pending command fails with
     *  -ETIMEDOUT and the client reconnects.  0 (the default): never, so a frozen server
     *  holds pending commands until the kernel gives the connection up, which may be never.
     *  Set it above the longest blocking command used (BLPOP, XREAD BLOCK, WAIT …): one
     *  blocked longer resets the connection.  On a subscriber, whose connection is silent
     *  by design, it only bounds the wait for a health check's reply (below). */
    double socket_timeout;
    /** Subscribers (redis-py's health_check_interval): s the subscriber's connection may
     *  stay silent before a PING checks it (its reply is consumed, never passed to the
     *  message callback).  When nothing at all arrives within socket_timeout of the PING
     *  (or, without one, within this interval), the server is taken for dead (frozen, or a
     *  path that drops everything): the connection is given up (on_state(false), logged),
     *  then made again with the usual backoff and every channel and pattern subscribed
     *  again.  0 (the default): never, so such a server is never noticed and the subscriber
     *  silently stops receiving.  Ignored by command clients (see socket_timeout). */
    double health_check_interval;
    bool no_reconnect;      /**< stay down once the connection drops (default: reconnect) */
    double reconnect_min;   /**< first backoff; 0: 0.1 s (doubles up to reconnect_max) */
    double reconnect_max;   /**< 0: 2 s */
    /** rediss://: the client TLS context (sq_tls_client_context_new: a CA file, a client
     *  certificate, no verification); NULL: the system CA store.  Referenced, not owned. */
    sq_tls_context *tls;
    /** Called on the loop thread each time the connection comes up (again) and each time
     *  an up connection goes down.  For a subscriber, "up" means every subscription has
     *  been confirmed by the server again. */
    void (*on_state)(sq_redis *r, bool connected, void *arg);
    void *state_arg; /**< passed to on_state */
} sq_redis_options;

/** Connect to `url` — redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by
 *  default; host a name, an IPv4 address or [IPv6]), rediss://… (TLS, the certificate
 *  checked against host), or unix:///path/to/socket — each optionally followed by
 *  ?db=N&password=…&user=… (user, password and a unix path may be %-encoded; a %00, which
 *  would cut them short, makes a bad URL) and connect_timeout=, command_timeout=,
 *  socket_timeout=, health_check_interval= in seconds (overriding `opts`).  After
 *  connecting, AUTH (when a password is given) and SELECT (when db != 0) are sent, and
 *  again after every reconnect.  `opts` is copied.
 *  @return a future resolving with the client, owned by the future until taken (the taker
 *  frees it with sq_redis_free()); it fails with -EINVAL (a bad URL), -ENAMETOOLONG (a unix
 *  socket path longer than sockaddr_un takes, 107 bytes on Linux), -ECONNREFUSED,
 *  -ETIMEDOUT (connect_timeout passed), SQ_ERESOLVE, SQ_ETLS, SQ_EREDIS (AUTH or SELECT
 *  refused; logged) or another socket error.  Cancelling it stops the attempt.  NULL on
 *  -ENOMEM. */
sq_future *sq_redis_connect_future(sq_loop *loop, const char *url, const sq_redis_options *opts);
/** Coroutine form of sq_redis_connect_future() on the calling coroutine's loop.
 *  @return the client (free it with sq_redis_free()), or NULL with *err (if non-NULL) set
 *  to the error (SQ_ENOTCORO outside a coroutine). */
sq_redis *sq_redis_connect(const char *url, const sq_redis_options *opts, int *err);
/** Close the connection and free the client: pending commands fail with -ECANCELED, a
 *  reconnect in progress stops, on_state is not called again.  Safe from inside any of its
 *  callbacks.  NULL is a no-op. */
void sq_redis_free(sq_redis *r);
/** True while the connection is up (commands are accepted). */
bool sq_redis_connected(const sq_redis *r);

/** Send a command formatted as by hiredis's redisFormatCommand: each %s is one argument
 *  (a C string), %b one binary-safe argument (pointer, size_t length), other printf
 *  conversions are allowed inside arguments; arguments are split on spaces.  (No printf
 *  format attribute: the compiler would reject %b.)
 *  @return a future resolving with the reply (status 0), or failing with SQ_EREDIS (an
 *  error reply, still carried as the value), -ENOTCONN (disconnected: at once),
 *  -ECONNRESET or the socket's error (the connection dropped), -ECANCELED (the client was
 *  freed), -ETIMEDOUT (command_timeout, or socket_timeout reset the connection), -EINVAL (a
 *  bad format, r NULL).  For a timeout on one command, wrap it:
 *  sq_with_timeout(sq_redis_cmd_future(…), seconds).  Such a timeout (command_timeout too,
 *  or cancelling the future) does not withdraw the command from the server, which answers
 *  the connection's commands in order: its late reply is discarded and later commands keep
 *  their own replies.  Only socket_timeout gives the connection up.  NULL on -ENOMEM. */
sq_future *sq_redis_cmd_future(sq_redis *r, const char *fmt, ...);
/** The same with an argument vector: argv[i] is lens[i] bytes (binary-safe), or a C string
 *  when lens is NULL.  Errors and ownership as sq_redis_cmd_future(). */
sq_future *sq_redis_cmd_argv_future(sq_redis *r, int argc, const char *const *argv,
                                    const size_t *lens);
/** Coroutine form of sq_redis_cmd_future().
 *  @return the reply, which the caller frees with sq_redis_reply_free(); *err (if non-NULL)
 *  is 0, or SQ_EREDIS with the error reply returned, or another error with NULL returned
 *  (-EDEADLK, nothing sent: called from one of r's own callbacks, which would wait for
 *  itself). */
sq_redis_reply *sq_redis_cmd(sq_redis *r, int *err, const char *fmt, ...);
/** Coroutine form of sq_redis_cmd_argv_future(); returns as sq_redis_cmd(). */
sq_redis_reply *sq_redis_cmd_argv(sq_redis *r, int *err, int argc, const char *const *argv,
                                  const size_t *lens);
/** Free a reply (hiredis's freeReplyObject).  NULL is a no-op. */
void sq_redis_reply_free(sq_redis_reply *reply);

/* --- pub/sub, on a connection of its own --------------------------------------------------- */

/** A subscriber connection (opaque). */
typedef struct sq_redis_sub sq_redis_sub;
/** One message: the channel it was published to (for a pattern subscription too) and its
 *  data, both binary-safe (channel_len and len bytes; both also NUL-terminated).  Valid
 *  only during the call.  Runs on the loop thread, in the order the server sent them. */
typedef void (*sq_redis_message_cb)(sq_redis_sub *s, const char *channel, size_t channel_len,
                                    const char *data, size_t len, void *arg);
/** Start a subscriber on `url` (as sq_redis_connect_future; opts->on_state's `r` argument
 *  is then the subscriber's connection, compare it with sq_redis_sub_conn()).  It connects
 *  in the background and keeps reconnecting with backoff (the first connect too) unless
 *  no_reconnect; after every (re)connect it subscribes to every channel and pattern it
 *  holds, and calls on_state(true) once the server has confirmed them all.  A server that
 *  stops answering without closing the connection is noticed only with
 *  opts->health_check_interval (or ?health_check_interval= in the URL).
 *  @return the subscriber (free it with sq_redis_sub_free()), or NULL with *err (if
 *  non-NULL) set to -EINVAL (a bad URL, cb NULL), -ENAMETOOLONG (as for
 *  sq_redis_connect_future) or -ENOMEM. */
sq_redis_sub *sq_redis_sub_new(sq_loop *loop, const char *url, const sq_redis_options *opts,
                               sq_redis_message_cb cb, void *arg, int *err);
/** Subscribe to `channel` (kept across reconnects; sent now if connected, else at the next
 *  connect).  Subscribing twice is a no-op.
 *  @return 0, -EINVAL (NULL or empty), -ENOMEM. */
int sq_redis_subscribe(sq_redis_sub *s, const char *channel);
/** Subscribe to a glob-style pattern (PSUBSCRIBE); as sq_redis_subscribe(). */
int sq_redis_psubscribe(sq_redis_sub *s, const char *pattern);
/** Unsubscribe from `channel`.  @return 0, or -ENOENT if it was not subscribed. */
int sq_redis_unsubscribe(sq_redis_sub *s, const char *channel);
/** Unsubscribe from a pattern.  @return 0, or -ENOENT if it was not subscribed. */
int sq_redis_punsubscribe(sq_redis_sub *s, const char *pattern);
/** True while connected with every subscription confirmed. */
bool sq_redis_sub_connected(const sq_redis_sub *s);
/** The subscriber's connection as on_state sees it (only for comparing; never free it). */
sq_redis *sq_redis_sub_conn(sq_redis_sub *s);
/** Close the connection and free the subscriber; no callback runs afterwards.  Safe from
 *  inside its callbacks.  NULL is a no-op. */
void sq_redis_sub_free(sq_redis_sub *s);

#ifdef __cplusplus
}
#endif
#endif
