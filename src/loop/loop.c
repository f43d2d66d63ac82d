/* The event loop core: iteration, timers (a timing wheel), callbacks, thread-safe callbacks,
 * periodic callbacks and the slow-callback warning.  The backend (epoll.c) only waits. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static _Thread_local sq_loop *current_loop;
static _Thread_local unsigned tls_nloops; /* loops created on this thread and not yet freed */
static sq_loop *default_loop;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t sq__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SQ__NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void sq__fn_name(const void *fn, char *buf, size_t cap)
{
    Dl_info info;
    if (fn && dladdr(fn, &info)) {
        if (info.dli_sname && info.dli_saddr == fn) {
            snprintf(buf, cap, "%s", info.dli_sname);
            return;
        }
        if (info.dli_fname && info.dli_fbase) {
            /* a static function (or one not exported: link with -rdynamic, CMake's
             * ENABLE_EXPORTS): "module+0xoffset", for addr2line -e module 0xoffset */
            const char *base = strrchr(info.dli_fname, '/');
            snprintf(buf, cap, "%s+%#lx", base ? base + 1 : info.dli_fname,
                     (unsigned long)((const char *)fn - (const char *)info.dli_fbase));
            return;
        }
    }
    snprintf(buf, cap, "%p", fn);
}

void sq__slow_report(sq_loop *loop, uint64_t start_ns, uint64_t end_ns, const char *kind,
                     const void *fn)
{
    uint64_t took = end_ns - start_ns;
    const sq__coro_label *l = loop->slow_label;
    loop->slow_label = NULL;
    char name[256];
    if (l) {
        /* a coroutine serving a request: its method, route and handler */
        char fname[160] = "";
        if (l->fn) sq__fn_name(l->fn, fname, sizeof fname);
        snprintf(name, sizeof name, "%s %s%s%s%s", l->method ? l->method : "?",
                 l->pattern ? l->pattern : "(no route)", *fname ? " (" : "", fname,
                 *fname ? ")" : "");
    } else {
        sq__fn_name(fn, name, sizeof name);
    }
    sq_log(SQ_LOG_WARNING, "slow callback: %s%s%s held the loop for %.1f ms (threshold %.0f ms)",
           l ? "" : kind, l ? "" : " ", name, (double)took / 1e6, (double)loop->slow_ns / 1e6);
}

void sq__loop_forget_labels(sq_loop *loop, const sq__coro_label *from, const sq__coro_label *to)
{
    if (loop && loop->slow_label >= from && loop->slow_label < to) loop->slow_label = NULL;
}

/* --- callback ring ------------------------------------------------------------------------ */

static int cbq_push(sq__cbq *q, sq_callback_fn fn, void *arg)
{
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 64;
        sq__cb *n = malloc(ncap * sizeof *n);
        if (!n) return -ENOMEM;
        for (size_t i = 0; i < q->len; i++) n[i] = q->items[(q->head + i) & (q->cap - 1)];
        free(q->items);
        q->items = n;
        q->cap = ncap;
        q->head = 0;
    }
    q->items[(q->head + q->len) & (q->cap - 1)] = (sq__cb){fn, arg};
    q->len++;
    return 0;
}

static sq__cb cbq_pop(sq__cbq *q)
{
    sq__cb cb = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
    return cb;
}

int sq_add_callback(sq_loop *loop, sq_callback_fn fn, void *arg)
{
    if (loop->closed) return SQ_ELOOPCLOSED;
    return cbq_push(&loop->callbacks, fn, arg);
}

/* --- thread-safe callbacks ---------------------------------------------------------------- */

int sq_add_callback_threadsafe(sq_loop *loop, sq_callback_fn fn, void *arg)
{
    pthread_mutex_lock(&loop->ts_lock);
    if (loop->closed) { /* it would never run: the caller keeps what arg holds */
        pthread_mutex_unlock(&loop->ts_lock);
        return SQ_ELOOPCLOSED;
    }
    if (loop->ts_len == loop->ts_cap) {
        size_t ncap = loop->ts_cap ? loop->ts_cap * 2 : 64;
        sq__cb *n = realloc(loop->ts_items, ncap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&loop->ts_lock);
            return -ENOMEM;
        }
        loop->ts_items = n;
        loop->ts_cap = ncap;
    }
    loop->ts_items[loop->ts_len++] = (sq__cb){fn, arg};
    /* Only the first producer after a drain pays for the eventfd write.  It happens under the
     * lock: once the item is visible the loop may run it and be freed (an executor job's
     * completion often ends the program), so nothing may touch `loop` after the unlock. */
    if (!atomic_exchange_explicit(&loop->ts_signaled, true, memory_order_acq_rel)) {
        uint64_t one = 1;
        ssize_t r;
        do r = write(loop->wake_fd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&loop->ts_lock);
    return 0;
}

static bool ts_run_batch(sq_loop *loop)
{
    uint64_t v;
    ssize_t r;
    do r = read(loop->wake_fd, &v, sizeof v);
    while (r < 0 && errno == EINTR);
    atomic_store_explicit(&loop->ts_signaled, false, memory_order_release);
    /* Swap the batch out under the lock; run it without holding the lock.  One batch per
     * wake-up: callbacks queued meanwhile (even by this batch) signal the eventfd again and
     * run on the next iteration, so a callback that re-queues itself cannot starve IO and
     * timers.  Returns whether there was anything to run. */
    pthread_mutex_lock(&loop->ts_lock);
    sq__cb *items = loop->ts_items;
    size_t n = loop->ts_len;
    loop->ts_items = NULL;
    loop->ts_len = loop->ts_cap = 0;
    pthread_mutex_unlock(&loop->ts_lock);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = sq__slow_begin(loop);
        items[i].fn(items[i].arg);
        sq__slow_end(loop, t0, "threadsafe callback", (const void *)items[i].fn);
    }
    free(items);
    return n > 0;
}

static void wake_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    (void)ts_run_batch(loop);
}

/* --- loop lifetime ------------------------------------------------------------------------ */

static void call_fire(sq_loop *loop, sq_timer *t);
static void timers_free(sq_loop *loop);
static void slabs_free(sq_loop *loop);

struct sq_call {
    sq_timer timer; /* first: the timer's callback gets the call; timer.data is fn's arg */
    sq_callback_fn fn;
    sq_callback_fn dispose; /* frees what arg holds if the loop is freed first, or NULL */
};

sq_loop *sq_loop_new(const sq_loop_options *opts)
{
    sq__coro_recover(); /* so that a loop left by a longjmp is not kept current */
    sq_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->backend = &sq__backend_epoll;
    if (opts && opts->backend && strcmp(opts->backend, loop->backend->name) != 0) {
        free(loop);
        errno = ENOTSUP;
        return NULL;
    }
    double slow = opts && opts->slow_callback_warning != 0 ? opts->slow_callback_warning : 0.1;
    loop->slow_ns = slow > 0 ? sq__sec_to_ns(slow) : 0;
    loop->sig_pipe[0] = loop->sig_pipe[1] = -1;
    pthread_mutex_init(&loop->ts_lock, NULL);
    int err = loop->backend->init(loop);
    if (err < 0) goto fail;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        err = -errno;
        loop->backend->destroy(loop);
        goto fail;
    }
    sq_io_init(&loop->wake_io, loop->wake_fd, wake_cb, loop);
    if ((err = sq_io_start(loop, &loop->wake_io, SQ_READ)) < 0) {
        close(loop->wake_fd);
        loop->backend->destroy(loop);
        goto fail;
    }
    loop->now_ns = sq__mono_ns();
    loop->wheel_tick = loop->now_ns >> SQ__TICK_SHIFT;
    if (!current_loop) current_loop = loop;
    tls_nloops++;
    return loop;
fail:
    pthread_mutex_destroy(&loop->ts_lock);
    free(loop);
    errno = -err;
    return NULL;
}

/* One bounded pass for teardown: callbacks of both queues and ready coroutines, no IO and
 * no timers. */
