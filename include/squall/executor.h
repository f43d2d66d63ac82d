/** @file squall/executor.h
 * A thread pool for blocking work (Tornado's run_on_executor).
 *
 * Jobs run on worker threads; their futures are completed on the loop thread that
 * submitted them, through sq_add_callback_threadsafe().  A job must not touch the loop.
 */
#ifndef SQUALL_EXECUTOR_H
#define SQUALL_EXECUTOR_H

#include <stddef.h>

#include "squall/future.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A pool of worker threads for blocking work (opaque). */
typedef struct sq_executor sq_executor;
/** Runs on a worker thread; its return value becomes the future's value (status 0). */
typedef void *(*sq_job_fn)(void *arg);

/** A pool of `threads` workers (0: 4 per CPU, at least 4).  NULL with errno on failure. */
sq_executor *sq_executor_new(size_t threads);
/** Wait for running jobs, fail queued ones with -ECANCELED, join the workers, free.  A job's
 * future may still be cancelled afterwards (its completion waiting in its loop's queue). */
void sq_executor_free(sq_executor *ex);
/** The number of worker threads in the pool. */
size_t sq_executor_threads(const sq_executor *ex);
/** Queue fn(arg).  The future resolves on `loop` (NULL: the current loop) with fn's return
 * value; cancelling it before a worker picks it up skips the job (the future is done at
 * once).  NULL on -ENOMEM; a future failed with SQ_ELOOPCLOSED if the pool or the loop is
 * being freed.  Freeing the loop cancels its jobs not started yet and waits for its running
 * ones to return (a running job cannot be interrupted).  Call it on `loop`'s own thread:
 * the future is created there and futures are not thread-safe. */
sq_future *sq_executor_submit(sq_executor *ex, sq_loop *loop, sq_job_fn fn, void *arg);
/** Bound the jobs waiting for a free worker (0, the default: no bound).  Past it,
 * sq_executor_submit still returns a future, already failed with -EAGAIN: shed the load
 * (answer 503) rather than let the queue delay every later job without limit. */
void sq_executor_set_max_queued(sq_executor *ex, size_t max);
/** The process-wide default pool: the one set with sq_executor_set_default(), else a
 * built-in pool created on first use. */
sq_executor *sq_executor_default(void);
/** Make `ex` the default pool, the one sq_run_in_executor() (and so name resolution for
 *  sq_tcp_connect) submits to; NULL goes back to a built-in pool created on next use.
 *  Ownership: squall never frees a default pool.  `ex` stays the caller's, who must not free
 *  it while it is the default; the pool it replaces is returned and is now the caller's too
 *  (the built-in one included) — free it with sq_executor_free() once no thread can still be
 *  submitting to it (jobs already queued on it run or are cancelled as sq_executor_free
 *  says), or keep it.  Thread-safe.
 *  @return the previous default pool, or NULL if none had been created yet. */
sq_executor *sq_executor_set_default(sq_executor *ex);
/** sq_executor_submit() on the default pool and the current loop. */
sq_future *sq_run_in_executor(sq_job_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
