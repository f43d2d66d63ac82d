/** @file squall/stream.h
 * Buffered non-blocking streams over an fd, TCP servers and clients.
 *
 * In the spirit of Tornado's IOStream.  Every operation comes in two forms: a *_future()
 * call usable from plain callbacks, and a suspending call for coroutines built on it.
 * One read may be pending at a time; writes queue in order.  Read results point into the
 * stream's own buffer and stay valid until the next read on that stream (zero copy).
 *
 * Errors: -ECONNRESET, -EPIPE and other socket errors as they happen; SQ_ECLOSED once the
 * stream is closed (by either side) and the request cannot be satisfied; -EMSGSIZE when a
 * read would need more than its max_bytes; SQ_EBUSY_READ for a second concurrent read.
 */
#ifndef SQUALL_STREAM_H
#define SQUALL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "squall/future.h"
#include "squall/loop.h"
#include "squall/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A buffered non-blocking stream over a socket (plain or TLS). */
typedef struct sq_stream sq_stream;
/** Called once when the stream is closed. */
typedef void (*sq_stream_close_cb)(sq_stream *s, void *arg);

/** Default high-water mark for pending (not yet written) bytes: 1 MiB. */
#define SQ_STREAM_DEFAULT_HIGH_WATER (1u << 20)
/** Default cap on read_until_close and on buffered read data: 100 MiB (Tornado's). */
#define SQ_STREAM_DEFAULT_MAX_BUFFER (100u << 20)

/** Wrap `fd` (made non-blocking here).  On success the stream owns the fd and closes it;
 * on failure (NULL, errno set) the fd is left open and still the caller's. */
sq_stream *sq_stream_new(sq_loop *loop, int fd);
/** Close the fd now: pending reads and writes fail with SQ_ECLOSED and the close callback
 * runs.  The memory stays valid until sq_stream_free().  Idempotent. */
void sq_stream_close(sq_stream *s);
/** Close if needed and free the stream.  Call it once, after the last use. */
void sq_stream_free(sq_stream *s);
/** Whether the stream has been closed (by either side). */
bool sq_stream_closed(const sq_stream *s);
/** The error that closed the stream (0 for a clean EOF or a local close). */
int sq_stream_error(const sq_stream *s);
/** The underlying file descriptor (-1 once closed). */
int sq_stream_fd(const sq_stream *s);
/** The loop the stream belongs to. */
sq_loop *sq_stream_loop(const sq_stream *s);
/** Called once when the stream closes for any reason (peer EOF seen, error, local close).
 * With a callback set, an idle plain-socket stream (no read asked for) notices its peer's
 * end of stream or reset at once, as Tornado's IOStream does; data the peer sent first
 * waits for a read, and the end is seen after it. */
void sq_stream_set_close_callback(sq_stream *s, sq_stream_close_cb cb, void *arg);
/** Writers suspend (sq_stream_write) while more than `bytes` are pending. */
void sq_stream_set_high_water(sq_stream *s, size_t bytes);
/** Bytes accepted by write but not yet handed to the kernel. */
size_t sq_stream_pending(const sq_stream *s);
/** Largest value sq_stream_pending() has reached (to verify backpressure). */
size_t sq_stream_pending_peak(const sq_stream *s);
/** The user pointer set with sq_stream_set_data() (NULL by default). */
void *sq_stream_get_data(const sq_stream *s);
/** Attach a user pointer to the stream. */
void sq_stream_set_data(sq_stream *s, void *data);

/* --- reads (futures): status = length, value = const char * into the stream buffer ----- */

/** Up to and including the first `delim` (dlen bytes).  -EMSGSIZE if max_bytes (0: the
 * stream's max buffer) pass without it. */
sq_future *sq_stream_read_until_future(sq_stream *s, const void *delim, size_t dlen,
                                       size_t max_bytes);
/** Exactly n bytes; with `partial`, whatever is available (at least 1 byte, at most n). */
sq_future *sq_stream_read_bytes_future(sq_stream *s, size_t n, bool partial);
/** Everything until the peer closes (at most max_bytes; 0: the stream's max buffer). */
sq_future *sq_stream_read_until_close_future(sq_stream *s, size_t max_bytes);

/** A compiled pattern for sq_stream_read_until_regex (PCRE2).  Immutable once made: one can
 *  serve any number of streams, on any thread, for as long as it lives. */
typedef struct sq_regex sq_regex;
/** Compile `pattern` once (PCRE2 syntax over bytes, no UTF; inline options such as (?i),
 *  (?s), (?m) apply), JIT-compiled where PCRE2 can.  Make it at startup and reuse it: reads
 *  never compile anything.
 *  @return the regex (free it with sq_regex_free()), or NULL with *err (if non-NULL) set to
 *  -EINVAL (a bad pattern; PCRE2's message and offset are logged) or -ENOMEM. */
