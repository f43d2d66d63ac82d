/* The Redis client against a real redis-server started by the test on an ephemeral
 * loopback port (or a unix socket) in a temporary directory: commands, binary safety,
 * pipelining with the loop still serving, error replies, refused connects, pub/sub across
 * two processes, reconnect after the server is killed, AUTH/SELECT, timeouts, a frozen
 * server noticed (socket_timeout, a subscriber's health check), and every way of freeing a
 * client early.  Skipped when redis-server is not installed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* --- a redis-server of our own ---------------------------------------------------------- */

typedef struct redis_srv {
    pid_t pid;
    int port; /* 0 with a unix socket only */
    char dir[256];
    char sock[320];
    const char *password;
    bool unix_only;
    int tls_port;       /* also listen with TLS here (0: no) */
    const char *fixdir; /* the TLS fixtures (server.pem, server.key, ca.pem) */
} redis_srv;

static const char *redis_bin(void)
{
    static const char *const paths[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server",
                                        "/usr/sbin/redis-server"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A blocking PING: true once the server answers anything (+PONG, -NOAUTH …). */
static bool srv_answers(const redis_srv *s)
{
    int fd;
    if (s->unix_only) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(s->sock) >= sizeof sa.sun_path) return false;
        memcpy(sa.sun_path, s->sock, strlen(s->sock) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)s->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
    }
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64];
    if (write(fd, "PING\r\n", 6) != 6 || read(fd, buf, sizeof buf) <= 0) goto fail;
    close(fd);
    return true;
fail:
    close(fd);
    return false;
}

static void srv_spawn(redis_srv *s)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *argv[32];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    if (s->unix_only) {
        argv[n++] = "--unixsocket";
        argv[n++] = s->sock;
    }
    if (s->password) {
        argv[n++] = "--requirepass";
        argv[n++] = s->password;
    }
    char tport[16], cert[512], key[512], ca[512];
    if (s->tls_port) {
        snprintf(tport, sizeof tport, "%d", s->tls_port);
        snprintf(cert, sizeof cert, "%s/server.pem", s->fixdir);
        snprintf(key, sizeof key, "%s/server.key", s->fixdir);
        snprintf(ca, sizeof ca, "%s/ca.pem", s->fixdir);
        const char *more[] = {"--tls-port",         tport, "--tls-cert-file",    cert,
                              "--tls-key-file",     key,   "--tls-ca-cert-file", ca,
                              "--tls-auth-clients", "no"};
        for (size_t i = 0; i < sizeof more / sizeof *more; i++) argv[n++] = more[i];
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* it goes with the test, also when a failed check skipped the test's own stop */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execv(redis_bin(), (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        if (srv_answers(s)) return;
        usleep(20000);
    }
    fail_msg("redis-server did not answer");
}

/* Start a server: on a free loopback port, or only on a unix socket. */
static void srv_start(redis_srv *s, bool unix_only, const char *password)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/sq-redis-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    s->unix_only = unix_only;
    s->password = password;
    s->port = unix_only ? 0 : free_port();
    srv_spawn(s);
}

static void srv_kill(redis_srv *s, int sig)
{
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static void srv_stop(redis_srv *s)
{
    srv_kill(s, SIGKILL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->dir);
}

static const char *url_of(const redis_srv *s, const char *suffix)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "redis://127.0.0.1:%d%s", s->port, suffix ? suffix : "");
    return buf;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!redis_bin()) {                                                                        \
            print_message("redis-server is not installed: skipped\n");                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Run fn(arg) as a coroutine on a fresh loop, then free the loop. */
static void run(sq_task_fn fn, void *arg, double limit)
{
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, fn, arg, limit);
    sq_loop_free(loop);
}

/* Poll `cond` every 10 ms for up to `limit` seconds. */
#define WAIT_FOR(cond, limit)                                                                      \
    do {                                                                                           \
        double t0_ = sq_test_now();                                                                \
        while (!(cond) && sq_test_now() - t0_ < (limit)) sq_sleep(0.01);                           \
    } while (0)

static sq_redis *connect_ok(const char *url, const sq_redis_options *o)
{
    int err = 1;
    sq_redis *r = sq_redis_connect(url, o, &err);
    if (!r) fail_msg("connect %s: %s", url, sq_strerror(err));
    assert_int_equal(err, 0);
    assert_true(sq_redis_connected(r));
    return r;
}

/* A command that must succeed; the reply is the caller's. */
/* (err is read through a pointer: it must be read after the command ran) */
static sq_redis_reply *ok(sq_redis *r, sq_redis_reply *rep, const int *errp)
{
    (void)r;
    int err = *errp;
    if (err) fail_msg("command failed: %s (%s)", sq_strerror(err), rep && rep->str ? rep->str : "");
    assert_non_null(rep);
    return rep;
}

static void expect_str(sq_redis_reply *rep, int type, const char *s)
{
    assert_non_null(rep);
    assert_int_equal(rep->type, type);
    assert_int_equal(rep->len, strlen(s));
    assert_memory_equal(rep->str, s, rep->len);
    sq_redis_reply_free(rep);
}

static void expect_int(sq_redis_reply *rep, long long v)
{
    assert_non_null(rep);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, v);
    sq_redis_reply_free(rep);
}

/* --- commands ------------------------------------------------------------------------------ */

static void *basic_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, "/0"), NULL);
    int e;
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET %s %s", "greeting", "hello world"), &e),
               SQ_REDIS_REPLY_STATUS, "OK");
    expect_str(ok(r, sq_redis_cmd(r, &e, "GET greeting"), &e), SQ_REDIS_REPLY_STRING,
               "hello world");
    sq_redis_reply *rep = ok(r, sq_redis_cmd(r, &e, "GET nosuchkey"), &e);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_NIL);
    sq_redis_reply_free(rep);
    for (int i = 1; i <= 3; i++) expect_int(ok(r, sq_redis_cmd(r, &e, "INCR counter"), &e), i);
    expect_int(ok(r, sq_redis_cmd(r, &e, "INCRBY counter %d", 39), &e), 42);

    /* lists */
    expect_int(ok(r, sq_redis_cmd(r, &e, "RPUSH list a b c"), &e), 3);
    expect_int(ok(r, sq_redis_cmd(r, &e, "LPUSH list z"), &e), 4);
    rep = ok(r, sq_redis_cmd(r, &e, "LRANGE list 0 -1"), &e);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_ARRAY);
    assert_int_equal(rep->elements, 4);
    const char *want[] = {"z", "a", "b", "c"};
    for (int i = 0; i < 4; i++) assert_string_equal(rep->element[i]->str, want[i]);
    sq_redis_reply_free(rep);
    expect_str(ok(r, sq_redis_cmd(r, &e, "LPOP list"), &e), SQ_REDIS_REPLY_STRING, "z");

    /* hashes */
    expect_int(ok(r, sq_redis_cmd(r, &e, "HSET user:1 name %s age %d", "Ada Lovelace", 36), &e), 2);
    expect_str(ok(r, sq_redis_cmd(r, &e, "HGET user:1 name"), &e), SQ_REDIS_REPLY_STRING,
               "Ada Lovelace");
    rep = ok(r, sq_redis_cmd(r, &e, "HGETALL user:1"), &e);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_ARRAY);
    assert_int_equal(rep->elements, 4);
    sq_redis_reply_free(rep);
    expect_int(ok(r, sq_redis_cmd(r, &e, "HINCRBY user:1 age 1"), &e), 37);

    /* future form, fire and forget, then a value taken from a future */
    sq_future_release(sq_redis_cmd_future(r, "SET ff %s", "1"));
    sq_future *f = sq_redis_cmd_future(r, "GET ff");
    assert_non_null(f);
    assert_int_equal(sq_await(sq_future_retain(f), NULL), 0); /* peeked, not taken */
    rep = sq_future_take_value(f);
    sq_future_release(f);
    expect_str(rep, SQ_REDIS_REPLY_STRING, "1");
    /* a reply nobody takes is freed with its future */
    assert_int_equal(sq_await(sq_redis_cmd_future(r, "GET ff"), NULL), 0);
    sq_redis_free(r);
    /* an empty password in the query is none, as in redis://:@host (it sent AUTH "", which a
     * server without a password refuses, and the connect failed) */
    sq_redis_free(connect_ok(url_of(s, "/0?password="), NULL));
    sq_redis_free(connect_ok(url_of(s, "/0?password=&db=1"), NULL));
    return NULL;
}

