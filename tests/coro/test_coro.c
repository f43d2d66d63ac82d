/* Coroutines: spawn/go, yield interleaving, deep stacks, the stack pool, 10,000 parked
 * coroutines, stack size settings, and the stack-overflow message. */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- spawn and go ----------------------------------------------------------------------- */

static void *double_it(void *arg)
{
    assert_true(sq_in_coro());
    assert_non_null(sq_coro_self());
    return (void *)((intptr_t)arg * 2);
}

static int go_ran;
static void *set_flag(void *arg)
{
    *(int *)arg = 1;
    return NULL;
}

static void test_spawn_and_go(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_false(sq_in_coro());
    assert_null(sq_coro_self());
    sq_future *f = sq_spawn(loop, double_it, (void *)(intptr_t)21);
    assert_non_null(f);
    assert_false(sq_future_done(f)); /* starts on the loop, not inside sq_spawn */
    sq_loop_run_until(loop, f);
    assert_int_equal((intptr_t)sq_future_value(f), 42);
    assert_int_equal(sq_future_status(f), 0);
    sq_future_release(f);

    go_ran = 0;
    assert_int_equal(sq_go(loop, set_flag, &go_ran), 0);
    assert_int_equal(go_ran, 0);
    sq_loop_run_once(loop, false);
    assert_int_equal(go_ran, 1);
    sq_loop_free(loop);
}

/* With no current loop, sq_go(NULL, ...) and sq_spawn(NULL, ...) use the default loop, as
 * every other NULL-loop call does, instead of queueing on no loop at all. */
static void test_go_without_current_loop(void **state)
{
    assert_null(sq_loop_current());
    go_ran = 0;
    assert_int_equal(sq_go(NULL, set_flag, &go_ran), 0);
    sq_loop *loop = sq_loop_default();
    assert_non_null(loop);
    sq_loop_run_once(loop, false);
    assert_int_equal(go_ran, 1);
    sq_loop_free(loop);
}

/* --- yield ------------------------------------------------------------------------------ */

static char trace[64];
static int ntrace;

static void *yielder(void *arg)
{
    for (int i = 0; i < 5; i++) {
        trace[ntrace++] = *(const char *)arg;
        assert_int_equal(sq_yield(), 0);
    }
    return NULL;
}

static void test_yield_interleaves(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    ntrace = 0;
    memset(trace, 0, sizeof trace);
    sq_future *a = sq_spawn(loop, yielder, "A");
    sq_future *b = sq_spawn(loop, yielder, "B");
    sq_loop_run_until(loop, b);
    sq_loop_run_until(loop, a);
    assert_string_equal(trace, "ABABABABAB");
    sq_future_release(a);
    sq_future_release(b);
    assert_int_equal(sq_yield(), SQ_ENOTCORO);
    assert_int_equal(sq_coro_suspend(), SQ_ENOTCORO);
    sq_loop_free(loop);
}

/* --- deep recursion ------------------------------------------------------------------- */

static volatile int recurse_forever;

static int recurse(int depth)
{
    volatile char buf[1024];
    memset((char *)buf, depth & 0xff, sizeof buf);
    if (depth <= 0 && !recurse_forever) return buf[0];
    return recurse(depth - 1) + buf[depth & 1023];
}

static void *deep(void *arg)
{
    int depth = (int)(intptr_t)arg;
    volatile int r = recurse(depth);
    (void)r;
    return (void *)(intptr_t)depth;
}

static void test_deep_recursion(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    assert_int_equal(sq_coro_get_stack_size(), SQ_CORO_DEFAULT_STACK_SIZE);
    /* 100 frames of at least 1 KiB each: 100+ KiB of the 256 KiB stack. */
    void *v = sq_test_run_coro(loop, deep, (void *)(intptr_t)100, 10);
    assert_int_equal((intptr_t)v, 100);
    sq_loop_free(loop);
}

/* --- the stack pool ------------------------------------------------------------------ */

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void *yield_once(void *arg)
{
    sq_yield();
    return arg;
}

static void spawn_batch(sq_loop *loop, int n)
{
    sq_future **fs = calloc((size_t)n, sizeof *fs);
    assert_non_null(fs);
    for (int i = 0; i < n; i++) fs[i] = sq_spawn(loop, yield_once, NULL);
    for (int i = 0; i < n; i++) {
        sq_loop_run_until(loop, fs[i]);
        assert_true(sq_future_done(fs[i]));
        sq_future_release(fs[i]);
    }
    free(fs);
}

