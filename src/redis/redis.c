/* The Redis client: hiredis formats and parses, a squall stream carries the bytes.
 *
 * Each connection (a command client or a subscriber) has one coroutine, conn_main, which
 * connects, authenticates, then reads replies and hands them out — to the pending command
 * futures in FIFO order, or to the message callback — until the connection drops, and then
 * reconnects with backoff.  Everything that coroutine waits for goes through wait_on(), so
 * sq_redis_free and the deadline timer (connect_timeout, socket_timeout, a subscriber's
 * health check) can interrupt it by cancelling one future.
 *
 * Lifetime: the struct is reference counted — one reference for the user (held by the
 * connect future until someone takes the client), one for the coroutine, one per scheduled
 * flush callback — so a free from inside a callback only marks it closing; the coroutine
 * notices when the callback returns.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "squall/coro.h"
#include "squall/error.h"
#include "squall/redis.h"
#include "squall/stream.h"

#define READ_CHUNK 65536
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path) /* with its NUL */
#define OUT_KEEP   (1u << 20) /* an idle output buffer larger than this is given back */
/* Replies (or messages) dispatched between two yields to the loop: one read can hold thousands
 * of pipelined replies, and parsing them all at once would hold every other connection and
 * timer up for milliseconds. */
#define REPLY_BATCH 128

typedef struct sub_entry {
    char *name;
    bool pattern;
} sub_entry;

struct sq_redis {
    sq_loop *loop;
    int refs;
    bool is_sub;
    bool closing;  /* sq_redis_free was called (or the connect was given up) */
    bool up;       /* commands accepted / every subscription confirmed */
    bool writable; /* connected and authenticated: output may be sent */
    bool timed_out;
    bool flush_scheduled;
    bool ping_out; /* a subscriber's health check PING awaits its reply */
    /* from the URL */
    char *host;
    char *path; /* unix socket */
    char *user, *password;
    int port, db;
    bool tls;
    sq_redis_options opts;
    sq_tls_context *tls_ctx; /* our reference */

    sq_coro *coro; /* conn_main's, while it runs: the callbacks run on it */
    sq_stream *stream;
    redisReader *reader;
    sq_future *wait;        /* what the coroutine awaits now (our reference) */
    sq_future *connect_fut; /* the first connect's future, until resolved */
    /* connect_timeout while establishing; socket_timeout while commands wait for replies;
     * on a subscriber, health_check_interval (then the bound on the PING's reply) */
    sq_timer deadline;

    sq_future **q; /* pending commands, FIFO ring */
    size_t qhead, qlen, qcap;
    char *out; /* formatted commands not yet handed to the stream */
    size_t outlen, outcap;

    /* subscriber */
    sub_entry *subs;
    size_t nsubs, subscap;
    size_t confirm_left; /* subscribe confirmations before the subscriber is up */
    sq_redis_message_cb msg_cb;
    void *msg_arg;
};

struct sq_redis_sub {
    struct sq_redis c;
};

/* --- lifetime ------------------------------------------------------------------------------ */

static void redis_destroy(sq_redis *r)
{
    if (r->stream) sq_stream_free(r->stream);
    if (r->reader) redisReaderFree(r->reader);
    sq_timer_stop(&r->deadline);
    for (size_t i = 0; i < r->nsubs; i++) free(r->subs[i].name);
    free(r->subs);
    free(r->q);
    free(r->out);
    free(r->host);
    free(r->path);
    free(r->user);
    free(r->password);
    sq_tls_context_free(r->tls_ctx);
    free(r);
}

static void redis_release(sq_redis *r)
{
    if (--r->refs == 0) redis_destroy(r);
}

static void reply_value_free(void *v)
{
    freeReplyObject(v);
}

void sq_redis_reply_free(sq_redis_reply *reply)
{
    if (reply) freeReplyObject(reply);
}

/* --- the pending queue ------------------------------------------------------------------- */

static int q_push(sq_redis *r, sq_future *f)
{
    if (r->qlen == r->qcap) {
        size_t cap = r->qcap ? r->qcap * 2 : 64;
        sq_future **nq = malloc(cap * sizeof *nq);
        if (!nq) return -ENOMEM;
        for (size_t i = 0; i < r->qlen; i++) nq[i] = r->q[(r->qhead + i) % r->qcap];
        free(r->q);
        r->q = nq;
        r->qcap = cap;
        r->qhead = 0;
    }
    r->q[(r->qhead + r->qlen) % r->qcap] = sq_future_retain(f);
    r->qlen++;
    return 0;
}

static sq_future *q_pop(sq_redis *r)
{
    if (!r->qlen) return NULL;
    sq_future *f = r->q[r->qhead];
    r->qhead = (r->qhead + 1) % r->qcap;
    r->qlen--;
    return f;
}

