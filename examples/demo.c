/* demo: a tour of squall's web framework (what `make run` starts).
 *
 *   $ build/release/examples/demo [--port=8888] [--processes=N] [--redis=URL] … [port] [static-dir]
 *   listening on port 8888
 *
 * `demo --help` lists the options (squall/options.h); a `--config=FILE` of `name = value`
 * lines gives them too.  It serves HTTPS on 8443 too (--https-port: another port, "off":
 * none), with --tls-cert and --tls-key (PEM files) or else a self-signed certificate made at
 * first start next to the build (build/<dir>/demo-tls/).  The environment variables
 * SQUALL_DEMO_HTTPS_PORT, SQUALL_DEMO_TLS_CERT/_KEY, SQUALL_DEMO_TLS_HANDSHAKE_TIMEOUT,
 * SQUALL_DEMO_WRITE_TIMEOUT and SQUALL_DEMO_REDIS are the options' defaults.
 *
 * Then open http://127.0.0.1:8888/ — every route is linked from there.  Try
 * `curl localhost:8888/sync & curl localhost:8888/` (the second one waits: /sync blocks the
 * loop) against `curl localhost:8888/async & curl localhost:8888/` (it does not).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <squall.h>
#include <squall/executor.h>
#include <squall/web.h>

#include "demo.h"
#include "tls_cert.h"

/* --- / ---------------------------------------------------------------------------------- */

static void index_get(sq_handler *h)
{
    char user[64];
    const char *args[] = {"42"};
    if (sq_reverse_url(sq_handler_app(h), "user", user, sizeof user, args, 1) < 0)
        strcpy(user, "/user/42");
    /* the page is examples/demo/templates/index.html */
    json_t *links = json_pack(
        "[{s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s},"
        " {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s}]",
        "href", "/sync", "text", "/sync", "what", "blocks the whole loop for 1 s (what not to do)",
        "href", "/async", "text", "/async", "what", "sleeps 1 s without blocking anyone",
        "href", "/gather", "text", "/gather", "what",
        "fetches /async three times at once with the HTTP client: about 1 s in all",
        "href", "/offload?n=35", "text", "/offload?n=35", "what", "naive Fibonacci on the thread pool",
        "href", "/json", "text", "/json", "what", "a JSON document",
        "href", user, "text", user, "what", "a path argument",
        "href", "/form", "text", "/form", "what", "a form with a file upload",
        "href", "/cookie", "text", "/cookie", "what", "a visit counter in a signed cookie",
        "href", "/static/hello.txt", "text", "/static/hello.txt", "what", "a static file",
        "href", "/chat", "text", "/chat", "what",
        "a chat room over a WebSocket; long-polling clients use /chat/poll and /chat/send",
        "text", "/ws/prime", "what",
        "a WebSocket that tells whether the numbers sent are prime (large ones tested on the "
        "thread pool)");
    sq_render(h, "index.html", json_pack("{s:o}", "links", links));
}

/* --- /sync and /async ----------------------------------------------------------------------- */

/* What NOT to do: sleep(1) blocks the event loop, so every other connection waits too.
 * (The loop logs a slow-callback warning for it.) */
/* Not static: exported (the examples link with -rdynamic), the slow-callback warning reads
 * "GET /sync (sync_get) held the loop for 1000.0 ms". */
void sync_get(sq_handler *h);
void sync_get(sq_handler *h)
{
    sleep(1);
    sq_write(h, "slept 1 s and blocked everyone meanwhile\n");
}

/* The right way: only this request's coroutine sleeps. */
static void async_get(sq_handler *h)
{
    sq_sleep(1.0);
    sq_write(h, "slept 1 s without blocking anyone\n");
}

/* --- /offload -------------------------------------------------------------------------------- */

