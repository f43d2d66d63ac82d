/* TLS on streams against Python's ssl module (a separate process) on both sides:
 *  - sq_stream_start_tls as a client: a Python plain TCP server reads "STARTTLS\n", answers
 *    "OK\n", wraps the socket server side and echoes; ALPN h2 (the Python server's choice);
 *  - sq_stream_start_tls as a server: a plain sq_tcp_listen handler reads the line, answers,
 *    starts TLS with a server context; Python wraps as a client verifying the CA and the
 *    host name (and sees CN a.test), ALPN http/1.1 (squall's list), a clean close_notify
 *    exchange at the end;
 *  - sq_tcp_connect_tls to a Python ssl echo server by name (SNI "localhost" sent, ALPN h2)
 *    and by IP address (no SNI, no ALPN offered: none chosen);
 *  - a TLS TCP server (sq_tcp_options.tls) with a Python ssl client: ALPN by the server's
 *    preference (h2 over http/1.1), plain bytes and a silent client are dropped without the
 *    handler running (the silent one after tls_handshake_timeout), the server keeps serving.
 * Every exchange: 50 lines and 1 MiB of random bytes echoed through the cipher.
 * Also: 3 MiB read in odd sizes (1, 7, around a record, 200000, up to a delimiter) arrive
 * intact and end with a clean EOF; data and close_notify read together from a peer that
 * then waits for our close_notify (Python's unwrap) end the read at once (it used to wait
 * until the peer gave up); and, in process, start_tls with bytes buffered (-EBUSY, the
 * stream stays plain and keeps them), with a peer that sends no TLS (SQ_ETLS "not a TLS
 * handshake"), and cut short by sq_with_timeout (the stream is closed).
 * Skipped without /usr/bin/python3 (the in-process cases still run). */
#include "tlstest.h"