/* Pop before resolving: a done callback may free the client or fail the queue itself. */
static void fail_pending(sq_redis *r, int err)
{
    sq_future *f;
    while ((f = q_pop(r))) {
        sq_future_set_error(f, err);
        sq_future_release(f);
    }
}

/* --- output -------------------------------------------------------------------------------- */

static void flush_cb(void *arg)
{
    sq_redis *r = arg;
    r->flush_scheduled = false;
    if (r->outlen && r->writable && r->stream) {
        /* the stream copies what the kernel does not take at once; errors reach the reader */
        sq_future_release(sq_stream_write_future(r->stream, r->out, r->outlen));
    }
    r->outlen = 0;
    if (r->outcap > OUT_KEEP) {
        free(r->out);
        r->out = NULL;
        r->outcap = 0;
    }
    redis_release(r);
}

/* Queue one formatted command; everything queued in this loop iteration goes out in one
 * write. */
static int out_append(sq_redis *r, const char *cmd, size_t len)
{
    if (r->outlen + len > r->outcap) {
        size_t cap = r->outcap ? r->outcap : 4096;
        while (cap < r->outlen + len) cap *= 2;
        char *n = realloc(r->out, cap);
        if (!n) return -ENOMEM;
        r->out = n;
        r->outcap = cap;
    }
    memcpy(r->out + r->outlen, cmd, len);
    r->outlen += len;
    if (!r->flush_scheduled) {
        if (sq_add_callback(r->loop, flush_cb, r) < 0) {
            r->outlen -= len;
            return -ENOMEM;
        }
        r->flush_scheduled = true;
        r->refs++;
    }
    return 0;
}

/* One command, formatted: written at once (direct: the handshake, before anything else may
 * go out) or queued for this iteration's write. */
static int send_argv(sq_redis *r, bool direct, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return -ENOMEM;
    int e = 0;
    if (direct)
        sq_future_release(sq_stream_write_future(r->stream, cmd, (size_t)len));
    else
        e = out_append(r, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return e;
}

/* --- what the coroutine waits on ---------------------------------------------------------- */

static int64_t wait_on(sq_redis *r, sq_future *f, void **value)
{
    if (value) *value = NULL;
    if (!f) return -ENOMEM;
    if (r->closing) {
        sq_future_cancel(f);
        sq_future_release(f);
        return -ECANCELED;
    }
    r->wait = sq_future_retain(f);
    int64_t st = sq_await(f, value);
    sq_future_release(r->wait);
    r->wait = NULL;
    if (r->closing) return -ECANCELED;
    return st;
}

/* A subscriber's connection is silent by design, so a server that froze (or a path that
 * drops everything without a reset) would never be noticed and the subscriber would stop
 * receiving for good.  With health_check_interval, a PING goes out once the connection has
 * been silent that long; silent for the bound after it too, the connection is given up.
 * Called when the subscriber starts serving and whenever bytes or the PING's reply arrive. */
static void watch_health(sq_redis *r)
{
    double interval = r->opts.health_check_interval;
    if (interval <= 0) return;
    double bound = r->opts.socket_timeout > 0 ? r->opts.socket_timeout : interval;
    sq_timer_start(&r->deadline, r->ping_out ? bound : interval, 0);
}

static void deadline_fired(sq_loop *loop, sq_timer *t)
{
    sq_redis *r = t->data;
    if (r->is_sub && r->writable && !r->ping_out) { /* silent for the interval: check it */
        const char *argv[1] = {"PING"};
        if (send_argv(r, false, 1, argv, NULL) == 0) r->ping_out = true;
        watch_health(r); /* (out of memory: try again after another interval) */
        return;
    }
    r->timed_out = true;
    if (r->wait) sq_future_cancel(r->wait);
}

/* While commands wait for replies, a connection that delivers nothing for socket_timeout is
 * given up (a frozen or unreachable server is otherwise never noticed: the kernel keeps
 * the connection open).  Called when a command is queued and whenever bytes arrive: the
 * clock starts when something is first awaited and restarts with every read, so a big reply
 * still arriving is not cut short. */
static void watch_replies(sq_redis *r, bool progress)
{
    if (r->opts.socket_timeout <= 0) return;
    if (!r->qlen)
        sq_timer_stop(&r->deadline);
    else if (progress || !sq_timer_active(&r->deadline))
        sq_timer_start(&r->deadline, r->opts.socket_timeout, 0);
}

/* The next reply, reading as much as needed.  0 and *out, or a negative error. */
static int read_reply(sq_redis *r, redisReply **out)
{
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            sq_log(SQ_LOG_WARNING, "redis: protocol error: %s", r->reader->errstr);
            return -EPROTO;
        }
        if (rep) {
            *out = rep;
            return 0;
        }
        void *data;
        int64_t n = wait_on(r, sq_stream_read_bytes_future(r->stream, READ_CHUNK, true), &data);
        if (n < 0) return (int)n;
        if (redisReaderFeed(r->reader, data, (size_t)n) != REDIS_OK) return -ENOMEM;
        /* (during the handshake connect_timeout rules) */
        if (r->writable && r->is_sub)
            watch_health(r);
        else if (r->writable)
            watch_replies(r, true);
    }
}

