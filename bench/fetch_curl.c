/* fetch_curl: libcurl alone, for bench/fetch_compare.sh — what squall's HTTP client would
 * cost if squall added nothing to libcurl.  CONCURRENCY easy handles on one multi handle,
 * driven by curl_multi_socket_action() from a plain epoll loop (CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION, as src/client/client.c drives it from squall's loop), each fetching
 * URL again and again for SECONDS over its kept-alive connection.  Every transfer gets the
 * options squall gives a plain GET (src/client/request.c: protocols, timeouts, redirects,
 * User-Agent, Accept-Encoding, no proxy) and the URL again; the body is collected into a
 * buffer of the handle's, the header callback only takes the line.  No coroutine, future,
 * response object or header parsing: the difference to the squall row of the same run is
 * squall's own share of a fetch.  Prints the line fetch_compare.sh parses:
 *
 *   libcurl: requests 123456 errors 0 seconds 10.00 rps 12345.6 cpu_us_per_request 4.56
 *
 * Usage: fetch_curl URL [SECONDS=10] [CONCURRENCY=100]
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <squall/client.h> /* SQ_FETCH_DEFAULT_*: the defaults squall gives libcurl */

#include "client_load.h"
#include "clock.h"

typedef struct {
    CURL *easy;
    size_t len; /* body bytes of the current response */
    char body[4096];
} slot;

static const char *url;
static int ep;
static long timeout_ms = -1; /* what libcurl last asked for; -1: no timer */
static long requests, errors;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    slot *s = arg;
    size_t len = size * n;
    if (len > sizeof s->body - s->len) return 0; /* fails the transfer: counted as an error */
    memcpy(s->body + s->len, p, len);
    s->len += len;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *mp, void *sockp)
{
    (void)e, (void)sockp;
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(mp, fd, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (sockp) {
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        curl_multi_assign(mp, fd, (void *)1);
    }
    return 0;
}

static int on_timer(CURLM *m, long ms, void *arg)
{
    (void)m, (void)arg;
    timeout_ms = ms;
    return 0;
}

/* A new transfer on slot s: the URL set again, as squall sets it for every fetch. */
static int start(CURLM *m, slot *s)
{
    CURL *e = s->easy;
    s->len = 0;
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK) return -1;
    return curl_multi_add_handle(m, e) == CURLM_OK ? 0 : -1;
}

/* The options of a plain GET in src/client/request.c (easy_configure, sq__xfer_setup). */
static int configure(slot *s)
{
    CURL *e = s->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, s);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, s);
    SET(CURLOPT_PRIVATE, s);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(SQ_FETCH_DEFAULT_CONNECT_TIMEOUT * 1000));
    SET(CURLOPT_TIMEOUT_MS, (long)(SQ_FETCH_DEFAULT_REQUEST_TIMEOUT * 1000));
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)SQ_FETCH_DEFAULT_MAX_REDIRECTS);
    SET(CURLOPT_USERAGENT, SQ_FETCH_DEFAULT_USER_AGENT);
    SET(CURLOPT_ACCEPT_ENCODING, "gzip");
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOPROXY, "");
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    client_args args;
    int bad = client_args_parse(argc, argv, &args);
    if (bad) return bad;
    url = args.url;
    int conc = args.conc;
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    CURLM *m = curl_multi_init();
    slot *slots = calloc((size_t)conc, sizeof *slots);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!m || !slots || ep < 0) return 1;
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conc);
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);

    double c0 = cpu_seconds(), t0 = now(), deadline = t0 + args.secs;
    for (int i = 0; i < conc; i++) {
        if (!(slots[i].easy = curl_easy_init()) || configure(&slots[i]) < 0 ||
            start(m, &slots[i]) < 0) {
            fprintf(stderr, "fetch_curl: cannot set up transfer %d\n", i);
            return 1;
        }
    }
    int running = conc;
    struct epoll_event evs[256];
    bool stopping = false;
    while (running > 0) {
        if (!stopping && now() >= deadline) stopping = true; /* let the ones in flight finish */
        int wait = timeout_ms < 0 || timeout_ms > 100 ? 100 : (int)timeout_ms;
        int n = epoll_wait(ep, evs, 256, wait);
        if (n <= 0) {
            timeout_ms = -1;
            curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        for (int i = 0; i < n; i++) {
            int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(m, evs[i].data.fd, flags, &running);
        }
        if (timeout_ms == 0) { /* libcurl asked to be called back at once */
            timeout_ms = -1;
            curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            slot *s;
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result == CURLE_OK && code == 200)
                requests++;
            else
                errors++;
            curl_multi_remove_handle(m, s->easy);
            if (!stopping) {
                if (start(m, s) < 0)
                    errors++;
                else
                    running++;
            }
        }
    }
    double dt = now() - t0, cpu = cpu_seconds() - c0;
    client_report("libcurl", requests, errors, dt, cpu);
    for (int i = 0; i < conc; i++) curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    free(slots);
    return errors && !requests ? 1 : 0; /* as fetch_load: errors are counted in the line */
}
