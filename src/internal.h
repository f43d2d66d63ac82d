/* Internal declarations shared between squall's layers.  Not installed, not public. */
#ifndef SQUALL_INTERNAL_H
#define SQUALL_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "squall.h"

#define SQ__NS_PER_SEC  1000000000ull
#define SQ__LIKELY(x)   __builtin_expect(!!(x), 1)
#define SQ__UNLIKELY(x) __builtin_expect(!!(x), 0)
/* A function of the keep-alive request path (read, parse, handle, respond, back to the
 * loop): they all go to .text.hot, which the linker lays out side by side, so that a request
 * runs through fewer pages of code (examples/hello: 10 of squall's, 21 when they were
 * scattered over the text).  Where the kernel isolates its page tables without PCID, every
 * system call empties the TLB, and each page touched after it costs a page walk. */
#define SQ__HOT __attribute__((section(".text.hot.squall")))

/* --- backend interface: five calls, as in redis' ae ------------------------------------- */
typedef struct sq__backend {
    const char *name;
    int (*init)(sq_loop *loop); /* allocate loop->backend_data */
    void (*destroy)(sq_loop *loop);
    /* Make the kernel's interest for io equal to `events` (0 removes it). */
    int (*ctl)(sq_loop *loop, sq_io *io, unsigned events);
    /* Wait up to timeout_ms (-1 forever) and call sq__io_dispatch() for each ready watcher. */
    int (*poll)(sq_loop *loop, int timeout_ms);
    /* Forget any not-yet-dispatched readiness of io (it was stopped mid-batch). */
    void (*invalidate)(sq_loop *loop, sq_io *io);
} sq__backend;

extern const sq__backend sq__backend_epoll;

typedef struct sq__cb {
    sq_callback_fn fn;
    void *arg;
} sq__cb;

/* Ring buffer of callbacks. */
typedef struct sq__cbq {
    sq__cb *items;
    size_t head, len, cap; /* cap is a power of two */
} sq__cbq;

/* Passes with only coroutines ready between two looks at the clock, and the longest the IO
 * poll is skipped for while only coroutines are ready (sq__ready_round): a zero-timeout
 * epoll_wait costs about 1.2 us in a virtual machine, more than a few dozen coroutine turns. */
#define SQ__READY_POLL_EVERY 16
#define SQ__READY_POLL_NS    100000 /* 100 us */

/* Timer wheel geometry: a tick is 2^20 ns (1.05 ms); 8 levels of 64 slots reach past the
 * 44 bits of tick a 64-bit nanosecond deadline has. */
#define SQ__TICK_SHIFT 20
#define SQ__WHEEL_LEVELS 8
#define SQ__WHERE_SHIFT 40
#define SQ__SLOT_CHUNK   64 /* entries per wheel slot chunk: 1 KiB */

/* One entry of a timer wheel slot, of the due run or of the heap: a timer's deadline,
 * copied, and the timer.  16 bytes: every active timer (one per keep-alive connection) has
 * one, so the tie-break (arming order) is read from the timer itself, on equal deadlines
 * only. */
struct sq__heap_ent {
    uint64_t deadline;
    sq_timer *t;
};

struct sq_loop {
    const sq__backend *backend;
    void *backend_data;
    uint64_t now_ns;
    uint64_t slow_ns; /* 0 = slow-callback warning off */
    /* the label of the last labelled coroutine the running callback resumed (reset by
     * sq__slow_begin): what the slow-callback warning names */
    const struct sq__coro_label *slow_label;
    bool running, stop;
    bool in_pass;                /* inside sq_loop_run_once: a nested run is refused */
    bool nested_logged;          /* the refusal was logged (once per loop) */
    uint64_t fault_check_ns;     /* when the stack-overflow handler was last re-asserted */
    struct sq__at_free *at_free; /* sq__loop_at_free hooks, newest first */
    bool freeing;                /* inside sq_loop_free: nothing new may attach to it */
    bool closed; /* sq_loop_free's last round: no new callback or timer (under ts_lock) */
    struct sq__remote *remote;   /* work out on other threads, to come back (sq__loop_remote_add) */

