/* A thread pool for blocking work whose results come back on the loop thread.
 *
 * Futures are not thread-safe, so a worker never touches one: it runs fn(arg), stores the
 * result in the job and hands the job back to the submitting loop with
 * sq_add_callback_threadsafe(); job_complete() then resolves the future and frees the job
 * there.  Every job takes that road exactly once, whether it ran, was skipped after a
 * cancellation, or was dropped by sq_executor_free() — so its memory and its reference to
 * the future are released exactly once, always on the loop thread.
 *
 * Cancellation races with workers picking jobs up; a per-job atomic state settles it without
 * the cancel hook having to touch the executor (which may already be gone when a job's
 * future is cancelled): QUEUED -> RUNNING (a worker took it) or QUEUED -> CANCELLED (the
 * hook got there first; the worker that later pops it skips fn).
 */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

enum { JOB_QUEUED, JOB_RUNNING, JOB_CANCELLED };

typedef struct job {
    struct job *next;
    sq_loop *loop;
    sq_future *fut; /* the job's own reference */
    sq_job_fn fn;
    void *arg;
    void *result;
    int status;
    atomic_int state;
    struct sq_executor *ex;
    bool counted; /* still counted in ex->nqueued (under ex->lock) */
} job;

struct sq_executor {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *head, *tail;
    size_t nqueued;    /* jobs waiting for a worker */
    size_t max_queued; /* 0: no bound */
    bool shutdown;
    size_t nthreads;
    pthread_t *threads;
};

/* --- the loop side ------------------------------------------------------------------------ */

static void job_complete(void *arg)
{
    job *j = arg;
    /* Already done if it was cancelled: resolve() then says -EALREADY and changes nothing. */
    sq_future_resolve(j->fut, j->status, j->result);
    sq_future_release(j->fut);
    free(j);
}

static void job_hand_back(job *j)
{
    /* Only -ENOMEM can fail here; spinning is the one way not to lose the job. */
    while (sq_add_callback_threadsafe(j->loop, job_complete, j) < 0) usleep(1000);
}

static void job_cancel_hook(sq_future *f, void *arg)
{
    job *j = arg;
    int expected = JOB_QUEUED;
    /* If a worker already has it, it runs to the end; its result is then dropped.  A job
     * cancelled in the queue no longer counts against max_queued (it will be skipped). */
    pthread_mutex_lock(&j->ex->lock);
    if (atomic_compare_exchange_strong(&j->state, &expected, JOB_CANCELLED) && j->counted) {
        j->counted = false;
        j->ex->nqueued--;
    }
    pthread_mutex_unlock(&j->ex->lock);
}

/* --- the worker side ---------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    sq_executor *ex = arg;
    for (;;) {
        pthread_mutex_lock(&ex->lock);
        while (!ex->head && !ex->shutdown) pthread_cond_wait(&ex->cond, &ex->lock);
        job *j = ex->head;
        if (!j) { /* shutting down and nothing left */
            pthread_mutex_unlock(&ex->lock);
            return NULL;
        }
        ex->head = j->next;
        if (!ex->head) ex->tail = NULL;
        if (j->counted) ex->nqueued--;
        j->counted = false;
        pthread_mutex_unlock(&ex->lock);

        int expected = JOB_QUEUED;
        if (atomic_compare_exchange_strong(&j->state, &expected, JOB_RUNNING)) {
            j->result = j->fn(j->arg);
            j->status = 0;
        } else {
            j->status = -ECANCELED;
        }
        job_hand_back(j);
    }
}

/* --- public API ---------------------------------------------------------------------------- */

static size_t default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    size_t n = (size_t)cpus * 4;
    return n < 4 ? 4 : n;
}

sq_executor *sq_executor_new(size_t threads)
{
    if (threads == 0) threads = default_threads();
    sq_executor *ex = calloc(1, sizeof *ex);
    if (!ex) return NULL;
    ex->threads = calloc(threads, sizeof *ex->threads);
    if (!ex->threads) {
        free(ex);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->cond, NULL);
    for (size_t i = 0; i < threads; i++) {
        int err = pthread_create(&ex->threads[i], NULL, worker_main, ex);
        if (err) {
            ex->nthreads = i;
            sq_executor_free(ex);
            errno = err;
            return NULL;
        }
    }
    ex->nthreads = threads;
    return ex;
}

