/* The loop: callbacks, fd watchers, stop, run_until, signals and the slow-callback warning. */
#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

/* Run `loop` with a guard: fails the test if it is still running after `limit` seconds. */
static void limit_hit(void *arg)
{
    *(int *)arg = 1;
    sq_loop_stop(sq_loop_current());
}
static void run_guarded(sq_loop *loop, double limit)
{
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, limit, limit_hit, &timed_out);
    assert_int_equal(sq_loop_run(loop), 0);
    if (timed_out) fail_msg("loop still running after %.1f s", limit);
    sq_call_cancel(guard);
}

/* --- callbacks ------------------------------------------------------------------------ */

static int order[1000], norder;
static void record(void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
}

static void test_callbacks_fifo(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    norder = 0;
    /* More than the ring's first capacity, so that it grows while keeping order. */
    for (int i = 0; i < 300; i++)
        assert_int_equal(sq_add_callback(loop, record, (void *)(intptr_t)i), 0);
    assert_int_equal(sq_loop_run_once(loop, false), 0);
    assert_int_equal(norder, 300);
    for (int i = 0; i < 300; i++) assert_int_equal(order[i], i);
    sq_loop_free(loop);
}

static struct {
    sq_loop *loop;
    long spins;
    int timer_fired, io_fired;
    int pipefd[2];
    sq_io io;
} starve;

static void spin(void *arg)
{
    starve.spins++;
    if (starve.timer_fired && starve.io_fired) {
        sq_loop_stop(starve.loop);
        return;
    }
    if (starve.spins > 50 * 1000 * 1000) { /* would mean IO or timers starve */
        sq_loop_stop(starve.loop);
        return;
    }
    sq_add_callback(starve.loop, spin, NULL); /* re-adds itself forever */
}

static void starve_timer(void *arg)
{
    starve.timer_fired = 1;
}
static void starve_io(sq_loop *loop, sq_io *io, unsigned events)
{
    char b;
    if (read(io->fd, &b, 1) == 1) starve.io_fired = 1;
}
static void starve_write(void *arg)
{
    assert_int_equal(write(starve.pipefd[1], "x", 1), 1);
}

/* A coroutine that only yields keeps the loop busy with ready coroutines: the loop skips
 * the IO poll on such passes, but for at most SQ__READY_POLL_NS (100 us; the clock is read
 * every SQ__READY_POLL_EVERY rounds), so a pipe that becomes readable is served within a
 * fraction of a millisecond, and timers fire on time. */
static struct {
    long spins, spins_at_write, spins_at_read;
    double t_start, t_write, t_read, t_fired;
    int fired, read;
    bool done;
    int pipefd[2];
    sq_io io;
} ystarve;

static void *yield_spinner(void *arg)
{
    (void)arg;
    while (!ystarve.done && ystarve.spins < 50 * 1000 * 1000) {
        ystarve.spins++;
        sq_yield();
    }
    return NULL;
}

static void ystarve_write(void *arg)
{
    ystarve.spins_at_write = ystarve.spins;
    ystarve.t_write = sq_test_now();
    assert_int_equal(write(ystarve.pipefd[1], "x", 1), 1);
}

static void ystarve_io(sq_loop *loop, sq_io *io, unsigned events)
{
    char b;
    if (read(io->fd, &b, 1) == 1 && !ystarve.read) {
        ystarve.read = 1;
        ystarve.spins_at_read = ystarve.spins;
        ystarve.t_read = sq_test_now();
    }
}

static void ystarve_timer(void *arg)
{
    ystarve.fired = 1;
    ystarve.t_fired = sq_test_now();
    ystarve.done = true;
}

