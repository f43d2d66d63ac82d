/* TCP servers and clients on loopback: echo, resets, refused and timed-out connects, name
 * resolution on the executor, IPv6, the raw accept callback. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* --- a server whose first byte picks what it does with the connection ------------------ */

typedef struct results {
    int write_err; /* 'W': the error that ended an endless write */
    int read_err;  /* 'R': the error that ended reading */
    int echoed;    /* 'E': connections echoed to the end */
    int handlers;  /* handlers that returned */
} results;

static void role_handler(sq_stream *s, const struct sockaddr *peer, void *arg)
{
    results *res = arg;
    const char *d;
    if (sq_stream_read_bytes(s, 1, false, &d) != 1) goto out;
    char role = d[0];
    if (role == 'W') {
        static char chunk[65536];
        int r;
        for (int i = 0; i < 100000; i++)
            if ((r = sq_stream_write(s, chunk, sizeof chunk)) < 0) break;
        res->write_err = r;
    } else if (role == 'R') {
        ssize_t n;
        while ((n = sq_stream_read_bytes(s, 65536, true, &d)) > 0) {
        }
        res->read_err = (int)n;
    } else if (role == 'E') {
        ssize_t n;
        while ((n = sq_stream_read_until(s, "\n", 1, 0, &d)) > 0)
            if (sq_stream_write(s, d, (size_t)n) < 0) break;
        if (n == SQ_ECLOSED) res->echoed++;
    }
out:
    res->handlers++;
}

static sq_stream *connect_ok(const char *host, int port)
{
    int err = 1;
    sq_stream *s = sq_tcp_connect(host, port, 5.0, &err);
    assert_non_null(s);
    assert_int_equal(err, 0);
    return s;
}

static void echo_round(sq_stream *s, int i)
{
    char line[64];
    int n = snprintf(line, sizeof line, "message %d\n", i);
    assert_int_equal(sq_stream_write(s, line, (size_t)n), 0);
    const char *d;
    assert_int_equal(sq_stream_read_until(s, "\n", 1, 0, &d), n);
    assert_memory_equal(d, line, (size_t)n);
}

static void rst_close(sq_stream *s)
{
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(sq_stream_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    sq_stream_free(s); /* close() with linger 0 sends RST */
}

typedef struct reset_ctx {
    int port;
    results *res;
    bool echo_done;
} reset_ctx;

static void *echo_client(void *arg)
{
    reset_ctx *c = arg;
    sq_stream *s = connect_ok("127.0.0.1", c->port);
    assert_int_equal(sq_stream_write(s, "E", 1), 0);
    /* Keep talking while the other connections are reset around us. */
    for (int i = 0; i < 200; i++) {
        echo_round(s, i);
        if (i % 20 == 0) sq_sleep(0.005);
    }
    sq_stream_free(s);
    c->echo_done = true;
    return NULL;
}

static void *reset_coro(void *arg)
{
    reset_ctx *c = arg;
    sq_future *echo = sq_spawn(NULL, echo_client, c);

    /* Write side: the server streams at us; we take a little and reset. */
    sq_stream *w = connect_ok("127.0.0.1", c->port);
    assert_int_equal(sq_stream_write(w, "W", 1), 0);
    const char *d;
    assert_int_equal(sq_stream_read_bytes(w, 100000, false, &d), 100000);
    rst_close(w);

    /* Read side: the server is waiting in a read when the reset arrives. */
    sq_stream *r = connect_ok("127.0.0.1", c->port);
    assert_int_equal(sq_stream_write(r, "Rsome bytes", 11), 0);
    sq_sleep(0.05);
    rst_close(r);

    double t0 = sq_test_now();
    while ((c->res->write_err == 0 || c->res->read_err == 0) && sq_test_now() - t0 < 10)
        sq_sleep(0.01);
    assert_int_equal(sq_await(echo, NULL), 0);
    return NULL;
}

static void test_reset_affects_one_stream(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    results res = {0};
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, NULL, role_handler, &res, &err);
    assert_non_null(srv);
    reset_ctx c = {.port = sq_tcp_server_port(srv), .res = &res};
    sq_test_run_coro(loop, reset_coro, &c, 30);
    assert_true(res.write_err == -ECONNRESET || res.write_err == -EPIPE);
    assert_int_equal(res.read_err, -ECONNRESET);
    assert_true(c.echo_done);
    for (int i = 0; i < 100 && res.handlers < 3; i++) sq_loop_run_once(loop, false);
    assert_int_equal(res.echoed, 1);
    assert_int_equal(res.handlers, 3);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

/* --- connect errors -------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd); /* bound but never listening: connects to it are refused */
    return ntohs(a.sin_port);
}

