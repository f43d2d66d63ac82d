/* Buffered non-blocking streams over an fd, in the spirit of Tornado's IOStream.
 *
 * Reads: the fd is read only while a read is pending, so a peer that sends faster than we
 * consume fills its own socket buffers (TCP backpressure).  Results point into the read
 * buffer; the bytes a read returned are dropped lazily, when the next read starts, so the
 * pointer handed out stays valid until then.  Read interest is dropped lazily too: it stays
 * registered after a read completes and is removed the first time the fd turns readable with
 * no read pending, which saves two epoll_ctl calls per request/response round trip.
 *
 * Writes: with nothing pending a write goes straight to the kernel; what does not fit is
 * copied into one contiguous pending buffer, flushed with one write() per SQ_WRITE event.
 * Each write future carries the stream offset its last byte ends at and resolves once the
 * total written passes it.
 *
 * Re-entrancy: resolving a future runs its done callbacks synchronously, and they may read,
 * write, close or even free this stream.  Code that resolves futures runs between enter()
 * and leave(); a free requested inside is deferred to the outermost leave().
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "stream/regex.h"
#include "transport/transport.h"

enum { R_NONE, R_UNTIL, R_BYTES, R_CLOSE, R_REGEX, R_INTO };

#define RBUF_INITIAL 4096u
#define READ_MIN     4096u
#define READ_BIG     65536u
#define WBUF_KEEP    65536u /* a drained write buffer larger than this is released */
#define DELIM_INLINE 16

typedef struct waiter {
    sq_future *f;
    uint64_t end; /* resolves once `written` reaches this stream offset */
    size_t len;   /* the status it resolves with */
} waiter;

struct sq_stream {
    sq_loop *loop;
    int fd;
    sq_io io;
    sq__tp *tp; /* the transport: NULL for a plain fd */
    unsigned want;     /* SQ_READ/SQ_WRITE the stream wants (the kernel's interest may differ: TLS) */
    sq_future *hs_fut; /* sq_stream_start_tls: the handshake in progress */
    bool is_socket;
    bool closed;
    bool close_cb_ran;
    bool want_free;
    bool last_read_full; /* the last read() filled the space it was given: read bigger */
    int error;
    unsigned depth;

    /* read buffer: [rstart, rend) holds unread data; `consume` bytes at rstart belong to the
     * result of the previous read and are dropped when the next one starts */
    char *rbuf;
    size_t rcap, rstart, rend, consume;
    size_t max_buffer;

    /* the pending read */
    int rkind;
    sq_future *rfut;
    size_t rmax;        /* R_UNTIL / R_CLOSE / R_REGEX: max bytes; R_BYTES / R_INTO: n */
    bool rpartial;      /* R_BYTES / R_INTO */
    size_t scanned;     /* R_UNTIL: bytes from rstart already searched for the delimiter;
                         * R_REGEX: where (from rstart) a match may still begin */
    const sq_regex *re; /* R_REGEX */
    void *md;           /* its PCRE2 match data, made on first use, kept for the next ones */
    char *into;         /* R_INTO: the caller's buffer (rmax bytes) and how much it holds */
    size_t into_got;
    size_t dlen;
    char *delim;
    char delim_inline[DELIM_INLINE];

    /* write side: [wstart, wend) of wbuf is pending */
    char *wbuf;
    size_t wcap, wstart, wend;
    uint64_t queued;  /* total bytes ever accepted */
    uint64_t written; /* total bytes ever handed to the kernel */
    size_t high_water, pending_peak;
    waiter *waiters; /* ring */
    size_t whead, wlen, wqcap;

    sq_stream_close_cb close_cb;
    void *close_arg;
    void *data;
};

static void on_io(sq_loop *loop, sq_io *io, unsigned events);
static void stream_destroy(sq_stream *s);
static void do_close(sq_stream *s, int err, bool eof);
static void tls_step(sq_stream *s);

static inline void enter(sq_stream *s)
{
    s->depth++;
}

static inline void leave(sq_stream *s)
{
    if (--s->depth == 0 && s->want_free) stream_destroy(s);
}

static size_t pending_bytes(const sq_stream *s)
{
    return s->wend - s->wstart;
}

static int close_error(const sq_stream *s)
{
    return s->error ? s->error : SQ_ECLOSED;
}

