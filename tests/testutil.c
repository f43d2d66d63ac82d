#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double sq_test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void limit_hit(void *arg)
{
    *(int *)arg = 1;
    sq_loop_stop(sq_loop_current());
}

void *sq_test_run_coro(sq_loop *loop, sq_task_fn fn, void *arg, double limit)
{
    sq_future *f = sq_spawn(loop, fn, arg);
    assert_non_null(f);
    int timed_out = 0;
    sq_call *guard = sq_call_later(loop, limit, limit_hit, &timed_out);
    sq_loop_run_until(loop, f);
    if (!timed_out) sq_call_cancel(guard);
    if (timed_out) fail_msg("coroutine did not finish within %.1f s", limit);
    void *v = sq_future_take_value(f);
    sq_future_release(f);
    return v;
}

const char *sq_test_build_path(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("SQ_BUILD_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : ".", rel);
    return buf;
}

size_t sq_test_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, rss = 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

int sq_test_run_self(const char *arg, bool with_stdout, bool no_leak_check, char *out,
                     size_t outlen)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        if (with_stdout) dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[1]);
        if (no_leak_check) {
            const char *asan = getenv("ASAN_OPTIONS");
            char opts[1024];
            snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan ? ":" : "");
            setenv("ASAN_OPTIONS", opts, 1);
        }
        execl("/proc/self/exe", "test", arg, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    ssize_t n;
    while (len < outlen - 1 && (n = read(pfd[0], out + len, outlen - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(pfd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

int sq_test_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

void sq_test_write_file(const char *dir, const char *name, const char *text, int ahead)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    if (ahead > 0) {
        struct timespec ts[2] = {{.tv_sec = time(NULL) + ahead}, {.tv_sec = time(NULL) + ahead}};
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    }
}