static void test_yielding_coroutine_does_not_starve(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&ystarve, 0, sizeof ystarve);
    assert_int_equal(pipe2(ystarve.pipefd, O_NONBLOCK | O_CLOEXEC), 0);
    sq_io_init(&ystarve.io, ystarve.pipefd[0], ystarve_io, NULL);
    assert_int_equal(sq_io_start(loop, &ystarve.io, SQ_READ), 0);
    sq_future *f = sq_spawn(loop, yield_spinner, NULL);
    ystarve.t_start = sq_test_now();
    sq_call_later(loop, 0.01, ystarve_write, NULL);
    sq_call_later(loop, 0.03, ystarve_timer, NULL);
    assert_int_equal(sq_loop_run_until(loop, f), 0);
    sq_future_release(f);
    assert_true(ystarve.fired);
    assert_true(ystarve.read);
    long waited = ystarve.spins_at_read - ystarve.spins_at_write;
    double served_ms = (ystarve.t_read - ystarve.t_write) * 1e3;
    double fired_ms = (ystarve.t_fired - ystarve.t_start) * 1e3;
    printf("pipe served %.3f ms and %ld yields after the write (%ld yields in all); the 30 ms "
           "timer fired at %.1f ms\n",
           served_ms, waited, ystarve.spins, fired_ms);
    assert_true(waited >= 0);
    /* 100 us by design (0.1 ms and 250-2,200 yields under ASan, where 30 ms are 650,000);
     * a loop that polled only when the coroutine stopped (at the 30 ms timer) would be
     * hundreds of thousands of yields over, and one that polled every 20 ms instead of
     * 100 us was 105,000.  The yields bound the poll whatever the machine's stalls do to
     * the clock; the time only asks that the pipe came before the timer. */
    assert_true(waited < 50 * 1000);
    assert_true(served_ms >= 0 && served_ms < 25.0);
    assert_true(fired_ms < 60.0);
    sq_io_stop(loop, &ystarve.io);
    close(ystarve.pipefd[0]);
    close(ystarve.pipefd[1]);
    sq_loop_free(loop);
}

static void test_self_readding_callback_does_not_starve(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&starve, 0, sizeof starve);
    starve.loop = loop;
    assert_int_equal(pipe2(starve.pipefd, O_NONBLOCK | O_CLOEXEC), 0);
    sq_io_init(&starve.io, starve.pipefd[0], starve_io, NULL);
    assert_int_equal(sq_io_start(loop, &starve.io, SQ_READ), 0);
    sq_add_callback(loop, spin, NULL);
    sq_call_later(loop, 0.02, starve_timer, NULL);
    sq_call_later(loop, 0.01, starve_write, NULL);
    double t0 = sq_test_now();
    run_guarded(loop, 10);
    assert_true(starve.timer_fired);
    assert_true(starve.io_fired);
    assert_true(sq_test_now() - t0 < 2.0);
    print_message("callback re-added itself %ld times while a timer and a read arrived\n",
                  starve.spins);
    sq_io_stop(loop, &starve.io);
    close(starve.pipefd[0]);
    close(starve.pipefd[1]);
    sq_loop_free(loop);
}

/* --- fd watchers ---------------------------------------------------------------------------- */

typedef struct {
    int calls;
    unsigned events;
    sq_io *other; /* stopped by this watcher's callback */
    int drain;    /* read the fd empty */
} io_probe;

static void probe_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    io_probe *p = io->data;
    p->calls++;
    p->events |= events;
    if (p->drain) {
        char buf[64];
        while (read(io->fd, buf, sizeof buf) > 0) {
        }
    }
    if (p->other) sq_io_stop(loop, p->other);
}

static void test_io_read_write_readiness(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    io_probe rp = {0}, wp = {0};
    sq_io rio, wio;
    sq_io_init(&rio, fds[0], probe_cb, &rp);
    sq_io_init(&wio, fds[1], probe_cb, &wp);

    /* Read side: quiet until something is written. */
    assert_int_equal(sq_io_start(loop, &rio, SQ_READ), 0);
    assert_int_equal(rio.events, SQ_READ);
    sq_loop_run_once(loop, false);
    assert_int_equal(rp.calls, 0);
    assert_int_equal(write(fds[1], "hi", 2), 2);
    sq_loop_run_once(loop, true);
    assert_int_equal(rp.calls, 1);
    assert_true(rp.events & SQ_READ);
    assert_false(rp.events & SQ_WRITE);
    /* Level-triggered: still readable, called again; drained, quiet again. */
    sq_loop_run_once(loop, false);
    assert_int_equal(rp.calls, 2);
    char buf[8];
    assert_int_equal(read(fds[0], buf, sizeof buf), 2);
    sq_loop_run_once(loop, false);
    assert_int_equal(rp.calls, 2);

    /* Write side: an empty pipe is writable at once. */
    assert_int_equal(sq_io_start(loop, &wio, SQ_WRITE), 0);
    sq_loop_run_once(loop, true);
    assert_int_equal(wp.calls, 1);
    assert_true(wp.events & SQ_WRITE);

    /* Stopped watchers are not called; a stopped watcher can be started again. */
    assert_int_equal(sq_io_stop(loop, &wio), 0);
    assert_int_equal(wio.events, 0);
    assert_int_equal(sq_io_stop(loop, &wio), 0); /* twice is harmless */
    sq_loop_run_once(loop, false);
    assert_int_equal(wp.calls, 1);
    assert_int_equal(sq_io_start(loop, &wio, SQ_WRITE), 0);
    sq_loop_run_once(loop, false);
    assert_int_equal(wp.calls, 2);
    sq_io_stop(loop, &wio);

    /* The writer closing wakes the reader with a hang-up. */
    rp = (io_probe){0};
    close(fds[1]);
    sq_loop_run_once(loop, true);
    assert_int_equal(rp.calls, 1);
    assert_true(rp.events & SQ_HUP);
    sq_io_stop(loop, &rio);
    close(fds[0]);

    /* A regular file cannot be watched by epoll: a clear error, not a crash. */
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    sq_io fio;
    sq_io_init(&fio, fileno(tmp), probe_cb, &rp);
    assert_int_equal(sq_io_start(loop, &fio, SQ_READ), -EPERM);
    fclose(tmp);
    sq_io_init(&fio, 12345, probe_cb, &rp);
    assert_int_equal(sq_io_start(loop, &fio, SQ_READ), -EBADF);
    sq_loop_free(loop);
}

