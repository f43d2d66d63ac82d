/* The HTTP server's backpressure and body deadlines: a pipelining client that stops
 * reading stops the parsing of its requests (and gets every response, in order, once it
 * reads again), bodies trickled slower than body_min_rate are cut off although each gap is
 * shorter than body_timeout, and a body cut short by the client is never answered. */
#include "server_util.h"

#include <poll.h>

/* --- pipelining against a client that does not read ------------------------------------------- */

static int handled;

static void big_handler(sq_http_request *req, void *arg)
{
    static char block[16 * 1024];
    int k = __atomic_add_fetch(&handled, 1, __ATOMIC_SEQ_CST);
    char num[32];
    int n = snprintf(num, sizeof num, "%d;", k);
    memset(block, 'b', sizeof block);
    sq_http_write(req, num, (size_t)n);
    sq_http_write(req, block, sizeof block - (size_t)n);
}

#define PIPELINED 2000

static void *pipeline_sender(void *arg)
{
    cl *c = arg;
    const char *one = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < PIPELINED; i++)
        if (cl_sends(c, one) < 0) break;
    return NULL;
}

static void pipeline_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    /* a sender thread: the requests (60 KB) may be more than the socket takes while the
     * server is not reading them */
    pthread_t t;
    CHECK(h, pthread_create(&t, NULL, pipeline_sender, &c) == 0);
    usleep(1000 * 1000); /* not reading: the server must stop well short of 2,000 answers */
    int seen = __atomic_load_n(&handled, __ATOMIC_SEQ_CST);
    CHECK(h, seen > 0);
    /* what the kernel buffers hold (a few MB of 16 KiB answers) + write_high_water */
    CHECK(h, seen < 700);
    /* now read: every response arrives, in order */
    int ok = 0;
    for (int i = 1; i <= PIPELINED; i++) {
        resp r;
        if (cl_response(&c, &r, false) < 0) break;
        char want[32];
        snprintf(want, sizeof want, "%d;", i);
        if (r.status == 200 && r.body_len == 16 * 1024 && !strncmp(r.body, want, strlen(want)))
            ok++;
        resp_free(&r);
    }
    CHECK(h, ok == PIPELINED);
    pthread_join(t, NULL);
    cl_close(&c);
}

static void test_pipeline_stops_while_unread(void **state)
{
    handled = 0;
    run_with_client(NULL, big_handler, NULL, pipeline_client, NULL, 60);
    assert_int_equal(handled, PIPELINED);
}

/* --- slow bodies --------------------------------------------------------------------------------
 */

static int body_results[64];
static int nbody_results;

static void body_reader(sq_http_request *req, void *arg)
{
    const char *d;
    ssize_t n = sq_http_read_body(req, &d);
    if (nbody_results < 64) body_results[nbody_results++] = (int)(n < 0 ? n : 0);
    sq_http_write(req, "read", 4);
}

#define TRICKLERS 50

static void trickle_client(harness *h)
{
    int fds[TRICKLERS];
    const char *head = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    for (int i = 0; i < TRICKLERS; i++) {
        cl c;
        CHECK(h, cl_open(&c, h->port) == 0);
        fds[i] = c.fd;
        free(c.buf);
        CHECK(h, send(fds[i], head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head));
    }
    /* one byte each every 0.2 s: every gap is far below body_timeout (1 s), but the average
     * rate (5 B/s) is far below body_min_rate (100 B/s): the deadline is about
     * 1 s + received / 100 B/s after the head, whatever the gaps */
    double t0 = sq_test_now();
    int open = TRICKLERS;
    bool closed[TRICKLERS] = {false};
    while (open > 0 && sq_test_now() - t0 < 10) {
        for (int i = 0; i < TRICKLERS; i++) {
            if (closed[i]) continue;
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            if (poll(&p, 1, 0) > 0) {
                char b[256];
                ssize_t n = recv(fds[i], b, sizeof b, MSG_DONTWAIT);
                CHECK(h, n <= 0); /* closed, never answered */
                if (n <= 0) {
                    closed[i] = true;
                    open--;
                    continue;
                }
            }
            if (send(fds[i], "a", 1, MSG_NOSIGNAL) < 0) {
                closed[i] = true;
                open--;
            }
        }
        usleep(200 * 1000);
    }
    double took = sq_test_now() - t0;
    CHECK(h, open == 0);
    CHECK(h, took >= 0.8 && took < 4.0);
    for (int i = 0; i < TRICKLERS; i++) close(fds[i]);
}