static void test_basic(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(basic_coro, &s, 30);
    srv_stop(&s);
}

static void *binary_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    int e;
    /* NULs in keys and values, through argv and through %b */
    const char key[] = {'k', 0, 'e', 'y'};
    const char val[] = {0, 1, 0, 'x', '\r', '\n', 0};
    const char *argv[] = {"SET", key, val};
    size_t lens[] = {3, sizeof key, sizeof val};
    expect_str(ok(r, sq_redis_cmd_argv(r, &e, 3, argv, lens), &e), SQ_REDIS_REPLY_STATUS, "OK");
    sq_redis_reply *rep = ok(r, sq_redis_cmd(r, &e, "GET %b", key, sizeof key), &e);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_STRING);
    assert_int_equal(rep->len, sizeof val);
    assert_memory_equal(rep->str, val, sizeof val);
    sq_redis_reply_free(rep);

    /* 1 MiB of every byte value */
    size_t n = 1u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) big[i] = (char)((i * 7919u) >> 3);
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET big %b", big, n), &e), SQ_REDIS_REPLY_STATUS, "OK");
    rep = ok(r, sq_redis_cmd(r, &e, "GET big"), &e);
    assert_int_equal(rep->len, n);
    assert_memory_equal(rep->str, big, n);
    sq_redis_reply_free(rep);
    expect_int(ok(r, sq_redis_cmd(r, &e, "STRLEN big"), &e), (long long)n);
    /* several big ones in flight at once */
    sq_future *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = sq_redis_cmd_future(r, "GET big");
    void *vals[4];
    assert_int_equal(sq_gather(fs, 4, vals, NULL), 0);
    for (int i = 0; i < 4; i++) {
        rep = vals[i];
        assert_int_equal(rep->len, n);
        assert_memory_equal(rep->str, big, n);
        sq_redis_reply_free(rep);
    }
    free(big);
    sq_redis_free(r);
    return NULL;
}

static void test_binary(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(binary_coro, &s, 30);
    srv_stop(&s);
}

/* --- 10,000 commands in flight from 100 coroutines while a periodic callback ticks ---------- */

#define NCORO 100
#define NCMD  100

typedef struct pipe_ctx {
    sq_redis *r;
    int id;
    int done;
    int *finished;
} pipe_ctx;

static int replies; /* INCR replies dispatched so far */

static void count_reply(sq_future *f, void *arg)
{
    (void)f, (void)arg;
    replies++;
}

static void *incr_worker(void *arg)
{
    pipe_ctx *c = arg;
    sq_future *fs[NCMD];
    void *vals[NCMD];
    for (int i = 0; i < NCMD; i++) {
        fs[i] = sq_redis_cmd_future(c->r, "INCR ctr:%d", c->id);
        assert_int_equal(sq_future_add_done_callback(fs[i], count_reply, NULL), 0);
    }
    assert_int_equal(sq_gather(fs, NCMD, vals, NULL), 0);
    for (int i = 0; i < NCMD; i++) {
        sq_redis_reply *rep = vals[i];
        if (rep->type == SQ_REDIS_REPLY_INTEGER && rep->integer == i + 1) c->done++;
        sq_redis_reply_free(rep);
    }
    (*c->finished)++;
    return NULL;
}

/* first_gap: from the start to the first tick (the loop iteration in which the 100
 * coroutines format their 10,000 commands); max_gap: the longest between later ticks. */
typedef struct ticker {
    int ticks;
    double last, first_at, first_gap, max_gap;
} ticker;

static void tick(void *arg)
{
    ticker *t = arg;
    double now = sq_test_now();
    if (t->ticks++ == 0) {
        t->first_gap = now - t->last;
        t->first_at = now;
    } else if (now - t->last > t->max_gap) {
        t->max_gap = now - t->last;
    }
    t->last = now;
}

/* A coroutine that yields again and again, and counts the loop turns in which it saw the
 * replies' dispatch move on while it was under way (more than none, fewer than all). */
typedef struct observer {
    const int *finished;
    int seen, turns;
} observer;

static void *observe(void *arg)
{
    observer *o = arg;
    double t0 = sq_test_now();
    while (*o->finished < NCORO && sq_test_now() - t0 < 60) {
        int now = replies;
        if (now != o->seen && now > 0 && now < NCORO * NCMD) o->turns++;
        o->seen = now;
        sq_yield();
    }
    return NULL;
}

static void *pipeline_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    sq_loop *loop = sq_loop_current();
    int finished = 0;
    ticker tk = {0};
    const double interval = 0.001;
    sq_periodic p;
    sq_periodic_init(loop, &p, interval, tick, &tk);
    static pipe_ctx ctx[NCORO];
    double t0 = sq_test_now();
    tk.last = t0; /* the first gap counts from here */
    sq_periodic_start(&p);
    replies = 0;
    observer obs = {&finished, 0, 0};
    assert_int_equal(sq_go(loop, observe, &obs), 0);
    for (int i = 0; i < NCORO; i++) {
        ctx[i] = (pipe_ctx){r, i, 0, &finished};
        assert_int_equal(sq_go(loop, incr_worker, &ctx[i]), 0);
    }
    while (finished < NCORO && sq_test_now() - t0 < 60) sq_sleep(0.001);
    double elapsed = sq_test_now() - t0;
    sq_periodic_stop(&p);
    assert_int_equal(finished, NCORO);
    int total = 0;
    for (int i = 0; i < NCORO; i++) total += ctx[i].done;
    assert_int_equal(total, NCORO * NCMD);
    double after = tk.ticks ? t0 + elapsed - tk.first_at : 0; /* from the first tick on */
    print_message("10,000 INCRs from 100 coroutines: %.1f ms; %d ticks of a 1 ms periodic callback "
                  "(%.0f at most), the first after %.1f ms, then gaps of %.1f ms at most; "
                  "%d turns of the loop during the replies\n",
                  elapsed * 1e3, tk.ticks, elapsed / interval, tk.first_gap * 1e3, tk.max_gap * 1e3,
                  obs.turns);
    /* the loop kept serving: the periodic callback ran, and while the replies came in it was
     * never held up for long.  The first gap is the loop iteration in which the 100
     * coroutines format their 10,000 commands (about 20 ms alone under ASan, 210 ms on a
     * busy 2-core machine): bounded apart, generously.  The client goes back to the loop
     * every 128 replies, so the observer saw the dispatch move on in about 80 turns (without
     * that: 3 to 11 turns, one per read, each holding the loop for up to 8 ms under ASan and
     * for 32 ms on a slow machine); half of that is asked for, whatever the machine's speed. */
    assert_true(obs.turns >= NCORO * NCMD / 128 / 2);
    assert_true(tk.ticks >= 1);
    assert_true(tk.first_gap < 2.0);
    /* a tick every 40 ms on average at least (turns took up to 29 ms under ASan while other
     * tests ran beside it; a loop held for the whole burst gives none) */
    assert_true(tk.ticks - 1 >= (int)(after / interval / 40));
    assert_true(tk.max_gap < 0.2);
    int e;
    expect_int(ok(r, sq_redis_cmd(r, &e, "INCR ctr:7"), &e), NCMD + 1);
    sq_redis_free(r);
    return NULL;
}

static void test_pipeline(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(pipeline_coro, &s, 90);
    srv_stop(&s);
}

/* --- errors ------------------------------------------------------------------------------- */