/* --- connecting ------------------------------------------------------------------------------ */

/* One handshake command: send it, read its reply; an error reply is SQ_EREDIS. */
static int handshake_cmd(sq_redis *r, const char *what, int argc, const char **argv)
{
    int e = send_argv(r, true, argc, argv, NULL);
    redisReply *rep = NULL;
    if (e == 0) e = read_reply(r, &rep);
    if (e < 0) return e;
    if (rep->type == REDIS_REPLY_ERROR) {
        sq_log(SQ_LOG_WARNING, "redis: %s refused: %.*s", what, (int)rep->len, rep->str);
        e = SQ_EREDIS;
    }
    freeReplyObject(rep);
    return e;
}

/* Connect, start TLS, AUTH, SELECT — all within connect_timeout. */
static int establish(sq_redis *r)
{
    double timeout = r->opts.connect_timeout;
    r->timed_out = false;
    sq_timer_start(&r->deadline, timeout, 0);
    sq_stream *s = NULL;
    int e;
    {
        /* TCP (happy eyeballs) or a unix socket: the stream layer's one way of connecting */
        char unix_host[SUN_PATH_SIZE + 8]; /* "unix:" + path */
        const char *host = r->host;
        if (r->path) {
            snprintf(unix_host, sizeof unix_host, "unix:%s", r->path);
            host = unix_host;
        }
        void *v = NULL;
        int64_t st = wait_on(r,
                             sq_tcp_connect_opts_future(r->loop, host, r->port,
                                                        &(sq_connect_options){.timeout = timeout}),
                             &v);
        e = st < 0 ? (int)st : 0;
        s = v;
        if (e < 0 && s) { /* connected, but the client closed before it could be used */
            sq_stream_free(s);
            s = NULL;
        }
    }
    if (e == 0) {
        r->stream = s;
        if (r->tls) {
            char name[256]; /* the name the certificate must carry: "[::1]" is checked as ::1 */
            size_t n = strlen(r->host);
            if (n >= 2 && r->host[0] == '[')
                snprintf(name, sizeof name, "%.*s", (int)(n - 2), r->host + 1);
            else
                snprintf(name, sizeof name, "%s", r->host);
            e = (int)wait_on(r, sq_stream_start_tls_future(s, r->tls_ctx, name), NULL);
            if (e == SQ_ETLS)
                sq_log(SQ_LOG_WARNING, "redis: TLS to %s:%d: %s", r->host, r->port,
                       sq_tls_last_error());
        }
    }
    if (e == 0) {
        if (r->reader) redisReaderFree(r->reader);
        if (!(r->reader = redisReaderCreate())) e = -ENOMEM;
    }
    if (e == 0 && r->password) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password, r->password};
        e = handshake_cmd(r, "AUTH", r->user ? 3 : 2, argv);
    }
    if (e == 0 && r->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[2] = {"SELECT", db};
        e = handshake_cmd(r, "SELECT", 2, argv);
    }
    sq_timer_stop(&r->deadline);
    if (r->closing)
        e = -ECANCELED;
    else if (e < 0 && r->timed_out)
        e = -ETIMEDOUT;
    if (e < 0 && r->stream) {
        sq_stream_free(r->stream);
        r->stream = NULL;
    }
    return e;
}

static void redis_value_free(void *v)
{
    sq_redis_free(v);
}

/* The first connect is over: hand the client over, or give it up. */
static void finish_connect(sq_redis *r, int err)
{
    sq_future *f = r->connect_fut;
    if (!f) return;
    r->connect_fut = NULL;
    sq_future_set_cancel_hook(f, NULL, NULL);
    if (err < 0) {
        sq_future_set_error(f, err);
        sq_future_release(f);
        sq_redis_free(r); /* the user's reference, which nobody received */
        return;
    }
    sq_future_set_value_free(f, redis_value_free);
    if (sq_future_resolve(f, 0, r) < 0) sq_redis_free(r);
    sq_future_release(f);
}

static void connect_cancelled(sq_future *f, void *arg)
{
    sq_redis *r = arg;
    if (r->connect_fut != f) return;
    r->connect_fut = NULL;
    sq_future_release(f);
    sq_redis_free(r);
}