static uint64_t fib(unsigned n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

/* Runs on a worker thread: must not touch the loop or the handler. */
static void *fib_job(void *arg)
{
    return (void *)(uintptr_t)fib((unsigned)(uintptr_t)arg);
}

/* fib runs on a pool of its own, one thread per CPU, with at most OFFLOAD_QUEUE requests
 * waiting for a thread: past that the demo answers 503 at once.  Unbounded, 30 concurrent
 * fib(45) would queue up for tens of seconds (and in the default pool, delay /ws/prime's
 * jobs behind them). */
#define OFFLOAD_QUEUE 4
static sq_executor *offload_pool;

static void offload_get(sq_handler *h)
{
    const char *s = sq_get_argument(h, "n", "35");
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || end == s || *end || n < 0) {
        sq_send_error(h, 400, "n must be a non-negative integer");
        return;
    }
    if (n > 45) n = 45; /* naive fib(45) already takes seconds */
    double t0 = sq_loop_time(sq_loop_current());
    void *v = NULL;
    if (!offload_pool) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        offload_pool = sq_executor_new(cpus > 0 ? (size_t)cpus : 1);
        if (offload_pool) sq_executor_set_max_queued(offload_pool, OFFLOAD_QUEUE);
    }
    sq_future *f = offload_pool ? sq_executor_submit(offload_pool, sq_loop_current(), fib_job,
                                                     (void *)(uintptr_t)n)
                                : NULL;
    int64_t rc = f ? sq_await(f, &v) : -ENOMEM;
    if (rc == -EAGAIN) {
        sq_set_header(h, "Retry-After", "1");
        sq_send_error(h, 503, "the executor is busy: try again later");
        return;
    }
    if (rc < 0) {
        sq_handler_fail(h, 503, "executor: %s", sq_strerror((int)rc));
        return;
    }
    sq_loop_update_time(sq_loop_current());
    sq_writef(h,
              "fib(%ld) = %llu, computed on the executor in %.3f s while the loop served "
              "others\n",
              n, (unsigned long long)(uintptr_t)v, sq_loop_time(sq_loop_current()) - t0);
}

/* --- /json and /user -------------------------------------------------------------------------- */

static void json_get(sq_handler *h)
{
    sq_http_request *req = sq_handler_request(h);
    sq_write_jsonf(h, "{s:s, s:s%, s:s, s:s, s:[i,i,i], s:b}", "framework", "squall", "path",
                   req->path.ptr, req->path.len, "remote_ip", req->remote_ip, "protocol",
                   req->protocol, "numbers", 1, 2, 3, "fast", 1);
}

static void user_get(sq_handler *h)
{
    sq_write_jsonf(h, "{s:s}", "id", sq_path_arg(h, 0));
}

/* --- /form ------------------------------------------------------------------------------------ */

static void form_get(sq_handler *h)
{
    sq_render(h, "form.html", NULL);
}

static void form_post(sq_handler *h)
{
    const sq_arg *f = sq_get_file(h, "file");
    json_t *file = f ? json_pack("{s:s, s:I, s:s}", "filename", f->filename ? f->filename : "",
                                 "size", (json_int_t)f->value_len, "content_type",
                                 f->content_type ? f->content_type : "")
                     : json_null();
    sq_render(h, "form_done.html",
              json_pack("{s:s, s:o}", "name", sq_get_body_argument(h, "name", "(none)"), "file", file));
}

/* --- /login, /logout, /secret: a user in a signed cookie ---------------------------------------- */

static void *demo_user(sq_handler *h)
{
    return (void *)sq_get_signed_cookie(h, "user", 30); /* NULL: nobody (or a forged cookie) */
}

static void login_get(sq_handler *h)
{
    sq_render(h, "login.html", json_pack("{s:s}", "next", sq_get_query_argument(h, "next", "/secret")));
}

static void login_post(sq_handler *h)
{
    const char *name = sq_get_body_argument(h, "name", "");
    const char *next = sq_get_body_argument(h, "next", "/secret");
    if (!*name || strlen(name) > 64) {
        sq_set_status(h, 400, NULL);
        sq_render(h, "login.html", json_pack("{s:s, s:s}", "next", next, "error", "a name of 1 to 64 bytes"));
        return;
    }
    sq_set_signed_cookie(h, "user", name,
                         &(sq_cookie_options){.path = "/", .http_only = true, .same_site = "Lax"});
    /* only local paths: no open redirect */
    sq_redirect(h, next[0] == '/' && next[1] != '/' ? next : "/secret", false);
}

