/* The slow-callback warning names the culprit: for a web handler the method, the route
 * pattern and the handler function ("GET /busy/([0-9]+) (busy_get) held the loop for …"),
 * whether the handler blocked when its coroutine first ran (resumed from the connection's
 * fd watcher) or after it suspended once (resumed from the ready queue); a static handler
 * is named module+0xoffset; a blocking sq_call_later callback is named as before.  Built
 * with ENABLE_EXPORTS (-rdynamic) so that dladdr finds the handlers' names. */
#include <time.h>

#include "webtest.h"

#define MAXLINES 16
static char lines[MAXLINES][512];
static int nlines;

static void capture(int level, const char *msg, void *arg)
{
    if (level == SQ_LOG_WARNING && strstr(msg, "slow callback") && nlines < MAXLINES)
        snprintf(lines[nlines++], sizeof lines[0], "%s", msg);
}

static void busy_ms(int ms)
{
    double end = sq_test_now() + ms / 1000.0;
    while (sq_test_now() < end) {
    }
}

/* exported (not static): dladdr names them */
void busy_get(sq_handler *h);
void busy_post(sq_handler *h);
void nap_then_busy(sq_handler *h);
void blocking_cb(void *arg);

void busy_get(sq_handler *h)
{
    busy_ms(300); /* holds the loop without yielding */
    sq_write(h, "done");
}
void busy_post(sq_handler *h)
{
    busy_ms(300);
    sq_write(h, "posted");
}
void nap_then_busy(sq_handler *h)
{
    sq_sleep(0.01); /* resumed later from the ready queue, not the fd watcher */
    busy_ms(300);
    sq_write(h, "done");
}
static void static_busy(sq_handler *h)
{
    busy_ms(300);
    sq_write(h, "done");
}
void blocking_cb(void *arg)
{
    busy_ms(200);
}

static const sq_route routes[] = {
    {"/busy/([0-9]+)", &(sq_handler_class){.get = busy_get, .post = busy_post}, NULL, NULL},
    {"/nap", &(sq_handler_class){.get = nap_then_busy}, NULL, NULL},
    {"/static", &(sq_handler_class){.get = static_busy}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static const char *find_line(const char *needle)
{
    for (int i = 0; i < nlines; i++)
        if (strstr(lines[i], needle)) return lines[i];
    return NULL;
}

static double held_ms(const char *line)
{
    const char *p = strstr(line, "held the loop for ");
    double ms = -1;
    if (p) sscanf(p, "held the loop for %lf ms", &ms);
    return ms;
}

static void test_handler_named(void **state)
{
    sq_loop *loop = sq_loop_new(&(sq_loop_options){.slow_callback_warning = 0.1});
    assert_non_null(loop);
    sq_loop_make_current(loop);
    nlines = 0;
    sq_log_set_handler(capture, NULL);
    sq_app *app = sq_app_new(routes, &(sq_app_settings){.no_access_log = true});
    assert_non_null(app);
    wt_run run = {.n = 4,
                  .reqs = {WT_GET("/busy/7"), WT_GET("/nap"), WT_GET("/static"),
                           "POST /busy/8 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                           "Connection: close\r\n\r\nhi"}};
    wt_serve(loop, app, &run);
    for (size_t i = 0; i < run.n; i++) assert_int_equal(run.resp[i].status, 200);
    wt_free(&run);

    /* a plain callback that blocks: named by its function, no request attached */
    sq_call_later(loop, 0, blocking_cb, NULL);
    sq_loop_run_once(loop, false);
    sq_log_set_handler(NULL, NULL);
    for (int i = 0; i < nlines; i++) print_message("logged: %s\n", lines[i]);

    const char *l = find_line("GET /busy/([0-9]+) (busy_get) held the loop for ");
    assert_non_null(l);
    assert_true(held_ms(l) >= 250 && held_ms(l) < 5000);
    l = find_line("POST /busy/([0-9]+) (busy_post) held the loop for ");
    assert_non_null(l);
    l = find_line("GET /nap (nap_then_busy) held the loop for ");
    assert_non_null(l);
    assert_true(held_ms(l) >= 250);
    /* a static function: no dynamic symbol, so the module and the offset (addr2line) */
    l = find_line("GET /static (test_slow_names+0x");
    assert_non_null(l);
    l = find_line("blocking_cb held the loop for ");
    assert_non_null(l);
    assert_null(strstr(l, "GET"));
    assert_non_null(strstr(l, "call_later callback blocking_cb"));
    assert_true(held_ms(l) >= 150);

    sq_app_free(app);
    sq_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handler_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
