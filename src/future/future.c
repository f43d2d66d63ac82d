/* Futures, await, gather, timeouts and sleep. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { F_PENDING, F_DONE };

typedef struct cb_node {
    sq_future_cb cb;
    void *arg;
    struct cb_node *next;
} cb_node;

#define INLINE_CBS 2

struct sq_future {
    sq_loop *loop;
    int32_t refs;
    unsigned char state;
    bool cancelled;
    bool firing; /* resolve() is running the callbacks: a removal only blanks its entry */
    unsigned char ninline;
    int64_t status;
    void *value;
    void (*value_free)(void *value); /* frees an untaken value when the future dies */
    sq_cancel_fn cancel_fn;
    void *cancel_arg;
    struct {
        sq_future_cb cb;
        void *arg;
    } inl[INLINE_CBS];
    cb_node *more; /* callbacks beyond the inline ones, in order; doubles as free-list link */
};

#define FUTURE_POOL_MAX 4096

sq_future *sq_future_new(sq_loop *loop)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_future *f = loop->future_free;
    if (f) {
        loop->future_free = (sq_future *)f->more;
        loop->future_free_len--;
    } else if (!(f = malloc(sizeof *f))) {
        return NULL;
    }
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->refs = 1;
    return f;
}

void sq__future_pool_trim(sq_loop *loop, size_t keep)
{
    while (loop->future_free && loop->future_free_len > keep) {
        sq_future *f = loop->future_free;
        loop->future_free = (sq_future *)f->more;
        loop->future_free_len--;
        free(f);
    }
}

sq_future *sq_future_retain(sq_future *f)
{
    if (f) f->refs++;
    return f;
}

void sq_future_release(sq_future *f)
{
    if (!f || --f->refs > 0) return;
    if (f->value && f->value_free) {
        void *v = f->value;
        f->value = NULL;
        f->value_free(v); /* nobody took it */
    }
    cb_node *n = f->more;
    while (n) {
        cb_node *next = n->next;
        free(n);
        n = next;
    }
    sq_loop *loop = f->loop;
    if (loop->future_free_len < FUTURE_POOL_MAX) {
        f->more = (cb_node *)loop->future_free;
        loop->future_free = f;
        loop->future_free_len++;
    } else {
        free(f);
    }
}

bool sq_future_done(const sq_future *f)
{
    return f->state == F_DONE;
}
bool sq_future_cancelled(const sq_future *f)
{
    return f->cancelled;
}
int64_t sq_future_status(const sq_future *f)
{
    return f->state == F_DONE ? f->status : 0;
}
void *sq_future_value(const sq_future *f)
{
    return f->state == F_DONE ? f->value : NULL;
}
void *sq_future_take_value(sq_future *f)
{
    if (!f || f->state != F_DONE) return NULL;
    void *v = f->value;
    f->value = NULL;
    return v;
}
void sq_future_set_value_free(sq_future *f, void (*fn)(void *value))
{
    f->value_free = fn;
}

/* The value a consumer receives from a done f: an owned one (f has a free function) is
 * taken, so f will not free it; a plain one is only read, so other holders still see it. */
static void *claim_value(sq_future *f)
{
    if (!f->value_free) return f->value;
    return sq_future_take_value(f);
}

/* Resolve `to` like the done `from`, moving an owned value (and how to free it) along. */
static void forward_result(sq_future *to, sq_future *from)
{
    if (to->state == F_DONE) return; /* the value stays with `from`, freed with it */
    if (from->value_free) to->value_free = from->value_free;
    sq_future_resolve(to, from->status, claim_value(from));
}
sq_loop *sq_future_loop(const sq_future *f)
{
    return f->loop;
}

void sq_future_set_cancel_hook(sq_future *f, sq_cancel_fn fn, void *arg)
{
    f->cancel_fn = fn;
    f->cancel_arg = arg;
}