static void logout_post(sq_handler *h)
{
    sq_clear_cookie(h, "user", &(sq_cookie_options){.path = "/"});
    sq_redirect(h, "/", false);
}

static void secret_get(sq_handler *h)
{
    sq_render(h, "secret.html", json_pack("{s:s}", "user", (const char *)sq_current_user(h)));
}

/* --- /cookie ---------------------------------------------------------------------------------- */

static void cookie_get(sq_handler *h)
{
    const char *v = sq_get_signed_cookie(h, "visits", 31);
    long visits = v ? strtol(v, NULL, 10) : 0;
    visits++;
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", visits);
    sq_cookie_options o = {.path = "/", .http_only = true, .same_site = "Lax"};
    sq_set_signed_cookie(h, "visits", buf, &o);
    sq_writef(h,
              "You have been here %ld time%s (a signed cookie: edit it and the count "
              "restarts).\n",
              visits, visits == 1 ? "" : "s");
}

/* --- main ------------------------------------------------------------------------------------- */

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The static folder: argv[2], else examples/demo/static below the working directory (what
 * `make run` uses), else next to the source tree as seen from build/<dir>/examples/demo. */
static const char *static_dir(const char *given)
{
    static char buf[PATH_MAX];
    if (given && *given) {
        snprintf(buf, sizeof buf, "%s/examples/demo/static", given);
        if (is_dir(buf)) return buf;
        return given;
    }
    if (is_dir("examples/demo/static")) return "examples/demo/static";
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(buf, sizeof buf, "%s/../../../examples/demo/static", exe);
        if (is_dir(buf)) return buf;
    }
    return "examples/demo/static";
}

/* An environment variable as a number (the default of an option), 0 when unset or bad. */
static double env_seconds(const char *name)
{
    const char *s = getenv(name);
    double t = s ? strtod(s, NULL) : 0;
    return t > 0 ? t : 0;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *s = getenv(name);
    return s && *s ? s : dflt;
}

/* The HTTPS side: the certificate from the environment, or the demo's own self-signed one
 * (made at first start in build/<dir>/demo-tls).  NULL when HTTPS is off or impossible. */
static sq_tls_context *demo_tls(const char *cert, const char *key)
{
    if (cert && !*cert) cert = NULL;
    if (key && !*key) key = NULL;
    char cert_buf[PATH_MAX], key_buf[PATH_MAX], fp[DEMO_TLS_FINGERPRINT_LEN] = "";
    if (!cert || !key) {
        char dir[PATH_MAX - 64];
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0) return NULL;
        dir[n] = '\0';
        char *slash = strrchr(dir, '/'); /* build/<dir>/examples/demo -> build/<dir>/demo-tls */
        if (slash) *slash = '\0';
        slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        char where[PATH_MAX];
        snprintf(where, sizeof where, "%s/demo-tls", dir);
        if (demo_tls_cert_ensure(where, cert_buf, sizeof cert_buf, key_buf, sizeof key_buf, fp) < 0)
            return NULL;
        cert = cert_buf;
        key = key_buf;
    }
    int err;
    sq_tls_context *tls =
        sq_tls_server_context_new(&(sq_tls_options){.cert_file = cert, .key_file = key}, &err);
    if (!tls) {
        fprintf(stderr, "demo: no HTTPS: %s (%s)\n", sq_strerror(err), sq_tls_last_error());
        return NULL;
    }
    printf("certificate %s%s%s\n", cert, *fp ? ", SHA-256 fingerprint " : "", fp);
    return tls;
}

/* A port given as text (PORT, --https-port): all of it a number from 0 to 65535, else exit 2
 * (atoi took "abc" for 0, any free port, and "80x" for 80). */
