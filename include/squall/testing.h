/** @file squall/testing.h
 * A harness for testing squall applications (Tornado's tornado.testing): each test runs as a
 * coroutine on a fresh loop with the app listening on an ephemeral loopback port, fetches
 * from it with the HTTP client or opens WebSockets to it in straight-line code, checks
 * statuses, headers, bodies and log lines, and fails instead of hanging when it runs past
 * its timeout.  It returns 0 or 1, so any test runner can use it:
 *
 *   static void test_hello(sq_test *t)
 *   {
 *       sq_fetch_response *r = sq_test_fetch(t, "/", NULL);
 *       SQ_CHECK_STATUS(t, r, 200);
 *       SQ_CHECK_BODY(t, r, "Hello, world");
 *   }
 *   ...
 *   assert_int_equal(sq_test_run(make_app(), test_hello, NULL, NULL), 0);   // cmocka
 *
 * Failed checks print "file:line: what" on stderr and mark the test failed; they do not
 * stop it (each check returns whether it passed, so `if (!SQ_CHECK(...)) return;` stops).
 */
#ifndef SQUALL_TESTING_H
#define SQUALL_TESTING_H

#include <stdbool.h>
#include <stddef.h>

#include "squall/client.h"
#include "squall/web.h"
#include "squall/websocket.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One running test: its loop, app, client, and what failed. */
typedef struct sq_test sq_test;
/** The body of a test: runs on a coroutine, may suspend (fetch, sleep, await). */
typedef void (*sq_test_fn)(sq_test *t);

/** Options of sq_test_run(); zeroed: the defaults. */
typedef struct sq_test_options {
    /** s the body may run; past it the test fails ("timed out") and is torn down (the body's
     *  pending waits return -ECANCELED).  0: 10 s. */
    double timeout;
    /** printed in failure messages; NULL: "test" */
    const char *name;
    /** listen on "::1" instead of 127.0.0.1 */
    bool ipv6;
} sq_test_options;

/** Run `body` as a coroutine on a new loop (current while the test runs), with `app`
 *  listening on an ephemeral loopback port (app may be NULL: nothing listens).  The test
 *  takes `app`: it is freed, with the loop, the client, the responses and WebSockets of the
 *  test, before this returns.  Unmet sq_test_expect_log() expectations fail the test.
 *  @return 0 when every check passed, 1 when one failed, the body timed out, or the app
 *  could not listen (each reason printed on stderr). */
int sq_test_run(sq_app *app, sq_test_fn body, void *arg, const sq_test_options *opts);

/** The `arg` given to sq_test_run(). */
void *sq_test_arg(sq_test *t);
/** The app under test (NULL if none). */
sq_app *sq_test_app(sq_test *t);
/** The port the app listens on (0 if none). */
int sq_test_port(sq_test *t);
/** "http://127.0.0.1:PORT" + path (Tornado's get_url); valid until the test ends. */
const char *sq_test_url(sq_test *t, const char *path);

/** Fetch `path` (or an absolute URL) with the test's HTTP client and wait for it (Tornado's
 *  AsyncHTTPTestCase.fetch): statuses >= 400 come back as responses, not errors (the
 *  request's no_raise_error is forced on); redirects are followed unless the request says
 *  otherwise.  The response belongs to the test (freed when it ends).  NULL when the fetch
 *  itself failed (connection refused, timeout …): the test is then marked failed with the
 *  error, and *err (if given) holds it. */
sq_fetch_response *sq_test_fetch(sq_test *t, const char *path, const sq_fetch_request *req);
/** sq_test_fetch() with the error given back instead of failing the test. */
sq_fetch_response *sq_test_try_fetch(sq_test *t, const char *path, const sq_fetch_request *req,
                                     int *err);

/** Open a WebSocket to "ws://127.0.0.1:PORT" + path and wait for the handshake.  The
 *  connection belongs to the test (closed and freed when it ends; do not sq_ws_free it).
 *  NULL on failure, which fails the test. */
sq_ws *sq_test_websocket(sq_test *t, const char *path, const sq_ws_connect_options *opts);
/** Read the next WebSocket message as a NUL-terminated string owned by the test, or NULL
 *  (the test failed) when the connection closed or `timeout` seconds (0: 5) passed. */
const char *sq_test_ws_read(sq_test *t, sq_ws *ws, double timeout);

/** Expect a log line at `level` (SQ_LOG_*) containing `substring` before the test ends
 *  (Tornado's ExpectLog): matching lines are swallowed instead of printed; the test fails
 *  if none came.  Call it before the action that logs.  @return 0, or -ENOMEM. */
int sq_test_expect_log(sq_test *t, int level, const char *substring);
/** How many log lines of the test so far (at any level, swallowed or not) contain
 *  `substring`. */
size_t sq_test_log_count(sq_test *t, const char *substring);

/** Record a failure at file:line (what the SQ_CHECK macros call).  @return false. */
bool sq_test_fail_at(sq_test *t, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Whether a check of this test has failed so far. */
bool sq_test_failed(const sq_test *t);

/** @cond internal */
/** SQ_CHECK_STATUS's check. */
bool sq__test_check_status(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                           int status);
/** SQ_CHECK_HEADER's check. */
bool sq__test_check_header(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                           const char *name, const char *value);
/** SQ_CHECK_BODY's and SQ_CHECK_BODY_CONTAINS's check. */
bool sq__test_check_body(sq_test *t, const char *file, int line, const sq_fetch_response *r,
                         const char *text, bool whole);
/** @endcond */

/** Check a condition; on failure the test fails with the condition's text. */
#define SQ_CHECK(t, cond) ((cond) ? true : sq_test_fail_at((t), __FILE__, __LINE__, "check failed: %s", #cond))
/** Check a response's status (a NULL response fails). */
#define SQ_CHECK_STATUS(t, r, status) sq__test_check_status((t), __FILE__, __LINE__, (r), (status))
/** Check a response header's value (first of the name, case-insensitive); value NULL: the
 *  header must be absent. */
#define SQ_CHECK_HEADER(t, r, name, value)                                                         \
    sq__test_check_header((t), __FILE__, __LINE__, (r), (name), (value))
/** Check that the body is exactly `text`. */
#define SQ_CHECK_BODY(t, r, text) sq__test_check_body((t), __FILE__, __LINE__, (r), (text), true)
/** Check that the body contains `text`. */
#define SQ_CHECK_BODY_CONTAINS(t, r, text)                                                         \
    sq__test_check_body((t), __FILE__, __LINE__, (r), (text), false)

#ifdef __cplusplus
}
#endif
#endif
