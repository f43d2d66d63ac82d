/* Unix-domain sockets, adopted sockets (add_sockets, systemd's LISTEN_FDS) and connecting the
 * way RFC 8305 says (happy eyeballs, source address, timeout) — on 127.0.0.1 and ::1 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include "testutil.h"

/* src/internal.h: connect over given addresses (no resolver), in happy-eyeballs order —
 * this machine's "localhost" need not resolve to both ::1 and 127.0.0.1. */
sq_future *sq__tcp_connect_addrs_future(sq_loop *loop, const struct sockaddr_storage *addrs,
                                        const socklen_t *lens, size_t n,
                                        const sq_connect_options *o);


/* --- an echo server on any kind of socket ---------------------------------------------- */

static void echo(sq_stream *s, const struct sockaddr *peer, void *arg)
{
    int *peer_family = arg;
    if (peer_family) *peer_family = peer->sa_family;
    const char *data;
    ssize_t n;
    while ((n = sq_stream_read_bytes(s, 4096, true, &data)) > 0)
        if (sq_stream_write(s, data, (size_t)n) < 0) break;
}

typedef struct echo_job {
    const char *host;
    int port;
    sq_connect_options opts;
    int err;
    char reply[64];
} echo_job;

static void *round_trip(void *arg)
{
    echo_job *j = arg;
    sq_stream *s = sq_tcp_connect_opts(j->host, j->port, &j->opts, &j->err);
    if (!s) return NULL;
    const char *data;
    if (sq_stream_write(s, "ping\n", 5) == 0 && sq_stream_read_until(s, "\n", 1, 64, &data) == 5)
        memcpy(j->reply, data, 4);
    sq_stream_free(s);
    return NULL;
}

static void test_unix_path(void **state)
{
    int fds0 = sq_test_count_fds();
    sq_loop *loop = sq_loop_new(NULL);
    char path[64], host[80];
    snprintf(path, sizeof path, "/tmp/squall-net-%d.sock", (int)getpid());
    snprintf(host, sizeof host, "unix:%s", path);
    /* a stale socket file from an earlier run is replaced */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    unlink(path);
    assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof sa), 0);
    close(stale);
    int err, family = -1;
    sq_tcp_server *srv = sq_tcp_listen(loop, host, 0, NULL, echo, &family, &err);
    assert_non_null(srv);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0666);
    echo_job j = {.host = host, .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &j, 10);
    assert_int_equal(j.err, 0);
    assert_string_equal(j.reply, "ping");
    assert_int_equal(family, AF_UNIX);
    sq_tcp_server_close(srv);
    assert_int_equal(stat(path, &st), -1); /* the server removed its socket file */
    /* connecting to nothing: ENOENT, at once */
    echo_job j2 = {.host = host, .opts = {.timeout = 5}};
    double t0 = sq_test_now();
    sq_test_run_coro(loop, round_trip, &j2, 10);
    assert_int_equal(j2.err, -ENOENT);
    assert_true(sq_test_now() - t0 < 1.0);
    /* a regular file in the way is not removed */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_null(sq_tcp_listen(loop, host, 0, NULL, echo, NULL, &err));
    assert_int_equal(err, -EADDRINUSE);
    unlink(path);
    /* a name too long for sun_path */
    char longname[200];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "unix:/tmp/", 10);
    longname[sizeof longname - 1] = '\0';
    assert_null(sq_tcp_listen(loop, longname, 0, NULL, echo, NULL, &err));
    assert_int_equal(err, -ENAMETOOLONG);
    sq_loop_free(loop);
    assert_int_equal(sq_test_count_fds(), fds0);
}

