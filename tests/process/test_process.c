/* squall/process.h with real programs: cat, sh, a child that ignores SIGTERM, 100 at once —
 * each test through the pidfd path and again through the SIGCHLD path. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"


#define BIG (1u << 20)

typedef struct cat_job {
    unsigned char *data;
    size_t got;
    int status;
    bool same;
} cat_job;

static void *cat_writer(void *arg)
{
    sq_process *p = arg;
    const unsigned char *d = sq_stream_get_data(sq_process_stdin(p));
    sq_stream_write(sq_process_stdin(p), d, BIG); /* waits while the pipe is full */
    sq_stream_drain(sq_process_stdin(p));
    sq_stream_close(sq_process_stdin(p)); /* EOF: cat ends */
    return NULL;
}

static void *cat_round_trip(void *arg)
{
    cat_job *j = arg;
    const char *argv[] = {"cat", NULL};
    int err;
    sq_process *p = sq_process_spawn(NULL, argv,
                                     &(sq_process_options){.stdin_mode = SQ_PROC_PIPE,
                                                           .stdout_mode = SQ_PROC_PIPE},
                                     &err);
    assert_non_null(p);
    sq_stream_set_data(sq_process_stdin(p), j->data);
    sq_future *w = sq_spawn(NULL, cat_writer, p); /* write and read at once: no deadlock */
    const char *out;
    ssize_t n = sq_stream_read_until_close(sq_process_stdout(p), 2 * BIG, &out);
    j->got = n > 0 ? (size_t)n : 0;
    j->same = n == (ssize_t)BIG && memcmp(out, j->data, BIG) == 0;
    sq_await(w, NULL);
    j->status = sq_process_wait(p, 10);
    sq_process_free(p);
    return NULL;
}

static void test_cat(void **state)
{
    int fds0 = sq_test_count_fds();
    sq_loop *loop = sq_loop_new(NULL);
    cat_job j = {.data = malloc(BIG)};
    for (size_t i = 0; i < BIG; i++) j.data[i] = (unsigned char)(i * 7 + i / 251);
    sq_test_run_coro(loop, cat_round_trip, &j, 30);
    assert_int_equal(j.got, BIG);
    assert_true(j.same);
    assert_int_equal(j.status, 0);
    free(j.data);
    sq_loop_free(loop);
    assert_int_equal(sq_test_count_fds(), fds0);
}

typedef struct status_job {
    const char *script;
    sq_process_options opts;
    int status, sig, err;
    double took;
    char out[256], errout[256];
} status_job;

static void *run_script(void *arg)
{
    status_job *j = arg;
    const char *argv[] = {"sh", "-c", j->script, NULL};
    double t0 = sq_test_now();
    sq_process *p = sq_process_spawn(NULL, argv, &j->opts, &j->err);
    if (!p) return NULL;
    const char *d;
    ssize_t n;
    if (sq_process_stdout(p) && (n = sq_stream_read_until_close(sq_process_stdout(p), 200, &d)) > 0)
        memcpy(j->out, d, (size_t)n);
    if (sq_process_stderr(p) && (n = sq_stream_read_until_close(sq_process_stderr(p), 200, &d)) > 0)
        memcpy(j->errout, d, (size_t)n);
    j->status = sq_process_wait(p, 20);
    j->sig = sq_process_signal(p);
    j->took = sq_test_now() - t0;
    sq_process_free(p);
    return NULL;
}

static status_job run(sq_loop *loop, const char *script, sq_process_options o)
{
    status_job j = {.script = script, .opts = o};
    sq_test_run_coro(loop, run_script, &j, 30);
    return j;
}