    /* timers (loop.c): the later ones in a hierarchical wheel of SQ__WHEEL_LEVELS x 64 slots
     * (level L slot: 64^L ticks), each an unordered array of entries kept in chunks, a bit
     * per non-empty slot in wheel_map; a reached tick's timers sorted into the due run;
     * timers armed for a tick already reached in a 4-ary min-heap.  See loop.c. */
    struct sq__heap_ent *heap;
    size_t heap_len, heap_cap;
    struct sq__heap_ent *due, *due_tmp; /* the run, and a buffer for sorting it */
    size_t due_pos, due_len, due_cap, due_tmp_cap;
    uint64_t wheel_tick; /* deadline >> SQ__TICK_SHIFT of the first tick still in the wheel */
    size_t wheel_count;
    uint64_t wheel_map[SQ__WHEEL_LEVELS];
    /* (the wheel's slots are at the end of the struct) */
    unsigned ready_passes; /* passes in a row with only coroutines ready (see run_once) */
    uint64_t polled_ns;    /* now_ns at the last IO poll */
    uint64_t timer_seq;

    sq__cbq callbacks;

    /* coroutines ready to run, intrusive FIFO */
    sq_coro *ready_head, *ready_tail;
    /* the batch sq__coro_run_ready is running: a coroutine of it that suspends hands the
     * thread straight to the next one (coro.c) */
    sq_coro *run_list;
    sq_coro *ret_from;   /* the coroutine that last switched back to the loop */
    bool in_batch;       /* sq__coro_run_ready is running (handing over is allowed) */
    bool pass_block;     /* the pass running may wait (sq_loop_run_once's `block`) */
    uint64_t run_t0;     /* the slow-callback accounting of the batch */
    sq_task_fn run_fn;   /* the function of the coroutine running in the batch */
    /* AddressSanitizer builds (coro.c): a coroutine handed over, and the way back to the
     * loop's stack the next one must keep (laid out, unused, in other builds) */
    bool asan_handoff;
    const void *asan_ret_bottom;
    size_t asan_ret_size;
    /* every live coroutine of this loop (created and not finished), freed with the loop */
    sq_coro *coros, *coros_tail;
    uint32_t coro_round;

    /* thread-safe callbacks */
    pthread_mutex_t ts_lock;
    sq__cb *ts_items;
    size_t ts_len, ts_cap;
    atomic_bool ts_signaled;
    int wake_fd;
    sq_io wake_io;

    /* signals (self-pipe) */
    int sig_pipe[2];
    sq_io sig_io;

    /* free lists: call handles in a stack of pointer blocks, so that taking one does not
     * chase a pointer through the last handle freed (a cache miss each when many are
     * pending); call_pool_top handles in the top block (loop.c, call_new) */
    struct sq__pool_block *call_pool;
    size_t call_pool_top;
    /* where new call handles and 1 KiB blocks (wheel slot chunks, pool blocks) come from:
     * slabs the loop owns and frees with it (loop.c, slab_carve), each kind carved from slabs
     * of its own; sq__loop_slabs_trim frees those whose every item is back in its pool */
    void *slabs;
    struct sq__carver {
        char *cur, *end;
        size_t next_size; /* of the next slab */
        void *slab;       /* the one carved from now */
    } call_carver, block_carver;
    void *block_free; /* blocks given back, each linked through its first bytes */
    sq_future *future_free;
    size_t future_free_len;

    /* timers: the wheel's slots (see wheel_map above); last, so that the fields above share
     * a page or two with each other rather than with these 12 KiB.  A slot's entries are in
     * chunks of SQ__SLOT_CHUNK (loop.c): entry i is chunks[i / SQ__SLOT_CHUNK][i % ...]. */
    struct sq__wheel_slot {
        struct sq__heap_ent **chunks;
        uint32_t len;
        uint32_t nchunks, chunks_cap; /* chunks held, and room in the chunks array */
    } wheel[SQ__WHEEL_LEVELS * 64];
};