int sq_future_resolve(sq_future *f, int64_t status, void *value)
{
    if (f->state == F_DONE) return -EALREADY;
    f->state = F_DONE;
    f->status = status;
    f->value = value;
    f->cancel_fn = NULL;
    /* Callbacks may drop the last other reference: hold one while they run. */
    f->refs++;
    /* Run the callbacks where they are.  One removed meanwhile by an earlier one (whose
     * owner it frees: a wait iterator, a coroutine's wait) is blanked, not shifted, and
     * skipped here; nothing can be added, f being done. */
    f->firing = true;
    for (unsigned i = 0; i < f->ninline; i++) {
        sq_future_cb cb = f->inl[i].cb;
        f->inl[i].cb = NULL;
        if (cb) cb(f, f->inl[i].arg);
    }
    for (cb_node *n = f->more; n; n = n->next) {
        sq_future_cb cb = n->cb;
        n->cb = NULL;
        if (cb) cb(f, n->arg);
    }
    f->firing = false;
    f->ninline = 0;
    cb_node *n = f->more;
    f->more = NULL;
    while (n) {
        cb_node *next = n->next;
        free(n);
        n = next;
    }
    sq_future_release(f);
    return 0;
}

int sq_future_set_result(sq_future *f, void *value)
{
    return sq_future_resolve(f, 0, value);
}

int sq_future_set_error(sq_future *f, int err)
{
    return sq_future_resolve(f, err < 0 ? err : -EINVAL, NULL);
}

int sq_future_cancel(sq_future *f)
{
    if (f->state == F_DONE) return -EALREADY;
    sq_cancel_fn fn = f->cancel_fn;
    void *arg = f->cancel_arg;
    f->refs++;
    f->cancelled = true;
    /* The producer lets go first: the done callbacks below may free what its hook would
     * touch (the stream a read belongs to, a read_into's buffer). */
    f->cancel_fn = NULL;
    if (fn) fn(f, arg);
    sq_future_resolve(f, -ECANCELED, NULL); /* -EALREADY if the hook resolved it */
    sq_future_release(f);
    return 0;
}

int sq_future_add_done_callback(sq_future *f, sq_future_cb cb, void *arg)
{
    if (f->state == F_DONE) {
        cb(f, arg);
        return 0;
    }
    if (f->ninline < INLINE_CBS && !f->more) {
        f->inl[f->ninline].cb = cb;
        f->inl[f->ninline].arg = arg;
        f->ninline++;
        return 0;
    }
    cb_node *n = malloc(sizeof *n);
    if (!n) return -ENOMEM;
    n->cb = cb;
    n->arg = arg;
    n->next = NULL;
    cb_node **p = &f->more;
    while (*p) p = &(*p)->next;
    *p = n;
    return 0;
}

void *sq__future_first_arg(const sq_future *f, sq_future_cb cb)
{
    return f->ninline && f->inl[0].cb == cb ? f->inl[0].arg : NULL;
}

int sq_future_remove_done_callback(sq_future *f, sq_future_cb cb, void *arg)
{
    /* While resolve() walks the entries (an earlier callback removing a later one), an entry
     * is blanked, not shifted or freed under it. */
    for (unsigned i = 0; i < f->ninline; i++) {
        if (f->inl[i].cb == cb && f->inl[i].arg == arg) {
            if (f->firing) {
                f->inl[i].cb = NULL;
                return 0;
            }
            memmove(&f->inl[i], &f->inl[i + 1], (f->ninline - i - 1) * sizeof f->inl[0]);
            f->ninline--;
            /* Keep order: pull the first overflow callback into the inline slots. */
            if (f->more) {
                cb_node *n = f->more;
                f->inl[f->ninline].cb = n->cb;
                f->inl[f->ninline].arg = n->arg;
                f->ninline++;
                f->more = n->next;
                free(n);
            }
            return 0;
        }
    }
    for (cb_node **p = &f->more; *p; p = &(*p)->next) {
        if ((*p)->cb == cb && (*p)->arg == arg) {
            if (f->firing) {
                (*p)->cb = NULL;
                return 0;
            }
            cb_node *n = *p;
            *p = n->next;
            free(n);
            return 0;
        }
    }
    return -ENOENT;
}

