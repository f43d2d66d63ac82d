/* Helpers shared by the TLS tests (tests/tls/test_*.c): the certificate fixtures, a child
 * process (Python, openssl s_client) talking to the test over pipes while the loop serves,
 * and a blocking command run on the executor. */
#ifndef SQ_TLSTEST_H
#define SQ_TLSTEST_H

#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define TLS_PYTHON "/usr/bin/python3"

/* $SQ_BUILD_DIR/tls-fixtures/<name>; eight rotating buffers, so a few can be used at once. */
static __attribute__((unused)) const char *fx(const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    const char *dir = getenv("SQ_BUILD_DIR");
    snprintf(b, 4096, "%s/tls-fixtures/%s", dir ? dir : ".", name);
    return b;
}

/* Make the fixtures (idempotent, safe concurrently).  A group setup: non-zero fails the run. */
static __attribute__((unused)) int tls_fixtures_setup(void **state)
{
    (void)state;
    const char *src = getenv("SQ_SOURCE_DIR");
    const char *dir = getenv("SQ_BUILD_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "sh '%s/tests/tls/mkcerts.sh' '%s/tls-fixtures'", src ? src : "../..",
             dir ? dir : ".");
    if (system(cmd) != 0) {
        fprintf(stderr, "mkcerts.sh failed: %s\n", cmd);
        return -1;
    }
    return 0;
}

static __attribute__((unused)) bool have_python_module(const char *module)
{
    if (access(TLS_PYTHON, X_OK) != 0) return false;
    char cmd[256];
    snprintf(cmd, sizeof cmd, TLS_PYTHON " -c 'import %s' 2>/dev/null", module);
    return system(cmd) == 0;
}

/* --- a child process with its stdin and stdout on pipes ---------------------------------- */

typedef struct peer {
    pid_t pid;
    int in_fd;      /* its stdin (closed: it sees EOF) */
    sq_stream *out; /* its stdout, read on the loop */
} peer;

/* Spawn argv (argv[0] a path) on the current loop; its stderr is the test's.  0 or -errno. */
static __attribute__((unused)) int peer_spawn(peer *p, char *const argv[])
{
    memset(p, 0, sizeof *p);
    p->in_fd = -1;
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) < 0) return -errno;
    if (pipe2(in, O_CLOEXEC) < 0) {
        close(out[0]);
        close(out[1]);
        return -errno;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    fflush(NULL);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(in[0]);
    if (rc != 0) {
        close(out[0]);
        close(in[1]);
        p->pid = 0;
        return -rc;
    }
    p->in_fd = in[1];
    p->out = sq_stream_new(sq_loop_current(), out[0]);
    if (!p->out) {
        close(out[0]);
        return -ENOMEM;
    }
    return 0;
}

/* Spawn `python3 -c script args...` (NULL-terminated). */
static __attribute__((unused)) int peer_python(peer *p, const char *script, ...)
{
    char *argv[16] = {(char *)TLS_PYTHON, (char *)"-c", (char *)script};
    int n = 3;
    va_list ap;
    va_start(ap, script);
    const char *a;
    while (n < 15 && (a = va_arg(ap, const char *))) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return peer_spawn(p, argv);
}

/* The child's next stdout line (without the newline) into buf, within `timeout` seconds.
 * Returns its length or a negative error (SQ_ECLOSED: the child closed stdout). */
static __attribute__((unused)) ssize_t peer_line(peer *p, char *buf, size_t len, double timeout)
{
    sq_future *f = sq_stream_read_until_future(p->out, "\n", 1, 1 << 16);
    if (!f) return -ENOMEM;
    f = sq_with_timeout(f, timeout);
    void *v = NULL;
    int64_t n = f ? sq_await(f, &v) : -ENOMEM;
    if (n < 0) {
        buf[0] = 0;
        return (ssize_t)n;
    }
    size_t k = (size_t)n - 1 < len - 1 ? (size_t)n - 1 : len - 1;
    memcpy(buf, v, k);
    buf[k] = 0;
    return (ssize_t)k;
}

/* Close its stdin and wait (on the loop) up to `timeout` s for it to exit, then SIGKILL it.
 * Returns the waitpid status (-1 if it had to be killed). */
static __attribute__((unused)) int peer_finish(peer *p, double timeout)
{
    int st = -1;
    if (p->in_fd >= 0) close(p->in_fd);
    p->in_fd = -1;
    if (p->pid > 0) {
        double t0 = sq_test_now();
        pid_t r;
        while ((r = waitpid(p->pid, &st, WNOHANG)) == 0 && sq_test_now() - t0 < timeout)
            sq_sleep(0.01);
        if (r == 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            st = -1;
        }
        p->pid = 0;
    }
    if (p->out) sq_stream_free(p->out);
    p->out = NULL;
    return st;
}

/* --- a shell command on the executor (the loop keeps serving meanwhile) ------------------ */

typedef struct cmd_job {
    char cmd[8192];
    char out[1 << 16]; /* its stdout and stderr */
    int status;
} cmd_job;

static __attribute__((unused)) void *cmd_job_run(void *arg)
{
    cmd_job *j = arg;
    j->out[0] = 0;
    FILE *f = popen(j->cmd, "r");
    if (!f) {
        j->status = -1;
        return NULL;
    }
    size_t len = 0, n;
    while ((n = fread(j->out + len, 1, sizeof j->out - 1 - len, f)) > 0) len += n;
    j->out[len] = 0;
    j->status = pclose(f);
    return NULL;
}

/* Run `sh -c cmd` (wrap it in `timeout N`) on the default executor and wait for it. */
static __attribute__((unused)) int run_cmd(cmd_job *j)
{
    sq_future *f = sq_run_in_executor(cmd_job_run, j);
    return f ? (int)sq_await(f, NULL) : -ENOMEM;
}

#endif
