/* examples/raw_connector against a tiny HTTP server on 127.0.0.1 (a forked child), and its
 * error path against a port nobody listens on. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
                            "hello, squall";

/* Serve one request: check it looks like raw_connector's GET, answer, close.  Exits 0 if the
 * request was right. */
static void http_child(int lfd)
{
    alarm(20);
    int c = accept(lfd, NULL, NULL);
    if (c < 0) _exit(2);
    char req[2048];
    size_t len = 0;
    while (len + 1 < sizeof req) {
        ssize_t n = read(c, req + len, sizeof req - 1 - len);
        if (n <= 0) _exit(3);
        len += (size_t)n;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    int ok = strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0 && strstr(req, "\r\nHost: ") &&
             strstr(req, "\r\nConnection: close\r\n");
    if (write(c, reply, sizeof reply - 1) != (ssize_t)(sizeof reply - 1)) _exit(4);
    close(c);
    _exit(ok ? 0 : 5);
}

static int listen_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

/* Run raw_connector with args; collect stdout and stderr; return the wait status. */
static int run_connector(const char *host, int port, char *out, size_t outcap, char *err,
                         size_t errcap)
{
    char path[4096], portstr[16];
    snprintf(path, sizeof path, "%s", sq_test_build_path("examples/raw_connector"));
    snprintf(portstr, sizeof portstr, "%d", port);
    int po[2], pe[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execl(path, path, host, portstr, (char *)NULL);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t ol = 0, el = 0;
    bool oeof = false, eeof = false;
    double t0 = sq_test_now();
    while ((!oeof || !eeof) && sq_test_now() - t0 < 30) {
        struct pollfd pf[2] = {{.fd = oeof ? -1 : po[0], .events = POLLIN},
                               {.fd = eeof ? -1 : pe[0], .events = POLLIN}};
        if (poll(pf, 2, 1000) <= 0) continue;
        if (pf[0].revents) {
            ssize_t n = read(po[0], out + ol, outcap - 1 - ol);
            if (n <= 0)
                oeof = true;
            else
                ol += (size_t)n;
        }
        if (pf[1].revents) {
            ssize_t n = read(pe[0], err + el, errcap - 1 - el);
            if (n <= 0)
                eeof = true;
            else
                el += (size_t)n;
        }
    }
    out[ol] = 0;
    err[el] = 0;
    close(po[0]);
    close(pe[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

static void test_raw_connector_prints_reply(void **state)
{
    int lfd = listen_local();
    int port = port_of(lfd);
    pid_t server = fork();
    assert_true(server >= 0);
    if (server == 0) http_child(lfd);
    close(lfd);
    char out[4096], err[4096];
    int status = run_connector("127.0.0.1", port, out, sizeof out, err, sizeof err);
    int sstatus;
    waitpid(server, &sstatus, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("raw_connector failed (status %d): %s", status, err);
    assert_string_equal(out, reply);
    assert_true(WIFEXITED(sstatus));
    assert_int_equal(WEXITSTATUS(sstatus), 0); /* the request was well-formed */
}

static void test_raw_connector_error(void **state)
{
    int lfd = listen_local();
    int port = port_of(lfd);
    close(lfd); /* nobody listens there now */
    char out[4096], err[4096];
    int status = run_connector("127.0.0.1", port, out, sizeof out, err, sizeof err);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(err, "raw_connector: "));
    assert_non_null(strstr(err, "refused"));
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_connector_prints_reply),
        cmocka_unit_test(test_raw_connector_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