static void *errors_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    int e;
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET word abc"), &e), SQ_REDIS_REPLY_STATUS, "OK");
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "INCR word");
    assert_int_equal(e, SQ_EREDIS);
    assert_non_null(rep);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_ERROR);
    assert_non_null(strstr(rep->str, "not an integer"));
    sq_redis_reply_free(rep);
    /* future form: the status is SQ_EREDIS and the reply rides along */
    sq_future *f = sq_redis_cmd_future(r, "NOSUCHCOMMAND %d", 1);
    void *v = NULL;
    assert_int_equal(sq_await(f, &v), SQ_EREDIS);
    rep = v;
    assert_non_null(rep);
    assert_non_null(strstr(rep->str, "unknown command"));
    sq_redis_reply_free(rep);
    /* the connection is fine afterwards, and replies still match their commands */
    expect_str(ok(r, sq_redis_cmd(r, &e, "GET word"), &e), SQ_REDIS_REPLY_STRING, "abc");
    assert_string_not_equal(sq_strerror(SQ_EREDIS), "unknown error");
    /* bad arguments */
    assert_int_equal(sq_await(sq_redis_cmd_argv_future(r, 0, NULL, NULL), NULL), -EINVAL);
    assert_int_equal(sq_await(sq_redis_cmd_future(NULL, "PING"), NULL), -EINVAL);
    sq_redis_free(r);

    /* a dead port: refused, in both forms */
    int port = free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -ECONNREFUSED);
    assert_int_equal(sq_await(sq_redis_connect_future(NULL, url, NULL), NULL), -ECONNREFUSED);
    /* bad URLs */
    const char *bad[] = {"http://x",    "redis://",   "redis://h:99999",
                         "redis://h/x", "unix://rel", "redis://[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_null(sq_redis_connect(bad[i], NULL, &e));
        assert_int_equal(e, -EINVAL);
    }
    return NULL;
}

static void test_errors(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_ERROR); /* bad URLs are logged as warnings */
    run(errors_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* --- timeouts ------------------------------------------------------------------------------ */

static void *timeout_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis_options o = {.command_timeout = 0.3};
    sq_redis *r = connect_ok(url_of(s, NULL), &o);
    sq_redis *other = connect_ok(url_of(s, NULL), NULL);
    int e;
    double t0 = sq_test_now();
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "BLPOP tlist 0");
    double took = sq_test_now() - t0;
    assert_null(rep);
    assert_int_equal(e, -ETIMEDOUT);
    assert_true(took >= 0.25 && took < 3);
    /* the server still runs the BLPOP (a timeout does not withdraw a command): queue one
     * behind it, unblock it; its late reply is dropped and each later command gets its own */
    sq_future *set = sq_redis_cmd_future(r, "SET k1 v1");
    expect_int(ok(other, sq_redis_cmd(other, &e, "RPUSH tlist x"), &e), 1);
    void *v = NULL;
    assert_int_equal(sq_await(set, &v), 0);
    expect_str(v, SQ_REDIS_REPLY_STATUS, "OK");
    expect_str(ok(r, sq_redis_cmd(r, &e, "GET k1"), &e), SQ_REDIS_REPLY_STRING, "v1");
    expect_int(ok(r, sq_redis_cmd(r, &e, "LLEN tlist"), &e), 0); /* the BLPOP took it */
    /* one command's own timeout on a client without a default */
    t0 = sq_test_now();
    assert_int_equal(sq_await(sq_with_timeout(sq_redis_cmd_future(other, "BLPOP t2 0"), 0.2), NULL),
                     -ETIMEDOUT);
    assert_true(sq_test_now() - t0 < 3);
    sq_future *ping = sq_redis_cmd_future(other, "PING");
    expect_int(ok(r, sq_redis_cmd(r, &e, "RPUSH t2 y"), &e), 1);
    assert_int_equal(sq_await(ping, &v), 0);
    expect_str(v, SQ_REDIS_REPLY_STATUS, "PONG");
    sq_redis_free(r);
    sq_redis_free(other);

    /* the connect timeout: a listener that never answers AUTH */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    char url[96];
    snprintf(url, sizeof url, "redis://:pw@127.0.0.1:%d", ntohs(sa.sin_port));
    sq_redis_options ct = {.connect_timeout = 0.3};
    t0 = sq_test_now();
    assert_null(sq_redis_connect(url, &ct, &e));
    assert_int_equal(e, -ETIMEDOUT);
    took = sq_test_now() - t0;
    assert_true(took >= 0.25 && took < 3);
    close(lfd);
    return NULL;
}

static void test_timeouts(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(timeout_coro, &s, 30);
    srv_stop(&s);
}

/* --- unix sockets, AUTH and SELECT ------------------------------------------------------- */

static bool client_db_is(sq_redis *r, int db)
{
    int e;
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "CLIENT INFO");
    assert_int_equal(e, 0);
    char want[32];
    snprintf(want, sizeof want, " db=%d ", db);
    bool yes = strstr(rep->str, want) != NULL;
    sq_redis_reply_free(rep);
    return yes;
}

static void *unix_coro(void *arg)
{
    redis_srv *s = arg;
    char url[512];
    snprintf(url, sizeof url, "unix://%s?db=2", s->sock);
    sq_redis *r = connect_ok(url, NULL);
    int e;
    assert_true(client_db_is(r, 2));
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET where unix"), &e), SQ_REDIS_REPLY_STATUS, "OK");
    expect_str(ok(r, sq_redis_cmd(r, &e, "GET where"), &e), SQ_REDIS_REPLY_STRING, "unix");
    sq_redis_free(r);
    snprintf(url, sizeof url, "unix://%s/nonexistent.sock", s->dir);
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -ENOENT);
    return NULL;
}

static void test_unix(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, true, NULL);
    run(unix_coro, &s, 30);
    srv_stop(&s);
}

static void *auth_coro(void *arg)
{
    redis_srv *s = arg;
    int e;
    /* no password: SELECT is refused, so the connect fails... */
    assert_null(sq_redis_connect(url_of(s, "/3"), NULL, &e));
    assert_int_equal(e, SQ_EREDIS);
    /* ...and without a db it connects, but every command is refused */
    sq_redis *r = connect_ok(url_of(s, NULL), NULL), *r2;
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "GET x");
    assert_int_equal(e, SQ_EREDIS);
    assert_non_null(strstr(rep->str, "NOAUTH"));
    sq_redis_reply_free(rep);
    sq_redis_free(r);
    /* AUTH password, then SELECT 3 (SELECT needs AUTH first) */
    char url[256];
    snprintf(url, sizeof url, "redis://:s%%65cret@127.0.0.1:%d/3", s->port); /* %65 = 'e' */
    r = connect_ok(url, NULL);
    assert_true(client_db_is(r, 3));
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET k three"), &e), SQ_REDIS_REPLY_STATUS, "OK");
    /* AUTH user password (Redis 6 ACL form), password in the query */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?user=default&password=secret&db=3", s->port);
    r2 = connect_ok(url, NULL);
    assert_true(client_db_is(r2, 3));
    expect_str(ok(r2, sq_redis_cmd(r2, &e, "GET k"), &e), SQ_REDIS_REPLY_STRING, "three");
    sq_redis_free(r2);
    snprintf(url, sizeof url, "redis://default:secret@127.0.0.1:%d", s->port);
    r2 = connect_ok(url, NULL);
    assert_true(client_db_is(r2, 0));
    rep = ok(r2, sq_redis_cmd(r2, &e, "GET k"), &e);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_NIL); /* another db */
    sq_redis_reply_free(rep);
    sq_redis_free(r2);
    sq_redis_free(r);
    /* a wrong password: the connect fails with SQ_EREDIS */
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", s->port);
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, SQ_EREDIS);
    return NULL;
}