static void teardown_pass(sq_loop *loop, bool coros)
{
    for (size_t n = loop->callbacks.len; n > 0 && loop->callbacks.len; n--) {
        sq__cb cb = cbq_pop(&loop->callbacks);
        cb.fn(cb.arg);
    }
    (void)ts_run_batch(loop);
    if (coros) sq__coro_run_ready(loop);
}

/* Rounds of teardown passes, each first cancelling what suspended coroutines await (so that
 * they return and free what they hold, as asyncio.run does), until nothing is left to run;
 * bounded, for cleanup code that awaits or callbacks that queue more. */
static void teardown_rounds(sq_loop *loop)
{
    for (int i = 0; i < 16; i++) {
        size_t woken = sq__coro_cancel_waits(loop);
        if (!woken && !loop->ready_head && !loop->callbacks.len &&
            !atomic_load_explicit(&loop->ts_signaled, memory_order_acquire))
            break;
        teardown_pass(loop, true);
    }
}

struct sq__at_free {
    struct sq__at_free *next;
    void (*fn)(void *);
    void *arg;
};

int sq__loop_at_free(sq_loop *loop, void (*fn)(void *), void *arg)
{
    if (loop->freeing) return -ESHUTDOWN;
    struct sq__at_free *h = malloc(sizeof *h);
    if (!h) return -ENOMEM;
    *h = (struct sq__at_free){loop->at_free, fn, arg};
    loop->at_free = h;
    return 0;
}

void sq__loop_at_free_cancel(sq_loop *loop, void (*fn)(void *), void *arg)
{
    for (struct sq__at_free **p = &loop->at_free; *p; p = &(*p)->next) {
        if ((*p)->fn == fn && (*p)->arg == arg) {
            struct sq__at_free *h = *p;
            *p = h->next;
            free(h);
            return;
        }
    }
}

int sq__loop_remote_add(sq_loop *loop, sq__remote *r)
{
    if (loop->freeing) return SQ_ELOOPCLOSED;
    r->prev = NULL;
    r->next = loop->remote;
    if (r->next) r->next->prev = r;
    loop->remote = r;
    return 0;
}

void sq__loop_remote_del(sq_loop *loop, sq__remote *r)
{
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        loop->remote = r->next;
    }
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* sq_loop_free: work still out on other threads (executor jobs) would come back to a freed
 * loop.  What has not started is cancelled (a queued job comes back at once); a job already
 * running cannot be stopped, so the free waits for it, as Python's asyncio.run waits for
 * its default executor, saying so once if that takes more than a second. */
static void remote_drain(sq_loop *loop)
{
    for (;;) { /* from the head each time: a cancel's callbacks may end other entries */
        sq__remote *r = loop->remote;
        while (r && sq_future_done(r->fut)) r = r->next;
        if (!r) break;
        sq_future_cancel(r->fut);
    }
    bool said = false;
    while (loop->remote) {
        struct pollfd p = {.fd = loop->wake_fd, .events = POLLIN};
        if (poll(&p, 1, 1000) == 0 && !said) {
            size_t n = 0;
            for (sq__remote *r = loop->remote; r; r = r->next) n++;
            sq_log(SQ_LOG_WARNING,
                   "sq_loop_free: waiting for %zu executor job(s) still running (a job "
                   "cannot be interrupted; it has to return)",
                   n);
            said = true;
        }
        ts_run_batch(loop);
    }
}

void sq_loop_free(sq_loop *loop)
{
    if (!loop) return;
    sq__coro_recover();
    if (loop->running || loop->in_pass) {
        sq_log(SQ_LOG_ERROR, "sq_loop_free: the loop is running (stop it and free it after "
                             "sq_loop_run returns); not freed");
        return;
    }
    /* What belongs to the loop in the layers above (its default HTTP client) goes first: its
     * pending work resolves through the queue drained below.  From here on nothing new may
     * attach itself (sq__loop_at_free refuses), so this ends. */
    loop->freeing = true;
    while (loop->at_free) {
        struct sq__at_free *h = loop->at_free;
        loop->at_free = h->next;
        h->fn(h->arg);
        free(h);
    }
    /* Run what is still queued so that nothing handed to the loop is silently lost (bounded:
     * a callback that re-queues itself forever must not hang the free). */
    for (int i = 0; i < 64 && (loop->callbacks.len || loop->ready_head); i++)
        sq_loop_run_once(loop, false);
    for (int i = 0; i < 64 && ts_run_batch(loop); i++) {
    }
    /* Coroutines still suspended: cancel what each awaits, a few rounds (teardown_rounds);
     * again for what the executor's last results queued.  Then the loop closes: callbacks
     * and timers are refused from here on (SQ_ELOOPCLOSED, NULL), so that the last pass runs
     * every callback accepted and nothing queued is lost with the loop (neither by cleanup
     * code nor by a dispose function below).  Coroutines that still do not finish are
     * discarded, their stacks unmapped. */
    loop->in_pass = true;
    loop->pass_block = false; /* teardown: no extra rounds of ready coroutines */
    teardown_rounds(loop);
    remote_drain(loop);
    teardown_rounds(loop);
    pthread_mutex_lock(&loop->ts_lock);
    loop->closed = true;
    pthread_mutex_unlock(&loop->ts_lock);
    teardown_pass(loop, false);
    sq__coro_discard_all(loop);
    loop->in_pass = false;
    sq__signal_loop_closed(loop);
    sq_io_stop(loop, &loop->wake_io);
    close(loop->wake_fd);
    loop->backend->destroy(loop);
    timers_free(loop); /* and the pending calls, whose handles belong to the loop */
    free(loop->callbacks.items);
    free(loop->ts_items);
    slabs_free(loop); /* every call handle, pooled or still pending, and the 1 KiB blocks */
    sq__future_pool_trim(loop, 0);
    pthread_mutex_destroy(&loop->ts_lock);
    if (current_loop == loop) current_loop = NULL;
    pthread_mutex_lock(&default_lock);
    if (default_loop == loop) default_loop = NULL;
    pthread_mutex_unlock(&default_lock);
    free(loop);
    /* The thread's last loop: its idle coroutine stacks have nobody left to serve. */
    if (tls_nloops > 0 && --tls_nloops == 0) sq__coro_pool_trim(0, 0);
}

void sq__loop_abandoned(sq_loop *loop)
{
    /* The jump skipped the ends of sq_loop_run_until and sq_loop_run_once, and maybe the
     * rest of a batch of ready coroutines: they go back to the ready queue. */
    sq_coro *rest = loop->run_list;
    loop->run_list = NULL;
    loop->in_batch = false;
    loop->ret_from = NULL;
    loop->asan_handoff = false;
    sq__coro_requeue(loop, rest);
    loop->running = false;
    loop->in_pass = false;
    loop->stop = false;
    if (current_loop == loop) current_loop = NULL;
}

sq_loop *sq_loop_default(void)
{
    pthread_mutex_lock(&default_lock);
    if (!default_loop) default_loop = sq_loop_new(NULL);
    sq_loop *l = default_loop;
    pthread_mutex_unlock(&default_lock);
    if (l && !current_loop) current_loop = l;
    return l;
}

sq_loop *sq_loop_current(void)
{
    return current_loop;
}
void sq_loop_make_current(sq_loop *loop)
{
    current_loop = loop;
}
bool sq_loop_is_running(const sq_loop *loop)
{
    return loop->running || loop->in_pass; /* in_pass: inside sq_loop_run_once as well */
}
SQ__HOT double sq_loop_time(const sq_loop *loop)
{
    return (double)loop->now_ns / 1e9;
}
SQ__HOT uint64_t sq_loop_now_ns(const sq_loop *loop)
{
    return loop->now_ns;
}
void sq_loop_update_time(sq_loop *loop)
{
    loop->now_ns = sq__mono_ns();
}
const char *sq_loop_backend_name(const sq_loop *loop)
{
    return loop->backend->name;
}

