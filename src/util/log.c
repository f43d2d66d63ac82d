/* Error strings and the logger. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *sq_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case SQ_ENOTCORO:
        return "suspending call made outside a coroutine";
    case SQ_ECLOSED:
        return "stream closed";
    case SQ_EBUSY_READ:
        return "a read is already pending on this stream";
    case SQ_ELOOPCLOSED:
        return "loop or executor is shutting down";
    case SQ_ERESOLVE:
        return "host name could not be resolved";
    case SQ_ETLS:
        return "TLS handshake or certificate verification failed";
    case SQ_EREDIRECTS:
        return "too many redirects";
    case SQ_EHTTP:
        return "HTTP error status (>= 400)";
    case SQ_EQUEUE_TIMEOUT:
        return "timed out waiting in the HTTP client's queue";
    case SQ_ECURL:
        return "HTTP client (libcurl) failure";
    case SQ_EREDIS:
        return "Redis error reply";
    default:
        break;
    }
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
}

static sq_log_fn log_fn;
static void *log_arg;
static int log_level = SQ_LOG_INFO;

void sq_log_set_handler(sq_log_fn fn, void *arg)
{
    log_fn = fn;
    log_arg = arg;
}

void sq_log_set_level(int level)
{
    log_level = level;
}
int sq_log_get_level(void)
{
    return log_level;
}

void sq_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    if (level < log_level || level >= SQ_LOG_OFF) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, msg, log_arg);
        return;
    }
    /* One fprintf per line so that lines from several threads do not interleave. */
    fprintf(stderr, "squall: %s: %s\n", names[level], msg);
}
