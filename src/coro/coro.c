/* Stackful coroutines: mmap'ed stacks with a guard region, a per-thread pool, a hand-written
 * register switch (switch-<arch>.S) or ucontext, and sanitizer fiber annotations so that
 * ASan and TSan follow the stack switches. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define SQ_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SQ_ASAN)
#define SQ_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(SQ_TSAN)
#define SQ_TSAN 1
#endif
#ifdef SQ_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef SQ_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#ifdef SQ_CORO_UCONTEXT
#include <ucontext.h>
#endif

/* ABANDONED: left by a non-local jump (longjmp out of it, as a failed cmocka assertion does);
 * it can never run again and its stack is unmapped when its loop is freed. */
enum { CORO_READY, CORO_RUNNING, CORO_SUSPENDED, CORO_DONE, CORO_ABANDONED };

#define GUARD_SIZE (32u * 1024u)

struct sq_coro {
    void *sp;     /* the coroutine's saved stack pointer while it is not running */
    void *ret_sp; /* the resumer's, while the coroutine runs */
    sq_loop *loop;
    sq_task_fn fn;
    void *arg;
    sq_future *done;
    char *map; /* mmap base: guard region first, then the stack, then this struct */
    size_t map_size;
    size_t stack_size;      /* usable bytes between the guard and this struct */
    size_t size_setting;    /* sq_coro_get_stack_size() when it was made */
    sq_coro *next;          /* ready queue or pool link */
    sq_coro *lprev, *lnext; /* the loop's list of live (created, unfinished) coroutines */
    sq_future *awaiting;    /* the future sq_await is suspended on (it holds a reference) */
    const char *name;
    const sq__coro_label *label; /* what it serves (the slow-callback warning), or NULL */
    unsigned char state;
    bool queued;
    uint32_t visit; /* the last teardown round (sq__coro_cancel_waits) that looked at it */
#ifdef SQ_ASAN
    void *fake_stack;
    const void *ret_bottom;
    size_t ret_size;
#endif
#ifdef SQ_TSAN
    void *fiber;
    void *ret_fiber;
#endif
#ifdef SQ_CORO_UCONTEXT
    ucontext_t ctx, ret_ctx;
#endif
};

/* A coroutine that suspends while the loop runs a batch of ready ones switches straight to
 * the next of the batch (one switch instead of two: out to the loop and in again), and when
 * the batch is done, to the coroutines it woke while nothing else waits; the last one
 * switches back to the loop.  Not with ucontext or ThreadSanitizer's fibers, whose
 * bookkeeping assumes that every switch goes through the resumer. */
#if !defined(SQ_CORO_UCONTEXT) && !defined(SQ_TSAN)
#define SQ_CORO_HANDOFF 1
#endif

void sq__coro_switch(void **save_sp, void *new_sp);
void sq__coro_boot(void);
void sq__coro_main(sq_coro *c) __attribute__((noreturn, used));

/* process-wide, read by every thread's sq_coro_create (atomic: set from any thread) */
static _Atomic size_t stack_size_setting = SQ_CORO_DEFAULT_STACK_SIZE;
static _Atomic size_t pool_limit = 1024;
static _Thread_local sq_coro *tls_current;
static _Thread_local sq_coro *tls_pool;
static _Thread_local size_t tls_pool_len;
static _Thread_local bool tls_altstack;
static _Thread_local void *tls_altstack_mem; /* ours to free at thread exit, if we made it */
static _Thread_local bool tls_key_set;

static void stack_free(sq_coro *c);