static void test_auth_select(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, "secret");
    sq_log_set_level(SQ_LOG_ERROR);
    run(auth_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* --- pub/sub across two processes ---------------------------------------------------------- */

#define NMSG 10000

typedef struct sub_state {
    int count, bad;
    int target;
    bool stop_at_target;
    sq_redis_sub *free_at; /* free this subscriber from inside the callback at target */
} sub_state;

/* Messages are "m<i>" followed by a NUL and "!": binary-safe, and checked in order. */
static void on_msg(sq_redis_sub *s, const char *channel, size_t clen, const char *data, size_t len,
                   void *arg)
{
    sub_state *st = arg;
    char want[32];
    int n = snprintf(want, sizeof want, "m%d", st->count);
    want[n + 1] = '!';
    if (len != (size_t)n + 2 || memcmp(data, want, len) != 0 || clen != 4 ||
        memcmp(channel, "chat", 4) != 0)
        st->bad++;
    st->count++;
    if (st->count == st->target) {
        if (st->free_at) {
            sq_redis_sub_free(st->free_at);
            st->free_at = NULL;
        }
        if (st->stop_at_target) sq_loop_stop(sq_loop_current());
    }
}

static void child_limit(void *arg)
{
    sq_loop_stop(arg);
}

/* The second process: subscribe, receive NMSG messages, report. */
static int sub_child(const char *port)
{
    sq_loop *loop = sq_loop_new(NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%s", port);
    sub_state st = {.target = NMSG, .stop_at_target = true};
    int err;
    sq_redis_sub *s = sq_redis_sub_new(loop, url, NULL, on_msg, &st, &err);
    if (!s || sq_redis_subscribe(s, "chat") < 0) return 3;
    sq_call *limit = sq_call_later(loop, 60, child_limit, loop);
    sq_loop_run(loop);
    if (st.count >= NMSG) sq_call_cancel(limit);
    sq_redis_sub_free(s);
    sq_loop_free(loop);
    printf("child: %d messages, %d out of order or corrupt\n", st.count, st.bad);
    fflush(stdout);
    return st.count == NMSG && st.bad == 0 ? 0 : 1;
}

static long long numsub(sq_redis *r, const char *channel)
{
    int e;
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "PUBSUB NUMSUB %s", channel);
    assert_int_equal(e, 0);
    assert_int_equal(rep->elements, 2);
    long long n = rep->element[1]->integer;
    sq_redis_reply_free(rep);
    return n;
}

typedef struct ps_ctx {
    redis_srv *s;
    int child_status;
    char child_out[256];
} ps_ctx;

static void *pubsub_coro(void *arg)
{
    ps_ctx *c = arg;
    redis_srv *s = c->s;
    sq_redis *pub = connect_ok(url_of(s, NULL), NULL);
    sq_loop *loop = sq_loop_current();
    int err;
    sub_state st = {.target = NMSG};
    sq_redis_sub *sub = sq_redis_sub_new(loop, url_of(s, NULL), NULL, on_msg, &st, &err);
    assert_non_null(sub);
    assert_int_equal(sq_redis_subscribe(sub, "chat"), 0);
    assert_int_equal(sq_redis_subscribe(sub, "chat"), 0); /* twice: a no-op */
    assert_int_equal(sq_redis_subscribe(sub, "other"), 0);
    assert_int_equal(sq_redis_unsubscribe(sub, "other"), 0);
    assert_int_equal(sq_redis_unsubscribe(sub, "other"), -ENOENT);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 1);
        execl("/proc/self/exe", "test_redis", "sub-child", port, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    /* both subscribers are in */
    WAIT_FOR(numsub(pub, "chat") == 2, 20);
    assert_int_equal(numsub(pub, "chat"), 2);
    assert_true(sq_redis_sub_connected(sub));

    double t0 = sq_test_now();
    for (int base = 0; base < NMSG; base += 1000) {
        sq_future *fs[1000];
        void *vals[1000];
        for (int i = 0; i < 1000; i++) {
            char m[32];
            int n = snprintf(m, sizeof m, "m%d", base + i);
            m[n + 1] = '!';
            fs[i] = sq_redis_cmd_future(pub, "PUBLISH chat %b", m, (size_t)n + 2);
        }
        assert_int_equal(sq_gather(fs, 1000, vals, NULL), 0);
        for (int i = 0; i < 1000; i++) {
            sq_redis_reply *rep = vals[i];
            assert_int_equal(rep->integer, 2); /* two receivers each time */
            sq_redis_reply_free(rep);
        }
    }
    WAIT_FOR(st.count >= NMSG, 30);
    double took = sq_test_now() - t0;
    assert_int_equal(st.count, NMSG);
    assert_int_equal(st.bad, 0);
    int status = -1;
    WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 60);
    c->child_status = status;
    ssize_t n = read(pfd[0], c->child_out, sizeof c->child_out - 1);
    c->child_out[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    print_message("pub/sub: %d messages to 2 subscribers in 2 processes in %.1f ms; %s", NMSG,
                  took * 1e3, c->child_out);
    sq_redis_sub_free(sub);
    sq_redis_free(pub);
    return NULL;
}

static void test_pubsub_two_processes(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    ps_ctx c = {.s = &s, .child_status = -1};
    run(pubsub_coro, &c, 120);
    srv_stop(&s);
    assert_true(WIFEXITED(c.child_status));
    assert_int_equal(WEXITSTATUS(c.child_status), 0);
}

/* --- reconnect ------------------------------------------------------------------------------ */

typedef struct states {
    int ups, downs;
    sq_redis **free_on_down; /* free this client from inside on_state(false) */
} states;

static void on_state(sq_redis *r, bool up, void *arg)
{
    states *st = arg;
    if (up)
        st->ups++;
    else
        st->downs++;
    if (!up && st->free_on_down && *st->free_on_down == r) {
        sq_redis_free(r);
        *st->free_on_down = NULL;
    }
}

static void *reconnect_coro(void *arg)
{
    redis_srv *s = arg;
    sq_loop *loop = sq_loop_current();
    states cs = {0}, ss = {0}, fs = {0};
    sq_redis_options o = {.on_state = on_state, .state_arg = &cs};
    sq_redis *r = connect_ok(url_of(s, NULL), &o);
    sq_redis_options so = {.on_state = on_state, .state_arg = &ss};
    sub_state msgs = {.target = -1};
    int e;
    sq_redis_sub *sub = sq_redis_sub_new(loop, url_of(s, NULL), &so, on_msg, &msgs, &e);
    assert_non_null(sub);
    assert_int_equal(sq_redis_subscribe(sub, "chat"), 0);
    /* a client that frees itself when the connection drops */
    sq_redis *selfish = NULL;
    sq_redis_options fo = {.on_state = on_state, .state_arg = &fs};
    fs.free_on_down = &selfish;
    selfish = connect_ok(url_of(s, NULL), &fo);
    WAIT_FOR(sq_redis_sub_connected(sub), 5);
    assert_true(sq_redis_sub_connected(sub));
    assert_int_equal(cs.ups, 1);
    assert_int_equal(ss.ups, 1);

    char m[8] = "m0\0!";
    expect_int(ok(r, sq_redis_cmd(r, &e, "PUBLISH chat %b", m, (size_t)4), &e), 1);
    WAIT_FOR(msgs.count == 1, 5);
    assert_int_equal(msgs.count, 1);

    /* the server dies with commands pending */
    sq_future *pending = sq_redis_cmd_future(r, "BLPOP nothing 0");
    sq_sleep(0.05);
    assert_false(sq_future_done(pending));
    srv_kill(s, SIGKILL);
    int64_t st = sq_await(pending, NULL);
    assert_true(st < 0);
    assert_true(st != -ENOTCONN);
    print_message("pending command after SIGKILL: %s\n", sq_strerror((int)st));
    WAIT_FOR(cs.downs == 1 && ss.downs == 1 && fs.downs == 1, 5);
    assert_int_equal(cs.downs, 1);
    assert_int_equal(ss.downs, 1);
    assert_int_equal(fs.downs, 1);
    assert_null(selfish); /* freed itself in on_state */
    assert_false(sq_redis_connected(r));
    assert_false(sq_redis_sub_connected(sub));
    /* commands fail fast while down */
    sq_future *f = sq_redis_cmd_future(r, "PING");
    assert_true(sq_future_done(f));
    assert_int_equal(sq_future_status(f), -ENOTCONN);
    sq_future_release(f);
    sq_redis_reply *rep = sq_redis_cmd(r, &e, "PING");
    assert_null(rep);
    assert_int_equal(e, -ENOTCONN);

    /* back on the same port: both reconnect, the subscriber re-subscribes */
    sq_sleep(0.5); /* let the backoff grow a little */
    double t0 = sq_test_now();
    srv_spawn(s);
    WAIT_FOR(cs.ups == 2 && ss.ups == 2, 10);
    double took = sq_test_now() - t0;
    print_message("reconnected and re-subscribed %.0f ms after the restart\n", took * 1e3);
    assert_int_equal(cs.ups, 2);
    assert_int_equal(ss.ups, 2);
    assert_true(took < 5);
    assert_true(sq_redis_connected(r));
    m[1] = '1';
    expect_int(ok(r, sq_redis_cmd(r, &e, "PUBLISH chat %b", m, (size_t)4), &e), 1);
    WAIT_FOR(msgs.count == 2, 5);
    assert_int_equal(msgs.count, 2);
    assert_int_equal(msgs.bad, 0);
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET after restart"), &e), SQ_REDIS_REPLY_STATUS, "OK");

    /* down again, and freed during the reconnect backoff */
    srv_kill(s, SIGKILL);
    WAIT_FOR(cs.downs == 2 && ss.downs == 2, 5);
    assert_int_equal(cs.downs, 2);
    sq_sleep(0.3);
    sq_redis_free(r);
    sq_redis_sub_free(sub);
    sq_sleep(0.3);
    assert_int_equal(cs.ups, 2); /* no callback after free */
    assert_int_equal(ss.ups, 2);
    return NULL;
}

static void test_reconnect(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(reconnect_coro, &s, 60);
    srv_stop(&s);
}

/* --- freeing early, every way ---------------------------------------------------------------- */

static void *early_free_coro(void *arg)
{
    redis_srv *s = arg;
    sq_loop *loop = sq_loop_current();
    int e;
    /* a connect future dropped while connecting: the client is freed with it */
    sq_future_release(sq_redis_connect_future(loop, url_of(s, NULL), NULL));
    /* cancelled while connecting */
    sq_future *f = sq_redis_connect_future(loop, url_of(s, NULL), NULL);
    assert_int_equal(sq_future_cancel(f), 0);
    sq_future_release(f);
    /* a connect timing out through sq_with_timeout (a too-short limit cancels it) */
    assert_int_equal(
        sq_await(sq_with_timeout(sq_redis_connect_future(loop, url_of(s, NULL), NULL), 0.000001),
                 NULL),
        -ETIMEDOUT);
    /* freed with commands pending: a blocked one, some still unsent */
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    sq_future *blocked = sq_redis_cmd_future(r, "BLPOP nothing 0");
    sq_sleep(0.05);
    sq_future *unsent[10];
    for (int i = 0; i < 10; i++) unsent[i] = sq_redis_cmd_future(r, "GET x");
    sq_redis_free(r);
    assert_int_equal(sq_await(blocked, NULL), -ECANCELED);
    for (int i = 0; i < 10; i++) assert_int_equal(sq_await(unsent[i], NULL), -ECANCELED);
    /* freed from a command's done callback, with more pending behind it */
    r = connect_ok(url_of(s, NULL), NULL);
    sq_future *first = sq_redis_cmd_future(r, "PING");
    sq_future *second = sq_redis_cmd_future(r, "PING");
    assert_int_equal(sq_await(sq_future_retain(first), NULL), 0);
    sq_redis_free(r); /* after the first reply; the second may still be on its way */
    int64_t st2 = sq_await(second, NULL);
    assert_true(st2 == 0 || st2 == -ECANCELED);
    sq_future_release(first);
    /* a subscriber freed from its message callback, and one freed before it connected */
    sub_state ms = {.target = 3};
    sq_redis_sub *sub = sq_redis_sub_new(loop, url_of(s, NULL), NULL, on_msg, &ms, &e);
    ms.free_at = sub;
    assert_int_equal(sq_redis_subscribe(sub, "chat"), 0);
    sq_redis_sub_free(sq_redis_sub_new(loop, url_of(s, NULL), NULL, on_msg, &ms, &e));
    r = connect_ok(url_of(s, NULL), NULL);
    WAIT_FOR(numsub(r, "chat") == 1, 5);
    for (int i = 0; i < 5; i++) {
        char m[8];
        int n = snprintf(m, sizeof m, "m%d", i);
        m[n + 1] = '!';
        sq_future_release(sq_redis_cmd_future(r, "PUBLISH chat %b", m, (size_t)n + 2));
    }
    WAIT_FOR(ms.free_at == NULL, 5);
    sq_sleep(0.1);
    assert_int_equal(ms.count, 3); /* nothing after the free */
    assert_int_equal(ms.bad, 0);
    /* a subscriber that can never connect, freed during its backoff */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
    sub = sq_redis_sub_new(loop, url, NULL, on_msg, &ms, &e);
    assert_non_null(sub);
    sq_sleep(0.35);
    assert_false(sq_redis_sub_connected(sub));
    sq_redis_sub_free(sub);
    assert_null(sq_redis_sub_new(loop, "nope://", NULL, on_msg, &ms, &e));
    assert_int_equal(e, -EINVAL);
    sq_redis_free(r);
    sq_sleep(0.05);
    return NULL;
}

static void test_early_free(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_ERROR);
    run(early_free_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* The connect future's done-callback takes the client and frees it: on_state is not called
 * after the free (redis.h), neither up nor down. */
static int free_ups, free_downs;

static void count_state(sq_redis *r, bool up, void *arg)
{
    up ? free_ups++ : free_downs++;
}

static void free_on_connect(sq_future *f, void *arg)
{
    sq_redis_free(sq_future_take_value(f));
}

static void test_free_in_connect_callback(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_loop *loop = sq_loop_new(NULL);
    free_ups = free_downs = 0;
    sq_future *f = sq_redis_connect_future(loop, url_of(&s, NULL),
                                           &(sq_redis_options){.on_state = count_state});
    assert_non_null(f);
    sq_future_add_done_callback(f, free_on_connect, NULL);
    for (int i = 0; i < 500 && !sq_future_done(f); i++) sq_loop_run_once(loop, true);
    assert_true(sq_future_done(f));
    assert_int_equal(sq_future_status(f), 0);
    for (int i = 0; i < 20; i++) sq_loop_run_once(loop, false);
    assert_int_equal(free_ups, 0);
    assert_int_equal(free_downs, 0);
    sq_future_release(f);
    sq_loop_free(loop);
    srv_stop(&s);
}

/* A command sent from the connect future's done callback (the callback style): the client
 * is up by then (it answered -ENOTCONN). */
static sq_future *cb_cmd;

static void cmd_on_connect(sq_future *f, void *arg)
{
    if (sq_future_status(f) < 0) return;
    *(sq_redis **)arg = sq_future_take_value(f);
    cb_cmd = sq_redis_cmd_future(*(sq_redis **)arg, "PING");
}

static void test_command_in_connect_callback(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_loop *loop = sq_loop_new(NULL);
    sq_redis *r = NULL;
    cb_cmd = NULL;
    sq_future *f = sq_redis_connect_future(loop, url_of(&s, NULL), NULL);
    sq_future_add_done_callback(f, cmd_on_connect, &r);
    for (int i = 0; i < 500 && !(cb_cmd && sq_future_done(cb_cmd)); i++)
        sq_loop_run_once(loop, true);
    assert_non_null(cb_cmd);
    int64_t st = sq_future_status(cb_cmd);
    sq_future_release(cb_cmd);
    sq_future_release(f);
    sq_redis_free(r);
    sq_loop_free(loop);
    srv_stop(&s);
    assert_int_equal(st, 0);
}

/* The coroutine form from the client's own callbacks (on_state, a command's done callback),
 * which run on the coroutine that reads the replies: it fails at once with -EDEADLK.  It used
 * to wait for a reply only that coroutine could read, and the client hung for good (every
 * later command timed out). */
static int own_err_state, own_err_done;

static void own_state(sq_redis *r, bool up, void *arg)
{
    if (up) sq_redis_reply_free(sq_redis_cmd(r, &own_err_state, "CLIENT SETNAME %s", "worker"));
}

static void own_done(sq_future *f, void *arg)
{
    sq_redis_reply_free(sq_redis_cmd(arg, &own_err_done, "PING"));
}

static void *own_callback_coro(void *arg)
{
    redis_srv *s = arg;
    own_err_state = own_err_done = 1;
    sq_redis *r = connect_ok(url_of(s, NULL), &(sq_redis_options){.on_state = own_state});
    sq_future *f = sq_redis_cmd_future(r, "PING");
    assert_int_equal(sq_future_add_done_callback(f, own_done, r), 0);
    assert_int_equal(sq_await(sq_with_timeout(f, 2), NULL), 0);
    void *v = NULL;
    assert_int_equal(sq_await(sq_with_timeout(sq_redis_cmd_future(r, "PING"), 2), &v), 0);
    expect_str(v, SQ_REDIS_REPLY_STATUS, "PONG");
    assert_int_equal(own_err_state, -EDEADLK);
    assert_int_equal(own_err_done, -EDEADLK);
    sq_redis_free(r);
    return NULL;
}

static void test_cmd_in_own_callback(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_OFF); /* the refusal is logged as an error */
    run(own_callback_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* A subscriber whose user may not listen on one of its channels (an ACL): the others are
 * subscribed, it comes up, and their messages arrive (one refused channel used to refuse
 * the whole SUBSCRIBE, and the subscriber never came up). */
static int acl_got;

static void acl_msg(sq_redis_sub *sub, const char *ch, size_t cl, const char *d, size_t l,
                    void *arg)
{
    acl_got++;
}

static void *acl_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    int e;
    sq_redis_reply *rep =
        sq_redis_cmd(r, &e, "ACL SETUSER limited on >pw ~* resetchannels &ok* +@all");
    assert_int_equal(e, 0);
    sq_redis_reply_free(rep);
    char u[128];
    snprintf(u, sizeof u, "redis://limited:pw@127.0.0.1:%d", s->port);
    sq_redis_sub *sub = sq_redis_sub_new(NULL, u, NULL, acl_msg, NULL, &e);
    assert_non_null(sub);
    sq_redis_subscribe(sub, "ok1");
    sq_redis_subscribe(sub, "secret");
    WAIT_FOR(sq_redis_sub_connected(sub), 5);
    assert_true(sq_redis_sub_connected(sub));
    for (int i = 0; i < 5; i++) sq_future_release(sq_redis_cmd_future(r, "PUBLISH ok1 m%d", i));
    WAIT_FOR(acl_got == 5, 5);
    assert_int_equal(acl_got, 5);
    sq_redis_sub_free(sub);
    sq_redis_free(r);
    return NULL;
}

static void test_subscribe_refused_channel(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    acl_got = 0;
    run(acl_coro, &s, 30);
    srv_stop(&s);
}

/* A loop freed while clients are connected, connecting and pending: nothing leaks. */
static void test_loop_freed_under_clients(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_loop *loop = sq_loop_new(NULL);
    sq_future *cf = sq_redis_connect_future(loop, url_of(&s, NULL), NULL);
    sq_loop_run_until(loop, cf);
    assert_int_equal(sq_future_status(cf), 0);
    sq_redis *r = sq_future_take_value(cf);
    sq_future_release(cf);
    sq_future *pending = sq_redis_cmd_future(r, "BLPOP nothing 0");
    sq_future *connecting = sq_redis_connect_future(loop, url_of(&s, NULL), NULL);
    sub_state ms = {0};
    int e;
    sq_redis_sub *sub = sq_redis_sub_new(loop, url_of(&s, NULL), NULL, on_msg, &ms, &e);
    sq_redis_subscribe(sub, "chat");
    for (int i = 0; i < 5; i++) sq_loop_run_once(loop, false);
    sq_redis_free(r);
    sq_redis_sub_free(sub);
    sq_future_release(pending);
    sq_future_release(connecting);
    sq_loop_free(loop);
    srv_stop(&s);
}

/* --- rediss:// ---------------------------------------------------------------------------- */

static const char *fixtures(void)
{
    static char dir[1024];
    const char *src = getenv("SQ_SOURCE_DIR"), *bld = getenv("SQ_BUILD_DIR");
    snprintf(dir, sizeof dir, "%s/tls-fixtures", bld ? bld : ".");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sh '%s/tests/tls/mkcerts.sh' '%s'", src ? src : "../..", dir);
    return system(cmd) == 0 ? dir : NULL;
}

static void *tls_coro(void *arg)
{
    redis_srv *s = arg;
    char url[128], ca[1100];
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/1", s->tls_port);
    snprintf(ca, sizeof ca, "%s/ca.pem", s->fixdir);
    int e;
    sq_tls_options to = {.ca_file = ca};
    sq_tls_context *ctx = sq_tls_client_context_new(&to, &e);
    assert_non_null(ctx);
    sq_redis_options o = {.tls = ctx};
    sq_redis *r = connect_ok(url, &o);
    sq_tls_context_free(ctx); /* the client keeps its own reference */
    assert_true(client_db_is(r, 1));
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET %s %s", "secure", "yes"), &e), SQ_REDIS_REPLY_STATUS,
               "OK");
    sq_redis_reply *rep = ok(r, sq_redis_cmd(r, &e, "CLIENT INFO"), &e);
    sq_redis_reply_free(rep);
    sq_redis_free(r);
    /* the system CA store does not know the test CA */
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, SQ_ETLS);
    return NULL;
}