static void *refused_coro(void *arg)
{
    int err = 0;
    assert_null(sq_tcp_connect("127.0.0.1", free_port(), 5.0, &err));
    assert_int_equal(err, -ECONNREFUSED);
    assert_null(sq_tcp_connect("::1", free_port(), 5.0, &err));
    assert_true(err == -ECONNREFUSED || err == -EADDRNOTAVAIL || err == -ENETUNREACH);
    assert_null(sq_tcp_connect("", 80, 5.0, &err));
    assert_int_equal(err, -EINVAL);
    return NULL;
}

static void test_connect_refused(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, refused_coro, NULL, 10);
    sq_loop_free(loop);
}

static int active_handlers;

static void echo_handler(sq_stream *s, const struct sockaddr *peer, void *arg)
{
    const char *d;
    ssize_t n;
    active_handlers++;
    while ((n = sq_stream_read_bytes(s, 4096, true, &d)) > 0)
        if (sq_stream_write(s, d, (size_t)n) < 0) break;
    active_handlers--;
}

/* Let the server's handlers see their clients' EOF and return (they own memory). */
static void settle(sq_loop *loop)
{
    double t0 = sq_test_now();
    while (active_handlers > 0 && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
    assert_int_equal(active_handlers, 0);
}

typedef struct host_port {
    const char *host;
    int port;
} host_port;

static void *connect_echo_coro(void *arg)
{
    host_port *hp = arg;
    sq_stream *s = connect_ok(hp->host, hp->port);
    for (int i = 0; i < 10; i++) echo_round(s, i);
    sq_stream_free(s);
    return NULL;
}

static void test_connect_localhost(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err;
    /* Listen on every address so that whichever of ::1 / 127.0.0.1 "localhost" gives first
     * is served. */
    sq_tcp_server *srv = sq_tcp_listen(loop, NULL, 0, NULL, echo_handler, NULL, &err);
    assert_non_null(srv);
    host_port hp = {"localhost", sq_tcp_server_port(srv)};
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    hp.host = "127.0.0.1";
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    settle(loop);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

static void test_ipv6(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, "::1", 0, NULL, echo_handler, NULL, &err);
    if (!srv && (err == -EADDRNOTAVAIL || err == -EAFNOSUPPORT)) {
        sq_loop_free(loop);
        skip();
    }
    assert_non_null(srv);
    host_port hp = {"::1", sq_tcp_server_port(srv)};
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    settle(loop);
    hp.host = "[::1]";
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    settle(loop);
    sq_tcp_server_close(srv);

    /* The default listener is dual-stack: IPv4 and IPv6 clients alike. */
    srv = sq_tcp_listen(loop, "", 0, NULL, echo_handler, NULL, &err);
    assert_non_null(srv);
    hp.port = sq_tcp_server_port(srv);
    hp.host = "127.0.0.1";
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    hp.host = "::1";
    sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
    settle(loop);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

/* A listener that never accepts, with its queue full: new SYNs are dropped, the connect
 * never completes, and only the timeout ends it. */
static void *timeout_coro(void *arg)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &len);
    int port = ntohs(a.sin_port);
    /* Fill the accept queue (backlog 0 holds one; take a few to be sure). */
    sq_stream *fill[4] = {0};
    int err;
    for (int i = 0; i < 4; i++) {
        fill[i] = sq_tcp_connect("127.0.0.1", port, 0.3, &err);
        if (!fill[i]) break;
    }
    double t0 = sq_test_now();
    assert_null(sq_tcp_connect("127.0.0.1", port, 0.2, &err));
    double took = sq_test_now() - t0;
    assert_int_equal(err, -ETIMEDOUT);
    assert_true(took >= 0.19);
    assert_true(took < 2.0);
    /* The future form, cancelled: no leak, no late resolution. */
    sq_future *f = sq_tcp_connect_future(NULL, "127.0.0.1", port, 0);
    sq_sleep(0.01);
    assert_false(sq_future_done(f));
    assert_int_equal(sq_future_cancel(f), 0);
    assert_int_equal(sq_future_status(f), -ECANCELED);
    sq_future_release(f);
    /* A name, timing out or not, cleans up after its resolver job. */
    f = sq_tcp_connect_future(NULL, "localhost", port, 0.05);
    sq_await(f, NULL);
    sq_sleep(0.2);
    for (int i = 0; i < 4; i++) sq_stream_free(fill[i]);
    close(lfd);
    return NULL;
}