/* --- awaiting ----------------------------------------------------------------------------- */

static void wake_waiter(sq_future *f, void *arg)
{
    sq_coro_wake(arg);
}

int64_t sq_await(sq_future *f, void **value)
{
    if (value) *value = NULL;
    if (!f) return -ENOMEM;
    sq_coro *self = sq_coro_self();
    if (f->state != F_DONE) {
        if (!self) {
            sq_log(SQ_LOG_ERROR, "sq_await: called outside a coroutine; it would block forever "
                                 "(run the code with sq_spawn or sq_go)");
            sq_future_release(f);
            return SQ_ENOTCORO;
        }
        int r = sq_future_add_done_callback(f, wake_waiter, self);
        if (r < 0) {
            sq_future_release(f);
            return r;
        }
        sq__coro_set_awaiting(self, f);
        while (f->state != F_DONE) sq_coro_suspend();
        sq__coro_set_awaiting(self, NULL);
    }
    int64_t status = f->status;
    if (value) *value = claim_value(f);
    sq_future_release(f);
    return status;
}

void sq__future_abandon_await(sq_future *f, sq_coro *c)
{
    sq_future_remove_done_callback(f, wake_waiter, c);
    /* resolve it while c's stack is still mapped: done callbacks that unlink nodes living on
     * that stack (sync.c's waiters) run now, not after the stack is gone */
    sq_future_cancel(f);
    sq_future_release(f);
}

int sq_gather(sq_future **fs, size_t n, void **values, int64_t *statuses)
{
    /* Every future is already running: awaiting them one after another costs the longest
     * of them, not the sum. */
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        /* The loop is being freed and cancels what its coroutines await, one future per
         * round: the rest are cancelled here, or a long gather would outlast the rounds and
         * be discarded with its futures unreleased. */
        if (fs[i] && fs[i]->state != F_DONE && fs[i]->loop->freeing) sq_future_cancel(fs[i]);
        int64_t st = sq_await(fs[i], values ? &v : NULL);
        if (values) values[i] = v;
        if (statuses) statuses[i] = st;
        if (st < 0 && !first) first = (int)st;
    }
    return first;
}

/* --- timeouts -------------------------------------------------------------------------------- */

typedef struct timeout_state {
    sq_future *inner; /* our reference to the awaited future */
    sq_future *outer; /* the producer's reference to the returned future */
    sq_call *timer;
} timeout_state;

static void timeout_finish(timeout_state *st)
{
    sq_future_release(st->inner);
    sq_future_release(st->outer);
    free(st);
}

static void timeout_inner_done(sq_future *inner, void *arg)
{
    timeout_state *st = arg;
    if (st->timer) sq_call_cancel(st->timer);
    st->timer = NULL;
    forward_result(st->outer, inner);
    timeout_finish(st);
}

static void timeout_fired(void *arg)
{
    timeout_state *st = arg;
    st->timer = NULL; /* the handle died when it fired */
    /* The outer future's callbacks may resolve the inner one (closing the stream it reads
     * from): timeout_inner_done then frees st before we get back here. */
    sq_future *inner = sq_future_retain(st->inner);
    sq_future_resolve(st->outer, -ETIMEDOUT, NULL);
    /* Cancelling the inner future runs timeout_inner_done, which releases everything; if
     * it was not cancellable (already done) the callback ran before we got here. */
    sq_future_cancel(inner);
    sq_future_release(inner);
}

/* The loop is freed with the timeout pending: drop what the timeout holds. */
static void timeout_dispose(void *arg)
{
    timeout_state *st = arg;
    sq_future_remove_done_callback(st->inner, timeout_inner_done, st);
    sq_future_set_cancel_hook(st->outer, NULL, NULL);
    timeout_finish(st);
}