void sq_loop_set_slow_callback_warning(sq_loop *loop, double seconds)
{
    loop->slow_ns = seconds > 0 ? sq__sec_to_ns(seconds) : 0;
}

void sq_loop_stop(sq_loop *loop)
{
    loop->stop = true;
}

/* --- fd watchers -------------------------------------------------------------------------- */

void sq_io_init(sq_io *io, int fd, sq_io_cb cb, void *data)
{
    io->fd = fd;
    io->events = 0;
    io->cb = cb;
    io->data = data;
    io->sq__registered = 0;
}

int sq_io_start(sq_loop *loop, sq_io *io, unsigned events)
{
    events &= SQ_READ | SQ_WRITE;
    if (!events) return sq_io_stop(loop, io);
    io->events = events;
    if (io->sq__registered == events) return 0;
    int r = loop->backend->ctl(loop, io, events);
    if (r == 0)
        io->sq__registered = events;
    else
        io->events = io->sq__registered; /* refused: the interest is what the kernel holds */
    return r;
}

int sq__io_rearm(sq_loop *loop, sq_io *io, unsigned events)
{
    events &= SQ_READ | SQ_WRITE;
    if (!events) return sq_io_stop(loop, io);
    io->events = events;
    int r = loop->backend->ctl(loop, io, events); /* a stale MOD falls back to ADD */
    if (r == 0)
        io->sq__registered = events;
    else
        io->events = io->sq__registered;
    return r;
}

void sq__io_forget(sq_loop *loop, sq_io *io)
{
    io->events = 0;
    if (!io->sq__registered) return;
    io->sq__registered = 0;
    loop->backend->invalidate(loop, io);
}

int sq_io_stop(sq_loop *loop, sq_io *io)
{
    io->events = 0;
    if (!io->sq__registered) return 0;
    int r = loop->backend->ctl(loop, io, 0);
    io->sq__registered = 0;
    loop->backend->invalidate(loop, io);
    return r;
}

void sq__io_dispatch(sq_loop *loop, sq_io *io, unsigned events)
{
    sq__io_dispatch_at(loop, io, events, 0);
}

SQ__HOT uint64_t sq__io_dispatch_at(sq_loop *loop, sq_io *io, unsigned events, uint64_t t0)
{
    sq_io_cb cb = io->cb; /* the callback may free the watcher's memory */
    if (!loop->slow_ns) {
        cb(loop, io, events);
        return 0;
    }
    loop->slow_label = NULL;
    if (!t0) t0 = sq__coarse_ns();
    cb(loop, io, events);
    if (!loop->slow_ns) return 0; /* the callback turned the check off */
    return sq__slow_check_at(loop, t0, sq__coarse_ns(), "fd watcher", (const void *)cb);
}

/* --- timers: a wheel for the later ones, a sorted run and a heap for those due ----------- *
 *
 * A timer due in a tick (2^20 ns, about a millisecond) still ahead sits in a slot of a
 * hierarchical timing wheel: arming and cancelling it costs the same whatever the number of
 * timers.  Level L's 64 slots each cover 64^L ticks: a timer goes to the level of the highest
 * 6-bit group in which its tick differs from wheel_tick, so level 0 holds the ticks of the
 * current group of 64, one per slot.  When wheel_tick reaches the start of a higher slot,
 * that slot's timers are placed again, lower; when it reaches a level-0 slot, its timers are
 * sorted by deadline into the due run, which fires from its front.  The wheel decides only
 * when a timer becomes due, never the order in which timers fire.
 *
 * A slot is an unordered array of {deadline, timer} entries; a cancelled timer's place takes
 * the last entry.  The array is kept in chunks of SQ__SLOT_CHUNK entries, carved from the
 * loop's slabs and given back to the loop (not to malloc) when the slot empties: a slot grows
 * without copying what it holds, and a burst of timers reuses the memory of the last one
 * instead of faulting in fresh pages (a million timers: 16 MB of entries, and 5 MB more
 * cascading; in a virtual machine each first touch of a page exits to the hypervisor).
 * Placing, cascading and sorting read only the arrays, so a timer's memory is written its new
 * place once per move and read when it fires; only timers with equal deadlines are read to be
 * put in arming order, and they are about to fire anyway.
 *
 * Timers armed for a tick already reached (due now, or in the past) go to a small 4-ary
 * min-heap keyed by (deadline, arming order); the next timer to fire is the lesser of the
 * heap's top and the run's front.
 *
 * A timer's heap_index is its place: (bucket << SQ__WHERE_SHIFT) | index, bucket 0 for the
 * heap, 1 + level * 64 + slot for a wheel slot, DUE_BUCKET for the run. */
#define HEAP_D        4
#define DUE_PREFETCH  16 /* timers of the due run fetched ahead of firing */
#define CALL_PREFETCH 8  /* pooled sq_call handles fetched ahead of their reuse */
#define SLAB_MIN      1024       /* slab_carve's first slab, at least */
#define SLAB_HUGE     (2u << 20) /* a transparent huge page */
#define SLAB_HEAD     16         /* the link to the next slab, and the items' alignment */
#define WHERE_MASK    ((1ull << SQ__WHERE_SHIFT) - 1)
#define DUE_BUCKET    (1 + SQ__WHEEL_LEVELS * 64)

/* Fetch a timer's memory for writing, the whole of an sq_call around it if it is one (a
 * prefetch never faults, so the second line is safe to ask for even when it is not). */
static inline void prefetch_timer(const sq_timer *t)
{
    __builtin_prefetch(t, 1);
    __builtin_prefetch((const char *)t + sizeof(sq_call) - 1, 1);
}

static inline void where_set(sq_timer *t, size_t bucket, size_t i)
{
    t->heap_index = (bucket << SQ__WHERE_SHIFT) | i;
}

static inline bool ent_less(const struct sq__heap_ent *a, const struct sq__heap_ent *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->t->seq < b->t->seq);
}

static bool grow(struct sq__heap_ent **ents, size_t *cap, size_t want)
{
    if (want <= *cap) return true;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < want) ncap *= 2;
    struct sq__heap_ent *n = ncap <= WHERE_MASK ? realloc(*ents, ncap * sizeof *n) : NULL;
    if (!n) return false;
    *ents = n;
    *cap = ncap;
    return true;
}

/* Entry i of a wheel slot. */
static inline struct sq__heap_ent *slot_ent(const struct sq__wheel_slot *w, uint32_t i)
{
    return &w->chunks[i / SQ__SLOT_CHUNK][i % SQ__SLOT_CHUNK];
}

/* A slab's first SLAB_HEAD bytes: the next slab, the items carved from it, which carver's it
 * is (SLAB_CALLS or SLAB_BLOCKS) and its size in KiB. */
enum { SLAB_CALLS, SLAB_BLOCKS };
struct slab_head {
    void *next;
    uint32_t carved;
    uint16_t kind, kib;
};
_Static_assert(sizeof(struct slab_head) == SLAB_HEAD, "the slab head is SLAB_HEAD bytes");

static void *slab_carve(sq_loop *loop, struct sq__carver *cv, size_t size);

/* The loop's 1 KiB blocks: wheel slot chunks and call pool blocks.  One given back earlier,
 * else a new one; given back, a block stays the loop's until a trim (sq__loop_slabs_trim)
 * frees its slab or the loop is freed. */
#define BLOCK_SIZE (SQ__SLOT_CHUNK * sizeof(struct sq__heap_ent))

static void *block_get(sq_loop *loop)
{
    void *b = loop->block_free;
    if (!b) return slab_carve(loop, &loop->block_carver, BLOCK_SIZE);
    loop->block_free = *(void **)b;
    return b;
}

static inline void block_put(sq_loop *loop, void *b)
{
    *(void **)b = loop->block_free;
    loop->block_free = b;
}