/* Make the registered interest `ev` (SQ_READ|SQ_WRITE).  Returns 0 or a backend error. */
static int set_interest(sq_stream *s, unsigned ev)
{
    if (s->closed) return close_error(s);
    s->want = ev;
    ev = sq__tp_poll(s->tp, ev); /* TLS: a handshake, a record half written */
    if (ev == s->io.events) return 0;
    if (!ev) return sq_io_stop(s->loop, &s->io);
    return sq_io_start(s->loop, &s->io, ev);
}

sq_stream *sq_stream_new(sq_loop *loop, int fd)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    if (fd < 0 || !loop) {
        errno = EBADF;
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return NULL;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return NULL;
    sq_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    struct stat st;
    s->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    /* Writing to a pipe whose reader is gone raises SIGPIPE; sockets use MSG_NOSIGNAL, but
     * pipes cannot, and a server must never die of a vanished peer. */
    if (!s->is_socket) sq__ignore_sigpipe_once();
    s->loop = loop;
    s->fd = fd;
    s->max_buffer = SQ_STREAM_DEFAULT_MAX_BUFFER;
    s->high_water = SQ_STREAM_DEFAULT_HIGH_WATER;
    sq_io_init(&s->io, fd, on_io, s);
    return s;
}

bool sq_stream_closed(const sq_stream *s)
{
    return s->closed;
}
int sq_stream_error(const sq_stream *s)
{
    return s->error;
}
int sq_stream_fd(const sq_stream *s)
{
    return s->closed ? -1 : s->fd;
}
sq_loop *sq_stream_loop(const sq_stream *s)
{
    return s->loop;
}
size_t sq_stream_pending(const sq_stream *s)
{
    return pending_bytes(s);
}
size_t sq_stream_pending_peak(const sq_stream *s)
{
    return s->pending_peak;
}
void *sq_stream_get_data(const sq_stream *s)
{
    return s->data;
}
void sq_stream_set_data(sq_stream *s, void *data)
{
    s->data = data;
}

void sq_stream_set_close_callback(sq_stream *s, sq_stream_close_cb cb, void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
    /* Listen while no read is asked for, to see an idle peer go (on_io). */
    if (cb && !s->closed && s->rkind == R_NONE && !s->tp && !(s->want & SQ_READ)) {
        int r = set_interest(s, s->want | SQ_READ);
        if (r < 0) do_close(s, r, false);
    }
}

void sq_stream_set_high_water(sq_stream *s, size_t bytes)
{
    s->high_water = bytes;
}

/* --- closing --------------------------------------------------------------------------- */

/* A read_into that ends without completing gives back what it had received: it goes to the
 * front of the (then empty) read buffer, so the next read sees it and nothing is lost. */
static void into_put_back(sq_stream *s)
{
    size_t got = s->into_got;
    s->into_got = 0;
    if (!got) return;
    s->rstart = s->rend = 0; /* a pending read_into has taken everything that was buffered */
    if (s->rcap < got) {
        char *nb = malloc(got);
        if (!nb) {
            sq_log(SQ_LOG_ERROR, "sq_stream_read_into: out of memory, %zu bytes lost", got);
            return;
        }
        free(s->rbuf);
        s->rbuf = nb;
        s->rcap = got;
    }
    memcpy(s->rbuf, s->into, got);
    s->rend = got;
}

static void fail_read(sq_stream *s, int err)
{
    if (s->rkind == R_INTO) into_put_back(s);
    sq_future *f = s->rfut;
    s->rfut = NULL;
    s->rkind = R_NONE;
    if (!f) return;
    sq_future_resolve(f, err, NULL);
    sq_future_release(f);
}

static void finish_read(sq_stream *s, size_t len)
{
    sq_future *f = s->rfut;
    s->rfut = NULL;
    s->rkind = R_NONE;
    s->consume = len;
    sq_future_resolve(f, (int64_t)len, s->rbuf ? s->rbuf + s->rstart : (char *)"");
    sq_future_release(f);
}

static void finish_into(sq_stream *s)
{
    sq_future *f = s->rfut;
    size_t got = s->into_got;
    char *buf = s->into;
    s->rfut = NULL;
    s->rkind = R_NONE;
    s->into = NULL;
    s->into_got = 0;
    sq_future_resolve(f, (int64_t)got, buf);
    sq_future_release(f);
}

static void fail_writers(sq_stream *s, int err)
{
    while (s->wlen) {
        waiter w = s->waiters[s->whead];
        s->whead = (s->whead + 1) % s->wqcap;
        s->wlen--;
        sq_future_resolve(w.f, w.end <= s->written ? (int64_t)w.len : err, NULL);
        sq_future_release(w.f);
    }
}

/* Close with `err` (0: clean EOF or local close).  `eof` marks a close caused by the peer's
 * EOF, which completes a pending read_until_close instead of failing it. */