static void test_connect_timeout(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, timeout_coro, NULL, 20);
    sq_loop_free(loop);
}

/* --- raw accept callback --------------------------------------------------------------- */

typedef struct raw_ctx {
    int accepted;
    bool nonblocking;
} raw_ctx;

static void raw_accept(sq_tcp_server *srv, int fd, const struct sockaddr *peer, socklen_t plen,
                       void *arg)
{
    raw_ctx *c = arg;
    c->accepted++;
    c->nonblocking = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
    assert_int_equal(peer->sa_family, AF_INET);
    ssize_t w = write(fd, "hi", 2);
    assert_int_equal(w, 2);
    close(fd);
    if (c->accepted == 3) sq_tcp_server_close(srv); /* closing from inside the callback */
}

static void *raw_client(void *arg)
{
    int port = *(int *)arg;
    for (int i = 0; i < 3; i++) {
        sq_stream *s = connect_ok("127.0.0.1", port);
        const char *d;
        assert_int_equal(sq_stream_read_until_close(s, 0, &d), 2);
        assert_memory_equal(d, "hi", 2);
        sq_stream_free(s);
    }
    return NULL;
}

static void test_raw_accept(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    raw_ctx c = {0};
    sq_tcp_options opts = {.on_accept = raw_accept, .reuseport = true, .backlog = 16};
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, &opts, NULL, &c, &err);
    assert_non_null(srv);
    int port = sq_tcp_server_port(srv);
    assert_true(port > 0);
    sq_test_run_coro(loop, raw_client, &port, 10);
    assert_int_equal(c.accepted, 3);
    assert_true(c.nonblocking);
    sq_loop_free(loop);
}

/* sq_tcp_server_pause/resume: a paused server accepts nothing (connections wait in the
 * backlog), and takes them once resumed. */
static int paused_accepts;

static void count_accept(sq_tcp_server *srv, int fd, const struct sockaddr *peer, socklen_t plen,
                         void *arg)
{
    paused_accepts++;
    close(fd);
}

static void *pause_task(void *arg)
{
    sq_tcp_server *srv = arg;
    int port = sq_tcp_server_port(srv);
    sq_tcp_server_pause(srv);
    sq_tcp_server_pause(srv); /* idempotent */
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0); /* backlog */
    }
    sq_sleep(0.2);
    assert_int_equal(paused_accepts, 0);
    sq_tcp_server_resume(srv);
    for (int i = 0; i < 200 && paused_accepts < 3; i++) sq_sleep(0.01);
    assert_int_equal(paused_accepts, 3);
    for (int i = 0; i < 3; i++) close(fds[i]);
    return NULL;
}

static void test_pause_resume(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_tcp_options opts = {.on_accept = count_accept};
    int err;
    paused_accepts = 0;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, &opts, NULL, NULL, &err);
    assert_non_null(srv);
    sq_test_run_coro(loop, pause_task, srv, 10);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

static void test_listen_errors(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err;
    sq_tcp_server *a = sq_tcp_listen(loop, "127.0.0.1", 0, NULL, echo_handler, NULL, &err);
    assert_non_null(a);
    /* The same port again, without SO_REUSEPORT. */
    assert_null(
        sq_tcp_listen(loop, "127.0.0.1", sq_tcp_server_port(a), NULL, echo_handler, NULL, &err));
    assert_int_equal(err, -EADDRINUSE);
    assert_null(sq_tcp_listen(loop, "127.0.0.1", 70000, NULL, echo_handler, NULL, &err));
    assert_int_equal(err, -EINVAL);
    sq_tcp_server_close(a);
    sq_loop_free(loop);
}

/* --- a name that resolves to several addresses --------------------------------------------- */

#include <netdb.h>
void sq__tcp_set_resolver(int (*fn)(const char *, const char *, const struct addrinfo *,
                                    struct addrinfo **),
                          void (*free_fn)(struct addrinfo *));