/* Room for SQ__SLOT_CHUNK more entries in a full slot. */
static int slot_add_chunk(sq_loop *loop, struct sq__wheel_slot *w)
{
    if (w->nchunks >= (UINT32_MAX / SQ__SLOT_CHUNK) - 1) return -ENOMEM;
    if (w->nchunks == w->chunks_cap) {
        uint32_t ncap = w->chunks_cap ? w->chunks_cap * 2 : 4;
        struct sq__heap_ent **n = realloc(w->chunks, ncap * sizeof *n);
        if (!n) return -ENOMEM;
        w->chunks = n;
        w->chunks_cap = ncap;
    }
    struct sq__heap_ent *c = block_get(loop);
    if (!c) return -ENOMEM;
    w->chunks[w->nchunks++] = c;
    return 0;
}

static void timer_dropped(sq_timer *t)
{
    t->heap_index = SIZE_MAX;
    sq_log(SQ_LOG_ERROR, "timer: out of memory, timer dropped");
}

/* The heap: four children per node halve the depth of a binary heap, and a node's children
 * sit side by side with their deadlines, so a sift compares within a cache line per level;
 * only equal deadlines look at the timers' arming order. */
static inline void heap_put(sq_loop *loop, size_t i, struct sq__heap_ent e)
{
    loop->heap[i] = e;
    e.t->heap_index = i;
}

static void heap_up(sq_loop *loop, size_t i, struct sq__heap_ent e)
{
    while (i > 0) {
        size_t p = (i - 1) / HEAP_D;
        if (!ent_less(&e, &loop->heap[p])) break;
        heap_put(loop, i, loop->heap[p]);
        i = p;
    }
    heap_put(loop, i, e);
}

static void heap_down(sq_loop *loop, size_t i, struct sq__heap_ent e)
{
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = HEAP_D * i + 1;
        if (c >= n) break;
        size_t end = c + HEAP_D < n ? c + HEAP_D : n, m = c;
        for (size_t k = c + 1; k < end; k++)
            if (ent_less(&loop->heap[k], &loop->heap[m])) m = k;
        if (!ent_less(&loop->heap[m], &e)) break;
        heap_put(loop, i, loop->heap[m]);
        i = m;
    }
    heap_put(loop, i, e);
}

static void heap_remove(sq_loop *loop, sq_timer *t)
{
    size_t i = t->heap_index;
    struct sq__heap_ent last = loop->heap[--loop->heap_len];
    t->heap_index = SIZE_MAX;
    if (last.t == t) return;
    if (i > 0 && ent_less(&last, &loop->heap[(i - 1) / HEAP_D]))
        heap_up(loop, i, last);
    else
        heap_down(loop, i, last);
}

static int heap_insert(sq_loop *loop, struct sq__heap_ent e)
{
    if (!grow(&loop->heap, &loop->heap_cap, loop->heap_len + 1)) return -ENOMEM;
    heap_up(loop, loop->heap_len++, e);
    return 0;
}

/* Appends an entry to its slot, relative to the current wheel_tick (its tick is not before
 * it): the level of the highest 6-bit group in which the two differ. */
static int wheel_put(sq_loop *loop, struct sq__heap_ent e)
{
    uint64_t tick = e.deadline >> SQ__TICK_SHIFT, diff = tick ^ loop->wheel_tick;
    unsigned level = diff ? (unsigned)(63 - __builtin_clzll(diff)) / 6 : 0;
    unsigned slot = (unsigned)(tick >> (6 * level)) & 63, k = level * 64 + slot;
    struct sq__wheel_slot *w = &loop->wheel[k];
    if (w->len == w->nchunks * SQ__SLOT_CHUNK && slot_add_chunk(loop, w) < 0) return -ENOMEM;
    where_set(e.t, 1 + k, w->len);
    *slot_ent(w, w->len++) = e;
    loop->wheel_map[level] |= 1ull << slot;
    return 0;
}

/* The slot's chunks go back to the loop but its first, which it keeps for the next timer (a
 * timer armed and cancelled alone takes no chunk); after a burst (10,000 connections' header
 * timeouts) the first goes too, with the array of chunk pointers. */
static void slot_clear(sq_loop *loop, unsigned k)
{
    struct sq__wheel_slot *w = &loop->wheel[k];
    bool burst = w->chunks_cap > 64;
    w->len = 0;
    for (uint32_t c = burst ? 0 : 1; c < w->nchunks; c++) block_put(loop, w->chunks[c]);
    if (burst) {
        free(w->chunks);
        w->chunks = NULL;
        w->chunks_cap = w->nchunks = 0;
    } else if (w->nchunks > 1) {
        w->nchunks = 1;
    }
    loop->wheel_map[k / 64] &= ~(1ull << (k % 64));
}

static void wheel_remove(sq_loop *loop, sq_timer *t)
{
    unsigned k = (unsigned)(t->heap_index >> SQ__WHERE_SHIFT) - 1;
    uint32_t i = (uint32_t)(t->heap_index & WHERE_MASK);
    struct sq__wheel_slot *w = &loop->wheel[k];
    struct sq__heap_ent last = *slot_ent(w, --w->len);
    if (i != w->len) {
        *slot_ent(w, i) = last;
        where_set(last.t, 1 + k, i);
    }
    t->heap_index = SIZE_MAX;
    loop->wheel_count--;
    if (!w->len) slot_clear(loop, k);
}

/* The start of the first slot that needs attention.  Level 0 slots are the ticks of
 * wheel_tick's group of 64 from wheel_tick on; level L slots start in later groups, so the
 * first level with a slot set holds the earliest.  A higher slot that starts at wheel_tick
 * is emptied as soon as wheel_tick gets there (wheel_cascade), so only the later ones count. */
static bool wheel_next_event(const sq_loop *loop, uint64_t *tick)
{
    if (!loop->wheel_count) return false;
    uint64_t wt = loop->wheel_tick;
    for (unsigned level = 0; level < SQ__WHEEL_LEVELS; level++) {
        unsigned shift = 6 * level, cur = (unsigned)(wt >> shift) & 63;
        unsigned from = cur + (level > 0);
        uint64_t bits = from < 64 ? loop->wheel_map[level] & (~0ull << from) : 0;
        if (bits) {
            uint64_t group = (wt >> (shift + 6)) << (shift + 6);
            *tick = group | ((uint64_t)__builtin_ctzll(bits) << shift);
            return true;
        }
    }
    return false; /* not reached: wheel_count says a slot is set */
}

/* Empties the higher slots that start at wheel_tick into the lower ones, highest first (a
 * timer never lands in the slot being emptied).  Done whenever wheel_tick moves, so that no
 * slot above level 0 holds wheel_tick (wheel_next_event counts on it). */
static void wheel_cascade(sq_loop *loop)
{
    uint64_t wt = loop->wheel_tick;
    for (unsigned level = SQ__WHEEL_LEVELS - 1; level > 0; level--) {
        if (wt & ((1ull << (6 * level)) - 1)) continue;
        unsigned slot = (unsigned)(wt >> (6 * level)) & 63, k = level * 64 + slot;
        if (!(loop->wheel_map[level] & (1ull << slot))) continue;
        struct sq__wheel_slot *w = &loop->wheel[k];
        for (uint32_t i = 0; i < w->len; i++) {
            struct sq__heap_ent e = *slot_ent(w, i);
            if (wheel_put(loop, e) < 0) {
                loop->wheel_count--;
                timer_dropped(e.t);
            }
        }
        slot_clear(loop, k);
    }
}

/* A level-0 slot becomes the due run: its entries in order of deadline, and of arming among
 * equal deadlines.  All share one tick, so only the low SQ__TICK_SHIFT bits of the deadline
 * differ: the slot's chunks are copied into the run, two counting passes of 10 bits order a
 * large one by deadline; then an insertion sort by (deadline, arming order) finishes, which
 * for that output only moves equal deadlines (the only entries whose timers it reads) and
 * for a small slot does it all. */