/* Two watchers ready in the same epoll batch; whichever runs first stops the other, which
 * must then not be called — its fd may already be closed and reused. */
static void test_io_stop_mid_batch(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int a[2], b[2];
    assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
    io_probe pa = {.drain = 1}, pb = {.drain = 1};
    sq_io ia, ib;
    sq_io_init(&ia, a[0], probe_cb, &pa);
    sq_io_init(&ib, b[0], probe_cb, &pb);
    pa.other = &ib;
    pb.other = &ia;
    assert_int_equal(sq_io_start(loop, &ia, SQ_READ), 0);
    assert_int_equal(sq_io_start(loop, &ib, SQ_READ), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    sq_loop_run_once(loop, true);
    assert_int_equal(pa.calls + pb.calls, 1);
    /* The one that ran drained its pipe; the other is stopped though still readable. */
    sq_loop_run_once(loop, false);
    assert_int_equal(pa.calls + pb.calls, 1);
    sq_io_stop(loop, &ia);
    sq_io_stop(loop, &ib);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    sq_loop_free(loop);
}

/* Two watchers readable in the same batch; whichever runs first narrows the other's interest
 * to SQ_WRITE only.  The other's pending readiness is no longer asked for and must not be
 * reported as SQ_READ (libuv masks a batch's events with the current interest too). */
typedef struct {
    sq_io *other;
    int calls, unwanted;
} narrow_probe;

static void narrow_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    narrow_probe *p = io->data;
    p->calls++;
    if (events & ~(io->events | SQ_HUP | SQ_ERROR)) p->unwanted++;
    sq_io_start(loop, p->other, SQ_WRITE);
    sq_io_start(loop, io, SQ_WRITE);
}

static void test_io_interest_narrowed_mid_batch(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int a[2], b[2];
    assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
    narrow_probe pa = {0}, pb = {0};
    sq_io ia, ib;
    sq_io_init(&ia, a[0], narrow_cb, &pa);
    sq_io_init(&ib, b[0], narrow_cb, &pb);
    pa.other = &ib;
    pb.other = &ia;
    assert_int_equal(sq_io_start(loop, &ia, SQ_READ), 0);
    assert_int_equal(sq_io_start(loop, &ib, SQ_READ), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    sq_loop_run_once(loop, true);
    assert_int_equal(pa.unwanted + pb.unwanted, 0);
    assert_int_equal(pa.calls + pb.calls, 1); /* a pipe's read end is never writable */
    sq_io_stop(loop, &ia);
    sq_io_stop(loop, &ib);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    sq_loop_free(loop);
}

/* Many stops in one batch (the backend remembers up to 1,024 stopped watchers a batch, then
 * finds their events the long way): N pipes, all readable; each watcher's callback stops
 * its partner (pairs), or the first callback stops every other watcher (all). */
typedef struct {
    sq_loop *loop;
    sq_io *ios;
    int n, calls, mode; /* mode 0: pairs, 1: all */
    char *called;
} many_stops;

static void many_stops_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    many_stops *m = io->data;
    int i = (int)(io - m->ios);
    char c;
    while (read(io->fd, &c, 1) > 0) {
    }
    m->calls++;
    m->called[i]++;
    sq_io_stop(loop, io);
    if (m->mode == 0) {
        sq_io_stop(loop, &m->ios[(i + m->n / 2) % m->n]);
    } else {
        for (int j = 0; j < m->n; j++) sq_io_stop(loop, &m->ios[j]);
    }
}