static void test_statuses(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    status_job j = run(loop, "exit 3", (sq_process_options){0});
    assert_int_equal(j.err, 0);
    assert_int_equal(j.status, 3);
    assert_int_equal(j.sig, 0);
    j = run(loop, "kill -KILL $$", (sq_process_options){0});
    assert_int_equal(j.status, 128 + SIGKILL);
    assert_int_equal(j.sig, SIGKILL);
    /* stdout and stderr apart, and 2>&1 */
    j = run(loop, "echo out; echo err >&2",
            (sq_process_options){.stdout_mode = SQ_PROC_PIPE, .stderr_mode = SQ_PROC_PIPE});
    assert_string_equal(j.out, "out\n");
    assert_string_equal(j.errout, "err\n");
    j = run(loop, "echo out; echo err >&2",
            (sq_process_options){.stdout_mode = SQ_PROC_PIPE, .stderr_mode = SQ_PROC_STDOUT});
    assert_string_equal(j.out, "out\nerr\n");
    /* environment and working directory */
    const char *env[] = {"GREETING=hello there", "PATH=/usr/bin:/bin", NULL};
    j = run(loop, "printf '%s|%s' \"$GREETING\" \"$(pwd)\"",
            (sq_process_options){.env = env, .cwd = "/tmp", .stdout_mode = SQ_PROC_PIPE});
    assert_string_equal(j.out, "hello there|/tmp");
    /* /dev/null for stdin: cat ends at once */
    j = run(loop, "cat; echo done",
            (sq_process_options){.stdin_mode = SQ_PROC_DEVNULL, .stdout_mode = SQ_PROC_PIPE});
    assert_string_equal(j.out, "done\n");
    sq_loop_free(loop);
}

static void *spawn_missing(void *arg)
{
    int *err = arg;
    const char *argv[] = {"/nonexistent/squall-no-such-program", NULL};
    assert_null(sq_process_spawn(NULL, argv, NULL, err));
    const char *argv2[] = {"squall-no-such-program-in-path", NULL};
    int e2;
    assert_null(sq_process_spawn(NULL, argv2, NULL, &e2));
    assert_int_equal(e2, -ENOENT);
    const char *argv3[] = {"true", NULL};
    assert_null(sq_process_spawn(NULL, argv3, &(sq_process_options){.cwd = "/nonexistent"}, &e2));
    assert_int_equal(e2, -ENOENT);
    const char *none[] = {NULL};
    assert_null(sq_process_spawn(NULL, none, NULL, &e2));
    assert_int_equal(e2, -EINVAL);
    assert_null(sq_process_spawn(NULL, argv3, &(sq_process_options){.stdout_mode = 9}, &e2));
    assert_int_equal(e2, -EINVAL);
    return NULL;
}

static void test_missing_program(void **state)
{
    int fds0 = sq_test_count_fds();
    sq_loop *loop = sq_loop_new(NULL);
    int err = 0;
    sq_test_run_coro(loop, spawn_missing, &err, 10);
    assert_int_equal(err, -ENOENT);
    sq_loop_free(loop);
    assert_int_equal(sq_test_count_fds(), fds0);
}

static void test_timeout_escalates(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    /* ignores SIGTERM: the timeout's SIGTERM does nothing, SIGKILL 0.3 s later does */
    status_job j = run(loop, "trap '' TERM; sleep 30 & wait; sleep 30",
                       (sq_process_options){.timeout = 0.3, .kill_grace = 0.3});
    assert_int_equal(j.err, 0);
    assert_int_equal(j.sig, SIGKILL);
    assert_int_equal(j.status, 128 + SIGKILL);
    assert_true(j.took >= 0.5 && j.took < 5.0);
    /* one that honours SIGTERM ends at the first signal */
    j = run(loop, "sleep 30", (sq_process_options){.timeout = 0.2});
    assert_int_equal(j.sig, SIGTERM);
    assert_true(j.took < 2.0);
    sq_loop_free(loop);
}

typedef struct many_job {
    int statuses[100];
    double took, spawned; /* s: all of it, the spawns */
    int ticks, ticks_spawned;
} many_job;

static void tick(void *arg)
{
    (*(int *)arg)++;
}

static void *many(void *arg)
{
    many_job *m = arg;
    sq_process *ps[100];
    char scripts[100][48];
    double t0 = sq_test_now();
    for (int i = 0; i < 100; i++) {
        snprintf(scripts[i], sizeof scripts[i], "sleep 0.3; exit %d", i);
        const char *argv[] = {"sh", "-c", scripts[i], NULL};
        int err;
        ps[i] = sq_process_spawn(NULL, argv, NULL, &err);
        assert_non_null(ps[i]);
    }
    m->spawned = sq_test_now() - t0; /* (each spawn holds the loop a moment: ticks wait) */
    m->ticks_spawned = m->ticks;
    for (int i = 0; i < 100; i++) {
        m->statuses[i] = sq_process_wait(ps[i], 30);
        sq_process_free(ps[i]);
    }
    m->took = sq_test_now() - t0;
    return NULL;
}

