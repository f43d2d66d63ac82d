/** @file squall/coro.h
 * Stackful coroutines.
 *
 * Each coroutine runs on its own stack, mmap'ed with a 32 KiB PROT_NONE guard region below it
 * and pooled per thread for reuse (a single frame larger than the guard could step over it:
 * keep buffers of that size off coroutine stacks).  Switching is a hand-written register swap
 * on x86-64 and aarch64 (ucontext elsewhere) of the callee-saved registers only: the
 * floating-point environment (rounding mode, exception masks) is the thread's, shared by its
 * coroutines, so a coroutine that changes it (fesetround) restores it before it suspends.  Overflowing a stack ends the process with the message
 * "squall: coroutine stack overflow", never with silent corruption: the SIGSEGV/SIGBUS
 * handler runs on an alternate signal stack, is re-installed when a loop starts running
 * (and about once a second while it runs) if another handler replaced it, and passes
 * every fault that is not a guard-page hit on to the handler it replaced.
 *
 * A coroutine left by longjmp (a failed cmocka assertion inside it) is abandoned: squall
 * notices at the next loop or coroutine call on that thread, logs it, and makes the thread
 * and the loop usable again; the abandoned stack is unmapped when its loop is freed.
 *
 * Most code never touches this layer directly: sq_spawn()/sq_go() start a coroutine on a
 * loop, and suspending calls (sq_await, sq_sleep, stream reads …) park it until the loop
 * wakes it.
 */
#ifndef SQUALL_CORO_H
#define SQUALL_CORO_H

#include <stdbool.h>
#include <stddef.h>

#include "squall/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A stackful coroutine (opaque). */
typedef struct sq_coro sq_coro;
/** The body of a coroutine.  Its return value resolves the future of sq_spawn(). */
typedef void *(*sq_task_fn)(void *arg);

/** Default usable stack size: 256 KiB of address space, of which only the pages a coroutine
 * touches cost memory (a parked coroutine that used little stack costs 8-12 KiB of RSS). */
#define SQ_CORO_DEFAULT_STACK_SIZE (256u * 1024u)

/** Set the stack size for coroutines created from now on (rounded up to whole pages,
 * at least 16 KiB).  Pooled stacks of another size are released. */
void sq_coro_set_stack_size(size_t bytes);
/** The stack size coroutines created now get, in bytes. */
size_t sq_coro_get_stack_size(void);
/** How many idle stacks each thread keeps for reuse (default 1024). */
void sq_coro_set_pool_limit(size_t n);

/** Start fn(arg) as a coroutine on `loop` (NULL: the current loop).  It begins on the next
 * pass of the loop's ready queue, not inside this call.  The returned future resolves with
 * fn's return value when fn returns; the caller owns one reference (sq_await it or
 * sq_future_release it).  NULL on -ENOMEM. */
sq_future *sq_spawn(sq_loop *loop, sq_task_fn fn, void *arg);
/** The same, detached: nobody waits for it.  Returns 0 or -ENOMEM. */
int sq_go(sq_loop *loop, sq_task_fn fn, void *arg);

/** The running coroutine, or NULL on a plain thread stack. */
sq_coro *sq_coro_self(void);
/** Whether the caller runs on a coroutine (where suspending calls may be made). */
bool sq_in_coro(void);
/** The loop a coroutine belongs to. */
sq_loop *sq_coro_loop(const sq_coro *c);

/* --- low level: what sq_await is built on ------------------------------------------- */

/** Create a coroutine that is not yet scheduled; run it with sq_coro_wake() or
 * sq_coro_resume().  Its memory returns to the pool when fn returns. */
sq_coro *sq_coro_create(sq_loop *loop, sq_task_fn fn, void *arg);
/** Switch into `c` from a plain thread stack (not from inside another coroutine) until it
 * suspends or finishes.  Returns true while it is still alive. */
bool sq_coro_resume(sq_coro *c);
/** Suspend the running coroutine until someone calls sq_coro_wake() on it.
 * Returns SQ_ENOTCORO outside a coroutine. */
int sq_coro_suspend(void);
/** Queue a suspended coroutine on its loop's ready queue; it runs later in this iteration. */
void sq_coro_wake(sq_coro *c);
/** A name shown in diagnostics (stack overflow, slow callbacks).  Not copied. */
void sq_coro_set_name(sq_coro *c, const char *name);

#ifdef __cplusplus
}
#endif
#endif
