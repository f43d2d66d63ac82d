/* Events, conditions, semaphores, locks and queues for the coroutines of one loop, with the
 * semantics of Tornado's tornado.locks and tornado.queues.
 *
 * Every waiting coroutine parks on a future and a waiter node that lives on its own stack.
 * The node is linked into the object's FIFO of waiters while the future is pending and is
 * unlinked by a done callback the moment the future resolves — whether it was notified,
 * timed out (sq_with_timeout cancels it) or the object was freed.  So the lists only ever
 * hold live waiters: a waiter that timed out can never be handed a notify, a permit or an
 * item, and nothing is lost.  Notifiers pass permits and items directly to the waiter they
 * wake (no barging), which is what makes the lock FIFO.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- waiter lists ------------------------------------------------------------------------- */

typedef struct waiter {
    struct waiter *prev, *next;
    struct waitlist *list; /* NULL once unlinked */
    sq_future *f;          /* a reference of the node's, dropped when f resolves */
    void *item;   /* a queue putter's item */
    int64_t prio; /* and its priority (priority queues) */
} waiter;

typedef struct waitlist {
    waiter *head, *tail;
    size_t len;
} waitlist;

static void wl_unlink(waiter *w)
{
    waitlist *wl = w->list;
    if (!wl) return;
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        wl->head = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    } else {
        wl->tail = w->prev;
    }
    w->prev = w->next = NULL;
    w->list = NULL;
    wl->len--;
}

static void wl_push(waitlist *wl, waiter *w)
{
    w->list = wl;
    w->next = NULL;
    w->prev = wl->tail;
    if (wl->tail) {
        wl->tail->next = w;
    } else {
        wl->head = w;
    }
    wl->tail = w;
    wl->len++;
}

static void waiter_done(sq_future *f, void *arg)
{
    waiter *w = arg;
    wl_unlink(w);
    /* Dropped here, not by wl_wait after its await: a coroutine discarded by sq_loop_free
     * never gets there (its awaited future is resolved before its stack goes). */
    w->f = NULL;
    sq_future_release(f); /* resolve() holds one of its own while the callbacks run */
}

/* Wake the oldest waiter with (status, value); false if there was none. */
static bool wl_wake_one(waitlist *wl, int status, void *value)
{
    waiter *w = wl->head;
    if (!w) return false;
    /* Resolving runs waiter_done, which unlinks w; w may be gone after this call. */
    sq_future_resolve(w->f, status, value);
    return true;
}

static void wl_wake_all(waitlist *wl, int status)
{
    /* Only waiters present now: anyone who starts waiting meanwhile is not woken. */
    size_t n = wl->len;
    while (n-- && wl_wake_one(wl, status, NULL)) {
    }
}

/* Park the calling coroutine on wl until woken or `timeout` seconds pass (negative: no
 * limit).  The caller fills w->item if it needs to.  Returns the status it was woken with,
 * -ETIMEDOUT, -ECANCELED, -ENOMEM or SQ_ENOTCORO. */
static int wl_wait(waitlist *wl, sq_loop *loop, double timeout, waiter *w, void **value,
                   const char *what)
{
    if (value) *value = NULL;
    if (!sq_coro_self()) {
        sq_log(SQ_LOG_ERROR, "%s: called outside a coroutine; it would block forever", what);
        return SQ_ENOTCORO;
    }
    sq_future *f = sq_future_new(loop);
    if (!f) return -ENOMEM;
    w->f = f; /* the node's reference, dropped by waiter_done */
    if (sq_future_add_done_callback(f, waiter_done, w) < 0) {
        sq_future_release(f);
        return -ENOMEM;
    }
    wl_push(wl, w);
    sq_future *aw = sq_future_retain(f);
    if (timeout >= 0) aw = sq_with_timeout(aw, timeout);
    int r = (int)sq_await(aw, value);
    if (w->f) {
        /* The await failed before parking (-ENOMEM): withdraw without touching w later. */
        sq_future_remove_done_callback(f, waiter_done, w);
        wl_unlink(w);
        w->f = NULL;
        sq_future_cancel(f);
        sq_future_release(f);
    }
    return r;
}

static sq_loop *pick_loop(sq_loop *loop)
{
    if (!loop) loop = sq_loop_current();
    if (!loop) loop = sq_loop_default();
    return loop;
}