static void test_slow_body_min_rate(void **state)
{
    nbody_results = 0;
    sq_http_settings s = {.body_timeout = 1.0, .body_min_rate = 100};
    run_with_client(&s, body_reader, NULL, trickle_client, NULL, 30);
    assert_int_equal(nbody_results, TRICKLERS);
    for (int i = 0; i < nbody_results; i++) assert_int_equal(body_results[i], -ETIMEDOUT);
}

/* --- a body cut short: no response, and the log says what happened ---------------------------- */

static char logged[4096];

static void capture_log(int level, const char *msg, void *arg)
{
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", msg);
}

static void truncated_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h,
          cl_sends(&c, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n1234567") == 0);
    shutdown(c.fd, SHUT_WR);
    char b[512];
    ssize_t n = recv(c.fd, b, sizeof b, 0);
    CHECK(h, n == 0); /* closed without a response: no "200" for half a body */
    cl_close(&c);
}

static void test_truncated_body_not_answered(void **state)
{
    nbody_results = 0;
    logged[0] = 0;
    sq_log_set_handler(capture_log, NULL);
    sq_http_settings s = {.access_log = true};
    run_with_client(&s, body_reader, NULL, truncated_client, NULL, 30);
    sq_log_set_handler(NULL, NULL);
    assert_int_equal(nbody_results, 1);
    assert_int_equal(body_results[0], SQ_ECLOSED);
    assert_non_null(strstr(logged, "POST /form"));
    assert_non_null(strstr(logged, "the client left before the body was complete (7 of 8"));
    assert_null(strstr(logged, "200 POST"));
}

/* --- a body wait displaced by the write deadline keeps its own deadline --------------------- */

static int streamed_result;

static void stream_then_read(sq_http_request *req, void *arg)
{
    static char block[256 * 1024];
    memset(block, 's', sizeof block);
    sq_http_write(req, block, sizeof block); /* more than the socket takes at once */
    sq_http_flush(req);
    const char *d;
    ssize_t n;
    while ((n = sq_http_read_body_chunk(req, &d)) > 0) {
    }
    streamed_result = (int)n;
}

static void stall_after_output_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    CHECK(h, cl_sends(&c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789") ==
                 0);
    /* take all the output, then send nothing more: the body deadline must still hold */
    double t0 = sq_test_now();
    char b[65536];
    ssize_t n;
    while ((n = recv(c.fd, b, sizeof b, 0)) > 0) {
    }
    double took = sq_test_now() - t0;
    CHECK(h, n == 0);
    CHECK(h, took < 5.0);
    cl_close(&c);
}

static void test_body_deadline_after_write_deadline(void **state)
{
    streamed_result = 1;
    sq_http_settings s = {.body_timeout = 1.0};
    run_with_client(&s, stream_then_read, NULL, stall_after_output_client, NULL, 30);
    assert_int_equal(streamed_result, -ETIMEDOUT);
}

/* --- requests read before a half-close are answered ------------------------------------------ */

static void halfclose_client(harness *h)
{
    cl c;
    CHECK(h, cl_open(&c, h->port) == 0);
    /* 1,000 pipelined requests for 16 KiB answers (16 MB: more than the kernel buffers, so
     * the server pauses with requests still in its buffer), then the end of our stream:
     * every answer must still come, and then the close */
    for (int i = 0; i < 1000; i++)
        CHECK(h, cl_sends(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    shutdown(c.fd, SHUT_WR);
    usleep(300 * 1000);
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        resp r;
        if (cl_response(&c, &r, false) < 0) break;
        if (r.status == 200 && r.body_len == 16 * 1024) ok++;
        resp_free(&r);
    }
    if (ok != 1000) fprintf(stderr, "half-close: %d of 1000 answers, %d handled\n", ok, handled);
    CHECK(h, ok == 1000);
    char b[64];
    CHECK(h, recv(c.fd, b, sizeof b, 0) == 0);
    cl_close(&c);
}

static void test_half_close_answers_buffered_requests(void **state)
{
    handled = 0;
    run_with_client(NULL, big_handler, NULL, halfclose_client, NULL, 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_stops_while_unread),
        cmocka_unit_test(test_slow_body_min_rate),
        cmocka_unit_test(test_truncated_body_not_answered),
        cmocka_unit_test(test_body_deadline_after_write_deadline),
        cmocka_unit_test(test_half_close_answers_buffered_requests),
    };
    (void)run_cmd;
    (void)cl_eof;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
