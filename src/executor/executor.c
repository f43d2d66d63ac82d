/* A thread pool for blocking work whose results come back on the loop thread.
 *
 * Futures are not thread-safe, so a worker never touches one: it runs fn(arg), stores the
 * result in the job and hands the job back to the submitting loop with
 * sq_add_callback_threadsafe(); job_complete() then resolves the future and frees the job
 * there.  Every job ends in job_complete() exactly once, always on its loop thread: after it
 * ran, when it is cancelled in the queue (at once, from the cancel hook), or when
 * sq_executor_free() drops it (at once for the calling thread's loop, else handed back).
 *
 * Cancellation is settled under the pool's lock: a job still in the queue is taken out and
 * completed at once (-ECANCELED); one a worker has taken runs to the end and its result is
 * dropped.  The pool's memory lives as long as a job of it does (a reference each): a job's
 * future may be cancelled after sq_executor_free() returned, while its completion waits in
 * the loop's queue.  Each job is listed on its loop until it completes, so that a loop freed
 * first cancels what it has not started and waits for what runs (loop.c, remote_drain).
 */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

typedef struct job {
    sq__remote link; /* on the loop's list; link.fut is the job's own reference */
    struct job *qprev, *qnext;
    bool queued; /* in ex's queue (under ex->lock) */
    sq_loop *loop;
    sq_job_fn fn;
    void *arg;
    void *result;
    int status;
    struct sq_executor *ex;
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
    atomic_size_t refs; /* sq_executor_free's, and one per job not yet completed */
};

static void ex_unref(sq_executor *ex)
{
    if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1) return;
    pthread_cond_destroy(&ex->cond);
    pthread_mutex_destroy(&ex->lock);
    free(ex->threads);
    free(ex);
}

/* Under ex->lock. */
static void queue_unlink(sq_executor *ex, job *j)
{
    if (j->qprev) {
        j->qprev->qnext = j->qnext;
    } else {
        ex->head = j->qnext;
    }
    if (j->qnext) {
        j->qnext->qprev = j->qprev;
    } else {
        ex->tail = j->qprev;
    }
    j->qprev = j->qnext = NULL;
    j->queued = false;
    ex->nqueued--;
}

/* --- the loop side ------------------------------------------------------------------------ */

static void job_complete(void *arg)
{
    job *j = arg;
    sq_executor *ex = j->ex;
    sq__loop_remote_del(j->loop, &j->link);
    /* Already done if it was cancelled: resolve() then says -EALREADY and changes nothing. */
    sq_future_resolve(j->link.fut, j->status, j->result);
    sq_future_release(j->link.fut);
    free(j);
    ex_unref(ex);
}

static void job_hand_back(job *j)
{
    /* Only -ENOMEM can fail here; spinning is the one way not to lose the job. */
    while (sq_add_callback_threadsafe(j->loop, job_complete, j) < 0) usleep(1000);
}

static void job_cancel_hook(sq_future *f, void *arg)
{
    job *j = arg;
    /* Still queued: out of the queue and done now.  A worker that has it runs it to the end;
     * its result is then dropped. */
    pthread_mutex_lock(&j->ex->lock);
    bool was_queued = j->queued;
    if (was_queued) queue_unlink(j->ex, j);
    pthread_mutex_unlock(&j->ex->lock);
    if (was_queued) {
        j->status = -ECANCELED;
        job_complete(j);
    }
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
        queue_unlink(ex, j);
        pthread_mutex_unlock(&ex->lock);
        j->result = j->fn(j->arg);
        j->status = 0;
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
    atomic_init(&ex->refs, 1);
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
    for (job *j = queued; j; j = j->qnext) j->queued = false;
    ex->head = ex->tail = NULL;
    ex->nqueued = 0;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);

    /* Queued jobs never start.  Those of the calling thread's loop are failed right here, so
     * their futures are done when this returns; others go back to their own loop thread. */
    sq_loop *here = sq_loop_current();
    while (queued) {
        job *j = queued;
        queued = j->qnext;
        j->qprev = j->qnext = NULL;
        j->status = -ECANCELED;
        if (j->loop == here) {
            job_complete(j);
        } else {
            job_hand_back(j);
        }
    }
    /* Running jobs finish; their results are delivered through their loops as usual.  The
     * memory goes with the last of them. */
    for (size_t i = 0; i < ex->nthreads; i++) pthread_join(ex->threads[i], NULL);
    ex_unref(ex);
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
    *j = (job){.ex = ex, .loop = sq_future_loop(f), .fn = fn, .arg = arg};
    j->link.fut = sq_future_retain(f);
    /* SQ_ELOOPCLOSED: the loop is being freed, or the pool (from a done callback of
     * sq_executor_free()); -EAGAIN: the queue is full. */
    int err = sq__loop_remote_add(j->loop, &j->link);
    if (!err) {
        pthread_mutex_lock(&ex->lock);
        if (ex->shutdown) {
            err = SQ_ELOOPCLOSED;
        } else if (ex->max_queued && ex->nqueued >= ex->max_queued) {
            err = -EAGAIN;
        } else {
            atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
            j->queued = true;
            ex->nqueued++;
            j->qprev = ex->tail;
            if (ex->tail) {
                ex->tail->qnext = j;
            } else {
                ex->head = j;
            }
            ex->tail = j;
            pthread_cond_signal(&ex->cond);
        }
        pthread_mutex_unlock(&ex->lock);
        if (err) sq__loop_remote_del(j->loop, &j->link);
    }
    if (err) {
        sq_future_set_error(f, err);
        sq_future_release(j->link.fut);
        free(j);
        return f;
    }
    /* The job cannot complete before this: that happens on this thread. */
    sq_future_set_cancel_hook(f, job_cancel_hook, j);
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