static size_t page_size(void)
{
    static size_t ps;
    if (!ps) ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

void sq_coro_set_stack_size(size_t bytes)
{
    size_t ps = page_size();
    if (bytes < 16 * 1024) bytes = 16 * 1024;
    if (bytes > SIZE_MAX / 4) bytes = SIZE_MAX / 4; /* rounding up must not wrap to 0 */
    stack_size_setting = (bytes + ps - 1) / ps * ps;
    while (tls_pool && tls_pool->size_setting != stack_size_setting) {
        sq_coro *c = tls_pool;
        tls_pool = c->next;
        tls_pool_len--;
        stack_free(c);
    }
}

size_t sq_coro_get_stack_size(void)
{
    return stack_size_setting;
}
void sq_coro_set_pool_limit(size_t n)
{
    pool_limit = n;
}

/* --- stack overflow: the guard region faults, and this handler names the cause --------- */

/* The handler is re-asserted (sq__coro_fault_check) whenever the loop starts running and
 * about once a second while it runs, so one installed later by someone else (a crash
 * reporter, a test framework) does not silently take the overflow message away; whatever
 * handler ours replaced still gets every fault that is not a guard hit. */
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction old_segv, old_bus; /* what ours chains to */
static _Thread_local int tls_in_fault;
static atomic_bool fault_wanted; /* a coroutine was created: keep the handler installed */

static void write_str(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void chain_fault(int sig, siginfo_t *si, void *uctx)
{
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (tls_in_fault > 1) {
        /* The handler we chained to chained back to us: end the ping-pong; returning
         * re-executes the fault under the default action. */
        signal(sig, SIG_DFL);
    } else if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uctx);
    } else if (!(old->sa_flags & SA_SIGINFO) && old->sa_handler != SIG_DFL &&
               old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        /* Default action: restore it and return; the faulting instruction faults again. */
        signal(sig, SIG_DFL);
    }
}

static void fault_handler(int sig, siginfo_t *si, void *uctx)
{
    tls_in_fault++;
    sq_coro *c = tls_current;
    char *addr = si->si_addr;
    if (c && addr >= c->map && addr < c->map + GUARD_SIZE + page_size()) {
        char num[32];
        snprintf(num, sizeof num, "%zu", c->stack_size);
        write_str("squall: coroutine stack overflow in coroutine '");
        write_str(c->name ? c->name : "?");
        write_str("' (stack of ");
        write_str(num);
        write_str(" bytes); raise it with sq_coro_set_stack_size()\n");
        abort();
    }
    chain_fault(sig, si, uctx);
    tls_in_fault--;
}

void sq__coro_fault_check(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS};
    /* Only once coroutines are in use: a loop alone leaves the process's handlers alone. */
    if (!atomic_load_explicit(&fault_wanted, memory_order_relaxed)) return;
    pthread_mutex_lock(&fault_lock);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction cur, sa;
        if (sigaction(sigs[i], NULL, &cur) != 0) continue;
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = fault_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        *(sigs[i] == SIGSEGV ? &old_segv : &old_bus) = cur;
        sigaction(sigs[i], &sa, NULL);
    }
    pthread_mutex_unlock(&fault_lock);
}

/* Per-thread resources (the stack pool, the signal stack) are released at thread exit by
 * this key's destructor; the main thread's pool goes at its last sq_loop_free. */
static pthread_key_t thread_key;

static void thread_exit(void *unused)
{
    (void)unused;
    sq__coro_pool_trim(0, 0);
    if (tls_altstack_mem) {
        stack_t cur, off = {.ss_flags = SS_DISABLE};
        if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == tls_altstack_mem) sigaltstack(&off, NULL);
        free(tls_altstack_mem);
        tls_altstack_mem = NULL;
        tls_altstack = false;
    }
    tls_key_set = false;
}

static void thread_key_create(void)
{
    pthread_key_create(&thread_key, thread_exit);
}

static void thread_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (tls_key_set) return;
    pthread_once(&once, thread_key_create);
    pthread_setspecific(thread_key, &thread_key); /* non-NULL: the destructor runs */
    tls_key_set = true;
}

static void install_fault_handler(void)
{
    if (tls_altstack) return;
    thread_register();
    atomic_store_explicit(&fault_wanted, true, memory_order_relaxed);
    sq__coro_fault_check();
    /* The handler must run somewhere other than the stack that just overflowed. */
    stack_t ss = {0}, old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE) && old.ss_size >= 32768) {
        tls_altstack = true;
        return;
    }
    ss.ss_size = 64 * 1024;
    ss.ss_sp = malloc(ss.ss_size); /* freed at thread exit (thread_exit) */
    if (ss.ss_sp && sigaltstack(&ss, NULL) == 0) {
        tls_altstack = true;
        tls_altstack_mem = ss.ss_sp;
    } else {
        free(ss.ss_sp);
    }
}

bool sq__coro_pool_trim(size_t keep, uint64_t until_ns)
{
    while (tls_pool && tls_pool_len > keep) {
        if (until_ns && sq__mono_ns() >= until_ns) return false;
        sq_coro *c = tls_pool;
        tls_pool = c->next;
        tls_pool_len--;
        stack_free(c);
    }
    return true;
}

size_t sq__coro_pool_len(void)
{
    return tls_pool_len;
}