/* --- serving ----------------------------------------------------------------------------- */

static void set_up(sq_redis *r)
{
    r->up = true;
    if (r->opts.on_state) r->opts.on_state(r, true, r->opts.state_arg);
}

static bool reply_is(const redisReply *e, const char *word)
{
    size_t n = strlen(word);
    return e->type == REDIS_REPLY_STRING && e->len == n && strncasecmp(e->str, word, n) == 0;
}

static bool have_sub(const sq_redis *r, const char *name, size_t len, bool pattern)
{
    for (size_t i = 0; i < r->nsubs; i++)
        if (r->subs[i].pattern == pattern && strlen(r->subs[i].name) == len &&
            memcmp(r->subs[i].name, name, len) == 0)
            return true;
    return false;
}

/* The health check's reply: ["pong", ""] once subscribed, +PONG while subscribed to nothing. */
static bool is_pong(const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_STATUS) return rep->len == 4 && !strncasecmp(rep->str, "PONG", 4);
    return rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
           reply_is(rep->element[0], "pong");
}

static void dispatch_sub(sq_redis *r, redisReply *rep)
{
    if (r->ping_out && is_pong(rep)) { /* consumed here, never a message */
        r->ping_out = false;
        watch_health(r);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        /* a channel the server refused (an ACL's NOPERM): the others still count */
        sq_log(SQ_LOG_WARNING, "redis: subscriber: %.*s", (int)rep->len, rep->str);
        if (r->confirm_left > 0 && --r->confirm_left == 0) set_up(r);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    redisReply **el = rep->element;
    for (size_t i = 0; i < rep->elements; i++)
        if (el[i]->type != REDIS_REPLY_STRING && el[i]->type != REDIS_REPLY_INTEGER) return;
    if (reply_is(el[0], "message")) {
        /* a message still in flight for a channel unsubscribed since is not delivered */
        if (el[2]->type == REDIS_REPLY_STRING && have_sub(r, el[1]->str, el[1]->len, false))
            r->msg_cb((sq_redis_sub *)r, el[1]->str, el[1]->len, el[2]->str, el[2]->len,
                      r->msg_arg);
    } else if (reply_is(el[0], "pmessage")) {
        if (rep->elements >= 4 && el[3]->type == REDIS_REPLY_STRING &&
            have_sub(r, el[1]->str, el[1]->len, true))
            r->msg_cb((sq_redis_sub *)r, el[2]->str, el[2]->len, el[3]->str, el[3]->len,
                      r->msg_arg);
    } else if (reply_is(el[0], "subscribe") || reply_is(el[0], "psubscribe")) {
        if (r->confirm_left > 0 && --r->confirm_left == 0) set_up(r);
    }
}

static int dispatch_cmd(sq_redis *r, redisReply *rep)
{
    sq_future *f = q_pop(r);
    if (!f) {
        sq_log(SQ_LOG_WARNING, "redis: a reply nobody asked for (type %d)", rep->type);
        freeReplyObject(rep);
        return -EPROTO;
    }
    int64_t st = rep->type == REDIS_REPLY_ERROR ? SQ_EREDIS : 0;
    /* a command cancelled or timed out meanwhile: its reply is dropped, FIFO order kept */
    if (sq_future_resolve(f, st, rep) < 0) freeReplyObject(rep);
    sq_future_release(f);
    return 0;
}

/* Subscribe again to everything, one command per channel or pattern: a server that refuses
 * one (an ACL) refuses a whole command, and the others must not go with it. */
static int resubscribe(sq_redis *r)
{
    r->confirm_left = 0;
    for (size_t i = 0; i < r->nsubs; i++) {
        const char *argv[2] = {r->subs[i].pattern ? "PSUBSCRIBE" : "SUBSCRIBE", r->subs[i].name};
        int e = send_argv(r, false, 2, argv, NULL);
        if (e < 0) return e;
        r->confirm_left++;
    }
    if (r->confirm_left == 0) set_up(r);
    return 0;
}

static int serve(sq_redis *r)
{
    r->writable = true;
    if (r->is_sub) {
        int e = resubscribe(r);
        if (e < 0) return e;
        watch_health(r); /* (also covers a server that freezes before confirming) */
    } else {
        set_up(r);
    }
    unsigned batch = 0;
    while (!r->closing) {
        redisReply *rep = NULL;
        int e = r->timed_out ? -ETIMEDOUT : read_reply(r, &rep);
        if (e < 0) return r->timed_out ? -ETIMEDOUT : e; /* the deadline cancels the read */
        if (r->is_sub) {
            dispatch_sub(r, rep);
            freeReplyObject(rep);
        } else if ((e = dispatch_cmd(r, rep)) < 0) {
            return e;
        } else {
            watch_replies(r, false); /* nothing left to wait for: stop the clock */
        }
        if (++batch == REPLY_BATCH) { /* let the loop run the rest (sq_redis_free may run) */
            batch = 0;
            sq_yield();
        }
    }
    return -ECANCELED;
}

static void going_down(sq_redis *r, int e)
{
    bool was_up = r->up;
    r->up = r->writable = false;
    sq_timer_stop(&r->deadline);
    r->timed_out = false;
    r->ping_out = false;
    r->confirm_left = 0;
    int err = e;
    if (e == SQ_ECLOSED || e == 0) {
        int se = r->stream ? sq_stream_error(r->stream) : 0;
        err = se < 0 ? se : -ECONNRESET;
    }
    if (!r->closing) {
        if (r->path)
            sq_log(SQ_LOG_INFO, "redis: connection to %s lost: %s", r->path, sq_strerror(err));
        else
            sq_log(SQ_LOG_INFO, "redis: connection to %s:%d lost: %s", r->host, r->port,
                   sq_strerror(err));
    }
    fail_pending(r, r->closing ? -ECANCELED : err);
    r->outlen = 0;
    if (r->stream) {
        sq_stream_free(r->stream);
        r->stream = NULL;
    }
    if (was_up && !r->closing && r->opts.on_state) r->opts.on_state(r, false, r->opts.state_arg);
}

static void *conn_main(void *arg)
{
    sq_redis *r = arg;
    r->coro = sq_coro_self();
    double delay = r->opts.reconnect_min;
    while (!r->closing) {
        int e = establish(r);
        if (r->closing) break;
        if (e < 0) {
            if (r->connect_fut) { /* the first connect of a command client reports */
                finish_connect(r, e);
                break;
            }
            sq_log(SQ_LOG_DEBUG, "redis: connecting to %s: %s", r->path ? r->path : r->host,
                   sq_strerror(e));
            if (r->opts.no_reconnect) {
                sq_log(SQ_LOG_WARNING, "redis: connecting to %s failed (%s); not retrying",
                       r->path ? r->path : r->host, sq_strerror(e));
                break;
            }
            wait_on(r, sq_sleep_future(r->loop, delay), NULL);
            delay = delay * 2 < r->opts.reconnect_max ? delay * 2 : r->opts.reconnect_max;
            continue;
        }
        delay = r->opts.reconnect_min;
        /* up before the connect future resolves: its done callbacks may send commands */
        if (!r->is_sub) r->up = r->writable = true;
        finish_connect(r, 0);
        if (r->closing) break; /* freed by the connect future's done callback */
        e = serve(r);
        going_down(r, e);
        if (r->closing || r->opts.no_reconnect) break;
        wait_on(r, sq_sleep_future(r->loop, delay), NULL);
    }
    r->up = r->writable = false;
    finish_connect(r, -ECANCELED);
    fail_pending(r, -ECANCELED);
    if (r->stream) {
        sq_stream_free(r->stream);
        r->stream = NULL;
    }
    r->coro = NULL;
    redis_release(r);
    return NULL;
}

/* --- URLs ---------------------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* *out: a %-decoded copy of s[0..n) (the caller frees the old one).  -EINVAL for a %00,
 * which would end the C string there: the rest of a path or password silently dropped. */
static int decode(char **out, const char *s, size_t n)
{
    char *d = malloc(n + 1), *p = d;
    *out = d;
    if (!d) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *p = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            if (!*p++) return -EINVAL;
            i += 2;
        } else {
            *p++ = s[i];
        }
    }
    *p = 0;
    return 0;
}