static void do_close(sq_stream *s, int err, bool eof)
{
    if (s->closed) return;
    enter(s);
    s->error = err;
    sq_io_stop(s->loop, &s->io);
    sq__tp_close(s->fd, s->tp, false);
    s->tp = NULL;
    s->closed = true;
    /* Unwritten bytes will never reach the kernel now. */
    s->wstart = s->wend = 0;
    if (s->rkind != R_NONE) {
        size_t avail = s->rend - s->rstart;
        if (s->rkind == R_CLOSE && eof && !err)
            finish_read(s, avail);
        else
            fail_read(s, close_error(s));
    }
    fail_writers(s, close_error(s));
    if (s->hs_fut) {
        sq_future *f = s->hs_fut;
        s->hs_fut = NULL;
        sq_future_set_error(f, close_error(s));
        sq_future_release(f);
    }
    if (!s->close_cb_ran) {
        s->close_cb_ran = true;
        if (s->close_cb) s->close_cb(s, s->close_arg);
    }
    leave(s);
}

void sq_stream_close(sq_stream *s)
{
    do_close(s, 0, false);
}

static void stream_destroy(sq_stream *s)
{
    free(s->rbuf);
    free(s->wbuf);
    free(s->waiters);
    if (s->delim != s->delim_inline) free(s->delim);
    sq__regex_md_free(s->md);
    free(s);
}

void sq_stream_free(sq_stream *s)
{
    if (!s) return;
    enter(s);
    s->want_free = true;
    do_close(s, 0, false);
    leave(s); /* destroys it unless a callback further up the stack still uses it */
}

/* --- reading --------------------------------------------------------------------------- */

/* Bytes the pending read can be completed with, 0 if not yet; negative: it never can. */
static ssize_t read_ready(sq_stream *s)
{
    size_t avail = s->rend - s->rstart;
    switch (s->rkind) {
    case R_BYTES:
        if (s->rpartial) return avail ? (ssize_t)(avail < s->rmax ? avail : s->rmax) : 0;
        return avail >= s->rmax ? (ssize_t)s->rmax : 0;
    case R_UNTIL: {
        if (avail >= s->dlen) {
            size_t from = s->scanned >= s->dlen ? s->scanned - (s->dlen - 1) : 0;
            const char *base = s->rbuf + s->rstart;
            const char *hit = memmem(base + from, avail - from, s->delim, s->dlen);
            if (hit) {
                size_t len = (size_t)(hit - base) + s->dlen;
                return len > s->rmax ? -EMSGSIZE : (ssize_t)len;
            }
        }
        s->scanned = avail;
        return avail >= s->rmax ? -EMSGSIZE : 0;
    }
    case R_CLOSE:
        return avail > s->rmax ? -EMSGSIZE : 0;
    case R_REGEX: {
        if (!avail) return 0;
        size_t end;
        int r = sq__regex_search(s->re, &s->md, s->rbuf + s->rstart, avail, &s->scanned, &end);
        if (r < 0) return r;
        if (r > 0) return end > s->rmax ? -EMSGSIZE : (ssize_t)end;
        return avail >= s->rmax ? -EMSGSIZE : 0;
    }
    }
    return 0;
}

/* Complete the pending read from the buffer if possible.  Returns true if it is done. */
static bool try_complete(sq_stream *s)
{
    ssize_t r = read_ready(s);
    if (r == 0) return false;
    if (r < 0)
        fail_read(s, (int)r);
    else
        finish_read(s, (size_t)r);
    return true;
}

/* Make room for at least `want` more bytes after rend.  Returns false if that would take the
 * buffer past its limit. */
static bool reserve(sq_stream *s, size_t want)
{
    if (s->rcap - s->rend >= want) return true;
    size_t avail = s->rend - s->rstart;
    if (s->rstart && s->rcap - avail >= want) {
        memmove(s->rbuf, s->rbuf + s->rstart, avail);
        s->rstart = 0;
        s->rend = avail;
        return true;
    }
    size_t limit = s->max_buffer + READ_BIG;
    if (avail + want > limit) return false;
    size_t cap = s->rcap ? s->rcap : RBUF_INITIAL;
    while (cap < avail + want) cap *= 2;
    if (cap > limit) cap = limit;
    char *nb = malloc(cap);
    if (!nb) return false;
    if (avail) memcpy(nb, s->rbuf + s->rstart, avail);
    free(s->rbuf);
    s->rbuf = nb;
    s->rcap = cap;
    s->rstart = 0;
    s->rend = avail;
    return true;
}