static void test_stack_pool_reuse(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    spawn_batch(loop, 300); /* warm up: the pool now holds 300 stacks */
    int maps0 = count_maps();
    size_t rss0 = sq_test_rss();
    for (int round = 0; round < 20; round++) spawn_batch(loop, 300);
    int maps1 = count_maps();
    size_t rss1 = sq_test_rss();
    print_message("6,000 coroutines through a warm pool: maps %d -> %d, rss %+.0f KiB\n", maps0,
                  maps1, ((double)rss1 - (double)rss0) / 1024);
    /* Without reuse that would be 6,000 more stacks, two mappings each. */
    assert_true(maps1 - maps0 < 20);
    assert_true(rss1 < rss0 + 8 * 1024 * 1024);
    sq_loop_free(loop);
}

/* --- 10,000 parked coroutines ------------------------------------------------------------ */

#define PARKED 10000

static struct {
    int started, finished;
    size_t rss_peak;
} park;

static void *park_sleep(void *arg)
{
    park.started++;
    if (park.started == PARKED) park.rss_peak = sq_test_rss();
    if (sq_sleep(0.2) == 0) park.finished++;
    return NULL;
}

static void stop_loop(void *arg)
{
    sq_loop_stop(arg);
}

static void park_done(void *arg)
{
    if (park.finished == PARKED) sq_loop_stop(arg);
}

static void test_ten_thousand_sleepers(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    memset(&park, 0, sizeof park);
    size_t rss0 = sq_test_rss();
    double t0 = sq_test_now();
    for (int i = 0; i < PARKED; i++) assert_int_equal(sq_go(loop, park_sleep, NULL), 0);
    sq_periodic p;
    sq_periodic_init(loop, &p, 0.01, park_done, loop);
    sq_periodic_start(&p);
    sq_call *guard = sq_call_later(loop, 30, stop_loop, loop);
    sq_loop_run(loop);
    sq_periodic_stop(&p);
    double took = sq_test_now() - t0;
    assert_int_equal(park.started, PARKED);
    assert_int_equal(park.finished, PARKED);
    sq_call_cancel(guard);
    print_message("10,000 coroutines parked in sq_sleep(0.2): all woke in %.2f s, "
                  "%.1f KiB RSS each (bench/coro_rss measures it)\n",
                  took, ((double)park.rss_peak - (double)rss0) / PARKED / 1024);
    assert_true(took < 20);
    sq_loop_free(loop);
}

/* --- stack size ---------------------------------------------------------------------------- */

static void test_stack_size_setting(void **state)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    sq_coro_set_stack_size(64 * 1024);
    assert_int_equal(sq_coro_get_stack_size(), 64 * 1024);
    sq_coro_set_stack_size(1000); /* at least 16 KiB */
    assert_int_equal(sq_coro_get_stack_size(), 16 * 1024);
    sq_coro_set_stack_size(70000); /* whole pages */
    assert_int_equal(sq_coro_get_stack_size(), (70000 + ps - 1) / ps * ps);
    /* An absurd size stays absurd (a coroutine then fails to be created), not 0 */
    sq_coro_set_stack_size(SIZE_MAX);
    assert_true(sq_coro_get_stack_size() >= 16 * 1024);
    sq_loop *huge = sq_loop_new(NULL);
    assert_null(sq_spawn(huge, double_it, (void *)(intptr_t)1));
    sq_loop_free(huge);

    /* A 1 MiB stack takes recursion that would overflow the default 256 KiB one. */
    sq_coro_set_stack_size(1024 * 1024);
    sq_loop *loop = sq_loop_new(NULL);
    void *v = sq_test_run_coro(loop, deep, (void *)(intptr_t)400, 10);
    assert_int_equal((intptr_t)v, 400);
    /* Back to the default: coroutines still run (the pooled 1 MiB stacks are dropped). */
    sq_coro_set_stack_size(SQ_CORO_DEFAULT_STACK_SIZE);
    assert_int_equal(sq_coro_get_stack_size(), SQ_CORO_DEFAULT_STACK_SIZE);
    v = sq_test_run_coro(loop, deep, (void *)(intptr_t)100, 10);
    assert_int_equal((intptr_t)v, 100);
    sq_loop_free(loop);
}

/* The setting is process-wide but each thread pools its own stacks: a thread whose pool
 * still holds stacks of the old size must not hand one to a coroutine created after the
 * change.  The stack's mapping (found in /proc/self/maps) tells the size a coroutine got. */
static size_t mapping_size_of(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    size_t size = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi) {
            size = hi - lo;
            break;
        }
    }
    if (f) fclose(f);
    return size;
}

static void *stack_mapping_size(void *arg)
{
    volatile char here = 0;
    return (void *)mapping_size_of((const void *)&here);
}

static struct {
    sem_t pooled, resized;
    size_t got;
} other_pool;