/* --- event -------------------------------------------------------------------------------- */

struct sq_event {
    sq_loop *loop;
    bool set;
    waitlist waiters;
};

sq_event *sq_event_new(sq_loop *loop)
{
    sq_event *ev = calloc(1, sizeof *ev);
    if (ev) ev->loop = pick_loop(loop);
    return ev;
}

void sq_event_free(sq_event *ev)
{
    if (!ev) return;
    wl_wake_all(&ev->waiters, -ECANCELED);
    free(ev);
}

void sq_event_set(sq_event *ev)
{
    if (ev->set) return;
    ev->set = true;
    wl_wake_all(&ev->waiters, 0);
}

void sq_event_clear(sq_event *ev)
{
    ev->set = false;
}
bool sq_event_is_set(const sq_event *ev)
{
    return ev->set;
}

int sq_event_wait(sq_event *ev, double timeout)
{
    if (ev->set) return 0;
    waiter w = {0};
    return wl_wait(&ev->waiters, ev->loop, timeout, &w, NULL, "sq_event_wait");
}

/* --- condition ---------------------------------------------------------------------------- */

struct sq_condition {
    sq_loop *loop;
    waitlist waiters;
};

sq_condition *sq_condition_new(sq_loop *loop)
{
    sq_condition *c = calloc(1, sizeof *c);
    if (c) c->loop = pick_loop(loop);
    return c;
}

void sq_condition_free(sq_condition *c)
{
    if (!c) return;
    wl_wake_all(&c->waiters, -ECANCELED);
    free(c);
}

int sq_condition_wait(sq_condition *c, double timeout)
{
    waiter w = {0};
    return wl_wait(&c->waiters, c->loop, timeout, &w, NULL, "sq_condition_wait");
}

void sq_condition_notify(sq_condition *c, size_t n)
{
    while (n-- && wl_wake_one(&c->waiters, 0, NULL)) {
    }
}

void sq_condition_notify_all(sq_condition *c)
{
    wl_wake_all(&c->waiters, 0);
}

/* --- semaphore ---------------------------------------------------------------------------- */

struct sq_semaphore {
    sq_loop *loop;
    size_t value;
    size_t bound; /* SIZE_MAX: unbounded */
    waitlist waiters;
};

static sq_semaphore *semaphore_new(sq_loop *loop, size_t value, size_t bound)
{
    sq_semaphore *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = pick_loop(loop);
    s->value = value;
    s->bound = bound;
    return s;
}

sq_semaphore *sq_semaphore_new(sq_loop *loop, size_t value)
{
    return semaphore_new(loop, value, SIZE_MAX);
}

sq_semaphore *sq_bounded_semaphore_new(sq_loop *loop, size_t value)
{
    return semaphore_new(loop, value, value);
}

void sq_semaphore_free(sq_semaphore *s)
{
    if (!s) return;
    wl_wake_all(&s->waiters, -ECANCELED);
    free(s);
}

int sq_semaphore_acquire(sq_semaphore *s, double timeout)
{
    /* Permits are handed straight to waiters, so a free permit means nobody is queued. */
    if (s->value > 0) {
        s->value--;
        return 0;
    }
    waiter w = {0};
    return wl_wait(&s->waiters, s->loop, timeout, &w, NULL, "sq_semaphore_acquire");
}

int sq_semaphore_release(sq_semaphore *s)
{
    if (s->waiters.head) {
        /* The permit goes to the oldest waiter; the count does not move. */
        wl_wake_one(&s->waiters, 0, NULL);
        return 0;
    }
    if (s->value >= s->bound) return -EOVERFLOW;
    s->value++;
    return 0;
}

size_t sq_semaphore_value(const sq_semaphore *s)
{
    return s->value;
}

/* --- lock --------------------------------------------------------------------------------- */

struct sq_lock {
    sq_semaphore sem;
};

sq_lock *sq_lock_new(sq_loop *loop)
{
    sq_lock *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->sem.loop = pick_loop(loop);
    l->sem.value = 1;
    l->sem.bound = 1;
    return l;
}

void sq_lock_free(sq_lock *l)
{
    if (!l) return;
    wl_wake_all(&l->sem.waiters, -ECANCELED);
    free(l);
}