/* How much room the next read() should have. */
static size_t read_want(const sq_stream *s)
{
    size_t want = s->last_read_full ? READ_BIG : READ_MIN;
    if (s->rkind == R_BYTES && !s->rpartial) {
        size_t need = s->rmax - (s->rend - s->rstart);
        if (need > want) want = need < s->max_buffer ? need : s->max_buffer;
    }
    return want;
}

/* A read returned nothing (n <= 0): the peer closed, the socket ran dry (-EAGAIN: level-
 * triggered epoll calls again), or an error closed the stream. */
static void read_ended(sq_stream *s, ssize_t n)
{
    if (n == 0)
        do_close(s, 0, true);
    else if (n != -EAGAIN)
        do_close(s, (int)n, false);
}

/* read_into: straight into the caller's buffer, no copy through ours. */
static void do_read_into(sq_stream *s)
{
    for (int rounds = 0; rounds < 64 && s->rkind == R_INTO && !s->closed; rounds++) {
        size_t space = s->rmax - s->into_got;
        ssize_t n = sq__tp_read(s->fd, s->tp, s->into + s->into_got, space);
        if (n > 0) {
            s->into_got += (size_t)n;
            if (s->rpartial || s->into_got == s->rmax) {
                finish_into(s);
                return;
            }
            if ((size_t)n < space) return;
            continue;
        }
        read_ended(s, n);
        return;
    }
}

/* The fd is readable and a read is pending: read until it completes or the fd runs dry. */
static void do_read(sq_stream *s)
{
    if (SQ__UNLIKELY(s->rkind == R_INTO)) {
        do_read_into(s);
        return;
    }
    for (int rounds = 0; rounds < 64 && s->rkind != R_NONE && !s->closed; rounds++) {
        size_t want = read_want(s);
        if (!reserve(s, want)) {
            /* The pending read cannot fit in max_buffer. */
            if (s->rkind == R_CLOSE || s->rkind == R_UNTIL || s->rkind == R_REGEX ||
                !reserve(s, 1)) {
                fail_read(s, -EMSGSIZE);
                return;
            }
        }
        size_t space = s->rcap - s->rend;
        ssize_t n = sq__tp_read(s->fd, s->tp, s->rbuf + s->rend, space);
        if (n > 0) {
            s->rend += (size_t)n;
            s->last_read_full = (size_t)n == space;
            if (try_complete(s)) return;
            /* A short read means the socket is empty for now; level-triggered epoll tells
             * us when more comes, without an EAGAIN round trip. */
            if ((size_t)n < space) return;
            continue;
        }
        read_ended(s, n);
        return;
    }
}

/* Start a read whose parameters are already set: complete it from the buffer, or fail it if
 * the stream is closed, or arm read interest. */
static void start_read(sq_stream *s)
{
    enter(s);
    if (!try_complete(s)) {
        if (s->closed) {
            if (s->rkind == R_CLOSE && !s->error)
                finish_read(s, s->rend - s->rstart);
            else
                fail_read(s, close_error(s));
        } else {
            int r = set_interest(s, s->want | SQ_READ);
            if (r < 0) fail_read(s, r);
        }
    }
    leave(s);
}

/* Cancelling the pending read (sq_with_timeout does) gives the stream back, so that a later
 * read is accepted and the bytes that arrive go to it, not to a future nobody awaits.  `s` is
 * alive whenever this runs: resolving drops the hook, and the read is always resolved
 * before the stream is freed (do_close fails it). */
static void read_cancelled(sq_future *f, void *arg)
{
    sq_stream *s = arg;
    if (s->rfut != f) return;
    if (s->rkind == R_INTO) {
        into_put_back(s);
        s->into = NULL;
    }
    s->rfut = NULL;
    s->rkind = R_NONE;
    sq_future_release(f); /* the stream's reference; sq_future_cancel holds its own */
}

/* Common entry of every read: the one-pending-read rule, the lazy consume, the future. */
static sq_future *begin_read(sq_stream *s, int kind, bool *busy)
{
    sq_future *f = sq_future_new(s->loop);
    *busy = false;
    if (!f) return NULL;
    if (s->rkind != R_NONE) {
        *busy = true;
        sq_future_set_error(f, SQ_EBUSY_READ);
        return f;
    }
    s->rstart += s->consume;
    s->consume = 0;
    if (s->rstart == s->rend) {
        s->rstart = s->rend = 0;
        if (s->rcap > 2 * READ_BIG) { /* a big read is over: give its memory back */
            free(s->rbuf);
            s->rbuf = NULL;
            s->rcap = 0;
        }
    }
    s->rkind = kind;
    s->rfut = sq_future_retain(f);
    s->scanned = 0;
    sq_future_set_cancel_hook(f, read_cancelled, s);
    return f;
}

