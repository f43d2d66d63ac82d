/* The squall WebSocket server the real-client tests (Python websockets, npm ws) talk to.
 *
 *   $ ws_test_server [port]       (0 or nothing: an ephemeral port)
 *   listening on port N
 *
 * Routes (each echoes every message back as it came, text as text, binary as binary):
 *   /echo          no compression, the default 10 MiB message limit
 *   /echo-deflate  permessage-deflate accepted when offered
 *   /small         max_message_size 1000 (a bigger message: close 1009)
 * Text commands, on every route:
 *   "!close CODE REASON"  the server closes with that code and reason
 *   "!lastclose"          answers "CODE REASON" of the last connection the peer closed
 * The subprotocol "chat" is selected when offered.  SIGTERM/SIGINT stop it cleanly.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall.h>
#include <squall/websocket.h>

static int last_close_code;
static char last_close_reason[128];

static void echo_message(sq_ws *ws, const char *data, size_t len, bool binary)
{
    if (!binary && len > 7 && memcmp(data, "!close ", 7) == 0) {
        char buf[160];
        size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, data, n);
        buf[n] = '\0';
        char *end;
        long code = strtol(buf + 7, &end, 10);
        sq_ws_close(ws, (int)code, *end == ' ' ? end + 1 : NULL);
        return;
    }
    if (!binary && len == 10 && memcmp(data, "!lastclose", 10) == 0) {
        char buf[160];
        int n = snprintf(buf, sizeof buf, "%d %s", last_close_code, last_close_reason);
        sq_ws_send(ws, buf, (size_t)n, false);
        return;
    }
    /* Coroutine form: a big echo waits for the kernel instead of piling up. */
    sq_ws_write(ws, data, len, binary);
}

static void echo_close(sq_ws *ws)
{
    last_close_code = sq_ws_close_code(ws);
    snprintf(last_close_reason, sizeof last_close_reason, "%s", sq_ws_close_reason(ws));
}

static const char *pick_chat(sq_handler *h, const char *const *offered, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(offered[i], "chat") == 0) return offered[i];
    return NULL;
}

static const sq_ws_class echo_ws = {
    .select_subprotocol = pick_chat,
    .on_message = echo_message,
    .on_close = echo_close,
};
static const sq_ws_class deflate_ws = {
    .select_subprotocol = pick_chat,
    .on_message = echo_message,
    .on_close = echo_close,
    .settings = {.compression = true},
};
static const sq_ws_class small_ws = {
    .select_subprotocol = pick_chat,
    .on_message = echo_message,
    .on_close = echo_close,
    .settings = {.max_message_size = 1000},
};

int main(int argc, char **argv)
{
    static const sq_route routes[] = {
        {"/echo", &sq_websocket_handler, NULL, (void *)&echo_ws},
        {"/echo-deflate", &sq_websocket_handler, NULL, (void *)&deflate_ws},
        {"/small", &sq_websocket_handler, NULL, (void *)&small_ws},
        {NULL, NULL, NULL, NULL},
    };
    sq_app_settings settings = {.no_access_log = true};
    sq_loop *loop = sq_loop_default();
    sq_app *app = sq_app_new(routes, &settings);
    if (!app) return 1;
    int rc = sq_app_listen(app, argc > 1 ? atoi(argv[1]) : 0, "127.0.0.1");
    if (rc < 0) {
        fprintf(stderr, "ws_test_server: listen: %s\n", sq_strerror(rc));
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
