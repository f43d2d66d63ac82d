/* squall/future.h — futures: one result or one error, awaited from coroutines.
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

typedef void (*sq_future_cb)(sq_future *f, void *arg);
typedef void (*sq_cancel_fn)(sq_future *f, void *arg);

/* A pending future with one reference for the caller.  NULL on -ENOMEM. */
sq_future *sq_future_new(sq_loop *loop);
sq_future *sq_future_retain(sq_future *f);
void sq_future_release(sq_future *f);

/* Resolve: status >= 0 is success, negative is an error.  The first resolution wins; later
 * ones return -EALREADY and change nothing.  Done callbacks run before this returns. */
int sq_future_resolve(sq_future *f, int64_t status, void *value);
/* Shorthands: success with a value / failure with a negative errno. */
int sq_future_set_result(sq_future *f, void *value);
int sq_future_set_error(sq_future *f, int err);
/* Cancel a pending future: it resolves with -ECANCELED and its producer's cancel hook runs
 * (a sleep drops its timer, an executor job that has not started is skipped).
 * Returns 0, or -EALREADY if it was already done. */
int sq_future_cancel(sq_future *f);
/* Producers: what to undo when the future is cancelled.  At most one hook. */
void sq_future_set_cancel_hook(sq_future *f, sq_cancel_fn fn, void *arg);

bool sq_future_done(const sq_future *f);
bool sq_future_cancelled(const sq_future *f);
/* Status and value of a done future (0 / NULL while pending).  sq_future_value() only
 * peeks: an owned value still belongs to the future (freed with it; take it to keep it). */
int64_t sq_future_status(const sq_future *f);
void *sq_future_value(const sq_future *f);
/* Consumers: the value of a done future, with its ownership — the future forgets it and
 * will not free it (the caller frees an owned value).  NULL while pending. */
void *sq_future_take_value(sq_future *f);
/* Producers: how to free the value if nobody takes it.  When the last reference goes while
 * the future still holds a non-NULL value, fn(value) is called.  A cancelled future has no
 * value; a producer whose resolve fails (-EALREADY) still owns its value. */
void sq_future_set_value_free(sq_future *f, void (*fn)(void *value));
sq_loop *sq_future_loop(const sq_future *f);

/* Call cb(f, arg) once f is done — at once if it already is.  Returns 0 or -ENOMEM. */
int sq_future_add_done_callback(sq_future *f, sq_future_cb cb, void *arg);
/* Remove a callback added with the same (cb, arg); returns 0 or -ENOENT. */
int sq_future_remove_done_callback(sq_future *f, sq_future_cb cb, void *arg);

/* Suspend the calling coroutine until f is done; return its status and store its value in
 * *value (if non-NULL) — TAKING an owned value, which the caller then frees; with NULL an
 * owned value is freed with f.  CONSUMES the caller's reference to f.  Outside a coroutine it
 * logs an error and returns SQ_ENOTCORO instead of blocking. */
int64_t sq_await(sq_future *f, void **value);
/* Wait for all n futures (total time is the longest, not the sum).  CONSUMES them.
 * values/statuses, if non-NULL, receive each one's result (owned values are taken, as by
 * sq_await; with values NULL they are freed with their futures).  Returns 0 if all succeeded,
 * else the first error in array order.  NULL entries count as -ENOMEM failures. */
int sq_gather(sq_future **fs, size_t n, void **values, int64_t *statuses);
/* A future that resolves like f, or with -ETIMEDOUT after `seconds` — in which case f is
 * cancelled.  An owned value moves from f to the returned future (with its free function).
 * CONSUMES f; the caller owns the returned future.  NULL on -ENOMEM. */
sq_future *sq_with_timeout(sq_future *f, double seconds);
/* A future resolved with status 0 after `seconds`; cancelling it drops the timer. */
sq_future *sq_sleep_future(sq_loop *loop, double seconds);
/* Suspend only the calling coroutine for `seconds`.  Returns 0, -ECANCELED, or
 * SQ_ENOTCORO when called outside a coroutine. */
int sq_sleep(double seconds);
/* Let every other ready coroutine and callback run, then continue. */
int sq_yield(void);

#ifdef __cplusplus
}
#endif
#endif