int sq_lock_acquire(sq_lock *l, double timeout)
{
    waiter w = {0};
    if (l->sem.value > 0) {
        l->sem.value = 0;
        return 0;
    }
    return wl_wait(&l->sem.waiters, l->sem.loop, timeout, &w, NULL, "sq_lock_acquire");
}

int sq_lock_release(sq_lock *l)
{
    if (l->sem.value > 0) return -EPERM;
    return sq_semaphore_release(&l->sem);
}

bool sq_lock_locked(const sq_lock *l)
{
    return l->sem.value == 0;
}

/* --- queue -------------------------------------------------------------------------------- */

/* One mechanism for the three kinds: the waiters, task counting and direct hand-over are
 * shared; only where an item is stored and which one comes out next differ.  FIFO and LIFO
 * keep bare pointers in a ring (LIFO takes from the tail); a priority queue keeps a binary
 * min-heap of (item, priority, sequence) entries, the sequence making equal priorities come
 * out in insertion order. */

enum { Q_FIFO, Q_LIFO, Q_PRIORITY };

typedef struct pq_ent {
    void *item;
    int64_t prio;
    uint64_t seq;
} pq_ent;

struct sq_queue {
    sq_loop *loop;
    size_t maxsize;
    void **items; /* FIFO/LIFO ring buffer */
    size_t head, len, cap;
    size_t unfinished;
    int kind;
    pq_ent *heap; /* Q_PRIORITY: min-heap of len entries, cap allocated */
    sq_queue_cmp cmp;
    uint64_t seq;
    waitlist getters, putters, joiners;
};

static sq_queue *queue_new(sq_loop *loop, size_t maxsize, int kind, sq_queue_cmp cmp)
{
    sq_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->loop = pick_loop(loop);
    q->maxsize = maxsize;
    q->kind = kind;
    q->cmp = cmp;
    return q;
}

sq_queue *sq_queue_new(sq_loop *loop, size_t maxsize)
{
    return queue_new(loop, maxsize, Q_FIFO, NULL);
}

sq_queue *sq_lifo_queue_new(sq_loop *loop, size_t maxsize)
{
    return queue_new(loop, maxsize, Q_LIFO, NULL);
}

sq_queue *sq_priority_queue_new(sq_loop *loop, size_t maxsize, sq_queue_cmp cmp)
{
    return queue_new(loop, maxsize, Q_PRIORITY, cmp);
}

void sq_queue_free(sq_queue *q)
{
    if (!q) return;
    wl_wake_all(&q->getters, -ECANCELED);
    wl_wake_all(&q->putters, -ECANCELED);
    wl_wake_all(&q->joiners, -ECANCELED);
    free(q->items);
    free(q->heap);
    free(q);
}

size_t sq_queue_size(const sq_queue *q)
{
    return q->len;
}
bool sq_queue_empty(const sq_queue *q)
{
    return q->len == 0;
}
bool sq_queue_full(const sq_queue *q)
{
    return q->maxsize > 0 && q->len >= q->maxsize;
}

/* Does heap entry a come out before b? */
static bool pq_before(const sq_queue *q, const pq_ent *a, const pq_ent *b)
{
    if (q->cmp) {
        int c = q->cmp(a->item, b->item);
        if (c) return c < 0;
    }
    if (a->prio != b->prio) return a->prio < b->prio;
    return a->seq < b->seq;
}

static int pq_push(sq_queue *q, void *item, int64_t prio)
{
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 8;
        pq_ent *n = realloc(q->heap, ncap * sizeof *n);
        if (!n) return -ENOMEM;
        q->heap = n;
        q->cap = ncap;
    }
    pq_ent e = {item, prio, q->seq++};
    size_t i = q->len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pq_before(q, &e, &q->heap[parent])) break;
        q->heap[i] = q->heap[parent];
        i = parent;
    }
    q->heap[i] = e;
    return 0;
}

static void *pq_pop(sq_queue *q)
{
    void *item = q->heap[0].item;
    pq_ent last = q->heap[--q->len];
    size_t i = 0, n = q->len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pq_before(q, &q->heap[c + 1], &q->heap[c])) c++;
        if (!pq_before(q, &q->heap[c], &last)) break;
        q->heap[i] = q->heap[c];
        i = c;
    }
    if (n) q->heap[i] = last;
    return item;
}

