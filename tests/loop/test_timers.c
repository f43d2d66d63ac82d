/* Timers: deadline order, FIFO among equal deadlines, mass scheduling and cancelling,
 * repeating timers, sq_call_at, and periodic callbacks (interval, skipping, jitter). */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A deterministic PRNG so that failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void shuffle(int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng() % (uint32_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Runs the loop until *flag is set, failing after `limit` seconds. */
static void limit_hit(void *arg)
{
    *(int *)arg = 1;
}
static void run_until_flag(sq_loop *loop, volatile int *flag, double limit)
{
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, limit, limit_hit, &timed_out);
    while (!*flag && !timed_out) assert_int_equal(sq_loop_run_once(loop, true), 0);
    if (timed_out) fail_msg("loop did not reach its goal within %.1f s", limit);
    sq_call_cancel(guard);
}

/* --- deadline order ------------------------------------------------------------------ */

#define ORDER_N 200

static struct {
    int fired[ORDER_N];
    int nfired;
    int delay_ms[ORDER_N];
} ord;

static void record_order(void *arg)
{
    ord.fired[ord.nfired++] = (int)(intptr_t)arg;
}

static void test_deadline_order(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&ord, 0, sizeof ord);
    int idx[ORDER_N];
    for (int i = 0; i < ORDER_N; i++) {
        idx[i] = i;
        ord.delay_ms[i] = (i / 4) % 25; /* groups of equal deadlines, 0..24 ms */
    }
    shuffle(idx, ORDER_N);
    /* The loop clock is cached, so every timer armed here measures from the same "now":
     * equal delays are equal deadlines. */
    for (int k = 0; k < ORDER_N; k++) {
        int i = idx[k];
        assert_non_null(
            sq_call_later(loop, ord.delay_ms[i] / 1000.0, record_order, (void *)(intptr_t)i));
    }
    double t0 = sq_test_now();
    while (ord.nfired < ORDER_N && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
    assert_int_equal(ord.nfired, ORDER_N);
    /* Sorted by deadline; among equal deadlines, in the order they were scheduled. */
    int pos[ORDER_N];
    for (int k = 0; k < ORDER_N; k++) pos[idx[k]] = k;
    for (int k = 1; k < ORDER_N; k++) {
        int a = ord.fired[k - 1], b = ord.fired[k];
        assert_true(ord.delay_ms[a] <= ord.delay_ms[b]);
        if (ord.delay_ms[a] == ord.delay_ms[b]) assert_true(pos[a] < pos[b]);
    }
    sq_loop_free(loop);
}

/* Equal deadlines by sq_timer_start_at as well: strictly FIFO. */
static void test_equal_deadlines_fifo(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&ord, 0, sizeof ord);
    double when = sq_loop_time(loop) + 0.01;
    for (int i = 0; i < 100; i++)
        assert_non_null(sq_call_at(loop, when, record_order, (void *)(intptr_t)i));
    double t0 = sq_test_now();
    while (ord.nfired < 100 && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
    assert_int_equal(ord.nfired, 100);
    for (int i = 0; i < 100; i++) assert_int_equal(ord.fired[i], i);
    sq_loop_free(loop);
}

/* --- 100,000 timers, half cancelled ------------------------------------------------------ */

#define MASS_N 100000

static struct {
    unsigned char *hits;
    int fired;
    int target;
    sq_loop *loop;
} mass;

static void mass_fire(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    mass.hits[i]++;
    if (++mass.fired == mass.target) sq_loop_stop(mass.loop);
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void test_mass_schedule_cancel(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_call **calls = calloc(MASS_N, sizeof *calls);
    mass.hits = calloc(MASS_N, 1);
    assert_non_null(calls);
    assert_non_null(mass.hits);
    mass.fired = 0;
    mass.target = MASS_N / 2;
    mass.loop = loop;
    for (size_t i = 0; i < MASS_N; i++) {
        double delay = (double)(rng() % 50001) / 1e6; /* 0 .. 50 ms */
        calls[i] = sq_call_later(loop, delay, mass_fire, (void *)(uintptr_t)i);
        assert_non_null(calls[i]);
    }
    /* Cancel the even ones, in a scrambled order so that the heap is cut in many places. */
    int *idx = malloc(sizeof(int) * (MASS_N / 2));
    for (int k = 0; k < MASS_N / 2; k++) idx[k] = 2 * k;
    shuffle(idx, MASS_N / 2);
    for (int k = 0; k < MASS_N / 2; k++) sq_call_cancel(calls[idx[k]]);
    free(idx);

    sq_call *guard = sq_call_later(loop, 20.0, stop_loop, loop);
    assert_int_equal(sq_loop_run(loop), 0);
    sq_call_cancel(guard);
    assert_int_equal(mass.fired, MASS_N / 2);
    /* Past every deadline: nothing else fires. */
    sq_call_later(loop, 0.06, stop_loop, loop);
    assert_int_equal(sq_loop_run(loop), 0);
    assert_int_equal(mass.fired, MASS_N / 2);
    for (size_t i = 0; i < MASS_N; i++) {
        if (mass.hits[i] != (i % 2 ? 1 : 0))
            fail_msg("timer %zu fired %d times (expected %d)", i, mass.hits[i], (int)(i % 2));
    }
    free(mass.hits);
    free(calls);
    sq_loop_free(loop);
}

/* After a burst, sq__loop_slabs_trim gives the slabs whose handles and slot chunks are all
 * free back to malloc; a call armed before the burst and one armed in its middle stay
 * pending, their slabs with them, and fire when due; a second burst carves afresh. */
void sq__loop_slabs_trim(sq_loop *loop);         /* src/internal.h */
size_t sq__loop_slab_bytes(const sq_loop *loop); /* src/internal.h */
size_t sq__loop_ents_cap(const sq_loop *loop);   /* src/internal.h */

static void flag_set(void *arg)
{
    *(int *)arg = 1;
}

static void test_slabs_trim(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_call **calls = calloc(MASS_N, sizeof *calls);
    mass.hits = calloc(MASS_N, 1);
    assert_non_null(calls);
    assert_non_null(mass.hits);
    mass.loop = loop;
    int flags[2] = {0, 0}; /* the call armed before the bursts, the one armed in the first */
    assert_non_null(sq_call_later(loop, 1.0, flag_set, &flags[0]));
    for (int round = 0; round < 2; round++) {
        memset(mass.hits, 0, MASS_N);
        mass.fired = 0;
        mass.target = MASS_N;
        for (size_t i = 0; i < MASS_N; i++) {
            double delay = (double)(rng() % 30001) / 1e6; /* 0 .. 30 ms */
            calls[i] = sq_call_later(loop, delay, mass_fire, (void *)(uintptr_t)i);
            assert_non_null(calls[i]);
        }
        if (round == 0) { /* the middle handle, taken again at once, stays pending */
            sq_call_cancel(calls[MASS_N / 2]);
            mass.target--;
            assert_ptr_equal(sq_call_later(loop, 1.0, flag_set, &flags[1]), calls[MASS_N / 2]);
        }
        sq_call *guard = sq_call_later(loop, 20.0, stop_loop, loop);
        assert_int_equal(sq_loop_run(loop), 0);
        sq_call_cancel(guard);
        assert_int_equal(mass.fired, mass.target);
        size_t before = sq__loop_slab_bytes(loop);
        sq__loop_slabs_trim(loop);
        size_t after = sq__loop_slab_bytes(loop);
        /* 100,000 handles and their chunks: 10 MB; what stays is the slabs of the two pending
         * calls, and of their slot's chunk and the pool of the free handles sharing them */
        assert_true(before > (size_t)MASS_N * 64);
        if (!flags[0] && !flags[1]) assert_true(after <= before / 2);
        assert_true(after <= before);
        /* the due run and its sorting space held a tick's 3,000-odd timers (4,096 entries
         * each): cut to 64 each, as the heap (timers reached but not yet due); room for up to
         * 128 stays as it is */
        assert_true(sq__loop_ents_cap(loop) <= 3 * 128);
    }
    /* the pending calls fire when due, from the slabs that stayed */
    for (int i = 0; i < 100 && (!flags[0] || !flags[1]); i++) /* each waits for the next */
        assert_int_equal(sq_loop_run_once(loop, true), 0);
    assert_true(flags[0] && flags[1]);
    /* nothing pending: every slab goes */
    sq__loop_slabs_trim(loop);
    assert_int_equal(sq__loop_slab_bytes(loop), 0);
    /* and the loop carves again */
    int again = 0;
    assert_non_null(sq_call_later(loop, 0.001, flag_set, &again));
    run_until_flag(loop, &again, 5.0);
    free(mass.hits);
    free(calls);
    sq_loop_free(loop);
}

/* A wheel slot emptied by cancels but for one timer gives back its chunks past that timer's
 * entry: 100,000 calls armed for the same slot after one that stays, all cancelled, then
 * the trim leaves a few KiB of slabs (1.6 MB of the slot's chunks stayed before), and the
 * one that stayed fires. */
static void test_slabs_trim_cancelled(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_call **calls = calloc(MASS_N, sizeof *calls);
    assert_non_null(calls);
    int flag = 0;
    assert_non_null(sq_call_later(loop, 0.3, flag_set, &flag));
    for (size_t i = 0; i < MASS_N; i++) {
        calls[i] = sq_call_later(loop, 0.3, flag_set, &flag);
        assert_non_null(calls[i]);
    }
    size_t armed = sq__loop_slab_bytes(loop);
    for (size_t i = 0; i < MASS_N; i++) sq_call_cancel(calls[MASS_N - 1 - i]);
    sq__loop_slabs_trim(loop);
    size_t after = sq__loop_slab_bytes(loop);
    assert_true(armed > (size_t)MASS_N * 64);
    assert_true(after <= 64 * 1024);
    run_until_flag(loop, &flag, 5.0);
    assert_int_equal(flag, 1);
    free(calls);
    sq_loop_free(loop);
}

/* Handles and slot chunks come back to the loop and are taken again: 100,000 calls fire (the
 * pool of released handles fills, block after block), then 100,000 more are armed with those
 * handles, a scrambled third cancelled (slots emptied out of order, their chunks given back),
 * and every other one fires once. */
static void test_mass_reuse(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_call **calls = calloc(MASS_N, sizeof *calls);
    mass.hits = calloc(MASS_N, 1);
    int *idx = malloc(sizeof(int) * MASS_N);
    assert_non_null(calls);
    assert_non_null(mass.hits);
    assert_non_null(idx);
    mass.loop = loop;
    for (int round = 0; round < 2; round++) {
        memset(mass.hits, 0, MASS_N);
        mass.fired = 0;
        mass.target = round ? MASS_N - MASS_N / 3 : MASS_N;
        for (size_t i = 0; i < MASS_N; i++) {
            double delay = (double)(rng() % 30001) / 1e6; /* 0 .. 30 ms */
            calls[i] = sq_call_later(loop, delay, mass_fire, (void *)(uintptr_t)i);
            assert_non_null(calls[i]);
        }
        if (round) {
            for (int k = 0; k < MASS_N; k++) idx[k] = k;
            shuffle(idx, MASS_N);
            for (int k = 0; k < MASS_N / 3; k++) {
                sq_call_cancel(calls[idx[k]]);
                calls[idx[k]] = NULL;
            }
        }
        sq_call *guard = sq_call_later(loop, 20.0, stop_loop, loop);
        assert_int_equal(sq_loop_run(loop), 0);
        sq_call_cancel(guard);
        assert_int_equal(mass.fired, mass.target);
        for (size_t i = 0; i < MASS_N; i++) {
            int want = round == 0 || calls[i] ? 1 : 0;
            if (mass.hits[i] != want)
                fail_msg("round %d: timer %zu fired %d times (expected %d)", round, i, mass.hits[i],
                         want);
        }
    }
    /* one at a time, as a server arms and cancels a timeout: the same slot's chunk serves */
    for (int i = 0; i < 1000; i++) sq_call_cancel(sq_call_later(loop, 5.0, stop_loop, loop));
    free(idx);
    free(mass.hits);
    free(calls);
    sq_loop_free(loop);
}

/* The heap's order under churn: 20,000 calls due at once (deadlines already past, many
 * equal), a scrambled third of them cancelled; one pass must fire the rest by deadline, and
 * in the order of arming among equal deadlines. */
#define HEAP_N 20000
static struct {
    double when[HEAP_N];
    int last;
    double last_when;
    int fired, bad;
} hord;

static void hord_fire(void *arg)
{
    int i = (int)(uintptr_t)arg;
    if (hord.fired && (hord.when[i] < hord.last_when || (hord.when[i] == hord.last_when && i < hord.last)))
        hord.bad++;
    hord.last = i;
    hord.last_when = hord.when[i];
    hord.fired++;
}

static void test_heap_order_under_churn(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    double now = sq_loop_time(loop);
    static sq_call *calls[HEAP_N];
    memset(&hord, 0, sizeof hord);
    for (int i = 0; i < HEAP_N; i++) {
        hord.when[i] = now - 1.0 + (double)(rng() % 200) / 1000.0; /* 200 distinct values */
        calls[i] = sq_call_at(loop, hord.when[i], hord_fire, (void *)(uintptr_t)i);
    }
    int *idx = malloc(sizeof(int) * HEAP_N);
    for (int k = 0; k < HEAP_N; k++) idx[k] = k;
    shuffle(idx, HEAP_N);
    for (int k = 0; k < HEAP_N / 3; k++) sq_call_cancel(calls[idx[k]]);
    free(idx);
    sq_loop_run_once(loop, false);
    assert_int_equal(hord.fired, HEAP_N - HEAP_N / 3);
    assert_int_equal(hord.bad, 0);
    sq_loop_free(loop);
}

/* --- the wheel against a model, on a clock driven by hand -------------------------------- *
 *
 * 4,000 timers armed, re-armed and stopped at random, with delays from a nanosecond to about
 * a day (every level of the wheel), several armed at once with equal delays, and the clock
 * moved forward by random steps from a nanosecond to hours.  After every step: each timer
 * due has fired exactly once, none early, the rest are still active; and all the firings,
 * in order, are sorted by (deadline, arming order). */
void sq__timers_advance(sq_loop *loop, uint64_t now_ns); /* src/internal.h */

#define WM_N 4000
static struct {
    sq_timer t[WM_N];
    uint64_t armed_at[WM_N]; /* this model's arming order; 0: not armed */
    uint64_t now, seq, last_deadline, last_seq;
    int fired, bad, early, stray;
} wm;

static uint64_t rng64(void)
{
    return ((uint64_t)rng() << 32) ^ rng();
}

/* 1 ns .. 2^46 ns (19.5 hours), spread evenly over the powers of two. */
static uint64_t wm_span(void)
{
    unsigned bits = rng() % 47;
    return 1 + (rng64() & ((1ull << bits) - 1));
}

static void wm_fire(sq_loop *loop, sq_timer *t)
{
    (void)loop;
    size_t i = (size_t)(t - wm.t);
    if (!wm.armed_at[i]) {
        wm.stray++;
        return;
    }
    if (t->deadline > wm.now) wm.early++;
    if (wm.fired && (t->deadline < wm.last_deadline ||
                     (t->deadline == wm.last_deadline && wm.armed_at[i] < wm.last_seq)))
        wm.bad++;
    wm.last_deadline = t->deadline;
    wm.last_seq = wm.armed_at[i];
    wm.armed_at[i] = 0;
    wm.fired++;
}

static void wm_check(void)
{
    for (size_t i = 0; i < WM_N; i++) {
        bool armed = wm.armed_at[i] != 0;
        if (armed != sq_timer_active(&wm.t[i]))
            fail_msg("timer %zu: active %d, the model says %d", i, sq_timer_active(&wm.t[i]),
                     armed);
        if (armed && wm.t[i].deadline <= wm.now)
            fail_msg("timer %zu: due at %llu, not fired at %llu", i,
                     (unsigned long long)wm.t[i].deadline, (unsigned long long)wm.now);
    }
    assert_int_equal(wm.early, 0);
    assert_int_equal(wm.bad, 0);
    assert_int_equal(wm.stray, 0);
}

static void test_wheel_model(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&wm, 0, sizeof wm);
    wm.now = sq_loop_now_ns(loop);
    for (size_t i = 0; i < WM_N; i++) sq_timer_init(loop, &wm.t[i], wm_fire, NULL);
    int armed = 0, stopped = 0, steps = 0;
    for (int round = 0; round < 3000; round++) {
        unsigned what = rng() % 8;
        if (what < 5) {
            /* a batch armed at once: some with one delay (equal deadlines) */
            uint64_t span = wm_span();
            unsigned n = 1 + rng() % 8;
            for (unsigned k = 0; k < n; k++) {
                size_t i = rng() % WM_N;
                uint64_t d = rng() % 2 ? span : wm_span();
                if (rng() % 4 == 0) { /* due exactly at the start of a tick */
                    uint64_t tick = 1ull << 20;
                    d = ((wm.now + d) / tick + 1) * tick - wm.now;
                }
                stopped += wm.armed_at[i] != 0; /* re-armed: the earlier arming is gone */
                sq_timer_start(&wm.t[i], (double)d / 1e9, 0);
                if (wm.t[i].deadline <= wm.now) { /* a delay that rounds to 0 ns */
                    sq_timer_stop(&wm.t[i]);
                    wm.armed_at[i] = 0;
                    continue;
                }
                wm.armed_at[i] = ++wm.seq;
                armed++;
            }
        } else if (what == 5) {
            size_t i = rng() % WM_N;
            stopped += wm.armed_at[i] != 0;
            sq_timer_stop(&wm.t[i]);
            wm.armed_at[i] = 0;
        } else {
            wm.now += wm_span() >> (rng() % 24); /* mostly short steps, some of hours */
            if (rng() % 3 == 0) {
                /* to just before a boundary of the wheel's slots (2^20 ns ticks, 64 per
                 * slot above), so that the next tick starts a slot of level 1 to 3 */
                uint64_t unit = 1ull << (20 + 6 * (1 + rng() % 3));
                wm.now = (wm.now / unit + 1) * unit - 1;
            }
            sq__timers_advance(loop, wm.now);
            steps++;
            wm_check();
        }
    }
    /* past every deadline: everything left fires */
    wm.now += 1ull << 47;
    sq__timers_advance(loop, wm.now);
    wm_check();
    for (size_t i = 0; i < WM_N; i++) assert_false(sq_timer_active(&wm.t[i]));
    printf("wheel model: %d armed, %d stopped or re-armed, %d fired over %d clock steps\n",
           armed, stopped, wm.fired, steps);
    assert_int_equal(wm.fired, armed - stopped);
    assert_true(wm.fired > 1000);
    assert_true(steps > 500);
    sq_loop_free(loop);
}

/* --- sq_timer ----------------------------------------------------------------------------- */

typedef struct {
    int count;
    int stop_at;
    double times[16];
    int done;
} rep_state;

static void repeat_cb(sq_loop *loop, sq_timer *t)
{
    rep_state *st = t->data;
    if (st->count < 16) st->times[st->count] = sq_test_now();
    st->count++;
    if (st->count == st->stop_at) {
        sq_timer_stop(t); /* from inside its own callback */
        assert_false(sq_timer_active(t));
        st->done = 1;
    }
}

static void test_timer_repeat_and_stop_inside(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    rep_state st = {.stop_at = 5};
    sq_timer t;
    sq_timer_init(loop, &t, repeat_cb, &st);
    assert_false(sq_timer_active(&t));
    double t0 = sq_test_now();
    sq_timer_start(&t, 0.01, 0.01);
    assert_true(sq_timer_active(&t));
    run_until_flag(loop, &st.done, 5);
    double took = sq_test_now() - t0;
    assert_int_equal(st.count, 5);
    assert_true(took >= 0.049);
    assert_true(took < 1.0);
    for (int i = 1; i < 5; i++) assert_true(st.times[i] >= st.times[i - 1]);
    /* Stopped means stopped: nothing more fires. */
    sq_call_later(loop, 0.05, stop_loop, loop);
    sq_loop_run(loop);
    assert_int_equal(st.count, 5);
    assert_false(sq_timer_active(&t));
    sq_timer_stop(&t); /* stopping an inactive timer is harmless */

    /* A one-shot timer stopped from its own callback, and re-arming moves a timer. */
    rep_state one = {.stop_at = 1};
    sq_timer_init(loop, &t, repeat_cb, &one);
    sq_timer_start(&t, 10.0, 0);
    sq_timer_start(&t, 0.01, 0); /* moved from 10 s to 10 ms */
    t0 = sq_test_now();
    run_until_flag(loop, &one.done, 5);
    assert_true(sq_test_now() - t0 < 1.0);
    assert_int_equal(one.count, 1);
    assert_false(sq_timer_active(&t));
    sq_loop_free(loop);
}

static double call_at_fired;
static void call_at_cb(void *arg)
{
    call_at_fired = sq_loop_time(arg);
    sq_loop_stop(arg);
}

static void test_call_at(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    call_at_fired = 0;
    double when = sq_loop_time(loop) + 0.05;
    double t0 = sq_test_now();
    assert_non_null(sq_call_at(loop, when, call_at_cb, loop));
    sq_call *guard = sq_call_later(loop, 5, stop_loop, loop);
    sq_loop_run(loop);
    sq_call_cancel(guard);
    assert_true(call_at_fired >= when);
    assert_true(sq_test_now() - t0 >= 0.045);
    assert_true(sq_test_now() - t0 < 1.0);

    /* A time in the past fires on the next iteration. */
    call_at_fired = 0;
    assert_non_null(sq_call_at(loop, sq_loop_time(loop) - 10, call_at_cb, loop));
    sq_loop_run_once(loop, false);
    assert_true(call_at_fired > 0);

    /* A cancelled sq_call_at never fires. */
    call_at_fired = 0;
    sq_call_cancel(sq_call_at(loop, sq_loop_time(loop) + 0.01, call_at_cb, loop));
    sq_call_later(loop, 0.05, stop_loop, loop);
    sq_loop_run(loop);
    assert_true(call_at_fired == 0);
    sq_loop_free(loop);
}

/* --- periodic callbacks ------------------------------------------------------------------- */

#define MAX_TICKS 512

typedef struct {
    sq_periodic *p;
    double ticks[MAX_TICKS];
    uint64_t deadlines[MAX_TICKS]; /* the next deadline, as armed when the tick ran */
    int n;
    int block_on; /* tick number that blocks the loop for block_ms, or -1 */
    int block_ms;
    double block_end;
} tick_state;

static void tick(void *arg)
{
    tick_state *st = arg;
    if (st->n < MAX_TICKS) {
        st->ticks[st->n] = sq_test_now();
        st->deadlines[st->n] = st->p->timer.deadline;
    }
    if (st->n == st->block_on) {
        sleep_ms(st->block_ms);
        st->block_end = sq_test_now();
    }
    st->n++;
}

static tick_state *tick_new(sq_loop *loop, sq_periodic *p, double interval)
{
    tick_state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    st->p = p;
    st->block_on = -1;
    sq_periodic_init(loop, p, interval, tick, st);
    return st;
}

static void run_for(sq_loop *loop, double seconds)
{
    sq_call_later(loop, seconds, stop_loop, loop);
    assert_int_equal(sq_loop_run(loop), 0);
}

static void test_periodic_interval(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_periodic p;
    tick_state *st = tick_new(loop, &p, 0.02);
    double t0 = sq_test_now();
    sq_periodic_start(&p);
    run_for(loop, 0.5);
    sq_periodic_stop(&p);
    double took = sq_test_now() - t0;
    /* 0.5 s / 20 ms = 25 ticks; a loaded machine may lose a few, never gain. */
    print_message("periodic 20 ms over %.3f s: %d ticks\n", took, st->n);
    assert_true(st->n >= 10);
    assert_true(st->n <= 26);
    assert_true(st->ticks[0] - t0 >= 0.018);
    double mean = (st->ticks[st->n - 1] - st->ticks[0]) / (st->n - 1);
    assert_true(mean >= 0.019);
    assert_true(mean < 0.05);
    /* Stopped: no more ticks. */
    int n = st->n;
    run_for(loop, 0.06);
    assert_int_equal(st->n, n);
    free(st);
    sq_loop_free(loop);
}

static void test_periodic_skips_missed_runs(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_loop_set_slow_callback_warning(loop, -1); /* the block below is deliberate */
    sq_periodic p;
    tick_state *st = tick_new(loop, &p, 0.01);
    st->block_on = 2;
    st->block_ms = 100;
    sq_periodic_start(&p);
    run_for(loop, 0.3);
    sq_periodic_stop(&p);
    assert_true(st->block_end > 0);
    /* Missed runs are skipped: at most one catch-up tick right after the block, not ten. */
    int burst = 0, after = 0;
    for (int i = st->block_on + 1; i < st->n && i < MAX_TICKS; i++) {
        if (st->ticks[i] < st->block_end + 0.005) burst++;
        if (st->ticks[i] < st->block_end + 0.1) after++;
    }
    print_message("after a 100 ms block: %d ticks within 5 ms, %d within 100 ms (total %d)\n",
                  burst, after, st->n);
    assert_true(burst <= 2);
    assert_true(after <= 12);
    assert_true(after >= 3);
    /* Total: about 30 ticks in 300 ms, less the ~9 skipped. */
    assert_true(st->n <= 25);
    free(st);
    sq_loop_free(loop);
}

static void test_periodic_jitter(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_periodic p;
    tick_state *st = tick_new(loop, &p, 0.02);
    sq_periodic_set_jitter(&p, 0.5); /* each step in [15, 25] ms */
    sq_periodic_start(&p);
    run_for(loop, 0.6);
    sq_periodic_stop(&p);
    assert_true(st->n >= 10);
    /* Scheduled steps (deadline to deadline) are exact; actual ticks get slack. */
    double lo = 1, hi = 0;
    int out = 0;
    for (int i = 1; i < st->n && i < MAX_TICKS; i++) {
        double step = (double)(st->deadlines[i] - st->deadlines[i - 1]) / 1e9;
        if (step < lo) lo = step;
        if (step > hi) hi = step;
        assert_true(step >= 0.015 - 1e-6);
        if (step > 0.025 + 1e-6) out++; /* only after a missed run (a stall over 15 ms) */
        double actual = st->ticks[i] - st->ticks[i - 1];
        assert_true(actual >= 0.005);
        assert_true(actual < 0.25);
    }
    print_message("jitter 0.5 on 20 ms: %d ticks, steps %.1f..%.1f ms, %d stretched by stalls\n",
                  st->n, lo * 1e3, hi * 1e3, out);
    assert_true(out <= st->n / 10);
    assert_true(hi - lo > 0.001); /* it does vary */
    /* Jitter is clamped into [0, 1). */
    sq_periodic_set_jitter(&p, -3);
    assert_true(p.jitter == 0);
    sq_periodic_set_jitter(&p, 7);
    assert_true(p.jitter < 1);
    free(st);
    sq_loop_free(loop);
}

/* --- a slow pass does not delay the next timer, and pending calls die with the loop ------ */

static double late_fired;
static void late_timer(void *arg)
{
    late_fired = sq_test_now();
    sq_loop_stop(arg);
}
static void block_100ms(void *arg)
{
    sleep_ms(100);
}

static void test_timer_after_slow_pass(void **state)
{
    sq_loop *loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = -1});
    late_fired = 0;
    double t0 = sq_test_now();
    sq_call_later(loop, 0.08, late_timer, loop);
    sq_add_callback(loop, block_100ms, NULL);
    sq_call *guard = sq_call_later(loop, 5, stop_loop, loop);
    sq_loop_run(loop);
    sq_call_cancel(guard);
    /* Due at 80 ms, overdue when the 100 ms callback returns: it fires right then, not
     * 80 ms later as a poll timeout computed from the stale clock would have it. */
    double at = late_fired - t0;
    print_message("timer due at 80 ms fired at %.1f ms after a 100 ms callback\n", at * 1e3);
    assert_true(at >= 0.099);
    assert_true(at < 0.16);

    /* Calls still pending when the loop is freed are freed with it (LeakSanitizer checks). */
    sq_call_later(loop, 100, stop_loop, loop);
    sq_call_at(loop, sq_loop_time(loop) + 100, stop_loop, loop);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_order),
        cmocka_unit_test(test_equal_deadlines_fifo),
        cmocka_unit_test(test_mass_schedule_cancel),
        cmocka_unit_test(test_mass_reuse),
        cmocka_unit_test(test_slabs_trim),
        cmocka_unit_test(test_slabs_trim_cancelled),
        cmocka_unit_test(test_heap_order_under_churn),
        cmocka_unit_test(test_wheel_model),
        cmocka_unit_test(test_timer_repeat_and_stop_inside),
        cmocka_unit_test(test_call_at),
        cmocka_unit_test(test_periodic_interval),
        cmocka_unit_test(test_periodic_skips_missed_runs),
        cmocka_unit_test(test_periodic_jitter),
        cmocka_unit_test(test_timer_after_slow_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
