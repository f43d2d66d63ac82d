/* The server of tests/web/parity_wire.py: the web parity features behind real clients (curl,
 * Python's http.client).  Listens on 127.0.0.1, port 0, prints "PORT <n>" and serves until
 * SIGTERM.
 *   parity_server [--keys=V:SECRET,V:SECRET...] [--current=V] [--legacy=SECRET]
 *     /c?set=x  signed cookie "who" (set, and the value it read)   /echo  POST: the body
 *     /old/(.*) -> /new/{0} (301)   /raw/...: a plain sq_http handler (any method)
 *     host api.localhost: "/" answers "api"; decompress_request on, max_body_size 1 MiB */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squall/error.h"
#include "squall/loop.h"
#include "squall/web.h"

static void cookie_get(sq_handler *h)
{
    const char *set = sq_get_argument(h, "set", NULL);
    if (set) sq_set_signed_cookie(h, "who", set, NULL);
    const char *v = sq_get_signed_cookie(h, "who", atof(sq_get_argument(h, "days", "0")));
    sq_write(h, v ? v : "(none)");
}

static void echo_post(sq_handler *h)
{
    sq_str b = sq_get_body(h);
    sq_writef(h, "%zu:", b.len);
    sq_write_bytes(h, b.ptr, b.len);
}

static void api_get(sq_handler *h)
{
    sq_write(h, "api");
}

static void main_get(sq_handler *h)
{
    sq_writef(h, "main %s", sq_path_arg(h, 0) ? sq_path_arg(h, 0) : "/");
}

static void raw(sq_http_request *req, void *arg)
{
    (void)arg;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "raw %.*s %.*s", (int)req->method.len, req->method.ptr,
                     (int)req->path.len, req->path.ptr);
    sq_http_set_header(req, "Content-Type", "text/plain");
    sq_http_write(req, buf, (size_t)n);
}

static const sq_fallback raw_fb = {raw, NULL};

static const sq_route routes[] = {
    {"/c", &(sq_handler_class){.get = cookie_get}, NULL, NULL},
    {"/echo", &(sq_handler_class){.post = echo_post}, NULL, NULL},
    {"/old/(.*)", &sq_redirect_handler, NULL, &(sq_redirect_target){"/new/{0}", 0}},
    {"/raw/.*", &sq_fallback_handler, NULL, (void *)&raw_fb},
    {"(/.*)", &(sq_handler_class){.get = main_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static const sq_route api_routes[] = {
    {"/", &(sq_handler_class){.get = api_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    sq_cookie_secret keys[8] = {{0, NULL}};
    size_t nkeys = 0;
    char *list = NULL; /* the --keys text, which the secrets point into */
    sq_app_settings st = {.no_access_log = true};
    st.http.decompress_request = true;
    st.http.max_body_size = 1u << 20;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--keys=", 7)) {
            free(list);
            list = strdup(argv[i] + 7);
            char *save = NULL;
            for (char *k = strtok_r(list, ",", &save); k && nkeys < 7; k = strtok_r(NULL, ",", &save)) {
                char *colon = strchr(k, ':');
                if (!colon) return 2;
                *colon = '\0';
                keys[nkeys].version = atoi(k);
                keys[nkeys++].secret = colon + 1;
            }
            st.cookie_secrets = keys;
        } else if (!strncmp(argv[i], "--current=", 10)) {
            st.cookie_key_version = atoi(argv[i] + 10);
        } else if (!strncmp(argv[i], "--legacy=", 9)) {
            st.cookie_secret = argv[i] + 9;
        } else {
            fprintf(stderr, "usage: parity_server [--keys=V:S,...] [--current=V] [--legacy=S]\n");
            return 2;
        }
    }
    sq_app *app = sq_app_new(routes, &st); /* (it copies the secrets) */
    free(list);
    if (!app || sq_app_add_handlers(app, "api\\.localhost", api_routes) < 0) return 1;
    sq_loop *loop = sq_loop_default();
    if (sq_app_listen(app, 0, "127.0.0.1") < 0) return 1;
    printf("PORT %d\n", sq_http_server_port(sq_app_server(app)));
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    sq_loop_run(loop);
    sq_app_free(app);
    sq_loop_free(loop);
    return 0;
}
