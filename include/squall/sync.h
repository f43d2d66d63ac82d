/** @file squall/sync.h
 * Coordination between coroutines of one loop (Tornado's tornado.locks and
 * tornado.queues).  Not thread-safe: every object belongs to one loop thread.
 *
 * Waiting calls take a timeout in seconds; SQ_FOREVER (or any negative value) waits without
 * limit.  They return 0, -ETIMEDOUT, -ECANCELED, or SQ_ENOTCORO outside a coroutine.
 */
#ifndef SQUALL_SYNC_H
#define SQUALL_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squall/future.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Timeout for waits without limit. */
#define SQ_FOREVER (-1.0)

/* --- event: a flag coroutines wait on ---------------------------------------------------- */
/** An event: a flag coroutines wait on (tornado.locks.Event). */
typedef struct sq_event sq_event;
/** A new event, not set, on `loop`.  NULL on -ENOMEM. */
sq_event *sq_event_new(sq_loop *loop);
/** Free the event; its waiters get -ECANCELED. */
void sq_event_free(sq_event *ev);
void sq_event_set(sq_event *ev); /**< wake every waiter; later waits return at once */
/** Reset the flag: later waits block again. */
void sq_event_clear(sq_event *ev);
/** Whether the flag is set. */
bool sq_event_is_set(const sq_event *ev);
/** Wait until the flag is set: 0, -ETIMEDOUT, -ECANCELED or SQ_ENOTCORO. */
int sq_event_wait(sq_event *ev, double timeout);

/* --- condition: notify one or all waiters ------------------------------------------------ */
/** A condition: coroutines wait until notified (tornado.locks.Condition). */
typedef struct sq_condition sq_condition;
/** A new condition on `loop`.  NULL on -ENOMEM. */
sq_condition *sq_condition_new(sq_loop *loop);
/** Free the condition; its waiters get -ECANCELED. */
void sq_condition_free(sq_condition *c);
/** Wait for a notification: 0, -ETIMEDOUT, -ECANCELED or SQ_ENOTCORO. */
int sq_condition_wait(sq_condition *c, double timeout);
/** Wake up to `n` waiters, oldest first. */
void sq_condition_notify(sq_condition *c, size_t n);
/** Wake every waiter. */
void sq_condition_notify_all(sq_condition *c);

/* --- semaphore --------------------------------------------------------------------------- */
/** A semaphore: a counter that acquire decrements, waiting at zero (tornado.locks.Semaphore). */
typedef struct sq_semaphore sq_semaphore;
/** A semaphore with the initial value `value`.  NULL on -ENOMEM. */
sq_semaphore *sq_semaphore_new(sq_loop *loop, size_t value);
/** A semaphore whose release beyond its initial value is an error (-EOVERFLOW). */
sq_semaphore *sq_bounded_semaphore_new(sq_loop *loop, size_t value);
/** Free the semaphore; its waiters get -ECANCELED. */
void sq_semaphore_free(sq_semaphore *s);
/** Decrement, waiting while the value is 0: 0, -ETIMEDOUT, -ECANCELED or SQ_ENOTCORO. */
int sq_semaphore_acquire(sq_semaphore *s, double timeout);
/** Increment (or wake the oldest waiter).  0, or -EOVERFLOW for a bounded semaphore at its initial
 * value. */
int sq_semaphore_release(sq_semaphore *s);
/** The current value. */
size_t sq_semaphore_value(const sq_semaphore *s);

/* --- lock: a semaphore of one, waiters served in FIFO order ------------------------------ */
/** A lock for coroutines (tornado.locks.Lock). */
typedef struct sq_lock sq_lock;
/** A new, unlocked lock.  NULL on -ENOMEM. */
sq_lock *sq_lock_new(sq_loop *loop);
/** Free the lock; its waiters get -ECANCELED. */
void sq_lock_free(sq_lock *l);
/** Take the lock, waiting in FIFO order: 0, -ETIMEDOUT, -ECANCELED or SQ_ENOTCORO. */
int sq_lock_acquire(sq_lock *l, double timeout);
/** Returns -EPERM if the lock is not held. */
int sq_lock_release(sq_lock *l);
/** Whether the lock is held. */
bool sq_lock_locked(const sq_lock *l);