static void test_hundred_children(void **state)
{
    int fds0 = sq_test_count_fds();
    sq_loop *loop = sq_loop_new(NULL);
    many_job m = {0};
    sq_periodic per;
    sq_periodic_init(loop, &per, 0.02, tick, &m.ticks);
    sq_periodic_start(&per);
    sq_test_run_coro(loop, many, &m, 60);
    sq_periodic_stop(&per);
    for (int i = 0; i < 100; i++) assert_int_equal(m.statuses[i], i);
    print_message("100 children of 0.3 s each: %.2f s (serially: 30 s; spawns %.2f s), %d ticks "
                  "of 20 ms while they ran\n",
                  m.took, m.spawned, m.ticks - m.ticks_spawned);
    assert_true(m.took < 10.0);
    /* the loop kept running while the children did */
    assert_true(m.ticks - m.ticks_spawned >= (int)((m.took - m.spawned) / 0.02 / 4));
    sq_loop_free(loop);
    assert_int_equal(sq_test_count_fds(), fds0);
}

static void *kill_and_free(void *arg)
{
    const char *argv[] = {"sleep", "30", NULL};
    int err;
    sq_process *p = sq_process_spawn(NULL, argv, NULL, &err);
    assert_non_null(p);
    pid_t pid = sq_process_pid(p);
    assert_true(pid > 0);
    assert_int_equal(sq_process_wait(p, 0.1), -ETIMEDOUT); /* a timeout leaves it running */
    assert_false(sq_process_exited(p));
    assert_int_equal(sq_process_kill(p, SIGTERM), 0);
    assert_int_equal(sq_process_wait(p, 5), 128 + SIGTERM);
    assert_int_equal(sq_process_kill(p, SIGTERM), -ESRCH);
    sq_process_free(p);
    /* freed while running: detached, and still reaped when it exits (no zombie) */
    const char *argv2[] = {"sleep", "0.2", NULL};
    p = sq_process_spawn(NULL, argv2, NULL, &err);
    pid = sq_process_pid(p);
    sq_process_free(p);
    sq_sleep(0.8);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) { /* the pid may exist again only as someone else's; a zombie of ours shows 'Z' */
        char buf[256] = "";
        if (fgets(buf, sizeof buf, f)) {
            const char *rp = strrchr(buf, ')');
            assert_false(rp && rp[2] == 'Z');
        }
        fclose(f);
    }
    return NULL;
}

static void test_kill_and_detach(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, kill_and_free, NULL, 20);
    sq_loop_free(loop);
}

/* Every test again with the SIGCHLD path. */
static int sigchld_path(void **state)
{
    setenv("SQUALL_PROCESS_NO_PIDFD", "1", 1);
    return 0;
}
static int pidfd_path(void **state)
{
    unsetenv("SQUALL_PROCESS_NO_PIDFD");
    return 0;
}

/* --- sq_process_free() while another coroutine is in sq_process_wait(): the waiter gets the
 * status when the child exits (it waited to its timeout, and the futures leaked) -------- */

typedef struct wait_job {
    sq_process *p;
    int status;
    double took;
} wait_job;

static void *waiter(void *arg)
{
    wait_job *j = arg;
    double t0 = sq_test_now();
    j->status = sq_process_wait(j->p, 2.0); /* the child exits after 0.2 s */
    j->took = sq_test_now() - t0;
    return NULL;
}

static void *free_while_waited(void *arg)
{
    wait_job *j = arg;
    const char *argv[] = {"sh", "-c", "sleep 0.2; exit 7", NULL};
    int err;
    j->p = sq_process_spawn(NULL, argv, NULL, &err);
    assert_non_null(j->p);
    sq_future *w = sq_spawn(NULL, waiter, j);
    sq_sleep(0.05);
    sq_process_free(j->p); /* documented: detached, still reaped */
    sq_await(w, NULL);
    return NULL;
}

static void test_free_while_waited(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    wait_job j = {0};
    sq_test_run_coro(loop, free_while_waited, &j, 10);
    sq_loop_free(loop);
    assert_int_equal(j.status, 7); /* at the exit (0.2 s), not at the 2 s timeout */
    assert_true(j.took < 1.5);
}