/* The logger's own line writer (the handler, or stderr with or without colours), for lines
 * formatted elsewhere and longer than sq_log's 1 KiB; and whether `level` is logged. */
void sq__log_line(int level, const char *msg);
bool sq__log_enabled(int level);

/* Called by backends for each ready watcher. */
void sq__io_dispatch(sq_loop *loop, sq_io *io, unsigned events);
/* The same for one of a batch of events: t0 is when its turn began (the previous one's end,
 * or 0: read the clock); returns when it ended (0 without slow-callback checks).  One clock
 * read per event instead of two. */
uint64_t sq__io_dispatch_at(sq_loop *loop, sq_io *io, unsigned events, uint64_t t0);
/* sq_io_start that tells the kernel even when the watcher's bookkeeping says it is registered
 * for these events already: for a watcher whose descriptor may have been closed and its
 * number reused behind its back (the registration then went with the old file). */
int sq__io_rearm(sq_loop *loop, sq_io *io, unsigned events);
/* Stop a watcher whose descriptor is closed already (or no longer the file it watched)
 * without a system call, which could hit whatever file has that number now; events of it
 * still pending in the current poll batch are dropped. */
void sq__io_forget(sq_loop *loop, sq_io *io);

/* What a coroutine is serving, for the slow-callback warning: "GET /sync (sync_get)".  The
 * web layer keeps one per route and method (they live as long as the app) and attaches it
 * with a pointer store; the coroutine keeps it until it is given another or finishes. */
typedef struct sq__coro_label {
    const char *method;  /* static */
    const char *pattern; /* the route's pattern (NULL: no route matched) */
    const void *fn;      /* the handler function, named with dladdr */
} sq__coro_label;
void sq__coro_set_label(sq_coro *c, const sq__coro_label *label);
/* Forget a label a loop may still point at (its app is being freed). */
void sq__loop_forget_labels(sq_loop *loop, const sq__coro_label *from, const sq__coro_label *to);
/* "name" for a function pointer: its symbol (dladdr), else "module+0xoffset", else "%p". */
void sq__fn_name(const void *fn, char *buf, size_t cap);

/* Slow-callback accounting: coarse clock, cheap enough for every callback (read inline, and
 * only a callback over the threshold leaves the inline path). */
static inline uint64_t sq__coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * SQ__NS_PER_SEC + (uint64_t)ts.tv_nsec;
}
/* Log a callback that held the loop from start_ns to end_ns (over the threshold). */
void sq__slow_report(sq_loop *loop, uint64_t start_ns, uint64_t end_ns, const char *kind,
                     const void *fn);
/* Check a turn that ran from start_ns (0: not measured, the check was turned on meanwhile) to
 * end_ns.  Returns when the next turn starts, so that one clock read ends a turn and starts
 * the next: end_ns, or the time after a report (a slow log handler is no one's turn). */
static inline uint64_t sq__slow_check_at(sq_loop *loop, uint64_t start_ns, uint64_t end_ns,
                                         const char *kind, const void *fn)
{
    if (SQ__UNLIKELY(start_ns && end_ns - start_ns >= loop->slow_ns)) {
        sq__slow_report(loop, start_ns, end_ns, kind, fn);
        return sq__coarse_ns();
    }
    loop->slow_label = NULL;
    return end_ns;
}
static inline uint64_t sq__slow_begin(sq_loop *loop)
{
    if (!loop->slow_ns) return 0;
    loop->slow_label = NULL;
    return sq__coarse_ns();
}
static inline void sq__slow_end(sq_loop *loop, uint64_t start, const char *kind, const void *fn)
{
    if (loop->slow_ns) (void)sq__slow_check_at(loop, start, sq__coarse_ns(), kind, fn);
}

