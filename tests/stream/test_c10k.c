/* C10K: examples/echo_server, started as a child process on an ephemeral port, serves
 * 10,000 concurrent connections from tests/c10k_client (another process), then stops on
 * SIGTERM with exit status 0 and no sanitizer report. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define NCONN 10000

/* fork/exec argv with stdout to a pipe (*out) and stderr to the file err_path. */
static pid_t spawn(char *const argv[], int *out, const char *err_path)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(p[1], 1);
        if (e >= 0) dup2(e, 2);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Read one line from fd within `limit` seconds. */
static bool read_line(int fd, char *buf, size_t cap, double limit)
{
    size_t len = 0;
    double t0 = sq_test_now();
    while (len + 1 < cap) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)((limit - (sq_test_now() - t0)) * 1000);
        if (left <= 0 || poll(&pf, 1, left) <= 0) break;
        ssize_t n = read(fd, buf + len, 1);
        if (n <= 0) break;
        if (buf[len] == '\n') {
            buf[len] = 0;
            return true;
        }
        len++;
    }
    buf[len] = 0;
    return false;
}

/* waitpid with a time limit; kills the child if it runs over.  Returns the wait status. */
static int wait_limit(pid_t pid, double limit)
{
    double t0 = sq_test_now();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (sq_test_now() - t0 > limit) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("process %d did not finish within %.0f s", (int)pid, limit);
        }
        usleep(10000);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static void test_c10k_echo(void **state)
{
    long lim = sq_raise_fd_limit();
    if (lim < NCONN + 100) {
        print_message("fd hard limit %ld is below %d: skipping\n", lim, NCONN + 100);
        skip();
    }
    char server_path[4096], client_path[4096];
    snprintf(server_path, sizeof server_path, "%s", sq_test_build_path("examples/echo_server"));
    snprintf(client_path, sizeof client_path, "%s", sq_test_build_path("tests/c10k_client"));
    char server_err[] = "/tmp/sq_c10k_server_XXXXXX";
    char client_err[] = "/tmp/sq_c10k_client_XXXXXX";
    close(mkstemp(server_err));
    close(mkstemp(client_err));

    char *sargv[] = {server_path, "0", NULL};
    int sout;
    pid_t server = spawn(sargv, &sout, server_err);
    char line[256];
    bool got = read_line(sout, line, sizeof line, 20);
    int port = 0;
    if (!got || sscanf(line, "listening on port %d", &port) != 1 || port <= 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        char *err = slurp(server_err);
        fail_msg("echo_server did not report its port (got \"%s\"); stderr: %s", line, err);
    }

    char portstr[16], nstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(nstr, sizeof nstr, "%d", NCONN);
    char *cargv[] = {client_path, "127.0.0.1", portstr, nstr, "1024", "1000", NULL};
    int cout;
    double t0 = sq_test_now();
    pid_t client = spawn(cargv, &cout, client_err);
    int cstatus = wait_limit(client, 150);
    double took = sq_test_now() - t0;
    char result[512] = "";
    read_line(cout, result, sizeof result, 1);
    close(cout);
    char *cerr = slurp(client_err);
    if (!WIFEXITED(cstatus) || WEXITSTATUS(cstatus) != 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        fail_msg("c10k_client failed (status %d): %s", cstatus, cerr);
    }
    print_message("%s (%.2f s in all)\n", result, took);
    assert_non_null(strstr(result, "ok: 10000 connections"));
    free(cerr);

    /* A clean stop: SIGTERM, exit status 0, nothing from the sanitizers. */
    assert_int_equal(kill(server, SIGTERM), 0);
    int sstatus = wait_limit(server, 60);
    close(sout);
    char *serr = slurp(server_err);
    if (!WIFEXITED(sstatus) || WEXITSTATUS(sstatus) != 0)
        fail_msg("echo_server exited with status %d after SIGTERM; stderr: %s", sstatus, serr);
    if (strstr(serr, "ERROR: LeakSanitizer") || strstr(serr, "ERROR: AddressSanitizer") ||
        strstr(serr, "runtime error"))
        fail_msg("echo_server stderr has a sanitizer report: %s", serr);
    free(serr);
    unlink(server_err);
    unlink(client_err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c10k_echo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