sq_regex *sq_regex_new(const char *pattern, int *err);
/** Free a regex.  No read may still be using it.  NULL is a no-op. */
void sq_regex_free(sq_regex *re);
/** Up to and including the end of the first match of `re` in the buffered data (Tornado's
 *  read_until_regex): status = length, value = the data (into the stream buffer, as for
 *  read_until).  The match may end anywhere in the data and may span any number of reads;
 *  empty matches do not count (a pattern that can match "" matches its first non-empty
 *  occurrence).  Data is searched incrementally with PCRE2 partial matching: each read
 *  resumes from the earliest offset where a match may still begin, so a long message costs
 *  linear time unless the pattern keeps a partial match open (`a.*b` after an `a` rescans
 *  from that `a`).  `re` must outlive the read.
 *  @return a future failing with -EMSGSIZE if max_bytes (0: the stream's max buffer) pass
 *  without a match or the match ends past them (the data stays buffered, as for
 *  read_until); -EINVAL if re is NULL; -E2BIG if the pattern hits PCRE2's match limits;
 *  the stream errors otherwise.  NULL on -ENOMEM. */
sq_future *sq_stream_read_until_regex_future(sq_stream *s, const sq_regex *re, size_t max_bytes);
/** Read into the caller's `buf` (Tornado's read_into): exactly n bytes, or with `partial`
 *  whatever is available (at least 1 byte, at most n).  Buffered bytes are copied first; the
 *  rest is read from the socket straight into buf.  status = bytes stored, value = buf.
 *  buf must stay valid until the future resolves.  A read_into that fails (the stream
 *  closes before n bytes) or is cancelled (sq_with_timeout) gives the bytes it had received
 *  back to the stream buffer, so a later read gets them: nothing is lost (buf's content is
 *  then unspecified).  n may exceed the stream's max buffer.
 *  @return a future with the stream errors (SQ_ECLOSED …), -EINVAL (buf NULL, n > 0),
 *  SQ_EBUSY_READ; NULL on -ENOMEM. */
sq_future *sq_stream_read_into_future(sq_stream *s, void *buf, size_t n, bool partial);

/* --- reads (coroutines): return the length (>= 0) or a negative error; *data is set ---- */

/** Read up to and including `delim` (dlen bytes); more than `max_bytes` without it fails
 * (-EMSGSIZE, 0: the stream's max buffer). */
ssize_t sq_stream_read_until(sq_stream *s, const void *delim, size_t dlen, size_t max_bytes,
                             const char **data);
/** Read exactly `n` bytes, or, if `partial`, whatever is available (at least 1, at most n). */
ssize_t sq_stream_read_bytes(sq_stream *s, size_t n, bool partial, const char **data);
/** Read everything until the peer closes (at most `max_bytes`, 0: the max buffer). */
ssize_t sq_stream_read_until_close(sq_stream *s, size_t max_bytes, const char **data);
/** Coroutine form of sq_stream_read_until_regex_future().
 *  @return the length through the end of the match (*data points at it), or a negative
 *  error (-EMSGSIZE, SQ_ECLOSED …, SQ_ENOTCORO outside a coroutine). */
ssize_t sq_stream_read_until_regex(sq_stream *s, const sq_regex *re, size_t max_bytes,
                                   const char **data);
/** Coroutine form of sq_stream_read_into_future().
 *  @return the number of bytes stored in buf (n unless partial), or a negative error. */
ssize_t sq_stream_read_into(sq_stream *s, void *buf, size_t n, bool partial);

/* --- writes ---------------------------------------------------------------------------- */

/** Queue bytes (copied if they cannot be written at once).  The future resolves (status =
 * len) when they have been handed to the kernel, or fails with the stream's error. */
sq_future *sq_stream_write_future(sq_stream *s, const void *data, size_t len);
/** Coroutine write: queue the bytes and, while more than the high-water mark is pending,
 * suspend until this write has reached the kernel.  Returns 0 or a negative error. */
int sq_stream_write(sq_stream *s, const void *data, size_t len);
/** Suspend until every pending byte has reached the kernel. */
int sq_stream_drain(sq_stream *s);

/* --- TCP ------------------------------------------------------------------------------- */

