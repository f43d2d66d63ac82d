/** @file squall/loop.h
 * The event loop: fd watchers, timers, callbacks, signals.
 *
 * One loop per thread.  Every function here must be called on the loop's own thread, except
 * sq_add_callback_threadsafe(), which is the one call that is safe from any thread.
 * Errors are negative errno values (see squall/error.h).
 */
#ifndef SQUALL_LOOP_H
#define SQUALL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squall/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An event loop (opaque): one per thread. */
typedef struct sq_loop sq_loop;
/** An fd watcher (struct sq_io). */
typedef struct sq_io sq_io;
/** A timer (struct sq_timer). */
typedef struct sq_timer sq_timer;
/** A periodic callback (struct sq_periodic). */
typedef struct sq_periodic sq_periodic;
/** A future (squall/future.h). */
typedef struct sq_future sq_future;

/** Interest and readiness bits for fd watchers. */
enum {
    SQ_READ = 1u << 0,
    SQ_WRITE = 1u << 1,
    SQ_HUP = 1u << 2,   /**< peer hung up or half-closed (reported even if not asked for) */
    SQ_ERROR = 1u << 3, /**< error condition on the fd (reported even if not asked for) */
};

/** Called with the readiness bits (SQ_READ|SQ_WRITE|SQ_HUP|SQ_ERROR) that fired. */
typedef void (*sq_io_cb)(sq_loop *loop, sq_io *io, unsigned events);
/** Called on the loop thread when a timer fires. */
typedef void (*sq_timer_cb)(sq_loop *loop, sq_timer *timer);
/** A plain callback: fn(arg). */
typedef void (*sq_callback_fn)(void *arg);

/** An fd watcher.  Caller-owned memory: embed it in your own struct and use `data`.
 * The loop never closes the fd. */
struct sq_io {
    /** the watched file descriptor */
    int fd;
    unsigned events; /**< current interest (read only) */
    /** called with the ready events */
    sq_io_cb cb;
    /** for the user */
    void *data;
    unsigned sq__registered; /**< interest the backend currently holds */
};

/** A timer.  Caller-owned memory; while active the loop keeps it in a slot of its timer
 * wheel (due in a later tick) or in its heap (due in a tick already reached). */
struct sq_timer {
    uint64_t deadline; /**< monotonic nanoseconds */
    uint64_t repeat;   /**< nanoseconds; 0 = one-shot */
    uint64_t seq;      /**< FIFO order among equal deadlines */
    size_t heap_index; /**< where the loop keeps it (internal); SIZE_MAX when not active */
    /** called when the timer fires */
    sq_timer_cb cb;
    /** the loop it runs on */
    sq_loop *loop;
    /** for the user */
    void *data;
};

/** A periodic callback, Tornado's PeriodicCallback: runs every `interval` seconds, skipping
 * missed runs instead of bunching them; jitter in [0, 1) spreads each run by +/- jitter/2. */
struct sq_periodic {
    /** the timer underneath (internal) */
    sq_timer timer;
    /** seconds between runs */
    double interval;
    /** in [0, 1): spread of each run */
    double jitter;
    /** the callback */
    sq_callback_fn fn;
    /** its argument */
    void *arg;
    /** started and not stopped (read only) */
    bool running;
};

/** Tunables, read by sq_loop_new(); zero fields take the documented defaults. */
typedef struct sq_loop_options {
    const char *backend;          /**< "epoll" (default; the only one on Linux today) */
    double slow_callback_warning; /**< seconds a callback may hold the loop before it is logged;
                                     default 0.1, negative disables */
} sq_loop_options;

/** Create a loop.  Returns NULL with errno set on failure.  The first loop created on a
 * thread becomes that thread's current loop (sq_loop_current()). */