void sq_executor_free(sq_executor *ex)
{
    if (!ex) return;
    pthread_mutex_lock(&ex->lock);
    ex->shutdown = true;
    job *queued = ex->head;
    ex->head = ex->tail = NULL;
    ex->nqueued = 0;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);

    /* Queued jobs never start.  Those of the calling thread's loop are failed right here, so
     * their futures are done when this returns; others go back to their own loop thread. */
    sq_loop *here = sq_loop_current();
    while (queued) {
        job *j = queued;
        queued = j->next;
        atomic_store(&j->state, JOB_CANCELLED);
        j->status = -ECANCELED;
        if (j->loop == here) {
            job_complete(j);
        } else {
            job_hand_back(j);
        }
    }
    /* Running jobs finish; their results are delivered through their loops as usual. */
    for (size_t i = 0; i < ex->nthreads; i++) pthread_join(ex->threads[i], NULL);
    pthread_cond_destroy(&ex->cond);
    pthread_mutex_destroy(&ex->lock);
    free(ex->threads);
    free(ex);
}

size_t sq_executor_threads(const sq_executor *ex)
{
    return ex->nthreads;
}

sq_future *sq_executor_submit(sq_executor *ex, sq_loop *loop, sq_job_fn fn, void *arg)
{
    sq_future *f = sq_future_new(loop);
    if (!f) return NULL;
    job *j = malloc(sizeof *j);
    if (!j) {
        sq_future_release(f);
        return NULL;
    }
    j->next = NULL;
    j->ex = ex;
    j->counted = false;
    j->loop = sq_future_loop(f);
    j->fut = sq_future_retain(f);
    j->fn = fn;
    j->arg = arg;
    j->result = NULL;
    j->status = 0;
    atomic_init(&j->state, JOB_QUEUED);
    sq_future_set_cancel_hook(f, job_cancel_hook, j);

    pthread_mutex_lock(&ex->lock);
    bool closed = ex->shutdown;
    bool full = !closed && ex->max_queued && ex->nqueued >= ex->max_queued;
    if (!closed && !full) {
        ex->nqueued++;
        j->counted = true;
        if (ex->tail) {
            ex->tail->next = j;
        } else {
            ex->head = j;
        }
        ex->tail = j;
        pthread_cond_signal(&ex->cond);
    }
    pthread_mutex_unlock(&ex->lock);
    if (closed || full) { /* full, or submitted from a done callback of sq_executor_free() */
        sq_future_set_cancel_hook(f, NULL, NULL);
        sq_future_set_error(f, full ? -EAGAIN : SQ_ELOOPCLOSED);
        sq_future_release(j->fut);
        free(j);
    }
    return f;
}

/* The default pool.  Kept in a static pointer for the life of the process (LeakSanitizer
 * counts it as reachable); freeing it at exit could block on a job that never returns.  It is
 * read on every sq_run_in_executor(), from any loop thread: an atomic load on that path; the
 * mutex only serialises creating the built-in pool and replacing it. */
static _Atomic(sq_executor *) default_executor;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

sq_executor *sq_executor_default(void)
{
    sq_executor *ex = atomic_load_explicit(&default_executor, memory_order_acquire);
    if (SQ__LIKELY(ex != NULL)) return ex;
    pthread_mutex_lock(&default_lock);
    ex = atomic_load_explicit(&default_executor, memory_order_acquire);
    if (!ex) {
        ex = sq_executor_new(0);
        atomic_store_explicit(&default_executor, ex, memory_order_release);
    }
    pthread_mutex_unlock(&default_lock);
    return ex;
}

sq_executor *sq_executor_set_default(sq_executor *ex)
{
    pthread_mutex_lock(&default_lock);
    sq_executor *old = atomic_exchange_explicit(&default_executor, ex, memory_order_acq_rel);
    pthread_mutex_unlock(&default_lock);
    return old;
}

sq_future *sq_run_in_executor(sq_job_fn fn, void *arg)
{
    sq_executor *ex = sq_executor_default();
    if (!ex) return NULL;
    return sq_executor_submit(ex, NULL, fn, arg);
}

void sq_executor_set_max_queued(sq_executor *ex, size_t max)
{
    pthread_mutex_lock(&ex->lock);
    ex->max_queued = max;
    pthread_mutex_unlock(&ex->lock);
}