/** A TCP (or Unix-socket) server: listening sockets and an accept loop. */
typedef struct sq_tcp_server sq_tcp_server;
/** Coroutine per connection: runs on its own coroutine; the stream is freed when it returns. */
typedef void (*sq_stream_handler)(sq_stream *s, const struct sockaddr *peer, void *arg);
/** Raw accept: the callee owns the accepted (non-blocking, TCP_NODELAY) fd. */
typedef void (*sq_accept_handler)(sq_tcp_server *srv, int fd, const struct sockaddr *peer,
                                  socklen_t peerlen, void *arg);

/** Options of sq_tcp_listen(); zeroed: the defaults. */
typedef struct sq_tcp_options {
    int backlog;     /**< listen backlog; default 4096 (the kernel caps it at somaxconn) */
    bool reuseport;  /**< SO_REUSEPORT, for several processes on one port */
    bool ipv6_only;  /**< with an IPv6 address: do not also accept IPv4 */
    bool no_nodelay; /**< leave Nagle on for accepted sockets (TCP_NODELAY is the default) */
    sq_accept_handler on_accept; /**< if set, used instead of the coroutine handler */
    /** TLS: each connection's handshake completes (within tls_handshake_timeout, default
     * 10 s) before the handler runs; one that fails is logged at debug level and dropped.
     * The server keeps a reference to the context.  Not with on_accept. */
    sq_tls_context *tls;
    /** s for each TLS handshake; 0: 10 s */
    double tls_handshake_timeout;
    int unix_mode; /**< permissions of a unix socket file bound here; 0: 0666 */
} sq_tcp_options;

/** Listen on host:port (host NULL or "" = every address, IPv6 and IPv4; port 0 = ephemeral)
 * and run handler(stream, peer, arg) on a new coroutine for each connection.  Connections
 * are accepted in batches until EAGAIN.  On failure returns NULL and sets *err (if given).
 * host "unix:/path" listens on a unix-domain socket instead (port ignored; a stale socket
 * file is replaced, the file is removed when the server closes), "unix:@name" on an
 * abstract one (Linux). */
sq_tcp_server *sq_tcp_listen(sq_loop *loop, const char *host, int port, const sq_tcp_options *opts,
                             sq_stream_handler handler, void *arg, int *err);
/** Serve already-bound listening sockets (Tornado's add_sockets): sockets made by the
 *  caller, inherited, or from systemd (sq_listen_fds()).  They are made non-blocking and
 *  close-on-exec, and belong to the server from now on (closed with it).
 *  @return the server, or NULL with *err (if non-NULL) = -EINVAL (n out of 1..8, an fd that
 *  is not a listening stream socket), -ENOTSOCK, -EBADF or -ENOMEM. */
sq_tcp_server *sq_tcp_server_from_fds(sq_loop *loop, const int *fds, int n,
                                      const sq_tcp_options *opts, sq_stream_handler handler,
                                      void *arg, int *err);
/** Bind and listen on a unix-domain socket (Tornado's bind_unix_socket): `path` is a file
 *  name, or "@name" for a Linux abstract socket.  A stale socket file is replaced (any other
 *  file there is -EADDRINUSE); the file gets permissions `mode` (0: 0666, so that a proxy
 *  running as another user can connect; 0600 keeps it to the owner).
 *  @return the listening fd (non-blocking, close-on-exec), or a negative errno
 *  (-ENAMETOOLONG beyond 107 bytes, -EINVAL, -EACCES …). */
int sq_bind_unix_socket(const char *path, int mode, int backlog);
/** systemd socket activation (sd_listen_fds): when LISTEN_PID is this process, the
 *  LISTEN_FDS sockets passed from fd 3 on, made close-on-exec; the variables are then unset
 *  (so children do not take them too).  At most `max` fds are stored.
 *  @return how many were passed (0 without socket activation), or -EINVAL / -EBADF for a
 *  malformed environment. */
int sq_listen_fds(int *fds, int max);
/** The bound port (useful with port 0). */
int sq_tcp_server_port(const sq_tcp_server *srv);
/** Stop accepting and close the listening sockets; established streams are untouched. */
void sq_tcp_server_close(sq_tcp_server *srv);
/** Stop accepting for now (a connection limit reached); new connections wait in the
 * kernel's backlog until sq_tcp_server_resume().  Both are idempotent. */
void sq_tcp_server_pause(sq_tcp_server *srv);
/** Accept again after sq_tcp_server_pause(). */
void sq_tcp_server_resume(sq_tcp_server *srv);

/** Connect to host:port within `timeout` seconds (<= 0: no limit).  Names are resolved on
 * the executor, never on the loop.  The future's value is a new sq_stream owned by the
 * future until taken (sq_await/sq_gather with a value pointer, sq_future_take_value; the
 * taker frees it with sq_stream_free()); sq_future_value() only peeks.  A stream nobody
 * takes — the future dropped, awaited with NULL, or released while pending — is closed
 * with the future.  Errors: -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, SQ_ERESOLVE … */