static void due_fill(sq_loop *loop, struct sq__wheel_slot *w)
{
    size_t n = w->len;
    loop->wheel_count -= n;
    loop->due_pos = loop->due_len = 0;
    if (!grow(&loop->due, &loop->due_cap, n)) {
        for (uint32_t i = 0; i < n; i++) { /* no memory for the run: the heap, one by one */
            struct sq__heap_ent e = *slot_ent(w, i);
            if (heap_insert(loop, e) < 0) timer_dropped(e.t);
        }
        return;
    }
    struct sq__heap_ent *out = loop->due;
    for (size_t i = 0; i < n; i += SQ__SLOT_CHUNK) {
        size_t m = n - i < SQ__SLOT_CHUNK ? n - i : SQ__SLOT_CHUNK;
        memcpy(out + i, w->chunks[i / SQ__SLOT_CHUNK], m * sizeof *out);
    }
    if (n > 32 && grow(&loop->due_tmp, &loop->due_tmp_cap, n)) {
        _Static_assert(SQ__TICK_SHIFT <= 20, "two 10-bit passes cover a tick");
        struct sq__heap_ent *src = out, *dst = loop->due_tmp;
        for (unsigned pass = 0; pass < 2; pass++) {
            uint32_t count[1025] = {0};
            unsigned shift = 10 * pass;
            for (size_t i = 0; i < n; i++) count[((src[i].deadline >> shift) & 1023) + 1]++;
            for (unsigned b = 0; b < 1024; b++) count[b + 1] += count[b];
            for (size_t i = 0; i < n; i++) dst[count[(src[i].deadline >> shift) & 1023]++] = src[i];
            src = dst;
            dst = out;
        }
        /* pass 0 went run -> tmp, pass 1 tmp -> run */
    }
    for (size_t i = 1; i < n; i++) {
        struct sq__heap_ent e = out[i];
        size_t j = i;
        for (; j > 0 && ent_less(&e, &out[j - 1]); j--) out[j] = out[j - 1];
        out[j] = e;
    }
    for (size_t i = 0; i < n; i++) where_set(out[i].t, DUE_BUCKET, i);
    loop->due_len = n;
}

/* One step of the wheel towards `target`: if the next event is not after target, wheel_tick
 * goes there, the slots starting there are emptied (the level-0 one into the due run), and it
 * passes on; else wheel_tick becomes target + 1. */
static void wheel_step(sq_loop *loop, uint64_t target)
{
    uint64_t ev;
    if (!wheel_next_event(loop, &ev) || ev > target) {
        loop->wheel_tick = target + 1;
        wheel_cascade(loop);
        return;
    }
    loop->wheel_tick = ev;
    wheel_cascade(loop);
    unsigned slot = (unsigned)ev & 63;
    if (loop->wheel_map[0] & (1ull << slot)) {
        due_fill(loop, &loop->wheel[slot]);
        slot_clear(loop, slot);
    }
    loop->wheel_tick = ev + 1;
    wheel_cascade(loop);
}

static void timer_unlink(sq_loop *loop, sq_timer *t)
{
    if (t->heap_index == SIZE_MAX) return;
    size_t bucket = t->heap_index >> SQ__WHERE_SHIFT;
    if (bucket == 0) {
        heap_remove(loop, t);
    } else if (bucket == DUE_BUCKET) {
        loop->due[t->heap_index & WHERE_MASK].t = NULL;
        t->heap_index = SIZE_MAX;
    } else {
        wheel_remove(loop, t);
    }
}

static void timer_link(sq_loop *loop, sq_timer *t)
{
    if (loop->closed) { /* armed during sq_loop_free's last round: it would never fire */
        t->heap_index = SIZE_MAX;
        return;
    }
    t->seq = loop->timer_seq++;
    struct sq__heap_ent e = {t->deadline, t};
    if (e.deadline >> SQ__TICK_SHIFT >= loop->wheel_tick) {
        if (wheel_put(loop, e) < 0)
            timer_dropped(t);
        else
            loop->wheel_count++;
    } else if (heap_insert(loop, e) < 0) {
        timer_dropped(t);
    }
}

/* The next timer to fire of those already due or reached: the lesser of the run's front and
 * the heap's top; NULL if both are empty. */
static struct sq__heap_ent *timer_first(sq_loop *loop)
{
    while (loop->due_pos < loop->due_len && !loop->due[loop->due_pos].t) loop->due_pos++;
    struct sq__heap_ent *d = loop->due_pos < loop->due_len ? &loop->due[loop->due_pos] : NULL;
    struct sq__heap_ent *h = loop->heap_len ? &loop->heap[0] : NULL;
    if (!d) return h;
    if (!h) return d;
    return ent_less(h, d) ? h : d;
}

void sq_timer_init(sq_loop *loop, sq_timer *t, sq_timer_cb cb, void *data)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->cb = cb;
    t->data = data;
    t->heap_index = SIZE_MAX;
}

static void timer_arm(sq_timer *t, uint64_t deadline)
{
    sq_loop *loop = t->loop;
    timer_unlink(loop, t);
    t->deadline = deadline;
    timer_link(loop, t);
}

void sq_timer_start(sq_timer *t, double delay, double repeat)
{
    t->repeat = sq__sec_to_ns(repeat);
    timer_arm(t, t->loop->now_ns + sq__sec_to_ns(delay));
}

void sq_timer_start_at(sq_timer *t, double when)
{
    t->repeat = 0;
    uint64_t d = sq__sec_to_ns(when); /* clamped: a huge `when` must not overflow */
    timer_arm(t, d);
}

SQ__HOT void sq_timer_stop(sq_timer *t)
{
    timer_unlink(t->loop, t);
    t->repeat = 0;
}