static int parse_int(const char *s, size_t n, int max, int *out)
{
    if (n == 0 || n > 9) return -EINVAL;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return -EINVAL;
    *out = v;
    return 0;
}

/* A duration in seconds (a decimal number, not negative) into *out. */
static int parse_seconds(const char *s, size_t n, double *out)
{
    char buf[32], *end;
    if (n == 0 || n >= sizeof buf) return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = 0;
    double v = strtod(buf, &end);
    if (*end || !(v >= 0) || v > 1e9) return -EINVAL; /* (NaN fails v >= 0) */
    *out = v;
    return 0;
}

static int replace(char **field, const char *s, size_t n)
{
    free(*field);
    return decode(field, s, n);
}

static int parse_query(sq_redis *r, const char *q)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (eq) {
            size_t kl = (size_t)(eq - q), vl = n - kl - 1;
            const char *v = eq + 1;
            int e = 0;
            if (kl == 2 && !memcmp(q, "db", 2))
                e = parse_int(v, vl, 1 << 20, &r->db);
            else if (kl == 8 && !memcmp(q, "password", 8))
                e = replace(&r->password, v, vl);
            else if (kl == 4 && !memcmp(q, "user", 4))
                e = replace(&r->user, v, vl);
            else if (kl == 15 && !memcmp(q, "connect_timeout", 15))
                e = parse_seconds(v, vl, &r->opts.connect_timeout);
            else if (kl == 15 && !memcmp(q, "command_timeout", 15))
                e = parse_seconds(v, vl, &r->opts.command_timeout);
            else if (kl == 14 && !memcmp(q, "socket_timeout", 14))
                e = parse_seconds(v, vl, &r->opts.socket_timeout);
            else if (kl == 21 && !memcmp(q, "health_check_interval", 21))
                e = parse_seconds(v, vl, &r->opts.health_check_interval);
            if (e < 0) return e;
            if (r->password && !*r->password) { /* none, as in redis://:@host */
                free(r->password);
                r->password = NULL;
            }
        }
        q += n;
        if (*q == '&') q++;
    }
    return 0;
}