static void test_unix_abstract_and_mode(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    char host[96];
    snprintf(host, sizeof host, "unix:@squall-net-test-%d", (int)getpid());
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, host, 0, NULL, echo, NULL, &err);
    assert_non_null(srv);
    echo_job j = {.host = host, .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &j, 10);
    assert_int_equal(j.err, 0);
    assert_string_equal(j.reply, "ping");
    sq_tcp_server_close(srv);
    /* sq_bind_unix_socket with a mode, adopted by a server */
    char path[64];
    snprintf(path, sizeof path, "/tmp/squall-net-mode-%d.sock", (int)getpid());
    int fd = sq_bind_unix_socket(path, 0600, 16);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    srv = sq_tcp_server_from_fds(loop, &fd, 1, NULL, echo, NULL, &err);
    assert_non_null(srv);
    snprintf(host, sizeof host, "unix:%s", path);
    echo_job j2 = {.host = host, .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &j2, 10);
    assert_string_equal(j2.reply, "ping");
    sq_tcp_server_close(srv);
    unlink(path); /* adopted: the server does not own the file */
    sq_loop_free(loop);
}

static void test_add_sockets(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* blocking: made non-blocking on adoption */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int err;
    /* not listening yet: refused, and left open */
    assert_null(sq_tcp_server_from_fds(loop, &fd, 1, NULL, echo, NULL, &err));
    assert_int_equal(err, -EINVAL);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    sq_tcp_server *srv = sq_tcp_server_from_fds(loop, &fd, 1, NULL, echo, NULL, &err);
    assert_non_null(srv);
    assert_int_equal(sq_tcp_server_port(srv), ntohs(sa.sin_port));
    echo_job j = {.host = "127.0.0.1", .port = ntohs(sa.sin_port), .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &j, 10);
    assert_string_equal(j.reply, "ping");
    sq_tcp_server_close(srv);
    int bad = open("/dev/null", O_RDONLY);
    assert_null(sq_tcp_server_from_fds(loop, &bad, 1, NULL, echo, NULL, &err));
    assert_int_equal(err, -ENOTSOCK);
    close(bad);
    sq_loop_free(loop);
}

/* --- systemd socket activation: this binary re-executed with LISTEN_FDS ------------------- */

static void hello(sq_http_request *req, void *arg)
{
    int *served = arg;
    sq_http_write(req, "activated", 9);
    if (++*served == 1) sq_loop_stop(sq_loop_current());
}

static int activated_child(void)
{
    int fds[4];
    int n = sq_listen_fds(fds, 4);
    if (n != 1 || fds[0] != 3 || getenv("LISTEN_FDS") || getenv("LISTEN_PID")) return 10 + n;
    if (!(fcntl(3, F_GETFD) & FD_CLOEXEC)) return 20;
    sq_loop *loop = sq_loop_new(NULL);
    int served = 0;
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, &served);
    if (!srv || sq_http_server_add_sockets(srv, fds, n) < 0) return 30;
    sq_loop_run(loop);
    sq_future *f = sq_http_server_shutdown(srv, 1.0);
    sq_loop_run_until(loop, f);
    sq_future_release(f);
    sq_http_server_free(srv);
    sq_loop_free(loop);
    return 0;
}

static void test_listen_fds(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 3);
        if (fd != 3) close(fd);
        char num[16];
        snprintf(num, sizeof num, "%d", (int)getpid()); /* LISTEN_PID: this very process */
        setenv("LISTEN_PID", num, 1);
        setenv("LISTEN_FDS", "1", 1);
        execl("/proc/self/exe", "test_net", "activated", (char *)NULL);
        _exit(99);
    }
    close(fd);
    /* a plain blocking client: GET / */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(c, req, sizeof req - 1), (ssize_t)sizeof req - 1);
    char buf[1024];
    size_t have = 0;
    ssize_t n;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (have < sizeof buf - 1 && (n = read(c, buf + have, sizeof buf - 1 - have)) > 0)
        have += (size_t)n;
    buf[have] = '\0';
    close(c);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "\r\n\r\nactivated"));
    /* without activation: nothing */
    unsetenv("LISTEN_FDS");
    assert_int_equal(sq_listen_fds(NULL, 0), 0);
    setenv("LISTEN_PID", "1", 1); /* another process's */
    setenv("LISTEN_FDS", "1", 1);
    assert_int_equal(sq_listen_fds(NULL, 0), 0);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
}