static void timeout_outer_cancelled(sq_future *outer, void *arg)
{
    timeout_state *st = arg;
    sq_future_cancel(st->inner);
}

sq_future *sq_with_timeout(sq_future *f, double seconds)
{
    if (!f) return NULL;
    sq_future *out = sq_future_new(f->loop);
    timeout_state *st = malloc(sizeof *st);
    if (!out || !st) {
        free(st);
        sq_future_release(out);
        sq_future_release(f);
        return NULL;
    }
    if (f->state == F_DONE) {
        forward_result(out, f);
        sq_future_release(f);
        free(st);
        return out;
    }
    st->inner = f;
    st->outer = sq_future_retain(out);
    st->timer = sq_call_later(f->loop, seconds, timeout_fired, st);
    /* no timer: out of memory, or the loop closed by sq_loop_free (ESHUTDOWN) */
    int err = st->timer || errno != ESHUTDOWN ? -ENOMEM : -ESHUTDOWN;
    if (st->timer) sq__call_set_dispose(st->timer, timeout_dispose);
    sq_future_set_cancel_hook(out, timeout_outer_cancelled, st);
    if (!st->timer || sq_future_add_done_callback(f, timeout_inner_done, st) < 0) {
        /* Without its timer or its callback the timeout would silently not apply. */
        sq_call_cancel(st->timer);
        sq_future_set_cancel_hook(out, NULL, NULL);
        sq_future_set_error(out, err);
        timeout_finish(st);
    }
    return out;
}

/* --- sleeping ------------------------------------------------------------------------------ */

static void sleep_fired(void *arg)
{
    sq_future *f = arg;
    sq_future_resolve(f, 0, NULL);
    sq_future_release(f); /* the timer's reference */
}

static void sleep_cancelled(sq_future *f, void *arg)
{
    sq_call_cancel(arg);
    sq_future_release(f); /* the timer's reference: it will never fire now */
}

/* The loop is freed before the sleep ended: only the timer's reference goes. */
static void sleep_dispose(void *arg)
{
    sq_future *f = arg;
    sq_future_set_cancel_hook(f, NULL, NULL); /* the call it names is being freed */
    sq_future_release(f);
}

sq_future *sq_sleep_future(sq_loop *loop, double seconds)
{
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    sq_call *c = sq_call_later(f->loop, seconds, sleep_fired, f);
    if (!c) {
        sq_future_release(f);
        return NULL;
    }
    sq_future_retain(f);
    sq_future_set_cancel_hook(f, sleep_cancelled, c);
    sq__call_set_dispose(c, sleep_dispose);
    return f;
}

int sq_sleep(double seconds)
{
    sq_coro *self = sq_coro_self();
    if (!self) {
        sq_log(SQ_LOG_ERROR, "sq_sleep: called outside a coroutine (it suspends only coroutines)");
        return SQ_ENOTCORO;
    }
    return (int)sq_await(sq_sleep_future(sq_coro_loop(self), seconds), NULL);
}

int sq_yield(void)
{
    sq_coro *self = sq_coro_self();
    if (!self) return SQ_ENOTCORO;
    sq_coro_wake(self);
    return sq_coro_suspend();
}

/* --- chaining (tornado.concurrent.chain_future) ---------------------------------------------- */

/* Runs on a with `b` (our reference) as its argument; our reference to a is released here. */
static void chain_done(sq_future *a, void *arg)
{
    sq_future *b = arg;
    if (b->state != F_DONE) {
        if (a->cancelled)
            sq_future_cancel(b);
        else
            forward_result(b, a);
    }
    sq_future_release(b);
    sq_future_release(a); /* resolve() holds its own reference while callbacks run */
}