static void run_many_stops(int mode)
{
    enum { N = 1400 };
    if (sq_raise_fd_limit() < 2 * N + 100) skip();
    sq_loop *loop = sq_loop_new(NULL);
    static sq_io ios[N];
    static int fds[N][2];
    static char called[N];
    many_stops m = {.loop = loop, .ios = ios, .n = N, .mode = mode, .called = called};
    memset(called, 0, sizeof called);
    for (int i = 0; i < N; i++) {
        assert_int_equal(pipe2(fds[i], O_NONBLOCK | O_CLOEXEC), 0);
        sq_io_init(&ios[i], fds[i][0], many_stops_cb, &m);
        assert_int_equal(sq_io_start(loop, &ios[i], SQ_READ), 0);
        assert_int_equal(write(fds[i][1], "x", 1), 1);
    }
    for (int k = 0; k < 5; k++) sq_loop_run_once(loop, false); /* batches of at most 1,024 */
    if (mode == 0) {
        assert_int_equal(m.calls, N / 2); /* one of each pair, never both */
        for (int i = 0; i < N / 2; i++) assert_int_equal(called[i] + called[i + N / 2], 1);
    } else {
        assert_int_equal(m.calls, 1);
    }
    for (int i = 0; i < N; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    sq_loop_free(loop);
}

static void test_io_many_stops_mid_batch(void **state)
{
    run_many_stops(0);
    run_many_stops(1);
}

/* src/internal.h: a watcher whose descriptor was closed, and its number reused, behind its
 * back (the HTTP client's parked keep-alive sockets). */
int sq__io_rearm(sq_loop *loop, sq_io *io, unsigned events);
void sq__io_forget(sq_loop *loop, sq_io *io);

/* A pipe whose read end has descriptor number `want` (closed before). */
static void pipe_at(int want, int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    if (p[0] != want) {
        assert_int_equal(dup3(p[0], want, O_CLOEXEC), want);
        close(p[0]);
        p[0] = want;
    }
}

static void test_io_rearm_and_forget(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int a[2], b[2], c[2];
    assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
    io_probe pr = {.drain = 1}, pr2 = {.drain = 1};
    sq_io io, io2;
    sq_io_init(&io, a[0], probe_cb, &pr);
    assert_int_equal(sq_io_start(loop, &io, SQ_READ), 0);

    /* Closed and its number reused: the kernel dropped the registration with the old file,
     * so a plain start (the bookkeeping says registered) leaves the new one unwatched ... */
    int n = a[0];
    close(a[0]);
    close(a[1]);
    pipe_at(n, b);
    assert_int_equal(sq_io_start(loop, &io, SQ_READ), 0);
    assert_int_equal(write(b[1], "x", 1), 1);
    sq_loop_run_once(loop, false);
    assert_int_equal(pr.calls, 0);
    /* ... and a rearm watches it: the stale MOD is turned into an ADD. */
    assert_int_equal(sq__io_rearm(loop, &io, SQ_READ), 0);
    sq_loop_run_once(loop, false);
    assert_int_equal(pr.calls, 1);
    /* A rearm of a registration that is there is a plain MOD. */
    assert_int_equal(write(b[1], "x", 1), 1);
    assert_int_equal(sq__io_rearm(loop, &io, SQ_READ), 0);
    sq_loop_run_once(loop, false);
    assert_int_equal(pr.calls, 2);

    /* Closed again, and the number now another watcher's: forgetting the old watcher leaves
     * the new registration alone, where sq_io_stop's DEL would remove it. */
    close(b[0]);
    close(b[1]);
    pipe_at(n, c);
    sq_io_init(&io2, c[0], probe_cb, &pr2);
    assert_int_equal(sq_io_start(loop, &io2, SQ_READ), 0);
    sq__io_forget(loop, &io);
    assert_int_equal(io.events, 0);
    assert_int_equal(write(c[1], "y", 1), 1);
    sq_loop_run_once(loop, false);
    assert_int_equal(pr.calls, 2);
    assert_int_equal(pr2.calls, 1);
    sq_io_stop(loop, &io2);
    close(c[0]);
    close(c[1]);
    sq_loop_free(loop);
}

/* A registration the backend refuses leaves the watcher's interest as it was. */
static void test_io_start_failure_keeps_interest(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* epoll refuses it with EPERM */
    assert_true(fd >= 0);
    io_probe pr = {0};
    sq_io io;
    sq_io_init(&io, fd, probe_cb, &pr);
    assert_int_equal(sq_io_start(loop, &io, SQ_READ), -EPERM);
    assert_int_equal(io.events, 0);
    assert_int_equal(sq_io_start(loop, &io, SQ_READ), -EPERM); /* still tried, still refused */
    assert_int_equal(sq_io_stop(loop, &io), 0);
    close(fd);
    sq_loop_free(loop);
}

/* A thread-safe callback that queues itself again must not keep the loop from its timers. */
static struct {
    sq_loop *loop;
    long runs;
    int timer_fired;
} ts_spin;
static void ts_spin_cb(void *arg)
{
    if (ts_spin.timer_fired || ++ts_spin.runs >= 2000000) return;
    assert_int_equal(sq_add_callback_threadsafe(ts_spin.loop, ts_spin_cb, NULL), 0);
}
static void ts_spin_timer(void *arg)
{
    ts_spin.timer_fired = 1;
    sq_loop_stop(ts_spin.loop);
}

static void test_threadsafe_self_requeue_does_not_starve(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&ts_spin, 0, sizeof ts_spin);
    ts_spin.loop = loop;
    sq_call_later(loop, 0.01, ts_spin_timer, NULL);
    assert_int_equal(sq_add_callback_threadsafe(loop, ts_spin_cb, NULL), 0);
    run_guarded(loop, 30);
    assert_true(ts_spin.timer_fired);
    /* The chain was still going when the timer fired: it did not run to its end first. */
    assert_true(ts_spin.runs < 2000000);
    sq_loop_free(loop);
}