/* --- happy eyeballs ------------------------------------------------------------------------ */

typedef struct blackhole {
    int lfd;
    int fill[4];
    struct sockaddr_storage addr;
    socklen_t len;
} blackhole;

/* A listener on ::1 (or 127.0.0.1) whose accept queue is full: SYNs to it are dropped, so a
 * connect hangs — a black hole on loopback. */
/* A listener of `family` on loopback with `backlog`, its address in *addr (accepting
 * nothing: the kernel completes handshakes until the queue is full). */
static int listener(int family, int backlog, struct sockaddr_storage *addr, socklen_t *len)
{
    int fd = socket(family, SOCK_STREAM, 0);
    memset(addr, 0, sizeof *addr);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *a;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)addr, *len), 0);
    assert_int_equal(listen(fd, backlog), 0);
    getsockname(fd, (struct sockaddr *)addr, len);
    return fd;
}

static void blackhole_open(blackhole *b, int family)
{
    b->lfd = listener(family, 0, &b->addr, &b->len);
    for (int i = 0; i < 4; i++) {
        b->fill[i] = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(b->fill[i], (struct sockaddr *)&b->addr, b->len);
    }
    usleep(100 * 1000);
}

static void blackhole_close(blackhole *b)
{
    for (int i = 0; i < 4; i++) close(b->fill[i]);
    close(b->lfd);
}

typedef struct he_job {
    struct sockaddr_storage addrs[4];
    socklen_t lens[4];
    size_t n;
    sq_connect_options opts;
    int err;
    int family;       /* of the connection made */
    double took;
    char local[64];   /* its local address */
} he_job;

static void *he_connect(void *arg)
{
    he_job *j = arg;
    double t0 = sq_test_now();
    void *v = NULL;
    int64_t st = sq_await(sq__tcp_connect_addrs_future(NULL, j->addrs, j->lens, j->n, &j->opts), &v);
    j->took = sq_test_now() - t0;
    j->err = (int)st;
    if (st == 0) {
        sq_stream *s = v;
        struct sockaddr_storage ss;
        socklen_t l = sizeof ss;
        getsockname(sq_stream_fd(s), (struct sockaddr *)&ss, &l);
        j->family = ss.ss_family;
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, j->local, sizeof j->local);
        sq_stream_free(s);
    }
    return NULL;
}

static void add_addr(he_job *j, const struct sockaddr_storage *a, socklen_t len)
{
    j->addrs[j->n] = *a;
    j->lens[j->n++] = len;
}