int sq_future_chain(sq_future *a, sq_future *b)
{
    if (!a || !b || a == b || a->loop != b->loop) return -EINVAL;
    sq_future_retain(a);
    sq_future_retain(b);
    int r = sq_future_add_done_callback(a, chain_done, b);
    if (r < 0) {
        sq_future_release(b);
        sq_future_release(a);
    }
    return r;
}

/* --- wait iterator (tornado.gen.WaitIterator) ---------------------------------------------- */

typedef struct wi_slot {
    struct sq_wait_iter *it;
    sq_future *f; /* our reference; NULL once released (or a NULL input) */
} wi_slot;

/* Where a coroutine in sq_wait_iter_next() wants its result: on its own stack, so that the
 * coroutine never touches the iterator after it wakes (someone may have freed it). */
typedef struct wi_target {
    size_t index;
    int64_t status;
    void *value;
    bool want_value;
} wi_target;

struct sq_wait_iter {
    sq_loop *loop;
    size_t n, produced;
    wi_slot *slots;
    size_t *ready; /* ring of finished, not yet produced indices (capacity n) */
    size_t rhead, rlen;
    sq_future *next;   /* the pending sq_wait_iter_next_future (our reference) */
    wi_target *target; /* its coroutine's result slot, if a coroutine waits */
    size_t cur;        /* index of the current future; SIZE_MAX: none */
};

static void wi_drop_current(sq_wait_iter *it)
{
    if (it->cur == SIZE_MAX) return;
    sq_future_release(it->slots[it->cur].f);
    it->slots[it->cur].f = NULL;
    it->cur = SIZE_MAX;
}

/* Produce the oldest finished index into `f` (resolved last: its callbacks may free `it`). */
static void wi_deliver(sq_wait_iter *it, sq_future *f, wi_target *t)
{
    size_t i = it->ready[it->rhead];
    it->rhead = (it->rhead + 1) % it->n;
    it->rlen--;
    it->produced++;
    wi_drop_current(it);
    it->cur = i;
    if (t) {
        sq_future *done = it->slots[i].f;
        t->index = i;
        t->status = done ? done->status : -ENOMEM;
        t->value = done && t->want_value ? claim_value(done) : NULL;
    }
    sq_future_resolve(f, (int64_t)i, NULL);
}

static void wi_slot_done(sq_future *f, void *arg)
{
    wi_slot *slot = arg;
    sq_wait_iter *it = slot->it;
    it->ready[(it->rhead + it->rlen) % it->n] = (size_t)(slot - it->slots);
    it->rlen++;
    sq_future *next = it->next;
    if (!next) return;
    wi_target *t = it->target;
    it->next = NULL;
    it->target = NULL;
    sq_future_set_cancel_hook(next, NULL, NULL);
    wi_deliver(it, next, t);
    sq_future_release(next);
}

static void wi_next_cancelled(sq_future *f, void *arg)
{
    sq_wait_iter *it = arg;
    if (it->next != f) return;
    it->next = NULL;
    it->target = NULL;
    sq_future_release(f);
}

sq_wait_iter *sq_wait_iter_new(sq_future **fs, size_t n)
{
    sq_loop *loop = NULL;
    for (size_t i = 0; i < n && !loop; i++)
        if (fs[i]) loop = fs[i]->loop;
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    sq_wait_iter *it = calloc(1, sizeof *it);
    if (it) {
        it->slots = calloc(n ? n : 1, sizeof *it->slots);
        it->ready = calloc(n ? n : 1, sizeof *it->ready);
    }
    if (!it || !it->slots || !it->ready) {
        if (it) {
            free(it->slots);
            free(it->ready);
            free(it);
        }
        for (size_t i = 0; i < n; i++) sq_future_release(fs[i]);
        return NULL;
    }
    it->loop = loop;
    it->n = n;
    it->cur = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        wi_slot *slot = &it->slots[i];
        slot->it = it;
        slot->f = fs[i];
        /* Already done (or NULL, or no memory for the callback): finished right now. */
        if (!fs[i] || sq_future_add_done_callback(fs[i], wi_slot_done, slot) < 0) {
            if (fs[i] && !sq_future_done(fs[i])) {
                sq_future_release(fs[i]);
                slot->f = NULL; /* produced as an -ENOMEM failure */
            }
            if (!fs[i] || !slot->f) wi_slot_done(NULL, slot);
        }
    }
    return it;
}

