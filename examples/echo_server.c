/* A TCP echo server: one coroutine per connection, echoing whatever arrives.
 *
 *   echo_server [--port=N] [--logging=LEVEL] [PORT]     PORT defaults to 8888; 0: a free one.
 *
 * The first line on stdout is "listening on port N".  SIGINT or SIGTERM stops it cleanly:
 * the listener closes, open connections are closed, and everything is freed before exit.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <squall.h>

/* Live connections, so that shutdown can close them and let their coroutines finish. */
typedef struct conn_node {
    sq_stream *stream;
    struct conn_node *prev, *next;
} conn_node;

static conn_node live = {.prev = &live, .next = &live};
static size_t nlive;
static bool stopping;

static void echo(sq_stream *s, const struct sockaddr *peer, void *arg)
{
    if (stopping) return; /* accepted just before the stop: its stream is freed on return */
    conn_node node = {.stream = s, .prev = live.prev, .next = &live};
    live.prev->next = &node;
    live.prev = &node;
    nlive++;
    for (;;) {
        const char *data;
        ssize_t n = sq_stream_read_bytes(s, 64 * 1024, true, &data);
        if (n <= 0) break; /* SQ_ECLOSED when the client hangs up */
        if (sq_stream_write(s, data, (size_t)n) < 0) break;
    }
    node.prev->next = node.next;
    node.next->prev = node.prev;
    nlive--;
}

int main(int argc, char **argv)
{
    int port = 8888;
    sq_options *opts = sq_options_new("echo_server", "A TCP echo server, one coroutine per client.");
    if (!opts || sq_options_add(opts, &(sq_option){.name = "port", .type = SQ_OPT_INT, .value = &port,
                                                   .help = "port to listen on (0: a free one)"}) < 0 ||
        sq_options_add_logging(opts) < 0)
        return 1;
    sq_options_parse_or_exit(opts, argc, argv); /* --help lists the options */
    if (sq_options_nargs(opts) >
        0) { /* echo_server PORT: all of it a number (atoi took "abc" for 0) */
        const char *a = sq_options_arg(opts, 0);
        char *end;
        long p = strtol(a, &end, 10);
        if (end == a || *end || p < 0 || p > 65535) {
            fprintf(stderr, "echo_server: not a port number: '%s'\n", a);
            sq_options_free(opts);
            return 2;
        }
        port = (int)p;
    }
    sq_options_free(opts);
    sq_raise_fd_limit();
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) {
        perror("echo_server: sq_loop_new");
        return 1;
    }
    int err = 0;
    sq_tcp_server *srv = sq_tcp_listen(loop, NULL, port, NULL, echo, NULL, &err);
    if (!srv) {
        fprintf(stderr, "echo_server: cannot listen on port %d: %s\n", port, sq_strerror(err));
        sq_loop_free(loop);
        return 1;
    }
    printf("listening on port %d\n", sq_tcp_server_port(srv));
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    int r = sq_loop_run(loop);

    stopping = true;
    sq_tcp_server_close(srv);
    /* Closed streams fail their reads and writes: every handler coroutine sees that and
     * returns, and its stream is freed. */
    for (int i = 0; i < 1000; i++) {
        for (conn_node *n = live.next; n != &live; n = n->next) sq_stream_close(n->stream);
        sq_loop_run_once(loop, false);
        if (!nlive) break;
    }
    sq_loop_free(loop);
    if (r < 0) {
        fprintf(stderr, "echo_server: loop failed: %s\n", sq_strerror(r));
        return 1;
    }
    return 0;
}