SQ__HOT bool sq_timer_active(const sq_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

SQ__HOT static void run_timers(sq_loop *loop)
{
    uint64_t limit = loop->timer_seq; /* timers armed while firing wait for the next pass */
    uint64_t now_tick = loop->now_ns >> SQ__TICK_SHIFT;
    for (;;) {
        /* The wheel is brought forward one tick with timers at a time, and each tick's due
         * timers fire before the next tick's are sorted: a timer of a later tick is due later,
         * so the order is the same, and the run holds one tick's timers. */
        struct sq__heap_ent *first = timer_first(loop);
        if (!first || first->deadline > loop->now_ns) {
            /* with a timer reached but not yet due, no later tick is due either */
            if (first || loop->wheel_tick > now_tick) break;
            wheel_step(loop, now_tick);
            continue;
        }
        sq_timer *t = first->t;
        if (t->seq >= limit) break;
        if (first == loop->heap) {
            heap_remove(loop, t);
        } else {
            loop->due_pos++;
            t->heap_index = SIZE_MAX;
            /* a later one's memory is fetched while this one's callback runs: far enough
             * ahead that the fetch is done by the time it fires */
            size_t ahead = loop->due_pos + DUE_PREFETCH;
            if (ahead < loop->due_len && loop->due[ahead].t) prefetch_timer(loop->due[ahead].t);
        }
        if (t->repeat) {
            uint64_t next = t->deadline + t->repeat;
            if (next <= loop->now_ns) next = loop->now_ns + t->repeat;
            t->deadline = next;
            timer_link(loop, t);
        }
        uint64_t t0 = sq__slow_begin(loop);
        sq_timer_cb cb = t->cb; /* the callback may free the timer's memory */
        /* sq_call_later: the warning names the caller's function, not call_fire */
        bool call = cb == call_fire;
        const void *who = call ? (const void *)((sq_call *)t)->fn : (const void *)cb;
        cb(loop, t);
        sq__slow_end(loop, t0, call ? "call_later callback" : "timer", who);
    }
    if (loop->due_pos == loop->due_len) loop->due_pos = loop->due_len = 0;
}

/* For tests that drive the clock by hand: the loop's time becomes now_ns (later than it
 * was) and what is due fires, as in a pass. */
void sq__timers_advance(sq_loop *loop, uint64_t now_ns)
{
    loop->now_ns = now_ns;
    run_timers(loop);
}

/* Loop teardown: every timer left is made inactive first (a dispose function may stop
 * another), then the pending calls, which belong to the loop, are freed; a call whose argument
 * holds references (a sleep, a timeout) releases them through its dispose function. */
static void timer_forget(sq_timer *t, sq_timer **calls)
{
    if (!t) return; /* a cancelled timer's place in the due run */
    t->heap_index = SIZE_MAX;
    if (t->cb == call_fire) {
        /* Chained through seq, which nothing touches from here on; no callback marks it as
         * torn down for sq_call_cancel (a dispose function may cancel another call). */
        t->cb = NULL;
        t->seq = (uint64_t)(uintptr_t)*calls;
        *calls = t;
    }
}

static void timers_forget(struct sq__heap_ent *ents, size_t from, size_t n, sq_timer **calls)
{
    for (size_t i = from; i < n; i++) timer_forget(ents[i].t, calls);
    free(ents);
}

static void timers_free(sq_loop *loop)
{
    sq_timer *calls = NULL;
    timers_forget(loop->heap, 0, loop->heap_len, &calls);
    timers_forget(loop->due, loop->due_pos, loop->due_len, &calls);
    for (size_t k = 0; k < SQ__WHEEL_LEVELS * 64; k++) {
        struct sq__wheel_slot *w = &loop->wheel[k];
        for (uint32_t i = 0; i < w->len; i++) timer_forget(slot_ent(w, i)->t, &calls);
        free(w->chunks); /* the chunks are the slabs', freed with the loop (slabs_free) */
    }
    free(loop->due_tmp);
    loop->heap = loop->due = loop->due_tmp = NULL;
    loop->heap_len = loop->heap_cap = loop->due_pos = loop->due_len = 0;
    loop->due_cap = loop->due_tmp_cap = loop->wheel_count = 0;
    memset(loop->wheel, 0, sizeof loop->wheel);
    memset(loop->wheel_map, 0, sizeof loop->wheel_map);
    while (calls) {
        sq_call *c = (sq_call *)calls;
        calls = (sq_timer *)(uintptr_t)calls->seq;
        if (c->dispose) c->dispose(c->timer.data);
        /* the handle's memory is its slab's, freed with the loop (slabs_free) */
    }
}

/* --- one-shot calls (Tornado's call_later) ---------------------------------------------- */

/* Call handles (and the loop's 1 KiB blocks) are carved from slabs that the loop owns and
 * frees with it, or earlier when a trim finds every item of a slab free
 * (sq__loop_slabs_trim); a handle is never freed on its own (a released one goes to the
 * pool).  The slabs double from 1 KiB to 2 MiB; from there each is 2 MiB on a 2 MiB
 * boundary and asks for a transparent huge page, so that a loop with a million pending calls
 * faults its 72 MB of handles in 36 times rather than 18,000 (in a virtual machine each
 * fault is an exit to the hypervisor), and the TLB covers them when they fire in deadline
 * order, scattered.
 *
 * slab_carve: `size` bytes (at most a few KiB, a multiple of 8) from cv's current slab, or
 * from a new one twice the size of the last, for at least eight items, up to SLAB_HUGE. */
static void *slab_carve(sq_loop *loop, struct sq__carver *cv, size_t size)
{
    if ((size_t)(cv->end - cv->cur) < size) {
        size_t ssize = cv->next_size ? cv->next_size : SLAB_MIN;
        while (ssize < SLAB_HUGE && ssize < SLAB_HEAD + 8 * size) ssize *= 2;
        void *slab;
        if (ssize >= SLAB_HUGE) {
            ssize = SLAB_HUGE;
            slab = aligned_alloc(SLAB_HUGE, ssize);
            if (slab) (void)madvise(slab, ssize, MADV_HUGEPAGE); /* a hint: fine if refused */
        } else {
            slab = malloc(ssize);
        }
        if (!slab) return NULL;
        struct slab_head *h = slab;
        h->next = loop->slabs;
        h->carved = 0;
        h->kind = cv == &loop->call_carver ? SLAB_CALLS : SLAB_BLOCKS;
        h->kib = (uint16_t)(ssize >> 10);
        loop->slabs = slab;
        cv->slab = slab;
        cv->cur = (char *)slab + SLAB_HEAD;
        cv->end = (char *)slab + ssize;
        cv->next_size = ssize * 2;
    }
    void *p = cv->cur;
    cv->cur += size;
    ((struct slab_head *)cv->slab)->carved++;
    return p;
}

/* Every slab, and with them what lives in them: call handles, the free blocks, the pool. */
static void slabs_free(sq_loop *loop)
{
    for (void *s = loop->slabs, *next; s; s = next) {
        next = *(void **)s;
        free(s);
    }
    loop->slabs = NULL;
    loop->call_carver = loop->block_carver = (struct sq__carver){0};
    loop->block_free = NULL;
    loop->call_pool = NULL;
    loop->call_pool_top = 0;
}

/* The pool of released handles: a stack of blocks, each the link to the block under it and
 * POOL_BLOCK handles; the top one holds call_pool_top of them (while others are under it,
 * only the top may be empty). */
#define POOL_BLOCK (BLOCK_SIZE / sizeof(sq_call *) - 1)
struct sq__pool_block {
    struct sq__pool_block *under;
    sq_call *h[POOL_BLOCK];
};
_Static_assert(sizeof(struct sq__pool_block) == BLOCK_SIZE, "a pool block is one block");

static void call_release(sq_loop *loop, sq_call *c)
{
    if (!loop->call_pool || loop->call_pool_top == POOL_BLOCK) {
        struct sq__pool_block *b = block_get(loop);
        if (!b)
            return; /* the handle stays unused in its slab until the loop is freed (it
                       also keeps that slab from being trimmed) */
        b->under = loop->call_pool;
        loop->call_pool = b;
        loop->call_pool_top = 0;
    }
    loop->call_pool->h[loop->call_pool_top++] = c;
}

/* A released handle, or NULL; the one a later call takes is fetched meanwhile (pooled handles
 * are scattered: they come back in the order their calls fired). */
static inline sq_call *call_pooled(sq_loop *loop)
{
    struct sq__pool_block *b = loop->call_pool;
    if (!b) return NULL;
    if (!loop->call_pool_top) {
        if (!b->under) return NULL;
        loop->call_pool = b->under;
        block_put(loop, b);
        b = loop->call_pool;
        loop->call_pool_top = POOL_BLOCK;
    }
    size_t top = --loop->call_pool_top;
    if (top >= CALL_PREFETCH)
        prefetch_timer(&b->h[top - CALL_PREFETCH]->timer);
    else if (b->under)
        prefetch_timer(&b->under->h[POOL_BLOCK - CALL_PREFETCH + top]->timer);
    return b->h[top];
}

static void call_fire(sq_loop *loop, sq_timer *t)
{
    sq_call *c = (sq_call *)t;
    sq_callback_fn fn = c->fn;
    void *arg = c->timer.data;
    call_release(loop, c); /* the handle dies before the callback runs */
    fn(arg);
}

static sq_call *call_new(sq_loop *loop, sq_callback_fn fn, void *arg)
{
    if (loop->closed) {
        errno = ESHUTDOWN;
        return NULL;
    }
    sq_call *c = call_pooled(loop);
    if (!c && !(c = slab_carve(loop, &loop->call_carver, sizeof *c))) return NULL;
    sq_timer_init(loop, &c->timer, call_fire, arg);
    c->fn = fn;
    c->dispose = NULL;
    return c;
}

/* --- giving slabs back after a burst ---------------------------------------------------- */

/* A slab during the trim: its head, its items found free, whether it goes. */
struct slab_ref {
    struct slab_head *h;
    uint32_t nfree;
    bool gone;
};

static int slab_ref_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct slab_ref *)a)->h;
    uintptr_t y = (uintptr_t)((const struct slab_ref *)b)->h;
    return x < y ? -1 : x > y;
}