static const char *py_peer =
    "import os, socket, ssl, sys, time\n"
    "mode, d = sys.argv[1], sys.argv[2]\n"
    "def fx(n): return os.path.join(d, n)\n"
    "def out(*a): print(*a, flush=True)\n"
    "def server_ctx(alpn):\n"
    "    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "    c.load_cert_chain(fx('server.pem'), fx('server.key'))\n"
    "    c.set_alpn_protocols(alpn)\n"
    "    return c\n"
    "def client_ctx(alpn):\n"
    "    c = ssl.create_default_context(cafile=fx('ca.pem'))\n" /* CA and host name checked */
    "    c.set_alpn_protocols(alpn)\n"
    "    return c\n"
    "def readline(s):\n" /* a byte at a time: nothing past the line leaves the kernel */
    "    b = b''\n"
    "    while not b.endswith(b'\\n'):\n"
    "        c = s.recv(1)\n"
    "        if not c: break\n"
    "        b += c\n"
    "    return b\n"
    "def recv_exact(t, n):\n"
    "    b = bytearray()\n"
    "    while len(b) < n:\n"
    "        c = t.recv(min(65536, n - len(b)))\n"
    "        if not c: raise EOFError('closed after %d of %d bytes' % (len(b), n))\n"
    "        b += c\n"
    "    return bytes(b)\n"
    "def echo_until_eof(t):\n"
    "    n = 0\n"
    "    while True:\n"
    "        b = t.recv(65536)\n"
    "        if not b: return n\n"
    "        t.sendall(b)\n"
    "        n += len(b)\n"
    "def exchange(t):\n" /* against a squall echo: lines, then 1 MiB in 64 KiB steps */
    "    n = 0\n"
    "    for i in range(50):\n"
    "        m = b'line %d\\n' % i\n"
    "        t.sendall(m)\n"
    "        assert recv_exact(t, len(m)) == m\n"
    "        n += len(m)\n"
    "    big = os.urandom(1 << 20)\n"
    "    for i in range(0, len(big), 65536):\n"
    "        t.sendall(big[i:i + 65536])\n"
    "        assert recv_exact(t, 65536) == big[i:i + 65536]\n"
    "    return n + len(big)\n"
    "def cn(t): return dict(x[0] for x in t.getpeercert()['subject'])['commonName']\n"
    "def listen():\n"
    "    s = socket.create_server(('127.0.0.1', 0))\n"
    "    s.settimeout(20)\n"
    "    out('port', s.getsockname()[1])\n"
    "    return s\n"
    "def connect(): return socket.create_connection(('127.0.0.1', int(sys.argv[3])), timeout=20)\n"
    "if mode == 'starttls-server':\n"
    "    ls = listen()\n"
    "    c, _ = ls.accept()\n"
    "    c.settimeout(20)\n"
    "    line = readline(c)\n"
    "    if line != b'STARTTLS\\n': out('bad', line); sys.exit(1)\n"
    "    c.sendall(b'OK\\n')\n"
    "    t = server_ctx(['h2', 'http/1.1']).wrap_socket(c, server_side=True)\n"
    "    out('tls', t.version(), t.selected_alpn_protocol())\n"
    "    out('echoed', echo_until_eof(t))\n"
    "elif mode == 'starttls-client':\n"
    "    c = connect()\n"
    "    c.sendall(b'STARTTLS\\n')\n"
    "    line = readline(c)\n"
    "    if line != b'OK\\n': out('bad', line); sys.exit(1)\n"
    "    t = client_ctx(['h2', 'http/1.1']).wrap_socket(c, server_hostname='localhost')\n"
    "    out('tls', t.version(), t.selected_alpn_protocol(), cn(t))\n"
    "    n = exchange(t)\n"
    "    t.unwrap()\n" /* close_notify both ways */
    "    out('done', n)\n"
    "elif mode == 'echo-server':\n"
    "    ls = listen()\n"
    "    ctx = server_ctx(['h2', 'http/1.1'])\n"
    "    names = []\n"
    "    ctx.sni_callback = lambda s, name, c: names.append(name)\n"
    "    for i in range(int(sys.argv[3])):\n"
    "        c, _ = ls.accept()\n"
    "        c.settimeout(20)\n"
    "        names.clear()\n"
    "        t = ctx.wrap_socket(c, server_side=True)\n"
    "        out('conn', t.version(), t.selected_alpn_protocol(), names[0] if names else None)\n"
    "        out('echoed', echo_until_eof(t))\n"
    "        t.close()\n"
    "elif mode == 'blast':\n" /* one connection: N pattern bytes in one sendall, then close */
    "    ls = listen()\n"
    "    c, _ = ls.accept()\n"
    "    c.settimeout(20)\n"
    "    t = server_ctx(['http/1.1']).wrap_socket(c, server_side=True)\n"
    "    n = int(sys.argv[3])\n"
    "    t.sendall(bytes(i % 251 for i in range(n)))\n"
    "    t.unwrap()\n"
    "    out('sent', n)\n"
    "elif mode == 'close-notify':\n" /* data and close_notify, then wait for squall's */
    "    ls = listen()\n"
    "    c, _ = ls.accept()\n"
    "    c.settimeout(10)\n"
    "    t = server_ctx(['http/1.1']).wrap_socket(c, server_side=True)\n"
    "    t.sendall(b'last words\\n')\n"
    "    t0 = time.monotonic()\n"
    "    t.unwrap()\n"
    "    out('unwrapped', '%.2f' % (time.monotonic() - t0))\n"
    "elif mode == 'tls-client':\n"
    "    r = connect()\n"
    "    r.sendall(b'hello in clear text\\n')\n"
    "    try: got = r.recv(100)\n"
    "    except ConnectionResetError: got = b''\n"
    "    out('plain', len(got))\n"
    "    r.close()\n"
    "    r = connect()\n"
    "    t0 = time.monotonic()\n"
    "    try: got = r.recv(100)\n"
    "    except ConnectionResetError: got = b''\n"
    "    out('silent', len(got), '%.2f' % (time.monotonic() - t0))\n"
    "    r.close()\n"
    "    t = client_ctx(['http/1.1', 'h2']).wrap_socket(connect(), server_hostname='localhost')\n"
    "    out('tls', t.version(), t.selected_alpn_protocol(), cn(t))\n"
    "    n = exchange(t)\n"
    "    t.unwrap()\n"
    "    out('done', n)\n";