/* Whether one more round of ready coroutines may run (or the IO poll be skipped for one)
 * without polling IO or running timers: the pass may wait and only coroutines are waiting.
 * Every SQ__READY_POLL_EVERY such rounds (counted here) the clock is read
 * (sq__ready_recheck): the rounds go on while the last IO poll is less than
 * SQ__READY_POLL_NS old and no timer is due.  The loop's skipped polls, its extra rounds and
 * coro.c's hand-over to the next batch all ask this, so that IO waits at most that long (or
 * that many rounds, if they are slower) and a due timer at most SQ__READY_POLL_EVERY rounds. */
bool sq__ready_recheck(sq_loop *loop);
static inline bool sq__ready_round(sq_loop *loop)
{
    if (!loop->pass_block || !loop->ready_head || loop->callbacks.len || loop->stop) return false;
    return ++loop->ready_passes < SQ__READY_POLL_EVERY || sq__ready_recheck(loop);
}

/* Coroutines: the loop runs its ready queue through this. */
size_t sq__coro_run_ready(sq_loop *loop);
/* Put a list of coroutines (linked by their queue link) back on the ready queue. */
void sq__coro_requeue(sq_loop *loop, sq_coro *list);
/* Loop teardown: cancel the future each suspended coroutine of `loop` awaits (queueing it);
 * returns how many were queued.  Then sq__coro_discard_all() frees those that never
 * finished: their await and spawn references are released and their stacks unmapped. */
size_t sq__coro_cancel_waits(sq_loop *loop);
void sq__coro_discard_all(sq_loop *loop);
/* Free this thread's pooled idle stacks beyond `keep` (0: all, at its last loop free and at
 * thread exit; the HTTP server's trim after a burst keeps what its connections can use).
 * With until_ns (sq__mono_ns time) it stops there: false while some are left. */
bool sq__coro_pool_trim(size_t keep, uint64_t until_ns);
/* Idle stacks in this thread's pool (tests). */
size_t sq__coro_pool_len(void);
/* Make sure the stack-overflow handler is the installed SIGSEGV/SIGBUS one (re-installing
 * it over, and chaining to, any handler installed since). */
void sq__coro_fault_check(void);
/* If this thread's "running coroutine" was left by a longjmp, abandon it and repair the
 * thread's and its loop's state (sq__loop_abandoned). */
void sq__coro_recover(void);
void sq__loop_abandoned(sq_loop *loop);
/* sq_await records the future a coroutine is suspended on; teardown drops its reference. */
void sq__coro_set_awaiting(sq_coro *c, sq_future *f);
void sq__future_abandon_await(sq_future *f, sq_coro *c);
/* Give a pending sq_call a function that releases what its argument holds, called instead of
 * the callback if the loop is freed before the call fires. */
void sq__call_set_dispose(sq_call *c, sq_callback_fn dispose);
/* Free the loop's pooled futures beyond `keep` (0: all, at sq_loop_free; the HTTP server's
 * trim after a burst keeps what its connections can use). */
void sq__future_pool_trim(sq_loop *loop, size_t keep);
/* The arg of f's first done callback if that callback is cb, else NULL: how the owner of a
 * future that registered itself first (the HTTP client's transfer) finds its state again. */
void *sq__future_first_arg(const sq_future *f, sq_future_cb cb);
/* Free the loop's slabs whose call handles or blocks are all back in their pools (after a
 * burst of timers; the HTTP server's trim).  sq__loop_slab_bytes: what the slabs hold. */
void sq__loop_slabs_trim(sq_loop *loop);
size_t sq__loop_slab_bytes(const sq_loop *loop);
/* Room in the heap, the due run and its sorting space, in entries (for the tests). */
size_t sq__loop_ents_cap(const sq_loop *loop);