static void test_tls(void **state)
{
    NEED_REDIS();
    const char *dir = fixtures();
    if (!dir) fail_msg("mkcerts.sh failed");
    redis_srv s;
    memset(&s, 0, sizeof s);
    snprintf(s.dir, sizeof s.dir, "/tmp/sq-redis-XXXXXX");
    assert_non_null(mkdtemp(s.dir));
    s.port = free_port();
    s.tls_port = free_port();
    s.fixdir = dir;
    srv_spawn(&s);
    sq_log_set_level(SQ_LOG_ERROR);
    run(tls_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* --- replies the parser refuses, big replies, a frozen server, long socket paths -------------- */

/* "return {{…{1}…}}" with `depth` tables: a reply of `depth` nested arrays. */
static const char *nested_script(int depth)
{
    static char buf[64];
    int n = snprintf(buf, sizeof buf, "return ");
    for (int i = 0; i < depth; i++) buf[n++] = '{';
    buf[n++] = '1';
    for (int i = 0; i < depth; i++) buf[n++] = '}';
    buf[n] = 0;
    return buf;
}

/* A reply nested deeper than hiredis's reader takes (Debian's 0.14 keeps a stack of 9 read
 * tasks: 8 nested arrays and their element; hiredis 1.x grows its stack): that command fails
 * with -EPROTO, so do the commands pipelined behind it, and the client reconnects (no hang,
 * no crash). */
static void *deep_coro(void *arg)
{
    redis_srv *s = arg;
    states cs = {0};
    sq_redis *r = connect_ok(
        url_of(s, NULL),
        &(sq_redis_options){.on_state = on_state, .state_arg = &cs, .reconnect_min = 0.05});
    int e;
    /* as deep as the reader goes */
    sq_redis_reply *top = ok(r, sq_redis_cmd(r, &e, "EVAL %s 0", nested_script(8)), &e);
    const sq_redis_reply *rep = top;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rep->type, SQ_REDIS_REPLY_ARRAY);
        assert_int_equal(rep->elements, 1);
        rep = rep->element[0];
    }
    assert_int_equal(rep->type, SQ_REDIS_REPLY_INTEGER);
    sq_redis_reply_free(top);
    /* one level deeper, with a command pipelined behind it */
    sq_future *deep = sq_redis_cmd_future(r, "EVAL %s 0", nested_script(9));
    sq_future *behind = sq_redis_cmd_future(r, "PING");
    void *v = NULL;
    int64_t st = sq_await(deep, &v);
    print_message("a reply 9 levels deep: %s\n", sq_strerror((int)st));
    if (st == 0) { /* a newer hiredis */
        sq_redis_reply_free(v);
        assert_int_equal(sq_await(behind, NULL), 0);
        sq_redis_free(r);
        return NULL;
    }
    assert_int_equal(st, -EPROTO);
    assert_true(sq_await(behind, NULL) < 0);
    WAIT_FOR(cs.ups == 2, 5);
    assert_int_equal(cs.downs, 1);
    assert_int_equal(cs.ups, 2);
    expect_str(ok(r, sq_redis_cmd(r, &e, "PING"), &e), SQ_REDIS_REPLY_STATUS, "PONG");
    sq_redis_free(r);
    return NULL;
}