sq_loop *sq_loop_new(const sq_loop_options *opts);
/** Free a loop that is not running (refused, with a log line, from inside its own callbacks).
 * Queued callbacks run first.  Each coroutine still suspended has the future it awaits
 * cancelled (sq_sleep/sq_await return -ECANCELED) so it can return and free what it holds;
 * one still unfinished after a few rounds is discarded (its stack unmapped; what only it
 * referenced leaks).  Executor jobs of this loop not started yet are cancelled; the free
 * waits for those running to return (logged if that takes over a second), since their
 * results come back through the loop.  Callbacks queued meanwhile (either queue) run too,
 * for a bounded number of rounds; then the loop closes: sq_add_callback(),
 * sq_add_callback_threadsafe() and sq_call_later() are refused (SQ_ELOOPCLOSED, NULL; the
 * caller keeps what it offered), timers are not armed, and one last pass runs what was
 * accepted, so nothing queued is dropped.  Pending sq_calls and sleep/timeout futures are
 * freed, watchers and timers dropped; futures of this loop must not be used afterwards.  The
 * thread's last loop also releases its pool of idle coroutine stacks (thread exit does in
 * any case). */
void sq_loop_free(sq_loop *loop);
/** The process-wide default loop, created on first use (on the calling thread). */
sq_loop *sq_loop_default(void);
/** The loop running (or last made current) on this thread, or NULL. */
sq_loop *sq_loop_current(void);
/** Make `loop` the current loop of the calling thread (what sq_loop_current() returns). */
void sq_loop_make_current(sq_loop *loop);

/** Run until sq_loop_stop() is called.  Returns 0, or a negative errno if the backend fails. */
int sq_loop_run(sq_loop *loop);
/** Run until `fut` is done (or sq_loop_stop()).  Does not consume `fut`. */
int sq_loop_run_until(sq_loop *loop, sq_future *fut);
/** Run one iteration; if `block`, wait for at least one event or timer.  From inside a
 * callback or coroutine of the same loop it runs nothing and returns -EBUSY (logged once per
 * loop); sq_loop_run and sq_loop_run_until refuse the same way. */
int sq_loop_run_once(sq_loop *loop, bool block);
/** Make sq_loop_run() (or run_until) return after the current iteration.  Asked when no
 *  run is under way, the next sq_loop_run() runs one iteration without waiting and returns,
 *  as asyncio's loop.stop() does.  A pass of sq_loop_run_once() just ends. */
void sq_loop_stop(sq_loop *loop);
/** Whether sq_loop_run() (or run_until / run_once) is running the loop. */
bool sq_loop_is_running(const sq_loop *loop);
/** The loop's cached monotonic time, in seconds; refreshed once per iteration. */
double sq_loop_time(const sq_loop *loop);
/** The same clock in nanoseconds. */
uint64_t sq_loop_now_ns(const sq_loop *loop);
/** Re-read the monotonic clock now (rarely needed). */
void sq_loop_update_time(sq_loop *loop);
/** Set the slow-callback threshold in seconds (negative disables). */
void sq_loop_set_slow_callback_warning(sq_loop *loop, double seconds);
/** Name of the backend in use ("epoll"). */
const char *sq_loop_backend_name(const sq_loop *loop);

/* --- fd watchers ---------------------------------------------------------------------- */

/** Prepare a watcher for `fd`; it is inactive until sq_io_start(). */
void sq_io_init(sq_io *io, int fd, sq_io_cb cb, void *data);
/** Set the interest of a watcher (SQ_READ and/or SQ_WRITE), registering it if needed.
 * Returns 0 or a negative errno from the backend (-EBADF, -EPERM for regular files …). */
int sq_io_start(sq_loop *loop, sq_io *io, unsigned events);
/** Remove the watcher from the loop; it may be started again or its fd closed. */
int sq_io_stop(sq_loop *loop, sq_io *io);

/* --- timers --------------------------------------------------------------------------- */

/** Prepare a caller-owned timer: cb(loop, t) when it fires; `data` is for the user.
 * Not armed yet. */