static void *other_pool_thread(void *arg)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(loop, double_it, (void *)(intptr_t)1); /* pools one stack here */
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    sem_post(&other_pool.pooled);
    sem_wait(&other_pool.resized);
    f = sq_spawn(loop, stack_mapping_size, NULL);
    sq_loop_run_until(loop, f);
    other_pool.got = (size_t)sq_future_value(f);
    sq_future_release(f);
    sq_loop_free(loop);
    return NULL;
}

static void test_stack_size_setting_other_thread(void **state)
{
    sem_init(&other_pool.pooled, 0, 0);
    sem_init(&other_pool.resized, 0, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_pool_thread, NULL), 0);
    sem_wait(&other_pool.pooled);
    sq_coro_set_stack_size(1024 * 1024);
    sem_post(&other_pool.resized);
    pthread_join(t, NULL);
    sq_coro_set_stack_size(SQ_CORO_DEFAULT_STACK_SIZE);
    print_message("coroutine created after the change: stack mapping of %zu bytes\n",
                  other_pool.got);
    assert_true(other_pool.got >= 1024 * 1024);
    sem_destroy(&other_pool.pooled);
    sem_destroy(&other_pool.resized);
}

/* --- stack overflow ------------------------------------------------------------------------ */

static void *overflow(void *arg)
{
    sq_coro_set_name(sq_coro_self(), "overflower");
    recurse_forever = 1;
    recurse(1000000);
    return NULL;
}

/* Runs in a fresh process (the test binary re-executed with --overflow): a forked copy of
 * this one would inherit cmocka's per-test SIGSEGV handler in place of squall's. */
static int overflow_child(void)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(loop, overflow, NULL);
    sq_loop_run_until(loop, f);
    return 0; /* not reached: the overflow ends the process */
}

/* Someone else's SIGSEGV handler, installed after squall's (a crash reporter, say). */
static void other_segv(int sig)
{
    static const char msg[] = "other SIGSEGV handler\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

static void install_other_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = other_segv;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
}

/* --overflow-other: squall's handler is installed (the first coroutine), then replaced; the
 * overflow must still be named.  --fault-other: a fault that is no guard hit goes on to the
 * other handler. */
static int overflow_other_child(bool overflow_it)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *f = sq_spawn(loop, overflow_it ? overflow : double_it, (void *)(intptr_t)1);
    install_other_handler();
    sq_loop_run_until(loop, f);
    volatile uintptr_t bad = 16; /* a plain bad pointer, opaque to the compiler */
    if (!overflow_it) *(volatile int *)bad = 1;
    return 0; /* not reached */
}

/* Run this binary with `arg` in a child; its stderr goes to out. */
static int run_child(const char *arg, char *out, size_t outlen)
{
    int status = sq_test_run_self(arg, false, false, out, outlen);
    print_message("child %s: %s %d, stderr: %.200s\n", arg, WIFSIGNALED(status) ? "signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
    return status;
}

static void test_stack_overflow_message(void **state)
{
    char out[8192];
    int status = run_child("--overflow", out, sizeof out);
    assert_true(WIFSIGNALED(status));
    assert_true(WTERMSIG(status) == SIGABRT || WTERMSIG(status) == SIGSEGV);
    assert_non_null(strstr(out, "coroutine stack overflow"));
    assert_non_null(strstr(out, "overflower"));
}

static void test_overflow_after_other_handler(void **state)
{
    char out[8192];
    int status = run_child("--overflow-other", out, sizeof out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "coroutine stack overflow"));
    assert_non_null(strstr(out, "overflower"));
    assert_null(strstr(out, "other SIGSEGV handler"));
    /* and the other handler still gets the faults that are its business */
    status = run_child("--fault-other", out, sizeof out);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    assert_non_null(strstr(out, "other SIGSEGV handler"));
    assert_null(strstr(out, "coroutine stack overflow"));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--overflow") == 0) return overflow_child();
    if (argc > 1 && strcmp(argv[1], "--overflow-other") == 0) return overflow_other_child(true);
    if (argc > 1 && strcmp(argv[1], "--fault-other") == 0) return overflow_other_child(false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_and_go),
        cmocka_unit_test(test_go_without_current_loop),
        cmocka_unit_test(test_yield_interleaves),
        cmocka_unit_test(test_deep_recursion),
        cmocka_unit_test(test_stack_pool_reuse),
        cmocka_unit_test(test_ten_thousand_sleepers),
        cmocka_unit_test(test_stack_size_setting),
        cmocka_unit_test(test_stack_size_setting_other_thread),
        cmocka_unit_test(test_stack_overflow_message),
        cmocka_unit_test(test_overflow_after_other_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