sq_future *sq_stream_read_until_future(sq_stream *s, const void *delim, size_t dlen,
                                       size_t max_bytes)
{
    bool busy;
    if (dlen == 0) {
        sq_future *f = sq_future_new(s->loop);
        if (f) sq_future_set_error(f, -EINVAL);
        return f;
    }
    /* copy first: delim may point into the previous result, which begin_read may free */
    char tmp[DELIM_INLINE];
    char *copy = tmp;
    if (dlen > DELIM_INLINE && !(copy = malloc(dlen))) return NULL;
    memcpy(copy, delim, dlen);
    sq_future *f = begin_read(s, R_UNTIL, &busy);
    if (!f || busy) {
        if (copy != tmp) free(copy);
        return f;
    }
    if (s->delim != s->delim_inline) free(s->delim);
    if (copy == tmp) {
        memcpy(s->delim_inline, tmp, dlen);
        copy = s->delim_inline;
    }
    s->delim = copy;
    s->dlen = dlen;
    s->rmax = max_bytes ? max_bytes : s->max_buffer;
    start_read(s);
    return f;
}

sq_future *sq_stream_read_bytes_future(sq_stream *s, size_t n, bool partial)
{
    bool busy;
    sq_future *f = begin_read(s, R_BYTES, &busy);
    if (!f || busy) return f;
    if (n == 0) {
        finish_read(s, 0);
        return f;
    }
    if (!partial && n > s->max_buffer) {
        fail_read(s, -EMSGSIZE);
        return f;
    }
    s->rmax = n;
    s->rpartial = partial;
    start_read(s);
    return f;
}

sq_future *sq_stream_read_until_close_future(sq_stream *s, size_t max_bytes)
{
    bool busy;
    sq_future *f = begin_read(s, R_CLOSE, &busy);
    if (!f || busy) return f;
    s->rmax = max_bytes ? max_bytes : s->max_buffer;
    start_read(s);
    return f;
}

sq_future *sq_stream_read_until_regex_future(sq_stream *s, const sq_regex *re, size_t max_bytes)
{
    bool busy;
    if (!re) {
        sq_future *f = sq_future_new(s->loop);
        if (f) sq_future_set_error(f, -EINVAL);
        return f;
    }
    sq_future *f = begin_read(s, R_REGEX, &busy);
    if (!f || busy) return f;
    s->re = re;
    s->rmax = max_bytes ? max_bytes : s->max_buffer;
    start_read(s);
    return f;
}

sq_future *sq_stream_read_into_future(sq_stream *s, void *buf, size_t n, bool partial)
{
    bool busy;
    if (!buf && n) {
        sq_future *f = sq_future_new(s->loop);
        if (f) sq_future_set_error(f, -EINVAL);
        return f;
    }
    sq_future *f = begin_read(s, R_INTO, &busy);
    if (!f || busy) return f;
    /* What is buffered already goes first; the rest is read straight into buf. */
    size_t avail = s->rend - s->rstart, take = avail < n ? avail : n;
    if (take) memcpy(buf, s->rbuf + s->rstart, take);
    s->rstart += take;
    s->into = buf;
    s->into_got = take;
    s->rmax = n;
    s->rpartial = partial;
    if (n == 0 || (partial ? take > 0 : take == n)) {
        enter(s);
        finish_into(s);
        leave(s);
        return f;
    }
    start_read(s);
    return f;
}

static ssize_t await_read(sq_future *f, const char **data)
{
    void *v = NULL;
    int64_t st = sq_await(f, &v);
    if (data) *data = st >= 0 ? v : NULL;
    return (ssize_t)st;
}

static bool check_coro(const char *what)
{
    if (sq_in_coro()) return true;
    sq_log(SQ_LOG_ERROR, "%s: called outside a coroutine (use the *_future form)", what);
    return false;
}

ssize_t sq_stream_read_until(sq_stream *s, const void *delim, size_t dlen, size_t max_bytes,
                             const char **data)
{
    if (data) *data = NULL;
    if (!check_coro("sq_stream_read_until")) return SQ_ENOTCORO;
    return await_read(sq_stream_read_until_future(s, delim, dlen, max_bytes), data);
}