/* --- stop and run_until ------------------------------------------------------------------ */

static int ran_after_stop;
static void after_stop(void *arg)
{
    ran_after_stop++;
}
static void check_running(void *arg)
{
    *(int *)arg = sq_loop_is_running(sq_loop_current());
}

static void test_loop_stop(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_false(sq_loop_is_running(loop));
    /* sq_loop_run_once runs it too (loop.h: "or run_until / run_once"). */
    int running_once = 0;
    sq_add_callback(loop, check_running, &running_once);
    assert_int_equal(sq_loop_run_once(loop, false), 0);
    assert_true(running_once);
    assert_false(sq_loop_is_running(loop));
    assert_string_equal(sq_loop_backend_name(loop), "epoll");
    int running = 0;
    sq_add_callback(loop, check_running, &running);
    sq_call_later(loop, 0.02, stop_loop, loop);
    double t0 = sq_test_now();
    assert_int_equal(sq_loop_run(loop), 0);
    double took = sq_test_now() - t0;
    assert_true(running);
    assert_false(sq_loop_is_running(loop));
    assert_true(took >= 0.019);
    assert_true(took < 1.0);
    /* Stop from a callback: the loop returns after the current iteration, and the loop can
     * be run again afterwards. */
    ran_after_stop = 0;
    sq_add_callback(loop, stop_loop, loop);
    sq_call_later(loop, 0.05, after_stop, NULL);
    assert_int_equal(sq_loop_run(loop), 0);
    assert_int_equal(ran_after_stop, 0);
    sq_call_later(loop, 0.1, stop_loop, loop);
    assert_int_equal(sq_loop_run(loop), 0);
    assert_int_equal(ran_after_stop, 1);
    /* Stop asked before the run: one pass without waiting (what is due runs), then return,
     * as asyncio does; it used to be forgotten, and the run waited for the 1 s timer. */
    ran_after_stop = 0;
    sq_add_callback(loop, after_stop, NULL);
    sq_call *guard = sq_call_later(loop, 1.0, stop_loop, loop);
    sq_loop_stop(loop);
    t0 = sq_test_now();
    assert_int_equal(sq_loop_run(loop), 0);
    assert_true(sq_test_now() - t0 < 0.5);
    assert_int_equal(ran_after_stop, 1);
    /* A stop asked in a pass of sq_loop_run_once ends that pass; it used to stay, and every
     * later blocking pass returned at once (a program driving the loop itself spun). */
    sq_add_callback(loop, stop_loop, loop);
    assert_int_equal(sq_loop_run_once(loop, false), 0);
    sq_call_later(loop, 0.1, after_stop, NULL);
    t0 = sq_test_now();
    for (int i = 0; i < 1000 && ran_after_stop < 2; i++)
        assert_int_equal(sq_loop_run_once(loop, true), 0);
    assert_int_equal(ran_after_stop, 2);
    assert_true(sq_test_now() - t0 >= 0.09);
    sq_call_cancel(guard);
    /* The clock moves forward. */
    double a = sq_loop_time(loop);
    sleep_ms(5);
    sq_loop_update_time(loop);
    assert_true(sq_loop_time(loop) - a >= 0.004);
    assert_true(sq_loop_now_ns(loop) >= (uint64_t)(a * 1e9));
    sq_loop_free(loop);
}

static void resolve_it(void *arg)
{
    sq_future_set_result(arg, (void *)"done");
}

