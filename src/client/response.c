/* HTTP client: building, querying and freeing responses. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client_internal.h"

/* The public struct first, then what it points into. */
typedef struct response_impl {
    sq_fetch_response pub;
    sq_http_header *headers;
    char *head; /* raw header block, cut into NUL-terminated names and values */
    char *body;
    char *url, *effective_url;
} response_impl;

static double secs(CURL *e, CURLINFO what)
{
    curl_off_t us = 0;
    curl_easy_getinfo(e, what, &us);
    return (double)us / 1e6;
}

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    *end = '\0';
    return s;
}

/* Cut the raw header block into the status line's reason and name/value pairs. */
static int parse_head(response_impl *r, char *head, size_t len)
{
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += head[i] == '\n';
    r->headers = calloc(lines + 1, sizeof *r->headers);
    if (!r->headers) return -ENOMEM;
    r->pub.reason = "";
    char *p = head, *end = head + len;
    bool first = true;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        if (first) {
            /* "HTTP/1.1 200 OK": the reason follows the second space. */
            first = false;
            char *sp = memchr(p, ' ', (size_t)(eol - p));
            char *sp2 = sp ? memchr(sp + 1, ' ', (size_t)(eol - sp - 1)) : NULL;
            r->pub.reason = sp2 ? trim(sp2 + 1, eol) : "";
        } else {
            char *colon = memchr(p, ':', (size_t)(eol - p));
            if (colon && colon > p) {
                sq_http_header *h = &r->headers[r->pub.nheaders++];
                *colon = '\0';
                h->name = p;
                h->name_len = (size_t)(colon - p);
                h->value = trim(colon + 1, eol);
                h->value_len = strlen(h->value);
            }
        }
        p = eol + 1;
    }
    r->pub.headers = r->headers;
    return 0;
}

sq_fetch_response *sq__response_build(sq__xfer *x)
{
    response_impl *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    CURL *e = x->easy;
    long code = 0, ver = 0, redirects = 0, conns = 0;
    char *eff = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &ver);
    curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
    r->pub.code = (int)code;
    r->pub.http_version = ver == CURL_HTTP_VERSION_1_0   ? 10
                          : ver == CURL_HTTP_VERSION_2_0 ? 20
                          : ver == CURL_HTTP_VERSION_3   ? 30
                                                         : 11;
    r->pub.redirects = redirects + x->redirects;
    r->pub.num_connects = conns;

    /* Take the body and header buffers over from the transfer. */
    if (sq__buf_reserve(&x->body, 1) < 0 || sq__buf_reserve(&x->head, 1) < 0) goto fail;
    x->body.ptr[x->body.len] = '\0';
    r->body = x->body.ptr;
    r->pub.body = r->body;
    r->pub.body_len = x->body.len;
    x->body = (sq__buf){0};
    x->head.ptr[x->head.len] = '\0';
    r->head = x->head.ptr;
    size_t head_len = x->head.len;
    x->head = (sq__buf){0};
    if (parse_head(r, r->head, head_len) < 0) goto fail;
    if (!*r->pub.reason) r->pub.reason = sq_http_reason(r->pub.code);

    r->url = strdup(x->url);
    if (!r->url) goto fail;
    /* (most fetches end where they started: one copy serves both then) */
    r->effective_url = !eff || !strcmp(eff, x->url) ? r->url : strdup(eff);
    if (!r->effective_url) goto fail;
    r->pub.url = r->url;
    r->pub.effective_url = r->effective_url;

    r->pub.time.queue = (double)(x->started_ns - x->enqueued_ns) / 1e9;
    r->pub.time.namelookup = secs(e, CURLINFO_NAMELOOKUP_TIME_T);
    r->pub.time.connect = secs(e, CURLINFO_CONNECT_TIME_T);
    r->pub.time.appconnect = secs(e, CURLINFO_APPCONNECT_TIME_T);
    r->pub.time.pretransfer = secs(e, CURLINFO_PRETRANSFER_TIME_T);
    r->pub.time.starttransfer = secs(e, CURLINFO_STARTTRANSFER_TIME_T);
    /* with the transfers before a 303 that squall followed itself */
    r->pub.time.total = secs(e, CURLINFO_TOTAL_TIME_T) + (double)x->earlier_us / 1e6;
    r->pub.time.redirect = secs(e, CURLINFO_REDIRECT_TIME_T) + (double)x->earlier_us / 1e6;
    r->pub.request_time = r->pub.time.queue + r->pub.time.total;
    return &r->pub;
fail:
    sq_fetch_response_free(&r->pub);
    return NULL;
}

const char *sq_fetch_response_header(const sq_fetch_response *r, const char *name)
{
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

void sq_fetch_response_free(sq_fetch_response *pub)
{
    if (!pub) return;
    response_impl *r = (response_impl *)pub;
    free(r->headers);
    free(r->head);
    free(r->body);
    if (r->effective_url != r->url) free(r->effective_url);
    free(r->url);
    free(r);
}