/* --- queue: bounded FIFO, LIFO or priority queue of pointers between coroutines ---------- */
/** The three kinds (tornado.queues.Queue, LifoQueue, PriorityQueue) differ only in which item
 * get() returns next; maxsize, blocking and timed put/get, the nowait forms, task_done/join
 * and the FIFO service of waiting getters and putters are the same for all of them. */
typedef struct sq_queue sq_queue;
/** maxsize 0 = unbounded. */
sq_queue *sq_queue_new(sq_loop *loop, size_t maxsize);
/** Create a LIFO queue (tornado.queues.LifoQueue): get() returns the most recently put item.
 *  maxsize 0 = unbounded; NULL loop: the current (else default) loop.
 *  @return the queue (free it with sq_queue_free()), or NULL on -ENOMEM. */
sq_queue *sq_lifo_queue_new(sq_loop *loop, size_t maxsize);
/** Ordering of a priority queue's items: negative if `a` must come out before `b`, positive
 *  if after, 0 if they tie. */
typedef int (*sq_queue_cmp)(const void *a, const void *b);
/** Create a priority queue (tornado.queues.PriorityQueue): get() returns the smallest item
 *  first, like Python's heapq.  Items are ordered by `cmp` (if non-NULL), then by the integer
 *  priority given to sq_queue_put_priority() (lowest first; sq_queue_put() uses 0), and items
 *  that tie on both come out in the order they were put (stable, FIFO).  put and get cost
 *  O(log n).  maxsize 0 = unbounded.
 *  @return the queue (free it with sq_queue_free()), or NULL on -ENOMEM. */
sq_queue *sq_priority_queue_new(sq_loop *loop, size_t maxsize, sq_queue_cmp cmp);
/** Free the queue (items still inside are not freed: they are the caller's). */
void sq_queue_free(sq_queue *q);
/** Suspend while the queue is full.  Returns 0, -ETIMEDOUT … */
int sq_queue_put(sq_queue *q, void *item, double timeout);
/** Never suspends: -EAGAIN when full. */
int sq_queue_put_nowait(sq_queue *q, void *item);
/** Put `item` with an integer `priority` into a priority queue, suspending while it is full
 *  (like sq_queue_put()).  Lower priorities come out first; equal ones in insertion order.
 *  @return 0, -ETIMEDOUT, -ECANCELED (the queue was freed), -ENOMEM, SQ_ENOTCORO outside a
 *  coroutine, or -EINVAL if `q` is not a priority queue. */
int sq_queue_put_priority(sq_queue *q, void *item, int64_t priority, double timeout);
/** sq_queue_put_priority() that never suspends.
 *  @return 0, -EAGAIN when full, -ENOMEM, or -EINVAL if `q` is not a priority queue. */
int sq_queue_put_priority_nowait(sq_queue *q, void *item, int64_t priority);
/** Suspend while the queue is empty; the item is stored in *item. */
int sq_queue_get(sq_queue *q, void **item, double timeout);
/** Never suspends: -EAGAIN when empty. */
int sq_queue_get_nowait(sq_queue *q, void **item);
/** Mark one item from get() as processed; -EINVAL if called more often than get(). */
int sq_queue_task_done(sq_queue *q);
/** Suspend until every item ever put has been marked task_done. */
int sq_queue_join(sq_queue *q, double timeout);
/** Items in the queue. */
size_t sq_queue_size(const sq_queue *q);
/** Whether the queue holds no item. */
bool sq_queue_empty(const sq_queue *q);
/** Whether the queue holds maxsize items (never, for an unbounded queue). */
bool sq_queue_full(const sq_queue *q);

#ifdef __cplusplus
}
#endif
#endif