/* Take the socket, its transport (TLS) and the bytes read but not consumed out of an idle
 * stream, which is then closed without closing the fd (sq_stream_free it).  -EBUSY while a
 * read, a write or a handshake is in progress. */
struct sq__tp;
int sq__stream_release(sq_stream *s, int *fd, struct sq__tp **tp, char **extra, size_t *extra_len);
/* The reverse: a stream over a connected socket and its transport (NULL: plain), with
 * `extra` (copied) as the first bytes to read.  NULL on -ENOMEM (fd and tp left as they
 * were). */
sq_stream *sq__stream_adopt(sq_loop *loop, int fd, struct sq__tp *tp, const char *extra,
                            size_t extra_len);

/* Drop the signal handlers and self-pipe of a loop being freed. */
void sq__signal_loop_closed(sq_loop *loop);

/* A growable byte buffer (doubling, at least 256 bytes; -ENOMEM instead of overflowing). */
typedef struct sq__buf {
    char *ptr;
    size_t len, cap;
} sq__buf;

/* Room for `extra` more bytes: 0, or -ENOMEM.  The check is inline (the HTTP response path
 * calls it several times a request); growing is sq__buf_grow's. */
int sq__buf_grow(sq__buf *b, size_t extra);
static inline int sq__buf_reserve(sq__buf *b, size_t extra)
{
    return b->cap - b->len >= extra ? 0 : sq__buf_grow(b, extra);
}
/* memcpy for the short copies of the response path (header lines, small bodies): up to 32
 * bytes as two overlapping loads and stores of a power-of-two size, inline, longer ones
 * through libc.  A call to libc's memcpy costs about twenty instructions for a 13-byte copy,
 * and a keep-alive response makes six of them. */
static inline void sq__copy(void *dst, const void *src, size_t n)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    if (n >= 8 && n <= 32) {
        uint64_t a, b;
        if (n > 16) {
            uint64_t c, e;
            memcpy(&a, s, 8), memcpy(&b, s + 8, 8);
            memcpy(&c, s + n - 16, 8), memcpy(&e, s + n - 8, 8);
            memcpy(d, &a, 8), memcpy(d + 8, &b, 8);
            memcpy(d + n - 16, &c, 8), memcpy(d + n - 8, &e, 8);
            return;
        }
        memcpy(&a, s, 8), memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8), memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4), memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4), memcpy(d + n - 4, &b, 4);
    } else if (n > 32) {
        memcpy(d, s, n);
    } else if (n) {
        d[0] = s[0], d[n / 2] = s[n / 2], d[n - 1] = s[n - 1]; /* 1 to 3 bytes */
    }
}

/* The decimal digits of v at p (room for 20 bytes); returns their end.  Up to three digits
 * (statuses, small lengths) without a loop, then two digits per division. */