int sq__tcp_server_nfds(const sq_tcp_server *srv);

static const char *fake_addrs[4]; /* what "several.test" resolves to */

static int fake_resolve(const char *host, const char *port, const struct addrinfo *hints,
                        struct addrinfo **res)
{
    struct addrinfo *head = NULL, **tail = &head;
    for (int i = 0; fake_addrs[i]; i++) {
        struct addrinfo h = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
        if (getaddrinfo(fake_addrs[i], port, &h, tail) != 0) break;
        while (*tail) tail = &(*tail)->ai_next;
    }
    *res = head;
    return head ? 0 : EAI_NONAME;
}

/* A plain listening socket on addr:port (0: any port); its port, or -1 */
static int hold_port(const char *addr, int port, int *fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &a->sin6_addr);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &a->sin_addr);
        len = sizeof *a;
    }
    *fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&ss, len) < 0 || listen(*fd, 1) < 0) return -1;
    getsockname(*fd, (struct sockaddr *)&ss, &len);
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

static void test_listen_name_addresses(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    int err, fd = -1;
    sq__tcp_set_resolver(fake_resolve, freeaddrinfo);
    /* the same address twice: bound once */
    fake_addrs[0] = "127.0.0.1", fake_addrs[1] = "127.0.0.1", fake_addrs[2] = NULL;
    sq_tcp_server *srv = sq_tcp_listen(loop, "several.test", 0, NULL, echo_handler, NULL, &err);
    assert_non_null(srv);
    assert_int_equal(sq__tcp_server_nfds(srv), 1);
    sq_tcp_server_close(srv);
    int p6 = hold_port("::1", 0, &fd);
    if (p6 > 0) {
        close(fd);
        /* both families, port 0: one port for both, each of them served */
        fake_addrs[0] = "::1", fake_addrs[1] = "127.0.0.1";
        srv = sq_tcp_listen(loop, "several.test", 0, NULL, echo_handler, NULL, &err);
        assert_non_null(srv);
        assert_int_equal(sq__tcp_server_nfds(srv), 2);
        host_port hp = {"::1", sq_tcp_server_port(srv)};
        sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
        hp.host = "127.0.0.1";
        sq_test_run_coro(loop, connect_echo_coro, &hp, 20);
        settle(loop);
        sq_tcp_server_close(srv);
        /* the port taken on one of the addresses (by another program): an error, not a
         * server on the other address alone (clients of the name would reach the other
         * program) */
        fake_addrs[0] = "127.0.0.1", fake_addrs[1] = "::1";
        p6 = hold_port("::1", 0, &fd);
        assert_true(p6 > 0);
        int fd4 = -1;
        if (hold_port("127.0.0.1", p6, &fd4) > 0) { /* (is 127.0.0.1:p6 free?) */
            close(fd4);
            srv = sq_tcp_listen(loop, "several.test", p6, NULL, echo_handler, NULL, &err);
            assert_null(srv);
            assert_int_equal(err, -EADDRINUSE);
        } else {
            close(fd4);
        }
        close(fd);
    } else if (fd >= 0) {
        close(fd); /* no IPv6 here */
    }
    sq__tcp_set_resolver(NULL, NULL);
    settle(loop);
    sq_loop_free(loop);
}

/* --- out of descriptors: pause, log once, resume --------------------------------------- */

typedef struct emfile_ctx {
    int fds[64];
    int n;
} emfile_ctx;

static void keep_fd(sq_tcp_server *srv, int fd, const struct sockaddr *peer, socklen_t plen,
                    void *arg)
{
    emfile_ctx *c = arg;
    if (c->n < 64)
        c->fds[c->n++] = fd;
    else
        close(fd);
}

static int warnings;
static void count_warnings(int level, const char *msg, void *arg)
{
    if (level == SQ_LOG_WARNING && strstr(msg, "accept")) warnings++;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 2; /* . and .. */
}

#define EMFILE_CLIENTS 12

