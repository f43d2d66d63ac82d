/** @file squall/future.h
 * Futures: one result or one error, awaited from coroutines.
 *
 * A future carries a status (>= 0 on success, a negative errno on failure) and a pointer
 * value.  It is reference counted: whoever is handed a future owns one reference and gives
 * it up with sq_future_release() — or by awaiting it: sq_await() and sq_gather() CONSUME the
 * references they are given, so `sq_await(sq_sleep_future(loop, 1.0), NULL)` leaks nothing.
 * A value may be OWNED memory (a fetch response, a connected stream): its producer sets a
 * free function, and the future frees the value when it dies unless someone took it —
 * sq_await()/sq_gather() with a value pointer, or sq_future_take_value().  So a future
 * dropped unawaited, awaited with NULL, or released while pending leaks nothing.
 * All calls belong to the loop thread.
 */
#ifndef SQUALL_FUTURE_H
#define SQUALL_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squall/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A done callback: runs on the loop thread once the future is resolved. */
typedef void (*sq_future_cb)(sq_future *f, void *arg);
/** A cancel hook: what a producer undoes when its future is cancelled. */
typedef void (*sq_cancel_fn)(sq_future *f, void *arg);

/** A pending future with one reference for the caller.  NULL on -ENOMEM. */
sq_future *sq_future_new(sq_loop *loop);
/** Take another reference; returns `f`. */
sq_future *sq_future_retain(sq_future *f);
/** Drop a reference; the last one frees the future (and an owned value nobody took).  NULL is
 * ignored. */
void sq_future_release(sq_future *f);

/** Resolve: status >= 0 is success, negative is an error.  The first resolution wins; later
 * ones return -EALREADY and change nothing.  Done callbacks run before this returns. */
int sq_future_resolve(sq_future *f, int64_t status, void *value);
/** Shorthands: success with a value / failure with a negative errno. */
int sq_future_set_result(sq_future *f, void *value);
/** Resolve with a negative errno `err`; as sq_future_resolve(). */
int sq_future_set_error(sq_future *f, int err);
/** Cancel a pending future: it resolves with -ECANCELED and its producer's cancel hook runs
 * (a sleep drops its timer, an executor job that has not started is skipped).
 * Returns 0, or -EALREADY if it was already done. */
int sq_future_cancel(sq_future *f);
/** Producers: what to undo when the future is cancelled.  At most one hook. */
void sq_future_set_cancel_hook(sq_future *f, sq_cancel_fn fn, void *arg);

/** Whether the future is resolved (successfully, with an error or cancelled). */
bool sq_future_done(const sq_future *f);
/** Whether the future was cancelled (its status is -ECANCELED). */
bool sq_future_cancelled(const sq_future *f);
/** Status and value of a done future (0 / NULL while pending).  sq_future_value() only
 * peeks: an owned value still belongs to the future (freed with it; take it to keep it). */
int64_t sq_future_status(const sq_future *f);
/** The value of a done future, without taking it (NULL while pending). */
void *sq_future_value(const sq_future *f);
/** Consumers: the value of a done future, with its ownership — the future forgets it and
 * will not free it (the caller frees an owned value).  NULL while pending. */
void *sq_future_take_value(sq_future *f);
/** Producers: how to free the value if nobody takes it.  When the last reference goes while
 * the future still holds a non-NULL value, fn(value) is called.  A cancelled future has no
 * value; a producer whose resolve fails (-EALREADY) still owns its value. */
void sq_future_set_value_free(sq_future *f, void (*fn)(void *value));
/** The loop the future belongs to (its callbacks run there). */
sq_loop *sq_future_loop(const sq_future *f);

/** Call cb(f, arg) once f is done — at once if it already is.  Returns 0 or -ENOMEM. */
int sq_future_add_done_callback(sq_future *f, sq_future_cb cb, void *arg);
/** Remove a callback added with the same (cb, arg); returns 0 or -ENOENT. */
int sq_future_remove_done_callback(sq_future *f, sq_future_cb cb, void *arg);

/** Suspend the calling coroutine until f is done; return its status and store its value in
 * *value (if non-NULL) — TAKING an owned value, which the caller then frees; with NULL an
 * owned value is freed with f.  CONSUMES the caller's reference to f.  Outside a coroutine it
 * logs an error and returns SQ_ENOTCORO instead of blocking. */
int64_t sq_await(sq_future *f, void **value);
/** Wait for all n futures (total time is the longest, not the sum).  CONSUMES them.
 * values/statuses, if non-NULL, receive each one's result (owned values are taken, as by
 * sq_await; with values NULL they are freed with their futures).  Returns 0 if all succeeded,
 * else the first error in array order.  NULL entries count as -ENOMEM failures. */
int sq_gather(sq_future **fs, size_t n, void **values, int64_t *statuses);
/** A future that resolves like f, or with -ETIMEDOUT after `seconds` — in which case f is
 * cancelled.  An owned value moves from f to the returned future (with its free function).
 * CONSUMES f; the caller owns the returned future.  NULL on -ENOMEM; a timeout that cannot
 * be armed fails the returned future at once: -ENOMEM, or -ESHUTDOWN once sq_loop_free()
 * has closed the loop (f is released then, not cancelled). */