static void test_deep_reply(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_ERROR);
    run(deep_coro, &s, 30);
    sq_log_set_level(SQ_LOG_INFO);
    srv_stop(&s);
}

/* A 32 MiB value written and read back in a bounded time.  (hiredis grows its buffers 1 MiB
 * at a time past the first MiB: with glibc's realloc (mremap) that stays linear, ~50 ms for
 * this GET in a release build; under ASan, whose realloc copies, it is quadratic, ~0.4 s
 * here and seconds for 128 MiB, which is why the value is not bigger.) */
static void *big_coro(void *arg)
{
    redis_srv *s = arg;
    sq_redis *r = connect_ok(url_of(s, NULL), NULL);
    size_t n = 32u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < 26; i++) big[i] = (char)('a' + i);
    for (size_t k = 26; k < n; k *= 2) memcpy(big + k, big, k < n - k ? k : n - k);
    int e;
    double t0 = sq_test_now();
    expect_str(ok(r, sq_redis_cmd(r, &e, "SET big %b", big, n), &e), SQ_REDIS_REPLY_STATUS, "OK");
    double t1 = sq_test_now();
    sq_redis_reply *rep = ok(r, sq_redis_cmd(r, &e, "GET big"), &e);
    double t2 = sq_test_now();
    print_message("SET of 32 MiB: %.0f ms, GET: %.0f ms\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    assert_int_equal(rep->type, SQ_REDIS_REPLY_STRING);
    assert_int_equal(rep->len, n);
    assert_memory_equal(rep->str, big, n);
    sq_redis_reply_free(rep);
    free(big);
    /* generous: sanitizers, a shared machine */
    assert_true(t2 - t1 < 5);
    sq_redis_free(r);
    return NULL;
}