/* The slab an item was carved from: the last one starting at or below it (refs sorted). */
static struct slab_ref *slab_of(struct slab_ref *refs, size_t n, const void *item)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)refs[mid].h <= (uintptr_t)item)
            lo = mid;
        else
            hi = mid;
    }
    return &refs[lo];
}

/* The handles a block of the call pool holds: call_pool_top in the top one, full below. */
static size_t pool_block_len(const sq_loop *loop, const struct sq__pool_block *b)
{
    return b == loop->call_pool ? loop->call_pool_top : POOL_BLOCK;
}

/* Mark the slabs of `kind` whose every item was found free; true if any is. */
static bool slabs_mark(struct slab_ref *refs, size_t n, unsigned kind)
{
    bool any = false;
    for (size_t i = 0; i < n; i++)
        if (refs[i].h->kind == kind && refs[i].nfree == refs[i].h->carved)
            any = refs[i].gone = true;
    return any;
}

/* Count the free blocks into their slabs. */
static void blocks_count(sq_loop *loop, struct slab_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (refs[i].h->kind == SLAB_BLOCKS) refs[i].nfree = 0;
    for (void *b = loop->block_free; b; b = *(void **)b) slab_of(refs, n, b)->nfree++;
}

/* Order the free blocks: first those of slabs that stay whatever happens (some block of
 * theirs is in use), then the others, so that what takes blocks next leaves those alone. */
static void blocks_order(sq_loop *loop, struct slab_ref *refs, size_t n)
{
    void *lists[2] = {NULL, NULL}, **tails[2] = {&lists[0], &lists[1]};
    for (void *b = loop->block_free, *next; b; b = next) {
        next = *(void **)b;
        struct slab_ref *r = slab_of(refs, n, b);
        int k = r->nfree == r->h->carved; /* 1: the slab may go */
        *tails[k] = b;
        tails[k] = (void **)b;
    }
    *tails[1] = NULL;
    *tails[0] = lists[1];
    loop->block_free = lists[0];
}

/* An entry array cut to `len` entries (64 at least) when it has room for more than twice
 * that; kept as it is if realloc fails. */
static void ents_shrink(struct sq__heap_ent **ents, size_t *cap, size_t len)
{
    size_t want = len > 64 ? len : 64;
    if (*cap <= 2 * want) return;
    struct sq__heap_ent *n = realloc(*ents, want * sizeof *n);
    if (!n) return;
    *ents = n;
    *cap = want;
}

/* After a burst the loop's slabs hold the handles and blocks of every timer it had at once
 * (10,000 parked requests: 1.5 MB, where a handful are pending afterwards).  The slabs whose
 * items are all back in their pools go to malloc again; the others stay whole.  Each pooled
 * item is looked up once: the cost is that of the pool's length, which is why it waits for
 * the HTTP server's trim rather than running as handles come back.  The heap and the due
 * run (one tick's timers: 1.6 MB each for 100,000 in one tick) shrink to what they hold;
 * both are read afresh after each timer's callback, which may be the one trimming. */
void sq__loop_slabs_trim(sq_loop *loop)
{
    ents_shrink(&loop->heap, &loop->heap_cap, loop->heap_len);
    ents_shrink(&loop->due, &loop->due_cap, loop->due_len);
    ents_shrink(&loop->due_tmp, &loop->due_tmp_cap, 0);
    /* the empty wheel slots give back the chunk each keeps for its next timer, the others
     * the chunks past their last entry (cancelled timers leave a slot's entries packed at
     * its start: 100,000 cancelled around one that stays would keep 1.6 MB of chunks) */
    for (size_t k = 0; k < SQ__WHEEL_LEVELS * 64; k++) {
        struct sq__wheel_slot *w = &loop->wheel[k];
        if (!w->chunks) continue;
        uint32_t need = (w->len + SQ__SLOT_CHUNK - 1) / SQ__SLOT_CHUNK;
        for (uint32_t c = need; c < w->nchunks; c++) block_put(loop, w->chunks[c]);
        w->nchunks = need;
        if (!need) {
            free(w->chunks);
            w->chunks = NULL;
            w->chunks_cap = 0;
        } else if (w->chunks_cap > 2 * need && w->chunks_cap > 4) {
            struct sq__heap_ent **smaller = realloc(w->chunks, need * sizeof *smaller);
            if (smaller) {
                w->chunks = smaller;
                w->chunks_cap = need;
            }
        }
    }
    size_t n = 0;
    for (struct slab_head *h = loop->slabs; h; h = h->next) n++;
    struct slab_ref *refs = n ? malloc(n * sizeof *refs) : NULL;
    if (!refs) return;
    n = 0;
    for (struct slab_head *h = loop->slabs; h; h = h->next)
        refs[n++] = (struct slab_ref){h, 0, false};
    qsort(refs, n, sizeof *refs, slab_ref_cmp);
    /* call handles: the slabs whose every handle is pooled go; the pool gives its blocks
     * back and takes the handles that stay again, below */
    size_t pooled = 0, nstay = 0;
    for (struct sq__pool_block *b = loop->call_pool; b; b = b->under) {
        size_t k = pool_block_len(loop, b);
        for (size_t i = 0; i < k; i++) slab_of(refs, n, b->h[i])->nfree++;
        pooled += k;
    }
    sq_call **stay = NULL;
    if (slabs_mark(refs, n, SLAB_CALLS)) {
        stay = pooled ? malloc(pooled * sizeof *stay) : NULL;
        if (!stay) {
            free(refs);
            return;
        }
        for (struct sq__pool_block *b = loop->call_pool, *under; b; b = under) {
            size_t k = pool_block_len(loop, b);
            for (size_t i = 0; i < k; i++)
                if (!slab_of(refs, n, b->h[i])->gone) stay[nstay++] = b->h[i];
            under = b->under;
            block_put(loop, b);
        }
        loop->call_pool = NULL;
        loop->call_pool_top = 0;
    }
    blocks_count(loop, refs, n);
    blocks_order(loop, refs, n);
    for (size_t i = nstay; i-- > 0;) call_release(loop, stay[i]);
    free(stay);
    /* blocks: the slabs whose every block is free go */
    blocks_count(loop, refs, n);
    if (slabs_mark(refs, n, SLAB_BLOCKS)) {
        void **tail = &loop->block_free;
        for (void *b = loop->block_free, *next; b; b = next) {
            next = *(void **)b;
            if (!slab_of(refs, n, b)->gone) {
                *tail = b;
                tail = (void **)b;
            }
        }
        *tail = NULL;
    }
    struct sq__carver *cvs[] = {&loop->call_carver, &loop->block_carver};
    for (size_t k = 0; k < 2; k++)
        if (cvs[k]->slab && slab_of(refs, n, cvs[k]->slab)->gone) *cvs[k] = (struct sq__carver){0};
    for (struct slab_head **pp = (struct slab_head **)&loop->slabs; *pp;) {
        struct slab_head *h = *pp;
        if (slab_of(refs, n, h)->gone) {
            *pp = h->next;
            free(h);
        } else {
            pp = (struct slab_head **)&h->next;
        }
    }
    free(refs);
}

size_t sq__loop_ents_cap(const sq_loop *loop)
{
    return loop->heap_cap + loop->due_cap + loop->due_tmp_cap;
}

size_t sq__loop_slab_bytes(const sq_loop *loop)
{
    size_t bytes = 0;
    for (const struct slab_head *h = loop->slabs; h; h = h->next) bytes += (size_t)h->kib << 10;
    return bytes;
}

void sq__call_set_dispose(sq_call *c, sq_callback_fn dispose)
{
    c->dispose = dispose;
}

sq_call *sq_call_later(sq_loop *loop, double delay, sq_callback_fn fn, void *arg)
{
    sq_call *c = call_new(loop, fn, arg);
    if (c) sq_timer_start(&c->timer, delay, 0);
    return c;
}

