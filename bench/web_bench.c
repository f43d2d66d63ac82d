/* web_bench: the web-framework server the benchmarks measure (bench/http_compare.sh,
 * bench/http_mem.sh, bench/https_compare.sh), with the access log off as it is for nginx there.
 *
 *   web_bench [PORT [CERT KEY]]
 *                         PORT defaults to 8888; 0 picks a free port.  With CERT and KEY (PEM
 *                         files) it serves HTTPS instead, TLS 1.3 only, as nginx does with
 *                         `ssl_protocols TLSv1.3` in bench/https_compare.sh; session tickets
 *                         on (the library's default).  SQ_BENCH_TLS_CERT and SQ_BENCH_TLS_KEY
 *                         in the environment do the same.  SQ_BENCH_TRIM_DELAY sets the
 *                         server's memory_trim_delay (bench/http_mem.sh shortens it).
 *
 *   GET /plaintext   "Hello, World!" as text/plain (the web layer's answer to examples/hello)
 *   GET /json        {"message":"Hello, World!"} written for every request from a json_pack
 *                    format by sq_write_jsonf (nothing cached, no tree built)
 *   GET /json-tree   the same document as a jansson object built with json_pack and
 *                    serialized by sq_write_json (the way /json was written until 12-05)
 *   GET /page        bench/templates/page.html rendered with sq_render against a context built
 *                    for every request (a title, a user object, three items: about 240 bytes
 *                    of HTML), the compiled template cached as an app would
 *   GET /sleep?s=N   sleeps N seconds (default 2) on its coroutine, then answers "slept":
 *                    the shape of a long-polling request that stays parked meanwhile
 *
 * The first line on stdout is "listening on port N".  SIGINT or SIGTERM stops it.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <squall.h>
#include <squall/web.h>

static void plaintext_get(sq_handler *h)
{
    sq_set_header(h, "Content-Type", "text/plain");
    sq_write(h, "Hello, World!");
}

static void json_get(sq_handler *h)
{
    sq_write_jsonf(h, "{s:s}", "message", "Hello, World!");
}

static void json_tree_get(sq_handler *h)
{
    sq_write_json(h, json_pack("{s:s}", "message", "Hello, World!"));
}

static void page_get(sq_handler *h)
{
    sq_render(h, "page.html",
              json_pack("{s:s, s:{s:s, s:b}, s:[s,s,s]}", "title", "squall", "user", "name",
                        "<Ada>", "admin", 1, "items", "loop", "coroutines", "templates & more"));
}

static void sleep_get(sq_handler *h)
{
    double s = atof(sq_get_query_argument(h, "s", "2"));
    if (s < 0 || s > 600) s = 2;
    sq_sleep(s);
    sq_set_header(h, "Content-Type", "text/plain");
    sq_write(h, "slept");
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8888;
    static const sq_handler_class plaintext = {.get = plaintext_get}, json = {.get = json_get},
                                  json_tree = {.get = json_tree_get}, sleeper = {.get = sleep_get},
                                  page = {.get = page_get};
    static const sq_route routes[] = {
        {"/plaintext", &plaintext, NULL, NULL}, {"/json", &json, NULL, NULL},
        {"/json-tree", &json_tree, NULL, NULL}, {"/sleep", &sleeper, NULL, NULL},
        {"/page", &page, NULL, NULL},           {NULL, NULL, NULL, NULL},
    };
    /* the templates beside this source (SQ_BENCH_TEMPLATES overrides) */
    const char *tdir = getenv("SQ_BENCH_TEMPLATES");
    sq_app_settings settings = {.no_access_log = true,
                                .template_path = tdir && *tdir ? tdir : SQ_BENCH_TEMPLATE_DIR};
    const char *trim = getenv("SQ_BENCH_TRIM_DELAY");
    if (trim && *trim) settings.http.memory_trim_delay = atof(trim);
    const char *cert = argc > 3 ? argv[2] : getenv("SQ_BENCH_TLS_CERT");
    const char *key = argc > 3 ? argv[3] : getenv("SQ_BENCH_TLS_KEY");
    sq_tls_context *tls = NULL;
    if (cert && *cert && key && *key) {
        int err = 0;
        sq_tls_options o = {.cert_file = cert, .key_file = key, .min_version = SQ_TLS_1_3};
        tls = sq_tls_server_context_new(&o, &err);
        if (!tls) {
            fprintf(stderr, "web_bench: %s / %s: %s (%s)\n", cert, key, sq_strerror(err),
                    sq_tls_last_error());
            return 1;
        }
        settings.http.tls = tls; /* sq_app_listen serves HTTPS */
    }
    sq_loop *loop = sq_loop_default();
    sq_app *app = sq_app_new(routes, &settings);
    if (!app) {
        sq_tls_context_free(tls);
        return 1;
    }
    int rc = sq_app_listen(app, port, "127.0.0.1");
    if (rc < 0) {
        fprintf(stderr, "web_bench: cannot listen on port %d: %s\n", port, sq_strerror(rc));
        sq_app_free(app);
        sq_tls_context_free(tls);
        return 1;
    }
    printf("listening on port %d\n", sq_http_server_port(sq_app_server(app)));
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    rc = sq_loop_run(loop);
    sq_app_free(app);
    sq_tls_context_free(tls);
    return rc < 0 ? 1 : 0;
}