static void test_big_reply(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    run(big_coro, &s, 60);
    srv_stop(&s);
}

/* A server that stops answering (SIGSTOP: the kernel keeps its connections open) with
 * socket_timeout set, in the options or in the URL: the pending commands fail with
 * -ETIMEDOUT, the connection is given up and made again once the server is back. */
static void *frozen_coro(void *arg)
{
    redis_srv *s = arg;
    states cs = {0}, us = {0};
    sq_redis_options o = {
        .socket_timeout = 0.3, .reconnect_min = 0.05, .on_state = on_state, .state_arg = &cs};
    sq_redis *r = connect_ok(url_of(s, NULL), &o);
    sq_redis_options uo = {.reconnect_min = 0.05, .on_state = on_state, .state_arg = &us};
    sq_redis *u = connect_ok(url_of(s, "?socket_timeout=0.3"), &uo);
    int e;
    expect_str(ok(r, sq_redis_cmd(r, &e, "PING"), &e), SQ_REDIS_REPLY_STATUS, "PONG");
    sq_sleep(0.5); /* idle longer than the timeout: nothing is awaited, nothing is reset */
    assert_int_equal(cs.downs, 0);
    expect_str(ok(u, sq_redis_cmd(u, &e, "PING"), &e), SQ_REDIS_REPLY_STATUS, "PONG");
    kill(s->pid, SIGSTOP);
    sq_future *f[3], *g = sq_redis_cmd_future(u, "PING");
    for (int i = 0; i < 3; i++) f[i] = sq_redis_cmd_future(r, "PING");
    double t0 = sq_test_now();
    for (int i = 0; i < 3; i++) assert_int_equal(sq_await(f[i], NULL), -ETIMEDOUT);
    assert_int_equal(sq_await(g, NULL), -ETIMEDOUT);
    double took = sq_test_now() - t0;
    print_message("commands to a frozen server failed after %.0f ms\n", took * 1e3);
    assert_true(took >= 0.2 && took < 3);
    /* the silent connection is given up, not kept with commands piling up on it */
    WAIT_FOR(cs.downs == 1 && us.downs == 1, 3);
    assert_int_equal(cs.downs, 1);
    assert_int_equal(us.downs, 1);
    kill(s->pid, SIGCONT);
    WAIT_FOR(cs.ups == 2 && us.ups == 2, 10);
    assert_int_equal(cs.ups, 2);
    assert_int_equal(us.ups, 2);
    expect_str(ok(r, sq_redis_cmd(r, &e, "PING"), &e), SQ_REDIS_REPLY_STATUS, "PONG");
    expect_str(ok(u, sq_redis_cmd(u, &e, "PING"), &e), SQ_REDIS_REPLY_STATUS, "PONG");
    sq_redis_free(r);
    sq_redis_free(u);
    /* a bad timeout in the URL is a bad URL */
    assert_null(sq_redis_connect(url_of(s, "?socket_timeout=soon"), NULL, &e));
    assert_int_equal(e, -EINVAL);
    assert_null(sq_redis_connect(url_of(s, "?connect_timeout=-1"), NULL, &e));
    assert_int_equal(e, -EINVAL);
    return NULL;
}

static void test_frozen_server(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_ERROR);
    run(frozen_coro, &s, 60);
    sq_log_set_level(SQ_LOG_INFO);
    kill(s.pid, SIGCONT);
    srv_stop(&s);
}

/* How many subscriber connections the server saw PING last (CLIENT LIST's cmd=). */
static int pinging_subscribers(sq_redis *r)
{
    int e, n = 0;
    sq_redis_reply *rep = ok(r, sq_redis_cmd(r, &e, "CLIENT LIST TYPE pubsub"), &e);
    for (const char *p = rep->str; (p = strstr(p, " cmd=ping")); p++) n++;
    sq_redis_reply_free(rep);
    return n;
}

/* Subscribers with health_check_interval (in the options, or in the URL): while the server
 * is healthy they PING when idle, their callbacks see only messages (never the pongs) and
 * they stay up; once the server freezes (SIGSTOP: the kernel keeps the connections open, so
 * without the check nothing is ever noticed) they give the connection up within a bound,
 * and after SIGCONT they reconnect, subscribe again and receive what is published. */