static bool have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static void test_happy_eyeballs(void **state)
{
    if (!have_ipv6()) skip();
    sq_loop *loop = sq_loop_new(NULL);
    int fds0 = sq_test_count_fds();
    struct sockaddr_storage a4, a6;
    socklen_t l4, l6;
    int f4 = listener(AF_INET, 64, &a4, &l4), f6 = listener(AF_INET6, 64, &a6, &l6);

    /* both up, given IPv4 first: IPv6 is tried first and wins at once */
    he_job j = {.opts = {.timeout = 5}};
    add_addr(&j, &a4, l4);
    add_addr(&j, &a6, l6);
    sq_test_run_coro(loop, he_connect, &j, 10);
    assert_int_equal(j.err, 0);
    assert_int_equal(j.family, AF_INET6);
    assert_true(j.took < 0.2);

    /* ::1 black-holed: 127.0.0.1 is tried after the 250 ms delay and wins */
    blackhole bh;
    blackhole_open(&bh, AF_INET6);
    he_job k = {.opts = {.timeout = 5}};
    add_addr(&k, &bh.addr, bh.len);
    add_addr(&k, &a4, l4);
    sq_test_run_coro(loop, he_connect, &k, 10);
    print_message("black-holed ::1: IPv4 connected after %.3f s\n", k.took);
    assert_int_equal(k.err, 0);
    assert_int_equal(k.family, AF_INET);
    assert_true(k.took >= 0.2 && k.took < 2.0);
    /* a shorter delay is honoured */
    he_job k2 = {.opts = {.timeout = 5, .happy_eyeballs_delay = 0.05}};
    add_addr(&k2, &bh.addr, bh.len);
    add_addr(&k2, &a4, l4);
    sq_test_run_coro(loop, he_connect, &k2, 10);
    assert_int_equal(k2.err, 0);
    assert_true(k2.took >= 0.04 && k2.took < 0.2);

    /* refused on ::1 (nothing listens there): IPv4 at once, no 250 ms wait */
    struct sockaddr_storage dead6;
    socklen_t ld6;
    int tmp = listener(AF_INET6, 64, &dead6, &ld6);
    close(tmp); /* its port is now closed */
    he_job r = {.opts = {.timeout = 5}};
    add_addr(&r, &dead6, ld6);
    add_addr(&r, &a4, l4);
    sq_test_run_coro(loop, he_connect, &r, 10);
    print_message("refused ::1: IPv4 connected after %.3f s\n", r.took);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.family, AF_INET);
    assert_true(r.took < 0.2);

    /* everything black-holed: the overall timeout */
    blackhole bh4;
    blackhole_open(&bh4, AF_INET);
    he_job t = {.opts = {.timeout = 0.8}};
    add_addr(&t, &bh.addr, bh.len);
    add_addr(&t, &bh4.addr, bh4.len);
    sq_test_run_coro(loop, he_connect, &t, 10);
    assert_int_equal(t.err, -ETIMEDOUT);
    assert_true(t.took >= 0.7 && t.took < 3.0);

    /* the source address: 127.0.0.2 (all of 127/8 is loopback) */
    he_job s = {.opts = {.timeout = 5, .source_address = "127.0.0.2"}};
    add_addr(&s, &a6, l6); /* skipped: another family than the source */
    add_addr(&s, &a4, l4);
    sq_test_run_coro(loop, he_connect, &s, 10);
    assert_int_equal(s.err, 0);
    assert_int_equal(s.family, AF_INET);
    assert_string_equal(s.local, "127.0.0.2");
    he_job bad = {.opts = {.timeout = 5, .source_address = "localhost"}};
    add_addr(&bad, &a4, l4);
    sq_test_run_coro(loop, he_connect, &bad, 10);
    assert_int_equal(bad.err, -EINVAL);

    blackhole_close(&bh);
    blackhole_close(&bh4);
    close(f4);
    close(f6);
    /* the losers and every attempt were closed: nothing left open */
    sq_loop_run_once(loop, false);
    assert_int_equal(sq_test_count_fds(), fds0);
    sq_loop_free(loop);
}

/* A name, through the resolver: "localhost" (127.0.0.1 here) with a source port. */
static void test_connect_by_name(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err, family = -1;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, NULL, echo, &family, &err);
    assert_non_null(srv);
    echo_job j = {.host = "localhost", .port = sq_tcp_server_port(srv), .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &j, 10);
    assert_int_equal(j.err, 0);
    assert_string_equal(j.reply, "ping");
    echo_job n = {.host = "no-such-host.invalid", .port = 80, .opts = {.timeout = 5}};
    sq_test_run_coro(loop, round_trip, &n, 10);
    assert_int_equal(n.err, SQ_ERESOLVE);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "activated")) return activated_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_path),      cmocka_unit_test(test_unix_abstract_and_mode),
        cmocka_unit_test(test_add_sockets),    cmocka_unit_test(test_listen_fds),
        cmocka_unit_test(test_happy_eyeballs), cmocka_unit_test(test_connect_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