static int port_arg(const char *what, const char *s)
{
    char *end;
    errno = 0;
    long p = strtol(s, &end, 10);
    if (end == s || *end || errno || p < 0 || p > 65535) {
        fprintf(stderr, "demo: %s: not a port number: '%s' (--help lists the options)\n", what, s);
        exit(2);
    }
    return (int)p;
}

/* The demo's options (squall/options.h): `demo --help` lists them. */
static struct {
    int port, processes;
    bool xheaders, xsrf_cookies;
    const char *unix_socket;
    const char *https_port, *tls_cert, *tls_key, *redis, *static_dir, *template_dir;
    double write_timeout, tls_handshake_timeout;
} opt = {.port = 8888, .processes = 1};

static sq_options *demo_options(int argc, char **argv)
{
    opt.https_port = env_or("SQUALL_DEMO_HTTPS_PORT", "8443");
    opt.tls_cert = env_or("SQUALL_DEMO_TLS_CERT", "");
    opt.tls_key = env_or("SQUALL_DEMO_TLS_KEY", "");
    opt.redis = env_or("SQUALL_DEMO_REDIS", "");
    opt.static_dir = "";
    opt.unix_socket = "";
    opt.template_dir = "";
    opt.write_timeout = env_seconds("SQUALL_DEMO_WRITE_TIMEOUT");
    opt.tls_handshake_timeout = env_seconds("SQUALL_DEMO_TLS_HANDSHAKE_TIMEOUT");
    sq_options *o = sq_options_new("demo", "squall's demo application: every route is linked "
                                           "from http://127.0.0.1:PORT/.  Positional "
                                           "arguments, if any, are PORT and STATIC-DIR.");
    const sq_option list[] = {
        {.name = "port", .type = SQ_OPT_INT, .value = &opt.port, .help = "HTTP port (0: any free one)"},
        {.name = "https-port", .type = SQ_OPT_STRING, .value = &opt.https_port, .metavar = "PORT|off",
         .help = "HTTPS port (0: any free one; the default is 0 when --port is 0)"},
        {.name = "tls-cert", .type = SQ_OPT_STRING, .value = &opt.tls_cert, .metavar = "FILE",
         .help = "PEM certificate for HTTPS (default: a self-signed one made at first start)"},
        {.name = "tls-key", .type = SQ_OPT_STRING, .value = &opt.tls_key, .metavar = "FILE",
         .help = "its PEM private key"},
        {.name = "unix-socket", .type = SQ_OPT_STRING, .value = &opt.unix_socket, .metavar = "PATH",
         .help = "serve HTTP on this unix-domain socket too (@name: abstract), e.g. behind nginx"},
        {.name = "xsrf-cookies", .type = SQ_OPT_BOOL, .value = &opt.xsrf_cookies,
         .help = "XSRF protection: POST/PUT/PATCH/DELETE need the _xsrf token (forms carry it)"},
        {.name = "xheaders", .type = SQ_OPT_BOOL, .value = &opt.xheaders,
         .help = "trust X-Real-IP / X-Forwarded-For / -Proto from a proxy in front"},
        {.name = "processes", .type = SQ_OPT_INT, .value = &opt.processes,
         .help = "worker processes sharing the ports (0: one per CPU)"},
        {.name = "redis", .type = SQ_OPT_STRING, .value = &opt.redis, .metavar = "URL",
         .help = "share the chat through this Redis (redis://host:port/db, unix:///path); "
                 "empty: the chat stays in each process"},
        {.name = "static-dir", .type = SQ_OPT_STRING, .value = &opt.static_dir, .metavar = "DIR",
         .help = "the static files (default: examples/demo/static)"},
        {.name = "template-dir", .type = SQ_OPT_STRING, .value = &opt.template_dir, .metavar = "DIR",
         .help = "the page templates (default: examples/demo/templates)"},
        {.name = "write-timeout", .type = SQ_OPT_DOUBLE, .value = &opt.write_timeout, .group = "Limits",
         .help = "seconds a client may leave our output unread (0: the server's default)"},
        {.name = "tls-handshake-timeout", .type = SQ_OPT_DOUBLE, .value = &opt.tls_handshake_timeout,
         .group = "Limits", .help = "seconds a TLS handshake may take (0: the header timeout)"},
    };
    for (size_t i = 0; o && i < sizeof list / sizeof list[0]; i++)
        if (sq_options_add(o, &list[i]) < 0) {
            sq_options_free(o);
            o = NULL;
        }
    if (!o || sq_options_add_logging(o) < 0) {
        fprintf(stderr, "demo: out of memory\n");
        exit(1);
    }
    sq_options_parse_or_exit(o, argc, argv);
    /* the positional forms `demo PORT [STATIC-DIR]` (make run, older scripts) */
    if (sq_options_nargs(o) > 0) opt.port = port_arg("PORT", sq_options_arg(o, 0));
    if (sq_options_nargs(o) > 1) opt.static_dir = sq_options_arg(o, 1);
    if (sq_options_nargs(o) > 2) {
        fprintf(stderr, "demo: too many arguments (--help lists the options)\n");
        exit(2);
    }
    if (!sq_options_is_set(o, "https-port") && !getenv("SQUALL_DEMO_HTTPS_PORT") && opt.port == 0)
        opt.https_port = "0";
    if (strcmp(opt.https_port, "off")) port_arg("--https-port", opt.https_port);
    return o;
}

