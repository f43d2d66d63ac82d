/* The smallest HTTP server: "Hello, World!" on every path.
 *
 *   hello [--port=N] [--logging=LEVEL] [PORT]     PORT defaults to 8888; 0 picks a free port.
 *
 * The first line on stdout is "listening on port N".  SIGINT or SIGTERM stops it: the
 * server is freed, then the loop, so the process exits clean under LeakSanitizer.
 */
#include <stdio.h>
#include <stdlib.h>

#include <squall.h>
#include <squall/http.h>

static void hello(sq_http_request *req, void *arg)
{
    (void)arg; /* the handler's argument (sq_http_server_new's last one): unused here */
    sq_http_set_header(req, "Content-Type", "text/plain");
    sq_http_write(req, "Hello, World!", 13);
}

int main(int argc, char **argv)
{
    int port = 8888;
    sq_options *opts = sq_options_new("hello", "Hello, World! on every path.");
    if (!opts || sq_options_add(opts, &(sq_option){.name = "port", .type = SQ_OPT_INT, .value = &port,
                                                   .help = "port to listen on (0: a free one)"}) < 0 ||
        sq_options_add_logging(opts) < 0)
        return 1;
    sq_options_parse_or_exit(opts, argc, argv); /* --help lists the options */
    if (sq_options_nargs(opts) > 0) { /* hello PORT: all of it a number (atoi took "abc" for 0) */
        const char *a = sq_options_arg(opts, 0);
        char *end;
        long p = strtol(a, &end, 10);
        if (end == a || *end || p < 0 || p > 65535) {
            fprintf(stderr, "hello: not a port number: '%s'\n", a);
            sq_options_free(opts);
            return 2;
        }
        port = (int)p;
    }
    sq_options_free(opts);
    sq_loop *loop = sq_loop_new(NULL);
    if (!loop) {
        perror("hello: sq_loop_new");
        return 1;
    }
    sq_http_server *srv = sq_http_server_new(loop, NULL, hello, NULL);
    int err = srv ? sq_http_server_listen(srv, NULL, port) : -ENOMEM;
    if (err < 0) {
        fprintf(stderr, "hello: cannot listen on port %d: %s\n", port, sq_strerror(err));
        sq_http_server_free(srv);
        sq_loop_free(loop);
        return 1;
    }
    printf("listening on port %d\n", sq_http_server_port(srv));
    fflush(stdout);
    sq_loop_stop_on_signals(loop);
    int r = sq_loop_run(loop);
    sq_http_server_free(srv);
    sq_loop_free(loop);
    return r < 0 ? 1 : 0;
}
