/* ws_echo: squall's WebSocket echo server for bench/ws_compare.sh.
 *
 *   $ ws_echo [port] [--compress]
 *   listening on port N
 *
 * Every message on any path comes back as it came.  No compression unless --compress (the
 * idle-connection figure is measured without it).  Raises its file-descriptor limit for
 * 10,000 connections; no access log.  SQ_BENCH_TRIM_DELAY in the environment sets the
 * server's memory_trim_delay (ws_compare.sh shortens it).  SIGTERM/SIGINT stop it.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall.h>
#include <squall/websocket.h>

static void echo(sq_ws *ws, const char *data, size_t len, bool binary)
{
    sq_ws_send(ws, data, len, binary);
}

static const sq_ws_class echo_ws = {.on_message = echo};
static const sq_ws_class echo_deflate_ws = {.on_message = echo, .settings = {.compression = true}};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    bool compress = argc > 2 && strcmp(argv[2], "--compress") == 0;
    sq_raise_fd_limit();
    const sq_route routes[] = {
        {"/.*", &sq_websocket_handler, NULL, (void *)(compress ? &echo_deflate_ws : &echo_ws)},
        {NULL, NULL, NULL, NULL},
    };
    sq_app_settings settings = {.no_access_log = true};
    const char *trim = getenv("SQ_BENCH_TRIM_DELAY"); /* memory_trim_delay (ws_compare.sh) */
    if (trim && *trim) settings.http.memory_trim_delay = atof(trim);
    sq_loop *loop = sq_loop_default();
    sq_app *app = sq_app_new(routes, &settings);
    if (!app) return 1;
    int rc = sq_app_listen(app, port, "127.0.0.1");
    if (rc < 0) {
        fprintf(stderr, "ws_echo: listen: %s\n", sq_strerror(rc));
        sq_app_free(app);
        return 1;
    }
    printf("listening on port %d\n", sq_http_server_port(sq_app_server(app)));
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    rc = sq_loop_run(loop);
    sq_app_free(app);
    return rc < 0 ? 1 : 0;
}