static void test_run_until_future(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_future_new(loop);
    sq_call_later(loop, 0.05, resolve_it, f);
    sq_call *far = sq_call_later(loop, 30, stop_loop, loop); /* must not be waited for */
    double t0 = sq_test_now();
    assert_int_equal(sq_loop_run_until(loop, f), 0);
    double took = sq_test_now() - t0;
    assert_true(sq_future_done(f));
    assert_string_equal(sq_future_value(f), "done");
    assert_true(took >= 0.045);
    assert_true(took < 1.0);
    /* Already done: returns at once; the future is not consumed. */
    assert_int_equal(sq_loop_run_until(loop, f), 0);
    assert_string_equal(sq_future_value(f), "done");
    sq_future_release(f);
    /* sq_loop_stop ends run_until before its future is done. */
    f = sq_future_new(loop);
    sq_add_callback(loop, stop_loop, loop);
    assert_int_equal(sq_loop_run_until(loop, f), 0);
    assert_false(sq_future_done(f));
    sq_future_release(f);
    sq_call_cancel(far);
    sq_loop_free(loop);
}

/* --- signals ------------------------------------------------------------------------------- */

static struct {
    int signum;
    void *arg;
    int on_loop;
    int calls;
} sig;

static void on_usr1(sq_loop *loop, int signum, void *arg)
{
    sig.signum = signum;
    sig.arg = arg;
    sig.on_loop = sq_loop_is_running(loop);
    sig.calls++;
    sq_loop_stop(loop);
}

static void raise_usr1(void *arg)
{
    raise(SIGUSR1);
}

static void test_signal_delivered_on_loop(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&sig, 0, sizeof sig);
    assert_int_equal(sq_signal_add(loop, SIGUSR1, on_usr1, &sig), 0);
    /* Raised outside the loop: the handler only notes it; the callback runs on the loop. */
    raise(SIGUSR1);
    assert_int_equal(sig.calls, 0);
    run_guarded(loop, 5);
    assert_int_equal(sig.calls, 1);
    assert_int_equal(sig.signum, SIGUSR1);
    assert_ptr_equal(sig.arg, &sig);
    assert_true(sig.on_loop);
    /* Raised from a callback while the loop runs. */
    sq_add_callback(loop, raise_usr1, NULL);
    run_guarded(loop, 5);
    assert_int_equal(sig.calls, 2);
    /* Bad signal numbers are refused. */
    assert_int_equal(sq_signal_add(loop, SIGKILL, on_usr1, NULL), -EINVAL);
    assert_int_equal(sq_signal_add(loop, 0, on_usr1, NULL), -EINVAL);
    assert_int_equal(sq_signal_remove(loop, SIGUSR1), 0);
    assert_int_equal(sq_signal_remove(loop, SIGUSR1), -ENOENT);
    sq_loop_free(loop);
}

static int info_logs;
static void count_log(int level, const char *msg, void *arg)
{
    if (strstr(msg, "stopping")) info_logs++;
}
static void raise_term(void *arg)
{
    raise(SIGTERM);
}

