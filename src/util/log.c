/* Error strings and the logger. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
static int log_color = SQ_LOG_COLOR_AUTO;
static int access_format = SQ_ACCESS_LOG_TEXT;

void sq_log_set_color(int mode)
{
    if (mode >= SQ_LOG_COLOR_AUTO && mode <= SQ_LOG_COLOR_OFF) log_color = mode;
}
int sq_log_get_color(void)
{
    return log_color;
}
void sq_log_set_access_format(int format)
{
    if (format >= SQ_ACCESS_LOG_TEXT && format <= SQ_ACCESS_LOG_JSON) access_format = format;
}
int sq_log_get_access_format(void)
{
    return access_format;
}

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

bool sq__log_enabled(int level)
{
    return level >= log_level && level < SQ_LOG_OFF;
}

void sq__log_line(int level, const char *msg)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    static const char letters[] = "DIWE";
    static const char *const colors[] = {"34", "32", "33", "31"};
    if (!sq__log_enabled(level)) return;
    if (log_fn) {
        log_fn(level, msg, log_arg);
        return;
    }
    static int tty = -1;
    if (tty < 0) tty = isatty(STDERR_FILENO);
    /* One fprintf per line so that lines from several threads do not interleave. */
    if (log_color == SQ_LOG_COLOR_ON || (log_color == SQ_LOG_COLOR_AUTO && tty)) {
        time_t now = time(NULL);
        struct tm tm;
        char stamp[32];
        localtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%y%m%d %H:%M:%S", &tm);
        fprintf(stderr, "\033[%sm[%c %s squall]\033[0m %s\n", colors[level], letters[level], stamp,
                msg);
    } else {
        fprintf(stderr, "squall: %s: %s\n", names[level], msg);
    }
}

void sq_log(int level, const char *fmt, ...)
{
    if (!sq__log_enabled(level)) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sq__log_line(level, msg);
}