ssize_t sq_stream_read_bytes(sq_stream *s, size_t n, bool partial, const char **data)
{
    if (data) *data = NULL;
    if (!check_coro("sq_stream_read_bytes")) return SQ_ENOTCORO;
    return await_read(sq_stream_read_bytes_future(s, n, partial), data);
}

ssize_t sq_stream_read_until_close(sq_stream *s, size_t max_bytes, const char **data)
{
    if (data) *data = NULL;
    if (!check_coro("sq_stream_read_until_close")) return SQ_ENOTCORO;
    return await_read(sq_stream_read_until_close_future(s, max_bytes), data);
}

ssize_t sq_stream_read_until_regex(sq_stream *s, const sq_regex *re, size_t max_bytes,
                                   const char **data)
{
    if (data) *data = NULL;
    if (!check_coro("sq_stream_read_until_regex")) return SQ_ENOTCORO;
    return await_read(sq_stream_read_until_regex_future(s, re, max_bytes), data);
}

ssize_t sq_stream_read_into(sq_stream *s, void *buf, size_t n, bool partial)
{
    if (!check_coro("sq_stream_read_into")) return SQ_ENOTCORO;
    return await_read(sq_stream_read_into_future(s, buf, n, partial), NULL);
}

/* --- writing --------------------------------------------------------------------------- */

static ssize_t sys_write(sq_stream *s, const void *buf, size_t len)
{
    ssize_t n = sq__tp_write(s->fd, s->tp, buf, len, s->is_socket);
    return n == -EAGAIN ? 0 : n;
}

/* Resolve the write futures whose bytes have all reached the kernel. */
static void resolve_writers(sq_stream *s)
{
    while (s->wlen && !s->closed) {
        waiter *w = &s->waiters[s->whead];
        if (w->end > s->written) break;
        waiter done = *w;
        s->whead = (s->whead + 1) % s->wqcap;
        s->wlen--;
        sq_future_resolve(done.f, (int64_t)done.len, NULL);
        sq_future_release(done.f);
    }
}

/* Write as much pending data as the kernel takes.  Returns 0 or the error that closed us. */
static int flush(sq_stream *s)
{
    while (pending_bytes(s) && !s->closed) {
        size_t len = pending_bytes(s);
        ssize_t n = sys_write(s, s->wbuf + s->wstart, len);
        if (n < 0) {
            do_close(s, (int)n, false);
            return (int)n;
        }
        s->wstart += (size_t)n;
        s->written += (uint64_t)n;
        if ((size_t)n < len) break; /* the kernel buffer is full */
    }
    if (s->closed) return close_error(s);
    if (!pending_bytes(s)) {
        s->wstart = s->wend = 0;
        if (s->wcap > WBUF_KEEP) {
            free(s->wbuf);
            s->wbuf = NULL;
            s->wcap = 0;
        }
    }
    return 0;
}

static bool append_pending(sq_stream *s, const char *p, size_t len)
{
    size_t pend = pending_bytes(s);
    if (s->wcap - s->wend < len) {
        if (s->wstart && s->wcap - pend >= len && s->wstart >= pend) {
            memmove(s->wbuf, s->wbuf + s->wstart, pend);
        } else {
            if (len > SIZE_MAX / 2 - pend) return false; /* doubling would overflow */
            size_t cap = s->wcap ? s->wcap : 4096;
            while (cap < pend + len) cap *= 2;
            char *nb = malloc(cap);
            if (!nb) return false;
            if (pend) memcpy(nb, s->wbuf + s->wstart, pend);
            free(s->wbuf);
            s->wbuf = nb;
            s->wcap = cap;
        }
        s->wstart = 0;
        s->wend = pend;
    }
    memcpy(s->wbuf + s->wend, p, len);
    s->wend += len;
    s->queued += len;
    if (pending_bytes(s) > s->pending_peak) s->pending_peak = pending_bytes(s);
    return true;
}

static int push_waiter(sq_stream *s, sq_future *f, uint64_t end, size_t len)
{
    if (s->wlen == s->wqcap) {
        size_t cap = s->wqcap ? s->wqcap * 2 : 8;
        waiter *nw = malloc(cap * sizeof *nw);
        if (!nw) return -ENOMEM;
        for (size_t i = 0; i < s->wlen; i++) nw[i] = s->waiters[(s->whead + i) % s->wqcap];
        free(s->waiters);
        s->waiters = nw;
        s->wqcap = cap;
        s->whead = 0;
    }
    s->waiters[(s->whead + s->wlen) % s->wqcap] = (waiter){sq_future_retain(f), end, len};
    s->wlen++;
    return 0;
}