static void test_stop_on_signals(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    info_logs = 0;
    sq_log_set_handler(count_log, NULL);
    assert_int_equal(sq_loop_stop_on_signals(loop), 0);
    sq_call_later(loop, 0.02, raise_term, NULL);
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, 5, limit_hit, &timed_out);
    double t0 = sq_test_now();
    assert_int_equal(sq_loop_run(loop), 0);
    assert_false(timed_out);
    assert_true(sq_test_now() - t0 < 2.0);
    sq_call_cancel(guard);
    assert_int_equal(info_logs, 1);
    sq_log_set_handler(NULL, NULL);
    /* sq_loop_free restores the dispositions it changed. */
    sq_loop_free(loop);
    struct sigaction sa;
    sigaction(SIGTERM, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
    sigaction(SIGINT, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

/* --- slow-callback warning ------------------------------------------------------------------- */

static struct {
    int warnings;
    int other;
    char last[1024];
} logs;

static void capture_log(int level, const char *msg, void *arg)
{
    if (level == SQ_LOG_WARNING) {
        logs.warnings++;
        snprintf(logs.last, sizeof logs.last, "%s", msg);
    } else {
        logs.other++;
    }
}

static void block_cb(void *arg)
{
    sleep_ms((int)(intptr_t)arg);
}
static void fast_cb(void *arg)
{
    (void)arg;
}

static void turn_on_cb(void *arg)
{
    sq_loop_set_slow_callback_warning(arg, 0.05);
}

static double logged_ms(void)
{
    const char *p = strstr(logs.last, "for ");
    double ms = -1;
    if (p) sscanf(p, "for %lf ms", &ms);
    return ms;
}

static void test_slow_callback_warning(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&logs, 0, sizeof logs);
    sq_log_set_handler(capture_log, NULL);

    /* A fast callback logs nothing. */
    for (int i = 0; i < 100; i++) sq_add_callback(loop, fast_cb, NULL);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 0);

    /* One that holds the loop 150 ms is named, with how long it took. */
    sq_add_callback(loop, block_cb, (void *)(intptr_t)150);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 1);
    print_message("logged: %s\n", logs.last);
    assert_non_null(strstr(logs.last, "slow callback"));
    double ms = logged_ms();
    assert_true(ms >= 140 && ms < 2000);

    /* The threshold is configurable ... */
    sq_loop_set_slow_callback_warning(loop, 0.02);
    sq_add_callback(loop, block_cb, (void *)(intptr_t)40);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 2);
    assert_true(logged_ms() >= 30);
    sq_add_callback(loop, block_cb, (void *)(intptr_t)1);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 2);

    /* ... and negative disables it. */
    sq_loop_set_slow_callback_warning(loop, -1);
    sq_add_callback(loop, block_cb, (void *)(intptr_t)150);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 2);
    sq_loop_free(loop);

    /* The same through sq_loop_options. */
    loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = -1});
    sq_add_callback(loop, block_cb, (void *)(intptr_t)150);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 2);
    sq_loop_free(loop);

    /* Timers and fd watchers are watched too. */
    loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = 0.05});
    sq_call_later(loop, 0, block_cb, (void *)(intptr_t)100);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 3);
    assert_non_null(strstr(logs.last, "slow callback"));
    sq_loop_free(loop);

    /* A callback that turns the check on is not measured from the loop's creation (it
     * was reported as holding the loop for the machine's uptime). */
    loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = -1});
    sq_add_callback(loop, turn_on_cb, loop);
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 3);
    sq_add_callback(loop, block_cb, (void *)(intptr_t)100); /* and it works from then on */
    sq_loop_run_once(loop, false);
    assert_int_equal(logs.warnings, 4);
    sq_loop_free(loop);

    assert_int_equal(logs.other, 0);
    sq_log_set_handler(NULL, NULL);
}

/* fd watchers share one clock read between events of a batch (one event's end is the next
 * one's start): a slow log handler must not make the next, fast watchers look slow, and a
 * watcher that turns the check off is not reported. */
static int slow_log_ms;
static void slow_capture_log(int level, const char *msg, void *arg)
{
    capture_log(level, msg, arg);
    if (slow_log_ms) sleep_ms(slow_log_ms);
}

typedef struct batch_io {
    sq_io io;
    int fd[2];
    int block_ms;
    bool turn_off;
} batch_io;

static void batch_io_cb(sq_loop *loop, sq_io *io, unsigned events)
{
    batch_io *b = io->data;
    char c;
    (void)events;
    while (read(b->fd[0], &c, 1) == 1) {
    }
    if (b->block_ms) sleep_ms(b->block_ms);
    if (b->turn_off) sq_loop_set_slow_callback_warning(loop, -1);
}

static void test_slow_fd_batch(void **state)
{
    (void)state;
    memset(&logs, 0, sizeof logs);
    sq_log_set_handler(slow_capture_log, NULL);
    for (int scenario = 0; scenario < 2; scenario++) {
        sq_loop *loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = 0.1});
        batch_io b[4] = {{.block_ms = 0}};
        for (int i = 0; i < 4; i++) {
            assert_int_equal(pipe2(b[i].fd, O_NONBLOCK | O_CLOEXEC), 0);
            sq_io_init(&b[i].io, b[i].fd[0], batch_io_cb, &b[i]);
            assert_int_equal(sq_io_start(loop, &b[i].io, SQ_READ), 0);
        }
        if (scenario == 0) {
            b[0].block_ms = 150; /* one slow watcher, then three fast ones */
            slow_log_ms = 200;   /* and a log handler slower than the threshold */
        } else {
            b[0].block_ms = b[1].block_ms = 150; /* each slow, but the first turns it off */
            b[0].turn_off = b[1].turn_off = true;
            slow_log_ms = 0;
        }
        for (int i = 0; i < 4; i++) assert_int_equal(write(b[i].fd[1], "x", 1), 1);
        int before = logs.warnings;
        sq_loop_run_once(loop, false); /* all four in one epoll batch */
        print_message("scenario %d: %d warnings\n", scenario, logs.warnings - before);
        assert_int_equal(logs.warnings - before, scenario == 0 ? 1 : 0);
        for (int i = 0; i < 4; i++) {
            sq_io_stop(loop, &b[i].io);
            close(b[i].fd[0]);
            close(b[i].fd[1]);
        }
        sq_loop_free(loop);
    }
    slow_log_ms = 0;
    sq_log_set_handler(NULL, NULL);
}