static void test_emfile_pauses(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    emfile_ctx c = {0};
    sq_tcp_options opts = {.on_accept = keep_fd};
    int err;
    sq_tcp_server *srv = sq_tcp_listen(loop, "127.0.0.1", 0, &opts, NULL, &c, &err);
    assert_non_null(srv);
    int port = sq_tcp_server_port(srv);

    /* The clients live in a child, so that only our accepts use our descriptors. */
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        int cfd[EMFILE_CLIENTS];
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        for (int i = 0; i < EMFILE_CLIENTS; i++) {
            cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(cfd[i], (struct sockaddr *)&a, sizeof a) < 0) _exit(1);
        }
        char b;
        ssize_t r = read(go[0], &b, 1); /* until the parent is done */
        (void)r;
        _exit(0);
    }
    close(go[0]);

    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)open_fds() + 4; /* room for about four accepts */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    sq_log_set_handler(count_warnings, NULL);
    warnings = 0;

    /* Out of descriptors for 0.5 s: the loop must sleep, not spin on the readable listener. */
    int iterations = 0;
    double t0 = sq_test_now();
    while (sq_test_now() - t0 < 0.5) {
        sq_loop_run_once(loop, true);
        iterations++;
    }
    int accepted_low = c.n;
    setrlimit(RLIMIT_NOFILE, &old);
    t0 = sq_test_now();
    while (c.n < EMFILE_CLIENTS && sq_test_now() - t0 < 5) sq_loop_run_once(loop, true);
    sq_log_set_handler(NULL, NULL);

    print_message("accepted %d while limited, %d loop iterations in 0.5 s\n", accepted_low,
                  iterations);
    assert_true(accepted_low > 0 && accepted_low < EMFILE_CLIENTS);
    assert_true(iterations < 100); /* a pause every 0.1 s, not a busy loop */
    assert_int_equal(warnings, 1); /* logged once however often it happens */
    assert_int_equal(c.n, EMFILE_CLIENTS);

    close(go[1]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < c.n; i++) close(c.fds[i]);
    sq_tcp_server_close(srv);
    sq_loop_free(loop);
}

/* A connect future nobody takes the stream from — released while pending, awaited with
 * NULL, or peeked at and released — closes the stream with itself: no fd, no memory leaks. */
typedef struct connect_seen {
    int calls;
    bool had_stream;
} connect_seen;

static void connect_seen_cb(sq_future *f, void *arg)
{
    connect_seen *cs = arg;
    cs->calls++;
    cs->had_stream = sq_future_status(f) == 0 && sq_future_value(f) != NULL;
}

static void *dropped_connect_coro(void *arg)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 64), 0); /* never accepts: the kernel completes handshakes */
    socklen_t len = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &len);
    int port = ntohs(a.sin_port);
    int err = 0;
    sq_stream *s = sq_tcp_connect("127.0.0.1", port, 5, &err); /* warm up lazy fds */
    assert_non_null(s);
    sq_stream_free(s);
    int base = open_fds();
    assert_true(base > 0);
    /* Taken: the caller owns one more fd until it frees the stream. */
    s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    assert_int_equal(open_fds(), base + 1);
    sq_stream_free(s);
    assert_int_equal(open_fds(), base);
    /* Released while pending; it connects later. */
    for (int i = 0; i < 3; i++) {
        connect_seen cs = {0};
        sq_future *f = sq_tcp_connect_future(NULL, "127.0.0.1", port, 5);
        assert_non_null(f);
        assert_false(sq_future_done(f));
        assert_int_equal(sq_future_add_done_callback(f, connect_seen_cb, &cs), 0);
        sq_future_release(f);
        for (int k = 0; k < 300 && !cs.calls; k++) sq_sleep(0.01);
        assert_int_equal(cs.calls, 1);
        assert_true(cs.had_stream);
        assert_int_equal(open_fds(), base);
    }
    /* Awaited with NULL. */
    assert_int_equal(sq_await(sq_tcp_connect_future(NULL, "127.0.0.1", port, 5), NULL), 0);
    assert_int_equal(open_fds(), base);
    /* Done, peeked at, released. */
    sq_future *f = sq_tcp_connect_future(NULL, "127.0.0.1", port, 5);
    assert_int_equal(sq_await(sq_future_retain(f), NULL), 0);
    assert_non_null(sq_future_value(f));
    assert_int_equal(open_fds(), base + 1);
    sq_future_release(f);
    assert_int_equal(open_fds(), base);
    close(lfd);
    return NULL;
}

static void test_connect_future_dropped(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, dropped_connect_coro, NULL, 20);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_affects_one_stream),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_localhost),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_raw_accept),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_listen_name_addresses),
        cmocka_unit_test(test_emfile_pauses),
        cmocka_unit_test(test_connect_future_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