/* Queue `len` bytes: straight to the kernel if nothing is pending, the rest copied.
 * Returns 0 or a negative error (the stream is then closed). */
static int queue_write(sq_stream *s, const void *data, size_t len)
{
    if (s->closed) return close_error(s);
    const char *p = data;
    if (!pending_bytes(s) && len) {
        ssize_t n = sys_write(s, p, len);
        if (n < 0) {
            do_close(s, (int)n, false);
            return (int)n;
        }
        s->queued += (uint64_t)n;
        s->written += (uint64_t)n;
        p += n;
        len -= (size_t)n;
    }
    if (!len) return 0;
    if (!append_pending(s, p, len)) return -ENOMEM;
    int r = set_interest(s, s->want | SQ_WRITE);
    if (r < 0) {
        do_close(s, r, false);
        return r;
    }
    return 0;
}

sq_future *sq_stream_write_future(sq_stream *s, const void *data, size_t len)
{
    sq_future *f = sq_future_new(s->loop);
    if (!f) return NULL;
    enter(s);
    int r = queue_write(s, data, len);
    if (r < 0)
        sq_future_set_error(f, r);
    else if (s->written >= s->queued && !s->wlen)
        sq_future_resolve(f, (int64_t)len, NULL);
    else if ((r = push_waiter(s, f, s->queued, len)) < 0)
        sq_future_set_error(f, r);
    leave(s);
    return f;
}

int sq_stream_write(sq_stream *s, const void *data, size_t len)
{
    if (s->closed) return close_error(s);
    if (!sq_in_coro()) {
        /* Nothing to suspend: queue the bytes without backpressure. */
        enter(s);
        int r = queue_write(s, data, len);
        leave(s);
        return r;
    }
    enter(s);
    int r = queue_write(s, data, len);
    sq_future *f = NULL;
    if (r == 0 && pending_bytes(s) > s->high_water) {
        f = sq_future_new(s->loop);
        if (!f || (r = push_waiter(s, f, s->queued, len)) < 0) {
            sq_future_release(f);
            f = NULL;
            if (!r) r = -ENOMEM;
        }
    }
    leave(s);
    if (!f) return r;
    int64_t st = sq_await(f, NULL);
    return st < 0 ? (int)st : 0;
}

int sq_stream_drain(sq_stream *s)
{
    if (s->closed) return close_error(s);
    if (!pending_bytes(s)) return 0;
    if (!check_coro("sq_stream_drain")) return SQ_ENOTCORO;
    sq_future *f = sq_future_new(s->loop);
    if (!f) return -ENOMEM;
    int r = push_waiter(s, f, s->queued, 0);
    if (r < 0) {
        sq_future_release(f);
        return r;
    }
    int64_t st = sq_await(f, NULL);
    return st < 0 ? (int)st : 0;
}

/* --- the fd watcher -------------------------------------------------------------------- */

/* Readable with no read asked for: if that is the peer's end of stream (or a reset) and
 * nothing comes before it, the stream closes now, so that a close callback learns an idle
 * peer left (Tornado's IOStream does the same).  Data first: it waits for a read, and the
 * end is seen after it (the kernel keeps it; nothing is read ahead of the reader).  Plain
 * sockets only: under TLS the bytes are records. */
static bool idle_peer_closed(sq_stream *s)
{
    int g = sq__tp_peer_gone(s->fd, s->tp);
    if (!g) return false;
    do_close(s, g > 0 ? 0 : g, g > 0);
    return true;
}

static void on_io(sq_loop *loop, sq_io *io, unsigned events)
{
    sq_stream *s = io->data;
    enter(s);
    events = sq__tp_ready(s->tp, events);
    unsigned want = s->want;
    if (s->hs_fut) tls_step(s);
    if (!s->closed && (events & SQ_WRITE) && pending_bytes(s)) {
        if (flush(s) == 0) resolve_writers(s);
    }
    if (!s->closed && (events & SQ_READ)) {
        if (s->rkind != R_NONE)
            do_read(s);
        else if (!idle_peer_closed(s))
            want &= ~(unsigned)SQ_READ; /* readable with nobody asking: stop listening */
    }
    if (!s->closed) {
        want = (want & s->want) | (s->rkind != R_NONE ? SQ_READ : 0);
        if (pending_bytes(s))
            want |= SQ_WRITE;
        else
            want &= ~(unsigned)SQ_WRITE;
        int r = set_interest(s, want);
        if (r < 0) do_close(s, r, false);
    }
    leave(s);
}