static int parse_url(sq_redis *r, const char *url)
{
    if (!url) return -EINVAL;
    const char *p;
    bool is_unix = false;
    if (!strncmp(url, "redis://", 8)) {
        p = url + 8;
    } else if (!strncmp(url, "rediss://", 9)) {
        p = url + 9;
        r->tls = true;
    } else if (!strncmp(url, "unix://", 7)) {
        p = url + 7;
        is_unix = true;
    } else {
        return -EINVAL;
    }
    size_t main_len = strcspn(p, "?#");
    const char *query = p[main_len] == '?' ? p + main_len + 1 : NULL;
    if (is_unix) {
        if (main_len == 0 || p[0] != '/') return -EINVAL;
        int e = decode(&r->path, p, main_len);
        if (e < 0) return e;
        /* refused here, not at each connect: a subscriber would retry it forever */
        if (strlen(r->path) >= SUN_PATH_SIZE) return -ENAMETOOLONG;
        return query ? parse_query(r, query) : 0;
    }
    size_t auth_len = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (p[i] == '@') at = p + i;
    const char *h = p;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        int e;
        if (colon) {
            if (colon > p && (e = replace(&r->user, p, (size_t)(colon - p))) < 0) return e;
            e = replace(&r->password, colon + 1, (size_t)(at - colon - 1));
        } else {
            e = replace(&r->password, p, (size_t)(at - p)); /* redis://password@host */
        }
        if (e < 0) return e;
        if (r->password && !*r->password) {
            free(r->password);
            r->password = NULL;
        }
        h = at + 1;
    }
    const char *hend = p + auth_len, *port = NULL;
    size_t hl;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        if (!rb) return -EINVAL;
        hl = (size_t)(rb + 1 - h); /* keep the brackets: sq_tcp_connect takes "[::1]" */
        if (rb + 1 < hend) {
            if (rb[1] != ':') return -EINVAL;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', (size_t)(hend - h));
        hl = colon ? (size_t)(colon - h) : (size_t)(hend - h);
        if (colon) port = colon + 1;
    }
    if (hl == 0) return -EINVAL;
    int e = decode(&r->host, h, hl);
    if (e < 0) return e;
    r->port = 6379;
    if (port && parse_int(port, (size_t)(hend - port), 65535, &r->port) < 0) return -EINVAL;
    if (r->port == 0) return -EINVAL;
    if (*hend == '/') {
        const char *d = hend + 1;
        size_t dl = strcspn(d, "?#");
        if (dl && parse_int(d, dl, 1 << 20, &r->db) < 0) return -EINVAL;
    }
    return query ? parse_query(r, query) : 0;
}

/* --- construction ------------------------------------------------------------------------ */

static sq_redis *redis_new(sq_loop *loop, const char *url, const sq_redis_options *opts,
                           size_t size, int *err)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_redis *r = calloc(1, size);
    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    r->loop = loop;
    r->refs = 1;
    if (opts) r->opts = *opts;
    sq_timer_init(loop, &r->deadline, deadline_fired, r);
    int e = parse_url(r, url); /* (its timeouts override opts; 0 takes the default too) */
    if (r->opts.connect_timeout <= 0) r->opts.connect_timeout = SQ_REDIS_DEFAULT_CONNECT_TIMEOUT;
    if (r->opts.reconnect_min <= 0) r->opts.reconnect_min = SQ_REDIS_DEFAULT_RECONNECT_MIN;
    if (r->opts.reconnect_max <= 0) r->opts.reconnect_max = SQ_REDIS_DEFAULT_RECONNECT_MAX;
    if (r->opts.reconnect_max < r->opts.reconnect_min)
        r->opts.reconnect_max = r->opts.reconnect_min;
    if (e == 0 && r->tls) {
        if (r->opts.tls)
            r->tls_ctx = sq_tls_context_ref(r->opts.tls);
        else
            r->tls_ctx = sq_tls_client_context_new(NULL, &e);
    }
    if (e == 0 && !(r->reader = redisReaderCreate())) e = -ENOMEM;
    if (e < 0) {
        if (e == -EINVAL) sq_log(SQ_LOG_WARNING, "redis: bad URL: %s", url ? url : "(null)");
        if (e == -ENAMETOOLONG)
            sq_log(SQ_LOG_WARNING, "redis: unix socket path longer than %zu bytes: %s",
                   SUN_PATH_SIZE - 1, url);
        redis_destroy(r);
        *err = e;
        return NULL;
    }
    return r;
}