sq_call *sq_call_at(sq_loop *loop, double when, sq_callback_fn fn, void *arg)
{
    sq_call *c = call_new(loop, fn, arg);
    if (c) sq_timer_start_at(&c->timer, when);
    return c;
}

void sq_call_cancel(sq_call *c)
{
    if (!c) return;
    if (!c->timer.cb) { /* pending at loop teardown (timers_free): not disposed */
        c->dispose = NULL;
        return;
    }
    sq_loop *loop = c->timer.loop;
    sq_timer_stop(&c->timer);
    call_release(loop, c);
}

/* --- periodic callbacks ------------------------------------------------------------------- */

static double periodic_delay(sq_periodic *p)
{
    double d = p->interval;
    if (p->jitter > 0) d *= 1.0 + p->jitter * ((double)rand() / RAND_MAX - 0.5);
    return d;
}

static void periodic_fire(sq_loop *loop, sq_timer *t)
{
    sq_periodic *p = (sq_periodic *)t;
    /* Schedule from the previous deadline so runs do not drift; skip runs that were missed. */
    uint64_t step = sq__sec_to_ns(periodic_delay(p));
    uint64_t next = t->deadline + step;
    if (next <= loop->now_ns) next = loop->now_ns + step;
    timer_arm(t, next);
    p->fn(p->arg);
}

void sq_periodic_init(sq_loop *loop, sq_periodic *p, double interval, sq_callback_fn fn, void *arg)
{
    memset(p, 0, sizeof *p);
    sq_timer_init(loop, &p->timer, periodic_fire, p);
    p->interval = interval > 0 ? interval : 0.001;
    p->fn = fn;
    p->arg = arg;
}

void sq_periodic_set_jitter(sq_periodic *p, double jitter)
{
    p->jitter = jitter < 0 ? 0 : jitter >= 1 ? 0.999 : jitter;
}

void sq_periodic_start(sq_periodic *p)
{
    p->running = true;
    sq_timer_start(&p->timer, periodic_delay(p), 0);
}

void sq_periodic_stop(sq_periodic *p)
{
    p->running = false;
    sq_timer_stop(&p->timer);
}

/* --- iteration ---------------------------------------------------------------------------- */

/* When the loop must next look at its timers: the first timer of the ticks reached; with
 * none, the start of the wheel's next slot, when its timers become due or move down the
 * wheel.  False: no timer at all. */
static bool timers_next(sq_loop *loop, uint64_t *when)
{
    uint64_t tick;
    struct sq__heap_ent *first = timer_first(loop);
    if (first)
        *when = first->deadline;
    else if (wheel_next_event(loop, &tick))
        *when = tick << SQ__TICK_SHIFT;
    else
        return false;
    return true;
}

/* See sq__ready_round: SQ__READY_POLL_EVERY rounds of ready coroutines ran without an IO poll.
 * More may, while the last poll is recent and no timer is due (the rounds that coroutines hand
 * over to each other, coro.c's batch_next, do not run timers; the loop's own passes do). */
bool sq__ready_recheck(sq_loop *loop)
{
    uint64_t now = loop->now_ns = sq__mono_ns(), d;
    if (now - loop->polled_ns >= SQ__READY_POLL_NS) return false;
    if (timers_next(loop, &d) && d <= now) return false;
    loop->ready_passes = 0;
    return true;
}

static int poll_timeout(sq_loop *loop, bool block)
{
    if (!block || loop->stop || loop->callbacks.len || loop->ready_head) return 0;
    uint64_t d;
    if (!timers_next(loop, &d)) return -1;
    /* The previous pass may have run long: measure from the real time, or the next timer
     * would fire late by as long as that pass took. */
    loop->now_ns = sq__mono_ns();
    if (d <= loop->now_ns) return 0;
    uint64_t ms = (d - loop->now_ns + 999999) / 1000000; /* round up: never wake early */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* A nested run would dispatch callbacks and resume coroutines under the feet of the ones
 * running: refused, and said once per loop. */
static int refuse_nested(sq_loop *loop, const char *fn)
{
    if (!loop->nested_logged) {
        loop->nested_logged = true;
        sq_log(SQ_LOG_ERROR,
               "%s: called from inside a callback or coroutine of the same loop; refused "
               "(-EBUSY).  Return to the loop instead (or sq_await / sq_sleep in a coroutine)",
               fn);
    }
    return -EBUSY;
}

SQ__HOT int sq_loop_run_once(sq_loop *loop, bool block)
{
    if (SQ__UNLIKELY(loop->in_pass)) {
        sq__coro_recover();
        if (loop->in_pass) return refuse_nested(loop, "sq_loop_run_once");
    }
    loop->in_pass = true;
    loop->pass_block = block;
    if (SQ__UNLIKELY(loop->now_ns - loop->fault_check_ns > SQ__NS_PER_SEC)) {
        loop->fault_check_ns = loop->now_ns;
        sq__coro_fault_check();
    }
    sq_loop *prev = current_loop;
    current_loop = loop;
    int r = 0;
    if (sq__ready_round(loop)) {
        /* Only coroutines are ready (sq_yield loops, a burst of wakes): this pass would poll
         * with a zero timeout, a system call that costs more than the pass itself.  The IO is
         * polled every SQ__READY_POLL_NS of such passes instead; the clock is still read, so
         * timers fire on time and deadlines are taken from the real time. */
        loop->now_ns = sq__mono_ns();
    } else {
        loop->ready_passes = 0;
        r = loop->backend->poll(loop, poll_timeout(loop, block));
        if (r <= 0) loop->now_ns = sq__mono_ns(); /* a backend that saw events refreshed it */
        loop->polled_ns = loop->now_ns;
    }
    run_timers(loop);
    /* Only the callbacks queued before this pass: one that re-queues itself cannot starve IO. */
    for (size_t n = loop->callbacks.len; n > 0 && loop->callbacks.len; n--) {
        sq__cb cb = cbq_pop(&loop->callbacks);
        uint64_t t0 = sq__slow_begin(loop);
        cb.fn(cb.arg);
        sq__slow_end(loop, t0, "callback", (const void *)cb.fn);
    }
    sq__coro_run_ready(loop);
    /* Coroutines woken by those that just ran (sq_yield loops, one waking the next): more
     * rounds of them right here, while no callback waits, instead of a whole pass each —
     * bounded like the skipped polls above (sq__ready_round: IO waits at most
     * SQ__READY_POLL_NS, a due timer at most SQ__READY_POLL_EVERY rounds). */
    while (sq__ready_round(loop)) sq__coro_run_ready(loop);
    current_loop = prev ? prev : loop;
    loop->in_pass = false;
    /* a stop asked during a pass of the caller's own (not sq_loop_run's) ends that pass; kept,
     * every later blocking pass would poll without waiting */
    if (SQ__UNLIKELY(loop->stop) && !loop->running) loop->stop = false;
    return r < 0 ? r : 0;
}

SQ__HOT int sq_loop_run(sq_loop *loop)
{
    return sq_loop_run_until(loop, NULL);
}

SQ__HOT int sq_loop_run_until(sq_loop *loop, sq_future *fut)
{
    sq__coro_recover();
    if (loop->in_pass) return refuse_nested(loop, "sq_loop_run");
    if (loop->running) {
        sq_log(SQ_LOG_ERROR, "sq_loop_run: the loop is already running");
        return -EBUSY;
    }
    loop->fault_check_ns = loop->now_ns = sq__mono_ns();
    sq__coro_fault_check();
    sq_loop *prev = current_loop;
    current_loop = loop;
    loop->running = true;
    loop->now_ns = sq__mono_ns();
    int r = 0;
    /* a stop asked before the run: one pass without waiting, then return (asyncio's) */
    while (!(fut && sq_future_done(fut))) {
        r = sq_loop_run_once(loop, true);
        if (r < 0 && r != -EINTR) break;
        r = 0;
        if (loop->stop) break;
    }
    loop->running = false;
    loop->stop = false;
    current_loop = prev ? prev : loop;
    return r;
}