/* bytes one exchange moves each way: "line 0\n".."line 49\n", then 1 MiB */
#define EXCHANGED (10 * 7 + 40 * 8 + (1 << 20))

static bool have_python;

static int setup(void **state)
{
    have_python = have_python_module("ssl");
    return tls_fixtures_setup(state);
}

static void skip_without_python(void)
{
    if (!have_python) {
        fprintf(stderr, "/usr/bin/python3 with ssl not available: skipped\n");
        skip();
    }
}

static sq_tls_context *client_ctx(const char *const *alpn, size_t n_alpn)
{
    sq_tls_options o = {.ca_file = fx("ca.pem"), .alpn = alpn, .n_alpn = n_alpn};
    int err = 0;
    sq_tls_context *c = sq_tls_client_context_new(&o, &err);
    if (!c) fail_msg("client context: %s (%s)", sq_strerror(err), sq_tls_last_error());
    return c;
}

static sq_tls_context *server_ctx(const char *const *alpn, size_t n_alpn)
{
    sq_tls_options o = {.cert_file = fx("server.pem"), .key_file = fx("server.key"),
                        .alpn = alpn, .n_alpn = n_alpn};
    int err = 0;
    sq_tls_context *c = sq_tls_server_context_new(&o, &err);
    if (!c) fail_msg("server context: %s (%s)", sq_strerror(err), sq_tls_last_error());
    return c;
}

/* The next line from the peer, which must start with `prefix`. */
static const char *expect_line(peer *p, const char *prefix)
{
    static char line[512];
    ssize_t n = peer_line(p, line, sizeof line, 20);
    if (n < 0) fail_msg("python peer: no line (%s) while waiting for '%s'", sq_strerror((int)n), prefix);
    fprintf(stderr, "python: %s\n", line);
    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("python peer said '%s', expected '%s…'", line, prefix);
    return line;
}

static bool alpn_is(sq_stream *s, const char *want)
{
    size_t len = 0;
    const char *p = sq_stream_alpn(s, &len);
    if (!want) return p == NULL;
    return p && len == strlen(want) && memcmp(p, want, len) == 0;
}

/* Client side of an echo through squall: 50 lines, then 1 MiB of random bytes. */
static void client_exchange(sq_stream *s)
{
    for (int i = 0; i < 50; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "line %d\n", i);
        assert_int_equal(sq_stream_write(s, m, (size_t)n), 0);
        const char *d;
        assert_int_equal(sq_stream_read_until(s, "\n", 1, 0, &d), n);
        assert_memory_equal(d, m, (size_t)n);
    }
    size_t big = 1u << 20;
    unsigned char *buf = malloc(big);
    assert_non_null(buf);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < big; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
    assert_int_equal(sq_stream_write(s, buf, big), 0);
    const char *d;
    assert_int_equal(sq_stream_read_bytes(s, big, false, &d), (ssize_t)big);
    assert_memory_equal(d, buf, big);
    free(buf);
}

/* --- A1: squall is the STARTTLS client ------------------------------------------------------ */