/* --- stacks -------------------------------------------------------------------------------- */

static sq_coro *stack_alloc(void)
{
    size_t ps = page_size();
    size_t hdr = (sizeof(sq_coro) + 63) & ~(size_t)63;
    size_t map_size = GUARD_SIZE + stack_size_setting + ((hdr + ps - 1) / ps * ps);
    char *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) return NULL;
    sq__coro_fault_check(); /* a new stack is rare enough to re-assert the handler here */
    if (mprotect(map, GUARD_SIZE, PROT_NONE) < 0) {
        munmap(map, map_size);
        return NULL;
    }
    sq_coro *c = (sq_coro *)((uintptr_t)(map + map_size - hdr) & ~(uintptr_t)63);
    memset(c, 0, sizeof *c);
    c->map = map;
    c->map_size = map_size;
    c->stack_size = (size_t)((char *)c - (map + GUARD_SIZE));
    c->size_setting = stack_size_setting;
#ifdef SQ_TSAN
    c->fiber = __tsan_create_fiber(0);
#endif
    return c;
}

static void stack_free(sq_coro *c)
{
#ifdef SQ_TSAN
    __tsan_destroy_fiber(c->fiber);
#endif
    munmap(c->map, c->map_size);
}

/* A stack given up while frames were still on it: clear what ASan poisoned for them, or the
 * next user of that memory would trip over stale redzones. */
static void stack_discard(sq_coro *c)
{
#ifdef SQ_ASAN
    __asan_unpoison_memory_region(c->map + GUARD_SIZE, c->stack_size);
#endif
    stack_free(c);
}

static void loop_link(sq_coro *c)
{
    sq_loop *loop = c->loop;
    c->lnext = NULL;
    c->lprev = loop->coros_tail;
    if (loop->coros_tail)
        loop->coros_tail->lnext = c;
    else
        loop->coros = c;
    loop->coros_tail = c;
}

static void loop_unlink(sq_coro *c)
{
    sq_loop *loop = c->loop;
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        loop->coros = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    else
        loop->coros_tail = c->lprev;
    c->lprev = c->lnext = NULL;
}

static void recycle(sq_coro *c)
{
    if (tls_pool_len < pool_limit && c->size_setting == stack_size_setting) {
        c->next = tls_pool;
        tls_pool = c;
        tls_pool_len++;
        return;
    }
    stack_free(c);
}

/* --- lifecycle ------------------------------------------------------------------------------- */