static int redis_start(sq_redis *r)
{
    r->refs++; /* the coroutine's */
    if (sq_go(r->loop, conn_main, r) < 0) {
        r->refs--;
        return -ENOMEM;
    }
    return 0;
}

sq_future *sq_redis_connect_future(sq_loop *loop, const char *url, const sq_redis_options *opts)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    int e = 0;
    sq_redis *r = redis_new(loop, url, opts, sizeof(sq_redis), &e);
    if (!r) {
        sq_future_set_error(f, e);
        return f;
    }
    r->connect_fut = sq_future_retain(f);
    sq_future_set_cancel_hook(f, connect_cancelled, r);
    if ((e = redis_start(r)) < 0) {
        sq_future_set_cancel_hook(f, NULL, NULL);
        sq_future_release(r->connect_fut);
        r->connect_fut = NULL;
        redis_destroy(r);
        sq_future_set_error(f, e);
    }
    return f;
}

sq_redis *sq_redis_connect(const char *url, const sq_redis_options *opts, int *err)
{
    sq_coro *self = sq_coro_self();
    if (!self) {
        sq_log(SQ_LOG_ERROR, "sq_redis_connect: called outside a coroutine "
                             "(use sq_redis_connect_future)");
        if (err) *err = SQ_ENOTCORO;
        return NULL;
    }
    void *v = NULL;
    int64_t st = sq_await(sq_redis_connect_future(sq_coro_loop(self), url, opts), &v);
    if (err) *err = st < 0 ? (int)st : 0;
    return st < 0 ? NULL : v;
}

void sq_redis_free(sq_redis *r)
{
    if (!r || r->closing) return;
    r->closing = true;
    r->up = r->writable = false;
    fail_pending(r, -ECANCELED);
    r->outlen = 0;
    sq_timer_stop(&r->deadline);
    if (r->wait) sq_future_cancel(r->wait); /* the coroutine wakes up and leaves */
    redis_release(r);
}

bool sq_redis_connected(const sq_redis *r)
{
    return r && r->up;
}

/* --- commands ------------------------------------------------------------------------------ */

static sq_future *submit(sq_redis *r, char *cmd, int len)
{
    sq_future *f = sq_future_new(r ? r->loop : NULL);
    if (!f) {
        if (cmd) redisFreeCommand(cmd);
        return NULL;
    }
    sq_future_set_value_free(f, reply_value_free);
    int e = 0;
    if (!r || r->is_sub || len == -2)
        e = -EINVAL;
    else if (len < 0 || !cmd)
        e = -ENOMEM;
    else if (!r->up)
        e = -ENOTCONN;
    else if ((e = q_push(r, f)) == 0 && (e = out_append(r, cmd, (size_t)len)) < 0) {
        r->qlen--; /* take back the entry just pushed */
        sq_future_release(r->q[(r->qhead + r->qlen) % r->qcap]);
    }
    if (e == 0) watch_replies(r, false);
    if (cmd) redisFreeCommand(cmd);
    if (e < 0) {
        sq_future_set_error(f, e);
        return f;
    }
    if (r->opts.command_timeout > 0) return sq_with_timeout(f, r->opts.command_timeout);
    return f;
}

static sq_future *cmd_vfuture(sq_redis *r, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = fmt ? redisvFormatCommand(&cmd, fmt, ap) : -2;
    return submit(r, cmd, len);
}

sq_future *sq_redis_cmd_future(sq_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sq_future *f = cmd_vfuture(r, fmt, ap);
    va_end(ap);
    return f;
}

sq_future *sq_redis_cmd_argv_future(sq_redis *r, int argc, const char *const *argv,
                                    const size_t *lens)
{
    char *cmd = NULL;
    int len = -2;
    if (argc > 0 && argv) len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    return submit(r, cmd, len);
}

/* The client's callbacks (on_state, done callbacks) run on its own coroutine, the one that
 * reads the replies: awaiting one there would wait for itself forever. */