int main(int argc, char **argv)
{
    sq_options *options = demo_options(argc, argv);
    int port = opt.port;
    if (opt.processes != 1) {
        if (port == 0) {
            fprintf(stderr, "demo: --processes needs a fixed --port (they share it)\n");
            sq_options_free(options);
            return 2;
        }
        /* The workers each listen on the same ports (SO_REUSEPORT); this process watches
         * them, restarts one that dies, and exits with them. */
        int rc = sq_fork_processes(opt.processes, 100);
        if (rc < 0) {
            fprintf(stderr, "demo: --processes: %s\n", sq_strerror(rc));
            sq_options_free(options);
            return 1;
        }
    }
    double wt = opt.write_timeout;
    /* Thousands of clients (long polls, WebSockets) need more than Debian's 1024 files. */
    sq_raise_fd_limit();
    demo_prime_ws.settings.write_timeout = wt;
    demo_chat_ws.settings.write_timeout = wt;
    /* the pages' templates: examples/demo/templates, found as the default static folder is
     * (whatever --static-dir says: tests serve other static files with the same pages) */
    static char tdir[PATH_MAX];
    if (*opt.template_dir)
        snprintf(tdir, sizeof tdir, "%s", opt.template_dir);
    else
        snprintf(tdir, sizeof tdir, "%s/../templates", static_dir(NULL));
    const char *dir = static_dir(opt.static_dir);  /* after: both use one static buffer */

    const sq_route routes[] = {
        {"/", &(sq_handler_class){.get = index_get}, "index", NULL},
        {"/sync", &(sq_handler_class){.get = sync_get}, NULL, NULL},
        {"/async", &(sq_handler_class){.get = async_get}, NULL, NULL},
        {"/gather", &demo_gather_handler, NULL, NULL},
        {"/offload", &(sq_handler_class){.get = offload_get}, NULL, NULL},
        {"/json", &(sq_handler_class){.get = json_get}, NULL, NULL},
        {"/user/([0-9]+)", &(sq_handler_class){.get = user_get}, "user", NULL},
        {"/form", &(sq_handler_class){.get = form_get, .post = form_post}, NULL, NULL},
        {"/cookie", &(sq_handler_class){.get = cookie_get}, NULL, NULL},
        {"/login", &(sq_handler_class){.get = login_get, .post = login_post}, NULL, NULL},
        {"/logout", &(sq_handler_class){.post = logout_post}, NULL, NULL},
        {"/secret",
         &(sq_handler_class){.get = secret_get, .get_current_user = demo_user, .authenticated = true},
         NULL, NULL},
        {"/static/(.*)", &sq_static_file_handler, "static", (void *)dir},
        {"/ws/prime", &sq_websocket_handler, NULL, (void *)&demo_prime_ws},
        {"/ws/chat", &sq_websocket_handler, NULL, (void *)&demo_chat_ws},
        {"/chat", &demo_chat_page, NULL, NULL},
        {"/chat/poll", &demo_chat_poll, NULL, NULL},
        {"/chat/send", &demo_chat_send, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    sq_app_settings settings = {
        /* A fixed secret is fine for a demo; a real app reads it from its configuration. */
        .cookie_secret = "squall-demo-secret-do-not-use-in-production",
        .template_path = tdir,
        .login_url = "/login",
        .xsrf_cookies = opt.xsrf_cookies,
        .http = {.gzip = true,
                 .write_timeout = wt,
                 .tls_handshake_timeout = opt.tls_handshake_timeout,
                 .reuseport = opt.processes != 1,
                 .xheaders = opt.xheaders},
    };
    sq_loop *loop = sq_loop_default();
    sq_app *app = sq_app_new(routes, &settings);
    if (!app) {
        sq_options_free(options);
        return 1;
    }
    int rc = sq_app_listen(app, port, NULL);
    if (rc < 0) {
        fprintf(stderr, "demo: cannot listen on port %d: %s\n", port, sq_strerror(rc));
        sq_app_free(app);
        sq_options_free(options);
        return 1;
    }
    if (*opt.unix_socket) {
        char host[128];
        snprintf(host, sizeof host, "unix:%s", opt.unix_socket);
        rc = sq_app_listen(app, 0, host);
        if (rc < 0) {
            fprintf(stderr, "demo: cannot listen on %s: %s\n", host, sq_strerror(rc));
            sq_app_free(app);
            sq_options_free(options);
            return 1;
        }
    }
    /* The chat room shared through Redis (every process and host on it sees one room), or
     * kept in this process (the default: nothing else needs to run). */
    const char *redis_url = opt.redis;
    if (redis_url && *redis_url) {
        rc = demo_chat_use_redis(loop, redis_url);
        if (rc < 0) {
            fprintf(stderr, "demo: --redis %s: %s\n", redis_url, sq_strerror(rc));
            sq_app_free(app);
            sq_options_free(options);
            return 1;
        }
    }
    printf("listening on port %d\n", sq_http_server_port(sq_app_server(app)));
    if (redis_url && *redis_url) printf("chat shared through %s\n", redis_url);
    /* HTTPS beside it: 8443, or an ephemeral port when HTTP has one (tests) */
    const char *hp = opt.https_port;
    int https_port = atoi(hp);
    sq_tls_context *tls = !strcmp(hp, "off") ? NULL : demo_tls(opt.tls_cert, opt.tls_key);
    if (tls) {
        rc = sq_app_listen_tls(app, https_port, NULL, tls);
        if (rc < 0)
            fprintf(stderr, "demo: no HTTPS: cannot listen on port %d: %s\n", https_port,
                    sq_strerror(rc));
        else
            printf("https on port %d\n", sq_http_server_port(sq_app_tls_server(app)));
        sq_tls_context_free(tls); /* the server keeps its reference */
    }
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    rc = sq_loop_run(loop);
    /* Stopped by SIGINT or SIGTERM: stop accepting and give the requests in flight (long
     * polls too) up to 2 s before their connections are closed; every handler then runs to
     * its end.  A second signal cuts the wait short. */
    sq_http_server *servers[] = {sq_app_server(app), sq_app_tls_server(app)};
    sq_future *down[2] = {NULL, NULL};
    for (int i = 0; i < 2 && rc >= 0; i++)
        if (servers[i]) down[i] = sq_http_server_shutdown(servers[i], 2.0); /* both at once */
    for (int i = 0; i < 2; i++) {
        if (!down[i]) continue;
        sq_loop_run_until(loop, down[i]);
        sq_future_release(down[i]);
    }
    sq_app_free(app);
    demo_chat_shutdown();
    demo_client_free();
    if (offload_pool) sq_executor_free(offload_pool);
    sq_options_free(options);
    return rc < 0 ? 1 : 0;
}