sq_future *sq_wait_iter_next_future(sq_wait_iter *it)
{
    sq_future *f = sq_future_new(it->loop);
    if (!f) return NULL;
    if (it->next) {
        sq_future_set_error(f, -EBUSY);
    } else if (it->rlen) {
        wi_deliver(it, f, NULL);
    } else if (it->produced == it->n) {
        wi_drop_current(it);
        sq_future_set_error(f, -ENOENT);
    } else {
        wi_drop_current(it);
        it->next = sq_future_retain(f);
        sq_future_set_cancel_hook(f, wi_next_cancelled, it);
    }
    return f;
}

int sq_wait_iter_next(sq_wait_iter *it, size_t *index, int64_t *status, void **value,
                      double timeout)
{
    if (value) *value = NULL;
    if (!sq_coro_self()) {
        sq_log(SQ_LOG_ERROR, "sq_wait_iter_next: called outside a coroutine (use "
                             "sq_wait_iter_next_future)");
        return SQ_ENOTCORO;
    }
    wi_target t = {.want_value = value != NULL};
    if (it->next) return -EBUSY;
    if (it->produced == it->n) {
        wi_drop_current(it);
        return 0;
    }
    sq_future *f = sq_future_new(it->loop);
    if (!f) return -ENOMEM;
    if (it->rlen) {
        wi_deliver(it, f, &t);
        sq_future_release(f);
    } else {
        wi_drop_current(it);
        it->next = sq_future_retain(f);
        it->target = &t;
        sq_future_set_cancel_hook(f, wi_next_cancelled, it);
        sq_future *mine = sq_future_retain(f);
        sq_future *aw = f;
        if (timeout >= 0) aw = sq_with_timeout(aw, timeout);
        int64_t r = sq_await(aw, NULL);
        if (mine->state != F_DONE) {
            /* The await failed before parking (-ENOMEM): nobody else ran, `it` is alive. */
            it->next = NULL;
            it->target = NULL;
            sq_future_set_cancel_hook(mine, NULL, NULL);
            sq_future_release(mine);
        }
        sq_future_release(mine);
        /* From here on `it` may be gone (freed while we slept: r is -ECANCELED then). */
        if (r < 0) return (int)r;
    }
    if (index) *index = t.index;
    if (status) *status = t.status;
    if (value) *value = t.value;
    return 1;
}

sq_future *sq_wait_iter_current(const sq_wait_iter *it, size_t *index)
{
    if (it->cur == SIZE_MAX) return NULL;
    if (index) *index = it->cur;
    return it->slots[it->cur].f;
}

bool sq_wait_iter_done(const sq_wait_iter *it)
{
    return it->produced == it->n;
}

void sq_wait_iter_free(sq_wait_iter *it)
{
    if (!it) return;
    for (size_t i = 0; i < it->n; i++) {
        sq_future *f = it->slots[i].f;
        if (!f) continue;
        it->slots[i].f = NULL;
        /* Also when f is done: its callbacks may be running (an earlier one freeing us),
         * and ours must then not run on the freed slot. */
        sq_future_remove_done_callback(f, wi_slot_done, &it->slots[i]);
        sq_future_release(f);
    }
    sq_future *next = it->next;
    it->next = NULL;
    it->target = NULL;
    free(it->slots);
    free(it->ready);
    free(it);
    if (next) {
        /* A coroutine waiting in sq_wait_iter_next wakes with -ECANCELED. */
        sq_future_set_cancel_hook(next, NULL, NULL);
        sq_future_cancel(next);
        sq_future_release(next);
    }
}