static bool in_own_callback(const sq_redis *r, int *err)
{
    if (!r || !r->coro || sq_coro_self() != r->coro) return false;
    sq_log(SQ_LOG_ERROR, "sq_redis_cmd: called from the client's own callback, where it would "
                         "wait for itself (use sq_redis_cmd_future)");
    if (err) *err = -EDEADLK;
    return true;
}

static sq_redis_reply *await_reply(sq_future *f, int *err)
{
    if (!sq_in_coro()) {
        sq_log(SQ_LOG_ERROR, "sq_redis_cmd: called outside a coroutine (use sq_redis_cmd_future)");
        sq_future_release(f);
        if (err) *err = SQ_ENOTCORO;
        return NULL;
    }
    void *v = NULL;
    int64_t st = sq_await(f, &v);
    if (err) *err = st < 0 ? (int)st : 0;
    return v;
}

sq_redis_reply *sq_redis_cmd(sq_redis *r, int *err, const char *fmt, ...)
{
    if (in_own_callback(r, err)) return NULL;
    va_list ap;
    va_start(ap, fmt);
    sq_future *f = cmd_vfuture(r, fmt, ap);
    va_end(ap);
    return await_reply(f, err);
}

sq_redis_reply *sq_redis_cmd_argv(sq_redis *r, int *err, int argc, const char *const *argv,
                                  const size_t *lens)
{
    if (in_own_callback(r, err)) return NULL;
    return await_reply(sq_redis_cmd_argv_future(r, argc, argv, lens), err);
}

/* --- pub/sub ---------------------------------------------------------------------------------- */

sq_redis_sub *sq_redis_sub_new(sq_loop *loop, const char *url, const sq_redis_options *opts,
                               sq_redis_message_cb cb, void *arg, int *err)
{
    int e = 0;
    sq_redis *r = NULL;
    if (!cb)
        e = -EINVAL;
    else if ((r = redis_new(loop, url, opts, sizeof(sq_redis_sub), &e))) {
        r->is_sub = true;
        r->msg_cb = cb;
        r->msg_arg = arg;
        e = redis_start(r);
    }
    if (e < 0) {
        if (r) redis_destroy(r);
        if (err) *err = e;
        return NULL;
    }
    if (err) *err = 0;
    return (sq_redis_sub *)r;
}

static int sub_add(sq_redis_sub *s, const char *name, bool pattern)
{
    if (!s || !name || !*name) return -EINVAL;
    sq_redis *r = &s->c;
    if (have_sub(r, name, strlen(name), pattern)) return 0;
    if (r->nsubs == r->subscap) {
        size_t cap = r->subscap ? r->subscap * 2 : 8;
        sub_entry *n = realloc(r->subs, cap * sizeof *n);
        if (!n) return -ENOMEM;
        r->subs = n;
        r->subscap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return -ENOMEM;
    if (r->writable) {
        const char *argv[2] = {pattern ? "PSUBSCRIBE" : "SUBSCRIBE", name};
        int e = send_argv(r, false, 2, argv, NULL);
        if (e < 0) {
            free(copy);
            return e;
        }
    }
    r->subs[r->nsubs++] = (sub_entry){copy, pattern};
    return 0;
}

static int sub_remove(sq_redis_sub *s, const char *name, bool pattern)
{
    if (!s || !name) return -EINVAL;
    sq_redis *r = &s->c;
    for (size_t i = 0; i < r->nsubs; i++) {
        if (r->subs[i].pattern != pattern || strcmp(r->subs[i].name, name) != 0) continue;
        if (r->writable) {
            const char *argv[2] = {pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", name};
            send_argv(r, false, 2, argv, NULL); /* if it fails, the filter still drops */
        }
        free(r->subs[i].name);
        r->subs[i] = r->subs[--r->nsubs];
        return 0;
    }
    return -ENOENT;
}

int sq_redis_subscribe(sq_redis_sub *s, const char *channel)
{
    return sub_add(s, channel, false);
}

int sq_redis_psubscribe(sq_redis_sub *s, const char *pattern)
{
    return sub_add(s, pattern, true);
}

int sq_redis_unsubscribe(sq_redis_sub *s, const char *channel)
{
    return sub_remove(s, channel, false);
}

int sq_redis_punsubscribe(sq_redis_sub *s, const char *pattern)
{
    return sub_remove(s, pattern, true);
}

bool sq_redis_sub_connected(const sq_redis_sub *s)
{
    return s && s->c.up;
}

sq_redis *sq_redis_sub_conn(sq_redis_sub *s)
{
    return s ? &s->c : NULL;
}

void sq_redis_sub_free(sq_redis_sub *s)
{
    if (s) sq_redis_free(&s->c);
}