/* Store an item and count one more unfinished task. */
static int queue_push(sq_queue *q, void *item, int64_t prio)
{
    if (SQ__UNLIKELY(q->kind == Q_PRIORITY)) {
        int r = pq_push(q, item, prio);
        if (r == 0) q->unfinished++;
        return r;
    }
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 8;
        void **n = malloc(ncap * sizeof *n);
        if (!n) return -ENOMEM;
        for (size_t i = 0; i < q->len; i++) n[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = n;
        q->head = 0;
        q->cap = ncap;
    }
    q->items[(q->head + q->len) % q->cap] = item;
    q->len++;
    q->unfinished++;
    return 0;
}

/* Take the next item: the oldest (FIFO), the newest (LIFO) or the smallest (priority). */
static void *queue_pop(sq_queue *q)
{
    if (SQ__LIKELY(q->kind == Q_FIFO)) {
        void *item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        return item;
    }
    if (q->kind == Q_LIFO) return q->items[(q->head + --q->len) % q->cap];
    return pq_pop(q);
}

static int queue_put_nowait(sq_queue *q, void *item, int64_t prio)
{
    if (q->getters.head) {
        /* Waiting getters mean the queue is empty: hand the item over directly. */
        q->unfinished++;
        wl_wake_one(&q->getters, 0, item);
        return 0;
    }
    if (sq_queue_full(q)) return -EAGAIN;
    return queue_push(q, item, prio);
}

static int queue_put(sq_queue *q, void *item, int64_t prio, double timeout)
{
    int r = queue_put_nowait(q, item, prio);
    if (r != -EAGAIN) return r;
    waiter w = {0};
    w.item = item;
    w.prio = prio;
    return wl_wait(&q->putters, q->loop, timeout, &w, NULL, "sq_queue_put");
}

int sq_queue_put_nowait(sq_queue *q, void *item)
{
    return queue_put_nowait(q, item, 0);
}

int sq_queue_put(sq_queue *q, void *item, double timeout)
{
    return queue_put(q, item, 0, timeout);
}

int sq_queue_put_priority_nowait(sq_queue *q, void *item, int64_t priority)
{
    if (q->kind != Q_PRIORITY) return -EINVAL;
    return queue_put_nowait(q, item, priority);
}

int sq_queue_put_priority(sq_queue *q, void *item, int64_t priority, double timeout)
{
    if (q->kind != Q_PRIORITY) return -EINVAL;
    return queue_put(q, item, priority, timeout);
}

int sq_queue_get_nowait(sq_queue *q, void **item)
{
    void *dummy;
    if (!item) item = &dummy;
    if (q->len == 0) {
        /* A putter can only be waiting on a full queue; an unbounded or size-0 corner case
         * still serves it directly. */
        waiter *p = q->putters.head;
        if (!p) return -EAGAIN;
        q->unfinished++;
        *item = p->item;
        wl_wake_one(&q->putters, 0, NULL);
        return 0;
    }
    *item = queue_pop(q);
    /* Room was made: the oldest waiting putter moves its item in. */
    waiter *p = q->putters.head;
    if (p && !sq_queue_full(q) && queue_push(q, p->item, p->prio) == 0)
        wl_wake_one(&q->putters, 0, NULL);
    return 0;
}

int sq_queue_get(sq_queue *q, void **item, double timeout)
{
    void *tmp = NULL;
    int r = sq_queue_get_nowait(q, &tmp);
    if (r == -EAGAIN) {
        waiter w = {0};
        r = wl_wait(&q->getters, q->loop, timeout, &w, &tmp, "sq_queue_get");
    }
    if (item) *item = r == 0 ? tmp : NULL;
    return r;
}

int sq_queue_task_done(sq_queue *q)
{
    if (q->unfinished == 0) return -EINVAL;
    if (--q->unfinished == 0) wl_wake_all(&q->joiners, 0);
    return 0;
}

int sq_queue_join(sq_queue *q, double timeout)
{
    if (q->unfinished == 0) return 0;
    waiter w = {0};
    return wl_wait(&q->joiners, q->loop, timeout, &w, NULL, "sq_queue_join");
}