void sq_timer_init(sq_loop *loop, sq_timer *t, sq_timer_cb cb, void *data);
/** Arm `t` to fire after `delay` seconds, then every `repeat` seconds if repeat > 0.
 * Re-arming an active timer moves it. */
void sq_timer_start(sq_timer *t, double delay, double repeat);
/** Arm at an absolute deadline on the loop clock (sq_loop_time()). */
void sq_timer_start_at(sq_timer *t, double when);
/** Disarm; safe on an inactive timer and from inside its own callback. */
void sq_timer_stop(sq_timer *t);
/** Whether the timer is armed. */
bool sq_timer_active(const sq_timer *t);

/** A handle from sq_call_later()/sq_call_at(), valid until its callback has started or it
 * has been cancelled, whichever comes first. */
typedef struct sq_call sq_call;
/** Run fn(arg) once after `delay` seconds (Tornado's call_later).  NULL on -ENOMEM, or with
 * errno ESHUTDOWN once sq_loop_free() has closed the loop. */
sq_call *sq_call_later(sq_loop *loop, double delay, sq_callback_fn fn, void *arg);
/** Run fn(arg) once at loop time `when` (Tornado's call_at). */
sq_call *sq_call_at(sq_loop *loop, double when, sq_callback_fn fn, void *arg);
/** Cancel a pending call (Tornado's remove_timeout).  The handle is freed. */
void sq_call_cancel(sq_call *call);

/* --- callbacks ------------------------------------------------------------------------ */

/** Run fn(arg) on the next loop iteration, in FIFO order.  Returns 0, -ENOMEM, or
 * SQ_ELOOPCLOSED once sq_loop_free() has closed the loop (fn will not run). */
int sq_add_callback(sq_loop *loop, sq_callback_fn fn, void *arg);
/** The same, callable from ANY thread (the only such call): queues fn(arg) under a lock and
 * wakes the loop through an eventfd.  Every callback queued is run exactly once, on the
 * loop thread.  Returns 0, -ENOMEM, or SQ_ELOOPCLOSED when sq_loop_free() has closed the
 * loop (a call after the free returns is a use after free). */
int sq_add_callback_threadsafe(sq_loop *loop, sq_callback_fn fn, void *arg);

/* --- periodic callbacks --------------------------------------------------------------- */

/** Prepare a periodic callback: fn(arg) every `interval` seconds once started. */
void sq_periodic_init(sq_loop *loop, sq_periodic *p, double interval, sq_callback_fn fn, void *arg);
/** jitter in [0, 1): each run lands within interval * (1 +/- jitter/2). */
void sq_periodic_set_jitter(sq_periodic *p, double jitter);
/** Start (or restart) running: the first run comes about one interval from now. */
void sq_periodic_start(sq_periodic *p);
/** Stop running; safe on a stopped callback and from inside fn. */
void sq_periodic_stop(sq_periodic *p);

/* --- signals -------------------------------------------------------------------------- */

/** Called on the loop thread for a signal delivered to the process. */
typedef void (*sq_signal_cb)(sq_loop *loop, int signum, void *arg);
/** Deliver `signum` to cb on the loop thread (a self-pipe; safe with threads).  One handler
 * per signal per process.  Returns 0 or a negative errno. */
int sq_signal_add(sq_loop *loop, int signum, sq_signal_cb cb, void *arg);
/** Restore the default disposition of `signum`. */
int sq_signal_remove(sq_loop *loop, int signum);
/** SIGINT and SIGTERM stop the loop cleanly (what the examples use). */
int sq_loop_stop_on_signals(sq_loop *loop);

/** Raise this process's soft limit on open files to its hard limit, as a server should at
 * start: Debian's default soft limit (1024) makes accept() fail with EMFILE past about a
 * thousand connections, and the server then pauses accepting.  Returns the soft limit now
 * in force, or a negative errno (the limit is then unchanged). */
long sq_raise_fd_limit(void);

#ifdef __cplusplus
}
#endif
#endif