sq_future *sq_tcp_connect_future(sq_loop *loop, const char *host, int port, double timeout);

/** RFC 8305's connection attempt delay: the next address is tried after this long without an
 *  answer from the previous one (or at once when it fails). */
#define SQ_HAPPY_EYEBALLS_DELAY 0.25

/** How to connect (sq_tcp_connect_opts).  A zeroed struct: no timeout, happy eyeballs with
 *  a 250 ms delay, any source address, no TLS. */
typedef struct sq_connect_options {
    double timeout;              /**< s for resolution, every attempt (and TLS); 0: none */
    double happy_eyeballs_delay; /**< s before the next address is tried; 0: 0.25 */
    const char *source_address;  /**< numeric address to bind before connecting (NULL: any);
                                      addresses of the other family are skipped */
    int source_port;             /**< with source_address: the local port (0: any) */
    bool use_tls;                /**< TLS after connecting (sq_tcp_connect_opts only) */
    sq_tls_context *tls;         /**< its client context (implies use_tls; NULL: the system
                                      CA store) */
    const char *server_hostname; /**< name for SNI and the certificate check (NULL: host) */
} sq_connect_options;

/** Connect to host:port the way browsers do (RFC 8305, happy eyeballs): the name is resolved
 *  on the executor, its addresses ordered IPv6 first then alternating families; an attempt
 *  starts on the first at once and on each next one when the previous fails or after
 *  `happy_eyeballs_delay` without an answer; the first connection up wins and the others are
 *  closed.  host may be a numeric address ("[::1]" too), a name, or "unix:/path" /
 *  "unix:@name" for a unix-domain socket (port ignored).
 *  @return a future resolving with the stream (owned by the future until taken; the taker
 *  frees it), or failing with the last attempt's error (-ECONNREFUSED …), -ETIMEDOUT,
 *  SQ_ERESOLVE, -EINVAL (a bad host, port, or a source address that is not numeric), or
 *  -ECANCELED.  TLS fields are ignored here (see sq_tcp_connect_opts).  NULL on -ENOMEM. */
sq_future *sq_tcp_connect_opts_future(sq_loop *loop, const char *host, int port,
                                      const sq_connect_options *opts);
/** Coroutine form of sq_tcp_connect_opts_future(), with the TLS handshake when opts->use_tls
 *  or opts->tls is set (within the same timeout).
 *  @return the stream, or NULL with *err (if non-NULL) set as the future's error, or SQ_ETLS,
 *  or SQ_ENOTCORO outside a coroutine. */
sq_stream *sq_tcp_connect_opts(const char *host, int port, const sq_connect_options *opts,
                               int *err);
/** Coroutine form: the connected stream, or NULL with *err set. */
sq_stream *sq_tcp_connect(const char *host, int port, double timeout, int *err);
/** Connect and complete a TLS handshake as a client, both within `timeout`.  `ctx` NULL: a
 * shared client context that verifies the server against the system CA store; otherwise
 * one from sq_tls_client_context_new (a CA file, no verification, a client certificate,
 * ALPN).  The certificate must match `host` (a name or an IP address), which is also sent
 * as SNI.  Errors as sq_tcp_connect, and SQ_ETLS (sq_tls_last_error() says why). */
sq_stream *sq_tcp_connect_tls(const char *host, int port, double timeout, sq_tls_context *ctx,
                              int *err);

/* --- TLS on a stream --------------------------------------------------------------------- */

/** Start TLS on a connected socket stream (STARTTLS; Tornado's IOStream.start_tls), as the
 * context's role: a server context accepts, a client context connects to server_hostname
 * (checked against the certificate and sent as SNI; NULL: no name check).  No read may be
 * pending and no bytes buffered either way (-EBUSY).  Resolves with 0 once the handshake is
 * done; on failure the stream closes with SQ_ETLS (sq_tls_last_error() says why) or the
 * socket's error.  Cancelling it (sq_with_timeout) closes the stream. */
sq_future *sq_stream_start_tls_future(sq_stream *s, sq_tls_context *ctx, const char *server_hostname);
/** Coroutine form: 0 or a negative error. */
int sq_stream_start_tls(sq_stream *s, sq_tls_context *ctx, const char *server_hostname);
/** Whether the stream speaks TLS. */
bool sq_stream_is_tls(const sq_stream *s);
/** The ALPN protocol the handshake chose (not NUL-terminated: *len bytes), or NULL. */
const char *sq_stream_alpn(const sq_stream *s, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
