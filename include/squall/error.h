/** @file squall/error.h
 * Error codes and logging shared by every layer.
 *
 * squall reports errors as negative errno values (-ECONNRESET, -ETIMEDOUT …).  The few
 * conditions errno has no name for get squall codes of their own in the same negative
 * space, far below any errno.  There is no global error state.
 */
#ifndef SQUALL_ERROR_H
#define SQUALL_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SQ_ENOTCORO = -20001,    /**< a suspending call was made outside a coroutine */
    SQ_ECLOSED = -20002,     /**< the stream was closed (Tornado's StreamClosedError) */
    SQ_EBUSY_READ = -20003,  /**< a read is already pending on this stream */
    SQ_ELOOPCLOSED = -20004, /**< the loop or executor is shutting down */
    SQ_ERESOLVE = -20005,    /**< a host name could not be resolved */
    /* HTTP client (squall/client.h) */
    SQ_ETLS = -20101,           /**< TLS handshake or certificate verification failed */
    SQ_EREDIRECTS = -20102,     /**< more redirects than the request allows */
    SQ_EHTTP = -20103,          /**< the server answered with an HTTP status >= 400 */
    SQ_EQUEUE_TIMEOUT = -20104, /**< a fetch waited too long for a free slot (max_clients) */
    SQ_ECURL = -20105,          /**< another libcurl failure (details logged at debug level) */
    /* Redis client (squall/redis.h) */
    SQ_EREDIS = -20201, /**< the server answered with an error reply (carried as the value) */
};

/** A static, human-readable description of a negative errno or squall code. */
const char *sq_strerror(int err);

/** Log levels, lowest first; SQ_LOG_OFF as a level silences everything. */
enum { SQ_LOG_DEBUG, SQ_LOG_INFO, SQ_LOG_WARNING, SQ_LOG_ERROR, SQ_LOG_OFF };

/** A log handler: receives the level (SQ_LOG_*) and the formatted message, without a newline. */
typedef void (*sq_log_fn)(int level, const char *msg, void *arg);
/** Log through the installed handler (default: one line on stderr, "squall: LEVEL: msg").
 * Messages below the current level are dropped. */
void sq_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Install a log handler (NULL restores the stderr one). */
void sq_log_set_handler(sq_log_fn fn, void *arg);
/** Drop messages below `level` (default SQ_LOG_INFO; SQ_LOG_OFF silences everything). */
void sq_log_set_level(int level);
/** The current log level (SQ_LOG_*). */
int sq_log_get_level(void);

/** Colours of the default (stderr) log handler. */
enum {
    SQ_LOG_COLOR_AUTO, /**< coloured when stderr is a terminal (the default) */
    SQ_LOG_COLOR_ON,   /**< always coloured */
    SQ_LOG_COLOR_OFF,  /**< never coloured */
};
/** Choose when the default handler colours its lines.  Coloured lines look like Tornado's,
 *  `[I 261205 01:02:03 squall] message` with the bracket in the level's colour (debug blue,
 *  info green, warning yellow, error red); plain lines stay `squall: INFO: message`. */
void sq_log_set_color(int mode);
/** The colour mode (SQ_LOG_COLOR_AUTO, _ON or _OFF). */
int sq_log_get_color(void);

/** Formats of the HTTP servers' access log (one line per request, see sq_http_settings).
 *  The line is a message of sq_log (level INFO, WARNING for 4xx, ERROR for 5xx): the
 *  default handler writes it behind its "squall: INFO: " prefix, a handler installed with
 *  sq_log_set_handler receives the line alone (e.g. the bare JSON object). */
enum {
    SQ_ACCESS_LOG_TEXT,     /**< `200 GET /path (127.0.0.1) 0.12ms` (the default) */
    SQ_ACCESS_LOG_COMBINED, /**< Apache/nginx combined: `ip - - [date] "GET /p HTTP/1.1" 200
                                 123 "referer" "user-agent"` (quotes and control bytes as
                                 \\xHH, as nginx writes them) */
    SQ_ACCESS_LOG_JSON,     /**< one JSON object per line: time, remote, method, uri,
                                 version, status, bytes, duration_ms, referer, user_agent */
};
/** Choose the access-log line format for every server of the process (the --log-format
 *  option).  Unknown values are ignored. */
void sq_log_set_access_format(int format);
/** The access-log format (SQ_ACCESS_LOG_TEXT, _COMBINED or _JSON). */
int sq_log_get_access_format(void);

#ifdef __cplusplus
}
#endif
#endif