static void *health_coro(void *arg)
{
    redis_srv *s = arg;
    sq_loop *loop = sq_loop_current();
    states ss = {0}, us = {0};
    sub_state am = {.target = -1}, bm = {.target = -1};
    int e;
    sq_redis_options so = {.health_check_interval = 0.2,
                           .reconnect_min = 0.05,
                           .on_state = on_state,
                           .state_arg = &ss};
    sq_redis_sub *a = sq_redis_sub_new(loop, url_of(s, NULL), &so, on_msg, &am, &e);
    assert_non_null(a);
    sq_redis_options uo = {.reconnect_min = 0.05, .on_state = on_state, .state_arg = &us};
    sq_redis_sub *b =
        sq_redis_sub_new(loop, url_of(s, "?health_check_interval=0.2"), &uo, on_msg, &bm, &e);
    assert_non_null(b);
    assert_int_equal(sq_redis_subscribe(a, "chat"), 0);
    assert_int_equal(sq_redis_subscribe(b, "chat"), 0);
    sq_redis *pub = connect_ok(url_of(s, NULL), NULL);
    WAIT_FOR(ss.ups == 1 && us.ups == 1, 5);
    assert_int_equal(ss.ups, 1);
    assert_int_equal(us.ups, 1);

    /* healthy and idle for several intervals: PINGs go out, the pongs reach no callback */
    sq_sleep(1.0);
    assert_int_equal(pinging_subscribers(pub), 2);
    assert_int_equal(ss.downs + us.downs, 0);
    char m[8] = "m0\0!";
    expect_int(ok(pub, sq_redis_cmd(pub, &e, "PUBLISH chat %b", m, (size_t)4), &e), 2);
    WAIT_FOR(am.count == 1 && bm.count == 1, 5);
    assert_int_equal(am.count, 1);
    assert_int_equal(bm.count, 1);
    assert_int_equal(am.bad + bm.bad, 0); /* a pong delivered would be a bad message */

    /* frozen: noticed within interval + bound (0.4 s), well under 2 s */
    kill(s->pid, SIGSTOP);
    double t0 = sq_test_now();
    WAIT_FOR(ss.downs == 1 && us.downs == 1, 5);
    double took = sq_test_now() - t0;
    print_message("a frozen server noticed by idle subscribers after %.0f ms\n", took * 1e3);
    assert_int_equal(ss.downs, 1);
    assert_int_equal(us.downs, 1);
    assert_true(took < 2);
    assert_false(sq_redis_sub_connected(a));

    /* back: both reconnect, subscribe again, and receive what is published next */
    kill(s->pid, SIGCONT);
    WAIT_FOR(ss.ups == 2 && us.ups == 2, 10);
    assert_int_equal(ss.ups, 2);
    assert_int_equal(us.ups, 2);
    m[1] = '1';
    expect_int(ok(pub, sq_redis_cmd(pub, &e, "PUBLISH chat %b", m, (size_t)4), &e), 2);
    WAIT_FOR(am.count == 2 && bm.count == 2, 5);
    assert_int_equal(am.count, 2);
    assert_int_equal(bm.count, 2);
    assert_int_equal(am.bad + bm.bad, 0);
    assert_int_equal(ss.downs + us.downs, 2); /* and stays up, still checked */
    sq_sleep(0.5);
    assert_int_equal(ss.downs + us.downs, 2);
    sq_redis_sub_free(a);
    sq_redis_sub_free(b);
    sq_redis_free(pub);
    /* a bad interval in the URL is a bad URL */
    assert_null(
        sq_redis_sub_new(loop, url_of(s, "?health_check_interval=-1"), NULL, on_msg, &am, &e));
    assert_int_equal(e, -EINVAL);
    return NULL;
}

static void test_subscriber_health_check(void **state)
{
    NEED_REDIS();
    redis_srv s;
    srv_start(&s, false, NULL);
    sq_log_set_level(SQ_LOG_ERROR);
    run(health_coro, &s, 60);
    sq_log_set_level(SQ_LOG_INFO);
    kill(s.pid, SIGCONT); /* (if a check failed while it was stopped) */
    srv_stop(&s);
}

/* A unix socket path longer than sockaddr_un takes is refused at once, by the subscriber
 * (which otherwise retries in the background forever) as by the command client. */
static void *long_path_coro(void *arg)
{
    (void)arg;
    char url[400] = "unix:///tmp/";
    size_t n = strlen(url);
    memset(url + n, 'x', 300);
    url[n + 300] = 0;
    sub_state ms = {0};
    int e = 0;
    assert_null(sq_redis_sub_new(sq_loop_current(), url, NULL, on_msg, &ms, &e));
    assert_int_equal(e, -ENAMETOOLONG);
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -ENAMETOOLONG);
    /* sun_path holds 108 bytes with the NUL: "/tmp/" and 103 more is one too many */
    url[n + 103] = 0;
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -ENAMETOOLONG);
    url[n + 102] = 0; /* fits: tried, and not there */
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -ENOENT);
    /* a %00 would cut the path (or a password) short, making another name of it: a bad
     * URL, however long the rest */
    memcpy(url + n, "sq-nul%00", 9);
    assert_null(sq_redis_connect(url, NULL, &e));
    assert_int_equal(e, -EINVAL);
    assert_null(sq_redis_sub_new(sq_loop_current(), url, NULL, on_msg, &ms, &e));
    assert_int_equal(e, -EINVAL);
    assert_null(sq_redis_connect("redis://:pass%00word@127.0.0.1:1/", NULL, &e));
    assert_int_equal(e, -EINVAL);
    return NULL;
}

static void test_unix_path_too_long(void **state)
{
    (void)state;
    sq_log_set_level(SQ_LOG_ERROR);
    run(long_path_coro, NULL, 10);
    sq_log_set_level(SQ_LOG_INFO);
}

/* The reconnect backoff starts again from reconnect_min after a successful connect: a long
 * outage grows it to reconnect_max, and the next drop must not wait that long.  The "server"
 * is a bare listener (a client without AUTH or SELECT sends nothing to connect). */
static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* Accept the client's connection (bounded wait). */
static int accept_one(int lfd)
{
    int c = -1;
    for (int i = 0; i < 500 && c < 0; i++)
        if ((c = accept(lfd, NULL, NULL)) < 0) sq_sleep(0.01);
    assert_true(c >= 0);
    return c;
}

static void *backoff_coro(void *arg)
{
    (void)arg;
    int port = free_port(), lfd = listen_on(port);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    states cs = {0};
    sq_redis *r = connect_ok(url, &(sq_redis_options){.reconnect_min = 0.02,
                                                      .reconnect_max = 0.64,
                                                      .on_state = on_state,
                                                      .state_arg = &cs});
    close(accept_one(lfd));
    close(lfd); /* a long outage: 0.02 + 0.04 + … reaches 0.64 */
    WAIT_FOR(cs.downs == 1, 5);
    sq_sleep(1.5);
    lfd = listen_on(port);
    WAIT_FOR(cs.ups == 2, 5);
    assert_int_equal(cs.ups, 2);
    /* connected: the next drop is retried after reconnect_min again, not 0.64 s */
    double t0 = sq_test_now();
    close(accept_one(lfd));
    WAIT_FOR(cs.ups == 3, 5);
    double took = sq_test_now() - t0;
    print_message("reconnected %.0f ms after a drop that followed a long outage\n", took * 1e3);
    assert_int_equal(cs.ups, 3);
    assert_true(took < 0.4);
    sq_redis_free(r);
    close(lfd);
    return NULL;
}

static void test_backoff_reset(void **state)
{
    (void)state;
    sq_log_set_level(SQ_LOG_ERROR);
    run(backoff_coro, NULL, 30);
    sq_log_set_level(SQ_LOG_INFO);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "sub-child") == 0) return sub_child(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_auth_select),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_pubsub_two_processes),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_early_free),
        cmocka_unit_test(test_free_in_connect_callback),
        cmocka_unit_test(test_command_in_connect_callback),
        cmocka_unit_test(test_cmd_in_own_callback),
        cmocka_unit_test(test_subscribe_refused_channel),
        cmocka_unit_test(test_loop_freed_under_clients),
        cmocka_unit_test(test_deep_reply),
        cmocka_unit_test(test_big_reply),
        cmocka_unit_test(test_frozen_server),
        cmocka_unit_test(test_subscriber_health_check),
        cmocka_unit_test(test_unix_path_too_long),
        cmocka_unit_test(test_backoff_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