/* --- a parent started with fds 0 and 1 closed (a daemon): the child's pipe ends must not
 * land on them and stay open in the parent (no EOF ever) --------------------------------- */

typedef struct stdio_job {
    ssize_t n;
    int status;
    bool read_done;
    bool done_in_time; /* before we closed the stream ourselves */
} stdio_job;

static void *stdout_reader(void *arg)
{
    sq_process *p = arg;
    const char *out;
    stdio_job *j = sq_stream_get_data(sq_process_stdout(p));
    j->n = sq_stream_read_until_close(sq_process_stdout(p), 0, &out);
    j->read_done = true;
    return NULL;
}

static void *closed_stdio(void *arg)
{
    stdio_job *j = arg;
    const char *argv[] = {"sh", "-c", "echo hi", NULL};
    int err;
    sq_process *p =
        sq_process_spawn(NULL, argv, &(sq_process_options){.stdout_mode = SQ_PROC_PIPE}, &err);
    if (!p) return NULL;
    sq_stream_set_data(sq_process_stdout(p), j);
    sq_future *r = sq_spawn(NULL, stdout_reader, p);
    j->status = sq_process_wait(p, 5);
    sq_sleep(1.0); /* "hi\n" and EOF are due right after the exit */
    j->done_in_time = j->read_done;
    if (!j->read_done) sq_stream_close(sq_process_stdout(p)); /* unblock the reader */
    sq_await(r, NULL);
    sq_process_free(p);
    return NULL;
}

static void test_closed_stdio(void **state)
{
    int save0 = fcntl(0, F_DUPFD_CLOEXEC, 100), save1 = fcntl(1, F_DUPFD_CLOEXEC, 100);
    sq_loop *loop = sq_loop_new(NULL);
    stdio_job j = {.n = -999};
    close(0);
    close(1);
    sq_test_run_coro(loop, closed_stdio, &j, 10);
    dup2(save0, 0);
    dup2(save1, 1);
    close(save0);
    close(save1);
    sq_loop_free(loop);
    assert_int_equal(j.status, 0);
    assert_true(j.done_in_time);
    assert_int_equal(j.n, 3);
}

/* --- a descriptor of the parent's without O_CLOEXEC does not reach the child ------------- */

typedef struct fd_job {
    int fd;
    char out[4096];
    ssize_t n;
} fd_job;

static void *list_fds(void *arg)
{
    fd_job *j = arg;
    const char *argv[] = {"sh", "-c", "ls /proc/$$/fd | tr '\\n' ' '", NULL};
    int err;
    sq_process *p =
        sq_process_spawn(NULL, argv, &(sq_process_options){.stdout_mode = SQ_PROC_PIPE}, &err);
    assert_non_null(p);
    const char *out;
    j->n = sq_stream_read_until_close(sq_process_stdout(p), 0, &out);
    if (j->n > 0)
        memcpy(j->out, out, (size_t)j->n < sizeof j->out - 1 ? (size_t)j->n : sizeof j->out - 1);
    sq_process_wait(p, 5);
    sq_process_free(p);
    return NULL;
}

static void test_inherited_fd(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    fd_job j = {.fd = open("/dev/null", O_RDONLY)}; /* e.g. a library's fd, no O_CLOEXEC */
    assert_true(j.fd >= 0);
    sq_test_run_coro(loop, list_fds, &j, 10);
    sq_loop_free(loop);
    char want[16];
    snprintf(want, sizeof want, " %d ", j.fd);
    char padded[4200];
    snprintf(padded, sizeof padded, " %s", j.out);
    close(j.fd);
    assert_null(strstr(padded, want)); /* documented: every other descriptor is closed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cat),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_timeout_escalates),
        cmocka_unit_test(test_hundred_children),
        cmocka_unit_test(test_kill_and_detach),
        cmocka_unit_test(test_free_while_waited),
        cmocka_unit_test(test_closed_stdio),
        cmocka_unit_test(test_inherited_fd),
    };
    int failed = cmocka_run_group_tests_name("pidfd", tests, pidfd_path, NULL);
    failed += cmocka_run_group_tests_name("SIGCHLD", tests, sigchld_path, pidfd_path);
    return failed;
}