/* sq_raise_fd_limit: the soft limit goes up to the hard one (a server's first step). */
static void test_raise_fd_limit(void **state)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    struct rlimit low = rl;
    if (rl.rlim_max > 256) low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    long got = sq_raise_fd_limit();
    struct rlimit now;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
    assert_true(now.rlim_cur == rl.rlim_max);
    assert_true(got > 0 && (rlim_t)got == now.rlim_cur);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    (void)state;
}

/* --- nested runs are refused ---------------------------------------------------------- */

typedef struct nested {
    sq_loop *loop;
    int once_rc, run_rc, until_rc, coro_rc;
    int inner_ran; /* a callback queued for the nested pass: it must wait for the outer loop */
    int errors;    /* error lines logged */
    int busy_logs; /* of which about the nested run */
} nested;

static void nested_log(int level, const char *msg, void *arg)
{
    nested *n = arg;
    if (level == SQ_LOG_ERROR) n->errors++;
    if (strstr(msg, "refused") && strstr(msg, "same loop")) n->busy_logs++;
}

static void mark_inner(void *arg)
{
    ((nested *)arg)->inner_ran++;
}

static void nested_from_callback(void *arg)
{
    nested *n = arg;
    sq_add_callback(n->loop, mark_inner, n);
    n->once_rc = sq_loop_run_once(n->loop, false);
    n->run_rc = sq_loop_run(n->loop);
    n->until_rc = sq_loop_run_until(n->loop, NULL);
    assert_int_equal(n->inner_ran, 0); /* not run re-entrantly */
}

static void *nested_from_coro(void *arg)
{
    nested *n = arg;
    n->coro_rc = sq_loop_run_once(n->loop, true); /* would block inside the coroutine */
    return NULL;
}

static void test_nested_run_refused(void **state)
{
    nested n = {0};
    n.loop = sq_loop_new(NULL);
    sq_log_set_handler(nested_log, &n);
    /* From a callback of a loop driven by sq_loop_run_once ... */
    sq_add_callback(n.loop, nested_from_callback, &n);
    assert_int_equal(sq_loop_run_once(n.loop, false), 0);
    assert_int_equal(n.once_rc, -EBUSY);
    assert_int_equal(n.run_rc, -EBUSY);
    assert_int_equal(n.until_rc, -EBUSY);
    /* ... and from a coroutine of a loop driven by sq_loop_run_until. */
    sq_future *f = sq_spawn(n.loop, nested_from_coro, &n);
    double t0 = sq_test_now();
    assert_int_equal(sq_loop_run_until(n.loop, f), 0);
    assert_true(sq_test_now() - t0 < 5.0);
    sq_future_release(f);
    assert_int_equal(n.coro_rc, -EBUSY);
    sq_log_set_handler(NULL, NULL);
    assert_int_equal(n.busy_logs, 1); /* said once, not once per attempt */
    assert_int_equal(n.errors, 1);
    /* the queued callback ran in the outer loop's next pass, and the loop still works */
    assert_int_equal(n.inner_ran, 1);
    sq_add_callback(n.loop, mark_inner, &n);
    assert_int_equal(sq_loop_run_once(n.loop, false), 0);
    assert_int_equal(n.inner_ran, 2);
    sq_loop_free(n.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_callbacks_fifo),
        cmocka_unit_test(test_self_readding_callback_does_not_starve),
        cmocka_unit_test(test_yielding_coroutine_does_not_starve),
        cmocka_unit_test(test_io_read_write_readiness),
        cmocka_unit_test(test_io_stop_mid_batch),
        cmocka_unit_test(test_io_many_stops_mid_batch),
        cmocka_unit_test(test_io_interest_narrowed_mid_batch),
        cmocka_unit_test(test_io_rearm_and_forget),
        cmocka_unit_test(test_io_start_failure_keeps_interest),
        cmocka_unit_test(test_threadsafe_self_requeue_does_not_starve),
        cmocka_unit_test(test_loop_stop),
        cmocka_unit_test(test_run_until_future),
        cmocka_unit_test(test_signal_delivered_on_loop),
        cmocka_unit_test(test_stop_on_signals),
        cmocka_unit_test(test_slow_callback_warning),
        cmocka_unit_test(test_slow_fd_batch),
        cmocka_unit_test(test_raise_fd_limit),
        cmocka_unit_test(test_nested_run_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
