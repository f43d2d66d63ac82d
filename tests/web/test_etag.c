/* ETags on dynamic responses (Tornado's compute_etag / check_etag_header): a hash of the body
 * on a 200 GET or HEAD finished in one piece, If-None-Match answered 304 without a body.
 * Written with the user-facing harness (squall/testing.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>
#define XXH_INLINE_ALL /* the expected ETags, computed as squall does: nothing to link */
#include <xxhash.h>

#include "squall/testing.h"

static void page_get(sq_handler *h)
{
    sq_write(h, "the same page every time");
}
static void page_post(sq_handler *h)
{
    sq_write(h, "posted");
}
static void own_get(sq_handler *h)
{
    sq_set_header(h, "ETag", "\"mine\"");
    sq_write(h, "own tag");
}
static void flushed_get(sq_handler *h)
{
    sq_write(h, "part one ");
    sq_flush(h);
    sq_write(h, "part two");
}
/* 10,000 bytes: XXH3 hashes bodies past 240 bytes in stripes, another path than a short one */
static void long_text(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = (char)('a' + (i * 7 + i / 26) % 26);
}
static void long_get(sq_handler *h)
{
    char body[10000];
    long_text(body, sizeof body);
    sq_write_bytes(h, body, sizeof body);
}
static void missing_get(sq_handler *h)
{
    sq_send_error(h, 404, NULL);
}

static const sq_route routes[] = {
    {"/page", &(sq_handler_class){.get = page_get, .post = page_post}, NULL, NULL},
    {"/own", &(sq_handler_class){.get = own_get}, NULL, NULL},
    {"/flushed", &(sq_handler_class){.get = flushed_get}, NULL, NULL},
    {"/missing", &(sq_handler_class){.get = missing_get}, NULL, NULL},
    {"/long", &(sq_handler_class){.get = long_get}, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

static sq_app *app(bool no_etag)
{
    sq_app_settings st = {.no_access_log = true, .no_etag = no_etag};
    return sq_app_new(routes, &st);
}

/* GET (or `method`) `path` with an If-None-Match header when inm is not NULL */
static sq_fetch_response *get(sq_test *t, const char *method, const char *path, const char *inm)
{
    char h[160];
    snprintf(h, sizeof h, "If-None-Match: %s", inm ? inm : "");
    const char *headers[] = {h, NULL};
    return sq_test_fetch(t, path,
                         &(sq_fetch_request){.method = method,
                                             .headers = inm ? headers : NULL,
                                             .body = method && !strcmp(method, "POST") ? "" : NULL,
                                             .allow_nonstandard_methods = true});
}

static void etags(sq_test *t)
{
    sq_fetch_response *r = get(t, NULL, "/page", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    const char *tag = r ? sq_fetch_response_header(r, "ETag") : NULL;
    if (!SQ_CHECK(t, tag && strlen(tag) == 18)) return; /* "<16 hex digits>" */
    /* Tornado hashes with SHA-1; squall with XXH3-64 over the body, in lowercase hex */
    static const char body[] = "the same page every time";
    uint64_t x = XXH3_64bits(body, sizeof body - 1);
    char want[24];
    snprintf(want, sizeof want, "\"%016llx\"", (unsigned long long)x);
    SQ_CHECK(t, strcmp(tag, want) == 0);
    char weak[80], listed[96];
    snprintf(weak, sizeof weak, "W/%s", tag);
    snprintf(listed, sizeof listed, "\"other\", %s", weak);

    r = get(t, NULL, "/page", tag);
    SQ_CHECK_STATUS(t, r, 304);
    SQ_CHECK_BODY(t, r, "");
    SQ_CHECK_HEADER(t, r, "ETag", tag);
    SQ_CHECK_STATUS(t, get(t, NULL, "/page", listed), 304); /* listed among others, weakly */
    SQ_CHECK_STATUS(t, get(t, "HEAD", "/page", tag), 304);  /* HEAD too */
    r = get(t, NULL, "/page", "\"stale\"");
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_BODY(t, r, "the same page every time");

    char text[10000];
    long_text(text, sizeof text);
    snprintf(want, sizeof want, "\"%016llx\"", (unsigned long long)XXH3_64bits(text, sizeof text));
    r = get(t, NULL, "/long", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_HEADER(t, r, "ETag", want);
    SQ_CHECK(t, r && r->body_len == sizeof text && !memcmp(r->body, text, sizeof text));
    SQ_CHECK_STATUS(t, get(t, NULL, "/long", want), 304);
    SQ_CHECK_STATUS(t, get(t, NULL, "/long", tag), 200); /* another page's tag */

    r = get(t, "POST", "/page", NULL);
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_HEADER(t, r, "ETag", NULL); /* not for POST */
    r = get(t, NULL, "/own", NULL);
    SQ_CHECK_HEADER(t, r, "ETag", "\"mine\""); /* the handler's own, and no other */
    size_t ntags = 0;
    for (size_t i = 0; r && i < r->nheaders; i++)
        if (r->headers[i].name_len == 4 && !strncasecmp(r->headers[i].name, "etag", 4)) ntags++;
    SQ_CHECK(t, ntags == 1);
    r = get(t, NULL, "/flushed", NULL);
    SQ_CHECK_HEADER(t, r, "ETag", NULL); /* sent in pieces: no hash */
    SQ_CHECK_BODY(t, r, "part one part two");
    r = get(t, NULL, "/missing", NULL);
    SQ_CHECK_STATUS(t, r, 404);
    SQ_CHECK_HEADER(t, r, "ETag", NULL); /* not for errors */
}

static void no_etags(sq_test *t)
{
    sq_fetch_response *r = get(t, NULL, "/page", "\"0123456789abcdef\"");
    SQ_CHECK_STATUS(t, r, 200);
    SQ_CHECK_HEADER(t, r, "ETag", NULL);
}

static void test_etag(void **state)
{
    (void)state;
    assert_int_equal(sq_test_run(app(false), etags, NULL, NULL), 0);
    assert_int_equal(sq_test_run(app(true), no_etags, NULL, NULL), 0); /* settings.no_etag */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_etag)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