static inline char *sq__put_u64(char *p, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    if (v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    if (v < 100) {
        memcpy(p, pairs + 2 * v, 2);
        return p + 2;
    }
    if (v < 1000) {
        *p = (char)('0' + v / 100);
        memcpy(p + 1, pairs + 2 * (v % 100), 2);
        return p + 3;
    }
    char tmp[20];
    char *e = tmp + sizeof tmp, *q = e;
    while (v >= 100) {
        q -= 2;
        memcpy(q, pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        q -= 2;
        memcpy(q, pairs + 2 * v, 2);
    } else {
        *--q = (char)('0' + v);
    }
    memcpy(p, q, (size_t)(e - q));
    return p + (e - q);
}

/* Append len bytes: 0, or -ENOMEM.  Inline as well (several calls a request on hot paths). */
static inline int sq__buf_append(sq__buf *b, const void *data, size_t len)
{
    if (sq__buf_reserve(b, len) < 0) return -ENOMEM;
    if (len) sq__copy(b->ptr + b->len, data, len); /* (an empty buffer's ptr is NULL) */
    b->len += len;
    return 0;
}
void sq__buf_free(sq__buf *b);

/* Ignore SIGPIPE if it still has its default action: writes to pipes and sendfile() to
 * sockets cannot pass MSG_NOSIGNAL, and a vanished peer must not kill the process. */
void sq__ignore_sigpipe_once(void);

/* Listening sockets for host:port, shared by sq_tcp_listen and the HTTP server: host NULL
 * or "" gives one dual-stack IPv6 socket (IPv4 where IPv6 is unavailable; o->ipv6_only makes
 * it IPv6 only), a numeric address one socket (v6-only as o->ipv6_only says), a name one
 * socket per address it resolves to (IPv6 ones v6-only; a family the host lacks is skipped,
 * any other failure on one address fails the whole).  With port 0 every socket takes the
 * port the first one got.  Sockets are non-blocking, close-on-exec, SO_REUSEADDR (and
 * SO_REUSEPORT with o->reuseport) and listen with `backlog`.  At most `max` fds go to fds[];
 * returns how many (>= 1) and sets *bound to the port, or a negative errno (SQ_ERESOLVE,
 * -EADDRINUSE, -ENFILE when max is 0 …) with nothing left open. */
int sq__tcp_listen_fds(const char *host, int port, const sq_tcp_options *o, int backlog, int *fds,
                       int max, int *bound);
/* Tests: the resolver sq__tcp_listen_fds uses for names (NULL: getaddrinfo again). */
struct addrinfo;
void sq__tcp_set_resolver(int (*fn)(const char *, const char *, const struct addrinfo *,
                                    struct addrinfo **),
                          void (*free_fn)(struct addrinfo *));
/* A TCP server over `n` listening sockets already bound (owned from now on, closed on
 * failure too): the accept loop (batches, EMFILE pause, pause/resume) for a layer that
 * takes each fd itself through o->on_accept (the HTTP server).  NULL with *err. */
sq_tcp_server *sq__tcp_server_from_fds(sq_loop *loop, const int *fds, int n,
                                       const sq_tcp_options *o, void *arg, int *err);
/* Its listening sockets. */
int sq__tcp_server_nfds(const sq_tcp_server *srv);
/* For a server bound to host "unix:/path" by sq__tcp_listen_fds: remove the socket file when
 * the server closes (other hosts: nothing).  0 or -ENOMEM. */
int sq__tcp_server_unlink_at_close(sq_tcp_server *srv, const char *host);
/* Sockets handed in (add_sockets): 0 when every one is a listening stream socket (made
 * non-blocking and close-on-exec), else -EINVAL / -ENOTSOCK / -EBADF (none is closed). */
int sq__tcp_adopt_check(const int *fds, int n);
/* sq_tcp_connect_opts_future over addresses given instead of resolved (put in happy-eyeballs
 * order like resolved ones): for tests, which cannot make a name resolve to ::1 and
 * 127.0.0.1 on every machine. */
struct sockaddr_storage;
sq_future *sq__tcp_connect_addrs_future(sq_loop *loop, const struct sockaddr_storage *addrs,
                                        const socklen_t *lens, size_t n,
                                        const sq_connect_options *o);

/* The web layer's way into the HTTP server's response headers: remove every header named
 * `name` whose value `match` accepts (before the head is sent).  Returns how many. */
struct sq_http_request;
int sq__http_remove_headers(struct sq_http_request *req, const char *name,
                            bool (*match)(const char *value, size_t len, void *arg), void *arg);
/* sq_template_render with names that print unescaped when the context lacks them (the web
 * layer's xsrf_form_html). */
struct sq_template;
struct json_t;
int sq__template_render_globals(struct sq_template *tpl, struct json_t *ctx,
                                struct json_t *safe_globals, char **out, size_t *len, char *err,
                                size_t errlen);
/* Whether the handler set a Content-Type on the response (sq_render leaves it alone then). */
bool sq__http_resp_has_ctype(const struct sq_http_request *req);
/* Drop the response's status, headers and buffered body (nothing sent yet): sq_clear. */
void sq__http_resp_clear(struct sq_http_request *req);
/* Whether the handler set response header `name` (any case). */
bool sq__http_resp_has_header(const struct sq_http_request *req, const char *name);
/* Whether the response has an ETag header (a flag: no scan), and add one (`etag`, len bytes,
 * quoted, known to be a valid value) without the checks sq_http_add_header makes. */
bool sq__http_resp_has_etag(const struct sq_http_request *req);
int sq__http_resp_add_etag(struct sq_http_request *req, const char *etag, size_t len);

/* A connection taken over from the HTTP server by an upgrade (a WebSocket), still tracked by
 * it so that the server's graceful shutdown and free reach it: the server asks it to close
 * (`shutdown`, e.g. a close frame with 1001) and waits for it within the shutdown deadline,
 * and drops it (`abort`) at the deadline or when freed.  The upgraded layer embeds this and
 * removes it when the connection is gone. */
typedef struct sq__http_upgraded sq__http_upgraded;
typedef struct sq__http_upgraded_ops {
    void (*shutdown)(sq__http_upgraded *u);
    void (*abort)(sq__http_upgraded *u);
} sq__http_upgraded_ops;
struct sq__http_upgraded {
    sq__http_upgraded *prev, *next;
    struct sq_http_server *srv; /* NULL once removed (or the server is gone) */
    const sq__http_upgraded_ops *ops;
};
/* Track u on the server of `req` (the request that was upgraded); removed again by
 * sq__http_upgraded_remove (idempotent), which may resolve a pending shutdown.  Called
 * after sq__http_upgrade_begin (before sq_http_detach_connection, so that a shutdown does
 * not resolve in between); u NULL: the upgrade failed. */
void sq__http_upgrade_begin(struct sq_http_request *req);
/* sq_http_detach_connection for the protocols of our own: the transport goes with the fd
 * (*tp NULL on a plain connection). */
int sq__http_detach(struct sq_http_request *req, int *fd, struct sq__tp **tp, char **extra,
                    size_t *extra_len);
void sq__http_upgraded_add(struct sq_http_request *req, sq__http_upgraded *u,
                           const sq__http_upgraded_ops *ops);
void sq__http_upgraded_remove(sq__http_upgraded *u);

/* Run fn(arg) first thing in sq_loop_free: for an object of a higher layer that belongs to
 * the loop without its user holding it (the loop's default HTTP client).  0 or -ENOMEM;
 * sq__loop_at_free_cancel removes it again (when the object is freed first). */
int sq__loop_at_free(sq_loop *loop, void (*fn)(void *), void *arg);
void sq__loop_at_free_cancel(sq_loop *loop, void (*fn)(void *), void *arg);

/* Work handed to another thread that comes back to the loop through
 * sq_add_callback_threadsafe (an executor job), listed on the loop from its hand-off to its
 * return.  sq_loop_free cancels the futures of those left and then waits for the ones still
 * running to come back, since their return touches the loop.  Loop thread only; add
 * refuses (SQ_ELOOPCLOSED) once the loop is being freed. */
typedef struct sq__remote {
    struct sq__remote *prev, *next;
    sq_future *fut; /* cancelled if the loop is freed first */
} sq__remote;
int sq__loop_remote_add(sq_loop *loop, sq__remote *r);
void sq__loop_remote_del(sq_loop *loop, sq__remote *r);

/* A monotonic clock in ns. */
uint64_t sq__mono_ns(void);

/* Tests that drive the clock by hand: sets the loop's time (forward) and fires what is due. */
void sq__timers_advance(sq_loop *loop, uint64_t now_ns);

static inline uint64_t sq__sec_to_ns(double s)
{
    if (!(s > 0)) return 0;
    if (s > 1e9) s = 1e9; /* about 31 years: "never" without overflowing */
    return (uint64_t)(s * 1e9 + 0.5);
}

#endif