#ifndef SQ_CORO_UCONTEXT
static void *stack_top(sq_coro *c)
{
    return (void *)((uintptr_t)c & ~(uintptr_t)15);
}
#else
static void uc_entry(unsigned hi, unsigned lo)
{
    sq__coro_main((sq_coro *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

/* Apart from sq_coro_create: getcontext() "returns twice", which -Wclobbered (-O2) flags
 * for every local of the function that calls it. */
static __attribute__((noinline)) void uc_prepare(sq_coro *c)
{
    getcontext(&c->ctx);
    c->ctx.uc_stack.ss_sp = c->map + GUARD_SIZE;
    c->ctx.uc_stack.ss_size = c->stack_size;
    c->ctx.uc_link = NULL;
    makecontext(&c->ctx, (void (*)(void))uc_entry, 2, (unsigned)((uintptr_t)c >> 32),
                (unsigned)(uintptr_t)c);
}
#endif

SQ__HOT sq_coro *sq_coro_create(sq_loop *loop, sq_task_fn fn, void *arg)
{
    install_fault_handler();
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default(); /* as every other NULL-loop call does */
    if (!loop) return NULL;
    sq_coro *c;
    /* the size is set process-wide, the pools are per thread: this thread's may still hold
     * stacks of an earlier size (sq_coro_set_stack_size trims the caller's only) */
    while ((c = tls_pool) && c->size_setting != stack_size_setting) {
        tls_pool = c->next;
        tls_pool_len--;
        stack_free(c);
    }
    if (c) {
        tls_pool = c->next;
        tls_pool_len--;
    } else if (!(c = stack_alloc())) {
        return NULL;
    }
    c->loop = loop;
    c->fn = fn;
    c->arg = arg;
    c->done = NULL;
    c->next = NULL;
    c->name = NULL;
    c->label = NULL;
    c->state = CORO_READY;
    c->queued = false;
    c->awaiting = NULL;
    c->visit = 0;
    loop_link(c);
#ifdef SQ_ASAN
    c->fake_stack = NULL;
#endif
#ifdef SQ_CORO_UCONTEXT
    uc_prepare(c);
#else
    void **top = stack_top(c);
#if defined(__x86_64__)
    /* Popped by sq__coro_switch: r15 r14 r13 r12 rbx rbp, then "ret" into sq__coro_boot. */
    void **sp = top - 9;
    memset(sp, 0, 9 * sizeof *sp);
    sp[3] = c;                     /* r12 */
    sp[6] = (void *)sq__coro_boot; /* return address */
#elif defined(__aarch64__)
    void **sp = top - 20; /* 160-byte frame: x19..x30, d8..d15 */
    memset(sp, 0, 20 * sizeof *sp);
    sp[0] = c;                      /* x19 */
    sp[11] = (void *)sq__coro_boot; /* x30 */
#else
#error "no context switch for this architecture: build with SQ_CORO_UCONTEXT"
#endif
    c->sp = sp;
#endif
    return c;
}

#ifdef SQ_ASAN
/* After a switch into c: ASan reported the stack it came from as c's way back; when that was
 * another coroutine handing over, the way back is the loop's, which that one knew. */
static void asan_arrived(sq_coro *c)
{
    sq_loop *loop = c->loop;
    if (loop->asan_handoff) {
        c->ret_bottom = loop->asan_ret_bottom;
        c->ret_size = loop->asan_ret_size;
        loop->asan_handoff = false;
    }
}
#endif

SQ__HOT void sq__coro_main(sq_coro *c)
{
#ifdef SQ_ASAN
    __sanitizer_finish_switch_fiber(NULL, &c->ret_bottom, &c->ret_size);
    asan_arrived(c);
#endif
    void *result = c->fn(c->arg);
    if (c->done) {
        sq_future *f = c->done;
        c->done = NULL;
        sq_future_set_result(f, result);
        sq_future_release(f);
    }
    c->state = CORO_DONE;
    c->loop->ret_from = c;
#ifdef SQ_ASAN
    __sanitizer_start_switch_fiber(NULL, c->ret_bottom, c->ret_size);
#endif
#ifdef SQ_TSAN
    __tsan_switch_to_fiber(c->ret_fiber, 0);
#endif
#ifdef SQ_CORO_UCONTEXT
    setcontext(&c->ret_ctx);
#else
    sq__coro_switch(&c->sp, c->ret_sp);
#endif
    __builtin_unreachable();
}

SQ__HOT bool sq_coro_resume(sq_coro *c)
{
    if (tls_current) sq__coro_recover();
    if (tls_current) {
        sq_log(SQ_LOG_ERROR, "sq_coro_resume: called from inside a coroutine; use sq_coro_wake");
        return c->state != CORO_DONE;
    }
    if (c->state == CORO_ABANDONED) return false;
    if (c->state == CORO_DONE || c->state == CORO_RUNNING) return c->state != CORO_DONE;
    tls_current = c;
    c->state = CORO_RUNNING;
#ifdef SQ_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, c->map + GUARD_SIZE, c->stack_size);
#endif
#ifdef SQ_TSAN
    c->ret_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(c->fiber, 0);
#endif
#ifdef SQ_CORO_UCONTEXT
    swapcontext(&c->ret_ctx, &c->ctx);
#else
    sq__coro_switch(&c->ret_sp, c->sp);
#endif
#ifdef SQ_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    tls_current = NULL;
    /* the coroutine that came back: c, or the last of a batch c handed over to */
    sq_coro *r = c->loop->ret_from ? c->loop->ret_from : c;
    c->loop->ret_from = NULL;
    if (r->label) r->loop->slow_label = r->label; /* the slow-callback warning names it */
    if (r->state == CORO_DONE) {
        loop_unlink(r);
        recycle(r);
        return r != c;
    }
    return true;
}

/* A coroutine's turn in the batch ended (it suspended or finished): the slow-callback check,
 * one clock read serving as this turn's end and the next one's start. */
static void turn_end(sq_loop *loop)
{
    if (!loop->slow_ns) return;
    loop->run_t0 = sq__slow_check_at(loop, loop->run_t0, sq__coarse_ns(), "coroutine",
                                     (const void *)loop->run_fn);
}

#ifdef SQ_CORO_HANDOFF
/* The next coroutine of the loop's batch that can run, taken off it.  When the batch is
 * done, the coroutines it woke become the next one, without a trip through the loop, while
 * no callback waits and the pass may wait (sq__ready_round, which bounds these rounds with
 * the loop's skipped polls: IO waits at most SQ__READY_POLL_NS, a due timer at most
 * SQ__READY_POLL_EVERY rounds).  NULL: back to the loop. */
static sq_coro *batch_next(sq_loop *loop)
{
    for (;;) {
        if (!loop->run_list) {
            if (!sq__ready_round(loop)) return NULL;
            loop->run_list = loop->ready_head;
            loop->ready_head = loop->ready_tail = NULL;
        }
        sq_coro *n = loop->run_list;
        loop->run_list = n->next;
        n->next = NULL;
        n->queued = false;
        if (n->state == CORO_READY || n->state == CORO_SUSPENDED) return n;
    }
}

/* c suspends and n runs in its place, going back to the loop when it suspends in turn (or
 * handing over again).  Returns when c is resumed. */
static void handoff(sq_coro *c, sq_coro *n)
{
    sq_loop *loop = c->loop;
    loop->slow_label = c->label; /* c's turn ends, as when it returns to the loop */
    turn_end(loop);
    loop->run_fn = n->fn;
    n->ret_sp = c->ret_sp; /* n goes back where c would have: the loop */
    tls_current = n;
    n->state = CORO_RUNNING;
#ifdef SQ_ASAN
    loop->asan_handoff = true;
    loop->asan_ret_bottom = c->ret_bottom;
    loop->asan_ret_size = c->ret_size;
    __sanitizer_start_switch_fiber(&c->fake_stack, n->map + GUARD_SIZE, n->stack_size);
#endif
    sq__coro_switch(&c->sp, n->sp);
#ifdef SQ_ASAN
    __sanitizer_finish_switch_fiber(c->fake_stack, &c->ret_bottom, &c->ret_size);
    asan_arrived(c);
#endif
}
#endif

int sq_coro_suspend(void)
{
    sq_coro *c = tls_current;
    if (!c) return SQ_ENOTCORO;
    c->state = CORO_SUSPENDED;
#ifdef SQ_CORO_HANDOFF
    /* only a coroutine the batch runs hands over: one resumed by anything else (an IO
     * callback, user code) goes back to its resumer, which expects it */
    if (c->loop->in_batch && (c->loop->run_list || c->loop->ready_head)) {
        sq_coro *n = batch_next(c->loop);
        if (n == c) { /* it woke itself and nothing else is ready: it goes on */
            c->state = CORO_RUNNING;
            return 0;
        }
        if (n) {
            handoff(c, n);
            return 0;
        }
    }
#endif
    c->loop->ret_from = c;
#ifdef SQ_ASAN
    __sanitizer_start_switch_fiber(&c->fake_stack, c->ret_bottom, c->ret_size);
#endif
#ifdef SQ_TSAN
    __tsan_switch_to_fiber(c->ret_fiber, 0);
#endif
#ifdef SQ_CORO_UCONTEXT
    swapcontext(&c->ctx, &c->ret_ctx);
#else
    sq__coro_switch(&c->sp, c->ret_sp);
#endif
#ifdef SQ_ASAN
    __sanitizer_finish_switch_fiber(c->fake_stack, &c->ret_bottom, &c->ret_size);
    asan_arrived(c);
#endif
    return 0;
}

void sq_coro_wake(sq_coro *c)
{
    if (c->queued || c->state == CORO_DONE || c->state == CORO_ABANDONED) return;
    c->queued = true;
    c->next = NULL;
    sq_loop *loop = c->loop;
    if (loop->ready_tail)
        loop->ready_tail->next = c;
    else
        loop->ready_head = c;
    loop->ready_tail = c;
}

size_t sq__coro_run_ready(sq_loop *loop)
{
    /* Run the coroutines queued so far; ones woken meanwhile wait for the next pass. */
    sq_coro *list = loop->ready_head;
    loop->ready_head = loop->ready_tail = NULL;
    size_t n = 0;
    loop->run_list = list;
    loop->run_t0 = sq__slow_begin(loop);
    bool was_in_batch = loop->in_batch;
    loop->in_batch = true;
    sq_coro *c;
    while ((c = loop->run_list) != NULL) {
        loop->run_list = c->next;
        c->next = NULL;
        c->queued = false;
        loop->run_fn = c->fn;
        /* (a coroutine that suspends hands over to the next of run_list itself) */
        sq_coro_resume(c);
        turn_end(loop);
        n++;
    }
    loop->in_batch = was_in_batch;
    return n;
}

void sq__coro_requeue(sq_loop *loop, sq_coro *list)
{
    while (list) {
        sq_coro *c = list;
        list = c->next;
        c->next = NULL;
        c->queued = false;
        sq_coro_wake(c);
    }
}

SQ__HOT sq_coro *sq_coro_self(void)
{
    return tls_current;
}
SQ__HOT bool sq_in_coro(void)
{
    if (SQ__UNLIKELY(tls_current != NULL)) sq__coro_recover();
    return tls_current != NULL;
}
sq_loop *sq_coro_loop(const sq_coro *c)
{
    return c->loop;
}
SQ__HOT void sq_coro_set_name(sq_coro *c, const char *name)
{
    c->name = name;
}
SQ__HOT void sq__coro_set_label(sq_coro *c, const sq__coro_label *label)
{
    c->label = label;
}

sq_future *sq_spawn(sq_loop *loop, sq_task_fn fn, void *arg)
{
    if (!loop) loop = sq_loop_current();
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    sq_coro *c = sq_coro_create(loop, fn, arg);
    if (!c) {
        sq_future_release(f);
        return NULL;
    }
    c->done = sq_future_retain(f);
    sq_coro_wake(c);
    return f;
}

int sq_go(sq_loop *loop, sq_task_fn fn, void *arg)
{
    sq_coro *c = sq_coro_create(loop, fn, arg);
    if (!c) return -ENOMEM;
    sq_coro_wake(c);
    return 0;
}

/* --- abandoned coroutines and loop teardown --------------------------------------------- */

void sq__coro_set_awaiting(sq_coro *c, sq_future *f)
{
    c->awaiting = f;
}

void sq__coro_recover(void)
{
    sq_coro *c = tls_current;
    if (!c) return;
    char *fp = __builtin_frame_address(0);
    if (fp >= c->map && fp < c->map + c->map_size) return; /* really running inside it */
    /* Marked running, yet we are not on its stack: something jumped out of it (longjmp, as a
     * failed cmocka assertion does) and never came back.  Give up on it. */
    sq_log(SQ_LOG_ERROR,
           "coroutine '%s' was left by a non-local jump (longjmp) and is abandoned; its "
           "loop is usable again, its stack is freed with the loop",
           c->name ? c->name : "?");
    tls_current = NULL;
    c->state = CORO_ABANDONED;
#ifdef SQ_ASAN
    /* Tell ASan we are back on the resumer's stack (NULL: the coroutine's fake stack dies). */
    __sanitizer_start_switch_fiber(NULL, c->ret_bottom, c->ret_size);
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
#ifdef SQ_TSAN
    __tsan_switch_to_fiber(c->ret_fiber, 0);
#endif
    sq__loop_abandoned(c->loop);
}

size_t sq__coro_cancel_waits(sq_loop *loop)
{
    /* Each live coroutine is visited once: it moves to the tail of the list, so the list may
     * change under the callbacks that a cancellation runs (coroutines created, finished). */
    uint32_t round = ++loop->coro_round ? loop->coro_round : ++loop->coro_round;
    size_t n = 0;
    sq_coro *c;
    while ((c = loop->coros) && c->visit != round) {
        c->visit = round;
        loop_unlink(c);
        loop_link(c);
        if (c->state != CORO_SUSPENDED || c->queued || !c->awaiting) continue;
        sq_future *f = sq_future_retain(c->awaiting);
        sq_future_cancel(f); /* resolves it: its waiter is queued (unless it was done) */
        sq_future_release(f);
        if (c->queued) n++;
    }
    return n;
}

void sq__coro_discard_all(sq_loop *loop)
{
    sq_coro *c;
    /* First detach every coroutine from what could still wake it, then drop the references
     * they held, then their stacks. */
    for (c = loop->coros; c; c = c->lnext) {
        if (c->awaiting) sq__future_abandon_await(c->awaiting, c);
        c->awaiting = NULL;
        c->queued = false;
    }
    loop->ready_head = loop->ready_tail = NULL;
    while ((c = loop->coros)) {
        loop_unlink(c);
        if (c->done) {
            sq_future *f = c->done;
            c->done = NULL;
            sq_future_release(f);
        }
        stack_discard(c);
    }
}
