/* /gather: the demo fetches its own /async route (each takes 1 s) three times at once with
 * the HTTP client and sq_gather, and answers in about 1 s — the longest, not the sum. */
#include <stdio.h>

#include <jansson.h>

#include "demo.h"

static void gather_get(sq_handler *h)
{
    int port = sq_http_server_port(sq_app_server(sq_handler_app(h)));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/async", port);
    sq_loop *loop = sq_loop_current();
    sq_loop_update_time(loop);
    double t0 = sq_loop_time(loop);

    sq_future *fs[3];
    void *values[3];
    int64_t statuses[3];
    for (int i = 0; i < 3; i++) fs[i] = sq_http_client_fetch(demo_client(), url, NULL);
    sq_gather(fs, 3, values, statuses); /* consumes the futures */
    sq_loop_update_time(loop);
    double elapsed = sq_loop_time(loop) - t0;

    json_t *results = json_array();
    for (int i = 0; i < 3; i++) {
        sq_fetch_response *r = values[i];
        json_t *o = json_object();
        if (r) {
            json_object_set_new(o, "status", json_integer(r->code));
            json_object_set_new(o, "body", json_stringn(r->body, r->body_len));
            json_object_set_new(o, "seconds", json_real(r->request_time));
        } else {
            json_object_set_new(o, "status", json_integer(0));
            json_object_set_new(o, "error", json_string(sq_strerror((int)statuses[i])));
        }
        json_array_append_new(results, o);
        sq_fetch_response_free(r);
    }
    sq_write_json(
        h, json_pack("{s:s, s:o, s:f}", "fetched", url, "results", results, "elapsed", elapsed));
}

const sq_handler_class demo_gather_handler = {.get = gather_get};

/* The demo's own client: the default one runs 10 transfers at once and queues the rest for
 * at most their connect timeout, so 100 concurrent /gather (300 fetches of a 1 s route)
 * would time out in its queue.  Up to 512 transfers run at once here, and a fetch may wait
 * in the queue for 60 s. */
static sq_http_client *client;

sq_http_client *demo_client(void)
{
    if (!client) {
        sq_http_client_settings s = {.max_clients = 512, .queue_timeout = 60};
        client = sq_http_client_new(sq_loop_current(), &s);
    }
    return client;
}

void demo_client_free(void)
{
    sq_http_client_free(client);
    client = NULL;
}