static void *starttls_client_coro(void *arg)
{
    (void)arg;
    peer p;
    assert_int_equal(peer_python(&p, py_peer, "starttls-server", fx(""), NULL), 0);
    int port = atoi(expect_line(&p, "port ") + 5);
    int err = 0;
    sq_stream *s = sq_tcp_connect("127.0.0.1", port, 10, &err);
    assert_non_null(s);
    assert_false(sq_stream_is_tls(s));
    assert_null(sq_stream_alpn(s, NULL));
    assert_int_equal(sq_stream_write(s, "STARTTLS\n", 9), 0);
    const char *d;
    assert_int_equal(sq_stream_read_until(s, "\n", 1, 0, &d), 3);
    assert_memory_equal(d, "OK\n", 3);

    static const char *const alpn[] = {"http/1.1", "h2"};
    sq_tls_context *ctx = client_ctx(alpn, 2);
    int r = sq_stream_start_tls(s, ctx, "localhost");
    if (r < 0) fail_msg("start_tls: %s (%s)", sq_strerror(r), sq_tls_last_error());
    sq_tls_context_free(ctx); /* the stream keeps its reference */
    assert_true(sq_stream_is_tls(s));
    assert_true(alpn_is(s, "h2")); /* the Python server's preference */
    assert_int_equal(sq_stream_start_tls(s, ctx, "localhost"), -EALREADY);
    const char *line = expect_line(&p, "tls ");
    assert_non_null(strstr(line, "TLSv1.3 h2"));

    client_exchange(s);
    sq_stream_free(s); /* close_notify: the Python echo sees EOF */
    line = expect_line(&p, "echoed ");
    assert_int_equal(atol(line + 7), EXCHANGED);
    int st = peer_finish(&p, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

static void test_starttls_client(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, starttls_client_coro, NULL, 25);
    sq_loop_free(loop);
}

/* --- A2: squall is the STARTTLS server; A4: a TLS TCP server -------------------------------- */

typedef struct srv_state {
    sq_tls_context *ctx; /* start_tls with this (STARTTLS) or NULL (the server does TLS) */
    int handlers, done;
    int tls_result;
    bool is_tls;
    char alpn[32];
    long echoed;
    long end; /* the read result that ended the echo */
} srv_state;

static void echo_rest(sq_stream *s, srv_state *st)
{
    const char *d;
    ssize_t n;
    while ((n = sq_stream_read_bytes(s, 65536, true, &d)) > 0) {
        if (sq_stream_write(s, d, (size_t)n) < 0) break;
        st->echoed += n;
    }
    st->end = (long)n;
}

static void note_tls(sq_stream *s, srv_state *st)
{
    st->is_tls = sq_stream_is_tls(s);
    size_t len = 0;
    const char *a = sq_stream_alpn(s, &len);
    snprintf(st->alpn, sizeof st->alpn, "%.*s", a ? (int)len : 4, a ? a : "none");
}

static void starttls_handler(sq_stream *s, const struct sockaddr *peer_addr, void *arg)
{
    (void)peer_addr;
    srv_state *st = arg;
    st->handlers++;
    const char *d;
    ssize_t n = sq_stream_read_until(s, "\n", 1, 64, &d);
    if (n == 9 && memcmp(d, "STARTTLS\n", 9) == 0 && sq_stream_write(s, "OK\n", 3) == 0 &&
        sq_stream_drain(s) == 0) {
        st->tls_result = sq_stream_start_tls(s, st->ctx, NULL);
        if (st->tls_result < 0) fprintf(stderr, "server start_tls: %s\n", sq_tls_last_error());
        note_tls(s, st);
        if (st->tls_result == 0) echo_rest(s, st);
    } else {
        st->tls_result = -1000;
    }
    st->done++;
}

static void wait_done(sq_loop *loop, srv_state *st, int n)
{
    (void)loop;
    double t0 = sq_test_now();
    while (st->done < n && sq_test_now() - t0 < 10) sq_sleep(0.01);
    assert_int_equal(st->done, n);
}

static void *starttls_server_coro(void *arg)
{
    srv_state *st = arg;
    int err = 0;
    sq_tcp_server *srv = sq_tcp_listen(sq_loop_current(), "127.0.0.1", 0, NULL, starttls_handler,
                                       st, &err);
    assert_non_null(srv);
    char port[16];
    snprintf(port, sizeof port, "%d", sq_tcp_server_port(srv));
    peer p;
    assert_int_equal(peer_python(&p, py_peer, "starttls-client", fx(""), port, NULL), 0);
    const char *line = expect_line(&p, "tls ");
    assert_string_equal(line, "tls TLSv1.3 http/1.1 a.test");
    line = expect_line(&p, "done ");
    assert_int_equal(atol(line + 5), EXCHANGED);
    int pst = peer_finish(&p, 10);
    assert_true(WIFEXITED(pst) && WEXITSTATUS(pst) == 0);
    wait_done(sq_loop_current(), st, 1);
    sq_tcp_server_close(srv);
    return NULL;
}

static void test_starttls_server(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    static const char *const alpn[] = {"http/1.1"};
    srv_state st = {.ctx = server_ctx(alpn, 1)};
    sq_test_run_coro(loop, starttls_server_coro, &st, 25);
    assert_int_equal(st.handlers, 1);
    assert_int_equal(st.tls_result, 0);
    assert_true(st.is_tls);
    assert_string_equal(st.alpn, "http/1.1");
    assert_int_equal(st.echoed, EXCHANGED);
    assert_int_equal(st.end, SQ_ECLOSED); /* Python's close_notify: a clean end */
    sq_tls_context_free(st.ctx);
    sq_loop_free(loop);
}

/* --- A3: sq_tcp_connect_tls to a Python ssl echo server ------------------------------------- */

static void *connect_tls_coro(void *arg)
{
    (void)arg;
    peer p;
    assert_int_equal(peer_python(&p, py_peer, "echo-server", fx(""), "2", NULL), 0);
    int port = atoi(expect_line(&p, "port ") + 5);

    /* by name: SNI "localhost", ALPN offered (http/1.1 first; the server prefers h2) */
    static const char *const alpn[] = {"http/1.1", "h2"};
    sq_tls_context *ctx = client_ctx(alpn, 2);
    int err = 0;
    sq_stream *s = sq_tcp_connect_tls("localhost", port, 10, ctx, &err);
    if (!s) fail_msg("connect_tls localhost: %s (%s)", sq_strerror(err), sq_tls_last_error());
    assert_int_equal(err, 0);
    assert_true(sq_stream_is_tls(s));
    assert_true(alpn_is(s, "h2"));
    assert_string_equal(expect_line(&p, "conn "), "conn TLSv1.3 h2 localhost");
    client_exchange(s);
    sq_stream_free(s);
    const char *line = expect_line(&p, "echoed ");
    assert_int_equal(atol(line + 7), EXCHANGED);
    sq_tls_context_free(ctx);

    /* by IP address: checked against the IP SAN, no SNI; no ALPN offered, none chosen */
    ctx = client_ctx(NULL, 0);
    s = sq_tcp_connect_tls("127.0.0.1", port, 10, ctx, &err);
    if (!s) fail_msg("connect_tls 127.0.0.1: %s (%s)", sq_strerror(err), sq_tls_last_error());
    assert_true(alpn_is(s, NULL));
    assert_string_equal(expect_line(&p, "conn "), "conn TLSv1.3 None None");
    assert_int_equal(sq_stream_write(s, "ping\n", 5), 0);
    const char *d;
    assert_int_equal(sq_stream_read_until(s, "\n", 1, 0, &d), 5);
    assert_memory_equal(d, "ping\n", 5);
    sq_stream_free(s);
    line = expect_line(&p, "echoed ");
    assert_int_equal(atol(line + 7), 5);
    sq_tls_context_free(ctx);
    int st = peer_finish(&p, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

static void test_connect_tls(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, connect_tls_coro, NULL, 25);
    sq_loop_free(loop);
}

/* --- A4: a TLS TCP server (sq_tcp_options.tls) with a Python ssl client --------------------- */

static void tls_server_handler(sq_stream *s, const struct sockaddr *peer_addr, void *arg)
{
    (void)peer_addr;
    srv_state *st = arg;
    st->handlers++;
    note_tls(s, st);
    echo_rest(s, st);
    st->done++;
}

static void *tls_server_coro(void *arg)
{
    srv_state *st = arg;
    sq_tcp_options o = {.tls = st->ctx, .tls_handshake_timeout = 0.5};
    int err = 0;
    sq_tcp_server *srv = sq_tcp_listen(sq_loop_current(), "127.0.0.1", 0, &o, tls_server_handler,
                                       st, &err);
    assert_non_null(srv);
    char port[16];
    snprintf(port, sizeof port, "%d", sq_tcp_server_port(srv));
    peer p;
    assert_int_equal(peer_python(&p, py_peer, "tls-client", fx(""), port, NULL), 0);
    assert_string_equal(expect_line(&p, "plain "), "plain 0"); /* dropped, nothing sent */
    const char *line = expect_line(&p, "silent 0 ");
    double waited = atof(line + 9);
    assert_true(waited >= 0.4 && waited < 5); /* the 0.5 s handshake timeout */
    assert_int_equal(st->handlers, 0);         /* neither reached the handler */
    assert_string_equal(expect_line(&p, "tls "), "tls TLSv1.3 h2 a.test");
    line = expect_line(&p, "done ");
    assert_int_equal(atol(line + 5), EXCHANGED);
    int pst = peer_finish(&p, 10);
    assert_true(WIFEXITED(pst) && WEXITSTATUS(pst) == 0);
    wait_done(sq_loop_current(), st, 1);
    sq_tcp_server_close(srv);
    return NULL;
}

static void test_tls_tcp_server(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    static const char *const alpn[] = {"h2", "http/1.1"};
    srv_state st = {.ctx = server_ctx(alpn, 2)};
    sq_test_run_coro(loop, tls_server_coro, &st, 25);
    sq_tls_context_free(st.ctx); /* the server kept its own reference until closed */
    assert_int_equal(st.handlers, 1);
    assert_true(st.is_tls);
    assert_string_equal(st.alpn, "h2"); /* Python offered http/1.1 first: server preference */
    assert_int_equal(st.echoed, EXCHANGED);
    assert_int_equal(st.end, SQ_ECLOSED);
    sq_loop_free(loop);
}

/* --- A5: reading a large stream in odd sizes (bytes OpenSSL holds must still surface) ---- */

#define BLAST (3u << 20)

static void *blast_coro(void *arg)
{
    (void)arg;
    peer p;
    char n[16];
    snprintf(n, sizeof n, "%u", BLAST);
    assert_int_equal(peer_python(&p, py_peer, "blast", fx(""), n, NULL), 0);
    int port = atoi(expect_line(&p, "port ") + 5);
    sq_tls_context *ctx = client_ctx(NULL, 0);
    int err = 0;
    sq_stream *s = sq_tcp_connect_tls("127.0.0.1", port, 10, ctx, &err);
    assert_non_null(s);
    sq_tls_context_free(ctx);
    size_t off = 0;
    static const size_t sizes[] = {1, 7, 16383, 16384, 16385, 1000, 65537, 3, 200000};
    for (int round = 0; off < BLAST; round++) {
        const char *d;
        ssize_t got;
        size_t want = sizes[round % 9];
        bool partial = round % 2;
        if (off + want > BLAST) want = BLAST - off;
        if (round % 5 == 4) {
            char delim = (char)((off + 5000) % 251); /* a byte ~5000 ahead */
            got = sq_stream_read_until(s, &delim, 1, 0, &d);
            assert_true(got > 0 && d[got - 1] == delim);
        } else {
            got = sq_stream_read_bytes(s, want, partial, &d);
            assert_true(got > 0 && (size_t)got <= want);
            if (!partial) assert_int_equal(got, (ssize_t)want);
        }
        for (ssize_t i = 0; i < got; i++)
            if ((unsigned char)d[i] != (off + (size_t)i) % 251)
                fail_msg("byte %zu: %u, expected %zu", off + (size_t)i, (unsigned char)d[i],
                         (off + (size_t)i) % 251);
        off += (size_t)got;
    }
    assert_int_equal(off, BLAST);
    const char *d;
    assert_int_equal(sq_stream_read_bytes(s, 1, true, &d), SQ_ECLOSED); /* close_notify */
    assert_int_equal(sq_stream_error(s), 0);
    sq_stream_free(s);
    char want[32];
    snprintf(want, sizeof want, "sent %u", BLAST);
    assert_string_equal(expect_line(&p, "sent "), want);
    int st = peer_finish(&p, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

static void test_read_sizes(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, blast_coro, NULL, 25);
    sq_loop_free(loop);
}

/* --- A6: data and close_notify read together; the peer waits for our close_notify (Python's
 * unwrap): the EOF must surface at once, not when the peer gives up and closes TCP ------- */

static void *close_notify_coro(void *arg)
{
    (void)arg;
    peer p;
    assert_int_equal(peer_python(&p, py_peer, "close-notify", fx(""), NULL), 0);
    int port = atoi(expect_line(&p, "port ") + 5);
    sq_tls_context *ctx = client_ctx(NULL, 0);
    int err = 0;
    sq_stream *s = sq_tcp_connect_tls("127.0.0.1", port, 10, ctx, &err);
    assert_non_null(s);
    sq_tls_context_free(ctx);
    sq_sleep(0.2); /* both records are in the socket: one read takes them together */
    double t0 = sq_test_now();
    const char *d;
    ssize_t n = sq_stream_read_until_close(s, 0, &d);
    double took = sq_test_now() - t0;
    fprintf(stderr, "read_until_close: %zd bytes, EOF after %.3f s\n", n, took);
    assert_int_equal(n, 11);
    assert_memory_equal(d, "last words\n", 11);
    assert_true(took < 2); /* before the fix: Python's 10 s unwrap timeout */
    sq_stream_free(s);      /* our close_notify completes Python's unwrap */
    const char *line = expect_line(&p, "unwrapped ");
    assert_true(atof(line + 10) < 3);
    int st = peer_finish(&p, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}

static void test_close_notify_with_data(void **state)
{
    skip_without_python();
    sq_loop *loop = sq_loop_new(NULL);
    sq_test_run_coro(loop, close_notify_coro, NULL, 25);
    sq_loop_free(loop);
}

/* --- A7: start_tls edges, in process: bytes buffered (-EBUSY), no TLS from the peer, a
 * handshake that never completes (sq_with_timeout closes the stream) ---------------------- */

typedef struct edge {
    sq_tls_context *srv_ctx;
    int busy, busy_then, garbage;
    char busy_rest[8], garbage_reason[128];
    int handlers;
} edge;

static void edge_handler(sq_stream *s, const struct sockaddr *peer_addr, void *arg)
{
    (void)peer_addr;
    edge *e = arg;
    const char *d;
    ssize_t n = sq_stream_read_until(s, "\n", 1, 64, &d);
    if (n == 5 && memcmp(d, "BUSY\n", 5) == 0) {
        /* "BUSY\nXYZ" came in one segment: XYZ is buffered, TLS cannot start */
        e->busy = sq_stream_start_tls(s, e->srv_ctx, NULL);
        e->busy_then = sq_stream_is_tls(s) || sq_stream_closed(s);
        if (sq_stream_read_bytes(s, 3, false, &d) == 3) snprintf(e->busy_rest, 8, "%.3s", d);
    } else if (n == 8 && memcmp(d, "GARBAGE\n", 8) == 0) {
        sq_stream_write(s, "OK\n", 3);
        sq_stream_drain(s);
        e->garbage = sq_stream_start_tls(s, e->srv_ctx, NULL);
        snprintf(e->garbage_reason, sizeof e->garbage_reason, "%s", sq_tls_last_error());
    } else if (n > 0) { /* SILENT: never answer the handshake */
        while (sq_stream_read_bytes(s, 4096, true, &d) > 0) {
        }
    }
    e->handlers++;
}

static void *edges_coro(void *arg)
{
    edge *e = arg;
    int err = 0;
    sq_tcp_server *srv = sq_tcp_listen(sq_loop_current(), "127.0.0.1", 0, NULL, edge_handler, e, &err);
    assert_non_null(srv);
    int port = sq_tcp_server_port(srv);

    sq_stream *s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    assert_int_equal(sq_stream_write(s, "BUSY\nXYZ", 8), 0);
    sq_stream_free(s);

    s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    assert_int_equal(sq_stream_write(s, "GARBAGE\n", 8), 0);
    const char *d;
    assert_int_equal(sq_stream_read_until(s, "\n", 1, 0, &d), 3);
    assert_int_equal(sq_stream_write(s, "GET / HTTP/1.0\r\n\r\n", 18), 0);
    ssize_t hung = sq_stream_read_until_close(s, 0, &d); /* the server hangs up: EOF, or */
    assert_true(hung == 0 || hung == -ECONNRESET);          /* RST (our bytes unread) */
    sq_stream_free(s);

    s = sq_tcp_connect("127.0.0.1", port, 5, &err);
    assert_non_null(s);
    assert_int_equal(sq_stream_write(s, "SILENT\n", 7), 0);
    assert_int_equal(sq_stream_drain(s), 0);
    sq_tls_context *ctx = client_ctx(NULL, 0);
    double t0 = sq_test_now();
    sq_future *f = sq_with_timeout(sq_stream_start_tls_future(s, ctx, "localhost"), 0.3);
    int64_t r = sq_await(f, NULL);
    double took = sq_test_now() - t0;
    fprintf(stderr, "start_tls against a silent peer: %s after %.2f s\n", sq_strerror((int)r), took);
    assert_true(r == -ECANCELED || r == -ETIMEDOUT);
    assert_true(took >= 0.25 && took < 5);
    assert_true(sq_stream_closed(s)); /* neither plain nor TLS: closed */
    assert_true(sq_stream_write(s, "x", 1) < 0);
    sq_stream_free(s);
    sq_tls_context_free(ctx);

    t0 = sq_test_now();
    while (e->handlers < 3 && sq_test_now() - t0 < 5) sq_sleep(0.01);
    sq_tcp_server_close(srv);
    return NULL;
}

static void test_start_tls_edges(void **state)
{
    sq_loop *loop = sq_loop_new(NULL);
    edge e = {.srv_ctx = server_ctx(NULL, 0)};
    sq_test_run_coro(loop, edges_coro, &e, 20);
    fprintf(stderr, "bytes buffered: %s; no TLS from the peer: %s (%s)\n", sq_strerror(e.busy),
            sq_strerror(e.garbage), e.garbage_reason);
    assert_int_equal(e.handlers, 3);
    assert_int_equal(e.busy, -EBUSY);
    assert_int_equal(e.busy_then, 0);             /* still a plain, open stream … */
    assert_string_equal(e.busy_rest, "XYZ");      /* … with its bytes */
    assert_int_equal(e.garbage, SQ_ETLS);
    assert_non_null(strstr(e.garbage_reason, "not a TLS handshake"));
    sq_tls_context_free(e.srv_ctx);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starttls_client),
        cmocka_unit_test(test_starttls_server),
        cmocka_unit_test(test_connect_tls),
        cmocka_unit_test(test_tls_tcp_server),
        cmocka_unit_test(test_read_sizes),
        cmocka_unit_test(test_close_notify_with_data),
        cmocka_unit_test(test_start_tls_edges),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