/* --- TLS ------------------------------------------------------------------------------- */

/* Drive the handshake sq_stream_start_tls began; resolve its future when it is over. */
static void tls_step(sq_stream *s)
{
    int e = sq__tp_handshake(s->tp);
    if (e == -EAGAIN) {
        int r = set_interest(s, s->want);
        if (r < 0) do_close(s, r, false);
        return;
    }
    if (e < 0) {
        if (e == -EPROTO) e = SQ_ETLS; /* the peer's first bytes were no TLS handshake */
        do_close(s, e, false);         /* fails hs_fut with e */
        return;
    }
    sq_future *f = s->hs_fut;
    s->hs_fut = NULL;
    int r = set_interest(s, s->want);
    sq_future_resolve(f, 0, NULL);
    sq_future_release(f);
    if (r < 0) do_close(s, r, false);
}

/* Cancelling the handshake (a timeout) leaves a stream that is neither plain nor TLS: close
 * it. */
static void tls_cancelled(sq_future *f, void *arg)
{
    sq_stream *s = arg;
    if (s->hs_fut != f) return;
    s->hs_fut = NULL;
    sq_future_release(f);
    do_close(s, -ECANCELED, false);
}

sq_future *sq_stream_start_tls_future(sq_stream *s, sq_tls_context *ctx, const char *server_hostname)
{
    sq_future *f = sq_future_new(s->loop);
    if (!f) return NULL;
    int e = 0;
    if (s->closed)
        e = close_error(s);
    else if (!ctx || !s->is_socket)
        e = -EINVAL;
    else if (s->tp || s->hs_fut)
        e = -EALREADY;
    else if (s->rkind != R_NONE || pending_bytes(s) || s->rend > s->rstart + s->consume)
        e = -EBUSY; /* bytes in flight either side of the switch would be ambiguous */
    if (!e) {
        s->tp = sq__tls_new(ctx, s->fd, server_hostname, &e);
        if (s->tp) sq__tp_attach(s->tp, s->loop, &s->io);
    }
    if (e) {
        sq_future_set_error(f, e);
        return f;
    }
    s->hs_fut = sq_future_retain(f);
    sq_future_set_cancel_hook(f, tls_cancelled, s);
    enter(s);
    tls_step(s);
    leave(s);
    return f;
}

int sq_stream_start_tls(sq_stream *s, sq_tls_context *ctx, const char *server_hostname)
{
    if (!check_coro("sq_stream_start_tls")) return SQ_ENOTCORO;
    sq_future *f = sq_stream_start_tls_future(s, ctx, server_hostname);
    return f ? (int)sq_await(f, NULL) : -ENOMEM;
}

bool sq_stream_is_tls(const sq_stream *s)
{
    return sq__tp_is_tls(s->tp);
}

const char *sq_stream_alpn(const sq_stream *s, size_t *len)
{
    return sq__tls_alpn(s->tp, len);
}

int sq__stream_release(sq_stream *s, int *fd, sq__tp **tp, char **extra, size_t *extra_len)
{
    *fd = -1;
    *tp = NULL;
    *extra = NULL;
    *extra_len = 0;
    if (s->closed) return close_error(s);
    if (s->rkind != R_NONE || s->hs_fut || pending_bytes(s)) return -EBUSY;
    size_t from = s->rstart + s->consume;
    if (s->rend > from) {
        *extra = malloc(s->rend - from);
        if (!*extra) return -ENOMEM;
        memcpy(*extra, s->rbuf + from, s->rend - from);
        *extra_len = s->rend - from;
    }
    sq_io_stop(s->loop, &s->io);
    *fd = s->fd;
    *tp = s->tp;
    sq__tp_attach(s->tp, NULL, NULL);
    s->tp = NULL;
    s->fd = -1;
    s->closed = true; /* nothing to close: the caller owns the socket now */
    s->close_cb_ran = true;
    return 0;
}

sq_stream *sq__stream_adopt(sq_loop *loop, int fd, sq__tp *tp, const char *extra, size_t extra_len)
{
    sq_stream *s = sq_stream_new(loop, fd);
    if (!s) return NULL;
    if (extra_len) {
        if (!reserve(s, extra_len)) {
            s->closed = s->close_cb_ran = true; /* the fd stays the caller's */
            sq_stream_free(s);
            return NULL;
        }
        memcpy(s->rbuf + s->rend, extra, extra_len);
        s->rend += extra_len;
    }
    s->tp = tp;
    sq__tp_attach(tp, s->loop, &s->io);
    return s;
}