sq_future *sq_with_timeout(sq_future *f, double seconds);
/** A future resolved with status 0 after `seconds`; cancelling it drops the timer. */
sq_future *sq_sleep_future(sq_loop *loop, double seconds);
/** Suspend only the calling coroutine for `seconds`.  Returns 0, -ECANCELED, or
 * SQ_ENOTCORO when called outside a coroutine. */
int sq_sleep(double seconds);
/** Let every other ready coroutine and callback run, then continue.  While only coroutines
 *  are ready (a loop of sq_yield), the loop polls its IO at least every 100 microseconds, not
 *  on every round, and due timers still fire. */
int sq_yield(void);

/* --- chaining and "as completed" iteration ------------------------------------------------ */

/** Resolve `b` like `a` once `a` is done (tornado.concurrent.chain_future): same status, same
 *  value.  An OWNED value (a has a free function) moves to b together with its free function,
 *  so it keeps exactly one owner: b frees it unless someone takes it from b, and
 *  sq_future_value(a) is NULL afterwards; a plain value is shared.  If a was cancelled, b is
 *  cancelled (sq_future_cancelled(b), and b's own cancel hook runs).  If b is already done
 *  when a finishes — for instance it was cancelled — a's result is dropped (an owned value
 *  stays with a and is freed with it).  As in Tornado, cancelling b does NOT cancel a: the
 *  chain is one way (cancel a yourself if its work should stop).  If a is already done, b is
 *  resolved before this returns.  The chain holds its own references to both futures until
 *  a is done; the caller keeps its references.
 *  @return 0, -EINVAL (a or b NULL, a == b, or futures of different loops), or -ENOMEM. */
int sq_future_chain(sq_future *a, sq_future *b);

/** Iterates over futures in the order they finish (tornado.gen.WaitIterator). */
typedef struct sq_wait_iter sq_wait_iter;
/** Start iterating over fs[0..n-1] as they finish.  CONSUMES the references (like
 *  sq_gather); the array itself is not kept.  Futures already done come first, in array
 *  order; a NULL entry is produced as an -ENOMEM failure.  n may be 0.
 *  @return the iterator (free it with sq_wait_iter_free()), or NULL on -ENOMEM (the futures
 *  are released then too). */
sq_wait_iter *sq_wait_iter_new(sq_future **fs, size_t n);
/** Coroutine form: wait up to `timeout` seconds (negative, e.g. SQ_FOREVER: no limit) for the
 *  next future to finish and report its array index, status and value.  The value is
 *  received as by sq_await(): an owned value is taken (the caller frees it); with value NULL
 *  it is freed with its future.  A failed future is reported normally (its negative status in
 *  *status; the call still returns 1), so errors surface one by one.  Usage:
 *  `while (sq_wait_iter_next(it, &i, &st, &v, SQ_FOREVER) > 0) { … }`.
 *  @return 1 (one produced), 0 once every future has been produced, -ETIMEDOUT (nothing
 *  finished in time; the iterator is unchanged and can be called again), -ECANCELED (the
 *  iterator was freed meanwhile by someone else), -EBUSY (another next is pending),
 *  -ENOMEM, or SQ_ENOTCORO outside a coroutine. */
int sq_wait_iter_next(sq_wait_iter *it, size_t *index, int64_t *status, void **value,
                      double timeout);
/** Callback form: a future resolving, once the next future has finished, with status = its
 *  array index (>= 0); sq_wait_iter_current() then gives that future.  Resolves with -ENOENT
 *  once every future has been produced, -EBUSY if another next is pending; it is resolved at
 *  once when a finished future is already waiting.  Cancelling it (sq_with_timeout) gives
 *  nothing up: the next call gets the future it would have received.  Freeing the iterator
 *  cancels it.  The caller owns the returned future; NULL on -ENOMEM. */
sq_future *sq_wait_iter_next_future(sq_wait_iter *it);
/** The future last produced (borrowed: valid until the next sq_wait_iter_next* call or
 *  sq_wait_iter_free(); take its value with sq_future_take_value() to keep it), with its
 *  array index in *index.  NULL before the first one, after the last, or for a NULL input. */
sq_future *sq_wait_iter_current(const sq_wait_iter *it, size_t *index);
/** True once every future has been produced. */
bool sq_wait_iter_done(const sq_wait_iter *it);
/** Free the iterator, early or not: its done callbacks are removed from the futures still
 *  pending and its references released — pending futures are NOT cancelled (their producers
 *  finish them; owned values nobody took are freed with them).  A pending next future is
 *  cancelled (a coroutine in sq_wait_iter_next() returns -ECANCELED).  NULL is a no-op. */
void sq_wait_iter_free(sq_wait_iter *it);

#ifdef __cplusplus
}
#endif
#endif
